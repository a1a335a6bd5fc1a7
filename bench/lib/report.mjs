// @ts-check
/**
 * Tables of a results document (plain text for the terminal, Markdown for
 * docs/performance.md) and the check of issue 6's targets for roomwire.
 */
import { fmt, latency, markdownTable, median, minMax, ratio, table } from './stats.mjs';
import { hardeningSections, hardeningTargets } from './report-hardening.mjs';

/**
 * Median over repetitions of trial(a)[key] / trial(b)[key] at one window.
 * @param {any[]} trials
 * @param {string} a
 * @param {string} b
 * @param {number} window
 * @param {string} key
 */
function paired(trials, a, b, window, key) {
  const rs = trials
    .filter((t) => t.target === a && t.window === window)
    .map((t) => {
      const o = trials.find((x) => x.target === b && x.window === window && x.rep === t.rep);
      return o ? t[key] / o[key] : Number.NaN;
    });
  const [lo, hi] = minMax(rs);
  return { median: median(rs), min: lo, max: hi };
}

/** @param {{ median: number, min: number, max: number } | undefined} r */
function spread(r) {
  if (!r || !Number.isFinite(r.median)) return '-';
  return r.min === r.max ? ratio(r.median) : `${ratio(r.median)} (${r.min.toFixed(2)}-${r.max.toFixed(2)})`;
}

/**
 * @param {any} doc the results document written by run.mjs
 * @returns {{ plain: string, markdown: string, targets: any[] }}
 */
export function report(doc) {
  /** @type {{ title: string, header: string[], rows: string[][], left?: number }[]} */
  const sections = [];
  const r = doc.results;

  for (const key of ['fanout', 'scaleout']) {
    const f = r[key];
    if (!f || !f.summary) continue;
    const names = Object.keys(f.summary);
    const p = f.params;
    const base = p.baseline ?? 'ws-naive';
    const short = base === 'ws-naive' ? 'naive' : base;
    const what = key === 'fanout' ? 'Fan-out' : `Scale-out over Redis (${p.serverProcesses} server processes per target sharing a redis-server; client process p on server p; CPU of all of them)`;
    sections.push({
      title: `${what}, window 16 (${p.rooms} rooms x ${p.members} members, ${p.messagesW16} messages per sender, medians of ${p.reps} repetitions; x = paired ratio vs ${base}, median (min-max))`,
      header: ['target', 'deliveries/s', `x ${short}`, 'server CPU us/delivery', `x ${short}`, 'server CPU %', 'clients CPU %', 'other CPU %', 'p50', 'p99', `p99 x ${short}`],
      rows: names.map((n) => {
        const s = f.summary[n].w16;
        return [n, fmt(s.deliveriesPerSec), spread(s.ratioDeliveries), fmt(s.cpuUsPerDelivery, 3), spread(s.ratioCpuPerDelivery), fmt(s.serverCpuPct, 0), fmt(s.clientCpuPct, 0), fmt(s.otherCpuPct, 0), latency(s.p50us), latency(s.p99us), spread(s.ratioP99)];
      }),
    });
    sections.push({
      title: `${key === 'fanout' ? 'Fan-out' : 'Scale-out over Redis'}, window 1 (${p.messagesW1} messages per sender)`,
      header: ['target', 'deliveries/s', `x ${short}`, 'server CPU us/delivery', 'p50', 'p99', `p99 x ${short}`],
      rows: names.map((n) => {
        const s = f.summary[n].w1;
        return [n, fmt(s.deliveriesPerSec), spread(s.ratioDeliveries), fmt(s.cpuUsPerDelivery, 3), latency(s.p50us), latency(s.p99us), spread(s.ratioP99)];
      }),
    });
    if (key === 'fanout' && names.includes('ws-corked')) {
      // Issue 17: roomwire against the limit, server CPU per delivery first (the load
      // generator can saturate before the servers do: its CPU per client process says when).
      const limited = names.filter((n) => n.startsWith('roomwire'));
      const perClient = (/** @type {number} */ pct) => pct / (p.clientProcesses ?? 1);
      const cores = doc.meta?.machine?.nproc ?? 1;
      sections.push({
        title: `Fan-out: roomwire / limit (ws-corked: pre-framed, corked per event-loop turn, no checks); paired ratios, median (min-max); primary figure: server CPU per delivery. Load generator: CPU per client process in this target's window-16 trials (saturated at 90% or more: deliveries/s then measures the clients). Machine: server, clients and other processes together, share of all ${cores} CPUs in those trials (90% or more: every process waits for a CPU, so deliveries/s and p99 measure the machine as much as the server)`,
        header: ['target', 'CPU/delivery x limit (w16)', 'deliveries/s x limit (w16)', 'p99 x limit (w16)', 'CPU/delivery x limit (w1)', 'deliveries/s x limit (w1)', 'p99 x limit (w1)', 'load generator', 'machine (w16)', 'server writes per 100 deliveries (w16, w1)'],
        rows: [...limited, 'ws-corked'].map((n) => {
          const s = f.summary[n];
          const gen = perClient(s.w16.clientCpuPct);
          const busy = (s.w16.serverCpuPct + s.w16.clientCpuPct + s.w16.otherCpuPct) / cores;
          return [
            n,
            spread(s.w16.limitCpuPerDelivery),
            spread(s.w16.limitDeliveries),
            spread(s.w16.limitP99),
            spread(s.w1.limitCpuPerDelivery),
            spread(s.w1.limitDeliveries),
            spread(s.w1.limitP99),
            `${fmt(gen, 0)}% per process${gen >= 90 ? ' (saturated)' : ''}`,
            `${fmt(busy, 0)}% busy${busy >= 90 ? ' (saturated)' : ''}`,
            s.w16.writesPer100 === undefined ? '-' : `${fmt(s.w16.writesPer100, 1)}, ${fmt(s.w1.writesPer100, 1)}`,
          ];
        }),
      });
    }
    if (key === 'fanout' && typeof f.metricsScrapeCpuUs === 'number') {
      const us = f.metricsScrapeCpuUs;
      sections.push({
        title: `roomwire metrics: what GET /metrics costs the server (50 scrapes after the trials, ${fmt(p.rooms * p.members)} connections in ${p.rooms} rooms still open)`,
        header: ['server CPU per scrape', 'one scrape per 15 s', 'one scrape per second'],
        rows: [[`${fmt(us, 0)} us`, `${fmt((us / 15e6) * 100, 4)}% of one core`, `${fmt((us / 1e6) * 100, 3)}% of one core`]],
      });
    }
    sections.push({
      title: `${key === 'fanout' ? 'Fan-out' : 'Scale-out'} delivery check (every trial, both windows; the warm-up excluded)`,
      header: ['target', 'expected deliveries', 'lost', 'duplicates', 'reordered', 'unexpected closes'],
      rows: names.map((n) => {
        const s = f.summary[n];
        return [n, fmt(s.expected), fmt(s.lost), fmt(s.duplicates), fmt(s.reordered), fmt(s.closes)];
      }),
    });
  }

  const m = r.memory;
  if (m && m.summary) {
    sections.push({
      title: `Memory (${fmt(m.params.connections)} idle connections, no room; RSS after - RSS before, per connection; ${m.params.reps} repetition(s))`,
      header: ['target', 'KB per connection', 'x naive', 'RSS with the connections'],
      rows: Object.entries(m.summary).map(([n, s]) => [n, fmt(s.bytesPerConnection / 1024, 1), spread(s.ratio), `${fmt(s.rssAfter / 2 ** 20, 0)} MiB`]),
    });
  }

  const c = r.connrate;
  if (c && c.summary) {
    sections.push({
      title: `Connection rate (${c.params.inflight} handshakes in flight, ${c.params.seconds} s trials, medians of ${c.params.reps} repetitions)`,
      header: ['target', 'handshakes/s', 'x naive', 'server CPU us/handshake', 'server CPU %', 'clients CPU %', 'other CPU %', 'p50', 'p99', 'failed'],
      rows: Object.entries(c.summary).map(([n, s]) => [n, fmt(s.perSecond), spread(s.ratio), fmt(s.serverCpuUsPerHandshake, 0), fmt(s.serverCpuPct, 0), fmt(s.clientCpuPct, 0), fmt(s.otherCpuPct, 0), latency(s.p50us), latency(s.p99us), fmt(s.failed)]),
    });
  }

  const mb = r.member;
  if (mb && mb.summary) {
    const p = mb.params;
    sections.push({
      title: `Member: connect+join rate (each connection to /ws/{room} over ${fmt(p.rooms)} rooms, counted when its join is complete, then closed; ${p.inflight} in flight from ${p.clientProcesses} client processes, ${p.seconds} s trials in a fresh server after a 1 s warm-up, medians of ${p.reps} repetitions; x = paired ratio vs ws-naive, median (min-max)${p.maxOtherCpuPct === undefined ? '' : `; a trial with other processes above ${p.maxOtherCpuPct}% of a core was run again, up to ${p.retries} times`})`,
      header: ['target', 'connect+join/s', 'x naive', 'server CPU us/connection', 'x naive', 'server CPU %', 'clients CPU %', 'other CPU %', 'p50', 'p99', 'failed', 'retried', 'still disturbed'],
      rows: Object.entries(mb.summary).map(([n, s]) => [n, fmt(s.rate.perSecond), spread(s.rate.ratio), fmt(s.rate.serverCpuUsPerConnection, 0), spread(s.rate.ratioCpu), fmt(s.rate.serverCpuPct, 0), fmt(s.rate.clientCpuPct, 0), fmt(s.rate.otherCpuPct, 0), latency(s.rate.p50us), latency(s.rate.p99us), fmt(s.rate.failed), fmt(s.rate.retried ?? Number.NaN), s.rate.disturbed === undefined ? '-' : `${s.rate.disturbed} of ${p.reps}`]),
    });
    sections.push({
      title: `Member: memory per idle member (${fmt(p.connections)} idle connections, each joined to one of ${fmt(p.rooms)} rooms through /ws/{room}; RSS after - RSS before, per connection${p.heap ? '; heap used and external after two forced full GCs, per connection' : ''}; medians of ${p.reps} repetition(s), a fresh server each)`,
      header: ['target', 'KB RSS per member', 'x naive', 'KB heap per member', 'x naive', 'KB external per member', 'RSS with the members'],
      rows: Object.entries(mb.summary).map(([n, s]) => [n, fmt(s.memory.bytesPerConnection / 1024, 2), spread(s.memory.ratio), fmt(s.memory.heapPerConnection / 1024, 2), spread(s.memory.ratioHeap), fmt(s.memory.externalPerConnection / 1024, 2), `${fmt(s.memory.rssAfter / 2 ** 20, 0)} MiB`]),
    });
  }

  const sc = r.scale;
  if (sc && sc.trials) {
    sections.push({
      title: `Scale (idle connections with heartbeats: ping ${sc.params.heartbeat.pingPeriod / 1000} s, pong wait ${sc.params.heartbeat.pongWait / 1000} s, sweep ${sc.params.heartbeat.sweep / 1000} s; CPU over ${sc.params.windowSeconds} s; roomwire and ws-naive only)`,
      header: ['target', 'tried', 'held', 'heartbeat CPU % of one core', 'CPU us per ping+pong', 'RSS', 'capped by'],
      rows: sc.trials.map((/** @type {any} */ t) => [t.target, fmt(t.wanted), fmt(Math.min(t.heldAtWindowEnd, t.clientSideOpenAtEnd)), fmt(t.heartbeatCpuPct, 2), fmt(t.cpuUsPerPing, 1), `${fmt(t.rssBytes / 2 ** 20, 0)} MiB`, t.cappedBy ? `open-file limit ${t.serverNofile}` : '-']),
    });
  }

  sections.push(...hardeningSections(r));

  const targets = checkTargets(doc);
  if (targets.length) {
    sections.push({
      title: "Issue 6 targets for roomwire (ratios measured in this run)",
      header: ['target', 'required', 'measured', 'verdict'],
      rows: targets.map((t) => [t.what, t.required, t.measured, t.verdict]),
      left: 4,
    });
  }
  const member = memberTargets(r);
  if (member.length) {
    sections.push({
      title: 'Issue 13 targets for roomwire: a cheaper member (member scenario, ratios measured in this run)',
      header: ['target', 'required', 'measured', 'verdict'],
      rows: member.map((t) => [t.what, t.required, t.measured, t.verdict]),
      left: 4,
    });
  }
  const hardening = hardeningTargets(r);
  if (hardening.length) {
    sections.push({
      title: 'Hardening targets for roomwire (measured in this run)',
      header: ['target', 'required', 'measured', 'verdict'],
      rows: hardening.map((t) => [t.what, t.required, t.measured, t.verdict]),
      left: 4,
    });
  }

  const problems = doc.problems ?? [];
  const plain = [
    ...sections.map((s) => `${s.title}\n${table(s.header, s.rows)}`),
    problems.length ? `Problems (${problems.length}):\n${problems.map((/** @type {any} */ p) => `  [${p.scenario}/${p.target}] ${p.what}`).join('\n')}` : 'Problems: none',
  ].join('\n\n');
  const markdown = sections.map((s) => `**${s.title}**\n\n${markdownTable(s.header, s.rows, s.left)}`).join('\n\n');
  return { plain, markdown, targets: [...targets, ...member, ...hardening] };
}

/**
 * Issue 13 item 5's targets (the member scenario), each with the measured value and
 * whether this run meets it.
 * @param {any} r the results
 */
function memberTargets(r) {
  /** @type {{ what: string, required: string, measured: string, verdict: string }[]} */
  const out = [];
  const mb = r.member;
  const rw = mb?.summary?.roomwire;
  const base = mb?.summary?.['ws-naive'];
  if (!rw || !base) return out;
  const verdict = (/** @type {boolean} */ ok, /** @type {number} */ x) => (!Number.isFinite(x) ? 'not measured' : ok ? 'met' : 'MISSED');
  out.push({
    what: 'memory per idle member (one room joined)',
    required: '<= 1.05x ws-naive',
    measured: `${spread(rw.memory.ratio)} naive (${fmt(rw.memory.bytesPerConnection / 1024, 2)} KB vs ${fmt(base.memory.bytesPerConnection / 1024, 2)} KB RSS${Number.isFinite(rw.memory.heapPerConnection) ? `; heap ${fmt(rw.memory.heapPerConnection / 1024, 2)} KB vs ${fmt(base.memory.heapPerConnection / 1024, 2)} KB` : ''})`,
    verdict: verdict(rw.memory.ratio.median <= 1.05, rw.memory.ratio.median),
  });
  out.push({
    what: 'connect+join rate',
    required: '>= 0.85x ws-naive',
    measured: `${spread(rw.rate.ratio)} naive (${fmt(rw.rate.perSecond)}/s vs ${fmt(base.rate.perSecond)}/s; server CPU ${fmt(rw.rate.serverCpuUsPerConnection, 0)} vs ${fmt(base.rate.serverCpuUsPerConnection, 0)} us per connection)`,
    verdict: verdict(rw.rate.ratio.median >= 0.85, rw.rate.ratio.median),
  });
  return out;
}

/**
 * Issue 6's targets, each with the measured value and whether this run meets it.
 * @param {any} doc
 */
function checkTargets(doc) {
  const r = doc.results;
  /** @type {{ what: string, required: string, measured: string, verdict: string }[]} */
  const out = [];
  const verdict = (/** @type {boolean} */ ok, /** @type {number} */ x) => (!Number.isFinite(x) ? 'not measured' : ok ? 'met' : 'MISSED');
  const f = r.fanout;
  if (f && f.trials && f.summary?.roomwire) {
    const rw = f.summary.roomwire;
    if (f.summary['ws-preframed']) {
      const d = paired(f.trials, 'roomwire', 'ws-preframed', 16, 'deliveriesPerSec');
      out.push({
        what: 'fan-out deliveries/s (window 16)',
        required: '>= ws-preframed (about 1.25x naive)',
        measured: `${spread(d)} ws-preframed; ${spread(rw.w16.ratioDeliveries)} naive`,
        verdict: verdict(d.median >= 1, d.median),
      });
      const cpu = paired(f.trials, 'roomwire', 'ws-preframed', 16, 'cpuUsPerDelivery');
      out.push({
        what: 'fan-out server CPU per delivery',
        required: '<= ws-preframed',
        measured: `${spread(cpu)} ws-preframed (${fmt(rw.w16.cpuUsPerDelivery, 3)} vs ${fmt(f.summary['ws-preframed'].w16.cpuUsPerDelivery, 3)} us)`,
        verdict: verdict(cpu.median <= 1, cpu.median),
      });
    }
    if (f.summary.socketio) {
      const d = paired(f.trials, 'roomwire', 'socketio', 16, 'deliveriesPerSec');
      out.push({ what: 'fan-out deliveries/s vs Socket.IO', required: 'about 1.3x', measured: `${spread(d)} socketio`, verdict: verdict(d.median >= 1.3, d.median) });
    }
    for (const w of /** @type {const} */ ([1, 16])) {
      const p = w === 1 ? rw.w1.ratioP99 : rw.w16.ratioP99;
      const abs = w === 1 ? `${latency(rw.w1.p99us)} vs ${latency(f.summary['ws-naive']?.w1.p99us)}` : `${latency(rw.w16.p99us)} vs ${latency(f.summary['ws-naive']?.w16.p99us)}`;
      out.push({ what: `p99 delivery latency, window ${w}`, required: '<= ws-naive', measured: `${spread(p)} naive (${abs})`, verdict: verdict(p.median <= 1, p.median) });
    }
    const bad = rw.lost + rw.duplicates + rw.reordered;
    out.push({ what: 'fan-out deliveries complete', required: 'no loss, duplicate or reordering', measured: `lost ${rw.lost}, duplicates ${rw.duplicates}, reordered ${rw.reordered} of ${fmt(rw.expected)}`, verdict: bad === 0 ? 'met' : 'MISSED' });
  }
  const m = r.memory;
  if (m && m.summary?.roomwire) {
    const s = m.summary.roomwire;
    const sio = m.summary.socketio;
    out.push({
      what: 'memory per idle connection',
      required: '<= 1.1x ws-naive',
      measured: `${spread(s.ratio)} naive (${fmt(s.bytesPerConnection / 1024, 1)} KB vs ${fmt(m.summary['ws-naive']?.bytesPerConnection / 1024, 1)} KB${sio ? `; Socket.IO ${fmt(sio.bytesPerConnection / 1024, 1)} KB` : ''})`,
      verdict: verdict(s.ratio.median <= 1.1, s.ratio.median),
    });
  }
  const c = r.connrate;
  if (c && c.summary) {
    for (const v of ['roomwire', 'roomwire+jwt']) {
      const s = c.summary[v];
      if (!s) continue;
      out.push({
        what: `connection rate${v === 'roomwire' ? ' (anonymous)' : ' (HS256 token)'}`,
        required: '>= 0.9x ws-naive',
        measured: `${spread(s.ratio)} naive (${fmt(s.perSecond)}/s vs ${fmt(c.summary['ws-naive']?.perSecond)}/s)`,
        verdict: verdict(s.ratio.median >= 0.9, s.ratio.median),
      });
    }
  }
  const sc = r.scale;
  const t = sc?.trials?.find((/** @type {any} */ x) => x.target === 'roomwire');
  if (t) {
    const held = Math.min(t.heldAtWindowEnd, t.clientSideOpenAtEnd);
    out.push({
      what: 'idle connections held with heartbeats',
      required: '50,000',
      measured: `${fmt(held)} of ${fmt(t.wanted)} tried${t.cappedBy ? ` (capped by ${t.cappedBy})` : ''}`,
      verdict: held >= 50_000 ? 'met' : t.cappedBy && held >= t.wanted ? 'not measurable here' : 'MISSED',
    });
    out.push({
      what: 'heartbeat CPU at that size',
      required: '< 5% of one core (at 50,000)',
      measured: `${fmt(t.heartbeatCpuPct, 2)}% at ${fmt(held)}`,
      verdict: t.heartbeatCpuPct < 5 ? (held >= 50_000 ? 'met' : `met at ${fmt(held)} only`) : 'MISSED',
    });
  }
  return out;
}
