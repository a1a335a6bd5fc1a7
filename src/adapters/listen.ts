/**
 * Shared by roomwire/express and roomwire/koa: neither framework fires `upgrade` events
 * of its own, so the hub is attached to the `http.Server` their `listen()` creates, or
 * to a server the application made itself.
 */
import type { Hub } from '../core/hub';
import { attach as attachToServer, type Attachment, type UpgradeEmitter } from './node';

/** An application whose `listen()` creates and returns an `http.Server` (Express, Koa). */
export interface ListeningApp {
  listen(...args: never[]): UpgradeEmitter;
}

function isServer(target: UpgradeEmitter | ListeningApp): target is UpgradeEmitter {
  return typeof (target as { address?: unknown }).address === 'function';
}

/**
 * Attach `hub` to a server, or to every server `app.listen()` creates from now on (the
 * app's own `listen` is wrapped, on that app only). `detach()` removes the hub's
 * `upgrade` listeners and restores `listen`.
 *
 * @internal
 */
export function attachAppOrServer(hub: Hub, target: UpgradeEmitter | ListeningApp): Attachment {
  if (isServer(target)) return attachToServer(hub, target);
  const app = target as { listen: (...args: unknown[]) => UpgradeEmitter };
  const original = app.listen;
  const attachments: Attachment[] = [];
  app.listen = function listen(this: unknown, ...args: unknown[]) {
    const server = original.apply(this, args);
    attachments.push(attachToServer(hub, server));
    return server;
  };
  return {
    handleUpgrade: (req, socket, head) => attachments[0]?.handleUpgrade(req, socket, head) ?? false,
    detach() {
      app.listen = original;
      for (const a of attachments.splice(0)) a.detach();
    },
  };
}
