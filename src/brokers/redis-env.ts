/**
 * The Redis broker's environment variables: one table, read by {@link redisBrokerFromEnv}
 * and by the standalone server, and checked the way the hub's own table is.
 */
import type { ConfigField, ConfigFromEnvOptions } from '../core/config';
import { PARSERS } from '../core/config';
import { configError, type ConfigIssue } from '../core/errors';
import { createMemoryBroker } from '../core/memory-broker';
import type { Broker } from '../core/types';
import { createRedisBroker, type RedisBrokerOptions } from './redis';
import { maskUrlPassword, parseRedisUrl } from './redis-url';

/** The Redis settings read from the environment; see {@link REDIS_FIELDS}. */
export interface RedisSettings {
  /** `WEBSOCKET_REDIS_URL`: scale out over Redis; unset runs a single process. */
  readonly url: string | undefined;
  /** `WEBSOCKET_REDIS_PREFIX`: prefix of every channel and key. @default 'roomwire' */
  readonly prefix: string;
}

function redisUrl(raw: unknown): string | undefined {
  const s = PARSERS.optionalString(raw);
  if (s === undefined) return undefined;
  try {
    parseRedisUrl(s);
  } catch (err) {
    // The parser's messages show the URL with its password masked; nothing else may echo it.
    throw err instanceof TypeError && err.message.startsWith('"') ? err.message : `"${maskUrlPassword(s)}" is not a URL`;
  }
  return s;
}

function prefix(raw: unknown): string {
  const s = String(raw).trim();
  if (!/^[\w.:-]{1,64}$/.test(s)) throw `must be 1 to 64 letters, digits or . _ : -, not "${String(raw)}"`;
  return s;
}

/** The variables of `roomwire/redis`: name, parser and default of each, in one place. */
export const REDIS_FIELDS: readonly ConfigField[] = [
  { key: 'url', env: 'WEBSOCKET_REDIS_URL', parse: redisUrl, default: undefined },
  { key: 'prefix', env: 'WEBSOCKET_REDIS_PREFIX', parse: prefix, default: 'roomwire' },
];

/** The namespace of the Redis variables. @internal */
export const REDIS_PREFIX = 'WEBSOCKET_REDIS_';

/** Names of the {@link REDIS_FIELDS} variables. */
export const REDIS_VARIABLES: readonly string[] = REDIS_FIELDS.map((f) => f.env);

/**
 * Check and resolve the {@link REDIS_FIELDS} variables of `env` and return the issues
 * found, for callers that report them beside their own (the standalone server).
 *
 * @internal
 */
export function readRedisSettings(env: Record<string, string | undefined>, warn?: ConfigFromEnvOptions['warn']): { settings: RedisSettings; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  const out: Record<string, unknown> = {};
  for (const field of REDIS_FIELDS) {
    const raw = env[field.env];
    try {
      out[field.key] = raw === undefined || raw === '' ? (field.default === undefined ? undefined : field.parse(field.default)) : field.parse(raw);
    } catch (msg) {
      issues.push({ name: field.env, message: String(msg) });
    }
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith(REDIS_PREFIX) && !REDIS_VARIABLES.includes(name)) {
      const message = `${name} is not a roomwire variable and is ignored; the Redis variables are ${REDIS_VARIABLES.join(', ')}`;
      if (warn !== undefined) warn(message);
      else process.emitWarning(message, { code: 'ROOMWIRE_UNKNOWN_VARIABLE' });
    }
  }
  return { settings: out as unknown as RedisSettings, issues };
}

/**
 * Read the Redis settings ({@link REDIS_FIELDS}) from `env`. Throws an
 * `ERR_INVALID_CONFIG` {@link roomwire!RoomwireError} naming every bad variable (a password is
 * never shown), and warns about unknown `WEBSOCKET_REDIS_*` variables.
 */
export function redisSettingsFromEnv(env: Record<string, string | undefined> = process.env, options: ConfigFromEnvOptions = {}): RedisSettings {
  const { settings, issues } = readRedisSettings(env, options.warn);
  if (issues.length > 0) throw configError(issues);
  return settings;
}

/**
 * The broker the environment asks for: a Redis broker when `WEBSOCKET_REDIS_URL` is
 * set, else the in-process broker (one process). The standalone server builds its
 * broker with it; in your own server it is one line.
 *
 * @param options - further Redis broker options (timeouts); `url` and `prefix` come from `env`
 * @example
 * ```ts
 * import { createHub, configFromEnv } from 'roomwire';
 * import { redisBrokerFromEnv } from 'roomwire/redis';
 *
 * const hub = createHub({ ...configFromEnv(), broker: redisBrokerFromEnv() });
 * ```
 */
export function redisBrokerFromEnv(
  env: Record<string, string | undefined> = process.env,
  options: Omit<RedisBrokerOptions, 'url' | 'prefix'> & ConfigFromEnvOptions = {},
): Broker {
  const settings = redisSettingsFromEnv(env, options);
  if (settings.url === undefined) return createMemoryBroker();
  const { warn: _warn, alsoRead: _alsoRead, ...rest } = options;
  return createRedisBroker({ ...rest, url: settings.url, prefix: settings.prefix });
}
