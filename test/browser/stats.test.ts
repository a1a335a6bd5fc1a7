/** The standalone server's /stats page renders live numbers and charts in headless Chromium. */
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { hasBrowser, launchChromium } from '../helpers/browser';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { Peer } from '../helpers/client';


describe.runIf(hasBrowser)('stats page in headless Chromium', () => {
  let browser: Browser;
  let server: RunningServer;
  beforeAll(async () => {
    browser = await launchChromium();
    server = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_MESSAGE_RATE: '1000/s,100000', STATS_ROOM_NAMES: 'true' }, log: () => {}, statsIntervalMs: 200 });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('shows connections, room sizes, rooms by name (STATS_ROOM_NAMES=true) and rate charts, refreshing by itself', async () => {
    const base = `ws://127.0.0.1:${server.port}`;
    const peers = await Promise.all([Peer.open(`${base}/ws/lobby`), Peer.open(`${base}/ws/lobby`), Peer.open(`${base}/ws/games`)]);
    const page = await browser.newPage({ viewport: { width: 1000, height: 600 } });
    await page.goto(`http://127.0.0.1:${server.port}/stats`);
    await page.waitForSelector('body[data-ready="true"]');
    // Steady traffic while the page refreshes by itself (a rate is of the last interval).
    let i = 0;
    const traffic = setInterval(() => {
      peers[0]!.send({ type: 'message', room: 'lobby', content: `m${i++}` });
      peers[2]!.send('not json');
    }, 40);
    try {
      await page.waitForFunction(() => Number(document.querySelector('#t-messages .value')?.textContent) > 0, undefined, { timeout: 10_000 });
      await page.waitForFunction(() => Number(document.querySelector('#t-errors .value')?.textContent) > 0, undefined, { timeout: 10_000 });
    } finally {
      clearInterval(traffic);
    }
    expect(await page.textContent('#t-connections .value')).toBe('3');
    expect(await page.textContent('#t-rooms .value')).toBe('2');
    const cells = (id: string) => page.$$eval(`#${id} tr`, (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    // members -> rooms, fullest first
    expect(await cells('sizes')).toEqual([
      ['2', '1'],
      ['1', '1'],
    ]);
    expect(await page.isVisible('#rooms-table')).toBe(true);
    expect(await cells('rooms')).toEqual([
      ['lobby', '2'],
      ['games', '1'],
    ]);
    const points = await page.getAttribute('#t-messages polyline', 'points');
    expect(points?.split(' ').length).toBeGreaterThan(2);

    const file = join(mkdtempSync(join(tmpdir(), 'roomwire-stats-')), 'stats.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(statSync(file).size).toBeGreaterThan(5000);
    for (const p of peers) p.close();
    await page.close();
  });
});
