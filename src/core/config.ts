/**
 * Hub configuration: the resolved {@link HubConfig}, its defaults, the parsers for
 * durations, rates and origins, and {@link configFromEnv}.
 *
 * One table ({@link CONFIG_FIELDS}) names every setting once, with its environment
 * variable, its parser and its default, so the environment path and the programmatic
 * path validate identically and report every bad entry at once.
 */
import { createPublicKey } from 'node:crypto';
import { configError, type ConfigIssue } from './errors';
import { normalizeOriginPattern } from './origin';

/** A duration: milliseconds as a number, or a string such as `500ms`, `10s`, `1m30s`, `1h`. */
export type Duration = number | string;

/** A rate limit: `count` events per `per`, with bursts up to `burst`. */
export interface RateLimit {
  /** Events allowed per period (the sustained rate). */
  readonly count: number;
  /** The period: a second, a minute or an hour. */
  readonly per: 's' | 'm' | 'h';
  /** The most events allowed at once after a quiet spell (the bucket size). */
  readonly burst: number;
}

/** JWT verification settings (docs/configuration.md). */
export interface JwtConfig {
  /** HMAC secret for HS256/384/512. */
  readonly secret: string | undefined;
  /** PEM public key (SPKI) or certificate for RS*, PS*, ES* and EdDSA. */
  readonly publicKey: string | undefined;
  /** URL of a JSON Web Key Set, fetched and cached. */
  readonly jwksUrl: string | undefined;
  /** Accepted `iss` values; empty means not checked. */
  readonly issuer: readonly string[];
  /** Accepted `aud` values; empty means not checked. */
  readonly audience: readonly string[];
  /** Accepted `alg` values. */
  readonly algorithms: readonly string[];
  /**
   * `WEBSOCKET_JWT_CLOCK_TOLERANCE`: leeway for `nbf` and `iat`, in seconds (or a duration such
   * as `5s`). `exp` is strict: a connection is closed when its token expires. @default 5
   */
  readonly clockTolerance: number;
}

/**
 * The fully resolved configuration of a hub. Every duration is in milliseconds and
 * every size in bytes. {@link configFromEnv} returns one; {@link createHub} accepts a
 * partial one and fills the rest from the defaults.
 */
export interface HubConfig {
  /** `WEBSOCKET_ENABLED`: when false every upgrade is refused with 503. @default true */
  readonly enabled: boolean;
  /** `WEBSOCKET_PATH`: the base path of the four endpoints. @default '/ws' */
  readonly path: string;
  /** `WEBSOCKET_MAX_CONNECTIONS`: open connections at most; further upgrades get 503. @default 1000 */
  readonly maxConnections: number;
  /**
   * `WEBSOCKET_READ_BUFFER_SIZE`: bytes of inbound frames a connection may queue while an
   * earlier frame of it awaits asynchronous work (a hook, a broker, a token check); past it
   * the hub stops reading from that socket until the queue drains. @default 1024
   */
  readonly readBufferSize: number;
  /** `WEBSOCKET_WRITE_BUFFER_SIZE`: buffered outbound bytes above which a connection counts as slow. @default 1024 */
  readonly writeBufferSize: number;
  /**
   * `WEBSOCKET_MAX_BUFFERED`: buffered outbound bytes past which a connection is terminated
   * at once, whatever `writeWait` says, so a reader that stops reading costs at most this
   * much memory. @default 8388608 (8 MiB)
   */
  readonly maxBuffered: number;
  /** `WEBSOCKET_MAX_MESSAGE_SIZE`: largest inbound message in bytes; larger closes with 1009. @default 512 */
  readonly maxMessageSize: number;
  /** `WEBSOCKET_WRITE_WAIT`: how long a connection may stay above `writeBufferSize` before it is terminated. @default 10000 */
  readonly writeWait: number;
  /** `WEBSOCKET_PONG_WAIT`: how long a ping may go unanswered before the connection is terminated. @default 60000 */
  readonly pongWait: number;
  /** `WEBSOCKET_PING_PERIOD`: how often each connection is pinged; must be below `pongWait`. @default 54000 */
  readonly pingPeriod: number;
  /** `WEBSOCKET_HEARTBEAT_INTERVAL`: period of the one liveness sweep over all connections. @default 30000 */
  readonly heartbeatInterval: number;
  /** `WEBSOCKET_CONNECTION_TIMEOUT`: a connection with no inbound traffic for this long is terminated. @default 60000 */
  readonly connectionTimeout: number;
  /** `WEBSOCKET_ALLOWED_ORIGINS`: origins allowed to connect; `*` allows all. @default ['*'] */
  readonly allowedOrigins: readonly string[];
  /** `WEBSOCKET_REQUIRE_AUTH`: require a token on `B` and `B/{room}` too. @default false */
  readonly requireAuth: boolean;
  /**
   * `WEBSOCKET_MAX_CONNECTIONS_PER_USER`: open connections of one `user_id` (authenticated
   * connections only) at most, across every process of the hub (with a Redis broker); an
   * upgrade past it gets 429. 0 is unlimited. @default 0
   */
  readonly maxConnectionsPerUser: number;
  /** `WEBSOCKET_MAX_CONNECTIONS_PER_ADDRESS`: open connections of one client address at most, across the hub; past it 429. 0 is unlimited. @default 0 */
  readonly maxConnectionsPerAddress: number;
  /** `WEBSOCKET_MAX_ROOM_SIZE`: connections per room at most; 0 is unlimited. @default 0 */
  readonly maxRoomSize: number;
  /** `WEBSOCKET_MAX_ROOMS_PER_CONNECTION`: rooms one connection may be in. @default 100 */
  readonly maxRoomsPerConnection: number;
  /** `WEBSOCKET_MESSAGE_RATE`: inbound frames per connection. @default { count: 20, per: 's', burst: 40 } */
  readonly messageRate: RateLimit;
  /** `WEBSOCKET_CONNECT_RATE`: upgrade attempts per client address. @default { count: 60, per: 'm', burst: 30 } */
  readonly connectRate: RateLimit;
  /**
   * `WEBSOCKET_TRUST_PROXY`: how many proxies in front of the server append to
   * `X-Forwarded-For`. The client address is the entry that many places from the right
   * of the header's entries followed by the TCP peer address (`1`: the right-most
   * entry); an entry that is not a bare IP address gives way to the peer address. `false`
   * is 0 (the peer address), `true` is 1. Resolved to a number. @default 0
   */
  readonly trustProxy: number;
  /**
   * `WEBSOCKET_HISTORY_SIZE`: how many of its latest messages each room keeps for
   * recovery (docs/protocol.md section 9); 0 keeps none and leaves history off. Memory is
   * bounded by this many messages times the rooms with history. @default 0
   */
  readonly historySize: number;
  /** `WEBSOCKET_HISTORY_TTL`: a room's history is dropped this long after its last message. @default 300000 (5 minutes) */
  readonly historyTtl: number;
  /**
   * `WEBSOCKET_DRAIN_WINDOW`: how `hub.close()` (and the standalone server on SIGTERM or
   * SIGINT) closes connections: spread evenly over this window, each told first with a
   * `reconnect` frame how long to wait before coming back (a delay drawn from 0 to the
   * window), rather than all at once (docs/protocol.md section 4). New upgrades get 503
   * meanwhile. 0 closes every connection at once. @default 0
   */
  readonly drainWindow: number;
  /** JWT verification (`WEBSOCKET_JWT_*`, `WEBSOCKET_JWKS_URL`). */
  readonly jwt: JwtConfig;
}

/** The JWT settings accepted by {@link createHub}; every field is optional. */
export type JwtInput = { [K in keyof JwtConfig]?: JwtConfig[K] | (K extends 'issuer' | 'audience' | 'algorithms' ? string : never) };

/**
 * The configuration accepted by {@link createHub}: any subset of {@link HubConfig};
 * durations may be strings (`'10s'`), rates strings (`'20/s,40'`) and lists
 * comma-separated strings.
 */
export type HubConfigInput = {
  [K in Exclude<keyof HubConfig, 'jwt'>]?:
    | HubConfig[K]
    | (K extends DurationKey ? string : K extends 'messageRate' | 'connectRate' ? string : K extends 'allowedOrigins' ? string : K extends 'trustProxy' ? boolean | string : never);
} & { jwt?: JwtInput };

/** The {@link HubConfig} keys that hold durations. */
export type DurationKey = 'writeWait' | 'pongWait' | 'pingPeriod' | 'heartbeatInterval' | 'connectionTimeout' | 'historyTtl' | 'drainWindow';

/** HMAC algorithms, accepted by default when a secret is configured. */
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
/** Asymmetric algorithms, accepted by default when a public key or JWKS is configured. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const;

// ---------------------------------------------------------------------------------------
// Parsers. Each returns the parsed value or throws a string saying what is wrong.

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/**
 * Parse a duration: a number of milliseconds, or `<n><unit>` repeated with units `h`,
 * `m`, `s`, `ms` (`1m30s`, `500ms`, `1.5s`).
 *
 * @example parseDuration('1m30s') // 90000
 */
export function parseDuration(raw: Duration): number {
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw) || raw < 0) throw 'must be a non-negative number of milliseconds';
    return raw;
  }
  if (typeof raw !== 'string') throw 'must be a duration such as 500ms, 10s or 1m30s';
  const text = raw.trim();
  if (text === '0') return 0;
  const part = /(\d+(?:\.\d+)?)(ms|h|m|s)/y;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    part.lastIndex = at;
    const m = part.exec(text);
    if (!m) throw `"${raw}" is not a duration such as 500ms, 10s or 1m30s`;
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    at = part.lastIndex;
  }
  if (at === 0) throw `"${raw}" is not a duration such as 500ms, 10s or 1m30s`;
  return Math.round(total);
}

const PERIOD_MS = { s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds in a rate's period. */
export function ratePeriodMs(rate: RateLimit): number {
  return PERIOD_MS[rate.per];
}

/**
 * Parse a rate limit `<count>/<s|m|h>[,<burst>]`; the burst defaults to the count.
 *
 * @example parseRate('20/s,40') // { count: 20, per: 's', burst: 40 }
 */
export function parseRate(raw: string | RateLimit): RateLimit {
  if (typeof raw === 'object' && raw !== null) {
    const { count, per, burst } = raw;
    if (!isPositiveInt(count) || !(per in PERIOD_MS) || !isPositiveInt(burst)) {
      throw 'must be { count, per: "s" | "m" | "h", burst } with positive integers';
    }
    return { count, per, burst };
  }
  if (typeof raw !== 'string') throw 'must be <count>/<s|m|h>[,<burst>], such as 20/s,40';
  const m = /^\s*(\d+)\s*\/\s*(s|m|h)\s*(?:,\s*(\d+)\s*)?$/.exec(raw);
  if (!m) throw `"${raw}" is not <count>/<s|m|h>[,<burst>], such as 20/s,40`;
  const count = Number(m[1]);
  const burst = m[3] === undefined ? count : Number(m[3]);
  if (!isPositiveInt(count) || !isPositiveInt(burst)) throw `"${raw}": count and burst must be at least 1`;
  return { count, per: m[2] as RateLimit['per'], burst };
}

/** Format a rate limit back to `<count>/<s|m|h>,<burst>`. */
export function formatRate(rate: RateLimit): string {
  return `${rate.count}/${rate.per},${rate.burst}`;
}

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
}

function parseBool(raw: unknown): boolean {
  if (typeof raw === 'boolean') return raw;
  if (typeof raw === 'string') {
    const t = raw.trim().toLowerCase();
    if (t === 'true') return true;
    if (t === 'false') return false;
  }
  throw `must be true or false, not "${String(raw)}"`;
}

/** `false` (0 proxies), `true` (1) or a number of proxies N ≥ 0. */
function proxyHops(raw: unknown): number {
  if (typeof raw === 'boolean') return raw ? 1 : 0;
  if (typeof raw === 'string') {
    const t = raw.trim().toLowerCase();
    if (t === 'true') return 1;
    if (t === 'false') return 0;
    if (/^\d+$/.test(t) && Number.isSafeInteger(Number(t))) return Number(t);
  } else if (typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0) {
    return raw;
  }
  throw `must be false, true or a number of proxies (0 or more), not "${String(raw)}"`;
}

function intParser(min: number): (raw: unknown) => number {
  return (raw) => {
    const n = typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
      throw `must be an integer of at least ${min}, not "${String(raw)}"`;
    }
    return n;
  };
}

function positiveDuration(raw: unknown): number {
  const ms = parseDuration(raw as Duration);
  if (ms <= 0) throw 'must be longer than 0';
  return ms;
}

function list(raw: unknown): string[] {
  const items = typeof raw === 'string' ? raw.split(',') : Array.isArray(raw) ? raw : null;
  if (!items || items.some((i) => typeof i !== 'string')) throw 'must be a comma-separated list';
  return (items as string[]).map((s) => s.trim()).filter((s) => s.length > 0);
}

function optionalString(raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') throw 'must be a string';
  return raw.length === 0 ? undefined : raw;
}

function basePath(raw: unknown): string {
  if (typeof raw !== 'string' || !raw.startsWith('/')) throw `must be an absolute path such as /ws, not "${String(raw)}"`;
  if (/[\s?#%]/.test(raw) || raw.includes('//')) throw `"${raw}" must be a plain path without query, fragment, escapes or empty segments`;
  return raw.length > 1 && raw.endsWith('/') ? raw.slice(0, -1) : raw;
}

function origins(raw: unknown): string[] {
  const entries = list(raw);
  if (entries.length === 0) throw 'must list at least one origin, or * for any';
  const bad: string[] = [];
  const out: string[] = [];
  for (const e of entries) {
    try {
      out.push(normalizeOriginPattern(e));
    } catch (msg) {
      bad.push(String(msg));
    }
  }
  if (bad.length > 0) throw bad.join('; ');
  return out;
}

function algorithms(raw: unknown): string[] {
  const known = new Set<string>([...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS]);
  const algs = list(raw);
  const unknown = algs.filter((a) => !known.has(a));
  if (unknown.length > 0) throw `unsupported algorithm(s) ${unknown.join(', ')}; use ${[...known].join(', ')}`;
  return algs;
}

function httpUrl(raw: unknown): string | undefined {
  const s = optionalString(raw);
  if (s === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw `"${s}" is not a URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw `"${s}" must be an http(s) URL`;
  return s;
}

// Seconds, as a number or a bare numeric string (jose's unit), or a duration such as 5s.
function tolerance(raw: unknown): number {
  const n = typeof raw === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : raw;
  if (typeof n === 'number') {
    if (!Number.isFinite(n) || n < 0) throw 'must be a non-negative number of seconds';
    return n;
  }
  return parseDuration(n as Duration) / 1000;
}

function pem(raw: unknown): string | undefined {
  const s = optionalString(raw);
  if (s === undefined) return undefined;
  // Environment variables often carry PEM with literal "\n"; accept both forms.
  const text = s.includes('\\n') ? s.replace(/\\n/g, '\n') : s;
  if (!/-----BEGIN (PUBLIC KEY|CERTIFICATE)-----[\s\S]+-----END (PUBLIC KEY|CERTIFICATE)-----/.test(text)) {
    throw 'must be a PEM public key (BEGIN PUBLIC KEY) or certificate (BEGIN CERTIFICATE)';
  }
  try {
    createPublicKey(text);
  } catch (err) {
    throw `is not a readable PEM public key or certificate (${(err as Error).message})`;
  }
  return text;
}

/**
 * The parsers of the table, for other tables of settings (the standalone server's).
 * Each returns the parsed value or throws a string saying what is wrong.
 *
 * @internal
 */
export const PARSERS = { bool: parseBool, int: intParser, positiveDuration, optionalString } as const;

// ---------------------------------------------------------------------------------------

/** One setting of {@link CONFIG_FIELDS}. */
export interface ConfigField {
  /** Option path in {@link HubConfigInput}, e.g. `pingPeriod` or `jwt.secret`. */
  readonly key: string;
  /** Its environment variable. */
  readonly env: string;
  /** Parses a raw value; throws a string saying what is wrong. */
  readonly parse: (raw: unknown) => unknown;
  /** The default, as a raw value. */
  readonly default: unknown;
}

/**
 * Every setting: option path, environment variable, parser and default. Exposed so
 * tools and docs can list them; {@link configFromEnv} and {@link createHub} both use it.
 */
export const CONFIG_FIELDS: readonly ConfigField[] = [
  { key: 'enabled', env: 'WEBSOCKET_ENABLED', parse: parseBool, default: true },
  { key: 'path', env: 'WEBSOCKET_PATH', parse: basePath, default: '/ws' },
  { key: 'maxConnections', env: 'WEBSOCKET_MAX_CONNECTIONS', parse: intParser(1), default: 1000 },
  { key: 'readBufferSize', env: 'WEBSOCKET_READ_BUFFER_SIZE', parse: intParser(1), default: 1024 },
  { key: 'writeBufferSize', env: 'WEBSOCKET_WRITE_BUFFER_SIZE', parse: intParser(1), default: 1024 },
  { key: 'maxBuffered', env: 'WEBSOCKET_MAX_BUFFERED', parse: intParser(1), default: 8 * 1024 * 1024 },
  { key: 'maxMessageSize', env: 'WEBSOCKET_MAX_MESSAGE_SIZE', parse: intParser(1), default: 512 },
  { key: 'writeWait', env: 'WEBSOCKET_WRITE_WAIT', parse: positiveDuration, default: 10_000 },
  { key: 'pongWait', env: 'WEBSOCKET_PONG_WAIT', parse: positiveDuration, default: 60_000 },
  { key: 'pingPeriod', env: 'WEBSOCKET_PING_PERIOD', parse: positiveDuration, default: 54_000 },
  { key: 'heartbeatInterval', env: 'WEBSOCKET_HEARTBEAT_INTERVAL', parse: positiveDuration, default: 30_000 },
  { key: 'connectionTimeout', env: 'WEBSOCKET_CONNECTION_TIMEOUT', parse: positiveDuration, default: 60_000 },
  { key: 'allowedOrigins', env: 'WEBSOCKET_ALLOWED_ORIGINS', parse: origins, default: ['*'] },
  { key: 'requireAuth', env: 'WEBSOCKET_REQUIRE_AUTH', parse: parseBool, default: false },
  { key: 'maxConnectionsPerUser', env: 'WEBSOCKET_MAX_CONNECTIONS_PER_USER', parse: intParser(0), default: 0 },
  { key: 'maxConnectionsPerAddress', env: 'WEBSOCKET_MAX_CONNECTIONS_PER_ADDRESS', parse: intParser(0), default: 0 },
  { key: 'maxRoomSize', env: 'WEBSOCKET_MAX_ROOM_SIZE', parse: intParser(0), default: 0 },
  { key: 'maxRoomsPerConnection', env: 'WEBSOCKET_MAX_ROOMS_PER_CONNECTION', parse: intParser(1), default: 100 },
  { key: 'messageRate', env: 'WEBSOCKET_MESSAGE_RATE', parse: (r) => parseRate(r as string), default: '20/s,40' },
  { key: 'connectRate', env: 'WEBSOCKET_CONNECT_RATE', parse: (r) => parseRate(r as string), default: '60/m,30' },
  { key: 'trustProxy', env: 'WEBSOCKET_TRUST_PROXY', parse: proxyHops, default: false },
  { key: 'historySize', env: 'WEBSOCKET_HISTORY_SIZE', parse: intParser(0), default: 0 },
  { key: 'historyTtl', env: 'WEBSOCKET_HISTORY_TTL', parse: positiveDuration, default: '5m' },
  { key: 'drainWindow', env: 'WEBSOCKET_DRAIN_WINDOW', parse: (r) => parseDuration(r as Duration), default: 0 },
  { key: 'jwt.secret', env: 'WEBSOCKET_JWT_SECRET', parse: optionalString, default: undefined },
  { key: 'jwt.publicKey', env: 'WEBSOCKET_JWT_PUBLIC_KEY', parse: pem, default: undefined },
  { key: 'jwt.jwksUrl', env: 'WEBSOCKET_JWKS_URL', parse: httpUrl, default: undefined },
  { key: 'jwt.issuer', env: 'WEBSOCKET_JWT_ISSUER', parse: list, default: [] },
  { key: 'jwt.audience', env: 'WEBSOCKET_JWT_AUDIENCE', parse: list, default: [] },
  { key: 'jwt.algorithms', env: 'WEBSOCKET_JWT_ALGORITHMS', parse: algorithms, default: undefined },
  { key: 'jwt.clockTolerance', env: 'WEBSOCKET_JWT_CLOCK_TOLERANCE', parse: tolerance, default: 5 },
];

function getPath(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) cur = (cur[part] ??= {}) as Record<string, unknown>;
  cur[parts[parts.length - 1] as string] = value;
}

/**
 * Validate `input` against {@link CONFIG_FIELDS} and return the resolved configuration.
 * `nameOf` chooses how a bad field is named in the error (option path or variable).
 * Throws one `ERR_INVALID_CONFIG` {@link RoomwireError} listing every bad field.
 *
 * @internal
 */
export function resolveConfig(input: HubConfigInput, nameOf: (f: ConfigField) => string = (f) => f.key): HubConfig {
  const issues: ConfigIssue[] = [];
  const out: Record<string, unknown> = {};
  const fieldByKey = new Map<string, ConfigField>();
  for (const field of CONFIG_FIELDS) {
    fieldByKey.set(field.key, field);
    const raw = getPath(input, field.key);
    try {
      const value = raw === undefined ? (field.default === undefined ? undefined : field.parse(field.default)) : field.parse(raw);
      setPath(out, field.key, value);
    } catch (msg) {
      issues.push({ name: nameOf(field), message: typeof msg === 'string' ? msg : String((msg as Error).message ?? msg) });
    }
  }
  const name = (key: string) => nameOf(fieldByKey.get(key) as ConfigField);
  const bad = new Set(issues.map((i) => i.name));
  const cfg = out as unknown as HubConfig & { jwt: { algorithms: readonly string[] | undefined } };

  if (!bad.has(name('pingPeriod')) && !bad.has(name('pongWait')) && cfg.pingPeriod >= cfg.pongWait) {
    issues.push({
      name: name('pingPeriod'),
      message: `must be below ${name('pongWait')} (${cfg.pingPeriod}ms is not below ${cfg.pongWait}ms)`,
    });
  }
  const jwt = cfg.jwt;
  const hasAsym = jwt.publicKey !== undefined || jwt.jwksUrl !== undefined;
  if (!bad.has(name('jwt.algorithms'))) {
    // An empty list (as resolved when no key is configured) means "the defaults".
    if (jwt.algorithms === undefined || jwt.algorithms.length === 0) {
      (jwt as { algorithms: readonly string[] }).algorithms = [
        ...(jwt.secret !== undefined ? HMAC_ALGORITHMS : []),
        ...(hasAsym ? ASYMMETRIC_ALGORITHMS : []),
      ];
    } else {
      const hmac = jwt.algorithms.filter((a) => a.startsWith('HS'));
      const asym = jwt.algorithms.filter((a) => !a.startsWith('HS'));
      if (hmac.length > 0 && jwt.secret === undefined) {
        issues.push({ name: name('jwt.algorithms'), message: `${hmac.join(', ')} need ${name('jwt.secret')}` });
      }
      if (asym.length > 0 && !hasAsym) {
        issues.push({
          name: name('jwt.algorithms'),
          message: `${asym.join(', ')} need ${name('jwt.publicKey')} or ${name('jwt.jwksUrl')}`,
        });
      }
    }
  }
  if (issues.length > 0) throw configError(issues);
  return deepFreeze(cfg);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Edit distance between two names (insertions, deletions, substitutions). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length] as number;
}

/** A `WEBSOCKET_*` variable that no setting reads, and the known name closest to it. */
export interface UnknownVariable {
  readonly name: string;
  /** The closest known variable, when one is close enough to be a typo of it. */
  readonly suggestion: string | undefined;
  /**
   * Set for a `WEBSOCKET_REDIS_*` variable: those belong to `roomwire/redis`
   * (`redisBrokerFromEnv()`), which reads and checks them itself, not to the hub's table.
   */
  readonly readBy?: 'roomwire/redis';
}

/** The `WEBSOCKET_*` namespace of `roomwire/redis`, whose own table checks it. */
const REDIS_PREFIX = 'WEBSOCKET_REDIS_';

/**
 * The `WEBSOCKET_*` variables of `env` that no setting reads (a misspelled name is
 * otherwise ignored in silence), each with the closest known name when it looks like a
 * typo of one.
 *
 * `WEBSOCKET_REDIS_*` variables are listed with `readBy: 'roomwire/redis'` unless `alsoRead`
 * names them: the hub's own configuration reads none of them.
 *
 * @param alsoRead - variables the caller reads itself (the standalone server passes the Redis table's)
 * @example unknownVariables({ WEBSOCKET_MAX_MESAGE_SIZE: '1024' }) // [{ name: 'WEBSOCKET_MAX_MESAGE_SIZE', suggestion: 'WEBSOCKET_MAX_MESSAGE_SIZE' }]
 */
export function unknownVariables(env: Record<string, string | undefined>, alsoRead: readonly string[] = []): UnknownVariable[] {
  const known = CONFIG_FIELDS.map((f) => f.env);
  const out: UnknownVariable[] = [];
  for (const name of Object.keys(env)) {
    if (!name.startsWith('WEBSOCKET_') || known.includes(name) || alsoRead.includes(name)) continue;
    if (name.startsWith(REDIS_PREFIX)) {
      out.push({ name, suggestion: undefined, readBy: 'roomwire/redis' });
      continue;
    }
    let best: string | undefined;
    let bestDistance = Number.POSITIVE_INFINITY;
    for (const k of known) {
      const d = distance(name, k);
      if (d < bestDistance) [best, bestDistance] = [k, d];
    }
    out.push({ name, suggestion: bestDistance <= Math.max(2, Math.floor(name.length / 6)) ? best : undefined });
  }
  return out;
}

/** What an unknown variable's warning says. */
export function unknownVariableMessage(v: UnknownVariable): string {
  if (v.readBy === 'roomwire/redis') {
    return `${v.name} is read by redisBrokerFromEnv() from roomwire/redis, not by configFromEnv(): pass createHub({ ...configFromEnv(), broker: redisBrokerFromEnv() }) to use it`;
  }
  return `${v.name} is not a roomwire variable and is ignored${v.suggestion === undefined ? '' : `; did you mean ${v.suggestion}?`}`;
}

const warnedNames = new Set<string>();

/** Options of {@link configFromEnv}. */
export interface ConfigFromEnvOptions {
  /**
   * Where warnings go (an unknown `WEBSOCKET_*` variable, with the closest known name).
   * @default process.emitWarning, once per variable name per process
   */
  readonly warn?: (message: string) => void;
  /** Variables the caller reads itself, not to be warned about (see {@link unknownVariables}). */
  readonly alsoRead?: readonly string[];
}

/**
 * Read the hub configuration from environment variables (docs/configuration.md lists
 * them). The Redis variables are `roomwire/redis`'s: see `redisBrokerFromEnv()`. Unset or empty variables take their defaults. Throws a
 * {@link RoomwireError} with code `ERR_INVALID_CONFIG` that names every bad variable, and
 * warns about every `WEBSOCKET_*` variable no setting reads (a typo would otherwise be
 * ignored in silence).
 *
 * @param env - the environment to read. @default process.env
 * @example
 * ```ts
 * const hub = createHub(configFromEnv());
 * ```
 */
export function configFromEnv(env: Record<string, string | undefined> = process.env, options: ConfigFromEnvOptions = {}): HubConfig {
  for (const v of unknownVariables(env, options.alsoRead)) {
    const message = unknownVariableMessage(v);
    if (options.warn !== undefined) options.warn(message);
    else if (!warnedNames.has(v.name)) {
      warnedNames.add(v.name);
      process.emitWarning(message, { code: 'ROOMWIRE_UNKNOWN_VARIABLE' });
    }
  }
  const input: Record<string, unknown> = {};
  for (const field of CONFIG_FIELDS) {
    const raw = env[field.env];
    if (raw !== undefined && raw !== '') setPath(input, field.key, raw);
  }
  return resolveConfig(input as HubConfigInput, (f) => f.env);
}

/** The environment variable of each option path, for messages and docs. */
export function envNameOf(key: string): string | undefined {
  return CONFIG_FIELDS.find((f) => f.key === key)?.env;
}
