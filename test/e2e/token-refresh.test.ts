/**
 * Token expiry while connected (contract sections 3 and 4): without a refresh the
 * connection is closed with 1008 `token expired`; an `auth` refresh for the same `sub`
 * keeps it open, whichever source (header, query, cookie) carried the first token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { Peer, SECRET, sign, sleep } from '../helpers/client';

describe('token expiry and in-band refresh over real sockets', () => {
  let server: RunningServer;
  let base: string;
  beforeAll(async () => {
    server = await startServer({
      env: {
        HOST: '127.0.0.1',
        PORT: '0',
        WEBSOCKET_JWT_SECRET: SECRET,
        WEBSOCKET_HEARTBEAT_INTERVAL: '100ms',
        WEBSOCKET_MAX_MESSAGE_SIZE: '4096',
      },
      log: () => {},
    });
    base = `ws://127.0.0.1:${server.port}`;
  });
  afterAll(() => server.close());

  // One room per source, so a test never sees the previous one's members leave.
  const sources = {
    header: (t: string) => [`${base}/ws/auth/r-header`, { headers: { Authorization: `Bearer ${t}` } }] as const,
    query: (t: string) => [`${base}/ws/auth/r-query?token=${t}`, {}] as const,
    cookie: (t: string) => [`${base}/ws/auth/r-cookie`, { headers: { Cookie: `token=${t}` } }] as const,
  };

  it.each(Object.keys(sources) as (keyof typeof sources)[])('works the same when the first token came from the %s', async (source) => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const first = await sign({ sub: `u-${source}`, username: source, exp });
    const [url, options] = sources[source](first);
    const stays = await Peer.open(url, options);
    const expires = await Peer.open(url, options);
    await stays.take(2);
    await expires.take(2);
    await stays.next(); // expires' join

    const fresh = await sign({ sub: `u-${source}`, username: 'renamed?', exp: exp + 60 });
    stays.send({ type: 'auth', data: { token: fresh } });
    expect(await stays.next()).toEqual({ type: 'auth', data: { exp: exp + 60 }, timestamp: expect.any(Number) });

    // A refresh for another sub, and a token that fails verification, change nothing.
    stays.send({ type: 'auth', data: { token: await sign({ sub: 'someone-else', exp: exp + 60 }) } });
    stays.send({ type: 'auth', data: { token: await sign({ sub: `u-${source}` }, { secret: 'wrong' }) } });
    expect((await stays.take(2)).map((f) => (f.data as { code: string }).code)).toEqual(['forbidden', 'unauthorized']);

    expect(await expires.closed).toEqual({ code: 1008, reason: 'token expired' });
    expect(Date.now() / 1000).toBeGreaterThanOrEqual(exp);
    // The remaining member is told, and the refreshed connection outlives the first token.
    expect(await stays.next()).toMatchObject({ type: 'leave', room: `r-${source}`, user_id: `u-${source}`, username: source });
    await sleep(300);
    stays.send({ type: 'message', room: `r-${source}`, content: 'still here' });
    expect(await stays.next()).toMatchObject({ type: 'message', content: 'still here', username: source });
    stays.close();
  });
});
