/**
 * Debian's Chromium for the browser tests, driven by playwright-core. CI installs it and
 * sets ROOMWIRE_REQUIRE_BROWSER=1, so there a missing browser fails; elsewhere the browser
 * suites are skipped with the reason printed.
 */
import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import type { Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Whether Chromium is installed (throws when it must be and is not). */
export const hasBrowser = existsSync(CHROMIUM);
if (!hasBrowser) {
  if (process.env.ROOMWIRE_REQUIRE_BROWSER === '1') throw new Error(`${CHROMIUM} is missing and ROOMWIRE_REQUIRE_BROWSER=1`);
  console.warn(`browser tests skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);
}

/** Launch headless Chromium with the flags this machine's closed network needs. */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Hold a page's new WebSocket connections: installed before the page's scripts run, it
 * wraps `WebSocket` so that, between `hold()` and `release()`, a connection opened meanwhile
 * reports its `open` only at `release()` (the server has the connection; the page's client
 * waits, as if the network were slow to come back). For "while this page was away" tests.
 */
export async function connectionGate(page: Page): Promise<{ hold(): Promise<void>; release(): Promise<void> }> {
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    const onopen = Object.getOwnPropertyDescriptor(Native.prototype, 'onopen') as PropertyDescriptor;
    let held: Promise<void> | null = null;
    let open: (() => void) | null = null;
    (window as unknown as { __gate: unknown }).__gate = {
      hold() {
        held = new Promise<void>((r) => (open = r));
      },
      release() {
        const o = open;
        held = open = null;
        o?.();
      },
    };
    window.WebSocket = class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        const gate = held;
        if (gate === null) return;
        Object.defineProperty(this, 'onopen', {
          configurable: true,
          get: () => onopen.get!.call(this),
          set: (fn: ((ev: Event) => void) | null) => onopen.set!.call(this, fn && ((ev: Event) => void gate.then(() => fn.call(this, ev)))),
        });
      }
    } as typeof WebSocket;
  });
  const gate = (action: 'hold' | 'release') => page.evaluate((a) => (window as unknown as { __gate: Record<string, () => void> }).__gate[a]!(), action);
  return { hold: () => gate('hold'), release: () => gate('release') };
}
