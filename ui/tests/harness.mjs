// What the browser tests of the web admin share: a headless chromium on
// the admin (Debian's, driven by playwright-core) that records what went
// wrong, and reads of the REST API. Not a test file itself (node --test
// runs *.test.mjs).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const base = process.env.RCRON_UI_URL;
export const artifacts = process.env.RCRON_UI_ARTIFACTS || 'target/ui-artifacts';
if (!base) throw new Error('RCRON_UI_URL is not set: run ui/run-e2e.sh through deploy/test-env.sh (deploy/test.sh does)');
mkdirSync(artifacts, { recursive: true });

// A headless chromium on the admin, recording what went wrong: console
// errors, requests that failed (4xx/5xx) and requests to other origins.
// Confirmation dialogs are accepted, unless `onDialog` handles them; a
// `viewport` and a `theme` ('light', 'dark') may be asked for.
export async function openAdmin({ onDialog, viewport = { width: 1400, height: 900 }, theme } = {}) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport });
  if (theme) await page.addInitScript((t) => localStorage.setItem('rcron-theme', t), theme);
  const consoleErrors = [];
  const foreign = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  page.on('dialog', onDialog || ((d) => d.accept()));
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`); });
  const shot = (name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
  return { browser, page, consoleErrors, foreign, failed, shot };
}

// Chromium logs every 4xx answer as a console error.
export const provoked = /Failed to load resource: the server responded with a status of 400/;

// The job as the REST API returns it (null when there is none).
export async function storedJob(name) {
  const r = await fetch(`${base}/api/v1/jobs/${encodeURIComponent(name)}`);
  if (r.status === 404) return null;
  assert.equal(r.status, 200, `GET job ${name}`);
  return r.json();
}

export async function eventually(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
