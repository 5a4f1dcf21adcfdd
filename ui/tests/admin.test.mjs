// The web admin in a real browser (Debian's chromium driven by
// playwright-core) against a running master + worker on real etcd and a
// MongoDB-wire server. Started by ui/run-e2e.sh, which passes RCRON_UI_URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const base = process.env.RCRON_UI_URL;
const artifacts = process.env.RCRON_UI_ARTIFACTS || 'target/ui-artifacts';
if (!base) throw new Error('RCRON_UI_URL is not set: run ui/run-e2e.sh through deploy/test-env.sh (deploy/test.sh does)');
mkdirSync(artifacts, { recursive: true });

test('the admin creates, watches, kills and deletes jobs through the REST API', { timeout: 180_000 }, async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const consoleErrors = [];
  const foreign = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  page.on('dialog', (d) => d.accept());
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`); });
  const shot = (name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });

  try {
    await page.goto(`${base}/`);
    await page.waitForSelector('#jobs-empty:not(.d-none)');

    // Create a job through the dialog: an invalid expression is refused first.
    await page.click('#new-job');
    await page.fill('#f-name', 'ui-job');
    await page.fill('#f-command', 'echo from-ui');
    await page.fill('#f-cron', '* * *');
    await page.waitForSelector('#f-cron.is-invalid');
    assert.match(await page.textContent('#cron-error'), /expected 5 fields/);
    await page.click('#save-job');
    await page.waitForSelector('#f-cron.is-invalid');
    assert.match(await page.textContent('#cron-error'), /cron/);
    await page.fill('#f-cron', '*/2 * * * * * *');
    await page.waitForFunction(() => document.querySelector('#cron-preview').textContent.startsWith('Next runs'));
    assert.equal(await page.locator('#f-cron.is-invalid').count(), 0);
    await shot('job-dialog');
    await page.click('#save-job');
    await page.waitForSelector('tr[data-job="ui-job"]');
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    const row = await page.textContent('tr[data-job="ui-job"]');
    assert.match(row, /echo from-ui/);
    assert.match(row, /\*\/2 \* \* \* \* \* \*/);
    await shot('jobs');

    // Its logs appear, with the output in a panel.
    await page.click('tr[data-job="ui-job"] a');
    await page.waitForSelector('#logs-table tr[data-status="success"]', { timeout: 20_000 });
    await page.click('#logs-table tr[data-status="success"]');
    assert.match(await page.textContent('#log-output-text'), /from-ui/);
    await shot('logs');

    // A long job: seen running on the workers page, then killed.
    await page.goto(`${base}/#/jobs`);
    await page.click('#new-job');
    await page.fill('#f-name', 'ui-long');
    await page.fill('#f-command', 'sleep 300');
    await page.fill('#f-cron', '*/2 * * * * * *');
    await page.click('#save-job');
    await page.waitForSelector('tr[data-job="ui-long"]');
    await page.goto(`${base}/#/workers`);
    await page.waitForFunction(() => document.querySelector('#workers-table tbody')?.textContent.includes('ui-long'), null, { timeout: 20_000 });
    await shot('workers');
    // Kill that one run from the workers page (by its id).
    const [killed] = await Promise.all([
      page.waitForResponse((r) => /\/api\/v1\/runs\/[^/]+\/kill$/.test(new URL(r.url()).pathname)),
      page.click('#workers-table li:has-text("ui-long") button.kill-run'),
    ]);
    assert.equal(killed.status(), 202);
    await page.goto(`${base}/#/logs?job=ui-long`);
    await page.selectOption('#log-status', 'killed');
    await page.waitForSelector('#logs-table tr[data-status="killed"]', { timeout: 20_000 });
    await page.goto(`${base}/#/jobs`);
    await page.click('tr[data-job="ui-long"] button[data-action="pause"]');
    await page.waitForSelector('tr[data-job="ui-long"] button[data-action="resume"]');
    await page.click('tr[data-job="ui-long"] button[data-action="kill"]');
    await page.goto(`${base}/#/logs?job=ui-long`);
    await page.selectOption('#log-status', 'killed');
    await page.waitForSelector('#logs-table tr[data-status="killed"]', { timeout: 20_000 });

    // Delete with confirmation.
    await page.goto(`${base}/#/jobs`);
    await page.click('tr[data-job="ui-job"] button[data-action="delete"]');
    await page.waitForSelector('tr[data-job="ui-job"]', { state: 'detached' });
    assert.equal(await page.locator('tr[data-job="ui-long"]').count(), 1);

    // Audit: the changes made above, newest first, by the anonymous key.
    await page.goto(`${base}/#/audit`);
    await page.waitForSelector('#audit-table tr[data-action="delete"]');
    assert.match(await page.textContent('#audit-table'), /ui-job/);
    assert.match(await page.textContent('#audit-table'), /anonymous/);
    assert.equal(await page.locator('#audit-table tr[data-action="pause"]').count(), 1);
    await shot('audit');

    // Cluster: the leader and healthy dependencies.
    await page.goto(`${base}/#/cluster`);
    await page.waitForSelector('#masters .badge');
    assert.match(await page.textContent('#health'), /etcd/);
    assert.equal(await page.locator('#health .text-bg-danger').count(), 0);
    await shot('cluster');
  } catch (e) {
    await shot('failure').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  // Chromium logs every 4xx answer as a console error; the only ones allowed
  // are the 400s the invalid expression deliberately provoked (and the page
  // showed next to the field).
  const provoked = /Failed to load resource: the server responded with a status of 400/;
  assert.deepEqual(consoleErrors.filter((m) => !provoked.test(m)), [], 'no console errors');
  assert.ok(failed.length >= 1, 'the invalid expression was refused by the API');
  for (const f of failed) assert.match(f, /^400 POST \/api\/v1\/(cron\/preview|jobs)$/, `unexpected failed request ${f}`);
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});
