// @ts-check
/**
 * Room filler of the stats and attack scenarios (a separate process, driven over IPC):
 * opens `conns` connections to the base endpoint (`/ws`, no room), at most `concurrency`
 * handshakes at a time over `localAddresses` (a server may cap unfinished requests per
 * address), retrying a failed handshake up to 3 times, and has each join `roomsPerConn`
 * rooms of its own (`<prefix>-<conn>-<i>`) with `join` frames, at most `window` joins in
 * flight per connection (a join is done when its `user_list` arrives). Each room then has
 * one member. The connections stay open, silent, until `close`.
 *
 * Commands: fill, status, close. Replies: filled, status.
 */
import WebSocket from 'ws';

/** @type {WebSocket[]} */
const sockets = [];
let closed = 0;

/**
 * @param {{ url: string, conns: number, roomsPerConn: number, prefix: string, window: number, localAddresses: string[], timeoutMs: number, concurrency?: number }} cmd
 */
async function fill(cmd) {
  const t0 = Date.now();
  const deadline = t0 + cmd.timeoutMs;
  /** @type {Record<string, number>} */
  const errors = {};
  let joined = 0;
  let failedConns = 0;
  const url = `${cmd.url.replace(/^http/, 'ws')}/ws`;
  /** @type {Record<string, number>} */
  const handshakeFailures = {};
  /**
   * Open connection `ci` (retrying), resolve once it is open (true) or given up (false);
   * `joined` resolves when its joins are done.
   * @param {number} ci
   * @returns {Promise<{ ok: boolean, joined: Promise<unknown> }>}
   */
  const open = async (ci) => {
    for (let attempt = 0; attempt < 4 && Date.now() < deadline; attempt++) {
      const r = await one(ci, attempt);
      if (r.ok) return r;
      await new Promise((res) => setTimeout(res, 50 * (attempt + 1)));
    }
    failedConns++;
    return { ok: false, joined: Promise.resolve() };
  };
  /**
   * @param {number} ci
   * @param {number} attempt
   * @returns {Promise<{ ok: boolean, joined: Promise<unknown> }>}
   */
  const one = (ci, attempt) =>
    new Promise((opened) => {
      /** @type {(v?: unknown) => void} */
      let resolve = () => {};
      const joinedP = new Promise((r) => {
        resolve = r;
      });
      const ws = new WebSocket(url, { perMessageDeflate: false, localAddress: cmd.localAddresses[(ci + attempt) % cmd.localAddresses.length], handshakeTimeout: 15_000 });
      let next = 0;
      let done = 0;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve(undefined);
      };
      const timer = setTimeout(finish, Math.max(0, deadline - Date.now()));
      const pump = () => {
        while (next < cmd.roomsPerConn && next - done < cmd.window) {
          ws.send(`{"type":"join","room":"${cmd.prefix}-${ci}-${next}"}`);
          next++;
        }
      };
      let isOpen = false;
      ws.on('open', () => {
        isOpen = true;
        sockets.push(ws);
        opened({ ok: true, joined: joinedP });
        pump();
      });
      ws.on('message', (data) => {
        const text = data.toString();
        if (text.startsWith('{"type":"user_list"')) {
          done++;
          joined++;
          if (done === cmd.roomsPerConn) finish();
          else pump();
        } else if (text.startsWith('{"type":"error"')) {
          const code = /"code":"([a-z_]+)"/.exec(text)?.[1] ?? 'unknown';
          errors[code] = (errors[code] ?? 0) + 1;
          // a refused join answers with an error and no user list: count it done
          done++;
          if (done === cmd.roomsPerConn) finish();
          else pump();
        }
      });
      ws.on('error', (err) => {
        if (isOpen) return;
        const code = /** @type {NodeJS.ErrnoException} */ (err).code ?? err.message.slice(0, 40);
        handshakeFailures[code] = (handshakeFailures[code] ?? 0) + 1;
      });
      ws.on('close', () => {
        if (!isOpen) {
          clearTimeout(timer);
          opened({ ok: false, joined: Promise.resolve() });
          return;
        }
        closed++;
        finish();
      });
    });
  // at most `concurrency` handshakes at a time; the joins run on
  /** @type {Promise<unknown>[]} */
  const joins = [];
  let nextConn = 0;
  const opener = async () => {
    while (nextConn < cmd.conns) {
      const r = await open(nextConn++);
      joins.push(r.joined);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency ?? 16) }, opener));
  await Promise.all(joins);
  send({ op: 'filled', joined, errors, failedConns, handshakeFailures, open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length, ms: Date.now() - t0 });
}

/** @param {unknown} msg */
function send(msg) {
  if (process.connected) process.send?.(msg);
}

process.on('message', (/** @type {any} */ cmd) => {
  if (cmd.op === 'fill') fill(cmd).catch((err) => send({ op: 'error', message: String(err?.stack ?? err) }));
  else if (cmd.op === 'status') send({ op: 'status', open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length, closed });
  else if (cmd.op === 'close') {
    for (const s of sockets) s.terminate();
    setTimeout(() => process.exit(0), 100);
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
