// @ts-check
/**
 * Bench-only: roomwire's standalone server (startServer from dist/server.js, configured
 * by the environment like dist/bin/roomwire.js), run with `node --expose-gc` and an IPC
 * channel, for the soak scenario. On the IPC message `{ op: 'gc', id }` it runs two full
 * garbage collections and answers `{ op: 'gc', id, memory: process.memoryUsage() }`.
 * On SIGTERM it closes every client (1001) and exits 0.
 */
import { startServer } from '../../dist/server.js';

const gc = /** @type {undefined | (() => void)} */ (/** @type {any} */ (globalThis).gc);
if (typeof gc !== 'function') {
  console.error('roomwire-gc: run with node --expose-gc');
  process.exit(2);
}

/** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
let running;
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  if (!running) process.exit(0);
  running.close().then(
    () => process.exit(0),
    (/** @type {unknown} */ err) => {
      console.error(`roomwire-gc: shutdown failed: ${/** @type {Error} */ (err)?.message ?? err}`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The harness went away: do not linger.
process.on('disconnect', stop);

process.on('message', (/** @type {any} */ msg) => {
  if (msg?.op !== 'gc') return;
  gc();
  gc();
  process.send?.({ op: 'gc', id: msg.id, memory: process.memoryUsage() });
});

try {
  running = await startServer({ env: process.env });
} catch (err) {
  console.error(`roomwire-gc: cannot start: ${/** @type {Error} */ (err).message}`);
  process.exit(2);
}
if (stopping) {
  stopping = false;
  stop();
}
