/** Real `ws` clients and raw upgrade requests for end-to-end tests. */
import http from 'node:http';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { checkServerFrame } from './frames';

export type Frame = Record<string, unknown> & { type: string };

/** A real WebSocket client that buffers every frame it receives. */
export class Peer {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString()) as Frame;
      checkServerFrame(frame);
      this.frames.push(frame);
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('error', () => {});
  }

  /** Connect; resolves once open, rejects with the HTTP status when refused. */
  static open(url: string, options: WebSocket.ClientOptions = {}): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options);
      const peer = new Peer(ws);
      ws.once('open', () => resolve(peer));
      ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`refused with ${res.statusCode}`), { status: res.statusCode, headers: res.headers }));
        res.resume();
      });
      ws.once('error', reject);
    });
  }

  /** The next frame not yet taken (waits up to `timeout` ms). */
  async next(timeout = 3000): Promise<Frame> {
    const deadline = Date.now() + timeout;
    while (this.frames.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no frame arrived in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.frames.shift() as Frame;
  }

  /** Frames until (and including) the first that `match`es; fails if it does not come within `timeout` ms. */
  async until(match: (f: Frame) => boolean, timeout = 3000): Promise<Frame[]> {
    const seen: Frame[] = [];
    const deadline = Date.now() + timeout;
    for (;;) {
      const f = await this.next(Math.max(1, deadline - Date.now()));
      seen.push(f);
      if (match(f)) return seen;
    }
  }

  /** The next `n` frames. */
  async take(n: number, timeout = 3000): Promise<Frame[]> {
    const out: Frame[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeout));
    return out;
  }

  /** Assert that nothing arrives for `ms` (a round trip through ping/pong proves the server is quiet). */
  async quiet(ms = 150): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.frames.length > 0) throw new Error(`unexpected frames: ${JSON.stringify(this.frames)}`);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Round trip: send an application ping and return its pong (proves ordering and liveness). */
  async roundTrip(): Promise<void> {
    this.send({ type: 'ping' });
    const f = await this.next();
    if (f.type !== 'pong') throw new Error(`expected pong, got ${JSON.stringify(f)}`);
  }

  close(): void {
    this.ws.close();
  }
}

/** Status, headers and body of an upgrade request; 101 when it was upgraded (the socket is then closed). */
export function upgrade(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  host = '127.0.0.1',
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host,
      port,
      path,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

export const SECRET = 'test-secret-that-is-long-enough-for-hs512-0123456789abcdef0123456789';

/** Sign an HS256 (by default) JWT for tests. */
export async function sign(
  claims: Record<string, unknown>,
  options: { secret?: string; alg?: string; expiresIn?: number | string } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'HS256' }).setIssuedAt();
  if (options.expiresIn !== undefined) jwt.setExpirationTime(options.expiresIn);
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

/** Sleep. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
