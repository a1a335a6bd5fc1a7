/**
 * The cross-process presence protocol (src/brokers/presence.ts) over an in-memory bus and
 * a manual clock: every delivery, beat and timeout is driven by the test, so each edge case
 * of docs/protocol.md section 6 is checked exactly, frame by frame.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PresenceBroker, type PresenceOptions } from '../../src/brokers/presence';
import { RoomwireError } from '../../src/core/errors';
import { encodeMembership, encodeMessage, encodeUserList, identityFragment, Outbound } from '../../src/core/protocol';
import { CONTROL, FakeBus, FakeClock, FakeHost, FakeServer, settle, summarize, type FakeBusOptions, type Frame, type Published } from '../helpers/fake-bus';

const BEAT = 1000;
const TIMEOUT = 5000;
const START = 3000;

/** Process ids (16 characters) by name. */
const IDS: Record<string, string> = {
  a: 'aaaaaaaaaaaaaaaa',
  b: 'bbbbbbbbbbbbbbbb',
  c: 'cccccccccccccccc',
  d: 'dddddddddddddddd',
};

type Control = Record<string, unknown> & { t: string; p: string };

/** A's notices name its bus (title and address): the tests pin level, fields and gist, not the wording around the name. */
const CONNECTED = { level: 'info', fields: { process: IDS.a }, message: expect.stringMatching(/^connected to .*fake:\/\/a$/) };
const RESTORED = { level: 'info', fields: { process: IDS.a }, message: expect.stringMatching(/connection restored$/) };

function parse(msg: Published): Control | undefined {
  return msg.channel === CONTROL ? (JSON.parse(msg.payload) as Control) : undefined;
}

/** A control message of type `t` published by process `name`. */
function isControl(msg: Published, name: string, t: string): boolean {
  return msg.from === name && parse(msg)?.t === t;
}

/** One hub process: its bus, its broker, and a host that plays the hub's part. */
class Proc {
  readonly id: string;
  readonly bus: FakeBus;
  readonly host: FakeHost;
  readonly broker: PresenceBroker;
  ready: Promise<void> | undefined;
  isReady = false;

  constructor(
    readonly world: World,
    readonly name: string,
    bus: Partial<FakeBusOptions> = {},
    options: PresenceOptions = {},
  ) {
    this.id = IDS[name] ?? name;
    this.bus = new FakeBus(world.server, { ...bus, name });
    const clock = world.clock.view(name);
    this.host = new FakeHost(clock);
    this.broker = new PresenceBroker(this.bus, { id: this.id, beatInterval: BEAT, processTimeout: TIMEOUT, startTimeout: START, clock, ...options });
  }

  start(): Promise<void> {
    this.ready = this.broker.start(this.host);
    void this.ready.then(() => {
      this.isReady = true;
    });
    return this.ready;
  }

  private seconds(): number {
    return Math.floor(this.world.clock.now() / 1000);
  }

  /** As the hub joins a member: membership, broker.join, the join frame, then user_list to the joiner. */
  join(conn: string, room: string, user = conn): void {
    this.host.add(room, conn, user);
    this.broker.join(room, { connectionId: conn, userId: user, username: user });
    this.broker.publish(room, new Outbound(encodeMembership('join', room, identityFragment(user, user), this.seconds())));
    const users = this.broker.users(room);
    const send = (list: readonly string[]) => this.host.receive(conn, JSON.parse(encodeUserList(room, list, this.seconds())) as Frame);
    if (Array.isArray(users)) send(users as readonly string[]);
    else void (users as Promise<readonly string[]>).then(send);
  }

  /** As the hub handles a `leave`: the leave frame (the leaver gets it too), then broker.leave. */
  leave(conn: string, room: string, user = conn): void {
    this.broker.publish(room, new Outbound(encodeMembership('leave', room, identityFragment(user, user), this.seconds())));
    this.host.remove(room, conn);
    this.broker.leave(room, { connectionId: conn, userId: user, username: user });
  }

  say(conn: string, room: string, content: string, user = conn): void {
    this.broker.publish(room, new Outbound(encodeMessage(room, content, undefined, identityFragment(user, user), this.seconds())));
  }

  seen(conn: string): string[] {
    return this.host.seen(conn);
  }

  /** The event loop of this process stops: no timer fires, nothing is read. */
  stall(): void {
    this.world.clock.freeze(this.name);
    this.bus.paused = true;
  }

  /** The stall ends: overdue timers fire once (timers before I/O), then reading resumes. */
  resume(): void {
    this.world.clock.thaw(this.name);
    this.bus.paused = false;
  }
}

class World {
  readonly server = new FakeServer();
  readonly clock = new FakeClock();
  readonly procs: Proc[] = [];

  proc(name: string, bus: Partial<FakeBusOptions> = {}, options: PresenceOptions = {}): Proc {
    const p = new Proc(this, name, bus, options);
    this.procs.push(p);
    return p;
  }

  deliver(): Promise<number> {
    return this.server.deliverAll();
  }

  /** Start processes together and exchange everything: all linked and ready. */
  async start(...procs: Proc[]): Promise<void> {
    for (const p of procs) void p.start();
    await this.deliver();
    await settle();
    for (const p of procs) {
      expect(p.broker.health()).toMatchObject({ connected: true });
      expect(p.isReady).toBe(true);
    }
  }

  /** `n` beats of time, each followed by delivery and the `after(0)` checks. */
  async tick(n = 1): Promise<void> {
    for (let i = 0; i < n; i++) {
      this.clock.advance(BEAT);
      await this.deliver();
      this.clock.flush();
      await this.deliver();
    }
  }

  async close(): Promise<void> {
    for (const p of this.procs) await p.broker.close();
  }
}

const worlds: World[] = [];
function world(): World {
  const w = new World();
  worlds.push(w);
  return w;
}

afterEach(async () => {
  for (const w of worlds.splice(0)) await w.close();
});

/** Payloads of room frames (not markers) published by `name`. */
function roomFrames(w: World, name: string): string[] {
  const id = IDS[name] ?? name;
  return w.server.rooms(name).filter((p) => p.charAt(id.length) !== '#');
}

/** `name: summary` of every payload on `room`'s channel, markers as `#token`. */
function roomLog(w: World, room: string): string[] {
  return w.server.log
    .filter((m) => m.channel === `room:${room}`)
    .map((m) => {
      const body = m.payload.slice(16);
      return `${String(m.from)}: ${body.startsWith('#') ? body : summarize(JSON.parse(body) as Frame)}`;
    });
}

describe('PresenceBroker: delivery', () => {
  it('two processes: every frame once, in each sender order; own frames are delivered locally once, not again from the bus', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    a.say('a1', 'r', 'x1');
    b.say('b1', 'r', 'y1');
    a.say('a1', 'r', 'x2');
    b.say('b1', 'r', 'y2');
    // Local members have their process's frames at once, before any delivery.
    expect(a.seen('a1').slice(3)).toEqual(['msg a1: x1', 'msg a1: x2']);
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'msg a1: x1', 'msg a1: x2', 'msg b1: y1', 'msg b1: y2']);
    expect(b.seen('b1')).toEqual(['join b1', 'list b1,a1', 'msg b1: y1', 'msg b1: y2', 'msg a1: x1', 'msg a1: x2']);
    // Each frame went over the bus once, prefixed with its sender's id, and came back to its sender, which skipped it.
    expect(roomFrames(w, 'a').map((p) => p.slice(0, 16))).toEqual([a.id, a.id, a.id]);
    expect(a.bus.received.filter((m) => m.channel !== CONTROL && m.from === 'a')).toHaveLength(4); // 3 frames + the marker
    expect(a.host.deliveries.filter((d) => d.frame.type === 'message').map((d) => summarize(d.frame))).toEqual(['msg a1: x1', 'msg a1: x2', 'msg b1: y1', 'msg b1: y2']);
  });

  it('three processes: every member gets every frame once, in each sender order', async () => {
    const w = world();
    const [a, b, c] = [w.proc('a'), w.proc('b'), w.proc('c')];
    await w.start(a, b, c);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    c.join('c1', 'r');
    await w.deliver();
    a.say('a1', 'r', 'a-1');
    b.say('b1', 'r', 'b-1');
    c.say('c1', 'r', 'c-1');
    a.say('a1', 'r', 'a-2');
    c.say('c1', 'r', 'c-2');
    b.say('b1', 'r', 'b-2');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'join c1', 'msg a1: a-1', 'msg a1: a-2', 'msg b1: b-1', 'msg c1: c-1', 'msg c1: c-2', 'msg b1: b-2']);
    expect(b.seen('b1')).toEqual(['join b1', 'list b1,a1', 'join c1', 'msg b1: b-1', 'msg b1: b-2', 'msg a1: a-1', 'msg c1: c-1', 'msg a1: a-2', 'msg c1: c-2']);
    expect(c.seen('c1')).toEqual(['join c1', 'list c1,a1,b1', 'msg c1: c-1', 'msg c1: c-2', 'msg a1: a-1', 'msg b1: b-1', 'msg a1: a-2', 'msg b1: b-2']);
  });
});

/**
 * C, with member `member` in room `r`, and A started after it whose copy of C's state was
 * lost on the way: A has not heard of C (C is first heard in the middle of its life).
 */
async function unheardOf(member: string) {
  const w = world();
  const c = w.proc('c');
  await w.start(c);
  c.join(member, 'r');
  await w.deliver();
  const a = w.proc('a');
  a.bus.dropIncoming = (m) => isControl(m, 'c', 'state');
  void a.start();
  await w.deliver();
  return { w, c, a };
}

describe('PresenceBroker: no frame before its sender joins', () => {
  it('a process first heard in the middle of its life: its frames are held until its state arrives, then replayed in order with its joins and leaves', async () => {
    // A starts; C's answer to its link state is lost on the way to A: A has not heard of C.
    const { w, c, a } = await unheardOf('c0');
    expect(a.broker.health()).toEqual({ kind: 'fake', connected: true, processes: 1 });
    a.join('a1', 'r');
    await w.deliver();
    expect(c.seen('c0')).toEqual(['join c0', 'list c0', 'join a1']);
    // C's members come and go, and talk.
    c.join('c1', 'r');
    c.say('c1', 'r', 'hi');
    c.leave('c0', 'r');
    // A reads all of it: nothing reaches a1 yet, and A asks C for its state.
    for (let i = 0; i < 5; i++) expect(w.server.deliverNext(a.bus)).toBeDefined();
    expect(a.bus.queue.map((m) => parse(m))).toEqual([{ t: 'ask', p: a.id, to: c.id }]); // its own ask, on its way
    expect(a.seen('a1')).toEqual(['join a1', 'list a1']);
    expect(w.server.control('a').at(-1)).toEqual({ t: 'ask', p: a.id, to: c.id });
    // C answers: the members C had when A first heard of it are announced, then the held frames follow in order.
    a.bus.dropIncoming = undefined;
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join c0', 'join c1', 'msg c1: hi', 'leave c0']);
    expect(a.isReady).toBe(true); // it was waiting for C's state
    await expect(a.broker.users('r')).resolves.toEqual(['a1', 'c1']);
    c.say('c1', 'r', 'now');
    await w.deliver();
    expect(a.seen('a1').slice(6)).toEqual(['msg c1: now']);
  });
});

describe('PresenceBroker: user_list', () => {
  it('an already subscribed room lists the remote members as of the join, sent once the bus flushed; later joiners are announced, not listed', async () => {
    const w = world();
    const a = w.proc('a', { holdFlush: true });
    const b = w.proc('b');
    await w.start(a, b);
    b.join('b1', 'r');
    b.join('b2', 'r');
    await w.deliver();
    a.join('a1', 'r');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1']); // the marker is back; the flush is not
    a.bus.releaseFlushes();
    await settle();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1,b1,b2']);
    a.join('a2', 'r');
    await settle();
    expect(a.seen('a2')).toEqual(['join a2']);
    b.join('b3', 'r');
    await w.deliver();
    a.bus.releaseFlushes();
    await settle();
    // Computed at the join, so b3 is announced by its join frame and not listed as well.
    expect(a.seen('a2')).toEqual(['join a2', 'join b3', 'list a1,a2,b1,b2']);
    expect(a.seen('a1')).toEqual(['join a1', 'list a1,b1,b2', 'join a2', 'join b3']);
  });

  it('a first subscription: frames before its marker are not delivered, the list is computed at the marker, a later joiner is announced only', async () => {
    const w = world();
    const a = w.proc('a', { manualSubscribe: true });
    const b = w.proc('b');
    await w.start(a, b);
    b.join('b1', 'r');
    await w.deliver();
    a.join('a1', 'r');
    await settle();
    expect(a.bus.subscribing).toEqual(['r']);
    // b2 joins before A's subscription is in place: its control join reaches A, its join frame does not.
    b.join('b2', 'r');
    await w.deliver();
    // The subscription is in place; a frame goes out before A's marker.
    a.bus.completeSubscribe('r');
    b.say('b1', 'r', 'early');
    await settle();
    expect(roomLog(w, 'r')).toEqual(['b: join b1', 'b: #1', 'a: join a1', 'b: join b2', 'b: msg b1: early', 'a: #1']);
    // b3 joins after A's marker.
    b.join('b3', 'r');
    expect(a.seen('a1')).toEqual(['join a1']);
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1,b1,b2', 'join b3']);
    expect(b.seen('b1')).toEqual(['join b1', 'list b1', 'join b2', 'join a1', 'msg b1: early', 'join b3']);
  });

  it('a first subscription on an unordered bus (a Cluster): frames before the markers are delivered, the list waits for the room marker and the control marker', async () => {
    const w = world();
    const a = w.proc('a', { manualSubscribe: true });
    const b = w.proc('b');
    a.bus.ordered = false;
    await w.start(a, b);
    b.join('b1', 'r');
    await w.deliver();
    a.join('a1', 'r');
    await settle();
    b.join('b2', 'r');
    await w.deliver();
    a.bus.completeSubscribe('r');
    b.say('b1', 'r', 'early');
    await settle();
    // Both markers went out: one on the room's channel, one on the control channel.
    expect(roomLog(w, 'r')).toEqual(['b: join b1', 'b: #1', 'a: join a1', 'b: join b2', 'b: msg b1: early', 'a: #1']);
    expect(w.server.control('a').filter((m) => m.t === 'mark')).toEqual([{ t: 'mark', p: a.broker.id, k: '1' }]);
    // Hold the control marker back: the room's marker alone does not send the list.
    a.bus.blockAt = (m) => m.payload.includes('"t":"mark"');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'msg b1: early']);
    a.bus.blockAt = undefined;
    b.join('b3', 'r');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'msg b1: early', 'list a1,b1,b2', 'join b3']);
  });

  it('the list goes out after 500 ms from what the process knows when the bus does not confirm', async () => {
    const w = world();
    const a = w.proc('a', { holdFlush: true });
    const b = w.proc('b');
    await w.start(a, b);
    b.join('b1', 'r');
    a.join('a1', 'r');
    await w.deliver();
    w.clock.advance(499);
    await settle();
    expect(a.seen('a1')).toEqual(['join a1']);
    w.clock.advance(1);
    await settle();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1,b1']);
  });
});

describe('PresenceBroker: the link', () => {
  it('links only once its own state comes back: before, remote states are ignored and no frame goes on a room channel; then a changed state is sent again', async () => {
    const w = world();
    const b = w.proc('b');
    await w.start(b);
    b.join('b1', 'r');
    await w.deliver();
    const a = w.proc('a');
    void a.start();
    await settle();
    // A's link state is lost.
    expect(w.server.lose((m) => isControl(m, 'a', 'state'))).toBe(2);
    a.join('a1', 'r');
    a.say('a1', 'r', 'solo');
    // C starts: B answers it with its state, which A receives and ignores.
    const c = w.proc('c');
    void c.start();
    await w.deliver();
    expect(a.bus.received.filter((m) => isControl(m, 'b', 'state'))).toHaveLength(1);
    expect(a.broker.health()).toEqual({ kind: 'fake', connected: false, processes: 1 });
    expect(a.broker.users('r')).toEqual(['a1']);
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'msg a1: solo']);
    expect(roomFrames(w, 'a')).toEqual([]); // its marker only
    expect(w.server.control('a')).toEqual([{ t: 'state', p: a.id, m: [], ask: true, k: 1 }]);
    // A beat later the link state goes again; a2 joins before it comes back.
    w.clock.advance(BEAT);
    a.join('a2', 'r');
    await w.deliver();
    const states = w.server.control('a').filter((m) => m.t === 'state');
    expect(states.slice(0, 3)).toEqual([
      { t: 'state', p: a.id, m: [], ask: true, k: 1 },
      { t: 'state', p: a.id, m: [['r', 'a1', 'a1', 'a1']], ask: true, k: 2 },
      { t: 'state', p: a.id, m: [['r', 'a1', 'a1', 'a1'], ['r', 'a2', 'a2', 'a2']] },
    ]);
    expect(a.broker.health()).toEqual({ kind: 'fake', connected: true, processes: 3 });
    // The members here were shown A's members only; they hear of b1 once.
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'msg a1: solo', 'join a2', 'join b1']);
    expect(a.seen('a2')).toEqual(['join a2', 'list a1,a2', 'join b1']);
    // B learned of A's members from its states, once each, with no frame of theirs before.
    expect(b.seen('b1')).toEqual(['join b1', 'list b1', 'join a1', 'join a2']);
    a.say('a2', 'r', 'linked');
    await w.deliver();
    expect(roomFrames(w, 'a')).toEqual([expect.stringContaining('"linked"')]);
    expect(b.seen('b1').at(-1)).toBe('msg a2: linked');
    expect(a.host.notices).toEqual([CONNECTED]);
  });

  it('the link state is sent again after a beat when it was lost', async () => {
    const w = world();
    const a = w.proc('a');
    void a.start();
    await settle();
    expect(w.server.lose((m) => isControl(m, 'a', 'state'))).toBe(1);
    await w.deliver();
    expect(a.broker.health().connected).toBe(false);
    w.clock.advance(BEAT - 1);
    expect(w.server.control('a').filter((m) => m.t === 'state')).toHaveLength(1);
    w.clock.advance(1);
    expect(w.server.control('a')).toEqual([
      { t: 'state', p: a.id, m: [], ask: true, k: 1 },
      { t: 'beat', p: a.id, n: 0 },
      { t: 'state', p: a.id, m: [], ask: true, k: 2 },
    ]);
    await w.deliver();
    await settle();
    expect(a.broker.health().connected).toBe(true);
    expect(a.isReady).toBe(true);
    expect(a.host.notices).toEqual([CONNECTED]);
  });
});

describe('PresenceBroker: the bus goes down', () => {
  it('receiving side down: remotes are unsynced and their frames held until their state returns; joiners meanwhile hear the others once, and no leave of members never shown', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b0', 'r');
    b.join('b1', 'r');
    await w.deliver();
    a.bus.goDown(true);
    expect(a.host.failures).toEqual([{ message: expect.stringMatching(/^lost the connection to .*fake:\/\/a \(connection lost\); serving this process's members only until it is back$/), cause: expect.any(Error) }]);
    expect(a.broker.health()).toEqual({ kind: 'fake', connected: false, processes: 1 });
    // During the outage: B's traffic does not reach A; A serves its members alone.
    b.say('b1', 'r', 'during');
    b.leave('b0', 'r');
    b.join('b2', 'r');
    a.join('a2', 'r');
    a.say('a1', 'r', 'solo');
    a.join('a3', 'q');
    await w.deliver();
    expect(a.seen('a2')).toEqual(['join a2', 'list a1,a2', 'msg a1: solo']);
    expect(a.seen('a3')).toEqual(['join a3', 'list a3']);
    expect(a.host.failures).toHaveLength(1); // the refused subscription while down is not reported
    // Back: B publishes before its state reaches A, which holds it.
    const back = w.server.log.length;
    a.bus.goUp();
    b.say('b1', 'r', 'after');
    a.bus.blockAt = (m) => isControl(m, 'b', 'state');
    await w.deliver();
    expect(a.broker.health().connected).toBe(true);
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b0', 'join b1', 'join a2', 'msg a1: solo']);
    a.bus.blockAt = undefined;
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b0', 'join b1', 'join a2', 'msg a1: solo', 'leave b0', 'join b2', 'msg b1: after']);
    expect(a.seen('a2')).toEqual(['join a2', 'list a1,a2', 'msg a1: solo', 'join b1', 'join b2', 'msg b1: after']);
    expect(a.seen('a3')).toEqual(['join a3', 'list a3']);
    // B answered twice (the link state, and A's ask when it held B's frame): announced once.
    expect(a.bus.received.filter((m) => m.seq > back && isControl(m, 'b', 'state'))).toHaveLength(2);
    expect(b.seen('b1')).toEqual(['join b1', 'list b0,b1,a1', 'msg b1: during', 'leave b0', 'join b2', 'msg b1: after', 'join a2']);
    expect(a.host.notices).toEqual([CONNECTED, RESTORED]);
  });

  // Fails with presence.ts as it is: onLinked replaces a remote's pending catchUp with the (now empty) `alone`.
  it('receiving side down twice before the state arrives: the first outage joiner still hears the others (catch-up is not lost)', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    a.bus.goDown(true);
    a.join('a2', 'r');
    a.bus.goUp();
    a.bus.blockAt = (m) => isControl(m, 'b', 'state');
    await w.deliver();
    expect(a.broker.health().connected).toBe(true); // linked; B's state not in yet
    a.bus.goDown(true);
    a.bus.blockAt = undefined;
    a.bus.goUp();
    await w.deliver();
    expect(a.broker.health().connected).toBe(true);
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'join a2']);
    // a2's list showed A's members only: it must hear b1 join, once.
    expect(a.seen('a2')).toEqual(['join a2', 'list a1,a2', 'join b1']);
  });

  it('publishing side down only: remote frames keep being delivered; this process publishes nothing; no announcement twice when back', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    a.bus.goDown(false);
    expect(a.broker.health()).toEqual({ kind: 'fake', connected: false, processes: 1 });
    b.say('b1', 'r', 'x');
    b.join('b2', 'r');
    a.say('a1', 'r', 'y');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'msg a1: y', 'msg b1: x', 'join b2']);
    expect(roomFrames(w, 'a')).toHaveLength(1); // a1's join, before the outage
    expect(a.bus.dropped).toEqual([]); // not even tried
    a.bus.goUp();
    await w.deliver();
    expect(a.broker.health()).toEqual({ kind: 'fake', connected: true, processes: 2 });
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'msg a1: y', 'msg b1: x', 'join b2']);
    expect(b.seen('b1')).toEqual(['join b1', 'list b1,a1', 'msg b1: x', 'join b2']);
    b.say('b2', 'r', 'z');
    a.say('a1', 'r', 'w');
    await w.deliver();
    expect(a.seen('a1').slice(6)).toEqual(['msg a1: w', 'msg b2: z']);
    expect(b.seen('b1').slice(4)).toEqual(['msg b2: z', 'msg a1: w']);
  });

  // Fails with presence.ts as it is: unlinked, user_list shows this process only, yet the frames of the
  // processes still in step keep coming, and the member never hears them join.
  it('publishing side down only: a member joining meanwhile hears of the remote members before their frames, once', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    a.bus.goDown(false);
    a.join('a2', 'r');
    b.say('b1', 'r', 'x');
    await w.deliver();
    a.bus.goUp();
    await w.deliver();
    b.say('b1', 'r', 'y');
    await w.deliver();
    // b1's frames keep reaching a2: a2 must know b1 (listed, or announced by a join) before them, once.
    expect(a.seen('a2')).toEqual(['join a2', 'list a1,a2,b1', 'msg b1: x', 'msg b1: y']);
    expect(b.seen('b1')).toEqual(['join b1', 'list b1,a1', 'msg b1: x', 'join a2', 'msg b1: y']);
  });

  // Fails with presence.ts as it is (same cause as the test above); it also guards a fix against announcing twice.
  it('publishing side down, then receiving too: a member that joined while the others were still in step is not announced them twice', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    a.bus.goDown(false);
    a.join('a2', 'r');
    b.say('b1', 'r', 'x');
    await w.deliver();
    a.bus.goDown(true);
    b.join('b2', 'r');
    a.bus.goUp();
    await w.deliver();
    expect(a.broker.health().connected).toBe(true);
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'join a2', 'msg b1: x', 'join b2']);
    expect(a.seen('a2')).toEqual(['join a2', 'list a1,a2,b1', 'msg b1: x', 'join b2']);
  });

  // Fails with presence.ts as it is: the room's marker is dropped (publishing is down), the room stays
  // 'subscribing' for good and every frame of the others on it is dropped.
  it('publishing side down only: a room first joined meanwhile receives the others once the bus is back (its marker could not go out)', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.bus.goDown(false);
    a.join('a1', 'q');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1']);
    a.bus.goUp();
    await w.deliver();
    expect(a.broker.health().connected).toBe(true);
    b.join('b1', 'q');
    b.say('b1', 'q', 'hello');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'msg b1: hello']);
  });
});

describe('PresenceBroker: processes that go silent', () => {
  it('a process silent for processTimeout is gone: its members leave the rooms here; when it speaks again its members are announced before their frames', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    a.join('a2', 'q');
    await w.deliver();
    b.join('b1', 'r');
    b.join('b2', 'r');
    b.join('b3', 'p');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'join b2']);
    // Nothing from B reaches A from now on.
    a.bus.dropIncoming = (m) => m.from === 'b';
    await w.tick(5);
    expect(a.seen('a1')).toHaveLength(4); // 5 s of silence: not yet
    await w.tick(1);
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'join b2', 'leave b1', 'leave b2']);
    expect(a.seen('a2')).toEqual(['join a2', 'list a2']);
    expect(a.host.notices.at(-1)).toEqual({ level: 'warn', fields: { process: b.id, members: 3 }, message: 'a hub process stopped answering; its members left' });
    expect(a.broker.health().processes).toBe(1);
    await expect(a.broker.users('r')).resolves.toEqual(['a1']);
    // B speaks again: its frame waits for its state, and its members are joined first.
    a.bus.dropIncoming = undefined;
    b.say('b1', 'r', 'back');
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'join b2', 'leave b1', 'leave b2', 'join b1', 'join b2', 'msg b1: back']);
    expect(a.seen('a2')).toEqual(['join a2', 'list a2']);
    await expect(a.broker.users('r')).resolves.toEqual(['a1', 'b1', 'b2']);
  });

  // Fails with presence.ts as it is: gone() replays the held frames of a process whose members were never announced.
  it('a process first heard in the middle of its life that goes silent before its state arrives: its held frames are not delivered, their senders never having been announced', async () => {
    // A starts; C's answer to its link state is lost on the way to A: A has not heard of C.
    const { w, c, a } = await unheardOf('c0');
    a.join('a1', 'r');
    await w.deliver();
    c.say('c0', 'r', 'hi');
    await w.deliver();
    expect(a.broker.health().processes).toBe(2); // heard of, not in step
    a.bus.dropIncoming = (m) => m.from === 'c'; // C dies
    await w.tick(6);
    expect(a.host.notices.at(-1)).toEqual({ level: 'warn', fields: { process: c.id, members: 0 }, message: 'a hub process stopped answering; its members left' });
    expect(a.broker.health().processes).toBe(1);
    // c0 was never announced to a1 (listed or joined): none of its frames may reach it.
    expect(a.seen('a1')).toEqual(['join a1', 'list a1']);
  });

  it('a stalled process (its beat late by more than two beats) keeps the healthy processes and tells them its state again', async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    a.stall();
    await w.tick(6); // B hears nothing from A for 6 s and gives it up
    expect(b.seen('b1')).toEqual(['join b1', 'list b1,a1', 'leave a1']);
    const statesBefore = w.server.control('a').filter((m) => m.t === 'state').length;
    a.resume(); // its beat fires once, 6 s late, before it reads the beats waiting for it
    expect(w.server.control('a').filter((m) => m.t === 'state')).toHaveLength(statesBefore + 1);
    expect(w.server.control('a').at(-1)).toEqual({ t: 'state', p: a.id, m: [['r', 'a1', 'a1', 'a1']] });
    await w.deliver();
    w.clock.flush();
    await w.tick(1);
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1']);
    expect(a.host.notices).toEqual([CONNECTED]);
    expect(a.broker.health().processes).toBe(2);
    // B took A back: a1 announced again.
    expect(b.seen('b1')).toEqual(['join b1', 'list b1,a1', 'leave a1', 'join a1']);
  });

  it("a 'bye' drops its process at once, without a warning", async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    b.join('b2', 'r');
    await w.deliver();
    expect(w.server.registry.has(b.id)).toBe(true);
    await b.broker.close();
    expect(w.server.registry.has(b.id)).toBe(false);
    expect(w.server.control('b').at(-1)).toEqual({ t: 'bye', p: b.id });
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'join b2', 'leave b1', 'leave b2']);
    expect(a.broker.health().processes).toBe(1);
    expect(a.host.notices).toEqual([CONNECTED]);
    await expect(a.broker.users('r')).resolves.toEqual(['a1']);
  });
});

describe('PresenceBroker: goodbyes on an unordered bus', () => {
  it("a room frame overtaken by its process's 'bye' (another shard) is delivered, and the process is not heard of anew", async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    a.bus.ordered = false;
    await w.start(a, b);
    a.join('a1', 'r');
    await w.deliver();
    b.join('b1', 'r');
    await w.deliver();
    // b's member leaves and b closes; the leave frame on the room's channel comes late.
    b.leave('b1', 'r');
    await b.broker.close();
    const late = (m: Published) => m.channel !== CONTROL && m.payload.includes('"type":"leave"');
    const frame = w.server.log.find(late) as Published;
    expect(w.server.lose(late, [a.bus])).toBe(1);
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1']);
    expect(a.broker.health().processes).toBe(1);
    a.bus.enqueue(frame);
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1', 'join b1', 'leave b1']);
    expect(a.broker.health().processes).toBe(1);
    await w.tick(TIMEOUT / BEAT + 2);
    expect(a.host.notices).toEqual([CONNECTED]);
    expect(w.server.control('a').filter((m) => m.t === 'ask')).toEqual([]);
  });
});

describe('PresenceBroker: start', () => {
  it("resolves once every process in the registry that beat lately has sent its state", async () => {
    const w = world();
    const a = w.proc('a');
    const b = w.proc('b');
    await w.start(a, b);
    const c = w.proc('c');
    c.bus.blockAt = (m) => isControl(m, 'b', 'state');
    void c.start();
    await w.deliver();
    expect(c.broker.health().connected).toBe(true);
    expect(c.bus.received.filter((m) => isControl(m, 'a', 'state'))).toHaveLength(1);
    expect(c.isReady).toBe(false);
    c.bus.blockAt = undefined;
    await w.deliver();
    await settle();
    expect(c.isReady).toBe(true);
  });

  it('waits one beat at most for a registered process that does not answer; drops registry entries older than processTimeout', async () => {
    const w = world();
    const now = w.clock.now();
    w.server.registry.set(IDS.d as string, now - 500); // beat lately, never answers
    w.server.registry.set('eeeeeeeeeeeeeeee', now - 2.5 * BEAT); // not lately: not waited for
    w.server.registry.set('ffffffffffffffff', now - TIMEOUT); // dead: removed
    const a = w.proc('a');
    void a.start();
    await w.deliver();
    expect(a.broker.health().connected).toBe(true);
    expect([...w.server.registry.keys()].sort()).toEqual([a.id, IDS.d, 'eeeeeeeeeeeeeeee']);
    w.clock.advance(BEAT - 1);
    await settle();
    expect(a.isReady).toBe(false);
    w.clock.advance(1);
    await settle();
    expect(a.isReady).toBe(true);
    expect(a.host.notices.map((n) => n.level)).toEqual(['info']);
  });

  it('resolves after startTimeout with a warning when the bus never comes up, and links when it does', async () => {
    const w = world();
    const a = w.proc('a', { up: false });
    void a.start();
    await settle();
    w.clock.advance(START - 1);
    await settle();
    expect(a.isReady).toBe(false);
    w.clock.advance(1);
    await settle();
    expect(a.isReady).toBe(true);
    expect(a.host.notices).toEqual([
      { level: 'warn', fields: { after: START, address: 'fake://a', cause: 'no answer' }, message: expect.stringMatching(/fake:\/\/a is not reachable yet \(no answer\); serving this process only until it is$/) },
    ]);
    expect(a.broker.health()).toEqual({ kind: 'fake', connected: false, processes: 1 });
    a.bus.goUp();
    await w.deliver();
    expect(a.broker.health().connected).toBe(true);
    expect(a.host.notices.at(-1)).toEqual(CONNECTED);
  });

  it('names why the bus is down in the start warning', async () => {
    const w = world();
    const a = w.proc('a', { up: false });
    void a.start();
    a.bus.goDown(true, { error: new Error('ECONNREFUSED') });
    w.clock.advance(START);
    await settle();
    expect(a.isReady).toBe(true);
    expect(a.host.notices.map((n) => n.fields)).toEqual([{ after: START, address: 'fake://a', cause: 'ECONNREFUSED' }]);
    expect(a.host.failures).toEqual([]); // never linked: nothing lost
  });
});

describe('PresenceBroker: limits and options', () => {
  it('holds 10,000 frames of a process at most, reports the overflow once, and replays the held ones when its state arrives', async () => {
    // A starts; C's answer to its link state is lost on the way to A: A has not heard of C.
    const { w, c, a } = await unheardOf('c1');
    a.join('a1', 'r');
    await w.deliver();
    for (let i = 1; i <= 10_005; i++) c.say('c1', 'r', String(i));
    await w.deliver();
    expect(a.seen('a1')).toEqual(['join a1', 'list a1']);
    expect(a.host.failures).toEqual([{ message: 'more than 10000 frames of a hub process arrived before its state; dropping the rest', cause: undefined }]);
    a.bus.dropIncoming = undefined;
    await w.tick(1); // A asks again; C answers
    const seen = a.seen('a1');
    expect(seen.slice(0, 4)).toEqual(['join a1', 'list a1', 'join c1', 'msg c1: 1']);
    expect(seen).toHaveLength(3 + 10_000);
    expect(seen.at(-1)).toBe('msg c1: 10000');
    c.say('c1', 'r', 'next');
    await w.deliver();
    expect(a.seen('a1').at(-1)).toBe('msg c1: next');
    expect(a.host.failures).toHaveLength(1);
  });

  it('refuses bad timings and ids with ERR_INVALID_ARGUMENT', () => {
    const server = new FakeServer();
    const bus = new FakeBus(server, { name: 'x' });
    const make = (options: PresenceOptions) => () => new PresenceBroker(bus, options);
    const code = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(RoomwireError);
        return (err as RoomwireError).code;
      }
      return undefined;
    };
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(code(make({ beatInterval: bad }))).toBe('ERR_INVALID_ARGUMENT');
      expect(code(make({ processTimeout: bad }))).toBe('ERR_INVALID_ARGUMENT');
      expect(code(make({ startTimeout: bad }))).toBe('ERR_INVALID_ARGUMENT');
    }
    expect(code(make({ beatInterval: 1000, processTimeout: 1999 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(code(make({ beatInterval: 6000 }))).toBe('ERR_INVALID_ARGUMENT'); // default processTimeout 10 s < 12 s
    expect(code(make({ id: 'short' }))).toBe('ERR_INVALID_ARGUMENT');
    expect(code(make({ beatInterval: 1000, processTimeout: 2000 }))).toBeUndefined();
    expect(code(make({}))).toBeUndefined();
  });
});
