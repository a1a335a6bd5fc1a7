/**
 * A small Redis client for the Redis broker: RESP2 over one TCP (or TLS) socket,
 * pipelined commands answered in order, pub/sub pushes, and reconnection with a capped
 * backoff. It does only what the broker needs, so roomwire carries no Redis dependency.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { RedisEndpoint } from './redis-url';

/** A RESP2 reply: simple and bulk strings, integers, nil, arrays, or a server error. */
export type Reply = string | number | null | Reply[] | RedisReplyError;

/**
 * An error reply (`-ERR ...`) from the server, or, with `local` set, a command that could
 * not be answered because the connection is down or was lost.
 */
export class RedisReplyError extends Error {
  override name = 'RedisReplyError';

  constructor(
    message: string,
    /** True when the error is the connection's, not a reply from Redis. */
    readonly local = false,
  ) {
    super(message);
  }
}

/** Marks an array header inside the reader (never a reply). */
const OPEN = '\u0000roomwire:resp:open';

const INCOMPLETE = Symbol('incomplete');
const CR = 13;
const EMPTY = Buffer.alloc(0);

/** An array whose elements are still arriving. */
interface OpenArray {
  readonly items: Reply[];
  left: number;
}

/**
 * Incremental RESP2 reader: feed it chunks as they arrive and it calls `onReply` once per
 * complete top-level reply, in order. Work is linear in the bytes received: elements
 * already read are kept (arrays are built up across chunks), and a bulk string of known
 * length is not looked at again until all its bytes are there.
 */
export class RespReader {
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Chunks received while waiting for `need` bytes. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes from `pos` needed before reading can go on. */
  private need = 0;
  private readonly open: OpenArray[] = [];

  constructor(private readonly onReply: (reply: Reply) => void) {}

  /** Add received bytes; throws on bytes that are not RESP2 (the connection is then useless). */
  feed(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.buf.length - this.pos + this.pendingBytes < this.need) return;
    const rest = this.pos < this.buf.length ? [this.buf.subarray(this.pos)] : [];
    this.buf = rest.length === 0 && this.pending.length === 1 ? chunk : Buffer.concat([...rest, ...this.pending]);
    this.pos = 0;
    this.pending = [];
    this.pendingBytes = 0;
    this.need = 0;
    this.drain();
  }

  /** Forget everything buffered (after the socket is gone). */
  reset(): void {
    this.buf = EMPTY;
    this.pos = 0;
    this.pending = [];
    this.pendingBytes = 0;
    this.need = 0;
    this.open.length = 0;
  }

  private drain(): void {
    for (;;) {
      const start = this.pos;
      let value = this.element();
      if (value === INCOMPLETE) {
        this.need = Math.max(this.need, 1) + (this.pos - start);
        this.pos = start;
        return;
      }
      if (Array.isArray(value) && value.length > 0 && value[0] === OPEN) {
        this.open.push({ items: [], left: value[1] as number });
        continue;
      }
      // Close every array this element completes.
      for (;;) {
        const top = this.open[this.open.length - 1];
        if (top === undefined) {
          this.onReply(value);
          break;
        }
        top.items.push(value);
        if (--top.left > 0) break;
        this.open.pop();
        value = top.items;
      }
    }
  }

  private line(): string | typeof INCOMPLETE {
    const buf = this.buf;
    const end = buf.indexOf(CR, this.pos);
    if (end < 0 || end + 1 >= buf.length) {
      this.need = buf.length - this.pos + 1;
      return INCOMPLETE;
    }
    const text = buf.toString('utf8', this.pos, end);
    this.pos = end + 2;
    return text;
  }

  private length(text: string): number {
    if (!/^-?\d+$/.test(text)) throw new Error(`malformed RESP length "${text}"`);
    return Number(text);
  }

  /** One scalar, or the header of a non-empty array as `[OPEN, n]`; `need` is set when incomplete. */
  private element(): Reply | typeof INCOMPLETE {
    this.need = 0;
    if (this.pos >= this.buf.length) return INCOMPLETE;
    const type = this.buf[this.pos++];
    const text = this.line();
    if (text === INCOMPLETE) return INCOMPLETE;
    switch (type) {
      case 0x2b: // +
        return text;
      case 0x2d: // -
        return new RedisReplyError(text);
      case 0x3a: // :
        return this.length(text);
      case 0x24: { // $
        const n = this.length(text);
        if (n < 0) return null;
        if (this.buf.length < this.pos + n + 2) {
          this.need = n + 2;
          return INCOMPLETE;
        }
        const s = this.buf.toString('utf8', this.pos, this.pos + n);
        this.pos += n + 2;
        return s;
      }
      case 0x2a: { // *
        const n = this.length(text);
        if (n < 0) return null;
        return n === 0 ? [] : [OPEN, n];
      }
      default:
        throw new Error(`unexpected RESP type byte ${String(type)}`);
    }
  }
}

/** Encode one command as a RESP2 array of bulk strings. */
export function encodeCommand(args: readonly string[]): string {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return out;
}

type Waiter = ((reply: Reply) => void) | null;

/** What a {@link RedisConnection} tells its owner. */
export interface RedisConnectionEvents {
  /** The socket is connected, authenticated and on the right database. */
  up(): void;
  /** The socket is gone (a reconnect is already scheduled unless the connection was closed). */
  down(err: Error): void;
  /** A pub/sub `message` push. */
  message?(channel: string, payload: string): void;
}

/** Timings of a {@link RedisConnection}, in milliseconds. */
export interface RedisConnectionTimings {
  /** First reconnect delay; doubles per failed attempt. @default 50 */
  readonly retryMin?: number;
  /** Largest reconnect delay. @default 1000 */
  readonly retryMax?: number;
  /** Give up a connect attempt, or a socket whose oldest command has no reply, after this long. @default 5000 */
  readonly timeout?: number;
}

/**
 * One Redis socket that reconnects by itself until closed. Commands sent while it is down
 * fail at once: nothing is queued offline, so nothing stale is sent after a reconnect.
 */
export class RedisConnection {
  private socket: net.Socket | undefined;
  private ready = false;
  private corked = false;
  private dropped = false;
  private lastCheck = 0;
  private stalledAt = 0;
  private closed = false;
  private retries = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private readonly waiters: Waiter[] = [];
  private readonly sentAt: number[] = [];
  /** Replies still expected per command in `waiters`. */
  private readonly counts: number[] = [];
  private readonly reader: RespReader;
  private readonly retryMin: number;
  private readonly retryMax: number;
  private readonly timeout: number;

  constructor(
    private readonly endpoint: RedisEndpoint,
    private readonly events: RedisConnectionEvents,
    timings: RedisConnectionTimings = {},
  ) {
    this.retryMin = timings.retryMin ?? 50;
    this.retryMax = timings.retryMax ?? 1000;
    this.timeout = timings.timeout ?? 5000;
    this.reader = new RespReader((reply) => this.onReply(reply));
  }

  /** Whether commands can be sent now. */
  get isUp(): boolean {
    return this.ready;
  }

  /** Start connecting (and keep reconnecting until {@link RedisConnection.close}). */
  connect(): void {
    if (this.closed || this.socket !== undefined) return;
    const { host, port } = this.endpoint;
    const socket = this.endpoint.tls ? tls.connect({ host, port, servername: net.isIP(host) === 0 ? host : undefined }) : net.connect({ host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 5000);
    socket.setTimeout(this.timeout, () => socket.destroy(new Error(`no answer from Redis at ${host}:${port} within ${this.timeout} ms`)));
    // The timeout stays on through the handshake: a peer that accepts and never answers
    // (a proxy with no backend) is dropped and retried like a refused connection.
    socket.on(this.endpoint.tls ? 'secureConnect' : 'connect', () => this.handshake());
    socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.feed(chunk);
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    let failure: Error | undefined;
    socket.on('error', (err) => (failure = err)); // 'close' follows and reports it
    socket.on('close', () => this.onClose(socket, failure ?? new Error('Redis closed the connection')));
  }

  private handshake(): void {
    const { username, password, database } = this.endpoint;
    const steps: string[][] = [];
    if (password !== undefined) steps.push(username === undefined ? ['AUTH', password] : ['AUTH', username, password]);
    if (database !== undefined) steps.push(['SELECT', String(database)]);
    steps.push(['PING']);
    let left = steps.length;
    let failed = false;
    for (const step of steps) {
      this.write(step, (reply) => {
        if (failed) return;
        if (reply instanceof RedisReplyError) {
          failed = true;
          this.socket?.destroy(new Error(`Redis refused ${step[0]}: ${reply.message}`));
          return;
        }
        if (--left === 0) {
          this.socket?.setTimeout(0);
          this.ready = true;
          this.retries = 0;
          this.lastCheck = Date.now();
          this.watchdog = setInterval(() => this.checkStalled(), Math.max(100, this.timeout / 2));
          this.watchdog.unref();
          this.events.up();
        }
      });
    }
  }

  private checkStalled(): void {
    const now = Date.now();
    const period = Math.max(100, this.timeout / 2);
    // This process was stalled longer than the timeout (GC, a long synchronous task):
    // replies may be waiting unread, so the wait counts from now. Shorter lateness, even
    // sustained, is not forgiven, so an unanswering Redis is still dropped under load.
    if (now - this.lastCheck > period + this.timeout) this.stalledAt = now;
    this.lastCheck = now;
    const oldest = this.sentAt[0];
    if (oldest === undefined) return;
    // Judge after the poll phase has read what already arrived.
    setImmediate(() => {
      if (this.sentAt[0] !== oldest) return;
      const waited = Date.now() - Math.max(oldest, this.stalledAt);
      if (waited > this.timeout) this.socket?.destroy(new Error(`Redis did not answer within ${this.timeout} ms`));
    });
  }

  private onReply(reply: Reply): void {
    const onMessage = this.events.message;
    if (onMessage !== undefined && Array.isArray(reply) && reply[0] === 'message' && reply.length === 3) {
      onMessage(reply[1] as string, reply[2] as string);
      return;
    }
    // A command with several replies (SUBSCRIBE of n channels) completes on its last one,
    // or on an error, which Redis sends once for the whole command.
    if (this.counts[0] !== undefined && --this.counts[0] > 0 && !(reply instanceof RedisReplyError)) return;
    this.counts.shift();
    this.sentAt.shift();
    const waiter = this.waiters.shift();
    if (waiter) waiter(reply);
  }

  private onClose(socket: net.Socket, err: Error): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.reader.reset();
    const wasUp = this.ready;
    this.ready = false;
    const waiters = this.waiters.splice(0);
    this.sentAt.length = 0;
    this.counts.length = 0;
    const gone = new RedisReplyError(`connection lost: ${err.message}`, true);
    for (const w of waiters) if (w) w(gone);
    if (wasUp || this.retries === 0) this.events.down(err);
    if (this.closed) return;
    const delay = this.dropped ? this.retryMax : Math.min(this.retryMax, this.retryMin * 2 ** this.retries);
    this.dropped = false;
    this.retries++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
    this.retryTimer.unref();
  }

  private write(args: readonly string[], waiter: Waiter, replies = 1): void {
    this.waiters.push(waiter);
    this.counts.push(replies);
    this.sentAt.push(Date.now());
    const socket = this.socket as net.Socket;
    // Commands of one tick leave in one write (a burst of publishes is one system call).
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    socket.write(encodeCommand(args));
  }

  /**
   * Send a command; `onReply` gets its reply, or a {@link RedisReplyError} when the
   * connection is down now or is lost before the reply. `replies` is how many replies
   * the command gets (SUBSCRIBE: one per channel); `onReply` gets the last, or the first
   * error. Returns whether it was sent.
   */
  send(args: readonly string[], onReply: Waiter = null, replies = 1): boolean {
    if (!this.ready) {
      onReply?.(new RedisReplyError('not connected to Redis', true));
      return false;
    }
    this.write(args, onReply, replies);
    return true;
  }

  /** {@link RedisConnection.send} as a promise that rejects on error replies. */
  command(args: readonly string[]): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.send(args, (reply) => (reply instanceof RedisReplyError ? reject(reply) : resolve(reply)));
    });
  }

  /** Drop the socket now (it reconnects after the usual delay), e.g. after a refused SUBSCRIBE. */
  drop(err: Error): void {
    this.dropped = true; // retried after the longest delay: it would be refused again at once
    this.socket?.destroy(err);
  }

  /** Stop reconnecting; say QUIT and wait (at most `timeout` ms) for the server to hang up. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    const socket = this.socket;
    if (socket === undefined) return;
    if (!this.ready) {
      socket.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => socket.destroy(), this.timeout);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.write(['QUIT'], () => socket.end());
    });
  }
}
