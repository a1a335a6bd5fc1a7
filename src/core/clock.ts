/** The system clock, and the default for {@link HubOptions.clock}. */
import type { Clock } from './types';

function unref(handle: unknown): void {
  // Timers must not keep a process alive on their own: the server socket does that.
  (handle as { unref?: () => void }).unref?.();
}

/** {@link Clock} on `Date.now` and `setInterval`; its timers do not hold the process open. */
export const systemClock: Clock = {
  now: () => Date.now(),
  every(ms, fn) {
    const handle = setInterval(fn, ms);
    unref(handle);
    return () => clearInterval(handle);
  },
  after(ms, fn) {
    const handle = setTimeout(fn, ms);
    unref(handle);
    return () => clearTimeout(handle);
  },
};
