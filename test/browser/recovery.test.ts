/**
 * Recovery on the chat page in real headless Chromium (docs/recovery.md), with history on
 * (WEBSOCKET_HISTORY_SIZE=100): a page that lost its connection while the other chatted
 * shows every message once, in order, after it is back; after the server process restarts
 * (a new epoch), the page says that some messages could not be recovered.
 *
 * The first two run on one process. On Redis, the room streams outlive a process: a page
 * whose process was killed (SIGKILL) and started again on the same port gets back, by
 * itself, what the other page said meanwhile through a second process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { connectionGate, hasBrowser, launchChromium } from '../helpers/browser';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { ServerProcess } from '../helpers/process';
import { RedisServer } from '../helpers/redis';

const HISTORY = { WEBSOCKET_HISTORY_SIZE: '100', WEBSOCKET_MESSAGE_RATE: '100/s,100' };
const GAP_LINE = 'some messages sent while you were away could not be recovered';

const texts = (page: Page, selector: string) => page.$$eval(selector, (els) => els.map((e) => e.textContent ?? ''));

/** Open the chat page at `origin` and join `room`; `before` runs before the page loads. */
async function chat(browser: Browser, origin: string, room: string, before?: (page: Page) => Promise<unknown>): Promise<Page> {
  const page = await browser.newPage();
  await before?.(page);
  await page.goto(`${origin}/`);
  await page.fill('#room', room);
  await page.click('#connect');
  await page.waitForSelector('#text:not([disabled])');
  return page;
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.waitForFunction((t) => [...document.querySelectorAll('#log li')].some((li) => li.textContent?.endsWith(`: ${t}`)), text);
}

async function me(page: Page): Promise<string> {
  return ((await page.textContent('#me')) ?? '').replace(/^You are (.*)\.$/, '$1');
}

describe.runIf(hasBrowser)('chat page recovery in headless Chromium', () => {
  let browser: Browser;
  let server: RunningServer;
  let origin: string;

  beforeAll(async () => {
    browser = await launchChromium();
    server = await startServer({ env: { HOST: '127.0.0.1', PORT: '0', ...HISTORY }, log: () => {} });
    origin = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('a page whose connection dropped while the other chatted shows every message once, in order, when it is back', async () => {
    let gate: Awaited<ReturnType<typeof connectionGate>> | undefined;
    const a = await chat(browser, origin, 'away', async (page) => (gate = await connectionGate(page)));
    const b = await chat(browser, origin, 'away');
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2);
    const [nameA, nameB] = [await me(a), await me(b)];
    await say(b, 'before 1');
    await say(a, 'before 2');
    await a.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('before 1'));

    // The server drops a's connection; a's next connection is held until b has chatted.
    await gate!.hold();
    const before = server.hub.stats().history;
    const conn = server.hub.clients().find((c) => c.username === nameA);
    expect(conn).toBeDefined();
    conn!.close(1012, 'dropped by the test');
    await a.waitForSelector('#text[disabled]');
    for (const t of ['while away 1', 'while away 2', 'while away 3']) await say(b, t);
    await gate!.release();
    await a.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('recovered 3 messages sent while you were away'), undefined, { timeout: 15_000 });
    await say(b, 'after');
    await a.waitForFunction(() => document.querySelector('#log')?.textContent?.includes(': after'));

    const messages = (await texts(a, '#log li')).filter((l) => l.startsWith(`${nameA}: `) || l.startsWith(`${nameB}: `));
    expect(messages).toEqual([
      `${nameB}: before 1`,
      `${nameA}: before 2`,
      `${nameB}: while away 1`,
      `${nameB}: while away 2`,
      `${nameB}: while away 3`,
      `${nameB}: after`,
    ]);
    expect(await texts(a, '#log li.gap')).toEqual([]);
    const after = server.hub.stats().history;
    expect({ recovered: after.recovered - before.recovered, unrecovered: after.unrecovered - before.unrecovered }).toEqual({ recovered: 1, unrecovered: 0 });
    // The page that stayed saw the same messages, and no recovery line.
    const bMessages = (await texts(b, '#log li')).filter((l) => l.startsWith(`${nameA}: `) || l.startsWith(`${nameB}: `));
    expect(bMessages).toEqual(messages);
    expect((await texts(b, '#log li')).filter((l) => l.startsWith('recovered'))).toEqual([]);
    await a.close();
    await b.close();
  }, 60_000);
});

describe.runIf(hasBrowser)('chat page recovery in headless Chromium, across a server restart', () => {
  let browser: Browser;
  let server: ServerProcess;

  beforeAll(async () => {
    browser = await launchChromium();
    server = await ServerProcess.start(HISTORY);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.kill();
  });

  it('after the server process restarts (a new epoch), the page says some messages could not be recovered, once, and chats on', async () => {
    const origin = `http://127.0.0.1:${server.port}`;
    const a = await chat(browser, origin, 'restart');
    const b = await chat(browser, origin, 'restart');
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2);
    await say(a, 'before the restart');
    await b.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('before the restart'));
    expect(await texts(a, '#log li.gap')).toEqual([]);

    await server.kill();
    for (const page of [a, b]) await page.waitForSelector('#text[disabled]');
    await server.start();
    for (const page of [a, b]) {
      await page.waitForSelector('#text:not([disabled])', { timeout: 15_000 });
      await page.waitForFunction((line) => document.querySelector('#log li.gap')?.textContent === line, GAP_LINE);
    }
    await say(b, 'after the restart');
    await a.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('after the restart'));
    await new Promise((r) => setTimeout(r, 200));
    for (const page of [a, b]) {
      expect(await texts(page, '#log li.gap')).toEqual([GAP_LINE]);
      const log = await texts(page, '#log li');
      expect(log.filter((l) => l.endsWith(': after the restart'))).toHaveLength(1);
      // The gap line comes after the connection was lost and before what was said since.
      expect(log.indexOf(GAP_LINE)).toBeGreaterThan(log.findIndex((l) => l.startsWith('connection lost')));
      expect(log.indexOf(GAP_LINE)).toBeLessThan(log.findIndex((l) => l.endsWith(': after the restart')));
    }
    await a.close();
    await b.close();
  }, 60_000);
});

describe.runIf(hasBrowser)('chat page recovery in headless Chromium, across a killed process on Redis', () => {
  let browser: Browser;
  let redis: RedisServer;
  let one: ServerProcess;
  let two: ServerProcess;

  beforeAll(async () => {
    browser = await launchChromium();
    redis = await RedisServer.start();
    one = await ServerProcess.start({ ...HISTORY, WEBSOCKET_REDIS_URL: redis.url });
    two = await ServerProcess.start({ ...HISTORY, WEBSOCKET_REDIS_URL: redis.url });
  }, 30_000);
  afterAll(async () => {
    await browser?.close();
    await one?.kill();
    await two?.kill();
    await redis?.kill();
  });

  it('a page whose process was killed while the other page chatted through the other process shows every message once, in order, when its process is back', async () => {
    const a = await chat(browser, `http://127.0.0.1:${one.port}`, 'killed');
    const b = await chat(browser, `http://127.0.0.1:${two.port}`, 'killed');
    for (const page of [a, b]) await page.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2, undefined, { timeout: 10_000 });
    const [nameA, nameB] = [await me(a), await me(b)];
    await say(b, 'before 1');
    await say(a, 'before 2');
    for (const page of [a, b]) await page.waitForFunction(() => ['before 1', 'before 2'].every((t) => document.querySelector('#log')?.textContent?.includes(t)), undefined, { timeout: 5000 });

    // SIGKILL a's process: a's connection drops without a close frame, and a retries by
    // itself while b chats through the other process.
    await one.kill();
    await a.waitForSelector('#text[disabled]', { timeout: 5000 });
    const away = ['while away 1', 'while away 2', 'while away 3', 'while away 4'];
    for (const t of away) await say(b, t);
    expect(await a.isDisabled('#text')).toBe(true);
    await one.start(); // the same port: a's page reconnects to the URL it has
    await a.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('recovered 4 messages sent while you were away'), undefined, { timeout: 25_000 });
    await a.waitForSelector('#text:not([disabled])', { timeout: 5000 });
    await say(b, 'after');
    await a.waitForFunction(() => document.querySelector('#log')?.textContent?.includes(': after'), undefined, { timeout: 5000 });
    await new Promise((r) => setTimeout(r, 200));

    const said = (l: string) => l.startsWith(`${nameA}: `) || l.startsWith(`${nameB}: `);
    const messages = [`${nameB}: before 1`, `${nameA}: before 2`, ...away.map((t) => `${nameB}: ${t}`), `${nameB}: after`];
    const log = await texts(a, '#log li');
    // Every message once, in order; the missed ones, then the recovered line, then the live one.
    expect(log.filter((l) => said(l) || l.startsWith('recovered') || l === GAP_LINE)).toEqual([
      ...messages.slice(0, 6),
      'recovered 4 messages sent while you were away',
      messages[6],
    ]);
    expect(await texts(a, '#log li.gap')).toEqual([]);
    // The connection was lost after what a saw and before what it missed.
    const lost = log.findIndex((l) => l.startsWith('connection lost'));
    expect(lost).toBeGreaterThan(log.indexOf(`${nameA}: before 2`));
    expect(lost).toBeLessThan(log.indexOf(`${nameB}: while away 1`));
    // The restarted process answered a's join with since: every missed message delivered.
    const metrics = await (await fetch(`http://127.0.0.1:${one.port}/metrics`)).text();
    expect(metrics.split('\n').filter((l) => l.startsWith('roomwire_recoveries_total{'))).toEqual(['roomwire_recoveries_total{result="recovered"} 1', 'roomwire_recoveries_total{result="missed"} 0']);
    // The page that stayed saw the same messages, and neither line.
    const bLog = await texts(b, '#log li');
    expect(bLog.filter(said)).toEqual(messages);
    expect(bLog.filter((l) => l.startsWith('recovered') || l === GAP_LINE)).toEqual([]);
    await a.close();
    await b.close();
  }, 60_000);
});
