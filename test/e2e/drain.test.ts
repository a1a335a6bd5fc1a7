/**
 * Draining (docs/protocol.md section 4) with real processes and real sockets: the standalone
 * server (`node dist/bin/roomwire.js`) with WEBSOCKET_DRAIN_WINDOW, sent SIGTERM.
 *
 * - 2,000 `ws` clients on one process drained over 4 s: the closes are spread over the
 *   window, every client gets `reconnect` then 1001, new upgrades and /healthz get 503, and
 *   the process exits 0 after the last close.
 * - roomwire/client over two processes and a real redis-server, history on: each client
 *   waits its `delay_ms`, reconnects to the other process, and gets every message once and
 *   in order (a `recovered` event, no `gap`).
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient, type GapEvent, type RecoveredEvent, type RoomwireClient } from '../../src/client/index';
import { Peer, sleep, upgrade } from '../helpers/client';
import { waitFor } from '../helpers/process';
import { RedisServer } from '../helpers/redis';

/** A roomwire process on a free port, with its exit code and the time it exited. */
function roomwire(env: Record<string, string>) {
  const child = spawn(process.execPath, ['dist/bin/roomwire.js'], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.once('exit', (code) => resolve({ code, at: performance.now() })));
  const listening = new Promise<number>((resolve, reject) => {
    child.stdout.on('data', () => {
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`exited before listening: ${output}`)));
  });
  listening.catch(() => {});
  return { child, exited, listening, output: () => output };
}

const children: ReturnType<typeof roomwire>['child'][] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const f of cleanups.splice(0)) await f();
});

/** One client's view of the drain. */
interface Seen {
  ws: WebSocket;
  frames: string[];
  reconnectAt: number | undefined;
  delay: number | undefined;
  closedAt: number | undefined;
  code: number | undefined;
}

function open(url: string): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const seen: Seen = { ws, frames: [], reconnectAt: undefined, delay: undefined, closedAt: undefined, code: undefined };
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      seen.frames.push(text);
      const frame = JSON.parse(text) as { type: string; data?: { delay_ms?: number } };
      if (frame.type === 'reconnect') {
        seen.reconnectAt = performance.now();
        seen.delay = frame.data?.delay_ms;
      }
    });
    ws.on('close', (code) => {
      seen.closedAt = performance.now();
      seen.code = code;
    });
    ws.once('open', () => resolve(seen));
    ws.once('error', reject);
  });
}

describe('drain: one process, 2,000 clients, a 4 s window', () => {
  it('spreads the closes over the window, sends reconnect then 1001 to every client, refuses upgrades and /healthz with 503, and exits 0 after the last close', async () => {
    const WINDOW = 4000;
    const N = 2000;
    const p = roomwire({ WEBSOCKET_DRAIN_WINDOW: '4s', WEBSOCKET_MAX_CONNECTIONS: '5000', WEBSOCKET_CONNECT_RATE: '100000/s,100000', MAX_UNFINISHED_REQUESTS: '10000' });
    children.push(p.child);
    const port = await p.listening;
    const clients: Seen[] = [];
    for (let i = 0; i < N; i += 100) clients.push(...(await Promise.all(Array.from({ length: 100 }, () => open(`ws://127.0.0.1:${port}/ws`)))));
    cleanups.push(() => clients.forEach((c) => c.ws.terminate()));
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', connections: N });

    const sigterm = performance.now();
    p.child.kill('SIGTERM');
    // The drain has begun once the first client is closed (the first goes at once).
    await waitFor('the first close', () => clients.some((c) => c.closedAt !== undefined), 2000);
    const during = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(during.status).toBe(503);
    expect(await during.json()).toEqual({
      status: 'draining',
      websocket: { enabled: true, path: '/ws' },
      connections: expect.any(Number),
      rooms: 0,
      broker: { kind: 'memory', connected: true, processes: 1 },
      uptime_seconds: expect.any(Number),
    });
    const refused = await upgrade(port, '/ws');
    expect(refused.status).toBe(503);
    expect(refused.body).toBe('server is shutting down\n');
    const healthAt = performance.now() - sigterm;

    const exit = await p.exited;
    expect(exit.code).toBe(0);
    const exitAfter = exit.at - sigterm;
    await waitFor('every client closed', () => clients.every((c) => c.closedAt !== undefined), 2000);

    for (const c of clients) {
      expect(c.code).toBe(1001);
      // The reconnect frame is the last frame, just before the close.
      expect(c.frames).toHaveLength(1);
      expect(JSON.parse(c.frames[0]!)).toEqual({ type: 'reconnect', data: { delay_ms: expect.any(Number) }, timestamp: expect.any(Number) });
      expect(Number.isInteger(c.delay)).toBe(true);
      expect(c.delay).toBeGreaterThanOrEqual(0);
      expect(c.delay).toBeLessThanOrEqual(WINDOW);
      expect(c.reconnectAt).toBeLessThanOrEqual(c.closedAt!);
    }
    const closes = clients.map((c) => c.closedAt! - sigterm).sort((a, b) => a - b);
    const lastClose = closes.at(-1)!;
    // Spread over the window: no 400 ms slice holds more than 15% (an even spread holds 10%).
    const slices = new Array<number>(Math.ceil((lastClose + 1) / 400)).fill(0);
    for (const t of closes) slices[Math.floor(t / 400)]!++;
    const maxShare = Math.max(...slices) / N;
    const delays = clients.map((c) => c.delay!);
    const report = {
      firstCloseMs: Math.round(closes[0]!),
      lastCloseMs: Math.round(lastClose),
      exitMs: Math.round(exitAfter),
      healthCheckedAtMs: Math.round(healthAt),
      maxSliceShare: maxShare,
      slices,
      delayMin: Math.min(...delays),
      delayMax: Math.max(...delays),
      delayMean: Math.round(delays.reduce((a, b) => a + b, 0) / N),
    };
    console.log(`drain of ${N} clients over ${WINDOW} ms: ${JSON.stringify(report)}`);
    expect(maxShare).toBeLessThanOrEqual(0.15);
    expect(slices.length).toBeGreaterThanOrEqual(10); // the closes reach the end of the window
    expect(lastClose).toBeGreaterThan(WINDOW * 0.9);
    expect(lastClose).toBeLessThan(WINDOW + 1000);
    expect(exitAfter).toBeGreaterThanOrEqual(lastClose - 50); // measured in another process: allow the pipe's delay
    expect(exitAfter).toBeLessThan(WINDOW + 3000);
    // Delays are drawn from the whole window.
    expect(report.delayMin).toBeLessThan(200);
    expect(report.delayMax).toBeGreaterThan(WINDOW - 200);
    expect(report.delayMean).toBeGreaterThan(WINDOW / 2 - 200);
    expect(report.delayMean).toBeLessThan(WINDOW / 2 + 200);
  }, 60_000);
});

describe('drain: roomwire/client moves to another process over Redis, history on', () => {
  it('each client waits its delay_ms, reconnects to the other process and gets every message once, in order, with recovered and no gap', async () => {
    const redis = await RedisServer.start();
    cleanups.push(() => redis.kill());
    const env = {
      WEBSOCKET_REDIS_URL: redis.url,
      WEBSOCKET_HISTORY_SIZE: '100',
      WEBSOCKET_DRAIN_WINDOW: '2s',
      WEBSOCKET_CONNECT_RATE: '1000/s,1000',
    };
    const p1 = roomwire(env);
    const p2 = roomwire(env);
    children.push(p1.child, p2.child);
    const [port1, port2] = await Promise.all([p1.listening, p2.listening]);
    const url1 = `ws://127.0.0.1:${port1}/ws`;
    const url2 = `ws://127.0.0.1:${port2}/ws`;

    interface Watched {
      client: RoomwireClient;
      /** Each WebSocket the client made: its URL and when. */
      sockets: { url: string; at: number }[];
      reconnects: { at: number; delay: number }[];
      log: { content: string; offset: number | undefined }[];
      recovered: RecoveredEvent[];
      gaps: GapEvent[];
    }
    const watched: Watched[] = [];
    for (let i = 0; i < 20; i++) {
      const w: Watched = { client: undefined as never, sockets: [], reconnects: [], log: [], recovered: [], gaps: [] };
      // The ws WebSocket, recording when the client opens one and when a reconnect frame arrives.
      class Recording extends WebSocket {
        constructor(url: string, protocols?: string | string[], options?: WebSocket.ClientOptions) {
          super(url, protocols, options);
          w.sockets.push({ url, at: performance.now() });
          this.on('message', (data: Buffer) => {
            const frame = JSON.parse(data.toString()) as { type: string; data?: { delay_ms: number } };
            if (frame.type === 'reconnect') w.reconnects.push({ at: performance.now(), delay: frame.data!.delay_ms });
          });
        }
      }
      w.client = createClient({ url: [url1, url2], WebSocket: Recording as never, reconnect: { minDelayMs: 50, maxDelayMs: 400 } });
      cleanups.push(() => w.client.close());
      const room = w.client.room('lobby');
      room.on('message', (m) => w.log.push({ content: m.content, offset: m.offset }));
      room.on('recovered', (e) => w.recovered.push(e));
      room.on('gap', (e) => w.gaps.push(e));
      await room.join();
      watched.push(w);
    }
    expect(watched.every((w) => w.sockets.length === 1 && w.sockets[0]!.url === url1)).toBe(true);

    // The sender is on the process that stays; it sends every 50 ms through the drain.
    const sender = await Peer.open(`${url2}/lobby`);
    cleanups.push(() => sender.ws.terminate());
    let sent = 0;
    const send = () => sender.send({ type: 'message', room: 'lobby', content: `m${sent++}` });
    send();
    await waitFor('m0 reaches every client', () => watched.every((w) => w.log.length === 1), 5000);
    const sending = setInterval(send, 50);
    cleanups.push(() => clearInterval(sending));
    await sleep(300);
    p1.child.kill('SIGTERM');
    await waitFor('every client back, on the other process', () => watched.every((w) => w.recovered.length > 0), 15_000);
    const exit1 = await p1.exited;
    expect(exit1.code).toBe(0);
    await sleep(300); // live messages after the recovery
    clearInterval(sending);
    const total = sent;
    await waitFor('the last message reaches every client', () => watched.every((w) => w.log.length >= total), 5000);
    await sleep(200);

    const slack: number[] = [];
    for (const w of watched) {
      // One reconnect frame, from the drained process; the next socket, to the other, no earlier than its delay.
      expect(w.reconnects).toHaveLength(1);
      const { at, delay } = w.reconnects[0]!;
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(2000);
      expect(w.sockets).toHaveLength(2);
      expect(w.sockets[1]!.url).toBe(url2);
      const waited = w.sockets[1]!.at - at;
      // The frame and the close frame arrive together. Node's timers count from the event
      // loop's millisecond clock, read once per turn: up to a few ms before this measure.
      expect(waited).toBeGreaterThanOrEqual(delay - 5);
      slack.push(waited - delay);
      // Every message once, in order, offsets without a gap.
      expect(w.log.map((m) => m.content)).toEqual(Array.from({ length: total }, (_, i) => `m${i}`));
      const first = w.log[0]!.offset!;
      expect(w.log.map((m) => m.offset)).toEqual(Array.from({ length: total }, (_, i) => first + i));
      expect(w.recovered).toEqual([{ room: 'lobby', missed: expect.any(Number), offset: expect.any(Number), epoch: expect.any(String) }]);
      expect(w.gaps).toEqual([]);
    }
    console.log(
      `drain of 20 roomwire/client clients over 2 s: ${total} messages, every one delivered once; delays ${JSON.stringify(watched.map((w) => w.reconnects[0]!.delay).sort((a, b) => a - b))}, waited beyond the delay ${Math.min(...slack).toFixed(1)} to ${Math.max(...slack).toFixed(1)} ms, missed ${JSON.stringify(watched.map((w) => w.recovered[0]!.missed))}`,
    );
    // Spread: not every client came back in the same instant.
    const delays = watched.map((w) => w.reconnects[0]!.delay);
    expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(500);
  }, 60_000);
});
