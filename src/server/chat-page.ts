/**
 * The standalone server's `/` page: a small chat client on the browser's own
 * WebSocket, speaking the wire protocol. Self-contained: no build step, no CDN.
 */

/** Render the chat page for a hub whose endpoints live under `basePath`. */
export function chatPage(basePath: string): string {
  const base = JSON.stringify(basePath === '/' ? '' : basePath).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>roomwire chat</title>
<style>
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { margin: 0; display: grid; grid-template-rows: auto 1fr auto; height: 100vh; }
  header, footer { display: flex; gap: .5rem; padding: .6rem; align-items: center; border-bottom: 1px solid #8884; }
  footer { border-top: 1px solid #8884; border-bottom: 0; }
  main { display: grid; grid-template-columns: 1fr 14rem; min-height: 0; }
  #log { overflow-y: auto; padding: .6rem; margin: 0; list-style: none; }
  #log li { padding: .15rem 0; }
  #log .notice { color: #888; font-style: italic; }
  #log .error { color: #c33; }
  #users { border-left: 1px solid #8884; padding: .6rem; overflow-y: auto; }
  #users ul { padding-left: 1.1rem; margin: .3rem 0; }
  input { padding: .35rem; }
  #text { flex: 1; }
  #status { margin-left: auto; font-size: .9rem; color: #888; }
</style>
</head>
<body>
<header>
  <label>Room <input id="room" value="lobby" size="12" pattern="[A-Za-z0-9_.:-]{1,64}"></label>
  <label>Token <input id="token" placeholder="optional JWT" size="24"></label>
  <button id="connect">Connect</button>
  <span id="status">disconnected</span>
</header>
<main>
  <ul id="log" aria-live="polite"></ul>
  <aside id="users"><strong>In this room</strong><ul id="userlist"></ul></aside>
</main>
<footer>
  <input id="text" placeholder="Say something" autocomplete="off" disabled>
  <button id="send" disabled>Send</button>
</footer>
<script>
(function () {
  var BASE = ${base};
  var ws = null, room = null;
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
  // One user_list request per burst of joins and leaves, so a busy room stays well
  // under the message rate limit.
  var usersTimer = null;
  function refreshUsers() {
    if (usersTimer) return;
    usersTimer = setTimeout(function () {
      usersTimer = null;
      if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: 'user_list', room: room }));
    }, 250);
  }
  function setOpen(open) {
    $('text').disabled = !open; $('send').disabled = !open;
    $('status').textContent = open ? 'connected to ' + room : 'disconnected';
    $('connect').textContent = open ? 'Disconnect' : 'Connect';
  }
  function connect() {
    if (ws) { ws.close(); return; }
    room = $('room').value.trim();
    var token = $('token').value.trim();
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var path = BASE + (token ? '/auth/' : '/') + encodeURIComponent(room);
    ws = new WebSocket(scheme + location.host + path + (token ? '?token=' + encodeURIComponent(token) : ''));
    ws.onopen = function () { setOpen(true); };
    ws.onmessage = function (event) {
      var m = JSON.parse(event.data);
      switch (m.type) {
        case 'message': line(m.username + ': ' + m.content); break;
        case 'join': line(m.username + ' joined ' + m.room, 'notice'); break;
        case 'leave': line(m.username + ' left ' + m.room, 'notice'); break;
        case 'user_list': users(m.data); break;
        case 'error': line('error: ' + m.content + ' (' + m.data.code + ')', 'error'); break;
      }
      if ((m.type === 'join' || m.type === 'leave') && m.room === room) refreshUsers();
    };
    ws.onclose = function (event) {
      line('connection closed' + (event.code ? ' (' + event.code + (event.reason ? ' ' + event.reason : '') + ')' : ''), 'notice');
      ws = null; setOpen(false); users([]);
    };
    ws.onerror = function () { line('connection failed', 'error'); };
  }
  function send() {
    var text = $('text').value;
    if (!text || !ws || ws.readyState !== 1) return;
    ws.send(JSON.stringify({ type: 'message', room: room, content: text }));
    $('text').value = '';
  }
  $('connect').onclick = connect;
  $('send').onclick = send;
  $('text').onkeydown = function (e) { if (e.key === 'Enter') send(); };
})();
</script>
</body>
</html>
`;
}
