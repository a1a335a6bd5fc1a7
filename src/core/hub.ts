/**
 * `createHub`: the pure core. It decides upgrades (contract section 1), owns
 * connections, rooms, the protocol and its limits, and runs the one heartbeat sweep.
 * It imports neither `node:http` nor `ws`: adapters hand it requests and transports.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { EventEmitter } from 'eventemitter3';
import { createMemoryBroker } from '../brokers/memory';
import { createRedisBroker } from '../brokers/redis';
import { createJwtVerifier, defaultAuthenticate, extractToken, pickUsername, type JwtVerifier } from './auth';
import { systemClock } from './clock';
import { resolveConfig, ratePeriodMs, type HubConfig, type HubConfigInput } from './config';
import { Connection, checkClose, type ConnectionOwner } from './connection';
import { RoomwireError, TOKEN_PROBLEMS, WIRE_ERRORS, configError, type TokenProblem, type WireErrorCode } from './errors';
import { checkLiveness, sweepPeriod, type TerminationReason } from './heartbeat';
import { compileOrigins } from './origin';
import {
  Outbound,
  encodeAck,
  encodeAuth,
  encodeMembership,
  errorContent,
  encodeMessage,
  encodeUserList,
  identityFragment,
  isValidRoomName,
  rawMember,
  type ClientMessage,
  type RequestId,
} from './protocol';
import { AddressLimiter } from './rate-limit';
import { RoomRegistry } from './rooms';
import { matchRoute, type Route } from './routes';
import { Counters, DURATION_BUCKETS, type RejectReason } from './stats';
import type {
  Authenticate,
  AuthorizationHooks,
  Broker,
  BrokerHealth,
  BrokerHost,
  Client,
  Clock,
  Decision,
  Identity,
  Logger,
  Transport,
  TransportListener,
  UpgradeRequest,
} from './types';

/** Everything {@link createHub} accepts: configuration plus the application's seams. */
export interface HubOptions extends HubConfigInput, AuthorizationHooks {
  /** Replace or extend token verification. @default verify the token as a JWT per `jwt`; no token is anonymous */
  authenticate?: Authenticate;
  /**
   * Carries room traffic and presence.
   * @default createRedisBroker({ url: redisUrl }) when `redisUrl` is set, else createMemoryBroker()
   */
  broker?: Broker;
  /** Time source for heartbeats, rate limits and timestamps. @default the system clock */
  clock?: Clock;
  /** Where to log (pino's method shape; pino works as-is). @default silent */
  logger?: Logger;
}

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

/** An accepted upgrade, waiting for the adapter's handshake. Call exactly one of its methods. */
export interface Ticket {
  /** Who will be on the connection; null for anonymous. */
  readonly identity: Identity | null;
  /** The room of the path, joined on open. */
  readonly room: string | undefined;
  /** The handshake succeeded: attach the transport and start the connection. */
  open(transport: Transport): TransportListener;
  /** The handshake failed or the socket went away: release the reserved slot. */
  cancel(): void;
}

/** The hub's answer to an upgrade request. */
export type Admission =
  | { readonly accepted: true; readonly ticket: Ticket }
  | {
      readonly accepted: false;
      /** HTTP status: 404, 503, 403, 429 or 401. */
      readonly status: number;
      /** Response headers (`Retry-After`, `WWW-Authenticate`). */
      readonly headers: Readonly<Record<string, string>>;
      /** Why, for the response body and for logs. */
      readonly reason: RejectReason;
      /**
       * What exactly, in one sentence for the response body: the token problem of a 401
       * (never the token), or what is wrong with the path of a 404.
       */
      readonly detail?: string;
    };

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
  /** Milliseconds to wait for closing handshakes before terminating the rest. @default 5000 */
  readonly timeout?: number;
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
  /** Classify a request target; undefined when it is outside the base path (not the hub's). */
  route(url: string): Route | undefined;
  /**
   * Decide an upgrade request per contract section 1: route (404), enabled (503),
   * origin (403), attempts per address (429), capacity (503), token (401), in that order.
   * Adapters call this, then perform the handshake and call `ticket.open`. The answer is
   * synchronous when deciding needs no asynchronous work (no token, or a synchronous
   * `authenticate`), else a promise.
   *
   * @param route - the request's route, when the caller has matched it already
   */
  admit(request: UpgradeRequest, route?: Route): Admission | Promise<Admission>;
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
   * @example hub.publish('lobby', 'maintenance in 5 minutes')
   */
  publish(room: string, content: string, options?: PublishOptions): void;
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
  /** Close every connection (1001 by default), stop the heartbeat and the broker. */
  close(options?: CloseOptions): Promise<void>;
}

const SHUTDOWN_REASON = 'server shutting down';

/**
 * How long a peer may take to answer the server's close frame before its TCP connection
 * is dropped (`ws` alone would wait 30 s). A peer closed with 1008 (a flood, an expired
 * token) is no longer read at all, so waiting long for its answer would only hold a socket.
 */
const CLOSE_TIMEOUT = 5000;
const ABUSE_CLOSE_TIMEOUT = 1000;

function noop(): void {}
const SILENT: Logger = { error: noop, warn: noop, info: noop, debug: noop };

/**
 * The application's logger, made unable to throw into the hub: logging happens in the
 * middle of handling a frame, a close or a broker failure, and a logger that chokes on a
 * field (a circular object, a BigInt) must not break any of them.
 */
function guardLogger(log: Logger): Logger {
  const wrap = (level: 'error' | 'warn' | 'info' | 'debug') => (fields: object, message?: string) => {
    try {
      log[level](fields, message);
    } catch {
      // nowhere left to report a logger that throws
    }
  };
  return {
    error: wrap('error'),
    warn: wrap('warn'),
    info: wrap('info'),
    debug: wrap('debug'),
    isLevelEnabled: (level: string) => {
      try {
        return log.isLevelEnabled?.(level) ?? true;
      } catch {
        return true;
      }
    },
  };
}

/**
 * `url` with the values of every `token` query parameter replaced, for logs: tokens
 * never reach a log line, at any level.
 */
function redactUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  if (!params.has('token')) return url;
  const out = new URLSearchParams();
  for (const [k, v] of params) out.append(k, k === 'token' ? '[redacted]' : v);
  return `${url.slice(0, q)}?${out.toString()}`;
}

function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof (v as Promise<T> | undefined)?.then === 'function';
}

function firstHeader(req: UpgradeRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? (v[0] as string | undefined) : (v as string | undefined);
}

function refusal(status: number, reason: RejectReason, headers: Record<string, string> = {}, detail?: string): Admission {
  return detail === undefined ? { accepted: false, status, headers, reason } : { accepted: false, status, headers, reason, detail };
}

/** The problem of a refused token, from what `authenticate` threw. */
function tokenProblem(err: unknown): TokenProblem {
  const detail = (err as RoomwireError | undefined)?.detail;
  return detail !== undefined && Object.hasOwn(TOKEN_PROBLEMS, detail) ? (detail as TokenProblem) : 'refused';
}

class RoomwireHub extends EventEmitter<HubEvents> implements Hub, ConnectionOwner, BrokerHost {
  readonly config: HubConfig;
  readonly counters = new Counters();
  readonly maxMessageSize: number;
  readonly readBufferSize: number;
  readonly writeBufferSize: number;
  readonly maxBuffered: number;
  readonly messageRatePerMs: number;
  readonly messageBurst: number;

  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly broker: Broker;
  private readonly hooks: AuthorizationHooks;
  private readonly authenticate: Authenticate;
  private readonly verifyJwt: JwtVerifier;
  private readonly originAllowed: (origin: string) => boolean;
  private readonly limiter: AddressLimiter;
  private readonly connections = new Set<Connection>();
  private readonly rooms = new RoomRegistry<Connection>();
  private readonly idPrefix = randomUUID().slice(0, 8);
  private readonly sweepMs: number;
  private readonly stopSweep: () => void;
  private nextId = 0;
  private pending = 0;
  private closePromise: Promise<void> | undefined;
  /** Set as shutdown starts (before `closePromise` exists: it is assigned when it returns). */
  private shuttingDown = false;
  private onEmpty: (() => void) | undefined;
  private readonly started: Promise<void>;

  constructor(options: HubOptions) {
    super();
    this.config = resolveConfig(options);
    const cfg = this.config;
    const custom = options.authenticate;
    const hasKey = cfg.jwt.secret !== undefined || cfg.jwt.publicKey !== undefined || cfg.jwt.jwksUrl !== undefined;
    if (cfg.requireAuth && !hasKey && custom === undefined) {
      throw configError([{ name: 'requireAuth', message: 'needs jwt.secret, jwt.publicKey, jwt.jwksUrl or an authenticate function' }]);
    }
    this.clock = options.clock ?? systemClock;
    this.log = options.logger === undefined ? SILENT : guardLogger(options.logger);
    if (cfg.jwt.secret !== undefined && Buffer.byteLength(cfg.jwt.secret) < 32) {
      // RFC 7518 section 3.2: an HS256 key must be at least as long as the hash (32 bytes).
      this.log.warn({ bytes: Buffer.byteLength(cfg.jwt.secret) }, 'the JWT secret (WEBSOCKET_JWT_SECRET) is shorter than 32 bytes: a short HMAC secret can be guessed offline from any one token; use 32 random bytes or more (RFC 7518)');
    }
    this.broker = options.broker ?? (cfg.redisUrl === undefined ? createMemoryBroker() : createRedisBroker({ url: cfg.redisUrl }));
    this.hooks = { canJoin: options.canJoin, canPublish: options.canPublish };
    this.verifyJwt = createJwtVerifier(cfg.jwt, () => this.clock.now());
    this.authenticate = custom ?? defaultAuthenticate;
    this.originAllowed = compileOrigins(cfg.allowedOrigins);
    this.limiter = new AddressLimiter(cfg.connectRate);
    this.maxMessageSize = cfg.maxMessageSize;
    this.readBufferSize = cfg.readBufferSize;
    this.writeBufferSize = cfg.writeBufferSize;
    this.maxBuffered = cfg.maxBuffered;
    this.messageRatePerMs = cfg.messageRate.count / ratePeriodMs(cfg.messageRate);
    this.messageBurst = cfg.messageRate.burst;
    this.sweepMs = sweepPeriod(cfg);
    this.stopSweep = this.clock.every(this.sweepMs, () => this.sweep());
    const started = this.broker.start(this);
    this.started = isPromise(started)
      ? started.then(noop, (err: unknown) => this.report('ERR_BROKER', 'broker failed to start', err, undefined))
      : Promise.resolve();
  }

  now(): number {
    return this.clock.now();
  }

  /** Whether debug entries are read: builds none per connection for a silent logger. */
  private debugging(): boolean {
    const log = this.log;
    return log !== SILENT && (log.isLevelEnabled?.('debug') ?? true);
  }

  get size(): number {
    return this.connections.size;
  }

  get closing(): boolean {
    return this.closePromise !== undefined || this.shuttingDown;
  }

  route(url: string): Route | undefined {
    return matchRoute(this.config.path, url);
  }

  // ---- admission (contract section 1) ----------------------------------------------

  admit(request: UpgradeRequest, route: Route | undefined = this.route(request.url ?? '/')): Admission | Promise<Admission> {
    const cfg = this.config;
    if (route === undefined) return this.reject(refusal(404, 'not_found'), request);
    const address = this.clientAddress(request);
    // Every request under B counts as an attempt, whatever its answer.
    const retryAfter = this.limiter.take(address, this.clock.now());
    if (route.kind === 'invalid') return this.reject(refusal(404, 'not_found', {}, route.problem), request);
    if (this.closing) return this.reject(refusal(503, 'shutting_down'), request);
    if (!cfg.enabled) return this.reject(refusal(503, 'disabled'), request);
    const origin = firstHeader(request, 'origin');
    if (origin !== undefined && !this.originAllowed(origin)) return this.reject(refusal(403, 'origin'), request);
    if (retryAfter > 0) return this.reject(refusal(429, 'rate_limited', { 'Retry-After': String(retryAfter) }), request);
    if (this.connections.size + this.pending >= cfg.maxConnections) return this.reject(refusal(503, 'capacity'), request);

    const token = extractToken(request, route.search);
    const required = route.auth || cfg.requireAuth;
    this.pending++; // the slot is held while the identity is decided
    let identity: Identity | null | Promise<Identity | null>;
    try {
      identity = this.authenticate({ token, required, request, verifyJwt: this.verifyJwt });
    } catch (err) {
      return this.unauthorized(request, tokenProblem(err));
    }
    if (!isPromise<Identity | null>(identity)) return this.admitted(identity, token, required, route, address, request);
    // Promise.resolve: any thenable becomes a native promise, which adapters can tell apart.
    return Promise.resolve(identity).then(
      (id) => this.admitted(id, token, required, route, address, request),
      (err: unknown) => this.unauthorized(request, tokenProblem(err)),
    );
  }

  private unauthorized(request: UpgradeRequest, problem: TokenProblem): Admission {
    this.pending--;
    const challenge = problem === 'missing' ? 'Bearer' : 'Bearer error="invalid_token"';
    const a = refusal(401, 'unauthorized', { 'WWW-Authenticate': challenge }, `a valid token is required (${problem}): ${TOKEN_PROBLEMS[problem]}`);
    this.counters.rejected.unauthorized++;
    this.log.info({ status: 401, reason: 'unauthorized', cause: problem, url: redactUrl(request.url), address: request.remoteAddress }, 'upgrade refused');
    return a;
  }

  private admitted(identity: Identity | null, token: string | undefined, required: boolean, route: Route, address: string, request: UpgradeRequest): Admission {
    if (identity === null && required) return this.unauthorized(request, token === undefined ? 'missing' : 'refused');
    if (this.closing) {
      this.pending--;
      return this.reject(refusal(503, 'shutting_down'), request);
    }
    return { accepted: true, ticket: this.ticket(identity, route.room, address) };
  }

  private reject(a: Admission, request?: UpgradeRequest): Admission {
    if (!a.accepted) {
      this.counters.rejected[a.reason]++;
      if (this.debugging()) this.log.debug({ status: a.status, reason: a.reason, detail: a.detail, url: redactUrl(request?.url), address: request?.remoteAddress }, 'upgrade refused');
    }
    return a;
  }

  /**
   * The client address (contract section 5): with N = `trustProxy` proxies, the entry N
   * places from the right of the `X-Forwarded-For` entries followed by the peer address
   * (the first entry when there are fewer), or the peer address when that entry is not a
   * bare IP address. Entries a client writes itself sit to the left and change nothing.
   */
  private clientAddress(request: UpgradeRequest): string {
    const peer = request.remoteAddress ?? 'unknown';
    const hops = this.config.trustProxy;
    if (hops === 0) return peer;
    const header = request.headers['x-forwarded-for'];
    if (header === undefined) return peer;
    const entries = (typeof header === 'string' ? header : header.join(',')).split(',');
    const at = entries.length - hops;
    const chosen = (at < 0 ? entries[0] : entries[at])?.trim() ?? '';
    return isIP(chosen) === 0 ? peer : chosen;
  }

  private ticket(identity: Identity | null, room: string | undefined, address: string): Ticket {
    return new AdmissionTicket(this, identity, room, address);
  }

  /** @internal Called by a ticket exactly once. */
  settle(ticket: AdmissionTicket, transport: Transport | undefined): Connection | undefined {
    this.pending--;
    if (transport === undefined) {
      this.counters.rejected.handshake++;
      return undefined;
    }
    return this.openConnection(transport, ticket.identity, ticket.room, ticket.address);
  }

  private openConnection(transport: Transport, identity: Identity | null, room: string | undefined, address: string): Connection {
    const id = `${this.idPrefix}-${(this.nextId++).toString(36)}`;
    let conn: Connection;
    if (identity === null) {
      const userId = randomUUID();
      conn = new Connection(this, transport, id, userId, `guest-${userId.slice(0, 8)}`, true, undefined, undefined, address);
    } else {
      // Whatever `authenticate` returned, a username is stamped clean (contract section 2).
      const username = pickUsername(identity.username, identity.userId);
      conn = new Connection(this, transport, id, identity.userId, username, false, identity.claims, identity.expiresAt, address);
    }
    this.connections.add(conn);
    this.counters.connectionsAccepted++;
    if (this.debugging()) this.log.debug({ client: id, userId: conn.userId, anonymous: conn.anonymous, address, room }, 'connection opened');
    this.notify('connection', conn);
    if (this.closing) {
      conn.close(1001, SHUTDOWN_REASON);
    } else if (room !== undefined) {
      conn.enqueue(() => this.join(conn, room));
    }
    return conn;
  }

  // ---- messages (contract section 3) -------------------------------------------------

  dispatch(conn: Connection, msg: ClientMessage, named: string | undefined, text: string): void | Promise<void> {
    const id = msg.id;
    switch (msg.type) {
      case 'message':
        return this.say(conn, msg.room, msg.content, msg.data, text, id);
      case 'join':
        return this.join(conn, msg.room, id);
      case 'leave':
        return this.leave(conn, msg.room, id);
      case 'user_list':
        if (!conn.roomsJoined.has(msg.room)) return conn.error('not_in_room', msg.room, id);
        return this.sendUserList(conn, msg.room, id);
      case 'ping':
        return conn.pongFrame(id);
      case 'pong':
        return;
      case 'auth':
        return this.refresh(conn, msg.data.token, named, id);
    }
  }

  /**
   * Answer a `join`, `leave` or `message` that carried an id with its `ack` (contract
   * section 8), once `pending` (the frames the request causes for the sender) is done.
   */
  private acked(pending: void | Promise<void>, conn: Connection, room: string, id: RequestId | undefined): void | Promise<void> {
    if (id === undefined) return pending;
    const ack = () => {
      const now = this.clock.now();
      conn.sendOutbound(new Outbound(encodeAck(id, room, Math.floor(now / 1000))), now);
    };
    if (isPromise<void>(pending)) return pending.then(ack);
    ack();
  }

  private joinRefusal(conn: Connection, room: string): WireErrorCode | undefined {
    if (conn.roomsJoined.size >= this.config.maxRoomsPerConnection) return 'too_many_rooms';
    const max = this.config.maxRoomSize;
    if (max > 0 && (this.rooms.get(room)?.size ?? 0) >= max) return 'room_full';
    return undefined;
  }

  private join(conn: Connection, room: string, id?: RequestId): void | Promise<void> {
    if (!conn.open) return; // closed by a 'connection' listener before its path join
    if (conn.roomsJoined.has(room)) return this.acked(this.sendUserList(conn, room), conn, room, id);
    const refused = this.joinRefusal(conn, room);
    if (refused !== undefined) return conn.error(refused, room, id);
    const hook = this.hooks.canJoin;
    if (hook === undefined) return this.acked(this.addMember(conn, room), conn, room, id);
    const allowed = this.ask(conn, () => hook(conn, room));
    if (allowed === true) return this.acked(this.addMember(conn, room), conn, room, id);
    if (allowed === false) return conn.error('forbidden', room, id);
    return allowed.then((ok) => {
      if (!conn.open) return;
      if (!ok) return conn.error('forbidden', room, id);
      // Other connections may have filled the room while the hook ran.
      if (conn.roomsJoined.has(room)) return this.acked(this.sendUserList(conn, room), conn, room, id);
      const late = this.joinRefusal(conn, room);
      if (late !== undefined) return conn.error(late, room, id);
      return this.acked(this.addMember(conn, room), conn, room, id);
    });
  }

  private addMember(conn: Connection, room: string): void | Promise<void> {
    conn.roomsJoined.set(room, this.rooms.join(room, conn));
    this.broker.join(room, { connectionId: conn.id, userId: conn.userId, username: conn.username });
    this.broker.publish(room, new Outbound(encodeMembership('join', room, conn.identity, this.seconds())));
    this.notify('join', conn, room);
    return this.sendUserList(conn, room);
  }

  private leave(conn: Connection, room: string, id?: RequestId): void {
    if (!conn.roomsJoined.has(room)) return conn.error('not_in_room', room, id);
    // The leaver is still a member here, so it receives its own leave notice.
    this.broker.publish(room, new Outbound(encodeMembership('leave', room, conn.identity, this.seconds())));
    this.removeMember(conn, room);
    this.notify('leave', conn, room);
    this.acked(undefined, conn, room, id);
  }

  private removeMember(conn: Connection, room: string): void {
    conn.roomsJoined.delete(room);
    this.rooms.leave(room, conn);
    this.broker.leave(room, { connectionId: conn.id, userId: conn.userId, username: conn.username });
  }

  private say(conn: Connection, room: string, content: string, data: Record<string, unknown> | undefined, text: string, id?: RequestId): void | Promise<void> {
    if (!conn.roomsJoined.has(room)) return conn.error('not_in_room', room, id);
    const hook = this.hooks.canPublish;
    if (hook === undefined) return this.deliverMessage(conn, room, content, data, text, id);
    const allowed = this.ask(conn, () => hook(conn, room, { content, data }));
    if (allowed === true) return this.deliverMessage(conn, room, content, data, text, id);
    if (allowed === false) return conn.error('forbidden', room, id);
    return allowed.then((ok) => {
      if (!conn.open) return;
      if (!ok) return conn.error('forbidden', room, id);
      if (!conn.roomsJoined.has(room)) return conn.error('not_in_room', room, id);
      this.deliverMessage(conn, room, content, data, text, id);
    });
  }

  private deliverMessage(conn: Connection, room: string, content: string, data: Record<string, unknown> | undefined, raw: string, id: RequestId | undefined): void {
    // `data` goes out as the client wrote it: checked to be an object, never serialized again.
    const text = encodeMessage(room, content, data === undefined ? undefined : rawMember(raw, 'data'), conn.identity, this.seconds());
    // Local members, the sender among them, get the frame within publish: the ack follows it.
    this.broker.publish(room, new Outbound(text));
    this.notify('message', conn, room, { content, data });
    this.acked(undefined, conn, room, id);
  }

  private sendUserList(conn: Connection, room: string, id?: RequestId): void | Promise<void> {
    let users: readonly string[] | Promise<readonly string[]>;
    try {
      users = this.broker.users(room);
    } catch (err) {
      this.report('ERR_BROKER', 'broker could not list users', err, conn);
      users = this.localUsers(room);
    }
    if (!isPromise<readonly string[]>(users)) return this.sendList(conn, room, users, id);
    return users.then(
      (list) => this.sendList(conn, room, list, id),
      (err: unknown) => {
        this.report('ERR_BROKER', 'broker could not list users', err, conn);
        this.sendList(conn, room, this.localUsers(room), id);
      },
    );
  }

  private sendList(conn: Connection, room: string, users: readonly string[], id: RequestId | undefined): void {
    const now = this.clock.now();
    conn.sendOutbound(new Outbound(encodeUserList(room, users, Math.floor(now / 1000), id)), now);
  }

  private refresh(conn: Connection, token: string, named: string | undefined, id: RequestId | undefined): void | Promise<void> {
    if (conn.anonymous) return conn.error('forbidden', named, id);
    const verify = async (): Promise<void> => {
      let identity: Identity | null;
      try {
        identity = await this.authenticate({ token, required: true, request: undefined, verifyJwt: this.verifyJwt });
      } catch {
        identity = null;
      }
      if (!conn.open) return;
      if (identity === null) return conn.error('unauthorized', named, id);
      if (identity.userId !== conn.userId) return conn.error('forbidden', named, id);
      conn.expiresAt = identity.expiresAt === undefined ? 0 : identity.expiresAt * 1000;
      conn.claims = identity.claims;
      const now = this.clock.now();
      conn.sendOutbound(new Outbound(encodeAuth(identity.expiresAt, Math.floor(now / 1000), id)), now);
    };
    return verify();
  }

  /** Run an authorization hook; a throw or rejection counts as a refusal and is reported. */
  private ask(conn: Connection, hook: () => Decision): boolean | Promise<boolean> {
    let answer: Decision;
    try {
      answer = hook();
    } catch (err) {
      this.report('ERR_HOOK', 'authorization hook threw', err, conn);
      return false;
    }
    if (!isPromise<boolean>(answer)) return answer === true;
    return answer.then(
      (v) => v === true,
      (err: unknown) => {
        this.report('ERR_HOOK', 'authorization hook rejected', err, conn);
        return false;
      },
    );
  }

  // ---- delivery (BrokerHost) ---------------------------------------------------------

  deliver(room: string, message: Outbound): void {
    this.deliverMatching(room, message, undefined);
  }

  deliverTo(room: string, message: Outbound, accept: (connectionId: string) => boolean): void {
    this.deliverMatching(room, message, accept);
  }

  private deliverMatching(room: string, message: Outbound, accept: ((connectionId: string) => boolean) | undefined): void {
    const r = this.rooms.get(room);
    if (r === undefined) return;
    const now = this.clock.now();
    let n = 0;
    for (const c of r.members) {
      if (!c.open || (accept !== undefined && !accept(c.id))) continue;
      c.track(c.transport.send(message), now);
      n++;
    }
    const counters = this.counters;
    counters.deliveries += n;
    counters.framesOut += n;
    counters.bytesOut += n * Buffer.byteLength(message.text);
  }

  localUsers(room: string): string[] {
    return this.rooms.get(room)?.usernames() ?? [];
  }

  brokerFailed(message: string, cause: unknown): void {
    this.report('ERR_BROKER', message, cause, undefined);
  }

  brokerNotice(level: 'info' | 'warn', fields: object, message: string): void {
    this.log[level](fields, message);
  }

  publish(room: string, content: string, options: PublishOptions = {}): void {
    if (typeof room !== 'string' || !isValidRoomName(room)) throw new RoomwireError('invalid_room', `"${String(room)}" is not a valid room name`);
    if (typeof content !== 'string') throw new RoomwireError('ERR_INVALID_ARGUMENT', 'content must be a string');
    if (options.data !== undefined && (typeof options.data !== 'object' || options.data === null || Array.isArray(options.data))) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', 'data must be an object');
    }
    let dataJson: string | undefined;
    if (options.data !== undefined) {
      try {
        dataJson = JSON.stringify(options.data);
      } catch (err) {
        throw new RoomwireError('ERR_INVALID_ARGUMENT', `data cannot be serialized as JSON: ${(err as Error).message}`, { cause: err });
      }
    }
    const identity = identityFragment(options.userId ?? 'server', pickUsername(options.username ?? 'server'));
    this.broker.publish(room, new Outbound(encodeMessage(room, content, dataJson, identity, this.seconds())));
  }

  // ---- ConnectionOwner ---------------------------------------------------------------

  errorSent(conn: Connection, code: WireErrorCode, room: string | undefined, detail?: string): void {
    this.counters.errors[code]++;
    if (this.debugging()) this.log.debug({ client: conn.id, code, room, detail }, 'error frame sent');
    if (this.listenerCount('error') > 0) {
      const content = errorContent(code, detail);
      const text = room === undefined ? content : `${content} (room "${room}")`;
      try {
        this.emit('error', new RoomwireError(code, text), conn);
      } catch {
        // A throwing 'error' listener must not stop the error frame or break the socket.
      }
    }
  }

  failed(conn: Connection, err: unknown): void {
    this.report('ERR_HOOK', 'handling a message failed', err, conn);
    conn.close(1011, 'internal error');
  }

  closeStarted(conn: Connection, code: number, reason: string): () => void {
    // During a shutdown, hub.close() bounds every handshake with its own timeout.
    if (this.closing) return noop;
    return this.clock.after(code === 1008 ? ABUSE_CLOSE_TIMEOUT : CLOSE_TIMEOUT, () => conn.abandon(code, reason));
  }

  terminated(conn: Connection, reason: TerminationReason): void {
    this.counters.terminations[reason]++;
    this.log.info({ client: conn.id, userId: conn.userId, reason }, 'connection terminated');
  }

  closed(conn: Connection, code: number, reason: string): void {
    if (!this.connections.delete(conn)) return;
    const now = this.clock.now();
    this.counters.connectionsClosed++;
    this.counters.observeDuration((now - conn.connectedAt) / 1000);
    if (conn.roomsJoined.size > 0) {
      const ts = Math.floor(now / 1000);
      for (const room of [...conn.roomsJoined.keys()]) {
        this.removeMember(conn, room);
        this.broker.publish(room, new Outbound(encodeMembership('leave', room, conn.identity, ts)));
        this.notify('leave', conn, room);
      }
    }
    if (this.debugging()) this.log.debug({ client: conn.id, code, reason, seconds: (now - conn.connectedAt) / 1000 }, 'connection closed');
    this.notify('disconnect', conn, code, reason);
    if (this.connections.size === 0) this.onEmpty?.();
  }

  private report(code: 'ERR_HOOK' | 'ERR_BROKER', message: string, cause: unknown, conn: Connection | undefined): void {
    this.log.error({ code, client: conn?.id, err: cause }, message);
    try {
      this.emit('error', new RoomwireError(code, message, { cause }), conn);
    } catch {
      // An 'error' listener that throws has nowhere left to report to.
    }
  }

  /**
   * Emit an application event. A listener that throws must not break the protocol for
   * the client (or the others in the room): the throw is reported as an `ERR_HOOK` error.
   */
  private notify<E extends Exclude<keyof HubEvents, 'error'>>(event: E, ...args: HubEvents[E]): void {
    if (this.listenerCount(event) === 0) return;
    try {
      (this.emit as (event: string, ...args: unknown[]) => boolean)(event, ...args);
    } catch (err) {
      this.report('ERR_HOOK', `a '${event}' listener threw`, err, args[0] as Connection);
    }
  }

  // ---- heartbeat ----------------------------------------------------------------------

  private sweep(): void {
    const now = this.clock.now();
    const cfg = this.config;
    for (const c of this.connections) checkLiveness(c, now, cfg, this.sweepMs);
    this.limiter.evict(now);
  }

  // ---- queries -----------------------------------------------------------------------

  clients(): Client[] {
    return [...this.connections];
  }

  roomNames(): string[] {
    return this.rooms.names();
  }

  members(room: string): Client[] {
    const r = this.rooms.get(room);
    return r === undefined ? [] : [...r.members];
  }

  largestRooms(limit: number): { readonly room: string; readonly members: number }[] {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RoomwireError('ERR_INVALID_ARGUMENT', 'limit must be an integer of at least 0');
    return this.rooms.largest(limit).map((r) => ({ room: r.name, members: r.size }));
  }

  stats(): HubStats {
    const c = this.counters;
    return {
      connections: this.connections.size,
      pending: this.pending,
      connectionsAccepted: c.connectionsAccepted,
      connectionsClosed: c.connectionsClosed,
      rejected: { ...c.rejected },
      framesIn: c.framesIn,
      bytesIn: c.bytesIn,
      messagesIn: { ...c.messagesIn },
      framesOut: c.framesOut,
      bytesOut: c.bytesOut,
      deliveries: c.deliveries,
      errors: { ...c.errors },
      terminations: { ...c.terminations },
      rooms: this.rooms.size,
      roomSizes: this.rooms.sizeCounts(),
      connectionDurations: {
        buckets: DURATION_BUCKETS,
        counts: [...c.durationCounts],
        sum: c.durationSeconds,
        count: c.connectionsClosed,
      },
      broker: this.broker.health?.() ?? { kind: 'custom', connected: true, processes: 1 },
    };
  }

  ready(): Promise<void> {
    return this.started;
  }

  private seconds(): number {
    return Math.floor(this.clock.now() / 1000);
  }

  // ---- shutdown ----------------------------------------------------------------------

  close(options: CloseOptions = {}): Promise<void> {
    if (this.closePromise === undefined) checkClose(options.code ?? 1001, options.reason ?? SHUTDOWN_REASON);
    this.closePromise ??= this.shutdown(options);
    return this.closePromise;
  }

  private async shutdown(options: CloseOptions): Promise<void> {
    this.shuttingDown = true;
    this.stopSweep();
    const code = options.code ?? 1001;
    const reason = options.reason ?? SHUTDOWN_REASON;
    this.log.info({ connections: this.connections.size, code }, 'hub closing');
    for (const c of this.connections) c.close(code, reason);
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => {
        const cancel = this.clock.after(options.timeout ?? 5000, () => resolve());
        this.onEmpty = () => {
          cancel();
          resolve();
        };
      });
      this.onEmpty = undefined;
      for (const c of [...this.connections]) {
        c.transport.terminate();
        c.closed(1006, 'close timeout');
      }
    }
    await this.broker.close();
  }
}

/** An accepted upgrade waiting for its handshake; a class, so admitting allocates no closures. */
class AdmissionTicket implements Ticket {
  private settled = false;

  constructor(
    private readonly hub: RoomwireHub,
    readonly identity: Identity | null,
    readonly room: string | undefined,
    readonly address: string,
  ) {}

  open(transport: Transport): TransportListener {
    if (this.settled) throw new RoomwireError('ERR_TRANSPORT', 'ticket already used');
    this.settled = true;
    return this.hub.settle(this, transport) as Connection;
  }

  cancel(): void {
    if (this.settled) return;
    this.settled = true;
    this.hub.settle(this, undefined);
  }
}

/**
 * Create a hub. Every option is optional; see {@link HubConfig} for the settings and
 * their defaults, and {@link configFromEnv} to read them from the environment. Throws
 * an `ERR_INVALID_CONFIG` {@link RoomwireError} naming every bad option.
 *
 * The hub knows no HTTP framework: attach it with an adapter, {@link roomwire/node!attach}
 * (Node `http`/`https`), {@link roomwire/express!attach}, {@link roomwire/koa!attach} or the
 * Fastify plugin {@link roomwire/fastify!roomwire}; or run {@link roomwire/server!startServer}.
 * Its clients connect with {@link roomwire/client!createClient} (or any WebSocket).
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { createHub, configFromEnv } from 'roomwire';
 * import { attach } from 'roomwire/node';
 *
 * const hub = createHub(configFromEnv());
 * const server = http.createServer();
 * attach(hub, server);
 * server.listen(8080);
 * ```
 */
export function createHub(options: HubOptions = {}): Hub {
  return new RoomwireHub(options);
}
