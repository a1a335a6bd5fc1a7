/**
 * Draining (docs/protocol.md section 4): a hub that closes with a window W closes its
 * connections in a random order, spread evenly over W, rather than all at once, and tells
 * each first, with a `reconnect` frame, how long to wait before coming back. A thousand
 * clients of a server being replaced then arrive at the others over W, not in one instant.
 */
import type { Clock } from './types';
import { noop } from './util';

/** A whole number of milliseconds drawn uniformly from 0 to `window`, both included. */
export function reconnectDelay(window: number, random: () => number = Math.random): number {
  const w = Math.floor(window);
  return Math.min(w, Math.floor(random() * (w + 1)));
}

/**
 * Call `close` for each of `items` in a random order, the i-th of n at i·window/n from now
 * (the first at once, the last before the window ends). Returns a function that cancels
 * those not yet due. A timer that fires late closes every one due by then, so a busy event
 * loop delays the schedule without stretching it.
 */
export function spread<T>(items: readonly T[], window: number, clock: Clock, close: (item: T) => void, random: () => number = Math.random): () => void {
  const order = [...items];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as T, order[i] as T];
  }
  const n = order.length;
  const start = clock.now();
  let next = 0;
  let cancel = noop;
  const step = (): void => {
    const elapsed = clock.now() - start;
    while (next < n && (next * window) / n <= elapsed) close(order[next++] as T);
    if (next < n) cancel = clock.after(Math.max(1, Math.ceil((next * window) / n - elapsed)), step);
  };
  step();
  return () => {
    next = n;
    cancel();
  };
}
