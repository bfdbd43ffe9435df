// Drives imd-analyzer's page in headless Chromium (Debian's `chromium`,
// through playwright-core without its browser download), for
// analyzer/tests/page_browser.rs:
//
//   node page.cjs <node_modules> <page URL> <user> <password> <screenshot.png>
//
// Logs in with basic auth, waits until the page lists a firing alert with
// an Acknowledge button, saves a screenshot, clicks Acknowledge, waits for
// the page it leads back to, and prints one JSON object: the page's text
// before and after, and the alert row's text after.
'use strict';
const path = require('path');

async function main() {
  const [modules, url, user, password, screenshot] = process.argv.slice(2);
  const { chromium } = require(path.join(modules, 'playwright-core'));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({
      httpCredentials: { username: user, password },
      viewport: { width: 1280, height: 900 },
    });
    const page = await context.newPage();
    const button = 'tr[id^="alert-"] form[action="/alerts/ack"] button';
    // The alert fires a few seconds after start: reload until it shows
    // (the page also refreshes itself).
    const deadline = Date.now() + 60000;
    for (;;) {
      await page.goto(url, { waitUntil: 'load' });
      if (await page.locator(button).count() > 0) break;
      if (Date.now() > deadline) throw new Error('no alert with an Acknowledge button on ' + url);
      await page.waitForTimeout(1000);
    }
    const before = await page.locator('body').innerText();
    await page.screenshot({ path: screenshot, fullPage: true });
    const row = await page.locator('tr[id^="alert-"]').first().getAttribute('id');
    await Promise.all([
      page.waitForURL(/#alerts$/, { timeout: 30000 }),
      page.locator(button).first().click(),
    ]);
    const after = await page.locator('body').innerText();
    const rowText = await page.locator('#' + row).innerText();
    process.stdout.write(JSON.stringify({ before, after, row, rowText }) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
