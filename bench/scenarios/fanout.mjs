// @ts-check
/**
 * Scenario 1, fan-out: R rooms x N members per target, one sender per room, M messages
 * per sender with at most W in flight (the sender's own echo is its ack). The targets run
 * in rotated order (A B C D, B C D A, ...: each in every position equally often), each
 * repetition at window 16 then window 1.
 *
 * The same code runs the scale-out scenario: each target as two server processes sharing
 * a redis-server of its own, client process p connected to server p, so every room has
 * members on both and half of the deliveries cross Redis.
 */
import { spawnClient } from '../lib/clientproc.mjs';
import { cpuMicros, machineBusyMicros, nowMicros, sleep, writeCalls } from '../lib/proc.mjs';
import { merge, median, minMax, newHistogram, quantile, rotation } from '../lib/stats.mjs';
import { BASELINE, DEFAULT_HEARTBEAT, deploy, isRoomwire, roomwireMetrics, serverConnections } from '../lib/targets.mjs';

/** The limit every fan-out table compares roomwire with (issue 17). */
const LIMIT = 'ws-corked';

/**
 * @param {import('../run.mjs').Context} ctx
 */
export function runFanout(ctx) {
  return fanout(ctx, { scenario: 'fanout', processes: 1, targets: ctx.targets, baseline: BASELINE });
}

/**
 * Scale-out: roomwire over Redis (on node-redis, on ioredis, and over a Redis Cluster of
 * 3 masters) against Socket.IO with its Redis adapter, two server processes each; ratios
 * are against Socket.IO.
 * @param {import('../run.mjs').Context} ctx
 */
export function runScaleout(ctx) {
  const names = String(ctx.options.scaleoutTargets).split(',').map((n) => n.trim());
  const targets = ctx.allTargets.filter((t) => names.includes(t.name));
  return fanout(ctx, { scenario: 'scaleout', processes: 2, targets, baseline: 'socketio' });
}

/**
 * @param {import('../run.mjs').Context} ctx
 * @param {{ scenario: string, processes: number, targets: import('../lib/targets.mjs').Target[], baseline: string }} plan
 */
async function fanout(ctx, plan) {
  const o = ctx.options;
  const R = o.rooms;
  const N = o.members;
  const P = o.fanoutClients;
  const { targets, scenario } = plan;
  ctx.log(`${scenario}: ${R} rooms x ${N} members, ${P} client processes per target, ${o.reps} repetitions, ` +
    `window 16: ${o.messages} messages per sender, window 1: ${o.messagesW1} messages per sender, content ${o.contentBytes} bytes` +
    (plan.processes > 1 ? `; ${plan.processes} server processes per target sharing a redis-server, client process p on server p` : ''));

  /** @type {Map<string, { server: import('../lib/targets.mjs').Deployment, clients: import('../lib/clientproc.mjs').ClientProc[] }>} */
  const setups = new Map();
  /** @type {any[]} */
  const trials = [];
  try {
    for (const t of targets) {
      const server = await deploy(t, DEFAULT_HEARTBEAT, ctx.jwtSecret, plan.processes);
      const clients = Array.from({ length: P }, () => spawnClient('fanout.mjs'));
      setups.set(t.name, { server, clients });
      const replies = await Promise.all(
        clients.map((c, p) => {
          const rooms = [];
          for (let r = 0; r < R; r++) {
            const share = Math.floor(N / P) + (p < N % P ? 1 : 0);
            rooms.push({ room: `bench-r${r}`, members: share, sender: r % P === p });
          }
          return c.request({ op: 'connect', kind: t.kind, url: server.urlFor(p), rooms, concurrency: 25, contentBytes: o.contentBytes, timeoutMs: 60_000 }, 'connected', 90_000);
        }),
      );
      const connected = replies.reduce((a, r) => a + r.members, 0);
      const sendersUp = replies.reduce((a, r) => a + r.senders, 0);
      const failures = replies.map((r) => r.failures);
      ctx.log(`  ${t.name}: ${connected}/${R * N} members joined, ${sendersUp}/${R} senders`);
      if (connected !== R * N || sendersUp !== R) {
        ctx.problem(scenario, t.name, `only ${connected} of ${R * N} members joined (${sendersUp} of ${R} senders)`, { failures, serverOutput: server.lastLines() });
        throw new Error(`${scenario} setup failed for ${t.name}`);
      }
    }
    // Let join notices and user lists drain before anything is measured.
    await sleep(500);

    /**
     * @param {import('../lib/targets.mjs').Target} t
     * @param {number} window
     * @param {number} messages
     * @param {number} rep -1 for the warm-up
     */
    const trial = async (t, window, messages, rep) => {
      const { server, clients } = /** @type {NonNullable<ReturnType<typeof setups.get>>} */ (setups.get(t.name));
      if (!server.alive()) throw new Error(`${t.name} server died: ${server.lastLines().join('\n')}`);
      const id = trials.length + 1;
      const clientCpu0 = clients.map((c) => c.cpu());
      const busy0 = machineBusyMicros();
      const self0 = process.cpuUsage();
      const wall0 = nowMicros();
      const serverCpu = () => server.pids.reduce((a, pid) => a + cpuMicros(pid), 0);
      const serverWrites = () => server.pids.reduce((a, pid) => a + writeCalls(pid), 0);
      const cpu0 = serverCpu();
      const writes0 = serverWrites();
      const startAt = nowMicros() + 30_000;
      const timeoutMs = Math.max(30_000, (messages * R * N) / 20); // >= 50k deliveries/s or give up
      const done = await Promise.all(
        clients.map((c) => c.request({ op: 'run', id, window, messages, startAt, quietMs: 3000, timeoutMs }, 'done', timeoutMs + 10_000)),
      );
      const cpu1 = serverCpu();
      const writes1 = serverWrites();
      const clientCpu = clients.reduce((a, c, i) => a + (c.cpu() - clientCpu0[i]), 0);
      const self = process.cpuUsage(self0);
      const busy = machineBusyMicros() - busy0;
      const wall = nowMicros() - wall0;
      const hist = newHistogram();
      for (const d of done) merge(hist, d.hist);
      const sum = (/** @type {string} */ k) => done.reduce((a, d) => a + d[k], 0);
      const firsts = done.map((d) => d.firstSendAt).filter((x) => x > 0);
      const first = firsts.length ? Math.min(...firsts) : startAt;
      const last = Math.max(...done.map((d) => d.lastDeliveryAt));
      const seconds = (last - first) / 1e6;
      const distinct = sum('distinct');
      const expected = R * N * messages;
      /** @type {Record<string, number>} */
      const otherTypes = {};
      for (const d of done) for (const [k, v] of Object.entries(d.otherTypes)) otherTypes[k] = (otherTypes[k] ?? 0) + /** @type {number} */ (v);
      const result = {
        id,
        rep,
        target: t.name,
        window,
        messages,
        expected,
        delivered: distinct,
        lost: expected - distinct,
        duplicates: sum('duplicates'),
        reordered: sum('reordered'),
        unexpected: sum('unexpected'),
        incompleteMembers: sum('incompleteMembers'),
        closes: sum('closes'),
        otherTypes,
        otherSample: done.flatMap((d) => d.otherSample).slice(0, 5),
        seconds,
        deliveriesPerSec: distinct / seconds,
        serverCpuUs: cpu1 - cpu0,
        cpuUsPerDelivery: (cpu1 - cpu0) / distinct,
        // write system calls of the server per 100 deliveries (frames batched per write)
        writesPer100: ((writes1 - writes0) / distinct) * 100,
        serverCpuPct: ((cpu1 - cpu0) / 1e6 / seconds) * 100,
        clientCpuPct: (clientCpu / 1e6 / seconds) * 100,
        // CPU used by processes other than this benchmark's during the trial (% of one core)
        otherCpuPct: Math.max(0, ((busy - (cpu1 - cpu0) - clientCpu - self.user - self.system) / wall) * 100),
        p50us: quantile(hist, 0.5),
        p99us: quantile(hist, 0.99),
        p999us: quantile(hist, 0.999),
        maxUs: quantile(hist, 1),
      };
      const bad = result.lost || result.duplicates || result.reordered || result.unexpected || result.closes;
      const errs = Object.keys(otherTypes).filter((k) => k !== 'join' && k !== 'user_list' && k !== 'leave');
      if (bad || errs.length) {
        ctx.problem(scenario, t.name, `trial ${id} (window ${window}, ${messages} messages): lost ${result.lost}, duplicates ${result.duplicates}, ` +
          `reordered ${result.reordered}, unexpected ${result.unexpected}, closes ${result.closes}, other frames ${JSON.stringify(otherTypes)}`,
        { sample: result.otherSample, closeCodes: done.map((d) => d.closeCodes), serverOutput: server.lastLines() });
      }
      return result;
    };

    // Warm-up (JIT, buffers): one short trial per target, not recorded.
    for (const t of targets) {
      const w = await trial(t, 16, o.warmupMessages, -1);
      ctx.log(`  warm-up ${t.name.padEnd(12)} ${Math.round(w.deliveriesPerSec).toLocaleString('en-US')} deliveries/s`);
    }
    for (let rep = 0; rep < o.reps; rep++) {
      const order = rotation(targets, rep);
      const parts = [];
      /** @type {number[]} */
      const others = [];
      for (const t of order) {
        const a = await trial(t, 16, o.messages, rep);
        trials.push(a);
        const b = await trial(t, 1, o.messagesW1, rep);
        trials.push(b);
        parts.push(`${t.name} ${Math.round(a.deliveriesPerSec / 1000)}k/s ${a.cpuUsPerDelivery.toFixed(2)}us`);
        others.push(a.otherCpuPct, b.otherCpuPct);
      }
      ctx.log(`  rep ${rep + 1}/${o.reps}: ${parts.join(', ')}; other processes ${Math.round(Math.max(...others))}% CPU at most`);
    }

    /** @type {Record<string, any>} */
    const extra = {};
    for (const t of targets) {
      const { server } = /** @type {NonNullable<ReturnType<typeof setups.get>>} */ (setups.get(t.name));
      const warnings = server.servers.flatMap((s) => s.warnings);
      extra[t.name] = { serverConnections: await Promise.all(server.servers.map((s) => serverConnections(s))), warnings };
      if (isRoomwire(t) && t.metrics !== false) {
        try {
          // Summed over the processes (with Redis, each counts what it received and what it delivered).
          /** @type {Record<string, number>} */
          const samples = {};
          for (const s of server.servers) {
            for (const [k, v] of Object.entries((await roomwireMetrics(s)).samples)) samples[k] = (samples[k] ?? 0) + v;
          }
          extra[t.name].metrics = samples;
          // Cross-check roomwire's own counters against the load: every message sent was
          // received once, and delivered to N members (plus the join notices of setup).
          const sent = R * (o.warmupMessages + o.reps * (o.messages + o.messagesW1));
          const received = samples['roomwire_messages_received_total{type="message"}'];
          const delivered = samples.roomwire_messages_delivered_total;
          const joins = R * ((N * (N + 1)) / 2);
          // Across processes, members that join at the same moment on two processes can
          // each receive the other's join notice (each joined before the other's notice
          // arrived): a few more join deliveries than in one process, never fewer.
          const joinSurplus = delivered - (sent * N + joins);
          if (received !== sent || joinSurplus < 0 || (plan.processes === 1 && joinSurplus !== 0)) {
            ctx.problem(scenario, t.name, `/metrics disagrees with the load: messages received ${received} (sent ${sent}), delivered ${delivered} (expected ${sent * N + joins})`);
          }
          extra[t.name].joinNoticesOfConcurrentJoiners = joinSurplus;
          const errors = Object.entries(samples).filter(([k, v]) => (k.startsWith('roomwire_errors_total') || k.startsWith('roomwire_heartbeat_terminations_total')) && v > 0);
          if (errors.length) ctx.problem(scenario, t.name, `roomwire counted errors or terminations: ${JSON.stringify(Object.fromEntries(errors))}`);
          // What exposing the counters costs: server CPU per GET /metrics, with the
          // fan-out's connections and rooms still open. (Counting itself runs in every
          // trial above: a few field additions per message and per broadcast.)
          const first = server.servers[0];
          const scrapes = 50;
          const c0 = cpuMicros(first.pid);
          for (let i = 0; i < scrapes; i++) await roomwireMetrics(first);
          extra[t.name].metricsScrapeCpuUs = (cpuMicros(first.pid) - c0) / scrapes;
        } catch (err) {
          ctx.problem(scenario, t.name, `GET /metrics failed: ${/** @type {Error} */ (err).message}`);
        }
      }
      if (warnings.length) ctx.problem(scenario, t.name, `server wrote ${warnings.length} warning/error lines`, { lines: warnings.slice(0, 5) });
    }
    return {
      params: { rooms: R, members: N, clientProcesses: P, serverProcesses: plan.processes, baseline: plan.baseline, reps: o.reps, messagesW16: o.messages, messagesW1: o.messagesW1, contentBytes: o.contentBytes },
      summary: summarize(trials, targets.map((t) => t.name), plan.baseline),
      trials,
      servers: extra,
      metricsScrapeCpuUs: extra.roomwire?.metricsScrapeCpuUs,
    };
  } finally {
    for (const { clients } of setups.values()) await Promise.all(clients.map((c) => c.close()));
    for (const [name, { server }] of setups) {
      const code = await server.stop();
      if (code !== 0) ctx.problem(scenario, name, `server exited with ${code} on SIGTERM`, { output: server.lastLines() });
    }
  }
}

/**
 * Medians per target and paired ratios (same repetition) against the baseline.
 * @param {any[]} trials
 * @param {string[]} names
 * @param {string} baseline
 */
function summarize(trials, names, baseline) {
  /** @type {Record<string, any>} */
  const out = {};
  const pick = (/** @type {string} */ name, /** @type {number} */ window) => trials.filter((t) => t.target === name && t.window === window);
  for (const name of names) {
    const w16 = pick(name, 16);
    const w1 = pick(name, 1);
    /**
     * Median over repetitions of this target's value divided by the baseline's (or `against`'s).
     * @param {any[]} mine
     * @param {number} window
     * @param {string} key
     * @param {string} [against]
     */
    const paired = (mine, window, key, against = baseline) => {
      const base = pick(against, window);
      const ratios = mine.map((m) => {
        const b = base.find((x) => x.rep === m.rep);
        return b ? m[key] / b[key] : Number.NaN;
      });
      const [lo, hi] = minMax(ratios);
      return { median: median(ratios), min: lo, max: hi };
    };
    const total = (/** @type {any[]} */ ts, /** @type {string} */ k) => ts.reduce((a, t) => a + t[k], 0);
    // The limit (issue 17): the hand-written server that frames once and corks per turn.
    const limit = names.includes(LIMIT) ? LIMIT : undefined;
    out[name] = {
      w16: {
        deliveriesPerSec: median(w16.map((t) => t.deliveriesPerSec)),
        cpuUsPerDelivery: median(w16.map((t) => t.cpuUsPerDelivery)),
        serverCpuPct: median(w16.map((t) => t.serverCpuPct)),
        clientCpuPct: median(w16.map((t) => t.clientCpuPct)),
        otherCpuPct: median(w16.map((t) => t.otherCpuPct)),
        p50us: median(w16.map((t) => t.p50us)),
        p99us: median(w16.map((t) => t.p99us)),
        ratioDeliveries: paired(w16, 16, 'deliveriesPerSec'),
        ratioCpuPerDelivery: paired(w16, 16, 'cpuUsPerDelivery'),
        ratioP99: paired(w16, 16, 'p99us'),
        writesPer100: median(w16.map((t) => t.writesPer100)),
        spreadDeliveries: minMax(w16.map((t) => t.deliveriesPerSec)),
        ...(limit === undefined
          ? {}
          : { limitDeliveries: paired(w16, 16, 'deliveriesPerSec', limit), limitCpuPerDelivery: paired(w16, 16, 'cpuUsPerDelivery', limit), limitP99: paired(w16, 16, 'p99us', limit) }),
      },
      w1: {
        deliveriesPerSec: median(w1.map((t) => t.deliveriesPerSec)),
        cpuUsPerDelivery: median(w1.map((t) => t.cpuUsPerDelivery)),
        p50us: median(w1.map((t) => t.p50us)),
        p99us: median(w1.map((t) => t.p99us)),
        writesPer100: median(w1.map((t) => t.writesPer100)),
        ratioDeliveries: paired(w1, 1, 'deliveriesPerSec'),
        ratioP99: paired(w1, 1, 'p99us'),
        ...(limit === undefined
          ? {}
          : { limitDeliveries: paired(w1, 1, 'deliveriesPerSec', limit), limitCpuPerDelivery: paired(w1, 1, 'cpuUsPerDelivery', limit), limitP99: paired(w1, 1, 'p99us', limit) }),
      },
      expected: total([...w16, ...w1], 'expected'),
      lost: total([...w16, ...w1], 'lost'),
      duplicates: total([...w16, ...w1], 'duplicates'),
      reordered: total([...w16, ...w1], 'reordered'),
      unexpected: total([...w16, ...w1], 'unexpected'),
      closes: total([...w16, ...w1], 'closes'),
    };
  }
  return out;
}
