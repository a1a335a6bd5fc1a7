// @ts-check
/**
 * Tables of the hardening scenarios (stats, frames, soak, attack) and the check of the
 * hardening issue's targets; used by report.mjs.
 */
import { fmt, latency } from './stats.mjs';

/** @typedef {{ title: string, header: string[], rows: string[][], left?: number }} Section */

/** @param {number} bytes */
const mib = (bytes) => (Number.isFinite(bytes) ? `${fmt(bytes / 2 ** 20, 0)} MiB` : '-');
/** @param {number} ms */
const millis = (ms) => (Number.isFinite(ms) ? `${fmt(ms, ms < 10 ? 2 : 1)} ms` : '-');

/**
 * @param {any} r doc.results
 * @returns {Section[]}
 */
export function hardeningSections(r) {
  /** @type {Section[]} */
  const out = [];
  const s = r.stats;
  if (s && s.variants) {
    const p = s.params;
    out.push({
      title: `Stats at scale: the rooms (${fmt(p.rooms)} rooms, one member each, joined by ${p.connections} connections with join frames)`,
      header: ['variant', 'rooms joined', '/healthz rooms', 'join time', 'server RSS with the rooms', 'after the requests', 'canary idle p99', 'canary idle max'],
      rows: s.variants.map((/** @type {any} */ v) => [v.variant, fmt(v.rooms), fmt(v.roomsReported), `${fmt(v.joinSeconds, 1)} s`, mib(v.serverRssAfterFill), mib(v.serverRssAtEnd ?? v.serverRssBytes), latency(v.idle.canaryP99Us), latency(v.idle.canaryMaxUs)]),
    });
    /** @type {string[][]} */
    const rows = [];
    for (const v of s.variants) {
      for (const [ep, e] of Object.entries(v.endpoints)) {
        const target = ep === '/metrics' || ep === '/stats.json' ? (e.medianMs < p.targetMs ? 'met' : 'MISSED') : '';
        const names = ep === '/stats.json' ? `${fmt(e.roomNamesListed ?? 0)} names` : '';
        rows.push([v.variant, ep, String(e.status), `${fmt(e.bytes)} B`, names, millis(e.medianMs), millis(e.maxMs), millis(e.cpuUsPerRequest / 1000), latency(e.canaryMaxUs), target]);
      }
    }
    out.push({
      title: `Stats at scale: the endpoints (${p.requests} requests each, back to back, after one unrecorded; latency to the end of the body; server CPU per request net of its idle rate; canary: app-level ping every ${p.canaryMs} ms, worst round trip during the requests)`,
      header: ['variant', 'endpoint', 'status', 'body', '/stats.json rooms', 'latency median', 'max', 'server CPU per request', 'canary worst', `< ${p.targetMs} ms`],
      rows,
      left: 2,
    });
  }

  const f = r.frames;
  if (f && f.micro) {
    out.push({
      title: `Costly frames: JSON.parse vs checkFrame (JSON.parse + the shape check), per call, median of ${f.params.batches} batches of ~${f.params.batchMs} ms (shape check = checkFrame - JSON.parse; min-max over the paired batches)`,
      header: ['frame', 'bytes', 'JSON.parse', 'checkFrame', 'shape check', 'shape / parse', 'min-max', `<= ${f.params.targetRatio}`],
      rows: f.micro.map((/** @type {any} */ m) => [
        m.name,
        fmt(m.bytes),
        `${fmt(m.parseUs, m.parseUs < 10 ? 2 : 0)} us`,
        `${fmt(m.checkUs, m.checkUs < 10 ? 2 : 0)} us`,
        `${fmt(m.shapeUs, Math.abs(m.shapeUs) < 10 ? 2 : 0)} us`,
        fmt(m.ratio, 2),
        `${fmt(m.ratioMin, 2)} - ${fmt(m.ratioMax, 2)}`,
        m.ratio <= f.params.targetRatio ? 'met' : 'MISSED',
      ]),
    });
  }
  if (f && f.server?.summary) {
    const plain = f.server.summary['plain-64k']?.serverCpuUsPerFrame;
    out.push({
      title: `Costly frames on a real server (one sender, a room of 2, ${f.params.window} unechoed at most, ${f.params.serverSeconds} s per kind x ${f.params.serverReps}, medians; each frame checked and delivered to both members)`,
      header: ['frame', 'frames/s', 'server CPU per frame', 'x plain', 'server CPU %'],
      rows: Object.entries(f.server.summary).map(([name, x]) => [name, fmt(x.framesPerSec), `${fmt(x.serverCpuUsPerFrame / 1000, 3)} ms`, `${fmt(x.serverCpuUsPerFrame / plain, 1)}x`, fmt(x.serverCpuPct, 0)]),
    });
  }

  const k = r.soak;
  if (k && k.checkpoints) {
    const warm = k.checkpoints.find((/** @type {any} */ c) => c.label === 'warm-up');
    const end = k.checkpoints[k.checkpoints.length - 1];
    out.push({
      title: `Soak (connect /ws/<room>, join + user_list, message + echo, close; ${k.params.inflight} in flight over ${k.params.clientProcesses} processes, ${k.params.rooms} rooms, ${k.params.addressesPerProcess} source addresses per process)`,
      header: ['cycles', 'failed', 'cycles/s', 'server CPU per cycle', 'cycle p50', 'cycle p99', 'heap after GC, warm-up', 'at the end', 'growth', `<= ${k.params.tolerance * 100}%`],
      rows: [[fmt(k.completed + k.failed), fmt(k.failed), fmt(k.cyclesPerSec), `${fmt(k.serverCpuUsPerCycle, 0)} us`, latency(k.cycleP50us), latency(k.cycleP99us), `${fmt(warm?.heapUsed / 2 ** 20, 2)} MiB`, `${fmt(end?.heapUsed / 2 ** 20, 2)} MiB`, `${fmt(k.heapGrowth * 100, 1)}%`, k.pass ? 'met' : 'MISSED']],
    });
    out.push({
      title: 'Soak checkpoints (the load paused; the server has no connection and no room left; two forced full GCs)',
      header: ['checkpoint', 'cycles', 'heap used', 'heap total', 'external', 'RSS', 'server connections / rooms', 'TIME_WAIT sockets'],
      rows: k.checkpoints.map((/** @type {any} */ c) => [c.label, fmt(c.cycles), `${fmt(c.heapUsed / 2 ** 20, 2)} MiB`, mib(c.heapTotal), `${fmt(c.external / 2 ** 20, 1)} MiB`, mib(c.rss), `${c.serverConnections} / ${c.serverRooms}`, fmt(c.timeWait)]),
    });
  }

  const a = r.attack;
  if (a && a.phases) {
    out.push({
      title: `Canary latency under attack (two canaries from 127.0.0.2, a probe every ${a.params.probeMs} ms: own message echo and app-level ping; attacker from 127.0.0.1; ${a.params.seconds} s per phase; WEBSOCKET_MESSAGE_RATE=20/s,40, WEBSOCKET_MAX_MESSAGE_SIZE=70000)`,
      header: ['phase', 'canary p50', 'p99', 'max', 'probes lost', 'deliveries lost', 'server CPU %', 'server RSS peak', '/healthz near the end', 'connections', 'cut off by the server', 'the attack'],
      rows: a.phases.map((/** @type {any} */ p) => [
        p.phase,
        latency(p.canary.p50us),
        latency(p.canary.p99us),
        latency(p.canary.maxUs),
        `${fmt(p.canary.lost)} / ${fmt(p.canary.probes)}`,
        `${fmt(p.canary.deliveriesLost)} / ${fmt(p.canary.deliveriesExpected)}`,
        fmt(p.serverCpuPct, 0),
        mib(p.serverRssPeak),
        p.healthzNearEnd === undefined ? '-' : p.healthzNearEnd.status === 200 ? millis(p.healthzNearEnd.ms) : `failed (${p.healthzNearEnd.error ?? p.healthzNearEnd.status})`,
        `${fmt(p.serverConnections.before)} -> ${fmt(p.serverConnections.nearEnd)}`,
        cutOff(p),
        attackSummary(p),
      ]),
    });
  }
  return out;
}

/**
 * Whether the server ended the attack's connections, from the attacker's side (and,
 * for the members that never read, the server's connection count).
 * @param {any} p
 */
function cutOff(p) {
  const a = p.attacker ?? {};
  if (p.phase.startsWith('baseline')) return '-';
  if (p.phase === 'slowloris') return a.closedByServer ? `${fmt(a.closedByServer)} closed, first after ${fmt(a.firstCloseMs / 1000, 1)} s` : 'no';
  if (p.phase === 'slow-readers') {
    if (!Number.isFinite(p.serverConnections.nearEnd)) return 'unknown (no /healthz answer)';
    const lost = p.serverConnections.before + a.readers + a.senders - p.serverConnections.nearEnd;
    const closes = (a.closes ?? []).length;
    return lost > 0 || closes ? `${fmt(Math.max(0, lost))} of ${a.readers + a.senders} gone near the end${closes ? `, ${closes} sender(s) closed` : ''}` : 'no';
  }
  const closes = a.closes ?? [];
  const probe = p.phase === 'ping-flood' && a.burstProbeCutAfterMs >= 0 ? ` (a 1,000-ping burst: cut after ${a.burstProbeCutAfterMs} ms)` : '';
  if (!closes.length) return `no${probe}`;
  return `${closes.length} closed (${closes.map((/** @type {any} */ c) => `${c.code} at ${fmt(c.atMs / 1000, 1)} s`).slice(0, 3).join(', ')})${probe}`;
}

/**
 * One line on what the attacker did.
 * @param {any} p
 */
function attackSummary(p) {
  const a = p.attacker ?? {};
  switch (p.phase) {
    case 'flood':
      return `${fmt(a.sent)} frames (${fmt(a.framesPerSec)}/s), ${fmt(a.errors?.rate_limited ?? 0)} dropped`;
    case 'within-rate':
      return `${fmt(a.sent)} frames (${fmt(a.framesPerSec)}/s), ${fmt(a.answerTypes?.message ?? 0)} echoed`;
    case 'ping-flood':
      return `${fmt(a.pingsSent)} pings (${fmt(a.pingsPerSec)}/s), ${fmt(a.pongsReceived)} pongs`;
    case 'slowloris': {
      const x = p.extra ?? {};
      return `${fmt(a.opened)} of ${fmt(a.wanted)} held (${fmt(a.heldAtEnd)} at the end); /healthz ${fmt(x.healthzOk)}/${fmt(x.healthzChecks)} answered, max ${millis(x.healthzMaxMs)}`;
    }
    case 'slow-readers':
      return `${fmt(a.sent)} x 65 KB to ${fmt(a.readers)} non-readers (${fmt(a.bytesPerReader / 2 ** 20, 1)} MiB each)`;
    case 'stats-loop':
      return `${fmt(a.requests)} requests, median ${millis(a.medianMs)}, max ${millis(a.maxMs)}`;
    case 'baseline-rooms':
      return `idle, ${fmt(a.rooms)} rooms`;
    default:
      return 'idle';
  }
}

/**
 * The hardening issue's targets, each with the measured value and a verdict.
 * @param {any} r doc.results
 */
export function hardeningTargets(r) {
  /** @type {{ what: string, required: string, measured: string, verdict: string }[]} */
  const out = [];
  const s = r.stats;
  if (s && s.variants) {
    for (const ep of ['/metrics', '/stats.json']) {
      const ms = s.variants.map((/** @type {any} */ v) => v.endpoints[ep]?.medianMs).filter((/** @type {number} */ x) => Number.isFinite(x));
      if (!ms.length) continue;
      const worst = Math.max(...ms);
      out.push({
        what: `GET ${ep} at ${fmt(s.params.rooms)} rooms`,
        required: `< ${s.params.targetMs} ms`,
        measured: s.variants.map((/** @type {any} */ v) => `${millis(v.endpoints[ep]?.medianMs)} median (${v.variant})`).join('; '),
        verdict: worst < s.params.targetMs ? 'met' : 'MISSED',
      });
    }
  }
  const f = r.frames;
  if (f && f.micro) {
    const worst = f.micro.reduce((/** @type {any} */ w, /** @type {any} */ m) => (w === undefined || m.ratio > w.ratio ? m : w), undefined);
    out.push({
      what: 'shape check cost vs JSON.parse, same frame',
      required: `<= ${f.params.targetRatio}x`,
      measured: `worst ${fmt(worst.ratio, 2)}x (${worst.name}); ${f.micro.filter((/** @type {any} */ m) => m.ratio > f.params.targetRatio).map((/** @type {any} */ m) => m.name).join(', ') || 'none'} over`,
      verdict: worst.ratio <= f.params.targetRatio ? 'met' : 'MISSED',
    });
  }
  const k = r.soak;
  if (k && k.checkpoints) {
    out.push({
      what: `heap after GC, ${fmt(k.completed + k.failed)} cycles`,
      required: `within ${k.params.tolerance * 100}% of the warm-up`,
      measured: `${fmt(k.heapGrowth * 100, 1)}%; ${fmt(k.failed)} cycles failed`,
      verdict: k.pass ? 'met' : 'MISSED',
    });
  }
  return out;
}
