import fastifyWebsocket from '@fastify/websocket';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { configFromEnv, createHub } from '../../src/index';
import roomwire from '../../src/adapters/fastify';
import { Peer, upgrade } from '../helpers/client';
import { hubSuite } from './suite';

async function start(env: Record<string, string>, withWebsocketPlugin: boolean) {
  const app = Fastify();
  if (withWebsocketPlugin) {
    await app.register(fastifyWebsocket);
    app.register(async (scope) => {
      scope.get('/echo', { websocket: true }, (socket) => {
        socket.on('message', (m: Buffer) => socket.send(`echo:${m.toString()}`));
      });
    });
  }
  await app.register(roomwire, configFromEnv(env));
  app.get('/', async () => 'fastify app');
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { port, hub: app.roomwire, close: () => app.close() };
}

hubSuite('roomwire/fastify', (env) => start(env, false));
hubSuite('roomwire/fastify beside @fastify/websocket', (env) => start(env, true));

describe('roomwire/fastify', () => {
  it('coexists with @fastify/websocket routes on other paths', async () => {
    const s = await start({}, true);
    try {
      const echo = await new Promise<string>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${s.port}/echo`);
        ws.on('open', () => ws.send('x'));
        ws.on('message', (m) => {
          resolve(m.toString());
          ws.close();
        });
        ws.on('error', reject);
      });
      expect(echo).toBe('echo:x');
      expect((await upgrade(s.port, '/ws/a/b')).status).toBe(404);
      expect((await upgrade(s.port, `/ws/${'x'.repeat(120)}`)).status).toBe(404); // past Fastify's maxParamLength
      expect((await upgrade(s.port, '/ws/%E0%A4%A')).status).toBe(404); // a URL Fastify cannot decode
      expect((await upgrade(s.port, '/ws/auth')).status).toBe(401);
      const p = await Peer.open(`ws://127.0.0.1:${s.port}/ws/lobby`);
      expect((await p.next()).type).toBe('join');
      expect(await (await fetch(`http://127.0.0.1:${s.port}/`)).text()).toBe('fastify app');
    } finally {
      await s.close();
    }
  });

  it('decorates every context with the hub, accepts a hub, and fastify.close() sends 1001', async () => {
    const hub = createHub();
    const app = Fastify();
    await app.register(roomwire, { hub });
    let seen: unknown;
    await app.register(async (child) => {
      seen = child.roomwire;
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    expect(seen).toBe(hub);
    expect(app.roomwire).toBe(hub);
    const address = app.server.address();
    const p = await Peer.open(`ws://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/ws`);
    await app.close();
    expect(await p.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(hub.closing).toBe(true);
    expect(app.server.listenerCount('upgrade')).toBe(0);
  });

  it('lets Fastify answer upgrades outside the hub when no other plugin takes upgrades', async () => {
    const s = await start({}, false);
    try {
      const r = await upgrade(s.port, '/');
      expect(r).toMatchObject({ status: 200, body: 'fastify app' });
    } finally {
      await s.close();
    }
  });

  it('refuses to register with a bad configuration', async () => {
    const app = Fastify();
    await expect(app.register(roomwire, { maxConnections: -1 })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' });
  });
});
