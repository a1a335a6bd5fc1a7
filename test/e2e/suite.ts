/**
 * The one end-to-end suite every way of serving a hub must pass (contract sections 1
 * to 4 over real sockets). Each adapter's test file calls `hubSuite` with a function
 * that starts a server from environment variables on 127.0.0.1 and an ephemeral port.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientOptions } from 'ws';
import type { Hub } from '../../src/index';
import { Peer, SECRET, sign, sleep, upgrade, type Frame } from '../helpers/client';

export interface Started {
  readonly port: number;
  readonly hub: Hub;
  close(): Promise<void>;
}

export type Start = (env: Record<string, string>) => Promise<Started>;

/** The `error` frame the contract sends for `code` (and the echoed `room`). */
export const err = (code: string, room?: string): Record<string, unknown> => ({
  type: 'error',
  content: expect.any(String),
  data: { code },
  ...(room === undefined ? {} : { room }),
  timestamp: expect.any(Number),
});

/**
 * A {@link Start} for frameworks whose `app.listen()` makes the server (Express, Koa):
 * the app is attached before it listens, as their adapters document.
 */
export function listeningApp<App extends { listen(port: number, host: string): import('node:http').Server }>(
  makeApp: () => App,
  attachApp: (hub: Hub, app: App) => { detach(): void },
): Start {
  return async (env) => {
    const { configFromEnv, createHub } = await import('../../src/index');
    const app = makeApp();
    const hub = createHub(configFromEnv(env));
    const attachment = attachApp(hub, app);
    const server = app.listen(0, '127.0.0.1');
    const port = await new Promise<number>((resolve) => server.once('listening', () => resolve((server.address() as import('node:net').AddressInfo).port)));
    return {
      port,
      hub,
      async close() {
        await hub.close();
        attachment.detach();
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      },
    };
  };
}

/**
 * For frameworks whose `app.listen()` makes the server (Express, Koa): `attach(hub, app)`
 * after `app.listen()` still works, attaching at the app's first request (`GET /hello`,
 * which the app must answer `hi`), with one `ROOMWIRE_ATTACH_LATE` warning.
 */
export async function checkLateAttach<App extends { listen(port: number, host: string): import('node:http').Server }>(
  makeApp: () => App,
  attachApp: (hub: Hub, app: App) => unknown,
): Promise<void> {
  const { createHub } = await import('../../src/index');
  const app = makeApp();
  const server = app.listen(0, '127.0.0.1');
  const port = await new Promise<number>((resolve) => server.once('listening', () => resolve((server.address() as import('node:net').AddressInfo).port)));
  const hub = createHub();
  const warnings: { code?: string; message: string }[] = [];
  const onWarning = (w: Error & { code?: string }) => warnings.push({ code: w.code, message: w.message });
  process.on('warning', onWarning);
  try {
    attachApp(hub, app);
    expect(await (await fetch(`http://127.0.0.1:${port}/hello`)).text()).toBe('hi');
    const p = await Peer.open(`ws://127.0.0.1:${port}/ws/room`);
    expect((await p.next()).type).toBe('join');
    await new Promise((r) => setImmediate(r));
    expect(warnings.filter((w) => w.code === 'ROOMWIRE_ATTACH_LATE')).toEqual([
      { code: 'ROOMWIRE_ATTACH_LATE', message: expect.stringContaining('attach(hub, app) came after app.listen()') },
    ]);
    await hub.close();
  } finally {
    process.off('warning', onWarning);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

export function hubSuite(name: string, start: Start): void {
  describe(`${name}: shared end-to-end suite`, () => {
    const running: Started[] = [];
    const peers: Peer[] = [];
    afterEach(async () => {
      for (const p of peers.splice(0)) p.ws.terminate();
      await Promise.all(running.splice(0).map((s) => s.close()));
    });

    async function serve(env: Record<string, string> = {}) {
      const s = await start({ WEBSOCKET_JWT_SECRET: SECRET, WEBSOCKET_MESSAGE_RATE: '1000/s,1000', ...env });
      running.push(s);
      const base = `ws://127.0.0.1:${s.port}`;
      const open = async (path: string, options?: ClientOptions) => {
        const p = await Peer.open(`${base}${path}`, options);
        peers.push(p);
        return p;
      };
      return { ...s, base, open, upgrade: (path: string, headers?: Record<string, string>) => upgrade(s.port, path, headers) };
    }

    describe('endpoints (section 1)', () => {
      it('accepts B and B/ anonymously, joining nothing', async () => {
        const s = await serve();
        for (const path of ['/ws', '/ws/', '/ws?x=1']) {
          const p = await s.open(path);
          await p.roundTrip();
          expect(p.frames).toEqual([]);
        }
        expect(s.hub.roomNames()).toEqual([]);
      });

      it('joins the URL-decoded room of B/{room}, with or without a trailing slash', async () => {
        const s = await serve();
        const p = await s.open('/ws/a%3Ab/?token=');
        const [join, list] = await p.take(2);
        expect(join).toMatchObject({ type: 'join', room: 'a:b' });
        expect(list).toMatchObject({ type: 'user_list', room: 'a:b', data: [join!.username] });
      });

      it('answers 404 for unknown paths under B and invalid rooms in the path', async () => {
        const s = await serve();
        for (const path of ['/ws/a/b', '/ws/auth/a/b', '/ws/a%2Fb', `/ws/${'x'.repeat(65)}`, '/ws/caf%C3%A9', '/ws/%E0%A4%A', '/ws//']) {
          expect({ path, status: (await s.upgrade(path)).status }).toEqual({ path, status: 404 });
        }
        expect((await s.upgrade(`/ws/${'x'.repeat(64)}`)).status).toBe(101);
      });

      it('requires a token on B/auth and B/auth/{room} with WWW-Authenticate: Bearer', async () => {
        const s = await serve();
        for (const path of ['/ws/auth', '/ws/auth/', '/ws/auth/lobby']) {
          const r = await s.upgrade(path);
          expect(r.status).toBe(401);
          expect(r.headers['www-authenticate']).toBe('Bearer');
        }
        const token = await sign({ sub: 'u1', name: 'Uma' });
        const p = await s.open(`/ws/auth/lobby?token=${token}`);
        expect(await p.next()).toEqual({ type: 'join', room: 'lobby', user_id: 'u1', username: 'Uma', timestamp: expect.any(Number) });
      });

      it('requires a token everywhere when WEBSOCKET_REQUIRE_AUTH=true', async () => {
        const s = await serve({ WEBSOCKET_REQUIRE_AUTH: 'true' });
        expect((await s.upgrade('/ws')).status).toBe(401);
        expect((await s.upgrade('/ws/lobby')).status).toBe(401);
        const token = await sign({ sub: 'u1' });
        expect((await s.upgrade('/ws/lobby', { Authorization: `Bearer ${token}` })).status).toBe(101);
      });

      it('answers 503 when WEBSOCKET_ENABLED=false, after 404', async () => {
        const s = await serve({ WEBSOCKET_ENABLED: 'false' });
        expect((await s.upgrade('/ws')).status).toBe(503);
        expect((await s.upgrade('/ws/a/b')).status).toBe(404);
      });

      it('answers 403 to a disallowed Origin and accepts allowed and absent ones', async () => {
        const s = await serve({ WEBSOCKET_ALLOWED_ORIGINS: 'https://app.example.com,https://*.example.org' });
        expect((await s.upgrade('/ws', { Origin: 'https://evil.example.com' })).status).toBe(403);
        expect((await s.upgrade('/ws', { Origin: 'https://example.org' })).status).toBe(403);
        expect((await s.upgrade('/ws', { Origin: 'http://app.example.com' })).status).toBe(403);
        expect((await s.upgrade('/ws', { Origin: 'https://APP.example.com' })).status).toBe(101);
        expect((await s.upgrade('/ws', { Origin: 'https://a.b.example.org' })).status).toBe(101);
        expect((await s.upgrade('/ws')).status).toBe(101);
      });

      it('answers 429 with Retry-After past WEBSOCKET_CONNECT_RATE, counting refused attempts', async () => {
        const s = await serve({ WEBSOCKET_CONNECT_RATE: '1/m,3' });
        expect((await s.upgrade('/ws/a/b')).status).toBe(404);
        expect((await s.upgrade('/ws')).status).toBe(101);
        expect((await s.upgrade('/ws')).status).toBe(101);
        const r = await s.upgrade('/ws');
        expect(r.status).toBe(429);
        expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(r.headers['retry-after']).toMatch(/^\d+$/);
      });

      it('answers 503 at WEBSOCKET_MAX_CONNECTIONS and accepts again after a close', async () => {
        const s = await serve({ WEBSOCKET_MAX_CONNECTIONS: '2' });
        const a = await s.open('/ws');
        await s.open('/ws');
        expect((await s.upgrade('/ws')).status).toBe(503);
        a.close();
        await a.closed;
        await sleep(50);
        expect((await s.upgrade('/ws')).status).toBe(101);
      });
    });

    describe('identity (section 2)', () => {
      it('reads the token from the header, then the query, then the cookie', async () => {
        const s = await serve();
        const [h, q, c] = await Promise.all([sign({ sub: 'header' }), sign({ sub: 'query' }), sign({ sub: 'cookie' })]);
        const whoAmI = async (path: string, headers: Record<string, string>) => {
          const p = await s.open(path, { headers });
          return (await p.next()).user_id;
        };
        expect(await whoAmI(`/ws/auth/r?token=${q}`, { Authorization: `Bearer ${h}`, Cookie: `token=${c}` })).toBe('header');
        expect(await whoAmI(`/ws/auth/r?token=${q}`, { Cookie: `a=1; token=${c}` })).toBe('query');
        expect(await whoAmI('/ws/auth/r', { Cookie: `a=1; token=${c}` })).toBe('cookie');
        expect(await whoAmI(`/ws/auth/r?token=${q}`, { Authorization: `Basic ${h}` })).toBe('query');
        expect(await whoAmI(`/ws/auth/r?token=&x=1`, { Authorization: 'Bearer ', Cookie: `token=${c}` })).toBe('cookie');
      });

      it('picks the username from username, preferred_username, name, else sub', async () => {
        const s = await serve();
        const cases: [Record<string, unknown>, string][] = [
          [{ sub: 's', username: 'u', preferred_username: 'p', name: 'n' }, 'u'],
          [{ sub: 's', username: '', preferred_username: 'p', name: 'n' }, 'p'],
          [{ sub: 's', username: 5, name: 'n' }, 'n'],
          [{ sub: 's' }, 's'],
        ];
        for (const [claims, username] of cases) {
          const p = await s.open(`/ws/auth/r?token=${await sign(claims)}`);
          expect((await p.next()).username).toBe(username);
        }
      });

      it('refuses bad tokens with 401 and WWW-Authenticate: Bearer error="invalid_token", also on optional routes', async () => {
        const s = await serve({ WEBSOCKET_JWT_ISSUER: 'https://issuer.test', WEBSOCKET_JWT_AUDIENCE: 'roomwire,other' });
        const good = { iss: 'https://issuer.test', aud: 'roomwire' };
        const now = Math.floor(Date.now() / 1000);
        const bad: [string, string][] = [
          ['garbage', 'not.a.jwt'],
          ['wrong secret', await sign({ sub: 'x', ...good }, { secret: 'another-secret' })],
          ['expired', await sign({ sub: 'x', ...good, exp: now - 60 })],
          ['not yet valid', await sign({ sub: 'x', ...good, nbf: now + 600 })],
          ['no sub', await sign({ ...good })],
          ['wrong issuer', await sign({ sub: 'x', ...good, iss: 'https://evil.test' })],
          ['missing issuer', await sign({ sub: 'x', aud: 'roomwire' })],
          ['wrong audience', await sign({ sub: 'x', ...good, aud: 'nope' })],
          ['missing audience', await sign({ sub: 'x', iss: 'https://issuer.test' })],
          ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(`{"sub":"x","iss":"https://issuer.test","aud":"roomwire"}`).toString('base64url')}.`],
        ];
        for (const [label, token] of bad) {
          for (const path of [`/ws?token=${token}`, `/ws/auth/r?token=${token}`]) {
            const r = await s.upgrade(path);
            expect({ label, path, status: r.status, challenge: r.headers['www-authenticate'] }).toEqual({
              label,
              path,
              status: 401,
              challenge: 'Bearer error="invalid_token"',
            });
          }
        }
        const ok = await s.open(`/ws/auth/r?token=${await sign({ sub: 'fine', ...good, aud: ['x', 'other'] })}`);
        expect((await ok.next()).user_id).toBe('fine');
      });

      it('accepts HS384 and HS512 and refuses algorithms outside WEBSOCKET_JWT_ALGORITHMS', async () => {
        const s = await serve({ WEBSOCKET_JWT_ALGORITHMS: 'HS384,HS512' });
        expect((await s.upgrade(`/ws/auth?token=${await sign({ sub: 'a' }, { alg: 'HS384' })}`)).status).toBe(101);
        expect((await s.upgrade(`/ws/auth?token=${await sign({ sub: 'a' }, { alg: 'HS512' })}`)).status).toBe(101);
        expect((await s.upgrade(`/ws/auth?token=${await sign({ sub: 'a' }, { alg: 'HS256' })}`)).status).toBe(401);
      });

      it('gives anonymous users distinct server-made ids and ignores spoofed identity fields', async () => {
        const s = await serve();
        const a = await s.open('/ws/r');
        const b = await s.open('/ws/r');
        const aJoin = await a.next();
        await a.next();
        const bJoin = await b.next();
        await b.next();
        expect(aJoin.user_id).not.toBe(bJoin.user_id);
        expect(aJoin.username).toMatch(/^guest-/);
        await a.next(); // b's join
        b.send({ type: 'message', room: 'r', content: 'hi', user_id: aJoin.user_id, username: 'admin', timestamp: 1 });
        const m = await a.next();
        expect(m).toEqual({ type: 'message', room: 'r', content: 'hi', user_id: bJoin.user_id, username: bJoin.username, timestamp: expect.any(Number) });
        expect(Math.abs((m.timestamp as number) - Date.now() / 1000)).toBeLessThan(5);
      });
    });

    describe('messages (section 3)', () => {
      it('lets two clients join, exchange messages, see each other in user_list and leave', async () => {
        const s = await serve();
        const alice = await s.open(`/ws/auth?token=${await sign({ sub: 'a1', username: 'alice' })}`);
        const bob = await s.open(`/ws/auth?token=${await sign({ sub: 'b1', username: 'bob' })}`);
        alice.send({ type: 'join', room: 'chat' });
        expect(await alice.take(2)).toEqual([
          { type: 'join', room: 'chat', user_id: 'a1', username: 'alice', timestamp: expect.any(Number) },
          { type: 'user_list', room: 'chat', data: ['alice'], timestamp: expect.any(Number) },
        ]);
        bob.send({ type: 'join', room: 'chat' });
        const bobJoin = { type: 'join', room: 'chat', user_id: 'b1', username: 'bob', timestamp: expect.any(Number) };
        expect(await alice.next()).toEqual(bobJoin);
        expect(await bob.take(2)).toEqual([bobJoin, { type: 'user_list', room: 'chat', data: ['alice', 'bob'], timestamp: expect.any(Number) }]);

        bob.send({ type: 'message', room: 'chat', content: 'hello alice', data: { mood: 'happy' } });
        const msg = { type: 'message', room: 'chat', content: 'hello alice', user_id: 'b1', username: 'bob', timestamp: expect.any(Number), data: { mood: 'happy' } };
        expect(await alice.next()).toEqual(msg);
        expect(await bob.next()).toEqual(msg);

        alice.send({ type: 'user_list', room: 'chat' });
        expect(await alice.next()).toEqual({ type: 'user_list', room: 'chat', data: ['alice', 'bob'], timestamp: expect.any(Number) });

        bob.send({ type: 'leave', room: 'chat' });
        const leave = { type: 'leave', room: 'chat', user_id: 'b1', username: 'bob', timestamp: expect.any(Number) };
        expect(await bob.next()).toEqual(leave);
        expect(await alice.next()).toEqual(leave);
        alice.send({ type: 'user_list', room: 'chat' });
        expect((await alice.next()).data).toEqual(['alice']);
      });

      it('tells the remaining members when a connection closes, once per room', async () => {
        const s = await serve();
        const a = await s.open('/ws/r1');
        const [aJoin] = await a.take(2);
        a.send({ type: 'join', room: 'r2' });
        await a.take(2);
        const b = await s.open('/ws/r1');
        b.send({ type: 'join', room: 'r2' });
        await b.take(4);
        a.close();
        const leaves = await b.take(2);
        expect(leaves.map((f) => [f.type, f.room, f.user_id])).toEqual([
          ['leave', 'r1', aJoin!.user_id],
          ['leave', 'r2', aJoin!.user_id],
        ]);
      });

      it('answers ping with pong and pong with nothing', async () => {
        const s = await serve();
        const p = await s.open('/ws');
        p.send({ type: 'pong' });
        p.send({ type: 'ping', room: 'extra fields are ignored' });
        expect(await p.next()).toEqual({ type: 'pong', timestamp: expect.any(Number) });
        await p.quiet();
      });

      it('answers each bad frame with its error code, changes nothing, and other clients are unaffected', async () => {
        const s = await serve();
        const bad = await s.open('/ws/home');
        const other = await s.open('/ws/home');
        await bad.take(3);
        await other.take(2);
        const cases: [string | Buffer, Record<string, unknown>][] = [
          ['{not json', err('invalid_json')],
          ['[]', err('invalid_json')],
          [Buffer.from([1, 2, 3]), err('invalid_message')],
          ['{"room":"home"}', err('unsupported_type', 'home')],
          ['{"type":"dance","room":"home"}', err('unsupported_type', 'home')],
          ['{"type":"join","room":7}', err('invalid_message')],
          ['{"type":"message","room":"home","content":{"x":1}}', err('invalid_message', 'home')],
          ['{"type":"message","room":"home","content":"x","data":null}', err('invalid_message', 'home')],
          ['{"type":"join","room":"no spaces"}', err('invalid_room', 'no spaces')],
          ['{"type":"join","room":"../../etc/passwd"}', err('invalid_room', '../../etc/passwd')],
          ['{"type":"message","room":"elsewhere","content":"x"}', err('not_in_room', 'elsewhere')],
          ['{"type":"leave","room":"elsewhere"}', err('not_in_room', 'elsewhere')],
          ['{"type":"user_list","room":"elsewhere"}', err('not_in_room', 'elsewhere')],
        ];
        for (const [frame, expected] of cases) {
          bad.ws.send(frame);
          expect(await bad.next()).toEqual(expected);
        }
        await other.quiet();
        expect(s.hub.members('home')).toHaveLength(2);
        other.send({ type: 'message', room: 'home', content: 'still here' });
        expect((await bad.next()).content).toBe('still here');
        expect((await other.next()).content).toBe('still here');
      });

      it('answers room_full on the open connection for a full path room, and too_many_rooms', async () => {
        const s = await serve({ WEBSOCKET_MAX_ROOM_SIZE: '1', WEBSOCKET_MAX_ROOMS_PER_CONNECTION: '2' });
        const a = await s.open('/ws/solo');
        await a.take(2);
        const b = await s.open('/ws/solo');
        expect(await b.next()).toEqual(err('room_full', 'solo'));
        await b.roundTrip();
        a.send({ type: 'join', room: 'second' });
        await a.take(2);
        a.send({ type: 'join', room: 'third' });
        expect(await a.next()).toEqual(err('too_many_rooms', 'third'));
        a.send({ type: 'join', room: 'solo' });
        expect((await a.next()).type).toBe('user_list');
      });

      it('drops frames over WEBSOCKET_MESSAGE_RATE with rate_limited, then closes 1008 after burst drops', async () => {
        const s = await serve({ WEBSOCKET_MESSAGE_RATE: '1/m,3' });
        const p = await s.open('/ws');
        for (let i = 0; i < 6; i++) p.send({ type: 'ping' });
        const frames = await p.take(6);
        expect(frames.map((f) => (f.type === 'error' ? (f.data as { code: string }).code : f.type))).toEqual([
          'pong',
          'pong',
          'pong',
          'rate_limited',
          'rate_limited',
          'rate_limited',
        ]);
        expect(await p.closed).toEqual({ code: 1008, reason: 'rate limit exceeded' });
      });
    });

    describe('error frames that say what is wrong', () => {
      it("name the field at fault, and the known types for an unknown type (data stays {code})", async () => {
        const s = await serve();
        const p = await s.open('/ws/lobby');
        await p.take(2);
        const cases: [unknown, string, string | undefined][] = [
          [{ type: 'message', room: 'lobby', text: 'hi' }, 'message has missing or wrongly typed fields: "content" is missing (a string)', 'lobby'],
          [{ type: 'message', room: 'lobby', content: 5 }, 'message has missing or wrongly typed fields: "content" must be a string', 'lobby'],
          [{ type: 'message', room: 'lobby', content: 'x', data: null }, 'message has missing or wrongly typed fields: "data" must be a JSON object', 'lobby'],
          [{ type: 'join' }, 'message has missing or wrongly typed fields: "room" is missing (a string)', undefined],
          [{ type: 'auth', data: {} }, 'message has missing or wrongly typed fields: "data.token" is missing (a string)', undefined],
          [{ type: 'ping', id: -1 }, 'message has missing or wrongly typed fields: "id" must be a string of 1 to 64 characters or an integer from 0 to 2^53 − 1', undefined],
          [{ type: 'shout', room: 'lobby' }, 'message type is missing or not supported: "shout" is not a message type (known types: join, leave, message, ping, pong, user_list, auth)', 'lobby'],
          [{ room: 'lobby' }, 'message type is missing or not supported: the message has no "type" (known types: join, leave, message, ping, pong, user_list, auth)', 'lobby'],
          [{ type: 7 }, 'message type is missing or not supported: "type" must be a string (known types: join, leave, message, ping, pong, user_list, auth)', undefined],
        ];
        for (const [frame, content, room] of cases) {
          p.send(frame);
          const f = await p.next();
          expect({ frame, content: f.content, data: f.data, room: f.room }).toEqual({ frame, content, data: { code: expect.any(String) }, room });
        }
        p.ws.send(Buffer.from([1, 2, 3]), { binary: true });
        expect((await p.next()).content).toBe('message has missing or wrongly typed fields: binary frames are not accepted (send a JSON object as text)');
      });
    });

    describe('requests and replies (section 8)', () => {
      it('answers each request with exactly one frame carrying its id, after every other frame it causes for the sender', async () => {
        const s = await serve();
        const other = await s.open('/ws/r');
        await other.take(2);
        const p = await s.open('/ws');
        p.send({ type: 'join', room: 'r', id: 'join-1' });
        const joined = await p.take(3);
        expect(joined.map((f) => f.type)).toEqual(['join', 'user_list', 'ack']);
        expect(joined[2]).toEqual({ type: 'ack', id: 'join-1', room: 'r', timestamp: expect.any(Number) });
        p.send({ type: 'message', room: 'r', content: 'hi', id: 42 });
        expect(await p.take(2)).toEqual([
          expect.objectContaining({ type: 'message', content: 'hi' }),
          { type: 'ack', id: 42, room: 'r', timestamp: expect.any(Number) },
        ]);
        p.send({ type: 'user_list', room: 'r', id: 'who' });
        expect(await p.next()).toEqual({ type: 'user_list', id: 'who', room: 'r', data: expect.any(Array), timestamp: expect.any(Number) });
        p.send({ type: 'ping', id: 0 });
        expect(await p.next()).toEqual({ type: 'pong', id: 0, timestamp: expect.any(Number) });
        p.send({ type: 'join', room: 'r', id: 'again' });
        expect((await p.take(2)).map((f) => [f.type, f.id])).toEqual([
          ['user_list', undefined],
          ['ack', 'again'],
        ]);
        p.send({ type: 'message', room: 'nowhere', content: 'x', id: 'bad' });
        expect(await p.next()).toEqual({ ...err('not_in_room', 'nowhere'), id: 'bad' });
        p.send({ type: 'leave', room: 'r', id: 'bye' });
        expect(await p.take(2)).toEqual([expect.objectContaining({ type: 'leave', room: 'r' }), { type: 'ack', id: 'bye', room: 'r', timestamp: expect.any(Number) }]);
        // The other member saw the join, the message and the leave, without any id.
        const seen = await other.take(3);
        expect(seen.map((f) => f.type)).toEqual(['join', 'message', 'leave']);
        for (const f of seen) expect(f).not.toHaveProperty('id');
      });

      it('answers 200 concurrent requests with ids, each exactly once', async () => {
        const s = await serve();
        const p = await s.open('/ws/r');
        await p.take(2);
        for (let i = 0; i < 200; i++) p.send(i % 2 === 0 ? { type: 'message', room: 'r', content: `m${i}`, id: i } : { type: 'ping', id: `p${i}` });
        const frames = await p.take(300);
        const ids = frames.filter((f) => f.id !== undefined).map((f) => f.id);
        expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? i : `p${i}`)));
        await p.quiet();
      });
    });

    describe('closing (section 4)', () => {
      it('closes with 1009 a message over WEBSOCKET_MAX_MESSAGE_SIZE, fragmented or not', async () => {
        const s = await serve({ WEBSOCKET_MAX_MESSAGE_SIZE: '64' });
        const whole = await s.open('/ws');
        whole.send({ type: 'ping', pad: 'x'.repeat(100) });
        // The reason says the limit, so a client can tell its user why.
        expect(await whole.closed).toEqual({ code: 1009, reason: 'message too large: max 64 bytes' });

        const fragmented = await s.open('/ws');
        const part = '{"type":"ping","pad":"' + 'y'.repeat(30);
        fragmented.ws.send(part, { fin: false });
        fragmented.ws.send('y'.repeat(30), { fin: false });
        fragmented.ws.send('"}', { fin: true });
        expect(await fragmented.closed).toEqual({ code: 1009, reason: 'message too large: max 64 bytes' });

        const fine = await s.open('/ws');
        fine.send({ type: 'ping', pad: 'z'.repeat(30) });
        expect((await fine.next()).type).toBe('pong');
      });

      it('terminates a client that does not answer pings, and keeps one that does', async () => {
        const s = await serve({
          WEBSOCKET_PING_PERIOD: '200ms',
          WEBSOCKET_PONG_WAIT: '400ms',
          WEBSOCKET_HEARTBEAT_INTERVAL: '100ms',
          WEBSOCKET_CONNECTION_TIMEOUT: '2s',
        });
        const deaf = await s.open('/ws', { autoPong: false });
        const live = await s.open('/ws');
        let pings = 0;
        deaf.ws.on('ping', () => pings++);
        const started = Date.now();
        const closed = await deaf.closed;
        const elapsed = Date.now() - started;
        expect(closed.code).toBe(1006);
        expect(pings).toBeGreaterThanOrEqual(1);
        // ping due at 200ms, unanswered for 400ms; bound: + one interval + 1s
        expect(elapsed).toBeLessThan(200 + 400 + 100 + 1000 + 300);
        await sleep(800);
        await live.roundTrip();
        expect(live.ws.readyState).toBe(1);
      });

      it('terminates a connection silent for WEBSOCKET_CONNECTION_TIMEOUT', async () => {
        const s = await serve({
          WEBSOCKET_PING_PERIOD: '50s',
          WEBSOCKET_PONG_WAIT: '60s',
          WEBSOCKET_HEARTBEAT_INTERVAL: '100ms',
          WEBSOCKET_CONNECTION_TIMEOUT: '500ms',
        });
        const silent = await s.open('/ws', { autoPong: false });
        const started = Date.now();
        expect((await silent.closed).code).toBe(1006);
        expect(Date.now() - started).toBeLessThan(500 + 100 + 1000 + 300);
        expect(Date.now() - started).toBeGreaterThanOrEqual(400);
      });

      it('terminates a reader whose unread bytes stay above WEBSOCKET_WRITE_BUFFER_SIZE for WEBSOCKET_WRITE_WAIT', async () => {
        const s = await serve({
          WEBSOCKET_MAX_MESSAGE_SIZE: '65536',
          WEBSOCKET_WRITE_BUFFER_SIZE: '65536',
          WEBSOCKET_WRITE_WAIT: '500ms',
          WEBSOCKET_HEARTBEAT_INTERVAL: '100ms',
        });
        const stuck = await s.open('/ws/flood');
        const sender = await s.open('/ws/flood');
        await stuck.take(3);
        await sender.take(2);
        const rawSocket = (stuck.ws as unknown as { _socket: import('node:net').Socket })._socket;
        rawSocket.pause(); // stops reading
        const big = 'x'.repeat(60_000);
        let sent = 0;
        const started = Date.now();
        // Fill the kernel buffers, then keep the backlog above the limit; bounded.
        while (s.hub.stats().terminations.slow_consumer === 0 && sent < 3000 && Date.now() - started < 10_000) {
          sender.send({ type: 'message', room: 'flood', content: big });
          sent++;
          if (sent % 20 === 0) await sleep(20);
        }
        expect(s.hub.stats().terminations.slow_consumer).toBe(1);
        expect(s.hub.members('flood')).toHaveLength(1);
        rawSocket.resume(); // now it sees the reset
        expect((await stuck.closed).code).toBe(1006);
        // The reading member is unaffected and still served: past its own echoes, a pong.
        sender.send({ type: 'ping' });
        let frame = await sender.next(5000);
        for (let i = 0; frame.type !== 'pong' && i <= sent + 1; i++) frame = await sender.next(5000);
        expect(frame).toEqual({ type: 'pong', timestamp: expect.any(Number) });
      });

      it('sends 1001 to every client when the hub closes', async () => {
        const s = await serve();
        const a = await s.open('/ws/r');
        const b = await s.open('/ws');
        const closing = s.hub.close();
        expect(await a.closed).toEqual({ code: 1001, reason: 'server shutting down' });
        expect(await b.closed).toEqual({ code: 1001, reason: 'server shutting down' });
        await closing;
        expect((await s.upgrade('/ws')).status).toBe(503);
      });

      it('drains over WEBSOCKET_DRAIN_WINDOW when the server closes: reconnect then 1001, spread over the window, upgrades refused with 503', async () => {
        const s = await serve({ WEBSOCKET_DRAIN_WINDOW: '600ms' });
        const peers = [await s.open('/ws/r'), await s.open('/ws/r'), await s.open('/ws')];
        const start = Date.now();
        const closedAfter = peers.map((p) => p.closed.then((c) => ({ ...c, ms: Date.now() - start })));
        const closing = s.close(); // the server's own way: hub.close(), fastify.close(), ...
        for (let i = 0; !s.hub.draining && i < 100; i++) await sleep(5); // fastify.close() gets there in a moment
        expect(s.hub.draining).toBe(true);
        expect((await s.upgrade('/ws')).status).toBe(503);
        const closed = await Promise.all(closedAfter);
        await closing;
        for (const [i, c] of closed.entries()) {
          expect(c).toMatchObject({ code: 1001, reason: 'server shutting down' });
          const last = peers[i]!.frames.at(-1);
          expect(last).toEqual({ type: 'reconnect', data: { delay_ms: expect.any(Number) }, timestamp: expect.any(Number) });
          expect((last!.data as { delay_ms: number }).delay_ms).toBeLessThanOrEqual(600);
        }
        // Scheduled at 0, 200 and 400 ms.
        const ms = closed.map((c) => c.ms).sort((a, b) => a - b);
        expect(ms[0]).toBeLessThan(150);
        expect(ms[2]).toBeGreaterThanOrEqual(300);
        expect(ms[2]).toBeLessThan(1500);
      });
    });
  });
}

export type { Frame };
