// @ts-check
/**
 * The per-target protocol shim of the load generators: the only code that differs
 * between targets. Everything above it (windows, counting, latency) is shared.
 *
 * - `ws` kind (roomwire, ws-naive, ws-preframed): a `ws` client on `/ws` or `/ws/{room}`.
 *   With a room, the first frame received is the connection's own `join` notice, which
 *   marks it ready (or, with `readyOn`, the first frame whose text starts with it, such
 *   as roomwire's `user_list` after the own join; frames before it are dropped); later
 *   frames are handed over as text (`data.toString()`), whole.
 * - `socketio` kind: socket.io-client with `transports: ['websocket']`, a new Manager
 *   per connection (`forceNew`), no reconnection, the room in the handshake query. With
 *   a room, the first `join` event marks it ready; `message` events hand over their
 *   `content` string. (socket.io-client parses every packet as JSON: that is the
 *   library's own cost and cannot be skipped.)
 *
 * Either way the caller gets a string that contains the benchmark's marker, and parses
 * it with the same code ({@link parseMark}) for every target.
 */
import { io } from 'socket.io-client';
import WebSocket from 'ws';

/**
 * @typedef {object} Handlers
 * @property {() => void} onReady joined (or open, without a room)
 * @property {(text: string) => void} onText a frame after ready (ws: the whole frame text; socketio: a
 *   `message` event's content); the caller tells marked messages from others with parseMark
 * @property {(text: string) => void} onOther (socketio only) an error event, as JSON text
 * @property {(code: number, reason: string) => void} onClose the connection ended after it was ready
 * @property {(err: string) => void} onFail the connection failed before it was ready
 */

/**
 * @typedef {object} Conn
 * @property {(room: string, content: string) => void} sendMessage
 * @property {() => void} close graceful close
 * @property {() => void} terminate drop at once
 */

/**
 * Open one connection.
 * @param {'ws' | 'socketio'} kind
 * @param {{ url: string, room?: string, query?: string, localAddress?: string, timeoutMs?: number, readyOn?: string }} where
 *   url: `http://host:port`; query: extra query string for ws targets (e.g. `token=...`);
 *   readyOn (ws targets with a room): the text prefix of the frame that marks the join
 *   complete, e.g. `{"type":"user_list"` for roomwire; default: the first frame
 * @param {Handlers} h
 * @returns {Conn}
 */
export function connect(kind, where, h) {
  return kind === 'socketio' ? connectSocketIo(where, h) : connectWs(where, h);
}

/**
 * @param {{ url: string, room?: string, query?: string, localAddress?: string, timeoutMs?: number, readyOn?: string }} where
 * @param {Handlers} h
 * @returns {Conn}
 */
function connectWs(where, h) {
  const base = where.url.replace(/^http/, 'ws');
  const path = where.room === undefined ? '/ws' : `/ws/${where.room}`;
  const target = `${base}${path}${where.query ? `?${where.query}` : ''}`;
  const ws = new WebSocket(target, {
    perMessageDeflate: false,
    localAddress: where.localAddress,
    handshakeTimeout: where.timeoutMs ?? 10_000,
  });
  let ready = false;
  let failed = false;
  const needJoin = where.room !== undefined;
  const readyOn = where.readyOn;
  const fail = (/** @type {string} */ why) => {
    if (ready || failed) return;
    failed = true;
    h.onFail(why);
  };
  ws.on('open', () => {
    if (!needJoin) {
      ready = true;
      h.onReady();
    }
  });
  ws.on('message', (data, isBinary) => {
    if (!ready) {
      if (readyOn !== undefined && (isBinary || !data.toString().startsWith(readyOn))) return;
      ready = true;
      h.onReady();
      return;
    }
    h.onText(isBinary ? '' : data.toString());
  });
  ws.on('unexpected-response', (_req, res) => {
    fail(`http_${res.statusCode}`);
    res.resume();
    ws.terminate();
  });
  ws.on('error', (err) => fail(/** @type {NodeJS.ErrnoException} */ (err).code ?? err.message));
  ws.on('close', (code, reason) => {
    if (ready) h.onClose(code, reason.toString());
    else fail(`closed_${code}`);
  });
  return {
    sendMessage(room, content) {
      if (ws.readyState === 1) ws.send(`{"type":"message","room":"${room}","content":"${content}"}`);
    },
    close() {
      ws.close(1000);
    },
    terminate() {
      ws.terminate();
    },
  };
}

/**
 * @param {{ url: string, room?: string, localAddress?: string, timeoutMs?: number }} where
 * @param {Handlers} h
 * @returns {Conn}
 */
function connectSocketIo(where, h) {
  // localAddress and perMessageDeflate are not in socket.io-client's types; engine.io-client
  // passes them to the ws client it uses in Node.
  const socket = io(where.url, /** @type {any} */ ({
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: where.timeoutMs ?? 10_000,
    query: where.room === undefined ? {} : { room: where.room },
    // passed through to the ws client inside engine.io-client
    localAddress: where.localAddress,
    perMessageDeflate: false,
  }));
  let ready = false;
  let failed = false;
  const needJoin = where.room !== undefined;
  socket.on('connect', () => {
    if (!needJoin) {
      ready = true;
      h.onReady();
    }
  });
  socket.on('join', () => {
    if (!ready) {
      ready = true;
      h.onReady();
    }
  });
  socket.on('message', (payload) => h.onText(payload.content));
  socket.on('error_frame', (payload) => h.onOther(JSON.stringify(payload)));
  socket.on('connect_error', (err) => {
    if (ready || failed) return;
    failed = true;
    h.onFail(err.message);
  });
  socket.on('disconnect', (reason) => {
    if (ready) h.onClose(reason === 'io client disconnect' ? 1000 : 1006, reason);
    else if (!failed) {
      failed = true;
      h.onFail(`disconnect_${reason}`);
    }
  });
  return {
    sendMessage(room, content) {
      socket.emit('message', { type: 'message', room, content });
    },
    close() {
      socket.disconnect();
    },
    terminate() {
      socket.disconnect();
    },
  };
}

/** The marker the fan-out load puts in `content`: `#B:<seq>:<send time µs>#`. */
export const MARK = '#B:';

/**
 * Build the content of message `seq` sent at `sentAt` (µs), fixed width, followed by `pad`.
 * @param {number} seq
 * @param {number} sentAt
 * @param {string} pad
 */
export function buildContent(seq, sentAt, pad) {
  return `${MARK}${String(seq).padStart(7, '0')}:${String(sentAt).padStart(14, '0')}#${pad}`;
}

/**
 * Parse the marker out of `text`, the same code for every target. Writes the sequence
 * number and send time into `out`; returns false when there is no (valid) marker.
 * @param {string} text
 * @param {{ seq: number, sentAt: number }} out
 */
export function parseMark(text, out) {
  const i = text.indexOf(MARK);
  if (i < 0) return false;
  const len = text.length;
  let j = i + MARK.length;
  let seq = 0;
  let c = 0;
  for (; j < len && (c = text.charCodeAt(j)) !== 58; j++) seq = seq * 10 + (c - 48);
  if (c !== 58) return false;
  let t = 0;
  for (j++; j < len && (c = text.charCodeAt(j)) !== 35; j++) t = t * 10 + (c - 48);
  if (c !== 35) return false;
  out.seq = seq;
  out.sentAt = t;
  return true;
}
