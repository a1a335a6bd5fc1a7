/**
 * `createHub`: assemble a hub from its configuration and seams, and the {@link Hub}
 * facade the application holds. The work is done by the {@link Engine} (connections,
 * rooms, messages, delivery) and the {@link Admitter} (upgrade decisions); adapters
 * reach the latter through `adapterHandle(hub)`, brokers reach the former through a
 * `BrokerHost`. Nothing here imports `node:http`, `ws` or a broker of another layer.
 */
import { EventEmitter } from 'eventemitter3';
import { ADAPTER_HANDLE, type AdapterHandle } from './adapter';
import { Admitter } from './admission';
import type { CloseOptions, Hub, HubEvents, HubOptions, HubStats, PublishOptions } from './api';
import { createJwtVerifier, defaultAuthenticate } from './auth';
import { systemClock } from './clock';
import { resolveConfig, type HubConfig } from './config';
import { Engine } from './engine';
import { SILENT, guardLogger } from './log';
import { createMemoryBroker } from './memory-broker';
import type { Client } from './types';

/** The application's view of a hub; its engine and admission are out of reach. */
class RoomwireHub extends EventEmitter<HubEvents> implements Hub {
  readonly config: HubConfig;
  readonly #engine: Engine;
  readonly #admitter: Admitter;
  readonly #stopSweep: () => void;
  readonly #started: Promise<void>;

  constructor(options: HubOptions) {
    super();
    const config = (this.config = resolveConfig(options));
    const custom = options.authenticate;
    const hasKey = config.jwt.secret !== undefined || config.jwt.publicKey !== undefined || config.jwt.jwksUrl !== undefined;
    const clock = options.clock ?? systemClock;
    const log = options.logger === undefined ? SILENT : guardLogger(options.logger);
    if (config.requireAuth && !hasKey && custom === undefined) {
      // Not an error (contract section 1): a token is required and none can be verified, so
      // every upgrade is refused with 401, whose body names the missing key.
      log.warn({ variable: 'WEBSOCKET_REQUIRE_AUTH' }, 'requireAuth (WEBSOCKET_REQUIRE_AUTH) is on but no key is set to verify tokens (jwt.secret, jwt.publicKey, jwt.jwksUrl or an authenticate function): every WebSocket upgrade is refused with 401');
    }
    if (config.jwt.secret !== undefined && Buffer.byteLength(config.jwt.secret) < 32) {
      // RFC 7518 section 3.2: an HS256 key must be at least as long as the hash (32 bytes).
      log.warn({ bytes: Buffer.byteLength(config.jwt.secret) }, 'the JWT secret (WEBSOCKET_JWT_SECRET) is shorter than 32 bytes: a short HMAC secret can be guessed offline from any one token; use 32 random bytes or more (RFC 7518)');
    }
    const verifyJwt = createJwtVerifier(config.jwt, () => clock.now());
    const authenticate = custom ?? defaultAuthenticate;
    const engine = new Engine({
      config,
      clock,
      log,
      broker: options.broker ?? createMemoryBroker(),
      hooks: { canJoin: options.canJoin, canPublish: options.canPublish },
      historyFor: options.historyFor,
      maxConnectionsFor: options.maxConnectionsFor,
      authenticate,
      verifyJwt,
      events: this,
    });
    const admitter = new Admitter(config, clock, log, authenticate, verifyJwt, engine);
    this.#engine = engine;
    this.#admitter = admitter;
    this.#stopSweep = clock.every(engine.sweepInterval, () => {
      const now = clock.now();
      engine.sweep(now);
      admitter.evict(now);
    });
    const handle: AdapterHandle = Object.freeze({
      config,
      route: (url: string) => admitter.route(url),
      admit: (request, route) => admitter.admit(request, route),
      failed: (message: string, cause: unknown) => engine.report('ERR_TRANSPORT', message, cause, undefined),
    } satisfies AdapterHandle);
    // Not enumerable: a hub logged or inspected shows no adapter internals.
    Object.defineProperty(this, ADAPTER_HANDLE, { value: handle });
    this.#started = engine.startBroker();
  }

  get size(): number {
    return this.#engine.size;
  }

  get closing(): boolean {
    return this.#engine.closing;
  }

  get draining(): boolean {
    return this.#engine.draining;
  }

  clients(): Client[] {
    return this.#engine.clients();
  }

  roomNames(): string[] {
    return this.#engine.roomNames();
  }

  members(room: string): Client[] {
    return this.#engine.members(room);
  }

  largestRooms(limit: number): { readonly room: string; readonly members: number }[] {
    return this.#engine.largestRooms(limit);
  }

  publish(room: string, content: string, options?: PublishOptions): Promise<number | undefined> {
    return this.#engine.publish(room, content, options);
  }

  stats(): HubStats {
    return this.#engine.stats(this.#admitter.pending);
  }

  ready(): Promise<void> {
    return this.#started;
  }

  close(options?: CloseOptions): Promise<void> {
    const closed = this.#engine.close(options);
    // A drain keeps the liveness sweep until its last connection is gone.
    if (this.#engine.draining) closed.then(this.#stopSweep, this.#stopSweep);
    else this.#stopSweep();
    return closed;
  }
}

/**
 * Create a hub. Every option is optional; see {@link HubConfig} for the settings and
 * their defaults, and {@link configFromEnv} to read them from the environment. Throws
 * an `ERR_INVALID_CONFIG` {@link RoomwireError} naming every bad option.
 *
 * The hub knows no HTTP framework: attach it with an adapter, {@link roomwire/node!attach}
 * (Node `http`/`https`), {@link roomwire/express!attach}, {@link roomwire/koa!attach} or the
 * Fastify plugin {@link roomwire/fastify!roomwire}; or run {@link roomwire/server!startServer}.
 * One process by default; to spread one hub over several, pass a Redis broker from
 * `roomwire/redis` ({@link roomwire/redis!redisBrokerFromEnv}).
 * Its clients connect with {@link roomwire/client!createClient} (or any WebSocket).
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { createHub, configFromEnv } from 'roomwire';
 * import { attach } from 'roomwire/node';
 *
 * const hub = createHub(configFromEnv());
 * const server = http.createServer();
 * attach(hub, server);
 * server.listen(8080);
 * ```
 */
export function createHub(options: HubOptions = {}): Hub {
  return new RoomwireHub(options);
}
