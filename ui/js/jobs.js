// The jobs list (paged, searched and filtered by the server; each job's
// last run from the server's per-job summary, `lastRun=true`), the job
// dialog (create and edit, with a live preview of the expression) and the
// run-now dialog. The job page (job.js) opens the same dialogs.
import {
  $, api, el, toast, refreshNow, fmtTime, fmtIso, fmtDuration, fmtLabels, fmtCount, labelBadges, statusBadge,
  runningBadge, zonedTime, zoneLabel, jobHref, logsHref, runningRuns, killJob,
} from './lib.js';

// Jobs on a page of the list.
const JOB_PAGE_SIZE = 50;

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
export async function findJob(name) {
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
export function parseEnvLines(text) {
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
// The runs going now, by job (from GET /workers): Kill is offered for these.
let running = new Map();
let editing = null; // name of the job being edited, or null for a new one
const modal = () => bootstrap.Modal.getOrCreateInstance($('#job-modal'));

// One page of jobs, each with its last run (`lastRun=true`: the server's
// per-job summary, not a scan of the log), and the runs going now.
export async function loadJobs() {
  const seq = ++jobSeq;
  const q = new URLSearchParams({ limit: JOB_PAGE_SIZE, lastRun: 'true' });
  const cursor = jobCursors[jobCursors.length - 1];
  if (cursor) q.set('cursor', cursor);
  for (const [k, v] of Object.entries(jobFilter)) if (v) q.set(k, v);
  const [page, going] = await Promise.all([api('GET', `/jobs?${q}`), runningRuns().catch(() => null)]);
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
  running = going || new Map();
  renderJobs();
}


// A job's last run: running now, else its newest record (status, linked to
// its runs, its start time in the title), '–' when it never ran.
function lastRunContent(j) {
  const now = running.get(j.name);
  if (now?.length) return el('a', { class: 'runs-link', href: jobHref(j.name), title: `running since ${fmtTime(now[0].startTime)} (${zoneLabel()})` }, runningBadge());
  const last = j.lastRun;
  if (!last) return '–';
  const when = `${fmtTime(last.startTime)} (${zoneLabel()})${last.durationMs !== undefined ? `, ${fmtDuration(last.durationMs)}` : ''}`;
  return el('a', { class: 'runs-link', href: logsHref(j.name, last.runId), title: `its runs (newest: ${when})` }, statusBadge(last.status));
}

// Shows the first page for another search or filter.
export function setJobFilter(change) {
  Object.assign(jobFilter, change);
  jobCursors = [null];
  const label = $('#job-label-filter');
  label.textContent = jobFilter.label ? `label ${jobFilter.label} ✕` : '';
  label.classList.toggle('d-none', !jobFilter.label);
  refreshNow();
}

export function nextJobs() { if (jobNext) { jobCursors.push(jobNext); refreshNow(); } }
export function previousJobs() { if (jobCursors.length > 1) { jobCursors.pop(); refreshNow(); } }

function renderJobs() {
  const body = $('#jobs-table tbody');
  body.replaceChildren(...jobs.map((j) => {
    const act = (label, cls, fn, extra = {}) => el('button', { class: `btn btn-sm btn-outline-${cls}`, 'data-action': label.toLowerCase(), onclick: fn, ...extra }, label);
    const isRunning = !!running.get(j.name)?.length;
    return el('tr', { 'data-job': j.name, 'data-running': isRunning ? 'true' : 'false' },
      el('td', {}, el('a', { class: 'job-link', href: jobHref(j.name) }, j.name)),
      el('td', { class: 'command font-monospace small', title: j.command }, j.command),
      el('td', { class: 'font-monospace small' }, j.cronExpr),
      el('td', {}, j.timezone || el('span', { title: zoneLabel() }, 'cluster')),
      targetCell(j, (label) => setJobFilter({ label })),
      el('td', { class: 'next-run' }, j.nextFireTime ? zonedTime(Date.parse(j.nextFireTime), j.timezone) : '–'),
      el('td', { class: 'last-run' }, lastRunContent(j)),
      el('td', {}, j.disabled ? el('span', { class: 'badge text-bg-secondary' }, 'paused') : el('span', { class: 'badge text-bg-success' }, 'yes')),
      el('td', { class: 'text-end text-nowrap' },
        el('div', { class: 'btn-group' },
          act('Edit', 'primary', () => openEditor(j)),
          act('Run', 'success', () => openRunDialog(j.name)),
          act('Kill', 'warning', async () => { if (await killJob(j.name)) refreshNow(); },
            { disabled: !isRunning, title: isRunning ? 'kill its running run' : 'not running' }),
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
export function targetCell(j, pick) {
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

// ---- run now --------------------------------------------------------------

let runName = null;
const runModal = () => bootstrap.Modal.getOrCreateInstance($('#run-modal'));

export function openRunDialog(name) {
  runName = name;
  $('#run-form').reset();
  $('#run-env').classList.remove('is-invalid');
  for (const id of ['#run-error', '#run-result']) $(id).classList.add('d-none');
  $('#run-modal-title').textContent = `Run ${name} now`;
  $('#run-logs').href = logsHref(name);
  runModal().show();
}

export async function submitRun(ev) {
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
    $('#run-deadline-at').textContent = `${fmtTime(r.deadline)} (${zoneLabel()})`;
    $('#run-result').classList.remove('d-none');
  } catch (e) {
    // The API names each refused variable (`env.NAME: …; …`): one a line.
    $('#run-error').textContent = e.message.split('; ').join('\n');
    $('#run-error').classList.remove('d-none');
  }
}

async function setPaused(job, paused) {
  // A patch of one field: nothing else of the job is rewritten (operators may send it).
  try { await api('PATCH', `/jobs/${encodeURIComponent(job.name)}`, { disabled: paused }); toast(`${job.name} ${paused ? 'paused' : 'resumed'}`, 'success'); refreshNow(); }
  catch (e) { toast(`${job.name}: ${e.message}`); }
}

async function deleteJob(name) {
  if (!confirm(`Delete job ${name}? Its logs are kept.`)) return;
  try { await api('DELETE', `/jobs/${encodeURIComponent(name)}`); toast(`${name} deleted`, 'success'); refreshNow(); }
  catch (e) { toast(`delete ${name}: ${e.message}`); }
}

export function openEditor(job) {
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

let previewSeq = 0;
export async function previewCron() {
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
    const tz = f.timezone.value.trim() || undefined;
    $('#cron-preview').textContent = p.next.length
      ? `Next runs (${zoneLabel(tz)}): ${p.next.map((t) => fmtIso(t, tz)).join(' · ')}`
      : 'This expression never fires again.';
    showCronWarnings(p.warnings || []);
  } catch (e) {
    if (seq !== previewSeq) return;
    showFieldError(/time zone/.test(e.message) ? 'timezone' : 'cronExpr', e.message);
  }
}

export async function saveJob(ev) {
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
    refreshNow();
  } catch (e) {
    showProblems(e);
  }
}
