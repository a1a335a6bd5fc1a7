// @ts-check
/**
 * Hardening scenario `frames`: what a costly frame costs.
 *
 * 1. Microbenchmark (a fresh client process, bench/clients/frames.mjs `micro`): for each
 *    frame of bench/lib/frames.mjs (65,000-byte messages whose `data` has 8,000 keys, is
 *    a 6-wide 5-deep tree, is 3,000 objects deep, is a 30,000-number array, or that have
 *    no data; a 60-byte join; a 200-byte message) the per-call time of `JSON.parse(text)`
 *    and of roomwire's `checkFrame(text)` (JSON.parse plus the shape check), each the
 *    median of --frames-batches batches of about --frames-batch-ms, alternating, after a
 *    300 ms warm-up. The shape check's cost is checkFrame − parse; the issue's target is
 *    at most half of JSON.parse (ratio <= 0.5).
 * 2. Real server: roomwire standalone with WEBSOCKET_MAX_MESSAGE_SIZE=70000 and a high
 *    message rate; a sender and a receiver in one room; the sender sends the 8,000-key
 *    frame, or the plain 65,000-byte frame, for --frames-server-seconds with 4 unechoed
 *    at most, --frames-server-reps times alternately. Server CPU per frame = the server's
 *    CPU over the run / frames (each delivered to both members, so it includes delivery).
 */
import { spawnClient } from '../lib/clientproc.mjs';
import { keysFrame, plainFrame } from '../lib/frames.mjs';
import { startRoomwire } from '../lib/hardening.mjs';
import { cpuMicros, nowMicros } from '../lib/proc.mjs';
import { median, minMax } from '../lib/stats.mjs';

/** The issue's target: the shape check costs at most half of JSON.parse. */
export const FRAMES_TARGET_RATIO = 0.5;

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runFrames(ctx) {
  const o = ctx.options;
  ctx.log(`frames: microbenchmark of JSON.parse vs checkFrame (${o.framesBatches} batches of ~${o.framesBatchMs} ms each), ` +
    `then server CPU per frame, ${o.framesServerSeconds} s per kind x ${o.framesServerReps}`);
  // 1. microbenchmark, in a process of its own
  const m = spawnClient('frames.mjs');
  /** @type {any[]} */
  let micro;
  try {
    const r = await m.request({ op: 'micro', batches: o.framesBatches, batchMs: o.framesBatchMs, warmupMs: 300 }, 'micro', 300_000);
    micro = r.frames.map((/** @type {any} */ f) => {
      const parseUs = median(f.parseBatchesUs);
      const checkUs = median(f.checkBatchesUs);
      const paired = f.parseBatchesUs.map((/** @type {number} */ p, /** @type {number} */ i) => (f.checkBatchesUs[i] - p) / p);
      const [lo, hi] = minMax(paired);
      const ratio = (checkUs - parseUs) / parseUs;
      ctx.log(`  ${f.name.padEnd(12)} ${String(f.bytes).padStart(6)} B  JSON.parse ${parseUs.toFixed(2)} us, checkFrame ${checkUs.toFixed(2)} us, shape check ${(checkUs - parseUs).toFixed(2)} us = ${ratio.toFixed(2)}x parse${f.checkResult === 'ok' ? '' : ` (checkFrame: ${f.checkResult})`}`);
      if (f.checkResult !== 'ok') ctx.problem('frames', 'roomwire', `checkFrame refused the ${f.name} frame: ${f.checkResult}`);
      return { ...f, parseUs, checkUs, shapeUs: checkUs - parseUs, ratio, ratioMin: lo, ratioMax: hi };
    });
  } finally {
    await m.close();
  }

  // 2. server CPU per frame, with delivery to a room of two
  const server = await startRoomwire(ctx, { WEBSOCKET_MAX_MESSAGE_SIZE: '70000', WEBSOCKET_MESSAGE_RATE: '1000000/s,1000000' });
  const c = spawnClient('frames.mjs');
  /** @type {any[]} */
  const runs = [];
  try {
    await c.request({ op: 'connect', url: server.url, room: 'frames', localAddress: '127.0.0.1' }, 'connected', 20_000);
    const kinds = [
      { name: 'keys-8000', text: keysFrame('frames') },
      { name: 'plain-64k', text: plainFrame('frames') },
    ];
    // one short unrecorded run each (JIT)
    for (const k of kinds) await c.request({ op: 'send', text: k.text, seconds: 0.5, window: 4 }, 'sent', 30_000);
    for (let rep = 0; rep < o.framesServerReps; rep++) {
      for (const k of rep % 2 === 0 ? kinds : [...kinds].reverse()) {
        const cpu0 = cpuMicros(server.pid);
        const w0 = nowMicros();
        const r = await c.request({ op: 'send', text: k.text, seconds: o.framesServerSeconds, window: 4 }, 'sent', o.framesServerSeconds * 1000 + 30_000);
        const cpu = cpuMicros(server.pid) - cpu0;
        const wall = nowMicros() - w0;
        const run = { rep, kind: k.name, bytes: k.text.length, sent: r.sent, echoed: r.echoed, delivered: r.delivered, framesPerSec: r.sent / (r.ms / 1000), serverCpuUsPerFrame: cpu / Math.max(1, r.sent), serverCpuPct: (cpu / wall) * 100, errors: r.errors };
        runs.push(run);
        ctx.log(`  server, ${k.name.padEnd(10)} rep ${rep + 1}: ${r.sent} frames (${run.framesPerSec.toFixed(0)}/s), server CPU ${(run.serverCpuUsPerFrame / 1000).toFixed(3)} ms per frame (${run.serverCpuPct.toFixed(0)}% of a core)`);
        if (r.echoed !== r.sent || r.delivered !== r.sent) ctx.problem('frames', 'roomwire', `${k.name}: sent ${r.sent}, echoed ${r.echoed}, delivered ${r.delivered}, errors ${JSON.stringify(r.errors)}`);
      }
    }
  } finally {
    await c.close();
    const code = await server.stop();
    if (code !== 0) ctx.problem('frames', 'roomwire', `server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
    if (server.warnings.length) ctx.problem('frames', 'roomwire', `server wrote ${server.warnings.length} warning/error lines`, { lines: server.warnings.slice(0, 5) });
  }
  /** @type {Record<string, any>} */
  const serverSummary = {};
  for (const name of ['keys-8000', 'plain-64k']) {
    const mine = runs.filter((r) => r.kind === name);
    serverSummary[name] = {
      serverCpuUsPerFrame: median(mine.map((r) => r.serverCpuUsPerFrame)),
      framesPerSec: median(mine.map((r) => r.framesPerSec)),
      serverCpuPct: median(mine.map((r) => r.serverCpuPct)),
    };
  }
  const k = serverSummary['keys-8000'].serverCpuUsPerFrame;
  const p = serverSummary['plain-64k'].serverCpuUsPerFrame;
  ctx.log(`  server CPU per frame: 8,000 keys ${(k / 1000).toFixed(3)} ms vs plain ${(p / 1000).toFixed(3)} ms (${(k / p).toFixed(1)}x)`);
  return {
    params: { batches: o.framesBatches, batchMs: o.framesBatchMs, serverSeconds: o.framesServerSeconds, serverReps: o.framesServerReps, window: 4, targetRatio: FRAMES_TARGET_RATIO },
    micro,
    server: { runs, summary: serverSummary, keysOverPlain: k / p },
  };
}
