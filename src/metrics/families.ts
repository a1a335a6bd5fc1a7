/**
 * The hub's metrics as data: one list of metric families computed from a
 * {@link HubStats} snapshot, the single source of their names, help texts, types and
 * labels. `roomwire/prometheus` hands them to a prom-client registry; the standalone
 * server renders them itself ({@link renderPrometheusText}) when prom-client is not
 * installed, so `GET /metrics` answers either way.
 *
 * @internal
 */
import type { HubStats } from '../core/api';
import { REJECT_REASONS } from '../core/stats';

/** One sample of a family: its metric name (the family's, or `_bucket`/`_sum`/`_count` of a histogram), labels and value. */
export interface MetricSample {
  readonly metricName: string;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
}

/** A metric family: what one `# HELP` / `# TYPE` pair announces. */
export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly samples: readonly MetricSample[];
}

/** Options of {@link hubMetricFamilies}. */
export interface MetricFamilyOptions {
  /** Prefix of every metric name. @default 'roomwire_' */
  readonly prefix?: string;
  /** Upper bounds of the `room_members` histogram buckets. @default {@link DEFAULT_ROOM_SIZE_BUCKETS} */
  readonly roomSizeBuckets?: readonly number[];
}

/** Default upper bounds of the `room_members` histogram buckets. */
export const DEFAULT_ROOM_SIZE_BUCKETS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000];

/** Names (without the prefix) of the hub's metrics, in the order `/metrics` lists them. */
export const METRIC_NAMES = [
  'connections',
  'connections_total',
  'connections_rejected_total',
  'messages_received_total',
  'messages_delivered_total',
  'frames_sent_total',
  'bytes_received_total',
  'bytes_sent_total',
  'errors_total',
  'heartbeat_terminations_total',
  'rooms',
  'room_members',
  'connection_duration_seconds',
  'broker_connected',
  'broker_processes',
  'history_rooms',
  'history_messages',
  'history_bytes',
  'recoveries_total',
] as const;

type Name = (typeof METRIC_NAMES)[number];

/**
 * Every hub metric family for one stats snapshot. Room occupancy is a histogram of members
 * per room (no room-name label, so cardinality stays bounded however many rooms exist);
 * connection lifetimes are the hub's own histogram of closed connections.
 */
export function hubMetricFamilies(s: HubStats, options: MetricFamilyOptions = {}): MetricFamily[] {
  const p = options.prefix ?? 'roomwire_';
  const single = (name: Name, type: 'counter' | 'gauge', help: string, value: number): MetricFamily => ({
    name: p + name,
    help,
    type,
    samples: [{ metricName: p + name, labels: {}, value }],
  });
  const labelled = (name: Name, help: string, label: string, values: Readonly<Record<string, number>>): MetricFamily => ({
    name: p + name,
    help,
    type: 'counter',
    samples: Object.entries(values).map(([key, value]) => ({ metricName: p + name, labels: { [label]: key }, value })),
  });
  const histogram = (name: Name, help: string, le: readonly number[], cumulative: readonly number[], sum: number, count: number): MetricFamily => {
    const full = p + name;
    const samples: MetricSample[] = le.map((bound, i) => ({ metricName: `${full}_bucket`, labels: { le: bound }, value: cumulative[i] ?? 0 }));
    samples.push({ metricName: `${full}_bucket`, labels: { le: '+Inf' }, value: count });
    samples.push({ metricName: `${full}_sum`, labels: {}, value: sum });
    samples.push({ metricName: `${full}_count`, labels: {}, value: count });
    return { name: full, help, type: 'histogram', samples };
  };

  const rejected: Record<string, number> = {};
  for (const r of REJECT_REASONS) rejected[r] = s.rejected[r];

  const roomBuckets = [...(options.roomSizeBuckets ?? DEFAULT_ROOM_SIZE_BUCKETS)].sort((a, b) => a - b);
  const roomCumulative = roomBuckets.map(() => 0);
  let roomSum = 0;
  let roomCount = 0;
  for (const [members, rooms] of s.roomSizes) {
    roomSum += members * rooms;
    roomCount += rooms;
    for (let i = roomBuckets.length - 1; i >= 0 && members <= (roomBuckets[i] as number); i--) (roomCumulative[i] as number) += rooms;
  }
  const d = s.connectionDurations;
  let running = 0;
  const durationCumulative = d.buckets.map((_, i) => (running += d.counts[i] ?? 0));

  return [
    single('connections', 'gauge', 'Open WebSocket connections.', s.connections),
    single('connections_total', 'counter', 'WebSocket connections accepted.', s.connectionsAccepted),
    labelled('connections_rejected_total', 'Upgrade requests refused, by reason.', 'reason', rejected),
    labelled('messages_received_total', 'Inbound messages by type ("invalid" for those that failed a check).', 'type', s.messagesIn),
    single('messages_delivered_total', 'counter', 'Room frames (join, leave, message) delivered to members.', s.deliveries),
    single('frames_sent_total', 'counter', 'Frames sent to clients, room frames once per recipient.', s.framesOut),
    single('bytes_received_total', 'counter', 'Bytes of inbound data frames.', s.bytesIn),
    single('bytes_sent_total', 'counter', 'Bytes of frames sent, room frames once per recipient.', s.bytesOut),
    labelled('errors_total', 'Error frames sent to clients, by code.', 'code', s.errors),
    labelled('heartbeat_terminations_total', 'Connections ended by the heartbeat sweep, by reason.', 'reason', s.terminations),
    single('rooms', 'gauge', 'Rooms with members in this process.', s.rooms),
    histogram('room_members', 'Room occupancy: rooms by their number of member connections.', roomBuckets, roomCumulative, roomSum, roomCount),
    histogram('connection_duration_seconds', 'Lifetime of closed WebSocket connections, seconds.', d.buckets, durationCumulative, d.sum, d.count),
    single('broker_connected', 'gauge', '1 while the broker reaches the other hub processes (always 1 in a single process), else 0.', s.broker.connected ? 1 : 0),
    single('broker_processes', 'gauge', 'Hub processes the broker knows of, this one included.', s.broker.processes),
    single('history_rooms', 'gauge', 'Rooms whose history this process keeps in memory (0 when it lives in Redis).', s.history.rooms),
    single('history_messages', 'gauge', 'Messages kept in this process for recovery: at most the history size per room.', s.history.messages),
    single('history_bytes', 'gauge', 'UTF-8 bytes of the messages kept in this process for recovery.', s.history.bytes),
    labelled('recoveries_total', 'Joins with since, by result: recovered (every missed message delivered) or not (recovered: false).', 'result', {
      recovered: s.history.recovered,
      missed: s.history.unrecovered,
    }),
  ];
}

/** The content type of {@link renderPrometheusText}'s output (Prometheus text format 0.0.4). */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const escapeHelp = (text: string): string => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (value: string): string => value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const formatValue = (v: number): string => (Number.isNaN(v) ? 'NaN' : v === Number.POSITIVE_INFINITY ? '+Inf' : v === Number.NEGATIVE_INFINITY ? '-Inf' : String(v));

/**
 * Metric families in the Prometheus text exposition format (version 0.0.4): a `# HELP`
 * and a `# TYPE` line per family, then one line per sample.
 */
export function renderPrometheusText(families: readonly MetricFamily[]): string {
  let out = '';
  for (const f of families) {
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples) {
      const labels = Object.entries(s.labels);
      const text = labels.length === 0 ? '' : `{${labels.map(([k, v]) => `${k}="${escapeLabel(String(v))}"`).join(',')}}`;
      out += `${s.metricName}${text} ${formatValue(s.value)}\n`;
    }
  }
  return out;
}
