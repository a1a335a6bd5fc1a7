// @ts-check
/**
 * The attacker of the `attack` scenario (a separate process, driven over IPC, from
 * 127.0.0.1). One command per attack; each runs for `seconds`, tears its connections
 * down, and reports what it did and whether the server cut it off:
 *
 * - `flood` (a): one connection in its own room sends the costly frame over the message
 *   rate, `burst` frames at a time, and after each burst one app-level ping sent at
 *   least `gapMs` after the previous cycle's last answer, so each cycle has a frame the
 *   rate limiter accepts (a token refills in 50 ms at 20/s) and two bursts stay under the
 *   close after 40 drops in a row. Every frame gets one answer in order (its echo, an
 *   `error` frame, or the pong), so the ping's answer closes the cycle; without one
 *   within 2 s the next cycle starts anyway.
 * - `within` (b): `conns` connections, each in a room of its own, each sending the
 *   frame `rate` times a second (a timer, never faster).
 * - `pingflood` (c): a raw TCP connection that completes the WebSocket upgrade and then
 *   writes masked, empty protocol ping frames as fast as the socket takes them
 *   (1,000 frames per write, waiting for `drain`), reading and counting the pongs.
 * - `slowloris` (d): `count` TCP connections that each send `GET /ws HTTP/1.1\r\nHost: x\r\n`
 *   and never the blank line that ends the request, held open.
 * - `readers` (e): `readers` raw connections upgraded into one room that then stop
 *   reading (socket.pause()), and `senders` `ws` connections in that room sending the
 *   frame `rate` times a second each.
 * - `statsloop` (f): `loops` loops requesting GET /stats.json back to back.
 *
 * Commands: flood, within, pingflood, slowloris, readers, statsloop, close.
 * Reply: done { ...counts, closes (by the server, with the time into the attack) }.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { keysFrame, plainFrame } from '../lib/frames.mjs';
import { member as joinAs } from '../lib/member.mjs';

const SOURCE = '127.0.0.1';

/**
 * @param {string} url http://127.0.0.1:PORT
 */
function portOf(url) {
  return Number(new URL(url).port);
}

/**
 * Answers counted per frame type, error codes by code.
 */
function tally() {
  return {
    /** @type {Record<string, number>} */
    types: {},
    /** @type {Record<string, number>} */
    errors: {},
    /** @param {string} text */
    add(text) {
      const type = /^\{"type":"([a-z_]+)"/.exec(text)?.[1] ?? 'other';
      this.types[type] = (this.types[type] ?? 0) + 1;
      if (type === 'error') {
        const code = /"code":"([a-z_]+)"/.exec(text)?.[1] ?? 'unknown';
        this.errors[code] = (this.errors[code] ?? 0) + 1;
      }
    },
  };
}

/**
 * A `ws` member of `/ws/<room>`, resolved once its own join and user list arrived.
 * @param {string} url
 * @param {string} room
 * @param {(text: string) => void} onFrame frames after the user list
 * @param {(code: number) => void} onClose
 */
function member(url, room, onFrame, onClose) {
  return joinAs(`${url.replace(/^http/, 'ws')}/ws/${room}`, { localAddress: SOURCE, maxPayload: 1 << 24, handshakeTimeout: 10_000, onFrame, onClose });
}

/**
 * A raw TCP connection upgraded to a WebSocket at `path`; resolves with the socket
 * (left flowing, any bytes after the response head ignored).
 * @param {string} url
 * @param {string} path
 * @returns {Promise<net.Socket>}
 */
function rawUpgrade(url, path) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: portOf(url), host: '127.0.0.1', localAddress: SOURCE });
    let head = '';
    const onData = (/** @type {Buffer} */ d) => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) {
        socket.destroy();
        reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
        return;
      }
      resolve(socket);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.on('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  });
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The frame a command names, to `room`.
 * @param {'keys' | 'plain'} frame
 * @param {string} room
 */
function frameText(frame, room) {
  return frame === 'plain' ? plainFrame(room) : keysFrame(room);
}

/**
 * (a) Over-rate flood, kept under the drop-streak close.
 * @param {{ url: string, frame: 'keys' | 'plain', burst: number, gapMs: number, seconds: number }} cmd
 */
async function flood(cmd) {
  const text = frameText(cmd.frame, 'atk-a');
  const t = tally();
  let answers = 0;
  /** @type {{ code: number, atMs: number }[]} */
  const closes = [];
  let closed = false;
  const t0 = performance.now();
  /** @type {() => void} */
  let wake = () => {};
  let pongs = 0;
  const ws = await member(cmd.url, 'atk-a', (text) => {
    answers++;
    if (text.startsWith('{"type":"pong"')) pongs++;
    t.add(text);
    wake();
  }, (code) => {
    closed = true;
    closes.push({ code, atMs: Math.round(performance.now() - t0) });
    wake();
  });
  let sent = 0;
  let pings = 0;
  let cycles = 0;
  let timeouts = 0;
  const end = t0 + cmd.seconds * 1000;
  let cycleStart = performance.now();
  while (!closed && performance.now() < end) {
    cycles++;
    for (let i = 0; i < cmd.burst && !closed; i++) {
      ws.send(text);
      sent++;
    }
    const wait = cycleStart + cmd.gapMs - performance.now();
    if (wait > 0) await sleep(wait);
    if (closed) break;
    const pongsBefore = pongs;
    ws.send('{"type":"ping"}');
    pings++;
    // Every frame sent so far is answered, in order: the ping's answer is answer number
    // sent + pings (its pong, or an error if it was dropped). A server that drops
    // frames without answering still answers the ping (it has a token): its pong ends
    // the cycle too.
    const want = sent + pings;
    const deadline = performance.now() + 2000;
    while (!closed && answers < want && pongs === pongsBefore && performance.now() < deadline) {
      await new Promise((resolve) => {
        wake = () => resolve(undefined);
        setTimeout(resolve, 50);
      });
    }
    if (answers < want && pongs === pongsBefore) timeouts++;
    cycleStart = performance.now();
  }
  const ms = performance.now() - t0;
  ws.terminate();
  return { sent, pings, pongs, cycles, answerTimeouts: timeouts, answers, answerTypes: t.types, errors: t.errors, framesPerSec: sent / (ms / 1000), closes, ms };
}

/**
 * (b) Within the rate, several connections.
 * @param {{ url: string, frame: 'keys' | 'plain', conns: number, rate: number, seconds: number }} cmd
 */
async function within(cmd) {
  const texts = Array.from({ length: cmd.conns }, (_, i) => frameText(cmd.frame, `atk-b-${i}`));
  const t = tally();
  /** @type {{ code: number, atMs: number }[]} */
  const closes = [];
  const t0 = performance.now();
  /** @type {WebSocket[]} */
  const sockets = [];
  for (let i = 0; i < cmd.conns; i++) {
    sockets.push(await member(cmd.url, `atk-b-${i}`, (text) => t.add(text), (code) => closes.push({ code, atMs: Math.round(performance.now() - t0) })));
  }
  let sent = 0;
  const timers = sockets.map((ws, i) =>
    setTimeout(() => {
      timers[i] = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(texts[i]);
          sent++;
        }
      }, 1000 / cmd.rate);
    }, (i * 1000) / cmd.rate / cmd.conns),
  );
  await sleep(cmd.seconds * 1000);
  for (const tm of timers) clearInterval(tm);
  // the last answers
  await sleep(300);
  const ms = performance.now() - t0;
  for (const ws of sockets) ws.terminate();
  return { sent, answerTypes: t.types, errors: t.errors, framesPerSec: sent / (cmd.seconds), closes, ms };
}

/**
 * `count` masked, empty ping frames (FIN+ping, MASK|0, a 4-byte masking key each).
 * @param {number} count
 */
function pings(count) {
  const b = Buffer.alloc(count * 6);
  for (let i = 0; i < count; i++) {
    b[i * 6] = 0x89;
    b[i * 6 + 1] = 0x80;
    randomBytes(4).copy(b, i * 6 + 2);
  }
  return b;
}

/**
 * (c) Protocol ping flood over a raw socket. First a probe: 1,000 pings in one write,
 * on a connection of its own (ws terminates a connection with 60 automatic pongs
 * pending, so this is cut at once; `burstCutMs` says when). Then the flood: `perWrite`
 * pings per write, the next write as soon as their pongs are back (so no read of the
 * server holds 60 of them), or after `stallMs`; after three writes in a row whose pongs
 * did not all come back (the server drops pings), 1,000 pings per write as fast as the
 * socket takes them.
 * @param {{ url: string, seconds: number, perWrite: number, stallMs: number }} cmd
 */
async function pingflood(cmd) {
  // the probe
  const probe = await rawUpgrade(cmd.url, '/ws');
  const p0 = performance.now();
  const burstCutMs = await new Promise((resolve) => {
    const tm = setTimeout(() => resolve(-1), 1000);
    probe.on('data', () => {});
    probe.on('error', () => {});
    probe.on('close', () => {
      clearTimeout(tm);
      resolve(Math.round(performance.now() - p0));
    });
    probe.write(pings(1000));
  });
  probe.destroy();

  const socket = await rawUpgrade(cmd.url, '/ws');
  const t0 = performance.now();
  let received = 0;
  /** @type {{ code: number, atMs: number }[]} */
  const closes = [];
  let closed = false;
  /** @type {() => void} */
  let wake = () => {};
  socket.on('data', (d) => {
    received += d.length;
    wake();
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
    closes.push({ code: 1006, atMs: Math.round(performance.now() - t0) });
    wake();
  });
  const per = Math.max(1, Math.min(59, cmd.perWrite));
  const chunk = pings(per);
  const big = pings(1000);
  let sent = 0;
  let stalls = 0;
  let streak = 0;
  /** @type {number} when the flood switched to writing without waiting for pongs, ms into it; -1 never */
  let pumpFromMs = -1;
  const end = t0 + cmd.seconds * 1000;
  while (!closed && performance.now() < end) {
    if (pumpFromMs < 0) {
      socket.write(chunk);
      sent += per;
      // A pong to an empty ping is 2 bytes: wait for all of them, but no longer than
      // stallMs.
      const want = sent * 2;
      const deadline = performance.now() + cmd.stallMs;
      while (!closed && received < want && performance.now() < deadline) {
        await new Promise((resolve) => {
          wake = () => resolve(undefined);
          setTimeout(resolve, 5);
        });
      }
      if (received < want) {
        stalls++;
        // The server has stopped answering pings (it drops them): nothing is pending
        // in it, so from now on write as fast as the socket takes.
        if (++streak >= 3) pumpFromMs = Math.round(performance.now() - t0);
      } else {
        streak = 0;
      }
    } else {
      const ok = socket.write(big);
      sent += 1000;
      if (!ok) {
        await new Promise((resolve) => {
          const done = () => {
            clearTimeout(tm);
            socket.off('drain', done);
            socket.off('close', done);
            resolve(undefined);
          };
          const tm = setTimeout(done, Math.max(1, end - performance.now()));
          socket.on('drain', done);
          socket.on('close', done);
        });
      } else {
        await new Promise((r) => setImmediate(r));
      }
    }
  }
  const ms = performance.now() - t0;
  await sleep(100);
  socket.destroy();
  return { burstProbeCutAfterMs: burstCutMs, perWrite: per, pumpFromMs, pingsSent: sent, pingsPerSec: sent / (ms / 1000), pongsReceived: Math.floor(received / 2), stalls, closes, ms };
}

/**
 * (d) Slowloris: unfinished upgrade requests, held.
 * @param {{ url: string, count: number, seconds: number }} cmd
 */
async function slowloris(cmd) {
  const port = portOf(cmd.url);
  /** @type {net.Socket[]} */
  const sockets = [];
  /** @type {Record<string, number>} */
  const failures = {};
  let opened = 0;
  let closedByServer = 0;
  let firstCloseMs = -1;
  let open = 0;
  let maxOpen = 0;
  let stopping = false;
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < cmd.count && performance.now() - t0 < cmd.seconds * 1000) {
      next++;
      await new Promise((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1', localAddress: SOURCE });
        let connected = false;
        s.on('connect', () => {
          connected = true;
          opened++;
          open++;
          if (open > maxOpen) maxOpen = open;
          sockets.push(s);
          s.write('GET /ws HTTP/1.1\r\nHost: x\r\n');
          resolve(undefined);
        });
        s.on('data', () => {});
        s.on('error', (err) => {
          const code = /** @type {NodeJS.ErrnoException} */ (err).code ?? 'error';
          if (!connected) {
            failures[code] = (failures[code] ?? 0) + 1;
            resolve(undefined);
          }
        });
        s.on('close', () => {
          if (!connected) return;
          open--;
          if (!stopping) {
            closedByServer++;
            if (firstCloseMs < 0) firstCloseMs = Math.round(performance.now() - t0);
          }
        });
      });
    }
  };
  await Promise.all(Array.from({ length: 100 }, worker));
  const openedMs = performance.now() - t0;
  const rest = cmd.seconds * 1000 - openedMs;
  if (rest > 0) await sleep(rest);
  const heldAtEnd = open;
  stopping = true;
  for (const s of sockets) s.destroy();
  return { wanted: cmd.count, opened, openedMs: Math.round(openedMs), failures, maxOpen, heldAtEnd, closedByServer, firstCloseMs, closes: closedByServer ? [{ code: 0, atMs: firstCloseMs, count: closedByServer }] : [], ms: performance.now() - t0 };
}

/**
 * (e) Members that never read, in a room flooded within the rate.
 * @param {{ url: string, frame: 'keys' | 'plain', readers: number, senders: number, rate: number, seconds: number }} cmd
 */
async function readers(cmd) {
  const text = frameText(cmd.frame, 'atk-e');
  const t = tally();
  /** @type {{ code: number, atMs: number }[]} */
  const closes = [];
  /** @type {net.Socket[]} */
  const raw = [];
  for (let i = 0; i < cmd.readers; i++) {
    const s = await rawUpgrade(cmd.url, '/ws/atk-e');
    s.on('error', () => {});
    s.pause();
    raw.push(s);
  }
  const t0 = performance.now();
  /** @type {WebSocket[]} */
  const senders = [];
  for (let i = 0; i < cmd.senders; i++) {
    senders.push(await member(cmd.url, 'atk-e', (text) => t.add(text), (code) => closes.push({ code, atMs: Math.round(performance.now() - t0) })));
  }
  let sent = 0;
  const timers = senders.map((ws) =>
    setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(text);
        sent++;
      }
    }, 1000 / cmd.rate),
  );
  await sleep(cmd.seconds * 1000);
  for (const tm of timers) clearInterval(tm);
  const ms = performance.now() - t0;
  for (const ws of senders) ws.terminate();
  for (const s of raw) s.destroy();
  return { readers: raw.length, senders: senders.length, sent, bytesPerReader: sent * Buffer.byteLength(text), answerTypes: t.types, errors: t.errors, closes, ms };
}

/**
 * (f) /stats.json loops.
 * @param {{ url: string, loops: number, seconds: number }} cmd
 */
async function statsloop(cmd) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: cmd.loops, localAddress: SOURCE });
  /** @type {Record<string, number>} */
  const statuses = {};
  /** @type {number[]} */
  const ms = [];
  const t0 = performance.now();
  const end = t0 + cmd.seconds * 1000;
  const one = () =>
    new Promise((resolve) => {
      const r0 = performance.now();
      const req = http.get(`${cmd.url}/stats.json`, { agent, timeout: 30_000 }, (res) => {
        res.on('data', () => {});
        res.on('end', () => {
          statuses[res.statusCode ?? 0] = (statuses[res.statusCode ?? 0] ?? 0) + 1;
          ms.push(performance.now() - r0);
          resolve(undefined);
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => {
        statuses[err.message] = (statuses[err.message] ?? 0) + 1;
        setTimeout(resolve, 10);
      });
    });
  const loop = async () => {
    while (performance.now() < end) await one();
  };
  await Promise.all(Array.from({ length: cmd.loops }, loop));
  agent.destroy();
  ms.sort((a, b) => a - b);
  return { requests: ms.length, statuses, medianMs: ms[ms.length >> 1] ?? Number.NaN, maxMs: ms[ms.length - 1] ?? Number.NaN, closes: [], ms: performance.now() - t0 };
}

/** @param {unknown} msg */
function send(msg) {
  if (process.connected) process.send?.(msg);
}

/** @type {Record<string, (cmd: any) => Promise<object>>} */
const attacks = { flood, within, pingflood, slowloris, readers, statsloop };

process.on('message', (/** @type {any} */ cmd) => {
  if (cmd.op === 'close') {
    setTimeout(() => process.exit(0), 50);
    return;
  }
  const fn = attacks[cmd.op];
  if (!fn) {
    send({ op: 'error', message: `unknown attack ${cmd.op}` });
    return;
  }
  fn(cmd).then(
    (r) => send({ op: 'done', attack: cmd.op, ...r }),
    (err) => send({ op: 'error', message: String(err?.stack ?? err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
