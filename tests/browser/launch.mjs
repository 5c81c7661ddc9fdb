// What every browser script here shares: Debian's chromium, launched the same way.

import { chromium } from 'playwright-core';

/** Chromium headless, with nothing running in the background that could reach the network.
 *  Playwright's launch() gives the browser a fresh temporary user-data-dir of its own. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.PARLEY_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
}

export function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

export const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);

/** Runs `main`, exiting 0 when it resolves and 1 (with the error) when it throws. */
export async function run(name, main) {
  try {
    await main();
    log(`${name} passed`);
    process.exit(0);
  } catch (e) {
    console.error(`${name} FAILED: ${e.stack || e}`);
    process.exit(1);
  }
}
