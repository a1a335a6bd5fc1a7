// @ts-check
/**
 * Fan-out load generator (a separate process, driven by the harness over IPC).
 *
 * It holds some members of some rooms of one target, and the sender of some of those
 * rooms. In a trial every sender sends `messages` messages to its room, keeping at most
 * `window` in flight: its own echo (the sender is a member and receives its message
 * like everyone) is its acknowledgement. Every member counts every delivery exactly:
 * a bitmap per member gives distinct deliveries, duplicates and reorderings; the send
 * time embedded in the content gives the delivery latency (one monotonic clock for
 * every process of the machine).
 *
 * Commands (IPC): connect, run, close. Replies: connected, done, closed.
 */
import { buildContent, connect, parseMark } from './shim.mjs';
import { nowMicros } from '../lib/proc.mjs';
import { newHistogram, record } from '../lib/stats.mjs';

/**
 * @typedef {object} Member
 * @property {string} room
 * @property {import('./shim.mjs').Conn} conn
 * @property {Sender | undefined} sender set on the room's sending member
 * @property {Uint8Array} seen
 * @property {number} distinct
 * @property {number} maxSeq
 * @property {boolean} ready
 * @property {boolean} closed
 */
/**
 * @typedef {object} Sender
 * @property {Member} member
 * @property {number} next next sequence number to send
 * @property {number} acked own echoes received (distinct)
 */

/** @type {Member[]} */
let members = [];
/** @type {Sender[]} */
let senders = [];
/** @type {'ws' | 'socketio'} */
let kind = 'ws';
let pad = '';

/** Per-trial state. */
const trial = {
  id: 0,
  running: false,
  messages: 0,
  window: 1,
  hist: newHistogram(),
  distinct: 0,
  duplicates: 0,
  reordered: 0,
  unexpected: 0,
  otherFrames: 0,
  /** @type {Record<string, number>} */
  otherTypes: {},
  otherSample: /** @type {string[]} */ ([]),
  closes: 0,
  /** @type {Record<string, number>} */
  closeCodes: {},
  complete: 0,
  firstSendAt: 0,
  lastDeliveryAt: 0,
  lastActivity: 0,
  sendersDone: 0,
  /** @type {() => void} */
  finish: () => {},
};

const mark = { seq: 0, sentAt: 0 };

/**
 * @param {Sender} s
 */
function pump(s) {
  const m = trial.messages;
  const w = trial.window;
  const room = s.member.room;
  while (s.next < m && s.next - s.acked < w) {
    const t = nowMicros();
    if (trial.firstSendAt === 0) trial.firstSendAt = t;
    s.member.conn.sendMessage(room, buildContent(s.next, t, pad));
    s.next++;
  }
}

/**
 * @param {Member} mem
 * @param {string} text
 */
function onOtherFrame(mem, text) {
  trial.otherFrames++;
  const m = /"type":"([a-z_]+)"/.exec(text);
  const type = m ? m[1] : 'unparsed';
  trial.otherTypes[type] = (trial.otherTypes[type] ?? 0) + 1;
  if (type !== 'join' && type !== 'user_list' && type !== 'leave' && trial.otherSample.length < 5) trial.otherSample.push(text.slice(0, 300));
  void mem;
}

/**
 * @param {Member} mem
 * @param {string} text
 */
function onText(mem, text) {
  if (!parseMark(text, mark)) return onOtherFrame(mem, text);
  if (!trial.running) {
    trial.unexpected++;
    return;
  }
  const now = nowMicros();
  trial.lastActivity = now;
  record(trial.hist, now - mark.sentAt);
  const seq = mark.seq;
  if (seq >= trial.messages) {
    trial.unexpected++;
    return;
  }
  if (mem.seen[seq] !== 0) {
    trial.duplicates++;
    return;
  }
  mem.seen[seq] = 1;
  mem.distinct++;
  trial.distinct++;
  trial.lastDeliveryAt = now;
  if (seq < mem.maxSeq) trial.reordered++;
  else mem.maxSeq = seq;
  const s = mem.sender;
  if (s !== undefined) {
    s.acked++;
    if (s.acked === trial.messages) trial.sendersDone++;
    else pump(s);
  }
  if (mem.distinct === trial.messages) {
    trial.complete++;
    if (trial.complete === members.length) trial.finish();
  }
}

/**
 * Connect the members: `rooms` lists, per room, how many members this process holds and
 * whether it holds the sender (the first member).
 * @param {{ kind: 'ws' | 'socketio', url: string, rooms: { room: string, members: number, sender: boolean }[],
 *   concurrency: number, contentBytes: number, timeoutMs: number }} cmd
 */
async function doConnect(cmd) {
  kind = cmd.kind;
  const base = buildContent(0, 0, '');
  pad = 'x'.repeat(Math.max(0, cmd.contentBytes - base.length));
  /** @type {{ room: string, sender: boolean }[]} */
  const todo = [];
  for (const r of cmd.rooms) for (let i = 0; i < r.members; i++) todo.push({ room: r.room, sender: r.sender && i === 0 });
  /** @type {Record<string, number>} */
  const failures = {};
  let next = 0;
  const deadline = Date.now() + cmd.timeoutMs;
  const worker = async () => {
    while (next < todo.length && Date.now() < deadline) {
      const item = todo[next++];
      await new Promise((resolve) => {
        /** @type {Member} */
        const mem = {
          room: item.room,
          conn: /** @type {any} */ (undefined),
          sender: undefined,
          seen: new Uint8Array(0),
          distinct: 0,
          maxSeq: -1,
          ready: false,
          closed: false,
        };
        mem.conn = connect(kind, { url: cmd.url, room: item.room }, {
          onReady() {
            mem.ready = true;
            members.push(mem);
            if (item.sender) {
              mem.sender = { member: mem, next: 0, acked: 0 };
              senders.push(mem.sender);
            }
            resolve(undefined);
          },
          onText: (text) => onText(mem, text),
          onOther: (text) => onOtherFrame(mem, text),
          onClose(code) {
            mem.closed = true;
            trial.closes++;
            trial.closeCodes[code] = (trial.closeCodes[code] ?? 0) + 1;
          },
          onFail(why) {
            failures[why] = (failures[why] ?? 0) + 1;
            resolve(undefined);
          },
        });
      });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, worker));
  send({ op: 'connected', members: members.length, senders: senders.length, wanted: todo.length, failures });
}

/**
 * Run one trial: reset, wait for `startAt` (µs, monotonic), send, and report once every
 * member has every message, or nothing arrived for `quietMs`, or `timeoutMs` passed.
 * @param {{ id: number, window: number, messages: number, startAt: number, quietMs: number, timeoutMs: number }} cmd
 */
function doRun(cmd) {
  Object.assign(trial, {
    id: cmd.id,
    running: true,
    messages: cmd.messages,
    window: cmd.window,
    hist: newHistogram(),
    distinct: 0,
    duplicates: 0,
    reordered: 0,
    unexpected: 0,
    otherFrames: 0,
    otherTypes: {},
    otherSample: [],
    closes: 0,
    closeCodes: {},
    complete: 0,
    firstSendAt: 0,
    lastDeliveryAt: 0,
    lastActivity: cmd.startAt,
    sendersDone: 0,
  });
  for (const m of members) {
    m.seen = new Uint8Array(cmd.messages);
    m.distinct = 0;
    m.maxSeq = -1;
  }
  for (const s of senders) {
    s.next = 0;
    s.acked = 0;
  }
  let finished = false;
  /** @type {NodeJS.Timeout | undefined} */
  let watch;
  /** @type {NodeJS.Timeout | undefined} */
  let hard;
  trial.finish = () => {
    if (finished) return;
    finished = true;
    trial.running = false;
    clearInterval(watch);
    clearTimeout(hard);
    const open = members.filter((m) => !m.closed).length;
    send({
      op: 'done',
      id: trial.id,
      members: members.length,
      open,
      senders: senders.length,
      sendersDone: trial.sendersDone,
      expected: members.length * trial.messages,
      distinct: trial.distinct,
      duplicates: trial.duplicates,
      reordered: trial.reordered,
      unexpected: trial.unexpected,
      incompleteMembers: members.length - trial.complete,
      otherFrames: trial.otherFrames,
      otherTypes: trial.otherTypes,
      otherSample: trial.otherSample,
      closes: trial.closes,
      closeCodes: trial.closeCodes,
      firstSendAt: trial.firstSendAt,
      lastDeliveryAt: trial.lastDeliveryAt,
      hist: Array.from(trial.hist),
    });
  };
  if (members.length === 0) {
    trial.finish();
    return;
  }
  const delayMs = Math.max(0, (cmd.startAt - nowMicros()) / 1000);
  setTimeout(() => {
    for (const s of senders) pump(s);
  }, delayMs);
  watch = setInterval(() => {
    if (nowMicros() - trial.lastActivity > cmd.quietMs * 1000) trial.finish();
  }, 50);
  hard = setTimeout(() => trial.finish(), delayMs + cmd.timeoutMs);
}

/** @param {unknown} msg */
function send(msg) {
  if (process.connected) process.send?.(msg);
}

process.on('message', (/** @type {any} */ cmd) => {
  if (cmd.op === 'connect') {
    doConnect(cmd).catch((err) => send({ op: 'error', message: String(err?.stack ?? err) }));
  } else if (cmd.op === 'run') {
    doRun(cmd);
  } else if (cmd.op === 'close') {
    for (const m of members) m.conn.terminate();
    setTimeout(() => process.exit(0), 100);
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
