/**
 * The Redis broker: several hub processes sharing one Redis form one hub.
 *
 * Room traffic goes over one pub/sub channel per room (`<prefix>:room:<room>`), which a
 * process subscribes to while it has members there. Each frame carries the publishing
 * process's id, so its own copy, already delivered locally, is skipped: every member gets
 * every frame exactly once, and a sender's frames keep their order because one process
 * publishes them over one socket.
 *
 * Presence goes over `<prefix>:control`: every process announces its members' joins and
 * leaves, a beat every `beatInterval` with its member count, and its whole state
 * whenever it (re)connects or another process asks. Each process keeps a mirror of the
 * others, so `user_list` needs no Redis query. A process unheard of for `processTimeout`
 * is gone: its members leave every mirror, and the members of their rooms here receive
 * `leave` for them. While Redis is unreachable a process serves its own members and lists
 * only them; once it is back (an empty, restarted Redis included) the processes
 * resubscribe, exchange their states, and send `join`/`leave` for what changed meanwhile.
 */
import { randomBytes } from 'node:crypto';
import { RoomwireError } from '../core/errors';
import { encodeMembership, identityFragment, Outbound } from '../core/protocol';
import type { Broker, BrokerHealth, BrokerHost, PresenceEntry } from '../core/types';
import { maskUrlPassword, parseRedisUrl, type RedisEndpoint } from './redis-url';
import { RedisConnection, RedisReplyError, type Reply } from './resp';

/** Options of {@link createRedisBroker}. */
export interface RedisBrokerOptions {
  /** `redis://[[user:]password@]host[:port][/db]`, or `rediss://` for TLS. */
  readonly url: string;
  /** Prefix of every channel and key, so several hubs can share one Redis. @default 'roomwire' */
  readonly prefix?: string;
  /**
   * Milliseconds between this process's beats to the others (its member count: how they
   * know it is alive). Not the hub's heartbeat sweep (`heartbeatInterval`), which pings
   * clients. @default 2000
   */
  readonly beatInterval?: number;
  /**
   * Milliseconds without a word from another process after which it counts as gone and
   * its members leave. Keep it several heartbeats long. @default 10000
   */
  readonly processTimeout?: number;
  /**
   * Milliseconds {@link roomwire!Hub.ready} waits for Redis and for the other processes' states at
   * start; after that the hub serves its own members and keeps trying. @default 3000
   */
  readonly startTimeout?: number;
  /** Milliseconds a Redis command may go unanswered before the socket is dropped and reconnected. @default 5000 */
  readonly commandTimeout?: number;
}

interface Member {
  readonly userId: string;
  readonly username: string;
}

/** What this process knows of another. */
interface Remote {
  seen: number;
  rooms: Map<string, Map<string, Member>>;
  /** When this process last asked it for its state (0: never). */
  asked: number;
  /**
   * Whether `rooms` is its state as of now: false from the moment it is first heard of in
   * the middle of its life, or this process relinks, until its whole state arrives.
   */
  synced: boolean;
  /**
   * What it published while not synced (room frames and presence changes), in order, kept
   * until its state arrives and then replayed.
   */
  held: Held[];
  /** Some of `held` was dropped (more than MAX_HELD); reported once. */
  overflow: boolean;
  /** This process told its members that all of its members left (it went silent), and it came back. */
  departed: boolean;
  /**
   * Members here that joined while this process was unlinked, by room, when it relinked:
   * their user_list did not show this remote's members, so its next state announces them.
   */
  catchUp: Map<string, Set<string>> | undefined;
}

/** A room frame, or a presence change, of a remote that is not in step yet. */
type Held =
  | { readonly kind: 'frame'; readonly room: string; readonly text: string }
  | { readonly kind: 'join' | 'leave'; readonly room: string; readonly c: string; readonly m: Member };

/** A SUBSCRIBE on its way: `then` callbacks run in the reply's own turn, before any later message is read. */
class Pending {
  private waiters: (() => void)[] | undefined = [];

  then(fn: () => void): void {
    if (this.waiters === undefined) fn();
    else this.waiters.push(fn);
  }

  settle(): void {
    const waiters = this.waiters ?? [];
    this.waiters = undefined;
    for (const fn of waiters) fn();
  }
}

/** `[room, connectionId, userId, username]` */
type StateRow = [string, string, string, string];

type Control =
  | { t: 'beat'; p: string; n: number }
  | { t: 'join' | 'leave'; p: string; r: string; c: string; u: string; n: string }
  | { t: 'state'; p: string; m: StateRow[]; ask?: boolean }
  | { t: 'ask'; p: string; to: string }
  | { t: 'bye'; p: string };

const ID_LENGTH = 16;
/** Room frames kept per process while waiting for its state; beyond, they are dropped. */
const MAX_HELD = 10_000;

function milliseconds(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new RoomwireError('ERR_INVALID_ARGUMENT', `${name} must be a positive number of milliseconds, not ${String(value)}`);
  }
  return value;
}
/** Longest wait for Redis before a `user_list` is sent from what this process knows. */
const USERS_WAIT_MS = 500;

/**
 * Create a {@link Broker} that spreads one hub over every process using the same Redis
 * (and `prefix`). {@link roomwire/redis!redisBrokerFromEnv} creates one from
 * `WEBSOCKET_REDIS_URL`; create it yourself to change its timings. Throws an `ERR_INVALID_ARGUMENT` {@link RoomwireError}
 * for a bad URL or timing.
 *
 * @example
 * ```ts
 * import { createHub } from 'roomwire';
 * import { createRedisBroker } from 'roomwire/redis';
 * const hub = createHub({ broker: createRedisBroker({ url: 'redis://127.0.0.1:6379' }) });
 * await hub.ready();
 * ```
 */
export function createRedisBroker(options: RedisBrokerOptions): Broker {
  return new RedisBroker(options);
}

class RedisBroker implements Broker {
  /** This process's id in channel payloads. */
  readonly id = randomBytes(ID_LENGTH / 2).toString('hex');
  private host: BrokerHost | undefined;
  private readonly pub: RedisConnection;
  private readonly sub: RedisConnection;
  private readonly prefix: string;
  private readonly control: string;
  private readonly roomPrefix: string;
  private readonly processesKey: string;
  private readonly beatMs: number;
  private readonly timeoutMs: number;
  private readonly startMs: number;
  /** This process's members by room, then connection id. */
  private readonly local = new Map<string, Map<string, Member>>();
  private localCount = 0;
  private readonly remotes = new Map<string, Remote>();
  /** Rooms whose SUBSCRIBE is not acknowledged yet, with what to run (synchronously) when it is. */
  private readonly subscribing = new Map<string, Pending>();
  /** Both sockets up and the control channel subscribed: remote presence counts. */
  private linked = false;
  private linking = 0;
  private wasLinked = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** Processes whose state {@link RedisBroker.start} still waits for. */
  private awaiting: Set<string> | undefined;
  private onSynced: (() => void) | undefined;
  /** While starting: processes whose state arrived since the link came up. */
  private readonly heard = new Set<string>();
  private lastBeat = 0;
  private lastRefusal = 0;
  /** The last SUBSCRIBE of the control channel was refused (reported once per streak). */
  private refused = false;
  /** A refused handshake (wrong password, ...) was reported; cleared once linked. */
  private handshakeRefused = false;
  /**
   * Connections that joined a room while this process was not linked, by room: their
   * `user_list` showed this process only, so once the others' states are back they hear
   * `join` for the members that were there all along.
   */
  private readonly alone = new Map<string, Set<string>>();
  /** Processes given up for silence, and when: if one speaks again its members are announced anew. */
  private readonly departed = new Map<string, number>();
  /** The URL, password masked, for messages. */
  private address = '';
  /** Why the last connection attempt failed, for messages. */
  private lastError: Error | undefined;

  constructor(options: RedisBrokerOptions) {
    let endpoint: RedisEndpoint;
    try {
      endpoint = parseRedisUrl(options.url);
      this.address = maskUrlPassword(options.url);
    } catch (err) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', `url: ${(err as Error).message}`, { cause: err });
    }
    this.prefix = options.prefix ?? 'roomwire';
    this.control = `${this.prefix}:control`;
    this.roomPrefix = `${this.prefix}:room:`;
    this.processesKey = `${this.prefix}:processes`;
    this.beatMs = milliseconds('beatInterval', options.beatInterval, 2000);
    this.timeoutMs = milliseconds('processTimeout', options.processTimeout, 10_000);
    this.startMs = milliseconds('startTimeout', options.startTimeout, 3000);
    const timings = { timeout: milliseconds('commandTimeout', options.commandTimeout, 5000) };
    if (this.timeoutMs < 2 * this.beatMs) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', `processTimeout (${this.timeoutMs} ms) must be at least twice beatInterval (${this.beatMs} ms)`);
    }
    this.pub = new RedisConnection(endpoint, { up: () => this.relink(), down: (err) => this.unlink(err) }, timings);
    this.sub = new RedisConnection(
      endpoint,
      { up: () => this.relink(), down: (err) => this.unlink(err), message: (channel, payload) => this.onMessage(channel, payload) },
      timings,
    );
  }

  start(host: BrokerHost): Promise<void> {
    this.host = host;
    this.pub.connect();
    this.sub.connect();
    this.timer = setInterval(() => this.beat(), this.beatMs);
    this.timer.unref();
    // This timer is not unref'd: a program that awaits hub.ready() before it listens has
    // nothing else keeping it alive while Redis is unreachable.
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.onSynced = undefined;
        this.heard.clear();
        if (!this.linked) {
          const cause = this.lastError?.message ?? 'no answer';
          host.brokerNotice('warn', { after: this.startMs, address: this.address, cause }, `Redis at ${this.address} is not reachable yet (${cause}); serving this process only until it is`);
        }
        resolve();
      }, this.startMs);
      this.onSynced = () => {
        clearTimeout(timer);
        this.onSynced = undefined;
        this.heard.clear();
        resolve();
      };
    });
  }

  // ---- the link ----------------------------------------------------------------------

  /** A socket came up: once both are, subscribe everything and announce this process. */
  private relink(): void {
    if (!this.pub.isUp || !this.sub.isUp || this.stopped) return;
    const attempt = ++this.linking;
    // One SUBSCRIBE for the control channel and every room, which Redis applies at once:
    // no frame of a room can fall between the control channel's subscription and the room's.
    const rooms = [...this.local.keys()];
    const acked = new Pending();
    for (const room of rooms) this.subscribing.set(room, acked);
    const channels = [this.control, ...rooms.map((room) => this.roomPrefix + room)];
    this.sub.send(['SUBSCRIBE', ...channels], (reply) => {
      for (const room of rooms) if (this.subscribing.get(room) === acked) this.subscribing.delete(room);
      acked.settle();
      if (attempt !== this.linking) return;
      if (reply instanceof RedisReplyError) {
        if (!reply.local) {
          if (!this.refused) this.host?.brokerFailed('Redis refused SUBSCRIBE; retrying', reply);
          this.refused = true;
          this.sub.drop(reply);
        }
        return;
      }
      this.refused = false;
      this.handshakeRefused = false;
      this.linked = true;
      const now = Date.now();
      this.lastBeat = now;
      // What the others did meanwhile is unknown until their states (asked for below)
      // arrive; their room frames wait for them, so no frame overtakes its sender's join.
      for (const r of this.remotes.values()) {
        r.seen = now;
        r.synced = false;
        r.held = [];
        r.catchUp = this.alone.size === 0 ? undefined : copyIds(this.alone);
      }
      this.alone.clear();
      this.host?.brokerNotice('info', { process: this.id }, this.wasLinked ? 'Redis connection restored' : 'connected to Redis');
      this.wasLinked = true;
      this.pub.send(['HSET', this.processesKey, this.id, String(Date.now())], this.checked);
      this.announce(this.state(true));
      if (this.onSynced !== undefined) this.expectPeers(Date.now());
    }, channels.length);
  }

  /** Wait (in {@link RedisBroker.start}) for the state of every process alive in the registry. */
  private expectPeers(now: number): void {
    this.pub.send(['HGETALL', this.processesKey], (reply) => {
      const awaiting = new Set<string>();
      const stale: string[] = [];
      if (Array.isArray(reply)) {
        for (let i = 0; i + 1 < reply.length; i += 2) {
          const id = reply[i] as string;
          if (id === this.id) continue;
          const age = now - Number(reply[i + 1]);
          if (!(age < this.timeoutMs)) stale.push(id);
          // Only processes that beat lately are waited for (a crashed one is not).
          else if (age < 2.5 * this.beatMs && !this.heard.has(id)) awaiting.add(id);
        }
      }
      // Entries of processes that died with nobody watching (each live one refreshes its own).
      if (stale.length > 0) this.pub.send(['HDEL', this.processesKey, ...stale], this.checked);
      this.awaiting = awaiting;
      this.checkSynced();
      // A live process answers within a round trip; one that does not (it crashed a moment
      // ago) is not waited for beyond a heartbeat.
      if (awaiting.size > 0) {
        setTimeout(() => {
          if (this.awaiting !== awaiting) return;
          awaiting.clear();
          this.checkSynced();
        }, this.beatMs).unref();
      }
    });
  }

  private checkSynced(): void {
    if (this.awaiting !== undefined && this.awaiting.size === 0) {
      this.awaiting = undefined;
      this.onSynced?.();
    }
  }

  private unlink(err: Error): void {
    this.lastError = err;
    this.linking++;
    // Pending SUBSCRIBE acknowledgements have been answered with the connection error.
    this.subscribing.clear();
    if (!this.linked) {
      // Never linked: a wrong password or database is worth one report, not silence.
      if (err.message.startsWith('Redis refused') && !this.handshakeRefused && !this.stopped) {
        this.handshakeRefused = true;
        this.host?.brokerFailed(`Redis at ${this.address} refused the connection (${err.message}); retrying`, err);
      }
      return;
    }
    this.linked = false;
    if (!this.stopped) this.host?.brokerFailed(`lost the connection to Redis at ${this.address} (${err.message}); serving this process's members only until it is back`, err);
  }

  private subscribe(room: string): void {
    const acked = new Pending();
    this.subscribing.set(room, acked);
    const sent = this.sub.send(['SUBSCRIBE', this.roomPrefix + room], (reply) => {
      if (this.subscribing.get(room) === acked) this.subscribing.delete(room);
      acked.settle();
      this.checked(reply);
    });
    if (!sent) this.subscribing.delete(room);
  }

  /** Report an error reply from Redis (not a lost connection) at most every 10 s. */
  private readonly checked = (reply: Reply): void => {
    if (!(reply instanceof RedisReplyError) || reply.local) return;
    const now = Date.now();
    if (now - this.lastRefusal < 10_000) return;
    this.lastRefusal = now;
    this.host?.brokerFailed('Redis refused a command', reply);
  };

  // ---- Broker ------------------------------------------------------------------------

  publish(room: string, message: Outbound): void {
    this.host?.deliver(room, message);
    // Only once linked: this process's state went out first, so no process receives a
    // frame of a member it has not heard join.
    if (this.linked) this.pub.send(['PUBLISH', this.roomPrefix + room, this.id + message.text], this.checked);
  }

  join(room: string, entry: PresenceEntry): void {
    let members = this.local.get(room);
    if (members === undefined) {
      members = new Map();
      this.local.set(room, members);
      if (this.sub.isUp) this.subscribe(room);
    }
    if (members.has(entry.connectionId)) return;
    members.set(entry.connectionId, { userId: entry.userId, username: entry.username });
    this.localCount++;
    if (!this.linked) {
      let ids = this.alone.get(room);
      if (ids === undefined) this.alone.set(room, (ids = new Set()));
      ids.add(entry.connectionId);
    }
    // Unlinked, the others learn of it from this process's state when it relinks.
    if (this.linked) this.announce({ t: 'join', p: this.id, r: room, c: entry.connectionId, u: entry.userId, n: entry.username });
  }

  leave(room: string, entry: PresenceEntry): void {
    const members = this.local.get(room);
    if (members === undefined || !members.delete(entry.connectionId)) return;
    this.localCount--;
    const ids = this.alone.get(room);
    if (ids !== undefined && ids.delete(entry.connectionId) && ids.size === 0) this.alone.delete(room);
    if (members.size === 0) {
      this.local.delete(room);
      this.subscribing.delete(room);
      this.sub.send(['UNSUBSCRIBE', this.roomPrefix + room], this.checked);
    }
    if (this.linked) this.announce({ t: 'leave', p: this.id, r: room, c: entry.connectionId, u: entry.userId, n: entry.username });
  }

  users(room: string): readonly string[] | Promise<readonly string[]> {
    if (!this.linked) return this.list(room);
    // The list is what the joiner's frames do not tell it: this process's members as of
    // now, and the other processes' members as of the moment the room's frames reach this
    // process (now, or when a first SUBSCRIBE is acknowledged). Whoever joins after that
    // is announced to it by a join frame, not listed as well.
    // It is sent once this process's earlier publishes (its join among them) went through
    // Redis, so other processes know of the joiner before it knows of them; a Redis that
    // stops answering delays it by USERS_WAIT_MS at most.
    const local = this.localUsers(room);
    const pending = this.subscribing.get(room);
    let list = pending === undefined ? this.withRemote(local, room) : undefined;
    return new Promise((resolve) => {
      let left = pending === undefined ? 1 : 2;
      const timer = setTimeout(() => {
        left = -1;
        resolve(list ?? this.withRemote(local, room));
      }, USERS_WAIT_MS);
      const done = (): void => {
        if (--left !== 0) return;
        clearTimeout(timer);
        resolve(list ?? this.withRemote(local, room));
      };
      pending?.then(() => {
        list = this.withRemote(local, room);
        done();
      });
      this.pub.send(['PING'], done);
    });
  }

  health(): BrokerHealth {
    let processes = 1;
    if (this.linked) processes += this.remotes.size;
    return { kind: 'redis', connected: this.linked, processes };
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.onSynced?.(); // settles hub.ready() and clears its timer
    if (this.timer !== undefined) clearInterval(this.timer);
    if (this.pub.isUp) {
      this.pub.send(['PUBLISH', this.control, JSON.stringify({ t: 'bye', p: this.id })]);
      this.pub.send(['HDEL', this.processesKey, this.id]);
    }
    this.linked = false;
    await Promise.all([this.pub.close(), this.sub.close()]);
    this.host = undefined;
  }

  // ---- presence ----------------------------------------------------------------------

  /** Usernames in `room`: this process's users, then the other processes', each user once. */
  private list(room: string): string[] {
    return this.withRemote(this.localUsers(room), room);
  }

  /** This process's users of `room` (user id to username), in first-join order. */
  private localUsers(room: string): Map<string, string> {
    const users = new Map<string, string>();
    for (const m of this.local.get(room)?.values() ?? []) if (!users.has(m.userId)) users.set(m.userId, m.username);
    return users;
  }

  /** `local`'s usernames followed by the other processes' users not among them (while linked). */
  private withRemote(local: ReadonlyMap<string, string>, room: string): string[] {
    const users = new Map(local);
    if (this.linked) {
      for (const remote of this.remotes.values()) {
        for (const m of remote.rooms.get(room)?.values() ?? []) if (!users.has(m.userId)) users.set(m.userId, m.username);
      }
    }
    return [...users.values()];
  }

  private state(ask: boolean): Control {
    const m: StateRow[] = [];
    for (const [room, members] of this.local) for (const [c, u] of members) m.push([room, c, u.userId, u.username]);
    return ask ? { t: 'state', p: this.id, m, ask } : { t: 'state', p: this.id, m };
  }

  private announce(message: Control): void {
    if (this.pub.isUp) this.pub.send(['PUBLISH', this.control, JSON.stringify(message)], this.checked);
  }

  private beat(): void {
    const now = Date.now();
    const late = now - this.lastBeat > 2 * this.beatMs;
    this.lastBeat = now;
    // Heartbeats go out whenever they can reach Redis, so the others keep this process's
    // members while only its subscriber connection is down.
    if (this.pub.isUp) {
      this.pub.send(['HSET', this.processesKey, this.id, String(Date.now())], this.checked);
      this.announce({ t: 'beat', p: this.id, n: this.localCount });
    }
    if (!this.linked) return;
    this.sub.send(['PING']); // the connection's watchdog drops a socket whose replies stall
    if (late) {
      // This process was stalled (GC, CPU, SIGSTOP): the others' heartbeats are waiting
      // unread, so their silence means nothing yet; and they may have given this process
      // up, so it tells them its state again.
      for (const remote of this.remotes.values()) remote.seen = now;
      this.announce(this.state(false));
      return;
    }
    for (const [id, remote] of this.remotes) if (!remote.synced) this.ask(id, remote, now); // its answer may have been lost
    for (const [id, at] of this.departed) if (now - at > 10 * this.timeoutMs) this.departed.delete(id);
    // After the poll phase, so heartbeats already received are read before judging.
    setImmediate(() => {
      if (!this.linked) return;
      const at = Date.now();
      for (const [id, remote] of this.remotes) if (at - remote.seen > this.timeoutMs) this.gone(id, 'timeout');
    });
  }

  /** Forget process `id`; the members of its rooms here receive `leave` for its members. */
  private gone(id: string, why: 'timeout' | 'bye'): void {
    const remote = this.remotes.get(id);
    if (remote === undefined) return;
    this.remotes.delete(id);
    // What it published while not in step comes first (its members were announced to the
    // members here, unless it had been given up before), then every member still left leaves.
    if (!remote.synced && !remote.departed) this.replay(remote.held, remote.rooms);
    let members = 0;
    for (const [room, conns] of remote.rooms) {
      members += conns.size;
      const unaware = remote.catchUp?.get(room);
      for (const m of conns.values()) this.notice('leave', room, m, unaware === undefined ? undefined : (c) => !unaware.has(c));
    }
    this.heard.delete(id);
    if (why === 'timeout') {
      this.departed.set(id, Date.now());
      this.pub.send(['HDEL', this.processesKey, id], this.checked);
      this.host?.brokerNotice('warn', { process: id, members }, 'a hub process stopped answering; its members left');
    }
    this.awaiting?.delete(id);
    this.checkSynced();
  }

  /** Deliver a `join`/`leave` notice for a member of another process to this process's members (those `accept`ed, if given). */
  private notice(type: 'join' | 'leave', room: string, m: Member, accept?: (connectionId: string) => boolean): void {
    if (!this.local.has(room)) return;
    const text = encodeMembership(type, room, identityFragment(m.userId, m.username), Math.floor((this.host?.now() ?? Date.now()) / 1000));
    if (accept === undefined) this.host?.deliver(room, new Outbound(text));
    else this.host?.deliverTo(room, new Outbound(text), accept);
  }

  private onMessage(channel: string, payload: string): void {
    if (channel === this.control) {
      this.onControl(payload);
      return;
    }
    if (!channel.startsWith(this.roomPrefix) || payload.length < ID_LENGTH || payload.startsWith(this.id)) return;
    const room = channel.slice(this.roomPrefix.length);
    const id = payload.slice(0, ID_LENGTH);
    const remote = this.remotes.get(id);
    if (remote !== undefined && remote.synced) {
      this.host?.deliver(room, new Outbound(payload.slice(ID_LENGTH)));
      return;
    }
    // A sender whose members are not known as of now: keep its frames until its state is in.
    const now = Date.now();
    const r = remote ?? this.heardOf(id, now);
    r.seen = now;
    this.hold(r, { kind: 'frame', room, text: payload.slice(ID_LENGTH) });
    this.ask(id, r, now);
  }

  private heardOf(id: string, now: number): Remote {
    const departed = this.departed.delete(id);
    const remote: Remote = { seen: now, rooms: new Map(), asked: 0, synced: false, held: [], overflow: false, departed, catchUp: undefined };
    this.remotes.set(id, remote);
    return remote;
  }

  private hold(remote: Remote, item: Held): void {
    if (remote.held.length < MAX_HELD) {
      remote.held.push(item);
    } else if (!remote.overflow) {
      remote.overflow = true;
      this.host?.brokerFailed(`more than ${MAX_HELD} frames of a hub process arrived before its state; dropping the rest`, undefined);
    }
  }

  private onControl(payload: string): void {
    let msg: Control;
    try {
      msg = JSON.parse(payload) as Control;
    } catch {
      return; // not ours: another program publishing on the channel
    }
    if (typeof msg !== 'object' || msg === null || typeof msg.p !== 'string' || msg.p === this.id) return;
    const now = Date.now();
    if (msg.t === 'bye') {
      this.gone(msg.p, 'bye');
      return;
    }
    const remote = this.remotes.get(msg.p) ?? this.heardOf(msg.p, now);
    remote.seen = now;
    switch (msg.t) {
      case 'state':
        this.synced(remote, msg.m);
        if (msg.ask === true) this.announce(this.state(false));
        if (this.onSynced !== undefined) this.heard.add(msg.p);
        this.awaiting?.delete(msg.p);
        this.checkSynced();
        return;
      case 'ask':
        if (msg.to === this.id) this.announce(this.state(false));
        return;
      case 'join':
      case 'leave':
      case 'beat':
        break;
      default:
        return;
    }
    // Not synced (first heard of in the middle of its life, or since this process
    // relinked): its news waits, in order with its frames, for its state.
    if (!remote.synced) {
      if (msg.t !== 'beat') this.hold(remote, { kind: msg.t, room: msg.r, c: msg.c, m: { userId: msg.u, username: msg.n } });
      this.ask(msg.p, remote, now);
      return;
    }
    if (msg.t === 'beat') {
      let count = 0;
      for (const conns of remote.rooms.values()) count += conns.size;
      if (count !== msg.n) this.ask(msg.p, remote, now);
    } else if (msg.t === 'join') {
      addMember(remote.rooms, msg.r, msg.c, { userId: msg.u, username: msg.n });
    } else {
      removeMember(remote.rooms, msg.r, msg.c);
    }
  }

  /** Ask process `id` for its whole state, at most once per heartbeat. */
  private ask(id: string, remote: Remote, now: number): void {
    if (now - remote.asked < this.beatMs) return;
    remote.asked = now;
    this.announce({ t: 'ask', p: this.id, to: id });
  }

  /**
   * Take a process's whole state S. What it published while out of step (`held`, H) came
   * before S was sent, so the state at the start of that window is S with H undone (M1).
   * The members here first hear of the changes from what they knew (M0) to M1, which they
   * missed (members that joined here while unlinked also hear `join` for M0's members they
   * were never shown), then H is replayed in order, join and leave frames included.
   */
  private synced(remote: Remote, rows: unknown): void {
    if (!Array.isArray(rows)) return;
    const state = new Map<string, Map<string, Member>>();
    for (const row of rows as unknown[]) {
      if (!Array.isArray(row) || row.length !== 4 || !row.every((x) => typeof x === 'string')) continue;
      const [room, c, userId, username] = row as StateRow;
      addMember(state, room, c, { userId, username });
    }
    // M1: S with the held presence changes undone, newest first.
    const start = copyRooms(state);
    for (let i = remote.held.length - 1; i >= 0; i--) {
      const h = remote.held[i] as Held;
      if (h.kind === 'join') removeMember(start, h.room, h.c);
      else if (h.kind === 'leave') addMember(start, h.room, h.c, h.m);
    }
    // A process given up and back: the members here were told that all its members left.
    const known = remote.departed ? new Map<string, Map<string, Member>>() : remote.rooms;
    const catchUp = remote.catchUp;
    for (const [room, conns] of known) {
      const now = start.get(room);
      const unaware = catchUp?.get(room);
      for (const [c, m] of conns) if (now?.has(c) !== true) this.notice('leave', room, m, unaware === undefined ? undefined : (id) => !unaware.has(id));
    }
    for (const [room, conns] of start) {
      const then = known.get(room);
      const unaware = catchUp?.get(room);
      for (const [c, m] of conns) {
        if (then?.has(c) !== true) this.notice('join', room, m);
        else if (unaware !== undefined) this.notice('join', room, m, (id) => unaware.has(id));
      }
    }
    const held = remote.held;
    remote.rooms = start;
    remote.held = [];
    remote.synced = true;
    remote.departed = false;
    remote.catchUp = undefined;
    remote.overflow = false;
    this.replay(held, remote.rooms);
  }

  /** Deliver held frames in order, applying held presence changes to `rooms` as they come. */
  private replay(held: readonly Held[], rooms: Map<string, Map<string, Member>>): void {
    for (const h of held) {
      if (h.kind === 'frame') this.host?.deliver(h.room, new Outbound(h.text));
      else if (h.kind === 'join') addMember(rooms, h.room, h.c, h.m);
      else removeMember(rooms, h.room, h.c);
    }
  }
}

/** A copy, two levels deep, of members by room. */
function copyRooms(rooms: ReadonlyMap<string, ReadonlyMap<string, Member>>): Map<string, Map<string, Member>> {
  const out = new Map<string, Map<string, Member>>();
  for (const [room, conns] of rooms) out.set(room, new Map(conns));
  return out;
}

/** A copy, two levels deep, of connection ids by room. */
function copyIds(rooms: ReadonlyMap<string, ReadonlySet<string>>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [room, ids] of rooms) out.set(room, new Set(ids));
  return out;
}

function addMember(rooms: Map<string, Map<string, Member>>, room: string, c: string, m: Member): void {
  let conns = rooms.get(room);
  if (conns === undefined) rooms.set(room, (conns = new Map()));
  conns.set(c, m);
}

function removeMember(rooms: Map<string, Map<string, Member>>, room: string, c: string): void {
  const conns = rooms.get(room);
  if (conns !== undefined && conns.delete(c) && conns.size === 0) rooms.delete(room);
}
