// @ts-check
/**
 * Hardening scenario `soak`: does the server's memory come back after many short
 * connections?
 *
 * roomwire runs as bench/servers/roomwire-gc.mjs (startServer from dist/server.js, the
 * benchmark's roomwire environment, `node --expose-gc`, an IPC channel that runs a full
 * GC and answers process.memoryUsage()). --soak-clients processes (bench/clients/soak.mjs)
 * run --soak-cycles connect/join/message/close cycles, --soak-inflight at a time in
 * total, over --soak-rooms rotating room names and --soak-addresses loopback source
 * addresses per process. The load pauses at checkpoints: after --soak-warmup cycles (the
 * warm-up reading), then after each of --soak-checkpoints equal segments (the last is
 * the end); at each, once the server's /healthz shows no connection and no room left,
 * the server's heap used after a forced GC, its RSS, and the machine's TIME_WAIT count.
 * Pass: the final heap after GC within 10% of the warm-up's; otherwise a PROBLEM.
 *
 * Ephemeral ports: the cycles' sockets are bound to their source address (ws's
 * localAddress), so the port is picked at bind() and TIME_WAIT sockets on that address
 * would count against it. The addresses are fresh 127.x.y.z for each run (never reused
 * within a run), so each carries cycles / (clients x addresses) connections, 12,500 with
 * the defaults, under the 28,232 ports of the default range even if every one stayed
 * in TIME_WAIT for the whole run. The TIME_WAIT count is reported at every checkpoint.
 */
import { freshAddresses, spawnClient } from '../lib/clientproc.mjs';
import { sockstat, startRoomwire, sysctl, timedGet } from '../lib/hardening.mjs';
import { cpuMicros, nowMicros, rssBytes, sleep } from '../lib/proc.mjs';
import { merge, newHistogram, quantile } from '../lib/stats.mjs';

/** Pass condition: the final heap after GC within this fraction of the warm-up one. */
export const SOAK_HEAP_TOLERANCE = 0.1;

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runSoak(ctx) {
  const o = ctx.options;
  const P = Math.max(1, Math.round(o.soakClients));
  const total = Math.round(o.soakCycles);
  const warmup = Math.min(Math.round(o.soakWarmup), total);
  const K = Math.max(1, Math.round(o.soakCheckpoints));
  const kernel = {
    tcp_tw_reuse: sysctl('net.ipv4.tcp_tw_reuse'),
    ip_local_port_range: sysctl('net.ipv4.ip_local_port_range'),
    tcp_max_tw_buckets: sysctl('net.ipv4.tcp_max_tw_buckets'),
    tcp_fin_timeout: sysctl('net.ipv4.tcp_fin_timeout'),
  };
  ctx.log(`soak: ${total} cycles (connect /ws/<room>, join + user_list, message + echo, close), ${o.soakInflight} in flight over ${P} client processes, ` +
    `${o.soakRooms} rooms, ${o.soakAddresses} source addresses per process; heap after GC at ${warmup} cycles and ${K} more checkpoints; ` +
    `net.ipv4.tcp_tw_reuse=${kernel.tcp_tw_reuse}, ip_local_port_range=${kernel.ip_local_port_range}`);
  const server = await startRoomwire(ctx, {}, { gcServer: true });
  /** @type {import('../lib/clientproc.mjs').ClientProc[]} */
  let clients = [];
  /** @type {any[]} */
  const checkpoints = [];
  const hist = newHistogram();
  /** @type {Record<string, number>} */
  const failures = {};
  /** @type {Record<string, number>} */
  const errorFrames = {};
  let completed = 0;
  let failed = 0;
  let loadUs = 0;
  let loadCpuUs = 0;
  let done = 0;
  try {
    clients = Array.from({ length: P }, () => spawnClient('soak.mjs'));
    const addresses = clients.map(() => freshAddresses(o.soakAddresses));
    /** @param {number} n */
    const segment = async (n) => {
      const cpu0 = cpuMicros(server.pid);
      const w0 = nowMicros();
      const replies = await Promise.all(
        clients.map((c, i) => {
          const count = Math.floor(n / P) + (i < n % P ? 1 : 0);
          const inflight = Math.max(1, Math.floor(o.soakInflight / P) + (i < o.soakInflight % P ? 1 : 0));
          return c.request(
            { op: 'run', url: server.url, count, inflight, roomPrefix: 'soak-', rooms: o.soakRooms, localAddresses: addresses[i], cycleTimeoutMs: 15_000 },
            'done',
            Math.max(120_000, n * 5),
          );
        }),
      );
      loadUs += nowMicros() - w0;
      loadCpuUs += cpuMicros(server.pid) - cpu0;
      for (const r of replies) {
        completed += r.completed;
        failed += r.failed;
        merge(hist, r.hist);
        for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + /** @type {number} */ (v);
        for (const [k, v] of Object.entries(r.errorFrames)) errorFrames[k] = (errorFrames[k] ?? 0) + /** @type {number} */ (v);
      }
      done += n;
      return { seconds: (nowMicros() - w0) / 1e6 };
    };
    /** @param {string} label */
    const checkpoint = async (label) => {
      // wait for the server to finish the last closes: no connection and no room left
      /** @type {any} */
      let h = {};
      for (let i = 0; i < 50; i++) {
        try {
          h = JSON.parse((await timedGet(`${server.url}/healthz`)).body);
        } catch {
          h = {};
        }
        if (h.connections === 0 && h.rooms === 0) break;
        await sleep(100);
      }
      const mem = await /** @type {NonNullable<typeof server.gc>} */ (server.gc)();
      const cp = {
        label,
        cycles: done,
        completed,
        failed,
        heapUsed: mem.heapUsed,
        heapTotal: mem.heapTotal,
        external: mem.external,
        arrayBuffers: mem.arrayBuffers,
        rss: rssBytes(server.pid),
        serverConnections: h.connections,
        serverRooms: h.rooms,
        timeWait: sockstat()?.timeWait,
      };
      checkpoints.push(cp);
      ctx.log(`  ${label.padEnd(8)} ${String(done).padStart(7)} cycles: heap after GC ${(cp.heapUsed / 2 ** 20).toFixed(2)} MiB, RSS ${(cp.rss / 2 ** 20).toFixed(0)} MiB, ` +
        `server has ${h.connections} connections / ${h.rooms} rooms, ${failed} failed so far, ${cp.timeWait} sockets in TIME_WAIT`);
      if (h.connections !== 0 || h.rooms !== 0) ctx.problem('soak', 'roomwire', `${label}: the server still reports ${h.connections} connections and ${h.rooms} rooms with no client left`);
      return cp;
    };
    await checkpoint('start');
    const w = await segment(warmup);
    ctx.log(`  warm-up: ${warmup} cycles in ${w.seconds.toFixed(1)} s`);
    const warm = await checkpoint('warm-up');
    const rest = total - warmup;
    for (let k = 0; k < K; k++) {
      const n = Math.floor(rest / K) + (k < rest % K ? 1 : 0);
      if (n <= 0) continue;
      const s = await segment(n);
      ctx.log(`  segment ${k + 1}/${K}: ${n} cycles in ${s.seconds.toFixed(1)} s (${(n / s.seconds).toFixed(0)}/s)`);
      await checkpoint(k === K - 1 ? 'end' : `${k + 1}/${K}`);
    }
    const end = checkpoints[checkpoints.length - 1];
    const growth = (end.heapUsed - warm.heapUsed) / warm.heapUsed;
    const pass = growth <= SOAK_HEAP_TOLERANCE;
    if (!pass) {
      ctx.problem('soak', 'roomwire', `heap after GC grew ${(growth * 100).toFixed(1)}% from the warm-up (${(warm.heapUsed / 2 ** 20).toFixed(2)} MiB) to the end (${(end.heapUsed / 2 ** 20).toFixed(2)} MiB); allowed ${SOAK_HEAP_TOLERANCE * 100}%`);
    }
    if (failed > 0) ctx.problem('soak', 'roomwire', `${failed} of ${done} cycles failed: ${JSON.stringify(failures)}`);
    if (server.warnings.length) ctx.problem('soak', 'roomwire', `server wrote ${server.warnings.length} warning/error lines`, { lines: server.warnings.slice(0, 5) });
    return {
      params: { cycles: total, warmup, checkpoints: K, inflight: o.soakInflight, clientProcesses: P, rooms: o.soakRooms, addressesPerProcess: o.soakAddresses, tolerance: SOAK_HEAP_TOLERANCE },
      kernel,
      completed,
      failed,
      failures,
      errorFrames,
      loadSeconds: loadUs / 1e6,
      cyclesPerSec: completed / (loadUs / 1e6),
      serverCpuUsPerCycle: loadCpuUs / Math.max(1, done),
      serverCpuPct: (loadCpuUs / loadUs) * 100,
      cycleP50us: quantile(hist, 0.5),
      cycleP99us: quantile(hist, 0.99),
      checkpoints,
      heapGrowth: growth,
      pass,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    const code = await server.stop();
    if (code !== 0) ctx.problem('soak', 'roomwire', `server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
  }
}
