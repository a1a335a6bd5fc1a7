/**
 * The {@link RedisLink} on node-redis v5 (`redis`): a client (`createClient`) or a cluster
 * (`createCluster`), duplicated into a publisher and a subscriber with the offline queue off.
 */
import { readFileSync } from 'node:fs';
import type { RedisSettings } from './env';
import type { LinkEvents, LinkSide, RedisLink } from './link';
import { isRedisReply, loadPeer } from './peer';
import { maskUrlPassword, parseRedisUrl } from './url';

type Listener = (message: string, channel: string) => void;

/** The parts of a node-redis v5 client or cluster that roomwire uses. */
interface NodeRedisLike {
  on(event: string, fn: (...args: never[]) => void): unknown;
  duplicate(overrides?: object): NodeRedisLike;
  connect(): Promise<unknown>;
  destroy(): void;
  close(): Promise<unknown>;
  readonly isOpen: boolean;
  readonly isReady?: boolean;
  publish(channel: string, message: string): Promise<unknown>;
  sPublish(channel: string, message: string): Promise<unknown>;
  subscribe(channels: string[], listener: Listener): Promise<unknown>;
  sSubscribe(channels: string[], listener: Listener): Promise<unknown>;
  unsubscribe(channels: string[], listener: Listener): Promise<unknown>;
  sUnsubscribe(channels: string[], listener: Listener): Promise<unknown>;
  sendCommand(...args: unknown[]): Promise<unknown>;
  readonly options?: Record<string, unknown>;
  readonly _options?: Record<string, unknown>;
  readonly masters?: unknown[];
}

/** Whether `client` is a node-redis v5 client or cluster. @internal */
export function isNodeRedis(client: object): boolean {
  const c = client as Partial<NodeRedisLike>;
  return typeof c.sSubscribe === 'function' && typeof c.duplicate === 'function' && typeof c.sendCommand === 'function' && typeof c.isOpen === 'boolean';
}

/** Whether `client` is a node-redis v5 sentinel client (not supported: it cannot be duplicated). @internal */
export function isNodeRedisSentinel(client: object): boolean {
  const c = client as { getMasterNode?: unknown; acquire?: unknown };
  return typeof c.getMasterNode === 'function' && typeof c.acquire === 'function';
}

/** Never give up; retry at once, then back off to once a second. */
const reconnectStrategy = (retries: number): number => Math.min(50 * 2 ** retries, 1000);

/** Shows where a client connects, without its password. */
function describe(options: Record<string, unknown> | undefined): string {
  if (options === undefined) return 'redis';
  const url = options.url;
  if (typeof url === 'string') return maskUrlPassword(url);
  const roots = options.rootNodes;
  if (Array.isArray(roots)) return roots.map((r: { url?: string; socket?: { host?: string; port?: number } }) => (r.url !== undefined ? maskUrlPassword(r.url) : `${r.socket?.host ?? '127.0.0.1'}:${r.socket?.port ?? 6379}`)).join(',');
  const socket = options.socket as { host?: string; port?: number } | undefined;
  return `${socket?.host ?? '127.0.0.1'}:${socket?.port ?? 6379}`;
}

/** @internal */
export class NodeRedisLink implements RedisLink {
  readonly sharded: boolean;
  readonly name: string;
  readonly address: string;
  private readonly pub: NodeRedisLike;
  private readonly sub: NodeRedisLike;
  private readonly ready = { pub: false, sub: false };
  private events: LinkEvents | undefined;
  private closed = false;
  private readonly listener: Listener = (message, channel) => this.events?.message(channel, message);

  constructor(client: NodeRedisLike) {
    this.sharded = Array.isArray(client.masters);
    this.name = this.sharded ? 'node-redis cluster' : 'node-redis';
    if (this.sharded) {
      const options = client._options ?? {};
      const defaults = (options.defaults ?? {}) as Record<string, unknown>;
      const socket = (defaults.socket ?? {}) as Record<string, unknown>;
      const overrides = { defaults: { ...defaults, disableOfflineQueue: true, socket: { ...socket, reconnectStrategy } } };
      this.address = describe(options);
      this.pub = client.duplicate(overrides);
      this.sub = client.duplicate(overrides);
    } else {
      const options = client.options ?? {};
      const socket = (options.socket ?? {}) as Record<string, unknown>;
      const overrides = { disableOfflineQueue: true, socket: { ...socket, reconnectStrategy } };
      this.address = describe(options);
      this.pub = client.duplicate(overrides);
      this.sub = client.duplicate(overrides);
    }
  }

  isReady(side: LinkSide): boolean {
    return this.ready[side];
  }

  open(events: LinkEvents): void {
    this.events = events;
    for (const side of ['pub', 'sub'] as const) {
      const client = this[side];
      client.on('ready', () => {
        if (this.closed) return;
        this.ready[side] = true;
        events.ready(side);
      });
      const lost = (err: Error): void => {
        if (!this.ready[side] || this.closed) return;
        this.ready[side] = false;
        events.down(side, err);
      };
      client.on('error', (err: Error) => {
        if (this.closed) return;
        if (isRedisReply(err)) events.error(err);
        if (client.isReady === true) return;
        if (this.ready[side]) lost(err);
        else events.down(side, err); // a failed attempt: why it is not up yet

      });
      client.on('end', () => lost(new Error('connection closed')));
      this.connect(client);
    }
  }

  private connect(client: NodeRedisLike): void {
    // Failures are reported through 'error'; the client retries by itself.
    client.connect().catch(() => {});
  }

  publish(channel: string, payload: string): Promise<unknown> {
    return this.sharded ? this.pub.sPublish(channel, payload) : this.pub.publish(channel, payload);
  }

  subscribe(channels: readonly string[]): Promise<unknown> {
    return this.sharded ? this.sub.sSubscribe([...channels], this.listener) : this.sub.subscribe([...channels], this.listener);
  }

  unsubscribe(channels: readonly string[]): Promise<unknown> {
    return this.sharded ? this.sub.sUnsubscribe([...channels], this.listener) : this.sub.unsubscribe([...channels], this.listener);
  }

  command(key: string, args: readonly string[]): Promise<unknown> {
    return this.sharded ? this.pub.sendCommand(key, false, [...args]) : this.pub.sendCommand([...args]);
  }

  isReplyError(err: unknown): boolean {
    return isRedisReply(err);
  }

  reset(only?: LinkSide): void {
    if (this.closed) return;
    for (const side of only === undefined ? (['pub', 'sub'] as const) : [only]) {
      const client = this[side];
      try {
        client.destroy();
      } catch {
        // already closed
      }
      this.connect(client);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      [this.pub, this.sub].map(async (client) => {
        if (!client.isOpen) return;
        // A frozen server never answers QUIT: give it a second.
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)));
        await Promise.race([client.close().catch(() => {}), late]);
        clearTimeout(timer);
        try {
          if (client.isOpen) client.destroy();
        } catch {
          // closed meanwhile
        }
      }),
    );
  }
}

interface NodeRedisModule {
  createClient(options: object): NodeRedisLike;
  createCluster(options: object): NodeRedisLike;
}

/** TLS options from the settings' files. */
function tlsOptions(settings: RedisSettings): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (settings.tlsCa !== undefined) out.ca = readFileSync(settings.tlsCa);
  if (settings.tlsCert !== undefined) out.cert = readFileSync(settings.tlsCert);
  if (settings.tlsKey !== undefined) out.key = readFileSync(settings.tlsKey);
  return out;
}

/**
 * A node-redis client (not connected) for `settings`: a client, a cluster of the seed
 * nodes, or a client of the master a Sentinel set names. Needs the `redis` package.
 *
 * @internal
 */
export function createNodeRedisClient(settings: Pick<RedisSettings, 'urls' | 'mode' | 'sentinelName' | 'tlsCa' | 'tlsCert' | 'tlsKey'>): NodeRedisLike {
  const redis = loadPeer<NodeRedisModule>('redis', 'A Redis URL', (require) => require('redis'));
  const tls = tlsOptions(settings as RedisSettings);
  const first = parseRedisUrl(settings.urls[0]!);
  if (settings.mode === 'cluster') {
    return redis.createCluster({
      rootNodes: settings.urls.map((url) => ({ url })),
      defaults: { username: first.username, password: first.password, socket: { tls: first.tls, ...tls } },
    });
  }
  if (settings.mode === 'sentinel') {
    throw new TypeError('sentinel mode is not available with node-redis here');
  }
  return redis.createClient({ url: settings.urls[0], socket: { tls: first.tls, ...tls } });
}
