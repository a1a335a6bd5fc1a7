/**
 * An in-memory message bus, a manual clock and a recording broker host for unit tests of
 * the cross-process presence protocol (src/brokers/presence.ts).
 *
 * - {@link FakeServer} is one Redis: a single total order of published messages, a
 *   registry of processes, and a delivery queue per subscriber. Nothing is delivered
 *   until the test says so ({@link FakeServer.deliverAll}, or one message at a time with
 *   {@link FakeServer.deliverNext}), so tests interleave processes exactly.
 * - {@link FakeBus} is one process's {@link Bus} on that server. It goes down and up when
 *   told ({@link FakeBus.goDown}, {@link FakeBus.goUp}); its room subscriptions are in
 *   place on the server at once or when the test says ({@link FakeBus.completeSubscribe}),
 *   and a room's messages reach it only from that moment on.
 * - {@link FakeClock} only moves when told. `after(0)` callbacks wait for the next
 *   {@link FakeClock.advance} or {@link FakeClock.flush} (as `setImmediate` waits for the
 *   messages already received), and groups of timers can be frozen to model a stalled process.
 * - {@link FakeHost} is the hub side: room membership per connection, and every frame the
 *   broker delivers, notice and failure it reports.
 */
import type { Bus, BusEvents } from '../../src/brokers/presence';
import type { Outbound } from '../../src/core/protocol';
import type { BrokerHost, Clock } from '../../src/core/types';

/** The channel every process receives. */
export const CONTROL = 'control';

/** The channel of `room`. */
export function roomChannel(room: string): string {
  return `room:${room}`;
}

/** One message in the server's total order. */
export interface Published {
  /** Position in the total order, from 1. */
  readonly seq: number;
  readonly channel: string;
  readonly payload: string;
  /** The bus that published it (its name), or undefined when the test injected it. */
  readonly from: string | undefined;
}

/** Resolves once every pending microtask (and what they queue) has run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** One Redis: the total order of messages, the registry, per-subscriber queues. */
export class FakeServer {
  /** Every message published, in the server's order. */
  readonly log: Published[] = [];
  /** Process id to the time it last registered. */
  readonly registry = new Map<string, number>();
  readonly buses: FakeBus[] = [];
  private readonly subs = new Map<string, Set<FakeBus>>();
  private seq = 0;

  /** Append `payload` to the total order and queue it for every subscriber of `channel` in place now. */
  publish(channel: string, payload: string, from?: string): Published {
    const msg: Published = { seq: ++this.seq, channel, payload, from };
    this.log.push(msg);
    for (const bus of this.subs.get(channel) ?? []) bus.enqueue(msg);
    return msg;
  }

  /** @internal Put `bus`'s subscription to `channel` in place. */
  place(bus: FakeBus, channel: string): void {
    let set = this.subs.get(channel);
    if (set === undefined) this.subs.set(channel, (set = new Set()));
    set.add(bus);
  }

  /** @internal */
  remove(bus: FakeBus, channel: string): void {
    this.subs.get(channel)?.delete(bus);
  }

  /** @internal */
  removeAll(bus: FakeBus): void {
    for (const set of this.subs.values()) set.delete(bus);
  }

  /** Whether `bus`'s subscription to `channel` is in place. */
  subscribed(bus: FakeBus, channel: string): boolean {
    return this.subs.get(channel)?.has(bus) === true;
  }

  /** Messages waiting in any queue. */
  get queued(): number {
    let n = 0;
    for (const bus of this.buses) n += bus.queue.length;
    return n;
  }

  /** Remove the queued messages that match from the queues of `buses` (all by default): they are lost. */
  lose(match: (msg: Published) => boolean, buses: readonly FakeBus[] = this.buses): number {
    let n = 0;
    for (const bus of buses) n += bus.loseQueued(match);
    return n;
  }

  /** Deliver the next message queued for `bus`, synchronously; returns it, or undefined. */
  deliverNext(bus: FakeBus): Published | undefined {
    return bus.canDeliver() ? bus.deliverOne() : undefined;
  }

  /**
   * Deliver until nothing deliverable is left: one message to each bus in turn, with the
   * microtasks run between rounds (a subscription's marker, a registry read, a flush).
   * Returns how many messages were delivered.
   */
  async deliverAll(maxRounds = 1_000_000): Promise<number> {
    let n = 0;
    for (let round = 0; round < maxRounds; round++) {
      await settle();
      let progressed = false;
      for (const bus of this.buses) {
        if (!bus.canDeliver()) continue;
        bus.deliverOne();
        n++;
        progressed = true;
      }
      if (!progressed) {
        await settle();
        if (!this.buses.some((b) => b.canDeliver())) return n;
      }
    }
    throw new Error(`deliverAll: still delivering after ${maxRounds} rounds`);
  }

  /** Control messages published by `from` (a bus name), parsed. */
  control(from?: string): Record<string, unknown>[] {
    return this.log.filter((m) => m.channel === CONTROL && (from === undefined || m.from === from)).map((m) => JSON.parse(m.payload) as Record<string, unknown>);
  }

  /** Payloads published on `room`'s channel (by `from`, if given). */
  room(room: string, from?: string): string[] {
    return this.log.filter((m) => m.channel === roomChannel(room) && (from === undefined || m.from === from)).map((m) => m.payload);
  }

  /** Payloads published on any room channel by `from`. */
  rooms(from: string): string[] {
    return this.log.filter((m) => m.channel !== CONTROL && m.from === from).map((m) => m.payload);
  }
}

export interface FakeBusOptions {
  /** For logs and {@link Published.from}. */
  readonly name: string;
  /** Connect when opened (up and receiving, with `up()` reported in a microtask). @default true */
  readonly up?: boolean;
  /** Room subscriptions are put in place by {@link FakeBus.completeSubscribe}, not at once. @default false */
  readonly manualSubscribe?: boolean;
  /** {@link Bus.flush} waits for {@link FakeBus.releaseFlushes}. @default false */
  readonly holdFlush?: boolean;
}

/** One process's {@link Bus} on a {@link FakeServer}. */
export class FakeBus implements Bus {
  readonly kind = 'fake';
  readonly title = 'Fake bus';
  /** One order for every channel (one Redis node); false plays a Cluster's shards. */
  ordered = true;
  readonly address: string;
  readonly name: string;
  /** Messages waiting to be delivered to this process, in the server's order. */
  queue: Published[] = [];
  /** Whether publishing works (what {@link Bus.up} reports, once opened). */
  publishing = false;
  /** Whether the receiving side is connected (messages are queued for it). */
  receiving = false;
  /** Delivery to this process is suspended (a stalled event loop): messages wait in its queue. */
  paused = false;
  /** Messages that match are dropped when they reach the head of the queue (lost on the way in). */
  dropIncoming: ((msg: Published) => boolean) | undefined;
  /** Delivery stops while the head of the queue matches (a slow link): order is kept. */
  blockAt: ((msg: Published) => boolean) | undefined;
  manualSubscribe: boolean;
  holdFlush: boolean;
  /** Payloads published while down, dropped. */
  readonly dropped: { channel: string; payload: string }[] = [];
  /** Messages delivered to this process, in order. */
  readonly received: Published[] = [];
  probes = 0;
  opened = false;
  closed = false;
  events: BusEvents | undefined;
  /** Rooms this process wants to receive (across reconnects). */
  readonly rooms = new Set<string>();
  private readonly startUp: boolean;
  private readonly pendingSubs = new Map<string, { resolve: () => void; reject: (err: Error) => void }[]>();
  private pendingFlushes: { resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(
    readonly server: FakeServer,
    options: FakeBusOptions,
  ) {
    this.name = options.name;
    this.address = `fake://${options.name}`;
    this.startUp = options.up ?? true;
    this.manualSubscribe = options.manualSubscribe ?? false;
    this.holdFlush = options.holdFlush ?? false;
    server.buses.push(this);
  }

  get up(): boolean {
    return this.opened && !this.closed && this.publishing;
  }

  open(events: BusEvents): void {
    this.events = events;
    this.opened = true;
    if (!this.startUp) return;
    this.publishing = true;
    this.connectReceiving();
    void Promise.resolve().then(() => {
      if (this.up) this.events?.up();
    });
  }

  /**
   * The bus loses its connection. `receiving`: the receiving side went down (queued
   * messages are lost, subscriptions dropped); otherwise only publishing did. Publishing
   * goes down in both cases unless `keepPublishing` (receiving down only).
   */
  goDown(receiving: boolean, options: { keepPublishing?: boolean; error?: Error } = {}): void {
    const err = options.error ?? new Error('connection lost');
    if (receiving) {
      this.receiving = false;
      this.queue = [];
      this.server.removeAll(this);
      for (const [room, waiters] of this.pendingSubs) {
        this.pendingSubs.delete(room);
        for (const w of waiters) w.reject(new Error('connection lost'));
      }
    }
    if (!receiving || options.keepPublishing !== true) this.publishing = false;
    const flushes = this.pendingFlushes;
    this.pendingFlushes = [];
    for (const f of flushes) f.reject(err);
    this.events?.down(err, receiving);
  }

  /** The bus is back: both sides connected (the control channel and every wanted room resubscribed), `up()` reported. */
  goUp(): void {
    this.publishing = true;
    if (!this.receiving) this.connectReceiving();
    this.events?.up();
  }

  private connectReceiving(): void {
    this.receiving = true;
    this.server.place(this, CONTROL);
    for (const room of this.rooms) this.server.place(this, roomChannel(room));
  }

  publishControl(payload: string): void {
    this.send(CONTROL, payload);
  }

  publishRoom(room: string, payload: string): void {
    this.send(roomChannel(room), payload);
  }

  private send(channel: string, payload: string): void {
    if (!this.up) {
      this.dropped.push({ channel, payload });
      return;
    }
    this.server.publish(channel, payload, this.name);
  }

  subscribe(room: string): Promise<void> {
    this.rooms.add(room);
    if (this.closed || !this.receiving) return Promise.reject(new Error('not connected'));
    if (!this.manualSubscribe) {
      this.server.place(this, roomChannel(room));
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      let waiters = this.pendingSubs.get(room);
      if (waiters === undefined) this.pendingSubs.set(room, (waiters = []));
      waiters.push({ resolve, reject });
    });
  }

  /** Rooms whose subscription waits for the test. */
  get subscribing(): string[] {
    return [...this.pendingSubs.keys()];
  }

  /** Put the subscription to `room` in place on the server now, and resolve its `subscribe` calls. */
  completeSubscribe(room: string): void {
    const waiters = this.pendingSubs.get(room);
    if (waiters === undefined) throw new Error(`no subscription to ${room} is waiting`);
    this.pendingSubs.delete(room);
    if (this.rooms.has(room) && this.receiving) this.server.place(this, roomChannel(room));
    for (const w of waiters) w.resolve();
  }

  /** Refuse the subscription to `room` (its `subscribe` calls reject). */
  failSubscribe(room: string, err = new Error('refused')): void {
    const waiters = this.pendingSubs.get(room) ?? [];
    this.pendingSubs.delete(room);
    for (const w of waiters) w.reject(err);
  }

  unsubscribe(room: string): void {
    this.rooms.delete(room);
    this.server.remove(this, roomChannel(room));
  }

  register(id: string, at: number): void {
    if (this.up) this.server.registry.set(id, at);
  }

  unregister(ids: readonly string[]): void {
    if (!this.up) return;
    for (const id of ids) this.server.registry.delete(id);
  }

  registered(): Promise<ReadonlyMap<string, number>> {
    if (!this.up) return Promise.reject(new Error('down'));
    return Promise.resolve(new Map(this.server.registry));
  }

  flush(): Promise<void> {
    if (!this.up) return Promise.reject(new Error('down'));
    if (!this.holdFlush) return Promise.resolve();
    return new Promise((resolve, reject) => this.pendingFlushes.push({ resolve, reject }));
  }

  /** Resolve every held {@link Bus.flush}. */
  releaseFlushes(): void {
    const flushes = this.pendingFlushes;
    this.pendingFlushes = [];
    for (const f of flushes) f.resolve();
  }

  probe(): void {
    this.probes++;
  }

  close(): Promise<void> {
    this.closed = true;
    this.publishing = false;
    this.receiving = false;
    this.queue = [];
    this.server.removeAll(this);
    return Promise.resolve();
  }

  // ---- delivery (driven by the server) ----------------------------------------------

  /** @internal */
  enqueue(msg: Published): void {
    if (this.receiving) this.queue.push(msg);
  }

  /** @internal */
  loseQueued(match: (msg: Published) => boolean): number {
    const before = this.queue.length;
    this.queue = this.queue.filter((m) => !match(m));
    return before - this.queue.length;
  }

  /** Whether a message can be delivered to this process now. */
  canDeliver(): boolean {
    const head = this.queue[0];
    return head !== undefined && this.receiving && !this.paused && this.events !== undefined && !(this.blockAt?.(head) ?? false);
  }

  /** @internal Deliver the head of the queue. */
  deliverOne(): Published | undefined {
    const msg = this.queue.shift();
    if (msg === undefined || this.events === undefined) return undefined;
    if (this.dropIncoming?.(msg) === true) return msg;
    this.received.push(msg);
    if (msg.channel === CONTROL) this.events.control(msg.payload);
    else this.events.room(msg.channel.slice('room:'.length), msg.payload);
    return msg;
  }
}

interface Timer {
  at: number;
  readonly every: number;
  readonly fn: () => void;
  live: boolean;
  readonly seq: number;
  readonly group: string;
}

/**
 * A clock that moves only when told. Timers fire in time order (ties in creation order).
 * `after(0)` runs once the time is about to move on, or on {@link FakeClock.flush}: at the
 * end of an {@link FakeClock.advance} it stays pending, so the test can deliver the
 * messages "already received" first. Timers made through {@link FakeClock.view} belong to
 * a group that {@link FakeClock.freeze} stops (a stalled process) until
 * {@link FakeClock.thaw}, when each overdue timer fires once, as after a real stall.
 */
export class FakeClock implements Clock {
  private t: number;
  private timers: Timer[] = [];
  private immediates: Timer[] = [];
  private seq = 0;
  private readonly frozen = new Set<string>();

  constructor(start = Date.UTC(2030, 0, 1, 0, 0, 0)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  every(ms: number, fn: () => void): () => void {
    return this.add(ms, fn, true, '');
  }

  after(ms: number, fn: () => void): () => void {
    return this.add(ms, fn, false, '');
  }

  /** A {@link Clock} on this time whose timers belong to `group`. */
  view(group: string): Clock {
    return {
      now: () => this.t,
      every: (ms, fn) => this.add(ms, fn, true, group),
      after: (ms, fn) => this.add(ms, fn, false, group),
    };
  }

  private add(ms: number, fn: () => void, repeat: boolean, group: string): () => void {
    if (repeat && !(ms > 0)) throw new Error('every() needs a positive interval');
    const timer: Timer = { at: this.t + Math.max(0, ms), every: repeat ? ms : 0, fn, live: true, seq: ++this.seq, group };
    if (!repeat && ms <= 0) this.immediates.push(timer);
    else this.timers.push(timer);
    return () => {
      timer.live = false;
    };
  }

  private nextDue(end: number): Timer | undefined {
    let best: Timer | undefined;
    for (const x of this.timers) {
      if (!x.live || x.at > end || this.frozen.has(x.group)) continue;
      if (best === undefined || x.at < best.at || (x.at === best.at && x.seq < best.seq)) best = x;
    }
    return best;
  }

  private hasImmediates(): boolean {
    return this.immediates.some((x) => x.live && !this.frozen.has(x.group));
  }

  private runImmediates(): void {
    const run = this.immediates.filter((x) => x.live && !this.frozen.has(x.group));
    this.immediates = this.immediates.filter((x) => x.live && this.frozen.has(x.group));
    for (const x of run) {
      if (!x.live) continue;
      x.live = false;
      x.fn();
    }
  }

  /** Move time forward by `ms`, firing due timers at their own times (every one as often as due). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 1_000_000) throw new Error('FakeClock.advance: runaway timers');
      const next = this.nextDue(end);
      if (this.hasImmediates() && (next === undefined ? this.t < end : next.at > this.t)) {
        this.runImmediates();
        continue;
      }
      if (next === undefined) break;
      this.t = next.at;
      if (next.every > 0) next.at += next.every;
      else next.live = false;
      next.fn();
    }
    this.t = end;
    this.timers = this.timers.filter((x) => x.live);
  }

  /** Run the pending `after(0)` callbacks (and those they schedule). */
  flush(): void {
    for (let guard = 0; this.hasImmediates(); guard++) {
      if (guard > 10_000) throw new Error('FakeClock.flush: runaway immediates');
      this.runImmediates();
    }
  }

  /** Stop the timers of `group` (its process is stalled): time goes on, they do not fire. */
  freeze(group: string): void {
    this.frozen.add(group);
  }

  /** The stall of `group` ends: each of its overdue timers fires once, now (an `every` one then runs from now). */
  thaw(group: string): void {
    this.frozen.delete(group);
    const due = this.timers.filter((x) => x.live && x.group === group && x.at <= this.t).sort((a, b) => a.at - b.at || a.seq - b.seq);
    for (const x of due) {
      if (!x.live) continue;
      if (x.every > 0) x.at = this.t + x.every;
      else x.live = false;
      x.fn();
    }
    this.timers = this.timers.filter((x) => x.live);
  }

  /** Live timers (of `group`, if given), `after(0)` ones included. */
  pending(group?: string): number {
    return [...this.timers, ...this.immediates].filter((x) => x.live && (group === undefined || x.group === group)).length;
  }
}

/** A frame as a connection receives it (parsed JSON text). */
export interface Frame {
  readonly type: string;
  readonly room?: string;
  readonly user_id?: string;
  readonly username?: string;
  readonly content?: string;
  readonly data?: unknown;
  readonly [key: string]: unknown;
}

/** `join b1`, `leave b1`, `msg b1: hi`, `list a1,b1`: what a test compares. */
export function summarize(frame: Frame): string {
  switch (frame.type) {
    case 'join':
    case 'leave':
      return `${frame.type} ${String(frame.username)}`;
    case 'message':
      return `msg ${String(frame.username)}: ${String(frame.content)}`;
    case 'user_list':
      return `list ${(frame.data as string[]).join(',')}`;
    default:
      return JSON.stringify(frame);
  }
}

interface HostMember {
  readonly userId: string;
  readonly username: string;
}

/** One delivery the broker made. */
export interface Delivery {
  readonly room: string;
  readonly frame: Frame;
  /** The connections it reached. */
  readonly to: readonly string[];
  /** Made with `deliverTo` (to some members only). */
  readonly filtered: boolean;
}

/**
 * The hub side of one process: its room members (by connection id), what each connection
 * received, and the broker's notices and failures.
 */
export class FakeHost implements BrokerHost {
  readonly members = new Map<string, Map<string, HostMember>>();
  /** Frames per connection id, in the order received. */
  readonly inbox = new Map<string, Frame[]>();
  readonly deliveries: Delivery[] = [];
  readonly notices: { level: 'info' | 'warn'; fields: object; message: string }[] = [];
  readonly failures: { message: string; cause: unknown }[] = [];

  constructor(private readonly clock: Clock) {}

  /** `conn` is now a member of `room` (before the broker hears of it, as in the hub). */
  add(room: string, conn: string, userId: string, username = userId): void {
    let m = this.members.get(room);
    if (m === undefined) this.members.set(room, (m = new Map()));
    m.set(conn, { userId, username });
    if (!this.inbox.has(conn)) this.inbox.set(conn, []);
  }

  remove(room: string, conn: string): void {
    const m = this.members.get(room);
    if (m !== undefined && m.delete(conn) && m.size === 0) this.members.delete(room);
  }

  /** Give `conn` a frame directly (a `user_list`, as the hub sends it). */
  receive(conn: string, frame: Frame): void {
    let box = this.inbox.get(conn);
    if (box === undefined) this.inbox.set(conn, (box = []));
    box.push(frame);
  }

  deliver(room: string, message: Outbound): void {
    this.record(room, message, undefined);
  }

  deliverTo(room: string, message: Outbound, accept: (connectionId: string) => boolean): void {
    this.record(room, message, accept);
  }

  private record(room: string, message: Outbound, accept: ((connectionId: string) => boolean) | undefined): void {
    const frame = JSON.parse(message.text) as Frame;
    const to: string[] = [];
    for (const conn of this.members.get(room)?.keys() ?? []) {
      if (accept !== undefined && !accept(conn)) continue;
      to.push(conn);
      this.receive(conn, frame);
    }
    this.deliveries.push({ room, frame, to, filtered: accept !== undefined });
  }

  localUsers(room: string): string[] {
    const users = new Map<string, string>();
    for (const m of this.members.get(room)?.values() ?? []) if (!users.has(m.userId)) users.set(m.userId, m.username);
    return [...users.values()];
  }

  now(): number {
    return this.clock.now();
  }

  brokerFailed(message: string, cause: unknown): void {
    this.failures.push({ message, cause });
  }

  brokerNotice(level: 'info' | 'warn', fields: object, message: string): void {
    this.notices.push({ level, fields, message });
  }

  every(ms: number, fn: () => void): () => void {
    return this.clock.every(ms, fn);
  }

  /** What `conn` received, summarized ({@link summarize}). */
  seen(conn: string): string[] {
    return (this.inbox.get(conn) ?? []).map(summarize);
  }

  /** Deliveries made in `room`, summarized, each with the connections it reached. */
  room(room: string): string[] {
    return this.deliveries.filter((d) => d.room === room).map((d) => `${summarize(d.frame)} -> ${d.to.join(',')}`);
  }
}
