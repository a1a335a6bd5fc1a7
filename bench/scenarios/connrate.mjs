// @ts-check
/**
 * Scenario 3, connection rate: completed handshakes per second with a fixed number in
 * flight, each connection closed as soon as it is ready. roomwire twice: anonymous, and
 * with an HS256 token in `?token=` (WEBSOCKET_JWT_SECRET set, so it is verified); the
 * other targets anonymous. Variants run in rotated order over repetitions after a warm-up,
 * each in every position equally often.
 */
import { freshAddresses, spawnClient } from '../lib/clientproc.mjs';
import { cpuWindow, nowMicros, sleep } from '../lib/proc.mjs';
import { median, minMax, quantile, rotation, sumRateReplies } from '../lib/stats.mjs';
import { BASELINE, DEFAULT_HEARTBEAT, startServer } from '../lib/targets.mjs';

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runConnrate(ctx) {
  const o = ctx.options;
  const P = o.connrateClients;
  const inflight = o.connrateInflight;
  /** @type {{ name: string, target: import('../lib/targets.mjs').Target, jwt: boolean }[]} */
  const variants = [];
  for (const t of ctx.targets) {
    variants.push({ name: t.name, target: t, jwt: false });
    if (t.name === 'roomwire') variants.push({ name: 'roomwire+jwt', target: t, jwt: true });
  }
  ctx.log(`connection rate: ${inflight} handshakes in flight from ${P} client processes, ${o.connrateSeconds} s per trial, ` +
    `${o.connrateReps} repetitions after a 1 s warm-up; variants: ${variants.map((v) => v.name).join(', ')}`);
  /** @type {Map<string, import('../lib/targets.mjs').RunningServer>} */
  const servers = new Map();
  /** @type {import('../lib/clientproc.mjs').ClientProc[]} */
  let clients = [];
  /** @type {any[]} */
  const trials = [];
  try {
    for (const t of ctx.targets) servers.set(t.name, await startServer(t, DEFAULT_HEARTBEAT, ctx.jwtSecret));
    clients = Array.from({ length: P }, () => spawnClient('connrate.mjs'));
    /**
     * @param {typeof variants[number]} v
     * @param {number} seconds
     * @param {number} rep
     */
    const trial = async (v, seconds, rep) => {
      const server = /** @type {import('../lib/targets.mjs').RunningServer} */ (servers.get(v.target.name));
      if (!server.alive()) throw new Error(`${v.target.name} server died: ${server.lines.slice(-10).join('\n')}`);
      const endWindow = cpuWindow(server.pid, clients);
      const startAt = nowMicros() + 50_000;
      const replies = await Promise.all(
        clients.map((c, i) => {
          // fresh source addresses for every trial: no TIME_WAIT ports left over from the last one
          const localAddresses = freshAddresses(4);
          return c.request(
            {
              op: 'run',
              kind: v.target.kind,
              url: server.url,
              inflight: Math.floor(inflight / P) + (i < inflight % P ? 1 : 0),
              startAt,
              durationMs: seconds * 1000,
              localAddresses,
              tokens: v.jwt ? ctx.tokens : [],
            },
            'done',
            seconds * 1000 + 30_000,
          );
        }),
      );
      const { server: serverCpu, client: clientCpu, wall, otherPct } = endWindow();
      const { hist, completed, failed, failures, abnormal } = sumRateReplies(replies);
      if (failed > 0 || abnormal > 0) {
        ctx.problem('connrate', v.name, `${failed} handshakes failed ${JSON.stringify(failures)}, ${abnormal} abnormal closes after open (${rep < 0 ? 'warm-up' : `rep ${rep + 1}`})`);
      }
      // let the last closes finish before the next trial
      await sleep(300);
      return {
        rep,
        variant: v.name,
        completed,
        failed,
        failures,
        perSecond: completed / seconds,
        serverCpuUsPerHandshake: serverCpu / Math.max(1, completed),
        serverCpuPct: (serverCpu / wall) * 100,
        clientCpuPct: (clientCpu / wall) * 100,
        otherCpuPct: otherPct,
        p50us: quantile(hist, 0.5),
        p99us: quantile(hist, 0.99),
      };
    };
    for (const v of variants) await trial(v, 1, -1);
    for (let rep = 0; rep < o.connrateReps; rep++) {
      const order = rotation(variants, rep);
      const parts = [];
      /** @type {number[]} */
      const others = [];
      for (const v of order) {
        const r = await trial(v, o.connrateSeconds, rep);
        trials.push(r);
        parts.push(`${v.name} ${Math.round(r.perSecond)}/s`);
        others.push(r.otherCpuPct);
      }
      ctx.log(`  rep ${rep + 1}/${o.connrateReps}: ${parts.join(', ')}; other processes ${Math.round(Math.max(...others))}% CPU at most`);
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    for (const [name, server] of servers) {
      const code = await server.stop();
      if (code !== 0) ctx.problem('connrate', name, `server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
      if (server.warnings.length) ctx.problem('connrate', name, `server wrote ${server.warnings.length} warning/error lines`, { lines: server.warnings.slice(0, 5) });
    }
  }
  /** @type {Record<string, any>} */
  const summary = {};
  for (const v of variants) {
    const mine = trials.filter((x) => x.variant === v.name);
    const ratios = mine.map((m) => {
      const b = trials.find((x) => x.variant === BASELINE && x.rep === m.rep);
      return b ? m.perSecond / b.perSecond : Number.NaN;
    });
    const [lo, hi] = minMax(ratios);
    summary[v.name] = {
      perSecond: median(mine.map((m) => m.perSecond)),
      ratio: { median: median(ratios), min: lo, max: hi },
      serverCpuUsPerHandshake: median(mine.map((m) => m.serverCpuUsPerHandshake)),
      serverCpuPct: median(mine.map((m) => m.serverCpuPct)),
      clientCpuPct: median(mine.map((m) => m.clientCpuPct)),
      otherCpuPct: median(mine.map((m) => m.otherCpuPct)),
      p50us: median(mine.map((m) => m.p50us)),
      p99us: median(mine.map((m) => m.p99us)),
      failed: mine.reduce((a, m) => a + m.failed, 0),
    };
  }
  return { params: { inflight, clientProcesses: P, seconds: o.connrateSeconds, reps: o.connrateReps }, summary, trials };
}
