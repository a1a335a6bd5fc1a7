import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { createHub } from '../../src/index';
import { attach } from '../../src/adapters/express';
import { Peer } from '../helpers/client';
import { checkLateAttach, hubSuite, listeningApp } from './suite';

function listening(server: Server): Promise<number> {
  return new Promise((resolve) => server.once('listening', () => resolve((server.address() as AddressInfo).port)));
}

hubSuite(
  'roomwire/express (app passed before listen)',
  listeningApp(() => {
    const app = express();
    app.get('/', (_req, res) => res.send('express app'));
    return app;
  }, attach),
);

describe('roomwire/express', () => {
  it('attaches to the server app.listen() returns, next to the app routes', async () => {
    const app = express();
    app.get('/hello', (_req, res) => res.send('hi'));
    const hub = createHub();
    const server = app.listen(0, '127.0.0.1');
    attach(hub, server);
    const port = await listening(server);
    expect(await (await fetch(`http://127.0.0.1:${port}/hello`)).text()).toBe('hi');
    const p = await Peer.open(`ws://127.0.0.1:${port}/ws/room`);
    expect((await p.next()).type).toBe('join');
    await hub.close();
    expect((await p.closed).code).toBe(1001);
    await new Promise((r) => server.close(r));
  });

  it('works when attach(hub, app) comes after app.listen(): it attaches at the first request, with a warning', async () => {
    await checkLateAttach(() => {
      const app = express();
      app.get('/hello', (_req, res) => res.send('hi'));
      return app;
    }, attach);
  });

  it('detach restores app.listen', () => {
    const app = express();
    const original = app.listen;
    const attachment = attach(createHub(), app);
    expect(app.listen).not.toBe(original);
    attachment.detach();
    expect(app.listen).toBe(original);
  });
});
