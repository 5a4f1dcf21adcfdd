// rcron web admin. Uses only the public REST API (/api/v1); no framework,
// no build step. Pages: #/jobs, #/job?name=NAME (one job and its chain),
// #/logs?job=NAME[&run=RUNID], #/workers, #/cluster, #/audit. Lists are
// paged by the server (jobs by name cursor, runs by `before`); the page
// shown is read again every few seconds while the tab is visible.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
// Runs on a page of the logs; jobs on a page of the jobs list.
const PAGE_SIZE = 20;
const JOB_PAGE_SIZE = 50;
// The shown page is read again this often, while the tab is visible and no
// dialog is open.
const REFRESH_MS = 5000;
// The "Last run" column costs one query per job shown: read again every
// this many refreshes, and at once when other jobs are shown.
const LAST_RUN_EVERY = 3;

// ---- API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.problems = (body && body.problems) || [];
  }
}

async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem('rcron-token');
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: `cannot reach the master: ${e.message}` });
  }
  if (resp.status === 401) {
    const entered = prompt('This rcron API needs a token:');
    if (entered) {
      sessionStorage.setItem('rcron-token', entered.trim());
      return api(method, path, body);
    }
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// ---- helpers --------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ''));
  return node;
}

function toast(message, kind = 'danger') {
  // Warnings are dark text on yellow: a dark close button.
  const close = kind === 'warning' ? 'btn-close' : 'btn-close btn-close-white';
  const t = el('div', { class: `toast align-items-center text-bg-${kind} border-0`, role: 'alert' },
    el('div', { class: 'd-flex' }, el('div', { class: 'toast-body' }, message),
      el('button', { type: 'button', class: `${close} me-2 m-auto`, 'data-bs-dismiss': 'toast', 'aria-label': 'Close' })));
  $('#toasts').append(t);
  const b = new bootstrap.Toast(t, { delay: kind === 'success' ? 3000 : 8000 });
  t.addEventListener('hidden.bs.toast', () => t.remove());
  b.show();
}

const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '–');
const fmtIso = (iso) => (iso ? new Date(iso).toLocaleString() : '–');
function fmtDuration(ms) {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
// Verdicts are ticks that ran no command: shown as badges, apart from runs.
const VERDICT_BADGE = { skipped: 'text-bg-secondary', missed: 'text-bg-warning' };
const isVerdict = (status) => Object.hasOwn(VERDICT_BADGE, status);
const statusBadge = (status) => el('span', { class: isVerdict(status) ? `badge ${VERDICT_BADGE[status]} status-${status}` : `status-${status}` }, status);

// A worker's clock offset from the leader's beacon: "+3013 ms", "-12 ms".
const fmtOffset = (ms) => `${ms >= 0 ? '+' : ''}${ms} ms`;

// Labels ({role: 'db'}) as `role=db, zone=eu-1`: how the job dialog shows them.
const fmtLabels = (labels) => Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(', ');

// Labels as small badges, or null when there are none. With `pick`, a
// click on one calls it with `key=value` (the jobs list filters on it).
function labelBadges(labels, pick) {
  const entries = Object.entries(labels || {});
  const badge = ([k, v]) => el('span', pick
    ? { class: 'badge text-bg-light border me-1 label-pick', 'data-label': k, role: 'button', title: `only jobs placed on ${k}=${v}`, onclick: () => pick(`${k}=${v}`) }
    : { class: 'badge text-bg-light border me-1', 'data-label': k }, `${k}=${v}`);
  return entries.length ? el('span', { class: 'labels' }, ...entries.map(badge)) : null;
}

// 10000 → "10,000"; a capped total (the logs count up to 10,000) → "10,000+".
const fmtCount = (n, capped = false) => `${Number(n).toLocaleString('en-US')}${capped ? '+' : ''}`;

// Compares two strings by code point: the order of the API's pages (Rust
// compares UTF-8 bytes; JavaScript's < compares UTF-16 units).
function byCodePoint(a, b) {
  const [x, y] = [[...a], [...b]];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

// The job named `name` as the list shows it, or null when there is none.
// Read from the list, not GET /jobs/{name}, whose 404 the browser reports
// as a failed request: the page from just before the name (a proper prefix
// sorts first), searching for it; names are unique and sorted, so the walk
// stops at the first name past it.
async function findJob(name) {
  if (!name) return null;
  let cursor = [...name].slice(0, -1).join('');
  for (;;) {
    const q = new URLSearchParams({ q: name, limit: 100 });
    if (cursor) q.set('cursor', cursor);
    const page = await api('GET', `/jobs?${q}`);
    for (const j of page.jobs) {
      if (j.name === name) return j;
      if (byCodePoint(j.name, name) > 0) return null;
    }
    if (!page.nextCursor) return null;
    cursor = page.nextCursor;
  }
}

// "role=db, zone=eu-1" → {role: 'db', zone: 'eu-1'}, as rcronctl's --target
// and the workers' RCRON_WORKER_LABELS read it. Only the shape is checked
// here; the server checks the characters and answers 400 with the reason.
function parseLabels(text) {
  const labels = Object.create(null);
  for (const item of text.split(',').map((i) => i.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq < 0) throw new Error(`label "${item}" is not key=value`);
    const key = item.slice(0, eq).trim();
    if (Object.hasOwn(labels, key)) throw new Error(`label "${key}" is given twice`);
    labels[key] = item.slice(eq + 1).trim();
  }
  return labels;
}

// "KEY=VALUE" lines → {KEY: 'VALUE'}: the value is everything after the
// first `=`, kept as typed; blank lines are skipped. Only the shape is
// checked here: the server judges the names and answers 400 naming each.
function parseEnvLines(text) {
  const env = Object.create(null);
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (!line.trim()) return;
    const eq = line.indexOf('=');
    const key = eq < 0 ? '' : line.slice(0, eq).trim();
    if (!key) throw new Error(`line ${i + 1}: expected KEY=VALUE, got "${line.trim()}"`);
    if (Object.hasOwn(env, key)) throw new Error(`line ${i + 1}: ${key} is given twice`);
    env[key] = line.slice(eq + 1);
  });
  return env;
}

// "a, b" → ['a', 'b'], for the chain fields: each must name an existing job
// other than `self`, once. The server refuses cycles; a name that is no job
// would only be noticed when a run ends (a chainBroken alert), so it is
// caught here: names not on the page shown are looked up.
async function parseJobNames(text, self) {
  const names = text.split(',').map((n) => n.trim()).filter(Boolean);
  names.forEach((n, i) => {
    if (n === self) throw new Error(`a job cannot start itself (${n})`);
    if (names.indexOf(n) !== i) throw new Error(`"${n}" is listed twice`);
  });
  const shown = new Set(jobs.map((j) => j.name));
  const found = await Promise.all(names.map((n) => shown.has(n) || findJob(n)));
  const missing = names.find((n, i) => !found[i]);
  if (missing) throw new Error(`no job is named "${missing}"`);
  return names;
}

// ---- jobs -----------------------------------------------------------------

// The page of jobs shown: the server pages, searches and filters (q,
// enabled, label); the browser keeps the cursor of each page walked, so
// Previous goes back without counting.
let jobs = [];
let jobTotal = 0;
let jobNext = null;
let jobCursors = [null]; // where each page walked starts; null: the first
const jobFilter = { q: '', enabled: '', label: '' };
let jobSeq = 0;
// Each shown job's newest record (null: it has none), read per job.
const lastRuns = new Map();
let lastRunKey = null;
let lastRunAge = 0;
let lastRunBusy = false;
let editing = null; // name of the job being edited, or null for a new one
const modal = () => bootstrap.Modal.getOrCreateInstance($('#job-modal'));

async function loadJobs() {
  const seq = ++jobSeq;
  const q = new URLSearchParams({ limit: JOB_PAGE_SIZE });
  const cursor = jobCursors[jobCursors.length - 1];
  if (cursor) q.set('cursor', cursor);
  for (const [k, v] of Object.entries(jobFilter)) if (v) q.set(k, v);
  const page = await api('GET', `/jobs?${q}`);
  // A newer read (another page, another filter) answers instead.
  if (seq !== jobSeq) return;
  if (!page.jobs.length && jobCursors.length > 1) {
    // This page's jobs are gone (deleted, or paused under a filter).
    jobCursors.pop();
    await loadJobs();
    return;
  }
  jobs = page.jobs;
  jobTotal = page.total;
  jobNext = page.nextCursor || null;
  renderJobs();
  await loadLastRuns();
}

// The newest record of each job shown: one query per job (with limit=1),
// all at once, never two rounds together.
async function loadLastRuns() {
  const names = jobs.map((j) => j.name);
  const key = names.join('\n');
  if (lastRunBusy || (key === lastRunKey && ++lastRunAge < LAST_RUN_EVERY)) return;
  lastRunBusy = true;
  try {
    const newest = await Promise.all(names.map((n) => api('GET', `/jobs/${encodeURIComponent(n)}/logs?limit=1`)
      .then((p) => p.logs[0] || null, () => undefined)));
    names.forEach((n, i) => { if (newest[i] !== undefined) lastRuns.set(n, newest[i]); });
    lastRunKey = key;
    lastRunAge = 0;
  } finally {
    lastRunBusy = false;
  }
  for (const td of document.querySelectorAll('#jobs-table td.last-run')) td.replaceChildren(lastRunContent(td.closest('tr').dataset.job));
  // Other jobs were shown meanwhile: theirs now.
  if (jobs.map((j) => j.name).join('\n') !== lastRunKey) await loadLastRuns();
}

// A job's newest record as a link to its runs; '–' when it has none, empty
// until read.
function lastRunContent(name) {
  if (!lastRuns.has(name)) return '';
  const last = lastRuns.get(name);
  return last ? el('a', { class: 'runs-link', href: logsHref(name), title: `its runs (newest: ${fmtTime(last.startTime)})` }, statusBadge(last.status)) : '–';
}

// Shows the first page for another search or filter.
function setJobFilter(change) {
  Object.assign(jobFilter, change);
  jobCursors = [null];
  const label = $('#job-label-filter');
  label.textContent = jobFilter.label ? `label ${jobFilter.label} ✕` : '';
  label.classList.toggle('d-none', !jobFilter.label);
  refresh();
}

function renderJobs() {
  const body = $('#jobs-table tbody');
  body.replaceChildren(...jobs.map((j) => {
    const act = (label, cls, fn) => el('button', { class: `btn btn-sm btn-outline-${cls}`, 'data-action': label.toLowerCase(), onclick: fn }, label);
    return el('tr', { 'data-job': j.name },
      el('td', {}, el('a', { class: 'job-link', href: jobHref(j.name) }, j.name)),
      el('td', { class: 'command font-monospace small', title: j.command }, j.command),
      el('td', { class: 'font-monospace small' }, j.cronExpr),
      el('td', {}, j.timezone || 'cluster'),
      targetCell(j, (label) => setJobFilter({ label })),
      el('td', {}, fmtIso(j.nextFireTime)),
      el('td', { class: 'last-run' }, lastRunContent(j.name)),
      el('td', {}, j.disabled ? el('span', { class: 'badge text-bg-secondary' }, 'paused') : el('span', { class: 'badge text-bg-success' }, 'yes')),
      el('td', { class: 'text-end text-nowrap' },
        el('div', { class: 'btn-group' },
          act('Edit', 'primary', () => openEditor(j)),
          act('Run', 'success', () => openRunDialog(j.name)),
          act('Kill', 'warning', () => jobAction(j.name, 'kill', `kill sent to ${j.name}`)),
          act(j.disabled ? 'Resume' : 'Pause', 'secondary', () => setPaused(j, !j.disabled)),
          act('Delete', 'danger', () => deleteJob(j.name)))));
  }));
  const filtered = Object.values(jobFilter).some(Boolean);
  const first = (jobCursors.length - 1) * JOB_PAGE_SIZE + 1;
  $('#jobs-range').textContent = jobs.length ? `${fmtCount(first)}–${fmtCount(first + jobs.length - 1)} of` : '';
  $('#jobs-total').textContent = `${fmtCount(jobTotal)} ${jobTotal === 1 ? 'job' : 'jobs'}`;
  $('#jobs-prev').disabled = jobCursors.length === 1;
  $('#jobs-next').disabled = !jobNext;
  $('#jobs-empty').classList.toggle('d-none', jobTotal > 0 || filtered);
  $('#jobs-none-match').classList.toggle('d-none', jobTotal > 0 || !filtered);
}

// Where a job runs: its labels (or "any"), "all workers" when every
// matching worker runs each tick, and a warning when no live worker matches.
// With `pick`, a click on a label filters the list on it.
function targetCell(j, pick) {
  const labels = j.target?.labels || {};
  const all = j.target?.mode === 'all';
  const badges = labelBadges(labels, pick);
  const parts = [];
  if (badges) parts.push(badges);
  if (all) parts.push(el('span', { class: 'small' }, badges ? '(all workers)' : 'all workers'));
  else if (!badges) parts.push(el('span', { class: 'text-muted' }, 'any'));
  if (j.unschedulable) {
    const who = badges ? `carries ${fmtLabels(labels)}` : 'is up';
    parts.push(el('span', { class: 'badge bg-danger ms-1 unschedulable', title: `No live worker ${who}: its runs start nowhere until one does` }, 'unschedulable'));
  }
  const matching = j.matchingWorkers === undefined ? undefined
    : `${j.matchingWorkers} live worker${j.matchingWorkers === 1 ? '' : 's'} may run it`;
  return el('td', { class: 'target', title: matching }, ...parts);
}

const jobHref = (name) => `#/job?name=${encodeURIComponent(name)}`;
const logsHref = (name, runId) => `#/logs?job=${encodeURIComponent(name)}${runId ? `&run=${encodeURIComponent(runId)}` : ''}`;

// ---- one job --------------------------------------------------------------

let detailName = '';
let detailJob = null;

// One job and the jobs that start it: the API stores each link on the job
// that starts the other, and lists those with `chainsTo`.
async function loadJob() {
  const name = detailName;
  const job = await findJob(name);
  const startedBy = job ? await api('GET', `/jobs?${new URLSearchParams({ chainsTo: name, limit: 1000 })}`) : null;
  if (name !== detailName) return;
  detailJob = job;
  renderJob(startedBy);
}

// One job: its definition and its chain.
function renderJob(startedByPage) {
  const j = detailJob;
  $('#job-title').textContent = detailName;
  $('#job-runs').href = logsHref(detailName);
  $('#job-missing').classList.toggle('d-none', !!j);
  $('#job-body').classList.toggle('d-none', !j);
  for (const b of ['#job-edit', '#job-run']) $(b).disabled = !j;
  if (!j) { $('#job-state').replaceChildren(); return; }
  $('#job-state').replaceChildren(j.disabled ? el('span', { class: 'badge text-bg-secondary' }, 'paused') : el('span', { class: 'badge text-bg-success' }, 'enabled'),
    j.unschedulable ? el('span', { class: 'badge bg-danger ms-1' }, 'unschedulable') : '');
  const env = Object.entries(j.env || {}).map(([k, v]) => (typeof v === 'string' ? `${k}=${v}` : `${k} from file ${v?.file}`));
  const rows = [
    ['Command', el('code', {}, j.command)],
    ['Cron', el('code', {}, j.cronExpr)],
    ['Time zone', j.timezone || 'cluster'],
    ['Next run', fmtIso(j.nextFireTime)],
    ['Target', targetCell(j).textContent],
    ['Overlapping runs', j.concurrency],
    ['Timeout', j.timeoutSecs ? `${j.timeoutSecs} s` : 'none'],
    ['Retries', String(j.retries)],
    ['Environment', env.length ? el('pre', { class: 'mb-0 env' }, env.join('\n')) : '–'],
    ['Working directory', j.workdir || '–'],
    ['User', j.user || '–'],
  ];
  $('#job-fields').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { class: 'col-sm-4' }, k), el('dd', { class: 'col-sm-8' }, v)]));

  const link = (name, when) => el('li', { 'data-job': name, 'data-when': when },
    el('a', { href: jobHref(name) }, name), ` ${when === 'onSuccess' ? 'on success' : 'on failure'}`);
  const startedBy = startedByPage.jobs.flatMap((x) => ['onSuccess', 'onFailure']
    .filter((when) => (x[when] || []).includes(j.name)).map((when) => link(x.name, when)));
  const more = startedByPage.total - startedByPage.jobs.length;
  if (more > 0) startedBy.push(el('li', { class: 'text-muted' }, `and ${fmtCount(more)} more`));
  const starts = ['onSuccess', 'onFailure'].flatMap((when) => (j[when] || []).map((n) => link(n, when)));
  const none = (what) => el('li', { class: 'text-muted' }, what);
  $('#job-started-by').replaceChildren(...(startedBy.length ? startedBy : [none('no job: only its schedule and run now')]));
  $('#job-starts').replaceChildren(...(starts.length ? starts : [none('no job')]));
}

async function jobAction(name, action, done) {
  try { await api('POST', `/jobs/${encodeURIComponent(name)}/${action}`); toast(done, 'success'); }
  catch (e) { toast(`${action} ${name}: ${e.message}`); }
}

// ---- run now --------------------------------------------------------------

let runName = null;
const runModal = () => bootstrap.Modal.getOrCreateInstance($('#run-modal'));

function openRunDialog(name) {
  runName = name;
  $('#run-form').reset();
  $('#run-env').classList.remove('is-invalid');
  for (const id of ['#run-error', '#run-result']) $(id).classList.add('d-none');
  $('#run-modal-title').textContent = `Run ${name} now`;
  $('#run-logs').href = logsHref(name);
  runModal().show();
}

async function submitRun(ev) {
  ev.preventDefault();
  $('#run-env').classList.remove('is-invalid');
  for (const id of ['#run-error', '#run-result']) $(id).classList.add('d-none');
  const body = {};
  try {
    const env = parseEnvLines($('#run-env').value);
    if (Object.keys(env).length) body.env = env;
  } catch (e) {
    $('#run-env').classList.add('is-invalid');
    $('.invalid-feedback[data-for="runEnv"]').textContent = e.message;
    return;
  }
  const deadline = $('#run-deadline').value.trim();
  if (deadline) body.deadlineSecs = Number(deadline);
  try {
    const r = await api('POST', `/jobs/${encodeURIComponent(runName)}/run`, body);
    $('#run-request-id').textContent = r.requestId;
    $('#run-deadline-at').textContent = fmtTime(r.deadline);
    $('#run-result').classList.remove('d-none');
  } catch (e) {
    // The API names each refused variable (`env.NAME: …; …`): one a line.
    $('#run-error').textContent = e.message.split('; ').join('\n');
    $('#run-error').classList.remove('d-none');
  }
}

async function setPaused(job, paused) {
  // A patch of one field: nothing else of the job is rewritten (operators may send it).
  try { await api('PATCH', `/jobs/${encodeURIComponent(job.name)}`, { disabled: paused }); toast(`${job.name} ${paused ? 'paused' : 'resumed'}`, 'success'); await loadJobs(); }
  catch (e) { toast(`${job.name}: ${e.message}`); }
}

async function deleteJob(name) {
  if (!confirm(`Delete job ${name}? Its logs are kept.`)) return;
  try { await api('DELETE', `/jobs/${encodeURIComponent(name)}`); toast(`${name} deleted`, 'success'); await loadJobs(); }
  catch (e) { toast(`delete ${name}: ${e.message}`); }
}

function openEditor(job) {
  editing = job ? job.name : null;
  const f = $('#job-form');
  f.reset();
  clearErrors();
  $('#job-modal-title').textContent = job ? `Edit ${job.name}` : 'New job';
  f.name.readOnly = !!job;
  if (job) {
    f.name.value = job.name;
    f.command.value = job.command;
    f.cronExpr.value = job.cronExpr;
    f.timezone.value = job.timezone || '';
    f.timeoutSecs.value = job.timeoutSecs;
    f.concurrency.value = job.concurrency;
    f.retries.value = job.retries;
    f.retryBackoffSecs.value = job.retryBackoffSecs;
    f.retryBackoffMaxSecs.value = job.retryBackoffMaxSecs ?? 0;
    f.misfire.value = job.misfire || 'skip';
    f.startingDeadlineSecs.value = job.startingDeadlineSecs ?? 0;
    f.alertOnMissed.checked = job.alertOnMissed !== false;
    f.alertEmails.value = (job.alertEmails || []).join(', ');
    f.disabled.checked = job.disabled;
    f.targetLabels.value = fmtLabels(job.target?.labels);
    f.targetMode.value = job.target?.mode || 'one';
    f.onSuccess.value = (job.onSuccess || []).join(', ');
    f.onFailure.value = (job.onFailure || []).join(', ');
    // env values are strings, or {file: path} for a value read on the worker.
    const env = Object.entries(job.env || {});
    f.env.value = env.filter(([, v]) => typeof v === 'string').map(([k, v]) => `${k}=${v}`).join('\n');
    f.envFiles.value = env.filter(([, v]) => typeof v !== 'string').map(([k, v]) => `${k}=${v?.file ?? ''}`).join('\n');
    f.workdir.value = job.workdir || '';
    f.user.value = job.user || '';
  }
  $('#cron-preview').textContent = '';
  showCronWarnings([]);
  modal().show();
  if (job) previewCron();
}

function clearErrors() {
  for (const i of $('#job-form').querySelectorAll('.is-invalid')) i.classList.remove('is-invalid');
  $('#form-error').classList.add('d-none');
  $('#chain-error-row').classList.add('d-none');
}

function showFieldError(field, message) {
  // A cycle is a problem of both chain lists together: both are marked,
  // the path is said once under them.
  if (field === 'chains') {
    for (const name of ['onSuccess', 'onFailure']) $('#job-form').elements[name].classList.add('is-invalid');
    $('#chain-error').textContent = message;
    $('#chain-error-row').classList.remove('d-none');
    return true;
  }
  const input = $('#job-form').elements[field];
  const fb = $(`.invalid-feedback[data-for="${field}"]`);
  if (!input || !fb) return false;
  input.classList.add('is-invalid');
  fb.textContent = message;
  return true;
}

// The form field of a problem's JSON path, where they differ.
const FIELD_OF = { 'target.labels': 'targetLabels', 'onSuccess/onFailure': 'chains' };

// The field of a problem's path: `env.NAME` is in one of the two env
// fields, the one that has NAME.
function fieldOf(path) {
  if (FIELD_OF[path]) return FIELD_OF[path];
  const env = /^env\.(.+)$/.exec(path);
  if (env) return Object.hasOwn(safeEnv($('#job-form').envFiles.value), env[1]) ? 'envFiles' : 'env';
  return path;
}

function safeEnv(text) {
  try { return parseEnvLines(text); } catch { return {}; }
}

// Problems look like "`cronExpr`: ...", "`name` may contain ..." or
// "`onSuccess`/`onFailure`: ...": put each next to its field (all of a
// field's together), the rest in the form's alert.
function showProblems(err) {
  const byField = new Map();
  const rest = [];
  for (const p of err.problems.length ? err.problems : [err.message]) {
    const m = /^`([\w.]+)`(?:\/`([\w.]+)`)?:?\s*(.*)$/.exec(p);
    const field = m && fieldOf(m[2] ? `${m[1]}/${m[2]}` : m[1]);
    if (field) byField.set(field, [...(byField.get(field) || []), [m[3] || p, p]]);
    else rest.push(p);
  }
  for (const [field, ps] of byField) {
    if (!showFieldError(field, ps.map(([short]) => short).join('; '))) rest.push(...ps.map(([, full]) => full));
  }
  if (rest.length) {
    $('#form-error').textContent = rest.join('\n');
    $('#form-error').classList.remove('d-none');
  }
}

// What the API warns of in an expression (a daylight-saving change it runs
// into, 6 fields written seconds-first): shown under the field, never a
// refusal.
function showCronWarnings(warnings) {
  const box = $('#cron-warnings');
  box.replaceChildren(...(warnings.length ? [el('ul', { class: 'mb-0 ps-3' }, ...warnings.map((w) => el('li', {}, w)))] : []));
  box.classList.toggle('d-none', !warnings.length);
}

let previewTimer = null;
let previewSeq = 0;
async function previewCron() {
  const f = $('#job-form');
  const expr = f.cronExpr.value.trim();
  f.cronExpr.classList.remove('is-invalid');
  $('#cron-preview').textContent = '';
  showCronWarnings([]);
  if (!expr) return;
  const seq = ++previewSeq;
  try {
    const body = { cronExpr: expr, count: 5 };
    if (f.timezone.value.trim()) body.timezone = f.timezone.value.trim();
    const p = await api('POST', '/cron/preview', body);
    if (seq !== previewSeq) return;
    $('#cron-preview').textContent = p.next.length
      ? `Next runs (your time): ${p.next.map((t) => new Date(t).toLocaleString()).join(' · ')}`
      : 'This expression never fires again.';
    showCronWarnings(p.warnings || []);
  } catch (e) {
    if (seq !== previewSeq) return;
    showFieldError(/time zone/.test(e.message) ? 'timezone' : 'cronExpr', e.message);
  }
}

async function saveJob(ev) {
  ev.preventDefault();
  clearErrors();
  const f = $('#job-form');
  const num = (v) => (v === '' ? 0 : Number(v));
  const spec = {
    name: f.name.value.trim(),
    command: f.command.value,
    cronExpr: f.cronExpr.value.trim(),
    timeoutSecs: num(f.timeoutSecs.value),
    concurrency: f.concurrency.value,
    retries: num(f.retries.value),
    retryBackoffSecs: num(f.retryBackoffSecs.value),
    disabled: f.disabled.checked,
    alertEmails: f.alertEmails.value.split(',').map((s) => s.trim()).filter(Boolean),
  };
  if (f.timezone.value.trim()) spec.timezone = f.timezone.value.trim();
  // The tick policies are sent only when they differ from their defaults,
  // like the target below: the body of a job that does not use them stays
  // the original system's.
  if (f.misfire.value !== 'skip') spec.misfire = f.misfire.value;
  if (num(f.startingDeadlineSecs.value)) spec.startingDeadlineSecs = num(f.startingDeadlineSecs.value);
  if (!f.alertOnMissed.checked) spec.alertOnMissed = false;
  if (num(f.retryBackoffMaxSecs.value)) spec.retryBackoffMaxSecs = num(f.retryBackoffMaxSecs.value);
  let labels;
  try { labels = parseLabels(f.targetLabels.value); } catch (e) { showFieldError('targetLabels', e.message); return; }
  // No labels and one worker per tick is no target at all: sent as none, so
  // that a job of the original system saved from here stays as it was.
  if (Object.keys(labels).length || f.targetMode.value === 'all') spec.target = { labels, mode: f.targetMode.value };
  // Chains, environment, directory and user: sent only when set, like the
  // policies above.
  const problems = [];
  for (const field of ['onSuccess', 'onFailure']) {
    try {
      const names = await parseJobNames(f[field].value, spec.name);
      if (names.length) spec[field] = names;
    } catch (e) { problems.push([field, e.message]); }
  }
  const env = {};
  try { Object.assign(env, parseEnvLines(f.env.value)); } catch (e) { problems.push(['env', e.message]); }
  try {
    for (const [k, path] of Object.entries(parseEnvLines(f.envFiles.value))) {
      if (Object.hasOwn(env, k)) throw new Error(`${k} is also in Environment`);
      env[k] = { file: path.trim() };
    }
  } catch (e) { problems.push(['envFiles', e.message]); }
  if (Object.keys(env).length) spec.env = env;
  const workdir = f.workdir.value.trim();
  if (workdir && !workdir.startsWith('/')) problems.push(['workdir', 'must be an absolute path (starting with /)']);
  if (workdir) spec.workdir = workdir;
  if (f.user.value.trim()) spec.user = f.user.value.trim();
  if (problems.length) {
    for (const [field, message] of problems) showFieldError(field, message);
    return;
  }
  try {
    const saved = editing
      ? await api('PUT', `/jobs/${encodeURIComponent(editing)}`, spec)
      : await api('POST', '/jobs', spec);
    modal().hide();
    const warnings = saved?.warnings || [];
    if (warnings.length) toast(`${spec.name} saved. Warning: ${warnings.join(' · ')}`, 'warning');
    else toast(`${spec.name} saved`, 'success');
    // The jobs list or this job's page, whichever is shown.
    await refresh();
  } catch (e) {
    showProblems(e);
  }
}

// ---- logs -----------------------------------------------------------------

// The logs page by keyset: `before` = the previous page's nextCursor; the
// cursors walked are kept, so Newer goes back the way it came.
let logCursors = [null];
let logNext = null;
let logSeq = 0;
let selectedRun = null;
// A run to select once its page is loaded (#/logs?job=A&run=ID: the run
// that started a chained one).
let focusRun = null;

// What started a run: its schedule, a run-now request, or (a chain) the end
// of another job's run, linked to that run.
function triggerCell(l) {
  const trigger = l.trigger || 'schedule';
  const by = l.triggeredBy;
  const parts = [el('span', { class: trigger === 'schedule' ? 'text-muted' : 'badge text-bg-info' }, trigger)];
  if (by) {
    parts.push(' ← ', el('a', {
      class: 'triggered-by', href: logsHref(by.job, by.runId), title: `run ${by.runId} of ${by.job}`,
      onclick: (ev) => ev.stopPropagation(),
    }, by.job));
  }
  return el('td', { class: 'trigger small text-nowrap' }, ...parts);
}

async function loadLogs() {
  const job = $('#log-job').value.trim();
  const status = $('#log-status').value;
  const q = new URLSearchParams({ limit: PAGE_SIZE });
  const before = logCursors[logCursors.length - 1];
  if (before) q.set('before', before);
  if (job) q.set('job', job);
  if (status) q.set('status', status);
  const seq = ++logSeq;
  const page = await api('GET', `/logs?${q}`);
  if (seq !== logSeq) return;
  if (!page.logs.length && logCursors.length > 1) {
    // This page's records expired (the log's TTL): the page before.
    logCursors.pop();
    await loadLogs();
    return;
  }
  logNext = page.nextCursor || null;
  const body = $('#logs-table tbody');
  body.replaceChildren(...page.logs.map((l) => {
    const key = `${l.runId}-${l.attempt}`;
    const verdict = isVerdict(l.status);
    const classes = [key === selectedRun ? 'table-active' : '', verdict ? 'verdict' : ''].filter(Boolean).join(' ');
    // A verdict ran nothing: no duration; its reason is all there is to say.
    const row = el('tr', { 'data-run': key, 'data-run-id': l.runId, 'data-status': l.status, 'data-trigger': l.trigger || 'schedule', class: classes, onclick: () => showOutput(l, key) },
      el('td', {}, fmtTime(l.startTime)),
      el('td', {}, l.jobName),
      el('td', {}, statusBadge(l.status)),
      triggerCell(l),
      el('td', {}, verdict ? '–' : fmtDuration(Math.max(0, l.endTime - l.startTime))),
      el('td', {}, l.exitCode ?? '–'),
      el('td', {}, l.attempt),
      el('td', {}, l.worker),
      el('td', { class: 'reason small', title: verdict ? `tick of ${fmtTime(l.planTime)}` : undefined }, l.reason || ''));
    return row;
  }));
  const first = (logCursors.length - 1) * PAGE_SIZE + 1;
  $('#log-summary').textContent = page.logs.length
    ? `${fmtCount(first)}–${fmtCount(first + page.logs.length - 1)} of ${fmtCount(page.total, page.totalCapped)}, newest first`
    : 'no runs';
  $('#log-newer').disabled = logCursors.length === 1;
  $('#log-older').disabled = !logNext;
  if (focusRun) {
    // Newest first: the run's last attempt, the one whose end chained.
    const l = page.logs.find((x) => x.runId === focusRun);
    if (l) showOutput(l, `${l.runId}-${l.attempt}`);
    focusRun = null;
  }
}

function resetLogPages() {
  logCursors = [null];
  logNext = null;
}

function showOutput(l, key) {
  selectedRun = key;
  for (const r of document.querySelectorAll('#logs-table tbody tr')) r.classList.toggle('table-active', r.dataset.run === key);
  $('#log-output').classList.remove('d-none');
  $('#log-output-title').textContent = `${l.jobName} · ${fmtTime(l.startTime)} · ${l.status}${l.err ? ` · ${l.err}` : ''}`;
  // Pages of the log list carry no output: it is read per run.
  $('#log-output-text').textContent = isVerdict(l.status)
    ? `No command ran for the tick of ${fmtTime(l.planTime)}: ${l.reason || l.err || l.status}.`
    : 'loading output…';
  if (!isVerdict(l.status)) {
    api('GET', `/runs/${encodeURIComponent(l.runId)}`).then((run) => {
      if (selectedRun !== key) return;
      const attempt = run.attempts.find((a) => a.attempt === l.attempt) || run.attempts[run.attempts.length - 1];
      $('#log-output-text').textContent = attempt?.output || '(no output)';
    }).catch((e) => {
      if (selectedRun === key) $('#log-output-text').textContent = `cannot read the output: ${e.message || e}`;
    });
  }
  $('#log-truncated').classList.toggle('d-none', !l.outputTruncated);
  const by = l.triggeredBy;
  const origin = {
    manual: 'Started by a run-now request.',
    chain: by ? ['Started by the end of ', el('a', { href: logsHref(by.job, by.runId) }, `${by.job}`), ` run ${by.runId}.`] : 'Started by a chain.',
  }[l.trigger] || 'Started by its schedule.';
  $('#log-origin').replaceChildren(...[origin].flat(), ` Run ${l.runId}, attempt ${l.attempt}.`);
  // What a run-now request set for this run only.
  const env = Object.entries(l.params?.env || {});
  $('#log-params').replaceChildren(...(env.length
    ? ['Environment set for this run:', el('pre', { class: 'mb-0 env' }, env.map(([k, v]) => `${k}=${v}`).join('\n'))]
    : []));
  $('#log-params').classList.toggle('d-none', !env.length);
}

// ---- workers and cluster --------------------------------------------------

async function killRun(run) {
  if (!confirm(`Kill run ${run.runId} of ${run.job}? Its process group gets SIGTERM, then SIGKILL.`)) return;
  try {
    await api('POST', `/runs/${encodeURIComponent(run.runId)}/kill`);
    toast(`kill sent to the run of ${run.job}`, 'success');
  } catch (e) { toast(e.message); }
}

async function loadWorkers() {
  const { workers } = await api('GET', '/workers');
  const runs = (w) => (w.runs || []).length
    ? el('ul', { class: 'list-unstyled mb-0' }, ...w.runs.map((r) => el('li', { 'data-run': r.runId },
      `${r.job} `, el('span', { class: 'text-muted small' }, fmtDuration(Date.now() - r.startTime)), ' ',
      el('button', { class: 'btn btn-outline-danger btn-sm py-0 kill-run', onclick: () => killRun(r) }, 'Kill'))))
    : '–';
  $('#workers-table tbody').replaceChildren(...workers.map((w) => el('tr', { 'data-worker': w.id },
    el('td', {}, w.id, w.draining ? el('span', { class: 'badge text-bg-warning ms-2' }, 'draining') : ''),
    el('td', {}, w.ip), el('td', {}, w.hostname), el('td', {}, w.version),
    el('td', {}, fmtDuration(Date.now() - w.startTime)),
    el('td', {}, runs(w)), el('td', {}, w.capacity), el('td', {}, w.timezone || '–'),
    clockCell(w),
    el('td', { class: 'labels' }, labelBadges(w.labels) || '–'))));
  $('#workers-empty').classList.toggle('d-none', workers.length > 0);
}

// A worker's clock offset from the leader's beacon, and a red badge when it
// is beyond the worker's max_clock_skew_ms (it then fires nothing).
function clockCell(w) {
  const measured = w.clockOffsetMs !== undefined && w.clockOffsetMs !== null;
  return el('td', { class: 'clock text-nowrap', title: measured ? 'its clock minus the leader master\'s beacon' : 'not measured yet' },
    el('span', { class: 'offset' }, measured ? fmtOffset(w.clockOffsetMs) : '–'),
    w.clockSkewed ? el('span', { class: 'badge text-bg-danger ms-2 clock-skewed', title: 'beyond its max_clock_skew_ms: it fires no job until its clock is corrected' }, 'clock off — not firing') : '');
}

async function loadCluster() {
  const [c, pending] = await Promise.all([api('GET', '/cluster'), api('GET', '/alerts')]);
  $('#masters').replaceChildren(...c.masters.map((m) => el('li', { class: 'list-group-item' },
    m.leader ? el('span', { class: 'badge text-bg-primary me-2' }, 'leader') : '', `${m.id} `,
    el('a', { href: m.url }, m.url),
    m.leader && m.leaderSince ? el('span', { class: 'text-muted small ms-2' }, `since ${fmtTime(m.leaderSince)}`) : '')));
  const health = (name, h) => el('li', { class: 'list-group-item' },
    el('span', { class: `badge me-2 text-bg-${h.healthy ? 'success' : 'danger'}` }, h.healthy ? 'ok' : 'down'), name, h.error ? ` — ${h.error}` : '');
  $('#health').replaceChildren(health('etcd', c.etcd), health('MongoDB', c.mongo),
    el('li', { class: 'list-group-item' }, `${c.workers} worker(s), ${c.pendingAlerts} pending alert(s)`),
    c.zoneMismatch
      ? el('li', { class: 'list-group-item list-group-item-danger', id: 'zone-mismatch' }, el('span', { class: 'badge text-bg-danger me-2' }, 'zone'), c.zoneMismatch)
      : el('li', { class: 'list-group-item' }, `cluster zone: ${c.timezone}`));
  $('#alerts-table tbody').replaceChildren(...pending.alerts.map((a) => el('tr', {},
    el('td', {}, a.jobName), el('td', {}, statusBadge(a.status)), el('td', {}, a.err), el('td', {}, a.worker), el('td', {}, fmtTime(a.endTime)))));
  renderLeader(c);
}

function renderLeader(c) {
  $('#leader-badge').textContent = c.leader ? `leader: ${c.leader}` : 'no leader';
}

// ---- routing and refresh ----------------------------------------------------

// ---- audit ----------------------------------------------------------------

// What changed between two versions of a job, in a few words.
function changeSummary(e) {
  if (!e.before || !e.after) return '';
  const keys = new Set([...Object.keys(e.before), ...Object.keys(e.after)]);
  return [...keys].filter((k) => JSON.stringify(e.before[k]) !== JSON.stringify(e.after[k]))
    .map((k) => `${k}: ${JSON.stringify(e.before[k]) ?? '–'} → ${JSON.stringify(e.after[k]) ?? '–'}`).join('; ');
}

async function loadAudit() {
  const job = $('#audit-job').value.trim();
  const { entries } = await api('GET', `/audit?limit=100${job ? `&job=${encodeURIComponent(job)}` : ''}`);
  $('#audit-table tbody').replaceChildren(...entries.map((e) => el('tr', { 'data-action': e.action },
    el('td', {}, fmtTime(e.time)), el('td', {}, e.key), el('td', {}, e.action), el('td', {}, e.job || e.runId || '–'),
    el('td', { class: 'small' }, changeSummary(e)), el('td', { class: 'small text-muted' }, e.route),
    el('td', { class: 'small text-muted' }, e.forwardedFor || e.remote))));
  $('#audit-empty').classList.toggle('d-none', entries.length > 0);
}

const loaders = { jobs: loadJobs, job: loadJob, logs: loadLogs, workers: loadWorkers, cluster: loadCluster, audit: loadAudit };
let current = 'jobs';
let failing = false;

async function refresh() {
  try {
    await loaders[current]();
    if (failing) toast('the master answers again', 'success');
    failing = false;
  } catch (e) {
    if (!failing) toast(`${current}: ${e.message}`);
    failing = true;
  }
}

function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  current = loaders[path] ? path : 'jobs';
  for (const p of document.querySelectorAll('.page')) p.classList.toggle('d-none', p.id !== `page-${current}`);
  // A job's page is under Jobs.
  const section = current === 'job' ? 'jobs' : current;
  for (const a of document.querySelectorAll('.nav-link')) a.classList.toggle('active', a.dataset.page === section);
  const params = new URLSearchParams(query || '');
  if (current === 'job') detailName = params.get('name') || '';
  if (current === 'logs') {
    const job = params.get('job') || '';
    if ($('#log-job').value !== job) { $('#log-job').value = job; resetLogPages(); selectedRun = null; $('#log-output').classList.add('d-none'); }
    focusRun = params.get('run');
  }
  refresh();
}

document.addEventListener('DOMContentLoaded', () => {
  let searchTimer = null;
  $('#job-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setJobFilter({ q: $('#job-search').value.trim() }), 300);
  });
  $('#job-enabled').addEventListener('change', () => setJobFilter({ enabled: $('#job-enabled').value }));
  $('#job-label-filter').addEventListener('click', () => setJobFilter({ label: '' }));
  $('#jobs-next').addEventListener('click', () => { if (jobNext) { jobCursors.push(jobNext); refresh(); } });
  $('#jobs-prev').addEventListener('click', () => { if (jobCursors.length > 1) { jobCursors.pop(); refresh(); } });
  $('#audit-job').addEventListener('change', () => refresh());
  $('#new-job').addEventListener('click', () => openEditor(null));
  $('#job-form').addEventListener('submit', saveJob);
  $('#run-form').addEventListener('submit', submitRun);
  $('#job-edit').addEventListener('click', () => { if (detailJob) openEditor(detailJob); });
  $('#job-run').addEventListener('click', () => openRunDialog(detailName));
  // The dialog's link to the job's runs leaves it: close it on the way.
  $('#run-logs').addEventListener('click', () => runModal().hide());
  // A refused field stays marked until it is edited.
  $('#run-env').addEventListener('input', (e) => e.target.classList.remove('is-invalid'));
  for (const id of ['#f-on-success', '#f-on-failure', '#f-env', '#f-env-files', '#f-workdir']) {
    $(id).addEventListener('input', (e) => e.target.classList.remove('is-invalid'));
  }
  for (const id of ['#f-cron', '#f-timezone']) {
    $(id).addEventListener('input', () => { clearTimeout(previewTimer); previewTimer = setTimeout(previewCron, 250); });
  }
  // A refused label stays marked until the field is edited.
  $('#f-target-labels').addEventListener('input', (e) => e.target.classList.remove('is-invalid'));
  $('#log-status').addEventListener('change', () => { resetLogPages(); refresh(); });
  $('#log-job').addEventListener('change', () => { location.hash = `#/logs?job=${encodeURIComponent($('#log-job').value.trim())}`; });
  $('#log-newer').addEventListener('click', () => { if (logCursors.length > 1) { logCursors.pop(); refresh(); } });
  $('#log-older').addEventListener('click', () => { if (logNext) { logCursors.push(logNext); refresh(); } });
  window.addEventListener('hashchange', route);
  route();
  api('GET', '/cluster').then(renderLeader).catch(() => {});
  // Keep the page current: not while a dialog is open, nor while the tab
  // is hidden (it catches up when shown again).
  setInterval(() => { if (!document.hidden && !document.querySelector('.modal.show')) refresh(); }, REFRESH_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
});
