/**
 * Shared by roomwire/express and roomwire/koa: neither framework fires `upgrade` events
 * of its own, so the hub is attached to the `http.Server` their `listen()` creates, or
 * to a server the application made itself.
 */
import type { Hub } from '../core/api';
import { attach as attachToServer, type Attachment, type UpgradeEmitter } from './node';

/** An application whose `listen()` creates and returns an `http.Server` (Express, Koa). */
export interface ListeningApp {
  listen(...args: never[]): UpgradeEmitter;
}

function isServer(target: UpgradeEmitter | ListeningApp): target is UpgradeEmitter {
  return typeof (target as { address?: unknown }).address === 'function';
}

/** The server a request came in through, from a request (Express) or a context (Koa). */
function serverOf(first: unknown): UpgradeEmitter | undefined {
  const req = (first as { req?: unknown } | undefined)?.req ?? first;
  return (req as { socket?: { server?: UpgradeEmitter } } | undefined)?.socket?.server;
}

/**
 * Attach `hub` to a server, or to every server `app.listen()` creates from now on (the
 * app's own `listen` is wrapped, on that app only). An app that was listening already,
 * before `attach`, is found at its first request (Express's `handle`, Koa's
 * `handleRequest` are wrapped on that app): the hub attaches to that server then, with a
 * warning, since upgrades that came before were answered by the app. `detach()` removes
 * the hub's `upgrade` listeners and restores the app.
 *
 * @internal
 */
export function attachAppOrServer(hub: Hub, target: UpgradeEmitter | ListeningApp): Attachment {
  if (isServer(target)) return attachToServer(hub, target);
  const app = target as { listen: (...args: unknown[]) => UpgradeEmitter; handle?: (...args: unknown[]) => unknown; handleRequest?: (...args: unknown[]) => unknown };
  const original = app.listen;
  const attachments: Attachment[] = [];
  const servers = new Set<UpgradeEmitter>();
  const attachTo = (server: UpgradeEmitter): void => {
    if (servers.has(server)) return;
    servers.add(server);
    attachments.push(attachToServer(hub, server));
  };
  app.listen = function listen(this: unknown, ...args: unknown[]) {
    const server = original.apply(this, args);
    attachTo(server);
    return server;
  };
  const method = typeof app.handle === 'function' ? 'handle' : typeof app.handleRequest === 'function' ? 'handleRequest' : undefined;
  const handler = method === undefined ? undefined : app[method];
  if (method !== undefined && handler !== undefined) {
    app[method] = function handle(this: unknown, ...args: unknown[]) {
      const server = serverOf(args[0]);
      if (server !== undefined && !servers.has(server) && typeof server.on === 'function') {
        attachTo(server);
        process.emitWarning(
          'attach(hub, app) came after app.listen(): the hub attached itself to the server at its first request, so WebSocket upgrades before it were answered by the app. Call attach(hub, app) before app.listen(), or pass the server: attach(hub, server)',
          { code: 'ROOMWIRE_ATTACH_LATE' },
        );
      }
      return handler.apply(this, args);
    };
  }
  return {
    handleUpgrade: (req, socket, head) => attachments[0]?.handleUpgrade(req, socket, head) ?? false,
    detach() {
      app.listen = original;
      if (method !== undefined && handler !== undefined) app[method] = handler;
      for (const a of attachments.splice(0)) a.detach();
      servers.clear();
    },
  };
}
