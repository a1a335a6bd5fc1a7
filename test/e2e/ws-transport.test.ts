/**
 * The `ws` transport of roomwire/node (src/adapters/ws-transport.ts): its raw-frame fast
 * path, the per-hub cork, and the guard that falls back to `ws.send` when writing to the
 * socket directly could reorder or interleave frames with `ws`'s own (permessage-deflate
 * negotiated, or `ws` holding queued data).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer, type ServerOptions } from 'ws';
import { adapterHandle, createHub } from '../../src/index';
import { attach } from '../../src/adapters/node';
import { Outbound } from '../../src/core/protocol';
import { WriteBatcher, WsTransport, batcherFor, frameText } from '../../src/adapters/ws-transport';
import { Peer } from '../helpers/client';

/** What the client saw, in order: `m:<text>` for a text message, `b:<bytes>` binary, `ping`. */
type Seen = string[];

interface Pair {
  /** The server side of the connection. */
  readonly ws: WebSocket;
  readonly socket: Socket;
  readonly client: WebSocket;
  readonly seen: Seen;
  /** Resolves once the client has seen `n` events. */
  until(n: number): Promise<void>;
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** A hub attached to a fresh server on 127.0.0.1 (closed after the test). */
async function attachedHub(): Promise<{ hub: ReturnType<typeof createHub>; port: number }> {
  const hub = createHub();
  const server = http.createServer();
  attach(hub, server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    await hub.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { hub, port: (server.address() as AddressInfo).port };
}

/** A connected `ws` pair over a test-only WebSocketServer (`options` are its own). */
async function pair(options: ServerOptions = {}, clientOptions: WebSocket.ClientOptions = {}): Promise<Pair> {
  const server = http.createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false, autoPong: false, ...options });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const serverSide = new Promise<{ ws: WebSocket; socket: Socket }>((resolve) => wss.once('connection', (ws, req) => resolve({ ws, socket: req.socket })));
  const client = new WebSocket(`ws://127.0.0.1:${port}`, clientOptions);
  const seen: Seen = [];
  const waiters: (() => void)[] = [];
  const record = (event: string): void => {
    seen.push(event);
    for (const w of waiters.splice(0)) w();
  };
  client.on('message', (data: Buffer, isBinary) => record(isBinary ? `b:${data.length}` : `m:${data.toString()}`));
  client.on('ping', () => record('ping'));
  await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
  const { ws, socket } = await serverSide;
  cleanup.push(async () => {
    client.terminate();
    ws.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const until = async (n: number): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (seen.length < n) {
      if (Date.now() > deadline) throw new Error(`the client saw ${seen.length} of ${n} events`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  };
  return { ws, socket, client, seen, until };
}

/** The end of this tick: when the batcher uncorks. */
const tick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

/** Text of the `i`th test message: small ones, and every fifth large (4 KiB to 200 KiB, so deflate takes a while). */
function text(i: number): string {
  const size = i % 5 === 0 ? 4096 + ((i * 7919) % 200_000) : 10 + (i % 50);
  return `${String(i).padStart(6, '0')}:${'abcdefghij'.repeat(Math.ceil(size / 10)).slice(0, size)}`;
}

describe('ws transport: fast path', () => {
  it('writes a frame built once per broadcast straight to each socket, never through ws.send', async () => {
    const a = await pair();
    const b = await pair();
    const batcher = new WriteBatcher();
    const ta = new WsTransport(a.ws, a.socket, batcher);
    const tb = new WsTransport(b.ws, b.socket, batcher);
    const sends = [vi.spyOn(a.ws, 'send'), vi.spyOn(b.ws, 'send')];
    const writes = [vi.spyOn(a.socket, 'write'), vi.spyOn(b.socket, 'write')];

    const texts = Array.from({ length: 40 }, (_, i) => text(i));
    for (const t of texts) {
      const message = new Outbound(t);
      ta.send(message);
      const frame = message.frame;
      expect(Buffer.from(frame as Uint8Array).equals(frameText(t))).toBe(true);
      tb.send(message);
      expect(message.frame).toBe(frame); // framed once, the same bytes for both sockets
      // Every second message waits for the next tick: bursts and single frames both.
      if (texts.indexOf(t) % 2 === 1) await tick();
    }
    await Promise.all([a.until(40), b.until(40)]);
    const expected = texts.map((t) => `m:${t}`);
    expect(a.seen).toEqual(expected);
    expect(b.seen).toEqual(expected);
    for (const s of sends) expect(s).not.toHaveBeenCalled();
    for (const w of writes) expect(w).toHaveBeenCalledTimes(40);
  });

  it('corks a socket at its first frame of a tick and uncorks it when the tick ends: one write per socket per burst', async () => {
    const a = await pair();
    const t = new WsTransport(a.ws, a.socket, new WriteBatcher());
    const cork = vi.spyOn(a.socket, 'cork');
    const uncork = vi.spyOn(a.socket, 'uncork');
    const writev = vi.spyOn(a.socket as unknown as { _writev: (...args: unknown[]) => void }, '_writev');

    t.send(new Outbound('one'));
    t.send(new Outbound('two'));
    t.send(new Outbound('three'));
    expect(cork).toHaveBeenCalledTimes(1);
    expect(a.socket.writableCorked).toBe(1);
    await tick();
    expect(uncork).toHaveBeenCalledTimes(1);
    expect(a.socket.writableCorked).toBe(0);
    expect(writev).toHaveBeenCalledTimes(1);
    expect((writev.mock.calls[0]?.[0] as unknown[]).length).toBe(3);
    t.send(new Outbound('four'));
    expect(cork).toHaveBeenCalledTimes(2);
    await tick();
    expect(uncork).toHaveBeenCalledTimes(2);
    await a.until(4);
    expect(a.seen).toEqual(['m:one', 'm:two', 'm:three', 'm:four']);
  });

  it('writes the constant ping frame straight to the socket', async () => {
    const a = await pair();
    const t = new WsTransport(a.ws, a.socket, new WriteBatcher());
    const ping = vi.spyOn(a.ws, 'ping');
    const write = vi.spyOn(a.socket, 'write');
    t.ping();
    t.send(new Outbound('after'));
    await a.until(2);
    expect(a.seen).toEqual(['ping', 'm:after']);
    expect(ping).not.toHaveBeenCalled();
    expect(write.mock.calls[0]?.[0]).toEqual(Buffer.from([0x89, 0x00]));
  });

  it('keeps one batcher per hub: shared by every attachment of the hub, never by two hubs', async () => {
    const one = createHub();
    const two = createHub();
    cleanup.push(
      () => one.close(),
      () => two.close(),
    );
    expect(batcherFor(adapterHandle(one))).toBe(batcherFor(adapterHandle(one)));
    expect(batcherFor(adapterHandle(one))).not.toBe(batcherFor(adapterHandle(two)));

    // One hub's tick ending releases only its own transports' corks.
    const a = await pair();
    const b = await pair();
    const ba = batcherFor(adapterHandle(one));
    const bb = batcherFor(adapterHandle(two));
    const ta = new WsTransport(a.ws, a.socket, ba);
    const tb = new WsTransport(b.ws, b.socket, bb);
    const ticks = [ba.tick, bb.tick];
    ta.send(new Outbound('a1'));
    ta.send(new Outbound('a2'));
    expect(a.socket.writableCorked).toBe(1);
    expect(b.socket.writableCorked).toBe(0);
    await tick();
    expect([ba.tick, bb.tick]).toEqual([(ticks[0] as number) + 1, ticks[1]]);
    expect(a.socket.writableCorked).toBe(0);
    tb.send(new Outbound('b1'));
    tb.send(new Outbound('b2'));
    expect(b.socket.writableCorked).toBe(1);
    await tick();
    expect(b.socket.writableCorked).toBe(0);
    await Promise.all([a.until(2), b.until(2)]);
    expect(a.seen).toEqual(['m:a1', 'm:a2']);
    expect(b.seen).toEqual(['m:b1', 'm:b2']);
  });

  it('a hub attached to a server sends every frame through socket.write, none through ws.send', async () => {
    const { hub, port } = await attachedHub();
    const peers = await Promise.all([0, 1, 2].map(() => Peer.open(`ws://127.0.0.1:${port}/ws/room`)));
    const clients = new Set<WebSocket>(peers.map((p) => p.ws));
    const serverSends: unknown[] = [];
    const send = WebSocket.prototype.send;
    vi.spyOn(WebSocket.prototype, 'send').mockImplementation(function (this: WebSocket, ...args: Parameters<WebSocket['send']>) {
      if (!clients.has(this)) serverSends.push(args[0]);
      return send.apply(this, args);
    });
    for (let i = 0; i < 50; i++) hub.publish('room', `n${i}`);
    for (const p of peers) {
      const contents: unknown[] = [];
      // Join notices and user lists come first; then the 50 messages, in order.
      while (contents.length < 50) {
        const f = await p.next();
        if (f.type === 'message') contents.push(f.content);
      }
      expect(contents).toEqual(Array.from({ length: 50 }, (_, i) => `n${i}`));
    }
    expect(serverSends).toEqual([]);
  });
});

describe('ws transport: the handshake', () => {
  it('sends the 101 response, the path join\'s join notice and its user_list in one write', async () => {
    const hub = createHub();
    const server = http.createServer();
    // Counts the writes of every upgraded socket (listeners run in order: this one first).
    const writes: string[][] = [];
    server.on('upgrade', (_req, socket: Socket) => {
      const mine: string[] = [];
      writes.push(mine);
      const s = socket as Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
      const write = s._write.bind(s);
      const writev = s._writev.bind(s);
      s._write = (chunk, ...rest) => {
        mine.push(String(chunk).slice(0, 12));
        write(chunk, ...rest);
      };
      s._writev = (chunks, ...rest) => {
        mine.push((chunks as { chunk: unknown }[]).map((c) => String(c.chunk).slice(0, 12)).join('+'));
        writev(chunks, ...rest);
      };
    });
    attach(hub, server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    cleanup.push(async () => {
      await hub.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const peer = await Peer.open(`ws://127.0.0.1:${port}/ws/room`);
    expect(await peer.next()).toMatchObject({ type: 'join', room: 'room' });
    expect(await peer.next()).toMatchObject({ type: 'user_list', room: 'room' });
    // One system call: the 101 head and the two frames, in order.
    expect(writes).toEqual([[expect.stringMatching(/^HTTP\/1\.1 101.*\+.*\+/)]]);
    expect(writes[0]![0]!.split('+')).toHaveLength(3);
    // Later frames are written as before: one write per frame in its own tick.
    hub.publish('room', 'later');
    expect(await peer.next()).toMatchObject({ type: 'message', content: 'later' });
    expect(writes[0]).toHaveLength(2);
  });

  it('releases the cork of a handshake ws refuses (400), so its answer leaves', async () => {
    const { hub, port } = await attachedHub();
    const { connect } = await import('node:net');
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect(port, '127.0.0.1', () => {
        // Admitted by the hub, refused by ws: no Sec-WebSocket-Key.
        sock.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n');
      });
      let text = '';
      sock.setEncoding('utf8').on('data', (d: string) => (text += d));
      sock.on('close', () => resolve(text)).on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(hub.stats().rejected.handshake).toBe(1);
    expect(hub.stats().pending).toBe(0);
  });
});

describe('ws transport: the guard (falls back to ws.send)', () => {
  it('when permessage-deflate was negotiated: every frame arrives intact and in order', async () => {
    const a = await pair({ perMessageDeflate: { threshold: 0 } }, { perMessageDeflate: true });
    expect(a.ws.extensions).toContain('permessage-deflate');
    const t = new WsTransport(a.ws, a.socket, new WriteBatcher());
    const send = vi.spyOn(a.ws, 'send');
    const ping = vi.spyOn(a.ws, 'ping');
    const write = vi.spyOn(a.socket, 'write');

    const expected: string[] = [];
    for (let i = 0; i < 200; i++) {
      if (i % 17 === 3) {
        t.ping();
        expected.push('ping');
      }
      if (i % 10 === 5) {
        // Another sender on the same WebSocket, compressed by ws in the background.
        const other = `other ${i} ${'xyz'.repeat(30_000)}`;
        a.ws.send(other);
        expected.push(`m:${other}`);
      }
      const message = new Outbound(text(i));
      t.send(message);
      expect(message.frame).toBeUndefined(); // no raw frame built for this socket
      expected.push(`m:${text(i)}`);
      if (i % 40 === 39) await tick();
    }
    await a.until(expected.length);
    expect(a.seen).toEqual(expected);
    expect(send).toHaveBeenCalledTimes(200 + 20); // the transport's frames and the other sender's
    expect(ping).toHaveBeenCalledTimes(expected.filter((e) => e === 'ping').length);
    // No raw text frame reached the socket: everything went through ws (compressed).
    const raw = new Set(Array.from({ length: 200 }, (_, i) => frameText(text(i)).toString('latin1')));
    for (const [chunk] of write.mock.calls) expect(raw.has(Buffer.from(chunk as Uint8Array).toString('latin1'))).toBe(false);
  });

  it('while ws has queued data: frames wait behind it, then the fast path resumes', async () => {
    const a = await pair();
    const t = new WsTransport(a.ws, a.socket, new WriteBatcher());
    const send = vi.spyOn(a.ws, 'send');
    const ping = vi.spyOn(a.ws, 'ping');

    // A Blob is read asynchronously: until then ws queues every frame after it.
    a.ws.send(new Blob([Buffer.alloc(100_000, 1)]));
    a.ws.send('queued by ws');
    const sender = (a.ws as unknown as { _sender: { _state: number; _queue: unknown[] } })._sender;
    expect(sender._state).not.toBe(0);
    expect(sender._queue.length).toBe(1);
    send.mockClear();

    const expected = ['b:100000', 'm:queued by ws'];
    for (let i = 0; i < 30; i++) {
      t.send(new Outbound(text(i)));
      expected.push(`m:${text(i)}`);
    }
    t.ping();
    expected.push('ping');
    expect(send).toHaveBeenCalledTimes(30);
    expect(ping).toHaveBeenCalledTimes(1);

    await a.until(expected.length);
    expect(a.seen).toEqual(expected);
    expect(sender._state).toBe(0);
    expect(sender._queue.length).toBe(0);

    // ws is idle again: straight to the socket.
    const write = vi.spyOn(a.socket, 'write');
    send.mockClear();
    t.send(new Outbound('direct'));
    expect(send).not.toHaveBeenCalled();
    expect(write).toHaveBeenCalledTimes(1);
    await a.until(expected.length + 1);
    expect(a.seen.at(-1)).toBe('m:direct');
  });

  it('when ws lacks the sender fields it reads (another ws version): always ws.send and ws.ping', () => {
    for (const sender of [null, undefined, {}, { _state: 0, _queue: [] }, { _state: '0', _queue: [], _bufferedBytes: 0 }]) {
      const ws = { extensions: '', _sender: sender, readyState: 1, bufferedAmount: 7, send: vi.fn(), ping: vi.fn() };
      const socket = { write: vi.fn(), cork: vi.fn(), uncork: vi.fn(), writableLength: 0 };
      const t = new WsTransport(ws as unknown as WebSocket, socket as unknown as Socket, new WriteBatcher());
      expect(t.send(new Outbound('x'))).toBe(7);
      t.ping();
      expect(ws.send).toHaveBeenCalledWith('x');
      expect(ws.ping).toHaveBeenCalledTimes(1);
      expect(socket.write).not.toHaveBeenCalled();
    }
  });

  it('drops frames and pings once the WebSocket is no longer open', async () => {
    const a = await pair();
    const t = new WsTransport(a.ws, a.socket, new WriteBatcher());
    const write = vi.spyOn(a.socket, 'write');
    const send = vi.spyOn(a.ws, 'send');
    a.ws.close(1000, 'bye');
    write.mockClear();
    expect(t.send(new Outbound('late'))).toBe(0);
    t.ping();
    expect(write).not.toHaveBeenCalled();
    expect(send).not.toHaveBeenCalled();
  });
});
