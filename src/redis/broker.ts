/**
 * `createRedisBroker`: the presence protocol of `src/brokers/presence.ts` over Redis, on the
 * user's own node-redis or ioredis client (or one made from a URL).
 */
import { PresenceBroker } from '../brokers/presence';
import { milliseconds } from '../brokers/presence';
import { RoomwireError } from '../core/errors';
import type { Broker } from '../core/types';
import { RedisBus, redisNames } from './bus';
import { IoredisLink, isIoredis } from './ioredis';
import type { RedisLink } from './link';
import { createNodeRedisClient, isNodeRedis, isNodeRedisSentinel, NodeRedisLink, sentinelUnsupported } from './node-redis';
import { parseRedisUrl } from './url';

/** Options of {@link createRedisBroker}: a `client` or a `url`, and timings. */
export interface RedisBrokerOptions {
  /**
   * Your Redis client, which roomwire duplicates into a publisher and a subscriber (with
   * the offline queue off, so nothing is queued while Redis is down) and never closes:
   * a node-redis v5 client (`createClient`), cluster (`createCluster`) or sentinel client
   * (`createSentinel`), or an ioredis `Redis` (with `sentinels` too) or `Cluster` (ioredis 6
   * for a Cluster: it follows sharded subscriptions through failovers). It need not be
   * connected. A node-redis sentinel client has no `duplicate()`: roomwire duplicates its
   * connection to the master instead, and follows where it points through failovers; it
   * connects the client if it is not open when the hub starts (connect it first if you use
   * it yourself).
   */
  readonly client?: object;
  /**
   * Instead of `client`: `redis://[[user:]password@]host[:port][/db]`, or `rediss://` for
   * TLS, for a node-redis client roomwire makes (the `redis` package must be installed).
   */
  readonly url?: string;
  /** Prefix of every channel and key, so several hubs can share one Redis. @default 'roomwire' */
  readonly prefix?: string;
  /**
   * Milliseconds between this process's beats to the others (its member count: how they
   * know it is alive). Not the hub's heartbeat sweep (`heartbeatInterval`), which pings
   * clients. @default 2000
   */
  readonly beatInterval?: number;
  /**
   * Milliseconds without a word from another process after which it counts as gone and
   * its members leave. Keep it several beats long. @default 10000
   */
  readonly processTimeout?: number;
  /**
   * Milliseconds {@link roomwire!Hub.ready} waits for Redis and for the other processes' states at
   * start; after that the hub serves its own members and keeps trying. @default 3000
   */
  readonly startTimeout?: number;
  /** Milliseconds Redis may leave a PING unanswered before both connections are dropped and reconnected. @default 5000 */
  readonly commandTimeout?: number;
}

/** The link for a user's client. */
function linkFor(client: object): RedisLink {
  if (isIoredis(client)) return new IoredisLink(client as ConstructorParameters<typeof IoredisLink>[0]);
  if (isNodeRedis(client)) return new NodeRedisLink(client as ConstructorParameters<typeof NodeRedisLink>[0]);
  if (isNodeRedisSentinel(client)) {
    const why = sentinelUnsupported(client);
    if (why !== undefined) throw new RoomwireError('ERR_INVALID_ARGUMENT', `client: ${why}`);
    return new NodeRedisLink(client as ConstructorParameters<typeof NodeRedisLink>[0]);
  }
  throw new RoomwireError('ERR_INVALID_ARGUMENT', 'client must be a node-redis v5 client, cluster or sentinel client, or an ioredis Redis or Cluster');
}

/**
 * Create a {@link roomwire!Broker} that spreads one hub over every process using the same Redis
 * (and `prefix`). Pass your own client (node-redis or ioredis: a single node, a Cluster,
 * TLS, Sentinel), or a `url`. {@link roomwire/redis!redisBrokerFromEnv}
 * creates one from the `WEBSOCKET_REDIS_*` variables. Throws an `ERR_INVALID_ARGUMENT`
 * {@link roomwire!RoomwireError} for a bad URL, client or timing, or when `url` is given and the
 * `redis` package is not installed.
 *
 * @example
 * ```ts
 * import { createClient } from 'redis';
 * import { createHub } from 'roomwire';
 * import { createRedisBroker } from 'roomwire/redis';
 *
 * const hub = createHub({ broker: createRedisBroker({ client: createClient({ url: process.env.REDIS_URL }) }) });
 * await hub.ready();
 * ```
 */
export function createRedisBroker(options: RedisBrokerOptions): Broker {
  if ((options.client === undefined) === (options.url === undefined)) {
    throw new RoomwireError('ERR_INVALID_ARGUMENT', 'createRedisBroker needs either client (a node-redis or ioredis client) or url');
  }
  let client = options.client;
  if (client === undefined) {
    try {
      parseRedisUrl(String(options.url));
    } catch (err) {
      throw new RoomwireError('ERR_INVALID_ARGUMENT', `url: ${(err as Error).message}`, { cause: err });
    }
    client = createNodeRedisClient({ urls: [String(options.url)], mode: 'single', sentinelName: undefined, tlsCa: undefined, tlsCert: undefined, tlsKey: undefined });
  } else if (typeof client !== 'object' || client === null) {
    throw new RoomwireError('ERR_INVALID_ARGUMENT', 'client must be a node-redis v5 client, cluster or sentinel client, or an ioredis Redis or Cluster');
  }
  const prefix = options.prefix ?? 'roomwire';
  if (!/^[\w.:-]{1,64}$/.test(prefix)) throw new RoomwireError('ERR_INVALID_ARGUMENT', `prefix must be 1 to 64 letters, digits or . _ : -, not "${prefix}"`);
  const commandTimeout = milliseconds('commandTimeout', options.commandTimeout, 5000);
  // Timings are checked before any connection is made.
  const protocol = { beatInterval: options.beatInterval, processTimeout: options.processTimeout, startTimeout: options.startTimeout };
  const bus = new RedisBus(linkFor(client), redisNames(prefix), commandTimeout);
  return new PresenceBroker(bus, protocol);
}
