// rcron web admin. Uses only the public REST API (/api/v1); no framework,
// no build step. Pages: #/jobs, #/logs?job=NAME, #/workers, #/cluster.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const PAGE_SIZE = 20;
const REFRESH_MS = 2000;

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

// Labels as small badges, or null when there are none.
function labelBadges(labels) {
  const entries = Object.entries(labels || {});
  return entries.length
    ? el('span', { class: 'labels' }, ...entries.map(([k, v]) => el('span', { class: 'badge text-bg-light border me-1', 'data-label': k }, `${k}=${v}`)))
    : null;
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

// ---- jobs -----------------------------------------------------------------

let jobs = [];
let lastRuns = {};
let editing = null; // name of the job being edited, or null for a new one
let editingJob = null; // that job as loaded
// Fields the dialog does not edit: a save sends them back as they were, so
// that editing a job here never drops them.
const KEPT_FIELDS = ['env', 'workdir', 'user'];
const keptValue = (v) => (v == null || (typeof v === 'object' && !Object.keys(v).length) ? undefined : v);
const modal = () => bootstrap.Modal.getOrCreateInstance($('#job-modal'));

async function loadJobs() {
  const [list, logs] = await Promise.all([api('GET', '/jobs'), api('GET', '/logs?limit=500')]);
  jobs = list.jobs;
  lastRuns = {};
  for (const l of logs.logs) if (!lastRuns[l.jobName]) lastRuns[l.jobName] = l;
  renderJobs();
}

function renderJobs() {
  const q = $('#job-search').value.trim().toLowerCase();
  const shown = jobs.filter((j) => !q || j.name.toLowerCase().includes(q) || j.command.toLowerCase().includes(q)
    || fmtLabels(j.target?.labels).toLowerCase().includes(q));
  const body = $('#jobs-table tbody');
  body.replaceChildren(...shown.map((j) => {
    const last = lastRuns[j.name];
    const act = (label, cls, fn) => el('button', { class: `btn btn-sm btn-outline-${cls}`, 'data-action': label.toLowerCase(), onclick: fn }, label);
    return el('tr', { 'data-job': j.name },
      el('td', {}, el('a', { href: `#/logs?job=${encodeURIComponent(j.name)}` }, j.name)),
      el('td', { class: 'command font-monospace small', title: j.command }, j.command),
      el('td', { class: 'font-monospace small' }, j.cronExpr),
      el('td', {}, j.timezone || 'cluster'),
      targetCell(j),
      el('td', {}, fmtIso(j.nextFireTime)),
      el('td', {}, last ? statusBadge(last.status) : '–'),
      el('td', {}, j.disabled ? el('span', { class: 'badge text-bg-secondary' }, 'paused') : el('span', { class: 'badge text-bg-success' }, 'yes')),
      el('td', { class: 'text-end text-nowrap' },
        el('div', { class: 'btn-group' },
          act('Edit', 'primary', () => openEditor(j)),
          act('Run', 'success', () => jobAction(j.name, 'run', `${j.name} will run now`)),
          act('Kill', 'warning', () => jobAction(j.name, 'kill', `kill sent to ${j.name}`)),
          act(j.disabled ? 'Resume' : 'Pause', 'secondary', () => setPaused(j, !j.disabled)),
          act('Delete', 'danger', () => deleteJob(j.name)))));
  }));
  $('#jobs-empty').classList.toggle('d-none', jobs.length > 0);
}

// Where a job runs: its labels (or "any"), "all workers" when every
// matching worker runs each tick, and a warning when no live worker matches.
function targetCell(j) {
  const labels = j.target?.labels || {};
  const all = j.target?.mode === 'all';
  const badges = labelBadges(labels);
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

async function jobAction(name, action, done) {
  try { await api('POST', `/jobs/${encodeURIComponent(name)}/${action}`); toast(done, 'success'); }
  catch (e) { toast(`${action} ${name}: ${e.message}`); }
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
  editingJob = job || null;
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
  }
  // Said, so that nobody thinks a job without them in the dialog has none.
  const kept = [];
  if (keptValue(job?.env)) kept.push(`env ${Object.keys(job.env).join(', ')}`);
  if (keptValue(job?.workdir)) kept.push(`workdir ${job.workdir}`);
  if (keptValue(job?.user)) kept.push(`user ${job.user}`);
  $('#kept-fields').textContent = kept.length ? `Kept as they are (set through the API or rcronctl): ${kept.join(' · ')}` : '';
  $('#kept-fields').classList.toggle('d-none', !kept.length);
  $('#cron-preview').textContent = '';
  showCronWarnings([]);
  modal().show();
  if (job) previewCron();
}

function clearErrors() {
  for (const i of $('#job-form').querySelectorAll('.is-invalid')) i.classList.remove('is-invalid');
  $('#form-error').classList.add('d-none');
}

function showFieldError(field, message) {
  const input = $('#job-form').elements[field];
  const fb = $(`.invalid-feedback[data-for="${field}"]`);
  if (!input || !fb) return false;
  input.classList.add('is-invalid');
  fb.textContent = message;
  return true;
}

// The form field of a problem's JSON path, where they differ.
const FIELD_OF = { 'target.labels': 'targetLabels' };

// Problems look like "`cronExpr`: ..." or "`name` may contain ...": put each
// next to its field (all of a field's together), the rest in the form's alert.
function showProblems(err) {
  const byField = new Map();
  const rest = [];
  for (const p of err.problems.length ? err.problems : [err.message]) {
    const m = /^`([\w.]+)`:?\s*(.*)$/.exec(p);
    const field = m && (FIELD_OF[m[1]] || m[1]);
    if (field) byField.set(field, [...(byField.get(field) || []), [m[2] || p, p]]);
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
  for (const k of KEPT_FIELDS) {
    const v = keptValue(editingJob?.[k]);
    if (v !== undefined) spec[k] = v;
  }
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
  try {
    const saved = editing
      ? await api('PUT', `/jobs/${encodeURIComponent(editing)}`, spec)
      : await api('POST', '/jobs', spec);
    modal().hide();
    const warnings = saved?.warnings || [];
    if (warnings.length) toast(`${spec.name} saved. Warning: ${warnings.join(' · ')}`, 'warning');
    else toast(`${spec.name} saved`, 'success');
    await loadJobs();
  } catch (e) {
    showProblems(e);
  }
}

// ---- logs -----------------------------------------------------------------

let logSkip = 0;
let logTotal = 0;
let selectedRun = null;

async function loadLogs() {
  const job = $('#log-job').value.trim();
  const status = $('#log-status').value;
  const q = new URLSearchParams({ skip: logSkip, limit: PAGE_SIZE });
  if (job) q.set('job', job);
  if (status) q.set('status', status);
  const page = await api('GET', `/logs?${q}`);
  logTotal = page.total;
  const body = $('#logs-table tbody');
  body.replaceChildren(...page.logs.map((l) => {
    const key = `${l.runId}-${l.attempt}`;
    const verdict = isVerdict(l.status);
    const classes = [key === selectedRun ? 'table-active' : '', verdict ? 'verdict' : ''].filter(Boolean).join(' ');
    // A verdict ran nothing: no duration; its reason is all there is to say.
    const row = el('tr', { 'data-run': key, 'data-status': l.status, class: classes, onclick: () => showOutput(l, key) },
      el('td', {}, fmtTime(l.startTime)),
      el('td', {}, l.jobName),
      el('td', {}, statusBadge(l.status)),
      el('td', {}, verdict ? '–' : fmtDuration(Math.max(0, l.endTime - l.startTime))),
      el('td', {}, l.exitCode ?? '–'),
      el('td', {}, l.attempt),
      el('td', {}, l.worker),
      el('td', { class: 'reason small', title: verdict ? `tick of ${fmtTime(l.planTime)}` : undefined }, l.reason || ''));
    return row;
  }));
  const first = page.total ? logSkip + 1 : 0;
  $('#log-summary').textContent = `${first}–${logSkip + page.logs.length} of ${page.total}, newest first`;
  $('#log-newer').disabled = logSkip === 0;
  $('#log-older').disabled = logSkip + PAGE_SIZE >= logTotal;
}

function showOutput(l, key) {
  selectedRun = key;
  for (const r of document.querySelectorAll('#logs-table tbody tr')) r.classList.toggle('table-active', r.dataset.run === key);
  $('#log-output').classList.remove('d-none');
  $('#log-output-title').textContent = `${l.jobName} · ${fmtTime(l.startTime)} · ${l.status}${l.err ? ` · ${l.err}` : ''}`;
  $('#log-output-text').textContent = isVerdict(l.status)
    ? `No command ran for the tick of ${fmtTime(l.planTime)}: ${l.reason || l.err || l.status}.`
    : l.output || '(no output)';
  $('#log-truncated').classList.toggle('d-none', !l.outputTruncated);
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

const loaders = { jobs: loadJobs, logs: loadLogs, workers: loadWorkers, cluster: loadCluster, audit: loadAudit };
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
  for (const a of document.querySelectorAll('.nav-link')) a.classList.toggle('active', a.dataset.page === current);
  if (current === 'logs') {
    const job = new URLSearchParams(query || '').get('job') || '';
    if ($('#log-job').value !== job) { $('#log-job').value = job; logSkip = 0; selectedRun = null; $('#log-output').classList.add('d-none'); }
  }
  refresh();
}

document.addEventListener('DOMContentLoaded', () => {
  $('#job-search').addEventListener('input', renderJobs);
  $('#audit-job').addEventListener('change', () => refresh());
  $('#new-job').addEventListener('click', () => openEditor(null));
  $('#job-form').addEventListener('submit', saveJob);
  for (const id of ['#f-cron', '#f-timezone']) {
    $(id).addEventListener('input', () => { clearTimeout(previewTimer); previewTimer = setTimeout(previewCron, 250); });
  }
  // A refused label stays marked until the field is edited.
  $('#f-target-labels').addEventListener('input', (e) => e.target.classList.remove('is-invalid'));
  $('#log-status').addEventListener('change', () => { logSkip = 0; refresh(); });
  $('#log-job').addEventListener('change', () => { location.hash = `#/logs?job=${encodeURIComponent($('#log-job').value.trim())}`; });
  $('#log-newer').addEventListener('click', () => { logSkip = Math.max(0, logSkip - PAGE_SIZE); refresh(); });
  $('#log-older').addEventListener('click', () => { logSkip += PAGE_SIZE; refresh(); });
  window.addEventListener('hashchange', route);
  route();
  api('GET', '/cluster').then(renderLeader).catch(() => {});
  // Keep the page current; never while the job dialog is open.
  setInterval(() => { if (!$('#job-modal').classList.contains('show')) refresh(); }, REFRESH_MS);
});
