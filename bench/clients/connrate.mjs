// @ts-check
/**
 * Connection-rate load generator (a separate process, driven by the harness over IPC).
 * It keeps `inflight` handshakes going for `durationMs`: each opens a connection to the
 * target's base endpoint (ws targets: `/ws`, with `?token=<jwt>` when tokens are given;
 * Socket.IO: its default namespace), and as soon as the connection is ready (ws: open;
 * Socket.IO: `connect`, i.e. after the namespace handshake) closes it gracefully and
 * starts the next. Source addresses rotate over several 127.0.0.x so the ephemeral
 * ports of one address (and TIME_WAIT) are not the limit.
 *
 * With `rooms` (the member scenario) each connection joins a room through its path
 * instead: connection i of this process goes to `/ws/{roomPrefix}{(roomOffset + i *
 * roomStride) % rooms}` (Socket.IO: that room in the handshake query) and is ready once its
 * join is complete (the shim's rule; `readyOn` for roomwire's `user_list`).
 *
 * Command: run. Reply: done { completed (ready within the window), failed by reason,
 * handshake latency histogram }.
 */
import { connect } from './shim.mjs';
import { nowMicros } from '../lib/proc.mjs';
import { newHistogram, record } from '../lib/stats.mjs';

/**
 * @param {{ kind: 'ws' | 'socketio', url: string, inflight: number, startAt: number, durationMs: number,
 *   localAddresses: string[], tokens: string[], rooms?: number, roomPrefix?: string, roomOffset?: number,
 *   roomStride?: number, readyOn?: string }} cmd
 */
async function run(cmd) {
  const hist = newHistogram();
  /** @type {Record<string, number>} */
  const failures = {};
  let completed = 0;
  let failed = 0;
  let lateClosesAfterReady = 0;
  let n = 0;
  const end = cmd.startAt + cmd.durationMs * 1000;
  await new Promise((r) => setTimeout(r, Math.max(0, (cmd.startAt - nowMicros()) / 1000)));
  const one = () =>
    new Promise((resolve) => {
      const i = n++;
      const localAddress = cmd.localAddresses.length ? cmd.localAddresses[i % cmd.localAddresses.length] : undefined;
      const query = cmd.tokens.length ? `token=${cmd.tokens[i % cmd.tokens.length]}` : undefined;
      const room = cmd.rooms ? `${cmd.roomPrefix ?? 'r'}${((cmd.roomOffset ?? 0) + i * (cmd.roomStride ?? 1)) % cmd.rooms}` : undefined;
      const t0 = nowMicros();
      let done = false;
      const c = connect(cmd.kind, { url: cmd.url, localAddress, query, room, readyOn: cmd.readyOn, timeoutMs: 10_000 }, {
        onReady() {
          const t = nowMicros();
          done = true;
          if (t <= end) {
            completed++;
            record(hist, t - t0);
          }
          c.close();
          resolve(undefined);
        },
        onText() {},
        onOther() {},
        onClose(code) {
          if (code !== 1000 && code !== 1005) lateClosesAfterReady++;
        },
        onFail(why) {
          if (done) return;
          done = true;
          failed++;
          failures[why] = (failures[why] ?? 0) + 1;
          // do not spin on a refusing server
          setTimeout(() => resolve(undefined), 5);
        },
      });
    });
  const worker = async () => {
    while (nowMicros() < end) await one();
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.inflight) }, worker));
  send({ op: 'done', completed, failed, failures, lateClosesAfterReady, attempts: n, hist: Array.from(hist) });
}

/** @param {unknown} msg */
function send(msg) {
  if (process.connected) process.send?.(msg);
}

process.on('message', (/** @type {any} */ cmd) => {
  if (cmd.op === 'run') run(cmd).catch((err) => send({ op: 'error', message: String(err?.stack ?? err) }));
  else if (cmd.op === 'close') setTimeout(() => process.exit(0), 50);
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
