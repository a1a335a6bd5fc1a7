/**
 * A guard against slowloris: sockets whose first request head is still incomplete are
 * "unfinished". They are capped per client address, and closed with 408 once they have
 * been unfinished for `headersTimeout`. One timer per server checks them, oldest first.
 *
 * The cap tells a burst from a slowloris by age. Node accepts every pending connection of
 * a burst before it reads any of them, so 200 clients connecting at once from one address
 * are all unfinished for a moment, their heads already waiting in the kernel. A socket past
 * the cap is therefore not dropped at once while the address's capped sockets are young:
 * it gets {@link BURST_GRACE} to complete its head, and is destroyed without a response
 * if it has not. Once every capped socket of the address has been unfinished that long (a
 * slowloris holds its sockets; a burst completes them), one more is destroyed at once.
 * A destroyed socket never reaches the hub, so it is no connection attempt.
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
   * Sockets with an unfinished first request per client (TCP peer) address. One more gets
   * one second (or `headersTimeout`, when shorter) to complete its head while the capped
   * sockets are younger than that (a burst of connections), and is destroyed at once when
   * they are all older (a slowloris). @default 32
   */
  readonly maxPerAddress?: number;
}

/** The minimal shape of a server the guard attaches to (`http.Server`, `https.Server`). */
export type GuardedServer = Pick<Server, 'on' | 'off' | 'prependListener'> & { setSecureContext?: unknown };

/** One socket whose first request head is incomplete, and the guard that counts it. */
interface Unfinished {
  readonly address: string;
  readonly since: number;
  /** Past the cap: it has the burst grace, not `headersTimeout`, to complete its head. */
  readonly overflow: boolean;
  readonly release: (socket: Duplex) => void;
}

/** The unfinished sockets of one client address. */
interface AddressCount {
  /** Within the cap. */
  normal: number;
  /** Past the cap, on the burst grace. */
  overflow: number;
  /** When the newest socket within the cap arrived (ms). */
  lastNormal: number;
}

/**
 * Milliseconds a socket past the cap has to complete its request head while the capped
 * sockets of its address are younger than this (see the module's description). A burst's
 * heads are already in the kernel when the sockets are accepted; reading them takes the
 * server milliseconds per hundred.
 */
export const BURST_GRACE = 1000;

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
  const grace = Math.min(timeout, BURST_GRACE);
  const perAddress = new Map<string, AddressCount>();
  // Insertion order is arrival order, so the oldest come first in each set.
  const waiting = new Set<Duplex>();
  const overflow = new Set<Duplex>();

  const release = (socket: Duplex): void => {
    const entry = unfinished.get(socket);
    if (entry === undefined || !(entry.overflow ? overflow : waiting).delete(socket)) return;
    unfinished.delete(socket);
    // The shared `close` listener stays: removing it would often be the last `close`
    // listener of an upgraded socket (Node's http server removes its own at the upgrade),
    // and EventEmitter then `delete`s the key from the socket's `_events`, which turns that
    // object into a dictionary and slows every later event of the socket (about 20% of
    // fan-out deliveries per second in `npm run bench`). Called again, it does nothing.
    const count = perAddress.get(entry.address) as AddressCount;
    if (entry.overflow) count.overflow--;
    else count.normal--;
    if (count.normal === 0 && count.overflow === 0) perAddress.delete(entry.address);
  };
  // One listener shared by every socket of this guard.
  function onClose(this: Duplex): void {
    release(this);
  }

  const onConnection = (socket: Socket): void => {
    const address = socket.remoteAddress ?? '';
    const now = Date.now();
    let count = perAddress.get(address);
    if (count === undefined) perAddress.set(address, (count = { normal: 0, overflow: 0, lastNormal: now }));
    const over = count.normal >= cap;
    if (over && now - count.lastNormal >= grace) {
      // Every capped socket of this address has held an unfinished head for the grace: a
      // slowloris, not a burst.
      socket.destroy();
      return;
    }
    if (over) {
      count.overflow++;
      overflow.add(socket);
    } else {
      count.normal++;
      count.lastNormal = now;
      waiting.add(socket);
    }
    unfinished.set(socket, { address, since: now, overflow: over, release });
    socket.on('close', onClose);
  };
  const onRequest = (req: IncomingMessage): void => headersComplete(req.socket);

  const sweep = (): void => {
    const now = Date.now();
    for (const socket of overflow) {
      if (now - (unfinished.get(socket) as Unfinished).since < grace) break;
      // Past the cap and still unfinished after the grace: dropped without a response.
      release(socket);
      socket.destroy();
    }
    for (const socket of waiting) {
      if (now - (unfinished.get(socket) as Unfinished).since < timeout) break;
      release(socket);
      socket.on('error', ignore);
      if (socket.writable) socket.end(TIMEOUT_RESPONSE);
      // A peer that does not read the answer is not waited for.
      setTimeout(() => socket.destroy(), 1000).unref();
    }
  };
  const timer = setInterval(sweep, Math.max(50, Math.min(250, Math.floor(grace / 4))));
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
    for (const socket of [...waiting, ...overflow]) release(socket);
    perAddress.clear();
  };
}

function ignore(): void {}
