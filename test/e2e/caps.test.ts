/**
 * Connection caps per user and per address (docs/protocol.md section 10) in one process and
 * across three processes on a real redis-server: atomic under racing upgrades, freed on
 * close, freed within 30 s of a process's death, and per process while Redis is away.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { Peer, SECRET, sign, upgrade } from '../helpers/client';
import { ServerProcess, waitFor } from '../helpers/process';
import { RedisServer } from '../helpers/redis';

const quiet = () => {};
let redis: RedisServer;
const running: RunningServer[] = [];
const processes: ServerProcess[] = [];
const peers: Peer[] = [];

beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis?.kill();
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await Promise.all(running.splice(0).map((s) => s.close()));
  await Promise.all(processes.splice(0).map((p) => p.kill()));
});

let prefixes = 0;

/** `n` hub processes in this one (as the bin does), on Redis when `shared`, each with `env`. */
async function hubs(n: number, env: Record<string, string>, shared = true): Promise<{ servers: RunningServer[]; prefix: string }> {
  const prefix = `caps${++prefixes}`;
  const servers: RunningServer[] = [];
  for (let i = 0; i < n; i++) {
    const s = await startServer({
      env: {
        HOST: '127.0.0.1',
        PORT: '0',
        WEBSOCKET_JWT_SECRET: SECRET,
        WEBSOCKET_CONNECT_RATE: '100000/s',
        ...(shared ? { WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_PREFIX: prefix } : {}),
        ...env,
      },
      log: quiet,
    });
    servers.push(s);
    running.push(s);
  }
  for (const s of servers) await s.hub.ready();
  return { servers, prefix };
}

/** Open a connection; resolves with the Peer, or the refusal's status. */
async function connect(port: number, token?: string): Promise<Peer | number> {
  try {
    const p = await Peer.open(`ws://127.0.0.1:${port}/ws${token === undefined ? '' : `?token=${token}`}`);
    peers.push(p);
    return p;
  } catch (err) {
    return (err as { status?: number }).status ?? -1;
  }
}

const status = (x: Peer | number) => (typeof x === 'number' ? x : 101);

describe('connection caps', () => {
  it('one process without Redis: per user and per address, 429 with Retry-After', async () => {
    const { servers } = await hubs(1, { WEBSOCKET_MAX_CONNECTIONS_PER_USER: '2', WEBSOCKET_MAX_CONNECTIONS_PER_ADDRESS: '3' }, false);
    const port = servers[0]!.port;
    const ann = await sign({ sub: 'ann' });
    expect([await connect(port, ann), await connect(port, ann)].map(status)).toEqual([101, 101]);
    const refused = await upgrade(port, `/ws?token=${ann}`);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.body).toContain('too many connections for this user');
    expect(status(await connect(port))).toBe(101);
    const overAddress = await upgrade(port, '/ws');
    expect([overAddress.status, overAddress.headers['retry-after'], overAddress.body]).toEqual([429, '5', expect.stringContaining('too many connections from this address')]);
  });

  it('across three processes on Redis: per user and per address caps hold hub-wide and free up when a connection closes', async () => {
    const { servers } = await hubs(3, { WEBSOCKET_MAX_CONNECTIONS_PER_USER: '3', WEBSOCKET_MAX_CONNECTIONS_PER_ADDRESS: '5' });
    const ann = await sign({ sub: 'ann' });
    const opened = [];
    for (const s of servers) opened.push(await connect(s.port, ann));
    expect(opened.map(status)).toEqual([101, 101, 101]);
    expect(await Promise.all(servers.map(async (s) => (await upgrade(s.port, `/ws?token=${ann}`)).status))).toEqual([429, 429, 429]);
    expect(servers.map((s) => s.hub.stats().rejected.user_limit)).toEqual([1, 1, 1]);
    (opened[1] as Peer).close();
    await (opened[1] as Peer).closed;
    await waitFor('the cap frees up', async () => status(await connect(servers[2]!.port, ann)) === 101, 3000);
    // Per address: 3 of ann's plus 2 more make 5, wherever they are.
    expect([await connect(servers[0]!.port), await connect(servers[1]!.port)].map(status)).toEqual([101, 101]);
    expect((await upgrade(servers[2]!.port, '/ws')).status).toBe(429);
    expect(servers[2]!.hub.stats().rejected.address_limit).toBe(1);
  });

  it('200 racing upgrades of one user over three OS processes never leave more than the cap open', async () => {
    const prefix = `caps${++prefixes}`;
    const env = { WEBSOCKET_JWT_SECRET: SECRET, WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_PREFIX: prefix, WEBSOCKET_MAX_CONNECTIONS_PER_USER: '7', WEBSOCKET_CONNECT_RATE: '100000/s', MAX_UNFINISHED_REQUESTS: '1000' };
    const procs = await Promise.all([0, 1, 2].map(() => ServerProcess.start(env)));
    processes.push(...procs);
    // Every process in step with the others (each knows the two others).
    await waitFor('three processes in one hub', async () => {
      const health = await Promise.all(procs.map(async (p) => (await (await fetch(`http://127.0.0.1:${p.port}/healthz`)).json()) as { broker: { processes: number } }));
      return health.every((h) => h.broker.processes === 3);
    }, 10_000);
    const ann = await sign({ sub: 'ann' });
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => connect(procs[i % 3]!.port, ann)));
    const tally: Record<string, number> = {};
    for (const r of results) tally[String(status(r))] = (tally[String(status(r))] ?? 0) + 1;
    expect(tally).toEqual({ 101: 7, 429: 193 });
    const open = await Promise.all(procs.map(async (p) => ((await (await fetch(`http://127.0.0.1:${p.port}/healthz`)).json()) as { connections: number }).connections));
    expect(open.reduce((a, b) => a + b, 0)).toBe(7);
  }, 30_000);

  it('frees the share of a SIGKILLed process within 30 s', async () => {
    const { servers, prefix } = await hubs(1, { WEBSOCKET_MAX_CONNECTIONS_PER_USER: '2' });
    const doomed = await ServerProcess.start({ WEBSOCKET_JWT_SECRET: SECRET, WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_PREFIX: prefix, WEBSOCKET_MAX_CONNECTIONS_PER_USER: '2' });
    processes.push(doomed);
    const ann = await sign({ sub: 'ann' });
    await waitFor('the process counts', async () => status(await connect(doomed.port, ann)) === 101, 5000);
    expect(status(await connect(doomed.port, ann))).toBe(101);
    expect((await upgrade(servers[0]!.port, `/ws?token=${ann}`)).status).toBe(429);
    await doomed.kill();
    const freedIn = await waitFor('the dead process no longer counts', async () => (await upgrade(servers[0]!.port, `/ws?token=${ann}`)).status === 101, 30_000);
    expect(freedIn).toBeLessThan(30_000);
  }, 40_000);

  it('while Redis is unreachable, each process enforces the caps on its own connections', async () => {
    const { servers } = await hubs(2, { WEBSOCKET_MAX_CONNECTIONS_PER_USER: '2' });
    const ann = await sign({ sub: 'ann' });
    await redis.kill();
    try {
      await waitFor('the hubs notice', () => servers.every((s) => !s.hub.stats().broker.connected), 10_000);
      const first = [await connect(servers[0]!.port, ann), await connect(servers[0]!.port, ann), await connect(servers[0]!.port, ann)].map(status);
      const second = [await connect(servers[1]!.port, ann), await connect(servers[1]!.port, ann), await connect(servers[1]!.port, ann)].map(status);
      expect(first).toEqual([101, 101, 429]);
      expect(second).toEqual([101, 101, 429]);
    } finally {
      await redis.restart();
    }
    // Back: the counts are written to Redis again, and the cap holds hub-wide once more.
    await waitFor('the hubs are back', () => servers.every((s) => s.hub.stats().broker.connected), 20_000);
    for (const p of peers.splice(0)) {
      p.close();
      await p.closed;
    }
    await waitFor('the counts are released', async () => status(await connect(servers[0]!.port, ann)) === 101, 5000);
    expect(status(await connect(servers[1]!.port, ann))).toBe(101);
    expect((await upgrade(servers[1]!.port, `/ws?token=${ann}`)).status).toBe(429);
  }, 60_000);
});
