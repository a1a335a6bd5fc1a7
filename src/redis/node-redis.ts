/**
 * The {@link RedisLink} on node-redis v5 (`redis`): a client (`createClient`), a cluster
 * (`createCluster`), a Sentinel set (`createSentinel`, made from the settings) or the user's
 * own sentinel client, each side (publisher, subscriber) its own connection with the offline
 * queue off.
 *
 * A client reconnects by itself. A cluster does not follow every change of the deployment
 * (node-redis 5.12 keeps reconnecting to a dead master, and its sharded subscriptions are
 * lost after a failover or a slot move): on a lost node or a moved channel, that side is
 * dropped and made anew from the settings, and the bus subscribes everything again. A
 * sentinel client follows a new master by itself; the link reports that side down until the
 * new master answers (what was published meanwhile is missed), and makes it anew when its
 * connection to the master fails otherwise. With the user's sentinel client, each side is a
 * plain client of the master that sentinel client points to, made anew when it points
 * elsewhere or the connection fails (see {@link NodeRedisLink}).
 */
import { readFileSync } from 'node:fs';
import type { RedisSettings } from './env';
import type { LinkEvents, LinkSide, RedisLink } from './link';
import { isRedisReply, loadPeer, Problems } from './peer';
import { maskUrlPassword, parseRedisUrl } from './url';

type Listener = (message: string, channel: string) => void;

/** The parts of a node-redis v5 client, cluster or sentinel client that roomwire uses. */
interface NodeRedisLike {
  on(event: string, fn: (...args: never[]) => void): unknown;
  duplicate(overrides?: object): NodeRedisLike;
  connect(): Promise<unknown>;
  destroy(): unknown;
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
  readonly masters?: { pubSub?: { client?: NodeRedisLike } }[];
}

/** A master's address, as a node-redis sentinel client gives it. */
interface NodeAddress {
  readonly host: string;
  readonly port: number;
}

/** The parts of a user's node-redis v5 sentinel client (`createSentinel`) that roomwire uses. */
interface NodeRedisSentinelLike {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  /** Where its connection to the master goes, while that connection is ready. */
  getMasterNode(): NodeAddress | undefined;
  /** Runs `fn` with its connection to the master (after any rediscovery under way). */
  _execute<T>(isReadonly: boolean, fn: (client: NodeRedisLike) => Promise<T>): Promise<T>;
}

/** Whether `client` is a node-redis v5 client or cluster (or a sentinel client made from settings). @internal */
export function isNodeRedis(client: object): boolean {
  const c = client as Partial<NodeRedisLike>;
  return typeof c.sSubscribe === 'function' && typeof c.duplicate === 'function' && typeof c.sendCommand === 'function' && typeof c.isOpen === 'boolean';
}

/** Whether `client` is a node-redis v5 sentinel client (`createSentinel`). @internal */
export function isNodeRedisSentinel(client: object): boolean {
  const c = client as { getMasterNode?: unknown; acquire?: unknown };
  return typeof c.getMasterNode === 'function' && typeof c.acquire === 'function';
}

/**
 * Why roomwire cannot follow the user's node-redis sentinel client `client`, or undefined
 * when it can (it needs `_execute`, through which node-redis runs every sentinel command).
 *
 * @internal
 */
export function sentinelUnsupported(client: object): string | undefined {
  if (typeof (client as Partial<NodeRedisSentinelLike>)._execute === 'function') return undefined;
  return 'this node-redis sentinel client has no _execute(), through which roomwire reaches its master; pass an ioredis client with sentinels, or the URL settings';
}

/** Never give up; retry at once, then back off to once a second. */
const reconnectStrategy = (retries: number): number => Math.min(50 * 2 ** retries, 1000);

/** Before making a side anew: at once, then backing off to once a second. */
const rebuildDelay = (attempts: number): number => Math.min(100 * 2 ** attempts, 1000);

/** A side made anew stays up this long before its next failure counts as a first one again. */
const STABLE_MS = 5000;

// ---- the link ----------------------------------------------------------------------------

/** Shows where a client connects, without its password. */
function describe(options: Record<string, unknown> | undefined): string {
  if (options === undefined) return 'redis';
  const url = options.url;
  if (typeof url === 'string') return maskUrlPassword(url);
  const roots = options.rootNodes ?? options.sentinelRootNodes;
  if (Array.isArray(roots)) {
    const nodes = roots.map((r: { url?: string; host?: string; port?: number; socket?: { host?: string; port?: number } }) => (r.url !== undefined ? maskUrlPassword(r.url) : `${r.socket?.host ?? r.host ?? '127.0.0.1'}:${r.socket?.port ?? r.port ?? 6379}`)).join(',');
    return typeof options.name === 'string' ? `${nodes} (master set ${options.name})` : nodes;
  }
  const socket = options.socket as { host?: string; port?: number } | undefined;
  return `${socket?.host ?? '127.0.0.1'}:${socket?.port ?? 6379}`;
}

/**
 * What the link holds: a client the library reconnects, a cluster or sentinel client it
 * remakes, or (`master`) plain clients of the master a user's sentinel client points to.
 */
type Kind = 'client' | 'cluster' | 'sentinel' | 'master';

/** One side's connection and a switch that stops the reconnecting of every socket it made. */
interface Made {
  readonly client: NodeRedisLike;
  retire(): void;
}

/** A Sentinel set's settings, kept on the sentinel client `createNodeRedisClient` makes. */
const SENTINEL_OPTIONS = Symbol.for('roomwire.sentinelOptions');

/** How often the link compares its connections with the master a user's sentinel client points to. */
const MASTER_CHECK_MS = 100;

/**
 * The link of one node-redis client, cluster or sentinel client.
 *
 * A user's sentinel client (`createSentinel`) cannot be copied: node-redis keeps its
 * settings in private fields (`#options`: the master set's name, the sentinels, their client
 * options) and gives it no `duplicate()`, so a second sentinel client cannot be made from it.
 * Nor is its own publishing sound for the bus: each command takes a lease of its master
 * pool, and a command that waits for the lease is sent after later ones (publishes reordered,
 * unless it was made with `reserveClient`, which cannot be read back); while no master
 * answers it holds commands and resends them to the next master (queued while Redis is down,
 * a message delivered late or twice); `acquire()` would take a pool slot from the user's own
 * commands; and its pub/sub connection reports a loss only as an `error` that could as well be
 * about a sentinel. (Listening to its `topology-change` events is no better: once the last
 * listener is removed from the object `createSentinel` returns, node-redis 5.12 no longer
 * delivers any event added after, the user's `error` listener included.)
 *
 * So the link uses the user's sentinel client for what it does well, finding the master, and
 * nothing else: each side is a plain client duplicated (`duplicate()`) from the sentinel
 * client's own connection to the master, which `_execute()` hands over (the one method every
 * node-redis sentinel command goes through, typed in its public declarations): same address
 * (after `nodeAddressMap`), login, TLS and database, with the offline queue off and no
 * reconnecting of its own. Every {@link MASTER_CHECK_MS} ms the link compares its
 * connections with `getMasterNode()`; when the sentinel client points elsewhere (a failover),
 * or a connection fails, that side is reported down and made anew from the sentinel client,
 * which waits for its own rediscovery first. (node-redis 5.12 subscribes to the pattern
 * `switch-master`, which matches none of the sentinels' channels (`+switch-master`), so it
 * learns of a failover from a later event such as `+slave`, or from a failed command: the hub
 * follows when the user's client does.)
 * The user's client is connected if it is not open when the hub starts (once closed, it
 * stays closed); roomwire never closes it and adds no listener to it.
 *
 * @internal
 */
export class NodeRedisLink implements RedisLink {
  readonly sharded: boolean;
  readonly name: string;
  private readonly kind: Kind;
  /** Where it connects, for messages. */
  private readonly where: () => string;
  /** A new copy of the user's client with the offline queue off, for one side. */
  private readonly make: () => Made | Promise<Made>;
  /** The user's sentinel client, for the `master` kind. */
  private readonly sentinel: NodeRedisSentinelLike | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private readonly made: Record<LinkSide, Made | undefined> = { pub: undefined, sub: undefined };
  private readonly ready = { pub: false, sub: false };
  private readonly attempts = { pub: 0, sub: 0 };
  private readonly timers: Record<LinkSide, NodeJS.Timeout | undefined> = { pub: undefined, sub: undefined };
  /** Why the side's current attempt failed (a cluster's connect only says "all root nodes unavailable"). */
  private readonly lastError: Record<LinkSide, Error | undefined> = { pub: undefined, sub: undefined };
  /** Failures worth telling the user of: refused logins and commands, failed TLS handshakes. */
  private readonly problems = new Problems((err) => this.events?.error(err));
  private events: LinkEvents | undefined;
  private closed = false;
  /** Sharded subscribers whose moved channels are watched. */
  private readonly watched = new WeakSet<object>();
  private readonly listener: Listener = (message, channel) => this.events?.message(channel, message);
  /** Publishes and commands not answered yet, which {@link NodeRedisLink.close} lets finish. */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(client: NodeRedisLike | NodeRedisSentinelLike) {
    const sentinel = (client as { [SENTINEL_OPTIONS]?: Record<string, unknown> })[SENTINEL_OPTIONS];
    if (sentinel === undefined && isNodeRedisSentinel(client)) {
      this.kind = 'master';
      this.sharded = false;
      this.name = 'node-redis sentinel';
      const users = client as NodeRedisSentinelLike;
      this.sentinel = users;
      this.where = () => {
        const master = users.getMasterNode();
        return `the master of a node-redis sentinel client${master === undefined ? '' : ` (${master.host}:${master.port})`}`;
      };
      let first = true;
      this.make = async () => {
        const connect = first;
        first = false;
        if (!users.isOpen) {
          // Connected if it was not open when the hub started; once closed, it is the user's.
          if (!connect) throw new Error('the node-redis sentinel client is closed');
          await users.connect();
        }
        if (!users.isReady) throw new Error('the node-redis sentinel client has not found its master yet');
        const c = await users._execute(false, async (master) => {
          const socket = (master.options?.socket ?? {}) as Record<string, unknown>;
          // Its own connection to the master, with the user's login, TLS and database; no
          // client-side cache of the user's (a pub/sub side has no use for it).
          return master.duplicate({ disableOfflineQueue: true, clientSideCache: undefined, socket: { ...socket, reconnectStrategy: false } });
        });
        return { client: c, retire: () => {} };
      };
      return; // made when opened: the sentinel client may not be connected yet
    }
    const c = client as NodeRedisLike;
    this.sentinel = undefined;
    this.kind = sentinel !== undefined ? 'sentinel' : Array.isArray(c.masters) ? 'cluster' : 'client';
    this.sharded = this.kind === 'cluster';
    this.name = this.kind === 'client' ? 'node-redis' : `node-redis ${this.kind}`;
    if (this.kind === 'cluster') {
      const options = c._options ?? {};
      const defaults = (options.defaults ?? {}) as Record<string, unknown>;
      const socket = (defaults.socket ?? {}) as Record<string, unknown>;
      const address = describe(options);
      this.where = () => address;
      this.make = () => {
        let gone = false;
        const strategy = (retries: number): number | Error => (gone ? new Error('replaced') : reconnectStrategy(retries));
        const made = c.duplicate({ defaults: { ...defaults, disableOfflineQueue: true, socket: { ...socket, reconnectStrategy: strategy } } });
        return { client: made, retire: () => (gone = true) };
      };
    } else if (this.kind === 'sentinel') {
      const address = describe(sentinel);
      this.where = () => address;
      this.make = () => {
        let gone = false;
        const strategy = (retries: number): number | Error => (gone ? new Error('replaced') : reconnectStrategy(retries));
        const made = c.duplicate({ disableOfflineQueue: true, socket: { reconnectStrategy: strategy } });
        return { client: made, retire: () => (gone = true) };
      };
    } else {
      const options = c.options ?? {};
      const socket = (options.socket ?? {}) as Record<string, unknown>;
      const address = describe(options);
      this.where = () => address;
      this.make = () => ({ client: c.duplicate({ disableOfflineQueue: true, socket: { ...socket, reconnectStrategy } }), retire: () => {} });
    }
    // Made now, so that bad options fail createRedisBroker rather than the first connect.
    this.made.pub = this.make() as Made;
    this.made.sub = this.make() as Made;
  }

  /** Where it connects, without passwords, for messages. */
  get address(): string {
    return this.where();
  }

  isReady(side: LinkSide): boolean {
    return this.ready[side];
  }

  open(events: LinkEvents): void {
    this.events = events;
    if (this.kind === 'master') {
      this.watchTimer = setInterval(() => this.followMaster(), MASTER_CHECK_MS);
      this.watchTimer.unref();
    }
    for (const side of ['pub', 'sub'] as const) {
      if (this.kind === 'client') this.openClient(side, this.made[side]!.client);
      else if (this.kind === 'master') this.makeSide(side);
      else this.start(side, this.made[side]!);
    }
  }

  /** `master` kind: drop each side connected elsewhere than the user's sentinel client's master now. */
  private followMaster(): void {
    if (this.closed) return;
    const master = this.sentinel!.getMasterNode();
    if (master === undefined) return; // no ready connection to it: rediscovering, or down
    for (const side of ['pub', 'sub'] as const) {
      const made = this.made[side];
      const socket = made?.client.options?.socket as { host?: unknown; port?: unknown } | undefined;
      if (made === undefined || (socket?.host === master.host && socket?.port === master.port)) continue;
      this.attempts[side] = 0; // a failover, not a failing node: make it anew at once
      this.fail(side, made, new Error(`the master moved to ${master.host}:${master.port}`));
    }
  }


  private up(side: LinkSide): void {
    this.ready[side] = true;
    this.lastError[side] = undefined;
    this.problems.cleared();
    this.events?.ready(side);
  }

  // ---- a client: the library reconnects it, and resubscribes ----------------------------

  private openClient(side: LinkSide, client: NodeRedisLike): void {
    const events = this.events!;
    client.on('ready', () => {
      if (this.closed) return;
      this.attempts[side] = 0;
      this.up(side);
    });
    const lost = (err: Error): void => {
      if (!this.ready[side] || this.closed) return;
      this.ready[side] = false;
      events.down(side, err);
    };
    client.on('error', (err: Error) => {
      // While backing off after a failed TLS handshake, the errors of tearing it down say nothing.
      if (this.closed || this.timers[side] !== undefined) return;
      const why = this.problems.seen(err);
      if (why !== err) this.backOff(side, client);
      if (client.isReady === true) return;
      if (this.ready[side]) lost(why);
      else events.down(side, why); // a failed attempt: why it is not up yet
    });
    client.on('end', () => lost(new Error('connection closed')));
    client.connect().catch(() => {}); // failures are reported through 'error'; the client retries
  }

  /**
   * After a failed TLS handshake: drop the connection at once and try again after a backoff.
   * A server that refuses this client's certificate does so after node-redis counts the
   * connection as ready (TLS 1.3), and node-redis then reconnects at once, hundreds of times
   * a second; and the socket's second error (the reset that follows the alert) would find no
   * listener and crash the process.
   */
  private backOff(side: LinkSide, client: NodeRedisLike): void {
    if (this.timers[side] !== undefined) return;
    try {
      client.destroy();
    } catch {
      // already closed
    }
    this.timers[side] = setTimeout(() => {
      this.timers[side] = undefined;
      if (!this.closed) client.connect().catch(() => {});
    }, rebuildDelay(this.attempts[side]++));
  }

  // ---- a cluster or a sentinel client: made anew when the deployment changes -------------

  private start(side: LinkSide, made: Made): void {
    this.made[side] = made;
    const c = made.client;
    const mine = (): boolean => !this.closed && this.made[side] === made;
    c.on('error', (err: unknown) => {
      // The sentinel client also emits strings, about the sentinels it asks.
      if (!mine() || !(err instanceof Error)) return;
      const why = this.problems.seen(err);
      if (!this.ready[side]) {
        // Why this attempt is not up yet (a cluster's discovery, a sentinel not answering).
        this.lastError[side] = why;
        this.events?.down(side, why);
      } else if ((this.kind === 'master' || (this.kind === 'sentinel' && side === 'sub')) && !isRedisReply(err)) {
        // The subscriber's connection to the master failed: what it missed is unknown. A
        // `master` side never reconnects by itself: the master may be elsewhere now.
        this.fail(side, made, why);
      }
    });
    if (this.kind === 'master') {
      // A plain client: no topology events; followMaster() and its errors say when to move.
    } else if (this.kind === 'cluster') {
      c.on('node-error', (err: Error) => {
        if (!mine()) return;
        const why = this.problems.seen(err);
        // A node lost (a master killed, say): node-redis would keep knocking at its door.
        if (!isRedisReply(err)) this.fail(side, made, why);
      });
    } else {
      c.on('client-error', (event: { type?: string; error?: unknown }) => {
        if (!mine() || event.type !== 'MASTER' || !(event.error instanceof Error)) return;
        const why = this.problems.seen(event.error);
        if (!isRedisReply(event.error)) this.fail(side, made, why);
      });
      c.on('topology-change', (event: { type?: string; node?: { host?: string; port?: number } }) => {
        if (!mine() || event.type !== 'MASTER_CHANGE' || !this.ready[side]) return;
        // The sentinel client moves its connections (and its subscriptions) to the new master
        // by itself; what was published meanwhile is missed. Down until the new master answers.
        this.ready[side] = false;
        this.events?.down(side, new Error(`the master moved to ${event.node?.host ?? '?'}:${event.node?.port ?? '?'}`));
        const answered = c.sendCommand(false, ['PING']);
        const late = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the new master did not answer')), 5000).unref());
        Promise.race([answered, late]).then(
          () => {
            if (mine() && !this.ready[side]) this.up(side);
          },
          (err: unknown) => this.fail(side, made, err instanceof Error ? err : new Error(String(err))),
        );
      });
    }
    c.connect().then(
      () => {
        if (!mine()) return;
        this.up(side);
        const timer = setTimeout(() => {
          if (mine() && this.ready[side]) this.attempts[side] = 0;
        }, STABLE_MS);
        timer.unref();
      },
      (err: unknown) => {
        if (!mine()) return;
        const why = err instanceof Error ? err : new Error(String(err));
        this.fail(side, made, this.lastError[side] ?? why);
      },
    );
  }

  /** Drop `made` (that side's current connection): report the side down and make it anew. */
  private fail(side: LinkSide, made: Made, err: Error): void {
    if (this.closed || this.made[side] !== made) return;
    this.made[side] = undefined;
    this.ready[side] = false;
    this.events?.down(side, err);
    this.dispose(made);
    this.remake(side);
  }

  /** Make that side anew after a backoff. */
  private remake(side: LinkSide): void {
    this.timers[side] = setTimeout(() => {
      this.timers[side] = undefined;
      if (!this.closed) this.makeSide(side);
    }, rebuildDelay(this.attempts[side]++));
  }

  /** Make that side now and start it; on failure, report it down and try again after a backoff. */
  private makeSide(side: LinkSide): void {
    let next: Made | Promise<Made>;
    try {
      next = this.make();
    } catch (err) {
      this.events?.down(side, err as Error);
      this.remake(side);
      return;
    }
    if (!(next instanceof Promise)) {
      this.start(side, next);
      return;
    }
    // A user's sentinel client: connecting it, or waiting for it to find the master.
    next.then(
      (made) => {
        if (this.closed) this.dispose(made);
        else this.start(side, made);
      },
      (err: unknown) => {
        if (this.closed) return;
        this.events?.down(side, this.problems.seen(err instanceof Error ? err : new Error(String(err))));
        this.remake(side);
      },
    );
  }

  private dispose(made: Made): void {
    made.retire();
    try {
      const done = made.client.destroy();
      if (done instanceof Promise) done.catch(() => {});
    } catch {
      // already closed
    }
  }

  /** A cluster's sharded subscribers say when a channel moved to another shard (node-redis does not follow). */
  private watchMoves(made: Made): void {
    for (const master of made.client.masters ?? []) {
      const sub = master.pubSub?.client;
      if (sub === undefined || this.watched.has(sub)) continue;
      this.watched.add(sub);
      sub.on('sharded-channel-moved', (channel: string) => this.fail('sub', made, new Error(`the channel ${channel} moved to another shard`)));
    }
  }

  // ---- commands ----------------------------------------------------------------------------

  private side(side: LinkSide): NodeRedisLike | undefined {
    return this.made[side]?.client;
  }

  /** `sent`, kept in {@link NodeRedisLink.pending} until it settles. */
  private track(sent: Promise<unknown>): Promise<unknown> {
    this.pending.add(sent);
    const settled = (): void => void this.pending.delete(sent);
    sent.then(settled, settled);
    return sent;
  }

  publish(channel: string, payload: string): Promise<unknown> {
    const c = this.side('pub');
    if (c === undefined) return Promise.reject(new Error('not connected'));
    return this.track(this.sharded ? c.sPublish(channel, payload) : c.publish(channel, payload));
  }

  subscribe(channels: readonly string[]): Promise<unknown> {
    const made = this.made.sub;
    if (made === undefined) return Promise.reject(new Error('not connected'));
    if (!this.sharded) return made.client.subscribe([...channels], this.listener);
    // One SSUBSCRIBE per channel: a Cluster refuses channels of several slots in one.
    return Promise.all(channels.map((ch) => made.client.sSubscribe([ch], this.listener))).then(() => this.watchMoves(made));
  }

  unsubscribe(channels: readonly string[]): Promise<unknown> {
    const c = this.side('sub');
    if (c === undefined) return Promise.reject(new Error('not connected'));
    if (!this.sharded) return c.unsubscribe([...channels], this.listener);
    return Promise.all(channels.map((ch) => c.sUnsubscribe([ch], this.listener)));
  }

  command(key: string, args: readonly string[]): Promise<unknown> {
    const c = this.side('pub');
    if (c === undefined) return Promise.reject(new Error('not connected'));
    if (this.kind === 'cluster') return this.track(c.sendCommand(key, false, [...args]));
    if (this.kind === 'sentinel') return this.track(c.sendCommand(false, [...args]));
    return this.track(c.sendCommand([...args]));
  }

  isReplyError(err: unknown): boolean {
    return isRedisReply(err);
  }

  reset(only?: LinkSide): void {
    if (this.closed) return;
    for (const side of only === undefined ? (['pub', 'sub'] as const) : [only]) {
      const made = this.made[side];
      if (made === undefined || this.timers[side] !== undefined) continue; // being made anew, or backing off, already
      if (this.kind !== 'client') {
        this.fail(side, made, new Error('Redis stopped answering'));
        continue;
      }
      try {
        made.client.destroy();
      } catch {
        // already closed
      }
      made.client.connect().catch(() => {});
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchTimer);
    for (const side of ['pub', 'sub'] as const) clearTimeout(this.timers[side]);
    // A frozen server never answers: give it a second in all.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)));
    // The last commands (the process's goodbye, its entry leaving the registry) go out before
    // the connections close: a cluster sends a command only a turn or more after it is issued
    // (node-redis finds the slot's node asynchronously), and closing at once would drop them.
    await Promise.race([Promise.allSettled([...this.pending]), late]);
    await Promise.all(
      [this.made.pub, this.made.sub].map(async (made) => {
        if (made === undefined) return;
        made.retire();
        const client = made.client;
        if (!client.isOpen) return;
        await Promise.race([client.close().catch(() => {}), late]);
        try {
          if (client.isOpen) {
            const done = client.destroy();
            if (done instanceof Promise) await done.catch(() => {});
          }
        } catch {
          // closed meanwhile
        }
      }),
    );
    clearTimeout(timer);
  }
}

// ---- clients from the settings -----------------------------------------------------------

interface NodeRedisModule {
  createClient(options: object): NodeRedisLike;
  createCluster(options: object): NodeRedisLike;
  createSentinel(options: object): NodeRedisLike;
}

/** TLS options from the settings' files. */
function tlsOptions(settings: Pick<RedisSettings, 'tlsCa' | 'tlsCert' | 'tlsKey'>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (settings.tlsCa !== undefined) out.ca = readFileSync(settings.tlsCa);
  if (settings.tlsCert !== undefined) out.cert = readFileSync(settings.tlsCert);
  if (settings.tlsKey !== undefined) out.key = readFileSync(settings.tlsKey);
  return out;
}

/**
 * A node-redis sentinel client for `options` that the link can copy: `duplicate(overrides)`
 * makes another from the same settings, with `overrides` (client options: the offline queue,
 * the socket's reconnect strategy) applied to its connections to the data nodes.
 */
function duplicableSentinel(redis: NodeRedisModule, options: Record<string, unknown>): NodeRedisLike {
  const sentinel = redis.createSentinel(options);
  const duplicate = (overrides: Record<string, unknown> = {}): NodeRedisLike => {
    const node = (options.nodeClientOptions ?? {}) as Record<string, unknown>;
    const socket = { ...((node.socket ?? {}) as Record<string, unknown>), ...((overrides.socket ?? {}) as Record<string, unknown>) };
    return duplicableSentinel(redis, { ...options, nodeClientOptions: { ...node, ...overrides, socket } });
  };
  return Object.assign(sentinel, { duplicate, [SENTINEL_OPTIONS]: options });
}

/**
 * A node-redis client (not connected) for `settings`: a client, a cluster of the seed
 * nodes, or a sentinel client of the master set the sentinels watch (the user, password and
 * TLS of the first URL apply to the sentinels and to the data nodes). Needs the `redis` package.
 *
 * @internal
 */
export function createNodeRedisClient(settings: Pick<RedisSettings, 'urls' | 'mode' | 'sentinelName' | 'tlsCa' | 'tlsCert' | 'tlsKey'>): NodeRedisLike {
  const redis = loadPeer<NodeRedisModule>('redis', 'A Redis URL', (require) => require('redis'));
  const tls = tlsOptions(settings);
  const first = parseRedisUrl(settings.urls[0]!);
  if (settings.mode === 'cluster') {
    return redis.createCluster({
      rootNodes: settings.urls.map((url) => ({ url })),
      defaults: { username: first.username, password: first.password, socket: { tls: first.tls, ...tls } },
    });
  }
  if (settings.mode === 'sentinel') {
    const auth = { username: first.username, password: first.password };
    const socket = first.tls ? { tls: true, ...tls } : {};
    return duplicableSentinel(redis, {
      name: settings.sentinelName,
      // Every command on one connection, in order (a pool lease per command reorders publishes).
      reserveClient: true,
      sentinelRootNodes: settings.urls.map((url) => {
        const { host, port } = parseRedisUrl(url);
        return { host, port };
      }),
      sentinelClientOptions: { ...auth, socket },
      nodeClientOptions: { ...auth, ...(first.database === undefined ? {} : { database: first.database }), socket },
    });
  }
  return redis.createClient({ url: settings.urls[0], socket: { tls: first.tls, ...tls } });
}
