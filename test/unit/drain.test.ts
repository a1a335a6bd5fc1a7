/**
 * Draining (docs/protocol.md section 4): closes spread evenly over the window in a random
 * order, a `reconnect` frame just before each 1001, 503 for new upgrades, and a window of 0
 * behaving as before. Fake clock and fake transports.
 */
import { describe, expect, it } from 'vitest';
import { adapterHandle, configFromEnv } from '../../src/index';
import { reconnectDelay, spread } from '../../src/core/drain';
import { FakeClock, FakeTransport, SEC, T0, connect, hubOnFakeClock } from '../helpers/fake';

const setup = hubOnFakeClock;

/** Connect `n` fake clients from distinct addresses (past the connect rate's burst). */
async function clients(hub: ReturnType<typeof setup>['hub'], n: number): Promise<FakeTransport[]> {
  const out: FakeTransport[] = [];
  for (let i = 0; i < n; i++) out.push(await connect(hub, '/ws', {}, `10.0.${i >> 8}.${i & 255}`));
  return out;
}

/** Settle the microtasks of a resolved close. */
const flush = () => new Promise((r) => setImmediate(r));

describe('drain', () => {
  it('closes the connections spread evenly over the window, the i-th of n at i·W/n', async () => {
    const { hub, clock } = setup();
    const ts = await clients(hub, 10);
    const closedAt = new Map<FakeTransport, number>();
    const order: number[] = [];
    hub.on('disconnect', () => {
      const i = ts.findIndex((t) => t.closedWith !== undefined && !closedAt.has(t));
      closedAt.set(ts[i]!, clock.now() - T0);
      order.push(i);
    });
    let done = false;
    void hub.close({ drain: 1000 }).then(() => (done = true));
    expect(hub.closing).toBe(true);
    expect(hub.draining).toBe(true);
    expect(order).toHaveLength(1); // the first at once
    for (let step = 1; step < 10; step++) {
      clock.advance(99);
      expect(order).toHaveLength(step);
      clock.advance(1);
      expect(order).toHaveLength(step + 1);
    }
    expect([...closedAt.values()].sort((a, b) => a - b)).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
    expect(new Set(order).size).toBe(10);
    await flush();
    expect(done).toBe(true);
    expect(hub.size).toBe(0);
  });

  it('closes in a random order', async () => {
    const { hub, clock } = setup();
    const ts = await clients(hub, 40);
    const ids = hub.clients().map((c) => c.id);
    const closedIds: string[] = [];
    hub.on('disconnect', (client) => closedIds.push(client.id));
    const closing = hub.close({ drain: 4000 });
    clock.advance(4000);
    await closing;
    expect(ts.every((t) => t.closedWith?.code === 1001)).toBe(true);
    expect([...closedIds].sort()).toEqual([...ids].sort());
    expect(closedIds).not.toEqual(ids); // 1 chance in 40! of a false failure
  });

  it('sends each connection a reconnect frame with a delay from 0 to W just before its 1001', async () => {
    const { hub, clock } = setup();
    const ts = await clients(hub, 400);
    const closing = hub.close({ drain: '2s' });
    clock.advance(2000);
    await closing;
    const delays: number[] = [];
    for (const t of ts) {
      // A fake transport records nothing after its close: the reconnect frame came before it.
      const last = t.sent.at(-1);
      expect(last).toEqual({ type: 'reconnect', data: { delay_ms: expect.any(Number) }, timestamp: expect.any(Number) });
      expect(last!.timestamp).toBeGreaterThanOrEqual(SEC);
      expect(last!.timestamp).toBeLessThanOrEqual(SEC + 2);
      expect(t.texts.at(-1)).toMatch(/^\{"type":"reconnect","data":\{"delay_ms":\d+\},"timestamp":\d+\}$/);
      expect(t.sent.filter((f) => f.type === 'reconnect')).toHaveLength(1);
      expect(t.closedWith).toEqual({ code: 1001, reason: 'server shutting down' });
      delays.push((last!.data as { delay_ms: number }).delay_ms);
    }
    expect(delays.every((d) => Number.isInteger(d) && d >= 0 && d <= 2000)).toBe(true);
    const mean = delays.reduce((a, b) => a + b, 0) / delays.length;
    expect(mean).toBeGreaterThan(850); // uniform on [0, 2000]: 1000 ± 29 (one sd)
    expect(mean).toBeLessThan(1150);
    expect(Math.min(...delays)).toBeLessThan(200);
    expect(Math.max(...delays)).toBeGreaterThan(1800);
  });

  it('draws delays over the whole window, both ends included', () => {
    expect(reconnectDelay(4000, () => 0)).toBe(0);
    expect(reconnectDelay(4000, () => 0.999_999_9)).toBe(4000);
    expect(reconnectDelay(4000, () => 0.5)).toBe(2000);
  });

  it('refuses new upgrades with 503 during the drain and serves the connections not yet closed', async () => {
    const { hub, clock } = setup();
    const [a, b] = await clients(hub, 2);
    a!.json({ type: 'join', room: 'r' });
    b!.json({ type: 'join', room: 'r' });
    const closing = hub.close({ drain: 1000 });
    expect(await adapterHandle(hub).admit({ url: '/ws', headers: {}, remoteAddress: '10.9.9.9' })).toMatchObject({ accepted: false, status: 503, reason: 'shutting_down' });
    const open = [a!, b!].find((t) => t.closedWith === undefined)!;
    open.take();
    open.json({ type: 'message', room: 'r', content: 'still here', id: 1 });
    expect(open.take().map((f) => f.type)).toEqual(['message', 'ack']);
    clock.advance(1000);
    await closing;
    expect(hub.stats().rejected.shutting_down).toBe(1);
  });

  it('sends reconnect then 1001 at once to a handshake that completes during the drain', async () => {
    const { hub, clock } = setup();
    await clients(hub, 2);
    const admission = await adapterHandle(hub).admit({ url: '/ws', headers: {}, remoteAddress: '10.8.8.8' });
    if (!admission.accepted) throw new Error('refused');
    const closing = hub.close({ drain: 1000 });
    const late = new FakeTransport();
    late.listener = admission.ticket.open(late);
    expect(late.sent).toEqual([{ type: 'reconnect', data: { delay_ms: expect.any(Number) }, timestamp: SEC }]);
    expect(late.closedWith).toEqual({ code: 1001, reason: 'server shutting down' });
    late.listener.onClose(1001, 'server shutting down'); // its peer answers (the listener was not set yet when it closed)
    clock.advance(1000);
    await closing;
  });

  it('skips a connection that closes by itself, and resolves once the last is closed', async () => {
    const { hub, clock } = setup();
    const ts = await clients(hub, 4);
    let done = false;
    const closing = hub.close({ drain: 4000 }).then(() => (done = true));
    const early = ts.filter((t) => t.closedWith === undefined);
    expect(early).toHaveLength(3);
    for (const t of early) t.listener.onClose(1000, 'bye'); // the clients leave first
    await flush();
    expect(done).toBe(true);
    for (const t of early) expect(t.sent).toEqual([]);
    clock.advance(4000); // nothing left to close: nothing happens
    for (const t of early) expect(t.closedWith).toBeUndefined();
    await closing;
  });

  it('bounds each closing handshake by the timeout from its own close frame, and leaves no timer', async () => {
    const { hub, clock } = setup();
    const ts = await clients(hub, 2);
    for (const t of ts) t.autoClose = false; // peers that never answer the close frame
    let done = false;
    void hub.close({ drain: 1000, timeout: 2000 }).then(() => (done = true));
    clock.advance(500); // both close frames are out (at 0 and 500)
    expect(ts.map((t) => t.closedWith?.code)).toEqual([1001, 1001]);
    clock.advance(1499); // 1999
    expect(ts.filter((t) => t.terminated)).toHaveLength(0);
    clock.advance(1); // 2000: the first is dropped
    expect(ts.filter((t) => t.terminated)).toHaveLength(1);
    await flush();
    expect(done).toBe(false);
    clock.advance(500); // 2500: the second
    expect(ts.filter((t) => t.terminated)).toHaveLength(2);
    await flush();
    expect(done).toBe(true);
    expect(clock.activeTimers).toBe(0);
  });

  it('keeps the liveness sweep going during the drain', async () => {
    const { hub, clock } = setup({ pingPeriod: '5s', pongWait: '8s', heartbeatInterval: '1s' });
    const ts = await clients(hub, 2);
    const pings = () => ts.reduce((n, t) => n + t.pings, 0);
    const closing = hub.close({ drain: '20s' });
    clock.advance(6000);
    expect(pings()).toBeGreaterThan(0);
    clock.advance(14_000);
    await closing;
    await flush();
    expect(clock.activeTimers).toBe(0);
  });

  it('takes the window from drainWindow (WEBSOCKET_DRAIN_WINDOW) when close() names none', async () => {
    const { hub, clock } = setup({ ...configFromEnv({ WEBSOCKET_DRAIN_WINDOW: '3s' }), messageRate: '1000/s,1000' });
    expect(hub.config.drainWindow).toBe(3000);
    const ts = await clients(hub, 3);
    const closing = hub.close();
    expect(hub.draining).toBe(true);
    expect(ts.filter((t) => t.closedWith !== undefined)).toHaveLength(1);
    clock.advance(1000);
    expect(ts.filter((t) => t.closedWith !== undefined)).toHaveLength(2);
    clock.advance(1000);
    expect(ts.filter((t) => t.closedWith !== undefined)).toHaveLength(3);
    await closing;
  });

  it('closes everything at once with a window of 0, as without a drain', async () => {
    const { hub } = setup({ drainWindow: '10s' });
    const ts = await clients(hub, 3);
    await hub.close({ drain: 0 });
    expect(hub.closing).toBe(true);
    expect(hub.draining).toBe(false);
    for (const t of ts) {
      expect(t.sent).toEqual([]);
      expect(t.closedWith).toEqual({ code: 1001, reason: 'server shutting down' });
    }
    expect(await adapterHandle(hub).admit({ url: '/ws', headers: {} })).toMatchObject({ status: 503, reason: 'shutting_down' });
  });

  it('refuses a bad drain before anything changes', () => {
    const { hub } = setup();
    expect(() => hub.close({ drain: -1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: 'drain must be a non-negative number of milliseconds' }));
    expect(() => hub.close({ drain: 'soon' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(hub.closing).toBe(false);
  });
});

describe('spread', () => {
  it('catches up with closes a late timer missed, without moving the rest', () => {
    const clock = new FakeClock(0);
    const at: number[] = [];
    // A clock whose first timer fires 250 ms late.
    let late = true;
    const lagging = {
      now: () => clock.now(),
      every: clock.every.bind(clock),
      after: (ms: number, fn: () => void) => {
        const extra = late ? 250 : 0;
        late = false;
        return clock.after(ms + extra, fn);
      },
    };
    spread([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 1000, lagging, () => at.push(clock.now()));
    clock.advance(1000);
    expect(at).toEqual([0, 350, 350, 350, 400, 500, 600, 700, 800, 900]);
  });

  it('stops when cancelled', () => {
    const clock = new FakeClock(0);
    const seen: number[] = [];
    const cancel = spread([1, 2, 3, 4], 400, clock, (x) => seen.push(x));
    clock.advance(150);
    cancel();
    clock.advance(1000);
    expect(seen).toHaveLength(2);
    expect(clock.activeTimers).toBe(0);
  });
});
