/**
 * `roomwire/redis`: one hub over several processes that share a Redis. Pass its broker to
 * `createHub`; `roomwire` itself loads no Redis code.
 *
 * @example
 * ```ts
 * import { createHub, configFromEnv } from 'roomwire';
 * import { redisBrokerFromEnv } from 'roomwire/redis';
 *
 * // WEBSOCKET_REDIS_URL=redis://redis:6379
 * const hub = createHub({ ...configFromEnv(), broker: redisBrokerFromEnv() });
 * await hub.ready();
 * ```
 *
 * @packageDocumentation
 * @module roomwire/redis
 */
export { createRedisBroker } from '../brokers/redis';
export type { RedisBrokerOptions } from '../brokers/redis';
export { REDIS_FIELDS, redisBrokerFromEnv, redisSettingsFromEnv } from '../brokers/redis-env';
export type { RedisSettings } from '../brokers/redis-env';
