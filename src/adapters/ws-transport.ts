/**
 * The `ws` side of roomwire/node: the handshake of an accepted upgrade, the
 * {@link Transport} over a `ws` WebSocket with its framing fast path, and the one set of
 * `ws` listeners every connection shares. Internal to roomwire's adapters: no package
 * entry re-exports it.
 *
 * The fast path: a text frame is encoded once per broadcast, cached on the
 * {@link Outbound} (`message.frame`), and written as the same bytes straight to every
 * recipient's socket, corked from its first frame of a tick until the tick ends, so a
 * burst (every message parsed from one read) leaves in one system call. It is taken only while `ws`
 * itself has nothing in flight for the socket (see {@link WsTransport}); otherwise the
 * transport falls back to `ws.send`, so frames never interleave with `ws`'s own.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AdapterHandle } from '../core/adapter';
import type { Ticket } from '../core/admission';
import type { Outbound } from '../core/protocol';
import type { Transport, TransportListener } from '../core/types';
import { ignore } from './http';

/**
 * Build the complete WebSocket text frame of `text`: unmasked, as servers send, FIN set,
 * no extension bits (RFC 6455 section 5.2).
 *
 * @internal
 */
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

/** An unmasked ping control frame with an empty payload: the same two bytes for every connection. */
const PING_FRAME = Buffer.from([0x89, 0x00]);

/**
 * The tick and the corked sockets of one hub's transports. Frames sent to one socket
 * within one tick (a burst of messages parsed from one read, several rooms' traffic) leave
 * in one system call: the first corks the socket, and the tick's end (`process.nextTick`)
 * uncorks it. Issue 17's profile of a fan-out run put 58% of the server's busy time in
 * `write`: the first frame of a tick used to go out at once and only the rest were corked,
 * two system calls per socket per burst. Corking from the first frame made it one: server
 * CPU per delivery 0.66x to 0.67x at window 16 in three paired runs, nothing at window 1.
 * (Holding the cork to the end of the event-loop turn, `setImmediate`, gained the same at
 * window 16 and cost 9% at window 1.)
 *
 * One per hub ({@link batcherFor}), so hubs in one process never share this state.
 *
 * @internal
 */
export class WriteBatcher {
  /** Ticks ended so far. */
  tick = 0;
  private scheduled = false;
  private readonly corked: WsTransport[] = [];
  private readonly endTick = (): void => {
    this.scheduled = false;
    this.tick++;
    const corked = this.corked;
    for (let i = 0; i < corked.length; i++) (corked[i] as WsTransport).uncork();
    corked.length = 0;
  };

  /** A transport corked its socket for this tick: end the tick after this one. */
  started(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(this.endTick);
  }

  /** A transport corked its socket: uncork it when the tick ends. */
  hold(transport: WsTransport): void {
    this.corked.push(transport);
  }
}

const batchers = new WeakMap<AdapterHandle, WriteBatcher>();

/**
 * The {@link WriteBatcher} of the hub whose adapter handle this is: the same one for
 * every upgrade handler of that hub (a hub attached to two servers).
 *
 * @internal
 */
export function batcherFor(handle: AdapterHandle): WriteBatcher {
  let batcher = batchers.get(handle);
  if (batcher === undefined) batchers.set(handle, (batcher = new WriteBatcher()));
  return batcher;
}

/**
 * The parts of `ws`'s private `Sender` (`ws._sender`, lib/sender.js) the fast path reads
 * to see whether `ws` has anything in flight for the socket. As of ws 8.18 (8.23 checked):
 * `_state` is 0 (`DEFAULT`) unless a message is being compressed (`DEFLATING`) or a Blob
 * read (`GET_BLOB_DATA`); `_queue` holds the sends waiting for that; `_bufferedBytes`
 * counts their bytes.
 */
interface SenderState {
  readonly _state: number;
  readonly _queue: readonly unknown[];
  readonly _bufferedBytes: number;
}

/**
 * `ws`'s sender when the fast path may be used on `ws`: no extension was negotiated
 * (`ws.extensions`, the accepted `Sec-WebSocket-Extensions`, is empty: no
 * permessage-deflate), and the sender has the fields {@link SenderState} names. Else
 * undefined: every frame then goes through `ws.send`.
 */
function fastPathSender(ws: WebSocket): SenderState | undefined {
  if (ws.extensions !== '') return undefined;
  const sender = (ws as unknown as { _sender?: Partial<SenderState> | null })._sender;
  if (sender == null || typeof sender._state !== 'number' || !Array.isArray(sender._queue) || typeof sender._bufferedBytes !== 'number') return undefined;
  return sender as SenderState;
}

/**
 * The {@link Transport} over a `ws` WebSocket and its socket.
 *
 * Frames (and pings) are written straight to the socket only while that cannot reorder
 * or interleave them with `ws`'s own frames: when no extension was negotiated (with
 * permessage-deflate, `ws` compresses asynchronously and queues what follows) and `ws`
 * has nothing queued or in progress (its sender's `_state` is 0 and its `_queue` and
 * `_bufferedBytes` are empty). Otherwise, and with a `ws` whose sender lacks those
 * fields, they go through `ws.send` / `ws.ping` and keep their order in `ws`'s queue.
 * The adapter's WebSocketServer negotiates no compression, so the fallback is a guard.
 *
 * @internal
 */
export class WsTransport implements Transport {
  /** `ws`'s sender, when the fast path may be used on this socket. */
  private readonly sender: SenderState | undefined;
  /** Bytes held back by the cork this tick; -1 when not corked. */
  private pending = -1;

  /**
   * @param corked - the socket was corked for the handshake (see {@link createHandshake}):
   *   the transport takes the cork over, and the batcher releases it when this tick ends
   */
  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly batcher: WriteBatcher,
    corked = false,
  ) {
    this.sender = fastPathSender(ws);
    if (corked) {
      // The 101 response waits in the cork too; it says nothing about a slow reader.
      this.pending = socket.writableLength;
      batcher.started();
      batcher.hold(this);
    }
  }

  /** True when a frame written to the socket now lands after everything `ws` was given. */
  private direct(): boolean {
    const s = this.sender;
    return s !== undefined && s._state === 0 && s._queue.length === 0 && s._bufferedBytes === 0;
  }

  send(message: Outbound): number {
    if (this.ws.readyState !== 1) return 0;
    if (!this.direct()) {
      this.ws.send(message.text);
      // Frames held back by this tick's cork (if any) do not say the reader is slow.
      return this.ws.bufferedAmount - (this.pending < 0 ? 0 : this.pending);
    }
    let frame = message.frame;
    if (frame === undefined) frame = message.frame = frameText(message.text);
    const socket = this.socket;
    const batcher = this.batcher;
    if (this.pending < 0) {
      batcher.started();
      this.pending = 0;
      socket.cork();
      batcher.hold(this);
    }
    this.pending += frame.length;
    socket.write(frame);
    // Only what waits beyond this tick's held-back frames says the reader is slow.
    return socket.writableLength - this.pending;
  }

  /** Release this tick's cork; called by the {@link WriteBatcher} when the tick ends. */
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
    if (this.ws.readyState !== 1) return;
    if (this.direct()) this.socket.write(PING_FRAME);
    else this.ws.ping();
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

// One set of ws listeners shared by every connection (no closures per connection): each
// finds its hub listener on the WebSocket it is called on.
const kListener = Symbol('roomwire.listener');
type Tagged = WebSocket & { [kListener]: TransportListener };

function onMessage(this: Tagged, data: Buffer, isBinary: boolean): void {
  this[kListener].onMessage(isBinary ? '' : data.toString(), isBinary, data.length);
}
function onPong(this: Tagged): void {
  this[kListener].onPong();
}
function onPing(this: Tagged, payload: Buffer): void {
  this[kListener].onPing(payload);
}
function onClose(this: Tagged, code: number, reason: Buffer): void {
  this[kListener].onClose(code, reason.toString());
}

/**
 * Report `ws`'s events to `listener` (what the ticket's `open` returned) through the
 * shared listeners: messages, pongs, pings and the close.
 *
 * @internal
 */
export function listenTo(ws: WebSocket, listener: TransportListener): void {
  const tagged = ws as Tagged;
  tagged[kListener] = listener;
  tagged.on('message', onMessage as (this: WebSocket, ...args: unknown[]) => void);
  tagged.on('pong', onPong as (this: WebSocket) => void);
  tagged.on('ping', onPing as (this: WebSocket, ...args: unknown[]) => void);
  tagged.on('close', onClose as (this: WebSocket, ...args: unknown[]) => void);
}

/**
 * Completes the handshake of an accepted upgrade: opens `ticket` on a {@link WsTransport}
 * once `ws` has upgraded the socket, or cancels it when the socket is gone or `ws`
 * refuses the handshake (400). A throw from `ticket.open` terminates the WebSocket and
 * is rethrown to the caller.
 *
 * @internal
 */
export type Handshake = (ticket: Ticket, req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/**
 * The {@link Handshake} of the hub whose adapter handle this is, over a `ws`
 * WebSocketServer in noServer mode, without compression (the fast path's premise) and
 * without automatic pongs (the hub answers pings: they spend the message rate).
 *
 * @internal
 */
export function createHandshake(handle: AdapterHandle): Handshake {
  const batcher = batcherFor(handle);
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    // The hub closes a message over maxMessageSize with 1009 and a reason naming the limit;
    // ws's own limit, 64 KiB higher, only bounds what one message may buffer before that.
    maxPayload: handle.config.maxMessageSize + 64 * 1024,
    autoPong: false,
  });
  return (ticket, req, socket, head) => {
    if (socket.destroyed) {
      ticket.cancel();
      return;
    }
    let opened = false;
    // One write for the 101 response and what opening sends (the path join's `join`
    // notice and `user_list`): the transport takes the cork over and releases it when the
    // tick ends, saving two system calls per connection.
    socket.cork();
    wss.handleUpgrade(req, socket, head, (ws) => {
      opened = true;
      socket.off('error', ignore); // if the admission was asynchronous; a no-op otherwise
      // Protocol errors (bad UTF-8, oversized frames) are answered and closed by ws itself.
      ws.on('error', ignore);
      try {
        listenTo(ws, ticket.open(new WsTransport(ws, socket, batcher, true)));
      } catch (err) {
        ws.terminate();
        throw err;
      }
    });
    // ws completes the handshake synchronously or refuses it (400) without the callback.
    if (!opened) {
      socket.uncork();
      ticket.cancel();
    }
  };
}
