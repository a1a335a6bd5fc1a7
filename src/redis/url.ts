/** Parsing of `redis://` URLs, shared by the configuration check and the Redis client. */

/** Where to connect, parsed from a `redis://` or `rediss://` URL. */
export interface RedisEndpoint {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly database: number | undefined;
}

/**
 * `url` with its password replaced by `***` (`redis://user:***@host`; a user part without
 * a colon, which some clients read as a password, becomes `***` whole), for every message
 * that shows a Redis URL. Works on text that is not a valid URL too.
 */
export function maskUrlPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i, (_m, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return `${scheme}${colon < 0 ? '***' : `${userinfo.slice(0, colon)}:***`}@`;
  });
}

/**
 * Parse `redis[s]://[[user]:password@]host[:port][/db]`; throws a TypeError on anything
 * else, whose message shows the URL with its password masked.
 */
export function parseRedisUrl(url: string): RedisEndpoint {
  const shown = maskUrlPassword(String(url));
  // `127.0.0.1:6379` or `localhost:6379` parse as a URL of another scheme: say what to write.
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(String(url))) {
    throw new TypeError(`"${shown}" is not a URL: write it as redis://${shown.replace(/^\/+/, '')} (or rediss:// for TLS)`);
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`"${shown}" is not a URL (expected redis://[user:password@]host[:port][/db])`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new TypeError(`"${shown}" must be a redis:// or rediss:// URL`);
  const path = u.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d+$/.test(path)) throw new TypeError(`"${shown}": the path must be a database number`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const decode = (part: string): string | undefined => {
    if (part === '') return undefined;
    try {
      return decodeURIComponent(part);
    } catch {
      throw new TypeError(`"${shown}": bad percent-encoding in the user or password`);
    }
  };
  const username = decode(u.username);
  const password = decode(u.password);
  if (username !== undefined && password === undefined) throw new TypeError(`"${shown}": a user name needs a password (redis://user:password@host)`);
  return {
    host: host === '' ? '127.0.0.1' : host,
    port: u.port === '' ? 6379 : Number(u.port),
    tls: u.protocol === 'rediss:',
    username,
    password,
    database: path === '' ? undefined : Number(path),
  };
}
