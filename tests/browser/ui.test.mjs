// Drives the web UI of a running Sluice demo in headless Chromium, as a
// user would: the match list updates live, a match replays, the SQL
// console answers. Screenshots go to $SCREENSHOTS.
//
//   SLUICE_URL=http://127.0.0.1:8088 SCREENSHOTS=target/ui node ui.test.mjs

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.SLUICE_URL || 'http://127.0.0.1:8088';
const shots = process.env.SCREENSHOTS || 'screenshots';
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const problems = [];
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
let expectFailures = false;
page.on('console', (message) => {
  // Failed requests are reported with their URL below.
  if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
    problems.push(`console error: ${message.text()}`);
  }
});
page.on('response', async (response) => {
  if (response.status() >= 400 && !expectFailures) {
    const sent = response.request().postData() || '';
    problems.push(`HTTP ${response.status()} for ${response.url()} ${sent}: ${(await response.text().catch(() => '')).slice(0, 300)}`);
  }
});
page.setDefaultTimeout(30_000);

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    await page.screenshot({ path: join(shots, `failed-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
    console.log(`FAIL ${name}: ${error.message}`);
    throw error;
  }
}

try {
  await step('match list shows matches and updates live', async () => {
    await page.goto(`${base}/#/matches`);
    const rows = page.locator('#match-list tbody tr');
    await rows.first().waitFor();
    const before = await page.locator('#match-list').innerText();
    // No reload and no click: the list must change by itself as the
    // generator's events reach the match_history projection.
    await page.waitForFunction(
      (previous) => document.querySelector('#match-list')?.innerText !== previous,
      before,
      { timeout: 30_000, polling: 250 },
    );
    await page.screenshot({ path: join(shots, 'matches.png') });
  });

  await step('filters narrow the list', async () => {
    await page.selectOption('select[aria-label="Status"]', 'FINISHED');
    await page.waitForFunction(() => {
      const badges = [...document.querySelectorAll('#match-list tbody .badge')].map((b) => b.textContent);
      return badges.length > 0 && badges.every((b) => b !== 'Live');
    });
  });

  await step('a match opens and replays its events', async () => {
    await page.locator('#match-list tbody tr a').first().click();
    await page.waitForURL(/#\/match\//);
    await page.locator('#replay .replay-event').nth(2).waitFor();
    await page.getByRole('button', { name: 'Skip to end' }).click();
    await page.locator('#replay .ending').waitFor();
    const events = await page.locator('#replay .replay-event').count();
    if (events < 5) throw new Error(`only ${events} replayed events`);
    const first = await page.locator('#replay .replay-event').first().innerText();
    if (!first.includes('Match created')) throw new Error(`replay starts with "${first}"`);
    await page.screenshot({ path: join(shots, 'match-replay.png'), fullPage: true });
  });

  await step('the SQL console runs a pull query into a table', async () => {
    await page.goto(`${base}/#/console`);
    await page.fill('#sql', 'SELECT mode, COUNT(*) AS matches FROM match_history GROUP BY mode ORDER BY mode;');
    await page.click('#run');
    await page.locator('#result tbody tr').nth(2).waitFor();
    const text = await page.locator('#result').innerText();
    for (const expected of ['MODE', 'MATCHES', 'blitz', 'classic', 'duel']) {
      if (!text.includes(expected)) throw new Error(`result lacks ${expected}: ${text}`);
    }
    await page.screenshot({ path: join(shots, 'console.png') });
  });

  await step('the SQL console streams a push query and stops it', async () => {
    await page.fill('#sql', 'SELECT * FROM match_events EMIT CHANGES;');
    await page.click('#run');
    await page.locator('#result tbody tr').first().waitFor();
    await page.getByRole('button', { name: 'Stop' }).click();
    await page.waitForFunction(() => document.querySelector('#run') && !document.querySelector('#run').disabled);
  });

  await step('a bad query shows its error', async () => {
    expectFailures = true;
    await page.fill('#sql', 'SELECT nope FROM match_history;');
    await page.click('#run');
    await page.locator('#result .error').waitFor();
    expectFailures = false;
  });

  for (const [view, ready] of [
    ['leaderboards', '#player-leaderboard tbody tr'],
    ['analytics', '#chart-matches-per-minute svg path'],
    ['agents', '#sessions tbody tr'],
    ['projections', 'main tbody tr'],
    ['processing-log', '#log-latest tbody tr'],
    ['metrics', '#metric-queries tbody tr'],
  ]) {
    await step(`${view} renders`, async () => {
      await page.goto(`${base}/#/${view}`);
      await page.locator(ready).first().waitFor();
      await page.waitForTimeout(300);
      await page.screenshot({ path: join(shots, `${view}.png`), fullPage: true });
    });
  }
  if (problems.length) throw new Error(problems.join('\n'));
  console.log('ui: all steps passed');
} catch (error) {
  console.error(error.message);
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
