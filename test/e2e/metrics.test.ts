/**
 * Observability: after a scripted session over real sockets, `/metrics` and
 * `hub.stats()` equal what happened; the logger sees the session; `/stats.json` too.
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createHub } from '../../src/index';
import { hubMetricFamilies, renderPrometheusText } from '../../src/metrics/families';
import { METRIC_NAMES, registerHubMetrics } from '../../src/metrics/prometheus';
import { startServer } from '../../src/server/standalone';
import { Peer, SECRET, sign, sleep, upgrade } from '../helpers/client';
import { FakeClock, connect } from '../helpers/fake';

/** Parse Prometheus text into `name{labels}` → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+?)(\{.*\})? (\S+)$/.exec(line);
    if (m) out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return out;
}

describe('metrics after a scripted session', () => {
  it('/metrics and hub.stats() equal what happened', async () => {
    const lines: string[] = [];
    const s = await startServer({
      env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_JWT_SECRET: SECRET, WEBSOCKET_MESSAGE_RATE: '1000/s,1000', LOG_LEVEL: 'debug' },
      log: (l) => lines.push(l),
    });
    try {
      const base = `ws://127.0.0.1:${s.port}`;
      // 3 refusals: 404, 401, 401
      expect((await upgrade(s.port, '/ws/a/b')).status).toBe(404);
      expect((await upgrade(s.port, '/ws/auth')).status).toBe(401);
      expect((await upgrade(s.port, '/ws?token=bad')).status).toBe(401);
      // 3 connections: a and b in room r, c in rooms r and s
      const a = await Peer.open(`${base}/ws/r`);
      const b = await Peer.open(`${base}/ws/auth/r?token=${await sign({ sub: 'bob' })}`);
      const c = await Peer.open(`${base}/ws/r`);
      c.send({ type: 'join', room: 's' });
      await c.take(4); // join + user_list in r, then in s
      // messages: a sends 2 to r (3 members each), b sends 1 ping, c sends 1 invalid JSON and 1 not_in_room
      a.send({ type: 'message', room: 'r', content: 'one' });
      a.send({ type: 'message', room: 'r', content: 'two' });
      b.send({ type: 'ping' });
      c.send('{bad');
      c.send({ type: 'message', room: 'nope', content: 'x' });
      await a.take(2 /* own join+list */ + 2 /* b, c joins */ + 2);
      // c leaves by closing: a and b get leave for r (s had only c)
      await sleep(50);
      c.close();
      await c.closed;
      await a.next(); // c's leave
      await sleep(50);

      const stats = s.hub.stats();
      expect(stats).toMatchObject({
        connections: 2,
        connectionsAccepted: 3,
        connectionsClosed: 1,
        rooms: 1,
        roomSizes: [[2, 1]],
        rejected: { not_found: 1, unauthorized: 2, disabled: 0, origin: 0, rate_limited: 0, capacity: 0, shutting_down: 0, handshake: 0 },
        messagesIn: { join: 1, leave: 0, message: 3, ping: 1, pong: 0, user_list: 0, auth: 0, invalid: 1 },
        errors: { invalid_json: 1, not_in_room: 1, rate_limited: 0 },
        // joins: a→1, b→2, c in r→3, c in s→1; messages 2×3; c's leave of r→2, of s→0
        deliveries: 1 + 2 + 3 + 1 + 6 + 2,
      });
      expect(stats.connectionDurations.count).toBe(1);
      expect(stats.connectionDurations.counts[0]).toBe(1); // under a second

      const res = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const m = parse(await res.text());
      expect(m.get('roomwire_connections')).toBe(2);
      expect(m.get('roomwire_connections_total')).toBe(3);
      expect(m.get('roomwire_connections_rejected_total{reason="not_found"}')).toBe(1);
      expect(m.get('roomwire_connections_rejected_total{reason="unauthorized"}')).toBe(2);
      expect(m.get('roomwire_connections_rejected_total{reason="capacity"}')).toBe(0);
      expect(m.get('roomwire_messages_received_total{type="message"}')).toBe(3);
      expect(m.get('roomwire_messages_received_total{type="invalid"}')).toBe(1);
      expect(m.get('roomwire_messages_received_total{type="join"}')).toBe(1);
      expect(m.get('roomwire_messages_delivered_total')).toBe(stats.deliveries);
      expect(m.get('roomwire_errors_total{code="invalid_json"}')).toBe(1);
      expect(m.get('roomwire_errors_total{code="not_in_room"}')).toBe(1);
      expect(m.get('roomwire_errors_total{code="room_full"}')).toBe(0);
      expect(m.get('roomwire_rooms')).toBe(1);
      expect(m.get('roomwire_broker_connected')).toBe(1);
      expect(m.get('roomwire_broker_processes')).toBe(1);
      expect(m.get('roomwire_room_members_bucket{le="1"}')).toBe(0);
      expect(m.get('roomwire_room_members_bucket{le="2"}')).toBe(1);
      expect(m.get('roomwire_room_members_sum')).toBe(2);
      expect(m.get('roomwire_room_members_count')).toBe(1);
      expect(m.get('roomwire_connection_duration_seconds_count')).toBe(1);
      expect(m.get('roomwire_connection_duration_seconds_bucket{le="1"}')).toBe(1);
      expect(m.get('roomwire_bytes_received_total')).toBe(stats.bytesIn);
      expect(m.get('roomwire_bytes_sent_total')).toBe(stats.bytesOut);
      expect(m.get('roomwire_heartbeat_terminations_total{reason="pong_timeout"}')).toBe(0);
      expect([...m.keys()].some((k) => k.startsWith('process_cpu_user_seconds_total'))).toBe(true);

      // The JSON log lines saw the session.
      const entries = lines.map((l) => JSON.parse(l) as { level: string; msg: string; code?: string; reason?: string });
      expect(entries.filter((e) => e.msg === 'connection opened')).toHaveLength(3);
      expect(entries.filter((e) => e.msg === 'connection closed')).toHaveLength(1);
      expect(entries.filter((e) => e.msg === 'upgrade refused').map((e) => e.reason)).toEqual(['not_found', 'unauthorized', 'unauthorized']);
      expect(entries.filter((e) => e.msg === 'error frame sent').map((e) => e.code)).toEqual(['invalid_json', 'not_in_room']);

      const json = (await (await fetch(`http://127.0.0.1:${s.port}/stats.json`)).json()) as {
        history: { connections: number; messages: number; errors: number; deliveries: number }[];
        roomSizes: [number, number][];
        rooms?: unknown;
      };
      expect(json.history.at(-1)).toMatchObject({ connections: 2, messages: 6, errors: 2, deliveries: stats.deliveries });
      // Occupancy without names: the operator did not opt in to STATS_ROOM_NAMES.
      expect(json.roomSizes).toEqual([[2, 1]]);
      expect(json.rooms).toBeUndefined();
      a.close();
      b.close();
    } finally {
      await s.close();
    }
  });

  it('shows the history kept and how rejoins fared', async () => {
    const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_HISTORY_SIZE: '3', WEBSOCKET_MESSAGE_RATE: '1000/s,1000' }, log: () => {} });
    try {
      const base = `ws://127.0.0.1:${s.port}/ws`;
      const a = await Peer.open(`${base}/r`);
      await a.take(2);
      for (let i = 0; i < 5; i++) a.send({ type: 'message', room: 'r', content: 'xyz' });
      const sent = await a.take(5);
      a.send({ type: 'join', room: 'q', id: 1 });
      const ack = (await a.take(3))[2]!;
      const b = await Peer.open(base);
      b.send({ type: 'join', room: 'r', since: { offset: 3, epoch: 'gone' }, id: 1 });
      b.send({ type: 'join', room: 'q', since: { offset: 0, epoch: ack.epoch }, id: 2 });
      await b.take(6);
      const bytes = sent.slice(2).reduce((n, f) => n + Buffer.byteLength(JSON.stringify(f)), 0);
      expect(s.hub.stats().history).toEqual({ enabled: true, rooms: 2, messages: 3, bytes, recovered: 1, unrecovered: 1 });
      const m = parse(await (await fetch(`http://127.0.0.1:${s.port}/metrics`)).text());
      expect(m.get('roomwire_history_rooms')).toBe(2);
      expect(m.get('roomwire_history_messages')).toBe(3);
      expect(m.get('roomwire_history_bytes')).toBe(bytes);
      expect(m.get('roomwire_recoveries_total{result="recovered"}')).toBe(1);
      expect(m.get('roomwire_recoveries_total{result="missed"}')).toBe(1);
      a.close();
      b.close();
    } finally {
      await s.close();
    }
  });

  it('registers on a custom registry, reads the hub at scrape time, and unregisters', async () => {
    const hub = createHub({ clock: new FakeClock(), messageRate: '100/s,100' });
    const registry = new Registry();
    const metrics = registerHubMetrics(hub, { registry, prefix: 'chat_' });
    const t = await connect(hub, '/ws/x');
    t.json({ type: 'message', room: 'x', content: 'hi' });
    let m = parse(await registry.metrics());
    expect(m.get('chat_connections')).toBe(1);
    expect(m.get('chat_messages_received_total{type="message"}')).toBe(1);
    t.json({ type: 'message', room: 'x', content: 'again' });
    m = parse(await registry.metrics());
    expect(m.get('chat_messages_received_total{type="message"}')).toBe(2);
    metrics.unregister();
    expect((await registry.metrics()).trim()).toBe('');
    expect(registry.getMetricsAsArray()).toHaveLength(0);
    await hub.close();
  });

  it('renders without prom-client exactly what prom-client renders: the same HELP, TYPE and samples', async () => {
    const hub = createHub({ clock: new FakeClock(), messageRate: '100/s,100' });
    const registry = new Registry();
    registerHubMetrics(hub, { registry });
    const a = await connect(hub, '/ws/x');
    const b = await connect(hub, '/ws/x');
    a.json({ type: 'message', room: 'x', content: 'hi "there"\n' });
    b.json({ type: 'nope' });
    b.close(1000, 'bye');
    const theirs = await registry.metrics();
    const ours = renderPrometheusText(hubMetricFamilies(hub.stats()));
    expect([...parse(ours)].sort()).toEqual([...parse(theirs)].sort());
    const comments = (text: string) => text.split('\n').filter((l) => l.startsWith('#')).sort();
    expect(comments(ours)).toEqual(comments(theirs));
    expect(comments(ours).filter((l) => l.startsWith('# TYPE')).map((l) => l.split(' ')[2])).toEqual(METRIC_NAMES.map((n) => `roomwire_${n}`).sort());
    expect(parse(ours).get('roomwire_connections')).toBe(1);
    expect(parse(ours).get('roomwire_messages_received_total{type="message"}')).toBe(1);
    await hub.close();
  });

  it('logs through an injected logger with pino’s method shape', async () => {
    const seen: [string, Record<string, unknown>, string | undefined][] = [];
    const record = (level: string) => (fields: object, msg?: string) => seen.push([level, fields as Record<string, unknown>, msg]);
    const hub = createHub({
      clock: new FakeClock(),
      logger: { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') },
      canJoin: () => {
        throw new Error('boom');
      },
    });
    const t = await connect(hub, '/ws/r');
    expect(seen.map(([level, , msg]) => `${level}:${msg}`)).toEqual([
      'debug:connection opened',
      'error:authorization hook threw',
      'debug:error frame sent',
    ]);
    expect(seen[1]![1]).toMatchObject({ code: 'ERR_HOOK', err: expect.objectContaining({ message: 'boom' }) });
    t.listener.onClose(1000, '');
    await hub.close();
    expect(seen.at(-1)?.[2]).toBe('hub closing');
  });
});
