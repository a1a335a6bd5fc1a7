/**
 * `roomwire/client` against real servers over real sockets (Node, with `ws` as the
 * WebSocket): requests and replies, errors, reconnects after a server is killed, token
 * refresh in-band and after a 1008, refusals that stop retrying, calls made while
 * disconnected, and recovery (docs/recovery.md): the messages missed while away, `recovered`
 * and `gap` events, `room.position` and `join(room, { since })`.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { createClient, type ClientOptions, type GapEvent, type MessageFrame, type RecoveredEvent, type RoomPosition, type RoomwireClient, type StateChange } from '../../src/client/index';
import type { RoomwireError } from '../../src/core/errors';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { SECRET, sign, sleep } from '../helpers/client';
import { ServerProcess, waitFor } from '../helpers/process';
import { freePort, RedisServer } from '../helpers/redis';

const clients: RoomwireClient[] = [];
const servers: RunningServer[] = [];
const processes: ServerProcess[] = [];
const redises: RedisServer[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await Promise.all(processes.splice(0).map((p) => p.kill()));
  await Promise.all(redises.splice(0).map((r) => r.kill()));
});

const ENV = { WEBSOCKET_JWT_SECRET: SECRET, WEBSOCKET_MESSAGE_RATE: '10000/s,10000', WEBSOCKET_CONNECT_RATE: '100000/s,100000', WEBSOCKET_MAX_MESSAGE_SIZE: '65536' };

async function serve(env: Record<string, string> = {}): Promise<RunningServer> {
  const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', ...ENV, ...env }, log: () => {} });
  servers.push(s);
  return s;
}

async function spawnServer(env: Record<string, string> = {}, port?: number): Promise<ServerProcess> {
  const p = await ServerProcess.start({ ...ENV, ...env }, port);
  processes.push(p);
  return p;
}

function client(options: Partial<ClientOptions> & Pick<ClientOptions, 'url'>): RoomwireClient {
  const c = createClient({ WebSocket: WebSocket as never, reconnect: { minDelayMs: 50, maxDelayMs: 400 }, ...options });
  clients.push(c);
  return c;
}

/** Every state change of a client, as `state` or `state:code`. */
function states(c: RoomwireClient): string[] {
  const seen: string[] = [];
  c.on('state', (s: StateChange) => seen.push(s.code === undefined ? s.state : `${s.state}:${s.code}`));
  return seen;
}

async function connected(c: RoomwireClient, timeout = 5000): Promise<void> {
  await waitFor('connected', () => c.state === 'connected', timeout);
}

async function rejects(p: Promise<unknown>): Promise<RoomwireError> {
  try {
    await p;
  } catch (err) {
    return err as RoomwireError;
  }
  throw new Error('resolved');
}

describe('roomwire/client: requests and replies', () => {
  it('joins, sends and leaves with acks; room and client listeners fire once per frame', async () => {
    const s = await serve();
    const url = `ws://127.0.0.1:${s.port}/ws`;
    const a = client({ url });
    const b = client({ url, getToken: () => sign({ sub: 'bob', username: 'Bob' }) });
    const seenByA: MessageFrame[] = [];
    const roomSeen: string[] = [];
    a.on('message', (m) => seenByA.push(m));
    a.room('r').on('message', (m) => roomSeen.push(m.content));
    a.room('r').on('join', (n) => roomSeen.push(`join:${n.username}`));
    const first = await a.join('r');
    expect(first.users).toHaveLength(1);
    expect(await b.join('r')).toEqual({ users: [first.users[0], 'Bob'] });
    await b.send('r', 'hello', { n: 1 });
    await waitFor('a got it', () => seenByA.length === 1, 2000);
    expect(seenByA[0]).toEqual({ type: 'message', room: 'r', content: 'hello', user_id: 'bob', username: 'Bob', timestamp: expect.any(Number), data: { n: 1 } });
    expect(roomSeen).toEqual([`join:${first.users[0]}`, 'join:Bob', 'hello']);
    // A second join of the same room: one membership, one set of listeners.
    expect(await a.join('r')).toEqual({ users: [first.users[0], 'Bob'] });
    expect(s.hub.members('r')).toHaveLength(2);
    expect(await a.users('r')).toEqual([first.users[0], 'Bob']);
    await b.leave('r');
    expect(s.hub.members('r')).toHaveLength(1);
    await b.send('r', 'gone').then(
      () => expect.fail('resolved'),
      (err: RoomwireError) => expect({ code: err.code, message: err.message }).toEqual({ code: 'not_in_room', message: 'not a member of this room' }),
    );
    expect(typeof (await a.ping())).toBe('number');
  });

  it('rejects the right promise with the wire code, and leaves the other calls alone', async () => {
    const s = await serve({ WEBSOCKET_MAX_ROOM_SIZE: '1' });
    const url = `ws://127.0.0.1:${s.port}/ws`;
    const a = client({ url });
    const b = client({ url });
    await a.join('full');
    const [full, ok, bad, notIn] = await Promise.allSettled([b.join('full'), b.join('fine'), b.join('bad room'), b.send('elsewhere', 'x')]);
    expect((full as PromiseRejectedResult).reason).toMatchObject({ code: 'room_full', message: 'room is full' });
    expect(ok).toEqual({ status: 'fulfilled', value: { users: [expect.any(String)] } });
    expect((bad as PromiseRejectedResult).reason).toMatchObject({ code: 'invalid_room' });
    expect((notIn as PromiseRejectedResult).reason).toMatchObject({ code: 'not_in_room' });
    expect(s.hub.clients().find((c) => c.rooms.includes('fine'))?.rooms).toEqual(['fine']);
  });

  it('answers 200 concurrent calls exactly once each', async () => {
    const s = await serve();
    const c = client({ url: `ws://127.0.0.1:${s.port}/ws` });
    const other = client({ url: `ws://127.0.0.1:${s.port}/ws` });
    await c.join('busy');
    let got = 0;
    other.room('busy').on('message', () => got++);
    await other.join('busy');
    const calls = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? c.send('busy', `m${i}`) : c.users('busy')));
    const results = await Promise.all(calls);
    expect(results.filter((r) => Array.isArray(r))).toHaveLength(100);
    await waitFor('every message delivered', () => got === 100, 3000);
    await sleep(100);
    expect(got).toBe(100);
  });
});

describe('roomwire/client: reconnects', () => {
  it('comes back after the server is killed and started again on the same port: rooms joined again, listeners fire once', async () => {
    const server = await spawnServer();
    const url = `${server.base}/ws`;
    const a = client({ url });
    const b = client({ url });
    const seen: string[] = [];
    const aStates = states(a);
    a.room('lobby').on('message', (m) => seen.push(m.content));
    await a.join('lobby');
    await b.join('lobby');
    await b.send('lobby', 'before');
    await waitFor('before', () => seen.length === 1, 2000);

    await server.kill();
    await waitFor('a notices', () => a.state !== 'connected', 2000);
    await sleep(300);
    await server.start();
    await connected(a);
    await connected(b);
    // Joined again by themselves: b's next message reaches a, once.
    await waitFor('rejoined', async () => (await b.users('lobby').catch(() => [])).length === 2, 5000);
    await b.send('lobby', 'after');
    await waitFor('after', () => seen.length === 2, 2000);
    await sleep(200);
    expect(seen).toEqual(['before', 'after']);
    expect(aStates.indexOf('disconnected:1006')).toBeGreaterThan(-1);
    expect(aStates.slice(aStates.indexOf('disconnected:1006'))).toContain('connecting');
    expect(aStates.at(-1)).toBe('connected');
  }, 30_000);

  it('keeps trying while the server is down longer than maxDelayMs, then reconnects', async () => {
    const server = await spawnServer();
    const c = client({ url: `${server.base}/ws`, reconnect: { minDelayMs: 50, maxDelayMs: 300 } });
    let attempts = 0;
    c.on('state', (s) => s.state === 'connecting' && attempts++);
    await c.join('r');
    await server.kill();
    await sleep(1500);
    expect(c.state).not.toBe('connected');
    expect(attempts).toBeGreaterThanOrEqual(4);
    await server.start();
    await connected(c);
    expect(await c.users('r')).toHaveLength(1);
  }, 30_000);

  it('honours the delay_ms of a reconnect frame before reconnecting', async () => {
    const port = await freePort();
    const wss = new WebSocketServer({ port, host: '127.0.0.1' });
    const opened: number[] = [];
    let closedAt = 0;
    wss.on('connection', (ws) => {
      opened.push(Date.now());
      if (opened.length === 1) {
        ws.send(JSON.stringify({ type: 'reconnect', data: { delay_ms: 1200 }, timestamp: 1 }));
        closedAt = Date.now();
        ws.close(1001, 'server shutting down');
      }
    });
    try {
      const c = client({ url: `ws://127.0.0.1:${port}/ws`, reconnect: { minDelayMs: 10, maxDelayMs: 20 } });
      await waitFor('second connection', () => opened.length === 2, 5000);
      expect(opened[1]! - closedAt).toBeGreaterThanOrEqual(1150);
      c.close();
    } finally {
      await new Promise((r) => wss.close(r));
    }
  });

  it('tries the URLs of a list in turn: when one server dies, it goes on at the next', async () => {
    const one = await spawnServer();
    const two = await spawnServer();
    const c = client({ url: [`${one.base}/ws`, `${two.base}/ws`] });
    await c.join('r');
    await one.kill();
    await waitFor('on the second server', async () => c.state === 'connected' && (await c.users('r').catch(() => [])).length === 1, 5000);
  }, 20_000);
});

describe('roomwire/client: tokens', () => {
  it('refreshes a short-lived token in-band before its exp, without reconnecting', async () => {
    const s = await serve();
    let issued = 0;
    const c = client({ url: `ws://127.0.0.1:${s.port}/ws/auth`, getToken: () => (issued++, sign({ sub: 'u1' }, { expiresIn: '3s' })) });
    const seen = states(c);
    await c.join('r');
    await sleep(5500); // past the first token's exp
    expect(c.state).toBe('connected');
    expect(seen.filter((x) => x === 'connected')).toHaveLength(1);
    expect(issued).toBeGreaterThanOrEqual(3);
    expect(s.hub.stats().messagesIn.auth).toBeGreaterThanOrEqual(2);
    expect(await c.users('r')).toEqual(['u1']);
  }, 20_000);

  it('asks for a new token and reconnects after a 1008 token expired close, and joins its rooms again', async () => {
    const s = await serve({ WEBSOCKET_HEARTBEAT_INTERVAL: '500ms' });
    let calls = 0;
    // The first token cannot be refreshed (getToken hands out the same one until it has expired).
    const first = await sign({ sub: 'u2' }, { expiresIn: '2s' });
    const c = client({
      url: `ws://127.0.0.1:${s.port}/ws/auth`,
      getToken: async () => (++calls <= 2 ? first : sign({ sub: 'u2' }, { expiresIn: '1h' })),
    });
    const seen = states(c);
    await c.join('r');
    await waitFor('closed with 1008', () => seen.includes('disconnected:1008'), 6000);
    await connected(c);
    await waitFor('rejoined', async () => (await c.users('r').catch(() => [])).length === 1, 3000);
    expect(s.hub.clients().map((x) => x.rooms)).toEqual([['r']]);
  }, 20_000);

  it('stops retrying after a 401 that getToken cannot fix, and says why', async () => {
    const s = await serve();
    const forged = await sign({ sub: 'x' }, { secret: 'not-the-secret-not-the-secret-not-the-secret' });
    const errors: RoomwireError[] = [];
    const c = client({ url: `ws://127.0.0.1:${s.port}/ws/auth`, getToken: () => forged });
    c.on('error', (e) => errors.push(e));
    await waitFor('closed', () => c.state === 'closed', 5000);
    await sleep(300);
    expect(errors.map((e) => [e.code, e.status])).toEqual([['ERR_REFUSED', 401]]);
    expect(s.hub.stats().rejected.unauthorized).toBe(1);
    expect((await rejects(c.join('r'))).code).toBe('ERR_CLOSED');
  });

  it('stops on 403 and 404 too, and retries a 503', async () => {
    const s = await serve({ WEBSOCKET_ALLOWED_ORIGINS: 'https://ok.example' });
    const bad = client({ url: `ws://127.0.0.1:${s.port}/ws/a/b` });
    await waitFor('404 stops', () => bad.state === 'closed', 5000);
    const down = await serve({ WEBSOCKET_ENABLED: 'false' });
    const waiting = client({ url: `ws://127.0.0.1:${down.port}/ws` });
    await sleep(800);
    expect(waiting.state).not.toBe('closed');
    expect(down.hub.stats().rejected.disabled).toBeGreaterThanOrEqual(2);
  });
});

describe('roomwire/client: calls while disconnected', () => {
  it('waits for the connection up to requestTimeoutMs, then rejects with ERR_TIMEOUT; never queues without bound', async () => {
    const port = await freePort();
    const c = client({ url: `ws://127.0.0.1:${port}/ws`, requestTimeoutMs: 300, maxQueued: 5 });
    const started = Date.now();
    const calls = Array.from({ length: 7 }, (_, i) => rejects(c.send('r', `m${i}`)));
    const errors = await Promise.all(calls);
    expect(errors.map((e) => e.code)).toEqual(['ERR_TIMEOUT', 'ERR_TIMEOUT', 'ERR_TIMEOUT', 'ERR_TIMEOUT', 'ERR_TIMEOUT', 'ERR_QUEUE_FULL', 'ERR_QUEUE_FULL']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    c.close();
    expect((await rejects(c.send('r', 'late'))).code).toBe('ERR_CLOSED');
  });

  it('sends a message queued while disconnected once back, after joining its room again', async () => {
    const server = await spawnServer();
    const c = client({ url: `${server.base}/ws`, requestTimeoutMs: 8000 });
    const got: string[] = [];
    c.room('q').on('message', (m) => got.push(m.content));
    await c.join('q');
    await server.kill();
    await waitFor('disconnected', () => c.state !== 'connected', 2000);
    const queued = c.send('q', 'queued while away');
    await server.start();
    // The ack proves the server took it from a member (else: not_in_room); the echo, that
    // the room got it once.
    await queued;
    await waitFor('delivered', () => got.length === 1, 3000);
    await sleep(100);
    expect(got).toEqual(['queued while away']);
  }, 20_000);
});

describe('roomwire/client: property', () => {
  it('after any interleaving of join, leave, send and dropped connections, the server has exactly the rooms the client wants', async () => {
    const s = await serve();
    const url = `ws://127.0.0.1:${s.port}/ws`;
    const op = fc.oneof(
      fc.record({ kind: fc.constant('join' as const), room: fc.constantFrom('a', 'b', 'c') }),
      fc.record({ kind: fc.constant('leave' as const), room: fc.constantFrom('a', 'b', 'c') }),
      fc.record({ kind: fc.constant('send' as const), room: fc.constantFrom('a', 'b', 'c') }),
      fc.record({ kind: fc.constant('drop' as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const c = client({ url, requestTimeoutMs: 3000 });
        const wanted = new Set<string>();
        const calls: Promise<unknown>[] = [];
        const settle = (p: Promise<unknown>) => calls.push(p.then(() => 'ok', (e: RoomwireError) => e.code));
        for (const o of ops) {
          if (o.kind === 'join') {
            wanted.add(o.room);
            settle(c.join(o.room));
          } else if (o.kind === 'leave') {
            wanted.delete(o.room);
            settle(c.leave(o.room));
          } else if (o.kind === 'send') {
            settle(c.send(o.room, 'x'));
          } else {
            // the server drops this client's connection
            for (const sc of s.hub.clients()) sc.close(4000, 'dropped by the test');
          }
          await sleep(Math.random() * 20);
        }
        await Promise.allSettled(calls);
        await connected(c);
        await waitFor('in step', () => {
          const mine = s.hub.clients();
          return mine.length === 1 && [...mine[0]!.rooms].sort().join() === [...wanted].sort().join();
        }, 3000);
        c.close();
        await waitFor('closed', () => s.hub.size === 0, 2000);
      }),
      { numRuns: 25 },
    );
  }, 60_000);
});

describe('roomwire/client: at scale and across processes', () => {
  it('spreads the first reconnect attempts of 2,000 clients over the jitter window (no 50 ms bucket holds more than 20%)', async () => {
    const server = await spawnServer({ WEBSOCKET_MAX_CONNECTIONS: '5000' });
    const delays: number[] = [];
    const many: RoomwireClient[] = [];
    for (let i = 0; i < 2000; i++) {
      const c = createClient({ url: `${server.base}/ws`, WebSocket: WebSocket as never, reconnect: { minDelayMs: 500, maxDelayMs: 5000 } });
      clients.push(c);
      many.push(c);
      let scheduled = false;
      // The delay each client chose for its first attempt (the time it then waits is the
      // event loop's business: 2,000 clients share this test's loop).
      c.on('reconnecting', ({ delayMs }) => {
        if (scheduled) return;
        scheduled = true;
        delays.push(delayMs);
      });
    }
    await waitFor('all connected', () => many.every((c) => c.state === 'connected'), 20_000);
    await server.kill();
    await waitFor('every first attempt scheduled', () => delays.length === 2000, 5000);
    const buckets = Array.from({ length: 10 }, () => 0);
    for (const d of delays) buckets[Math.min(9, Math.floor(d / 50))]!++;
    // Full jitter over the first window, minDelayMs (500 ms).
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...delays)).toBeLessThanOrEqual(500);
    expect(Math.max(...buckets) / delays.length).toBeLessThanOrEqual(0.2);
    for (const c of many) c.close();
  }, 60_000);

  it('moves to the other process of a hub on one Redis when its process dies, keeping its rooms', async () => {
    const { RedisServer } = await import('../helpers/redis');
    const redis = await RedisServer.start();
    try {
      const one = await spawnServer({ WEBSOCKET_REDIS_URL: redis.url });
      const two = await spawnServer({ WEBSOCKET_REDIS_URL: redis.url });
      const roaming = client({ url: [`${one.base}/ws`, `${two.base}/ws`] });
      const staying = client({ url: `${two.base}/ws` });
      const heard: string[] = [];
      roaming.room('shared').on('message', (m) => heard.push(m.content));
      await roaming.join('shared');
      await staying.join('shared');
      await waitFor('both listed', async () => (await staying.users('shared')).length === 2, 5000);
      await staying.send('shared', 'across processes');
      await waitFor('heard across processes', () => heard.includes('across processes'), 3000);
      await one.kill();
      await waitFor('back, on the other process', () => roaming.state === 'connected', 20_000);
      // Resolves on the ack of the room's join on the new connection (joined again by itself).
      await roaming.join('shared');
      await staying.send('shared', 'after the move');
      await waitFor('heard after the move', () => heard.includes('after the move'), 3000);
      expect(heard.filter((h) => h === 'after the move')).toHaveLength(1);
    } finally {
      await redis.kill();
    }
  }, 60_000);
});

describe('roomwire/client: identity', () => {
  it('knows who the server says it is from its first join, and forgets it with the connection', async () => {
    const s = await serve();
    const c = client({ url: `ws://127.0.0.1:${s.port}/ws`, getToken: () => sign({ sub: 'me-1', username: 'Me' }) });
    expect(c.user).toBeUndefined();
    const other = client({ url: `ws://127.0.0.1:${s.port}/ws` });
    await other.join('r');
    await c.join('r');
    expect(c.user).toEqual({ user_id: 'me-1', username: 'Me' });
    const anon = client({ url: `ws://127.0.0.1:${s.port}/ws` });
    await anon.join('r');
    expect(anon.user?.username).toMatch(/^guest-[0-9a-f]{8}$/);
    expect(s.hub.clients().map((x) => x.username)).toContain(anon.user!.username);
  });
});

// ---- recovery (docs/recovery.md, contract section 9) ------------------------------------

/** What the recovery tests run on, started. */
interface Running {
  /** Where the client under test connects: the process that `kill()` and `start()` act on. */
  readonly url: string;
  /** Where the other members connect: another process on the same history when there is one, else `url`. */
  readonly other: string;
  /** SIGKILL the process that serves `url`: its connections drop without a close frame. */
  kill(): Promise<void>;
  /** Start that process again, on the same port. */
  start(): Promise<void>;
  /** `kill()`, then `start()`. */
  restart(): Promise<void>;
  /** Whether the room streams outlive the process (in one process they die with it: a new epoch). */
  readonly streamsSurviveRestart: boolean;
  /** Restart Redis empty (every stream lost) and wait until each running process is connected to it again. */
  emptyRedis?(): Promise<void>;
}

/**
 * A deployment the recovery tests run on. `shared`: the room streams live outside the
 * processes (in Redis), and `other` is a second process, which serves the room while the
 * client's process is down.
 */
interface Deployment {
  readonly name: string;
  readonly shared: boolean;
  start(env: Record<string, string>): Promise<Running>;
}

/** Whether a process is connected to its Redis, as its /healthz says. */
async function brokerConnected(p: ServerProcess): Promise<boolean> {
  const health = (await (await fetch(`http://127.0.0.1:${p.port}/healthz`)).json()) as { broker: { connected: boolean } };
  return health.broker.connected;
}

const DEPLOYMENTS: Deployment[] = [
  {
    name: 'one process',
    shared: false,
    async start(env) {
      const p = await spawnServer(env);
      const url = `${p.base}/ws`;
      return {
        url,
        other: url,
        kill: () => p.kill(),
        start: () => p.start(),
        restart: async () => {
          await p.kill();
          await p.start();
        },
        streamsSurviveRestart: false,
      };
    },
  },
  {
    // A real redis-server and two roomwire processes on it; the client under test is on
    // the first, the other members on the second.
    name: 'two processes on Redis',
    shared: true,
    async start(env) {
      const redis = await RedisServer.start();
      redises.push(redis);
      const withRedis = { ...env, WEBSOCKET_REDIS_URL: redis.url };
      const one = await spawnServer(withRedis);
      const two = await spawnServer(withRedis);
      return {
        url: `${one.base}/ws`,
        other: `${two.base}/ws`,
        kill: () => one.kill(),
        start: () => one.start(),
        restart: async () => {
          await one.kill();
          await one.start();
        },
        streamsSurviveRestart: true,
        emptyRedis: async () => {
          const running = [one, two].filter((p) => p.running);
          await redis.kill();
          await waitFor('the processes notice that Redis is gone', async () => !(await Promise.all(running.map(brokerConnected))).some(Boolean), 10_000);
          await redis.restart(); // same port, empty
          await waitFor('the processes are connected to Redis again', async () => (await Promise.all(running.map(brokerConnected))).every(Boolean), 15_000);
        },
      };
    },
  },
];

const HISTORY = { WEBSOCKET_HISTORY_SIZE: '100' };

/**
 * `WebSocket` from ws, recording every frame the client sends; `cut()` ends the client's
 * latest connection at once (no close frame: the network went away).
 */
function wire() {
  const sent: Record<string, unknown>[] = [];
  const sockets: WebSocket[] = [];
  class Recording extends WebSocket {
    constructor(address: string, protocols?: string | string[], options?: WebSocket.ClientOptions) {
      super(address, protocols, options);
      sockets.push(this);
    }
    override send(data: unknown, ...rest: unknown[]): void {
      sent.push(JSON.parse(String(data)) as Record<string, unknown>);
      (WebSocket.prototype.send as (...args: unknown[]) => void).call(this, data, ...rest);
    }
  }
  return {
    WebSocket: Recording as never,
    sent,
    joins: () => sent.filter((f) => f.type === 'join'),
    cut: () => sockets.at(-1)!.terminate(),
  };
}

/** A `getToken` (anonymous) that can hold the client's next connection until released. */
function gate() {
  let held: Promise<void> | undefined;
  let open = (): void => {};
  return {
    getToken: () => held?.then(() => undefined),
    hold: () => void (held = new Promise<void>((r) => (open = r))),
    release: () => {
      held = undefined;
      open();
    },
  };
}

/** What a client sees of `room`, in order: `content@offset`, `recovered:missed@offset`, `gap:reason`. */
function watch(c: RoomwireClient, room: string) {
  const log: string[] = [];
  const recovered: RecoveredEvent[] = [];
  const gaps: GapEvent[] = [];
  const r = c.room(room);
  r.on('message', (m) => log.push(`${m.content}@${m.offset}`));
  r.on('recovered', (e) => (recovered.push(e), log.push(`recovered:${e.missed}@${e.offset}`)));
  r.on('gap', (e) => (gaps.push(e), log.push(`gap:${e.reason}`)));
  return { log, recovered, gaps };
}

async function sendAll(c: RoomwireClient, room: string, contents: string[]): Promise<void> {
  for (const content of contents) await c.send(room, content);
}

/**
 * Two clients in room `r`: `a` on `d.url` (its frames recorded, its reconnections held
 * while the gate is), `b` on `d.other`, with what each sees of the room.
 */
async function twoInRoom(d: { url: string; other: string }) {
  const w = wire();
  const g = gate();
  const a = client({ url: d.url, WebSocket: w.WebSocket, getToken: g.getToken });
  const b = client({ url: d.other });
  const seen = watch(a, 'r');
  const bSeen = watch(b, 'r');
  await a.join('r');
  await b.join('r');
  return { w, g, a, b, seen, bSeen };
}

/** Cut `a`'s connection (no close frame) and hold its reconnection until `g.release()`. */
async function drop({ w, g, a }: { w: ReturnType<typeof wire>; g: ReturnType<typeof gate>; a: RoomwireClient }): Promise<void> {
  g.hold();
  w.cut();
  await waitFor('a is away', () => a.state !== 'connected', 3000);
}

describe.each(DEPLOYMENTS)('roomwire/client: recovery ($name)', (deployment) => {
  it('after a dropped connection, joins again with since and gets exactly the messages it missed, in order, then recovered, then live ones', async () => {
    const d = await deployment.start(HISTORY);
    const two = await twoInRoom(d);
    const { w, g, a, b, seen, bSeen } = two;
    await sendAll(b, 'r', ['m1', 'm2']);
    await waitFor('a has m2', () => seen.log.length === 2, 3000);
    const before = a.room('r').position as RoomPosition;
    expect(before).toEqual({ offset: 2, epoch: expect.any(String) });

    await drop(two);
    await sendAll(b, 'r', ['m3', 'm4', 'm5', 'm6', 'm7']);
    g.release();
    await waitFor('a recovered', () => seen.recovered.length === 1, 10_000);
    await sendAll(b, 'r', ['m8', 'm9']);
    await waitFor('a has m9', () => seen.log.includes('m9@9'), 3000);
    await sleep(100);

    expect(seen.log).toEqual(['m1@1', 'm2@2', 'm3@3', 'm4@4', 'm5@5', 'm6@6', 'm7@7', 'recovered:5@7', 'm8@8', 'm9@9']);
    expect(seen.recovered).toEqual([{ room: 'r', missed: 5, offset: 7, epoch: before.epoch }]);
    expect(seen.gaps).toEqual([]);
    // The first join asked for nothing; the one after the drop, for what came after m2.
    expect(w.joins()).toEqual([
      { type: 'join', room: 'r', id: expect.any(Number) },
      { type: 'join', room: 'r', id: expect.any(Number), since: { offset: 2, epoch: before.epoch } },
    ]);
    expect(a.room('r').position).toEqual({ offset: 9, epoch: before.epoch });
    // The member that stayed saw every message once, and no event.
    expect(bSeen.log).toEqual(['m1@1', 'm2@2', 'm3@3', 'm4@4', 'm5@5', 'm6@6', 'm7@7', 'm8@8', 'm9@9']);
  }, 30_000);

  it('after the server restarts, tells what it can: recovered when the stream outlives the process, a gap not_recovered when it died with it (a new epoch)', async () => {
    const d = await deployment.start(HISTORY);
    const { a, b, seen } = await twoInRoom(d);
    await sendAll(b, 'r', ['m1', 'm2']);
    await waitFor('a has m2', () => seen.log.length === 2, 3000);
    const before = a.room('r').position as RoomPosition;

    await d.restart();
    await waitFor('a joined again', () => seen.gaps.length + seen.recovered.length === 1, 15_000);
    if (d.streamsSurviveRestart) {
      expect(seen.recovered).toEqual([{ room: 'r', missed: 0, offset: 2, epoch: before.epoch }]);
      expect(seen.gaps).toEqual([]);
    } else {
      expect(seen.gaps).toEqual([{ room: 'r', reason: 'not_recovered', since: before, offset: 0, epoch: expect.any(String) }]);
      expect(seen.gaps[0]!.epoch).not.toBe(before.epoch);
      expect(a.room('r').position).toEqual({ offset: 0, epoch: seen.gaps[0]!.epoch });
    }
    // Live again, from the next offset, with no other event.
    await b.join('r');
    await b.send('r', 'm3');
    const next = d.streamsSurviveRestart ? 3 : 1;
    await waitFor('a has m3', () => seen.log.includes(`m3@${next}`), 3000);
    await sleep(100);
    expect(seen.log).toEqual(['m1@1', 'm2@2', d.streamsSurviveRestart ? 'recovered:0@2' : 'gap:not_recovered', `m3@${next}`]);
  }, 30_000);

  it('with history off: no since is sent, no event is emitted, no position is kept', async () => {
    const d = await deployment.start({});
    const two = await twoInRoom(d);
    const { w, g, a, b, seen } = two;
    await b.send('r', 'm1');
    await waitFor('a has m1', () => seen.log.length === 1, 3000);
    expect(a.room('r').position).toBeUndefined();
    await drop(two);
    await b.send('r', 'missed');
    g.release();
    await connected(a);
    await waitFor('a joined again', async () => (await b.users('r')).length === 2, 5000);
    await b.send('r', 'm2');
    await waitFor('a has m2', () => seen.log.length === 2, 3000);
    await sleep(100);
    // Without history a missed message stays missed, silently, as before.
    expect(seen.log).toEqual(['m1@undefined', 'm2@undefined']);
    expect(w.joins()).toEqual([
      { type: 'join', room: 'r', id: expect.any(Number) },
      { type: 'join', room: 'r', id: expect.any(Number) },
    ]);
    expect(a.room('r').position).toBeUndefined();
  }, 30_000);

  it('sees a new epoch live (the TTL passed in a quiet room): gap epoch, then learns the new epoch and recovers in it', async () => {
    const d = await deployment.start({ ...HISTORY, WEBSOCKET_HISTORY_TTL: '1s' });
    const two = await twoInRoom(d);
    const { w, g, a, b, seen } = two;
    await sendAll(b, 'r', ['m1', 'm2']);
    await waitFor('a has m2', () => seen.log.length === 2, 3000);
    const first = a.room('r').position as RoomPosition;

    await sleep(1300); // past the TTL: the stream is dropped; the next message starts a new one
    await b.send('r', 'm3');
    await waitFor('a has m3', () => seen.log.length === 4, 3000);
    expect(seen.log).toEqual(['m1@1', 'm2@2', 'gap:epoch', 'm3@1']);
    expect(seen.gaps).toEqual([{ room: 'r', reason: 'epoch', since: first, offset: 1, epoch: undefined }]);
    // The client asks the server which epoch began (a join of the room it is in: no replay).
    await waitFor('new epoch known', () => a.room('r').position !== undefined, 3000);
    const second = a.room('r').position as RoomPosition;
    expect(second).toEqual({ offset: 1, epoch: expect.any(String) });
    expect(second.epoch).not.toBe(first.epoch);

    // And recovers in the new epoch after a drop.
    await drop(two);
    await b.send('r', 'm4');
    g.release();
    await waitFor('a recovered', () => seen.recovered.length === 1, 10_000);
    expect(seen.log).toEqual(['m1@1', 'm2@2', 'gap:epoch', 'm3@1', 'm4@2', 'recovered:1@2']);
    expect(w.joins().at(-1)).toEqual({ type: 'join', room: 'r', id: expect.any(Number), since: { offset: 1, epoch: second.epoch } });
  }, 30_000);

  it('joins with a position the app stored (a page reload): recovers from it, or says gap when it cannot', async () => {
    const d = await deployment.start(HISTORY);
    const { a, b, seen: first } = await twoInRoom(d);
    await sendAll(b, 'r', ['m1', 'm2', 'm3']);
    await waitFor('a has m3', () => first.log.length === 3, 3000);
    const stored = a.room('r').position as RoomPosition;
    expect(stored).toEqual({ offset: 3, epoch: expect.any(String) });
    a.close();
    await sendAll(b, 'r', ['m4', 'm5', 'm6']);

    // A new client (the page loaded again) starts from the stored position.
    const w = wire();
    const again = client({ url: d.url, WebSocket: w.WebSocket });
    const seen = watch(again, 'r');
    await again.join('r', { since: stored });
    // Every event came before join() resolved.
    expect(seen.log).toEqual(['m4@4', 'm5@5', 'm6@6', 'recovered:3@6']);
    expect(w.joins()).toEqual([{ type: 'join', room: 'r', id: expect.any(Number), since: stored }]);
    expect(again.room('r').position).toEqual({ offset: 6, epoch: stored.epoch });

    // A position of another epoch (or older than the server keeps) cannot be recovered.
    const stale = client({ url: d.url });
    const staleSeen = watch(stale, 'r');
    await stale.join('r', { since: { offset: 3, epoch: 'an-epoch-long-gone' } });
    expect(staleSeen.log).toEqual(['gap:not_recovered']);
    expect(staleSeen.gaps).toEqual([{ room: 'r', reason: 'not_recovered', since: { offset: 3, epoch: 'an-epoch-long-gone' }, offset: 6, epoch: stored.epoch }]);

    // A first join without since emits nothing; a bad since is refused before anything is sent.
    const fresh = client({ url: d.url });
    const freshSeen = watch(fresh, 'r');
    await fresh.join('r');
    expect(freshSeen.log).toEqual([]);
    expect(fresh.room('r').position).toEqual({ offset: 6, epoch: stored.epoch });
    expect((await rejects(fresh.join('q', { since: { offset: -1, epoch: 'x' } }))).code).toBe('ERR_INVALID_ARGUMENT');
    // Leaving forgets the position.
    await fresh.leave('r');
    expect(fresh.room('r').position).toBeUndefined();
  }, 30_000);
});

describe.each(DEPLOYMENTS.filter((d) => d.shared))('roomwire/client: recovery across a killed process ($name)', (deployment) => {
  it('its process killed (SIGKILL) and started again on the same port while another process carried on: reconnects by itself and gets exactly the messages it missed, in order, then recovered, then live ones', async () => {
    const d = await deployment.start(HISTORY);
    const { w, a, b, seen, bSeen } = await twoInRoom(d);
    const aStates = states(a);
    await sendAll(b, 'r', ['m1', 'm2']);
    await waitFor('a has m2', () => seen.log.length === 2, 3000);
    const before = a.room('r').position as RoomPosition;
    expect(before).toEqual({ offset: 2, epoch: expect.any(String) });

    await d.kill();
    await waitFor('a notices', () => a.state !== 'connected', 3000);
    // Sent through the other process while a's process is down: kept in the Redis stream.
    const missed = Array.from({ length: 8 }, (_, i) => `m${i + 3}`);
    await sendAll(b, 'r', missed);
    expect(a.state).not.toBe('connected');
    await d.start();
    await waitFor('a recovered', () => seen.recovered.length + seen.gaps.length === 1, 15_000);
    await sendAll(b, 'r', ['m11', 'm12']);
    await waitFor('a has m12', () => seen.log.includes('m12@12'), 3000);
    await sleep(100);

    const all = ['m1', 'm2', ...missed, 'm11', 'm12'];
    expect(seen.log).toEqual([...all.slice(0, 10).map((m, i) => `${m}@${i + 1}`), 'recovered:8@10', 'm11@11', 'm12@12']);
    expect(seen.recovered).toEqual([{ room: 'r', missed: 8, offset: 10, epoch: before.epoch }]);
    expect(seen.gaps).toEqual([]);
    expect(a.room('r').position).toEqual({ offset: 12, epoch: before.epoch });
    // By itself: dropped (1006, no close frame), reconnected to the same URL, joined again with since.
    expect(aStates.indexOf('disconnected:1006')).toBeGreaterThan(-1);
    expect(aStates.at(-1)).toBe('connected');
    expect(w.joins()).toEqual([
      { type: 'join', room: 'r', id: expect.any(Number) },
      { type: 'join', room: 'r', id: expect.any(Number), since: { offset: 2, epoch: before.epoch } },
    ]);
    // The member on the other process saw every message once, in order, and no event.
    expect(bSeen.log).toEqual(all.map((m, i) => `${m}@${i + 1}`));
  }, 45_000);

  it('Redis restarted empty while its process was down: the stream is lost, so a gap not_recovered in the new epoch, then live ones', async () => {
    const d = await deployment.start(HISTORY);
    const { w, a, b, seen, bSeen } = await twoInRoom(d);
    await sendAll(b, 'r', ['m1', 'm2']);
    await waitFor('a has m2', () => seen.log.length === 2, 3000);
    const before = a.room('r').position as RoomPosition;

    await d.kill();
    await waitFor('a notices', () => a.state !== 'connected', 3000);
    await d.emptyRedis!();
    // The room's stream begins again (a new epoch, offsets from 1); a cannot get m3 back.
    await b.send('r', 'm3');
    await waitFor('b has m3', () => bSeen.log.includes('m3@1'), 3000);
    await d.start();
    await waitFor('a joined again', () => seen.recovered.length + seen.gaps.length === 1, 15_000);
    expect(seen.recovered).toEqual([]);
    expect(seen.gaps).toEqual([{ room: 'r', reason: 'not_recovered', since: before, offset: 1, epoch: expect.any(String) }]);
    const epoch = seen.gaps[0]!.epoch!;
    expect(epoch).not.toBe(before.epoch);
    expect(a.room('r').position).toEqual({ offset: 1, epoch });
    expect(w.joins().at(-1)).toEqual({ type: 'join', room: 'r', id: expect.any(Number), since: before });

    await b.send('r', 'm4');
    await waitFor('a has m4', () => seen.log.includes('m4@2'), 3000);
    await sleep(100);
    expect(seen.log).toEqual(['m1@1', 'm2@2', 'gap:not_recovered', 'm4@2']);
    expect(a.room('r').position).toEqual({ offset: 2, epoch });
    // b stayed connected and saw the numbering begin again, live.
    expect(bSeen.log).toEqual(['m1@1', 'm2@2', 'gap:epoch', 'm3@1', 'm4@2']);
    expect(b.room('r').position).toEqual({ offset: 2, epoch });
  }, 60_000);
});

describe('roomwire/client: gaps a correct hub never makes, against a scripted server', () => {
  it('reports an offset beyond the next one as skipped, one not above the last as a new epoch, and asks for the new epoch', async () => {
    const port = await freePort();
    const wss = new WebSocketServer({ port, host: '127.0.0.1' });
    const received: Record<string, unknown>[] = [];
    let peer: WebSocket | undefined;
    const message = (offset: number) => JSON.stringify({ type: 'message', room: 'r', content: `o${offset}`, user_id: 'u', username: 'u', timestamp: 1, offset });
    wss.on('connection', (ws) => {
      peer = ws;
      ws.on('message', (data) => {
        const f = JSON.parse(String(data)) as { type: string; id: number };
        received.push(f);
        if (f.type !== 'join') return;
        ws.send(JSON.stringify({ type: 'user_list', room: 'r', data: ['u'], timestamp: 1 }));
        // The first join starts epoch e1 at 0; the join the client sends after seeing offsets
        // begin again is answered with the new epoch.
        ws.send(JSON.stringify({ type: 'ack', id: f.id, room: 'r', offset: received.length === 1 ? 0 : 1, epoch: received.length === 1 ? 'e1' : 'e2', timestamp: 1 }));
      });
    });
    try {
      const c = client({ url: `ws://127.0.0.1:${port}/ws` });
      const seen = watch(c, 'r');
      await c.join('r');
      expect(c.room('r').position).toEqual({ offset: 0, epoch: 'e1' });
      for (const o of [1, 2, 4]) peer!.send(message(o));
      await waitFor('o4', () => seen.log.includes('o4@4'), 2000);
      expect(seen.gaps).toEqual([{ room: 'r', reason: 'skipped', since: { offset: 2, epoch: 'e1' }, offset: 4, epoch: 'e1' }]);
      peer!.send(message(1));
      await waitFor('the new epoch asked for and known', () => c.room('r').position?.epoch === 'e2', 2000);
      expect(seen.log).toEqual(['o1@1', 'o2@2', 'gap:skipped', 'o4@4', 'gap:epoch', 'o1@1']);
      expect(seen.gaps[1]).toEqual({ room: 'r', reason: 'epoch', since: { offset: 4, epoch: 'e1' }, offset: 1, epoch: undefined });
      expect(received).toEqual([
        { type: 'join', room: 'r', id: expect.any(Number) },
        { type: 'join', room: 'r', id: expect.any(Number) },
      ]);
      expect(c.room('r').position).toEqual({ offset: 1, epoch: 'e2' });
      c.close();
    } finally {
      await new Promise((r) => wss.close(r));
    }
  });
});
