/**
 * examples/auth-chat.mjs in headless Chromium: log in, connect to /ws/auth/{room} with
 * the token (query or cookie), refresh it in-band, and the private-room hook.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { hasBrowser, launchChromium } from '../helpers/browser';


describe.runIf(hasBrowser)('auth-chat example in headless Chromium', () => {
  let browser: Browser;
  let child: ChildProcess;
  let origin: string;

  beforeAll(async () => {
    child = spawn(process.execPath, ['examples/auth-chat.mjs'], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', TOKEN_TTL: '11s' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    origin = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`example exited with ${code}`)));
    });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    child?.kill('SIGTERM');
  });

  async function connect(name: string, room: string, options: { vip?: boolean; cookie?: boolean } = {}): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    await page.fill('#name', name);
    await page.fill('#room', room);
    if (options.vip) await page.check('#vip');
    if (options.cookie) await page.check('#cookie');
    await page.click('#login button');
    return page;
  }
  const log = (page: Page) => page.$$eval('#log li', (els) => els.map((e) => e.textContent ?? ''));

  it('connects with the token, chats, and refreshes the token in-band before it expires', async () => {
    const page = await connect('alice', 'lobby');
    await page.waitForSelector('#text:not([disabled])');
    await page.fill('#text', 'hi');
    await page.press('#text', 'Enter');
    await expect.poll(() => log(page)).toContain('alice: hi');
    // roomwire/client refreshes about a tenth of the token's life ahead of its expiry (11 s here).
    await expect.poll(() => log(page), { timeout: 12_000 }).toContainEqual(expect.stringMatching(/^token refreshed; expires /));
    expect(await log(page)).toEqual(expect.arrayContaining(['alice joined lobby', 'in lobby: alice']));
    // In-band: the connection never dropped.
    expect(await page.textContent('#status')).toBe('connected');
    expect((await log(page)).filter((l) => l.startsWith('alice joined'))).toHaveLength(1);
    await page.close();
  }, 30_000);

  it('connects with the token as a cookie', async () => {
    const page = await connect('carol', 'lobby', { cookie: true });
    await expect.poll(() => log(page)).toContain('carol joined lobby');
    await page.close();
  });

  it('keeps private: rooms for VIP tokens (canJoin hook)', async () => {
    const plain = await connect('bob', 'private:club');
    await expect.poll(() => log(plain)).toEqual(['error: not allowed (forbidden)']);
    // Refused: the page says so and offers no Send.
    expect(await plain.textContent('#status')).toBe('not in the room');
    expect(await plain.isDisabled('#send')).toBe(true);
    const vip = await connect('vera', 'private:club', { vip: true });
    await expect.poll(() => log(vip)).toEqual(['vera joined private:club', 'in private:club: vera']);
    await plain.close();
    await vip.close();
  });
});
