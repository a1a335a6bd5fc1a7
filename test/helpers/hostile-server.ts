/**
 * The hostile suite's fixtures: a standalone server per test (generous rates unless the
 * test is about them), clients that are closed after each test, and the canary pair that
 * must keep talking through every attack.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import type net from 'node:net';
import { expect } from 'vitest';
import type { ClientOptions } from 'ws';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/standalone';
import { Peer, SECRET, sleep, type Frame } from './client';
import { RawSocket } from './hostile';

const servers: RunningServer[] = [];
const peers: Peer[] = [];
/** Raw WebSocket clients a test opened; destroyed after it. */
export const raws: RawSocket[] = [];
/** Raw TCP sockets a test opened; destroyed after it. */
export const sockets: net.Socket[] = [];

/** Close everything the test opened: call from `afterEach`. */
export async function cleanup(): Promise<void> {
  for (const r of raws.splice(0)) r.destroy();
  for (const s of sockets.splice(0)) s.destroy();
  for (const p of peers.splice(0)) p.ws.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
}

/**
 * Start a standalone server; generous rates unless a test is about them. `options` adds
 * hooks (`hub`) or collects the JSON log lines (`log`).
 */
export async function serve(env: Record<string, string | undefined> = {}, options: Omit<ServerOptions, 'env'> = {}): Promise<RunningServer> {
  const s = await startServer({
    env: {
      HOST: '127.0.0.1',
      PORT: '0',
      WEBSOCKET_JWT_SECRET: SECRET,
      WEBSOCKET_MESSAGE_RATE: '10000/s,10000',
      WEBSOCKET_CONNECT_RATE: '100000/s,100000',
      ...env,
    },
    log: () => {},
    ...options,
  });
  servers.push(s);
  return s;
}

export async function open(s: RunningServer, path: string, options?: ClientOptions): Promise<Peer> {
  const p = await Peer.open(`ws://127.0.0.1:${s.port}${path}`, options);
  peers.push(p);
  return p;
}

export async function openRaw(s: RunningServer, path: string, headers?: Record<string, string>): Promise<RawSocket> {
  const r = await RawSocket.open(s.port, path, headers);
  if (r.raw === undefined) throw new Error(`raw upgrade of ${path} refused with ${r.status}`);
  raws.push(r.raw);
  return r.raw;
}

export function codeOf(f: Frame | Record<string, unknown>): string | undefined {
  return f.type === 'error' ? (f.data as { code?: string } | undefined)?.code : undefined;
}

/** A server timestamp: integer Unix seconds, now (not whatever the client claimed). */
export function expectServerTime(ts: unknown): void {
  expect(Number.isInteger(ts)).toBe(true);
  expect(Math.abs((ts as number) - Date.now() / 1000)).toBeLessThanOrEqual(5);
}

/** Wait (bounded) until `cond` holds, then assert it. */
export async function eventually(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 150 && !cond(); i++) await sleep(20);
  expect(cond(), what).toBe(true);
}

/** The loopback address the canary clients connect from; attackers use 127.0.0.1. */
export const CANARY_ADDRESS = '127.0.0.2';

export interface Innocent {
  readonly watcher: Peer;
  readonly speaker: Peer;
  /** The innocent pair still talks: a message from one reaches the other, and ping gets pong. */
  check(): Promise<void>;
  /**
   * Keep the pair talking during an attack: a message every `everyMs` (default 50 ms; keep
   * it within the server's message rate), whose copy each must get within 2 s. `stop()`
   * ends it and throws if any reply was missing or late.
   */
  watch(everyMs?: number): { stop(): Promise<{ rounds: number; worstMs: number }> };
}

/**
 * Two well-behaved anonymous clients in room `safe`, connected before any attack from
 * their own loopback address (127.0.0.2; attackers use 127.0.0.1), so per-address
 * defences against the attacker never touch them. `headers` lets a test give them their
 * own client address (X-Forwarded-For).
 */
export async function innocent(s: RunningServer, headers: Record<string, string> = {}): Promise<Innocent> {
  const watcher = await open(s, '/ws/safe', { headers, localAddress: CANARY_ADDRESS });
  await watcher.take(2);
  const speaker = await open(s, '/ws/safe', { headers, localAddress: CANARY_ADDRESS });
  const [speakerJoin] = await speaker.take(2);
  expect(await watcher.next()).toMatchObject({ type: 'join', room: 'safe', user_id: speakerJoin!.user_id });
  let n = 0;
  const expected = (content: string) => ({
    type: 'message',
    room: 'safe',
    content,
    user_id: speakerJoin!.user_id,
    username: speakerJoin!.username,
    timestamp: expect.any(Number),
  });
  return {
    watcher,
    speaker,
    async check() {
      expect(watcher.ws.readyState).toBe(1);
      expect(speaker.ws.readyState).toBe(1);
      const content = `still serving ${++n}`;
      speaker.send({ type: 'message', room: 'safe', content });
      expect(await watcher.next()).toEqual(expected(content));
      expect(await speaker.next()).toEqual(expected(content));
      watcher.send({ type: 'ping' });
      expect(await watcher.next()).toEqual({ type: 'pong', timestamp: expect.any(Number) });
      expect(watcher.frames).toEqual([]);
      expect(speaker.frames).toEqual([]);
    },
    watch(everyMs = 50) {
      let stopped = false;
      let rounds = 0;
      let worstMs = 0;
      const loop = (async () => {
        while (!stopped) {
          const content = `during the attack ${++n}`;
          const sent = Date.now();
          speaker.send({ type: 'message', room: 'safe', content });
          // Each copy within 2 s, or the canary was starved.
          expect(await watcher.next(2000)).toEqual(expected(content));
          expect(await speaker.next(2000)).toEqual(expected(content));
          worstMs = Math.max(worstMs, Date.now() - sent);
          rounds++;
          await sleep(everyMs);
        }
      })();
      loop.catch(() => {}); // reported by stop()
      return {
        async stop() {
          stopped = true;
          await loop;
          expect(rounds, 'canary rounds during the attack').toBeGreaterThan(0);
          return { rounds, worstMs };
        },
      };
    },
  };
}

/** GET `path` from a given local address; status, headers and body. */
export function httpGet(port: number, path: string, localAddress = CANARY_ADDRESS, timeout = 5000): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress, timeout, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within ${timeout} ms`)));
    req.on('error', reject);
  });
}

