/**
 * `roomwire/fastify`: a Fastify plugin. It attaches a hub to `fastify.server`,
 * decorates the instance with `fastify.roomwire` (the hub), and closes the hub (1001 to
 * every client, spread over the hub's `drainWindow` when set) when Fastify closes. It coexists with `@fastify/websocket` on other
 * paths: upgrades under the hub's base path are claimed before Fastify routes them.
 *
 * @packageDocumentation
 * @module roomwire/fastify
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyPluginCallback } from 'fastify';
import type { Hub, HubOptions } from '../core/api';
import { createHub } from '../core/hub';
import { answerAsRequest } from './http';
import { createUpgradeHandler } from './node';

declare module 'fastify' {
  interface FastifyInstance {
    /** The roomwire hub registered by `roomwire/fastify`. */
    roomwire: Hub;
  }
}

/** Options of the {@link roomwire} plugin: an existing hub, or options to create one. */
export type RoomwirePluginOptions = { hub: Hub } | (HubOptions & { hub?: undefined });

/**
 * The Fastify plugin. Register it once; `fastify.roomwire` is then the hub, on the root
 * instance and in every encapsulated context.
 *
 * Upgrade requests under the hub's base path go to the hub; other paths are left to
 * Fastify and its plugins (`@fastify/websocket` included). `fastify.close()` closes the
 * hub first (every client gets 1001), then the server. With a `drainWindow`
 * (`WEBSOCKET_DRAIN_WINDOW`) the hub drains (docs/protocol.md section 4): the server keeps
 * listening, answering upgrades 503, until the last client is closed.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { configFromEnv } from 'roomwire';
 * import roomwire from 'roomwire/fastify';
 *
 * const app = Fastify();
 * await app.register(roomwire, configFromEnv());
 * app.roomwire.on('join', (client, room) => app.log.info({ room }, 'joined'));
 * await app.listen({ port: 8080 });
 * ```
 */
export const roomwire: FastifyPluginCallback<RoomwirePluginOptions> = (fastify: FastifyInstance, options, done) => {
  const { hub: given, ...hubOptions } = options as { hub?: Hub } & HubOptions;
  let hub: Hub;
  try {
    hub = given ?? createHub(hubOptions);
  } catch (err) {
    done(err as Error);
    return;
  }
  const handle = createUpgradeHandler(hub);
  // Requests the hub has taken. With @fastify/websocket registered, every upgrade is also
  // passed to `fastify.routing`, whose 404 and bad-URL answers would write to a socket the
  // hub owns: routing skips these requests.
  const claimed = new WeakSet<IncomingMessage>();
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (handle(req, socket, head)) claimed.add(req);
    // Not the hub's, and no other upgrade listener (no @fastify/websocket): let Fastify's
    // router answer it as plain HTTP rather than leave it hanging.
    else if (fastify.server.listenerCount('upgrade') === 1) answerAsRequest(fastify.server, req, socket);
  };
  // First in line, so the claim exists before any other upgrade listener runs.
  fastify.server.prependListener('upgrade', onUpgrade);

  const routing = fastify.routing;
  fastify.routing = function route(this: unknown, req, res) {
    if (!claimed.has(req)) routing.call(this, req, res);
  };

  fastify.decorate('roomwire', hub);
  fastify.addHook('preClose', (next) => {
    // With the hub's drainWindow, a drain: Fastify stops listening once it is over.
    hub.close().then(() => next(), next);
  });
  fastify.addHook('onClose', (_instance, next) => {
    fastify.server.off('upgrade', onUpgrade);
    fastify.routing = routing;
    next();
  });
  // With Redis, registration completes once the hub is in step with the other processes.
  hub.ready().then(() => done(), done);
};

// Register at the level of the caller (as fastify-plugin does), so the decorator and the
// hooks are not encapsulated away.
const meta = roomwire as unknown as Record<symbol, unknown>;
meta[Symbol.for('skip-override')] = true;
meta[Symbol.for('fastify.display-name')] = 'roomwire';
meta[Symbol.for('plugin-meta')] = { name: 'roomwire', fastify: '5.x' };

export default roomwire;
