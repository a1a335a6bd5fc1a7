/**
 * Contract section 7: several processes sharing one real redis-server form one hub.
 * Hubs run in this process (startServer, as the bin does) and, where a process must die
 * without a goodbye, as a separate `roomwire` process killed with SIGKILL.
 */
import { spawn } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { createRedisBroker, type RedisBrokerOptions } from '../../src/redis/broker';
import type { RoomwireError } from '../../src/core/errors';
import { createHub } from '../../src/core/hub';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { waitFor } from '../helpers/process';
import { Peer, SECRET, sign, sleep, type Frame } from '../helpers/client';
import { freePort, redisCommand, RedisServer } from '../helpers/redis';
import { hubSuite } from './suite';

const quiet = () => {};
let redis: RedisServer;

beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis.kill();
});

// Every single-process behaviour of the contract holds with the Redis broker in place.
for (const client of ['redis', 'ioredis']) {
  hubSuite(`standalone server with WEBSOCKET_REDIS_URL on ${client}`, async (env) => {
    const running = await startServer({ env: { ...env, HOST: '127.0.0.1', PORT: '0', WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_CLIENT: client }, log: quiet });
    expect(running.hub.stats().broker).toMatchObject({ kind: 'redis', connected: true });
    return { port: running.port, hub: running.hub, close: () => running.close() };
  });
}

let roomCounter = 0;
/** A room name no earlier test used, so no test sees another's traffic. */
const freshRoom = () => `r${++roomCounter}-${Date.now().toString(36)}`;


/** Frames until (and including) the first that matches; fails if it does not come in `timeout`. */
const until = (peer: Peer, match: (f: Frame) => boolean, timeout = 3000): Promise<Frame[]> => peer.until(match, timeout);

/**
 * A roomwire server as its own process (`node <script> ...args`, with `env`): resolves
 * with the port of its listening line. The caller kills it.
 */
async function runProcess(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = /listening on http:\/\/127\.0\.0\.1:(\d+)/;
  await waitFor(`${args.join(' ')} listens`, () => listening.test(stdout), 10_000).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return { child, exited, port: Number(listening.exec(stdout)![1]), stdout: () => stdout };
}

/** What a test asks of a broker: a URL for the library under test, and timings. */
type BrokerSpec = Omit<RedisBrokerOptions, 'client' | 'url'> & { readonly url: string };

const LIBRARIES = ['node-redis', 'ioredis'] as const;
type Library = (typeof LIBRARIES)[number];

/** A client of `library` for `url` (not connected: the broker duplicates it). */
function clientOf(library: Library, url: string): object {
  return library === 'ioredis' ? new Redis(url, { lazyConnect: true }) : createClient({ url });
}

function brokerOf(library: Library, spec: BrokerSpec) {
  const { url, ...timings } = spec;
  return createRedisBroker({ ...timings, client: clientOf(library, url) });
}

for (const library of LIBRARIES) describe(`scale-out over Redis with ${library} (contract section 7)`, () => {
  const servers: RunningServer[] = [];
  const peers: Peer[] = [];
  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  async function serve(env: Record<string, string> = {}, spec?: BrokerSpec): Promise<RunningServer> {
    // Without a spec the standalone server makes the library's client from the environment.
    const broker = spec;
    const s = await startServer({
      env: {
        HOST: '127.0.0.1',
        PORT: '0',
        ...(broker === undefined ? { WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_CLIENT: library === 'ioredis' ? 'ioredis' : 'redis' } : {}),
        WEBSOCKET_MESSAGE_RATE: '10000/s,10000',
        WEBSOCKET_JWT_SECRET: SECRET,
        ...env,
      },
      log: quiet,
      hub: broker === undefined ? undefined : { broker: brokerOf(library, broker) },
    });
    servers.push(s);
    return s;
  }

  async function connect(s: RunningServer, path: string, token?: string): Promise<Peer> {
    const p = await Peer.open(`ws://127.0.0.1:${s.port}${path}${token === undefined ? '' : `?token=${token}`}`);
    peers.push(p);
    return p;
  }

  /** Connect to `/ws/{room}` and take the join notice and user_list; returns the peer and its list. */
  async function enter(s: RunningServer, room: string, token?: string) {
    const p = await connect(s, `/ws/${room}`, token);
    const [join, list] = await p.take(2);
    expect(join).toMatchObject({ type: 'join', room });
    expect(list).toMatchObject({ type: 'user_list', room });
    return { peer: p, name: join!.username as string, id: join!.user_id as string, users: list!.data as string[] };
  }

  /** Two processes, a member of a fresh room on each (a has taken b's join notice). */
  async function pair(broker?: BrokerSpec) {
    const [s1, s2] = [await serve({}, broker), await serve({}, broker)];
    const room = freshRoom();
    const a = await enter(s1, room);
    const b = await enter(s2, room);
    await a.peer.next(); // b's join
    return { s1, s2, room, a, b };
  }

  it('delivers join, message and leave across three processes exactly once, in each sender order', async () => {
    const [s1, s2, s3] = [await serve(), await serve(), await serve()];
    const room = freshRoom();
    const a = await enter(s1, room);
    expect(a.users).toEqual([a.name]);
    const b = await enter(s2, room);
    expect(b.users.sort()).toEqual([a.name, b.name].sort());
    expect(await a.peer.next()).toMatchObject({ type: 'join', room, user_id: b.id, username: b.name });
    const c = await enter(s3, room);
    expect(c.users.sort()).toEqual([a.name, b.name, c.name].sort());
    for (const p of [a, b]) expect(await p.peer.next()).toMatchObject({ type: 'join', room, user_id: c.id, username: c.name });

    const N = 150;
    for (let i = 0; i < N; i++) for (const p of [a, b, c]) p.peer.send({ type: 'message', room, content: `${p.name}#${i}` });
    for (const receiver of [a, b, c]) {
      const frames = await receiver.peer.take(3 * N, 5000);
      for (const sender of [a, b, c]) {
        const got = frames.filter((f) => f.username === sender.name).map((f) => f.content);
        expect(got).toEqual(Array.from({ length: N }, (_, i) => `${sender.name}#${i}`));
        expect(frames.filter((f) => f.username === sender.name).every((f) => f.type === 'message' && f.user_id === sender.id && f.room === room)).toBe(true);
      }
    }

    b.peer.send({ type: 'leave', room });
    expect(await b.peer.next()).toMatchObject({ type: 'leave', room, user_id: b.id });
    for (const p of [a, c]) expect(await p.peer.next()).toMatchObject({ type: 'leave', room, user_id: b.id, username: b.name });
    c.peer.close();
    expect(await a.peer.next()).toMatchObject({ type: 'leave', room, user_id: c.id, username: c.name });
    a.peer.send({ type: 'user_list', room });
    expect(await a.peer.next()).toMatchObject({ type: 'user_list', room, data: [a.name] });
    for (const p of [a, b]) await p.peer.quiet(300); // nothing twice
  });

  it('lists every process in user_list, each user once however many processes it is on', async () => {
    const [s1, s2] = [await serve(), await serve()];
    const room = freshRoom();
    const alice = await sign({ sub: 'u-alice', name: 'alice' });
    await enter(s1, room, alice);
    await enter(s2, room, alice);
    const bob = await enter(s2, room, await sign({ sub: 'u-bob', name: 'bob' }));
    expect(bob.users.sort()).toEqual(['alice', 'bob']);
    const carol = await enter(s1, room, await sign({ sub: 'u-carol', name: 'carol' }));
    expect(carol.users.sort()).toEqual(['alice', 'bob', 'carol']);
    expect(s1.hub.stats().broker).toEqual({ kind: 'redis', connected: true, processes: 2 });
    const metrics = await (await fetch(`http://127.0.0.1:${s1.port}/metrics`)).text();
    expect(metrics).toMatch(/^roomwire_broker_connected 1$/m);
    expect(metrics).toMatch(/^roomwire_broker_processes 2$/m);
  });

  it('sends hub.publish of one process to the members on every process, once', async () => {
    const { s2, room, a, b } = await pair();
    s2.hub.publish(room, 'maintenance at noon', { data: { level: 'info' } });
    for (const p of [a, b]) {
      expect(await p.peer.next()).toEqual({
        type: 'message', room, content: 'maintenance at noon', data: { level: 'info' }, user_id: 'server', username: 'server', timestamp: expect.any(Number),
      });
      await p.peer.quiet(200);
    }
  });

  it('keeps serving each process alone while Redis is away and recovers within 15 s of an empty restart', async () => {
    const { s1, s2, room, a, b } = await pair();

    await redis.kill();
    await waitFor('both processes notice', () => !s1.hub.stats().broker.connected && !s2.hub.stats().broker.connected, 10_000);
    expect(s1.hub.stats().broker).toEqual({ kind: 'redis', connected: false, processes: 1 });
    const health = (await (await fetch(`http://127.0.0.1:${s1.port}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', broker: { kind: 'redis', connected: false, processes: 1 } });
    const metrics = await (await fetch(`http://127.0.0.1:${s1.port}/metrics`)).text();
    expect(metrics).toMatch(/^roomwire_broker_connected 0$/m);
    // Each process serves its own members: local delivery, local user_list, new members.
    a.peer.send({ type: 'message', room, content: 'during the outage' });
    expect(await a.peer.next()).toMatchObject({ type: 'message', content: 'during the outage', user_id: a.id });
    const a2 = await enter(s1, room); // it hears only of s1's members for now
    expect(a2.users.sort()).toEqual([a.name, a2.name].sort());
    expect(await a.peer.next()).toMatchObject({ type: 'join', user_id: a2.id });
    a.peer.send({ type: 'user_list', room });
    expect((await a.peer.next()).data).toEqual([a.name, a2.name]);
    await b.peer.quiet(200);

    await redis.restart(); // same port, empty
    const restarted = Date.now();
    // Recovery: b hears of the member that joined meanwhile, and traffic flows again.
    expect(await b.peer.next(15_000)).toMatchObject({ type: 'join', room, user_id: a2.id, username: a2.name });
    await waitFor('both processes reconnect', () => s1.hub.stats().broker.connected && s2.hub.stats().broker.connected, 15_000);
    a.peer.send({ type: 'message', room, content: 'after the outage' });
    expect(await b.peer.next()).toMatchObject({ type: 'message', content: 'after the outage', user_id: a.id });
    expect(Date.now() - restarted).toBeLessThan(15_000);
    b.peer.send({ type: 'user_list', room });
    expect(((await b.peer.next()).data as string[]).sort()).toEqual([a.name, a2.name, b.name].sort());
    // a2 learns of b, who was there all along; a, who knew, hears nothing twice.
    const a2Frames = await until(a2.peer, (f) => f.content === 'after the outage');
    expect(a2Frames.map((f) => `${f.type} ${String(f.user_id)}`)).toEqual([`join ${b.id}`, `message ${a.id}`]);
    expect((await until(a.peer, (f) => f.content === 'after the outage')).map((f) => f.type)).toEqual(['message']);
    for (const p of [a, a2, b]) await p.peer.quiet(200);
  }, 45_000);

  it('starts serving alone when Redis is unreachable and joins the others once it appears', async () => {
    const port = await freePort();
    const started = Date.now();
    const lone = await serve({ WEBSOCKET_REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900); // ready() gave up waiting after 3 s
    expect(lone.hub.stats().broker.connected).toBe(false);
    const room = freshRoom();
    const a = await enter(lone, room);
    expect(a.users).toEqual([a.name]);
    const late = await RedisServer.start(port);
    try {
      await waitFor('connects once Redis is up', () => lone.hub.stats().broker.connected, 5000);
      const other = await serve({ WEBSOCKET_REDIS_URL: late.url });
      const b = await enter(other, room);
      expect(b.users.sort()).toEqual([a.name, b.name].sort());
      expect(await a.peer.next()).toMatchObject({ type: 'join', user_id: b.id });
    } finally {
      await Promise.all(servers.splice(0).map((s) => s.close()));
      await late.kill();
    }
  }, 20_000);

  it('tells the other processes at once when a process shuts down, and only once', async () => {
    const { s1, s2, room, a, b } = await pair();
    expect(s1.hub.stats().broker.processes).toBe(2);
    servers.splice(servers.indexOf(s2), 1);
    await s2.close();
    expect(await a.peer.next()).toMatchObject({ type: 'leave', room, user_id: b.id });
    await a.peer.quiet(500);
    expect(s1.hub.stats().broker.processes).toBe(1);
    expect(await redisCommand(redis.port, 'HLEN {roomwire}:processes')).toBe(':1\r\n'); // s2 took itself off
  });

  it('drops the members of a process that dies without a goodbye within 30 s', async () => {
    const s1 = await serve();
    const room = freshRoom();
    const a = await enter(s1, room);
    const { child, port } = await runProcess(['dist/bin/roomwire.js'], { WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_CLIENT: library === 'ioredis' ? 'ioredis' : 'redis' });
    try {
      const x = await Peer.open(`ws://127.0.0.1:${port}/ws/${room}`);
      const [xJoin] = await x.take(2);
      expect(await a.peer.next()).toMatchObject({ type: 'join', user_id: xJoin!.user_id });
      a.peer.send({ type: 'user_list', room });
      expect((await a.peer.next()).data).toHaveLength(2);

      const killed = Date.now();
      child.kill('SIGKILL');
      expect(await a.peer.next(30_000)).toMatchObject({ type: 'leave', room, user_id: xJoin!.user_id, username: xJoin!.username });
      expect(Date.now() - killed).toBeLessThan(30_000);
      a.peer.send({ type: 'user_list', room });
      expect(await a.peer.next()).toMatchObject({ type: 'user_list', data: [a.name] });
      const late = await enter(s1, room);
      expect(late.users.sort()).toEqual([a.name, late.name].sort());
      await a.peer.next(); // late's join
      await a.peer.quiet(300);
    } finally {
      child.kill('SIGKILL');
    }
  }, 45_000);

  it('does not drop a healthy process after this one was stalled longer than the process timeout', async () => {
    const timings = { url: redis.url, beatInterval: 100, processTimeout: 500 };
    const { s1, room, a, b } = await pair(timings);
    const until = Date.now() + 1200;
    while (Date.now() < until); // both hubs live in this process: a 1.2 s stall of the event loop
    await a.peer.quiet(800); // no leave (and no join back) for b
    a.peer.send({ type: 'user_list', room });
    expect(((await a.peer.next()).data as string[]).sort()).toEqual([a.name, b.name].sort());
    expect(s1.hub.stats().broker.processes).toBe(2);
  });

  it('detects a frozen Redis by its unanswered PING, reconnects, and delivers across processes again once it thaws', async () => {
    const frozen = await RedisServer.start();
    try {
      const spec = { url: frozen.url, beatInterval: 300, processTimeout: 6000, commandTimeout: 1000 };
      const [s1, s2] = [await serve({}, spec), await serve({}, spec)];
      const errors: string[] = [];
      s1.hub.on('error', (err: RoomwireError) => errors.push(err.message));
      const room = freshRoom();
      const a = await enter(s1, room);
      const b = await enter(s2, room);
      await a.peer.next(); // b's join
      frozen.pause();
      // The library sees nothing wrong: the sockets stay open. The PING of a beat goes unanswered.
      const lost = await waitFor('s1 notices', () => !s1.hub.stats().broker.connected, 4000);
      expect(lost).toBeLessThan(1000 + 2 * 300 + 1000);
      expect(errors.some((m) => m.startsWith(`lost the connection to Redis at ${frozen.url}`))).toBe(true);
      frozen.resume();
      const back = await waitFor('s1 and s2 are back', () => s1.hub.stats().broker.connected && s2.hub.stats().broker.connected, 15_000);
      expect(back).toBeLessThan(15_000);
      b.peer.send({ type: 'message', room, content: 'after the thaw' });
      const seen = await until(a.peer, (f) => f.type === 'message', 5000);
      expect(seen.at(-1)).toMatchObject({ type: 'message', content: 'after the thaw', user_id: b.id });
    } finally {
      frozen.resume();
      await Promise.all(servers.splice(0).map((s) => s.close()));
      await frozen.kill();
    }
  });

  it('answers user_list from what it knows when Redis stops answering, without waiting for the watchdog', async () => {
    const frozen = await RedisServer.start();
    try {
      const s1 = await serve({ WEBSOCKET_REDIS_URL: frozen.url });
      const room = freshRoom();
      const a = await enter(s1, room);
      frozen.pause();
      a.peer.send({ type: 'user_list', room });
      expect(await a.peer.next(2000)).toMatchObject({ type: 'user_list', room, data: [a.name] });
      const b = await connect(s1, `/ws/${room}`);
      expect((await b.take(2, 2000)).map((f) => f.type)).toEqual(['join', 'user_list']);
    } finally {
      frozen.resume();
      await Promise.all(servers.splice(0).map((s) => s.close()));
      await frozen.kill();
    }
  });

  it('reports a Redis that refuses the control channel once, as ERR_BROKER, and keeps retrying', async () => {
    const acl = await RedisServer.start(undefined, ['--user', 'hub', 'on', '>pw', '~*', '&roomwire:room:*', '+@all']);
    const hub = createHub({ broker: brokerOf(library, { url: `redis://hub:pw@127.0.0.1:${acl.port}` }) });
    try {
      const errors: string[] = [];
      hub.on('error', (err: RoomwireError) => errors.push(`${err.code}: ${err.message}: ${String((err.cause as Error).message)}`));
      await sleep(3000); // refused, dropped, reconnected and refused again (about once a second)
      const noperm = 'NOPERM this user has no permissions to access one of the channels used as arguments';
      // Once per streak for the link (nothing else is sent before the link is up), with the address, password masked.
      expect(errors).toEqual([`ERR_BROKER: Redis at redis://hub:***@127.0.0.1:${acl.port} refused SUBSCRIBE; retrying: ${noperm}`]);
      expect(hub.stats().broker).toEqual({ kind: 'redis', connected: false, processes: 1 });
      const clients = (await redisCommand(acl.port, 'CLIENT LIST')).split('\n').filter((l) => l.includes('user=hub'));
      expect(clients.length).toBeLessThanOrEqual(2); // reconnects replace their socket, they do not pile up
    } finally {
      await hub.close();
      await acl.kill();
    }
  });

  it('removes registry entries of processes that died with nobody watching', async () => {
    const old = String(Date.now() - 60_000);
    expect(await redisCommand(redis.port, `HSET {roomwire}:processes 0123456789abcdef ${old}`)).toBe(':1\r\n');
    await serve();
    await waitFor('the stale entry is gone', async () => (await redisCommand(redis.port, 'HEXISTS {roomwire}:processes 0123456789abcdef')) === ':0\r\n', 2000);
  });

  it('runs as a process while Redis is unreachable, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const { child, exited, port: httpPort, stdout } = await runProcess(['dist/bin/roomwire.js'], { WEBSOCKET_REDIS_URL: `redis://127.0.0.1:${port}`, WEBSOCKET_REDIS_CLIENT: library === 'ioredis' ? 'ioredis' : 'redis' });
    try {
      // Which address, and why: the cause of the last failed attempt.
      const line = stdout().split('\n').find((l) => l.includes('is not reachable yet'));
      expect(JSON.parse(line!)).toMatchObject({
        level: 'warn',
        msg: `Redis at redis://127.0.0.1:${port} is not reachable yet (connect ECONNREFUSED 127.0.0.1:${port}); serving this process only until it is`,
        address: `redis://127.0.0.1:${port}`,
        cause: `connect ECONNREFUSED 127.0.0.1:${port}`,
      });
      const x = await Peer.open(`ws://127.0.0.1:${httpPort}/ws/${freshRoom()}`);
      expect((await x.take(2)).map((f) => f.type)).toEqual(['join', 'user_list']);
      child.kill('SIGTERM');
      expect(await x.closed).toEqual({ code: 1001, reason: 'server shutting down' });
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('never delivers a frame of a process before the join of its sender, after that process was given up', async () => {
    const timings = { url: redis.url, beatInterval: 100, processTimeout: 600 };
    const s1 = await serve({}, timings);
    const room = freshRoom();
    const a = await enter(s1, room);
    const { child, port } = await runProcess(['test/helpers/broker-process.mjs', redis.url, '100', '600', library === 'ioredis' ? 'ioredis' : 'redis']);
    try {
      const c = await Peer.open(`ws://127.0.0.1:${port}/ws/${room}`);
      const [cJoin] = await c.take(2);
      expect(await a.peer.next()).toMatchObject({ type: 'join', user_id: cJoin!.user_id });

      child.kill('SIGSTOP');
      expect(await a.peer.next(5000)).toMatchObject({ type: 'leave', user_id: cJoin!.user_id }); // given up
      for (let i = 0; i < 3; i++) c.send({ type: 'message', room, content: `while stopped ${i}` }); // waits in the socket
      await sleep(300);
      child.kill('SIGCONT');
      for (let i = 3; i < 6; i++) c.send({ type: 'message', room, content: `after ${i}` });
      const frames = await a.peer.take(7, 5000);
      expect(frames.map((f) => `${f.type} ${String(f.content ?? f.user_id)}`)).toEqual([
        `join ${String(cJoin!.user_id)}`,
        'message while stopped 0',
        'message while stopped 1',
        'message while stopped 2',
        'message after 3',
        'message after 4',
        'message after 5',
      ]);
      await a.peer.quiet(400);
      c.close();
      expect(await a.peer.next()).toMatchObject({ type: 'leave', user_id: cJoin!.user_id });
      await a.peer.quiet(300);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('reports a refused password once, as ERR_BROKER', async () => {
    const locked = await RedisServer.start(undefined, ['--requirepass', 'right']);
    const hub = createHub({ broker: brokerOf(library, { url: `redis://:wrong@127.0.0.1:${locked.port}`, startTimeout: 200 }) });
    try {
      const errors: string[] = [];
      hub.on('error', (err: RoomwireError) => errors.push(`${err.code}: ${err.message}: ${String((err.cause as Error).message)}`));
      await hub.ready();
      await sleep(1500);
      expect(errors).toHaveLength(1);
      // The address with its password masked, and the cause.
      expect(errors[0]).toMatch(new RegExp(`^ERR_BROKER: Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${locked.port} refused the connection \\(WRONGPASS`));
      expect(errors[0]).not.toContain('wrong');
      expect(hub.stats().broker.connected).toBe(false);
    } finally {
      await hub.close();
      await locked.kill();
    }
  });

  it('waits at start for a registered process that does not answer for one heartbeat only', async () => {
    // Registered a moment ago (it crashed since, say): it never sends its state.
    await redisCommand(redis.port, `HSET {roomwire}:processes fedcba9876543210 ${Date.now()}`);
    const hub = createHub({ broker: brokerOf(library, { url: redis.url, startTimeout: 15_000 }) });
    try {
      expect(await Promise.race([hub.ready().then(() => 'ready'), sleep(5000).then(() => 'still waiting')])).toBe('ready');
      expect(hub.stats().broker.connected).toBe(true);
    } finally {
      await hub.close();
      await redisCommand(redis.port, 'HDEL {roomwire}:processes fedcba9876543210');
    }
  });

  it('tells each of many members joining at once on two processes of every other member exactly once: listed or announced', async () => {
    const [s1, s2] = [await serve(), await serve()];
    const room = freshRoom();
    const N = 40;
    const peers = await Promise.all(Array.from({ length: N }, (_, i) => connect(i % 2 === 0 ? s1 : s2, `/ws/${room}`)));
    // Every member ends up with N join notices and one user_list between them; wait until
    // each one's notices and list account for all N members.
    const known = peers.map(() => ({ name: '', listed: new Set<string>(), announced: [] as string[] }));
    await Promise.all(
      peers.map(async (p, i) => {
        const k = known[i]!;
        while (k.name === '' || k.listed.size + k.announced.length < N) {
          const f = await p.next(5000);
          if (f.type === 'join' && k.name === '') k.name = f.username as string;
          else if (f.type === 'join') k.announced.push(f.username as string);
          else if (f.type === 'user_list') for (const u of f.data as string[]) k.listed.add(u);
        }
      }),
    );
    const everyone = known.map((k) => k.name).sort();
    for (const k of known) {
      expect(k.announced.filter((u) => k.listed.has(u))).toEqual([]); // never both
      expect([...k.listed, ...k.announced].sort()).toEqual(everyone); // each once
    }
    for (const p of peers) await p.quiet(100);
  });

  // The SUBSCRIBE reply and the room's next messages often arrive in one read; a library
  // hands the messages to their listener before the caller sees the reply. A process that
  // delivered the room's frames from the reply on but took the list when it saw the reply
  // would list members whose join frames it delivered as well: with that change this test
  // fails on ioredis in every run we tried (2 of 2), and did not on node-redis (12 rounds).
  // roomwire delivers a new room's frames only from its own marker's return, and lists then.
  it("cuts a busy room's traffic consistently for a process's first joiner: each member listed or announced, never both", async () => {
    const s1 = await serve({}, { url: redis.url, beatInterval: 300, processTimeout: 5000 });
    // A stand-in for another process that keeps members joining, each announced and then
    // framed in one write, as a hub process does.
    const F = 'e1e1e1e1e1e1e1e1';
    const raw = createClient({ url: redis.url });
    await raw.connect();
    let members = 0;
    let flooding = false;
    let flood: Promise<void> = Promise.resolve();
    const beats = setInterval(() => void raw.publish('{roomwire}:control', JSON.stringify({ t: 'beat', p: F, n: members })).catch(() => {}), 200);
    try {
      await raw.publish('{roomwire}:control', JSON.stringify({ t: 'state', p: F, m: [] }));
      await sleep(300);
      for (let round = 0; round < 12; round++) {
        const room = freshRoom();
        flooding = true;
        flood = (async () => {
          for (let i = 0; flooding && i < 5000; i++) {
            const u = `m${i}`;
            members++;
            const control = raw.publish('{roomwire}:control', JSON.stringify({ t: 'join', p: F, r: room, c: `c${round}-${i}`, u, n: u }));
            const frame = raw.publish(`roomwire:room:{${room}}`, F + JSON.stringify({ type: 'join', room, user_id: u, username: u, timestamp: 1 }));
            await Promise.all([control, frame]);
          }
        })();
        await sleep(20);
        const y = await connect(s1, `/ws/${room}`);
        expect(await y.next()).toMatchObject({ type: 'join', room }); // its own
        // Before and after its list, the joins that came after the moment the list describes.
        let listed: number[] | undefined;
        const announced: number[] = [];
        while (listed === undefined || announced.length < 20) {
          const f = await y.next(2000);
          if (f.type === 'join') announced.push(Number(String(f.user_id).slice(1)));
          else if (f.type === 'user_list') listed = (f.data as string[]).filter((u) => u.startsWith('m')).map((u) => Number(u.slice(1)));
        }
        flooding = false;
        await flood;
        y.close();
        // A consistent cut: m0..mk listed, then m(k+1), m(k+2), ... announced, in order.
        const k = listed.length - 1;
        expect(listed.sort((a, b) => a - b)).toEqual(Array.from({ length: listed.length }, (_, i) => i));
        expect(announced).toEqual(Array.from({ length: announced.length }, (_, i) => k + 1 + i));
      }
    } finally {
      flooding = false;
      await flood.catch(() => {});
      clearInterval(beats);
      raw.destroy();
    }
  });

  it('replays in order what a process published while out of step, once its state arrives', async () => {
    const s1 = await serve({}, { url: redis.url, beatInterval: 300, processTimeout: 5000 });
    const room = freshRoom();
    const a = await enter(s1, room);
    // A stand-in for another process, speaking the broker's protocol through Redis.
    const F = 'f0f0f0f0f0f0f0f0';
    const raw = createClient({ url: redis.url });
    await raw.connect();
    const ctl = (msg: object) => raw.publish('{roomwire}:control', JSON.stringify(msg));
    const frame = (body: object) => raw.publish(`roomwire:room:{${room}}`, F + JSON.stringify({ room, ...body, timestamp: 1 }));
    const user = (id: string) => ({ user_id: id, username: id });
    const beats = setInterval(() => void ctl({ t: 'beat', p: F, n: 0 }).catch(() => {}), 200);
    try {
      await ctl({ t: 'state', p: F, m: [[room, 'cX', 'X', 'X']] });
      expect(await a.peer.next()).toMatchObject({ type: 'join', ...user('X') });
      // s1 drops its subscriber connection and relinks: it is out of step with F until F's state comes.
      await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub');
      await sleep(500);
      await frame({ type: 'message', content: 'last words of X', ...user('X') });
      await frame({ type: 'leave', ...user('X') });
      await ctl({ t: 'leave', p: F, r: room, c: 'cX', u: 'X', n: 'X' });
      await frame({ type: 'join', ...user('Z') });
      await ctl({ t: 'join', p: F, r: room, c: 'cZ', u: 'Z', n: 'Z' });
      await frame({ type: 'message', content: 'hello from Z', ...user('Z') });
      await a.peer.quiet(400); // held: nothing of F's before its state
      await ctl({ t: 'state', p: F, m: [[room, 'cZ', 'Z', 'Z']] });
      const frames = await a.peer.take(4);
      expect(frames.map((f) => `${f.type} ${String(f.user_id)} ${String(f.content ?? '')}`.trim())).toEqual([
        'message X last words of X',
        'leave X',
        'join Z',
        'message Z hello from Z',
      ]);
      a.peer.send({ type: 'user_list', room });
      expect(((await a.peer.next()).data as string[]).sort()).toEqual([a.name, 'Z'].sort());
    } finally {
      clearInterval(beats);
      raw.destroy();
    }
  });

  it('tells a member that joined during an outage of the others once, and never of members it was not shown', async () => {
    const timings = { url: redis.url, beatInterval: 200, processTimeout: 1500 };
    const [p1, r1] = [await serve({}, timings), await serve({}, timings)];
    const room = freshRoom();
    const x = await enter(r1, room);
    const doomed = await runProcess(['test/helpers/broker-process.mjs', redis.url, '200', '1500', library === 'ioredis' ? 'ioredis' : 'redis']);
    try {
      const dm = await Peer.open(`ws://127.0.0.1:${doomed.port}/ws/${room}`);
      const [dmJoin] = await dm.take(2);
      await x.peer.next(); // dm's join
      await redis.kill();
      doomed.child.kill('SIGKILL'); // dies during the outage
      await waitFor('p1 notices', () => !p1.hub.stats().broker.connected, 5000);
      const a = await enter(p1, room);
      expect(a.users).toEqual([a.name]); // its process alone
      await redis.restart();
      // Once in step again: x, who was there all along, is announced to a, once.
      expect(await a.peer.next(5000)).toMatchObject({ type: 'join', user_id: x.id });
      await serve({}, timings); // a new process: its arrival makes every process send its state again
      await sleep(2500); // past the dead process's timeout
      await a.peer.quiet(200); // no second join of x, no leave of dm (never shown to a)
      expect(dmJoin!.user_id).toBeDefined();
    } finally {
      doomed.child.kill('SIGKILL');
    }
  });
});
