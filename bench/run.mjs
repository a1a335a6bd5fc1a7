// @ts-check
/**
 * roomwire benchmark (issue 6): roomwire's standalone server against a hand-written
 * `ws` room server (naive and pre-framed) and Socket.IO 4, each in its own process on
 * loopback, loaded by separate client processes (fanout, memory, connrate, scale, and
 * issue 13's member: connect+join rate and memory per idle member through /ws/{room},
 * 1,000 rooms); plus the hardening scenarios, roomwire
 * alone: stats (the observability endpoints at 100,000 rooms), frames (what a costly
 * frame costs), soak (memory after 200,000 short connections) and attack (a canary's
 * latency under six attacks). Prints tables and writes bench/results/latest.json.
 * See docs/performance.md.
 *
 *   npm run bench                       # build, then every scenario with the defaults
 *   node bench/run.mjs --reps=12 --scenarios=fanout,memory
 *   node bench/run.mjs --scenarios=member --member-reps=5
 *   BENCH_SCALE_MAX=50000 BENCH_SCALE_WINDOW=30 node bench/run.mjs --scenarios=scale
 *   node bench/run.mjs --scenarios=scaleout   # roomwire over Redis vs Socket.IO's Redis adapter
 *   node bench/run.mjs --scenarios=stats,frames,soak,attack   # the hardening scenarios (roomwire only)
 *
 * Every option is an environment variable BENCH_<NAME> or a flag --<name>=<value>
 * (flags win); `--help` lists them.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, createHmac } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killAllNow, liveChildren, stopAll } from './lib/proc.mjs';
import { PROFILE, ROOMWIRE_OVERRIDES, ROOT, TARGETS, roomwireBefore } from './lib/targets.mjs';
import { renderProfiles } from './lib/flame.mjs';
import { report } from './lib/report.mjs';
import { runFanout, runScaleout } from './scenarios/fanout.mjs';
import { runMemory } from './scenarios/memory.mjs';
import { runConnrate } from './scenarios/connrate.mjs';
import { runMember } from './scenarios/member.mjs';
import { runScale } from './scenarios/scale.mjs';
import { runStats } from './scenarios/stats.mjs';
import { runFrames } from './scenarios/frames.mjs';
import { runSoak } from './scenarios/soak.mjs';
import { runAttack } from './scenarios/attack.mjs';

const SCENARIOS = ['fanout', 'memory', 'connrate', 'member', 'scale', 'scaleout', 'stats', 'frames', 'soak', 'attack'];

/** name, default, description; BENCH_<NAME in upper snake case> or --<name>. */
const OPTIONS = /** @type {const} */ ([
  ['scenarios', 'fanout,memory,connrate,member,scale,stats,frames,soak,attack', 'comma-separated scenarios to run (also: scaleout, two processes over Redis, roomwire and socketio)'],
  ['targets', 'roomwire,ws-naive,ws-preframed,ws-corked,socketio', 'comma-separated targets (ws-naive, the baseline, is always included; ws-corked is the limit every fan-out table compares roomwire with)'],
  ['reps', 8, 'fan-out repetitions (each: every target at window 16 and at window 1)'],
  ['rooms', 10, 'fan-out rooms'],
  ['members', 100, 'fan-out members per room (the sender included)'],
  ['messages', 1000, 'fan-out messages per sender at window 16'],
  ['messages-w1', 160, 'fan-out messages per sender at window 1'],
  ['warmup-messages', 200, 'fan-out warm-up messages per sender (not recorded)'],
  ['content-bytes', 64, 'fan-out message content length'],
  ['fanout-clients', 2, 'fan-out client processes per target'],
  ['memory-conns', 10000, 'memory: idle connections'],
  ['memory-reps', 1, 'memory: repetitions (alternating order)'],
  ['memory-settle', 2, 'memory: seconds to settle before reading RSS'],
  ['connrate-seconds', 1.5, 'connection rate: seconds per trial'],
  ['connrate-reps', 4, 'connection rate: repetitions (alternating order)'],
  ['connrate-inflight', 50, 'connection rate: handshakes in flight (total over client processes)'],
  ['connrate-clients', 2, 'connection rate: client processes'],
  ['member-reps', 3, 'member: repetitions (alternating order; each: every target\'s rate and memory, each in a fresh server)'],
  ['member-rooms', 1000, 'member: rooms the connections join through /ws/{room} (connection i: room i % rooms)'],
  ['member-seconds', 3, 'member: seconds per connect+join rate trial (after a 1 s warm-up)'],
  ['member-inflight', 50, 'member: connect+joins in flight (total over client processes)'],
  ['member-clients', 2, 'member: connect+join client processes'],
  ['member-max-other', 25, 'member: a connect+join trial during which other processes used more than this % of one core is run again'],
  ['member-retries', 3, 'member: at most this many extra connect+join trials per target and repetition (the least disturbed is kept)'],
  ['member-conns', 10000, 'member: idle members held for the memory reading (server and clients each need a descriptor per member)'],
  ['member-settle', 2, 'member: seconds to settle before reading RSS'],
  ['member-heap', 'on', 'member: on = run every server with --expose-gc and the heap-probe preload and read its heap after GC; off = RSS only'],
  ['scale-max', 50000, 'scale: most idle connections to try'],
  ['scale-window', 15, 'scale: seconds of the idle window the heartbeat CPU is measured over (a multiple of the ping period)'],
  ['scale-ping-period', 5, 'scale: seconds between pings (roomwire WEBSOCKET_PING_PERIOD; its default is 54)'],
  ['scale-pong-wait', 10, 'scale: seconds a ping may stay unanswered (WEBSOCKET_PONG_WAIT; default 60)'],
  ['scale-sweep', 1, 'scale: seconds between heartbeat sweeps (WEBSOCKET_HEARTBEAT_INTERVAL; default 30)'],
  ['scale-reps', 1, 'scale: repetitions (alternating order)'],
  ['stats-rooms', 100000, 'stats: rooms created (one member each) before the endpoints are timed'],
  ['stats-conns', 100, 'stats: connections the rooms are joined from (rooms / conns each)'],
  ['stats-requests', 20, 'stats: timed requests per endpoint (after one unrecorded)'],
  ['stats-canary-ms', 10, 'stats: milliseconds between the canary\'s app-level pings'],
  ['frames-batches', 21, 'frames: timed batches per frame and function (the median is reported)'],
  ['frames-batch-ms', 20, 'frames: milliseconds per batch'],
  ['frames-server-seconds', 3, 'frames: seconds each frame kind is sent to a real server, per repetition'],
  ['frames-server-reps', 2, 'frames: repetitions of the real-server part (alternating kinds)'],
  ['soak-cycles', 200000, 'soak: connect/join/message/close cycles'],
  ['soak-warmup', 10000, 'soak: cycles before the warm-up heap reading'],
  ['soak-checkpoints', 4, 'soak: heap readings after the warm-up (the last at the end)'],
  ['soak-inflight', 128, 'soak: cycles in flight (in total over the client processes)'],
  ['soak-clients', 2, 'soak: client processes'],
  ['soak-rooms', 300, 'soak: room names the cycles rotate over'],
  ['soak-addresses', 8, 'soak: loopback source addresses per client process'],
  ['attack-phases', 'baseline,flood,within-rate,ping-flood,slowloris,slow-readers,stats-loop', 'attack: phases to run, in order (a flood, b within-rate, c ping-flood, d slowloris, e slow-readers, f stats-loop)'],
  ['attack-seconds', 6, 'attack: seconds per phase'],
  ['attack-probe-ms', 25, 'attack: milliseconds between canary probes (two canaries, each within 20/s)'],
  ['attack-flood-burst', 19, 'attack (a): over-rate frames sent between two accepted ones (two bursts stay under the 40-drop close)'],
  ['attack-within-conns', 6, 'attack (b): connections sending the 8,000-key frame within the rate'],
  ['attack-within-rate', 19, 'attack (b, e): frames per second per sending connection'],
  ['attack-slowloris', 3200, 'attack (d): unfinished upgrade requests held'],
  ['attack-readers', 20, 'attack (e): members that never read'],
  ['attack-reader-senders', 1, 'attack (e): connections flooding their room within the rate'],
  ['attack-rooms', 100000, 'attack (f): rooms that exist while /stats.json is requested'],
  ['attack-stats-loops', 4, 'attack (f): loops requesting /stats.json back to back'],
  ['scaleout-targets', 'roomwire,roomwire-before,roomwire-ioredis,roomwire-cluster,roomwire-history,socketio,socketio-recovery', 'scaleout: the targets, each as two processes over Redis (roomwire-before only with --roomwire-before)'],
  ['roomwire-before', '', 'the root of another roomwire checkout (built with npx tsup): its standalone server joins the targets as roomwire-before, for before/after ratios in one run'],
  ['roomwire-env', '', 'extra roomwire environment, KEY=VALUE pairs separated by ; (overrides the benchmark settings)'],
  ['profile', '', 'a directory: run every server with node --cpu-prof, then write a flame graph per target (<dir>/<target>.svg) and print where its busy time went'],
  ['profile-interval', 250, 'with --profile: microseconds between CPU samples'],
  ['out', 'bench/results/latest.json', 'where to write the JSON results'],
]);

/**
 * @typedef {object} Options
 * @property {string[]} scenarios
 * @property {string[]} targets
 * @property {number} reps
 * @property {number} rooms
 * @property {number} members
 * @property {number} messages
 * @property {number} messagesW1
 * @property {number} warmupMessages
 * @property {number} contentBytes
 * @property {number} fanoutClients
 * @property {number} memoryConns
 * @property {number} memoryReps
 * @property {number} memorySettle
 * @property {number} connrateSeconds
 * @property {number} connrateReps
 * @property {number} connrateInflight
 * @property {number} connrateClients
 * @property {number} memberReps
 * @property {number} memberRooms
 * @property {number} memberSeconds
 * @property {number} memberInflight
 * @property {number} memberClients
 * @property {number} memberMaxOther
 * @property {number} memberRetries
 * @property {number} memberConns
 * @property {number} memberSettle
 * @property {string} memberHeap
 * @property {number} scaleMax
 * @property {number} scaleWindow
 * @property {number} scalePingPeriod
 * @property {number} scalePongWait
 * @property {number} scaleSweep
 * @property {number} scaleReps
 * @property {number} statsRooms
 * @property {number} statsConns
 * @property {number} statsRequests
 * @property {number} statsCanaryMs
 * @property {number} framesBatches
 * @property {number} framesBatchMs
 * @property {number} framesServerSeconds
 * @property {number} framesServerReps
 * @property {number} soakCycles
 * @property {number} soakWarmup
 * @property {number} soakCheckpoints
 * @property {number} soakInflight
 * @property {number} soakClients
 * @property {number} soakRooms
 * @property {number} soakAddresses
 * @property {string} attackPhases
 * @property {number} attackSeconds
 * @property {number} attackProbeMs
 * @property {number} attackFloodBurst
 * @property {number} attackWithinConns
 * @property {number} attackWithinRate
 * @property {number} attackSlowloris
 * @property {number} attackReaders
 * @property {number} attackReaderSenders
 * @property {number} attackRooms
 * @property {number} attackStatsLoops
 * @property {string} roomwireEnv
 * @property {string} scaleoutTargets
 * @property {string} roomwireBefore
 * @property {string} profile
 * @property {number} profileInterval
 * @property {string} out
 */

/**
 * @typedef {object} Context
 * @property {Options} options
 * @property {import('./lib/targets.mjs').Target[]} targets
 * @property {import('./lib/targets.mjs').Target[]} allTargets every target, whatever --targets says
 * @property {string} jwtSecret
 * @property {string[]} tokens HS256 tokens signed with jwtSecret
 * @property {(line: string) => void} log
 * @property {(scenario: string, target: string, what: string, detail?: unknown) => void} problem
 */

function parseOptions() {
  /** @type {Record<string, string>} */
  const flags = {};
  for (const arg of process.argv.slice(2)) {
    if (arg === '--help' || arg === '-h') {
      console.log('node bench/run.mjs [--name=value ...]; every option is also BENCH_<NAME>:\n');
      for (const [name, def, what] of OPTIONS) console.log(`  --${name.padEnd(22)} BENCH_${name.toUpperCase().replace(/-/g, '_').padEnd(24)} ${what} (default ${def})`);
      process.exit(0);
    }
    const m = /^--([a-z0-9-]+)=(.*)$/.exec(arg);
    if (!m) throw new Error(`unknown argument ${arg} (try --help)`);
    flags[m[1]] = m[2];
  }
  /** @type {Record<string, unknown>} */
  const o = {};
  for (const [name, def] of OPTIONS) {
    const envName = `BENCH_${name.toUpperCase().replace(/-/g, '_')}`;
    const raw = flags[name] ?? process.env[envName];
    const key = name.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
    if (typeof def === 'number') {
      const v = raw === undefined || raw === '' ? def : Number(raw);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} / ${envName} must be a positive number, not "${raw}"`);
      o[key] = v;
    } else {
      o[key] = raw === undefined || raw === '' ? def : raw;
    }
    delete flags[name];
  }
  const unknown = Object.keys(flags);
  if (unknown.length) throw new Error(`unknown option --${unknown[0]} (try --help)`);
  o.scenarios = String(o.scenarios).split(',').map((s) => s.trim()).filter(Boolean);
  o.targets = String(o.targets).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of /** @type {string[]} */ (o.scenarios)) {
    if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s} (one of ${SCENARIOS.join(', ')})`);
  }
  for (const t of /** @type {string[]} */ (o.targets)) {
    if (!TARGETS.some((x) => x.name === t)) throw new Error(`unknown target ${t}`);
  }
  return /** @type {Options} */ (/** @type {unknown} */ (o));
}

/**
 * An HS256 JWT, signed here with node:crypto.
 * @param {Record<string, unknown>} claims
 * @param {string} secret
 */
function signHs256(claims, secret) {
  const enc = (/** @type {unknown} */ v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

function machine() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  let osName = `${os.type()} ${os.release()}`;
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (pretty) osName = `${pretty[1]} (kernel ${os.release()})`;
  } catch {
    // keep the kernel name
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    os: osName,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
  };
}

/** The commit roomwire was built from, and whether src/ had uncommitted changes. */
function revision() {
  const git = (/** @type {string[]} */ args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', timeout: 10_000 }).trim();
  try {
    const commit = git(['rev-parse', '--short', 'HEAD']);
    const dirty = git(['status', '--porcelain', '--', 'src']).split('\n').filter(Boolean).length;
    return { commit, srcUncommittedFiles: dirty };
  } catch {
    return { commit: 'unknown', srcUncommittedFiles: Number.NaN };
  }
}

async function main() {
  const started = Date.now();
  const options = parseOptions();
  if (!existsSync(path.join(ROOT, 'dist/bin/roomwire.js'))) {
    throw new Error('dist/bin/roomwire.js is missing: build first (npx tsup), or run npm run bench');
  }
  if (!options.targets.includes('ws-naive')) options.targets.unshift('ws-naive');
  const targets = TARGETS.filter((t) => options.targets.includes(t.name));
  if (options.roomwireBefore !== '') {
    const before = roomwireBefore(String(options.roomwireBefore));
    if (!existsSync(before.script)) throw new Error(`--roomwire-before: ${before.script} is missing: build that checkout first (npx tsup)`);
    targets.splice(targets.findIndex((t) => t.name === 'roomwire') + 1, 0, before);
  }
  for (const pair of options.roomwireEnv.split(';').map((s) => s.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--roomwire-env: "${pair}" is not KEY=VALUE`);
    ROOMWIRE_OVERRIDES[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  if (options.profile !== '') {
    PROFILE.dir = path.resolve(String(options.profile));
    PROFILE.intervalUs = Number(options.profileInterval);
    if (existsSync(PROFILE.dir) && readdirSync(PROFILE.dir).length > 0) throw new Error(`--profile: ${PROFILE.dir} is not empty`);
    mkdirSync(PROFILE.dir, { recursive: true });
  }
  const jwtSecret = randomBytes(32).toString('hex');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const tokens = Array.from({ length: 64 }, (_, i) => signHs256({ sub: `bench-user-${i}`, username: `bench${i}`, exp }, jwtSecret));
  /** @type {{ scenario: string, target: string, what: string, detail?: unknown }[]} */
  const problems = [];
  const log = (/** @type {string} */ line) => console.log(line.startsWith('\n') || line.startsWith('  ') ? line : `[${String(Math.round((Date.now() - started) / 1000)).padStart(3)} s] ${line}`);
  /** @type {Context} */
  const ctx = {
    options,
    targets,
    allTargets: [...TARGETS, ...targets.filter((t) => t.name === 'roomwire-before')],
    jwtSecret,
    tokens,
    log,
    problem(scenario, target, what, detail) {
      problems.push({ scenario, target, what, detail });
      console.log(`  PROBLEM [${scenario}/${target}] ${what}`);
    },
  };
  const m = machine();
  const rev = revision();
  const loadStart = os.loadavg();
  log(`roomwire benchmark: ${m.nproc} CPUs (${m.cpuModel}), node ${m.node}, ${m.os}`);
  log(`load average at start: ${loadStart.map((x) => x.toFixed(2)).join(' ')}${loadStart[0] > 0.5 ? '  (other work is running: numbers will be noisier)' : ''}`);
  log(`roomwire built from ${rev.commit}${rev.srcUncommittedFiles ? ` plus uncommitted changes in ${rev.srcUncommittedFiles} src/ file(s)` : ''}`);
  log(`targets: ${targets.map((t) => t.name).join(', ')}; scenarios: ${options.scenarios.join(', ')}`);

  /** @type {Record<string, unknown>} */
  const results = {};
  const runners = {
    fanout: runFanout,
    memory: runMemory,
    connrate: runConnrate,
    member: runMember,
    scale: runScale,
    scaleout: runScaleout,
    stats: runStats,
    frames: runFrames,
    soak: runSoak,
    attack: runAttack,
  };
  for (const s of options.scenarios) {
    const t0 = Date.now();
    log(`\n== ${s} ==`);
    try {
      results[s] = await runners[/** @type {keyof typeof runners} */ (s)](ctx);
    } catch (err) {
      const e = /** @type {Error} */ (err);
      ctx.problem(s, '-', `scenario failed: ${e.message.split('\n')[0]}`, e.stack);
      results[s] = { failed: e.message };
    }
    await stopAll();
    log(`   (${s}: ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }

  /** @type {any} */
  const doc = {
    meta: {
      date: new Date().toISOString(),
      command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
      machine: m,
      roomwire: rev,
      loadAverageStart: loadStart,
      loadAverageEnd: os.loadavg(),
      durationSeconds: Math.round((Date.now() - started) / 1000),
      options,
      targets: targets.map((t) => ({ name: t.name, describe: t.describe })),
    },
    results,
    problems,
  };
  if (PROFILE.dir !== '') doc.profiles = renderProfiles(PROFILE.dir);
  const text = report(doc);
  doc.tables = text;
  log(`\n${text.plain}`);
  if (doc.profiles !== undefined) log(profileTable(doc.profiles));
  const out = path.resolve(ROOT, options.out);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
  log(`\nwrote ${path.relative(ROOT, out)} (${doc.meta.durationSeconds} s, load average at end ${doc.meta.loadAverageEnd.map((/** @type {number} */ x) => x.toFixed(2)).join(' ')})`);
}

/**
 * `--profile`'s summary: per target, the share of busy time by part of the program and
 * the functions with the most self time.
 * @param {ReturnType<typeof renderProfiles>} profiles
 */
function profileTable(profiles) {
  const pct = (/** @type {number} */ x) => `${(x * 100).toFixed(1)}%`;
  const lines = ['\nCPU profiles (node --cpu-prof; shares of the busy samples, idle left out)'];
  for (const [target, p] of Object.entries(profiles)) {
    lines.push(`\n${target}: ${Math.round(p.busyMs).toLocaleString('en-US')} ms busy in ${p.files} process(es); flame graph ${path.relative(ROOT, p.svg)}`);
    lines.push(`  by part: ${Object.entries(p.summary.parts).map(([k, v]) => `${k} ${pct(v)}`).join(', ')}`);
    for (const f of p.summary.functions) lines.push(`  ${pct(f.share).padStart(6)}  ${f.name.padEnd(28)} ${f.part.padEnd(12)} ${f.where}`);
  }
  return lines.join('\n');
}

let exiting = false;
/** @param {number} code */
async function shutdown(code) {
  if (exiting) return;
  exiting = true;
  await stopAll(2000);
  process.exit(code);
}
process.on('exit', killAllNow);
process.on('SIGINT', () => {
  console.error('\ninterrupted: stopping every child process');
  void shutdown(130);
});
process.on('SIGTERM', () => void shutdown(143));
process.on('uncaughtException', (err) => {
  console.error(err);
  void shutdown(1);
});
process.on('unhandledRejection', (err) => {
  console.error(err);
  void shutdown(1);
});

main().then(
  async () => {
    await stopAll(2000);
    if (liveChildren() > 0) console.error(`warning: ${liveChildren()} child processes still running`);
    process.exit(0);
  },
  async (err) => {
    console.error(`bench failed: ${err?.stack ?? err}`);
    await shutdown(1);
  },
);
