// Jobs in context, in a real browser against a running master + worker:
// run now with variables for one run, chains between jobs (onSuccess /
// onFailure) saved through the job form, shown on each job's page and
// followed in the logs. Started by ui/run-e2e.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { base, openAdmin, provoked, storedJob, eventually } from './harness.mjs';

const path = (r) => new URL(r.url()).pathname;

// Creates a job through the job dialog (the chain fields as typed).
async function createJob(page, { name, command, onSuccess = '', onFailure = '' }) {
  await page.goto(`${base}/#/jobs`);
  await page.click('#new-job');
  await page.fill('#f-name', name);
  await page.fill('#f-command', command);
  // Once a year: only run-now and chains start these jobs during a test.
  await page.fill('#f-cron', '@yearly');
  await page.fill('#f-on-success', onSuccess);
  await page.fill('#f-on-failure', onFailure);
  await page.click('#save-job');
  await page.waitForSelector('#job-modal', { state: 'hidden' });
  await page.waitForSelector(`tr[data-job="${name}"]`);
}

async function deleteJobs(page, names) {
  await page.goto(`${base}/#/jobs`);
  for (const name of names) {
    await page.click(`tr[data-job="${name}"] button[data-action="delete"]`);
    await page.waitForSelector(`tr[data-job="${name}"]`, { state: 'detached' });
  }
}

// Waits for the output panel to show `pattern`: a run's output is read
// (GET /runs/{runId}) after its row is clicked.
const outputShows = (page, pattern) => page.waitForFunction(
  (source) => new RegExp(source).test(document.querySelector('#log-output-text').textContent), pattern.source);

// The newest records of `job` from the REST API.
async function records(job) {
  const r = await fetch(`${base}/api/v1/logs?job=${encodeURIComponent(job)}&limit=20`);
  assert.equal(r.status, 200);
  return (await r.json()).logs;
}

test('run now from the dialog sets variables for that run, shown in its record', { timeout: 120_000 }, async () => {
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  const job = 'ui-run-env';
  const isRun = (r) => r.request().method() === 'POST' && path(r) === `/api/v1/jobs/${job}/run`;

  try {
    await createJob(page, { name: job, command: 'echo ran-now' });
    await page.click(`tr[data-job="${job}"] button[data-action="run"]`);
    await page.waitForSelector('#run-modal.show');
    assert.equal(await page.textContent('#run-modal-title'), `Run ${job} now`);

    // A line that is not KEY=VALUE never leaves the page.
    await page.fill('#run-env', 'GREETING=hi\nNOEQUALS');
    await page.click('#run-submit');
    await page.waitForSelector('#run-env.is-invalid');
    assert.equal(await page.textContent('.invalid-feedback[data-for="runEnv"]'), 'line 2: expected KEY=VALUE, got "NOEQUALS"');

    // Names the API refuses: its 400, every name, in the dialog.
    await page.fill('#run-env', '1X=a\nRCRON_JOB=b');
    assert.equal(await page.locator('#run-env.is-invalid').count(), 0, 'editing the field clears its error');
    const [refused] = await Promise.all([page.waitForResponse(isRun), page.click('#run-submit')]);
    assert.equal(refused.status(), 400);
    await page.waitForSelector('#run-error:not(.d-none)');
    const error = await page.textContent('#run-error');
    assert.match(error, /^`env\.1X`: a variable name takes ASCII letters, digits and `_`/m);
    assert.match(error, /^`env\.RCRON_JOB`: names starting with `RCRON_` are reserved/m);
    assert.equal(await page.locator('#run-result:not(.d-none)').count(), 0);
    await shot('run-dialog-refused');

    // Accepted: the request id shown is the API's.
    await page.fill('#run-env', 'GREETING=hello from the dialog\n\nMODE=a=b');
    const [accepted] = await Promise.all([page.waitForResponse(isRun), page.click('#run-submit')]);
    assert.equal(accepted.status(), 202);
    const sentEnv = { GREETING: 'hello from the dialog', MODE: 'a=b' };
    assert.deepEqual(accepted.request().postDataJSON(), { env: sentEnv });
    const answer = await accepted.json();
    await page.waitForSelector('#run-result:not(.d-none)');
    assert.equal(await page.textContent('#run-request-id'), answer.requestId);
    assert.equal(await page.locator('#run-error:not(.d-none)').count(), 0);
    await shot('run-dialog');

    // The run's record: manual, with what the request set. (Whether the
    // command sees the variables is the worker's part, not the admin's.)
    const record = await eventually(`a run of ${job}`, async () => (await records(job)).find((l) => l.status === 'success'));
    assert.equal(record.trigger, 'manual');
    assert.deepEqual(record.params, { env: sentEnv });

    // In the logs, from the dialog's link (which closes it).
    await page.click('#run-logs');
    await page.waitForSelector('#run-modal', { state: 'hidden' });
    const row = page.locator(`#logs-table tr[data-run-id="${record.runId}"]`);
    await row.waitFor({ timeout: 20_000 });
    assert.equal(await row.getAttribute('data-trigger'), 'manual');
    assert.equal(await row.locator('td.trigger').textContent(), 'manual');
    await row.click();
    assert.match(await page.textContent('#log-origin'), /^Started by a run-now request\./);
    const params = await page.textContent('#log-params');
    assert.match(params, /^Environment set for this run:/);
    assert.match(params, /GREETING=hello from the dialog\nMODE=a=b$/);
    await outputShows(page, /ran-now/);
    await shot('logs-run-params');

    await deleteJobs(page, [job]);
  } catch (e) {
    await shot('failure-run-now').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  assert.deepEqual(consoleErrors.filter((m) => !provoked.test(m)), [], 'no console errors');
  assert.deepEqual(failed, [`400 POST /api/v1/jobs/${job}/run`], 'only the refused names failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('a chain saved through the form shows on both jobs, and running the first starts the second', { timeout: 120_000 }, async () => {
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  const [a, b] = ['ui-chain-a', 'ui-chain-b'];

  try {
    await createJob(page, { name: b, command: 'echo chained-b' });

    // A name that is no job never leaves the page.
    await page.click('#new-job');
    await page.fill('#f-name', a);
    await page.fill('#f-command', 'echo chain-a');
    await page.fill('#f-cron', '@yearly');
    await page.fill('#f-on-success', `${b}, ui-chain-ghost`);
    await page.click('#save-job');
    await page.waitForSelector('#f-on-success.is-invalid');
    assert.equal(await page.textContent('.invalid-feedback[data-for="onSuccess"]'), 'no job is named "ui-chain-ghost"');
    assert.equal(await storedJob(a), null);

    await page.fill('#f-on-success', ` ${b} `);
    await shot('job-dialog-chain');
    const [created] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'POST' && path(r) === '/api/v1/jobs'),
      page.click('#save-job'),
    ]);
    const sent = created.postDataJSON();
    assert.deepEqual(sent.onSuccess, [b]);
    assert.equal('onFailure' in sent, false, 'an empty list is not sent');
    await page.waitForSelector('#job-modal', { state: 'hidden' });
    assert.deepEqual((await storedJob(a)).onSuccess, [b]);

    // A's page: it starts B; nothing starts it.
    await page.click(`tr[data-job="${a}"] a.job-link`);
    await page.waitForSelector('#page-job:not(.d-none)');
    await page.waitForFunction((name) => document.querySelector('#job-title').textContent === name, a);
    const startsB = page.locator(`#job-starts li[data-job="${b}"]`);
    await startsB.waitFor();
    assert.equal(await startsB.textContent(), `${b} on success`);
    assert.equal(await startsB.getAttribute('data-when'), 'onSuccess');
    assert.equal(await page.locator('#job-starts li').count(), 1);
    assert.match(await page.textContent('#job-started-by'), /^no job/);
    await shot('job-page-a');

    // B's page, through the link: started by A (the jobs the API lists
    // with chainsTo=B), starts nothing.
    await Promise.all([
      page.waitForRequest((r) => path(r) === '/api/v1/jobs' && new URL(r.url()).searchParams.get('chainsTo') === b),
      startsB.locator('a').click(),
    ]);
    await page.waitForFunction((name) => document.querySelector('#job-title').textContent === name, b);
    const byA = page.locator(`#job-started-by li[data-job="${a}"]`);
    await byA.waitFor();
    assert.equal(await byA.textContent(), `${a} on success`);
    assert.match(await page.textContent('#job-starts'), /^no job/);
    await shot('job-page-b');

    // Run A from its page: B follows, triggered by A's run.
    await page.goto(`${base}/#/job?name=${a}`);
    await page.waitForFunction((name) => document.querySelector('#job-title').textContent === name && !document.querySelector('#job-run').disabled, a);
    await page.click('#job-run');
    await page.waitForSelector('#run-modal.show');
    const [accepted] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && path(r) === `/api/v1/jobs/${a}/run`),
      page.click('#run-submit'),
    ]);
    assert.equal(accepted.status(), 202);
    await page.waitForSelector('#run-result:not(.d-none)');
    await page.click('#run-modal button.btn-secondary[data-bs-dismiss="modal"]');
    await page.waitForSelector('#run-modal', { state: 'hidden' });

    const chained = await eventually(`a chained run of ${b}`, async () => (await records(b)).find((l) => l.trigger === 'chain'), 30_000);
    assert.equal(chained.status, 'success');
    assert.equal(chained.triggeredBy.job, a);
    const [runA] = (await records(a)).filter((l) => l.runId === chained.triggeredBy.runId);
    assert.ok(runA, `the record of A's run ${chained.triggeredBy.runId}`);
    assert.equal(runA.trigger, 'manual');
    assert.equal(runA.status, 'success');

    // B's logs: the run is shown as started by A, linked to A's run.
    await page.goto(`${base}/#/logs?job=${b}`);
    const row = page.locator(`#logs-table tr[data-run-id="${chained.runId}"]`);
    await row.waitFor({ timeout: 20_000 });
    assert.equal(await row.getAttribute('data-trigger'), 'chain');
    assert.equal(await row.locator('td.trigger').textContent(), `chain ← ${a}`);
    // (Its first cell: the middle of the row may be the link to A's run.)
    await row.locator('td').first().click();
    assert.equal(await page.textContent('#log-origin'), `Started by the end of ${a} run ${runA.runId}. Run ${chained.runId}, attempt 1.`);
    assert.equal(await page.locator('#log-params.d-none').count(), 1, 'a chained run has no params');
    await shot('logs-chained');
    // The link leads to A's run, selected with its output.
    await row.locator('a.triggered-by').click();
    await page.waitForFunction((name) => document.querySelector('#log-job').value === name, a);
    await page.waitForSelector(`#logs-table tr.table-active[data-run-id="${runA.runId}"]`);
    await outputShows(page, /chain-a/);
    assert.match(await page.textContent('#log-origin'), /^Started by a run-now request\./);
    await shot('logs-chain-parent');

    await deleteJobs(page, [a, b]);
  } catch (e) {
    await shot('failure-chain').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  assert.deepEqual(consoleErrors, [], 'no console errors');
  assert.deepEqual(failed, [], 'no request failed');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});

test('the job form shows the API\'s refusal of a cycle, and sends the run settings', { timeout: 120_000 }, async () => {
  const { browser, page, consoleErrors, foreign, failed, shot } = await openAdmin();
  const [x, y] = ['ui-cycle-x', 'ui-cycle-y'];

  try {
    await createJob(page, { name: y, command: 'true' });
    await createJob(page, { name: x, command: 'true', onSuccess: y });

    // y → x would close x → y → x: the API refuses it, naming the path.
    await page.click(`tr[data-job="${y}"] button[data-action="edit"]`);
    await page.fill('#f-on-failure', x);
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'PUT' && path(r) === `/api/v1/jobs/${y}`),
      page.click('#save-job'),
    ]);
    assert.equal(refused.status(), 400);
    assert.match((await refused.json()).error, /^`onSuccess`\/`onFailure`: /);
    await page.waitForSelector('#chain-error-row:not(.d-none)');
    assert.equal(await page.textContent('#chain-error'), `${y} would start itself through its chain (${y} → ${x} → ${y})`);
    assert.equal(await page.locator('#f-on-success.is-invalid, #f-on-failure.is-invalid').count(), 2);
    assert.equal(await page.locator('#job-modal.show').count(), 1, 'the dialog stays open');
    await shot('job-dialog-cycle');
    assert.deepEqual((await storedJob(y)).onFailure, [], 'nothing stored');
    // A job naming itself is caught before sending.
    await page.fill('#f-on-failure', y);
    await page.click('#save-job');
    await page.waitForSelector('#f-on-failure.is-invalid');
    assert.equal(await page.textContent('.invalid-feedback[data-for="onFailure"]'), `a job cannot start itself (${y})`);
    await page.fill('#f-on-failure', '');

    // Environment (inline and from files), directory and user: a relative
    // directory is refused here; the rest is sent as the job schema has it.
    await page.fill('#f-env', 'MODE=full\nEMPTY=');
    await page.fill('#f-env-files', 'TOKEN=/run/secrets/token');
    await page.fill('#f-workdir', 'srv');
    await page.fill('#f-user', 'nobody');
    await page.click('#save-job');
    await page.waitForSelector('#f-workdir.is-invalid');
    assert.match(await page.textContent('.invalid-feedback[data-for="workdir"]'), /absolute path/);
    await page.fill('#f-env-files', 'MODE=/run/secrets/mode');
    await page.fill('#f-workdir', '/srv');
    await page.click('#save-job');
    await page.waitForSelector('#f-env-files.is-invalid');
    assert.match(await page.textContent('.invalid-feedback[data-for="envFiles"]'), /MODE is also in Environment/);
    await page.fill('#f-env-files', 'TOKEN=/run/secrets/token');
    await shot('job-dialog-env');
    const [replaced] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'PUT' && path(r) === `/api/v1/jobs/${y}`),
      page.click('#save-job'),
    ]);
    const sent = replaced.postDataJSON();
    assert.deepEqual(sent.env, { MODE: 'full', EMPTY: '', TOKEN: { file: '/run/secrets/token' } });
    assert.equal(sent.workdir, '/srv');
    assert.equal(sent.user, 'nobody');
    assert.equal('onFailure' in sent, false);
    assert.equal((await replaced.response()).status(), 200);
    await page.waitForSelector('#job-modal', { state: 'hidden' });

    await deleteJobs(page, [x, y]);
  } catch (e) {
    await shot('failure-cycle').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  assert.deepEqual(consoleErrors.filter((m) => !provoked.test(m)), [], 'no console errors');
  assert.deepEqual(failed, [`400 PUT /api/v1/jobs/${y}`], 'only the cycle was refused');
  assert.deepEqual(foreign, [], 'nothing loaded from outside the master');
});
