// @ts-check
/**
 * Scenario 2, memory: server RSS per idle connection. Per target (alternating order
 * over repetitions), in a fresh server process: warm up with a few hundred connections
 * (opened, then dropped), settle, read VmRSS; open N idle connections to the base
 * endpoint (no room); settle; read VmRSS again. (after - before) / N.
 */
import { freshAddresses, spawnClient } from '../lib/clientproc.mjs';
import { rssBytes, sleep } from '../lib/proc.mjs';
import { median, minMax } from '../lib/stats.mjs';
import { BASELINE, DEFAULT_HEARTBEAT, serverConnections, startServer } from '../lib/targets.mjs';

const WARMUP = 300;

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runMemory(ctx) {
  const o = ctx.options;
  const N = o.memoryConns;
  const K = Math.max(1, Math.ceil(N / 12_000));
  ctx.log(`memory: ${N} idle connections from ${K} client process(es), settle ${o.memorySettle} s, ${o.memoryReps} repetition(s)`);
  /** @type {any[]} */
  const trials = [];
  for (let rep = 0; rep < o.memoryReps; rep++) {
    const order = rep % 2 === 0 ? ctx.targets : [...ctx.targets].reverse();
    for (const t of order) {
      const server = await startServer(t, DEFAULT_HEARTBEAT, ctx.jwtSecret);
      /** @type {import('../lib/clientproc.mjs').ClientProc[]} */
      let clients = [];
      try {
        const warm = spawnClient('idle.mjs');
        clients = [warm];
        await warm.request({ op: 'open', kind: t.kind, url: server.url, count: WARMUP, localAddresses: [], concurrency: 20, timeoutMs: 30_000, maxFailures: 50 }, 'opened', 40_000);
        await warm.close();
        await sleep(1500);
        const before = rssBytes(server.pid);
        clients = Array.from({ length: K }, () => spawnClient('idle.mjs'));
        const t0 = Date.now();
        const replies = await Promise.all(
          clients.map((c, i) => {
            const count = Math.floor(N / K) + (i < N % K ? 1 : 0);
            return c.request(
              { op: 'open', kind: t.kind, url: server.url, count, localAddresses: freshAddresses(2), concurrency: 50, timeoutMs: 120_000, maxFailures: 200 },
              'opened',
              130_000,
            );
          }),
        );
        const openMs = Date.now() - t0;
        const opened = replies.reduce((a, r) => a + r.opened, 0);
        await sleep(o.memorySettle * 1000);
        const after = rssBytes(server.pid);
        const held = await serverConnections(server);
        const status = await Promise.all(clients.map((c) => c.request({ op: 'status' }, 'status', 10_000)));
        const stillOpen = status.reduce((a, s) => a + s.open, 0);
        if (opened !== N || stillOpen !== N || held !== N) {
          ctx.problem('memory', t.name, `wanted ${N} idle connections: opened ${opened}, still open ${stillOpen}, server reports ${held}`, {
            failures: replies.map((r) => r.failures),
            closeCodes: status.map((s) => s.closeCodes),
          });
        }
        const r = {
          rep,
          target: t.name,
          connections: opened,
          rssBefore: before,
          rssAfter: after,
          bytesPerConnection: (after - before) / Math.max(1, opened),
          openSeconds: openMs / 1000,
          serverConnections: held,
        };
        trials.push(r);
        ctx.log(`  ${t.name.padEnd(12)} ${(r.bytesPerConnection / 1024).toFixed(1)} KB per connection (RSS ${(before / 2 ** 20).toFixed(0)} -> ${(after / 2 ** 20).toFixed(0)} MiB, ${opened} opened in ${r.openSeconds.toFixed(1)} s)`);
      } finally {
        await Promise.all(clients.map((c) => c.close()));
        const code = await server.stop();
        if (code !== 0) ctx.problem('memory', t.name, `server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
        if (server.warnings.length) ctx.problem('memory', t.name, `server wrote ${server.warnings.length} warning/error lines`, { lines: server.warnings.slice(0, 5) });
      }
    }
  }
  /** @type {Record<string, any>} */
  const summary = {};
  for (const t of ctx.targets) {
    const mine = trials.filter((x) => x.target === t.name);
    const ratios = mine.map((m) => {
      const b = trials.find((x) => x.target === BASELINE && x.rep === m.rep);
      return b ? m.bytesPerConnection / b.bytesPerConnection : Number.NaN;
    });
    const [lo, hi] = minMax(ratios);
    summary[t.name] = {
      bytesPerConnection: median(mine.map((m) => m.bytesPerConnection)),
      ratio: { median: median(ratios), min: lo, max: hi },
      rssAfter: median(mine.map((m) => m.rssAfter)),
    };
  }
  return { params: { connections: N, clientProcesses: K, settleSeconds: o.memorySettle, reps: o.memoryReps, warmupConnections: WARMUP }, summary, trials };
}
