/** An ioredis client made from the `WEBSOCKET_REDIS_*` settings (`WEBSOCKET_REDIS_CLIENT=ioredis`). */
import { readFileSync } from 'node:fs';
import type { RedisSettings } from './env';
import { loadPeer } from './peer';
import { parseRedisUrl } from './url';

interface IoredisModule {
  Redis: new (...args: unknown[]) => object;
  Cluster: new (...args: unknown[]) => object;
}

/**
 * An ioredis `Redis` (a node, or the master of a Sentinel set) or `Cluster` for
 * `settings`, not connected. Needs the `ioredis` package.
 *
 * @internal
 */
export function createIoredisClient(settings: Pick<RedisSettings, 'urls' | 'mode' | 'sentinelName' | 'tlsCa' | 'tlsCert' | 'tlsKey'>): object {
  const ioredis = loadPeer<IoredisModule>('ioredis', 'WEBSOCKET_REDIS_CLIENT=ioredis', (require) => require('ioredis'));
  const nodes = settings.urls.map((url) => parseRedisUrl(url));
  const first = nodes[0]!;
  const tls: Record<string, unknown> | undefined = first.tls ? {} : undefined;
  if (tls !== undefined) {
    if (settings.tlsCa !== undefined) tls.ca = readFileSync(settings.tlsCa);
    if (settings.tlsCert !== undefined) tls.cert = readFileSync(settings.tlsCert);
    if (settings.tlsKey !== undefined) tls.key = readFileSync(settings.tlsKey);
  }
  const auth = { username: first.username, password: first.password };
  if (settings.mode === 'cluster') {
    return new ioredis.Cluster(
      nodes.map((n) => ({ host: n.host, port: n.port })),
      { lazyConnect: true, redisOptions: { ...auth, ...(tls === undefined ? {} : { tls }) } },
    );
  }
  if (settings.mode === 'sentinel') {
    // The URLs' user and password are the sentinels' and the master's, as with node-redis.
    return new ioredis.Redis({
      sentinels: nodes.map((n) => ({ host: n.host, port: n.port })),
      name: settings.sentinelName,
      ...auth,
      sentinelUsername: first.username,
      sentinelPassword: first.password,
      lazyConnect: true,
      ...(tls === undefined ? {} : { tls, sentinelTLS: tls, enableTLSForSentinelMode: true }),
    });
  }
  return new ioredis.Redis({ host: first.host, port: first.port, db: first.database ?? 0, ...auth, lazyConnect: true, ...(tls === undefined ? {} : { tls }) });
}
