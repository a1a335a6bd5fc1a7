/**
 * The Redis broker's environment variables: one table, read by {@link redisBrokerFromEnv}
 * and by the standalone server, and checked the way the hub's own table is.
 */
import { readFileSync } from 'node:fs';
import type { ConfigField, ConfigFromEnvOptions } from '../core/config';
import { PARSERS } from '../core/config';
import { configError, type ConfigIssue } from '../core/errors';
import { createMemoryBroker } from '../core/memory-broker';
import type { Broker } from '../core/types';
import { createRedisBroker, type RedisBrokerOptions } from './broker';
import { createIoredisClient } from './ioredis-client';
import { createNodeRedisClient } from './node-redis';
import { maskUrlPassword, parseRedisUrl } from './url';

/** How the Redis of `WEBSOCKET_REDIS_URL` is deployed. */
export type RedisMode = 'single' | 'cluster' | 'sentinel';

/** The client library the environment's broker uses: the package name. */
export type RedisClientLibrary = 'redis' | 'ioredis';

/** The Redis settings read from the environment; see {@link REDIS_FIELDS}. */
export interface RedisSettings {
  /** `WEBSOCKET_REDIS_URL` as given: scale out over Redis; unset runs a single process. */
  readonly url: string | undefined;
  /** The URLs of `WEBSOCKET_REDIS_URL`: one in `single` mode, the seed nodes or the sentinels otherwise. */
  readonly urls: readonly string[];
  /** `WEBSOCKET_REDIS_MODE`. @default 'single' */
  readonly mode: RedisMode;
  /** `WEBSOCKET_REDIS_SENTINEL_NAME`: the master set the sentinels watch (sentinel mode). */
  readonly sentinelName: string | undefined;
  /** `WEBSOCKET_REDIS_TLS_CA`: path of the PEM file of the CA that signed the servers' certificates. */
  readonly tlsCa: string | undefined;
  /** `WEBSOCKET_REDIS_TLS_CERT`: path of this client's PEM certificate (with `tlsKey`). */
  readonly tlsCert: string | undefined;
  /** `WEBSOCKET_REDIS_TLS_KEY`: path of this client's PEM private key (with `tlsCert`). */
  readonly tlsKey: string | undefined;
  /** `WEBSOCKET_REDIS_CLIENT`: the library that talks to Redis, `redis` (node-redis) or `ioredis`. @default 'redis' */
  readonly client: RedisClientLibrary;
  /** `WEBSOCKET_REDIS_PREFIX`: prefix of every channel and key. @default 'roomwire' */
  readonly prefix: string;
}

/** One URL, checked; the parser's messages mask the password, and nothing else may echo it. */
function checkUrl(s: string): void {
  try {
    parseRedisUrl(s);
  } catch (err) {
    throw err instanceof TypeError && err.message.startsWith('"') ? err.message : `"${maskUrlPassword(s)}" is not a URL`;
  }
}

function redisUrls(raw: unknown): string | undefined {
  const s = PARSERS.optionalString(raw);
  if (s === undefined) return undefined;
  const urls = s.split(',').map((u) => u.trim());
  if (urls.some((u) => u === '')) throw `has an empty entry in its comma-separated list`;
  for (const u of urls) checkUrl(u);
  const schemes = new Set(urls.map((u) => u.slice(0, u.indexOf(':')).toLowerCase()));
  if (schemes.size > 1) throw `mixes redis:// and rediss:// URLs; use one scheme for every node`;
  return urls.join(',');
}

function mode(raw: unknown): RedisMode {
  const s = String(raw).trim().toLowerCase();
  if (s === 'single' || s === 'cluster' || s === 'sentinel') return s;
  throw `must be single, cluster or sentinel, not "${String(raw)}"`;
}

function sentinelName(raw: unknown): string | undefined {
  const s = PARSERS.optionalString(raw);
  if (s !== undefined && !/^[\w.:-]{1,128}$/.test(s)) throw `must be 1 to 128 letters, digits or . _ : -, not "${s}"`;
  return s;
}

/** A file path that must name a readable file (read again when the client connects). */
function pemFile(raw: unknown): string | undefined {
  const s = PARSERS.optionalString(raw);
  if (s === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(s, 'utf8');
  } catch (err) {
    throw `cannot read "${s}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  if (!text.includes('-----BEGIN ')) throw `"${s}" is not a PEM file`;
  return s;
}

function clientLibrary(raw: unknown): RedisClientLibrary {
  const s = String(raw).trim().toLowerCase();
  if (s === 'redis' || s === 'ioredis') return s;
  throw `must be redis (node-redis) or ioredis, not "${String(raw)}"`;
}

function prefix(raw: unknown): string {
  const s = String(raw).trim();
  if (!/^[\w.:-]{1,64}$/.test(s)) throw `must be 1 to 64 letters, digits or . _ : -, not "${String(raw)}"`;
  return s;
}

/** The variables of `roomwire/redis`: name, parser and default of each, in one place. */
export const REDIS_FIELDS: readonly ConfigField[] = [
  { key: 'url', env: 'WEBSOCKET_REDIS_URL', parse: redisUrls, default: undefined },
  { key: 'mode', env: 'WEBSOCKET_REDIS_MODE', parse: mode, default: 'single' },
  { key: 'sentinelName', env: 'WEBSOCKET_REDIS_SENTINEL_NAME', parse: sentinelName, default: undefined },
  { key: 'tlsCa', env: 'WEBSOCKET_REDIS_TLS_CA', parse: pemFile, default: undefined },
  { key: 'tlsCert', env: 'WEBSOCKET_REDIS_TLS_CERT', parse: pemFile, default: undefined },
  { key: 'tlsKey', env: 'WEBSOCKET_REDIS_TLS_KEY', parse: pemFile, default: undefined },
  { key: 'client', env: 'WEBSOCKET_REDIS_CLIENT', parse: clientLibrary, default: 'redis' },
  { key: 'prefix', env: 'WEBSOCKET_REDIS_PREFIX', parse: prefix, default: 'roomwire' },
];

/** The namespace of the Redis variables. @internal */
export const REDIS_PREFIX = 'WEBSOCKET_REDIS_';

/** Names of the {@link REDIS_FIELDS} variables. */
export const REDIS_VARIABLES: readonly string[] = REDIS_FIELDS.map((f) => f.env);

/** The checks that span several variables. */
function crossCheck(s: Record<string, unknown>, issues: ConfigIssue[]): void {
  const url = s.url as string | undefined;
  const urls = url === undefined ? [] : url.split(',');
  const m = s.mode as RedisMode | undefined;
  if (m === 'single' && urls.length > 1) {
    issues.push({ name: 'WEBSOCKET_REDIS_URL', message: 'lists several URLs; set WEBSOCKET_REDIS_MODE=cluster (seed nodes) or sentinel (the sentinels)' });
  }
  if (m === 'sentinel' && s.sentinelName === undefined) {
    issues.push({ name: 'WEBSOCKET_REDIS_SENTINEL_NAME', message: 'is required with WEBSOCKET_REDIS_MODE=sentinel: the name of the master set the sentinels watch' });
  }
  if (m !== 'sentinel' && m !== undefined && s.sentinelName !== undefined) {
    issues.push({ name: 'WEBSOCKET_REDIS_SENTINEL_NAME', message: `is only used with WEBSOCKET_REDIS_MODE=sentinel, not ${m}` });
  }
  if ((s.tlsCert === undefined) !== (s.tlsKey === undefined)) {
    issues.push({ name: s.tlsCert === undefined ? 'WEBSOCKET_REDIS_TLS_CERT' : 'WEBSOCKET_REDIS_TLS_KEY', message: 'WEBSOCKET_REDIS_TLS_CERT and WEBSOCKET_REDIS_TLS_KEY go together (a client certificate and its key)' });
  }
  const tls = s.tlsCa !== undefined || s.tlsCert !== undefined || s.tlsKey !== undefined;
  if (tls && urls.length > 0 && !urls[0]!.toLowerCase().startsWith('rediss:')) {
    issues.push({ name: 'WEBSOCKET_REDIS_URL', message: 'must be a rediss:// URL when WEBSOCKET_REDIS_TLS_* is set' });
  }
  if (url === undefined) {
    for (const key of ['mode', 'sentinelName', 'tlsCa', 'tlsCert', 'tlsKey', 'client'] as const) {
      const field = REDIS_FIELDS.find((f) => f.key === key)!;
      if (s[`${key}Given`] === true) issues.push({ name: field.env, message: 'has no effect without WEBSOCKET_REDIS_URL' });
    }
  }
}

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
    const given = raw !== undefined && raw.trim() !== '';
    out[`${field.key}Given`] = given;
    try {
      out[field.key] = !given ? (field.default === undefined ? undefined : field.parse(field.default)) : field.parse(raw);
    } catch (msg) {
      issues.push({ name: field.env, message: String(msg) });
    }
  }
  if (issues.length === 0) crossCheck(out, issues);
  for (const name of Object.keys(env)) {
    if (name.startsWith(REDIS_PREFIX) && !REDIS_VARIABLES.includes(name)) {
      const message = `${name} is not a roomwire variable and is ignored; the Redis variables are ${REDIS_VARIABLES.join(', ')}`;
      if (warn !== undefined) warn(message);
      else process.emitWarning(message, { code: 'ROOMWIRE_UNKNOWN_VARIABLE' });
    }
  }
  const url = out.url as string | undefined;
  const settings: RedisSettings = {
    url,
    urls: url === undefined ? [] : url.split(','),
    mode: (out.mode as RedisMode | undefined) ?? 'single',
    sentinelName: out.sentinelName as string | undefined,
    tlsCa: out.tlsCa as string | undefined,
    tlsCert: out.tlsCert as string | undefined,
    tlsKey: out.tlsKey as string | undefined,
    client: (out.client as RedisClientLibrary | undefined) ?? 'redis',
    prefix: (out.prefix as string | undefined) ?? 'roomwire',
  };
  return { settings, issues };
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
 * The broker that `settings` ask for: a Redis broker on a client made for them (node-redis
 * or ioredis; a single node, Cluster or Sentinel, with their TLS files), or the in-process
 * broker when no URL is set. Needs that client's package when a URL is set.
 *
 * @internal
 */
export function brokerFromSettings(settings: RedisSettings, options: Omit<RedisBrokerOptions, 'url' | 'client' | 'prefix'> = {}): Broker {
  if (settings.url === undefined) return createMemoryBroker();
  const client = settings.client === 'ioredis' ? createIoredisClient(settings) : createNodeRedisClient(settings);
  return createRedisBroker({ ...options, client, prefix: settings.prefix });
}

/**
 * The broker the environment asks for: a Redis broker when `WEBSOCKET_REDIS_URL` is
 * set (`WEBSOCKET_REDIS_MODE`, `_SENTINEL_NAME`, `_TLS_CA`, `_TLS_CERT`, `_TLS_KEY`,
 * `_CLIENT` and `_PREFIX` shape it), else the in-process broker (one process). The
 * standalone server builds its broker with it; in your own server it is one line. A Redis
 * URL needs the client package installed: `redis` (node-redis, the default) or `ioredis`
 * (`WEBSOCKET_REDIS_CLIENT=ioredis`). To use a client you configure yourself, pass it to
 * {@link createRedisBroker} instead.
 *
 * Throws an `ERR_INVALID_CONFIG` {@link roomwire!RoomwireError} naming every bad variable
 * (a password is never shown).
 *
 * @param options - further Redis broker options (timings); the rest comes from `env`
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
  options: Omit<RedisBrokerOptions, 'url' | 'client' | 'prefix'> & ConfigFromEnvOptions = {},
): Broker {
  const settings = redisSettingsFromEnv(env, options);
  const { warn: _warn, alsoRead: _alsoRead, ...rest } = options;
  return brokerFromSettings(settings, rest);
}
