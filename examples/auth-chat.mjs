// @ts-check
// Chat with authentication: a tiny login route issues a short-lived JWT (also set as the
// `token` cookie), the page connects to /ws/auth with it through roomwire/client (the
// browser build, inlined from roomwire/server's clientScript()), which joins the room,
// reconnects by itself and refreshes the token in-band with an `auth` message before it
// expires. Rooms named `private:*` are only for users
// whose token carries `vip: true` (a canJoin hook).
//
// Run from the repository root: npm run example:auth-chat
// Configuration comes from the environment like the standalone server (HOST, PORT and
// the WEBSOCKET_* variables); TOKEN_TTL sets the token lifetime (default 60s).
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { SignJWT } from 'jose';
import { configFromEnv, createHub, parseDuration } from 'roomwire';
import { attach } from 'roomwire/node';
import { redisBrokerFromEnv } from 'roomwire/redis';
import { clientScript } from 'roomwire/server';

// A demo needs no setup: without a configured secret, make one for this run.
const env = { ...process.env };
env.WEBSOCKET_JWT_SECRET ||= randomBytes(32).toString('base64url');
const secret = new TextEncoder().encode(env.WEBSOCKET_JWT_SECRET);
const ttlSeconds = Math.max(10, Math.round(parseDuration(env.TOKEN_TTL || '60s') / 1000));

const hub = createHub({
  ...configFromEnv(env),
  broker: redisBrokerFromEnv(env),
  // Example policy: private rooms need the vip claim.
  canJoin: (client, room) => !room.startsWith('private:') || client.claims?.vip === true,
});

/** @param {string} username @param {boolean} vip */
async function issueToken(username, vip) {
  const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
  const token = await new SignJWT({ username, vip })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(`user:${username.toLowerCase()}`)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(secret);
  return { token, exp };
}

/** @param {http.IncomingMessage} req @returns {Promise<Record<string, unknown>>} */
async function readJson(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw new Error('body too large');
  }
  return body ? JSON.parse(body) : {};
}

const server = http.createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page(hub.config.path, ttlSeconds));
  } else if (req.method === 'POST' && req.url === '/login') {
    try {
      const { username, vip } = await readJson(req);
      if (typeof username !== 'string' || !/^[\w .-]{1,32}$/.test(username)) {
        res.writeHead(400, { 'Content-Type': 'application/json' }).end('{"error":"username: 1 to 32 letters, digits, spaces, . - _"}');
        return;
      }
      const issued = await issueToken(username, vip === true);
      res.writeHead(200, {
        'Content-Type': 'application/json',
        // The same token as a cookie: the WebSocket may use either source.
        'Set-Cookie': `token=${issued.token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${ttlSeconds}`,
      });
      res.end(JSON.stringify(issued));
    } catch {
      res.writeHead(400, { 'Content-Type': 'application/json' }).end('{"error":"bad request"}');
    }
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  }
});
attach(hub, server);

const host = env.HOST || '0.0.0.0';
const port = Number(env.PORT || 8080);
await hub.ready(); // with WEBSOCKET_REDIS_URL: in step with the other processes first
server.listen(port, host, () => {
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(`roomwire auth-chat example listening on http://${host}:${address.port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await hub.close();
    server.close(() => process.exit(0));
  });
}

/** @param {string} base @param {number} ttl */
function page(base, ttl) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roomwire auth chat</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1rem; max-width: 48rem; }
  #log { list-style: none; padding: 0; min-height: 12rem; border: 1px solid #8884; padding: .5rem; }
  .notice { color: #888; font-style: italic; } .error { color: #c33; }
</style></head>
<body>
<h1>roomwire auth chat</h1>
<form id="login">
  <label>Name <input id="name" required maxlength="32" value="alice"></label>
  <label><input type="checkbox" id="vip"> VIP (may join private:* rooms)</label>
  <label>Room <input id="room" value="lobby"></label>
  <label><input type="checkbox" id="cookie"> send the token as a cookie instead of ?token=</label>
  <button>Log in and connect</button>
</form>
<p>Tokens live ${ttl} s; the page refreshes its token with an <code>auth</code> message before that.
<span id="status"></span></p>
<ul id="log"></ul>
<form id="say"><input id="text" placeholder="Say something" disabled> <button id="send" disabled>Send</button></form>
<script>${clientScript()}</script>
<script>
(function () {
  var BASE = ${JSON.stringify(base === '/' ? '' : base)};
  var client = null, room = null, cookieTimer = null, joined = false;
  var $ = function (id) { return document.getElementById(id); };
  function line(text, cls) { var li = document.createElement('li'); li.textContent = text; if (cls) li.className = cls; $('log').appendChild(li); }
  function login() {
    return fetch('/login', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: $('name').value, vip: $('vip').checked }) })
      .then(function (r) { if (!r.ok) throw new Error('login failed'); return r.json(); });
  }
  $('login').onsubmit = function (e) {
    e.preventDefault();
    if (client) client.close();
    clearInterval(cookieTimer);
    room = $('room').value.trim();
    var cookie = $('cookie').checked;
    // roomwire/client calls getToken for every connection and again before the token
    // expires, then refreshes it in-band with an auth message (no reconnect).
    client = roomwire.createClient({
      url: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + BASE + '/auth',
      getToken: cookie ? undefined : function () { return login().then(function (t) { return t.token; }); },
    });
    if (cookie) {
      // With the cookie, the page renews the cookie; the client reconnects with it when the
      // server closes the connection at the old token's expiry.
      login().catch(function (err) { line(err.message, 'error'); });
      cookieTimer = setInterval(function () { login().catch(function () {}); }, ${Math.max(5, ttl - 5)} * 1000);
    }
    var r = client.room(room);
    r.on('message', function (m) { line(m.username + ': ' + m.content); });
    r.on('join', function (m) { line(m.username + ' joined ' + m.room, 'notice'); });
    r.on('leave', function (m) { line(m.username + ' left ' + m.room, 'notice'); });
    client.on('auth', function (a) { line('token refreshed; expires ' + new Date(a.data.exp * 1000).toLocaleTimeString(), 'notice'); });
    client.on('error', function (err) { line('error: ' + err.message + ' (' + err.code + ')', 'error'); });
    // Send is enabled only in the room: connected, and the join answered (a refused join,
    // such as a private: room without the vip claim, leaves it disabled).
    function show(state) {
      var open = state === 'connected' && joined;
      $('text').disabled = $('send').disabled = !open;
      $('status').textContent = open ? 'connected' : state === 'connected' ? 'not in the room' : state === 'closed' ? '' : 'reconnecting…';
    }
    var first = true;
    function join() {
      r.join().then(function (j) {
        joined = true;
        if (first) line('in ' + room + ': ' + j.users.join(', '), 'notice');
        first = false;
        show(client.state);
      }, function (err) {
        line('error: ' + err.message + ' (' + err.code + ')', 'error');
        show(client.state);
      });
    }
    client.on('state', function (s) {
      joined = false;
      if (s.state === 'connected' && !first) join();
      show(s.state);
    });
    join();
  };
  $('say').onsubmit = function (e) {
    e.preventDefault();
    if (!client || !$('text').value) return;
    client.send(room, $('text').value).catch(function (err) { line('not sent: ' + err.message + ' (' + err.code + ')', 'error'); });
    $('text').value = '';
  };
})();
</script>
</body></html>`;
}
