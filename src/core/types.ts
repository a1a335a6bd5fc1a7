/**
 * The seams of the core: the transport a connection is reached through, the clock,
 * identities and the authentication hook, authorization hooks, and the broker that
 * carries room traffic and presence.
 */
import type { MessageParts, Outbound } from './protocol';

/**
 * One accepted connection as the core sees it. Adapters implement it over their
 * socket library (roomwire/node over `ws`); unit tests implement it in memory.
 */
export interface Transport {
  /**
   * Queue one text frame. Returns the bytes buffered for this connection after queuing
   * it, which the hub compares with `writeBufferSize` to find slow readers. Must not
   * throw once the connection is closing; drop the frame instead.
   */
  send(message: Outbound): number;
  /** Start the closing handshake with a close code and reason. */
  close(code: number, reason: string): void;
  /** Destroy the connection at once, without a closing handshake. */
  terminate(): void;
  /** Send a protocol ping (the hub's keep-alive; the peer answers with a pong). */
  ping(): void;
  /**
   * Answer a protocol ping with a pong carrying `payload`. The hub calls this for each
   * ping it lets through the message rate, so a transport must not answer pings itself
   * (with `ws`: `autoPong: false`).
   */
  pong(payload: Uint8Array): void;
  /** Bytes queued for sending and not yet written to the network. */
  readonly bufferedAmount: number;
  /** Stop reading from the peer (backpressure). */
  pause(): void;
  /** Resume reading after {@link Transport.pause}. */
  resume(): void;
}

/**
 * What an adapter reports to the hub about one connection, returned by
 * {@link Ticket.open}. Call each method as the event happens; {@link Transport} is the
 * other direction (what the hub asks the adapter to do).
 */
export interface TransportListener {
  /** A complete data frame arrived. `size` is its length in bytes. */
  onMessage(data: string, isBinary: boolean, size: number): void;
  /** A protocol pong arrived. */
  onPong(): void;
  /**
   * A protocol ping arrived with `payload`. It counts as inbound traffic and toward the
   * message rate; the hub answers it through {@link Transport.pong} unless it is over the
   * rate.
   */
  onPing(payload: Uint8Array): void;
  /** The connection is closed; the hub forgets it. Idempotent. */
  onClose(code: number, reason: string): void;
}

/** Time as the hub sees it. Inject one to drive heartbeats from fake timers. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Call `fn` every `ms` milliseconds until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
  /** Call `fn` once after `ms` milliseconds unless the returned function is called first. */
  after(ms: number, fn: () => void): () => void;
}

/** The parts of an HTTP upgrade request the hub reads. Node's `IncomingMessage` fits. */
export interface UpgradeRequest {
  /** Request target, e.g. `/ws/lobby?token=…`. */
  readonly url?: string | undefined;
  /** Header names in lower case, as Node gives them. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** Address of the TCP peer. */
  readonly remoteAddress?: string | undefined;
}

/** Who is on a connection. */
export interface Identity {
  /** Stable user id; from a JWT, the `sub` claim. */
  readonly userId: string;
  /** Display name. */
  readonly username: string;
  /** When the credential expires, Unix seconds; the connection is then closed with 1008 unless refreshed. */
  readonly expiresAt?: number | undefined;
  /** The verified claims, for hooks. */
  readonly claims?: Readonly<Record<string, unknown>> | undefined;
}

/** What an {@link Authenticate} function is given. */
export interface AuthContext {
  /** The token found as docs/protocol.md section 2 says, or undefined. */
  readonly token: string | undefined;
  /** True when the route requires a token (`B/auth…`, or `requireAuth`). */
  readonly required: boolean;
  /** The upgrade request; undefined for an in-band `auth` refresh. */
  readonly request: UpgradeRequest | undefined;
  /**
   * The hub's JWT verifier, to extend rather than replace it: an identity, or a throw
   * (`unauthorized`). HMAC tokens are answered synchronously, others via a promise, so
   * `await` it.
   */
  verifyJwt(token: string): Identity | Promise<Identity>;
}

/**
 * Decides who a connection is. Return an {@link Identity}, or `null` for an anonymous
 * connection (refused with 401 where a token is required); throw (or reject) to refuse
 * with 401 `invalid_token`.
 */
export type Authenticate = (ctx: AuthContext) => Identity | null | Promise<Identity | null>;

/** A connected client, as hooks and events see it. */
export interface Client {
  /** Connection id, unique within this hub. */
  readonly id: string;
  /** The `user_id` stamped on this client's frames. */
  readonly userId: string;
  /** The `username` stamped on this client's frames. */
  readonly username: string;
  /** True when no token was given. */
  readonly anonymous: boolean;
  /** Verified token claims; undefined when anonymous. */
  readonly claims: Readonly<Record<string, unknown>> | undefined;
  /** Client address (per `trustProxy`). */
  readonly remoteAddress: string | undefined;
  /** When the connection opened, milliseconds since the epoch. */
  readonly connectedAt: number;
  /** Rooms this connection is in, in join order. */
  readonly rooms: readonly string[];
  /** Send a JSON frame to this client alone; `timestamp` is added when missing. */
  send(frame: Readonly<Record<string, unknown>>): void;
  /** Close this connection with a close code and reason. @default 1000 */
  close(code?: number, reason?: string): void;
}

/** A synchronous or asynchronous yes/no answer. */
export type Decision = boolean | Promise<boolean>;

/** Application hooks for per-room authorization (refusals answer `forbidden` and change nothing). */
export interface AuthorizationHooks {
  /** May `client` join `room`? Also asked for the room in the connection path. */
  canJoin?(client: Client, room: string): Decision;
  /** May `client` send `message` to `room`? */
  canPublish?(client: Client, room: string, message: { readonly content: string; readonly data?: Readonly<Record<string, unknown>> | undefined }): Decision;
}

/** Who a room member is, as `user_list` shows it: one entry per user. */
export interface Member {
  readonly userId: string;
  readonly username: string;
}

/** One connection's presence in a room, as brokers carry it. */
export interface PresenceEntry extends Member {
  readonly connectionId: string;
}

/** What a broker can do with the hub that started it. */
export interface BrokerHost {
  /** Deliver a serialized room frame to this process's members of `room`. */
  deliver(room: string, message: Outbound): void;
  /** Deliver a serialized room frame to those of this process's members of `room` whose connection id `accept` accepts. */
  deliverTo(room: string, message: Outbound, accept: (connectionId: string) => boolean): void;
  /** Usernames of this process's members of `room`, each user once. */
  localUsers(room: string): string[];
  /** The hub's clock, milliseconds (for the timestamps of frames the broker makes). */
  now(): number;
  /** Report a broker failure: logged at error and emitted as an `ERR_BROKER` `error` event. */
  brokerFailed(message: string, cause: unknown): void;
  /** Log a broker state change (connected, reconnected, a process gone). */
  brokerNotice(level: 'info' | 'warn', fields: object, message: string): void;
  /** Call `fn` every `ms` milliseconds on the hub's clock until the returned function is called (housekeeping such as dropping expired history). */
  every(ms: number, fn: () => void): () => void;
}

/** What one room keeps for recovery (docs/protocol.md section 9). */
export interface HistoryPolicy {
  /** How many of the room's latest messages are kept; at least 1. */
  readonly size: number;
  /** Milliseconds after the room's last message when its history is dropped. */
  readonly ttl: number;
}

/** A place in a room's stream: the offset of a message, and the stream's epoch. */
export interface StreamPosition {
  /** 1 for the room's first message, growing by 1 per message; 0 before any. */
  readonly offset: number;
  /** Names the stream; a new one starts (from offset 1) when the stream is lost. */
  readonly epoch: string;
}

/** The answer of {@link BrokerHistory.read}. */
export interface HistoryRead {
  /** The room's position: the latest message delivered to this process's members, or kept in the stream. */
  readonly position: StreamPosition;
  /**
   * With `since`: every message after it up to `position`, in order, or undefined when they
   * are not all kept any more (another epoch, trimmed, expired, or `since` is ahead).
   */
  readonly messages: readonly Outbound[] | undefined;
}

/**
 * A broker's room streams: the history of docs/protocol.md section 9. A broker that has one
 * numbers each room's messages across every process and keeps the latest of them.
 */
export interface BrokerHistory {
  /**
   * Number a message, keep it, and deliver it (`head + offset + tail`, an {@link Outbound}
   * with that `offset`) to every member of `room` in every process, in offset order.
   * Returns (or resolves to) the offset once this process's members have it. Throws (or
   * rejects) a {@link RoomwireError} with code `unavailable` when the stream cannot be
   * reached; the message then reaches no one.
   */
  publish(room: string, policy: HistoryPolicy, message: MessageParts): number | Promise<number>;
  /**
   * The room's position and, with `since`, the messages after it. Every message delivered
   * in this process after the call starts has a higher offset than the `position` of a
   * read that resolves after it, or is in `messages`.
   */
  read(room: string, policy: HistoryPolicy, since: StreamPosition | undefined): HistoryRead | Promise<HistoryRead>;
  /** What is kept in this process, for {@link HubStats}. */
  stats(): HistoryStats;
}

/** One connection cap to count a connection against (docs/protocol.md section 10). */
export interface SeatKey {
  /** Per user (`user_id`, authenticated connections only) or per client address. */
  readonly kind: 'user' | 'address';
  /** The user id or the address. */
  readonly id: string;
  /** Connections allowed at once for this key, across the hub. */
  readonly cap: number;
}

/**
 * Counts open connections per user and per address, across every process a broker spans,
 * so that caps hold hub-wide. The count must be atomic: racing upgrades on several processes
 * never leave more than the cap open.
 */
export interface BrokerSeats {
  /**
   * Count one connection on every key, unless one is at its cap: returns (or resolves to)
   * the index of the first key at its cap, or -1 when the connection was counted.
   */
  acquire(keys: readonly SeatKey[]): number | Promise<number>;
  /** A connection counted by {@link BrokerSeats.acquire} closed (or never opened). */
  release(keys: readonly Pick<SeatKey, 'kind' | 'id'>[]): void;
}

/** What a broker's history holds in this process. */
export interface HistoryStats {
  /** Rooms with a stream kept in this process's memory (0 when the streams live in Redis). */
  readonly rooms: number;
  /** Messages kept in this process's memory. */
  readonly messages: number;
  /** Bytes of those messages (UTF-8). */
  readonly bytes: number;
}

/** How a broker is doing; part of {@link HubStats}. */
export interface BrokerHealth {
  /** `memory` for the in-process broker, `redis` for the Redis broker. */
  readonly kind: string;
  /** Whether the broker reaches the other processes now (always true in memory). */
  readonly connected: boolean;
  /** Hub processes it knows of, this one included (1 when alone or disconnected). */
  readonly processes: number;
}

/**
 * Carries room traffic and presence between hub processes. The default
 * ({@link createMemoryBroker}) keeps everything in this process; a Redis broker spreads
 * one hub over several.
 */
export interface Broker {
  /** Called once by {@link createHub}. */
  start(host: BrokerHost): void | Promise<void>;
  /** Deliver a room frame to every member of `room` in every process, this one included, in publish order. */
  publish(room: string, message: Outbound): void;
  /** A connection joined `room`. */
  join(room: string, entry: PresenceEntry): void;
  /** A connection left `room` (or closed). */
  leave(room: string, entry: PresenceEntry): void;
  /** Usernames in `room` across all processes, each user once. */
  users(room: string): readonly string[] | Promise<readonly string[]>;
  /** Release resources; called by {@link Hub.close}. */
  close(): void | Promise<void>;
  /** How the broker is doing; assumed connected and alone when absent. */
  health?(): BrokerHealth;
  /** The room streams for history (docs/protocol.md section 9); a hub with history on needs them. */
  readonly history?: BrokerHistory;
  /**
   * Connection counts for the caps per user and per address (docs/protocol.md section 10);
   * without them a hub counts its own connections only.
   */
  readonly seats?: BrokerSeats;
}

/**
 * Where the hub writes what it does: pino's method shape (an object of fields, then a
 * message), so a pino logger fits as-is. The hub is silent without one.
 *
 * @example
 * ```ts
 * import pino from 'pino';
 * const hub = createHub({ logger: pino() });
 * ```
 */
export interface Logger {
  error(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  debug(fields: object, message?: string): void;
  /** pino's level check; when present, the hub skips building debug entries nobody reads. */
  isLevelEnabled?(level: string): boolean;
}
