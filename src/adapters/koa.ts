/**
 * `roomwire/koa`: attach a hub to a Koa application. Koa fires no
 * `upgrade` events itself; the hub listens on the `http.Server` that `app.listen()`
 * returns (or one you created with `http.createServer(app.callback())`). Other upgrade paths are
 * left to the application.
 *
 * @packageDocumentation
 * @module roomwire/koa
 */
import type { Hub } from '../core/api';
import { attachAppOrServer, type ListeningApp } from './listen';
import type { Attachment, UpgradeEmitter } from './node';

export type { Attachment, UpgradeEmitter } from './node';
export type { ListeningApp } from './listen';

/**
 * Attach `hub` to a Koa app or to its server.
 *
 * Pass the app before calling `app.listen()`, and every server `listen()` creates is
 * attached; or pass the `http.Server` (what `app.listen()` returns, or your own
 * `http.createServer(app.callback())`).
 *
 * @example
 * ```ts
 * import Koa from 'koa';
 * import { createHub, configFromEnv } from 'roomwire';
 * import { attach } from 'roomwire/koa';
 *
 * const app = new Koa();
 * const hub = createHub(configFromEnv());
 * attach(hub, app.listen(8080));
 * ```
 */
export function attach(hub: Hub, appOrServer: ListeningApp | UpgradeEmitter): Attachment {
  return attachAppOrServer(hub, appOrServer);
}
