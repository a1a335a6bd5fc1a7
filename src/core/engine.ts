/**
 * The hub's engine: connections, rooms, the messages of docs/protocol.md section 3, delivery
 * to members, the heartbeat sweep's work and shutdown. It is what a connection reports to
 * ({@link ConnectionOwner}) and what brokers reach through {@link Engine.brokerHost}; the
 * application sees it only through the {@link Hub} facade (hub.ts).
 */
import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'eventemitter3';
import type { Seats } from './admission';
import type { CloseOptions, HubEvents, HubStats, PublishOptions } from './api';
import { pickUsername, type JwtVerifier } from './auth';
import { parseDuration, type HubConfig } from './config';
import { Connection, checkClose, type ConnectionOwner } from './connection';
import { RoomwireError, type WireErrorCode } from './errors';
import { reconnectDelay, spread } from './drain';
import { checkLiveness, sweepPeriod, type TerminationReason } from './heartbeat';
import {
  Outbound,
  encodeAck,
  encodeAuth,
  encodeMembership,
  errorContent,
  encodeMessage,
  encodeMessageParts,
  encodeReconnect,
  encodeUserList,
  identityFragment,
  isValidRoomName,
  rawMember,
  type AckStream,
  type ClientMessage,
  type RequestId,
  type Since,
} from './protocol';
import { Bucket } from './rate-limit';
import { RoomRegistry } from './rooms';
import { Counters, DURATION_BUCKETS } from './stats';
import type {
  Authenticate,
  AuthorizationHooks,
  Broker,
  BrokerHistory,
  BrokerHost,
  Client,
  Clock,
  Decision,
  HistoryPolicy,
  HistoryRead,
  Identity,
  Logger,
  PresenceEntry,
  SeatKey,
  BrokerSeats,
  Transport,
} from './types';
import { LocalSeats } from './seats';
import type { HistoryFor } from './api';
import { isPromise, noop } from './util';
import { SILENT } from './log';

/** The close reason a hub shutdown sends. */
export const SHUTDOWN_REASON = 'server shutting down';

/**
 * How long a peer may take to answer the server's close frame before its TCP connection
 * is dropped (`ws` alone would wait 30 s). A peer closed with 1008 (a flood, an expired
 * token) is no longer read at all, so waiting long for its answer would only hold a socket.
 */
const CLOSE_TIMEOUT = 5000;
const ABUSE_CLOSE_TIMEOUT = 1000;

/** How a shutdown closes connections, settled by {@link Engine.close}. */
interface Ending {
  readonly code: number;
  readonly reason: string;
  /** The drain window, milliseconds; 0 closes every connection at once. */
  readonly drain: number;
  /** How long a closing handshake may take before the connection is dropped. */
  readonly timeout: number;
}

/** What an {@link Engine} is made of; {@link createHub} assembles it. */
export interface EngineParts {
  readonly config: HubConfig;
  readonly clock: Clock;
  readonly log: Logger;
  readonly broker: Broker;
  readonly hooks: AuthorizationHooks;
  /** The per-room history override (docs/protocol.md section 9), if any. */
  readonly historyFor?: HistoryFor | undefined;
  /** The per-user connection cap hook (docs/protocol.md section 10), if any. */
  readonly maxConnectionsFor?: ((identity: Identity, address: string) => number | undefined) | undefined;
  readonly authenticate: Authenticate;
  readonly verifyJwt: JwtVerifier;
  /** Where application events go: the {@link Hub} facade. */
  readonly events: EventEmitter<HubEvents>;
}

/** A connection's presence as brokers carry it. */
function presenceOf(conn: Connection): PresenceEntry {
  return { connectionId: conn.id, userId: conn.userId, username: conn.username };
}

/** @internal */
export class Engine implements ConnectionOwner, Seats {
  readonly config: HubConfig;
  readonly counters = new Counters();
  readonly maxMessageSize: number;
  readonly readBufferSize: number;
  readonly writeBufferSize: number;
  readonly maxBuffered: number;
  readonly messageBucket: Bucket;
  /** The only object a broker is given: delivery into this process, and reporting. */
  readonly brokerHost: BrokerHost;

  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly broker: Broker;
  private readonly hooks: AuthorizationHooks;
  private readonly historyFor: HistoryFor | undefined;
  private readonly maxConnectionsFor: ((identity: Identity, address: string) => number | undefined) | undefined;
  /** Where connections are counted for the caps: the broker's (hub-wide), else this process's. */
  readonly connectionSeats: BrokerSeats;
  /** The room streams, when history is on; see {@link Engine.historyPolicy}. */
  private readonly history: BrokerHistory | undefined;
  private readonly defaultPolicy: HistoryPolicy | undefined;
  private readonly authenticate: Authenticate;
  private readonly verifyJwt: JwtVerifier;
  private readonly events: EventEmitter<HubEvents>;
  private readonly connections = new Set<Connection>();
  private readonly rooms = new RoomRegistry<Connection>();
  readonly idPrefix = randomUUID().slice(0, 8);
  private readonly sweepMs: number;
  private nextId = 0;
  private closePromise: Promise<void> | undefined;
  /** Set as shutdown starts (before `closePromise` exists: it is assigned when it returns). */
  private shuttingDown = false;
  private onEmpty: (() => void) | undefined;
  private ending: Ending | undefined;

  constructor(parts: EngineParts) {
    const cfg = (this.config = parts.config);
    this.clock = parts.clock;
    this.log = parts.log;
    this.broker = parts.broker;
    this.hooks = parts.hooks;
    this.historyFor = parts.historyFor;
    this.maxConnectionsFor = parts.maxConnectionsFor;
    this.connectionSeats = parts.broker.seats ?? new LocalSeats();
    this.defaultPolicy = cfg.historySize > 0 ? { size: cfg.historySize, ttl: cfg.historyTtl } : undefined;
    if (this.defaultPolicy !== undefined || this.historyFor !== undefined) {
      this.history = parts.broker.history;
      if (this.history === undefined) {
        throw new RoomwireError('ERR_INVALID_ARGUMENT', 'history (historySize, historyFor) needs a broker that keeps room streams: the default one, or a Redis broker from roomwire/redis');
      }
    }
    this.authenticate = parts.authenticate;
    this.verifyJwt = parts.verifyJwt;
    this.events = parts.events;
    this.maxMessageSize = cfg.maxMessageSize;
    this.readBufferSize = cfg.readBufferSize;
    this.writeBufferSize = cfg.writeBufferSize;
    this.maxBuffered = cfg.maxBuffered;
    this.messageBucket = new Bucket(cfg.messageRate);
    this.sweepMs = sweepPeriod(cfg);
    this.brokerHost = Object.freeze<BrokerHost>({
      deliver: (room, message) => this.deliverMatching(room, message, undefined),
      deliverTo: (room, message, accept) => this.deliverMatching(room, message, accept),
      localUsers: (room) => this.localUsers(room),
      now: () => this.clock.now(),
      brokerFailed: (message, cause) => this.report('ERR_BROKER', message, cause, undefined),
      brokerNotice: (level, fields, message) => this.log[level](fields, message),
      every: (ms, fn) => this.clock.every(ms, fn),
    });
  }

  /** Start the broker; resolves when it has started (or failed to, which is reported). */
  startBroker(): Promise<void> {
    let started: void | Promise<void>;
    try {
      started = this.broker.start(this.brokerHost);
    } catch (err) {
      this.report('ERR_BROKER', 'broker failed to start', err, undefined);
      return Promise.resolve();
    }
    return isPromise<void>(started)
      ? started.then(noop, (err: unknown) => this.report('ERR_BROKER', 'broker failed to start', err, undefined))
      : Promise.resolve();
  }

  now(): number {
    return this.clock.now();
  }

  /** The connection cap of this user: the `maxConnectionsFor` hook's answer, else `maxConnectionsPerUser`. */
  userCap(identity: Identity, address: string): number {
    const hook = this.maxConnectionsFor;
    const fallback = this.config.maxConnectionsPerUser;
    if (hook === undefined) return fallback;
    let cap: number | undefined;
    try {
      cap = hook(identity, address);
    } catch (err) {
      this.report('ERR_HOOK', 'maxConnectionsFor threw; maxConnectionsPerUser applies', err, undefined);
      return fallback;
    }
    if (cap === undefined) return fallback;
    if (typeof cap !== 'number' || !Number.isSafeInteger(cap) || cap < 0) {
      this.report('ERR_HOOK', `maxConnectionsFor returned ${String(cap)}: an integer of at least 0 (0: no cap) or undefined was expected; maxConnectionsPerUser applies`, undefined, undefined);
      return fallback;
    }
    return cap;
  }

  /** Whether debug entries are read: builds none per connection for a silent logger. */
  debugging(): boolean {
    const log = this.log;
    return log !== SILENT && (log.isLevelEnabled?.('debug') ?? true);
  }

  get size(): number {
    return this.connections.size;
  }

  get closing(): boolean {
    return this.closePromise !== undefined || this.shuttingDown;
  }

  /** True once a shutdown with a drain window started. */
  get draining(): boolean {
    return (this.ending?.drain ?? 0) > 0;
  }

  openConnection(transport: Transport, identity: Identity | null, room: string | undefined, address: string, seats: readonly SeatKey[] = []): Connection {
    const seq = this.nextId++;
    let conn: Connection;
    if (identity === null) {
      const userId = randomUUID();
      conn = new Connection(this, transport, seq, userId, `guest-${userId.slice(0, 8)}`, true, undefined, undefined, address);
    } else {
      // Whatever `authenticate` returned, a username is stamped clean (docs/protocol.md section 2).
      const username = pickUsername(identity.username, identity.userId);
      conn = new Connection(this, transport, seq, identity.userId, username, false, identity.claims, identity.expiresAt, address);
    }
    conn.seats = seats;
    this.connections.add(conn);
    this.counters.connectionsAccepted++;
    if (this.debugging()) this.log.debug({ client: conn.id, userId: conn.userId, anonymous: conn.anonymous, address, room }, 'connection opened');
    this.notify('connection', conn);
    if (this.closing) {
      this.farewell(conn);
    } else if (room !== undefined) {
      conn.enqueue(() => this.join(conn, room));
    }
    return conn;
  }

  // ---- messages (docs/protocol.md section 3) -----------------------------------------

  dispatch(conn: Connection, msg: ClientMessage, named: string | undefined, text: string): void | Promise<void> {
    const id = msg.id;
    switch (msg.type) {
      case 'message':
        return this.say(conn, msg.room, msg.content, msg.data, text, id);
      case 'join':
        return this.join(conn, msg.room, id, msg.since);
      case 'leave':
        return this.leave(conn, msg.room, id);
      case 'user_list':
        if (!conn.inRoom(msg.room)) return conn.error('not_in_room', msg.room, id);
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
   * Answer a `join`, `leave` or `message` that carried an id with its `ack` (docs/protocol.md
   * section 8), once `pending` (the frames the request causes for the sender) is done.
   */
  private acked(pending: void | Promise<void>, conn: Connection, room: string, id: RequestId | undefined, stream?: AckStream): void | Promise<void> {
    if (id === undefined) return pending;
    if (isPromise<void>(pending)) return pending.then(() => this.ack(conn, room, id, stream));
    this.ack(conn, room, id, stream);
  }

  private ack(conn: Connection, room: string, id: RequestId, stream?: AckStream): void {
    const now = this.clock.now();
    conn.sendOutbound(new Outbound(encodeAck(id, room, Math.floor(now / 1000), stream)), now);
  }

  private joinRefusal(conn: Connection, room: string): WireErrorCode | undefined {
    if (conn.roomCount >= this.config.maxRoomsPerConnection) return 'too_many_rooms';
    const max = this.config.maxRoomSize;
    if (max > 0 && (this.rooms.get(room)?.size ?? 0) >= max) return 'room_full';
    return undefined;
  }

  private join(conn: Connection, room: string, id?: RequestId, since?: Since): void | Promise<void> {
    if (!conn.open) return; // closed by a 'connection' listener before its path join
    if (conn.inRoom(room)) return this.rejoin(conn, room, id);
    const refused = this.joinRefusal(conn, room);
    if (refused !== undefined) return conn.error(refused, room, id);
    const hook = this.hooks.canJoin;
    if (hook === undefined) return this.addMember(conn, room, id, since);
    const allowed = this.ask(conn, () => hook(conn, room));
    if (allowed === true) return this.addMember(conn, room, id, since);
    if (allowed === false) return conn.error('forbidden', room, id);
    return allowed.then((ok) => {
      if (!conn.open) return;
      if (!ok) return conn.error('forbidden', room, id);
      // Other connections may have filled the room while the hook ran.
      if (conn.inRoom(room)) return this.rejoin(conn, room, id);
      const late = this.joinRefusal(conn, room);
      if (late !== undefined) return conn.error(late, room, id);
      return this.addMember(conn, room, id, since);
    });
  }

  /** A `join` of a room already joined: a fresh `user_list`, then the `ack` with the room's position (no replay). */
  private rejoin(conn: Connection, room: string, id: RequestId | undefined): void | Promise<void> {
    const listed = this.sendUserList(conn, room);
    const policy = id === undefined ? undefined : this.historyPolicy(room);
    if (policy === undefined) return this.acked(listed, conn, room, id);
    const answer = (): void | Promise<void> =>
      this.readHistory(conn, room, policy, undefined, (read) => {
        if (conn.open) this.ack(conn, room, id as RequestId, read === undefined ? undefined : { offset: read.position.offset, epoch: read.position.epoch });
      });
    return isPromise<void>(listed) ? listed.then(answer) : answer();
  }

  private addMember(conn: Connection, room: string, id: RequestId | undefined, since: Since | undefined): void | Promise<void> {
    conn.addRoom(room);
    this.rooms.join(room, conn);
    this.broker.join(room, presenceOf(conn));
    this.broker.publish(room, new Outbound(encodeMembership('join', room, conn.identity, this.seconds())));
    this.notify('join', conn, room);
    const policy = this.historyPolicy(room);
    if (policy === undefined) {
      // History off for this room: `since` is accepted and recovers nothing (docs/protocol.md section 9).
      if (since !== undefined) this.counters.unrecovered++;
      return this.acked(this.sendUserList(conn, room), conn, room, id, since === undefined ? undefined : { recovered: false });
    }
    // From here until its ack, the room's frames wait for the joiner: its recovered
    // messages come first, and then every later message once, from ack.offset + 1.
    (conn.held ??= new Map()).set(room, []);
    const listed = this.sendUserList(conn, room);
    const finish = (read: HistoryRead | undefined): void => {
      const held = conn.held?.get(room);
      conn.held?.delete(room);
      if (conn.held?.size === 0) conn.held = undefined;
      if (!conn.open) return;
      const now = this.clock.now();
      const recovered = read?.messages;
      if (since !== undefined && recovered !== undefined) {
        for (const m of recovered) this.deliverOne(conn, m, now);
        this.counters.recovered++;
      } else if (since !== undefined) {
        this.counters.unrecovered++;
      }
      if (id !== undefined) {
        const position = read?.position;
        this.ack(conn, room, id, { offset: position?.offset, epoch: position?.epoch, recovered: since === undefined ? undefined : recovered !== undefined });
      }
      if (held === undefined || !conn.inRoom(room)) return;
      const last = read?.position.offset ?? 0;
      for (const m of held) if (m.offset === 0 || m.offset > last) this.deliverOne(conn, m, now);
    };
    const recover = (): void | Promise<void> => this.readHistory(conn, room, policy, since, finish);
    return isPromise<void>(listed) ? listed.then(recover) : recover();
  }

  /** Read a room's stream and hand the answer (undefined when the broker failed, which is reported) to `then`. */
  private readHistory(conn: Connection, room: string, policy: HistoryPolicy, since: Since | undefined, then: (read: HistoryRead | undefined) => void): void | Promise<void> {
    let read: HistoryRead | Promise<HistoryRead>;
    try {
      read = (this.history as BrokerHistory).read(room, policy, since);
    } catch (err) {
      this.report('ERR_BROKER', 'broker could not read the room history', err, conn);
      return then(undefined);
    }
    if (!isPromise<HistoryRead>(read)) return then(read);
    return read.then(then, (err: unknown) => {
      this.report('ERR_BROKER', 'broker could not read the room history', err, conn);
      then(undefined);
    });
  }

  /**
   * What `room` keeps (docs/protocol.md section 9): the `historyFor` hook's answer, else
   * `historySize` and `historyTtl`; undefined when the room keeps nothing (history off).
   */
  private historyPolicy(room: string): HistoryPolicy | undefined {
    const hook = this.historyFor;
    if (hook === undefined) return this.defaultPolicy;
    let answer: ReturnType<HistoryFor>;
    try {
      answer = hook(room);
    } catch (err) {
      this.report('ERR_HOOK', `historyFor threw for room "${room}"; the default history applies`, err, undefined);
      return this.defaultPolicy;
    }
    const size = typeof answer === 'number' ? answer : answer?.size;
    let ttl = this.config.historyTtl;
    if (typeof answer === 'object' && answer !== null && answer.ttl !== undefined) {
      try {
        ttl = parseDuration(answer.ttl);
      } catch {
        ttl = Number.NaN;
      }
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || !(ttl > 0)) {
      this.report('ERR_HOOK', `historyFor returned ${JSON.stringify(answer)} for room "${room}": a size (an integer of at least 0) or { size, ttl } was expected; the default history applies`, undefined, undefined);
      return this.defaultPolicy;
    }
    return size === 0 ? undefined : { size, ttl };
  }

  private leave(conn: Connection, room: string, id?: RequestId): void {
    if (!conn.inRoom(room)) return conn.error('not_in_room', room, id);
    // The leaver is still a member here, so it receives its own leave notice.
    this.broker.publish(room, new Outbound(encodeMembership('leave', room, conn.identity, this.seconds())));
    this.removeMember(conn, room);
    this.notify('leave', conn, room);
    this.acked(undefined, conn, room, id);
  }

  private removeMember(conn: Connection, room: string): void {
    conn.removeRoom(room);
    this.rooms.leave(room, conn);
    this.broker.leave(room, presenceOf(conn));
  }

  private say(conn: Connection, room: string, content: string, data: Record<string, unknown> | undefined, text: string, id?: RequestId): void | Promise<void> {
    if (!conn.inRoom(room)) return conn.error('not_in_room', room, id);
    const hook = this.hooks.canPublish;
    if (hook === undefined) return this.deliverMessage(conn, room, content, data, text, id);
    const allowed = this.ask(conn, () => hook(conn, room, { content, data }));
    if (allowed === true) return this.deliverMessage(conn, room, content, data, text, id);
    if (allowed === false) return conn.error('forbidden', room, id);
    return allowed.then((ok) => {
      if (!conn.open) return;
      if (!ok) return conn.error('forbidden', room, id);
      if (!conn.inRoom(room)) return conn.error('not_in_room', room, id);
      this.deliverMessage(conn, room, content, data, text, id);
    });
  }

  private deliverMessage(conn: Connection, room: string, content: string, data: Record<string, unknown> | undefined, raw: string, id: RequestId | undefined): void | Promise<void> {
    // `data` goes out as the client wrote it: checked to be an object, never serialized again.
    const dataJson = data === undefined ? undefined : rawMember(raw, 'data');
    const policy = this.historyPolicy(room);
    if (policy === undefined) {
      const text = encodeMessage(room, content, dataJson, conn.senderIdentity, this.seconds());
      // Local members, the sender among them, get the frame within publish: the ack follows it.
      this.broker.publish(room, new Outbound(text));
      this.notify('message', conn, room, { content, data });
      this.acked(undefined, conn, room, id);
      return;
    }
    const said = (offset: number): void => {
      this.notify('message', conn, room, { content, data });
      if (id !== undefined && conn.open) this.ack(conn, room, id, { offset });
    };
    const refused = (err: unknown): void => {
      if (!(err instanceof RoomwireError && err.code === 'unavailable')) this.report('ERR_BROKER', 'broker could not publish to the room history', err, conn);
      if (conn.open) conn.error('unavailable', room, id);
    };
    let offset: number | Promise<number>;
    try {
      offset = (this.history as BrokerHistory).publish(room, policy, encodeMessageParts(room, content, dataJson, conn.senderIdentity, this.seconds()));
    } catch (err) {
      return refused(err);
    }
    if (!isPromise<number>(offset)) return said(offset);
    // In flight: the connection's next message goes out at once (the broker numbers them in
    // the order sent), while its acks keep their order and other frames wait for them.
    const before = conn.publishing;
    const answered = before === undefined ? offset : before.then(() => offset);
    const done: Promise<void> = answered
      .then(said, refused)
      .catch((err: unknown) => this.failed(conn, err))
      .finally(() => {
        if (conn.publishing === done) conn.publishing = undefined;
      });
    conn.publishing = done;
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

  // ---- delivery (through brokerHost) -------------------------------------------------

  private deliverMatching(room: string, message: Outbound, accept: ((connectionId: string) => boolean) | undefined): void {
    const r = this.rooms.get(room);
    if (r === undefined) return;
    const now = this.clock.now();
    let n = 0;
    for (const c of r.members) {
      if (!c.open || (accept !== undefined && !accept(c.id))) continue;
      if (c.held !== undefined) {
        // Joining with history: the frame follows the joiner's recovery (counted when sent).
        const held = c.held.get(room);
        if (held !== undefined) {
          held.push(message);
          continue;
        }
      }
      c.track(c.transport.send(message), now);
      n++;
    }
    const counters = this.counters;
    counters.deliveries += n;
    counters.framesOut += n;
    counters.bytesOut += n * Buffer.byteLength(message.text);
  }

  /** Deliver a room frame to one member (a recovered or held one). */
  private deliverOne(conn: Connection, message: Outbound, now: number): void {
    conn.sendOutbound(message, now);
    this.counters.deliveries++;
  }

  localUsers(room: string): string[] {
    return this.rooms.get(room)?.usernames() ?? [];
  }

  publish(room: string, content: string, options: PublishOptions = {}): Promise<number | undefined> {
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
    const policy = this.historyPolicy(room);
    if (policy === undefined) {
      this.broker.publish(room, new Outbound(encodeMessage(room, content, dataJson, identity, this.seconds())));
      return Promise.resolve(undefined);
    }
    try {
      return Promise.resolve((this.history as BrokerHistory).publish(room, policy, encodeMessageParts(room, content, dataJson, identity, this.seconds())));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  // ---- ConnectionOwner ---------------------------------------------------------------

  errorSent(conn: Connection, code: WireErrorCode, room: string | undefined, detail?: string): void {
    this.counters.errors[code]++;
    if (this.debugging()) this.log.debug({ client: conn.id, code, room, detail }, 'error frame sent');
    if (this.events.listenerCount('error') > 0) {
      const content = errorContent(code, detail);
      const text = room === undefined ? content : `${content} (room "${room}")`;
      try {
        this.events.emit('error', new RoomwireError(code, text), conn);
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
    const ending = this.ending;
    // During a shutdown, hub.close() bounds every handshake with its own timeout; a drain's
    // closes are spread over its window, so each gets that timeout from its own close frame.
    if (this.closing && (ending === undefined || ending.drain === 0)) return noop;
    const ms = code === 1008 ? ABUSE_CLOSE_TIMEOUT : (ending?.timeout ?? CLOSE_TIMEOUT);
    return this.clock.after(ms, () => conn.abandon(code, reason));
  }

  terminated(conn: Connection, reason: TerminationReason): void {
    this.counters.terminations[reason]++;
    this.log.info({ client: conn.id, userId: conn.userId, reason }, 'connection terminated');
  }

  closed(conn: Connection, code: number, reason: string): void {
    if (!this.connections.delete(conn)) return;
    // A cap frees up as soon as its connection closes (docs/protocol.md section 10).
    if (conn.seats.length > 0) this.connectionSeats.release(conn.seats);
    const now = this.clock.now();
    this.counters.connectionsClosed++;
    this.counters.observeDuration((now - conn.connectedAt) / 1000);
    if (conn.roomCount > 0) {
      const ts = Math.floor(now / 1000);
      const rooms = conn.rooms;
      for (const room of rooms) this.removeMember(conn, room);
      const tell = (): void => {
        for (const room of rooms) {
          this.broker.publish(room, new Outbound(encodeMembership('leave', room, conn.identity, ts)));
          this.notify('leave', conn, room);
        }
      };
      // Its messages still being numbered reach the others before its leave notices.
      const publishing = conn.publishing;
      if (publishing === undefined) tell();
      else void publishing.then(tell);
    }
    if (this.debugging()) this.log.debug({ client: conn.id, code, reason, seconds: (now - conn.connectedAt) / 1000 }, 'connection closed');
    this.notify('disconnect', conn, code, reason);
    if (this.connections.size === 0) this.onEmpty?.();
  }

  report(code: 'ERR_HOOK' | 'ERR_BROKER' | 'ERR_TRANSPORT', message: string, cause: unknown, conn: Connection | undefined): void {
    this.log.error({ code, client: conn?.id, err: cause }, message);
    try {
      this.events.emit('error', new RoomwireError(code, message, { cause }), conn);
    } catch {
      // An 'error' listener that throws has nowhere left to report to.
    }
  }

  /**
   * Emit an application event. A listener that throws must not break the protocol for
   * the client (or the others in the room): the throw is reported as an `ERR_HOOK` error.
   */
  private notify<E extends Exclude<keyof HubEvents, 'error'>>(event: E, ...args: HubEvents[E]): void {
    if (this.events.listenerCount(event) === 0) return;
    try {
      (this.events.emit as (event: string, ...args: unknown[]) => boolean)(event, ...args);
    } catch (err) {
      this.report('ERR_HOOK', `a '${event}' listener threw`, err, args[0] as Connection);
    }
  }

  // ---- heartbeat ----------------------------------------------------------------------

  /** The sweep period: how often the hub's {@link sweep} runs. */
  get sweepInterval(): number {
    return this.sweepMs;
  }

  /** One heartbeat sweep over every connection (docs/protocol.md section 5). */
  sweep(now: number): void {
    const cfg = this.config;
    for (const c of this.connections) checkLiveness(c, now, cfg, this.sweepMs);
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

  stats(pending: number): HubStats {
    const c = this.counters;
    return {
      connections: this.connections.size,
      pending,
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
      history: {
        enabled: this.history !== undefined,
        ...(this.history?.stats() ?? { rooms: 0, messages: 0, bytes: 0 }),
        recovered: c.recovered,
        unrecovered: c.unrecovered,
      },
    };
  }

  private seconds(): number {
    return Math.floor(this.clock.now() / 1000);
  }

  // ---- shutdown ----------------------------------------------------------------------

  close(options: CloseOptions = {}): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    const code = options.code ?? 1001;
    const reason = options.reason ?? SHUTDOWN_REASON;
    checkClose(code, reason);
    let drain: number;
    try {
      drain = parseDuration(options.drain ?? this.config.drainWindow);
    } catch (msg) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', `drain ${String(msg)}`);
    }
    this.ending = { code, reason, drain, timeout: options.timeout ?? CLOSE_TIMEOUT };
    this.closePromise = this.shutdown(this.ending);
    return this.closePromise;
  }

  /**
   * Close one connection for the shutdown; in a drain, first tell it with a `reconnect`
   * frame how long to wait before coming back (docs/protocol.md section 4).
   */
  private farewell(conn: Connection): void {
    const ending = this.ending as Ending;
    if (!conn.open) return; // it closed by itself meanwhile
    if (ending.drain > 0) {
      const now = this.clock.now();
      conn.sendOutbound(new Outbound(encodeReconnect(reconnectDelay(ending.drain), Math.floor(now / 1000))), now);
    }
    conn.close(ending.code, ending.reason);
  }

  private async shutdown(ending: Ending): Promise<void> {
    this.shuttingDown = true;
    const { code, drain } = ending;
    this.log.info({ connections: this.connections.size, code, drain }, 'hub closing');
    let stopDrain = noop;
    if (drain > 0) stopDrain = spread([...this.connections], drain, this.clock, (c) => this.farewell(c));
    else for (const c of this.connections) this.farewell(c);
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => {
        // Every close frame is out before the window ends; each handshake then has `timeout`.
        const cancel = this.clock.after(drain + ending.timeout, () => resolve());
        this.onEmpty = () => {
          cancel();
          resolve();
        };
      });
      this.onEmpty = undefined;
      stopDrain();
      for (const c of [...this.connections]) {
        c.transport.terminate();
        c.onClose(1006, 'close timeout');
      }
    }
    await this.broker.close();
  }
}
