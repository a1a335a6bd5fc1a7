/**
 * What the application sees of a hub: {@link Hub} (rooms, publish, events, stats, close),
 * the options of {@link createHub} and the shapes its methods return. Adapters reach the
 * admission API through `adapterHandle(hub)`, brokers get a `BrokerHost`; neither is here.
 */
import type { EventEmitter } from 'eventemitter3';
import type { Duration, HubConfig, HubConfigInput } from './config';
import type { RoomwireError, WireErrorCode } from './errors';
import type { TerminationReason } from './heartbeat';
import type { RejectReason } from './stats';
import type { Authenticate, AuthorizationHooks, Broker, BrokerHealth, Client, Clock, Identity, Logger } from './types';

/** Everything {@link createHub} accepts: configuration plus the application's seams. */
export interface HubOptions extends HubConfigInput, AuthorizationHooks {
  /** Replace or extend token verification. @default verify the token as a JWT per `jwt`; no token is anonymous */
  authenticate?: Authenticate;
  /**
   * Carries room traffic and presence. To spread one hub over several processes, pass a
   * Redis broker from `roomwire/redis` (`redisBrokerFromEnv()` or `createRedisBroker()`).
   * @default createMemoryBroker(): this process alone
   */
  broker?: Broker;
  /** Time source for heartbeats, rate limits and timestamps. @default the system clock */
  clock?: Clock;
  /** Where to log (pino's method shape; pino works as-is). @default silent */
  logger?: Logger;
  /**
   * What each room keeps for recovery (docs/protocol.md section 9), overriding `historySize`
   * and `historyTtl` room by room: return a size, `{ size, ttl }`, or `0` for a room that
   * keeps none (its messages then carry no `offset`). Called for every message and join, so
   * keep it cheap; a throw or a bad answer is reported as `ERR_HOOK` and the defaults apply.
   * Setting it turns history on even when `historySize` is 0.
   *
   * @example
   * ```ts
   * createHub({ historyFor: (room) => (room.startsWith('chat:') ? { size: 200, ttl: '1h' } : 0) });
   * ```
   */
  historyFor?: HistoryFor;
  /**
   * The cap on open connections of this user, across the hub (docs/protocol.md section 10),
   * for per-plan limits: return a number (0 for no cap), or undefined for
   * `maxConnectionsPerUser`. Asked after the token check, for authenticated connections
   * only; a throw or a bad answer is reported as `ERR_HOOK` and the default applies.
   *
   * @example
   * ```ts
   * createHub({ maxConnectionsFor: (identity) => (identity.claims?.plan === 'pro' ? 20 : 3) });
   * ```
   */
  maxConnectionsFor?: (identity: Identity, address: string) => number | undefined;
}

/** The per-room history override of {@link HubOptions.historyFor}: a size, `{ size, ttl }`, or 0 for none. */
export type HistoryFor = (room: string) => number | { readonly size: number; readonly ttl?: Duration };

/** The payload of a `message` event. */
export interface MessageEvent {
  readonly content: string;
  readonly data: Readonly<Record<string, unknown>> | undefined;
}

/** The hub's events and their arguments. */
export interface HubEvents {
  /** A connection opened (before its path room, if any, is joined). */
  connection: [client: Client];
  /** A connection closed; it has left all its rooms. */
  disconnect: [client: Client, code: number, reason: string];
  /** A connection joined a room (after members were told). */
  join: [client: Client, room: string];
  /** A connection left a room, by `leave` or by closing. */
  leave: [client: Client, room: string];
  /** A connection's message was delivered to a room. */
  message: [client: Client, room: string, message: MessageEvent];
  /**
   * Something went wrong: a client error frame was sent (the error's `code` is the wire
   * code), or a hook, broker or transport failed (`ERR_*` codes).
   */
  error: [error: RoomwireError, client: Client | undefined];
}

/** A snapshot of the hub's counters; see {@link Hub.stats}. */
export interface HubStats {
  /** Open connections now. */
  readonly connections: number;
  /** Upgrades accepted and waiting for their handshake. */
  readonly pending: number;
  /** Connections accepted since the hub started. */
  readonly connectionsAccepted: number;
  /** Connections closed since the hub started. */
  readonly connectionsClosed: number;
  /** Refused upgrades by reason. */
  readonly rejected: Readonly<Record<RejectReason, number>>;
  /** Inbound data frames and their bytes. */
  readonly framesIn: number;
  readonly bytesIn: number;
  /** Inbound messages by type (`invalid` for those that failed a check). */
  readonly messagesIn: Readonly<Record<string, number>>;
  /** Frames and bytes sent (a broadcast counts once per recipient). */
  readonly framesOut: number;
  readonly bytesOut: number;
  /** Room frames (join, leave, message) delivered to members. */
  readonly deliveries: number;
  /** Error frames sent, by code. */
  readonly errors: Readonly<Record<WireErrorCode, number>>;
  /** Connections ended by the heartbeat sweep, by reason. */
  readonly terminations: Readonly<Record<TerminationReason, number>>;
  /** Rooms with members in this process. */
  readonly rooms: number;
  /**
   * Room occupancy without room names: `[members, rooms]` pairs, ascending by members,
   * saying how many rooms have exactly that many member connections in this process.
   * Kept up to date as members come and go, so a snapshot costs the number of distinct
   * sizes, not the number of rooms. For the fullest rooms by name, see {@link Hub.largestRooms}.
   */
  readonly roomSizes: readonly (readonly [members: number, rooms: number])[];
  /** Lifetimes of closed connections as a histogram. */
  readonly connectionDurations: DurationHistogram;
  /** The broker: whether it reaches the other processes, and how many there are. */
  readonly broker: BrokerHealth;
  /** Room history (docs/protocol.md section 9): what this process keeps, and how rejoins fared. */
  readonly history: HistoryStatsSnapshot;
}

/** The `history` part of {@link HubStats}. */
export interface HistoryStatsSnapshot {
  /** Whether history is on (`historySize` above 0, or a `historyFor` hook). */
  readonly enabled: boolean;
  /** Rooms whose history this process keeps in memory (0 when it lives in Redis). */
  readonly rooms: number;
  /** Messages kept in this process's memory: at most `historySize` per room. */
  readonly messages: number;
  /** UTF-8 bytes of those messages. */
  readonly bytes: number;
  /** Joins with `since` that received every message they missed. */
  readonly recovered: number;
  /** Joins with `since` answered `recovered: false` (another epoch, too old, or history off for the room). */
  readonly unrecovered: number;
}

/** A histogram of connection lifetimes in seconds. */
export interface DurationHistogram {
  /** Upper bounds of the buckets, seconds; a last bucket above them all is implied. */
  readonly buckets: readonly number[];
  /** Connections per bucket (not cumulative); one more entry than `buckets`, the last for longer ones. */
  readonly counts: readonly number[];
  /** Sum of all lifetimes, seconds. */
  readonly sum: number;
  /** Closed connections observed. */
  readonly count: number;
}

/** Options of {@link Hub.close}. */
export interface CloseOptions {
  /** Close code sent to every client. @default 1001 */
  readonly code?: number;
  /** Close reason. @default 'server shutting down' */
  readonly reason?: string;
  /**
   * Milliseconds to wait for closing handshakes before terminating the rest (in a drain,
   * from each connection's own close frame). @default 5000
   */
  readonly timeout?: number;
  /**
   * The drain window (docs/protocol.md section 4), milliseconds or a duration such as
   * `'30s'`: close the connections in a random order spread evenly over it, each told first
   * with a `reconnect` frame how long to wait before coming back (a delay drawn from 0 to
   * the window), rather than all at once. Upgrades get 503 from the start. 0 closes every
   * connection at once.
   * @default the hub's `drainWindow` (`WEBSOCKET_DRAIN_WINDOW`, 0)
   */
  readonly drain?: Duration;
}

/** Options of {@link Hub.publish}. */
export interface PublishOptions {
  /** `data` object of the frame. */
  readonly data?: Readonly<Record<string, unknown>>;
  /** `user_id` stamped on the frame. @default 'server' */
  readonly userId?: string;
  /** `username` stamped on the frame. @default 'server' */
  readonly username?: string;
}

/**
 * A roomwire hub: rooms, identity, protocol, limits and heartbeats, independent of any
 * HTTP framework. Create one with {@link createHub} and attach it with an adapter such as
 * `roomwire/node`.
 */
export interface Hub extends EventEmitter<HubEvents> {
  /** The resolved configuration. */
  readonly config: HubConfig;
  /** Open connections. */
  readonly size: number;
  /** True once {@link Hub.close} was called. */
  readonly closing: boolean;
  /** True once {@link Hub.close} was called with a drain window (`closing` is true too). */
  readonly draining: boolean;
  /** Open connections. */
  clients(): Client[];
  /** Names of the rooms with members in this process. */
  roomNames(): string[];
  /** This process's members of `room`. */
  members(room: string): Client[];
  /**
   * The `limit` rooms of this process with the most member connections, fullest first
   * (ties by name). One pass over the rooms: about 2 ms at 100,000 rooms.
   * @example hub.largestRooms(10) // [{ room: 'lobby', members: 120 }, ...]
   */
  largestRooms(limit: number): { readonly room: string; readonly members: number }[];
  /**
   * Send a `message` frame to every member of `room`, stamped with a server identity.
   * Throws an `invalid_room` or `ERR_INVALID_ARGUMENT` {@link RoomwireError} for bad
   * arguments. Resolves with the message's offset when the room keeps history
   * (docs/protocol.md section 9), else with undefined; with history, rejects with an
   * `unavailable` RoomwireError when the room's stream cannot be reached (the message then
   * reaches no one), so await it or catch it.
   * @example await hub.publish('lobby', 'maintenance in 5 minutes')
   */
  publish(room: string, content: string, options?: PublishOptions): Promise<number | undefined>;
  /** A snapshot of the counters; cheap enough to call every second. */
  stats(): HubStats;
  /**
   * Resolves once the broker has started: at once in a single process. With Redis, once
   * connected and in step with the other processes (their members are in `user_list`),
   * or after the broker's `startTimeout` (3 s) when Redis is unreachable: the hub then
   * serves its own members and keeps trying. Never rejects.
   *
   * @example
   * ```ts
   * const hub = createHub(configFromEnv(process.env));
   * await hub.ready();
   * server.listen(8080);
   * ```
   */
  ready(): Promise<void>;
  /**
   * Close every connection (1001 by default), then stop the heartbeat and the broker.
   * Upgrades get 503 from the call on. With a drain window (`options.drain`, else the hub's
   * `drainWindow`) the connections are closed spread over it, each after a `reconnect`
   * frame; the promise resolves once the last one is closed, at most the window plus
   * `timeout` later. A second call returns the first call's promise.
   *
   * @example
   * ```ts
   * process.on('SIGTERM', () => void hub.close({ drain: '30s' }).then(() => process.exit(0)));
   * ```
   */
  close(options?: CloseOptions): Promise<void>;
}
