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
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { adapterHandle } from '../core/adapter';
import type { Admission } from '../core/admission';
import type { Hub } from '../core/api';
import { answerAsRequest, ignore, refuse } from './http';
import { headersComplete } from './unfinished';
import { createHandshake } from './ws-transport';

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

/** What {@link attach} returns. */
export interface Attachment {
  /** The upgrade handler attached to the server. */
  readonly handleUpgrade: UpgradeHandler;
  /** Remove the hub's `upgrade` listener (and only it) from the server. Open connections stay open. */
  detach(): void;
}

/**
 * Create the upgrade handler of `hub`: route (paths outside the base path return
 * false), admit (docs/protocol.md section 1, answering refusals with a plain HTTP
 * response), then complete the handshake with `ws` and hand the connection to the hub.
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
  const handle = adapterHandle(hub);
  const handshake = createHandshake(handle);

  const proceed = (admission: Admission, req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (admission.accepted) handshake(admission.ticket, req, socket, head);
    else refuse(socket, admission.status, admission.headers, admission.reason, admission.detail);
  };

  const failed = (err: unknown, socket: Duplex): void => {
    socket.destroy();
    handle.failed('upgrade failed', err);
  };

  return (req, socket, head) => {
    headersComplete(socket);
    const route = handle.route(req.url ?? '/');
    if (route === undefined) return false;
    try {
      const admission = handle.admit({ url: req.url, headers: req.headers, remoteAddress: req.socket.remoteAddress }, route);
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
 * without any `upgrade` listener. Close the hub with `hub.close()` (1001 to every
 * client) before closing the server.
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
