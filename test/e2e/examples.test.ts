/**
 * Every example in examples/ started as a user starts it (`node examples/<name>.mjs`,
 * against the built dist/), then checked over real sockets: the listening line, the chat
 * page at `/`, a small slice of the contract, graceful shutdown on SIGTERM (1001, exit
 * 0), and a bad configuration refused with a non-zero exit.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, it, type ExpectStatic } from 'vitest';
import { Peer, upgrade, type Frame } from '../helpers/client';
import { RedisServer } from '../helpers/redis';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FRAMEWORKS = ['node', 'express', 'fastify', 'koa'] as const;
const EXAMPLES = [...FRAMEWORKS, 'auth-chat'] as const;

type Child = ChildProcessByStdio<null, Readable, Readable>;
const children = new Set<Child>();

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Reject when `promise` has not settled within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function run(name: string, extraEnv: Record<string, string> = {}) {
  const child: Child = spawn(process.execPath, [`examples/${name}.mjs`], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const output = () => `stdout:\n${stdout}\nstderr:\n${stderr}`;
  const listening = within(
    new Promise<number>((resolve, reject) => {
      const check = () => {
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
        if (m) resolve(Number(m[1]));
      };
      child.stdout.on('data', check);
      void exited.then((code) => reject(new Error(`${name} exited with ${code} before listening\n${output()}`)));
    }),
    10_000,
    `${name}: the listening line`,
  );
  listening.catch(() => {}); // awaited only where the example should start
  return {
    child,
    listening,
    exited: () => within(exited, 10_000, `${name}: exit`),
    stdout: () => stdout,
    stderr: () => stderr,
  };
}

async function checkChatPage(expect: ExpectStatic, port: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/html/);
  expect(await res.text()).toContain('roomwire.createClient(');
}

/** Two anonymous clients in /ws/lobby, a message between them; returns the open peers. */
async function checkHub(expect: ExpectStatic, port: number): Promise<Peer[]> {
  const a = await Peer.open(`ws://127.0.0.1:${port}/ws/lobby`);
  const [joinA, listA] = (await a.take(2)) as [Frame, Frame];
  expect(joinA).toMatchObject({ type: 'join', room: 'lobby' });
  expect(listA).toMatchObject({ type: 'user_list', room: 'lobby', data: [joinA.username] });
  const b = await Peer.open(`ws://127.0.0.1:${port}/ws/lobby`);
  const [joinB, listB] = (await b.take(2)) as [Frame, Frame];
  expect(joinB).toMatchObject({ type: 'join', room: 'lobby' });
  expect(joinB.username).not.toBe(joinA.username);
  expect(listB.type).toBe('user_list');
  expect([...(listB.data as string[])].sort()).toEqual([joinA.username, joinB.username].sort());
  expect(await a.next()).toMatchObject({ type: 'join', username: joinB.username });

  a.send({ type: 'message', room: 'lobby', content: 'hi from a' });
  for (const peer of [a, b]) {
    expect(await peer.next()).toMatchObject({ type: 'message', room: 'lobby', content: 'hi from a', username: joinA.username });
  }

  expect((await upgrade(port, '/ws/a/b')).status).toBe(404);
  expect((await upgrade(port, '/ws/auth')).status).toBe(401);
  return [a, b];
}

/** POST /login as alice, then /ws/auth/lobby with the token. */
async function checkAuthChat(expect: ExpectStatic, port: number): Promise<Peer[]> {
  const res = await fetch(`http://127.0.0.1:${port}/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'alice' }),
  });
  expect(res.status).toBe(200);
  const { token } = (await res.json()) as { token: string };
  expect(typeof token).toBe('string');
  expect((await upgrade(port, '/ws/auth/lobby')).status).toBe(401);
  const alice = await Peer.open(`ws://127.0.0.1:${port}/ws/auth/lobby?token=${encodeURIComponent(token)}`);
  expect(await alice.next()).toMatchObject({ type: 'join', room: 'lobby', username: 'alice', user_id: 'user:alice' });
  return [alice];
}

describe.concurrent('examples', () => {
  for (const name of EXAMPLES) {
    it(`${name}: listens, serves the chat page and the hub, closes with 1001 on SIGTERM and exits 0`, async ({ expect }) => {
      const p = run(name);
      const port = await p.listening;
      await checkChatPage(expect, port);
      if (name !== 'node' && name !== 'auth-chat') {
        const res = await fetch(`http://127.0.0.1:${port}/hello`);
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ hello: name });
      }
      const peers = name === 'auth-chat' ? await checkAuthChat(expect, port) : await checkHub(expect, port);

      p.child.kill('SIGTERM');
      for (const peer of peers) {
        expect((await within(peer.closed, 5_000, `${name}: close frame`)).code).toBe(1001);
      }
      expect(await p.exited()).toBe(0);
      expect(p.stdout().split('\n').filter((line) => line.includes('listening on'))).toHaveLength(1);
    });

    it(`${name}: a bad configuration exits non-zero and names the variable`, async ({ expect }) => {
      const p = run(name, { WEBSOCKET_MAX_CONNECTIONS: 'abc' });
      const code = await p.exited();
      expect(code).not.toBe(0);
      expect(code).not.toBeNull();
      expect(p.stderr()).toContain('WEBSOCKET_MAX_CONNECTIONS');
      expect(p.stdout()).not.toContain('listening on');
    });
  }
});

describe('examples sharing one Redis', () => {
  it('node, express, fastify and koa serve one hub (two on node-redis, two on ioredis): a message from each reaches the members on all four', async ({ expect }) => {
    const redis = await RedisServer.start();
    try {
      const servers = FRAMEWORKS.map((name, i) => run(name, { WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_CLIENT: i < 2 ? 'redis' : 'ioredis' }));
      const ports = await Promise.all(servers.map((p) => p.listening));
      const peers: Peer[] = [];
      const names: string[] = [];
      for (const port of ports) {
        const peer = await Peer.open(`ws://127.0.0.1:${port}/ws/shared`);
        const [join, list] = (await peer.take(2)) as [Frame, Frame];
        names.push(join.username as string);
        expect([...(list.data as string[])].sort()).toEqual([...names].sort());
        for (const earlier of peers) expect(await earlier.next()).toMatchObject({ type: 'join', username: join.username });
        peers.push(peer);
      }
      peers.forEach((peer, i) => peer.send({ type: 'message', room: 'shared', content: `from ${FRAMEWORKS[i]}` }));
      for (const peer of peers) {
        const got = (await peer.take(4)).map((f) => `${f.username as string}: ${f.content as string}`).sort();
        expect(got).toEqual(FRAMEWORKS.map((name, i) => `${names[i]!}: from ${name}`).sort());
      }
      for (const p of servers) p.child.kill('SIGTERM');
      for (const p of servers) expect(await p.exited()).toBe(0);
    } finally {
      await redis.kill();
    }
  });
});
