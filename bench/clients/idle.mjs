// @ts-check
/**
 * Idle-connection holder for the memory, scale and member scenarios (a separate process,
 * driven by the harness over IPC). It opens connections to the target's base endpoint (no
 * room) with bounded concurrency, spreading them over several local source addresses
 * (127.0.0.x) so the ephemeral port range of one address is not the limit, and then
 * keeps them open and silent: the `ws` client answers protocol pings by itself, and
 * socket.io-client answers Engine.IO pings. With `rooms` (the member scenario) connection
 * i of this open command joins room `{roomPrefix}{(roomOffset + i * roomStride) % rooms}`
 * through its path (Socket.IO: the handshake query) and counts as opened once its join is
 * complete (the shim's rule; `readyOn` for roomwire's `user_list`).
 *
 * Commands: open { count } (may be sent again to add more), status, close.
 * Replies: opened, status.
 */
import { connect } from './shim.mjs';

/** @type {import('./shim.mjs').Conn[]} */
const conns = [];
let open = 0;
let closed = 0;
/** @type {Record<string, number>} */
const closeCodes = {};
let nextAddress = 0;

/**
 * @param {{ kind: 'ws' | 'socketio', url: string, count: number, localAddresses: string[],
 *   concurrency: number, timeoutMs: number, maxFailures: number, rooms?: number, roomPrefix?: string,
 *   roomOffset?: number, roomStride?: number, readyOn?: string }} cmd
 */
async function doOpen(cmd) {
  /** @type {Record<string, number>} */
  const failures = {};
  let failed = 0;
  let started = 0;
  let opened = 0;
  const t0 = Date.now();
  const deadline = t0 + cmd.timeoutMs;
  const worker = async () => {
    while (started < cmd.count && failed < cmd.maxFailures && Date.now() < deadline) {
      const i = started++;
      const localAddress = cmd.localAddresses.length ? cmd.localAddresses[nextAddress++ % cmd.localAddresses.length] : undefined;
      const room = cmd.rooms ? `${cmd.roomPrefix ?? 'r'}${((cmd.roomOffset ?? 0) + i * (cmd.roomStride ?? 1)) % cmd.rooms}` : undefined;
      await new Promise((resolve) => {
        let wasReady = false;
        const c = connect(cmd.kind, { url: cmd.url, localAddress, room, readyOn: cmd.readyOn, timeoutMs: 15_000 }, {
          onReady() {
            wasReady = true;
            open++;
            opened++;
            conns.push(c);
            resolve(undefined);
          },
          onText() {},
          onOther() {},
          onClose(code) {
            if (!wasReady) return;
            open--;
            closed++;
            closeCodes[code] = (closeCodes[code] ?? 0) + 1;
          },
          onFail(why) {
            failed++;
            failures[why] = (failures[why] ?? 0) + 1;
            resolve(undefined);
          },
        });
      });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, worker));
  send({ op: 'opened', opened, failed, failures, open, closed, closeCodes, ms: Date.now() - t0 });
}

/** @param {unknown} msg */
function send(msg) {
  if (process.connected) process.send?.(msg);
}

process.on('message', (/** @type {any} */ cmd) => {
  if (cmd.op === 'open') {
    doOpen(cmd).catch((err) => send({ op: 'error', message: String(err?.stack ?? err) }));
  } else if (cmd.op === 'status') {
    send({ op: 'status', open, closed, closeCodes });
  } else if (cmd.op === 'close') {
    for (const c of conns) c.terminate();
    setTimeout(() => process.exit(0), 100);
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
