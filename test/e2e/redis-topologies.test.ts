/**
 * The Redis topology helpers start what they promise: a cluster that serves keys and promotes a
 * replica when a master dies, a sentinel setup whose failover moves the master, and a TLS server
 * that a client with the right CA reaches and one with the wrong CA does not.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { Cluster } from 'ioredis';
import { createClient, createCluster, createSentinel } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  redisQuery,
  runningTopologyPids,
  startRedisCluster,
  startSentinel,
  startTlsRedis,
  type RedisCluster,
  type SentinelSetup,
  type TlsRedis,
} from '../helpers/redis-topologies';

const ignore = () => {};

afterAll(() => {
  // Every describe's afterAll has stopped its topology by now: nothing may be left running.
  expect(runningTopologyPids()).toEqual([]);
});

describe('startRedisCluster', () => {
  let cluster: RedisCluster | undefined;
  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('creates 3 masters with a replica each, serving keys through createCluster', async () => {
    const c = cluster!;
    expect(c.nodes.filter((n) => n.role === 'master')).toHaveLength(3);
    expect(c.nodes.filter((n) => n.role === 'replica')).toHaveLength(3);
    expect(c.seeds).toEqual(c.nodes.filter((n) => n.role === 'master').map((n) => `redis://127.0.0.1:${n.port}`));

    const client = createCluster({ rootNodes: c.seeds.map((url) => ({ url })) });
    client.on('error', ignore);
    await client.connect();
    try {
      const keys = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
      for (const key of keys) await client.set(key, `v-${key}`);
      for (const key of keys) expect(await client.get(key)).toBe(`v-${key}`);
      // masterFor names the node that really holds the key (any other answers -MOVED).
      const owners = new Set<number>();
      for (const key of keys) {
        const port = await c.masterFor(key);
        owners.add(port);
        expect(await redisQuery(port, ['GET', key])).toBe(`v-${key}`);
      }
      expect(owners.size).toBeGreaterThan(1);
    } finally {
      await client.close();
    }
  });

  it('promotes the replica of a killed master', async () => {
    const c = cluster!;
    const master = await c.masterFor('alpha');
    await redisQuery(master, ['SET', 'alpha', 'before-kill']);
    expect(await redisQuery(master, ['WAIT', 1, 2000])).toBe(1);
    await c.killNode(master);
    const promoted = await c.waitForPromotion(master);
    expect(c.nodes.find((n) => n.port === promoted)?.role).toBe('replica');
    expect(await c.masterFor('alpha')).toBe(promoted);

    const survivors = c.nodes.filter((n) => n.port !== master).map((n) => ({ host: '127.0.0.1', port: n.port }));
    const client = new Cluster(survivors, { lazyConnect: true });
    client.on('error', ignore);
    try {
      await client.connect();
      expect(await client.get('alpha')).toBe('before-kill');
    } finally {
      client.disconnect();
    }
  });
});

describe('startSentinel', () => {
  let setup: SentinelSetup | undefined;
  beforeAll(async () => {
    setup = await startSentinel();
  }, 30_000);
  afterAll(async () => {
    await setup?.stop();
  });

  it('resolves the master, serves it through createSentinel, and fails over to the replica', async () => {
    const s = setup!;
    expect(s.sentinels).toHaveLength(3);
    expect(s.sentinelUrls).toEqual(s.sentinels.map((x) => `redis://127.0.0.1:${x.port}`));
    const before = await s.masterPort();
    expect(before).toBe(s.dataPorts[0]);

    const client = createSentinel({ name: s.name, sentinelRootNodes: [...s.sentinels] });
    client.on('error', ignore);
    await client.connect();
    try {
      await client.set('k', 'v');
      expect(await client.get('k')).toBe('v');
    } finally {
      await client.close();
    }

    const after = await s.failover();
    expect(after).toBe(s.dataPorts[1]);
    expect(await s.masterPort()).toBe(after);
    expect(await redisQuery(after, ['GET', 'k'])).toBe('v');
  });
});

describe('startTlsRedis', () => {
  let server: TlsRedis | undefined;
  beforeAll(async () => {
    server = await startTlsRedis({ requireClientCert: true });
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });

  /** Connect with node-redis and these TLS options and PING; a failure names the socket's errors. */
  async function ping(tlsOptions: { ca: string; cert: string; key: string }): Promise<string> {
    const client = createClient({
      url: server!.url,
      socket: {
        tls: true,
        ca: readFileSync(tlsOptions.ca),
        cert: readFileSync(tlsOptions.cert),
        key: readFileSync(tlsOptions.key),
        reconnectStrategy: false,
        connectTimeout: 2000,
      },
    });
    const errors: string[] = [];
    client.on('error', (err: Error) => errors.push(err.message));
    try {
      await client.connect();
      return await client.ping();
    } catch (err) {
      throw new Error(`${(err as Error).message} (socket errors: ${errors.join('; ')})`);
    } finally {
      if (client.isOpen) client.destroy();
    }
  }

  it('answers a client that trusts its CA and shows a client certificate', async () => {
    const { files, url, port } = server!;
    expect(url).toBe(`rediss://127.0.0.1:${port}`);
    expect(await ping({ ca: files.ca, cert: files.clientCert, key: files.clientKey })).toBe('PONG');
  });

  it('fails the connect for a client that trusts only the wrong CA', async () => {
    const { files } = server!;
    await expect(ping({ ca: files.wrongCa, cert: files.clientCert, key: files.clientKey })).rejects.toThrow(/certificate/i);
  });

  it('refuses a client without a certificate when client certificates are required', async () => {
    // Raw TLS: with TLS 1.3 the server rejects the missing certificate after the client's handshake.
    const reply = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: server!.port, ca: readFileSync(server!.files.ca) });
      let text = '';
      socket.setTimeout(2000, () => socket.destroy(new Error('timeout')));
      socket.on('secureConnect', () => socket.write('PING\r\n'));
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('error', (err) => resolve(`${text}error: ${err.message}`));
      socket.on('close', () => resolve(text));
    });
    expect(reply).not.toContain('+PONG');
    expect(reply).toMatch(/certificate|error/i);
  });
});
