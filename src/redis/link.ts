/**
 * The seam between roomwire and a Redis client library: the few things the Redis bus
 * needs, which one small adapter per library (node-redis, ioredis) provides. Every Redis
 * byte goes through the library; nothing here speaks RESP.
 */

/** Which connection of a link: the one that publishes and runs commands, or the subscriber. */
export type LinkSide = 'pub' | 'sub';

/** What a {@link RedisLink} reports. */
export interface LinkEvents {
  /** That side's connection is (again) ready for commands. */
  ready(side: LinkSide): void;
  /** That side's connection is lost; the library reconnects by itself. */
  down(side: LinkSide, err: Error): void;
  /** A pub/sub message (sharded ones included) on the subscriber side. */
  message(channel: string, payload: string): void;
  /** An error that is not a lost connection: a refused login, a refused command. */
  error(err: Error): void;
}

/**
 * Two connections to one Redis deployment (a node, a Cluster, or the master a Sentinel
 * set points to), made from a client the user gave or one made from a URL, with the
 * library's offline queue off: a command while disconnected fails at once.
 */
export interface RedisLink {
  /** The library and topology, for messages: `node-redis cluster`. */
  readonly name: string;
  /** Room and control channels go over sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`): a Cluster. */
  readonly sharded: boolean;
  /** Where it connects, without passwords, for messages. */
  readonly address: string;
  /** Whether that side is ready for commands now. */
  isReady(side: LinkSide): boolean;
  /** Connect both sides, and report through `events` until {@link RedisLink.close}. */
  open(events: LinkEvents): void;
  /** `PUBLISH` (`SPUBLISH` when sharded). */
  publish(channel: string, payload: string): Promise<unknown>;
  /** `SUBSCRIBE` (`SSUBSCRIBE` when sharded); the library resubscribes after a reconnect. */
  subscribe(channels: readonly string[]): Promise<unknown>;
  /** `UNSUBSCRIBE` (`SUNSUBSCRIBE` when sharded). */
  unsubscribe(channels: readonly string[]): Promise<unknown>;
  /** A command on the publishing side, on the node serving `key` in a Cluster. */
  command(key: string, args: readonly string[]): Promise<unknown>;
  /** Whether `err` is Redis's answer (a refused command), not a lost connection. */
  isReplyError(err: unknown): boolean;
  /** Drop that side's connection (both when not given) and reconnect: the server stopped answering. */
  reset(side?: LinkSide): void;
  /** Disconnect for good, after the commands already sent. */
  close(): Promise<void>;
}
