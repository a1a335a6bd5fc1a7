import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { Peer, sign, upgrade } from '../helpers/client';
import { hubSuite } from './suite';

const quiet = () => {};

hubSuite('standalone server', async (env) => {
  const running = await startServer({ env: { ...env, HOST: '127.0.0.1', PORT: '0' }, log: quiet });
  return { port: running.port, hub: running.hub, close: () => running.close() };
});

describe('standalone server: HTTP routes (section 6)', () => {
  const servers: RunningServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  async function serve(env: Record<string, string> = {}) {
    const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', ...env }, log: quiet });
    servers.push(s);
    return s;
  }

  it('prints the listening line with HOST and the bound PORT', async () => {
    const lines: string[] = [];
    const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0' }, log: (l) => lines.push(l) });
    servers.push(s);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual({ level: 'info', time: expect.any(Number), msg: `roomwire listening on http://127.0.0.1:${s.port}`, path: '/ws' });
  });

  it('serves the chat page at / speaking the protocol with the configured base path', async () => {
    const s = await serve({ WEBSOCKET_PATH: '/live/' });
    const res = await fetch(`http://127.0.0.1:${s.port}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    // The page runs on the client SDK, inlined: no second request, no CDN.
    expect(html).toContain('var roomwire=');
    expect(html).toContain('roomwire.createClient(');
    expect(html).toContain('var BASE = "/live";');
    for (const type of ["'message'", "'join'", "'leave'"]) expect(html).toContain(`lobby.on(${type}`);
    expect(html).toMatch(/<link rel="icon" href="data:image\/svg\+xml,/);
    expect(html.match(/<\/script>/g)).toHaveLength(2);
  });

  it('answers /healthz with 200 JSON, also when WebSockets are disabled', async () => {
    for (const enabled of ['true', 'false']) {
      const s = await serve({ WEBSOCKET_ENABLED: enabled });
      const res = await fetch(`http://127.0.0.1:${s.port}/healthz`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(await res.json()).toEqual({
        status: 'ok',
        websocket: { enabled: enabled === 'true', path: '/ws' },
        connections: 0,
        rooms: 0,
        broker: { kind: 'memory', connected: true, processes: 1 },
        uptime_seconds: expect.any(Number),
      });
    }
  });

  it('answers an upgrade request outside the base path as HTTP (a client offering h2c still gets /healthz)', async () => {
    const s = await serve();
    const r = await upgrade(s.port, '/healthz', { Upgrade: 'h2c', Connection: 'Upgrade' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'ok' });
  });

  it('answers 404 elsewhere, for plain requests and for upgrades outside the base path', async () => {
    const s = await serve();
    expect((await fetch(`http://127.0.0.1:${s.port}/nope`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${s.port}/wsx`)).status).toBe(404);
    expect((await upgrade(s.port, '/elsewhere')).status).toBe(404);
    expect((await upgrade(s.port, '/wsx')).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${s.port}/`, { method: 'POST' })).status).toBe(405);
  });

  it('answers 503 to upgrades that arrive during shutdown', async () => {
    const s = await serve();
    // A raw client that completes the handshake but never answers the close frame
    // keeps the shutdown waiting.
    const raw = net.connect(s.port, '127.0.0.1');
    await new Promise<void>((resolve) => {
      raw.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      raw.once('data', () => resolve());
    });
    expect(s.hub.size).toBe(1);
    const closing = s.close();
    expect((await upgrade(s.port, '/ws')).status).toBe(503);
    raw.destroy();
    await closing;
  });
});

describe('standalone server: the roomwire process', () => {
  function run(env: Record<string, string>) {
    const child = spawn(process.execPath, ['dist/bin/roomwire.js'], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const listening = new Promise<number>((resolve, reject) => {
      const check = () => {
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
        if (m) resolve(Number(m[1]));
      };
      child.stdout.on('data', check);
      void exited.then(() => reject(new Error(`exited: ${stderr}`)));
    });
    listening.catch(() => {}); // awaited only by the tests that expect it to listen
    return { child, exited, listening, output: () => ({ stdout, stderr }) };
  }

  it('closes every client with 1001 on SIGTERM and exits 0', async () => {
    const p = run({ HOST: '127.0.0.1', PORT: '0' });
    const port = await p.listening;
    const a = await Peer.open(`ws://127.0.0.1:${port}/ws/lobby`);
    const b = await Peer.open(`ws://127.0.0.1:${port}/ws/lobby`);
    await a.take(3);
    await b.take(2);
    p.child.kill('SIGTERM');
    expect(await a.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await b.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await p.exited).toBe(0);
  });

  it('exits 0 when a second SIGTERM arrives during the graceful window', async () => {
    const p = run({ HOST: '127.0.0.1', PORT: '0' });
    const port = await p.listening;
    // A client that never answers the close frame keeps the shutdown waiting (5 s).
    const raw = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => {
      raw.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      raw.once('data', () => resolve());
    });
    raw.on('error', () => {});
    p.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    raw.destroy();
  });

  it('exits 0 on SIGINT too', async () => {
    const p = run({ HOST: '127.0.0.1', PORT: '0' });
    await p.listening;
    p.child.kill('SIGINT');
    expect(await p.exited).toBe(0);
  });

  it('refuses a bad configuration before listening, naming every bad variable', async () => {
    const p = run({
      HOST: '127.0.0.1',
      PORT: '99999',
      WEBSOCKET_MAX_CONNECTIONS: 'lots',
      WEBSOCKET_PING_PERIOD: '70s',
      WEBSOCKET_ALLOWED_ORIGINS: 'not an origin',
      WEBSOCKET_MESSAGE_RATE: '20 per second',
      WEBSOCKET_REQUIRE_AUTH: 'yes',
    });
    const code = await p.exited;
    const { stdout, stderr } = p.output();
    expect(code).toBe(2);
    expect(stdout).toBe('');
    for (const name of ['PORT', 'WEBSOCKET_MAX_CONNECTIONS', 'WEBSOCKET_PING_PERIOD', 'WEBSOCKET_ALLOWED_ORIGINS', 'WEBSOCKET_MESSAGE_RATE', 'WEBSOCKET_REQUIRE_AUTH']) {
      expect(stderr).toContain(`  ${name}: `);
    }
  });

  it('refuses a bad WEBSOCKET_REDIS_URL and Redis settings before listening, never printing the password', async () => {
    const p = run({
      HOST: '127.0.0.1',
      PORT: '0',
      WEBSOCKET_REDIS_URL: 'redis://u:secret@host:notaport',
      WEBSOCKET_REDIS_MODE: 'sharded',
    });
    const code = await p.exited;
    const { stdout, stderr } = p.output();
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain('  WEBSOCKET_REDIS_URL: "redis://u:***@host:notaport" is not a URL');
    expect(stderr).toContain('  WEBSOCKET_REDIS_MODE: must be single, cluster or sentinel, not "sharded"');
    expect(stderr + stdout).not.toContain('secret');
  });
});

describe('standalone server: refusals that explain themselves', () => {
  const servers: RunningServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('answers 401 naming what is wrong with the token, and logs it at info without the token', async () => {
    const { SECRET } = await import('../helpers/client');
    const lines: Record<string, unknown>[] = [];
    const raw: string[] = [];
    const s = await startServer({
      env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_JWT_SECRET: SECRET, WEBSOCKET_JWT_ISSUER: 'https://id.example', WEBSOCKET_JWT_AUDIENCE: 'chat', WEBSOCKET_JWT_ALGORITHMS: 'HS256' },
      log: (l) => (raw.push(l), lines.push(JSON.parse(l) as Record<string, unknown>)),
    });
    servers.push(s);
    const good = { sub: 'u', iss: 'https://id.example', aud: 'chat' };
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, string | undefined, string][] = [
      ['missing', undefined, 'no token was given (an Authorization: Bearer header, a ?token= parameter or a token cookie)'],
      ['expired', await sign({ ...good, exp: now - 10 }), 'the token has expired'],
      ['bad signature', await sign(good, { secret: 'another-secret-another-secret-another-secret-0123' }), "the token's signature does not verify with the configured key"],
      ['wrong algorithm', await sign(good, { alg: 'HS512' }), "the token's algorithm is not accepted (WEBSOCKET_JWT_ALGORITHMS)"],
      ['issuer', await sign({ ...good, iss: 'https://evil.example' }), "the token's issuer (iss) is not accepted (WEBSOCKET_JWT_ISSUER)"],
      ['audience', await sign({ ...good, aud: 'other' }), "the token's audience (aud) is not accepted (WEBSOCKET_JWT_AUDIENCE)"],
      ['not yet valid', await sign({ ...good, nbf: now + 600 }), 'the token is not valid yet (nbf)'],
      ['no sub', await sign({ iss: good.iss, aud: good.aud }), 'the token has no sub claim'],
      ['malformed', 'not.a.jwt', 'the token is not a well-formed JWT'],
    ];
    for (const [cause, token, sentence] of cases) {
      const r = await upgrade(s.port, token === undefined ? '/ws/auth/r' : `/ws/auth/r?token=${token}`);
      expect({ cause, status: r.status, body: r.body }).toEqual({ cause, status: 401, body: `a valid token is required (${cause}): ${sentence}\n` });
    }
    const refused = lines.filter((l) => l.msg === 'upgrade refused');
    expect(refused.map((l) => [l.level, l.status, l.cause])).toEqual(cases.map(([cause]) => ['info', 401, cause]));
    for (const [, token] of cases) if (token !== undefined) expect(raw.filter((l) => l.includes(token.split('.')[2] || token))).toEqual([]);

    // No key at all: every presented token says so.
    const keyless = await startServer({ env: { HOST: '127.0.0.1', PORT: '0' }, log: () => {} });
    servers.push(keyless);
    const r = await upgrade(keyless.port, `/ws/auth/r?token=${await sign(good)}`);
    expect(r.body).toBe('a valid token is required (no key configured): the server has no key to verify tokens (set WEBSOCKET_JWT_SECRET, WEBSOCKET_JWT_PUBLIC_KEY or WEBSOCKET_JWKS_URL)\n');
  });

  it('starts with WEBSOCKET_REQUIRE_AUTH=true and no key, says so at startup, and answers every upgrade 401 (contract section 1)', async () => {
    const lines: string[] = [];
    const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_REQUIRE_AUTH: 'true' }, log: (l) => lines.push(l) });
    servers.push(s);
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.variable === 'WEBSOCKET_REQUIRE_AUTH');
    expect(warnings).toEqual([expect.objectContaining({ level: 'warn', msg: expect.stringContaining('every WebSocket upgrade is refused with 401') })]);
    const missing = await upgrade(s.port, '/ws/r');
    expect([missing.status, missing.headers['www-authenticate']]).toEqual([401, 'Bearer']);
    const presented = await upgrade(s.port, `/ws/r?token=${await sign({ sub: 'u1' })}`);
    expect([presented.status, presented.headers['www-authenticate']]).toEqual([401, 'Bearer error="invalid_token"']);
    expect((await fetch(`http://127.0.0.1:${s.port}/healthz`)).status).toBe(200);
  });

  it('warns at startup about a WEBSOCKET_* variable no setting reads, naming the closest one', async () => {
    const lines: string[] = [];
    const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_MAX_MESAGE_SIZE: '1024' }, log: (l) => lines.push(l) });
    servers.push(s);
    expect(JSON.parse(lines[0]!)).toEqual({
      level: 'warn',
      time: expect.any(Number),
      variable: 'WEBSOCKET_MAX_MESAGE_SIZE',
      msg: 'WEBSOCKET_MAX_MESAGE_SIZE is not a roomwire variable and is ignored; did you mean WEBSOCKET_MAX_MESSAGE_SIZE?',
    });
    expect(lines[1]).toContain('listening on');
  });

  it('answers 404 saying the room name is invalid and stating the rule, or listing the endpoints', async () => {
    const s = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_PATH: '/live' }, log: () => {} });
    servers.push(s);
    const bad = await upgrade(s.port, '/live/bad%20room');
    expect({ status: bad.status, body: bad.body }).toEqual({
      status: 404,
      body: 'the room name "bad room" is invalid: room names are 1 to 64 characters from A-Z a-z 0-9 _ - . :\n',
    });
    const deep = await upgrade(s.port, '/live/a/b');
    expect(deep.body).toBe('no endpoint at this path: the endpoints are /live, /live/{room}, /live/auth and /live/auth/{room}\n');
  });
});
