/**
 * A guard against slowloris: sockets whose first request head is still incomplete are
 * "unfinished". They are capped per client address (a socket past the cap is destroyed
 * at once, without a response, and never reaches the hub, so it is no connection
 * attempt), and closed with 408 once they have been unfinished for `headersTimeout`.
 * One timer per server checks them, oldest first.
 *
 * A request head is complete when the server emits `request` (the guard listens for it)
 * or `upgrade` (roomwire's upgrade handlers tell the guard through
 * {@link headersComplete}, so the guard adds no `upgrade` listener of its own, which
 * would change how Node treats upgrade requests nobody takes).
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { RoomwireError } from '../core/errors';

/** Options of {@link limitUnfinishedRequests}. */
export interface UnfinishedRequestLimits {
  /**
   * Milliseconds a socket may take to send its first complete request head; then it is
   * answered 408 and closed. @default 10000
   */
  readonly headersTimeout?: number;
  /**
   * Sockets with an unfinished first request per client (TCP peer) address; one more is
   * destroyed at once. @default 32
   */
  readonly maxPerAddress?: number;
}

/** The minimal shape of a server the guard attaches to (`http.Server`, `https.Server`). */
export type GuardedServer = Pick<Server, 'on' | 'off' | 'prependListener'> & { setSecureContext?: unknown };

/** One socket whose first request head is incomplete, and the guard that counts it. */
interface Unfinished {
  readonly address: string;
  readonly since: number;
  readonly release: (socket: Duplex) => void;
}

/**
 * The unfinished sockets of every guard in this process. A socket leaves it as soon as its
 * request head is complete (or it closes), so a finished connection carries no state of
 * the guard for the rest of its life but the one `close` listener every socket of the
 * guard shares (no closure, no property).
 */
const unfinished = new Map<Duplex, Unfinished>();

const TIMEOUT_RESPONSE = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

/**
 * Tell the guard of `socket`'s server, if any, that its request head is complete.
 * roomwire's upgrade handlers call this for every upgrade request they see.
 *
 * @internal
 */
export function headersComplete(socket: Duplex): void {
  unfinished.get(socket)?.release(socket);
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RoomwireError('ERR_INVALID_ARGUMENT', `${name} must be an integer of at least 1`);
  return value;
}

/**
 * Cap the sockets of one client address whose first request is still incomplete, and
 * close those that stay incomplete for `headersTimeout` (408). This keeps a slowloris
 * (thousands of sockets, each sending a request head a byte at a time, or never ending it)
 * from holding file descriptors and crowding out real clients and `/healthz`. The
 * standalone server installs it (`HEADERS_TIMEOUT`, `MAX_UNFINISHED_REQUESTS`); install it
 * on your own server when it faces clients directly, before `listen()`. Behind a proxy
 * that buffers request heads (nginx, most load balancers) every socket comes from the
 * proxy: raise `maxPerAddress` above the proxy's concurrent new connections, or rely on
 * the proxy's own limits.
 *
 * Returns a function that removes the guard.
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { attach, limitUnfinishedRequests } from 'roomwire/node';
 *
 * const server = http.createServer(app);
 * limitUnfinishedRequests(server, { headersTimeout: 10_000, maxPerAddress: 32 });
 * attach(hub, server);
 * server.listen(8080);
 * ```
 */
export function limitUnfinishedRequests(server: GuardedServer, limits: UnfinishedRequestLimits = {}): () => void {
  const timeout = positive(limits.headersTimeout ?? 10_000, 'headersTimeout');
  const cap = positive(limits.maxPerAddress ?? 32, 'maxPerAddress');
  const perAddress = new Map<string, number>();
  // Insertion order is arrival order, so the oldest come first.
  const waiting = new Set<Duplex>();

  const release = (socket: Duplex): void => {
    const entry = unfinished.get(socket);
    if (entry === undefined || !waiting.delete(socket)) return;
    unfinished.delete(socket);
    // The shared `close` listener stays: removing it would often be the last `close`
    // listener of an upgraded socket (Node's http server removes its own at the upgrade),
    // and EventEmitter then `delete`s the key from the socket's `_events`, which turns that
    // object into a dictionary and slows every later event of the socket (about 20% of
    // fan-out deliveries per second in `npm run bench`). Called again, it does nothing.
    const n = (perAddress.get(entry.address) as number) - 1;
    if (n === 0) perAddress.delete(entry.address);
    else perAddress.set(entry.address, n);
  };
  // One listener shared by every socket of this guard.
  function onClose(this: Duplex): void {
    release(this);
  }

  const onConnection = (socket: Socket): void => {
    const address = socket.remoteAddress ?? '';
    const n = perAddress.get(address) ?? 0;
    if (n >= cap) {
      socket.destroy();
      return;
    }
    perAddress.set(address, n + 1);
    waiting.add(socket);
    unfinished.set(socket, { address, since: Date.now(), release });
    socket.on('close', onClose);
  };
  const onRequest = (req: IncomingMessage): void => headersComplete(req.socket);

  const sweep = (): void => {
    const now = Date.now();
    for (const socket of waiting) {
      if (now - (unfinished.get(socket) as Unfinished).since < timeout) break;
      release(socket);
      socket.on('error', ignore);
      if (socket.writable) socket.end(TIMEOUT_RESPONSE);
      // A peer that does not read the answer is not waited for.
      setTimeout(() => socket.destroy(), 1000).unref();
    }
  };
  const timer = setInterval(sweep, Math.max(50, Math.min(1000, Math.floor(timeout / 4))));
  timer.unref();

  // An https server's requests arrive on the TLS socket, which it announces once the
  // handshake is over (Node's `handshakeTimeout` bounds that part).
  const opened = typeof server.setSecureContext === 'function' ? 'secureConnection' : 'connection';
  server.prependListener(opened as 'connection', onConnection);
  server.prependListener('request', onRequest);
  return () => {
    clearInterval(timer);
    server.off(opened as 'connection', onConnection);
    server.off('request', onRequest);
    for (const socket of [...waiting]) release(socket);
    perAddress.clear();
  };
}

function ignore(): void {}
