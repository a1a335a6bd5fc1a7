/**
 * `GET /metrics` of the standalone server without prom-client (an optional peer
 * dependency that `npx roomwire` does not install): the hub's metrics in Prometheus text
 * all the same (contract section 6), without the process metrics.
 */
import { describe, expect, it, vi } from 'vitest';
import { METRIC_NAMES } from '../../src/metrics/families';
import { startServer } from '../../src/server/standalone';
import { Peer } from '../helpers/client';

vi.mock('prom-client', () => {
  throw Object.assign(new Error("Cannot find package 'prom-client'"), { code: 'ERR_MODULE_NOT_FOUND' });
});

describe('GET /metrics without prom-client', () => {
  it('answers 200 with every hub metric in Prometheus text, and says at startup what is missing', async () => {
    const lines: string[] = [];
    const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0' }, log: (l) => lines.push(l) });
    try {
      const peer = await Peer.open(`ws://127.0.0.1:${s.port}/ws/r`);
      await peer.take(2);
      const res = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const text = await res.text();
      const types = text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
      expect(types).toEqual(METRIC_NAMES.map((n) => `roomwire_${n}`));
      expect(text).toContain('\nroomwire_connections 1\n');
      expect(text).toContain('\nroomwire_messages_delivered_total 1\n'); // its own join notice
      expect(text).toContain('\nroomwire_room_members_bucket{le="1"} 1\n');
      expect(text).not.toContain('process_cpu');
      const said = lines.map((l) => JSON.parse(l) as { msg?: string }).filter((l) => l.msg?.startsWith('prom-client is not installed'));
      expect(said).toHaveLength(1);
      peer.close();
    } finally {
      await s.close();
    }
  });
});
