/** The Redis broker's own client against a real redis-server: handshake, failures, reconnection. */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRedisUrl } from '../../src/brokers/redis-url';
import { RedisConnection, RedisReplyError } from '../../src/brokers/resp';
import { sleep } from '../helpers/client';
import { RedisServer } from '../helpers/redis';

interface Log {
  events: string[];
  messages: [string, string][];
}

function open(url: string, timings = {}): { conn: RedisConnection; log: Log } {
  const log: Log = { events: [], messages: [] };
  const conn = new RedisConnection(
    parseRedisUrl(url),
    {
      up: () => log.events.push('up'),
      down: (err) => log.events.push(`down: ${err.message}`),
      message: (channel, payload) => log.messages.push([channel, payload]),
    },
    timings,
  );
  conn.connect();
  return { conn, log };
}

async function until(check: () => boolean, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe('RedisConnection', () => {
  const servers: RedisServer[] = [];
  const conns: RedisConnection[] = [];
  afterEach(async () => {
    await Promise.all(conns.splice(0).map((c) => c.close()));
    for (const s of servers.splice(0)) {
      s.resume();
      await s.kill();
    }
  });

  async function server(args: string[] = []): Promise<RedisServer> {
    const s = await RedisServer.start(undefined, args);
    servers.push(s);
    return s;
  }

  function connect(url: string, timings = {}) {
    const c = open(url, timings);
    conns.push(c.conn);
    return c;
  }

  it('authenticates and selects the database of the URL', async () => {
    const s = await server(['--requirepass', 'p@ss word']);
    const { conn, log } = connect(`redis://:${encodeURIComponent('p@ss word')}@127.0.0.1:${s.port}/3`);
    await until(() => conn.isUp);
    expect(log.events).toEqual(['up']);
    expect(await conn.command(['CLIENT', 'INFO'])).toMatch(/ db=3 /);
    expect(await conn.command(['SET', 'k', 'caf\u00e9'])).toBe('OK');
    expect(await conn.command(['GET', 'k'])).toBe('caf\u00e9');
    await expect(conn.command(['NOSUCHCOMMAND'])).rejects.toThrow(/unknown command/);
  });

  it('reports a refused password once and never comes up', async () => {
    const s = await server(['--requirepass', 'right']);
    const { conn, log } = connect(`redis://:wrong@127.0.0.1:${s.port}`, { retryMin: 20, retryMax: 40 });
    await sleep(400);
    expect(conn.isUp).toBe(false);
    expect(log.events).toHaveLength(1);
    expect(log.events[0]).toMatch(/^down: Redis refused AUTH: WRONGPASS/);
    await expect(conn.command(['PING'])).rejects.toThrow('not connected to Redis');
  });

  it('fails commands at once while down, fails unanswered ones when the server dies, and reconnects by itself', async () => {
    const s = await server();
    const { conn, log } = connect(`redis://127.0.0.1:${s.port}`, { retryMin: 20, retryMax: 100 });
    await until(() => conn.isUp);
    const blocked = expect(conn.command(['BLPOP', 'nothing', '0'])).rejects.toThrow(/^connection lost/); // never answered
    await sleep(50);
    await s.kill();
    await blocked;
    await until(() => !conn.isUp);
    const refused = conn.send(['PING'], (r) => expect(r).toBeInstanceOf(RedisReplyError));
    expect(refused).toBe(false);
    await sleep(300); // several failed attempts while the server is away
    await s.restart();
    await until(() => conn.isUp);
    expect(await conn.command(['PING'])).toBe('PONG');
    expect(log.events.map((e) => e.split(':')[0])).toEqual(['up', 'down', 'up']);
  });

  it('drops a socket whose server stops answering, and reconnects when it answers again', async () => {
    const s = await server();
    const { conn, log } = connect(`redis://127.0.0.1:${s.port}`, { timeout: 400, retryMin: 20, retryMax: 100 });
    await until(() => conn.isUp);
    s.pause();
    const stalled = conn.command(['PING']);
    await expect(stalled).rejects.toThrow('connection lost: Redis did not answer within 400 ms');
    expect(conn.isUp).toBe(false);
    s.resume();
    await until(() => conn.isUp);
    expect(log.events).toEqual(['up', 'down: Redis did not answer within 400 ms', 'up']);
  });

  it('gives up on a peer that accepts but never answers, and keeps retrying', async () => {
    const sockets: net.Socket[] = [];
    const mute = net.createServer((socket) => sockets.push(socket)); // accepts, never answers
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    const { port } = mute.address() as net.AddressInfo;
    try {
      const { conn, log } = connect(`redis://127.0.0.1:${port}`, { timeout: 200, retryMin: 20, retryMax: 50 });
      await until(() => sockets.length >= 3, 3000);
      expect(conn.isUp).toBe(false);
      expect(log.events).toEqual(['down: no answer from Redis at 127.0.0.1:' + String(port) + ' within 200 ms']);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => mute.close(resolve));
    }
  });

  it('keeps a healthy connection through a stall of this process longer than the timeout', async () => {
    const s = await server();
    const { conn, log } = connect(`redis://127.0.0.1:${s.port}`, { timeout: 300 });
    await until(() => conn.isUp);
    const pong = conn.command(['PING']);
    const end = Date.now() + 900;
    while (Date.now() < end); // the reply arrives while this process cannot read it
    expect(await pong).toBe('PONG');
    await sleep(400);
    expect(conn.isUp).toBe(true);
    expect(log.events).toEqual(['up']);
  });

  it('completes a SUBSCRIBE of several channels on its last reply', async () => {
    const s = await server();
    const { conn } = connect(`redis://127.0.0.1:${s.port}`);
    await until(() => conn.isUp);
    const replies: unknown[] = [];
    conn.send(['SUBSCRIBE', 'a', 'b', 'c'], (r) => replies.push(r), 3);
    conn.send(['PING'], (r) => replies.push(r));
    await until(() => replies.length === 2);
    expect(replies).toEqual([['subscribe', 'c', 3], ['pong', '']]);
  });

  it('receives pub/sub messages, a 1 MiB one included', async () => {
    const s = await server();
    const sub = connect(`redis://127.0.0.1:${s.port}`);
    const pub = connect(`redis://127.0.0.1:${s.port}`);
    await until(() => sub.conn.isUp && pub.conn.isUp);
    expect(await sub.conn.command(['SUBSCRIBE', 'ch'])).toEqual(['subscribe', 'ch', 1]);
    const big = 'x\u00e9\r\n'.repeat(1 << 18);
    expect(await pub.conn.command(['PUBLISH', 'ch', 'hello'])).toBe(1);
    expect(await pub.conn.command(['PUBLISH', 'ch', big])).toBe(1);
    await until(() => sub.log.messages.length === 2);
    expect(sub.log.messages[0]).toEqual(['ch', 'hello']);
    expect(sub.log.messages[1]![1]).toBe(big);
    expect(await sub.conn.command(['PING'])).toEqual(['pong', '']);
  });
});
