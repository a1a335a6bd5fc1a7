/**
 * `roomwire/prometheus`: the hub's counters as Prometheus metrics on a prom-client
 * registry (prom-client is an optional peer dependency, so your registry and ours are
 * the same module). Values are read from {@link Hub.stats} when the registry is scraped,
 * so the hub's hot paths pay nothing for them.
 *
 * @packageDocumentation
 * @module roomwire/prometheus
 */
import { register as defaultRegistry, type Metric, type Registry } from 'prom-client';
import type { Hub, HubStats } from '../core/api';
import { hubMetricFamilies, METRIC_NAMES, type MetricFamily } from './families';

export { METRIC_NAMES } from './families';

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

  // One snapshot serves every metric of a scrape: prom-client calls the metrics' get()
  // synchronously one after another, so the families are dropped at the next microtask and
  // the next scrape takes a fresh snapshot.
  let families: Map<string, MetricFamily> | undefined;
  const family = (name: string): MetricFamily => {
    if (families === undefined) {
      const stats: HubStats = hub.stats();
      families = new Map(hubMetricFamilies(stats, options).map((f) => [f.name, f]));
      queueMicrotask(() => {
        families = undefined;
      });
    }
    return families.get(name) as MetricFamily;
  };

  // Each family is a collector of its own (the shape prom-client's registry reads: name,
  // help, type, get()), so values are computed per scrape and the hot paths pay nothing.
  const names = METRIC_NAMES.map((n) => p + n);
  for (const name of names) {
    const first = family(name);
    const metric = {
      name,
      help: first.help,
      type: first.type,
      aggregator: 'sum',
      get() {
        const f = family(name);
        return { name, help: f.help, type: f.type, aggregator: 'sum', values: f.samples.map((x) => ({ labels: x.labels, value: x.value, metricName: x.metricName })) };
      },
      reset() {},
    };
    registry.registerMetric(metric as unknown as Metric);
  }

  return {
    unregister() {
      for (const name of names) registry.removeSingleMetric(name);
    },
  };
}
