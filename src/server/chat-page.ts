/**
 * The standalone server's `/` page: a small chat client on `roomwire/client` (the SDK is
 * inlined, minified, as one script), so the page reconnects and rejoins by itself, and
 * with history on (`WEBSOCKET_HISTORY_SIZE`) shows the messages sent while it was away,
 * or a line saying that some could not be recovered.
 * Self-contained: no build step at run time, no CDN, no second request (the favicon is
 * inline too).
 */

/**
 * The browser build of `roomwire/client` (an IIFE that defines `roomwire`), minified by
 * the build (tsup) and by the test runner (vitest) from `src/client/index.ts`.
 */
declare const __ROOMWIRE_CLIENT_BUNDLE__: string;

/** The client SDK as the body of a `<script>` element. */
export function clientScript(): string {
  return __ROOMWIRE_CLIENT_BUNDLE__.replace(/<\/(script)/gi, '<\\/$1');
}

const FAVICON = `data:image/svg+xml,${encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#3a7bd5"/><path d="M4 8h8M8 4v8" stroke="#fff" stroke-width="2"/></svg>')}`;

/** Options of {@link chatPage}. */
export interface ChatPageOptions {
  /** The hub's `maxMessageSize`: the page counts down the bytes left and never sends more. */
  readonly maxMessageSize?: number;
}

/**
 * Render the chat page for a hub whose endpoints live under `basePath`: a room and an
 * optional token, the room name checked as it is typed, who you are once connected, the
 * bytes a message has left, and what went wrong when a connection is refused.
 */
export function chatPage(basePath: string, options: ChatPageOptions = {}): string {
  const base = JSON.stringify(basePath === '/' ? '' : basePath).replace(/</g, '\\u003c');
  const limit = options.maxMessageSize === undefined ? 'null' : String(options.maxMessageSize);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>roomwire chat</title>
<link rel="icon" href="${FAVICON}">
<style>
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { margin: 0; display: grid; grid-template-rows: auto auto 1fr auto; height: 100vh; }
  header, footer { display: flex; gap: .5rem; padding: .6rem; align-items: center; border-bottom: 1px solid #8884; flex-wrap: wrap; }
  footer { border-top: 1px solid #8884; border-bottom: 0; }
  main { display: grid; grid-template-columns: 1fr 14rem; min-height: 0; }
  #log { overflow-y: auto; padding: .6rem; margin: 0; list-style: none; }
  #log li { padding: .15rem 0; }
  #log .notice { color: #888; font-style: italic; }
  #log .error, .problem { color: #c33; }
  #log .gap { color: #b60; font-style: italic; }
  #users { border-left: 1px solid #8884; padding: .6rem; overflow-y: auto; }
  #users ul { padding-left: 1.1rem; margin: .3rem 0; }
  input { padding: .35rem; }
  input:invalid { outline: 2px solid #c33; }
  #text { flex: 1; }
  #status { margin-left: auto; font-size: .9rem; color: #888; }
  #hint { margin: 0; padding: .4rem .6rem; font-size: .9rem; color: #888; }
  #left { font-size: .8rem; color: #888; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<header>
  <label>Room <input id="room" value="lobby" size="12" pattern="[A-Za-z0-9_.:\\-]{1,64}" maxlength="64" required></label>
  <label>Token <input id="token" placeholder="optional JWT" size="24"></label>
  <button id="connect">Connect</button>
  <span id="room-error" class="problem" role="alert"></span>
  <span id="status">disconnected</span>
</header>
<p id="hint">Choose a room (and paste a token if you have one), then press Connect. <span id="me"></span></p>
<main>
  <ul id="log" aria-live="polite"></ul>
  <aside id="users"><strong>In this room</strong><ul id="userlist"></ul></aside>
</main>
<footer>
  <input id="text" placeholder="Say something" autocomplete="off" disabled>
  <span id="left"></span>
  <button id="send" disabled>Send</button>
</footer>
<script>${clientScript()}</script>
<script>
(function () {
  var BASE = ${base};
  var LIMIT = ${limit};
  var ROOM_RULE = 'room names are 1 to 64 characters from A-Z a-z 0-9 _ - . :';
  var client = null, room = null, lobby = null, usersTimer = null, joined = false, everConnected = false;
  var $ = function (id) { return document.getElementById(id); };
  function line(text, cls) {
    var li = document.createElement('li');
    li.textContent = text;
    if (cls) li.className = cls;
    $('log').appendChild(li);
    $('log').scrollTop = $('log').scrollHeight;
  }
  function users(list) {
    var ul = $('userlist');
    ul.textContent = '';
    list.forEach(function (name) { var li = document.createElement('li'); li.textContent = name; ul.appendChild(li); });
  }
  // The room rule is known: a bad name never reaches the server.
  function checkRoom() {
    var ok = /^[A-Za-z0-9_.:-]{1,64}$/.test($('room').value.trim());
    $('room-error').textContent = ok ? '' : ROOM_RULE;
    if (!client) $('connect').disabled = !ok;
    return ok;
  }
  // What a message may still hold, in bytes of the frame the client sends.
  function bytesLeft() {
    if (LIMIT === null) return Infinity;
    var frame = JSON.stringify({ type: 'message', room: room || $('room').value, content: $('text').value, id: 999999999 });
    return LIMIT - new TextEncoder().encode(frame).length;
  }
  function updateLeft() {
    if (LIMIT === null) return;
    var left = bytesLeft();
    $('left').textContent = left >= 0 ? left + ' bytes left' : -left + ' bytes too long (the server allows ' + LIMIT + ')';
    $('left').className = left >= 0 ? '' : 'problem';
    $('send').disabled = $('text').disabled || left < 0;
  }
  // One user list request per burst of joins and leaves, so a busy room stays well under
  // the message rate limit.
  function refreshUsers() {
    if (usersTimer) return;
    usersTimer = setTimeout(function () {
      usersTimer = null;
      if (client && client.state === 'connected') client.users(room).then(users, function () {});
    }, 250);
  }
  function setState(state) {
    // Send only once in the room: connected, and the join answered.
    var open = state === 'connected' && joined;
    $('text').disabled = !open;
    $('status').textContent = state === 'connected' ? 'connected to ' + room : state === 'closed' ? 'disconnected' : state === 'connecting' ? 'connecting…' : 'reconnecting…';
    $('connect').textContent = client ? 'Disconnect' : 'Connect';
    $('me').textContent = client && client.user ? 'You are ' + client.user.username + '.' : '';
    updateLeft();
  }
  function connect() {
    if (client) { client.close(); return; }
    if (!checkRoom()) return;
    room = $('room').value.trim();
    var token = $('token').value.trim();
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    everConnected = false;
    // The client SDK (roomwire/client): it reconnects by itself, with jitter, and joins
    // the room again after every reconnect.
    client = roomwire.createClient({
      url: scheme + location.host + BASE + (token ? '/auth' : ''),
      getToken: token ? function () { return token; } : undefined,
    });
    lobby = client.room(room);
    lobby.on('message', function (m) { line(m.username + ': ' + m.content); });
    lobby.on('join', function (m) { line(m.username + ' joined ' + m.room, 'notice'); refreshUsers(); });
    lobby.on('leave', function (m) { line(m.username + ' left ' + m.room, 'notice'); refreshUsers(); });
    // With history on, the client asks for what it missed after every reconnect: the
    // missed messages arrive as messages, then one of these.
    lobby.on('recovered', function (r) {
      if (r.missed > 0) line('recovered ' + r.missed + (r.missed === 1 ? ' message' : ' messages') + ' sent while you were away', 'notice');
    });
    // A gap 'epoch' (the room's numbering began again, while this page was connected: the
    // room was quiet for longer than the history TTL) is not shown: the page saw every
    // message, and its next recovery starts from the new epoch.
    lobby.on('gap', function (g) {
      if (g.reason === 'not_recovered') line('some messages sent while you were away could not be recovered', 'gap');
      else if (g.reason === 'skipped') line('some messages were skipped by the server', 'gap');
    });
    client.on('error', function (e) { line('error: ' + e.message + ' (' + e.code + ')', 'error'); });
    function join() {
      // Resolves on the join's ack; after a reconnect, on the ack of the client's own rejoin.
      lobby.join().then(function (r) { joined = true; users(r.users); setState(client ? client.state : 'closed'); },
        function (e) { line('error: ' + e.message + ' (' + e.code + ')', 'error'); });
    }
    client.on('state', function (s) {
      joined = false;
      if (s.state === 'connected') everConnected = true;
      if (s.state === 'disconnected' && !everConnected) {
        // Browsers hide why an upgrade was refused; say what the page can know, and stop.
        line(token ? 'refused: check the token (or the server is not reachable)' : 'could not connect: the server is not reachable, or refused the connection', 'error');
        client.close();
        return;
      }
      if (s.state === 'disconnected') { line('connection lost' + (s.code ? ' (' + s.code + (s.reason ? ' ' + s.reason : '') + ')' : '') + ', reconnecting', 'notice'); users([]); }
      if (s.state === 'closed') { client = null; users([]); checkRoom(); }
      if (s.state === 'connected' && lobby) join();
      setState(s.state);
    });
    setState(client.state);
    join();
  }
  function send() {
    var text = $('text').value;
    if (!text || !client || client.state !== 'connected' || bytesLeft() < 0) return;
    lobby.send(text).catch(function (e) { line('not sent: ' + e.message + ' (' + e.code + ')', 'error'); });
    $('text').value = '';
    updateLeft();
  }
  $('connect').onclick = connect;
  $('send').onclick = send;
  $('room').oninput = checkRoom;
  $('text').oninput = updateLeft;
  $('text').onkeydown = function (e) { if (e.key === 'Enter') send(); };
  checkRoom();
})();
</script>
</body>
</html>
`;
}
