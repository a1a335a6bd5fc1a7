/**
 * The cross-process presence protocol: several hub processes joined by a message bus form
 * one hub. It knows nothing of Redis: a {@link Bus} carries its payloads (a control channel
 * for presence, one channel per room for frames) and keeps a registry of processes, and a
 * {@link Clock} times it, so the same protocol fits another bus and runs under fake timers.
 *
 * Room frames go over one channel per room, which a process subscribes to while it has
 * members there. Each payload starts with the publishing process's id, so its own copy,
 * already delivered locally, is skipped: every member gets every frame exactly once, and a
 * sender's frames keep their order because one process publishes them in order.
 *
 * Presence goes over the control channel: every process announces its members' joins and
 * leaves, a beat every `beatInterval` with its member count, and its whole state whenever
 * it (re)connects or another process asks. Each process keeps a mirror of the others, so
 * `user_list` needs no query. A process unheard of for `processTimeout` is gone: its
 * members leave every mirror, and the members of their rooms here receive `leave` for them.
 * While the bus is down a process serves its own members and lists only them; once it is
 * back (an empty, restarted server included) the processes exchange their states and send
 * `join`/`leave` for what changed meanwhile.
 *
 * Two moments are found in-band, from the bus's own message order, never from when a
 * client library reports a subscription: a process is linked once its own state comes back
 * on the control channel (so everything after it is in order with its announcement), and a
 * room it starts to receive is in step once its own marker comes back on the room's channel
 * (the moment its `user_list` describes).
 */
import { randomBytes } from 'node:crypto';
import { systemClock } from '../core/clock';
import { RoomwireError } from '../core/errors';
import { encodeMembership, identityFragment, Outbound, type MessageParts } from '../core/protocol';
import { LocalSeats, seatName } from '../core/seats';
import type { Broker, BrokerHealth, BrokerHistory, BrokerHost, BrokerSeats, Clock, HistoryPolicy, HistoryRead, PresenceEntry, SeatKey, StreamPosition } from '../core/types';
import { RoomSequencer, type StreamSlice } from './sequencer';

/**
 * What the presence protocol needs of a message bus between hub processes: two kinds of
 * channels, a registry of live processes, and a round trip. The Redis bus of
 * `roomwire/redis` is one; a NATS bus would be another.
 *
 * @internal
 */
export interface Bus {
  /** Reported as {@link BrokerHealth.kind}. */
  readonly kind: string;
  /** What it is, for messages: `Redis`. */
  readonly title: string;
  /** Where the bus connects, without secrets, for messages and log fields. */
  readonly address: string;
  /** Whether a publish can go out now. */
  readonly up: boolean;
  /**
   * Whether the control channel and every room's channel reach a process in one order (one
   * Redis node). False when they travel apart (the shards of a Redis Cluster).
   */
  readonly ordered: boolean;
  /** Connect, and keep reconnecting until {@link Bus.close}; report through `events`. */
  open(events: BusEvents): void;
  /** Publish on the control channel, which every process receives; dropped when down. */
  publishControl(payload: string): void;
  /** Publish on `room`'s channel; dropped when down. */
  publishRoom(room: string, payload: string): void;
  /**
   * Receive `room`'s channel from now on, across reconnects, until {@link Bus.unsubscribe}.
   * Resolves once the subscription is in place; rejects if it could not be made now.
   */
  subscribe(room: string): Promise<void>;
  /** Stop receiving `room`'s channel. */
  unsubscribe(room: string): void;
  /** Record this process as alive at `at` (ms) in the registry. */
  register(id: string, at: number): void;
  /** Remove processes from the registry. */
  unregister(ids: readonly string[]): void;
  /** The registry: process id to the time it last registered. */
  registered(): Promise<ReadonlyMap<string, number>>;
  /** Resolves once everything published so far has gone through; rejects when down. */
  flush(): Promise<void>;
  /** Called every beat: check that the server still answers, and reconnect if not. */
  probe(): void;
  /** Disconnect for good. */
  close(): Promise<void>;
  /** Room streams for history (docs/protocol.md section 9), when the bus keeps them. */
  readonly streams?: BusStreams;
  /** Connection counts for the caps per user and address (docs/protocol.md section 10), when the bus keeps them. */
  readonly seats?: BusSeats;
}

/**
 * Connection counts on a bus: per cap, a count per process, checked and counted in one
 * step on the server; the counts of a process silent for `timeout` ms do not count.
 *
 * @internal
 */
export interface BusSeats {
  /** Count one connection on every cap unless one is full: -1, or the index of the full one. Rejects when the bus cannot be reached. */
  acquire(caps: readonly { readonly name: string; readonly cap: number }[], process: string, now: number, timeout: number): Promise<number>;
  /** Uncount one connection of `process` on every cap. */
  release(names: readonly string[], process: string): Promise<void>;
  /** Set `process`'s count on a cap (0 removes it): after the bus was away. */
  set(name: string, process: string, count: number): Promise<void>;
}

/**
 * Room streams on a bus: a counter, an epoch and the latest messages of each room, changed
 * only by {@link BusStreams.append}, which numbers, keeps and publishes a message in one
 * step on the server, so the frame delivered and the frame kept can never disagree.
 *
 * @internal
 */
export interface BusStreams {
  /**
   * Number `message` (`head + offset + tail`), keep it and publish it on the room's channel as
   * `<process id>!<epoch> <offset> <frame>`. A lost stream starts anew with `epoch`.
   * Rejects when the bus cannot be reached.
   */
  append(room: string, policy: HistoryPolicy, message: MessageParts, process: string, epoch: string): Promise<StreamPosition>;
  /**
   * The room's position and, with `after` of the current epoch, the frames after it (all of
   * them, or undefined when some are no longer kept). A lost stream starts anew with `epoch`.
   */
  read(room: string, policy: HistoryPolicy | undefined, after: StreamPosition | undefined, epoch: string): Promise<StreamSlice>;
}

/** What a {@link Bus} reports to the protocol. @internal */
export interface BusEvents {
  /** Publishing and receiving work (again), the control channel included. */
  up(): void;
  /**
   * Publishing or receiving stopped. `receiving`: the receiving side went down, so messages
   * may have been missed (what the others did meanwhile must be learned anew).
   */
  down(err: Error, receiving: boolean): void;
  /** A payload on the control channel. */
  control(payload: string): void;
  /** A payload on `room`'s channel. */
  room(room: string, payload: string): void;
  /** Something went wrong that is not a lost connection (a refused command or login). */
  error(message: string, cause: unknown): void;
}

/** The protocol's timings; see {@link roomwire/redis!RedisBrokerOptions}. @internal */
export interface PresenceOptions {
  readonly beatInterval?: number;
  readonly processTimeout?: number;
  readonly startTimeout?: number;
  /** The clock of every timer and timestamp. @default the system clock */
  readonly clock?: Clock;
  /** This process's id (16 hex digits). @default random */
  readonly id?: string;
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
   * the middle of its life, or this process's receiving side reconnects, until its whole
   * state arrives.
   */
  synced: boolean;
  /** What it published while not synced (room frames and presence changes), in order, replayed when its state arrives. */
  held: Held[];
  /** Some of `held` was dropped (more than MAX_HELD); reported once. */
  overflow: boolean;
  /** This process told its members that all of its members left (it went silent), and it came back. */
  departed: boolean;
  /** Its members were announced here: a state of it was taken since it was (last) first heard of. */
  announced: boolean;
  /**
   * Members here that joined while this process was unlinked and this remote out of step,
   * by room: their user_list did not show its members, so its next state announces them.
   */
  catchUp: Map<string, Set<string>> | undefined;
}

/** A room frame, or a presence change, of a remote that is not in step yet. */
type Held =
  | { readonly kind: 'frame'; readonly room: string; readonly text: string; readonly epoch?: string; readonly offset?: number }
  | { readonly kind: 'join' | 'leave'; readonly room: string; readonly c: string; readonly m: Member };

/** A room whose channel this process is starting to receive: settled when its own marker comes back. */
class Pending {
  private waiters: (() => void)[] | undefined = [];

  /**
   * @param token - this subscription's markers
   * @param markers - markers still to come back: the room's, and on an unordered bus the control channel's
   */
  constructor(
    readonly token: string,
    public markers: number,
  ) {}

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

/** Control payloads. `k` on a state: the link token its sender waits to see come back. */
type Control =
  | { t: 'beat'; p: string; n: number }
  | { t: 'join' | 'leave'; p: string; r: string; c: string; u: string; n: string }
  | { t: 'state'; p: string; m: StateRow[]; ask?: boolean; k?: number }
  | { t: 'ask'; p: string; to: string }
  | { t: 'mark'; p: string; k: string }
  | { t: 'bye'; p: string };

/** Length of a process id, which starts every room payload. @internal */
export const ID_LENGTH = 16;
/** After the id, this character marks a room payload as a marker, not a frame. */
const MARK = '#';
const MARK_CODE = MARK.charCodeAt(0);
/** After the id, this character marks a numbered message: `!<epoch> <offset> <frame>`. */
const NUMBERED_CODE = '!'.charCodeAt(0);
/** How long a gap in a room's offsets may wait to close by itself before it is read from the stream. */
const GAP_MS = 500;
/** Room frames kept per process while waiting for its state; beyond, they are dropped. */
const MAX_HELD = 10_000;
/** Longest wait for the bus before a `user_list` is sent from what this process knows. */
const USERS_WAIT_MS = 500;
/** One report per kind of error per this many ms. */
const REPORT_EVERY_MS = 10_000;

/** Check a positive number of milliseconds, or take the default. @internal */
export function milliseconds(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new RoomwireError('ERR_INVALID_ARGUMENT', `${name} must be a positive number of milliseconds, not ${String(value)}`);
  }
  return value;
}

/**
 * A {@link Broker} that spreads one hub over every process on the same {@link Bus}.
 *
 * @internal
 */
export class PresenceBroker implements Broker {
  /** This process's id, at the start of its room payloads. */
  readonly id: string;
  private host: BrokerHost | undefined;
  private readonly clock: Clock;
  private readonly beatMs: number;
  private readonly timeoutMs: number;
  private readonly startMs: number;
  /** This process's members by room, then connection id. */
  private readonly local = new Map<string, Map<string, Member>>();
  private localCount = 0;
  /** Bumped by every local join and leave: a state sent at another version is out of date. */
  private version = 0;
  private readonly remotes = new Map<string, Remote>();
  /** Rooms whose channel is not in step yet, with what to run (synchronously) when it is. */
  private readonly subscribing = new Map<string, Pending>();
  private marks = 0;
  /** The bus is up and this process's state came back: remote presence counts. */
  private linked = false;
  /** The token of the last state whose return makes this process linked (0: none sent). */
  private linkToken = 0;
  /** The first such token since the bus came up: a slow bus may return an earlier one. */
  private firstLinkToken = 1;
  private linkSentAt = 0;
  /** The version of the state sent with the link token. */
  private linkVersion = 0;
  private wasLinked = false;
  private stopped = false;
  private stopBeat: (() => void) | undefined;
  /** Processes whose state {@link PresenceBroker.start} still waits for. */
  private awaiting: Set<string> | undefined;
  private onSynced: (() => void) | undefined;
  /** While starting: processes whose state arrived since the link came up. */
  private readonly heard = new Set<string>();
  private lastBeat = 0;
  private readonly reported = new Map<string, number>();
  /** Processes given up for silence, and when: if one speaks again its members are announced anew. */
  private readonly departed = new Map<string, number>();
  /**
   * Processes that said goodbye, and when. On an unordered bus (a Cluster) their last room
   * frames (the `leave` of their members) may arrive after the goodbye: for `processTimeout`
   * those are delivered, not held for a state that will never come.
   */
  private readonly byes = new Map<string, number>();
  /** Why the bus last went down, for messages. */
  private lastError: Error | undefined;
  /** Offset order of numbered messages at this process's members (history on). */
  private readonly sequencer: RoomSequencer;
  /** The room streams (docs/protocol.md section 9), when the bus keeps them. */
  readonly history: BrokerHistory | undefined;
  /** Connection counts for the caps (docs/protocol.md section 10): on the bus, and this process's own. */
  readonly seats: BrokerSeats | undefined;
  private readonly localSeats = new LocalSeats();
  /** Caps whose count of this process on the bus may be wrong (changed while the bus was away). */
  private readonly unsyncedSeats = new Set<string>();

  constructor(
    private readonly bus: Bus,
    options: PresenceOptions = {},
  ) {
    this.id = options.id ?? randomBytes(ID_LENGTH / 2).toString('hex');
    if (this.id.length !== ID_LENGTH) throw new RoomwireError('ERR_INVALID_ARGUMENT', `id must be ${ID_LENGTH} characters`);
    this.clock = options.clock ?? systemClock;
    this.beatMs = milliseconds('beatInterval', options.beatInterval, 2000);
    this.timeoutMs = milliseconds('processTimeout', options.processTimeout, 10_000);
    this.startMs = milliseconds('startTimeout', options.startTimeout, 3000);
    if (this.timeoutMs < 2 * this.beatMs) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', `processTimeout (${this.timeoutMs} ms) must be at least twice beatInterval (${this.beatMs} ms)`);
    }
    const streams = bus.streams;
    this.sequencer = new RoomSequencer(
      (room, message) => this.host?.deliver(room, message),
      (room, after) => (streams === undefined ? Promise.reject(new Error('no streams')) : streams.read(room, undefined, after, newEpoch())),
      this.clock,
      GAP_MS,
      (room, from, to, why) => this.report(`messages ${from} to ${to} of a room could not be delivered here: ${why}`, new Error(`room "${room}"`)),
    );
    this.history = streams === undefined ? undefined : this.streamsHistory(streams);
    this.seats = bus.seats === undefined ? undefined : this.busSeats(bus.seats);
  }

  /**
   * Caps counted on the bus across processes; while the bus is away, on this process's own
   * connections, and the bus's counts are set right once it is back.
   */
  private busSeats(seats: BusSeats): BrokerSeats {
    const local = this.localSeats;
    const offline = (keys: readonly SeatKey[]): number => {
      const full = local.acquire(keys);
      if (full < 0) for (const k of keys) this.unsyncedSeats.add(seatName(k));
      return full;
    };
    return {
      acquire: (keys) => {
        if (!this.linked || !this.bus.up) return offline(keys);
        const caps = keys.map((k) => ({ name: seatName(k), cap: k.cap }));
        return seats.acquire(caps, this.id, this.clock.now(), this.timeoutMs).then(
          (full) => {
            if (full < 0) local.add(keys);
            return full;
          },
          () => offline(keys),
        );
      },
      release: (keys) => {
        local.release(keys);
        const names = keys.map(seatName);
        const unsynced = (): void => {
          for (const n of names) this.unsyncedSeats.add(n);
        };
        if (this.linked && this.bus.up) seats.release(names, this.id).catch(unsynced);
        else unsynced();
      },
    };
  }

  /** Write this process's counts to the bus again: after it was away (or came back empty). */
  private resyncSeats(): void {
    const seats = this.bus.seats;
    if (seats === undefined) return;
    const names = new Set(this.unsyncedSeats);
    for (const [name] of this.localSeats.entries()) names.add(name);
    this.unsyncedSeats.clear();
    for (const name of names) {
      seats.set(name, this.id, this.localSeats.count(name)).catch(() => this.unsyncedSeats.add(name));
    }
  }

  /** History over the bus's streams: numbering in one step on the server, offset order here. */
  private streamsHistory(streams: BusStreams): BrokerHistory {
    return {
      publish: async (room: string, policy: HistoryPolicy, parts: MessageParts): Promise<number> => {
        // Only once linked: this process's state went out first (see publish).
        if (!this.linked || !this.bus.up) throw new RoomwireError('unavailable', `${this.where} cannot be reached`);
        let at: StreamPosition;
        try {
          at = await streams.append(room, policy, parts, this.id, newEpoch());
        } catch (err) {
          throw new RoomwireError('unavailable', `${this.where} did not number the message (${err instanceof Error ? err.message : String(err)})`, { cause: err });
        }
        if (this.local.has(room)) {
          this.sequencer.offer(room, at.epoch, new Outbound(`${parts.head}${at.offset}${parts.tail}`, at.offset));
          await this.sequencer.delivered(room, at.epoch, at.offset);
        }
        return at.offset;
      },
      read: async (room: string, policy: HistoryPolicy, since: StreamPosition | undefined): Promise<HistoryRead> => {
        // A room this process starts to receive: read once its channel is in step, so every
        // message after the position read comes on it.
        const pending = this.subscribing.get(room);
        if (pending !== undefined) await new Promise<void>((resolve) => pending.then(resolve));
        const slice = await streams.read(room, policy, since, newEpoch());
        if (this.local.has(room)) await this.sequencer.position(room, slice.epoch, slice.offset);
        const from = (since?.offset ?? 0) + 1;
        return {
          position: { offset: slice.offset, epoch: slice.epoch },
          messages: since === undefined || slice.frames === undefined ? undefined : slice.frames.map((text, i) => new Outbound(text, from + i)),
        };
      },
      stats: () => ({ rooms: 0, messages: 0, bytes: 0 }),
    };
  }

  /** Deliver a room frame from another process: numbered ones in offset order. */
  private deliverRemote(room: string, text: string, epoch: string | undefined, offset: number | undefined): void {
    if (epoch === undefined || offset === undefined) this.host?.deliver(room, new Outbound(text));
    else if (this.local.has(room)) this.sequencer.offer(room, epoch, new Outbound(text, offset));
  }

  start(host: BrokerHost): Promise<void> {
    this.host = host;
    this.bus.open({
      up: () => this.onUp(),
      down: (err, receiving) => this.onDown(err, receiving),
      control: (payload) => this.onControl(payload),
      room: (room, payload) => this.onRoom(room, payload),
      error: (message, cause) => this.report(message, cause),
    });
    this.stopBeat = this.clock.every(this.beatMs, () => this.beat());
    return new Promise<void>((resolve) => {
      // A program that awaits hub.ready() before it listens has nothing else keeping it
      // alive while the bus is unreachable; the clock's timers do not hold it open.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const cancel = this.clock.after(this.startMs, () => {
        clearInterval(keepAlive);
        this.onSynced = undefined;
        this.heard.clear();
        if (!this.linked) {
          const cause = this.lastError?.message ?? 'no answer';
          host.brokerNotice('warn', { after: this.startMs, address: this.bus.address, cause }, `${this.where} is not reachable yet (${cause}); serving this process only until it is`);
        }
        resolve();
      });
      this.onSynced = () => {
        cancel();
        clearInterval(keepAlive);
        this.onSynced = undefined;
        this.heard.clear();
        resolve();
      };
    });
  }

  /** `Redis at redis://host:port`, for messages. */
  private get where(): string {
    return `${this.bus.title} at ${this.bus.address}`;
  }

  // ---- the link ----------------------------------------------------------------------

  /** The bus is up: announce this process's state, and count as linked once it comes back. */
  private onUp(): void {
    if (this.stopped || this.linked) return;
    this.firstLinkToken = this.linkToken + 1;
    this.sendLinkState();
  }

  private sendLinkState(): void {
    this.linkToken++;
    this.linkSentAt = this.clock.now();
    this.linkVersion = this.version;
    this.publishControl({ ...this.stateRows(), ask: true, k: this.linkToken });
  }

  /** This process's own state came back: everything received from now on is in order with it. */
  private onLinked(token: number): void {
    this.linked = true;
    this.reported.clear();
    const now = this.clock.now();
    this.lastBeat = now;
    for (const r of this.remotes.values()) r.seen = now;
    this.host?.brokerNotice('info', { process: this.id }, this.wasLinked ? `${this.bus.title} connection restored` : `connected to ${this.where}`);
    this.wasLinked = true;
    this.bus.register(this.id, now);
    this.resyncSeats();
    // Members that joined or left since the state went out.
    if (token !== this.linkToken || this.version !== this.linkVersion) this.publishControl(this.stateRows());
    if (this.onSynced !== undefined) this.expectPeers(now);
  }

  /** Wait (in {@link PresenceBroker.start}) for the state of every process alive in the registry. */
  private expectPeers(now: number): void {
    this.bus.registered().then(
      (registry) => {
        const awaiting = new Set<string>();
        const stale: string[] = [];
        for (const [id, at] of registry) {
          if (id === this.id) continue;
          const age = now - at;
          if (!(age < this.timeoutMs)) stale.push(id);
          // Only processes that beat lately are waited for (a crashed one is not).
          else if (age < 2.5 * this.beatMs && !this.heard.has(id)) awaiting.add(id);
        }
        // Entries of processes that died with nobody watching (each live one refreshes its own).
        if (stale.length > 0) this.bus.unregister(stale);
        this.awaiting = awaiting;
        this.checkSynced();
        // A live process answers within a round trip; one that does not (it crashed a
        // moment ago) is not waited for beyond a beat.
        if (awaiting.size > 0) {
          this.clock.after(this.beatMs, () => {
            if (this.awaiting !== awaiting) return;
            awaiting.clear();
            this.checkSynced();
          });
        }
      },
      () => {
        this.awaiting = new Set();
        this.checkSynced();
      },
    );
  }

  private checkSynced(): void {
    if (this.awaiting !== undefined && this.awaiting.size === 0) {
      this.awaiting = undefined;
      this.onSynced?.();
    }
  }

  private onDown(err: Error, receiving: boolean): void {
    this.lastError = err;
    if (receiving) {
      // Messages were missed: what the others did meanwhile is unknown until their states
      // arrive; their frames wait for them, so no frame overtakes its sender's join.
      for (const r of this.remotes.values()) {
        r.synced = false;
        r.held = [];
        r.overflow = false;
      }
    }
    // Rooms starting to receive answer from what this process knows: their markers may be
    // lost, with the receiving side or with the publishing side before they went out.
    const pending = [...this.subscribing.values()];
    this.subscribing.clear();
    for (const p of pending) p.settle();
    if (!this.linked) return;
    this.linked = false;
    if (!this.stopped) this.host?.brokerFailed(`lost the connection to ${this.where} (${err.message}); serving this process's members only until it is back`, err);
  }

  /** Report an error at most every 10 s per message. */
  private report(message: string, cause: unknown): void {
    if (this.stopped) return;
    const now = this.clock.now();
    const last = this.reported.get(message);
    if (last !== undefined && now - last < REPORT_EVERY_MS) return;
    this.reported.set(message, now);
    this.host?.brokerFailed(message, cause);
  }

  private subscribe(room: string): void {
    const ordered = this.bus.ordered;
    const pending = new Pending(String(++this.marks), ordered ? 1 : 2);
    this.subscribing.set(room, pending);
    this.bus.subscribe(room).then(
      () => {
        if (this.subscribing.get(room) !== pending) return;
        // Subscribed: the marker comes back after every frame that was on its way before it.
        // When the channels travel apart, a second marker on the control channel comes back
        // after the presence news that was on its way: the list waits for both.
        if (this.bus.up) {
          this.bus.publishRoom(room, this.id + MARK + pending.token);
          if (!ordered) this.publishControl({ t: 'mark', p: this.id, k: pending.token });
          return;
        }
        // It cannot go out (publishing is down): the room is in step from now on.
        this.subscribing.delete(room);
        pending.settle();
      },
      (err: unknown) => {
        if (this.subscribing.get(room) !== pending) return;
        this.subscribing.delete(room);
        pending.settle();
        if (this.bus.up) this.report(`${this.where} refused to subscribe to a room's channel`, err);
      },
    );
  }

  // ---- Broker ------------------------------------------------------------------------

  publish(room: string, message: Outbound): void {
    this.host?.deliver(room, message);
    // Only once linked: this process's state went out first, so no process receives a
    // frame of a member it has not heard join.
    if (this.linked) this.bus.publishRoom(room, this.id + message.text);
  }

  join(room: string, entry: PresenceEntry): void {
    let members = this.local.get(room);
    if (members === undefined) {
      members = new Map();
      this.local.set(room, members);
      this.subscribe(room);
    }
    if (members.has(entry.connectionId)) return;
    members.set(entry.connectionId, { userId: entry.userId, username: entry.username });
    this.localCount++;
    this.version++;
    if (!this.linked) {
      // Its user_list does not show the processes out of step: once their states are back
      // it hears `join` for the members that were there all along.
      for (const r of this.remotes.values()) {
        if (r.synced) continue;
        r.catchUp ??= new Map();
        let ids = r.catchUp.get(room);
        if (ids === undefined) r.catchUp.set(room, (ids = new Set()));
        ids.add(entry.connectionId);
      }
      // Unlinked, the others learn of it from this process's state when it relinks.
      return;
    }
    this.publishControl({ t: 'join', p: this.id, r: room, c: entry.connectionId, u: entry.userId, n: entry.username });
  }

  leave(room: string, entry: PresenceEntry): void {
    const members = this.local.get(room);
    if (members === undefined || !members.delete(entry.connectionId)) return;
    this.localCount--;
    this.version++;
    for (const r of this.remotes.values()) r.catchUp?.get(room)?.delete(entry.connectionId);
    if (members.size === 0) {
      this.local.delete(room);
      this.sequencer.forget(room);
      const pending = this.subscribing.get(room);
      this.subscribing.delete(room);
      pending?.settle();
      this.bus.unsubscribe(room);
    }
    if (this.linked) this.publishControl({ t: 'leave', p: this.id, r: room, c: entry.connectionId, u: entry.userId, n: entry.username });
  }

  users(room: string): readonly string[] | Promise<readonly string[]> {
    if (!this.linked) return this.list(room);
    // The list is what the joiner's frames do not tell it: this process's members as of
    // now, and the other processes' members as of the moment the room's frames reach this
    // process (now, or when its marker comes back on a new subscription: the frames before
    // it are not delivered). Whoever joins after that is announced by a join frame instead.
    // It is sent once this process's earlier publishes (its join among them) went through,
    // so other processes know of the joiner before it knows of them; a bus that stops
    // answering delays it by USERS_WAIT_MS at most.
    const local = this.localUsers(room);
    const pending = this.subscribing.get(room);
    let list = pending === undefined ? this.withRemote(local, room) : undefined;
    return new Promise((resolve) => {
      let left = pending === undefined ? 1 : 2;
      const cancel = this.clock.after(USERS_WAIT_MS, () => {
        left = -1;
        resolve(list ?? this.withRemote(local, room));
      });
      const done = (): void => {
        if (--left !== 0) return;
        cancel();
        resolve(list ?? this.withRemote(local, room));
      };
      pending?.then(() => {
        list = this.withRemote(local, room);
        done();
      });
      this.bus.flush().then(done, () => {});
    });
  }

  health(): BrokerHealth {
    let processes = 1;
    if (this.linked) processes += this.remotes.size;
    return { kind: this.bus.kind, connected: this.linked, processes };
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.onSynced?.(); // settles hub.ready() and clears its timer
    this.stopBeat?.();
    if (this.bus.up) {
      this.publishControl({ t: 'bye', p: this.id });
      this.bus.unregister([this.id]);
    }
    this.linked = false;
    await this.bus.close();
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
    for (const remote of this.remotes.values()) {
      // Unlinked, a process still in step (only publishing went down) is listed: its frames
      // keep coming, so the members here must know who sends them.
      if (!this.linked && !remote.synced) continue;
      for (const m of remote.rooms.get(room)?.values() ?? []) if (!users.has(m.userId)) users.set(m.userId, m.username);
    }
    return [...users.values()];
  }

  private stateRows(): { t: 'state'; p: string; m: StateRow[] } {
    const m: StateRow[] = [];
    for (const [room, members] of this.local) for (const [c, u] of members) m.push([room, c, u.userId, u.username]);
    return { t: 'state', p: this.id, m };
  }

  private publishControl(message: Control): void {
    if (this.bus.up) this.bus.publishControl(JSON.stringify(message));
  }

  private beat(): void {
    const now = this.clock.now();
    const late = now - this.lastBeat > 2 * this.beatMs;
    this.lastBeat = now;
    // Beats go out whenever they can, so the others keep this process's members while only
    // its receiving side is down.
    if (this.bus.up) {
      this.bus.register(this.id, now);
      this.publishControl({ t: 'beat', p: this.id, n: this.localCount });
    }
    this.bus.probe();
    if (!this.linked) {
      // The state that links this process may have been lost: send it again.
      if (this.bus.up && now - this.linkSentAt >= this.beatMs) this.sendLinkState();
      return;
    }
    if (late) {
      // This process was stalled (GC, CPU, SIGSTOP): the others' beats are waiting unread,
      // so their silence means nothing yet; and they may have given this process up, so
      // it tells them its state again.
      for (const remote of this.remotes.values()) remote.seen = now;
      this.publishControl(this.stateRows());
      // The others may have dropped this process's connection counts meanwhile.
      this.resyncSeats();
      return;
    }
    for (const [id, remote] of this.remotes) if (!remote.synced) this.ask(id, remote, now); // its answer may have been lost
    for (const [id, at] of this.departed) if (now - at > 10 * this.timeoutMs) this.departed.delete(id);
    for (const [id, at] of this.byes) if (now - at > this.timeoutMs) this.byes.delete(id);
    // After the messages already received are read, before judging silence.
    this.clock.after(0, () => {
      if (!this.linked) return;
      const at = this.clock.now();
      for (const [id, remote] of this.remotes) if (at - remote.seen > this.timeoutMs) this.gone(id, 'timeout');
    });
  }

  /** Forget process `id`; the members of its rooms here receive `leave` for its members. */
  private gone(id: string, why: 'timeout' | 'bye'): void {
    const remote = this.remotes.get(id);
    if (remote === undefined) return;
    this.remotes.delete(id);
    // What it published while not in step comes first if its members were announced to the
    // members here (not if it was first heard of, or given up and back, since its last
    // state): then every member still left leaves.
    if (!remote.synced && remote.announced) this.replay(remote.held, remote.rooms);
    let members = 0;
    for (const [room, conns] of remote.rooms) {
      members += conns.size;
      const unaware = remote.catchUp?.get(room);
      for (const m of conns.values()) this.notice('leave', room, m, unaware === undefined ? undefined : (c) => !unaware.has(c));
    }
    this.heard.delete(id);
    if (why === 'bye') this.byes.set(id, this.clock.now());
    if (why === 'timeout') {
      this.departed.set(id, this.clock.now());
      this.bus.unregister([id]);
      this.host?.brokerNotice('warn', { process: id, members }, 'a hub process stopped answering; its members left');
    }
    this.awaiting?.delete(id);
    this.checkSynced();
  }

  /** Deliver a `join`/`leave` notice for a member of another process to this process's members (those `accept`ed, if given). */
  private notice(type: 'join' | 'leave', room: string, m: Member, accept?: (connectionId: string) => boolean): void {
    if (!this.local.has(room)) return;
    const text = encodeMembership(type, room, identityFragment(m.userId, m.username), Math.floor((this.host?.now() ?? this.clock.now()) / 1000));
    if (accept === undefined) this.host?.deliver(room, new Outbound(text));
    else this.host?.deliverTo(room, new Outbound(text), accept);
  }

  private onRoom(room: string, payload: string): void {
    if (payload.length < ID_LENGTH) return;
    const marker = payload.charCodeAt(ID_LENGTH) === MARK_CODE;
    if (payload.startsWith(this.id)) {
      if (marker) this.marked(room, payload.slice(ID_LENGTH + 1));
      return;
    }
    // Another process's marker; or, when all channels reach this process in one order, a
    // frame before this process's own marker on a new subscription: nobody here has the
    // room's user_list yet, which will list its sender. (Unordered, such a frame is
    // delivered: its sender's presence news may not be in yet, and a join announced and
    // listed both beats a join never shown.)
    if (marker || (this.bus.ordered && this.subscribing.has(room))) return;
    const id = payload.slice(0, ID_LENGTH);
    let text: string;
    let epoch: string | undefined;
    let offset: number | undefined;
    if (payload.charCodeAt(ID_LENGTH) === NUMBERED_CODE) {
      // `!<epoch> <offset> <frame>`, written by the bus's numbering step.
      const a = payload.indexOf(' ', ID_LENGTH + 1);
      const b = a < 0 ? -1 : payload.indexOf(' ', a + 1);
      if (b < 0) return;
      epoch = payload.slice(ID_LENGTH + 1, a);
      offset = Number(payload.slice(a + 1, b));
      if (!Number.isSafeInteger(offset) || offset < 1) return;
      text = payload.slice(b + 1);
    } else {
      text = payload.slice(ID_LENGTH);
    }
    const remote = this.remotes.get(id);
    if (remote !== undefined && remote.synced) {
      this.deliverRemote(room, text, epoch, offset);
      return;
    }
    if (remote === undefined && this.byes.has(id)) {
      // A frame of a process that said goodbye, overtaken by its goodbye on another shard.
      this.deliverRemote(room, text, epoch, offset);
      return;
    }
    // A sender whose members are not known as of now: keep its frames until its state is in.
    const now = this.clock.now();
    const r = remote ?? this.heardOf(id, now);
    r.seen = now;
    this.hold(r, epoch === undefined ? { kind: 'frame', room, text } : { kind: 'frame', room, text, epoch, offset });
    this.ask(id, r, now);
  }

  /** This process's marker came back on `room`'s channel: the room is in step once every marker is back. */
  private marked(room: string, token: string): void {
    const pending = this.subscribing.get(room);
    if (pending === undefined || pending.token !== token || --pending.markers > 0) return;
    this.subscribing.delete(room);
    pending.settle();
  }

  /** This process's marker came back on the control channel (an unordered bus). */
  private markedControl(token: string): void {
    for (const [room, pending] of this.subscribing) {
      if (pending.token === token) {
        this.marked(room, token);
        return;
      }
    }
  }

  private heardOf(id: string, now: number): Remote {
    const departed = this.departed.delete(id);
    const remote: Remote = { seen: now, rooms: new Map(), asked: 0, synced: false, held: [], overflow: false, departed, announced: false, catchUp: undefined };
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
    if (typeof msg !== 'object' || msg === null || typeof msg.p !== 'string') return;
    if (msg.p === this.id) {
      if (msg.t === 'mark' && typeof msg.k === 'string') this.markedControl(msg.k);
      if (msg.t === 'state' && typeof msg.k === 'number' && msg.k >= this.firstLinkToken && !this.linked && this.bus.up) this.onLinked(msg.k);
      return;
    }
    const now = this.clock.now();
    if (msg.t === 'bye') {
      this.gone(msg.p, 'bye');
      return;
    }
    const remote = this.remotes.get(msg.p) ?? this.heardOf(msg.p, now);
    remote.seen = now;
    switch (msg.t) {
      case 'state':
        // Before this process is linked its own asking state is still on its way, and the
        // answers to it come after it: this one may miss what was held before it.
        if (!this.linked) return;
        this.synced(remote, msg.m);
        if (msg.ask === true) this.publishControl(this.stateRows());
        if (this.onSynced !== undefined) this.heard.add(msg.p);
        this.awaiting?.delete(msg.p);
        this.checkSynced();
        return;
      case 'ask':
        if (msg.to === this.id && this.linked) this.publishControl(this.stateRows());
        return;
      case 'join':
      case 'leave':
      case 'beat':
        break;
      default:
        return;
    }
    // Not synced (first heard of in the middle of its life, or since this process's
    // receiving side reconnected): its news waits, in order with its frames, for its state.
    if (!remote.synced) {
      if (msg.t !== 'beat') this.hold(remote, { kind: msg.t, room: msg.r, c: msg.c, m: { userId: msg.u, username: msg.n } });
      if (this.linked) this.ask(msg.p, remote, now);
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

  /** Ask process `id` for its whole state, at most once per beat. */
  private ask(id: string, remote: Remote, now: number): void {
    if (!this.linked || now - remote.asked < this.beatMs) return;
    remote.asked = now;
    this.publishControl({ t: 'ask', p: this.id, to: id });
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
    remote.announced = true;
    remote.departed = false;
    remote.catchUp = undefined;
    remote.overflow = false;
    this.replay(held, remote.rooms);
  }

  /** Deliver held frames in order, applying held presence changes to `rooms` as they come. */
  private replay(held: readonly Held[], rooms: Map<string, Map<string, Member>>): void {
    for (const h of held) {
      if (h.kind === 'frame') this.deliverRemote(h.room, h.text, h.epoch, h.offset);
      else if (h.kind === 'join') addMember(rooms, h.room, h.c, h.m);
      else removeMember(rooms, h.room, h.c);
    }
  }
}

/** A new epoch: 12 random URL-safe characters. */
function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

/** A copy, two levels deep, of members by room. */
function copyRooms(rooms: ReadonlyMap<string, ReadonlyMap<string, Member>>): Map<string, Map<string, Member>> {
  const out = new Map<string, Map<string, Member>>();
  for (const [room, conns] of rooms) out.set(room, new Map(conns));
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
