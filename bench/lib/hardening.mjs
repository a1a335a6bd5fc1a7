// @ts-check
/**
 * Helpers shared by the hardening scenarios (stats, frames, soak, attack): start a
 * roomwire standalone process with a scenario's environment (optionally the bench-only
 * server with `--expose-gc`), time HTTP requests, sample a process's RSS, drive the
 * canary client, read the kernel's socket counters.
 */
import http from 'node:http';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { spawnClient } from './clientproc.mjs';
import { nofileLimit, rssBytes, spawnNode, stopChild, watchOutput } from './proc.mjs';
import { DEFAULT_HEARTBEAT, ROOMWIRE_OVERRIDES, ROOT, roomwireEnv } from './targets.mjs';

/**
 * @typedef {object} Roomwire
 * @property {number} pid
 * @property {string} url http://127.0.0.1:PORT (the WebSocket endpoints)
 * @property {string} adminUrl where /metrics, /stats.json are served: `url`, or the internal
 *   listener's when the server printed one (INTERNAL_PORT)
 * @property {Record<string, string>} env the environment it was started with
 * @property {number} nofile
 * @property {string[]} lines
 * @property {string[]} warnings stderr lines and log lines at warn level or above
 * @property {() => boolean} alive
 * @property {() => Promise<number | null>} stop
 * @property {(() => Promise<{ heapUsed: number, heapTotal: number, rss: number, external: number, arrayBuffers: number }>) | undefined} gc
 *   (bench server only) run a full GC in the server and return its process.memoryUsage()
 * @property {import('node:child_process').ChildProcess} child
 */

/**
 * Start roomwire: `dist/bin/roomwire.js`, or with `gcServer` the bench-only
 * bench/servers/roomwire-gc.mjs (the same startServer, plus `--expose-gc` and an IPC
 * channel answering `gc`). Environment: the benchmark's roomwire settings
 * ({@link roomwireEnv}, default heartbeat), then the scenario's, then --roomwire-env.
 * @param {import('../run.mjs').Context} ctx
 * @param {Record<string, string>} scenarioEnv
 * @param {{ gcServer?: boolean, unset?: string[] }} [opts] unset: benchmark settings to leave at roomwire's default
 * @returns {Promise<Roomwire>}
 */
export async function startRoomwire(ctx, scenarioEnv, opts = {}) {
  /** @type {Record<string, string>} */
  const base = roomwireEnv(DEFAULT_HEARTBEAT, ctx.jwtSecret);
  for (const name of opts.unset ?? []) delete base[name];
  const env = { ...base, ...scenarioEnv, ...ROOMWIRE_OVERRIDES };
  const script = opts.gcServer ? 'bench/servers/roomwire-gc.mjs' : 'dist/bin/roomwire.js';
  const child = spawnNode([path.join(ROOT, script)], { env, cwd: ROOT, ipc: opts.gcServer, nodeFlags: opts.gcServer ? ['--expose-gc'] : [] });
  const out = watchOutput(child);
  /** @type {string[]} */
  const warnings = [];
  /** @type {string | undefined} */
  let internal;
  out.onLine((line, stream) => {
    if (stream === 'stderr' || /"level":\s*"(warn|error|fatal)"/.test(line)) {
      if (warnings.length < 50) warnings.push(`${stream}: ${line.slice(0, 500)}`);
    }
    // A second listener for /metrics and /stats (INTERNAL_PORT), when the server has one.
    const m = /internal[^"]*listening on (http:\/\/[0-9.]+:\d+)|listening on (http:\/\/[0-9.]+:\d+)[^"]*internal/i.exec(line);
    if (m) internal = m[1] ?? m[2];
  });
  const m = await out.waitFor(/roomwire listening on (http:\/\/[0-9.]+:\d+)/, 15_000);
  const pid = /** @type {number} */ (child.pid);
  let gcSeq = 0;
  return {
    pid,
    url: m[1],
    get adminUrl() {
      return internal ?? m[1];
    },
    env,
    nofile: nofileLimit(pid),
    lines: out.lines,
    warnings,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: () => stopChild(child, 8000),
    child,
    gc: opts.gcServer
      ? () =>
          new Promise((resolve, reject) => {
            const id = ++gcSeq;
            const timer = setTimeout(() => {
              child.off('message', onMessage);
              reject(new Error('the server did not answer gc within 20 s'));
            }, 20_000);
            const onMessage = (/** @type {any} */ msg) => {
              if (msg?.op !== 'gc' || msg.id !== id) return;
              clearTimeout(timer);
              child.off('message', onMessage);
              resolve(msg.memory);
            };
            child.on('message', onMessage);
            child.send({ op: 'gc', id });
          })
      : undefined,
  };
}

/** Keep-alive agents by source address ('' for the default). */
const agents = new Map();

/**
 * GET `url` on a keep-alive agent; resolves with the status, the body's length and
 * the client-measured time to the end of the body (ms). Never rejects: a failure has
 * status 0 and `error`.
 * @param {string} url
 * @param {number} [timeoutMs]
 * @param {string} [localAddress] source address (127.x.y.z)
 * @returns {Promise<{ status: number, bytes: number, ms: number, body: string, error?: string }>}
 */
export function timedGet(url, timeoutMs = 10_000, localAddress = '') {
  let agent = agents.get(localAddress);
  if (agent === undefined) {
    agent = new http.Agent({ keepAlive: true, maxSockets: 8, ...(localAddress ? { localAddress } : {}) });
    agents.set(localAddress, agent);
  }
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (/** @type {{ status: number, bytes: number, body: string, error?: string }} */ r) => {
      if (settled) return;
      settled = true;
      resolve({ ...r, ms: performance.now() - t0 });
    };
    const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
      /** @type {Buffer[]} */
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        done({ status: res.statusCode ?? 0, bytes: body.length, body: body.toString() });
      });
      res.on('error', (err) => done({ status: 0, bytes: 0, body: '', error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', (err) => done({ status: 0, bytes: 0, body: '', error: err.message }));
  });
}

/** Close the keep-alive connections of {@link timedGet}. */
export function closeAgent() {
  for (const a of agents.values()) a.destroy();
  agents.clear();
}

/**
 * Sample a process's RSS every `intervalMs` until stopped; returns the peak and the last.
 * @param {number} pid
 * @param {number} [intervalMs]
 */
export function rssSampler(pid, intervalMs = 100) {
  let peak = 0;
  let last = 0;
  const take = () => {
    try {
      last = rssBytes(pid);
      if (last > peak) peak = last;
    } catch {
      // the process is gone
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { peak, last };
    },
  };
}

/** TCP sockets in use and in TIME_WAIT on this machine (/proc/net/sockstat). */
export function sockstat() {
  try {
    const m = /^TCP: inuse (\d+) orphan (\d+) tw (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? { inuse: Number(m[1]), orphan: Number(m[2]), timeWait: Number(m[3]) } : undefined;
  } catch {
    return undefined;
  }
}

/** A sysctl value from /proc/sys, or undefined. @param {string} name e.g. net.ipv4.tcp_tw_reuse */
export function sysctl(name) {
  try {
    return readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim().replace(/\s+/g, ' ');
  } catch {
    return undefined;
  }
}

/**
 * A canary window as the canary client reports it (see bench/clients/canary.mjs).
 * @typedef {object} CanaryWindow
 * @property {number} probes probes sent in the window
 * @property {number} answered answered within the settle time
 * @property {number} lost
 * @property {number} p50us
 * @property {number} p99us
 * @property {number} maxUs
 * @property {Record<string, { probes: number, answered: number, lost: number, p50us: number, p99us: number, maxUs: number }>} byKind
 * @property {number} deliveriesExpected (message probes, two canaries) deliveries to the other canary
 * @property {number} deliveriesLost
 * @property {Record<string, number>} errors error frames received, by code
 * @property {number} closes canary connections closed
 */

/**
 * Start the canary client: `conns` connections (1 or 2) in `room`, from `localAddress`,
 * one probe every `probeMs` over all of them (`kinds`: 'ping' app-level ping/pong,
 * 'message' own echo).
 * @param {{ url: string, room: string, localAddress: string, conns: number, probeMs: number, kinds: ('ping' | 'message')[] }} opts
 */
export async function startCanary(opts) {
  const proc = spawnClient('canary.mjs');
  await proc.request({ op: 'start', ...opts }, 'started', 20_000);
  return {
    proc,
    /**
     * Close the current window (probes sent from now on belong to the next one), wait
     * `settleMs` for its last answers, and return it.
     * @param {number} [settleMs]
     * @returns {Promise<CanaryWindow>}
     */
    mark: (settleMs = 1000) => proc.request({ op: 'mark', settleMs }, 'window', settleMs + 20_000),
    close: () => proc.close(),
  };
}
