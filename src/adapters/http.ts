/**
 * Plain HTTP on an upgrade socket, for roomwire's adapters and the standalone server:
 * the refusal of an upgrade the hub turned down (docs/protocol.md section 1), and the
 * answer to an upgrade request nobody takes. Internal: no package entry re-exports it.
 */
import { STATUS_CODES, ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RejectReason } from '../core/stats';

/**
 * The body of each refusal when admission gives no detail of its own.
 *
 * @internal
 */
export const REASON_TEXT: Readonly<Record<RejectReason, string>> = {
  not_found: 'no WebSocket endpoint at this path',
  disabled: 'WebSockets are disabled',
  origin: 'origin not allowed',
  rate_limited: 'too many connection attempts',
  capacity: 'too many connections',
  unauthorized: 'a valid token is required',
  shutting_down: 'server is shutting down',
  handshake: 'handshake failed',
  user_limit: 'too many connections for this user',
  address_limit: 'too many connections from this address',
};

/**
 * A listener that does nothing: the `error` listener of a socket whose errors (a peer
 * that resets) need no answer.
 *
 * @internal
 */
export function ignore(): void {}

/**
 * Answer a refused upgrade with a plain HTTP response (`Connection: close`, a one-line
 * text body: `detail`, else the reason's text), then close the socket. A socket that can
 * no longer be written to is destroyed.
 *
 * @internal
 */
export function refuse(socket: Duplex, status: number, headers: Readonly<Record<string, string>>, reason: RejectReason, detail: string | undefined): void {
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

/**
 * What {@link answerAsRequest} needs of a server: its `request` listeners.
 *
 * @internal
 */
export interface RequestEmitter {
  listenerCount(event: 'request'): number;
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
export function answerAsRequest(server: RequestEmitter, req: IncomingMessage, socket: Duplex): void {
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
