/**
 * The standalone server's live stats: a sampler that keeps the last minutes of the
 * hub's counters, the JSON it serves at `/stats.json`, and the self-contained page at
 * `/stats` that draws them (no CDN, no build step).
 */
import type { Hub, HubStats } from '../core/api';

/** One sample of the hub's totals. */
export interface StatsSample {
  /** Milliseconds since the epoch. */
  readonly t: number;
  readonly connections: number;
  readonly rooms: number;
  /** Inbound messages so far (every type, invalid ones included). */
  readonly messages: number;
  /** Error frames sent so far. */
  readonly errors: number;
  /** Room frames delivered so far. */
  readonly deliveries: number;
}

function sum(values: Readonly<Record<string, number>>): number {
  let total = 0;
  for (const v of Object.values(values)) total += v;
  return total;
}

function sampleOf(s: HubStats): StatsSample {
  return { t: Date.now(), connections: s.connections, rooms: s.rooms, messages: sum(s.messagesIn), errors: sum(s.errors), deliveries: s.deliveries };
}

/** Samples a hub every `intervalMs` and keeps the last `keep` samples. */
export class StatsSampler {
  private readonly samples: StatsSample[] = [];
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly hub: Hub,
    readonly intervalMs = 5000,
    private readonly keep = 120,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  private sample(): StatsSample {
    const sample = sampleOf(this.hub.stats());
    this.samples.push(sample);
    if (this.samples.length > this.keep) this.samples.shift();
    return sample;
  }

  /**
   * The document served at `/stats.json`: the history, the current totals, room occupancy
   * as `[members, rooms]` pairs, and, only when `roomNames` is true (the operator opted in
   * with `STATS_ROOM_NAMES=true`), the `maxRooms` fullest rooms by name. Room names tell
   * an outsider which rooms exist, so they never leave the hub unasked.
   */
  json(roomNames = false, maxRooms = 50): string {
    const s = this.hub.stats();
    const doc: Record<string, unknown> = { intervalMs: this.intervalMs, history: [...this.samples, sampleOf(s)], roomSizes: s.roomSizes };
    if (roomNames) doc.rooms = this.hub.largestRooms(maxRooms).map((r) => ({ name: r.room, members: r.members }));
    doc.errors = s.errors;
    doc.rejected = s.rejected;
    return JSON.stringify(doc);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Render the `/stats` page. It polls `/stats.json` and draws the charts itself. */
export function statsPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>roomwire stats</title>
<style>
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { margin: 1rem; }
  h1 { font-size: 1.2rem; margin: 0 0 1rem; }
  .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: .8rem; }
  .tile { border: 1px solid #8884; border-radius: .4rem; padding: .6rem .8rem; }
  .tile .label { font-size: .8rem; color: #888; }
  .tile .value { font-size: 1.6rem; font-variant-numeric: tabular-nums; }
  svg { width: 100%; height: 48px; display: block; }
  polyline { fill: none; stroke: #3a7bd5; stroke-width: 1.5; }
  .errors polyline { stroke: #d9534f; }
  table { border-collapse: collapse; margin-top: 1rem; min-width: 20rem; }
  td, th { text-align: left; padding: .2rem .8rem .2rem 0; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  #updated { color: #888; font-size: .8rem; }
</style>
</head>
<body>
<h1>roomwire <span id="updated"></span></h1>
<div class="tiles">
  <div class="tile" id="t-connections"><div class="label">connections</div><div class="value">–</div><svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline points=""/></svg></div>
  <div class="tile" id="t-rooms"><div class="label">rooms</div><div class="value">–</div><svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline points=""/></svg></div>
  <div class="tile" id="t-messages"><div class="label">messages in / s</div><div class="value">–</div><svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline points=""/></svg></div>
  <div class="tile" id="t-deliveries"><div class="label">deliveries / s</div><div class="value">–</div><svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline points=""/></svg></div>
  <div class="tile errors" id="t-errors"><div class="label">errors / s</div><div class="value">–</div><svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline points=""/></svg></div>
</div>
<table id="sizes-table"><thead><tr><th>members</th><th>rooms</th></tr></thead><tbody id="sizes"></tbody></table>
<table id="rooms-table" hidden><thead><tr><th>room</th><th>members</th></tr></thead><tbody id="rooms"></tbody></table>
<script>
(function () {
  function rate(history, key) {
    var out = [];
    for (var i = 1; i < history.length; i++) {
      var dt = (history[i].t - history[i - 1].t) / 1000;
      out.push(dt > 0 ? Math.max(0, history[i][key] - history[i - 1][key]) / dt : 0);
    }
    return out;
  }
  function level(history, key) { return history.map(function (s) { return s[key]; }); }
  function draw(id, values, digits) {
    var tile = document.getElementById(id);
    var last = values.length ? values[values.length - 1] : 0;
    tile.querySelector('.value').textContent = last.toFixed(digits);
    var max = Math.max.apply(null, values.concat([1]));
    var n = Math.max(values.length - 1, 1);
    tile.querySelector('polyline').setAttribute('points', values.map(function (v, i) {
      return (i * 100 / n).toFixed(2) + ',' + (29 - v / max * 28).toFixed(2);
    }).join(' '));
  }
  function render(doc) {
    var h = doc.history;
    draw('t-connections', level(h, 'connections'), 0);
    draw('t-rooms', level(h, 'rooms'), 0);
    draw('t-messages', rate(h, 'messages'), 1);
    draw('t-deliveries', rate(h, 'deliveries'), 1);
    draw('t-errors', rate(h, 'errors'), 2);
    function rows(id, list) {
      var body = document.getElementById(id);
      body.textContent = '';
      list.forEach(function (cells) {
        var tr = document.createElement('tr');
        cells.forEach(function (text, i) {
          var td = document.createElement('td'); td.textContent = text;
          if (i === 1) td.className = 'n';
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    }
    // Room names only when the operator opted in (STATS_ROOM_NAMES=true); sizes always.
    rows('sizes', doc.roomSizes.slice().reverse().slice(0, 20).map(function (p) { return [p[0], p[1]]; }));
    var named = Array.isArray(doc.rooms);
    document.getElementById('rooms-table').hidden = !named;
    if (named) rows('rooms', doc.rooms.map(function (r) { return [r.name, r.members]; }));
    document.getElementById('updated').textContent = 'updated ' + new Date(h[h.length - 1].t).toLocaleTimeString();
    document.body.dataset.ready = 'true';
  }
  function poll() {
    fetch('stats.json', { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (doc) {
      render(doc);
      setTimeout(poll, Math.min(doc.intervalMs, 5000));
    }).catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
</script>
</body>
</html>
`;
}
