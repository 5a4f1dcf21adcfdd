// The admin as an operator console, in a real browser against a running
// master + worker: the dashboard (a failing and a running job, the runs
// per minute and per 15 minutes charted, the cluster's health), a run's
// output streamed while it runs, a job's page (its last runs charted as
// bars coloured by status, success rate and p50/p95 per day), Kill only
// for running jobs and confirmed, the logs' filters, and every page at
// 800 px without sideways scrolling, photographed (light and dark) into
// the artifacts folder. Started by ui/run-e2e.sh.
//
// Needs GET /api/v1/dashboard, /jobs/{name}/stats, the logs' worker/from/to
// filters and /runs/{runId}/output/stream from the master.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { base, artifacts, openAdmin, eventually } from './harness.mjs';

const shots = `${artifacts}/console`;
mkdirSync(shots, { recursive: true });
const path = (r) => new URL(r.url()).pathname;

async function call(method, p, body) {
  const r = await fetch(`${base}/api/v1${p}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const remove = (names) => Promise.all(names.map((n) => fetch(`${base}/api/v1/jobs/${n}`, { method: 'DELETE' })));

// What Chart.js drew on a canvas: its points per dataset, its colours, and
// whether any pixel of the canvas is painted.
const chartOf = (page, sel) => page.evaluate((s) => {
  const canvas = document.querySelector(s);
  const chart = Chart.getChart(canvas);
  if (!chart) return null;
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i]) painted++;
  return {
    points: chart.data.datasets.map((_, i) => chart.getDatasetMeta(i).data.length),
    values: chart.data.datasets.map((d) => d.data),
    colors: chart.data.datasets.map((d) => d.backgroundColor),
    tickColor: chart.options.scales.x.ticks.color,
    painted,
  };
}, sel);
const cssVar = (page, name) => page.evaluate((n) => getComputedStyle(document.documentElement).getPropertyValue(n).trim(), name);
// The page is no wider than the window: nothing scrolls sideways.
const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

test('the dashboard shows a failing and a running job, charts runs per minute, and Kill is confirmed', { timeout: 180_000 }, async () => {
  const jobs = ['ui-fail', 'ui-busy', 'ui-idle'];
  await remove(jobs);
  await call('POST', '/jobs', { name: 'ui-fail', command: 'echo boom; exit 3', cronExpr: '*/2 * * * * * *' });
  await call('POST', '/jobs', { name: 'ui-busy', command: 'sleep 120', cronExpr: '*/2 * * * * * *', concurrency: 'forbid' });
  await call('POST', '/jobs', { name: 'ui-idle', command: 'true', cronExpr: '@yearly' });
  const dialogs = [];
  let answer = 'dismiss';
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin({
    viewport: { width: 1366, height: 768 },
    onDialog: (d) => { dialogs.push(d.message()); return answer === 'accept' ? d.accept() : d.dismiss(); },
  });
  const kills = [];
  page.on('request', (r) => { if (r.method() === 'POST' && /\/kill$/.test(path(r))) kills.push(path(r)); });
  const polls = [];
  page.on('request', (r) => { if (r.url().startsWith(base) && path(r).startsWith('/api/')) polls.push([Date.now(), path(r), new URL(r.url()).search]); });

  try {
    // Kill: only for a running job, and only once confirmed.
    await page.goto(`${base}/#/jobs`);
    await page.waitForSelector('tr[data-job="ui-busy"][data-running="true"]', { timeout: 20_000 });
    assert.equal(await page.isDisabled('tr[data-job="ui-idle"] button[data-action="kill"]'), true, 'a job not running offers no Kill');
    assert.equal(await page.isDisabled('tr[data-job="ui-busy"] button[data-action="kill"]'), false);
    assert.equal(await page.textContent('tr[data-job="ui-busy"] td.last-run'), 'running');
    await page.click('tr[data-job="ui-busy"] button[data-action="kill"]');
    await eventually('the confirmation', () => dialogs.length === 1);
    assert.match(dialogs[0], /^Kill the running run of ui-busy\?/);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(kills, [], 'dismissed: nothing is killed');
    answer = 'accept';
    const [killed] = await Promise.all([
      page.waitForResponse((r) => path(r) === '/api/v1/jobs/ui-busy/kill'),
      page.click('tr[data-job="ui-busy"] button[data-action="kill"]'),
    ]);
    assert.equal(killed.status(), 202);
    assert.equal(dialogs.length, 2);
    await eventually('a killed run of ui-busy', async () => (await call('GET', '/logs?job=ui-busy&status=killed&limit=1')).logs.length > 0);
    // The job page of a job not running: Kill disabled too.
    await page.goto(`${base}/#/job?name=ui-idle`);
    await page.waitForFunction(() => document.querySelector('#job-title').textContent === 'ui-idle' && !document.querySelector('#job-run').disabled);
    assert.equal(await page.isDisabled('#job-kill'), true);

    await eventually('a failed run of ui-fail', async () => (await call('GET', '/logs?job=ui-fail&status=failed&limit=1')).logs.length > 0, 30_000);
    // The landing page is the dashboard.
    await page.goto(`${base}/`);
    await page.waitForSelector('#page-dashboard:not(.d-none)');
    await page.waitForSelector('#dash-failing tr[data-job="ui-fail"]', { timeout: 20_000 });
    assert.match(await page.textContent('#dash-failing tr[data-job="ui-fail"]'), /failed/);
    const running = page.locator('#dash-running tr[data-job="ui-busy"]');
    await running.waitFor({ timeout: 20_000 });
    assert.match(await running.locator('a.live-link').getAttribute('href'), /^#\/run\?id=[^&]+&job=ui-busy$/);
    assert.match(await running.locator('td.elapsed').textContent(), /\d/);
    // Health, and the alert delivery: this cluster has no alert sink.
    assert.match(await page.textContent('#dash-etcd'), /ok/);
    assert.match(await page.textContent('#dash-mongo'), /ok/);
    assert.notEqual((await page.textContent('#dash-leader')).trim(), '');
    assert.match(await page.textContent('#dash-alerts .no-sink'), /No alert sink is configured/);
    assert.match(await page.textContent('#dash-alerts .alert-counters'), /sent \d+.*failed \d+.*suppressed \d+/);
    assert.match(await page.textContent('#dash-missed'), /\d+ in the last hour/);
    // Workers' load against their capacity.
    assert.ok(await page.locator('#dash-workers [data-worker]').count() >= 1);
    assert.match(await page.textContent('#dash-workers [data-worker] .load'), /^\d+ \/ (\d+|∞)$/);

    // The charts: a bar per bucket of the server's answer, failures drawn.
    const d = await call('GET', '/dashboard');
    assert.equal(d.hour.bucketSecs, 60);
    assert.equal(d.day.bucketSecs, 900);
    await page.waitForFunction(() => document.querySelector('#chart-hour')?.dataset.points);
    const hour = await chartOf(page, '#chart-hour');
    const day = await chartOf(page, '#chart-day');
    for (const [c, series, name] of [[hour, d.hour, 'hour'], [day, d.day, 'day']]) {
      assert.ok(c, `the ${name} chart is drawn`);
      assert.ok(series.buckets.length > 0, `the ${name} has buckets`);
      assert.deepEqual(c.points, [series.buckets.length, series.buckets.length, series.buckets.length], `${name}: a bar per bucket in each series`);
      assert.ok(c.painted > 1000, `${name}: the canvas is painted (${c.painted} pixels)`);
      assert.ok(c.values[1].some((v) => v > 0), `${name}: ui-fail's failures are drawn`);
    }
    await page.screenshot({ path: `${shots}/dashboard-light.png` });

    // Dark: the page and the charts follow the theme.
    await page.click('#theme-toggle');
    assert.equal(await page.getAttribute('html', 'data-bs-theme'), 'dark');
    const dark = await chartOf(page, '#chart-hour');
    assert.notEqual(dark.tickColor, hour.tickColor, 'the axes are redrawn in the dark theme');
    assert.equal(dark.tickColor, await cssVar(page, '--bs-secondary-color'));
    await page.screenshot({ path: `${shots}/dashboard-dark.png` });
    await page.click('#theme-toggle');

    // Polling: the page shown only, no 500-record reads.
    const dashPolls = polls.filter(([, p]) => p === '/api/v1/dashboard');
    assert.ok(dashPolls.length >= 1);
    assert.ok(polls.every(([, , q]) => !/limit=500/.test(q)), 'no 500-record read');
  } catch (e) {
    await shot('failure-console-dashboard').catch(() => {});
    throw e;
  } finally {
    await browser.close();
    await remove(jobs);
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('a run\'s output streams to the browser while it runs', { timeout: 120_000 }, async () => {
  const job = 'ui-tick';
  await remove([job]);
  // Each line carries when it was printed (ms), to measure when it shows.
  await call('POST', '/jobs', { name: job, command: 'for i in $(seq 1 15); do echo tick-$i $(date +%s%3N); sleep 1; done', cronExpr: '@yearly', concurrency: 'allow' });
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin({ viewport: { width: 1366, height: 768 } });
  const text = (sel) => page.evaluate((s) => document.querySelector(s).textContent, sel);

  try {
    // From the dashboard's running list to the run's page.
    await page.goto(`${base}/#/dashboard`);
    // When each piece of output reaches the page (a figure, not asserted).
    await page.evaluate(() => {
      const pre = document.querySelector('#live-text');
      window.arrivals = [];
      new MutationObserver(() => window.arrivals.push([Date.now(), pre.textContent])).observe(pre, { childList: true, characterData: true, subtree: true });
    });
    await call('POST', `/jobs/${job}/run`, {});
    const link = page.locator(`#dash-running tr[data-job="${job}"] a.live-link`);
    await link.waitFor({ timeout: 20_000 });
    await link.click();
    await page.waitForSelector('#page-run:not(.d-none)');
    await page.waitForFunction(() => /tick-1 \d+\n/.test(document.querySelector('#live-text').textContent), null, { timeout: 10_000 });
    // Seen before the end: the last lines are not printed yet, no record
    // of the run is stored, and the run is still offered for Kill.
    const early = await text('#live-text');
    assert.doesNotMatch(early, /tick-15/, `shown before the run ended: ${early}`);
    assert.equal((await call('GET', `/logs?job=${job}&limit=1`)).logs.length, 0, 'the run has not ended yet');
    await page.screenshot({ path: `${shots}/run-live.png` });
    // Its end: every line, then its status.
    await page.waitForSelector('#live-state[data-status="success"]', { timeout: 30_000 });
    assert.match(await text('#live-text'), /^tick-1 \d+\ntick-2 \d+\n[\s\S]*tick-15 \d+\n$/);
    assert.equal(await page.isDisabled('#live-kill'), true, 'an ended run offers no Kill');
    // Printed → shown, per line seen arriving; the lines of the first
    // arrival may have been printed before the stream opened: left out.
    const seen = new Map();
    (await page.evaluate(() => window.arrivals)).forEach(([at, all], i) => {
      for (const m of all.matchAll(/tick-(\d+) (\d+)\n/g)) if (!seen.has(m[1])) seen.set(m[1], i ? at - Number(m[2]) : null);
    });
    const lat = [...seen.values()].filter((v) => v !== null).sort((a, b) => a - b);
    console.log(`live output, printed to shown in the browser: ${lat.length} lines, p50 ${lat[Math.floor(lat.length / 2)]} ms, max ${lat.at(-1)} ms`);

    // The job's page shows its running run's output live too.
    await page.goto(`${base}/#/job?name=${job}`);
    await page.waitForFunction((n) => document.querySelector('#job-title').textContent === n, job);
    await call('POST', `/jobs/${job}/run`, {});
    await page.waitForSelector('#job-live-card:not(.d-none)', { timeout: 20_000 });
    await page.waitForFunction(() => /tick-1 \d+\n/.test(document.querySelector('#job-live-text').textContent), null, { timeout: 15_000 });
    assert.doesNotMatch(await text('#job-live-text'), /tick-15/);
    assert.equal(await page.isDisabled('#job-kill'), false, 'a running job offers Kill');
    await page.waitForFunction(() => /tick-15 /.test(document.querySelector('#job-live-text').textContent), null, { timeout: 30_000 });

    // Two runs at once: the card follows one and links the other's page.
    // (Once the run above is off its worker's registration.)
    await eventually('the previous run off the registry', async () => {
      const { workers } = await call('GET', '/workers');
      return workers.every((w) => (w.runs || []).every((r) => r.job !== job));
    });
    await Promise.all([call('POST', `/jobs/${job}/run`, {}), call('POST', `/jobs/${job}/run`, {})]);
    const other = page.locator('#job-live-run a.other-run');
    await other.waitFor({ timeout: 20_000 });
    assert.match(await page.textContent('#job-live-run'), /\(1 more running: since \d\d:\d\d on \S+\)/);
    const followed = new URL(await page.getAttribute('#job-live-run a:not(.other-run)', 'href'), base).hash;
    const href = await other.getAttribute('href');
    assert.notEqual(href, followed, 'the link is to the other run');
    await other.click();
    await page.waitForSelector('#page-run:not(.d-none)');
    assert.equal(new URL(page.url()).hash, href);
    await page.waitForFunction(() => /tick-1 \d+\n/.test(document.querySelector('#live-text').textContent), null, { timeout: 15_000 });
  } catch (e) {
    await shot('failure-console-live').catch(() => {});
    throw e;
  } finally {
    await browser.close();
    await remove([job]);
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('the logs filter by job, status, worker and time; a job page charts its last runs by status and its days', { timeout: 180_000 }, async () => {
  const job = 'ui-hist';
  const N = 5;
  const FAILED = 2;
  await remove([job]);
  await call('POST', '/jobs', { name: job, command: 'sleep 0.2; exit ${CODE:-0}', cronExpr: '@yearly', concurrency: 'allow' });
  for (let i = 0; i < N; i++) await call('POST', `/jobs/${job}/run`, i < FAILED ? { env: { CODE: '1' } } : {});
  await eventually(`${N} runs of ${job}`, async () => (await call('GET', `/logs?job=${job}&limit=100`)).logs.length === N, 60_000);
  const cluster = await call('GET', '/cluster');
  const { workers } = await call('GET', '/workers');
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin({ viewport: { width: 1366, height: 768 } });
  const logReads = [];
  page.on('request', (r) => { if (path(r) === '/api/v1/logs') logReads.push(new URL(r.url()).searchParams); });

  try {
    // Logs: the job picked from the server's search.
    await page.goto(`${base}/#/logs`);
    await page.waitForSelector('#page-logs:not(.d-none)');
    assert.match(await page.textContent('#logs-table thead'), new RegExp(`Started \\(${cluster.timezone}\\)`));
    await page.locator('#log-job').pressSequentially('ui-hi', { delay: 30 });
    await page.waitForFunction((n) => [...document.querySelectorAll('#log-job-list option')].some((o) => o.value === n), job);
    await page.fill('#log-job', job);
    await page.dispatchEvent('#log-job', 'change');
    await page.waitForFunction((n) => location.hash === `#/logs?job=${n}`, job);
    // A filter changed: the read it makes, with `key` set to `value`.
    const filtered = (sel, key, value) => Promise.all([
      page.waitForResponse((r) => path(r) === '/api/v1/logs' && new URL(r.url()).searchParams.get(key) === value),
      page.dispatchEvent(sel, 'change'),
    ]);
    const rows = () => page.locator('#logs-table tbody tr').evaluateAll((rs) => rs.map((r) => ({ status: r.dataset.status, worker: r.dataset.worker })));
    const summary = (pattern) => page.waitForFunction((s) => new RegExp(s).test(document.querySelector('#log-summary').textContent), pattern.source);
    await summary(new RegExp(`^1–${N} of ${N},`));
    // Status.
    await page.selectOption('#log-status', 'failed');
    await summary(new RegExp(`^1–${FAILED} of ${FAILED},`));
    assert.ok((await rows()).every((r) => r.status === 'failed'));
    await page.selectOption('#log-status', '');
    // Worker: the one that ran them, then one that ran none.
    const worker = workers[0].id;
    await page.fill('#log-worker', worker);
    await filtered('#log-worker', 'worker', worker);
    await summary(new RegExp(`^1–${N} of ${N},`));
    assert.equal(logReads.at(-1).get('worker'), worker);
    assert.ok((await rows()).every((r) => r.worker === worker));
    await page.fill('#log-worker', 'no-such-worker');
    await filtered('#log-worker', 'worker', 'no-such-worker');
    await summary(/^no runs$/);
    await page.fill('#log-worker', '');
    await filtered('#log-worker', 'worker', null);
    // Time range, entered in the cluster's zone: from an hour ago, then
    // from an hour ahead.
    const wall = (ms) => new Intl.DateTimeFormat('sv-SE', { timeZone: cluster.timezone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' })
      .format(new Date(ms)).replace(' ', 'T');
    const hourAgo = Math.floor((Date.now() - 3_600_000) / 1000) * 1000;
    await page.fill('#log-from', wall(hourAgo));
    await filtered('#log-from', 'from', String(hourAgo));
    await summary(new RegExp(`^1–${N} of ${N},`));
    assert.equal(logReads.at(-1).get('from'), String(hourAgo), 'the wall time read in the cluster zone');
    const ahead = hourAgo + 2 * 3_600_000;
    await page.fill('#log-from', wall(ahead));
    await filtered('#log-from', 'from', String(ahead));
    await summary(/^no runs$/);
    await page.fill('#log-from', '');
    await filtered('#log-from', 'from', null);
    await page.fill('#log-to', wall(hourAgo));
    await filtered('#log-to', 'to', String(hourAgo));
    await summary(/^no runs$/);
    assert.equal(logReads.at(-1).get('to'), String(hourAgo));
    await page.click('#log-clear');
    await summary(new RegExp(`^1–${N} of ${N},`));

    const stats = await call('GET', `/jobs/${job}/stats?days=30`);
    assert.equal(stats.lastRuns.length, N);
    await page.goto(`${base}/#/job?name=${job}`);
    await page.waitForFunction(() => document.querySelector('#chart-runs')?.dataset.points);
    const runs = await chartOf(page, '#chart-runs');
    assert.deepEqual(runs.points, [N], 'a bar per run');
    assert.ok(runs.painted > 500, 'the canvas is painted');
    const [danger, success] = [await cssVar(page, '--bs-danger'), await cssVar(page, '--bs-success')];
    assert.equal(runs.colors[0].filter((c) => c === danger).length, FAILED, 'failed runs in red');
    assert.equal(runs.colors[0].filter((c) => c === success).length, N - FAILED, 'the others in green');
    assert.match(await page.textContent('#job-runs-summary'), new RegExp(`^${N} run\\(s\\), ${FAILED} not successful$`));
    // Per day: 7 days, then 30.
    const rate7 = await chartOf(page, '#chart-rate');
    assert.deepEqual(rate7.points, [Math.min(7, stats.daily.length)]);
    assert.equal(rate7.values[0].at(-1), 60, 'today: 3 of 5 runs succeeded');
    const dur7 = await chartOf(page, '#chart-duration');
    assert.deepEqual(dur7.points, [Math.min(7, stats.daily.length), Math.min(7, stats.daily.length)], 'p50 and p95');
    assert.ok(dur7.values[0].at(-1) >= 200, 'p50 of today: at least the sleep');
    await page.click('label[for="stats-30"]');
    assert.deepEqual((await chartOf(page, '#chart-rate')).points, [Math.min(30, stats.daily.length)]);
    // Its next runs, in its zone (the cluster's), labelled.
    assert.equal(await page.locator('#job-fields .next-runs li').count(), 5);
    assert.match(await page.textContent('#job-fields'), new RegExp(`Next runs \\(${cluster.timezone}\\)`));
    assert.equal(await page.isDisabled('#job-kill'), true);
    await page.screenshot({ path: `${shots}/job-light.png`, fullPage: true });
    await page.click('#theme-toggle');
    await page.screenshot({ path: `${shots}/job-dark.png`, fullPage: true });
    await page.click('#theme-toggle');

  } catch (e) {
    await shot('failure-console-job').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('every page fits 800 px without sideways scrolling, and is photographed', { timeout: 180_000 }, async () => {
  const job = 'ui-hist';
  const { browser, page, consoleErrors, foreign, failed } = await openAdmin({ viewport: { width: 800, height: 600 } });
  const pages = [
    ['dashboard', '#/dashboard', '#dash-workers [data-worker], #dash-workers .not-available'],
    ['jobs', '#/jobs', '#jobs-table tbody tr'],
    ['job', `#/job?name=${job}`, '#job-fields dt'],
    ['logs', `#/logs?job=${job}`, '#logs-table tbody tr'],
    ['workers', '#/workers', '#workers-table tbody tr'],
    ['cluster', '#/cluster', '#masters li'],
    ['audit', '#/audit', '#audit-table tbody tr'],
  ];
  try {
    for (const [name, hash, ready] of pages) {
      await page.goto(`${base}/${hash}`);
      await page.waitForSelector(`#page-${name}:not(.d-none) ${ready}`);
      assert.equal(await overflow(page), 0, `${name}: the page does not scroll sideways at 800 px`);
      await page.screenshot({ path: `${shots}/${name}-800.png` });
    }
    // The cluster page says no alert sink is configured, with the counters.
    assert.match(await page.textContent('#alert-delivery .no-sink'), /No alert sink is configured/);
    assert.match(await page.textContent('#alert-delivery .alert-counters'), /sent \d+.*failed \d+.*suppressed \d+/);
    // At 1366×768, the pages not photographed above.
    await page.setViewportSize({ width: 1366, height: 768 });
    for (const [name, hash, ready] of pages) {
      await page.goto(`${base}/${hash}`);
      await page.waitForSelector(`#page-${name}:not(.d-none) ${ready}`);
      assert.equal(await overflow(page), 0, `${name}: no sideways scrolling at 1366 px`);
      await page.screenshot({ path: `${shots}/${name}-light.png` });
    }
    console.log(`screenshots of every page: ${shots}/`);
  } finally {
    await browser.close();
    await remove([job]);
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('a saved dark theme is applied before the admin\'s scripts run (no light flash)', { timeout: 60_000 }, async () => {
  const { browser, page } = await openAdmin({ theme: 'dark' });
  try {
    // Without its module scripts the page shows what the first paint
    // would: the theme must already be set by then.
    await page.route(/\/ui\/(app|js\/.*)\.js$/, (route) => route.abort());
    await page.goto(`${base}/`);
    assert.equal(await page.getAttribute('html', 'data-bs-theme'), 'dark');
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = background.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 200, `a dark page background, got ${background}`);
  } finally {
    await browser.close();
  }
});
