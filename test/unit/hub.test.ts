import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { adapterHandle, createHub, type Broker, type BrokerHost, type HubOptions, type Outbound } from '../../src/index';
import { FakeTransport, SEC, connect, hubOnFakeClock } from '../helpers/fake';

const setup = hubOnFakeClock;

describe('rooms and messages', () => {
  it('join notifies every member, then sends the joiner the user list', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    const b = await connect(hub);
    a.json({ type: 'join', room: 'lobby' });
    const [aJoin, aList] = a.take();
    const aId = (hub.clients()[0] as { userId: string }).userId;
    const aName = (hub.clients()[0] as { username: string }).username;
    expect(aJoin).toEqual({ type: 'join', room: 'lobby', user_id: aId, username: aName, timestamp: SEC });
    expect(aList).toEqual({ type: 'user_list', room: 'lobby', data: [aName], timestamp: SEC });

    b.json({ type: 'join', room: 'lobby' });
    const bClient = hub.clients()[1] as { userId: string; username: string };
    const bJoin = { type: 'join', room: 'lobby', user_id: bClient.userId, username: bClient.username, timestamp: SEC };
    expect(a.take()).toEqual([bJoin]);
    expect(b.take()).toEqual([bJoin, { type: 'user_list', room: 'lobby', data: [aName, bClient.username], timestamp: SEC }]);
  });

  it('stamps identity on messages and ignores client-supplied user_id, username and timestamp', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/lobby');
    const b = await connect(hub, '/ws/lobby');
    a.take();
    b.take();
    a.json({ type: 'message', room: 'lobby', content: 'hi', user_id: 'admin', username: 'root', timestamp: 1, data: { x: [1, 2] } });
    const [client] = hub.clients() as { userId: string; username: string }[];
    const expected = {
      type: 'message',
      room: 'lobby',
      content: 'hi',
      user_id: client!.userId,
      username: client!.username,
      timestamp: SEC,
      data: { x: [1, 2] },
    };
    expect(a.take()).toEqual([expected]);
    expect(b.take()).toEqual([expected]);
  });

  it('omits data exactly when the client did not send it', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    a.take();
    a.json({ type: 'message', room: 'r', content: 'plain' });
    const [m] = a.take();
    expect(Object.keys(m!).sort()).toEqual(['content', 'room', 'timestamp', 'type', 'user_id', 'username']);
  });

  it('carries __proto__ and constructor keys in data as plain data', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    a.take();
    a.text('{"type":"message","room":"r","content":"x","data":{"__proto__":{"polluted":true},"constructor":{"prototype":{"p":1}}}}');
    expect(a.texts[0]).toContain('"data":{"__proto__":{"polluted":true},"constructor":{"prototype":{"p":1}}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('leave notifies every member including the leaver, and the room empties', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    const b = await connect(hub, '/ws/r');
    a.take();
    b.take();
    a.json({ type: 'leave', room: 'r' });
    const [client] = hub.clients() as { userId: string; username: string }[];
    const notice = { type: 'leave', room: 'r', user_id: client!.userId, username: client!.username, timestamp: SEC };
    expect(a.take()).toEqual([notice]);
    expect(b.take()).toEqual([notice]);
    expect(hub.members('r')).toHaveLength(1);
    a.json({ type: 'message', room: 'r', content: 'x' });
    expect(a.take()).toEqual([
      { type: 'error', content: 'not a member of this room', data: { code: 'not_in_room' }, room: 'r', timestamp: SEC },
    ]);
  });

  it('a closed connection leaves all its rooms and the others are told', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r1');
    a.json({ type: 'join', room: 'r2' });
    const b = await connect(hub, '/ws/r1');
    b.json({ type: 'join', room: 'r2' });
    a.take();
    b.take();
    const aClient = hub.clients()[0] as { userId: string; username: string };
    a.listener.onClose(1000, '');
    expect(b.take()).toEqual([
      { type: 'leave', room: 'r1', user_id: aClient.userId, username: aClient.username, timestamp: SEC },
      { type: 'leave', room: 'r2', user_id: aClient.userId, username: aClient.username, timestamp: SEC },
    ]);
    expect(hub.size).toBe(1);
    expect(hub.members('r1').map((c) => c.id)).toEqual([hub.clients()[0]!.id]);
  });

  it('joining a room already joined only sends a fresh user list', async () => {
    const { hub } = setup({ maxRoomSize: 1, maxRoomsPerConnection: 1 });
    const a = await connect(hub, '/ws/r');
    a.take();
    a.json({ type: 'join', room: 'r' });
    const name = hub.clients()[0]!.username;
    expect(a.take()).toEqual([{ type: 'user_list', room: 'r', data: [name], timestamp: SEC }]);
  });

  it('user_list lists a user once however many connections it has', async () => {
    const identity = { userId: 'u1', username: 'alice' };
    const { hub } = setup({ authenticate: () => identity });
    const a = await connect(hub, '/ws/r');
    const b = await connect(hub, '/ws/r');
    b.take();
    b.json({ type: 'user_list', room: 'r' });
    expect(b.take()).toEqual([{ type: 'user_list', room: 'r', data: ['alice'], timestamp: SEC }]);
    expect(a.sent.filter((m) => m.type === 'join')).toHaveLength(2);
  });

  it('answers ping with pong and accepts pong silently', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    a.json({ type: 'ping' });
    a.json({ type: 'pong' });
    expect(a.take()).toEqual([{ type: 'pong', timestamp: SEC }]);
  });

  it('ignores unknown extra fields, a room on ping and pong included', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    a.take();
    a.json({ type: 'ping', room: 'not a room name', extra: [1] });
    a.json({ type: 'pong', room: 5 });
    a.json({ type: 'message', room: 'r', content: 'x', color: 'red' });
    expect(a.take().map((m) => m.type)).toEqual(['pong', 'message']);
  });

  it('keeps serving when an application listener throws, and reports it', async () => {
    const { hub } = setup();
    const errors: string[] = [];
    hub.on('error', (e) => errors.push(`${e.code}:${e.message}`));
    hub.on('message', () => {
      throw new Error('listener bug');
    });
    const a = await connect(hub, '/ws/r');
    const b = await connect(hub, '/ws/r');
    a.take();
    b.take();
    a.json({ type: 'message', room: 'r', content: 'x' });
    a.json({ type: 'ping' });
    expect(a.take().map((m) => m.type)).toEqual(['message', 'pong']);
    expect(b.take().map((m) => m.type)).toEqual(['message']);
    expect(a.closedWith).toBeUndefined();
    expect(errors).toEqual(["ERR_HOOK:a 'message' listener threw"]);
  });

  it('publishes server messages to a room', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/news');
    a.take();
    hub.publish('news', 'hello', { data: { n: 1 } });
    expect(a.take()).toEqual([
      { type: 'message', room: 'news', content: 'hello', user_id: 'server', username: 'server', timestamp: SEC, data: { n: 1 } },
    ]);
    expect(() => hub.publish('bad room', 'x')).toThrow(expect.objectContaining({ code: 'invalid_room' }));
  });

  it('serializes a broadcast once for all recipients', async () => {
    const { hub } = setup();
    const ts = await Promise.all([1, 2, 3].map(() => connect(hub, '/ws/r')));
    const seen: Outbound[] = [];
    for (const t of ts) {
      t.take();
      const send = t.send.bind(t);
      t.send = (m) => {
        seen.push(m);
        return send(m);
      };
    }
    ts[0]!.json({ type: 'message', room: 'r', content: 'once' });
    expect(seen).toHaveLength(3);
    expect(new Set(seen).size).toBe(1);
  });
});

describe('error frames (contract section 3 check order)', () => {
  const cases: [string, string | Buffer, string, string | undefined][] = [
    ['not JSON', 'nope', 'invalid_json', undefined],
    ['a JSON array', '[1,2]', 'invalid_json', undefined],
    ['a JSON string', '"join"', 'invalid_json', undefined],
    ['JSON null', 'null', 'invalid_json', undefined],
    ['no type', '{"room":"r"}', 'unsupported_type', 'r'],
    ['a numeric type', '{"type":1}', 'unsupported_type', undefined],
    ['an unknown type', '{"type":"shout","room":"r"}', 'unsupported_type', 'r'],
    ['type __proto__', '{"type":"__proto__"}', 'unsupported_type', undefined],
    ['type constructor', '{"type":"constructor"}', 'unsupported_type', undefined],
    ['the server-only type error', '{"type":"error","content":"x"}', 'unsupported_type', undefined],
    ['join without room', '{"type":"join"}', 'invalid_message', undefined],
    ['join with a numeric room', '{"type":"join","room":5}', 'invalid_message', undefined],
    ['message without content', '{"type":"message","room":"r"}', 'invalid_message', 'r'],
    ['message with numeric content', '{"type":"message","room":"r","content":3}', 'invalid_message', 'r'],
    ['message with null data', '{"type":"message","room":"r","content":"x","data":null}', 'invalid_message', 'r'],
    ['message with array data', '{"type":"message","room":"r","content":"x","data":[1]}', 'invalid_message', 'r'],
    ['message with string data', '{"type":"message","room":"r","content":"x","data":"s"}', 'invalid_message', 'r'],
    ['auth without data', '{"type":"auth"}', 'invalid_message', undefined],
    ['auth with numeric token', '{"type":"auth","data":{"token":1}}', 'invalid_message', undefined],
    ['an invalid field before an invalid room', '{"type":"message","room":"a b","content":1}', 'invalid_message', 'a b'],
    ['an empty room', '{"type":"join","room":""}', 'invalid_room', ''],
    ['a room with a space', '{"type":"join","room":"a b"}', 'invalid_room', 'a b'],
    ['a 65-character room', `{"type":"join","room":"${'x'.repeat(65)}"}`, 'invalid_room', 'x'.repeat(65)],
    ['path traversal', '{"type":"join","room":"../etc"}', 'invalid_room', '../etc'],
    ['a unicode room', '{"type":"join","room":"caf\u00e9"}', 'invalid_room', 'caf\u00e9'],
    ['leave of a room not joined', '{"type":"leave","room":"r"}', 'not_in_room', 'r'],
    ['user_list of a room not joined', '{"type":"user_list","room":"r"}', 'not_in_room', 'r'],
    ['message to a room not joined', '{"type":"message","room":"r","content":"x"}', 'not_in_room', 'r'],
  ];

  it.each(cases)('answers %s with its code and changes nothing', async (_name, frame, code, room) => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/home');
    a.take();
    const before = JSON.stringify(hub.roomNames().map((r) => [r, hub.members(r).length]));
    a.text(frame as string);
    const expected: Record<string, unknown> = { type: 'error', content: expect.any(String), data: { code }, timestamp: SEC };
    if (room !== undefined) expected.room = room;
    expect(a.take()).toEqual([expected]);
    expect(JSON.stringify(hub.roomNames().map((r) => [r, hub.members(r).length]))).toBe(before);
    expect(hub.clients()[0]!.rooms).toEqual(['home']);
    // still served
    a.json({ type: 'ping' });
    expect(a.take()).toEqual([{ type: 'pong', timestamp: SEC }]);
  });

  it('answers a binary frame with invalid_message', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    a.listener.onMessage('', true, 3);
    expect(a.take()).toEqual([{ type: 'error', content: expect.any(String), data: { code: 'invalid_message' }, timestamp: SEC }]);
  });

  it('error frames carry data.code only and valid JSON text for every code', async () => {
    const { WIRE_ERRORS } = await import('../../src/index');
    const { encodeError } = await import('../../src/core/protocol');
    for (const code of Object.keys(WIRE_ERRORS) as (keyof typeof WIRE_ERRORS)[]) {
      expect(JSON.parse(encodeError(code, 'r"', 7))).toEqual({
        type: 'error',
        content: WIRE_ERRORS[code],
        data: { code },
        room: 'r"',
        timestamp: 7,
      });
    }
  });

  it('closes with 1009 and a reason naming the limit a message larger than maxMessageSize, before the rate counts it', async () => {
    const { hub } = setup({ maxMessageSize: 16, messageRate: '1/h,1' });
    const a = await connect(hub);
    a.json({ type: 'ping' }); // the one token
    a.text(JSON.stringify({ type: 'ping', pad: 'x'.repeat(20) }));
    expect(a.closedWith).toEqual({ code: 1009, reason: 'message too large: max 16 bytes' });
  });

  it('emits error events with the wire code', async () => {
    const { hub } = setup();
    const seen: string[] = [];
    hub.on('error', (err, client) => seen.push(`${err.code}:${client?.id === hub.clients()[0]?.id}`));
    const a = await connect(hub);
    a.text('{');
    expect(seen).toEqual(['invalid_json:true']);
  });
});

describe('limits', () => {
  it('refuses joins past maxRoomsPerConnection with too_many_rooms, path room included', async () => {
    const { hub } = setup({ maxRoomsPerConnection: 2 });
    const a = await connect(hub, '/ws/one');
    a.json({ type: 'join', room: 'two' });
    a.take();
    a.json({ type: 'join', room: 'three' });
    expect(a.take()).toEqual([{ type: 'error', content: expect.any(String), data: { code: 'too_many_rooms' }, room: 'three', timestamp: SEC }]);
    expect(hub.clients()[0]!.rooms).toEqual(['one', 'two']);
  });

  it('refuses joins of a full room with room_full, on the path join too', async () => {
    const { hub } = setup({ maxRoomSize: 2 });
    await connect(hub, '/ws/r');
    await connect(hub, '/ws/r');
    const c = await connect(hub, '/ws/r');
    expect(c.take()).toEqual([{ type: 'error', content: expect.any(String), data: { code: 'room_full' }, room: 'r', timestamp: SEC }]);
    expect(c.closedWith).toBeUndefined();
    expect(hub.members('r')).toHaveLength(2);
  });

  it('checks too_many_rooms before room_full', async () => {
    const { hub } = setup({ maxRoomSize: 1, maxRoomsPerConnection: 1 });
    await connect(hub, '/ws/full');
    const b = await connect(hub, '/ws/mine');
    b.take();
    b.json({ type: 'join', room: 'full' });
    expect(b.take()[0]!.data).toEqual({ code: 'too_many_rooms' });
  });

  it('refuses upgrades past maxConnections with 503, counting handshakes in progress', async () => {
    const { hub } = setup({ maxConnections: 2 });
    await connect(hub);
    const pending = await adapterHandle(hub).admit({ url: '/ws', headers: {}, remoteAddress: '10.0.0.2' });
    expect(pending.accepted).toBe(true);
    const third = await adapterHandle(hub).admit({ url: '/ws', headers: {}, remoteAddress: '10.0.0.3' });
    expect(third).toMatchObject({ accepted: false, status: 503, reason: 'capacity' });
    if (pending.accepted) pending.ticket.cancel();
    const fourth = await adapterHandle(hub).admit({ url: '/ws', headers: {}, remoteAddress: '10.0.0.4' });
    expect(fourth.accepted).toBe(true);
  });
});

describe('message rate limit', () => {
  it('drops frames over the rate with rate_limited and closes 1008 after burst drops in a row', async () => {
    const { hub, clock } = setup({ messageRate: '2/s,3' });
    const a = await connect(hub);
    for (let i = 0; i < 3; i++) a.json({ type: 'ping' });
    expect(a.take().map((m) => m.type)).toEqual(['pong', 'pong', 'pong']);
    a.json({ type: 'ping' });
    a.json({ type: 'ping' });
    expect(a.take()).toEqual([
      { type: 'error', content: expect.any(String), data: { code: 'rate_limited' }, timestamp: SEC },
      { type: 'error', content: expect.any(String), data: { code: 'rate_limited' }, timestamp: SEC },
    ]);
    clock.advance(500); // one token back
    a.json({ type: 'ping' });
    expect(a.take().map((m) => m.type)).toEqual(['pong']);
    expect(a.closedWith).toBeUndefined();
    for (let i = 0; i < 3; i++) a.json({ type: 'ping' });
    expect(a.take().map((m) => (m.data as { code: string } | undefined)?.code)).toEqual(['rate_limited', 'rate_limited', 'rate_limited']);
    expect(a.closedWith).toEqual({ code: 1008, reason: 'rate limit exceeded' });
  });

  it('drops a frame over the rate unread: its error names no room, even one the frame names', async () => {
    const { hub } = setup({ messageRate: '1/m,1' });
    const a = await connect(hub);
    a.json({ type: 'ping' });
    a.json({ type: 'message', room: 'r', content: 'x' });
    expect(a.take()).toEqual([
      { type: 'pong', timestamp: SEC },
      { type: 'error', content: 'too many messages: this one was dropped', data: { code: 'rate_limited' }, timestamp: SEC },
    ]);
  });

  it('counts protocol pings toward the rate: one over it gets no pong and no error, and counts as a drop', async () => {
    const { hub, clock } = setup({ messageRate: '2/s,3' });
    const a = await connect(hub);
    const ping = (n: number) => a.listener.onPing(Uint8Array.of(n));
    ping(1);
    ping(2);
    a.json({ type: 'ping' });
    ping(3); // over the rate: dropped silently
    expect(a.pongs).toEqual([Uint8Array.of(1), Uint8Array.of(2)]);
    expect(a.take()).toEqual([{ type: 'pong', timestamp: SEC }]);
    clock.advance(500); // one token back
    ping(4);
    expect(a.pongs).toEqual([Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(4)]);
    // Three drops in a row (pings and frames alike) close with 1008; the pong before ended the last run.
    ping(5);
    a.json({ type: 'ping' });
    expect(a.closedWith).toBeUndefined();
    ping(6);
    expect(a.closedWith).toEqual({ code: 1008, reason: 'rate limit exceeded' });
    expect(a.pongs).toHaveLength(3);
    expect(a.take()).toEqual([{ type: 'error', content: 'too many messages: this one was dropped', data: { code: 'rate_limited' }, timestamp: SEC }]);
  });

  it('stops reading a peer closed for flooding, and drops it 1 s later if it never answers the close', async () => {
    const { hub, clock } = setup({ messageRate: '1/m,2' });
    const a = await connect(hub);
    a.autoClose = false;
    const closes: [number, string][] = [];
    hub.on('disconnect', (_c, code, reason) => closes.push([code, reason]));
    for (let i = 0; i < 4; i++) a.listener.onPing(Uint8Array.of(i));
    expect(a.closedWith).toEqual({ code: 1008, reason: 'rate limit exceeded' });
    expect(a.paused).toBe(true);
    clock.advance(999);
    expect(a.terminated).toBe(false);
    clock.advance(1);
    expect(a.terminated).toBe(true);
    expect(closes).toEqual([[1008, 'rate limit exceeded']]);
    expect(hub.size).toBe(0);
  });

  it('gives any other closing handshake 5 s', async () => {
    const { hub, clock } = setup();
    const a = await connect(hub);
    a.autoClose = false;
    hub.clients()[0]!.close(4000, 'bye');
    expect(a.paused).toBe(false);
    clock.advance(4_999);
    expect(a.terminated).toBe(false);
    clock.advance(1);
    expect(a.terminated).toBe(true);
    expect(hub.size).toBe(0);
  });

  it('counts invalid and binary frames too', async () => {
    const { hub } = setup({ messageRate: '1/m,2' });
    const a = await connect(hub);
    a.text('garbage');
    a.listener.onMessage('', true, 1);
    a.json({ type: 'ping' });
    expect(a.take().map((m) => (m.data as { code: string }).code)).toEqual(['invalid_json', 'invalid_message', 'rate_limited']);
  });
});

describe('connection rate limit and admission order', () => {
  it('answers 429 with Retry-After in whole seconds after the burst, per address', async () => {
    const { hub, clock } = setup({ connectRate: '60/m,2' });
    const req = { url: '/ws', headers: {}, remoteAddress: '10.1.1.1' };
    expect((await adapterHandle(hub).admit(req)).accepted).toBe(true);
    expect((await adapterHandle(hub).admit(req)).accepted).toBe(true);
    expect(await adapterHandle(hub).admit(req)).toEqual({ accepted: false, status: 429, headers: { 'Retry-After': '1' }, reason: 'rate_limited' });
    expect((await adapterHandle(hub).admit({ ...req, remoteAddress: '10.1.1.2' })).accepted).toBe(true);
    clock.advance(1000);
    expect((await adapterHandle(hub).admit(req)).accepted).toBe(true);
  });

  it('counts refused attempts (404) and uses X-Forwarded-For only when trusted', async () => {
    const { hub } = setup({ connectRate: '1/h,1', trustProxy: true });
    // One trusted proxy: the right-most entry is the client; what the client wrote to its left changes nothing.
    const xff = (ip: string) => ({ 'x-forwarded-for': `10.9.9.9, ${ip}` });
    expect(await adapterHandle(hub).admit({ url: '/ws/a/b', headers: xff('1.1.1.1'), remoteAddress: '10.0.0.1' })).toMatchObject({ status: 404 });
    expect(await adapterHandle(hub).admit({ url: '/ws', headers: xff('1.1.1.1'), remoteAddress: '10.0.0.1' })).toMatchObject({ status: 429, headers: { 'Retry-After': '3600' } });
    expect(await adapterHandle(hub).admit({ url: '/ws', headers: { 'x-forwarded-for': '6.6.6.6, 1.1.1.1' }, remoteAddress: '10.0.0.1' })).toMatchObject({ status: 429 });
    expect((await adapterHandle(hub).admit({ url: '/ws', headers: xff('2.2.2.2'), remoteAddress: '10.0.0.1' })).accepted).toBe(true);

    const untrusted = setup({ connectRate: '1/h,1' }).hub;
    expect((await adapterHandle(untrusted).admit({ url: '/ws', headers: xff('3.3.3.3'), remoteAddress: '10.0.0.1' })).accepted).toBe(true);
    expect(await adapterHandle(untrusted).admit({ url: '/ws', headers: xff('4.4.4.4'), remoteAddress: '10.0.0.1' })).toMatchObject({ status: 429 });
  });

  it('applies the refusal order 404, 503, 403, 429, 503, 401', async () => {
    const { hub } = setup({ enabled: false, allowedOrigins: 'https://ok.example', connectRate: '1/h,1', jwt: { secret: 's' } });
    const bad = { url: '/ws/auth', headers: { origin: 'https://evil.example' }, remoteAddress: '1.2.3.4' };
    expect(await adapterHandle(hub).admit({ ...bad, url: '/ws/x/y/z' })).toMatchObject({ status: 404 });
    expect(await adapterHandle(hub).admit(bad)).toMatchObject({ status: 503, reason: 'disabled' });

    const h2 = setup({ allowedOrigins: 'https://ok.example', connectRate: '1/h,1', maxConnections: 1, jwt: { secret: 's' } }).hub;
    expect(await adapterHandle(h2).admit(bad)).toMatchObject({ status: 403 });
    expect(await adapterHandle(h2).admit({ ...bad, headers: {} })).toMatchObject({ status: 429 });
    const other = { url: '/ws/auth', headers: {}, remoteAddress: '5.6.7.8' };
    expect(await adapterHandle(h2).admit(other)).toMatchObject({ status: 401, headers: { 'WWW-Authenticate': 'Bearer' } });
    await connect(h2, '/ws', {}, '9.9.9.9');
    expect(await adapterHandle(h2).admit({ ...other, remoteAddress: '5.6.7.9' })).toMatchObject({ status: 503, reason: 'capacity' });
  });
});

describe('heartbeat', () => {
  const timing = { pingPeriod: '10s', pongWait: '15s', heartbeatInterval: '1s', connectionTimeout: '30s' };

  it('pings every pingPeriod and terminates when a ping goes unanswered for pongWait', async () => {
    const { hub, clock } = setup(timing);
    const a = await connect(hub);
    clock.advance(9_000);
    expect(a.pings).toBe(0);
    clock.advance(1_000);
    expect(a.pings).toBe(1);
    a.json({ type: 'ping' }); // data frames do not answer a protocol ping
    clock.advance(14_000);
    expect(a.terminated).toBe(false);
    clock.advance(1_000);
    expect(a.terminated).toBe(true);
    expect(hub.size).toBe(0);
    expect(hub.stats().terminations.pong_timeout).toBe(1);
  });

  it('keeps a peer that answers pings, forever', async () => {
    const { hub, clock } = setup(timing);
    const a = await connect(hub);
    for (let s = 0; s < 300; s++) {
      clock.advance(1_000);
      if (a.pings > 0) {
        a.pings = 0;
        a.listener.onPong();
      }
    }
    expect(a.terminated).toBe(false);
    expect(hub.size).toBe(1);
  });

  it('keeps a live idle peer even when the ping period exceeds the idle timeout', async () => {
    const { hub, clock } = setup({ pingPeriod: '54s', pongWait: '60s', heartbeatInterval: '30s', connectionTimeout: '20s' });
    const a = await connect(hub);
    for (let s = 0; s < 600; s++) {
      clock.advance(1_000);
      if (a.pings > 0) {
        a.pings = 0;
        a.listener.onPong();
      }
    }
    expect(a.terminated).toBe(false);
  });

  it('terminates a connection with no inbound traffic for connectionTimeout', async () => {
    const { hub, clock } = setup({ pingPeriod: '50s', pongWait: '60s', heartbeatInterval: '1s', connectionTimeout: '5s' });
    const a = await connect(hub);
    clock.advance(4_000);
    expect(a.terminated).toBe(false);
    clock.advance(1_000);
    expect(a.terminated).toBe(true);
    expect(hub.stats().terminations.idle_timeout).toBe(1);
  });

  it('gives the keep-alive ping a second to be answered before the idle deadline ends a connection', async () => {
    // Sweep every 500 ms (a quarter of the 2 s idle timeout); the ping goes out at 1.5 s of silence.
    const { hub, clock } = setup({ pingPeriod: '20s', pongWait: '30s', heartbeatInterval: '1s', connectionTimeout: '2s' });
    const a = await connect(hub);
    let answered = 0;
    for (let t = 0; t < 20_000; t += 100) {
      clock.advance(100);
      if (a.pings > 0 && clock.now() % 1000 === 200) {
        // answered 700 ms after the ping, past the next sweep (and the deadline)
        a.pings = 0;
        a.listener.onPong();
        answered++;
      }
    }
    expect(a.terminated).toBe(false);
    expect(answered).toBeGreaterThanOrEqual(8);
  });

  it('ends a silent connection once its keep-alive ping has gone unanswered for a second, within timeout + interval + 1 s', async () => {
    const { hub, clock } = setup({ pingPeriod: '20s', pongWait: '30s', heartbeatInterval: '1s', connectionTimeout: '2s' });
    const a = await connect(hub);
    clock.advance(1_500);
    expect(a.pings).toBe(1);
    clock.advance(1_000); // 2.5 s silent, the ping 1 s old
    expect(a.terminated).toBe(true);
    expect(hub.stats().terminations.idle_timeout).toBe(1);
  });

  it('pings instead of ending a connection found past its idle deadline with no ping out (a sweep that ran late)', async () => {
    const { checkLiveness } = await import('../../src/core/heartbeat');
    const { configFromEnv } = await import('../../src/index');
    const config = configFromEnv({ WEBSOCKET_CONNECTION_TIMEOUT: '2s', WEBSOCKET_PING_PERIOD: '20s', WEBSOCKET_PONG_WAIT: '30s', WEBSOCKET_HEARTBEAT_INTERVAL: '1s' });
    const ended: string[] = [];
    // Last heard 2.01 s ago; its last keep-alive ping was answered (none outstanding).
    const c = { lastSeen: 0, lastPing: 0, pingSentAt: 0, slowSince: 0, expiresAt: 0, bufferedAmount: 0, sendPing: (now: number) => ((c.lastPing = now), (c.pingSentAt = now)), terminate: (r: string) => ended.push(r), close: () => ended.push('close') };
    expect(checkLiveness(c, 2010, config, 500)).toBe(false);
    expect(c.pingSentAt).toBe(2010);
    expect(ended).toEqual([]);
    // Unanswered for the grace: now it ends.
    expect(checkLiveness(c, 3010, config, 500)).toBe(true);
    expect(ended).toEqual(['idle_timeout']);
  });

  it('terminates a reader whose buffer stays above writeBufferSize for writeWait', async () => {
    const { hub, clock } = setup({ ...timing, writeBufferSize: 100, writeWait: '3s' });
    const slow = await connect(hub, '/ws/r');
    const fast = await connect(hub, '/ws/r');
    slow.bufferedAmount = 500;
    fast.json({ type: 'message', room: 'r', content: 'x' });
    for (let s = 0; s < 2; s++) {
      clock.advance(1_000);
      slow.listener.onPong();
      fast.listener.onPong();
    }
    expect(slow.terminated).toBe(false);
    clock.advance(1_000);
    expect(slow.terminated).toBe(true);
    expect(fast.terminated).toBe(false);
    expect(hub.stats().terminations.slow_consumer).toBe(1);
  });

  it('terminates at once a reader whose buffered bytes exceed maxBuffered, after the broadcast that crossed it', async () => {
    const { hub, clock } = setup({ ...timing, writeBufferSize: 100, writeWait: '1h', maxBuffered: 1000 });
    const first = await connect(hub, '/ws/r');
    const stuck = await connect(hub, '/ws/r');
    const last = await connect(hub, '/ws/r');
    first.take();
    stuck.take();
    last.take();
    stuck.bufferedAmount = 1001;
    first.json({ type: 'message', room: 'r', content: 'over' });
    // The member after it in the room got the message before the stuck one's leave.
    expect(stuck.terminated).toBe(false);
    await Promise.resolve();
    expect(stuck.terminated).toBe(true);
    expect(last.take().map((f) => [f.type, f.content ?? f.user_id])).toEqual([
      ['message', 'over'],
      ['leave', expect.any(String)],
    ]);
    expect(hub.stats().terminations.slow_consumer).toBe(1);
    // The sweep applies the ceiling too, whatever writeWait says.
    const other = await connect(hub, '/ws/r');
    other.bufferedAmount = 5000;
    clock.advance(1_000);
    expect(other.terminated).toBe(true);
    expect(hub.stats().terminations.slow_consumer).toBe(2);
  });

  it('forgives a reader whose buffer drains in time', async () => {
    const { hub, clock } = setup({ ...timing, writeBufferSize: 100, writeWait: '3s' });
    const a = await connect(hub);
    a.bufferedAmount = 500;
    a.json({ type: 'ping' });
    clock.advance(2_000);
    a.bufferedAmount = 0;
    clock.advance(5_000);
    expect(a.terminated).toBe(false);
  });

  it('uses one timer for the whole hub and clears it on close', async () => {
    const { hub, clock } = setup(timing);
    for (let i = 0; i < 50; i++) await connect(hub, '/ws', {}, `10.0.${i}.1`);
    expect(clock.activeTimers).toBe(1);
    await hub.close();
    expect(clock.activeTimers).toBe(0);
  });
});

describe('identity and token refresh', () => {
  const identityOf = (token: string) => {
    const [sub, exp] = token.split(':');
    return { userId: sub!, username: `${sub}-name`, expiresAt: exp ? Number(exp) : undefined };
  };
  const auth: HubOptions['authenticate'] = async ({ token }) => {
    if (token === undefined) return null;
    if (token.startsWith('bad')) throw new Error('bad token');
    return identityOf(token);
  };

  it('closes with 1008 token expired when exp passes, unless refreshed', async () => {
    const { hub, clock } = setup({ authenticate: auth, heartbeatInterval: '1s', pingPeriod: '50s', pongWait: '60s', connectionTimeout: '120s' });
    const a = await connect(hub, `/ws/auth?token=alice:${SEC + 10}`);
    clock.advance(5_000);
    a.json({ type: 'auth', data: { token: `alice:${SEC + 60}` } });
    await vi.waitFor(() => expect(a.sent.at(-1)).toEqual({ type: 'auth', data: { exp: SEC + 60 }, timestamp: SEC + 5 }));
    clock.advance(20_000);
    expect(a.closedWith).toBeUndefined();
    clock.advance(36_000);
    expect(a.closedWith).toEqual({ code: 1008, reason: 'token expired' });
  });

  it('keeps the old token on unauthorized and forbidden refreshes', async () => {
    const { hub } = setup({ authenticate: auth });
    const a = await connect(hub, `/ws/auth?token=alice:${SEC + 100}`);
    a.json({ type: 'auth', data: { token: 'bad' } });
    await vi.waitFor(() => expect(a.sent).toHaveLength(1));
    a.json({ type: 'auth', data: { token: `mallory:${SEC + 999}` } });
    await vi.waitFor(() => expect(a.sent).toHaveLength(2));
    expect(a.take().map((m) => (m.data as { code: string }).code)).toEqual(['unauthorized', 'forbidden']);
    expect(hub.clients()[0]).toMatchObject({ userId: 'alice', username: 'alice-name' });
  });

  it('answers forbidden to auth on an anonymous connection, echoing a named room', async () => {
    const { hub } = setup({ authenticate: auth });
    const a = await connect(hub);
    a.json({ type: 'auth', data: { token: 'alice' } });
    a.json({ type: 'auth', data: { token: 'alice' }, room: 'r' });
    expect(a.take()).toEqual([
      { type: 'error', content: expect.any(String), data: { code: 'forbidden' }, timestamp: SEC },
      { type: 'error', content: expect.any(String), data: { code: 'forbidden' }, room: 'r', timestamp: SEC },
    ]);
  });

  it('gives anonymous connections unique unguessable ids and a username', async () => {
    const { hub } = setup();
    await connect(hub);
    await connect(hub);
    const [a, b] = hub.clients();
    expect(a!.userId).toMatch(/^[0-9a-f-]{36}$/);
    expect(a!.userId).not.toBe(b!.userId);
    expect(a!.username).toBe(`guest-${a!.userId.slice(0, 8)}`);
    expect(a!.anonymous).toBe(true);
  });
});

describe('authorization hooks', () => {
  it('refuses a join with forbidden and changes nothing (sync and async hooks)', async () => {
    for (const canJoin of [(_c: unknown, room: string) => !room.startsWith('private:'), async (_c: unknown, room: string) => !room.startsWith('private:')]) {
      const { hub } = setup({ canJoin });
      const a = await connect(hub);
      a.json({ type: 'join', room: 'private:x' });
      await vi.waitFor(() => expect(a.sent).toHaveLength(1));
      expect(a.take()).toEqual([{ type: 'error', content: expect.any(String), data: { code: 'forbidden' }, room: 'private:x', timestamp: SEC }]);
      expect(hub.roomNames()).toEqual([]);
      a.json({ type: 'join', room: 'public' });
      await vi.waitFor(() => expect(a.sent).toHaveLength(2));
    }
  });

  it('refuses a message with forbidden and delivers nothing', async () => {
    const { hub } = setup({ canPublish: (_c, _r, m) => !m.content.includes('spam') });
    const a = await connect(hub, '/ws/r');
    const b = await connect(hub, '/ws/r');
    a.take();
    b.take();
    a.json({ type: 'message', room: 'r', content: 'buy spam' });
    expect(a.take()[0]!.data).toEqual({ code: 'forbidden' });
    expect(b.take()).toEqual([]);
  });

  it('treats a throwing hook as a refusal and reports it', async () => {
    const errors: string[] = [];
    const { hub } = setup({
      canJoin: () => {
        throw new Error('db down');
      },
    });
    hub.on('error', (e) => errors.push(e.code));
    const a = await connect(hub);
    a.json({ type: 'join', room: 'r' });
    expect(a.take()[0]!.data).toEqual({ code: 'forbidden' });
    expect(errors).toEqual(['ERR_HOOK', 'forbidden']);
  });

  it('processes frames in order behind an async hook', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { hub } = setup({ canJoin: async () => (await gate, true) });
    const a = await connect(hub);
    a.json({ type: 'join', room: 'r' });
    a.json({ type: 'message', room: 'r', content: 'after join' });
    a.json({ type: 'ping' });
    expect(a.sent).toEqual([]);
    release();
    await vi.waitFor(() => expect(a.sent).toHaveLength(4));
    expect(a.sent.map((m) => m.type)).toEqual(['join', 'user_list', 'message', 'pong']);
  });
});

describe('readBufferSize backpressure', () => {
  it('pauses reading while queued bytes exceed readBufferSize and resumes when drained', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let host!: BrokerHost;
    const slowBroker: Broker = {
      start: (h) => void (host = h),
      publish: (room, m) => host.deliver(room, m),
      join() {},
      leave() {},
      users: async (room) => (await gate, host.localUsers(room)),
      close() {},
    };
    const { hub } = setup({ broker: slowBroker, readBufferSize: 100 });
    const a = await connect(hub);
    a.json({ type: 'join', room: 'r' }); // user_list waits on the broker
    const frame = JSON.stringify({ type: 'message', room: 'r', content: 'x'.repeat(20) });
    expect(frame.length).toBe(62);
    a.text(frame);
    expect(a.paused).toBe(false);
    a.text(frame); // 2 × 62 bytes queued > 100
    expect(a.paused).toBe(true);
    a.text(frame);
    release();
    await vi.waitFor(() => expect(a.paused).toBe(false));
    expect(a.sent.map((m) => m.type)).toEqual(['join', 'user_list', 'message', 'message', 'message']);
  });
});

describe('close', () => {
  it('sends 1001 to every client and resolves when they are gone', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    const b = await connect(hub);
    await hub.close();
    expect(a.closedWith).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(b.closedWith).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(hub.size).toBe(0);
    expect(await adapterHandle(hub).admit({ url: '/ws', headers: {} })).toMatchObject({ status: 503, reason: 'shutting_down' });
  });

  it('terminates clients that do not finish the closing handshake in time', async () => {
    const { hub, clock } = setup();
    const a = await connect(hub);
    a.autoClose = false;
    const closed = hub.close({ timeout: 2000 });
    clock.advance(2000);
    await closed;
    expect(a.terminated).toBe(true);
    expect(hub.size).toBe(0);
  });
});

describe('events', () => {
  it('emits connection, join, message, leave and disconnect in order', async () => {
    const { hub } = setup();
    const events: string[] = [];
    hub.on('connection', (c) => events.push(`connection:${c.anonymous}`));
    hub.on('join', (_c, room) => events.push(`join:${room}`));
    hub.on('message', (_c, room, m) => events.push(`message:${room}:${m.content}`));
    hub.on('leave', (_c, room) => events.push(`leave:${room}`));
    hub.on('disconnect', (_c, code) => events.push(`disconnect:${code}`));
    const a = await connect(hub, '/ws/r');
    a.json({ type: 'message', room: 'r', content: 'hi' });
    a.listener.onClose(1000, 'bye');
    expect(events).toEqual(['connection:true', 'join:r', 'message:r:hi', 'leave:r', 'disconnect:1000']);
  });
});

describe('stats', () => {
  it('counts what happened', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    const b = await connect(hub, '/ws/r');
    a.json({ type: 'message', room: 'r', content: 'hi' });
    a.text('nope');
    b.listener.onClose(1000, '');
    await adapterHandle(hub).admit({ url: '/ws/a/b', headers: {} });
    const s = hub.stats();
    expect(s).toMatchObject({
      connections: 1,
      connectionsAccepted: 2,
      connectionsClosed: 1,
      framesIn: 2,
      deliveries: 1 /* a's join */ + 2 /* b's join */ + 2 /* message */ + 1 /* b's leave, to a */,
      rooms: 1,
      roomSizes: [[1, 1]],
    });
    expect(s.messagesIn).toMatchObject({ message: 1, invalid: 1, join: 0 });
    expect(s.errors.invalid_json).toBe(1);
    expect(s.rejected.not_found).toBe(1);
  });
});

void FakeTransport;

describe('rawMember', async () => {
  const { rawMember } = await import('../../src/core/protocol');
  it.each([
    ['{"type":"message","data":{"a":[1,{"b":"}"}]},"x":1}', 'data', '{"a":[1,{"b":"}"}]}'],
    ['{ "data" : { "k" : "v\\"}" } }', 'data', '{ "k" : "v\\"}" }'],
    ['{"data":1,"data":{"last":true}}', 'data', '{"last":true}'],
    ['{"a":"data","b":[{"data":1}]}', 'data', undefined],
    ['{"x":null,"data":[]}', 'data', '[]'],
    ['{"data":12.5e3 }', 'data', '12.5e3'],
    ['{"a":"x\\\\","data":"y\\\\\\"z"}', 'data', '"y\\\\\\"z"'],
    ['{"d\\u0061ta":{"escaped key":1}}', 'data', '{"escaped key":1}'],
    ['{"data":{"s":"\\\\"},"z":"}"}', 'data', '{"s":"\\\\"}'],
  ])('%s', (text, key, expected) => {
    expect(rawMember(text, key)).toBe(expected);
  });

  it('returns the text of the member JSON.parse sees, for arbitrary JSON objects', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.oneof(fc.constant('data'), fc.string()), fc.jsonValue()), fc.jsonValue(), fc.boolean(), (rest, data, spaced) => {
        const obj = { ...rest, data };
        const text = JSON.stringify(obj, null, spaced ? 1 : undefined);
        const raw = rawMember(text, 'data');
        expect(raw === undefined ? undefined : JSON.parse(raw)).toEqual(JSON.parse(text).data);
      }),
      { numRuns: 500 },
    );
  });

  it('forwards data too deep for JSON.stringify exactly as sent', async () => {
    const { hub } = setup({ maxMessageSize: 1_000_000 });
    const a = await connect(hub, '/ws/r');
    a.take();
    const deep = `${'{"d":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    a.text(`{"type":"message","room":"r","content":"deep","data":${deep}}`);
    expect(a.texts).toHaveLength(1);
    expect(a.texts[0]!.endsWith(`,"data":${deep}}`)).toBe(true);
  });
});

describe('robustness (review findings)', () => {
  it('still sends the error frame when an error listener throws', async () => {
    const { hub } = setup();
    hub.on('error', () => {
      throw new Error('listener boom');
    });
    const a = await connect(hub);
    expect(() => a.text('{')).not.toThrow();
    expect(a.take()).toEqual([{ type: 'error', content: expect.any(String), data: { code: 'invalid_json' }, timestamp: SEC }]);
  });

  it('refuses a close code or reason that cannot be sent, and keeps the connection usable', async () => {
    const { hub } = setup();
    const a = await connect(hub, '/ws/r');
    a.take();
    const client = hub.clients()[0]!;
    expect(() => client.close(1006, 'x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => client.close(1000, 'x'.repeat(124))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => hub.close({ code: 999 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(hub.closing).toBe(false);
    a.json({ type: 'ping' });
    expect(a.take()).toEqual([{ type: 'pong', timestamp: SEC }]);
    client.close(4000, 'bye');
    expect(a.closedWith).toEqual({ code: 4000, reason: 'bye' });
    expect(hub.size).toBe(0);
  });

  it('turns a thenable from authenticate into a native promise', async () => {
    const thenable = { then: (resolve: (v: unknown) => void) => resolve({ userId: 'u', username: 'U' }) };
    const { hub } = setup({ authenticate: () => thenable as unknown as Promise<null> });
    const admission = adapterHandle(hub).admit({ url: '/ws', headers: {} });
    expect(admission).toBeInstanceOf(Promise);
    expect(await admission).toMatchObject({ accepted: true, ticket: { identity: { userId: 'u' } } });
  });

  it('does not join the path room for a connection a listener already closed', async () => {
    const { hub } = setup();
    const watcher = await connect(hub, '/ws/r');
    watcher.take();
    hub.on('connection', (client) => client.close(4001, 'not today'));
    const b = await connect(hub, '/ws/r');
    expect(b.closedWith).toEqual({ code: 4001, reason: 'not today' });
    expect(watcher.take()).toEqual([]);
    expect(hub.members('r')).toHaveLength(1);
  });

  it('checks publish arguments', () => {
    const { hub } = setup();
    expect(() => hub.publish('r', undefined as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => hub.publish('r', 'x', { data: [] as unknown as Record<string, unknown> })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });
});

describe('request ids and replies (contract section 8)', () => {
  const ERR = (code: string, extra: Record<string, unknown> = {}) => ({ type: 'error', content: expect.any(String), data: { code }, ...extra, timestamp: SEC });

  it('answers join, leave and message with an ack carrying the id, after every other frame for the sender', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    const b = await connect(hub, '/ws/r');
    b.take();
    a.json({ type: 'join', room: 'r', id: 'j-1' });
    expect(a.take().map((f) => [f.type, f.id])).toEqual([
      ['join', undefined],
      ['user_list', undefined],
      ['ack', 'j-1'],
    ]);
    // Others never see the sender's id.
    expect(b.take()).toEqual([expect.not.objectContaining({ id: expect.anything() })]);
    a.json({ type: 'message', room: 'r', content: 'hi', id: 7 });
    const [copy, ack] = a.take();
    expect(copy).toMatchObject({ type: 'message', content: 'hi' });
    expect(copy).not.toHaveProperty('id');
    expect(ack).toEqual({ type: 'ack', id: 7, room: 'r', timestamp: SEC });
    expect(b.take()).toEqual([expect.objectContaining({ type: 'message', content: 'hi' })]);
    a.json({ type: 'leave', room: 'r', id: 0 });
    expect(a.take()).toEqual([expect.objectContaining({ type: 'leave', room: 'r' }), { type: 'ack', id: 0, room: 'r', timestamp: SEC }]);
    // A join of a room already joined: the fresh user_list, then the ack.
    b.json({ type: 'join', room: 'r', id: 'again' });
    expect(b.take().map((f) => [f.type, f.id])).toEqual([
      ['leave', undefined], // a's, from before
      ['user_list', undefined],
      ['ack', 'again'],
    ]);
  });

  it('puts the id on the reply frame itself for user_list, ping and auth; a pong with an id gets nothing', async () => {
    const { hub } = setup({ authenticate: ({ token }) => (token === undefined ? null : { userId: 'u', username: 'U', expiresAt: token === 'later' ? SEC + 600 : undefined }) });
    const a = await connect(hub, '/ws/r?token=now');
    a.take();
    a.json({ type: 'user_list', room: 'r', id: 'l' });
    a.json({ type: 'ping', id: 2 ** 53 - 1 });
    a.json({ type: 'pong', id: 'nothing' });
    a.json({ type: 'auth', data: { token: 'later' }, id: 'a' });
    await Promise.resolve();
    await Promise.resolve();
    expect(a.take()).toEqual([
      { type: 'user_list', id: 'l', room: 'r', data: ['U'], timestamp: SEC },
      { type: 'pong', id: 2 ** 53 - 1, timestamp: SEC },
      { type: 'auth', id: 'a', data: { exp: SEC + 600 }, timestamp: SEC },
    ]);
    expect(a.texts).toEqual([]);
  });

  it('keeps frames without an id byte for byte as before, and never acks them', async () => {
    const { hub } = setup();
    const a = await connect(hub);
    a.json({ type: 'join', room: 'r' });
    a.json({ type: 'message', room: 'r', content: 'x' });
    a.json({ type: 'leave', room: 'r' });
    a.json({ type: 'ping' });
    const texts = a.texts.slice();
    expect(texts.some((t) => t.includes('"id"') || t.includes('"ack"'))).toBe(false);
    expect(texts.at(-1)).toBe(`{"type":"pong","timestamp":${SEC}}`);
  });

  it('carries a valid id on every error of a request, and none for invalid ids, rate_limited or invalid_json', async () => {
    const { hub } = setup({ messageRate: '100/h,12' });
    const a = await connect(hub, '/ws/home');
    a.take();
    const cases: [unknown, Record<string, unknown>][] = [
      [{ type: 'nope', id: 'x' }, ERR('unsupported_type', { id: 'x' })],
      [{ type: 'nope', id: '' }, ERR('unsupported_type')],
      [{ type: 'join', room: 5, id: 1 }, ERR('invalid_message', { id: 1 })],
      [{ type: 'join', room: 'ok', id: -1 }, ERR('invalid_message', { room: 'ok' })],
      [{ type: 'ping', id: 1.5 }, ERR('invalid_message')],
      [{ type: 'ping', id: 'x'.repeat(65) }, ERR('invalid_message')],
      [{ type: 'ping', id: 2 ** 53 }, ERR('invalid_message')],
      [{ type: 'ping', id: null }, ERR('invalid_message')],
      [{ type: 'pong', id: [] }, ERR('invalid_message')],
      [{ type: 'join', room: 'bad room', id: 'r' }, ERR('invalid_room', { room: 'bad room', id: 'r' })],
      [{ type: 'leave', room: 'elsewhere', id: 'n' }, ERR('not_in_room', { room: 'elsewhere', id: 'n' })],
    ];
    for (const [frame, expected] of cases) {
      a.json(frame);
      expect({ frame, got: a.take() }).toEqual({ frame, got: [expected] });
    }
    a.text('{"type":"ping","id":"j"');
    expect(a.take()).toEqual([ERR('invalid_json')]);
    a.json({ type: 'ping', id: 'over' });
    expect(a.take()).toEqual([ERR('rate_limited')]);
    // 64 UTF-16 code units is the longest string id (an emoji counts two).
    const { hub: h2 } = setup();
    const b = await connect(h2);
    b.json({ type: 'ping', id: '😀'.repeat(32) });
    b.json({ type: 'ping', id: `${'😀'.repeat(32)}x` });
    expect(b.take()).toEqual([{ type: 'pong', id: '😀'.repeat(32), timestamp: SEC }, ERR('invalid_message')]);
  });

  it('acks after an asynchronous hook, and puts the id on a refusal', async () => {
    const { hub } = setup({ canJoin: async (_c, room) => room !== 'no', canPublish: async () => true });
    const a = await connect(hub);
    a.json({ type: 'join', room: 'no', id: 'n' });
    a.json({ type: 'join', room: 'yes', id: 'y' });
    a.json({ type: 'message', room: 'yes', content: 'hi', id: 'm' });
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(a.take().map((f) => [f.type, f.id ?? (f.data as { code?: string } | undefined)?.code])).toEqual([
      ['error', 'n'],
      ['join', undefined],
      ['user_list', undefined],
      ['ack', 'y'],
      ['message', undefined],
      ['ack', 'm'],
    ]);
  });
});

describe('one audience per interface', () => {
  it('shows the application only the Hub API: no admission, delivery or connection internals', () => {
    const { hub } = setup();
    const visible = new Set<string>();
    for (let o: object | null = hub; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
      for (const k of Object.getOwnPropertyNames(o)) visible.add(k);
    }
    for (const internal of ['admit', 'route', 'settle', 'deliver', 'deliverTo', 'dispatch', 'closed', 'localUsers', 'brokerFailed', 'counters', 'openConnection']) {
      expect(visible.has(internal)).toBe(false);
    }
    for (const api of ['config', 'size', 'closing', 'clients', 'roomNames', 'members', 'largestRooms', 'publish', 'stats', 'ready', 'close', 'on', 'emit']) {
      expect(visible.has(api)).toBe(true);
    }
    // The adapter handle is a registered symbol, not enumerable: a logged hub shows none of it.
    expect(Object.keys(hub)).not.toContain(Symbol.for('roomwire.adapterHandle'));
    expect(Object.keys(adapterHandle(hub)).sort()).toEqual(['admit', 'config', 'failed', 'route']);
    expect(() => adapterHandle({} as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: 'not a roomwire hub: make one with createHub()' }));
  });

  it('hands a broker a BrokerHost and nothing more', () => {
    let host: BrokerHost | undefined;
    const broker: Broker = { start: (h) => void (host = h), publish() {}, join() {}, leave() {}, users: () => [], close() {} };
    const { hub, clock } = setup({ broker });
    expect(host).not.toBe(hub);
    expect(Object.keys(host as object).sort()).toEqual(['brokerFailed', 'brokerNotice', 'deliver', 'deliverTo', 'every', 'localUsers', 'now']);
    expect(Object.isFrozen(host)).toBe(true);
    expect(host?.now()).toBe(clock.now());
  });

  it('reports an adapter failure as an ERR_TRANSPORT error event', () => {
    const { hub } = setup();
    const seen: string[] = [];
    hub.on('error', (e, client) => seen.push(`${e.code}:${e.message}:${String(client)}`));
    adapterHandle(hub).failed('upgrade failed', new Error('boom'));
    expect(seen).toEqual(['ERR_TRANSPORT:upgrade failed:undefined']);
  });
});

describe('member bookkeeping', () => {
  it('keeps a connection\'s rooms in join order as it leaves and joins, and counts them for maxRoomsPerConnection', async () => {
    const { hub } = setup({ maxRoomsPerConnection: 3 });
    const a = await connect(hub);
    for (const room of ['r1', 'r2', 'r3']) a.json({ type: 'join', room });
    const [client] = hub.clients();
    expect(client?.rooms).toEqual(['r1', 'r2', 'r3']);
    a.json({ type: 'join', room: 'r4' });
    a.json({ type: 'leave', room: 'r1' });
    expect(client?.rooms).toEqual(['r2', 'r3']);
    a.json({ type: 'join', room: 'r1' });
    a.json({ type: 'leave', room: 'r3' });
    a.json({ type: 'leave', room: 'r2' });
    expect(client?.rooms).toEqual(['r1']);
    a.json({ type: 'leave', room: 'r1' });
    a.json({ type: 'leave', room: 'r1' });
    expect(client?.rooms).toEqual([]);
    const codes = a.take().filter((f) => f.type === 'error').map((f) => (f.data as { code: string }).code);
    expect(codes).toEqual(['too_many_rooms', 'not_in_room']);
  });

  it('lists a user once however many of its connections are in a room, until the last leaves', async () => {
    const auth = () => ({ userId: 'u1', username: 'ann' });
    const { hub } = setup({ authenticate: ({ token }) => (token === undefined ? null : auth()) });
    const list = (t: FakeTransport) => {
      t.json({ type: 'user_list', room: 'r' });
      return t.take().filter((f) => f.type === 'user_list').at(-1)?.data;
    };
    const guest = await connect(hub, '/ws/r');
    const one = await connect(hub, '/ws/r?token=x');
    const two = await connect(hub, '/ws/r?token=x');
    const guestName = hub.clients()[0]?.username;
    expect(list(guest)).toEqual([guestName, 'ann']);
    one.json({ type: 'leave', room: 'r' });
    expect(list(guest)).toEqual([guestName, 'ann']);
    two.json({ type: 'leave', room: 'r' });
    expect(list(guest)).toEqual([guestName]);
    one.json({ type: 'join', room: 'r' });
    expect(list(guest)).toEqual([guestName, 'ann']);
  });
});
