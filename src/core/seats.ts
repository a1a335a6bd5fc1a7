/**
 * Connection caps per user and per client address (docs/protocol.md section 10): the counts
 * of one process. The default broker enforces the caps with them alone; the Redis broker
 * counts in Redis across processes and falls back to them while Redis cannot be reached.
 */
import type { BrokerSeats, SeatKey } from './types';

/** The Redis-safe name of a key: `user:<id>` or `address:<address>`. */
export function seatName(key: Pick<SeatKey, 'kind' | 'id'>): string {
  return `${key.kind}:${key.id}`;
}

/** Open connections of this process per user and per address. */
export class LocalSeats implements BrokerSeats {
  private readonly counts = new Map<string, number>();

  /** This process's count for `name` ({@link seatName}). */
  count(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  /** Every key this process holds connections for, with its count. */
  entries(): IterableIterator<[string, number]> {
    return this.counts.entries();
  }

  /** Count one connection on each key, unless one of them is at its cap here: the index of that key, or -1. */
  acquire(keys: readonly SeatKey[]): number {
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as SeatKey;
      if (this.count(seatName(k)) >= k.cap) return i;
    }
    this.add(keys);
    return -1;
  }

  /** Count one connection on each key, whatever the caps (it was counted elsewhere). */
  add(keys: readonly Pick<SeatKey, 'kind' | 'id'>[]): void {
    for (const k of keys) {
      const name = seatName(k);
      this.counts.set(name, this.count(name) + 1);
    }
  }

  release(keys: readonly Pick<SeatKey, 'kind' | 'id'>[]): void {
    for (const k of keys) {
      const name = seatName(k);
      const n = this.count(name) - 1;
      if (n > 0) this.counts.set(name, n);
      else this.counts.delete(name);
    }
  }
}
