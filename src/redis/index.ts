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
export { createRedisBroker } from './broker';
export type { RedisBrokerOptions } from './broker';
export { REDIS_FIELDS, redisBrokerFromEnv, redisSettingsFromEnv } from './env';
export type { RedisClientLibrary, RedisMode, RedisSettings } from './env';
