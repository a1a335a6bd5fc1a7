/**
 * Hostile input against a real standalone server over real sockets: forged and
 * malformed tokens, spoofed identity fields, malformed and oversized frames, room-name
 * injection, floods and resource exhaustion. Every attack is answered exactly as the
 * contract (/work/shared/spec/contract.md) says, and after each one an innocent client
 * that joined a room beforehand is still served.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import net from 'node:net';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/standalone';
import { Peer, sign, sleep, upgrade, type Frame } from '../helpers/client';
import { RawSocket, b64url, rawHttp, unsignedToken } from '../helpers/hostile';
import { cleanup, codeOf, eventually, expectServerTime, innocent, open, openRaw, raws, serve, sockets, type Innocent } from '../helpers/hostile-server';
import { err } from './suite';

afterEach(cleanup);

// ---- 1. tokens --------------------------------------------------------------------

type Delivery = readonly [via: string, path: string, headers: Record<string, string>];

/** The three places a token can be, on an optional and on a required route. */
function deliveries(token: string): Delivery[] {
  const out: Delivery[] = [];
  for (const route of ['/ws/r', '/ws/auth/r']) {
    out.push(['Authorization header', route, { Authorization: `Bearer ${token}` }]);
    out.push(['?token=', `${route}?token=${encodeURIComponent(token)}`, {}]);
    out.push(['token cookie', route, { Cookie: `theme=dark; token=${encodeURIComponent(token)}` }]);
  }
  return out;
}

/** Every delivery of every token gets 401 invalid_token and no WebSocket. */
async function expectAllRefused(s: RunningServer, inn: Innocent, bad: readonly (readonly [string, string])[]): Promise<void> {
  const before = s.hub.stats().connectionsAccepted;
  for (const [label, token] of bad) {
    for (const [via, path, headers] of deliveries(token)) {
      const r = await upgrade(s.port, path, headers);
      expect({ label, via, path, status: r.status, challenge: r.headers['www-authenticate'], upgrade: r.headers.upgrade }).toEqual({
        label,
        via,
        path,
        status: 401,
        challenge: 'Bearer error="invalid_token"',
        upgrade: undefined,
      });
    }
    await inn.check();
  }
  expect(s.hub.stats().connectionsAccepted).toBe(before);
  expect(s.hub.size).toBe(2);
}

describe('1. hostile tokens, by header, query and cookie, on optional and required routes', () => {
  const ISS = 'https://issuer.test';
  const AUD = 'roomwire';

  it('refuses forged, expired, early, misaddressed, subject-less, unsigned, truncated and garbage tokens with 401 invalid_token', async () => {
    const s = await serve({ WEBSOCKET_JWT_ISSUER: ISS, WEBSOCKET_JWT_AUDIENCE: AUD });
    const inn = await innocent(s);
    const now = Math.floor(Date.now() / 1000);
    const good = { sub: 'u-1', username: 'uma', iss: ISS, aud: AUD };
    const valid = await sign(good, { expiresIn: '10m' });
    const [h, p, sig] = valid.split('.') as [string, string, string];

    // Control: the same deliveries with a valid token are accepted, with its identity.
    for (const [via, path, headers] of deliveries(valid)) {
      const peer = await open(s, path, { headers });
      expect({ via, path, join: await peer.next() }).toEqual({
        via,
        path,
        join: { type: 'join', room: 'r', user_id: 'u-1', username: 'uma', timestamp: expect.any(Number) },
      });
      peer.ws.terminate();
      await peer.closed;
    }
    await eventually(() => s.hub.size === 2, 'control connections closed');

    const bad: [string, string][] = [
      ['forged: wrong HMAC secret', await sign(good, { secret: 'an-attacker-secret-that-is-long-enough-0123456789abcdef' })],
      ['forged: payload swapped under a valid signature', `${h}.${b64url(JSON.stringify({ ...good, sub: 'admin' }))}.${sig}`],
      ['forged: header swapped to HS512 under an HS256 signature', `${b64url('{"alg":"HS512"}')}.${p}.${sig}`],
      ['expired', await sign({ ...good, exp: now - 60 })],
      ['not yet valid: nbf 60 s ahead', await sign({ ...good, nbf: now + 60 })],
      ['wrong audience', await sign({ ...good, aud: 'someone-else' })],
      ['wrong audience array', await sign({ ...good, aud: ['someone-else', 'another'] })],
      ['missing audience', await sign({ sub: 'u-1', iss: ISS })],
      ['wrong issuer', await sign({ ...good, iss: 'https://evil.test' })],
      ['missing issuer', await sign({ sub: 'u-1', aud: AUD })],
      ['missing sub', await sign({ iss: ISS, aud: AUD, username: 'nobody' })],
      ['empty sub', await sign({ ...good, sub: '' })],
      ['numeric sub', await sign({ ...good, sub: 42 })],
      ['alg none', unsignedToken(good)],
      ['alg None', unsignedToken(good, 'None')],
      ['alg none keeping a real signature', `${b64url('{"alg":"none","typ":"JWT"}')}.${p}.${sig}`],
      ['truncated signature', valid.slice(0, -6)],
      ['truncated to two segments', `${h}.${p}`],
      ['truncated to two segments and a dot', `${h}.${p}.`],
      ['truncated to the header', h],
      ['truncated mid-payload', valid.slice(0, h.length + 1 + Math.floor(p.length / 2))],
      ['garbage base64 characters', `${h}.!!!*$$$@@@*!!!.${sig}`],
      ['base64 of non-JSON', `${b64url('not json')}.${b64url('\u0000\u00ff{{garbage')}.${sig}`],
      ['five segments (JWE shape)', `${h}.${p}.${sig}.AAAA.BBBB`],
      ['ES256 header on an HMAC-only server', `${b64url('{"alg":"ES256"}')}.${p}.${sig}`],
    ];
    await expectAllRefused(s, inn, bad);
  });

  it('refuses an HS256 token keyed with the configured public key PEM (algorithm confusion) and other key tricks', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const s = await serve({ WEBSOCKET_JWT_SECRET: undefined, WEBSOCKET_JWT_PUBLIC_KEY: pem });
    const inn = await innocent(s);
    const claims = { sub: 'u-2', username: 'eve' };
    const es256 = (key: KeyObject, header: Record<string, unknown> = {}) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'ES256', ...header }).setIssuedAt().setExpirationTime('10m').sign(key);

    // Control: a token signed by the configured key's private half is accepted.
    for (const [via, path, headers] of deliveries(await es256(privateKey))) {
      const peer = await open(s, path, { headers });
      expect({ via, path, join: await peer.next() }).toEqual({
        via,
        path,
        join: { type: 'join', room: 'r', user_id: 'u-2', username: 'eve', timestamp: expect.any(Number) },
      });
      peer.ws.terminate();
      await peer.closed;
    }
    await eventually(() => s.hub.size === 2, 'control connections closed');

    const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
    const bad: [string, string][] = [
      ['HS256 keyed with the PEM text', await sign(claims, { secret: pem })],
      ['HS256 keyed with the trimmed PEM text', await sign(claims, { secret: pem.trim() })],
      ['HS384 keyed with the PEM text', await sign(claims, { secret: pem, alg: 'HS384' })],
      ['HS512 keyed with the PEM text', await sign(claims, { secret: pem, alg: 'HS512' })],
      ['HS256 keyed with the test secret (no secret configured)', await sign(claims)],
      ['ES256 signed by another key', await es256(attacker.privateKey)],
      ['ES256 carrying its own (attacker) jwk', await es256(attacker.privateKey, { jwk: attackerJwk })],
      ['alg none', unsignedToken(claims)],
    ];
    await expectAllRefused(s, inn, bad);
  });

  it('answers a missing or empty token on B/auth with WWW-Authenticate: Bearer, and does not fall through past a bad token', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const missing: [string, Record<string, string>][] = [
      ['/ws/auth', {}],
      ['/ws/auth/', {}],
      ['/ws/auth/r', {}],
      ['/ws/auth/r?token=', {}],
      ['/ws/auth/r?tok=x&token', {}],
      ['/ws/auth/r', { Authorization: 'Bearer ' }],
      ['/ws/auth/r', { Authorization: `Basic ${Buffer.from('u:p').toString('base64')}` }],
      ['/ws/auth/r', { Cookie: 'token=' }],
      ['/ws/auth/r', { Cookie: 'xtoken=abc; tokens=abc' }],
    ];
    for (const [path, headers] of missing) {
      const r = await upgrade(s.port, path, headers);
      expect({ path, headers, status: r.status, challenge: r.headers['www-authenticate'] }).toEqual({
        path,
        headers,
        status: 401,
        challenge: 'Bearer',
      });
    }
    await inn.check();

    // First found wins: a bad token first is refused even when a good one follows.
    const good = await sign({ sub: 'u-3' });
    const forged = await sign({ sub: 'u-3' }, { secret: 'forged-secret-forged-secret-forged-secret-0123456789' });
    const layered: [string, string, Record<string, string>][] = [
      ['bad header, good query', `/ws/r?token=${good}`, { Authorization: `Bearer ${forged}` }],
      ['bad header, good cookie', '/ws/auth/r', { Authorization: `Bearer ${forged}`, Cookie: `token=${good}` }],
      ['bad query, good cookie', `/ws/auth/r?token=${forged}`, { Cookie: `token=${good}` }],
      ['bad query, good cookie, optional route', `/ws/r?token=${forged}`, { Cookie: `token=${good}` }],
      ['bad query, good query', `/ws/auth/r?token=${forged}&token=${good}`, {}],
      ['bad cookie, good cookie', '/ws/auth/r', { Cookie: `token=${forged}; token=${good}` }],
    ];
    for (const [label, path, headers] of layered) {
      const r = await upgrade(s.port, path, headers);
      expect({ label, status: r.status, challenge: r.headers['www-authenticate'] }).toEqual({
        label,
        status: 401,
        challenge: 'Bearer error="invalid_token"',
      });
    }
    // ...and a good one first wins over a bad one behind it.
    expect((await upgrade(s.port, `/ws/auth/r?token=${forged}`, { Authorization: `Bearer ${good}` })).status).toBe(101);
    await inn.check();
  });
});

describe('1b. hostile Origin headers', () => {
  it('answers 403 to look-alike origins and accepts only the configured ones', async () => {
    const s = await serve({ WEBSOCKET_ALLOWED_ORIGINS: 'https://app.example.com,https://*.example.org' });
    const inn = await innocent(s);
    const cases: [string, number][] = [
      ['null', 403],
      ['', 403],
      ['https://app.example.com.evil.com', 403],
      ['https://evilapp.example.com', 403],
      ['https://app.example.com:8443', 403],
      ['http://app.example.com', 403],
      ['https://example.org', 403],
      ['https://evilexample.org', 403],
      ['https://a.example.org.evil.com', 403],
      ['http://a.example.org', 403],
      ['https://app.example.com, https://evil.com', 403],
      ['https://app.example.com', 101],
      ['HTTPS://APP.EXAMPLE.COM', 101],
      ['https://a.example.org', 101],
      ['https://a.b.c.example.org', 101],
    ];
    const actual: [string, number][] = [];
    for (const [origin] of cases) actual.push([origin, (await upgrade(s.port, '/ws', { Origin: origin })).status]);
    await inn.check();
    expect(actual).toEqual(cases);
  });
});

// ---- 2. spoofed identity ------------------------------------------------------------

describe('2. spoofed identity fields', () => {
  it('stamps the token identity and server time on join, message and leave, whatever the client claims', async () => {
    const s = await serve();
    const inn = await innocent(s);
    // A username claim that tries to break out of the JSON string.
    const hostileName = 'mallory","user_id":"w-1","username":"watcher","x":"\u2028</script>';
    const mallory = await open(s, '/ws/auth', { headers: { Authorization: `Bearer ${await sign({ sub: 'm-1', username: hostileName })}` } });
    const watcher = await open(s, `/ws/auth/spoof?token=${await sign({ sub: 'w-1', username: 'watcher' })}`);
    await watcher.take(2);

    const asMallory = { user_id: 'm-1', username: hostileName };
    const spoof = { user_id: 'w-1', username: 'watcher' };

    mallory.send({ type: 'join', room: 'spoof', ...spoof, timestamp: 0 });
    const join = { type: 'join', room: 'spoof', ...asMallory, timestamp: expect.any(Number) };
    const seen = await watcher.next();
    expect(seen).toEqual(join);
    expectServerTime(seen.timestamp);
    const [ownJoin, list] = await mallory.take(2);
    expect(ownJoin).toEqual(join);
    expect(list).toEqual({ type: 'user_list', room: 'spoof', data: expect.any(Array), timestamp: expect.any(Number) });
    expect([...(list!.data as string[])].sort()).toEqual([hostileName, 'watcher'].sort());

    const spoofedMessages: Record<string, unknown>[] = [
      { ...spoof, timestamp: 4102444800 },
      { ...spoof, timestamp: '2099-01-01T00:00:00Z' },
      { user_id: { $ne: null }, username: null, timestamp: -1 },
      { user_id: 'w-1', timestamp: 1.5, data: { user_id: 'w-1', username: 'watcher', timestamp: 7 } },
    ];
    for (const [i, extra] of spoofedMessages.entries()) {
      const frame = { type: 'message', room: 'spoof', content: `spoof ${i}`, ...extra };
      mallory.send(frame);
      const expected: Record<string, unknown> = { type: 'message', room: 'spoof', content: `spoof ${i}`, ...asMallory, timestamp: expect.any(Number) };
      if (extra.data !== undefined) expected.data = extra.data;
      const got = await watcher.next();
      expect(got).toEqual(expected);
      expectServerTime(got.timestamp);
      expect(await mallory.next()).toEqual(expected);
    }

    mallory.send({ type: 'leave', room: 'spoof', ...spoof, timestamp: 1 });
    const leave = { type: 'leave', room: 'spoof', ...asMallory, timestamp: expect.any(Number) };
    const left = await watcher.next();
    expect(left).toEqual(leave);
    expectServerTime(left.timestamp);
    expect(await mallory.next()).toEqual(leave);
    // The watcher, whose identity was claimed, is still a member.
    watcher.send({ type: 'user_list', room: 'spoof' });
    expect(await watcher.next()).toEqual({ type: 'user_list', room: 'spoof', data: ['watcher'], timestamp: expect.any(Number) });
    await inn.check();
  });

  it('does not let `auth` switch identity: another sub is forbidden, a forged token unauthorized, anonymous forbidden', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const mallory = await open(s, `/ws/auth/id?token=${await sign({ sub: 'm-1', username: 'mallory' }, { expiresIn: '10m' })}`);
    await mallory.take(2);
    const guest = await open(s, '/ws/id');
    const [guestJoin] = await guest.take(2);
    await mallory.next(); // guest's join

    const victim = await sign({ sub: 'w-1', username: 'watcher' }, { expiresIn: '10m' });
    const forged = await sign({ sub: 'm-1', username: 'mallory' }, { secret: 'forged-secret-forged-secret-forged-secret-0123456789' });
    mallory.send({ type: 'auth', data: { token: victim }, user_id: 'w-1' });
    expect(await mallory.next()).toEqual(err('forbidden'));
    mallory.send({ type: 'auth', data: { token: forged } });
    expect(await mallory.next()).toEqual(err('unauthorized'));
    mallory.send({ type: 'auth', data: { token: 'not.a.jwt' } });
    expect(await mallory.next()).toEqual(err('unauthorized'));
    guest.send({ type: 'auth', data: { token: victim } });
    expect(await guest.next()).toEqual(err('forbidden'));

    mallory.send({ type: 'message', room: 'id', content: 'who am i' });
    const fromMallory = { type: 'message', room: 'id', content: 'who am i', user_id: 'm-1', username: 'mallory', timestamp: expect.any(Number) };
    expect(await guest.next()).toEqual(fromMallory);
    expect(await mallory.next()).toEqual(fromMallory);
    guest.send({ type: 'message', room: 'id', content: 'and me' });
    const fromGuest = { type: 'message', room: 'id', content: 'and me', user_id: guestJoin!.user_id, username: guestJoin!.username, timestamp: expect.any(Number) };
    expect(await mallory.next()).toEqual(fromGuest);
    expect(await guest.next()).toEqual(fromGuest);
    await inn.check();
  });
});

// ---- 3. frames --------------------------------------------------------------------

const MiB = 1_048_576;

/** A `message` frame of exactly `bytes` UTF-8 bytes whose content is `fill` repeated (plus ASCII padding). */
function messageOfSize(room: string, bytes: number, fill = 'x'): { text: string; content: string } {
  const head = `{"type":"message","room":"${room}","content":"`;
  const tail = '"}';
  let left = bytes - Buffer.byteLength(head) - Buffer.byteLength(tail);
  const unit = Buffer.byteLength(fill);
  const content = fill.repeat(Math.floor(left / unit)) + 'x'.repeat(left % unit);
  left = Buffer.byteLength(head + content + tail);
  if (left !== bytes) throw new Error(`sized ${left}, wanted ${bytes}`);
  return { text: head + content + tail, content };
}

/** Depth of `[[[...[leaf]...]]]`, walked without recursion; -1 when the shape is wrong. */
function arrayDepth(value: unknown, leaf: string): number {
  let depth = 0;
  let cur = value;
  while (Array.isArray(cur)) {
    if (cur.length !== 1) return -1;
    cur = cur[0];
    depth++;
  }
  return cur === leaf ? depth : -1;
}

describe('3. hostile frames', () => {
  it('answers invalid JSON and non-object JSON with invalid_json, binary frames with invalid_message', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const attacker = await open(s, '/ws');
    const invalid = [
      '',
      ' ',
      '{',
      '}',
      '{not json',
      '{"type":"ping"',
      '{"type":"ping"}}',
      '{"type":"ping"}{"type":"ping"}',
      '{"type":"ping"} trailing',
      "{'type':'ping'}",
      '{type:"ping"}',
      '{"type":"ping",}',
      '{"type":"ping","n":01}',
      '{"type":"ping","n":NaN}',
      '{"type":"ping","s":"\\x41"}',
      '{"type":"ping","s":"unterminated}',
      '\ufeff{"type":"ping"}',
      '\u0000',
      'undefined',
      'NaN',
      '/*comment*/{"type":"ping"}',
      '[]',
      '[{"type":"ping"}]',
      'null',
      'true',
      'false',
      '0',
      '-1.5e3',
      '"ping"',
      '"{\\"type\\":\\"ping\\"}"',
    ];
    for (const text of invalid) {
      attacker.ws.send(text);
      expect({ text, reply: await attacker.next() }).toEqual({ text, reply: err('invalid_json') });
    }
    for (const bytes of [Buffer.from('{"type":"ping"}'), Buffer.alloc(0), Buffer.from([0xff, 0x00, 0xfe, 0x7b])]) {
      attacker.ws.send(bytes, { binary: true });
      expect(await attacker.next()).toEqual(err('invalid_message'));
    }
    // Whitespace around a JSON object is still JSON.
    attacker.ws.send(' \r\n\t{"type":"ping"} \n');
    expect(await attacker.next()).toEqual({ type: 'pong', timestamp: expect.any(Number) });
    await inn.check();
  });

  it('answers types named after Object.prototype members and other non-types with unsupported_type', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const attacker = await open(s, '/ws');
    const types: unknown[] = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'PING', 'ping ', '', null, 1, ['ping'], { toString: 'ping' }];
    for (const type of types) {
      attacker.send({ type, room: 'safe' });
      expect({ type, reply: await attacker.next() }).toEqual({ type, reply: err('unsupported_type', 'safe') });
    }
    attacker.send('{"__proto__":{"type":"ping"}}');
    expect(await attacker.next()).toEqual(err('unsupported_type'));
    await inn.check();
  });

  it('answers wrongly typed fields with invalid_message, echoing a string room', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const attacker = await open(s, '/ws/home');
    await attacker.take(2);
    const cases: [Record<string, unknown>, string | undefined][] = [
      [{ type: 'message', room: 'home' }, 'home'],
      [{ type: 'message', room: 'home', content: 7 }, 'home'],
      [{ type: 'message', room: 'home', content: null }, 'home'],
      [{ type: 'message', room: 'home', content: ['x'] }, 'home'],
      [{ type: 'message', room: 'home', content: 'x', data: null }, 'home'],
      [{ type: 'message', room: 'home', content: 'x', data: [] }, 'home'],
      [{ type: 'message', room: 'home', content: 'x', data: [{ a: 1 }] }, 'home'],
      [{ type: 'message', room: 'home', content: 'x', data: 'str' }, 'home'],
      [{ type: 'message', room: 'home', content: 'x', data: 1 }, 'home'],
      [{ type: 'message', room: 'home', content: 'x', data: true }, 'home'],
      [{ type: 'message', content: 'x' }, undefined],
      [{ type: 'join' }, undefined],
      [{ type: 'leave', room: { $gt: '' } }, undefined],
      [{ type: 'user_list', room: ['home'] }, undefined],
      [{ type: 'auth' }, undefined],
      [{ type: 'auth', data: null }, undefined],
      [{ type: 'auth', data: { token: 123 } }, undefined],
      [{ type: 'auth', data: 'eyJ...' }, undefined],
      [{ type: 'auth', token: 'eyJ...' }, undefined],
    ];
    for (const [frame, room] of cases) {
      attacker.send(frame);
      expect({ frame, reply: await attacker.next() }).toEqual({ frame, reply: err('invalid_message', room) });
    }
    await inn.check();
  });

  it('delivers prototype-pollution keys as plain data, exactly as sent, and pollutes nothing', async () => {
    const protoNames = Object.getOwnPropertyNames(Object.prototype).sort();
    const s = await serve();
    const inn = await innocent(s);
    const a = await open(s, '/ws/proto');
    await a.take(2);
    const b = await open(s, '/ws/proto');
    const [bJoin] = await b.take(2);
    await a.next();

    const dataText =
      '{"__proto__":{"polluted":"data","isAdmin":true},"constructor":{"prototype":{"polluted":"data"}},"prototype":{"polluted":"data"},' +
      '"nested":{"__proto__":{"polluted":"deep"},"constructor":{"prototype":{"polluted":"deep"}}},"list":[{"__proto__":{"polluted":"list"}}]}';
    const frames = [
      // pollution keys at the top level (unknown fields, ignored) and inside data (delivered)
      `{"type":"message","room":"proto","content":"pp","__proto__":{"polluted":"top","room":"safe"},"constructor":{"prototype":{"polluted":"top"}},"prototype":{"polluted":"top"},"data":${dataText}}`,
      `{"__proto__":{"polluted":"first"},"type":"message","room":"proto","content":"pp","data":${dataText}}`,
    ];
    for (const text of frames) {
      b.ws.send(text);
      for (const who of [a, b]) {
        const got = await who.next();
        expect(Object.keys(got).sort()).toEqual(['content', 'data', 'room', 'timestamp', 'type', 'user_id', 'username']);
        expect({ ...got, data: undefined }).toEqual({
          type: 'message',
          room: 'proto',
          content: 'pp',
          user_id: bJoin!.user_id,
          username: bJoin!.username,
          timestamp: expect.any(Number),
          data: undefined,
        });
        expect(JSON.stringify(got.data)).toBe(dataText);
        expect(Object.keys(got.data as object)).toEqual(['__proto__', 'constructor', 'prototype', 'nested', 'list']);
      }
    }
    b.ws.send('{"type":"join","room":"proto2","__proto__":{"room":"other"},"constructor":{"name":"x"}}');
    expect(await b.take(2)).toEqual([
      { type: 'join', room: 'proto2', user_id: bJoin!.user_id, username: bJoin!.username, timestamp: expect.any(Number) },
      { type: 'user_list', room: 'proto2', data: [bJoin!.username], timestamp: expect.any(Number) },
    ]);

    // The server runs in this process: its Object.prototype is ours.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(Object.hasOwn(Object.prototype, 'polluted')).toBe(false);
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoNames);
    await inn.check();
  });

  it('treats rooms named after Object.prototype members as ordinary rooms', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const a = await open(s, '/ws');
    const outsider = await open(s, '/ws');
    const names = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__'];
    // Before anyone joins, none of them exists.
    for (const room of names) {
      outsider.send({ type: 'user_list', room });
      expect(await outsider.next()).toEqual(err('not_in_room', room));
    }
    const aJoin = { user_id: expect.any(String), username: expect.any(String) };
    for (const room of names) {
      a.send({ type: 'join', room });
      const [join, list] = await a.take(2);
      expect(join).toEqual({ type: 'join', room, ...aJoin, timestamp: expect.any(Number) });
      expect(list).toEqual({ type: 'user_list', room, data: [join!.username], timestamp: expect.any(Number) });
      a.send({ type: 'message', room, content: room, data: { room } });
      expect(await a.next()).toEqual({ type: 'message', room, content: room, user_id: join!.user_id, username: join!.username, timestamp: expect.any(Number), data: { room } });
      for (const type of ['message', 'leave', 'user_list']) {
        outsider.send({ type, room, content: 'x' });
        expect(await outsider.next()).toEqual(err('not_in_room', room));
      }
    }
    expect(s.hub.roomNames().sort()).toEqual([...names, 'safe'].sort());
    for (const room of names) {
      a.send({ type: 'leave', room });
      expect(await a.next()).toMatchObject({ type: 'leave', room });
    }
    expect(s.hub.roomNames()).toEqual(['safe']);
    await inn.check();
  });

  it('delivers deep data intact, even nesting too deep to serialize again, without crashing', async () => {
    const s = await serve({ WEBSOCKET_MAX_MESSAGE_SIZE: String(MiB) });
    const inn = await innocent(s);
    const a = await open(s, '/ws/deep');
    await a.take(2);
    const b = await open(s, '/ws/deep');
    const [bJoin] = await b.take(2);
    await a.next();

    // Deep but valid: delivered exactly.
    const depth = 2000;
    b.ws.send(`{"type":"message","room":"deep","content":"d","data":{"deep":${'['.repeat(depth)}"leaf"${']'.repeat(depth)}}}`);
    for (const who of [a, b]) {
      const got = await who.next();
      expect({ ...got, data: undefined }).toEqual({
        type: 'message',
        room: 'deep',
        content: 'd',
        user_id: bJoin!.user_id,
        username: bJoin!.username,
        timestamp: expect.any(Number),
        data: undefined,
      });
      expect(Object.keys(got.data as object)).toEqual(['deep']);
      expect(arrayDepth((got.data as { deep: unknown }).deep, 'leaf')).toBe(depth);
    }

    // Wide but valid: 40000 keys, delivered exactly.
    const wide: Record<string, number> = {};
    for (let i = 0; i < 40_000; i++) wide[`k${i}`] = i;
    const wideText = JSON.stringify(wide);
    b.ws.send(`{"type":"message","room":"deep","content":"w","data":${wideText}}`);
    for (const who of [a, b]) {
      const got = await who.next();
      expect(got.content).toBe('w');
      expect(JSON.stringify(got.data)).toBe(wideText);
    }

    // ~100000 levels, balanced, inside data: too deep for JSON.stringify to serialize
    // again, so the server forwards the client's own text of `data`; both members get it.
    const absurd = 100_000;
    const nested = [
      `{"type":"message","room":"deep","content":"d1","data":{"deep":${'['.repeat(absurd)}${']'.repeat(absurd)}}}`,
      `{"type":"message","room":"deep","content":"d2","data":${'{"a":'.repeat(absurd)}1${'}'.repeat(absurd)}}`,
    ];
    for (const [i, text] of nested.entries()) {
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(MiB);
      b.ws.send(text);
      for (const who of [b, a]) {
        const got = await who.next();
        expect({ ...got, data: undefined }).toEqual({
          type: 'message',
          room: 'deep',
          content: `d${i + 1}`,
          user_id: bJoin!.user_id,
          username: bJoin!.username,
          timestamp: expect.any(Number),
          data: undefined,
        });
        expect(typeof got.data).toBe('object');
      }
      await b.roundTrip();
    }
    // Unbalanced: not JSON at all.
    b.ws.send(`{"type":"message","room":"deep","content":"d","data":${'['.repeat(absurd)}`);
    expect(await b.next()).toEqual(err('invalid_json'));
    b.ws.send('['.repeat(absurd));
    expect(await b.next()).toEqual(err('invalid_json'));
    // Deep where a string belongs: wrongly typed.
    b.ws.send(`{"type":"message","room":"deep","content":${'['.repeat(absurd)}${']'.repeat(absurd)}}`);
    expect(await b.next()).toEqual(err('invalid_message', 'deep'));
    // Deep in an unknown extra field: ignored.
    b.ws.send(`{"type":"ping","junk":${'['.repeat(absurd)}${']'.repeat(absurd)}}`);
    expect(await b.next()).toEqual({ type: 'pong', timestamp: expect.any(Number) });

    // None of the refused frames reached the other member.
    await a.roundTrip();
    expect(a.frames).toEqual([]);
    await inn.check();
  });

  it('delivers a message of exactly WEBSOCKET_MAX_MESSAGE_SIZE bytes and closes 1009 one byte over', async () => {
    const s = await serve({ WEBSOCKET_MAX_MESSAGE_SIZE: String(MiB) });
    const inn = await innocent(s);
    const a = await open(s, '/ws/big');
    await a.take(2);

    for (const fill of ['x', 'é', '😀']) {
      const b = await open(s, '/ws/big');
      const [bJoin] = await b.take(2);
      await a.next();
      const exact = messageOfSize('big', MiB, fill);
      b.ws.send(exact.text);
      const got = await a.next(5000);
      expect(got.content).toBe(exact.content);
      expect({ ...got, content: undefined }).toEqual({ type: 'message', room: 'big', content: undefined, user_id: bJoin!.user_id, username: bJoin!.username, timestamp: expect.any(Number) });
      expect((await b.next(5000)).content).toBe(exact.content);

      const over = messageOfSize('big', MiB + 1, fill);
      expect(over.content.length).toBeLessThanOrEqual(MiB); // characters: the limit is in bytes
      b.ws.send(over.text);
      expect((await b.closed).code).toBe(1009);
      expect(await a.next()).toEqual({ type: 'leave', room: 'big', user_id: bJoin!.user_id, username: bJoin!.username, timestamp: expect.any(Number) });
    }
    // A room name of almost a megabyte: refused, and echoed as sent.
    const hugeRoom = 'r'.repeat(MiB - 64);
    a.send({ type: 'join', room: hugeRoom });
    expect(await a.next(5000)).toEqual(err('invalid_room', hugeRoom));
    await a.roundTrip();
    await inn.check();
  });

  it('reassembles fragmented messages under the limit and closes 1009 when the fragments together exceed it', async () => {
    const s = await serve({ WEBSOCKET_MAX_MESSAGE_SIZE: String(MiB) });
    const inn = await innocent(s);
    const a = await open(s, '/ws/frag');
    await a.take(2);

    const sendFragments = (p: Peer, text: string, parts: number) => {
      const size = Math.ceil(text.length / parts);
      for (let i = 0; i < parts; i++) p.ws.send(text.slice(i * size, (i + 1) * size), { fin: i === parts - 1 });
    };
    const cases: [label: string, bytes: number, parts: number, delivered: boolean][] = [
      ['small, 64 fragments', 4096, 64, true],
      ['half the limit, 3 fragments', MiB / 2, 3, true],
      ['exactly the limit, 4 fragments', MiB, 4, true],
      ['one byte over, 4 fragments', MiB + 1, 4, false],
      ['five times 300 kB', 1_500_000, 5, false],
      ['one byte over, 1024 fragments', MiB + 1, 1024, false],
    ];
    for (const [label, bytes, parts, delivered] of cases) {
      const b = await open(s, '/ws/frag');
      const [bJoin] = await b.take(2);
      await a.next();
      const m = messageOfSize('frag', bytes);
      sendFragments(b, m.text, parts);
      if (delivered) {
        const got = await a.next(5000);
        expect({ label, content: got.content === m.content, user: got.user_id }).toEqual({ label, content: true, user: bJoin!.user_id });
        expect((await b.next(5000)).content).toBe(m.content);
        b.ws.terminate();
      } else {
        expect({ label, code: (await b.closed).code }).toEqual({ label, code: 1009 });
      }
      expect(await a.next()).toMatchObject({ type: 'leave', room: 'frag', user_id: bJoin!.user_id });
      await inn.check();
    }
  });

  it('closes 1007 on invalid UTF-8 from a raw socket, 1009 on an absurd announced length, and stays up after protocol abuse', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const TEXT = 0x1;
    const CONT = 0x0;

    // A raw socket that plays by the rules is served (the raw client itself works).
    const fair = await openRaw(s, '/ws');
    fair.send(TEXT, '{"type":"ping"}');
    expect(await fair.nextJson()).toEqual({ type: 'pong', timestamp: expect.any(Number) });
    // A valid multi-byte character split across two fragments is fine.
    const split = Buffer.from('{"type":"ping","x":"é"}');
    const cut = split.indexOf(0xc3) + 1;
    fair.send(TEXT, split.subarray(0, cut), { fin: false });
    fair.send(CONT, split.subarray(cut));
    expect(await fair.nextJson()).toEqual({ type: 'pong', timestamp: expect.any(Number) });

    const badUtf8: [string, (r: RawSocket) => void][] = [
      ['0xff 0xfe', (r) => r.send(TEXT, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))],
      ['overlong "/"', (r) => r.send(TEXT, Buffer.concat([Buffer.from('{"type":"ping","x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]))],
      ['UTF-16 surrogate', (r) => r.send(TEXT, Buffer.concat([Buffer.from('{"type":"ping","x":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]))],
      ['above U+10FFFF', (r) => r.send(TEXT, Buffer.from([0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]))],
      ['truncated sequence', (r) => r.send(TEXT, Buffer.from([0x22, 0xe2, 0x82, 0x22]))],
      ['invalid byte in a continuation fragment', (r) => {
        r.send(TEXT, '{"type":"ping","x":"', { fin: false });
        r.send(CONT, Buffer.from([0x80, 0x22, 0x7d]));
      }],
    ];
    for (const [label, attack] of badUtf8) {
      const r = await openRaw(s, '/ws');
      attack(r);
      const closed = await r.serverClosed();
      expect({ label, code: closed?.code }).toEqual({ label, code: 1007 });
      await inn.check();
    }

    for (const announced of [BigInt(MiB) * 1024n, 2n ** 63n - 1n]) {
      const r = await openRaw(s, '/ws');
      r.send(TEXT, '{"type":"ping"}', { announceLength: announced });
      const closed = await r.serverClosed();
      expect({ announced: String(announced), code: closed?.code }).toEqual({ announced: String(announced), code: 1009 });
      await inn.check();
    }

    // Not in the contract's table, but none of it may take the server down: each
    // offending connection is dropped and the hub forgets it.
    const abuse: [string, (r: RawSocket) => void][] = [
      ['unmasked frame', (r) => r.send(TEXT, '{"type":"ping"}', { mask: false })],
      ['RSV1 without an extension', (r) => r.send(TEXT, '{"type":"ping"}', { rsv: 0x40 })],
      ['reserved opcode 0x3', (r) => r.send(0x3, 'x')],
      ['reserved control opcode 0xb', (r) => r.send(0xb, 'x')],
      ['continuation without a start', (r) => r.send(CONT, '{"type":"ping"}')],
      ['new message inside a fragmented one', (r) => {
        r.send(TEXT, '{"type":', { fin: false });
        r.send(TEXT, '"ping"}');
      }],
      ['fragmented ping', (r) => r.send(0x9, 'x', { fin: false })],
      ['ping payload over 125 bytes', (r) => r.send(0x9, 'x'.repeat(200))],
      ['close code 1005 on the wire', (r) => r.send(0x8, Buffer.from([0x03, 0xed]))],
      ['close with one payload byte', (r) => r.send(0x8, Buffer.from([0x03]))],
      ['random bytes', (r) => r.sendBytes(Buffer.from('GET / HTTP/1.1\r\n\r\n\u0000\u00ff\u00fe', 'latin1'))],
    ];
    for (const [label, attack] of abuse) {
      const r = await openRaw(s, '/ws');
      attack(r);
      await r.serverClosed();
      await eventually(() => s.hub.size === 3, `hub forgot the connection after: ${label}`);
      await inn.check();
    }
    fair.send(TEXT, '{"type":"ping"}');
    expect(await fair.nextJson()).toEqual({ type: 'pong', timestamp: expect.any(Number) });
  });
});

// ---- 4. room-name injection ------------------------------------------------------------

describe('4. room-name injection', () => {
  it('answers 404 to invalid room names in the path, before any other check', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const good = await sign({ sub: 'u-4' });
    const invalid = [
      '/ws/..%2F..',
      '/ws/..%2f..%2fetc%2fpasswd',
      '/ws/%2e%2e%2fetc',
      '/ws/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
      '/ws/../etc',
      '/ws/../../etc/passwd',
      '/ws/auth/../r',
      '/ws/..%5C..%5Cwindows',
      '/ws/a\\b',
      '/ws/a%2Fb',
      '/ws/auth%2Fr',
      '/ws/a%252Fb',
      '/ws/caf%C3%A9',
      '/ws/%D0%B0dmin',
      '/ws/%EF%BC%8Fetc',
      '/ws/%F0%9F%98%80',
      '/ws/%E2%80%AEevil',
      '/ws/lobby%00',
      '/ws/a%0D%0ASet-Cookie:%20pwned=1',
      '/ws/%20',
      '/ws/a%20b',
      '/ws/%3Cscript%3E',
      '/ws/%',
      '/ws/%zz',
      '/ws/%E0%A4%A',
      `/ws/${'x'.repeat(65)}`,
      `/ws/auth/${'x'.repeat(65)}`,
      `/ws/${'%41'.repeat(65)}`,
      '/ws//',
      '/ws/auth//',
      '/ws/%2F',
      '/ws/r//',
      '/ws/auth/r//',
      '/ws/a/b',
    ];
    const headerSets: Record<string, string>[] = [{}, { Authorization: `Bearer ${good}` }, { Authorization: 'Bearer forged.token.here' }];
    for (const path of invalid) {
      for (const headers of headerSets) {
        const r = await upgrade(s.port, path, headers);
        expect({ path, headers, status: r.status, setCookie: r.headers['set-cookie'] }).toEqual({ path, headers, status: 404, setCookie: undefined });
      }
    }
    expect(s.hub.roomNames()).toEqual(['safe']);
    await inn.check();
  });

  it('accepts the valid oddities `..`, `.`, encoded `..`, 64 characters and `:`, joining exactly that room', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const token = await sign({ sub: 'u-5' });
    const valid: [path: string, room: string][] = [
      ['/ws/..', '..'],
      ['/ws/%2e%2e', '..'],
      ['/ws/%2E%2E/', '..'],
      ['/ws/.', '.'],
      [`/ws/auth/..?token=${token}`, '..'],
      [`/ws/${'x'.repeat(64)}`, 'x'.repeat(64)],
      [`/ws/${'%41'.repeat(64)}`, 'A'.repeat(64)],
      ['/ws/a%3Ab%3A..', 'a:b:..'],
      ['/ws/r?room=../../etc&path=/ws/a/b&token=', 'r'],
    ];
    for (const [path, room] of valid) {
      const r = await openRaw(s, path);
      const join = await r.nextJson();
      expect({ path, join }).toEqual({ path, join: { type: 'join', room, user_id: expect.any(String), username: expect.any(String), timestamp: expect.any(Number) } });
      expect(await r.nextJson()).toEqual({ type: 'user_list', room, data: [join.username], timestamp: expect.any(Number) });
      r.destroy();
      await eventually(() => s.hub.size === 2, `closed ${path}`);
    }
    await inn.check();
  });

  it('routes absolute-form request targets (http://host/ws/...) exactly like the same path in origin-form', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const origin = `http://127.0.0.1:${s.port}`;
    // [path, room joined (string) or 404]
    const cases: [string, string | 404][] = [
      ['/ws/r', 'r'],
      ['/ws/a/b', 404],
      ['/ws/..', '..'],
      ['/ws/%2e%2e', '..'],
      ['/ws/x/../y', 404],
      ['/ws/x/..', 404],
      ['/ws/auth/../r', 404],
      ['/ws/./r', 404],
      ['/ws/r/.', 404],
    ];
    const actual: { target: string; outcome: string | number }[] = [];
    const wanted: { target: string; outcome: string | number }[] = [];
    for (const [path, expected] of cases) {
      for (const target of [path, `${origin}${path}`]) {
        const r = await RawSocket.open(s.port, target);
        let outcome: string | number = r.status;
        if (r.raw !== undefined) {
          raws.push(r.raw);
          // The path join comes before the answer to anything the client sends.
          r.raw.send(0x1, '{"type":"ping"}');
          const first = await r.raw.nextJson();
          outcome = first.type === 'join' ? (first.room as string) : first.type === 'pong' ? 'upgraded, joined nothing' : JSON.stringify(first);
          r.raw.destroy();
        }
        actual.push({ target, outcome });
        wanted.push({ target, outcome: expected });
      }
    }
    await eventually(() => s.hub.size === 2, 'probes closed');
    await inn.check();
    // One comparison of the whole table, so a failure shows every divergent target.
    expect(actual).toEqual(wanted);
  });

  it('answers invalid_room, echoing the room exactly as sent, for bad names in join, message, leave and user_list', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const attacker = await open(s, '/ws/home');
    await attacker.take(2);
    const badRooms = [
      '',
      ' ',
      'a b',
      ' home',
      'home ',
      '../../etc/passwd',
      '..\\..\\windows',
      'a/b',
      'home/../safe',
      'x'.repeat(65),
      'café',
      'ｈｏｍｅ',
      '\u0430dmin',
      'home\u0000',
      'home\n',
      'home\r\nX-Injected: 1',
      '\u202eemoh',
      '\ud800',
      '😀',
      '<script>alert(1)</script>',
      'a","user_id":"admin',
      '${jndi:ldap://x/a}',
      'a%2Fb',
      '%2e%2e',
      'home?x=1',
      'home#x',
      '*',
      'a\tb',
      "home'; DROP TABLE rooms;--",
    ];
    for (const room of badRooms) {
      for (const type of ['join', 'message', 'leave', 'user_list']) {
        attacker.send({ type, room, content: 'x' });
        expect({ type, room, reply: await attacker.next() }).toEqual({ type, room, reply: err('invalid_room', room) });
      }
    }
    // Wrongly typed rooms: invalid_message, no room echoed.
    for (const room of [7, null, ['home'], { name: 'home' }, true]) {
      for (const type of ['join', 'message', 'leave', 'user_list']) {
        attacker.send({ type, room, content: 'x' });
        expect({ type, room, reply: await attacker.next() }).toEqual({ type, room, reply: err('invalid_message') });
      }
    }
    // The shape is checked before the name: a bad room without content is invalid_message, room echoed.
    attacker.send({ type: 'message', room: '../x' });
    expect(await attacker.next()).toEqual(err('invalid_message', '../x'));
    // `..` is a valid room name in a frame too.
    attacker.send({ type: 'join', room: '..' });
    expect(await attacker.take(2)).toEqual([
      { type: 'join', room: '..', user_id: expect.any(String), username: expect.any(String), timestamp: expect.any(Number) },
      { type: 'user_list', room: '..', data: [expect.any(String)], timestamp: expect.any(Number) },
    ]);
    expect(s.hub.roomNames().sort()).toEqual(['..', 'home', 'safe']);
    await inn.check();
  });
});

// ---- 5. floods ----------------------------------------------------------------------

describe('5. floods', () => {
  it('drops a message flood with rate_limited, closes it 1008, and the room receives exactly the accepted messages', async () => {
    const s = await serve({ WEBSOCKET_MESSAGE_RATE: '5/s,5' });
    const inn = await innocent(s);
    const watcher = await open(s, '/ws/flood');
    await watcher.take(2);
    const flooder = await open(s, '/ws/flood');
    const [fJoin] = await flooder.take(2);
    await watcher.next();

    const N = 60;
    for (let i = 0; i < N; i++) flooder.send({ type: 'message', room: 'flood', content: `m${i}` });
    expect(await flooder.closed).toEqual({ code: 1008, reason: 'rate limit exceeded' });

    // Every frame up to the close got exactly one answer, in order: its echo or rate_limited.
    const answers = flooder.frames.splice(0);
    const fromFlooder = (content: string) => ({ type: 'message', room: 'flood', content, user_id: fJoin!.user_id, username: fJoin!.username, timestamp: expect.any(Number) });
    expect(answers.length).toBeLessThanOrEqual(N);
    answers.forEach((f, k) => {
      // Dropped unread: the error names no room, though the frame did.
      expect({ k, f }).toEqual({ k, f: f.type === 'message' ? fromFlooder(`m${k}`) : err('rate_limited') });
    });
    const accepted = answers.filter((f) => f.type === 'message').map((f) => f.content as string);
    // The burst goes through; the close comes after exactly `burst` drops in a row, and not before.
    expect(accepted.slice(0, 5)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    const codes = answers.map((f) => codeOf(f) ?? 'ok');
    expect(codes.slice(-5)).toEqual(Array(5).fill('rate_limited'));
    expect(codes.slice(0, -1).join(',')).not.toContain(Array(5).fill('rate_limited').join(','));

    // The innocent member saw exactly the accepted messages, then the flooder leaving.
    const seen = await watcher.take(accepted.length + 1);
    expect(seen).toEqual([
      ...accepted.map(fromFlooder),
      { type: 'leave', room: 'flood', user_id: fJoin!.user_id, username: fJoin!.username, timestamp: expect.any(Number) },
    ]);
    await watcher.roundTrip();
    expect(watcher.frames).toEqual([]);
    await inn.check();
  });

  it('counts invalid and binary frames toward the message rate: a garbage flood is cut off 1008 too', async () => {
    const s = await serve({ WEBSOCKET_MESSAGE_RATE: '5/s,5' });
    const inn = await innocent(s);
    const flooder = await open(s, '/ws');
    for (let i = 0; i < 40; i++) flooder.ws.send(i % 2 === 0 ? '{garbage' : Buffer.from([i]), { binary: i % 2 === 1 });
    expect(await flooder.closed).toEqual({ code: 1008, reason: 'rate limit exceeded' });
    const answers = flooder.frames.splice(0);
    answers.forEach((f, k) => {
      expect({ k, f }).toEqual({ k, f: codeOf(f) === 'rate_limited' ? err('rate_limited') : err(k % 2 === 0 ? 'invalid_json' : 'invalid_message') });
    });
    const codes = answers.map((f) => codeOf(f));
    expect(codes.slice(0, 5)).toEqual(['invalid_json', 'invalid_message', 'invalid_json', 'invalid_message', 'invalid_json']);
    expect(codes.slice(-5)).toEqual(Array(5).fill('rate_limited'));
    expect(codes.slice(0, -1).join(',')).not.toContain(Array(5).fill('rate_limited').join(','));
    await inn.check();
  });

  it('answers 429 with an integer Retry-After after exactly the burst from one address, while another address connects', async () => {
    const s = await serve({ WEBSOCKET_CONNECT_RATE: '10/m,5', WEBSOCKET_TRUST_PROXY: 'true' });
    const inn = await innocent(s, { 'X-Forwarded-For': '192.0.2.50' });
    const attacker = { 'X-Forwarded-For': '203.0.113.7' };
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await upgrade(s.port, '/ws', attacker)).status);
    expect(statuses).toEqual([101, 101, 101, 101, 101]);

    const token = await sign({ sub: 'u-6' });
    const flood: [string, Record<string, string>][] = [
      ['/ws', attacker],
      ['/ws/r', attacker],
      [`/ws/auth/r?token=${token}`, attacker],
      ['/ws/auth/r?token=forged.token.x', attacker],
      ['/ws/auth', attacker],
      // Entries the client adds on the left change nothing: the proxy's (right-most) decides.
      ['/ws', { 'X-Forwarded-For': '198.51.100.1, 203.0.113.7' }],
      ['/ws', { 'X-Forwarded-For': '10.0.0.1, 203.0.113.7 ' }],
      ['/ws', { ...attacker, 'X-Real-IP': '198.51.100.2', Forwarded: 'for=198.51.100.3' }],
    ];
    for (let round = 0; round < 2; round++) {
      for (const [path, headers] of flood) {
        const r = await upgrade(s.port, path, headers);
        expect({ path, headers, status: r.status }).toEqual({ path, headers, status: 429 });
        expect(r.headers['retry-after']).toMatch(/^\d+$/);
        expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(6); // one token per 6 s
      }
    }
    // 404 comes before 429, and the innocent pair is untouched.
    expect((await upgrade(s.port, '/ws/a/b', attacker)).status).toBe(404);
    await inn.check();
    // Another address still connects and talks.
    const other = await open(s, '/ws/safe', { headers: { 'X-Forwarded-For': '198.51.100.9' } });
    const [otherJoin] = await other.take(2);
    expect(await inn.watcher.next()).toEqual({ type: 'join', room: 'safe', user_id: otherJoin!.user_id, username: otherJoin!.username, timestamp: expect.any(Number) });
    await inn.speaker.next();
    other.send({ type: 'ping' });
    expect(await other.next()).toEqual({ type: 'pong', timestamp: expect.any(Number) });
  });

  it('does not let a spoofed X-Forwarded-For escape the connect limit when WEBSOCKET_TRUST_PROXY=false', async () => {
    const s = await serve({ WEBSOCKET_CONNECT_RATE: '10/m,5', WEBSOCKET_TRUST_PROXY: 'false' });
    const inn = await innocent(s); // from 127.0.0.2: the attacker's 127.0.0.1 has its whole burst
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await upgrade(s.port, '/ws', { 'X-Forwarded-For': `198.51.100.${10 + i}` })).status);
    expect(statuses).toEqual([101, 101, 101, 101, 101]);
    for (let i = 0; i < 12; i++) {
      const r = await upgrade(s.port, '/ws', { 'X-Forwarded-For': `198.51.100.${20 + i}`, 'X-Real-IP': `198.51.100.${40 + i}` });
      expect({ i, status: r.status }).toEqual({ i, status: 429 });
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    await inn.check();
  });
});

// ---- 6. resource bounds --------------------------------------------------------------

describe('6. resource bounds', () => {
  it('answers 503 beyond WEBSOCKET_MAX_CONNECTIONS, before the token check, also to a concurrent stampede', async () => {
    const s = await serve({ WEBSOCKET_MAX_CONNECTIONS: '6' });
    const inn = await innocent(s);
    const held: Peer[] = [];
    for (let i = 0; i < 3; i++) held.push(await open(s, '/ws'));
    expect(s.hub.size).toBe(5);

    // 10 at once for the one free slot: exactly one gets in.
    const stampede = await Promise.allSettled(Array.from({ length: 10 }, () => open(s, '/ws')));
    expect(stampede.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(stampede.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.status)).toEqual(Array(9).fill(503));
    expect(s.hub.size).toBe(6);

    const good = await sign({ sub: 'u-7' });
    const attempts: [string, Record<string, string>][] = [
      ['/ws', {}],
      ['/ws/safe', {}],
      [`/ws/auth/r?token=${good}`, {}],
      ['/ws/auth/r', { Authorization: 'Bearer forged.token.x' }],
      ['/ws/auth', {}],
    ];
    for (const [path, headers] of attempts) {
      expect({ path, status: (await upgrade(s.port, path, headers)).status }).toEqual({ path, status: 503 });
    }
    expect((await RawSocket.open(s.port, '/ws')).status).toBe(503);
    await inn.check();

    const leaving = held[0]!;
    leaving.close();
    await leaving.closed;
    await eventually(() => s.hub.size === 5, 'a slot freed');
    expect((await upgrade(s.port, `/ws/auth/r?token=${good}`)).status).toBe(101);
    await inn.check();
  });

  it('does not leak capacity to broken or abandoned handshakes', async () => {
    const s = await serve({ WEBSOCKET_MAX_CONNECTIONS: '3' });
    const inn = await innocent(s);
    const token = await sign({ sub: 'u-8' });
    // Admitted by the hub, then refused by the WebSocket handshake itself.
    const broken: Record<string, string>[] = [
      { 'Sec-WebSocket-Key': '' },
      { 'Sec-WebSocket-Key': 'c2hvcnQ=' },
      { 'Sec-WebSocket-Key': 'not base64 at all!!', 'Sec-WebSocket-Version': '13' },
      { 'Sec-WebSocket-Version': '7' },
      { 'Sec-WebSocket-Version': 'thirteen' },
      { Upgrade: 'h2c' },
    ];
    for (let round = 0; round < 3; round++) {
      for (const headers of broken) {
        const r = await upgrade(s.port, `/ws/auth/r?token=${token}`, headers);
        expect({ headers, upgraded: r.status === 101 }).toEqual({ headers, upgraded: false });
      }
    }
    // Upgrade requests whose client vanishes while the token is being verified.
    const attempts = () => {
      const st = s.hub.stats();
      return st.connectionsAccepted + Object.values(st.rejected).reduce((a, b) => a + b, 0);
    };
    const before = attempts();
    for (let i = 0; i < 20; i++) {
      const gone = net.connect(s.port, '127.0.0.1');
      gone.on('error', () => {});
      sockets.push(gone);
      gone.write(
        `GET /ws/auth/r?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        () => gone.destroy(),
      );
    }
    await eventually(() => attempts() === before + 20, 'every abandoned request was decided');
    await eventually(() => s.hub.stats().pending === 0 && s.hub.size === 2, 'no slot held by a dead handshake');
    // The one free slot is still free.
    const last = await open(s, `/ws/auth/r?token=${token}`);
    expect(await last.next()).toMatchObject({ type: 'join', room: 'r', user_id: 'u-8' });
    expect((await upgrade(s.port, '/ws')).status).toBe(503);
    await inn.check();
  });

  it('answers too_many_rooms past WEBSOCKET_MAX_ROOMS_PER_CONNECTION, counting the path room', async () => {
    const s = await serve({ WEBSOCKET_MAX_ROOMS_PER_CONNECTION: '3' });
    const inn = await innocent(s);
    const p = await open(s, '/ws/p1');
    await p.take(2);
    for (const room of ['p2', 'p3']) {
      p.send({ type: 'join', room });
      expect((await p.take(2)).map((f) => [f.type, f.room])).toEqual([
        ['join', room],
        ['user_list', room],
      ]);
    }
    for (let i = 4; i < 30; i++) {
      p.send({ type: 'join', room: `p${i}` });
      expect(await p.next()).toEqual(err('too_many_rooms', `p${i}`));
    }
    // Joining a room already joined is no error.
    p.send({ type: 'join', room: 'p1' });
    expect(await p.next()).toEqual({ type: 'user_list', room: 'p1', data: [expect.any(String)], timestamp: expect.any(Number) });
    expect(s.hub.roomNames().sort()).toEqual(['p1', 'p2', 'p3', 'safe']);
    p.send({ type: 'leave', room: 'p2' });
    expect(await p.next()).toMatchObject({ type: 'leave', room: 'p2' });
    p.send({ type: 'join', room: 'p4' });
    expect((await p.take(2)).map((f) => f.type)).toEqual(['join', 'user_list']);
    p.send({ type: 'join', room: 'safe' });
    expect(await p.next()).toEqual(err('too_many_rooms', 'safe'));
    await inn.check();
  });

  it('refuses a 100 kB header with 431, leaves half-sent requests alone, and keeps serving', async () => {
    const s = await serve();
    const inn = await innocent(s);
    const upgradeHead = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
    const cookie = `Cookie: token=${'a'.repeat(100 * 1024)}\r\n`;
    const requests = [
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n${upgradeHead}${cookie}\r\n`,
      `GET /ws/auth/r HTTP/1.1\r\nHost: 127.0.0.1\r\n${upgradeHead}${cookie}\r\n`,
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${cookie}\r\n`,
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n${upgradeHead}X-Junk: ${'j'.repeat(100 * 1024)}\r\n\r\n`,
    ];
    for (const request of requests) {
      const r = await rawHttp(s.port, request);
      expect({ request: request.slice(0, 20), status: r.status, upgraded: r.headers.upgrade }).toEqual({ request: request.slice(0, 20), status: 431, upgraded: undefined });
      await inn.check();
    }

    // Slow, half-sent upgrade requests hold no slot and block nobody.
    for (let i = 0; i < 5; i++) {
      const half = net.connect(s.port, '127.0.0.1');
      half.on('error', () => {});
      sockets.push(half);
      half.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n');
    }
    expect((await upgrade(s.port, '/ws')).status).toBe(101);
    expect(s.hub.stats().pending).toBe(0);
    const health = await fetch(`http://127.0.0.1:${s.port}/healthz`);
    expect(health.status).toBe(200);
    await inn.check();
  });
});
