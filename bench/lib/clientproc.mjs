// @ts-check
/**
 * Load-generator processes: spawn one (a separate node process with an IPC channel and
 * a raised `ulimit -n`), send it a command and wait for its reply, bounded in time.
 */
import path from 'node:path';
import { ROOT } from './targets.mjs';
import { cpuMicros, spawnNode, stopChild, watchOutput } from './proc.mjs';

/**
 * @typedef {object} ClientProc
 * @property {number} pid
 * @property {(msg: object) => void} send
 * @property {(op: string, timeoutMs: number) => Promise<any>} next the next reply with this op
 * @property {(msg: object, op: string, timeoutMs: number) => Promise<any>} request
 * @property {() => number} cpu CPU time so far, µs
 * @property {() => Promise<void>} close ask it to close its connections and exit; kill if it does not
 * @property {string[]} lines
 */

/**
 * @param {string} script file under bench/clients/
 * @returns {ClientProc}
 */
export function spawnClient(script) {
  const child = spawnNode([path.join(ROOT, 'bench', 'clients', script)], { ipc: true, cwd: ROOT });
  const out = watchOutput(child, 50);
  /** @type {any[]} */
  const inbox = [];
  /** @type {Set<() => void>} */
  const waiters = new Set();
  child.on('message', (m) => {
    inbox.push(m);
    for (const w of [...waiters]) w();
  });
  child.on('exit', () => {
    for (const w of [...waiters]) w();
  });
  const pid = /** @type {number} */ (child.pid);
  /**
   * @param {string} op
   * @param {number} timeoutMs
   */
  const next = (op, timeoutMs) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const err = inbox.findIndex((m) => m.op === 'error');
        if (err >= 0) {
          finish();
          reject(new Error(`client ${script} failed: ${inbox.splice(err, 1)[0].message}`));
          return;
        }
        const i = inbox.findIndex((m) => m.op === op);
        if (i >= 0) {
          finish();
          resolve(inbox.splice(i, 1)[0]);
          return;
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          finish();
          reject(new Error(`client ${script} exited (${child.exitCode ?? child.signalCode}) before '${op}':\n${out.lines.join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`client ${script}: no '${op}' reply within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return {
    pid,
    lines: out.lines,
    send: (msg) => {
      if (child.connected) child.send(msg);
    },
    next,
    request(msg, op, timeoutMs) {
      if (child.connected) child.send(msg);
      return next(op, timeoutMs);
    },
    cpu: () => {
      try {
        return cpuMicros(pid);
      } catch {
        return Number.NaN;
      }
    },
    async close() {
      if (child.connected) child.send({ op: 'close' });
      await new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(undefined);
        const t = setTimeout(resolve, 3000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve(undefined);
        });
      });
      await stopChild(child, 2000);
    },
  };
}

// Source addresses are handed out from 127.0.0.0/8 without repeating within a run, from a
// random start: a client bound to an address picks its port at bind() time, and ports
// held in TIME_WAIT by connections of an earlier trial (or run) would make that slow and
// finally fail.
let nextAddress = 1 + Math.floor(Math.random() * 8_000_000);

/**
 * `count` loopback source addresses (127.x.y.z) not handed out before in this run.
 * @param {number} count
 */
export function freshAddresses(count) {
  /** @type {string[]} */
  const out = [];
  while (out.length < count) {
    const i = nextAddress++;
    if (nextAddress >= 16_000_000) nextAddress = 1;
    const b = (i >> 16) & 255;
    const c = (i >> 8) & 255;
    const d = i & 255;
    if (d === 0 || d === 255 || (b === 0 && c === 0 && d === 1)) continue;
    out.push(`127.${b}.${c}.${d}`);
  }
  return out;
}
