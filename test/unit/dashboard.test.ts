/** The Grafana dashboard only queries metrics roomwire/prometheus exports. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../../src/metrics/prometheus';

describe('docs/grafana-dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(new URL('../../docs/grafana-dashboard.json', import.meta.url), 'utf8')) as {
    panels: { title: string; targets: { expr: string }[] }[];
  };

  it('queries only exported metrics and covers the five concerns', () => {
    const exported = new Set(METRIC_NAMES.map((n) => `roomwire_${n}`));
    const used = new Set<string>();
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) {
        for (const m of t.expr.matchAll(/roomwire_[a-z_]+/g)) used.add(m[0].replace(/_(bucket|sum|count)$/, ''));
      }
    }
    expect([...used].filter((n) => !exported.has(n))).toEqual([]);
    for (const concern of ['connections', 'messages_delivered_total', 'errors_total', 'room_members', 'connection_duration_seconds']) {
      expect(used.has(`roomwire_${concern}`)).toBe(true);
    }
  });
});
