/**
 * The chat page in real headless Chromium against two standalone servers sharing one real
 * redis-server (contract section 7), one on node-redis and one on ioredis: a page on each process, one room, one conversation.
 * Skipped without Debian's chromium unless ROOMWIRE_REQUIRE_BROWSER=1 (as in CI).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { hasBrowser, launchChromium } from '../helpers/browser';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { RedisServer } from '../helpers/redis';


describe.runIf(hasBrowser)('chat pages on two processes sharing Redis, in headless Chromium', () => {
  let browser: Browser;
  let redis: RedisServer;
  const servers: RunningServer[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    redis = await RedisServer.start();
    // One process on node-redis, the other on ioredis: one hub whatever the client library.
    for (const client of ['redis', 'ioredis']) {
      servers.push(await startServer({ env: { HOST: '127.0.0.1', PORT: '0', WEBSOCKET_REDIS_URL: redis.url, WEBSOCKET_REDIS_CLIENT: client }, log: () => {} }));
    }
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.all(servers.map((s) => s.close()));
    await redis?.kill();
  });

  async function chat(server: RunningServer, room: string): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.port}/`);
    await page.fill('#room', room);
    await page.click('#connect');
    await page.waitForSelector('#text:not([disabled])');
    return page;
  }
  const texts = (page: Page, selector: string) => page.$$eval(selector, (els) => els.map((e) => e.textContent ?? ''));

  it('a page on each process sees the other in the user list, and they talk', async () => {
    const a = await chat(servers[0]!, 'across');
    const [nameA] = await texts(a, '#userlist li');
    const b = await chat(servers[1]!, 'across');
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2);
    await b.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2);
    const nameB = (await texts(a, '#userlist li')).find((n) => n !== nameA) as string;
    expect((await texts(b, '#userlist li')).sort()).toEqual([nameA, nameB].sort());

    await a.fill('#text', 'hello from process 1');
    await a.press('#text', 'Enter');
    await b.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('hello from process 1'));
    await b.fill('#text', 'hi from process 2');
    await b.click('#send');
    for (const page of [a, b]) await page.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('hi from process 2'));
    expect(await texts(a, '#log li')).toEqual([`${nameA} joined across`, `${nameB} joined across`, `${nameA}: hello from process 1`, `${nameB}: hi from process 2`]);
    expect(await texts(b, '#log li')).toEqual([`${nameB} joined across`, `${nameA}: hello from process 1`, `${nameB}: hi from process 2`]);

    await b.close();
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 1);
    expect((await texts(a, '#log li')).at(-1)).toBe(`${nameB} left across`);
    await a.close();
  });
});
