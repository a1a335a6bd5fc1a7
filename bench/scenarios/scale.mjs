// @ts-check
/**
 * Scenario 4, scale: the most idle connections one server process holds with heartbeats
 * on, up to --scale-max, and the server CPU the heartbeat costs at that size. Only
 * roomwire and the naive hand-written server (issue 6).
 *
 * By default short heartbeat timings so a short idle window holds several ping rounds:
 * ping every 5 s, pong wait 10 s, sweep every 1 s (roomwire: WEBSOCKET_PING_PERIOD=5s,
 * WEBSOCKET_PONG_WAIT=10s, WEBSOCKET_HEARTBEAT_INTERVAL=1s; the hand-written server the
 * same single sweep). --scale-ping-period, --scale-pong-wait and --scale-sweep change
 * them, e.g. to roomwire's defaults (54, 60, 30) with a window of a few ping periods. Connections come from several 127.0.0.x source addresses (at most
 * 20,000 per address) and several client processes (at most 15,000 each), so neither
 * the ephemeral port range nor a client's open-file limit is the bound; the server's
 * own open-file limit is reported, and when it is below --scale-max it caps the attempt.
 */
import { freshAddresses, spawnClient } from '../lib/clientproc.mjs';
import { cpuMicros, nowMicros, rssBytes, sleep } from '../lib/proc.mjs';
import { serverConnections, startServer } from '../lib/targets.mjs';

/** @param {import('../run.mjs').Options} o */
function heartbeatOf(o) {
  return { pingPeriod: o.scalePingPeriod * 1000, pongWait: o.scalePongWait * 1000, sweep: o.scaleSweep * 1000 };
}
const SCALE_TARGETS = ['roomwire', 'ws-naive'];
const PER_CLIENT = 15_000;
const PER_ADDRESS = 20_000;

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runScale(ctx) {
  const o = ctx.options;
  const targets = ctx.targets.filter((t) => SCALE_TARGETS.includes(t.name));
  const SCALE_HEARTBEAT = heartbeatOf(o);
  ctx.log(`scale: up to ${o.scaleMax} idle connections with heartbeats (ping ${o.scalePingPeriod} s, pong wait ${o.scalePongWait} s, sweep ${o.scaleSweep} s), ` +
    `CPU over a ${o.scaleWindow} s idle window, ${o.scaleReps} repetition(s); only ${SCALE_TARGETS.join(' and ')} (ws-preframed and socketio are not part of this scenario)`);
  /** @type {any[]} */
  const trials = [];
  for (let rep = 0; rep < o.scaleReps; rep++) {
    const order = rep % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const server = await startServer(t, SCALE_HEARTBEAT, ctx.jwtSecret);
      /** @type {import('../lib/clientproc.mjs').ClientProc[]} */
      let clients = [];
      try {
        const fdLimit = server.nofile;
        // keep some descriptors for the listener, stdio, and node's own
        const wanted = Math.min(o.scaleMax, Math.max(0, fdLimit - 100));
        const cappedBy = wanted < o.scaleMax ? `the server's open-file limit (ulimit -n ${fdLimit}; the hard limit here does not allow more)` : undefined;
        const K = Math.max(1, Math.ceil(wanted / PER_CLIENT));
        clients = Array.from({ length: K }, () => spawnClient('idle.mjs'));
        const t0 = Date.now();
        const replies = await Promise.all(
          clients.map((c, i) => {
            const count = Math.floor(wanted / K) + (i < wanted % K ? 1 : 0);
            const addresses = Math.max(1, Math.ceil(count / PER_ADDRESS));
            return c.request(
              { op: 'open', kind: t.kind, url: server.url, count, localAddresses: freshAddresses(addresses), concurrency: 64, timeoutMs: 240_000, maxFailures: 500 },
              'opened',
              250_000,
            );
          }),
        );
        const openSeconds = (Date.now() - t0) / 1000;
        const opened = replies.reduce((a, r) => a + r.opened, 0);
        /** @type {Record<string, number>} */
        const failures = {};
        for (const r of replies) for (const [k, n] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + /** @type {number} */ (n);
        ctx.log(`  ${t.name}: ${opened}/${wanted} connections opened in ${openSeconds.toFixed(1)} s${Object.keys(failures).length ? `, failures ${JSON.stringify(failures)}` : ''}`);
        // settle: let the connection setup work and its garbage collection finish
        await sleep(3000);
        const heldBefore = await serverConnections(server);
        const cpu0 = cpuMicros(server.pid);
        const w0 = nowMicros();
        await sleep(o.scaleWindow * 1000);
        const cpu1 = cpuMicros(server.pid);
        const w1 = nowMicros();
        const held = await serverConnections(server);
        const status = await Promise.all(clients.map((c) => c.request({ op: 'status' }, 'status', 10_000)));
        const stillOpen = status.reduce((a, s) => a + s.open, 0);
        /** @type {Record<string, number>} */
        const closeCodes = {};
        for (const s of status) for (const [k, n] of Object.entries(s.closeCodes)) closeCodes[k] = (closeCodes[k] ?? 0) + /** @type {number} */ (n);
        const r = {
          rep,
          target: t.name,
          wanted,
          cappedBy,
          serverNofile: fdLimit,
          opened,
          failures,
          openSeconds,
          heldAtWindowStart: heldBefore,
          heldAtWindowEnd: held,
          clientSideOpenAtEnd: stillOpen,
          closedDuringTest: closeCodes,
          windowSeconds: (w1 - w0) / 1e6,
          heartbeatCpuPct: ((cpu1 - cpu0) / (w1 - w0)) * 100,
          // every connection gets one ping (and answers one pong) per ping period
          cpuUsPerPing: (cpu1 - cpu0) / ((held * (w1 - w0)) / 1e3 / SCALE_HEARTBEAT.pingPeriod),
          rssBytes: rssBytes(server.pid),
        };
        trials.push(r);
        ctx.log(`  ${t.name}: holds ${held} (clients see ${stillOpen} open), heartbeat CPU ${r.heartbeatCpuPct.toFixed(2)}% of one core over ${r.windowSeconds.toFixed(0)} s (${r.cpuUsPerPing.toFixed(1)} us per ping and pong), RSS ${(r.rssBytes / 2 ** 20).toFixed(0)} MiB`);
        if (opened < wanted) ctx.problem('scale', t.name, `opened only ${opened} of ${wanted} connections: ${JSON.stringify(failures)}`);
        if (held !== opened || stillOpen !== opened) {
          ctx.problem('scale', t.name, `connections lost while idle with heartbeats on: opened ${opened}, server holds ${held}, clients see ${stillOpen} open, closes ${JSON.stringify(closeCodes)}`, { serverOutput: server.lines.slice(-10) });
        }
      } finally {
        await Promise.all(clients.map((c) => c.close()));
        const code = await server.stop();
        if (code !== 0) ctx.problem('scale', t.name, `server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
        if (server.warnings.length) ctx.problem('scale', t.name, `server wrote ${server.warnings.length} warning/error lines`, { lines: server.warnings.slice(0, 5) });
      }
    }
  }
  return { params: { max: o.scaleMax, windowSeconds: o.scaleWindow, heartbeat: SCALE_HEARTBEAT, reps: o.scaleReps, targets: SCALE_TARGETS }, trials };
}
