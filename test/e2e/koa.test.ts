import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { describe, expect, it } from 'vitest';
import { createHub } from '../../src/index';
import { attach } from '../../src/adapters/koa';
import { Peer } from '../helpers/client';
import { checkLateAttach, hubSuite, listeningApp } from './suite';

function listening(server: Server): Promise<number> {
  return new Promise((resolve) => server.once('listening', () => resolve((server.address() as AddressInfo).port)));
}

hubSuite(
  'roomwire/koa (app passed before listen)',
  listeningApp(() => {
    const app = new Koa();
    app.use((ctx) => {
      ctx.body = 'koa app';
    });
    return app;
  }, attach),
);

describe('roomwire/koa', () => {
  it('attaches to a server made from app.callback(), next to the app', async () => {
    const app = new Koa();
    app.use((ctx) => {
      ctx.body = 'from koa';
    });
    const server = http.createServer(app.callback());
    const hub = createHub();
    attach(hub, server);
    server.listen(0, '127.0.0.1');
    const port = await listening(server);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('from koa');
    const p = await Peer.open(`ws://127.0.0.1:${port}/ws/room`);
    expect((await p.next()).type).toBe('join');
    await hub.close();
    expect((await p.closed).code).toBe(1001);
    await new Promise((r) => server.close(r));
  });
  it('works when attach(hub, app) comes after app.listen(): it attaches at the first request, with a warning', async () => {
    await checkLateAttach(() => {
      const app = new Koa();
      app.use((ctx) => {
        ctx.body = 'hi';
      });
      return app;
    }, attach);
  });
});
