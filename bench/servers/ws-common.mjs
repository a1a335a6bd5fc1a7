// @ts-check
/**
 * The hand-written room server of the benchmark, directly on `ws`: the baseline a user
 * would write instead of using a hub. It speaks the subset of roomwire's protocol the
 * load needs, with frames shaped exactly like roomwire's:
 *
 * - upgrade on `/ws` (no room) or `/ws/{room}` (joins `{room}`); anything else is 404;
 * - on join every member (the joiner too) gets
 *   `{"type":"join","room","user_id","username","timestamp"}`; on close the others get `leave`;
 * - client `{"type":"message","room","content"}` from a member: JSON.parse, check the
 *   fields' types and membership, stamp `user_id`, `username`, `timestamp`,
 *   JSON.stringify once, and send to every member (the sender too);
 * - `{"type":"join","room"}` joins, `{"type":"ping"}` gets `{"type":"pong","timestamp"}`;
 *   anything else gets an `error` frame;
 * - GET /healthz answers `{"connections":n}`.
 *
 * Broadcast, the one difference between the variants:
 * - naive: `ws.send(text)` per member (ws converts and frames the string once per member);
 * - preframed: the WebSocket frame (header + UTF-8 payload) is built once per broadcast
 *   and the same bytes are written to every member's socket;
 * - corked (preframed too): a socket written to is corked until the event-loop turn ends
 *   (uncorked in one `setImmediate`), so all the frames it gets in a turn leave in one write.
 *
 * Heartbeat, equivalent to roomwire's single sweep: one `setInterval` every
 * BENCH_SWEEP_MS walks all connections; a connection whose oldest unanswered protocol
 * ping is BENCH_PONG_WAIT_MS old is terminated, and one that was last pinged
 * BENCH_PING_PERIOD_MS ago or more gets a protocol ping. Any pong clears the deadline.
 *
 * Prints `{"msg":"<name> listening on http://HOST:PORT"}` when ready; on SIGTERM closes
 * every client with 1001 and exits 0.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { WebSocketServer } from 'ws';

const ROOM = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * Build one unmasked FIN text frame holding `text`.
 * @param {string} text
 */
function textFrame(text) {
  const n = Buffer.byteLength(text);
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + n);
  frame[0] = 0x81;
  if (n < 126) {
    frame[1] = n;
  } else if (n < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  frame.write(text, head, 'utf8');
  return frame;
}

/**
 * @param {string} name
 * @param {{ preframed: boolean, corked?: boolean }} options
 */
export function runWsServer(name, { preframed, corked = false }) {
  const env = process.env;
  const host = env.HOST || '127.0.0.1';
  const port = Number(env.PORT || 0);
  const pingPeriod = Number(env.BENCH_PING_PERIOD_MS || 54_000);
  const pongWait = Number(env.BENCH_PONG_WAIT_MS || 60_000);
  const sweepMs = Number(env.BENCH_SWEEP_MS || 30_000);
  const maxPayload = Number(env.BENCH_MAX_MESSAGE_SIZE || 512);

  /**
   * @typedef {{ ws: import('ws').WebSocket, socket: import('node:stream').Duplex, userId: string,
   *   username: string, rooms: Set<string>, lastPing: number, pingSentAt: number }} Conn
   */
  /** @type {Map<string, Set<Conn>>} */
  const rooms = new Map();
  /** @type {Set<Conn>} */
  const conns = new Set();

  const seconds = () => Math.floor(Date.now() / 1000);

  /** Sockets corked during this event-loop turn. @type {Set<import('node:stream').Duplex>} */
  const corkedSockets = new Set();
  let uncorkScheduled = false;
  const uncorkAll = () => {
    uncorkScheduled = false;
    for (const s of corkedSockets) s.uncork();
    corkedSockets.clear();
  };

  /** @type {(members: Set<Conn>, text: string) => void} */
  const broadcast = corked
    ? (members, text) => {
        const frame = textFrame(text);
        for (const m of members) {
          if (m.ws.readyState !== 1) continue;
          const s = m.socket;
          if (!corkedSockets.has(s)) {
            s.cork();
            corkedSockets.add(s);
          }
          s.write(frame);
        }
        if (!uncorkScheduled) {
          uncorkScheduled = true;
          setImmediate(uncorkAll);
        }
      }
    : preframed
    ? (members, text) => {
        const frame = textFrame(text);
        for (const m of members) if (m.ws.readyState === 1) m.socket.write(frame);
      }
    : (members, text) => {
        for (const m of members) if (m.ws.readyState === 1) m.ws.send(text);
      };

  /**
   * @param {Conn} c
   * @param {string} code
   * @param {string} [room]
   */
  const sendError = (c, code, room) => {
    const frame = { type: 'error', content: code, data: { code }, room, timestamp: seconds() };
    if (c.ws.readyState === 1) c.ws.send(JSON.stringify(frame));
  };

  /**
   * @param {Conn} c
   * @param {string} room
   */
  const join = (c, room) => {
    if (c.rooms.has(room)) return;
    let members = rooms.get(room);
    if (!members) rooms.set(room, (members = new Set()));
    members.add(c);
    c.rooms.add(room);
    const text = JSON.stringify({ type: 'join', room, user_id: c.userId, username: c.username, timestamp: seconds() });
    broadcast(members, text);
  };

  /** @param {Conn} c */
  const leaveAll = (c) => {
    for (const room of c.rooms) {
      const members = rooms.get(room);
      if (!members) continue;
      members.delete(c);
      if (members.size === 0) {
        rooms.delete(room);
        continue;
      }
      const text = JSON.stringify({ type: 'leave', room, user_id: c.userId, username: c.username, timestamp: seconds() });
      broadcast(members, text);
    }
    c.rooms.clear();
  };

  /**
   * @param {Conn} c
   * @param {Buffer} data
   * @param {boolean} isBinary
   */
  const onMessage = (c, data, isBinary) => {
    if (isBinary) return sendError(c, 'invalid_message');
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return sendError(c, 'invalid_json');
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return sendError(c, 'invalid_json');
    const room = typeof msg.room === 'string' ? msg.room : undefined;
    switch (msg.type) {
      case 'message': {
        if (room === undefined || typeof msg.content !== 'string') return sendError(c, 'invalid_message', room);
        const members = rooms.get(room);
        if (members === undefined || !c.rooms.has(room)) return sendError(c, 'not_in_room', room);
        const text = JSON.stringify({
          type: 'message',
          room,
          content: msg.content,
          user_id: c.userId,
          username: c.username,
          timestamp: seconds(),
        });
        return broadcast(members, text);
      }
      case 'join':
        if (room === undefined) return sendError(c, 'invalid_message');
        if (!ROOM.test(room)) return sendError(c, 'invalid_room', room);
        return join(c, room);
      case 'ping':
        if (c.ws.readyState === 1) c.ws.send(JSON.stringify({ type: 'pong', timestamp: seconds() }));
        return;
      default:
        return sendError(c, 'unsupported_type', room);
    }
  };

  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ connections: conns.size, rooms: rooms.size }));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload });

  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => {});
    const path = (req.url || '/').split('?')[0];
    /** @type {string | undefined} */
    let room;
    let ok = path === '/ws' || path === '/ws/';
    if (!ok && path.startsWith('/ws/')) {
      try {
        room = decodeURIComponent(path.slice(4));
        ok = ROOM.test(room);
      } catch {
        ok = false;
      }
    }
    if (!ok || closing) {
      socket.end(`HTTP/1.1 ${closing ? '503 Service Unavailable' : '404 Not Found'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const userId = randomUUID();
      const now = Date.now();
      /** @type {Conn} */
      const c = { ws, socket, userId, username: `guest-${userId.slice(0, 8)}`, rooms: new Set(), lastPing: now, pingSentAt: 0 };
      conns.add(c);
      ws.on('message', (data, isBinary) => onMessage(c, /** @type {Buffer} */ (data), isBinary));
      ws.on('pong', () => {
        c.pingSentAt = 0;
      });
      ws.on('error', () => {});
      ws.on('close', () => {
        conns.delete(c);
        leaveAll(c);
      });
      if (room !== undefined) join(c, room);
    });
  });

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const c of conns) {
      if (c.pingSentAt !== 0 && now - c.pingSentAt >= pongWait) {
        c.ws.terminate();
        continue;
      }
      if (now - c.lastPing >= pingPeriod) {
        c.lastPing = now;
        if (c.pingSentAt === 0) c.pingSentAt = now;
        if (c.ws.readyState === 1) c.ws.ping();
      }
    }
  }, sweepMs);

  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    clearInterval(sweep);
    for (const c of conns) c.ws.close(1001, 'server shutting down');
    const deadline = setTimeout(() => {
      for (const c of conns) c.ws.terminate();
      process.exit(0);
    }, 2000);
    const check = setInterval(() => {
      if (conns.size > 0) return;
      clearInterval(check);
      clearTimeout(deadline);
      server.close(() => process.exit(0));
      server.closeAllConnections();
    }, 20);
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);

  server.listen(port, host, () => {
    const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
    process.stdout.write(`${JSON.stringify({ msg: `${name} listening on http://${host}:${addr.port}`, pid: process.pid })}\n`);
  });
}
