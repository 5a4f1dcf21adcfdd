// The web admin in a real browser (Debian's chromium driven by
// playwright-core) against a running master + worker on real etcd and a
// MongoDB-wire server. Started by ui/run-e2e.sh, which passes RCRON_UI_URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { base, openAdmin, provoked, storedJob, eventually } from './harness.mjs';

test('the admin creates, watches, kills and deletes jobs through the REST API', { timeout: 180_000 }, async () => {
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();

  try {
    await page.goto(`${base}/#/jobs`);
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
    await page.click('tr[data-job="ui-job"] a.job-link');
    await page.click('#job-runs');
    await page.waitForSelector('#logs-table tr[data-status="success"]', { timeout: 20_000 });
    await page.click('#logs-table tr[data-status="success"]');
    // The output is read per run (GET /runs/{runId}), after the click.
    await page.waitForFunction(() => /from-ui/.test(document.querySelector('#log-output-text').textContent));
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
    const { runId: killedRun } = await killed.json();
    await page.goto(`${base}/#/logs?job=ui-long`);
    await page.selectOption('#log-status', 'killed');
    await page.waitForSelector('#logs-table tr[data-status="killed"]', { timeout: 20_000 });
    // The next tick runs it again: the jobs list offers Kill while it runs
    // (confirmed by the dialog the harness accepts), and the run is killed.
    // (Once the next run is registered: the killed one may still be listed
    // for a moment, and a kill then finds nothing to kill.)
    await eventually('the next run of ui-long registered', async () => {
      const { workers } = await (await fetch(`${base}/api/v1/workers`)).json();
      return workers.some((w) => (w.runs || []).some((r) => r.job === 'ui-long' && r.runId !== killedRun))
        && workers.every((w) => (w.runs || []).every((r) => r.runId !== killedRun));
    });
    await page.goto(`${base}/#/jobs`);
    await page.waitForSelector('tr[data-job="ui-long"][data-running="true"] button[data-action="kill"]:enabled', { timeout: 20_000 });
    const [killedJob] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/jobs/ui-long/kill'),
      page.click('tr[data-job="ui-long"] button[data-action="kill"]'),
    ]);
    assert.equal(killedJob.status(), 202);
    await page.goto(`${base}/#/logs?job=ui-long`);
    await page.selectOption('#log-status', 'killed');
    await page.waitForFunction(() => document.querySelectorAll('#logs-table tr[data-status="killed"]').length >= 2, null, { timeout: 20_000 });
    await page.goto(`${base}/#/jobs`);
    // Pause is a PATCH of `disabled` alone.
    const [paused] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'PATCH' && new URL(r.url()).pathname === '/api/v1/jobs/ui-long'),
      page.click('tr[data-job="ui-long"] button[data-action="pause"]'),
    ]);
    assert.deepEqual(JSON.parse(paused.postData()), { disabled: true });
    assert.equal((await paused.response()).status(), 200);
    await page.waitForSelector('tr[data-job="ui-long"] button[data-action="resume"]');

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

    // The long job goes too: the next tests start from an empty list.
    await page.goto(`${base}/#/jobs`);
    await page.click('tr[data-job="ui-long"] button[data-action="delete"]');
    await page.waitForSelector('tr[data-job="ui-long"]', { state: 'detached' });
    await page.waitForSelector('#jobs-empty:not(.d-none)');
  } catch (e) {
    await shot('failure').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  // The only console errors allowed are the 400s the invalid expression
  // deliberately provoked (and the page showed next to the field).
  assert.deepEqual(consoleErrors.filter((m) => !provoked.test(m)), [], 'no console errors');
  assert.ok(failed.length >= 1, 'the invalid expression was refused by the API');
  for (const f of failed) assert.match(f, /^400 POST \/api\/v1\/(cron\/preview|jobs)$/, `unexpected failed request ${f}`);
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('the admin places jobs on labelled workers and flags jobs no worker can run', { timeout: 120_000 }, async () => {
  // run-e2e.sh starts the worker with these labels (RCRON_WORKER_LABELS).
  const workerLabels = process.env.RCRON_UI_WORKER_LABELS;
  assert.ok(workerLabels, 'RCRON_UI_WORKER_LABELS is set by ui/run-e2e.sh');
  const role = Object.fromEntries(workerLabels.split(',').map((kv) => kv.split('='))).role;
  assert.ok(role, `the test worker has a role label (${workerLabels})`);
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  const jobRequest = (method, path) => page.waitForRequest((r) => r.method() === method && new URL(r.url()).pathname === path);

  try {
    // Workers page: the worker's labels in their own column.
    await page.goto(`${base}/#/workers`);
    await page.waitForSelector('#workers-table tbody tr td.labels .badge');
    assert.ok((await page.locator('#workers-table thead th').allTextContents()).includes('Labels'));
    const shown = await page.locator('#workers-table tbody td.labels .badge').allTextContents();
    assert.deepEqual(shown.sort(), workerLabels.split(',').sort());
    await shot('workers-labels');

    // A job placed on the worker's role, every matching worker per tick.
    // A label the server refuses first: its 400 shows under the field.
    await page.goto(`${base}/#/jobs`);
    await page.click('#new-job');
    await page.fill('#f-name', 'ui-placed');
    await page.fill('#f-command', 'echo placed');
    await page.fill('#f-cron', '*/2 * * * * * *');
    await page.fill('#f-target-labels', 'role=d b, zone=e/1');
    await page.click('#save-job');
    await page.waitForSelector('#f-target-labels.is-invalid');
    const refused = await page.textContent('.invalid-feedback[data-for="targetLabels"]');
    assert.match(refused, /"d b".*may only contain ASCII letters/);
    assert.match(refused, /"e\/1"/, 'every problem of the field is shown');
    assert.equal(await storedJob('ui-placed'), null, 'a refused job is not stored');
    // A label that is not key=value never leaves the page.
    await page.fill('#f-target-labels', 'role');
    await page.click('#save-job');
    await page.waitForSelector('#f-target-labels.is-invalid');
    assert.match(await page.textContent('.invalid-feedback[data-for="targetLabels"]'), /not key=value/);

    await page.fill('#f-target-labels', ` role = ${role} `);
    assert.equal(await page.locator('#f-target-labels.is-invalid').count(), 0, 'editing the field clears its error');
    await page.selectOption('#f-target-mode', 'all');
    await shot('job-dialog-target');
    const [created] = await Promise.all([jobRequest('POST', '/api/v1/jobs'), page.click('#save-job')]);
    assert.deepEqual(created.postDataJSON().target, { labels: { role }, mode: 'all' });
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    await page.waitForSelector('tr[data-job="ui-placed"]');
    const placed = await storedJob('ui-placed');
    assert.deepEqual(placed.target, { labels: { role }, mode: 'all' });
    assert.equal(placed.matchingWorkers, 1);
    assert.equal(placed.unschedulable, false);
    assert.match(await page.textContent('tr[data-job="ui-placed"] td.target'), new RegExp(`^role=${role}\\s*\\(all workers\\)$`));
    assert.equal(await page.locator('tr[data-job="ui-placed"] .unschedulable').count(), 0);
    // The labelled worker runs it.
    await eventually('a run of ui-placed', async () => {
      const { logs } = await (await fetch(`${base}/api/v1/logs?job=ui-placed&limit=5&output=true`)).json();
      return logs.some((l) => l.status === 'success' && /placed/.test(l.output));
    });

    // Editing shows the target; clearing it sends none, and none is stored.
    await page.click('tr[data-job="ui-placed"] button[data-action="edit"]');
    assert.equal(await page.inputValue('#f-target-labels'), `role=${role}`);
    assert.equal(await page.inputValue('#f-target-mode'), 'all');
    await page.fill('#f-target-labels', '');
    await page.selectOption('#f-target-mode', 'one');
    const [replaced] = await Promise.all([jobRequest('PUT', '/api/v1/jobs/ui-placed'), page.click('#save-job')]);
    assert.equal('target' in replaced.postDataJSON(), false, 'no target is sent for any worker, one per tick');
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    assert.equal('target' in (await storedJob('ui-placed')), false);
    await page.waitForFunction(() => document.querySelector('tr[data-job="ui-placed"] td.target')?.textContent === 'any');

    // A job on labels no live worker carries: stored, flagged unschedulable.
    await page.click('#new-job');
    await page.fill('#f-name', 'ui-nowhere');
    await page.fill('#f-command', 'echo nowhere');
    await page.fill('#f-cron', '0 0 3 * * * *');
    await page.fill('#f-target-labels', 'role=nobody, zone=e2e-1');
    await page.click('#save-job');
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    const badge = page.locator('tr[data-job="ui-nowhere"] .unschedulable');
    await badge.waitFor();
    assert.equal(await badge.textContent(), 'unschedulable');
    assert.match(await badge.getAttribute('class'), /\bbadge\b.*\bbg-danger\b/);
    assert.match(await badge.getAttribute('title'), /No live worker carries role=nobody, zone=e2e-1/);
    const nowhere = await storedJob('ui-nowhere');
    assert.deepEqual(nowhere.target, { labels: { role: 'nobody', zone: 'e2e-1' }, mode: 'one' });
    assert.equal(nowhere.unschedulable, true);
    assert.equal(nowhere.matchingWorkers, 0);
    // The placed job runs on the worker: no badge.
    assert.equal(await page.locator('tr[data-job="ui-placed"] .unschedulable').count(), 0);
    await shot('jobs-unschedulable');
    // Its dialog shows both labels; cancelled, nothing is sent.
    await page.click('tr[data-job="ui-nowhere"] button[data-action="edit"]');
    assert.equal(await page.inputValue('#f-target-labels'), 'role=nobody, zone=e2e-1');
    assert.equal(await page.inputValue('#f-target-mode'), 'one');
    await page.click('#job-modal button.btn-secondary[data-bs-dismiss="modal"]');
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    // Paused, it is meant to run nowhere: the badge goes.
    await page.click('tr[data-job="ui-nowhere"] button[data-action="pause"]');
    await page.waitForSelector('tr[data-job="ui-nowhere"] button[data-action="resume"]');
    assert.equal(await badge.count(), 0);

    for (const name of ['ui-placed', 'ui-nowhere']) {
      await page.click(`tr[data-job="${name}"] button[data-action="delete"]`);
      await page.waitForSelector(`tr[data-job="${name}"]`, { state: 'detached' });
    }
  } catch (e) {
    await shot('failure-placement').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  assert.deepEqual(consoleErrors.filter((m) => !provoked.test(m)), [], 'no console errors');
  assert.deepEqual(failed, ['400 POST /api/v1/jobs'], 'only the refused label failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('the job dialog warns of DST changes and seconds-first look-alikes, and saves all the same', { timeout: 120_000 }, async () => {
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  const warningsShown = (pattern) => page.waitForFunction(
    (source) => new RegExp(source).test(document.querySelector('#cron-warnings:not(.d-none)')?.textContent || ''),
    pattern.source);

  try {
    await page.goto(`${base}/#/jobs`);
    await page.click('#new-job');
    await page.fill('#f-name', 'ui-dst');
    await page.fill('#f-command', 'true');
    await page.fill('#f-timezone', 'Europe/Berlin');
    // Daily at 02:30 in Berlin: skipped in March, repeated in October.
    await page.fill('#f-cron', '30 2 * * *');
    await warningsShown(/instead of 02:30/);
    const shown = await page.locator('#cron-warnings li').allTextContents();
    assert.equal(shown.length, 2, shown.join('\n'));
    assert.ok(shown.some((w) => /^runs at 03:00 instead of 02:30 on \d{4}-03-\d\d \(Europe\/Berlin skips 02:00–03:00\)$/.test(w)), shown.join('\n'));
    assert.ok(shown.some((w) => /^02:30 on \d{4}-10-\d\d happens twice in Europe\/Berlin; the job runs once, at the first$/.test(w)), shown.join('\n'));
    assert.match(await page.getAttribute('#cron-warnings', 'class'), /\balert\b.*\balert-warning\b/);
    // A warning is no error: the expression is valid and previewed.
    assert.equal(await page.locator('#f-cron.is-invalid').count(), 0);
    assert.match(await page.textContent('#cron-preview'), /^Next runs/);
    await shot('job-dialog-warnings');

    // An expression clear of both changes: the warnings go.
    await page.fill('#f-cron', '0 3 * * *');
    await page.waitForSelector('#cron-warnings.d-none', { state: 'attached' });
    assert.equal(await page.locator('#cron-warnings li').count(), 0);
    // Seconds-first in 6 fields: every 30 minutes here.
    await page.fill('#f-cron', '*/30 * * * * *');
    await warningsShown(/runs every 30 minutes; for seconds first, write 7 fields: `\*\/30 \* \* \* \* \* \*`/);

    // Saved anyway; the warnings are repeated once the dialog closes.
    await page.fill('#f-cron', '30 2 * * *');
    await warningsShown(/instead of 02:30/);
    const [created] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/v1/jobs'),
      page.click('#save-job'),
    ]);
    assert.equal(created.status(), 201);
    assert.equal((await created.json()).warnings.length, 2);
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    const toast = page.locator('#toasts .toast.text-bg-warning');
    await toast.waitFor();
    assert.match(await toast.textContent(), /^ui-dst saved\. Warning: .*instead of 02:30.*happens twice|^ui-dst saved\. Warning: .*happens twice.*instead of 02:30/);
    await page.waitForSelector('tr[data-job="ui-dst"]');
    assert.match(await page.textContent('tr[data-job="ui-dst"]'), /30 2 \* \* \*/);
    await shot('jobs-saved-with-warnings');

    // Editing it shows them again, from the preview.
    await page.click('tr[data-job="ui-dst"] button[data-action="edit"]');
    await warningsShown(/instead of 02:30/);
    await page.click('#job-modal button.btn-secondary[data-bs-dismiss="modal"]');
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    await page.click('tr[data-job="ui-dst"] button[data-action="delete"]');
    await page.waitForSelector('tr[data-job="ui-dst"]', { state: 'detached' });
  } catch (e) {
    await shot('failure-warnings').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'warnings are never a refusal');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('the admin saves tick policies, shows skipped ticks with their reason, and each worker\'s clock', { timeout: 120_000 }, async () => {
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  const jobRequest = (method, path) => page.waitForRequest((r) => r.method() === method && new URL(r.url()).pathname === path);
  const overlap = 'overlap: the previous run was still going';
  const policies = ['misfire', 'startingDeadlineSecs', 'alertOnMissed', 'retryBackoffMaxSecs'];

  try {
    // A forbid job that runs 3 s every second, with every tick policy set.
    await page.goto(`${base}/#/jobs`);
    await page.click('#new-job');
    assert.deepEqual(await page.locator('#f-concurrency option').evaluateAll((os) => os.map((o) => o.value)), ['forbid', 'allow', 'replace']);
    assert.equal(await page.inputValue('#f-misfire'), 'skip');
    assert.equal(await page.isChecked('#f-alert-missed'), true, 'missed ticks alert by default');
    await page.fill('#f-name', 'ui-overlap');
    await page.fill('#f-command', 'sleep 3');
    await page.fill('#f-cron', '* * * * * * *');
    await page.selectOption('#f-concurrency', 'forbid');
    await page.selectOption('#f-misfire', 'runOnce');
    await page.fill('#f-deadline', '30');
    await page.uncheck('#f-alert-missed');
    await page.fill('#f-retries', '2');
    await page.fill('#f-backoff-max', '120');
    await shot('job-dialog-policies');
    const [created] = await Promise.all([jobRequest('POST', '/api/v1/jobs'), page.click('#save-job')]);
    const sent = created.postDataJSON();
    assert.deepEqual([sent.misfire, sent.startingDeadlineSecs, sent.alertOnMissed, sent.retryBackoffMaxSecs], ['runOnce', 30, false, 120]);
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    const stored = await storedJob('ui-overlap');
    assert.equal(stored.concurrency, 'forbid');
    assert.equal(stored.misfire, 'runOnce');
    assert.equal(stored.startingDeadlineSecs, 30);
    assert.equal(stored.alertOnMissed, false);
    assert.equal(stored.retries, 2);
    assert.equal(stored.retryBackoffMaxSecs, 120);

    // Its dialog shows them again.
    await page.click('tr[data-job="ui-overlap"] button[data-action="edit"]');
    assert.equal(await page.inputValue('#f-misfire'), 'runOnce');
    assert.equal(await page.inputValue('#f-deadline'), '30');
    assert.equal(await page.isChecked('#f-alert-missed'), false);
    assert.equal(await page.inputValue('#f-backoff-max'), '120');
    await page.click('#job-modal button.btn-secondary[data-bs-dismiss="modal"]');
    await page.waitForSelector('#job-modal', { state: 'hidden' });

    // The ticks that find the previous run going: skipped, with the reason.
    await page.goto(`${base}/#/logs?job=ui-overlap`);
    await page.selectOption('#log-status', 'skipped');
    const skipped = page.locator('#logs-table tbody tr[data-status="skipped"]');
    await skipped.first().waitFor({ timeout: 20_000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#logs-table tbody tr')].every((r) => r.dataset.status === 'skipped'));
    const reasons = await page.locator('#logs-table tbody tr td.reason').allTextContents();
    assert.ok(reasons.length >= 1 && reasons.every((r) => r === overlap), reasons.join('\n'));
    const badge = skipped.first().locator('.badge');
    assert.equal(await badge.textContent(), 'skipped');
    assert.match(await badge.getAttribute('class'), /\btext-bg-secondary\b/);
    // A verdict ran nothing: no duration, and the panel says why.
    await skipped.first().click();
    assert.match(await page.textContent('#log-output-text'), /^No command ran for the tick of .*: overlap: the previous run was still going\.$/);
    await shot('logs-skipped');
    // The runs themselves are listed apart.
    await page.selectOption('#log-status', 'success');
    await page.waitForSelector('#logs-table tbody tr[data-status="success"]', { timeout: 20_000 });
    assert.equal(await page.locator('#logs-table tbody tr[data-status="skipped"]').count(), 0);

    // The workers page: the worker's clock offset from the leader's beacon
    // (written every second), and no skew badge: its clock is this machine's.
    await page.goto(`${base}/#/workers`);
    assert.ok((await page.locator('#workers-table thead th').allTextContents()).includes('Clock'));
    await page.waitForFunction(() => /^[+-]\d+ ms$/.test(document.querySelector('#workers-table tbody td.clock .offset')?.textContent || ''), null, { timeout: 30_000 });
    assert.equal(await page.locator('#workers-table .clock-skewed').count(), 0);
    const { workers } = await (await fetch(`${base}/api/v1/workers`)).json();
    assert.ok(workers.length >= 1 && workers.every((w) => Number.isInteger(w.clockOffsetMs) && w.clockSkewed === false), JSON.stringify(workers));
    await shot('workers-clock');

    // Set back to their defaults, the policies are not sent (a PUT replaces
    // the whole job): a job that does not use them stays as it was.
    await page.goto(`${base}/#/jobs`);
    await page.click('tr[data-job="ui-overlap"] button[data-action="edit"]');
    await page.selectOption('#f-misfire', 'skip');
    await page.fill('#f-deadline', '0');
    await page.check('#f-alert-missed');
    await page.fill('#f-backoff-max', '');
    const [replaced] = await Promise.all([jobRequest('PUT', '/api/v1/jobs/ui-overlap'), page.click('#save-job')]);
    const body = replaced.postDataJSON();
    assert.deepEqual(policies.filter((k) => k in body), [], JSON.stringify(body));
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    const reset = await storedJob('ui-overlap');
    assert.deepEqual([reset.misfire, reset.startingDeadlineSecs, reset.alertOnMissed, reset.retryBackoffMaxSecs], ['skip', 0, true, 0]);

    await page.click('tr[data-job="ui-overlap"] button[data-action="pause"]');
    await page.waitForSelector('tr[data-job="ui-overlap"] button[data-action="resume"]');
    await page.click('tr[data-job="ui-overlap"] button[data-action="delete"]');
    await page.waitForSelector('tr[data-job="ui-overlap"]', { state: 'detached' });
  } catch (e) {
    await shot('failure-policies').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});
