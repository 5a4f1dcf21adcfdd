// A page of another origin (a second local HTTP server, as any web site the
// operator visits would be) tries to drive the master through the browser:
// an auto-submitted form POST to the legacy route (no CORS preflight) and a
// fetch to the REST API. Nothing may be stored, nothing run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, rmSync } from 'node:fs';
import { chromium } from 'playwright-core';

const base = process.env.RCRON_UI_URL;
if (!base) throw new Error('RCRON_UI_URL is not set: run ui/run-e2e.sh through deploy/test-env.sh (deploy/test.sh does)');

test('a page of another origin cannot store or run a job', { timeout: 60_000 }, async () => {
  const marker = `/tmp/rcron-xsite-${process.pid}`;
  rmSync(marker, { force: true });
  const job = JSON.stringify({ name: 'xsite', command: `touch ${marker}`, cronExpr: '* * * * * * *' });
  const page = `<!doctype html><meta charset="utf-8"><title>evil</title>
<form id="f" method="post" action="${base}/job/save" target="sink">
  <input type="hidden" name="job" value='${job}'>
</form>
<iframe name="sink"></iframe>
<script>
  window.results = {};
  document.getElementById('f').submit();
  fetch('${base}/api/v1/jobs', { method: 'POST', mode: 'no-cors',
    headers: { 'Content-Type': 'text/plain' }, body: ${JSON.stringify(job)} })
    .then(() => { window.results.fetch = 'sent'; }, (e) => { window.results.fetch = String(e); });
  fetch('${base}/api/v1/jobs/xsite/run', { method: 'POST', mode: 'no-cors' })
    .then(() => { window.results.run = 'sent'; }, (e) => { window.results.run = String(e); });
</script>`;
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page);
  });
  await new Promise((resolve) => evil.listen(0, '127.0.0.1', resolve));
  const evilUrl = `http://127.0.0.1:${evil.address().port}/`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const answers = [];
  try {
    const tab = await browser.newPage();
    tab.on('response', (r) => { if (r.url().startsWith(base)) answers.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`); });
    await tab.goto(evilUrl);
    await tab.waitForFunction(() => window.results.fetch && window.results.run, null, { timeout: 10_000 });
    // The form's answer lands in the iframe; give it and a tick of the
    // worker (had anything been stored) time.
    await new Promise((r) => setTimeout(r, 2_000));
  } finally {
    await browser.close();
    evil.close();
  }
  // Asked without an Origin (as a script would): the job does not exist.
  const resp = await fetch(`${base}/api/v1/jobs/xsite`);
  assert.equal(resp.status, 404, 'no job was stored');
  assert.ok(!existsSync(marker), 'no command ran');
  assert.ok(answers.includes('403 POST /job/save'), `the form post was refused: ${answers}`);
  assert.ok(answers.includes('403 POST /api/v1/jobs'), `the fetch was refused: ${answers}`);
});
