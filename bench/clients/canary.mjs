// @ts-check
/**
 * The canary of the stats and attack scenarios (a separate process, driven over IPC):
 * one or two `ws` connections in one room, from a source address of their own, sending
 * one small probe every `probeMs` round-robin over the connections and measuring each
 * round trip:
 *
 * - `ping`: the app-level `{"type":"ping"}`, answered by `{"type":"pong"}` (pongs carry
 *   no id: they answer a connection's pings in order);
 * - `message`: `{"type":"message","room","content":"cn:<seq>"}`, answered by its own echo;
 *   with two canaries the other one must receive it too (a delivery).
 *
 * Probes are grouped in windows: `mark` closes the current window (probes sent after it
 * belong to the next one), waits `settleMs` for the window's last answers, and reports
 * probes sent, answered, lost (unanswered after the settle time), the round-trip
 * p50/p99/max (all probes and per kind), deliveries to the other canary lost, error
 * frames by code, and connections closed.
 *
 * Commands: start, mark, close. Replies: started, window.
 */
import WebSocket from 'ws';
import { newHistogram, quantile, record } from '../lib/stats.mjs';

/**
 * @typedef {object} Probe
 * @property {'ping' | 'message'} kind
 * @property {number} conn index of the sending connection
 * @property {number} sentAt µs (performance.now)
 * @property {number} rtt µs, -1 until answered
 * @property {boolean} delivered (message, two canaries) the other canary received it
 */

/** @typedef {{ id: number, probes: Probe[] }} Window */

/** @type {{ ws: WebSocket, pings: Probe[] }[]} */
const conns = [];
/** @type {Map<number, Probe>} */
const messages = new Map();
/** @type {Window} */
let current = { id: 0, probes: [] };
/** @type {Record<string, number>} */
let errors = {};
let closes = 0;
let seq = 0;
let tick = 0;
/** @type {NodeJS.Timeout | undefined} */
let timer;
let roomName = '';

const nowUs = () => performance.now() * 1000;

/**
 * @param {string} url ws://...
 * @param {string} localAddress
 * @param {number} index
 * @returns {Promise<void>}
 */
function open(url, localAddress, index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, localAddress, handshakeTimeout: 10_000 });
    const c = { ws, pings: /** @type {Probe[]} */ ([]) };
    let ready = false;
    let joined = false;
    ws.on('message', (data) => {
      const text = data.toString();
      /** @type {any} */
      let f;
      try {
        f = JSON.parse(text);
      } catch {
        return;
      }
      if (!ready) {
        // own join notice, then the user list
        if (f.type === 'join') joined = true;
        else if (f.type === 'user_list' && joined) {
          ready = true;
          conns[index] = c;
          resolve();
        }
        return;
      }
      onFrame(index, f);
    });
    ws.on('error', (err) => {
      if (!ready) reject(err);
    });
    ws.on('close', () => {
      if (ready) closes++;
      else reject(new Error('closed before joining'));
    });
  });
}

/**
 * @param {number} index
 * @param {any} f
 */
function onFrame(index, f) {
  const t = nowUs();
  if (f.type === 'pong') {
    const p = conns[index]?.pings.shift();
    if (p) p.rtt = t - p.sentAt;
  } else if (f.type === 'message' && typeof f.content === 'string' && f.content.startsWith('cn:')) {
    const p = messages.get(Number(f.content.slice(3)));
    if (!p) return;
    if (p.conn === index) p.rtt = t - p.sentAt;
    else p.delivered = true;
    if (p.rtt >= 0 && (p.delivered || conns.length < 2)) messages.delete(Number(f.content.slice(3)));
  } else if (f.type === 'error') {
    const code = f.data?.code ?? 'unknown';
    errors[code] = (errors[code] ?? 0) + 1;
    // A dropped ping answers with an error that names no room: it answers that ping.
    if (code === 'rate_limited' && f.room === undefined) conns[index]?.pings.shift();
  }
}

/** @param {number} kindsLength @param {('ping' | 'message')[]} kinds */
function probe(kindsLength, kinds) {
  const n = conns.length;
  const i = tick++;
  const index = i % n;
  const c = conns[index];
  if (!c || c.ws.readyState !== WebSocket.OPEN) return;
  const kind = kinds[Math.floor(i / n) % kindsLength];
  /** @type {Probe} */
  const p = { kind, conn: index, sentAt: nowUs(), rtt: -1, delivered: false };
  if (kind === 'ping') {
    c.pings.push(p);
    c.ws.send('{"type":"ping"}');
  } else {
    const s = seq++;
    messages.set(s, p);
    c.ws.send(`{"type":"message","room":"${roomName}","content":"cn:${s}"}`);
  }
  current.probes.push(p);
}

/**
 * @param {Probe[]} probes
 */
function summarize(probes) {
  const h = newHistogram();
  let max = 0;
  let answered = 0;
  for (const p of probes) {
    if (p.rtt < 0) continue;
    answered++;
    record(h, p.rtt);
    if (p.rtt > max) max = p.rtt;
  }
  return { probes: probes.length, answered, lost: probes.length - answered, p50us: quantile(h, 0.5), p99us: quantile(h, 0.99), maxUs: answered ? max : Number.NaN };
}

/**
 * @param {{ url: string, room: string, localAddress: string, conns: number, probeMs: number, kinds: ('ping' | 'message')[] }} cmd
 */
async function start(cmd) {
  roomName = cmd.room;
  const url = `${cmd.url.replace(/^http/, 'ws')}/ws/${cmd.room}`;
  for (let i = 0; i < Math.max(1, Math.min(2, cmd.conns)); i++) await open(url, cmd.localAddress, i);
  // Let the second canary's join notice reach the first before probing.
  await new Promise((r) => setTimeout(r, 100));
  /** @type {('ping' | 'message')[]} */
  const kinds = cmd.kinds.length ? cmd.kinds : ['ping'];
  timer = setInterval(() => probe(kinds.length, kinds), cmd.probeMs);
  send({ op: 'started', conns: conns.length });
}

/** @param {{ settleMs: number }} cmd */
async function mark(cmd) {
  const old = current;
  const oldErrors = errors;
  const oldCloses = closes;
  current = { id: old.id + 1, probes: [] };
  errors = {};
  closes = 0;
  await new Promise((r) => setTimeout(r, cmd.settleMs));
  /** @type {Record<string, ReturnType<typeof summarize>>} */
  const byKind = {};
  for (const kind of /** @type {const} */ (['ping', 'message'])) {
    const mine = old.probes.filter((p) => p.kind === kind);
    if (mine.length) byKind[kind] = summarize(mine);
  }
  const msgs = old.probes.filter((p) => p.kind === 'message');
  const two = conns.length === 2;
  send({
    op: 'window',
    ...summarize(old.probes),
    byKind,
    deliveriesExpected: two ? msgs.length : 0,
    deliveriesLost: two ? msgs.filter((p) => !p.delivered).length : 0,
    errors: oldErrors,
    closes: oldCloses,
  });
}

/** @param {unknown} msg */
function send(msg) {
  if (process.connected) process.send?.(msg);
}

process.on('message', (/** @type {any} */ cmd) => {
  if (cmd.op === 'start') start(cmd).catch((err) => send({ op: 'error', message: String(err?.stack ?? err) }));
  else if (cmd.op === 'mark') mark(cmd).catch((err) => send({ op: 'error', message: String(err?.stack ?? err) }));
  else if (cmd.op === 'close') {
    clearInterval(timer);
    for (const c of conns) c.ws.terminate();
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
