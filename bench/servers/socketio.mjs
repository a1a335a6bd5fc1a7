// @ts-check
/**
 * Socket.IO v4 room server of the benchmark: the websocket transport only (no polling,
 * no upgrade), perMessageDeflate and HTTP compression off. The same work and payloads as
 * the hand-written servers, in Socket.IO's idiom:
 *
 * - a client connects with `query: { room }` to join that room on connect (the
 *   equivalent of roomwire's `/ws/{room}`); every member (the joiner too) gets a `join`
 *   event `{type:'join', room, user_id, username, timestamp}`; the others get `leave`
 *   when it disconnects;
 * - a `message` event `{type:'message', room, content}` from a member (checked like the
 *   hand-written servers: string fields, membership) is stamped and re-emitted with
 *   `io.to(room).emit('message', {type, room, content, user_id, username, timestamp})`,
 *   which Socket.IO encodes once and writes as one pre-built frame to every member;
 * - GET /healthz answers `{"connections":n}`.
 *
 * Scale-out (the `scaleout` scenario): with BENCH_REDIS_URL set, the official Redis adapter
 * (`@socket.io/redis-adapter` over node-redis), so `io.to(room).emit` reaches the room's
 * members on every process.
 *
 * Heartbeat: Socket.IO's own (Engine.IO ping packets with a per-socket timer), with
 * pingInterval = BENCH_PING_PERIOD_MS and pingTimeout = BENCH_PONG_WAIT_MS.
 *
 * Prints `{"msg":"socketio listening on http://HOST:PORT"}` when ready; on SIGTERM
 * disconnects every client and exits 0.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Server } from 'socket.io';

const ROOM = /^[A-Za-z0-9_.:-]{1,64}$/;
const env = process.env;
const host = env.HOST || '127.0.0.1';
const port = Number(env.PORT || 0);

const httpServer = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ connections: io.engine.clientsCount }));
    return;
  }
  // Socket.IO answers its own path (/socket.io/) before this handler.
  res.writeHead(404);
  res.end();
});

// BENCH_RECOVERY: Socket.IO's connection state recovery (it keeps every packet sent to a
// room for two minutes, to replay it to a client that reconnects), over Redis with the
// Redis streams adapter, the one of Socket.IO's Redis adapters that supports it.
const recovery = env.BENCH_RECOVERY === '1';
const io = new Server(httpServer, {
  ...(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true } } : {}),
  transports: ['websocket'],
  allowUpgrades: false,
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  pingInterval: Number(env.BENCH_PING_PERIOD_MS || 54_000),
  pingTimeout: Number(env.BENCH_PONG_WAIT_MS || 60_000),
  maxHttpBufferSize: Number(env.BENCH_MAX_MESSAGE_SIZE || 512),
});

if (env.BENCH_REDIS_URL && recovery) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-streams-adapter');
  const client = createClient({ url: env.BENCH_REDIS_URL });
  await client.connect();
  io.adapter(createAdapter(client));
} else if (env.BENCH_REDIS_URL) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pubClient = createClient({ url: env.BENCH_REDIS_URL });
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

const seconds = () => Math.floor(Date.now() / 1000);

io.on('connection', (socket) => {
  const userId = randomUUID();
  const username = `guest-${userId.slice(0, 8)}`;
  /**
   * @param {string} code
   * @param {string} [room]
   */
  const error = (code, room) => socket.emit('error_frame', { type: 'error', content: code, data: { code }, room, timestamp: seconds() });
  /** @param {string} room */
  const join = (room) => {
    if (socket.rooms.has(room)) return;
    socket.join(room);
    io.to(room).emit('join', { type: 'join', room, user_id: userId, username, timestamp: seconds() });
  };

  socket.on('message', (msg) => {
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return error('invalid_json');
    const room = msg.room;
    if (typeof room !== 'string' || typeof msg.content !== 'string') return error('invalid_message', typeof room === 'string' ? room : undefined);
    if (room === socket.id || !socket.rooms.has(room)) return error('not_in_room', room);
    io.to(room).emit('message', { type: 'message', room, content: msg.content, user_id: userId, username, timestamp: seconds() });
  });
  socket.on('join', (msg) => {
    const room = msg?.room;
    if (typeof room !== 'string') return error('invalid_message');
    if (!ROOM.test(room)) return error('invalid_room', room);
    join(room);
  });
  socket.on('disconnecting', () => {
    for (const room of socket.rooms) {
      if (room === socket.id) continue;
      socket.to(room).emit('leave', { type: 'leave', room, user_id: userId, username, timestamp: seconds() });
    }
  });

  const room = socket.handshake.query.room;
  if (typeof room === 'string' && ROOM.test(room)) join(room);
});

let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  const deadline = setTimeout(() => process.exit(0), 3000);
  io.close(() => {
    clearTimeout(deadline);
    process.exit(0);
  });
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);

httpServer.listen(port, host, () => {
  const addr = /** @type {import('node:net').AddressInfo} */ (httpServer.address());
  process.stdout.write(`${JSON.stringify({ msg: `socketio listening on http://${host}:${addr.port}`, pid: process.pid })}\n`);
});
