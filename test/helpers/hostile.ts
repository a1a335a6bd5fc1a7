/**
 * Helpers for the hostile-input suite: a raw WebSocket client over `net` that does its
 * own handshake, framing and masking (so it can send what no well-behaved client would),
 * raw HTTP requests, and hand-built tokens.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { checkServerFrame } from './frames';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function b64url(text: string | Buffer): string {
  return Buffer.from(text).toString('base64url');
}

/** An unsigned `alg: none` JWT (empty signature segment). */
export function unsignedToken(claims: Record<string, unknown>, alg = 'none'): string {
  return `${b64url(JSON.stringify({ alg, typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}.`;
}

export interface RawFrame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly payload: Buffer;
}

export interface SendOptions {
  fin?: boolean;
  /** Mask the payload (clients must). @default true */
  mask?: boolean;
  /** RSV1-3 bits, already shifted (0x40, 0x20, 0x10). @default 0 */
  rsv?: number;
  /** Announce this payload length instead of the real one (64-bit form). */
  announceLength?: bigint;
}

/** Encode one client frame. */
export function encodeFrame(opcode: number, payload: Buffer, options: SendOptions = {}): Buffer {
  const fin = options.fin ?? true;
  const mask = options.mask ?? true;
  const length = options.announceLength ?? BigInt(payload.length);
  const parts: Buffer[] = [];
  const b0 = (fin ? 0x80 : 0) | (options.rsv ?? 0) | opcode;
  const maskBit = mask ? 0x80 : 0;
  if (options.announceLength === undefined && length < 126n) {
    parts.push(Buffer.from([b0, maskBit | Number(length)]));
  } else if (options.announceLength === undefined && length < 65_536n) {
    const h = Buffer.alloc(4);
    h[0] = b0;
    h[1] = maskBit | 126;
    h.writeUInt16BE(Number(length), 2);
    parts.push(h);
  } else {
    const h = Buffer.alloc(10);
    h[0] = b0;
    h[1] = maskBit | 127;
    h.writeBigUInt64BE(length, 2);
    parts.push(h);
  }
  if (mask) {
    const key = randomBytes(4);
    const masked = Buffer.alloc(payload.length);
    for (let i = 0; i < payload.length; i++) masked[i] = (payload[i] as number) ^ (key[i & 3] as number);
    parts.push(key, masked);
  } else {
    parts.push(payload);
  }
  return Buffer.concat(parts);
}

/** Status line and headers of a raw HTTP response head. */
export interface RawHead {
  readonly status: number;
  readonly headers: Record<string, string>;
}

function parseHead(text: string): RawHead {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: m ? Number(m[1]) : 0, headers };
}

/**
 * A WebSocket client over a raw TCP socket. It performs the opening handshake itself
 * and then sends whatever frames it is told to, valid or not.
 */
export class RawSocket {
  readonly frames: RawFrame[] = [];
  /** The first close frame the server sent: its code (undefined when empty) and reason. */
  closeFrame: { code: number | undefined; reason: string } | undefined;
  /** Resolves when the TCP connection is gone. */
  readonly ended: Promise<void>;
  private buf: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(
    readonly socket: net.Socket,
    rest: Buffer,
  ) {
    this.ended = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => this.feed(chunk));
    socket.on('close', () => this.wake());
    if (rest.length > 0) this.feed(rest);
  }

  /**
   * Open a raw connection and send an upgrade request for `path`. Resolves with the
   * response head, and the socket when the server answered 101 with a correct
   * `Sec-WebSocket-Accept` (else the socket is destroyed).
   */
  static open(
    port: number,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<RawHead & { raw: RawSocket | undefined }> {
    return new Promise((resolve, reject) => {
      const key = randomBytes(16).toString('base64');
      const socket = net.connect(port, '127.0.0.1');
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('error', reject);
        const parsed = parseHead(head.subarray(0, end).toString('latin1'));
        const rest = head.subarray(end + 4);
        const accept = createHash('sha1').update(key + GUID).digest('base64');
        if (parsed.status === 101 && parsed.headers['sec-websocket-accept'] === accept) {
          resolve({ ...parsed, raw: new RawSocket(socket, rest) });
        } else {
          socket.on('error', () => {});
          socket.destroy();
          resolve({ ...parsed, raw: undefined });
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: 127.0.0.1:${port}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Key: ${key}`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private feed(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      let len = (b[1] as number) & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) break;
      const frame: RawFrame = { fin: ((b[0] as number) & 0x80) !== 0, opcode: (b[0] as number) & 0x0f, payload: b.subarray(off, off + len) };
      this.buf = b.subarray(off + len);
      if (frame.opcode === 0x8 && this.closeFrame === undefined) {
        this.closeFrame = {
          code: frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined,
          reason: frame.payload.subarray(2).toString('utf8'),
        };
      }
      this.frames.push(frame);
    }
    this.wake();
  }

  /** Wait (bounded) until `predicate` holds or the connection is gone. */
  private async until(predicate: () => boolean, timeout: number): Promise<void> {
    const deadline = Date.now() + timeout;
    while (!predicate() && !this.socket.destroyed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('raw socket: nothing arrived in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next text frame, parsed as JSON (close and control frames are skipped). */
  async nextJson(timeout = 3000): Promise<Record<string, unknown>> {
    const isText = (f: RawFrame) => f.opcode === 0x1;
    await this.until(() => this.frames.some(isText), timeout);
    const i = this.frames.findIndex(isText);
    if (i < 0) throw new Error(`raw socket closed without a text frame (close: ${JSON.stringify(this.closeFrame)})`);
    const [f] = this.frames.splice(i, 1);
    const frame = JSON.parse((f as RawFrame).payload.toString('utf8')) as Record<string, unknown>;
    checkServerFrame(frame);
    return frame;
  }

  /**
   * Resolve with the server's close frame once the server has sent one and dropped the
   * TCP connection (bounded by `timeout`); undefined if it dropped it without one.
   */
  async serverClosed(timeout = 3000): Promise<{ code: number | undefined; reason: string } | undefined> {
    await this.until(() => this.closeFrame !== undefined, timeout);
    // Answer the close frame as a client must, so the server can finish its handshake.
    if (this.closeFrame !== undefined && !this.socket.destroyed) {
      const code = Buffer.alloc(2);
      code.writeUInt16BE(this.closeFrame.code ?? 1000, 0);
      this.socket.write(encodeFrame(0x8, this.closeFrame.code === undefined ? Buffer.alloc(0) : code));
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.ended, new Promise<void>((r) => (timer = setTimeout(r, timeout)))]);
    clearTimeout(timer);
    if (!this.socket.destroyed) throw new Error('raw socket: the server did not drop the connection');
    return this.closeFrame;
  }

  send(opcode: number, payload: Buffer | string, options?: SendOptions): void {
    this.socket.write(encodeFrame(opcode, typeof payload === 'string' ? Buffer.from(payload) : payload, options));
  }

  sendBytes(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * Send raw bytes as an HTTP request and collect the response until the server closes
 * the connection (bounded). Write errors (the server may reset a connection it refuses
 * before reading it all) are tolerated: the response bytes received count.
 */
export function rawHttp(port: number, request: Buffer | string, timeout = 3000): Promise<RawHead & { text: string }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = received.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      resolve({ ...parseHead(end < 0 ? text : text.slice(0, end)), text });
    };
    const timer = setTimeout(finish, timeout);
    socket.on('data', (c: Buffer) => {
      received = Buffer.concat([received, c]);
    });
    socket.on('error', () => finish());
    socket.on('close', () => finish());
    socket.write(typeof request === 'string' ? Buffer.from(request, 'latin1') : request);
  });
}
