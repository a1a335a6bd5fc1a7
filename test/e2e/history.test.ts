/**
 * History and recovery (docs/protocol.md section 9) over real sockets: in one process, and across
 * two processes on a real redis-server through each client library. The standalone server
 * runs in this process (startServer, as the bin does), configured from the environment.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { Peer, sleep, type Frame } from '../helpers/client';
import { RedisServer } from '../helpers/redis';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-topologies';

const quiet = () => {};
let redis: RedisServer;

beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis?.kill();
});

let roomCounter = 0;
const freshRoom = () => `h${++roomCounter}-${Date.now().toString(36)}`;

/** Frames until (and including) the first that matches (5 s at most). */
const until = (peer: Peer, match: (f: Frame) => boolean, timeout = 5000): Promise<Frame[]> => peer.until(match, timeout);

const isAck = (id: string | number) => (f: Frame) => f.type === 'ack' && f.id === id;
const messages = (frames: Frame[]) => frames.filter((f) => f.type === 'message');
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

interface Hubs {
  readonly servers: RunningServer[];
  /** A server of the hub, round robin. */
  at(i: number): RunningServer;
  close(): Promise<void>;
}

type Deployment = {
  readonly title: string;
  /** On the single redis-server of this file (which a test may stop). */
  readonly redis: boolean;
  start(env: Record<string, string>): Promise<Hubs>;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
};

let cluster: RedisCluster | undefined;

function deployment(title: string, processes: number, client: 'redis' | 'ioredis' | undefined, mode: 'single' | 'cluster' = 'single'): Deployment {
  return {
    title,
    redis: client !== undefined && mode === 'single',
    ...(mode === 'cluster'
      ? {
          setup: async () => {
            cluster = await startRedisCluster();
          },
          teardown: async () => {
            await cluster?.stop();
            cluster = undefined;
          },
        }
      : {}),
    async start(env) {
      const servers: RunningServer[] = [];
      for (let i = 0; i < processes; i++) {
        const redisEnv: Record<string, string> =
          client === undefined
            ? {}
            : mode === 'cluster'
              ? { WEBSOCKET_REDIS_URL: cluster!.seeds.join(','), WEBSOCKET_REDIS_MODE: 'cluster', WEBSOCKET_REDIS_CLIENT: client }
              : { WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_CLIENT: client };
        servers.push(await startServer({ env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_MESSAGE_RATE: '100000/s', WEBSOCKET_CONNECT_RATE: '100000/s', WEBSOCKET_HISTORY_SIZE: '100', ...redisEnv, ...env }, log: quiet }));
      }
      // Every process in step with the others (its members listed everywhere).
      for (const s of servers) await s.hub.ready();
      return {
        servers,
        at: (i) => servers[i % servers.length] as RunningServer,
        close: async () => {
          await Promise.all(servers.map((s) => s.close()));
        },
      };
    },
  };
}

/** A connection joined to `room` on `server`; resolves with its join ack. */
async function member(server: RunningServer, room: string, since?: { offset: number; epoch: string }): Promise<{ peer: Peer; ack: Frame; frames: Frame[] }> {
  const peer = await Peer.open(`ws://127.0.0.1:${server.port}/ws`);
  peer.send({ type: 'join', room, id: 'j', ...(since === undefined ? {} : { since }) });
  const frames = await until(peer, isAck('j'));
  return { peer, ack: frames.at(-1) as Frame, frames };
}

/** Send `n` messages with ids and wait for the last ack. */
async function say(peer: Peer, room: string, n: number, tag: string): Promise<Frame[]> {
  for (let i = 0; i < n; i++) peer.send({ type: 'message', room, content: `${tag} ${i}`, id: `${tag}-${i}` });
  return until(peer, isAck(`${tag}-${n - 1}`));
}

const DEPLOYMENTS: Deployment[] = [
  deployment('one process', 1, undefined),
  deployment('two processes over Redis (node-redis)', 2, 'redis'),
  deployment('two processes over Redis (ioredis)', 2, 'ioredis'),
  deployment('three processes over a Redis Cluster of 3 shards (node-redis)', 3, 'redis', 'cluster'),
  deployment('three processes over a Redis Cluster of 3 shards (ioredis)', 3, 'ioredis', 'cluster'),
];

for (const d of DEPLOYMENTS) {
  describe(`history and recovery: ${d.title}`, () => {
    let hubs: Hubs;
    beforeAll(async () => {
      await d.setup?.();
      hubs = await d.start({});
    }, 60_000);
    afterAll(async () => {
      await hubs?.close();
      await d.teardown?.();
    });

    it('numbers messages across processes; a rejoiner with since gets exactly what it missed, in order, then live ones from ack.offset + 1', async () => {
      const room = freshRoom();
      const a = await member(hubs.at(0), room);
      expect(a.ack).toEqual({ type: 'ack', id: 'j', room, offset: 0, epoch: expect.any(String), timestamp: expect.any(Number) });
      const b = await member(hubs.at(1), room);
      expect(b.ack).toMatchObject({ offset: 0, epoch: a.ack.epoch });
      const first = await say(b.peer, room, 3, 'first');
      expect(messages(first).map((f) => f.offset)).toEqual([1, 2, 3]);
      expect(first.at(-1)).toEqual({ type: 'ack', id: 'first-2', room, offset: 3, timestamp: expect.any(Number) });
      const seenByA = messages(await until(a.peer, (f) => f.type === 'message' && f.offset === 3));
      expect(seenByA.map((f) => f.offset)).toEqual([1, 2, 3]);
      a.peer.close();
      await a.peer.closed;
      const missed = messages(await say(b.peer, room, 5, 'missed'));
      expect(missed.map((f) => f.offset)).toEqual([4, 5, 6, 7, 8]);
      const again = await member(hubs.at(0), room, { offset: 3, epoch: a.ack.epoch as string });
      expect(again.frames.map((f) => f.type)).toEqual(['join', 'user_list', 'message', 'message', 'message', 'message', 'message', 'ack']);
      expect(again.frames.slice(2, 7)).toEqual(missed);
      expect(again.ack).toEqual({ type: 'ack', id: 'j', room, offset: 8, epoch: a.ack.epoch, recovered: true, timestamp: expect.any(Number) });
      await say(b.peer, room, 1, 'live');
      expect(messages(await until(again.peer, (f) => f.type === 'message')).map((f) => f.offset)).toEqual([9]);
      b.peer.close();
      again.peer.close();
    });

    it('recovers nothing (recovered: false) for another epoch, a since ahead, or messages no longer kept; live ones follow from ack.offset + 1', async () => {
      const small = await d.start({ WEBSOCKET_HISTORY_SIZE: '3' });
      try {
        const room = freshRoom();
        const a = await member(small.at(1), room);
        await say(a.peer, room, 10, 'm');
        const epoch = a.ack.epoch as string;
        let latest = 10;
        for (const since of [() => ({ offset: latest - 4, epoch }), () => ({ offset: latest + 1, epoch }), () => ({ offset: latest - 1, epoch: 'another' })]) {
          const b = await member(small.at(0), room, since());
          expect(b.frames.map((f) => f.type)).toEqual(['join', 'user_list', 'ack']);
          expect(b.ack).toEqual({ type: 'ack', id: 'j', room, offset: latest, epoch, recovered: false, timestamp: expect.any(Number) });
          await say(a.peer, room, 1, `next${latest}`);
          expect(messages(await until(b.peer, (f) => f.type === 'message')).map((f) => f.offset)).toEqual([++latest]);
          b.peer.close();
        }
        const c = await member(small.at(0), room, { offset: latest - 3, epoch });
        expect(messages(c.frames).map((f) => f.offset)).toEqual(range(latest - 2, latest));
        expect(c.ack).toMatchObject({ offset: latest, recovered: true });
        a.peer.close();
        c.peer.close();
      } finally {
        await small.close();
      }
    });

    it('1,000 messages from 3 senders while 20 members drop and rejoin: every member sees 1..1000, no gap, no duplicate', async () => {
      // Kept: all of them, so every rejoin can recover whatever it missed meanwhile.
      const big = await d.start({ WEBSOCKET_HISTORY_SIZE: '1000' });
      onTestFinished(() => big.close());
      const hubs = big;
      const room = freshRoom();
      const senders = await Promise.all([0, 1, 2].map((i) => member(hubs.at(i), room)));
      const members = await Promise.all(range(0, 19).map((i) => member(hubs.at(i), room)));
      const epoch = senders[0]!.ack.epoch as string;
      const total = 999; // 333 per sender
      const seen: number[][] = members.map(() => []);
      const collect = (i: number, frames: Frame[]) => {
        for (const f of messages(frames)) seen[i]!.push(f.offset as number);
      };
      // Senders send in bursts; members drop and rejoin in the middle of them.
      const sending = Promise.all(
        senders.map(async (s, k) => {
          for (let burst = 0; burst < 9; burst++) {
            await say(s.peer, room, 37, `s${k}b${burst}`);
          }
        }),
      );
      const rejoining = Promise.all(
        members.map(async (m, i) => {
          await sleep(5 + i * 7);
          collect(i, m.peer.frames.splice(0));
          m.peer.close();
          await m.peer.closed;
          collect(i, m.peer.frames.splice(0));
          const last = seen[i]!.at(-1) ?? 0;
          const again = await member(hubs.at(i + 1), room, { offset: last, epoch });
          expect(again.ack).toMatchObject({ recovered: true, epoch });
          collect(i, again.frames);
          members[i] = again;
        }),
      );
      await Promise.all([sending, rejoining]);
      for (let i = 0; i < members.length; i++) {
        if (seen[i]!.at(-1) !== total) collect(i, await until(members[i]!.peer, (f) => f.type === 'message' && f.offset === total, 10_000));
        collect(i, members[i]!.peer.frames.splice(0));
      }
      for (let i = 0; i < members.length; i++) expect(seen[i]).toEqual(range(1, total));
      for (const m of [...senders, ...members]) m.peer.close();
    }, 60_000);

    it('starts a new epoch from offset 1 once the TTL passed since the last message', async () => {
      const short = await d.start({ WEBSOCKET_HISTORY_TTL: '1s' });
      try {
        const room = freshRoom();
        const a = await member(short.at(0), room);
        await say(a.peer, room, 2, 'before');
        await sleep(1500);
        const after = messages(await say(a.peer, room, 1, 'after'));
        expect(after.map((f) => f.offset)).toEqual([1]);
        const b = await member(short.at(1), room, { offset: 2, epoch: a.ack.epoch as string });
        expect(b.ack).toMatchObject({ offset: 1, recovered: false });
        expect(b.ack.epoch).not.toBe(a.ack.epoch);
        a.peer.close();
        b.peer.close();
      } finally {
        await short.close();
      }
    });

    if (d.redis) {
      it('refuses a message with unavailable while Redis is away: it reaches no one and offsets do not skip', async () => {
        const room = freshRoom();
        const a = await member(hubs.at(0), room);
        const b = await member(hubs.at(0), room);
        await say(a.peer, room, 1, 'one');
        await redis.kill();
        try {
          a.peer.send({ type: 'message', room, content: 'lost', id: 'lost' });
          const refused = await until(a.peer, (f) => f.id === 'lost');
          expect(messages(refused)).toEqual([]);
          expect(refused.at(-1)).toEqual({ type: 'error', content: expect.any(String), data: { code: 'unavailable' }, room, id: 'lost', timestamp: expect.any(Number) });
        } finally {
          await redis.restart();
        }
        await b.peer.quiet(100).catch(() => {});
        expect(messages(b.peer.frames.splice(0)).map((f) => f.content)).toEqual(['one 0']);
        // Back (an empty Redis: a new epoch from offset 1).
        const deadline = Date.now() + 15_000;
        let after: Frame[] = [];
        while (Date.now() < deadline) {
          a.peer.send({ type: 'message', room, content: 'back', id: 'back' });
          const got = await until(a.peer, (f) => f.id === 'back');
          if (got.at(-1)!.type === 'ack') {
            after = got;
            break;
          }
          await sleep(200);
        }
        expect(messages(after).map((f) => f.offset)).toEqual([1]);
        expect(messages(await until(b.peer, (f) => f.type === 'message' && f.content === 'back')).map((f) => f.offset)).toEqual([1]);
        // The old epoch is gone: a since in it recovers nothing.
        const c = await member(hubs.at(1), room, { offset: 1, epoch: a.ack.epoch as string });
        expect(c.ack).toMatchObject({ offset: 1, recovered: false });
        expect(c.ack.epoch).not.toBe(a.ack.epoch);
        for (const p of [a, b, c]) p.peer.close();
      }, 30_000);
    }
  });
}
