// @ts-check
/**
 * Scenario `member` (issue 13, item 5): what one room member costs. Two measurements per
 * target and repetition, each in a fresh server process, targets in alternating order
 * over repetitions (A B C D, D C B A, ...):
 *
 * - connect+join rate: --member-clients processes (bench/clients/connrate.mjs) keep
 *   --member-inflight connections in flight in total; each connects to `/ws/{room}` over
 *   --member-rooms rooms (Socket.IO: the room in the handshake query), counts once its join
 *   is complete (roomwire: its `user_list`, which follows the own `join`; the hand-written
 *   servers: the own `join` notice; Socket.IO: the `join` event) and is closed gracefully
 *   at once, and the next starts. After an unrecorded 1 s warm-up, --member-seconds are
 *   measured: completed connections per second, server CPU µs per connection (from
 *   /proc/<pid>/stat), the load generators' CPU (so a saturated generator shows), and the
 *   connect+join latency. A trial during which other processes of the machine used more
 *   than --member-max-other % of a core is run again (same server, at most
 *   --member-retries more times) and the least disturbed attempt is kept.
 * - memory per idle member: open and drop 300 members (warm-up), settle 1.5 s, read VmRSS;
 *   open --member-conns idle connections, each joined to room i % --member-rooms through
 *   its path, settle --member-settle s, read VmRSS again: (after - before) / N. With
 *   --member-heap=on (the default) every server runs under `node --expose-gc --require
 *   bench/servers/heap-probe.cjs` with an IPC channel, and right after each VmRSS reading
 *   the heap after two forced full GCs is read too: heap used and external (Buffers) per
 *   member. The server's code is the same (for roomwire: dist/bin/roomwire.js).
 *
 * Ratios are paired: a target's value over ws-naive's in the same repetition, median
 * (min-max) over repetitions.
 */
import { freshAddresses, spawnClient } from '../lib/clientproc.mjs';
import { cpuWindow, nowMicros, rssBytes, sleep } from '../lib/proc.mjs';
import { median, minMax, quantile, sumRateReplies } from '../lib/stats.mjs';
import { BASELINE, DEFAULT_HEARTBEAT, httpGet, startServer } from '../lib/targets.mjs';

const WARMUP = 300;
const ROOM_PREFIX = 'room-';

/**
 * Open connections and rooms as the server's /healthz reports them (Socket.IO: no rooms).
 * @param {import('../lib/targets.mjs').RunningServer} s
 */
async function health(s) {
  try {
    const j = JSON.parse((await httpGet(`${s.url}/healthz`)).text);
    return { connections: Number(j.connections), rooms: j.rooms === undefined ? Number.NaN : Number(j.rooms) };
  } catch {
    return { connections: Number.NaN, rooms: Number.NaN };
  }
}

/**
 * Paired ratio of `key` over repetitions: target / baseline in the same repetition.
 * @param {any[]} trials
 * @param {string} target
 * @param {string} key
 */
function pairedRatio(trials, target, key) {
  const rs = trials
    .filter((x) => x.target === target)
    .map((m) => {
      const b = trials.find((x) => x.target === BASELINE && x.rep === m.rep);
      return b ? m[key] / b[key] : Number.NaN;
    });
  const [lo, hi] = minMax(rs);
  return { median: median(rs), min: lo, max: hi };
}

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runMember(ctx) {
  const o = ctx.options;
  const N = Math.round(o.memberConns);
  const ROOMS = Math.round(o.memberRooms);
  const P = Math.max(1, Math.round(o.memberClients));
  const inflight = Math.max(P, Math.round(o.memberInflight));
  const K = Math.max(1, Math.ceil(N / 12_000));
  const heapOn = o.memberHeap !== 'off';
  if (o.memberHeap !== 'on' && o.memberHeap !== 'off') throw new Error(`--member-heap must be on or off, not "${o.memberHeap}"`);
  ctx.log(`member: connect+join to /ws/{room} over ${ROOMS} rooms, ${inflight} in flight from ${P} client processes, ${o.memberSeconds} s per trial after a 1 s warm-up; ` +
    `${N} idle members from ${K} client process(es), settle ${o.memberSettle} s${heapOn ? ', heap after GC (heap probe)' : ''}; ${o.memberReps} repetition(s), a fresh server for each measurement`);

  /** @type {any[]} */
  const rateTrials = [];
  /** @type {any[]} */
  const memTrials = [];

  /**
   * @param {import('../lib/targets.mjs').RunningServer} server
   * @param {string} what
   */
  const stopServer = async (server, what) => {
    const name = server.target.name;
    const code = await server.stop();
    if (code !== 0) ctx.problem('member', name, `${what} server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
    if (server.warnings.length) ctx.problem('member', name, `${what} server wrote ${server.warnings.length} warning/error lines`, { lines: server.warnings.slice(0, 5) });
  };

  /**
   * The connect+join rate of one target in a fresh server.
   * @param {import('../lib/targets.mjs').Target} t
   * @param {number} rep
   */
  const rateTrial = async (t, rep) => {
    const server = await startServer(t, DEFAULT_HEARTBEAT, ctx.jwtSecret);
    const clients = Array.from({ length: P }, () => spawnClient('connrate.mjs'));
    try {
      /** @param {number} seconds */
      const run = async (seconds) => {
        if (!server.alive()) throw new Error(`${t.name} server died: ${server.lines.slice(-10).join('\n')}`);
        const endWindow = cpuWindow(server.pid, clients);
        const startAt = nowMicros() + 50_000;
        const replies = await Promise.all(
          clients.map((c, i) =>
            c.request(
              {
                op: 'run',
                kind: t.kind,
                url: server.url,
                inflight: Math.floor(inflight / P) + (i < inflight % P ? 1 : 0),
                startAt,
                durationMs: seconds * 1000,
                localAddresses: freshAddresses(4),
                tokens: [],
                rooms: ROOMS,
                roomPrefix: ROOM_PREFIX,
                roomOffset: i,
                roomStride: P,
                readyOn: t.joinDoneOn,
              },
              'done',
              seconds * 1000 + 30_000,
            ),
          ),
        );
        const { server: serverCpu, client: clientCpu, wall, otherPct } = endWindow();
        const { hist, completed, failed, failures, abnormal } = sumRateReplies(replies);
        await sleep(300);
        return {
          completed,
          failed,
          failures,
          abnormal,
          perSecond: completed / seconds,
          serverCpuUsPerConnection: serverCpu / Math.max(1, completed),
          serverCpuPct: (serverCpu / wall) * 100,
          clientCpuPct: (clientCpu / wall) * 100,
          otherCpuPct: otherPct,
          p50us: quantile(hist, 0.5),
          p99us: quantile(hist, 0.99),
        };
      };
      const warm = await run(1);
      if (warm.failed > 0 || warm.abnormal > 0) ctx.problem('member', t.name, `warm-up: ${warm.failed} connect+joins failed ${JSON.stringify(warm.failures)}, ${warm.abnormal} abnormal closes`);
      // On a shared machine a trial during which other processes took more than
      // --member-max-other % of a core is run again in the same (warm) server, up to
      // --member-retries times; the least disturbed attempt is kept.
      /** @type {Awaited<ReturnType<typeof run>>[]} */
      const attempts = [];
      for (;;) {
        const a = await run(o.memberSeconds);
        if (a.failed > 0 || a.abnormal > 0) ctx.problem('member', t.name, `rep ${rep + 1}: ${a.failed} connect+joins failed ${JSON.stringify(a.failures)}, ${a.abnormal} abnormal closes`);
        attempts.push(a);
        if (a.otherCpuPct <= o.memberMaxOther || attempts.length > o.memberRetries) break;
        await sleep(2000);
      }
      const r = attempts.reduce((best, a) => (a.otherCpuPct < best.otherCpuPct ? a : best));
      const left = await health(server);
      return { rep, target: t.name, ...r, attempts: attempts.length, discardedOtherCpuPct: attempts.filter((a) => a !== r).map((a) => a.otherCpuPct), warmupPerSecond: warm.perSecond, serverConnectionsAfter: left.connections };
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await stopServer(server, 'rate');
    }
  };

  /**
   * Memory per idle member of one target in a fresh server.
   * @param {import('../lib/targets.mjs').Target} t
   * @param {number} rep
   */
  const memoryTrial = async (t, rep) => {
    const server = await startServer(t, DEFAULT_HEARTBEAT, ctx.jwtSecret, {}, { heapProbe: heapOn });
    /** @type {import('../lib/clientproc.mjs').ClientProc[]} */
    let clients = [];
    const rooms = { rooms: ROOMS, roomPrefix: ROOM_PREFIX, readyOn: t.joinDoneOn };
    try {
      const warm = spawnClient('idle.mjs');
      clients = [warm];
      await warm.request({ op: 'open', kind: t.kind, url: server.url, count: WARMUP, localAddresses: [], concurrency: 20, timeoutMs: 30_000, maxFailures: 50, ...rooms, roomOffset: 0, roomStride: 1 }, 'opened', 40_000);
      await warm.close();
      await sleep(1500);
      const before = rssBytes(server.pid);
      const heapBefore = heapOn ? await server.heap() : undefined;
      clients = Array.from({ length: K }, () => spawnClient('idle.mjs'));
      const t0 = Date.now();
      const replies = await Promise.all(
        clients.map((c, i) => {
          const count = Math.floor(N / K) + (i < N % K ? 1 : 0);
          return c.request(
            { op: 'open', kind: t.kind, url: server.url, count, localAddresses: freshAddresses(2), concurrency: 50, timeoutMs: 150_000, maxFailures: 200, ...rooms, roomOffset: i, roomStride: K },
            'opened',
            160_000,
          );
        }),
      );
      const openMs = Date.now() - t0;
      const opened = replies.reduce((a, r) => a + r.opened, 0);
      await sleep(o.memberSettle * 1000);
      const after = rssBytes(server.pid);
      const heapAfter = heapOn ? await server.heap() : undefined;
      const held = await health(server);
      const status = await Promise.all(clients.map((c) => c.request({ op: 'status' }, 'status', 10_000)));
      const stillOpen = status.reduce((a, s) => a + s.open, 0);
      const wantRooms = Math.min(N, ROOMS);
      if (opened !== N || stillOpen !== N || held.connections !== N || (Number.isFinite(held.rooms) && held.rooms !== wantRooms)) {
        ctx.problem('member', t.name, `wanted ${N} idle members in ${wantRooms} rooms: opened ${opened}, still open ${stillOpen}, server reports ${held.connections} connections, ${held.rooms} rooms`, {
          failures: replies.map((r) => r.failures),
          closeCodes: status.map((s) => s.closeCodes),
        });
      }
      const per = (/** @type {number} */ x) => x / Math.max(1, opened);
      const r = {
        rep,
        target: t.name,
        connections: opened,
        serverConnections: held.connections,
        serverRooms: held.rooms,
        rssBefore: before,
        rssAfter: after,
        bytesPerConnection: per(after - before),
        heapBefore,
        heapAfter,
        heapPerConnection: heapBefore && heapAfter ? per(heapAfter.heapUsed - heapBefore.heapUsed) : Number.NaN,
        externalPerConnection: heapBefore && heapAfter ? per(heapAfter.external - heapBefore.external) : Number.NaN,
        openSeconds: openMs / 1000,
      };
      return r;
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await stopServer(server, 'memory');
    }
  };

  for (let rep = 0; rep < o.memberReps; rep++) {
    const order = rep % 2 === 0 ? ctx.targets : [...ctx.targets].reverse();
    for (const t of order) {
      const r = await rateTrial(t, rep);
      rateTrials.push(r);
      const m = await memoryTrial(t, rep);
      memTrials.push(m);
      const heap = Number.isFinite(m.heapPerConnection) ? `, heap ${(m.heapPerConnection / 1024).toFixed(2)} KB + external ${(m.externalPerConnection / 1024).toFixed(2)} KB` : '';
      ctx.log(`  rep ${rep + 1}/${o.memberReps} ${t.name.padEnd(12)} ${Math.round(r.perSecond)} connect+join/s, ${r.serverCpuUsPerConnection.toFixed(0)} us server CPU each (server ${r.serverCpuPct.toFixed(0)}%, clients ${r.clientCpuPct.toFixed(0)}%, other ${r.otherCpuPct.toFixed(0)}%${r.attempts > 1 ? `, best of ${r.attempts} trials` : ''}); ` +
        `${(m.bytesPerConnection / 1024).toFixed(2)} KB RSS per member${heap} (${m.connections} opened in ${m.openSeconds.toFixed(1)} s)`);
    }
  }

  /** @type {Record<string, any>} */
  const summary = {};
  for (const t of ctx.targets) {
    const rs = rateTrials.filter((x) => x.target === t.name);
    const ms = memTrials.filter((x) => x.target === t.name);
    summary[t.name] = {
      rate: {
        perSecond: median(rs.map((x) => x.perSecond)),
        ratio: pairedRatio(rateTrials, t.name, 'perSecond'),
        serverCpuUsPerConnection: median(rs.map((x) => x.serverCpuUsPerConnection)),
        ratioCpu: pairedRatio(rateTrials, t.name, 'serverCpuUsPerConnection'),
        serverCpuPct: median(rs.map((x) => x.serverCpuPct)),
        clientCpuPct: median(rs.map((x) => x.clientCpuPct)),
        otherCpuPct: median(rs.map((x) => x.otherCpuPct)),
        p50us: median(rs.map((x) => x.p50us)),
        p99us: median(rs.map((x) => x.p99us)),
        failed: rs.reduce((a, x) => a + x.failed, 0),
        retried: rs.reduce((a, x) => a + x.attempts - 1, 0),
        disturbed: rs.filter((x) => x.otherCpuPct > o.memberMaxOther).length,
      },
      memory: {
        bytesPerConnection: median(ms.map((x) => x.bytesPerConnection)),
        ratio: pairedRatio(memTrials, t.name, 'bytesPerConnection'),
        heapPerConnection: median(ms.map((x) => x.heapPerConnection)),
        ratioHeap: pairedRatio(memTrials, t.name, 'heapPerConnection'),
        externalPerConnection: median(ms.map((x) => x.externalPerConnection)),
        rssAfter: median(ms.map((x) => x.rssAfter)),
      },
    };
  }
  return {
    params: {
      rooms: ROOMS,
      inflight,
      clientProcesses: P,
      seconds: o.memberSeconds,
      maxOtherCpuPct: o.memberMaxOther,
      retries: o.memberRetries,
      connections: N,
      idleClientProcesses: K,
      settleSeconds: o.memberSettle,
      warmupConnections: WARMUP,
      heap: heapOn,
      reps: o.memberReps,
    },
    summary,
    rateTrials,
    memoryTrials: memTrials,
  };
}
