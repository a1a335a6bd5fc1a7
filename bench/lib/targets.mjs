// @ts-check
/**
 * The four servers under test and how each is started: its own process on 127.0.0.1,
 * port 0, configured so the load is within its limits while every check stays on.
 */
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import net from 'node:net';
import os from 'node:os';
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { spawnNode, spawnTracked, stopChild, watchOutput, nofileLimit, sleep } from './proc.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * @typedef {object} Target
 * @property {string} name
 * @property {'ws' | 'socketio'} kind client shim to use
 * @property {string} script path relative to the repository root
 * @property {string} describe one line for the output
 * @property {string} [joinDoneOn] ws kind: the text prefix of the frame that completes a join
 *   through the path (roomwire: its `user_list`, sent after the own `join`); unset: the own
 *   `join` notice, the first frame
 * @property {boolean} [cluster] scale-out over a Redis Cluster of 3 masters instead of one redis-server
 * @property {Record<string, string>} [env] extra environment of this target's server
 * @property {boolean} [metrics] false: a roomwire server without GET /metrics (its counters
 *   are not cross-checked against the load)
 */

/** @type {Target[]} */
export const TARGETS = [
  { name: 'roomwire', kind: 'ws', script: 'dist/bin/roomwire.js', describe: 'roomwire standalone server (dist/bin/roomwire.js)', joinDoneOn: '{"type":"user_list"' },
  { name: 'roomwire-ioredis', kind: 'ws', script: 'bench/servers/roomwire-ioredis.mjs', describe: 'roomwire standalone server with its Redis broker on an ioredis client (bench/servers/roomwire-ioredis.mjs)', joinDoneOn: '{"type":"user_list"' },
  { name: 'roomwire-cluster', kind: 'ws', script: 'dist/bin/roomwire.js', describe: 'roomwire standalone server over a Redis Cluster of 3 masters (WEBSOCKET_REDIS_MODE=cluster, sharded pub/sub)', joinDoneOn: '{"type":"user_list"', cluster: true },
  { name: 'ws-naive', kind: 'ws', script: 'bench/servers/ws-naive.mjs', describe: 'hand-written ws server, ws.send(string) per member' },
  { name: 'ws-preframed', kind: 'ws', script: 'bench/servers/ws-preframed.mjs', describe: 'hand-written ws server, one frame per broadcast written to every socket' },
  { name: 'ws-corked', kind: 'ws', script: 'bench/servers/ws-corked.mjs', describe: 'hand-written ws server at the limit: pre-framed, each socket corked per event-loop turn (one write per socket per turn), no checks' },
  { name: 'socketio', kind: 'socketio', script: 'bench/servers/socketio.mjs', describe: 'Socket.IO 4, websocket transport only, no compression, io.to(room).emit' },
  {
    name: 'roomwire-bare',
    kind: 'ws',
    script: 'bench/servers/roomwire-bare.mjs',
    describe: 'roomwire without Prometheus metrics: createHub from the environment on roomwire/node, no registry (bench/servers/roomwire-bare.mjs)',
    joinDoneOn: '{"type":"user_list"',
    metrics: false,
  },
  {
    name: 'roomwire-hooked',
    kind: 'ws',
    script: 'bench/servers/roomwire-hooked.mjs',
    describe: 'roomwire standalone server with a canPublish hook that allows every message (bench/servers/roomwire-hooked.mjs)',
    joinDoneOn: '{"type":"user_list"',
  },
  {
    name: 'roomwire-history',
    kind: 'ws',
    script: 'dist/bin/roomwire.js',
    describe: 'roomwire standalone server with history on (WEBSOCKET_HISTORY_SIZE=100: every message numbered and kept for recovery)',
    joinDoneOn: '{"type":"user_list"',
    env: { WEBSOCKET_HISTORY_SIZE: '100' },
  },
  {
    name: 'socketio-recovery',
    kind: 'socketio',
    script: 'bench/servers/socketio.mjs',
    describe: 'Socket.IO 4 with connection state recovery (over Redis: @socket.io/redis-streams-adapter, the adapter recovery needs)',
    env: { BENCH_RECOVERY: '1' },
  },
];

/**
 * Whether `target` is a roomwire build (this one, or the one `--roomwire-before` names):
 * it gets roomwire's environment and roomwire's checks.
 * @param {{ name: string }} target
 */
export function isRoomwire(target) {
  return target.name.startsWith('roomwire');
}

/**
 * The `roomwire-before` target: the standalone server of another build of roomwire (a
 * checkout of an earlier commit, built with `npx tsup`), measured in the same run as this
 * one, so an optimization's gain is a paired ratio rather than two runs' difference.
 * @param {string} dir the other checkout's root
 * @returns {Target}
 */
export function roomwireBefore(dir) {
  return { name: 'roomwire-before', kind: 'ws', script: path.resolve(dir, 'dist/bin/roomwire.js'), describe: `roomwire standalone server built in ${dir}` };
}

/** The baseline every ratio is taken against. */
export const BASELINE = 'ws-naive';

/**
 * Heartbeat timings of a scenario, in milliseconds.
 * @typedef {{ pingPeriod: number, pongWait: number, sweep: number }} Heartbeat
 */

/** roomwire's defaults (54 s / 60 s / 30 s sweep). */
export const DEFAULT_HEARTBEAT = { pingPeriod: 54_000, pongWait: 60_000, sweep: 30_000 };

/** Largest inbound message every server accepts (roomwire's default is 512). */
export const MAX_MESSAGE_SIZE = 4096;

/**
 * `--profile`: when `dir` is set, every server runs with `node --cpu-prof` and writes its
 * profile at exit into `dir/<target>/` (see bench/lib/flame.mjs).
 */
export const PROFILE = { dir: '', intervalUs: 250 };

/** Extra roomwire variables from --roomwire-env, applied over {@link roomwireEnv}. */
/** @type {Record<string, string>} */
export const ROOMWIRE_OVERRIDES = {};

/**
 * roomwire's environment: high limits, not off switches. Validation, the message and
 * connect rate limiters, JWT verification of any presented token and the counters behind
 * /metrics all run; only their thresholds are raised above the load.
 * @param {Heartbeat} hb
 * @param {string} jwtSecret
 */
export function roomwireEnv(hb, jwtSecret) {
  return {
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    WEBSOCKET_MAX_CONNECTIONS: '1000000',
    WEBSOCKET_CONNECT_RATE: '1000000/s,1000000',
    WEBSOCKET_MESSAGE_RATE: '1000000/s,1000000',
    WEBSOCKET_MAX_MESSAGE_SIZE: String(MAX_MESSAGE_SIZE),
    WEBSOCKET_WRITE_BUFFER_SIZE: String(1024 * 1024),
    WEBSOCKET_PING_PERIOD: `${hb.pingPeriod}ms`,
    WEBSOCKET_PONG_WAIT: `${hb.pongWait}ms`,
    WEBSOCKET_HEARTBEAT_INTERVAL: `${hb.sweep}ms`,
    WEBSOCKET_JWT_SECRET: jwtSecret,
    // Connections per client address still sending their first request head (the guard
    // against slowloris; default 32): the load opens up to 64 at once from one address.
    // Builds without the guard ignore it.
    MAX_UNFINISHED_REQUESTS: '1000000',
    ...ROOMWIRE_OVERRIDES,
  };
}

/**
 * The hand-written and Socket.IO servers' environment: the same heartbeat timings and
 * message size limit.
 * @param {Heartbeat} hb
 */
export function benchServerEnv(hb) {
  return {
    HOST: '127.0.0.1',
    PORT: '0',
    BENCH_PING_PERIOD_MS: String(hb.pingPeriod),
    BENCH_PONG_WAIT_MS: String(hb.pongWait),
    BENCH_SWEEP_MS: String(hb.sweep),
    BENCH_MAX_MESSAGE_SIZE: String(MAX_MESSAGE_SIZE),
  };
}

/**
 * @typedef {object} RunningServer
 * @property {Target} target
 * @property {number} pid
 * @property {string} url http://127.0.0.1:PORT
 * @property {number} nofile the server's open-file limit
 * @property {string[]} lines its last output lines
 * @property {string[]} warnings stderr lines and log lines at warn level or above
 * @property {() => boolean} alive
 * @property {() => Promise<number | null>} stop SIGTERM; resolves with the exit code
 * @property {import('node:child_process').ChildProcess} child
 * @property {(timeoutMs?: number) => Promise<NodeJS.MemoryUsage>} heap started with `heapProbe`: two
 *   full GCs in the server, then its process.memoryUsage(); rejects otherwise
 */

/** The preload that answers heap requests (see bench/servers/heap-probe.cjs). */
const HEAP_PROBE = path.join(ROOT, 'bench', 'servers', 'heap-probe.cjs');
let heapRequests = 0;

/**
 * Start one server and wait for its `listening on http://HOST:PORT` line.
 * @param {Target} target
 * @param {Heartbeat} hb
 * @param {string} jwtSecret
 * @param {Record<string, string>} [extraEnv]
 * @param {{ heapProbe?: boolean }} [opts] heapProbe: run it with `--expose-gc`, the
 *   heap-probe preload and an IPC channel, so that `heap()` works (the server's code is
 *   unchanged)
 * @returns {Promise<RunningServer>}
 */
export async function startServer(target, hb, jwtSecret, extraEnv = {}, opts = {}) {
  const env = { ...(isRoomwire(target) ? roomwireEnv(hb, jwtSecret) : benchServerEnv(hb)), ...(target.env ?? {}), ...extraEnv };
  const probe = opts.heapProbe === true;
  /** @type {string[]} */
  const nodeFlags = probe ? ['--expose-gc', '--require', HEAP_PROBE] : [];
  if (PROFILE.dir !== '') {
    const dir = path.join(PROFILE.dir, target.name);
    fs.mkdirSync(dir, { recursive: true });
    nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${PROFILE.intervalUs}`);
  }
  const child = spawnNode([path.resolve(ROOT, target.script)], {
    env,
    cwd: ROOT,
    ...(probe ? { ipc: true } : {}),
    nodeFlags,
  });
  const out = watchOutput(child);
  /** @type {string[]} */
  const warnings = [];
  out.onLine((line, stream) => {
    if (stream === 'stderr' || /"level":\s*"(warn|error|fatal)"/.test(line)) {
      if (warnings.length < 50) warnings.push(`${stream}: ${line.slice(0, 500)}`);
    }
  });
  const m = await out.waitFor(/listening on (http:\/\/[0-9.]+:\d+)/, 15_000);
  const pid = /** @type {number} */ (child.pid);
  return {
    target,
    pid,
    url: m[1],
    nofile: nofileLimit(pid),
    lines: out.lines,
    warnings,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: () => stopChild(child, 8000),
    child,
    heap: (timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        if (!probe || !child.connected) {
          reject(new Error(`${target.name}: started without the heap probe`));
          return;
        }
        const id = ++heapRequests;
        const onMessage = (/** @type {any} */ m) => {
          if (m?.op !== 'heap' || m.id !== id) return;
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve(m.memory);
        };
        const timer = setTimeout(() => {
          child.off('message', onMessage);
          reject(new Error(`${target.name}: no heap reading within ${timeoutMs} ms`));
        }, timeoutMs);
        child.on('message', onMessage);
        child.send({ op: 'heap', id });
      }),
  };
}

/**
 * GET a path of a server (loopback), bounded by a timeout.
 * @param {string} url
 * @param {number} [timeoutMs]
 */
export async function httpGet(url, timeoutMs = 5000) {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, text: await res.text() };
}

/**
 * Open connections as the server reports them (GET /healthz `connections`).
 * @param {RunningServer} s
 */
export async function serverConnections(s) {
  try {
    const r = await httpGet(`${s.url}/healthz`);
    return Number(JSON.parse(r.text).connections);
  } catch {
    return Number.NaN;
  }
}

/**
 * roomwire's hub counters from /metrics (`roomwire_*` samples), to cross-check the
 * load and to prove that metrics were on.
 * @param {RunningServer} s
 */
export async function roomwireMetrics(s) {
  const r = await httpGet(`${s.url}/metrics`);
  /** @type {Record<string, number>} */
  const out = {};
  for (const line of r.text.split('\n')) {
    const m = /^(roomwire_[a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$/.exec(line);
    if (m && !m[1].includes('_bucket')) out[m[1]] = Number(m[2]);
  }
  return { status: r.status, samples: out };
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (srv.address());
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A redis-server of its own (no persistence) on a free loopback port, for the scale-out
 * scenario; resolves once it answers PING.
 * @returns {Promise<{ url: string, pid: number, stop: () => Promise<number | null> }>}
 */
export async function startRedis() {
  const port = /** @type {number} */ (await freePort());
  const child = spawnTracked('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  watchOutput(child);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const pong = await new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write('PING\r\n'));
      sock.once('data', (d) => {
        sock.destroy();
        resolve(d.toString());
      });
      sock.once('error', () => resolve(''));
    });
    if (pong === '+PONG\r\n') break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('redis-server did not start (is it installed?)');
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, pid: /** @type {number} */ (child.pid), stop: () => stopChild(child, 3000) };
}

/** Whether a TCP port on 127.0.0.1 answers PING with PONG. */
function pings(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write('PING\r\n'));
    sock.setTimeout(1000, () => sock.destroy());
    sock.once('data', (d) => {
      sock.destroy();
      resolve(d.toString() === '+PONG\r\n');
    });
    sock.once('error', () => resolve(false));
    sock.once('close', () => resolve(false));
  });
}

/**
 * A Redis Cluster of its own: `masters` redis-servers (no replicas, no persistence) on free
 * loopback ports, joined by `redis-cli --cluster create`; resolves once every slot is served.
 * @param {number} masters
 * @returns {Promise<{ url: string, pids: number[], stop: () => Promise<number | null> }>}
 */
export async function startRedisCluster(masters) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomwire-bench-cluster-'));
  /** @type {import('node:child_process').ChildProcess[]} */
  const children = [];
  const ports = [];
  for (let i = 0; i < masters; i++) {
    const port = /** @type {number} */ (await freePort());
    const busPort = /** @type {number} */ (await freePort());
    const child = spawnTracked('redis-server', ['--port', String(port), '--cluster-port', String(busPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000', '--dir', dir]);
    watchOutput(child);
    children.push(child);
    ports.push(port);
  }
  const stop = async () => {
    const codes = await Promise.all(children.map((c) => stopChild(c, 3000)));
    fs.rmSync(dir, { recursive: true, force: true });
    return codes.find((c) => c !== 0 && c !== null) ?? 0;
  };
  const deadline = Date.now() + 15_000;
  for (const port of ports) while (!(await pings(port))) {
    if (Date.now() > deadline) { await stop(); throw new Error('redis-server (cluster) did not start'); }
    await sleep(50);
  }
  await new Promise((resolve, reject) =>
    execFile('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], (err, stdout) =>
      err ? reject(new Error(`redis-cli --cluster create failed (is redis-tools installed?): ${err.message} ${stdout}`)) : resolve(undefined)),
  ).catch(async (err) => { await stop(); throw err; });
  for (;;) {
    const ok = await Promise.all(ports.map((p) => new Promise((resolve) => execFile('redis-cli', ['-p', String(p), 'cluster', 'info'], (err, out) => resolve(!err && out.includes('cluster_state:ok'))))));
    if (ok.every(Boolean)) break;
    if (Date.now() > deadline) { await stop(); throw new Error('the Redis Cluster did not come up'); }
    await sleep(100);
  }
  return { url: ports.map((p) => `redis://127.0.0.1:${p}`).join(','), pids: children.map((c) => /** @type {number} */ (c.pid)), stop };
}

/**
 * One target as the load sees it: one server process, or (scale-out) several sharing a
 * redis-server of their own.
 * @typedef {object} Deployment
 * @property {Target} target
 * @property {RunningServer[]} servers
 * @property {number[]} pids every process whose CPU the serving costs (the servers, redis-server)
 * @property {(clientProcess: number) => string} urlFor the server a client process connects to
 * @property {() => boolean} alive
 * @property {() => string[]} lastLines
 * @property {() => Promise<number | null>} stop SIGTERM to all; resolves with the first non-zero exit code, else 0
 */

/**
 * Start a target as `processes` server processes; with more than one they share a new
 * redis-server (roomwire: WEBSOCKET_REDIS_URL; Socket.IO: its Redis adapter).
 * @param {Target} target
 * @param {Heartbeat} hb
 * @param {string} jwtSecret
 * @param {number} [processes]
 * @returns {Promise<Deployment>}
 */
export async function deploy(target, hb, jwtSecret, processes = 1) {
  const cluster = processes > 1 && target.cluster === true;
  const redis = processes > 1 ? (cluster ? await startRedisCluster(3) : await startRedis()) : undefined;
  const env = redis === undefined ? {} : isRoomwire(target) ? { WEBSOCKET_REDIS_URL: redis.url, ...(cluster ? { WEBSOCKET_REDIS_MODE: 'cluster' } : {}) } : { BENCH_REDIS_URL: redis.url };
  /** @type {RunningServer[]} */
  const servers = [];
  for (let i = 0; i < processes; i++) servers.push(await startServer(target, hb, jwtSecret, env));
  return {
    target,
    servers,
    pids: [...servers.map((s) => s.pid), ...(redis === undefined ? [] : 'pids' in redis ? redis.pids : [redis.pid])],
    urlFor: (p) => servers[p % servers.length].url,
    alive: () => servers.every((s) => s.alive()),
    lastLines: () => servers.flatMap((s) => s.lines.slice(-10)),
    async stop() {
      const codes = await Promise.all(servers.map((s) => s.stop()));
      if (redis) await redis.stop();
      return codes.find((c) => c !== 0) ?? 0;
    },
  };
}
