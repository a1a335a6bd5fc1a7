// @ts-check
/**
 * Hardening scenario `stats`: what the observability endpoints cost at 100,000 rooms.
 *
 * roomwire's standalone server (dist/bin/roomwire.js) gets --stats-rooms rooms with one
 * member each: --stats-conns connections on `/ws` (16 handshakes at a time, from 4 source
 * addresses), each joining its share of rooms with `join` frames (client process
 * bench/clients/rooms.mjs); /healthz must then report
 * that many rooms. A canary (bench/clients/canary.mjs, from 127.0.0.2) sends an app-level
 * `{"type":"ping"}` every --stats-canary-ms and records each round trip. Then, for
 * `/healthz`, `/metrics` and `/stats.json` in turn: one unrecorded request, then
 * --stats-requests requests back to back, each timed by the client (to the end of the
 * body); the server's CPU over the batch (from /proc/<pid>/stat, minus its idle rate
 * measured just before) divided by the requests; and the canary's worst round trip in
 * the batch (the event-loop block a request causes, against the idle window's).
 *
 * Twice: with STATS_ROOM_NAMES unset and with STATS_ROOM_NAMES=true (the opt-in that
 * lists room names in /stats.json; older builds ignore it). INTERNAL_PORT is not set;
 * if the server prints an internal listener anyway, /metrics and /stats.json are read
 * there.
 */
import { freshAddresses, spawnClient } from '../lib/clientproc.mjs';
import { closeAgent, sockstat, startCanary, startRoomwire, timedGet } from '../lib/hardening.mjs';
import { cpuMicros, nowMicros, rssBytes, sleep } from '../lib/proc.mjs';
import { median } from '../lib/stats.mjs';

/** @type {{ name: string, env: Record<string, string> }[]} */
const VARIANTS = [
  { name: 'STATS_ROOM_NAMES unset', env: {} },
  { name: 'STATS_ROOM_NAMES=true', env: { STATS_ROOM_NAMES: 'true' } },
];
const ENDPOINTS = ['/healthz', '/metrics', '/stats.json'];
/** The target: one /metrics scrape and one /stats.json under 20 ms at 100,000 rooms. */
export const STATS_TARGET_MS = 20;

/**
 * @param {import('../run.mjs').Context} ctx
 */
export async function runStats(ctx) {
  const o = ctx.options;
  const conns = Math.max(1, Math.round(o.statsConns));
  const perConn = Math.ceil(o.statsRooms / conns);
  const wanted = perConn * conns;
  ctx.log(`stats: ${wanted} rooms (${conns} connections x ${perConn} rooms, one member each), ${o.statsRequests} requests per endpoint, ` +
    `canary ping every ${o.statsCanaryMs} ms; variants: ${VARIANTS.map((v) => v.name).join(', ')}`);
  /** @type {any[]} */
  const variants = [];
  for (const v of VARIANTS) {
    const server = await startRoomwire(ctx, {
      WEBSOCKET_MAX_ROOMS_PER_CONNECTION: String(perConn + 10),
      // the canary pings every 10 ms; the filler sends `window` joins at once
      WEBSOCKET_MESSAGE_RATE: '1000000/s,1000000',
      ...v.env,
    });
    /** @type {import('../lib/clientproc.mjs').ClientProc | undefined} */
    let filler;
    /** @type {Awaited<ReturnType<typeof startCanary>> | undefined} */
    let canary;
    try {
      filler = spawnClient('rooms.mjs');
      const f = await filler.request({ op: 'fill', url: server.url, conns, roomsPerConn: perConn, prefix: 'st', window: 64, localAddresses: freshAddresses(4), concurrency: 16, timeoutMs: 150_000 }, 'filled', 160_000);
      const health = await timedGet(`${server.url}/healthz`);
      /** @type {any} */
      let h = {};
      try {
        h = JSON.parse(health.body);
      } catch {
        // reported below
      }
      const roomsReported = Number(h.rooms);
      const rssAfterFill = rssBytes(server.pid);
      ctx.log(`  ${v.name}: ${f.joined} joins in ${(f.ms / 1000).toFixed(1)} s; /healthz reports ${h.rooms} rooms, ${h.connections} connections; server RSS ${(rssAfterFill / 2 ** 20).toFixed(0)} MiB`);
      if (f.joined !== wanted || roomsReported !== wanted) {
        ctx.problem('stats', 'roomwire', `wanted ${wanted} rooms: joined ${f.joined}, /healthz reports ${h.rooms} (status ${health.status}); join errors ${JSON.stringify(f.errors)}, ${f.failedConns} connections failed ${JSON.stringify(f.handshakeFailures)}`);
      }
      canary = await startCanary({ url: server.url, room: 'canary', localAddress: '127.0.0.2', conns: 1, probeMs: o.statsCanaryMs, kinds: ['ping'] });
      await sleep(300);
      await canary.mark(100);
      // idle window: the canary's round trips and the server's CPU without requests
      const idleCpu0 = cpuMicros(server.pid);
      const idle0 = nowMicros();
      await sleep(2000);
      const idleCpu = cpuMicros(server.pid) - idleCpu0;
      const idleUs = nowMicros() - idle0;
      const idle = await canary.mark(300);
      const idleRate = idleCpu / idleUs;
      /** @type {Record<string, any>} */
      const endpoints = {};
      for (const ep of ENDPOINTS) {
        const url = `${ep === '/healthz' ? server.url : server.adminUrl}${ep}`;
        const first = await timedGet(url, 30_000);
        if (first.status !== 200) {
          ctx.problem('stats', 'roomwire', `${v.name}: GET ${ep} answered ${first.status || first.error}${first.status === 404 ? ' (moved to an internal listener the server did not announce?)' : ''}`);
        }
        await canary.mark(100);
        const cpu0 = cpuMicros(server.pid);
        const w0 = nowMicros();
        /** @type {number[]} */
        const ms = [];
        let bytes = 0;
        let failed = 0;
        /** @type {string} */
        let lastBody = '';
        for (let i = 0; i < o.statsRequests; i++) {
          const r = await timedGet(url, 30_000);
          if (r.status !== 200) failed++;
          ms.push(r.ms);
          bytes = r.bytes;
          lastBody = r.body;
        }
        const cpu = cpuMicros(server.pid) - cpu0;
        const wall = nowMicros() - w0;
        const win = await canary.mark(500);
        const n = o.statsRequests;
        /** @type {Record<string, unknown>} */
        const extra = {};
        if (ep === '/stats.json') {
          try {
            const doc = JSON.parse(lastBody);
            extra.roomEntries = Array.isArray(doc.rooms) ? doc.rooms.length : undefined;
            extra.roomNamesListed = Array.isArray(doc.rooms) ? doc.rooms.filter((/** @type {any} */ r) => typeof r?.name === 'string').length : 0;
            extra.topLevelKeys = Object.keys(doc);
          } catch {
            extra.parseFailed = true;
          }
        }
        endpoints[ep] = {
          url: url.replace(/^http:\/\/[^/]+/, ''),
          requests: n,
          failed,
          status: first.status,
          bytes,
          medianMs: median(ms),
          minMs: Math.min(...ms),
          maxMs: Math.max(...ms),
          cpuUsPerRequest: Math.max(0, cpu - idleRate * wall) / n,
          cpuUsPerRequestRaw: cpu / n,
          canaryMaxUs: win.maxUs,
          canaryP99Us: win.p99us,
          canaryLost: win.lost,
          ...extra,
        };
        ctx.log(`  ${v.name}: GET ${ep} ${median(ms).toFixed(2)} ms median (max ${Math.max(...ms).toFixed(1)}), ` +
          `server CPU ${(endpoints[ep].cpuUsPerRequest / 1000).toFixed(2)} ms per request, ${bytes} bytes; canary worst ${(win.maxUs / 1000).toFixed(1)} ms (idle ${(idle.maxUs / 1000).toFixed(1)} ms)`);
        if (failed) ctx.problem('stats', 'roomwire', `${v.name}: ${failed} of ${n} GET ${ep} failed`);
      }
      if (server.warnings.length) ctx.problem('stats', 'roomwire', `${v.name}: server wrote ${server.warnings.length} warning/error lines`, { lines: server.warnings.slice(0, 5) });
      variants.push({
        variant: v.name,
        env: v.env,
        rooms: wanted,
        roomsReported,
        connectionsReported: Number(h.connections),
        joinSeconds: f.ms / 1000,
        joinErrors: f.errors,
        serverRssAfterFill: rssAfterFill,
        serverRssAtEnd: rssBytes(server.pid),
        idle: { canaryMaxUs: idle.maxUs, canaryP99Us: idle.p99us, canaryP50Us: idle.p50us, serverCpuPct: idleRate * 100 },
        endpoints,
        sockets: sockstat(),
      });
    } finally {
      await canary?.close();
      await filler?.close();
      closeAgent();
      const code = await server.stop();
      if (code !== 0) ctx.problem('stats', 'roomwire', `${v.name}: server exited with ${code} on SIGTERM`, { output: server.lines.slice(-10) });
    }
  }
  return {
    params: { rooms: wanted, connections: conns, roomsPerConnection: perConn, requests: o.statsRequests, canaryMs: o.statsCanaryMs, targetMs: STATS_TARGET_MS },
    variants,
  };
}
