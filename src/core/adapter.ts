/**
 * The adapters' handle on a hub: route, admit (and, through the ticket, open). An
 * application never needs it, so it is not a method of {@link Hub}: an adapter asks for
 * it with {@link adapterHandle}.
 */
import type { Admission } from './admission';
import type { Hub } from './api';
import type { HubConfig } from './config';
import { RoomwireError } from './errors';
import type { Route } from './routes';
import type { UpgradeRequest } from './types';

/**
 * What an adapter may do with a hub: classify a request target, decide an upgrade, and
 * report a failure of its own. `roomwire/node` and every framework adapter are built on
 * it; write your own adapter (another WebSocket library, another server) the same way.
 */
export interface AdapterHandle {
  /** The hub's configuration (its base path, `maxMessageSize` for the transport's own limit). */
  readonly config: HubConfig;
  /** Classify a request target; undefined when it is outside the base path (not the hub's). */
  route(url: string): Route | undefined;
  /**
   * Decide an upgrade request (docs/protocol.md section 1): route (404), enabled (503),
   * Origin (403), attempts per address (429), capacity (503), token (401), in that
   * order. On acceptance, perform the handshake and call `ticket.open(transport)` (or
   * `ticket.cancel()` when it fails). The answer is synchronous when deciding needs no
   * asynchronous work (no token, or a synchronous `authenticate`), else a promise.
   *
   * @param route - the request's route, when the caller has matched it already
   */
  admit(request: UpgradeRequest, route?: Route): Admission | Promise<Admission>;
  /** Report a failure of the adapter (an upgrade that threw): logged, and emitted as an `ERR_TRANSPORT` `error` event. */
  failed(message: string, cause: unknown): void;
}

/**
 * Where a hub keeps its adapter handle: a registered symbol, so a hub made by one copy
 * of roomwire (the ESM build) is understood by an adapter of another (the CJS build).
 */
export const ADAPTER_HANDLE: unique symbol = Symbol.for('roomwire.adapterHandle') as never;

/**
 * The adapter handle of `hub`. Throws an `ERR_INVALID_ARGUMENT` {@link RoomwireError}
 * when `hub` was not made by {@link createHub}.
 *
 * @example
 * ```ts
 * const { route, admit } = adapterHandle(hub);
 * const admission = await admit({ url: req.url, headers: req.headers, remoteAddress });
 * if (admission.accepted) admission.ticket.open(myTransport);
 * ```
 */
export function adapterHandle(hub: Hub): AdapterHandle {
  const handle = (hub as { [ADAPTER_HANDLE]?: AdapterHandle } | undefined)?.[ADAPTER_HANDLE];
  if (handle === undefined) throw new RoomwireError('ERR_INVALID_ARGUMENT', 'not a roomwire hub: make one with createHub()');
  return handle;
}
