// @ts-check
/**
 * Bench-only preload (`node --expose-gc --require bench/servers/heap-probe.cjs <server>`),
 * the same for every target, so that the member scenario can read the V8 heap of any
 * server without changing it (roomwire's dist/bin/roomwire.js included): on the IPC
 * message `{ op: 'heap', id }` it runs two full garbage collections and answers
 * `{ op: 'heap', id, memory: process.memoryUsage() }`.
 *
 * It does nothing without an IPC channel or without `--expose-gc`. The channel is
 * unref'd, so it never keeps a server alive that would otherwise exit (every target
 * exits by itself on SIGTERM). A server that has 'message' listeners of its own
 * (roomwire-gc.mjs) is not meant to be run with it.
 */
'use strict';

const gc = /** @type {undefined | (() => void)} */ (/** @type {any} */ (globalThis).gc);
if (typeof process.send === 'function' && typeof gc === 'function') {
  process.on('message', (/** @type {any} */ msg) => {
    if (msg === null || typeof msg !== 'object' || msg.op !== 'heap') return;
    gc();
    gc();
    try {
      process.send?.({ op: 'heap', id: msg.id, memory: process.memoryUsage() });
    } catch {
      // the harness went away
    }
  });
  // Listening for 'message' refs the channel; the server's own handles decide its life.
  /** @type {any} */ (process).channel?.unref();
}
