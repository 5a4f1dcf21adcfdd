// Lists the server pages, in a real browser against a running master +
// worker: 130 jobs over pages of 50 (Next/Previous by cursor), the search
// and the paused filter sent to the API, and the logs walked with Older and
// Newer by keyset. Started by ui/run-e2e.sh, which runs one file at a
// time: this one counts jobs, so no other test may add any meanwhile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { base, openAdmin, eventually } from './harness.mjs';

// A request to the REST API from the test itself (no Origin: as rcronctl).
async function call(method, path, body) {
  const r = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// Runs `fn` over `items`, `width` at a time.
async function inBatches(items, width, fn) {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

const shownNames = (page) => page.locator('#jobs-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.job));
const text = (page, sel) => page.locator(sel).textContent();
// Waits until the jobs summary says `total` (e.g. "130 jobs") and the first row is `first`.
async function jobsShown(page, total, first) {
  await page.waitForFunction(([t, f]) => document.querySelector('#jobs-total').textContent === t
    && (f === null ? !document.querySelector('#jobs-table tbody tr') : document.querySelector('#jobs-table tbody tr')?.dataset.job === f), [total, first]);
}

// pg-000 … pg-129: every 10th runs `echo needle`, every 4th is paused, and
// three are placed on a label no worker carries.
const N = 130;
const names = Array.from({ length: N }, (_, i) => `pg-${String(i).padStart(3, '0')}`);
const spec = (name, i) => ({
  name,
  command: i % 10 === 0 ? `echo needle ${i}` : 'true',
  cronExpr: '@yearly',
  disabled: i % 4 === 0,
  ...(i % 50 === 5 ? { target: { labels: { tier: 'pg' } } } : {}),
});
const range = (from, to) => names.slice(from, to);
const where = (pred) => names.filter((_, i) => pred(i));

test('the jobs list pages, searches and filters on the server, 50 jobs a page', { timeout: 180_000 }, async () => {
  // The counts below are of this test's jobs: any a failed test left
  // behind go first (the files run one at a time: no test is using them).
  const { jobs: leftover } = await call('GET', '/jobs?limit=1000');
  await inBatches(leftover, 10, (j) => call('DELETE', `/jobs/${encodeURIComponent(j.name)}`));
  await inBatches(names, 10, (name) => call('POST', '/jobs', spec(name, names.indexOf(name))));
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  // What the admin asks for: the list pages and the per-job newest records.
  const lists = [];
  const lastRuns = [];
  const logScans = [];
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.pathname === '/api/v1/jobs') lists.push(url.searchParams);
    const m = /^\/api\/v1\/jobs\/([^/]+)\/logs$/.exec(url.pathname);
    if (m) lastRuns.push([decodeURIComponent(m[1]), url.searchParams.get('limit')]);
    if (url.pathname === '/api/v1/logs') logScans.push(url.search);
  });

  try {
    await page.goto(`${base}/#/jobs`);
    await jobsShown(page, '130 jobs', 'pg-000');
    assert.deepEqual(await shownNames(page), range(0, 50));
    assert.equal(await text(page, '#jobs-range'), '1–50 of');
    assert.equal(await page.isDisabled('#jobs-prev'), true);
    assert.equal(await page.isDisabled('#jobs-next'), false);
    const first = lists.at(-1);
    assert.equal(first.get('limit'), '50');
    assert.equal(first.get('cursor'), null);
    // Every row as before: link, badges, actions.
    const row = page.locator('tr[data-job="pg-004"]');
    assert.equal(await row.locator('a.job-link').getAttribute('href'), '#/job?name=pg-004');
    assert.equal(await row.locator('button[data-action="resume"]').count(), 1, 'a paused job offers Resume');
    assert.equal(await page.locator('tr[data-job="pg-005"] .unschedulable').count(), 1, 'no worker carries tier=pg');
    assert.deepEqual(await page.locator('tr[data-job="pg-001"] button').allTextContents(), ['Edit', 'Run', 'Kill', 'Pause', 'Delete']);
    // Nothing runs: Kill is offered on no row.
    assert.equal(await page.locator('#jobs-table button[data-action="kill"]:enabled').count(), 0);
    // "Last run": from the page itself (`lastRun=true`, the server's per-job
    // summary), never a read of each job's log; none of these ever ran.
    assert.equal(first.get('lastRun'), 'true');
    await page.waitForFunction(() => [...document.querySelectorAll('#jobs-table td.last-run')].every((td) => td.textContent === '–'));
    assert.deepEqual(lastRuns, [], 'no log read per job');
    await shot('jobs-paged');

    // Next, by the last name shown; the last page holds the 30 left.
    await page.click('#jobs-next');
    await jobsShown(page, '130 jobs', 'pg-050');
    assert.deepEqual(await shownNames(page), range(50, 100));
    assert.equal(lists.at(-1).get('cursor'), 'pg-049');
    assert.equal(await text(page, '#jobs-range'), '51–100 of');
    await page.click('#jobs-next');
    await jobsShown(page, '130 jobs', 'pg-100');
    assert.deepEqual(await shownNames(page), range(100, 130));
    assert.equal(await text(page, '#jobs-range'), '101–130 of');
    assert.equal(await page.isDisabled('#jobs-next'), true, 'the last page');
    assert.equal(await page.isDisabled('#jobs-prev'), false);
    await shot('jobs-last-page');
    // Previous walks back the cursors kept.
    await page.click('#jobs-prev');
    await jobsShown(page, '130 jobs', 'pg-050');
    await page.click('#jobs-prev');
    await jobsShown(page, '130 jobs', 'pg-000');
    assert.equal(await page.isDisabled('#jobs-prev'), true);

    // The search is sent as `q` once typing pauses, and counts every match.
    const typedFrom = lists.length;
    await page.locator('#job-search').pressSequentially('PG-1', { delay: 40 });
    await jobsShown(page, '30 jobs', 'pg-100');
    assert.deepEqual(await shownNames(page), range(100, 130));
    assert.deepEqual(lists.slice(typedFrom).map((q) => q.get('q')).filter(Boolean), ['PG-1'], 'one request for the typed text');
    assert.equal(await page.isDisabled('#jobs-next'), true);
    // Commands too.
    await page.fill('#job-search', 'needle');
    await jobsShown(page, '13 jobs', 'pg-000');
    assert.deepEqual(await shownNames(page), where((i) => i % 10 === 0));
    await page.fill('#job-search', 'no-such-job');
    await jobsShown(page, '0 jobs', null);
    assert.equal(await page.isVisible('#jobs-none-match'), true);
    assert.equal(await page.isVisible('#jobs-empty'), false);
    await page.fill('#job-search', '');
    await jobsShown(page, '130 jobs', 'pg-000');

    // Paused only: 33 jobs, each offering Resume.
    await page.selectOption('#job-enabled', 'false');
    await jobsShown(page, '33 jobs', 'pg-000');
    assert.deepEqual(await shownNames(page), where((i) => i % 4 === 0));
    assert.equal(lists.at(-1).get('enabled'), 'false');
    assert.equal(await page.locator('#jobs-table button[data-action="resume"]').count(), 33);
    assert.equal(await page.isDisabled('#jobs-next'), true);
    // With a search: both apply.
    await page.fill('#job-search', 'pg-1');
    await jobsShown(page, '8 jobs', 'pg-100');
    assert.deepEqual(await shownNames(page), where((i) => i >= 100 && i % 4 === 0));
    await page.selectOption('#job-enabled', 'true');
    await jobsShown(page, '22 jobs', 'pg-101');
    assert.deepEqual(await shownNames(page), where((i) => i >= 100 && i % 4 !== 0));
    await shot('jobs-filtered');
    await page.fill('#job-search', '');
    await page.selectOption('#job-enabled', '');
    await jobsShown(page, '130 jobs', 'pg-000');

    // A label badge filters on it (`label`), until its chip is clicked.
    await page.click('tr[data-job="pg-005"] .badge[data-label="tier"]');
    await jobsShown(page, '3 jobs', 'pg-005');
    assert.deepEqual(await shownNames(page), ['pg-005', 'pg-055', 'pg-105']);
    assert.equal(lists.at(-1).get('label'), 'tier=pg');
    assert.match(await text(page, '#job-label-filter'), /tier=pg/);
    await page.click('#job-label-filter');
    await jobsShown(page, '130 jobs', 'pg-000');
    assert.equal(await page.isVisible('#job-label-filter'), false);

    // Pausing from the second page keeps that page.
    await page.click('#jobs-next');
    await jobsShown(page, '130 jobs', 'pg-050');
    await page.click('tr[data-job="pg-051"] button[data-action="pause"]');
    await page.waitForSelector('tr[data-job="pg-051"] button[data-action="resume"]');
    assert.equal((await call('GET', '/jobs/pg-051')).disabled, true);
    assert.equal(await text(page, '#jobs-range'), '51–100 of');
    assert.deepEqual(logScans, [], 'the jobs list reads no log of every job');
  } catch (e) {
    await shot('failure-jobs-paging').catch(() => {});
    throw e;
  } finally {
    await browser.close();
    await inBatches(names, 10, (name) => call('DELETE', `/jobs/${name}`));
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('the logs page walks older and newer pages by keyset, and says 10,000+ when the count is capped', { timeout: 180_000 }, async () => {
  const job = 'pg-runs';
  const RUNS = 25;
  await call('POST', '/jobs', { name: job, command: 'echo run', cronExpr: '@yearly', concurrency: 'allow' });
  for (let i = 0; i < RUNS; i++) await call('POST', `/jobs/${job}/run`, {});
  const all = await eventually(`${RUNS} runs of ${job}`, async () => {
    const p = await call('GET', `/logs?job=${job}&limit=100`);
    return p.total >= RUNS && p.logs.every((l) => l.status === 'success') && p;
  }, 60_000);
  assert.equal(all.total, RUNS);
  const keyOf = (l) => `${l.runId}-${l.attempt}`;
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  const logReads = [];
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.pathname === '/api/v1/logs') logReads.push(url.searchParams);
  });
  const shownRuns = () => page.locator('#logs-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.run));
  const summary = (want) => page.waitForFunction((w) => document.querySelector('#log-summary').textContent === w, want);

  try {
    await page.goto(`${base}/#/logs?job=${job}`);
    await summary(`1–20 of ${RUNS}, newest first`);
    const newest = await shownRuns();
    assert.deepEqual(newest, all.logs.slice(0, 20).map(keyOf), 'the newest 20, newest first');
    assert.equal(await page.isDisabled('#log-newer'), true);
    assert.equal(await page.isDisabled('#log-older'), false);
    const firstRead = logReads.at(-1);
    assert.equal(firstRead.get('before'), null);

    // Older: the page after the last record shown (`before`, not `skip`).
    await page.click('#log-older');
    await summary(`21–${RUNS} of ${RUNS}, newest first`);
    const older = await shownRuns();
    assert.deepEqual(older, all.logs.slice(20).map(keyOf));
    const last = all.logs[19];
    assert.equal(logReads.at(-1).get('before'), `${last.startTime}.${last.runId}.${last.attempt}`);
    assert.equal(logReads.at(-1).get('skip'), null);
    assert.equal(await page.isDisabled('#log-older'), true, 'the oldest page');
    assert.equal(await page.isDisabled('#log-newer'), false);
    await shot('logs-older');
    // Newer: back to the first page.
    await page.click('#log-newer');
    await summary(`1–20 of ${RUNS}, newest first`);
    assert.deepEqual(await shownRuns(), newest);
    assert.equal(await page.isDisabled('#log-newer'), true);

    // A count beyond the cap: the API says `totalCapped`, the page "10,000+".
    await page.route((url) => url.pathname === '/api/v1/logs', async (route) => {
      const response = await route.fetch();
      const json = { ...(await response.json()), total: 10_000, totalCapped: true };
      await route.fulfill({ response, json });
    });
    await page.selectOption('#log-status', 'success');
    await summary('1–20 of 10,000+, newest first');
    await shot('logs-capped');
    await page.unrouteAll();

    // The jobs list shows the job's newest record (the server's per-job
    // summary), linked to that run in the logs.
    await page.goto(`${base}/#/jobs`);
    const lastRun = page.locator(`tr[data-job="${job}"] td.last-run a.runs-link`);
    await lastRun.waitFor();
    assert.equal(await lastRun.textContent(), 'success');
    assert.equal(await lastRun.getAttribute('href'), `#/logs?job=${job}&run=${encodeURIComponent(all.logs[0].runId)}`);
  } catch (e) {
    await shot('failure-logs-paging').catch(() => {});
    throw e;
  } finally {
    await browser.close();
    await call('DELETE', `/jobs/${job}`);
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});
