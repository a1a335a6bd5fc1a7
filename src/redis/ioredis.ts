/**
 * The {@link RedisLink} on ioredis: a `Redis` (a Sentinel set's master included) or a
 * `Cluster`, duplicated into a publisher and a subscriber with the offline queue off (a
 * Cluster with `shardedSubscribers`; a Sentinel client with `failoverDetector`).
 */
import type { LinkEvents, LinkSide, RedisLink } from './link';
import { isRedisReply, Problems } from './peer';

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
  /** A Cluster's connections to its nodes. */
  nodes?(role: 'master'): { ping(): Promise<unknown> }[];
}

/** Whether `client` is an ioredis `Redis` or `Cluster`. @internal */
export function isIoredis(client: object): boolean {
  const c = client as Partial<IoredisLike>;
  return typeof c.status === 'string' && typeof c.call === 'function' && typeof c.duplicate === 'function';
}

/** Retry at once, then back off to once a second, forever. */
const retryStrategy = (times: number): number => Math.min(50 * 2 ** times, 1000);

/** Before making a Cluster's side anew: at once, then backing off to once a second. */
const rebuildDelay = (attempts: number): number => Math.min(100 * 2 ** attempts, 1000);

/** A side made anew stays up this long before its next failure counts as a first one again. */
const STABLE_MS = 5000;

/** `host:port` of an ioredis node or startup node. */
const hostPort = (n: unknown): string =>
  typeof n === 'object' && n !== null ? `${(n as { host?: string }).host ?? '127.0.0.1'}:${(n as { port?: number }).port ?? 6379}` : String(n);

/** @internal */
export class IoredisLink implements RedisLink {
  readonly sharded: boolean;
  readonly name: string;
  readonly address: string;
  /** The two sides; a Cluster's are made anew when the deployment changes under them. */
  private readonly clients: Record<LinkSide, IoredisLike>;
  private readonly make: Record<LinkSide, () => IoredisLike>;
  private readonly ready = { pub: false, sub: false };
  private readonly attempts = { pub: 0, sub: 0 };
  private readonly timers: Record<LinkSide, NodeJS.Timeout | undefined> = { pub: undefined, sub: undefined };
  /** Failures worth telling the user of: refused logins and commands, failed TLS handshakes. */
  private readonly problems = new Problems((err) => this.events?.error(err));
  private events: LinkEvents | undefined;
  private closed = false;

  constructor(client: IoredisLike) {
    this.sharded = client.isCluster === true;
    if (this.sharded) {
      this.name = 'ioredis cluster';
      const options = { enableOfflineQueue: false, shardedSubscribers: true, lazyConnect: true, clusterRetryStrategy: retryStrategy };
      const nodes = (client as unknown as { startupNodes?: unknown[] }).startupNodes ?? [];
      this.address = nodes.map(hostPort).join(',');
      this.make = {
        // No redirection is followed: ioredis resends a redirected or failed command later,
        // after the commands sent since, and one sender's messages would arrive out of order.
        // A failed publish makes the publisher anew instead (a fresh map of the slots).
        pub: () => client.duplicate(nodes, { ...options, maxRedirections: 0 }),
        sub: () => client.duplicate(nodes, options),
      };
    } else {
      const o = client.options as { host?: string; port?: number; path?: string; tls?: unknown; username?: string; password?: string; sentinels?: unknown[]; name?: string };
      const auth = o.password === undefined || o.password === null || o.password === '' ? '' : `${o.username ?? ''}:***@`;
      const sentinels = Array.isArray(o.sentinels) && o.sentinels.length > 0;
      this.name = sentinels ? 'ioredis sentinel' : 'ioredis';
      this.address = sentinels
        ? `${o.sentinels!.map(hostPort).join(',')} (master set ${o.name ?? '?'})`
        : `${o.tls === undefined ? 'redis' : 'rediss'}://${auth}${o.path ?? `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`}`;
      const options = {
        enableOfflineQueue: false,
        lazyConnect: true,
        autoResubscribe: true,
        retryStrategy,
        maxRetriesPerRequest: 0,
        // Without it, ioredis stays on a master the sentinels replaced until that one drops the connection.
        ...(sentinels ? { failoverDetector: true } : {}),
      };
      this.make = {
        // The commands of one turn go out in one write, so Redis runs them back to back (as
        // node-redis does by itself): a member's join announcement and its join frame reach
        // every process with nothing of another process between them.
        pub: () => client.duplicate({ ...options, enableAutoPipelining: true }),
        sub: () => client.duplicate(options),
      };
    }
    this.clients = { pub: this.make.pub(), sub: this.make.sub() };
  }

  isReady(side: LinkSide): boolean {
    return this.ready[side];
  }

  open(events: LinkEvents): void {
    this.events = events;
    this.watch('pub', this.clients.pub);
    this.watch('sub', this.clients.sub);
  }


  private watch(side: LinkSide, client: IoredisLike): void {
    const events = this.events!;
    const mine = (): boolean => !this.closed && this.clients[side] === client;
    if (side === 'sub') {
      client.on('message', (channel: string, message: string) => mine() && events.message(channel, message));
      client.on('smessage', (channel: string, message: string) => mine() && events.message(channel, message));
    }
    const up = (): void => {
      this.ready[side] = true;
      this.problems.cleared();
      events.ready(side);
      if (this.sharded) {
        setTimeout(() => {
          if (mine() && this.ready[side]) this.attempts[side] = 0;
        }, STABLE_MS).unref();
      }
    };
    client.on('ready', () => {
      if (!mine()) return;
      if (!this.sharded || side === 'sub') {
        up();
        return;
      }
      // ioredis connects to each master at its first command, and with the offline queue
      // off refuses the commands sent to it meanwhile (then resends them later, out of
      // order): the publisher is ready once every master answered.
      Promise.all((client.nodes?.('master') ?? []).map((node) => node.ping())).then(
        () => {
          if (mine() && client.status === 'ready') up();
        },
        (err: unknown) => this.remake(side, client, err instanceof Error ? err : new Error(String(err))),
      );
    });
    const lost = (err: Error): void => {
      if (!this.ready[side] || !mine()) return;
      this.ready[side] = false;
      events.down(side, err);
    };
    client.on('error', (err: Error) => {
      if (!mine()) return;
      const why = this.problems.seen(err);
      if (client.status === 'ready') return;
      if (this.ready[side]) lost(why);
      else events.down(side, why); // a failed attempt: why it is not up yet
    });
    client.on('close', () => lost(new Error('connection closed')));
    client.on('end', () => lost(new Error('connection ended')));
    if (this.sharded) {
      // A node lost (its master failed, say). ioredis makes another subscriber and
      // resubscribes, but what was published meanwhile is missed, unseen; and it resends
      // what the publisher had in flight later, out of order. Say so, and start over with a
      // new connection on that side (which the bus subscribes to everything).
      // (Before it is ready, the pool drops the startup nodes the cluster names otherwise.)
      client.on('-node', (node?: { options?: unknown }, nodeKey?: unknown) => {
        if (!this.ready[side] || (side === 'sub' && typeof nodeKey !== 'string')) return;
        this.remake(side, client, new Error(`lost the connection to ${typeof nodeKey === 'string' ? nodeKey : hostPort(node?.options)}`));
      });
    }
    client.connect().catch(() => {});
  }

  /** Drop a Cluster's `client` (if still that side's) and make another after a backoff. */
  private remake(side: LinkSide, client: IoredisLike, err: Error): void {
    if (this.closed || this.clients[side] !== client || this.timers[side] !== undefined) return;
    const wasReady = this.ready[side];
    this.ready[side] = false;
    if (wasReady) this.events?.down(side, err);
    client.disconnect();
    this.timers[side] = setTimeout(() => {
      this.timers[side] = undefined;
      if (this.closed) return;
      this.clients[side] = this.make[side]();
      this.watch(side, this.clients[side]);
    }, rebuildDelay(this.attempts[side]++));
  }

  /** On a Cluster, a command that failed other than by Redis's answer means the map of the slots is stale. */
  private checked(side: LinkSide, client: IoredisLike, sent: Promise<unknown>): Promise<unknown> {
    if (!this.sharded) return sent;
    return sent.catch((err: unknown) => {
      if (!isRedisReply(err)) this.remake(side, client, err instanceof Error ? err : new Error(String(err)));
      throw err;
    });
  }

  publish(channel: string, payload: string): Promise<unknown> {
    const pub = this.clients.pub;
    return this.sharded ? this.checked('pub', pub, pub.spublish(channel, payload)) : pub.publish(channel, payload);
  }

  subscribe(channels: readonly string[]): Promise<unknown> {
    const sub = this.clients.sub;
    if (!this.sharded) return sub.subscribe(...channels);
    // One SSUBSCRIBE per channel: ioredis refuses channels of several slots in one.
    return Promise.all(channels.map((ch) => sub.ssubscribe(ch)));
  }

  unsubscribe(channels: readonly string[]): Promise<unknown> {
    const sub = this.clients.sub;
    if (!this.sharded) return sub.unsubscribe(...channels);
    return Promise.all(channels.map((ch) => sub.sunsubscribe(ch)));
  }

  command(_key: string, args: readonly string[]): Promise<unknown> {
    // A Cluster routes by the command's key; PING (no key) goes to any node.
    const pub = this.clients.pub;
    return this.checked('pub', pub, pub.call(args[0]!, ...args.slice(1)));
  }

  isReplyError(err: unknown): boolean {
    return isRedisReply(err);
  }

  reset(only?: LinkSide): void {
    if (this.closed) return;
    for (const side of only === undefined ? (['pub', 'sub'] as const) : [only]) {
      if (this.sharded) this.remake(side, this.clients[side], new Error('Redis stopped answering'));
      else this.clients[side].disconnect(true);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timers.pub);
    clearTimeout(this.timers.sub);
    await Promise.all(
      [this.clients.pub, this.clients.sub].map(async (client) => {
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
