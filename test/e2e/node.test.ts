import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { configFromEnv, createHub } from '../../src/index';
import { attach } from '../../src/adapters/node';
import { Peer } from '../helpers/client';
import { hubSuite } from './suite';

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

hubSuite('roomwire/node', async (env) => {
  const hub = createHub(configFromEnv(env));
  const server = http.createServer((_req, res) => res.end('app'));
  attach(hub, server);
  const port = await listen(server);
  return {
    port,
    hub,
    async close() {
      await hub.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
});

describe('roomwire/node: sharing the server', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it('leaves other upgrade paths to other listeners and detaches only its own listener', async () => {
    const hub = createHub();
    const server = http.createServer();
    const other = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => {
      if (req.url === '/other') other.handleUpgrade(req, socket, head, (ws) => ws.send('from other'));
    });
    const attachment = attach(hub, server);
    const port = await listen(server);
    // An upgrade nobody answers leaves a half-open socket behind: destroy every socket at the end.
    const sockets = new Set<import('node:net').Socket>();
    server.on('connection', (socket) => sockets.add(socket));
    cleanup.push(
      () => new Promise<void>((r) => server.close(() => r())),
      () => sockets.forEach((socket) => socket.destroy()),
      () => hub.close(),
    );

    const o = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/other`);
      ws.on('message', (d) => {
        resolve(d.toString());
        ws.close();
      });
      ws.on('error', reject);
    });
    expect(o).toBe('from other');
    const p = await Peer.open(`ws://127.0.0.1:${port}/ws/r`);
    expect((await p.next()).type).toBe('join');
    p.close();

    expect(server.listenerCount('upgrade')).toBe(2);
    attachment.detach();
    expect(server.listenerCount('upgrade')).toBe(1);
    // Detached: nobody answers /ws any more (the request just waits).
    const req = http.request({ host: '127.0.0.1', port, path: '/ws', headers: { Connection: 'Upgrade', Upgrade: 'websocket' } });
    let answered = false;
    req.on('upgrade', () => (answered = true));
    req.on('response', () => (answered = true));
    req.on('error', () => {});
    req.end();
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).toBe(false);
    req.destroy();
  });
});

describe('roomwire/node: application seams over real sockets', () => {
  it('uses a custom authenticate (extending the JWT check) and authorization hooks', async () => {
    const { sign, SECRET } = await import('../helpers/client');
    const banned = new Set(['mallory']);
    const hub = createHub({
      jwt: { secret: SECRET },
      authenticate: async (ctx) => {
        if (ctx.token === undefined) return null;
        const identity = await ctx.verifyJwt(ctx.token);
        if (banned.has(identity.userId)) throw new Error('banned');
        return { ...identity, username: identity.username.toUpperCase() };
      },
      canJoin: async (client, room) => room !== 'staff' || client.claims?.role === 'staff',
      canPublish: (_client, _room, message) => !message.content.includes('forbidden words'),
    });
    const server = http.createServer();
    attach(hub, server);
    const port = await listen(server);
    try {
      const { upgrade } = await import('../helpers/client');
      const refused = await upgrade(port, `/ws/auth?token=${await sign({ sub: 'mallory' })}`);
      expect(refused.status).toBe(401);
      expect(refused.headers['www-authenticate']).toBe('Bearer error="invalid_token"');

      const p = await Peer.open(`ws://127.0.0.1:${port}/ws/auth/staff?token=${await sign({ sub: 'ann', username: 'ann' })}`);
      expect(await p.next()).toMatchObject({ type: 'error', data: { code: 'forbidden' }, room: 'staff' });
      p.send({ type: 'join', room: 'lobby' });
      expect(await p.take(2)).toMatchObject([{ type: 'join', username: 'ANN' }, { type: 'user_list', data: ['ANN'] }]);
      p.send({ type: 'message', room: 'lobby', content: 'some forbidden words' });
      expect(await p.next()).toMatchObject({ type: 'error', data: { code: 'forbidden' }, room: 'lobby' });
      p.send({ type: 'message', room: 'lobby', content: 'fine' });
      expect(await p.next()).toMatchObject({ type: 'message', content: 'fine', username: 'ANN' });

      const staff = await Peer.open(`ws://127.0.0.1:${port}/ws/auth/staff?token=${await sign({ sub: 'sue', role: 'staff' })}`);
      expect(await staff.next()).toMatchObject({ type: 'join', room: 'staff', user_id: 'sue' });
    } finally {
      await hub.close();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('roomwire/node: upgrades nobody takes', () => {
  it('are answered by the server’s request listener when the hub is the only upgrade listener', async () => {
    const hub = createHub();
    const server = http.createServer((req, res) => {
      if (req.url === '/api') res.end('app says hi');
      else res.writeHead(404).end('app 404');
    });
    attach(hub, server);
    const port = await listen(server);
    try {
      const { upgrade } = await import('../helpers/client');
      // A WebSocket upgrade for a path the hub does not serve: the app's own 404.
      expect(await upgrade(port, '/other')).toMatchObject({ status: 404, body: 'app 404' });
      // A client offering HTTP/2 cleartext still gets the plain HTTP answer.
      const h2c = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/api', headers: { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAARAAAAAAAIAAAAA' } });
        req.on('response', (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
      expect(h2c).toEqual({ status: 200, body: 'app says hi' });
      const p = await Peer.open(`ws://127.0.0.1:${port}/ws/r`);
      expect((await p.next()).type).toBe('join');
      p.close();
    } finally {
      await hub.close();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('limitUnfinishedRequests', () => {
  it('leaves nothing on a socket once its request head is complete but one shared close listener: no closure, no property', async () => {
    const { limitUnfinishedRequests } = await import('../../src/adapters/node');
    const seen: { closeListeners: number; symbols: number }[] = [];
    const make = (guarded: boolean) => {
      const server = http.createServer((req, res) => {
        seen.push({ closeListeners: req.socket.listenerCount('close'), symbols: Object.getOwnPropertySymbols(req.socket).length });
        res.end('ok');
      });
      const unguard = guarded ? limitUnfinishedRequests(server, { headersTimeout: 5000, maxPerAddress: 4 }) : () => {};
      return { server, unguard };
    };
    for (const guarded of [false, true]) {
      const { server, unguard } = make(guarded);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as AddressInfo).port;
      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(await res.text()).toBe('ok');
      unguard();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    // The guarded socket has one more close listener (one function for every socket of the
    // guard) and nothing else: the guard used to keep a once() wrapper, a closure and a
    // symbol property on every socket for its whole life.
    expect(seen).toHaveLength(2);
    expect(seen[1]).toEqual({ closeListeners: seen[0]!.closeListeners + 1, symbols: seen[0]!.symbols });
  });
});
