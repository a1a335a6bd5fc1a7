/**
 * The browser side in real headless Chromium (Debian's chromium via playwright-core):
 * two chat pages see each other and exchange messages, and the seed's client example
 * runs verbatim. CI installs chromium and sets ROOMWIRE_REQUIRE_BROWSER=1, so there a
 * missing browser fails; elsewhere these tests are skipped with the reason printed.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { hasBrowser, launchChromium } from '../helpers/browser';
import { startServer, type RunningServer } from '../../src/server/standalone';
import { ServerProcess } from '../helpers/process';


const SEED_EXAMPLE = readFileSync(new URL('./seed-client-example.js', import.meta.url), 'utf8');

describe.runIf(hasBrowser)('chat page in headless Chromium', () => {
  let browser: Browser;
  let server: RunningServer;
  let origin: string;

  beforeAll(async () => {
    browser = await launchChromium();
    server = await startServer({ env: { HOST: '127.0.0.1', PORT: '0' }, log: () => {} });
    origin = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  async function chat(room: string): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    await page.fill('#room', room);
    await page.click('#connect');
    await page.waitForSelector('#text:not([disabled])');
    return page;
  }
  const texts = (page: Page, selector: string) => page.$$eval(selector, (els) => els.map((e) => e.textContent ?? ''));

  it('two pages join a room, see each other in the user list and exchange messages', async () => {
    const a = await chat('lobby');
    const b = await chat('lobby');
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2);
    const [nameA, nameB] = await texts(a, '#userlist li');
    expect(await texts(b, '#userlist li')).toEqual([nameA, nameB]);

    await a.fill('#text', 'hello from a');
    await a.press('#text', 'Enter');
    await b.fill('#text', 'hi a, b here');
    await b.click('#send');
    for (const page of [a, b]) {
      await page.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('hi a, b here'));
    }
    expect(await texts(b, '#log li')).toEqual([`${nameB} joined lobby`, `${nameA}: hello from a`, `${nameB}: hi a, b here`]);

    await b.close();
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 1);
    expect((await texts(a, '#log li')).at(-1)).toBe(`${nameB} left lobby`);
    await a.close();
  });

  it('says who you are, checks the room name as you type, counts the bytes left, and explains a refused token', async () => {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    expect(await page.textContent('#hint')).toContain('Choose a room');
    const before = server.hub.stats();
    // A bad room never reaches the server.
    await page.fill('#room', 'bad room');
    expect(await page.textContent('#room-error')).toBe('room names are 1 to 64 characters from A-Z a-z 0-9 _ - . :');
    expect(await page.isDisabled('#connect')).toBe(true);
    await page.fill('#room', 'who');
    expect(await page.textContent('#room-error')).toBe('');
    await page.click('#connect');
    await page.waitForSelector('#text:not([disabled])');
    const after = server.hub.stats();
    expect(after.rejected.not_found).toBe(before.rejected.not_found);
    expect(after.connectionsAccepted).toBe(before.connectionsAccepted + 1);
    // Who you are, as the others see you.
    const me = await page.textContent('#me');
    const [name] = await texts(page, '#userlist li');
    expect(me).toBe(`You are ${name}.`);
    expect(name).toMatch(/^guest-[0-9a-f]{8}$/);
    // The server's limit (512 bytes by default), counted down as you type.
    await page.fill('#text', 'hello');
    expect(await page.textContent('#left')).toMatch(/^\d+ bytes left$/);
    await page.fill('#text', 'x'.repeat(500));
    expect(await page.textContent('#left')).toMatch(/^\d+ bytes too long \(the server allows 512\)$/);
    expect(await page.isDisabled('#send')).toBe(true);
    await page.close();

    // A refused token: the browser hides the 401, the page says what it can and stops.
    const refused = await browser.newPage();
    await refused.goto(`${origin}/`);
    await refused.fill('#token', 'not-a-token');
    await refused.click('#connect');
    await refused.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('refused: check the token'));
    await refused.waitForFunction(() => document.querySelector('#status')?.textContent === 'disconnected');
    const attempts = server.hub.stats().rejected.unauthorized;
    await new Promise((r) => setTimeout(r, 1500));
    expect(server.hub.stats().rejected.unauthorized).toBe(attempts);
    await refused.close();
  });

  it('runs the seed client example verbatim', async () => {
    const page = await browser.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    await page.goto(`${origin}/`);
    // The example dials ws://localhost:8080; point that one address at the test server
    // without changing a character of the example.
    await page.evaluate((port) => {
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(url: string | URL, protocols?: string | string[]) {
          super(String(url).replace('ws://localhost:8080', `ws://127.0.0.1:${port}`), protocols);
        }
      } as typeof WebSocket;
    }, server.port);
    await page.addScriptTag({ content: `${SEED_EXAMPLE}\nwindow.sendMessage = sendMessage;` });
    await expect.poll(() => logs.filter((l) => l.startsWith('Users in room:')).length).toBe(2);
    await page.evaluate(() => (window as unknown as { sendMessage(c: string): void }).sendMessage('hello from the seed example'));
    await expect.poll(() => logs.find((l) => l.endsWith(': hello from the seed example'))).toMatch(/^guest-[0-9a-f]{8}: hello from the seed example$/);
    expect(logs.filter((l) => l.endsWith('joined the room'))).toHaveLength(1);
    await page.close();
  });
});

describe.runIf(hasBrowser)('chat page on roomwire/client in headless Chromium, across a server restart', () => {
  let browser: Browser;
  let server: ServerProcess;

  beforeAll(async () => {
    browser = await launchChromium();
    server = await ServerProcess.start({ WEBSOCKET_MESSAGE_RATE: '100/s,100' });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.kill();
  });

  it('loads with no console error or failed request, chats, and both pages come back by themselves after the server restarts', async () => {
    const origin = `http://127.0.0.1:${server.port}`;
    const problems: string[] = [];
    const open = async () => {
      const page = await browser.newPage();
      page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
      page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()}: ${r.url()}`));
      await page.goto(`${origin}/`);
      expect(await page.evaluate(() => typeof (window as unknown as { roomwire?: { createClient?: unknown } }).roomwire?.createClient)).toBe('function');
      await page.fill('#room', 'restart');
      await page.click('#connect');
      await page.waitForSelector('#text:not([disabled])');
      return page;
    };
    const a = await open();
    const b = await open();
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2);
    await a.fill('#text', 'before the restart');
    await a.press('#text', 'Enter');
    await b.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('before the restart'));
    // Nothing went wrong while loading and chatting (Chromium logs each failed reconnect
    // itself later, so this is checked before the restart).
    expect(problems).toEqual([]);

    await server.kill();
    for (const page of [a, b]) await page.waitForSelector('#text[disabled]');
    await server.start();
    for (const page of [a, b]) await page.waitForSelector('#text:not([disabled])', { timeout: 15_000 });
    // Joined again by themselves: a message from b reaches a.
    await a.waitForFunction(() => document.querySelectorAll('#userlist li').length === 2, undefined, { timeout: 5000 });
    await b.fill('#text', 'after the restart');
    await b.press('#text', 'Enter');
    await a.waitForFunction(() => document.querySelector('#log')?.textContent?.includes('after the restart'));
    const log = await a.$$eval('#log li', (els) => els.map((e) => e.textContent ?? ''));
    expect(log.filter((l) => l.endsWith(': after the restart'))).toHaveLength(1);
    await a.close();
    await b.close();
  }, 60_000);
});
