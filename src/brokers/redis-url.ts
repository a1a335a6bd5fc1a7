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

/** Parse `redis[s]://[[user]:password@]host[:port][/db]`; throws a TypeError on anything else. */
export function parseRedisUrl(url: string): RedisEndpoint {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new TypeError(`"${url}" must be a redis:// or rediss:// URL`);
  const path = u.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d+$/.test(path)) throw new TypeError(`"${url}": the path must be a database number`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const decode = (part: string): string | undefined => {
    if (part === '') return undefined;
    try {
      return decodeURIComponent(part);
    } catch {
      throw new TypeError(`"${url}": bad percent-encoding in the user or password`);
    }
  };
  const username = decode(u.username);
  const password = decode(u.password);
  if (username !== undefined && password === undefined) throw new TypeError(`"${url}": a user name needs a password (redis://user:password@host)`);
  return {
    host: host === '' ? '127.0.0.1' : host,
    port: u.port === '' ? 6379 : Number(u.port),
    tls: u.protocol === 'rediss:',
    username,
    password,
    database: path === '' ? undefined : Number(path),
  };
}
