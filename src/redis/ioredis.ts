/**
 * The {@link RedisLink} on ioredis: a `Redis` or a `Cluster`, duplicated into a publisher
 * and a subscriber with the offline queue off (a Cluster with `shardedSubscribers`).
 */
import type { LinkEvents, LinkSide, RedisLink } from './link';
import { isRedisReply } from './peer';

/** The parts of an ioredis `Redis` or `Cluster` that roomwire uses. */
interface IoredisLike {
  on(event: string, fn: (...args: never[]) => void): unknown;
  readonly status: string;
  readonly isCluster?: boolean;
  readonly options: Record<string, unknown>;
  duplicate(...args: unknown[]): IoredisLike;
  connect(): Promise<unknown>;
  disconnect(reconnect?: boolean): void;
  quit(): Promise<unknown>;
  publish(channel: string, message: string): Promise<unknown>;
  spublish(channel: string, message: string): Promise<unknown>;
  subscribe(...channels: string[]): Promise<unknown>;
  ssubscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
  call(command: string, ...args: string[]): Promise<unknown>;
}

/** Whether `client` is an ioredis `Redis` or `Cluster`. @internal */
export function isIoredis(client: object): boolean {
  const c = client as Partial<IoredisLike>;
  return typeof c.status === 'string' && typeof c.call === 'function' && typeof c.duplicate === 'function';
}

/** Retry at once, then back off to once a second, forever. */
const retryStrategy = (times: number): number => Math.min(50 * 2 ** times, 1000);

/** @internal */
export class IoredisLink implements RedisLink {
  readonly sharded: boolean;
  readonly name: string;
  readonly address: string;
  private readonly pub: IoredisLike;
  private readonly sub: IoredisLike;
  private readonly ready = { pub: false, sub: false };
  private events: LinkEvents | undefined;
  private closed = false;

  constructor(client: IoredisLike) {
    this.sharded = client.isCluster === true;
    this.name = this.sharded ? 'ioredis cluster' : 'ioredis';
    if (this.sharded) {
      const options = { enableOfflineQueue: false, shardedSubscribers: true, lazyConnect: true, clusterRetryStrategy: retryStrategy };
      const nodes = (client as unknown as { startupNodes?: unknown[] }).startupNodes ?? [];
      this.address = nodes.map((n) => (typeof n === 'object' && n !== null ? `${(n as { host?: string }).host ?? '127.0.0.1'}:${(n as { port?: number }).port ?? 6379}` : String(n))).join(',');
      this.pub = client.duplicate(nodes, options);
      this.sub = client.duplicate(nodes, options);
    } else {
      const o = client.options as { host?: string; port?: number; path?: string; tls?: unknown; username?: string; password?: string };
      const auth = o.password === undefined || o.password === null || o.password === '' ? '' : `${o.username ?? ''}:***@`;
      this.address = `${o.tls === undefined ? 'redis' : 'rediss'}://${auth}${o.path ?? `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`}`;
      const options = { enableOfflineQueue: false, lazyConnect: true, autoResubscribe: true, retryStrategy, maxRetriesPerRequest: 0 };
      // The commands of one turn go out in one write, so Redis runs them back to back (as
      // node-redis does by itself): a member's join announcement and its join frame reach
      // every process with nothing of another process between them.
      this.pub = client.duplicate({ ...options, enableAutoPipelining: true });
      this.sub = client.duplicate(options);
    }
  }

  isReady(side: LinkSide): boolean {
    return this.ready[side];
  }

  open(events: LinkEvents): void {
    this.events = events;
    this.sub.on('message', (channel: string, message: string) => events.message(channel, message));
    this.sub.on('smessage', (channel: string, message: string) => events.message(channel, message));
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
        if (client.status === 'ready') return;
        if (this.ready[side]) lost(err);
        else events.down(side, err); // a failed attempt: why it is not up yet

      });
      client.on('close', () => lost(new Error('connection closed')));
      client.on('end', () => lost(new Error('connection ended')));
      client.connect().catch(() => {});
    }
  }

  publish(channel: string, payload: string): Promise<unknown> {
    return this.sharded ? this.pub.spublish(channel, payload) : this.pub.publish(channel, payload);
  }

  subscribe(channels: readonly string[]): Promise<unknown> {
    return this.sharded ? this.sub.ssubscribe(...channels) : this.sub.subscribe(...channels);
  }

  unsubscribe(channels: readonly string[]): Promise<unknown> {
    return this.sharded ? this.sub.sunsubscribe(...channels) : this.sub.unsubscribe(...channels);
  }

  command(_key: string, args: readonly string[]): Promise<unknown> {
    // A Cluster routes by the command's key; PING (no key) goes to any node.
    return this.pub.call(args[0]!, ...args.slice(1));
  }

  isReplyError(err: unknown): boolean {
    return isRedisReply(err);
  }

  reset(only?: LinkSide): void {
    if (this.closed) return;
    if (only !== 'sub') this.pub.disconnect(true);
    if (only !== 'pub') this.sub.disconnect(true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      [this.pub, this.sub].map(async (client) => {
        if (client.status === 'end') return;
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)));
        // The publishes of this turn wait in the auto-pipeline, which QUIT does not: a
        // round trip first lets them out (the goodbye among them).
        const quit = async (): Promise<void> => {
          await client.call('PING').catch(() => {});
          await client.quit().catch(() => {});
        };
        if (client.status === 'ready') await Promise.race([quit(), late]);
        clearTimeout(timer);
        client.disconnect();
      }),
    );
  }
}
