/**
 * `roomwire/prometheus`: the hub's counters as Prometheus metrics on a prom-client
 * registry (prom-client is an optional peer dependency, so your registry and ours are
 * the same module). Values are read from {@link Hub.stats} when the registry is scraped,
 * so the hub's hot paths pay nothing for them.
 *
 * @packageDocumentation
 * @module roomwire/prometheus
 */
import { Counter, Gauge, register as defaultRegistry, type Histogram, type Registry } from 'prom-client';
import type { Hub, HubStats } from '../core/api';
import { REJECT_REASONS } from '../core/stats';

/** Options of {@link registerHubMetrics}. */
export interface HubMetricsOptions {
  /** The registry to register on. @default prom-client's global `register` */
  readonly registry?: Registry;
  /** Prefix of every metric name. @default 'roomwire_' */
  readonly prefix?: string;
  /** Upper bounds of the `room_members` histogram buckets. @default [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000] */
  readonly roomSizeBuckets?: readonly number[];
}

/** What {@link registerHubMetrics} returns. */
export interface HubMetrics {
  /** Remove every metric it registered from the registry. */
  unregister(): void;
}

/** Names (without the prefix) of the metrics {@link registerHubMetrics} registers. */
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

/**
 * Register the hub's metrics on a prom-client registry. Every metric reads one
 * {@link Hub.stats} snapshot per scrape. Room occupancy is a histogram of members per
 * room (no room-name label, so cardinality stays bounded however many rooms exist).
 *
 * @example
 * ```ts
 * import { Registry } from 'prom-client';
 * import { registerHubMetrics } from 'roomwire/prometheus';
 *
 * const registry = new Registry();
 * registerHubMetrics(hub, { registry });
 * // GET /metrics: res.end(await registry.metrics())
 * ```
 */
export function registerHubMetrics(hub: Hub, options: HubMetricsOptions = {}): HubMetrics {
  const registry = options.registry ?? defaultRegistry;
  const p = options.prefix ?? 'roomwire_';
  const registers = [registry];

  // One snapshot serves every metric of a scrape: prom-client calls the collect
  // functions synchronously one after another, so the snapshot is dropped at the next
  // microtask and the next scrape takes a fresh one.
  let snapshot: HubStats | undefined;
  const stats = (): HubStats => {
    if (snapshot === undefined) {
      snapshot = hub.stats();
      queueMicrotask(() => {
        snapshot = undefined;
      });
    }
    return snapshot;
  };

  function counter(name: string, help: string, value: (s: HubStats) => number): Counter {
    return new Counter({
      name: p + name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(value(stats()));
      },
    });
  }
  function labelledCounter(name: string, help: string, label: string, values: (s: HubStats) => Readonly<Record<string, number>>): Counter<string> {
    return new Counter({
      name: p + name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [key, v] of Object.entries(values(stats()))) this.inc({ [label]: key }, v);
      },
    });
  }
  function gauge(name: string, help: string, value: (s: HubStats) => number): Gauge {
    return new Gauge({
      name: p + name,
      help,
      registers,
      collect() {
        this.set(value(stats()));
      },
    });
  }

  const metrics: (Counter | Gauge | Histogram)[] = [
    gauge('connections', 'Open WebSocket connections.', (s) => s.connections),
    counter('connections_total', 'WebSocket connections accepted.', (s) => s.connectionsAccepted),
    labelledCounter('connections_rejected_total', 'Upgrade requests refused, by reason.', 'reason', (s) => {
      const out: Record<string, number> = {};
      for (const r of REJECT_REASONS) out[r] = s.rejected[r];
      return out;
    }),
    labelledCounter('messages_received_total', 'Inbound messages by type ("invalid" for those that failed a check).', 'type', (s) => s.messagesIn),
    counter('messages_delivered_total', 'Room frames (join, leave, message) delivered to members.', (s) => s.deliveries),
    counter('frames_sent_total', 'Frames sent to clients, room frames once per recipient.', (s) => s.framesOut),
    counter('bytes_received_total', 'Bytes of inbound data frames.', (s) => s.bytesIn),
    counter('bytes_sent_total', 'Bytes of frames sent, room frames once per recipient.', (s) => s.bytesOut),
    labelledCounter('errors_total', 'Error frames sent to clients, by code.', 'code', (s) => s.errors),
    labelledCounter('heartbeat_terminations_total', 'Connections ended by the heartbeat sweep, by reason.', 'reason', (s) => s.terminations),
    gauge('rooms', 'Rooms with members in this process.', (s) => s.rooms),
    gauge('broker_connected', '1 while the broker reaches the other hub processes (always 1 in a single process), else 0.', (s) => (s.broker.connected ? 1 : 0)),
    gauge('broker_processes', 'Hub processes the broker knows of, this one included.', (s) => s.broker.processes),
    gauge('history_rooms', "Rooms whose history this process keeps in memory (0 when it lives in Redis).", (s) => s.history.rooms),
    gauge('history_messages', 'Messages kept in this process for recovery: at most the history size per room.', (s) => s.history.messages),
    gauge('history_bytes', 'UTF-8 bytes of the messages kept in this process for recovery.', (s) => s.history.bytes),
    labelledCounter('recoveries_total', 'Joins with since, by result: recovered (every missed message delivered) or not (recovered: false).', 'result', (s) => ({ recovered: s.history.recovered, missed: s.history.unrecovered })),
  ];

  // Histograms the hub keeps itself (connection lifetimes, one array increment per closed
  // connection; room occupancy, kept up to date per join and leave) are exposed as they
  // are: a scrape reads a few numbers, never one value per room or per connection.
  const histogram = (name: string, help: string, read: (s: HubStats) => { le: readonly number[]; cumulative: readonly number[]; sum: number; count: number }) => {
    const full = p + name;
    const metric = {
      name: full,
      help,
      type: 'histogram',
      aggregator: 'sum',
      async get() {
        const h = read(stats());
        const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
        h.le.forEach((le, i) => values.push({ labels: { le }, value: h.cumulative[i] ?? 0, metricName: `${full}_bucket` }));
        values.push({ labels: { le: '+Inf' }, value: h.count, metricName: `${full}_bucket` });
        values.push({ labels: {}, value: h.sum, metricName: `${full}_sum` });
        values.push({ labels: {}, value: h.count, metricName: `${full}_count` });
        return { name: full, help, type: 'histogram', values, aggregator: 'sum' };
      },
      reset() {},
    };
    registry.registerMetric(metric as unknown as Histogram);
    metrics.push(metric as unknown as Histogram);
  };

  const roomBuckets = [...(options.roomSizeBuckets ?? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000])].sort((a, b) => a - b);
  histogram('room_members', 'Room occupancy: rooms by their number of member connections.', (s) => {
    const cumulative = roomBuckets.map(() => 0);
    let sum = 0;
    let count = 0;
    for (const [members, rooms] of s.roomSizes) {
      sum += members * rooms;
      count += rooms;
      for (let i = roomBuckets.length - 1; i >= 0 && members <= (roomBuckets[i] as number); i--) (cumulative[i] as number) += rooms;
    }
    return { le: roomBuckets, cumulative, sum, count };
  });
  histogram('connection_duration_seconds', 'Lifetime of closed WebSocket connections, seconds.', (s) => {
    const h = s.connectionDurations;
    let running = 0;
    const cumulative = h.buckets.map((_, i) => (running += h.counts[i] ?? 0));
    return { le: h.buckets, cumulative, sum: h.sum, count: h.count };
  });

  return {
    unregister() {
      for (const m of metrics) registry.removeSingleMetric((m as unknown as { name: string }).name);
    },
  };
}
