// @ts-check
/**
 * Hardening scenario `attack`: the latency an ordinary client sees while the server is
 * attacked, and whether the server cuts the attack off.
 *
 * One roomwire standalone server with the benchmark's settings (bench/lib/targets.mjs
 * roomwireEnv: high connection limits, so the attacker's connections get in), except:
 * WEBSOCKET_MESSAGE_RATE=20/s,40 (roomwire's default), WEBSOCKET_MAX_MESSAGE_SIZE=70000
 * (so the 65,000-byte frames are accepted), WEBSOCKET_MAX_ROOMS_PER_CONNECTION=100 (the
 * default; the room filler of phase f joins 40 rooms per connection), and
 * WEBSOCKET_WRITE_BUFFER_SIZE (the slow-reader threshold) and MAX_UNFINISHED_REQUESTS (the
 * slowloris cap per address) left at roomwire's defaults.
 *
 * The canary (bench/clients/canary.mjs): two connections from 127.0.0.2 in room
 * `canary`; one probe every --attack-probe-ms round-robin over them, each connection
 * alternating its own message echo and an app-level ping/pong (so each stays within
 * 20/s); every round trip is recorded, and the other canary must receive each message.
 *
 * The attacker (bench/clients/attacker.mjs), a separate process from 127.0.0.1, runs one
 * phase at a time, each --attack-seconds long (slow-readers: at least 12 s), with 2 s to
 * recover between phases (--attack-phases picks and orders them):
 *
 * - baseline: no attack;
 * - flood (a): 65,000-byte messages whose data has 8,000 keys, over the rate, bursts of
 *   --attack-flood-burst between accepted app-level pings (never 40 drops in a row);
 * - within-rate (b): --attack-within-conns connections sending that frame at
 *   --attack-within-rate per second each, each in a room of its own;
 * - ping-flood (c): protocol ping frames as fast as one raw connection can write them:
 *   25 per write, the next write when their pongs are back or after 25 ms, and 1,000 per
 *   write without waiting once three writes in a row got no full answer (ws itself
 *   terminates a connection with 60 automatic pongs pending; a 1,000-ping burst on a
 *   connection of its own shows that first);
 * - slowloris (d): --attack-slowloris TCP connections holding an unfinished upgrade
 *   request (`GET /ws HTTP/1.1\r\nHost: x\r\n`); GET /healthz (from 127.0.0.3) is timed
 *   every 500 ms during it;
 * - slow-readers (e): --attack-readers members of one room that never read (raw sockets,
 *   paused after the upgrade) while --attack-reader-senders connections send 65,000-byte
 *   messages to the room at --attack-within-rate per second;
 * - stats-loop (f): first --attack-rooms rooms are created (2,500 connections x 40 joins,
 *   within the burst; 16 handshakes at a time from 8 other source addresses) and a
 *   baseline window is taken with them (`baseline-rooms`), then --attack-stats-loops loops
 *   request GET /stats.json back to back.
 *
 * Per phase: the canary's p50/p99/max round trip and probes or deliveries lost; the
 * server's CPU over the phase (% of one core) and its RSS peak (sampled every 100 ms);
 * the server's connection count and the time GET /healthz takes (from 127.0.0.3, before
 * the phase and 0.4 s before its end; it gives up after 10 s); and what the attacker saw,
 * including connections the server closed.
 */
import { freshAddresses, spawnClient } from '../lib/clientproc.mjs';
import { closeAgent, rssSampler, startCanary, startRoomwire, timedGet } from '../lib/hardening.mjs';
import { cpuMicros, nowMicros, rssBytes, sleep } from '../lib/proc.mjs';

export const ATTACK_PHASES = ['baseline', 'flood', 'within-rate', 'ping-flood', 'slowloris', 'slow-readers', 'stats-loop'];

/**
 * GET /healthz from a source address of its own (not the attacker's 127.0.0.1).
 * @param {string} url
 */
async function health(url) {
  const r = await timedGet(`${url}/healthz`, 10_000, '127.0.0.3');
  try {
    const h = JSON.parse(r.body);
    return { status: r.status, ms: r.ms, connections: Number(h.connections), rooms: Number(h.rooms), error: undefined };
  } catch {
    return { status: r.status, ms: r.ms, connections: Number.NaN, rooms: Number.NaN, error: r.error ?? `status ${r.status}` };
  }
}

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runAttack(ctx) {
  const o = ctx.options;
  const phases = o.attackPhases.split(',').map((s) => s.trim()).filter(Boolean);
  for (const p of phases) if (!ATTACK_PHASES.includes(p)) throw new Error(`unknown attack phase ${p} (one of ${ATTACK_PHASES.join(', ')})`);
  const seconds = o.attackSeconds;
  const env = {
    WEBSOCKET_MESSAGE_RATE: '20/s,40',
    WEBSOCKET_MAX_MESSAGE_SIZE: '70000',
    WEBSOCKET_MAX_ROOMS_PER_CONNECTION: '100',
  };
  ctx.log(`attack: phases ${phases.join(', ')}, ${seconds} s each; canary probe every ${o.attackProbeMs} ms from 127.0.0.2, attacker from 127.0.0.1; ` +
    `roomwire with WEBSOCKET_MESSAGE_RATE=20/s,40, WEBSOCKET_MAX_MESSAGE_SIZE=70000`);
  // The slow-reader threshold and the unfinished-request cap stay at roomwire's defaults:
  // they are defences under test.
  const server = await startRoomwire(ctx, env, { unset: ['WEBSOCKET_WRITE_BUFFER_SIZE', 'MAX_UNFINISHED_REQUESTS'] });
  const attacker = spawnClient('attacker.mjs');
  /** @type {Awaited<ReturnType<typeof startCanary>> | undefined} */
  let canary;
  /** @type {import('../lib/clientproc.mjs').ClientProc | undefined} */
  let filler;
  /** @type {any[]} */
  const results = [];
  try {
    canary = await startCanary({ url: server.url, room: 'canary', localAddress: '127.0.0.2', conns: 2, probeMs: o.attackProbeMs, kinds: ['message', 'ping'] });
    await sleep(1000);
    await canary.mark(200);
    /**
     * Run one phase: `attack` starts it and resolves with the attacker's report.
     * @param {string} name
     * @param {number} phaseSeconds
     * @param {() => Promise<any>} attack
     * @param {(() => Promise<any>) | undefined} [during] runs alongside (slowloris: /healthz checks)
     */
    const phase = async (name, phaseSeconds, attack, during) => {
      if (!server.alive()) throw new Error(`the server died before ${name}: ${server.lines.slice(-10).join('\n')}`);
      const before = await health(server.url);
      await canary?.mark(100);
      const rss = rssSampler(server.pid);
      const cpu0 = cpuMicros(server.pid);
      const w0 = nowMicros();
      /** @type {any} */
      let nearEnd;
      const endProbe = sleep(Math.max(0, phaseSeconds * 1000 - 400)).then(async () => {
        nearEnd = await health(server.url);
      });
      const [report, extra] = await Promise.all([attack(), during ? during() : Promise.resolve(undefined), endProbe]);
      const cpu = cpuMicros(server.pid) - cpu0;
      const wall = nowMicros() - w0;
      const mem = rss.stop();
      const win = /** @type {import('../lib/hardening.mjs').CanaryWindow} */ (await /** @type {NonNullable<typeof canary>} */ (canary).mark(1000));
      const after = await health(server.url);
      const r = {
        phase: name,
        seconds: wall / 1e6,
        canary: win,
        serverCpuPct: (cpu / wall) * 100,
        serverRssPeak: mem.peak,
        serverRssEnd: mem.last,
        serverConnections: { before: before.connections, nearEnd: nearEnd?.connections, after: after.connections },
        healthzNearEnd: { status: nearEnd?.status, ms: nearEnd?.ms, error: nearEnd?.error },
        attacker: report,
        extra,
        serverAlive: server.alive(),
      };
      results.push(r);
      const closes = report?.closes ?? [];
      ctx.log(`  ${name.padEnd(14)} canary p50 ${(win.p50us / 1000).toFixed(1)} ms, p99 ${(win.p99us / 1000).toFixed(1)} ms, max ${(win.maxUs / 1000).toFixed(1)} ms, ` +
        `lost ${win.lost}/${win.probes} probes + ${win.deliveriesLost} deliveries; server CPU ${r.serverCpuPct.toFixed(0)}%, RSS peak ${(mem.peak / 2 ** 20).toFixed(0)} MiB; ` +
        `connections ${before.connections} -> ${nearEnd?.connections} (near the end); attacker closes: ${closes.length ? JSON.stringify(closes) : 'none'}`);
      if (!server.alive()) ctx.problem('attack', 'roomwire', `the server died during ${name}`, { output: server.lines.slice(-20) });
      // let the server drain what the attack left behind
      await sleep(2000);
      return r;
    };
    for (const p of phases) {
      if (p === 'baseline') {
        await phase('baseline', seconds, async () => {
          await sleep(seconds * 1000);
          return { closes: [] };
        });
      } else if (p === 'flood') {
        await phase('flood', seconds, () => attacker.request({ op: 'flood', url: server.url, frame: 'keys', burst: o.attackFloodBurst, gapMs: 55, seconds }, 'done', seconds * 1000 + 60_000));
      } else if (p === 'within-rate') {
        await phase('within-rate', seconds, () => attacker.request({ op: 'within', url: server.url, frame: 'keys', conns: o.attackWithinConns, rate: o.attackWithinRate, seconds }, 'done', seconds * 1000 + 60_000));
      } else if (p === 'ping-flood') {
        await phase('ping-flood', seconds, () => attacker.request({ op: 'pingflood', url: server.url, seconds, perWrite: 25, stallMs: 25 }, 'done', seconds * 1000 + 60_000));
      } else if (p === 'slowloris') {
        await phase(
          'slowloris',
          seconds,
          () => attacker.request({ op: 'slowloris', url: server.url, count: o.attackSlowloris, seconds }, 'done', seconds * 1000 + 60_000),
          async () => {
            /** @type {{ atMs: number, status: number, ms: number }[]} */
            const checks = [];
            const t0 = Date.now();
            while (Date.now() - t0 < seconds * 1000 - 500) {
              await sleep(500);
              const h = await health(server.url);
              checks.push({ atMs: Date.now() - t0, status: h.status, ms: h.ms });
            }
            const ok = checks.filter((c) => c.status === 200);
            return { healthz: checks, healthzOk: ok.length, healthzChecks: checks.length, healthzMaxMs: Math.max(...checks.map((c) => c.ms)) };
          },
        );
      } else if (p === 'slow-readers') {
        const s = Math.max(seconds, 12);
        await phase('slow-readers', s, () => attacker.request({ op: 'readers', url: server.url, frame: 'plain', readers: o.attackReaders, senders: o.attackReaderSenders, rate: o.attackWithinRate, seconds: s }, 'done', s * 1000 + 60_000));
      } else if (p === 'stats-loop') {
        const perConn = 40; // the default burst: every join is within it
        const conns = Math.ceil(o.attackRooms / perConn);
        filler = spawnClient('rooms.mjs');
        const t0 = Date.now();
        const f = await filler.request({ op: 'fill', url: server.url, conns, roomsPerConn: perConn, prefix: 'af', window: perConn, localAddresses: freshAddresses(8), concurrency: 16, timeoutMs: 120_000 }, 'filled', 130_000);
        const h = await health(server.url);
        ctx.log(`  (stats-loop: ${f.joined} rooms joined over ${conns} connections in ${((Date.now() - t0) / 1000).toFixed(1)} s; /healthz reports ${h.rooms} rooms; join errors ${JSON.stringify(f.errors)}; ${f.failedConns} connections failed)`);
        if (h.rooms < o.attackRooms) ctx.problem('attack', 'roomwire', `stats-loop: wanted ${o.attackRooms} rooms, the server reports ${h.rooms}; ${f.failedConns} connections failed ${JSON.stringify(f.handshakeFailures)}`, { errors: f.errors });
        await sleep(1000);
        await phase('baseline-rooms', seconds, async () => {
          await sleep(seconds * 1000);
          return { closes: [], rooms: h.rooms };
        });
        await phase('stats-loop', seconds, () => attacker.request({ op: 'statsloop', url: server.adminUrl, loops: o.attackStatsLoops, seconds }, 'done', seconds * 1000 + 60_000));
        await filler.close();
        filler = undefined;
      }
    }
  } finally {
    await canary?.close();
    await filler?.close();
    await attacker.close();
    closeAgent();
    const code = await server.stop();
    if (code !== 0) ctx.problem('attack', 'roomwire', `server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
  }
  return {
    params: { phases, seconds, probeMs: o.attackProbeMs, floodBurst: o.attackFloodBurst, withinConns: o.attackWithinConns, withinRate: o.attackWithinRate, slowloris: o.attackSlowloris, readers: o.attackReaders, readerSenders: o.attackReaderSenders, rooms: o.attackRooms, statsLoops: o.attackStatsLoops, env: { ...env, WEBSOCKET_WRITE_BUFFER_SIZE: '(default)', MAX_UNFINISHED_REQUESTS: '(default)' } },
    serverWarnings: server.warnings.slice(0, 20),
    rssAtEnd: server.alive() ? rssBytes(server.pid) : Number.NaN,
    phases: results,
  };
}
