/**
 * `roomwire/node`: attach a hub to the `upgrade` event of a Node `http.Server` or
 * `https.Server`. Requests under the hub's base path are admitted by the core and
 * upgraded with `ws` (noServer mode); every other path is left to other listeners.
 *
 * This is the one upgrade handler every framework adapter delegates to.
 *
 * @packageDocumentation
 * @module roomwire/node
 */
import { STATUS_CODES, ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { RoomwireError } from '../core/errors';
import type { Admission, Hub } from '../core/hub';
import type { Outbound } from '../core/protocol';
import type { RejectReason } from '../core/stats';
import type { Transport, TransportListener } from '../core/types';
import { headersComplete } from './unfinished';

export { limitUnfinishedRequests } from './unfinished';
export type { GuardedServer, UnfinishedRequestLimits } from './unfinished';

/**
 * Handles one `upgrade` event. Returns false, touching nothing, when the path is not
 * under the hub's base path; otherwise takes the socket and returns true.
 */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean;

/** The minimal shape of a server the adapter attaches to (`http.Server`, `https.Server`). */
export interface UpgradeEmitter {
  on(event: 'upgrade', listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): unknown;
  off(event: 'upgrade', listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): unknown;
  listenerCount(event: 'upgrade' | 'request'): number;
  emit(event: 'request', req: IncomingMessage, res: ServerResponse): boolean;
}

/**
 * Answer an upgrade request nobody upgrades as the plain HTTP request it also is, with
 * the server's `request` listeners (404 when there are none), then close the socket.
 * Without any `upgrade` listener Node itself does this; once one is attached, a request
 * no listener takes would otherwise hang (an `Upgrade: h2c` from curl, a WebSocket for
 * a path the application never served).
 *
 * @internal
 */
export function answerAsRequest(server: UpgradeEmitter, req: IncomingMessage, socket: Duplex): void {
  socket.on('error', ignore);
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
  });
  if (server.listenerCount('request') === 0) {
    res.statusCode = 404;
    res.end();
    return;
  }
  server.emit('request', req, res);
}

/** What {@link attach} returns. */
export interface Attachment {
  /** The upgrade handler attached to the server. */
  readonly handleUpgrade: UpgradeHandler;
  /** Remove the hub's `upgrade` listener (and only it) from the server. Open connections stay open. */
  detach(): void;
}

const REASON_TEXT: Record<RejectReason, string> = {
  not_found: 'no WebSocket endpoint at this path',
  disabled: 'WebSockets are disabled',
  origin: 'origin not allowed',
  rate_limited: 'too many connection attempts',
  capacity: 'too many connections',
  unauthorized: 'a valid token is required',
  shutting_down: 'server is shutting down',
  handshake: 'handshake failed',
};

/** Build the complete WebSocket text frame of `text` (unmasked, as servers send). */
export function frameText(text: string): Buffer {
  const length = Buffer.byteLength(text);
  const head = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const buf = Buffer.allocUnsafe(head + length);
  buf[0] = 0x81; // FIN + text opcode
  if (length < 126) {
    buf[1] = length;
  } else if (length < 65_536) {
    buf[1] = 126;
    buf.writeUInt16BE(length, 2);
  } else {
    buf[1] = 127;
    buf.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    buf.writeUInt32BE(length >>> 0, 6);
  }
  buf.write(text, head, 'utf8');
  return buf;
}

// Frames sent to one socket within one tick (a burst of messages parsed from one read,
// several rooms' traffic) leave in one system call: the first is written at once, and a
// second in the same tick corks the socket until the tick ends. A socket that gets one
// frame per tick pays nothing for this.
let tick = 0;
let flushScheduled = false;
const corked: WsTransport[] = [];

function endTick(): void {
  flushScheduled = false;
  tick++;
  for (let i = 0; i < corked.length; i++) (corked[i] as WsTransport).uncork();
  corked.length = 0;
}

/**
 * The {@link Transport} over a `ws` WebSocket. A frame is encoded once per broadcast
 * and cached on the {@link Outbound}, then written as the same bytes to every
 * recipient's socket. `ws` runs without compression and never queues text frames, so
 * these writes interleave with its own (pings, close) at frame boundaries only.
 */
class WsTransport implements Transport {
  /** The tick of this socket's last write; -1 before the first. */
  private lastTick = -1;
  /** Bytes held back by the cork this tick; -1 when not corked. */
  private pending = -1;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
  ) {}

  send(message: Outbound): number {
    if (this.ws.readyState !== 1) return 0;
    let frame = message.frame;
    if (frame === undefined) frame = message.frame = frameText(message.text);
    const socket = this.socket;
    if (this.lastTick !== tick) {
      this.lastTick = tick;
      if (!flushScheduled) {
        flushScheduled = true;
        process.nextTick(endTick);
      }
      socket.write(frame);
      return socket.writableLength;
    }
    if (this.pending < 0) {
      this.pending = 0;
      socket.cork();
      corked.push(this);
    }
    this.pending += frame.length;
    socket.write(frame);
    // Only what waits beyond this tick's held-back frames says the reader is slow.
    return socket.writableLength - this.pending;
  }

  /** @internal Release this tick's cork. */
  uncork(): void {
    this.pending = -1;
    this.socket.uncork();
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  terminate(): void {
    this.ws.terminate();
  }

  ping(): void {
    // The same two bytes for every connection: no frame is built per ping.
    if (this.ws.readyState === 1) this.socket.write(PING_FRAME);
  }

  pong(payload: Uint8Array): void {
    if (this.ws.readyState === 1) this.ws.pong(payload);
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }
}

function refuse(socket: Duplex, status: number, headers: Readonly<Record<string, string>>, reason: RejectReason, detail: string | undefined): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.on('error', ignore); // a peer that resets before reading the answer
  const body = `${detail ?? REASON_TEXT[reason]}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.once('finish', () => socket.destroy());
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

function ignore(): void {}

/** An unmasked ping control frame with an empty payload. */
const PING_FRAME = Buffer.from([0x89, 0x00]);

// One set of ws listeners shared by every connection (no closures per connection): each
// finds its hub listener on the WebSocket it is called on.
const kListener = Symbol('roomwire.listener');
type Tagged = WebSocket & { [kListener]: TransportListener };

function onMessage(this: Tagged, data: Buffer, isBinary: boolean): void {
  this[kListener].message(isBinary ? '' : data.toString(), isBinary, data.length);
}
function onPong(this: Tagged): void {
  this[kListener].pong();
}
function onPing(this: Tagged, payload: Buffer): void {
  this[kListener].ping(payload);
}
function onClose(this: Tagged, code: number, reason: Buffer): void {
  this[kListener].closed(code, reason.toString());
}

/**
 * Create the upgrade handler of `hub`: route (paths outside the base path return
 * false), admit (contract section 1, answering refusals with a plain HTTP response),
 * then complete the handshake with `ws` and hand the connection to the hub.
 *
 * @example
 * ```ts
 * const handle = createUpgradeHandler(hub);
 * server.on('upgrade', (req, socket, head) => {
 *   if (!handle(req, socket, head)) otherHandler(req, socket, head);
 * });
 * ```
 */
export function createUpgradeHandler(hub: Hub): UpgradeHandler {
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    // The hub closes a message over maxMessageSize with 1009 and a reason naming the limit;
    // ws's own limit, 64 KiB higher, only bounds what one message may buffer before that.
    maxPayload: hub.config.maxMessageSize + 64 * 1024,
    // The hub answers pings itself: they spend the message rate, and one over it gets no pong.
    autoPong: false,
  });

  const proceed = (admission: Admission, req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!admission.accepted) {
      refuse(socket, admission.status, admission.headers, admission.reason, admission.detail);
      return;
    }
    const { ticket } = admission;
    if (socket.destroyed) {
      ticket.cancel();
      return;
    }
    let opened = false;
    wss.handleUpgrade(req, socket, head, (ws) => {
      opened = true;
      socket.off('error', ignore); // if the admission was asynchronous; a no-op otherwise
      const tagged = ws as Tagged;
      // Protocol errors (bad UTF-8, oversized frames) are answered and closed by ws itself.
      ws.on('error', ignore);
      try {
        tagged[kListener] = ticket.open(new WsTransport(ws, socket));
      } catch (err) {
        ws.terminate();
        throw err;
      }
      tagged.on('message', onMessage as (this: WebSocket, ...args: unknown[]) => void);
      tagged.on('pong', onPong as (this: WebSocket) => void);
      tagged.on('ping', onPing as (this: WebSocket, ...args: unknown[]) => void);
      tagged.on('close', onClose as (this: WebSocket, ...args: unknown[]) => void);
    });
    // ws completes the handshake synchronously or refuses it (400) without the callback.
    if (!opened) ticket.cancel();
  };

  const failed = (err: unknown, socket: Duplex): void => {
    socket.destroy();
    try {
      hub.emit('error', new RoomwireError('ERR_TRANSPORT', 'upgrade failed', { cause: err }), undefined);
    } catch {
      // nowhere left to report a throwing 'error' listener
    }
  };

  return (req, socket, head) => {
    headersComplete(socket);
    const route = hub.route(req.url ?? '/');
    if (route === undefined) return false;
    try {
      const admission = hub.admit({ url: req.url, headers: req.headers, remoteAddress: req.socket.remoteAddress }, route);
      if (admission instanceof Promise) {
        // While the hub decides, nobody else listens for the socket's errors (a reset
        // peer); ws takes over in handleUpgrade.
        socket.on('error', ignore);
        admission.then((a) => proceed(a, req, socket, head)).catch((err: unknown) => failed(err, socket));
      } else {
        proceed(admission, req, socket, head);
      }
    } catch (err) {
      failed(err, socket);
    }
    return true;
  };
}

/**
 * Attach `hub` to a Node `http.Server` or `https.Server`: upgrades under the hub's base
 * path become hub connections; other paths are left to the server's other `upgrade`
 * listeners, or, when there are none, answered by its `request` listeners as Node would
 * without any `upgrade` listener. Close the hub with `hub.close()` (1001 to every client) before closing
 * the server.
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { createHub } from 'roomwire';
 * import { attach } from 'roomwire/node';
 *
 * const hub = createHub({ jwt: { secret: process.env.JWT_SECRET } });
 * const server = http.createServer((req, res) => res.end('hello'));
 * attach(hub, server);
 * server.listen(8080);
 * ```
 */
export function attach(hub: Hub, server: UpgradeEmitter): Attachment {
  const handleUpgrade = createUpgradeHandler(hub);
  const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (handleUpgrade(req, socket, head)) return;
    // Not the hub's path, and no other upgrade listener will take it: answer it as HTTP.
    if (server.listenerCount('upgrade') === 1) answerAsRequest(server, req, socket);
  };
  server.on('upgrade', listener);
  return {
    handleUpgrade,
    detach: () => {
      server.off('upgrade', listener);
    },
  };
}
