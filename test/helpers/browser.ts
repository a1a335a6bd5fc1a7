/**
 * Debian's Chromium for the browser tests, driven by playwright-core. CI installs it and
 * sets ROOMWIRE_REQUIRE_BROWSER=1, so there a missing browser fails; elsewhere the browser
 * suites are skipped with the reason printed.
 */
import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';

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
