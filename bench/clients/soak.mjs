// @ts-check
/**
 * Soak load generator (a separate process, driven over IPC): `count` cycles with
 * `inflight` at a time, each: open `/ws/<room>` (room names rotate over `rooms` names),
 * wait for the connection's own `join` and its `user_list`, send one `message` with a
 * content unique to the cycle, wait for its echo, close (1000) and wait for the close
 * to complete. Source addresses rotate over `localAddresses`. A cycle fails on a
 * connection error, an unexpected close, an `error` frame, or after `cycleTimeoutMs`.
 *
 * Command: run (may be sent again). Reply: done { completed, failed by reason, cycle
 * time histogram (µs), error frames by code }.
 */
import WebSocket from 'ws';
import { newHistogram, record } from '../lib/stats.mjs';

let cycleNo = 0;

/**
 * @param {{ url: string, count: number, inflight: number, roomPrefix: string, rooms: number,
 *   localAddresses: string[], cycleTimeoutMs: number }} cmd
 */
async function run(cmd) {
  const hist = newHistogram();
  /** @type {Record<string, number>} */
  const failures = {};
  /** @type {Record<string, number>} */
  const errorFrames = {};
  let completed = 0;
  let failed = 0;
  let started = 0;
  const base = `${cmd.url.replace(/^http/, 'ws')}/ws/`;
  const t0 = performance.now();
  const fail = (/** @type {string} */ why) => {
    failed++;
    failures[why] = (failures[why] ?? 0) + 1;
  };
  const one = () =>
    new Promise((resolve) => {
      const i = cycleNo++;
      const room = `${cmd.roomPrefix}${(i * 7919) % cmd.rooms}`;
      const token = `soak-${process.pid}-${i}`;
      const localAddress = cmd.localAddresses[i % cmd.localAddresses.length];
      const c0 = performance.now();
      // 0 own join, 1 user list, 2 echo, 3 closing
      let state = 0;
      let done = false;
      const finish = (/** @type {string | undefined} */ why) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (why === undefined) {
          completed++;
          record(hist, (performance.now() - c0) * 1000);
        } else {
          fail(why);
          ws.terminate();
        }
        resolve(undefined);
      };
      const timer = setTimeout(() => finish(`timeout_state_${state}`), cmd.cycleTimeoutMs);
      const ws = new WebSocket(base + room, { perMessageDeflate: false, localAddress, handshakeTimeout: cmd.cycleTimeoutMs });
      ws.on('message', (data) => {
        const text = data.toString();
        if (text.startsWith('{"type":"error"')) {
          const code = /"code":"([a-z_]+)"/.exec(text)?.[1] ?? 'unknown';
          errorFrames[code] = (errorFrames[code] ?? 0) + 1;
          finish(`error_${code}`);
          return;
        }
        if (state === 0) {
          // the first frame of a path join is the connection's own join notice
          if (text.startsWith('{"type":"join"')) state = 1;
          else finish('first_frame_not_join');
        } else if (state === 1) {
          if (text.startsWith('{"type":"user_list"')) {
            state = 2;
            ws.send(`{"type":"message","room":"${room}","content":"${token}"}`);
          }
        } else if (state === 2) {
          if (text.startsWith('{"type":"message"') && text.includes(`"content":"${token}"`)) {
            state = 3;
            ws.close(1000);
          }
        }
      });
      ws.on('unexpected-response', (_req, res) => {
        res.resume();
        finish(`http_${res.statusCode}`);
      });
      ws.on('error', (err) => finish(/** @type {NodeJS.ErrnoException} */ (err).code ?? 'ws_error'));
      ws.on('close', (code) => finish(state === 3 && (code === 1000 || code === 1005) ? undefined : `closed_${code}_state_${state}`));
    });
  const worker = async () => {
    while (started < cmd.count) {
      started++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(cmd.inflight, cmd.count)) }, worker));
  send({ op: 'done', completed, failed, failures, errorFrames, ms: performance.now() - t0, hist: Array.from(hist) });
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
