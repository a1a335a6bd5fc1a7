/**
 * Token buckets for the message rate (one per connection, stored inline on the
 * connection) and the connection-attempt rate (one per client address, in a bounded map).
 */
import { ratePeriodMs, type RateLimit } from './config';

/**
 * The refill arithmetic of a token bucket, shared by the message rate (one level per
 * connection, kept as two numbers on the connection so it needs no object of its own)
 * and the connection-attempt rate (one level per address, in {@link AddressLimiter}).
 */
export class Bucket {
  /** Tokens added per millisecond. */
  readonly perMs: number;
  readonly burst: number;

  constructor(rate: RateLimit) {
    this.perMs = rate.count / ratePeriodMs(rate);
    this.burst = rate.burst;
  }

  /** Tokens in a bucket that held `tokens` at `since`, at time `now`. */
  level(tokens: number, since: number, now: number): number {
    const t = tokens + (now - since) * this.perMs;
    return t > this.burst ? this.burst : t;
  }

  /** Milliseconds until a bucket at `level` holds one whole token. */
  waitMs(level: number): number {
    return level >= 1 ? 0 : (1 - level) / this.perMs;
  }

  /** Milliseconds for an empty bucket to fill completely. */
  get fillMs(): number {
    return this.burst / this.perMs;
  }
}

interface AddressState {
  tokens: number;
  at: number;
}

/**
 * Connection attempts per client address. Entries are evicted once their bucket has
 * refilled (they then behave like a fresh address), and the map never holds more than
 * `maxEntries` addresses: the least recently seen go first.
 */
export class AddressLimiter {
  private readonly bucket: Bucket;
  private readonly entries = new Map<string, AddressState>();

  constructor(
    rate: RateLimit,
    private readonly maxEntries = 100_000,
  ) {
    this.bucket = new Bucket(rate);
  }

  /** Spend one attempt for `address`; returns 0 when allowed, else the seconds to wait (at least 1). */
  take(address: string, now: number): number {
    let e = this.entries.get(address);
    if (e === undefined) {
      e = { tokens: this.bucket.burst, at: now };
      if (this.entries.size >= this.maxEntries) {
        const oldest = this.entries.keys().next().value as string;
        this.entries.delete(oldest);
      }
    } else {
      // Re-insert so iteration order is least-recently-seen first.
      this.entries.delete(address);
    }
    this.entries.set(address, e);
    const level = this.bucket.level(e.tokens, e.at, now);
    e.at = now;
    if (level >= 1) {
      e.tokens = level - 1;
      return 0;
    }
    e.tokens = level;
    // The epsilon absorbs float error (1 / (1 / 3.6e6) is not exactly 3.6e6).
    return Math.max(1, Math.ceil(this.bucket.waitMs(level) / 1000 - 1e-6));
  }

  /** Drop addresses whose bucket is full again. Called from the heartbeat sweep. */
  evict(now: number): void {
    const fill = this.bucket.fillMs;
    for (const [addr, e] of this.entries) {
      if (now - e.at < fill) break; // least recently seen first: the rest are newer
      this.entries.delete(addr);
    }
  }

  /** Addresses currently tracked. */
  get size(): number {
    return this.entries.size;
  }
}
