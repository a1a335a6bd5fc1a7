// @ts-check
/**
 * Child processes of the benchmark: spawned through bash to raise `ulimit -n`, tracked
 * in one registry so that every one of them is killed on exit, on a signal and on an
 * error; plus readers of /proc for a process's CPU time, RSS and open-file limit.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** Soft limit asked for in children; falls back to the hard limit when not permitted. */
export const WANTED_NOFILE = 200_000;

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();

/**
 * Spawn `node <args>` with `ulimit -n` raised (as far as the hard limit allows).
 * `bash -c '... exec node'` keeps the pid: the returned child's pid is node's.
 * @param {string[]} args
 * @param {{ env?: Record<string, string>, ipc?: boolean, cwd?: string, nodeFlags?: string[] }} [opts]
 */
export function spawnNode(args, opts = {}) {
  const quoted = [...(opts.nodeFlags ?? []), ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `ulimit -n ${WANTED_NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec node ${quoted}`;
  const child = spawn('bash', ['-c', script], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * Spawn another program (redis-server), tracked like the node children.
 * @param {string} command
 * @param {string[]} args
 */
export function spawnTracked(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * Drain a child's stdout and stderr (a full pipe would block it), keep their last
 * lines, pass each line to the listeners, and wait for a line matching a pattern.
 * @param {import('node:child_process').ChildProcess} child
 * @param {number} [keep]
 */
export function watchOutput(child, keep = 200) {
  /** @type {string[]} */
  const lines = [];
  /** @type {Set<(line: string, stream: 'stdout' | 'stderr') => void>} */
  const listeners = new Set();
  for (const stream of /** @type {const} */ (['stdout', 'stderr'])) {
    const s = child[stream];
    if (!s) continue;
    createInterface({ input: s }).on('line', (line) => {
      lines.push(`${stream}: ${line}`);
      if (lines.length > keep) lines.shift();
      for (const l of listeners) l(line, stream);
    });
  }
  return {
    lines,
    /** @param {(line: string, stream: 'stdout' | 'stderr') => void} fn */
    onLine(fn) {
      listeners.add(fn);
    },
    /**
     * Resolve with the match of the first stdout line matching `pattern`; reject when
     * the child exits first or `timeoutMs` passes.
     * @param {RegExp} pattern
     * @param {number} timeoutMs
     * @returns {Promise<RegExpMatchArray>}
     */
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const finish = (/** @type {Error | undefined} */ err, /** @type {RegExpMatchArray | undefined} */ m) => {
          clearTimeout(timer);
          child.off('exit', onExit);
          listeners.delete(onLine);
          if (err) reject(err);
          else resolve(/** @type {RegExpMatchArray} */ (m));
        };
        const onLine = (/** @type {string} */ line, /** @type {string} */ stream) => {
          if (stream !== 'stdout') return;
          const m = pattern.exec(line);
          if (m) finish(undefined, m);
        };
        const onExit = (/** @type {number | null} */ code) =>
          finish(new Error(`process exited (${code}) before printing ${pattern}:\n${lines.slice(-20).join('\n')}`), undefined);
        const timer = setTimeout(() => finish(new Error(`no ${pattern} within ${timeoutMs} ms:\n${lines.slice(-20).join('\n')}`), undefined), timeoutMs);
        listeners.add(onLine);
        child.once('exit', onExit);
      });
    },
  };
}

/**
 * SIGTERM the child, wait up to `graceMs` for it to exit, then SIGKILL it.
 * Resolves with its exit code (null when killed by a signal).
 * @param {import('node:child_process').ChildProcess} child
 * @param {number} [graceMs]
 * @returns {Promise<number | null>}
 */
export function stopChild(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }, graceMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    try {
      child.kill('SIGTERM');
    } catch {
      clearTimeout(timer);
      resolve(null);
    }
  });
}

/** Stop every tracked child (SIGTERM, then SIGKILL after `graceMs`). */
export async function stopAll(graceMs = 3000) {
  await Promise.all([...children].map((c) => stopChild(c, graceMs)));
}

/** Synchronous last resort (for process 'exit'): SIGKILL whatever is left. */
export function killAllNow() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Number of tracked children still running. */
export function liveChildren() {
  return children.size;
}

const TICKS_PER_SECOND = 100; // USER_HZ; `getconf CLK_TCK` on Linux

/**
 * CPU time (user + system, all threads) of a process in microseconds, from
 * /proc/<pid>/stat. Resolution: one clock tick (10 ms).
 * @param {number} pid
 */
export function cpuMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name, which may itself contain spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1e6) / TICKS_PER_SECOND;
}

/**
 * Write system calls (write, writev, sendmsg and the like) the process has made so far,
 * from /proc/<pid>/io (`syscw`); 0 where the kernel does not expose it. Every frame batch a
 * server hands the kernel is one, so per delivery it shows how well writes are batched,
 * unaffected by how busy the machine is.
 * @param {number} pid
 */
export function writeCalls(pid) {
  try {
    const m = /^syscw:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * CPU time all CPUs of the machine spent busy (user, nice, system, irq, softirq, steal)
 * in microseconds, from /proc/stat. Minus the CPU of the benchmark's own processes over
 * the same interval, it shows how much other work ran during a trial.
 */
export function machineBusyMicros() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] || 0);
  return (busy * 1e6) / TICKS_PER_SECOND;
}

/**
 * Resident set size of a process in bytes (VmRSS of /proc/<pid>/status).
 * @param {number} pid
 */
export function rssBytes(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/**
 * The soft "Max open files" of a process.
 * @param {number} pid
 */
export function nofileLimit(pid) {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  if (!m) return Number.NaN;
  return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Monotonic time in microseconds, the same clock (CLOCK_MONOTONIC) in every process
 * of the machine, so one process can stamp and another measure.
 */
export function nowMicros() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1000);
}

/**
 * Start measuring where the CPU goes during a trial: the server process, the client
 * processes, this process and the whole machine. The returned function ends the window
 * and gives microseconds of each and the wall time, plus the share of the machine other
 * processes used (`otherPct`, percent of one core), which says whether the trial was
 * disturbed.
 * @param {number} serverPid
 * @param {{ cpu(): number }[]} clients
 */
export function cpuWindow(serverPid, clients) {
  const clientCpu0 = clients.map((c) => c.cpu());
  const busy0 = machineBusyMicros();
  const self0 = process.cpuUsage();
  const wall0 = nowMicros();
  const server0 = cpuMicros(serverPid);
  return () => {
    const server = cpuMicros(serverPid) - server0;
    const client = clients.reduce((a, c, i) => a + (c.cpu() - /** @type {number} */ (clientCpu0[i])), 0);
    const self = process.cpuUsage(self0);
    const busy = machineBusyMicros() - busy0;
    const wall = nowMicros() - wall0;
    return { server, client, wall, otherPct: Math.max(0, ((busy - server - client - self.user - self.system) / wall) * 100) };
  };
}
