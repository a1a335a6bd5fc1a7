/**
 * History and recovery in one process (docs/protocol.md section 9), on the pure core with a fake
 * transport and a fake clock: offsets, join acks, `since`, the TTL, the per-room hook, the
 * `unavailable` refusal, and a property test of random publish/disconnect/rejoin schedules.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createHub, createMemoryBroker, RoomwireError, type Broker, type HubOptions } from '../../src/index';
import { FakeClock, connect, type FakeTransport } from '../helpers/fake';

function setup(options: HubOptions = {}) {
  const clock = new FakeClock();
  const hub = createHub({ clock, messageRate: '100000/s,100000', historySize: 100, ...options });
  return { clock, hub };
}

type Sent = Record<string, unknown>;
const messages = (frames: Sent[]) => frames.filter((f) => f.type === 'message');
const offsets = (frames: Sent[]) => messages(frames).map((f) => f.offset);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Let the hub's queued work (hooks, broker promises) run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Join `room` (with `since`, an `id`) and return what the joiner received up to and including the ack. */
async function join(t: FakeTransport, room: string, since?: { offset: number; epoch: string }): Promise<Sent[]> {
  t.take();
  t.json({ type: 'join', room, id: 'j', ...(since === undefined ? {} : { since }) });
  await settle();
  return t.take();
}

function send(t: FakeTransport, room: string, content: string, id?: string): void {
  t.json({ type: 'message', room, content, ...(id === undefined ? {} : { id }) });
}

describe('history on (docs/protocol.md section 9)', () => {
  it('numbers every message of a room from 1, on every frame and on the ack of a message', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    const b = await connect(hub, '/ws/r');
    const other = await connect(hub, '/ws/q');
    await settle();
    a.take();
    b.take();
    send(a, 'r', 'one', 'm1');
    send(b, 'r', 'two');
    send(other, 'q', 'elsewhere', 'm3');
    send(a, 'r', 'three', 'm2');
    await settle();
    expect(a.take()).toEqual([
      { type: 'message', room: 'r', content: 'one', user_id: expect.any(String), username: expect.any(String), timestamp: expect.any(Number), offset: 1 },
      { type: 'ack', id: 'm1', room: 'r', offset: 1, timestamp: expect.any(Number) },
      expect.objectContaining({ content: 'two', offset: 2 }),
      expect.objectContaining({ content: 'three', offset: 3 }),
      { type: 'ack', id: 'm2', room: 'r', offset: 3, timestamp: expect.any(Number) },
    ]);
    expect(offsets(b.take())).toEqual([1, 2, 3]);
    expect(other.take().filter((f) => f.type !== 'join' && f.type !== 'user_list')).toEqual([
      expect.objectContaining({ content: 'elsewhere', offset: 1 }),
      { type: 'ack', id: 'm3', room: 'q', offset: 1, timestamp: expect.any(Number) },
    ]);
  });

  it('writes offset between timestamp and data, byte for byte the same frame at every member', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    const b = await connect(hub, '/ws/r');
    await settle();
    a.take();
    b.take();
    a.text('{"type":"message","room":"r","content":"x","data":{"k":[1, 2]}}');
    await settle();
    expect(a.texts).toEqual(b.texts);
    expect(a.texts[0]).toMatch(/^\{"type":"message","room":"r","content":"x","user_id":"[^"]+","username":"[^"]+","timestamp":\d+,"offset":1,"data":\{"k":\[1, 2\]\}\}$/);
  });

  it('acks a join with the offset and epoch of the room (0 before any message), and no recovered without since', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    expect(await join(a, 'r')).toEqual([
      expect.objectContaining({ type: 'join', room: 'r' }),
      expect.objectContaining({ type: 'user_list', room: 'r' }),
      { type: 'ack', id: 'j', room: 'r', offset: 0, epoch: expect.stringMatching(/^[A-Za-z0-9_-]{12}$/), timestamp: expect.any(Number) },
    ]);
    send(a, 'r', 'hi');
    await settle();
    const b = await connect(hub);
    const got = await join(b, 'r');
    expect(got.at(-1)).toEqual({ type: 'ack', id: 'j', room: 'r', offset: 1, epoch: expect.any(String), timestamp: expect.any(Number) });
  });

  it('replays what a rejoiner missed, the very frames members got, between its user_list and its ack; live ones follow from ack.offset + 1', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    const b = await connect(hub);
    const ackA = (await join(a, 'r')).at(-1) as Sent;
    await join(b, 'r');
    send(b, 'r', 'seen');
    await settle();
    const seen = messages(a.take());
    expect(seen.map((f) => f.offset)).toEqual([1]);
    a.listener.onClose(1006, '');
    b.take();
    for (let i = 0; i < 5; i++) send(b, 'r', `missed ${i}`);
    await settle();
    const sentToB = b.take().filter((f) => f.type === 'message');
    const a2 = await connect(hub);
    const got = await join(a2, 'r', { offset: 1, epoch: ackA.epoch as string });
    expect(got.map((f) => f.type)).toEqual(['join', 'user_list', 'message', 'message', 'message', 'message', 'message', 'ack']);
    expect(got.slice(2, 7)).toEqual(sentToB);
    expect(got[7]).toEqual({ type: 'ack', id: 'j', room: 'r', offset: 6, epoch: ackA.epoch, recovered: true, timestamp: expect.any(Number) });
    send(b, 'r', 'live');
    await settle();
    expect(offsets(a2.take())).toEqual([7]);
    expect(hub.stats().history).toEqual({ enabled: true, rooms: 1, messages: 7, bytes: expect.any(Number), recovered: 1, unrecovered: 0 });
  });

  it('recovers nothing, with recovered: false, for another epoch, a since ahead of the room, or messages no longer kept', async () => {
    const { hub } = setup({ historySize: 3 });
    const a = await connect(hub);
    const epoch = ((await join(a, 'r')).at(-1) as Sent).epoch as string;
    for (let i = 0; i < 10; i++) send(a, 'r', `m${i}`);
    await settle();
    let latest = 10;
    for (const since of [
      () => ({ offset: latest - 4, epoch }), // the one after it is gone: only the latest 3 are kept
      () => ({ offset: latest + 1, epoch }), // ahead of the room
      () => ({ offset: latest - 1, epoch: 'another' }),
    ]) {
      const b = await connect(hub);
      const got = await join(b, 'r', since());
      expect(got.map((f) => f.type)).toEqual(['join', 'user_list', 'ack']);
      expect(got[2]).toEqual({ type: 'ack', id: 'j', room: 'r', offset: latest, epoch, recovered: false, timestamp: expect.any(Number) });
      send(a, 'r', 'next');
      await settle();
      expect(offsets(b.take())).toEqual([++latest]);
      b.listener.onClose(1000, '');
      a.take();
    }
    // The oldest kept one is still recoverable: since = 10 (three kept: 11, 12, 13).
    const c = await connect(hub);
    const got = await join(c, 'r', { offset: 10, epoch });
    expect(offsets(got)).toEqual([11, 12, 13]);
    expect(got.at(-1)).toMatchObject({ offset: 13, recovered: true });
    // since = the latest: nothing to replay, recovered all the same.
    const d = await connect(hub);
    const none = await join(d, 'r', { offset: 13, epoch });
    expect(none.map((f) => f.type)).toEqual(['join', 'user_list', 'ack']);
    expect(none[2]).toMatchObject({ offset: 13, recovered: true });
    expect(hub.stats().history).toMatchObject({ rooms: 1, messages: 3, recovered: 2, unrecovered: 3 });
  });

  it('replays for a join with since but no id, and sends no ack', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    const epoch = ((await join(a, 'r')).at(-1) as Sent).epoch as string;
    send(a, 'r', 'one');
    send(a, 'r', 'two');
    await settle();
    const b = await connect(hub);
    b.json({ type: 'join', room: 'r', since: { offset: 0, epoch } });
    await settle();
    expect(b.take().map((f) => (f.type === 'message' ? f.offset : f.type))).toEqual(['join', 'user_list', 1, 2]);
  });

  it('replays nothing for a join of a room already joined: its ack has offset and epoch but no recovered', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    const epoch = ((await join(a, 'r')).at(-1) as Sent).epoch as string;
    send(a, 'r', 'one');
    await settle();
    expect(await join(a, 'r', { offset: 0, epoch })).toEqual([
      expect.objectContaining({ type: 'user_list' }),
      { type: 'ack', id: 'j', room: 'r', offset: 1, epoch, timestamp: expect.any(Number) },
    ]);
  });

  it('starts a new epoch from offset 1 once the TTL has passed since the last message', async () => {
    const { hub, clock } = setup({ historyTtl: '10s' });
    const a = await connect(hub);
    const epoch = ((await join(a, 'r')).at(-1) as Sent).epoch as string;
    send(a, 'r', 'one');
    send(a, 'r', 'two');
    await settle();
    clock.advance(9_000);
    send(a, 'r', 'three'); // the TTL counts from the last message
    await settle();
    expect(offsets(a.take())).toEqual([1, 2, 3]);
    clock.advance(9_999);
    expect(hub.stats().history).toMatchObject({ rooms: 1, messages: 3 });
    clock.advance(1);
    // The sweep (every 5 s) or the next access drops it; either way the stream is gone.
    clock.advance(5_000);
    expect(hub.stats().history).toMatchObject({ rooms: 0, messages: 0, bytes: 0 });
    send(a, 'r', 'after');
    await settle();
    expect(offsets(a.take())).toEqual([1]);
    const b = await connect(hub);
    const got = await join(b, 'r', { offset: 2, epoch });
    expect(got.at(-1)).toEqual({ type: 'ack', id: 'j', room: 'r', offset: 1, epoch: expect.not.stringMatching(epoch), recovered: false, timestamp: expect.any(Number) });
  });

  it('gives every hub its own epochs: a restarted process is a new epoch', async () => {
    const first = setup();
    const a = await connect(first.hub);
    const epoch = ((await join(a, 'r')).at(-1) as Sent).epoch as string;
    send(a, 'r', 'one');
    await settle();
    await first.hub.close();
    const second = setup();
    const b = await connect(second.hub);
    const got = await join(b, 'r', { offset: 1, epoch });
    expect(got.at(-1)).toMatchObject({ offset: 0, recovered: false });
    expect((got.at(-1) as Sent).epoch).not.toBe(epoch);
  });

  it('bounds memory by size x rooms and reports it in stats', async () => {
    const { hub } = setup({ historySize: 10 });
    const a = await connect(hub);
    for (const room of ['r1', 'r2', 'r3']) await join(a, room);
    for (let i = 0; i < 50; i++) for (const room of ['r1', 'r2', 'r3']) send(a, room, 'x'.repeat(10));
    await settle();
    const frame = messages(a.take()).find((f) => f.room === 'r1' && f.offset === 50) as Sent;
    const size = Buffer.byteLength(JSON.stringify(frame));
    expect(hub.stats().history).toEqual({ enabled: true, rooms: 3, messages: 30, bytes: 30 * size, recovered: 0, unrecovered: 0 });
  });

  it('hub.publish numbers server messages too and resolves with the offset', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    await join(a, 'r');
    await expect(hub.publish('r', 'from the server')).resolves.toBe(1);
    send(a, 'r', 'from a');
    await settle();
    expect(offsets(a.take())).toEqual([1, 2]);
    await expect(setup({ historySize: 0 }).hub.publish('r', 'x')).resolves.toBeUndefined();
  });
});

describe('historyFor: per-room history', () => {
  it('keeps what the hook says per room; 0 is a room without history (no offset, recovered: false)', async () => {
    const { hub } = setup({ historySize: 0, historyFor: (room) => (room === 'none' ? 0 : room === 'short' ? { size: 2, ttl: '1s' } : 5) });
    const a = await connect(hub);
    expect((await join(a, 'none')).at(-1)).toEqual({ type: 'ack', id: 'j', room: 'none', timestamp: expect.any(Number) });
    const epoch = ((await join(a, 'short')).at(-1) as Sent).epoch as string;
    for (const room of ['none', 'short', 'short', 'short']) send(a, room, 'x', 'm');
    await settle();
    expect(a.take().map((f) => `${f.type} ${f.room} ${f.offset}`)).toEqual([
      'message none undefined',
      'ack none undefined',
      'message short 1',
      'ack short 1',
      'message short 2',
      'ack short 2',
      'message short 3',
      'ack short 3',
    ]);
    const b = await connect(hub);
    expect((await join(b, 'short', { offset: 0, epoch })).at(-1)).toMatchObject({ offset: 3, recovered: false });
    expect((await join(b, 'none', { offset: 0, epoch })).at(-1)).toEqual({ type: 'ack', id: 'j', room: 'none', recovered: false, timestamp: expect.any(Number) });
  });

  it('reports a throwing or nonsensical hook as ERR_HOOK and applies the defaults', async () => {
    const errors: RoomwireError[] = [];
    const { hub } = setup({ historySize: 7, historyFor: (room) => (room === 'boom' ? (() => { throw new Error('no'); })() : { size: -1 }) });
    hub.on('error', (e) => errors.push(e));
    const a = await connect(hub);
    await join(a, 'boom');
    await join(a, 'bad');
    send(a, 'boom', 'x');
    await settle();
    expect(offsets(a.take())).toEqual([1]);
    expect(errors.map((e) => `${e.code} ${e.message}`)).toEqual([
      'ERR_HOOK historyFor threw for room "boom"; the default history applies',
      'ERR_HOOK historyFor returned {"size":-1} for room "bad": a size (an integer of at least 0) or { size, ttl } was expected; the default history applies',
      'ERR_HOOK historyFor threw for room "boom"; the default history applies',
    ]);
  });

  it('refuses history with a broker that keeps no streams', () => {
    const { history: _, ...plain } = createMemoryBroker();
    expect(() => createHub({ historySize: 10, broker: plain as Broker })).toThrow(/history \(historySize, historyFor\) needs a broker that keeps room streams/);
    expect(() => createHub({ broker: plain as Broker })).not.toThrow();
  });
});

describe('history off', () => {
  it('sends no offset and acks a join with since as recovered: false, without offset or epoch', async () => {
    const { hub } = setup({ historySize: 0 });
    const a = await connect(hub);
    expect((await join(a, 'r', { offset: 3, epoch: 'x' })).at(-1)).toEqual({ type: 'ack', id: 'j', room: 'r', recovered: false, timestamp: expect.any(Number) });
    send(a, 'r', 'hi', 'm');
    await settle();
    expect(a.take()).toEqual([
      { type: 'message', room: 'r', content: 'hi', user_id: expect.any(String), username: expect.any(String), timestamp: expect.any(Number) },
      { type: 'ack', id: 'm', room: 'r', timestamp: expect.any(Number) },
    ]);
    expect(hub.stats().history).toEqual({ enabled: false, rooms: 0, messages: 0, bytes: 0, recovered: 0, unrecovered: 1 });
  });

  it.each([
    ['a string', 'x'],
    ['null', null],
    ['a negative offset', { offset: -1, epoch: 'e' }],
    ['a fractional offset', { offset: 1.5, epoch: 'e' }],
    ['an offset past 2^53 - 1', { offset: 2 ** 53, epoch: 'e' }],
    ['a string offset', { offset: '1', epoch: 'e' }],
    ['no epoch', { offset: 1 }],
    ['a number epoch', { offset: 1, epoch: 5 }],
  ])('answers a since that is %s with invalid_message, and joins nothing', async (_, since) => {
    for (const historySize of [0, 10]) {
      const { hub } = setup({ historySize });
      const a = await connect(hub);
      a.json({ type: 'join', room: 'r', id: 7, since });
      await settle();
      expect(a.take()).toEqual([{ type: 'error', content: expect.stringContaining('"since'), data: { code: 'invalid_message' }, room: 'r', id: 7, timestamp: expect.any(Number) }]);
      expect(hub.roomNames()).toEqual([]);
    }
  });
});

describe('unavailable (docs/protocol.md section 9)', () => {
  /** The memory broker, but its streams can be made unreachable. */
  function flakyBroker(): Broker & { down: boolean } {
    const inner = createMemoryBroker();
    const history = inner.history!;
    const broker = Object.assign(Object.create(null) as object, inner, {
      down: false,
      history: {
        publish: (room: string, policy: Parameters<typeof history.publish>[1], parts: Parameters<typeof history.publish>[2]) => {
          if (broker.down) return Promise.reject(new RoomwireError('unavailable', 'Redis is away'));
          return Promise.resolve(history.publish(room, policy, parts));
        },
        read: (...args: Parameters<typeof history.read>) => history.read(...args),
        stats: () => history.stats(),
      },
    });
    return broker;
  }

  it('refuses a message while the stream cannot be reached: an unavailable error to the sender, nothing to anyone, offsets do not skip', async () => {
    const broker = flakyBroker();
    const { hub } = setup({ broker });
    const errors: string[] = [];
    hub.on('error', (e) => errors.push(e.code));
    const said: string[] = [];
    hub.on('message', (_c, _r, m) => said.push(m.content));
    const a = await connect(hub);
    const b = await connect(hub);
    await join(a, 'r');
    await join(b, 'r');
    send(a, 'r', 'one');
    await settle();
    broker.down = true;
    send(a, 'r', 'lost', 'm');
    await settle();
    broker.down = false;
    send(a, 'r', 'two');
    await settle();
    expect(a.take().filter((f) => f.type !== 'join').map((f) => (f.type === 'error' ? `error ${(f.data as Sent).code} ${f.room} ${f.id}` : `${f.content} ${f.offset}`))).toEqual(['one 1', 'error unavailable r m', 'two 2']);
    expect(b.take().map((f) => `${f.content} ${f.offset}`)).toEqual(['one 1', 'two 2']);
    expect(said).toEqual(['one', 'two']);
    expect(errors).toEqual(['unavailable']);
    expect(hub.stats().errors.unavailable).toBe(1);
  });
});

describe('property: no duplicate and no unflagged gap', () => {
  /**
   * The memory broker with asynchronous streams: a publish is numbered a turn later and a
   * read answers a turn later, so messages keep arriving while a rejoin's read is pending.
   */
  function asyncBroker(): Broker {
    const inner = createMemoryBroker();
    const history = inner.history!;
    return Object.assign(Object.create(null) as object, inner, {
      history: {
        publish: (...args: Parameters<typeof history.publish>) => Promise.resolve().then(() => history.publish(...args)),
        read: (...args: Parameters<typeof history.read>) => new Promise((r) => setImmediate(() => r(history.read(...args)))),
        stats: () => history.stats(),
      },
    }) as Broker;
  }

  /** What a client keeps, as the SDK does: the last offset and epoch it saw in the room. */
  interface Member {
    t: FakeTransport | undefined;
    last: number;
    epoch: string | undefined;
    /** (epoch, offset) pairs received, to find duplicates. */
    seen: Set<string>;
    /** A rejoin in progress: its since (when it sent one); frames up to its ack are its recovery. */
    rejoining: { since: { offset: number; epoch: string } | undefined; replayed: number[] } | undefined;
  }

  const op = fc.oneof(
    fc.record({ kind: fc.constant('send' as const), who: fc.nat(4), n: fc.integer({ min: 1, max: 6 }) }),
    fc.record({ kind: fc.constant('drop' as const), who: fc.nat(4) }),
    fc.record({ kind: fc.constant('rejoin' as const), who: fc.nat(4) }),
    fc.record({ kind: fc.constant('settle' as const) }),
    fc.record({ kind: fc.constant('wait' as const), ms: fc.constantFrom(1000, 20_000) }),
  );

  it.each([
    ['synchronous streams', false],
    ['asynchronous streams', true],
  ])('holds over random schedules (%s)', async (_, async) => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 40 }), fc.integer({ min: 2, max: 8 }), async (ops, size) => {
        // Connections idle through the waits: no liveness check may end them.
        const alive = { connectionTimeout: '1h', pongWait: '1h', pingPeriod: '59m' };
        const { hub, clock } = setup({ historySize: size, historyTtl: '30s', ...alive, ...(async ? { broker: asyncBroker() } : {}) });
        const members: Member[] = [];
        const problems: string[] = [];
        const live = (m: Member, offset: number): void => {
          // An offset not above the last one means a new epoch (section 9); else no gap.
          if (offset <= m.last) {
            if (offset !== 1) problems.push(`new epoch not from 1: ${m.last} then ${offset}`);
            m.epoch = `after ${m.epoch}`;
          } else if (offset !== m.last + 1) {
            problems.push(`gap: ${m.last} then ${offset}`);
          }
          const key = `${m.epoch} ${offset}`;
          if (m.seen.has(key)) problems.push(`duplicate ${key}`);
          m.seen.add(key);
          m.last = offset;
        };
        /** Read what `m` received since the last look, checking each frame against what it knew. */
        const absorb = (m: Member): void => {
          for (const f of m.t?.take() ?? []) {
            const r = m.rejoining;
            if (r !== undefined) {
              if (f.type === 'message') r.replayed.push(f.offset as number);
              if (f.type !== 'ack' || f.id !== 'j') continue;
              m.rejoining = undefined;
              if (f.recovered === true) {
                const since = r.since as { offset: number; epoch: string };
                if (f.epoch !== since.epoch) problems.push('recovered from another epoch');
                const want = range(since.offset + 1, f.offset as number);
                if (JSON.stringify(r.replayed) !== JSON.stringify(want)) problems.push(`replayed ${JSON.stringify(r.replayed)}, wanted ${JSON.stringify(want)}`);
                for (const o of r.replayed) m.seen.add(`${m.epoch} ${o}`);
              } else {
                if (r.replayed.length > 0) problems.push('replayed without recovered: true');
                if (r.since !== undefined && f.recovered !== false) problems.push('a since without recovered in the ack');
                m.seen = new Set();
              }
              m.epoch = f.epoch as string;
              m.last = f.offset as number;
              continue;
            }
            if (f.type === 'message') live(m, f.offset as number);
          }
        };
        const rejoin = async (m: Member, withSince: boolean): Promise<void> => {
          m.t = await connect(hub);
          const since = withSince && m.epoch !== undefined ? { offset: m.last, epoch: m.epoch } : undefined;
          m.rejoining = { since, replayed: [] };
          m.t.json({ type: 'join', room: 'r', id: 'j', ...(since === undefined ? {} : { since }) });
        };
        for (let i = 0; i < 5; i++) {
          members.push({ t: undefined, last: 0, epoch: undefined, seen: new Set(), rejoining: undefined });
          await rejoin(members[i] as Member, false);
        }
        await settle();
        for (const o of ops) {
          if (o.kind === 'settle') await settle();
          if (o.kind === 'wait') clock.advance(o.ms);
          if (o.kind === 'settle' || o.kind === 'wait') continue;
          const m = members[o.who] as Member;
          if (o.kind === 'send' && m.t !== undefined) for (let i = 0; i < o.n; i++) send(m.t, 'r', `${o.who}`);
          if (o.kind === 'drop' && m.t !== undefined && m.rejoining === undefined) {
            absorb(m);
            m.t.listener.onClose(1006, '');
            m.t = undefined;
          }
          if (o.kind === 'rejoin' && m.t === undefined) await rejoin(m, true);
          for (const x of members) absorb(x);
        }
        for (let i = 0; i < 4; i++) await settle();
        for (const x of members) absorb(x);
        expect(members.filter((m) => m.rejoining !== undefined)).toEqual([]);
        await hub.close();
        expect(problems).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
