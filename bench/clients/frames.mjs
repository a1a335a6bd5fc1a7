// @ts-check
/**
 * The `frames` scenario's two processes (each spawned fresh, driven over IPC):
 *
 * - `micro`: the in-process microbenchmark. For every frame of bench/lib/frames.mjs,
 *   time `JSON.parse(text)` and roomwire's `checkFrame(text)` (dist/index.js: JSON.parse
 *   plus the shape check) in alternating batches of about `batchMs` each, after a
 *   warm-up, and report the per-call time of every batch.
 * - `connect` / `send`: a sender and a receiver in one room of a real server; `send`
 *   sends one frame text over and over for `seconds`, at most `window` unechoed (the
 *   sender is a member: its own echo acknowledges), then waits for the last echoes and
 *   deliveries and reports the counts.
 *
 * Commands: micro, connect, send, close. Replies: micro, connected, sent.
 */
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { scenarioFrames } from '../lib/frames.mjs';
import { member as joinAs } from '../lib/member.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let sink = 0;

/**
 * Per-call microseconds of `fn` over `n` calls.
 * @param {() => unknown} fn
 * @param {number} n
 */
function batch(fn, n) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    if (fn() === undefined) sink++;
  }
  return ((performance.now() - t0) * 1000) / n;
}

/**
 * @param {{ batches: number, batchMs: number, warmupMs: number }} cmd
 */
async function micro(cmd) {
  const { checkFrame } = await import(pathToFileURL(path.join(ROOT, 'dist', 'index.js')).href);
  /** @type {any[]} */
  const out = [];
  for (const f of scenarioFrames('frames')) {
    const text = f.text;
    const parse = () => JSON.parse(text);
    const check = () => checkFrame(text);
    const result = checkFrame(text);
    // warm-up: both functions, alternately, until warmupMs has passed
    const w0 = performance.now();
    let parseUs = batch(parse, 1);
    let checkUs = batch(check, 1);
    while (performance.now() - w0 < cmd.warmupMs) {
      parseUs = batch(parse, Math.max(1, Math.round(5000 / parseUs)));
      checkUs = batch(check, Math.max(1, Math.round(5000 / checkUs)));
    }
    const nParse = Math.max(3, Math.round((cmd.batchMs * 1000) / parseUs));
    const nCheck = Math.max(3, Math.round((cmd.batchMs * 1000) / checkUs));
    /** @type {number[]} */
    const parseBatches = [];
    /** @type {number[]} */
    const checkBatches = [];
    for (let b = 0; b < cmd.batches; b++) {
      // alternate which goes first, so a drift does not favour one
      if (b % 2 === 0) {
        parseBatches.push(batch(parse, nParse));
        checkBatches.push(batch(check, nCheck));
      } else {
        checkBatches.push(batch(check, nCheck));
        parseBatches.push(batch(parse, nParse));
      }
    }
    out.push({
      name: f.name,
      describe: f.describe,
      bytes: Buffer.byteLength(text),
      checkResult: result.ok ? 'ok' : result.code,
      callsPerBatch: { parse: nParse, check: nCheck },
      parseBatchesUs: parseBatches,
      checkBatchesUs: checkBatches,
    });
  }
  send({ op: 'micro', frames: out, sink });
}

/** @type {{ sender: WebSocket, receiver: WebSocket } | undefined} */
let pair;
let echoes = 0;
let deliveries = 0;
/** @type {Record<string, number>} */
const errors = {};
let onEcho = () => {};

/**
 * Open a connection to `/ws/<room>` and resolve once its own join and user list arrived.
 * @param {string} url
 * @param {string} localAddress
 * @param {(text: string) => void} onFrame
 */
function member(url, localAddress, onFrame) {
  return joinAs(url, { localAddress, onFrame, onClose: (code) => (errors[`close_${code}`] = (errors[`close_${code}`] ?? 0) + 1) });
}

/**
 * @param {string} text
 */
function countFrame(text) {
  if (text.startsWith('{"type":"error"')) {
    const code = /"code":"([a-z_]+)"/.exec(text)?.[1] ?? 'unknown';
    errors[code] = (errors[code] ?? 0) + 1;
    return false;
  }
  return text.startsWith('{"type":"message"');
}

/** @param {{ url: string, room: string, localAddress: string }} cmd */
async function connect(cmd) {
  const url = `${cmd.url.replace(/^http/, 'ws')}/ws/${cmd.room}`;
  const receiver = await member(url, cmd.localAddress, (text) => {
    if (countFrame(text)) deliveries++;
  });
  const sender = await member(url, cmd.localAddress, (text) => {
    if (countFrame(text)) {
      echoes++;
      onEcho();
    }
  });
  pair = { sender, receiver };
  // the sender's join notice reaches the receiver first
  await new Promise((r) => setTimeout(r, 200));
  echoes = 0;
  deliveries = 0;
  send({ op: 'connected' });
}

/** @param {{ text: string, seconds: number, window: number }} cmd */
async function sendFrames(cmd) {
  if (!pair) throw new Error('not connected');
  const ws = pair.sender;
  const e0 = echoes;
  const d0 = deliveries;
  let sent = 0;
  const end = performance.now() + cmd.seconds * 1000;
  const t0 = performance.now();
  await new Promise((resolve) => {
    const pump = () => {
      while (performance.now() < end && sent - (echoes - e0) < cmd.window) {
        ws.send(cmd.text);
        sent++;
      }
      if (performance.now() >= end && echoes - e0 >= sent) resolve(undefined);
    };
    onEcho = pump;
    pump();
    // the last echoes: wait at most 10 s past the end
    const guard = setInterval(() => {
      if (performance.now() >= end && (echoes - e0 >= sent || performance.now() > end + 10_000)) {
        clearInterval(guard);
        resolve(undefined);
      } else pump();
    }, 20);
  });
  const ms = performance.now() - t0;
  // deliveries to the receiver trail the echo by a moment
  const deadline = performance.now() + 5000;
  while (deliveries - d0 < sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  onEcho = () => {};
  send({ op: 'sent', sent, echoed: echoes - e0, delivered: deliveries - d0, ms, errors: { ...errors } });
}

/** @param {unknown} msg */
function send(msg) {
  if (process.connected) process.send?.(msg);
}

process.on('message', (/** @type {any} */ cmd) => {
  const fail = (/** @type {any} */ err) => send({ op: 'error', message: String(err?.stack ?? err) });
  if (cmd.op === 'micro') micro(cmd).catch(fail);
  else if (cmd.op === 'connect') connect(cmd).catch(fail);
  else if (cmd.op === 'send') sendFrames(cmd).catch(fail);
  else if (cmd.op === 'close') {
    pair?.sender.terminate();
    pair?.receiver.terminate();
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
