// What every page of the admin shares: the REST client, DOM building,
// toasts, and the formatting of times (always with their zone), durations,
// statuses and labels.

// ---- API ------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.problems = (body && body.problems) || [];
  }
}

// The headers every request carries: the API token, when one was entered.
export function authHeaders() {
  const token = sessionStorage.getItem('rcron-token');
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Asks for a token after a 401; true when one was entered.
export function askToken() {
  const entered = prompt('This rcron API needs a token:');
  if (entered) sessionStorage.setItem('rcron-token', entered.trim());
  return !!entered;
}

export async function api(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: `cannot reach the master: ${e.message}` });
  }
  if (resp.status === 401 && askToken()) return api(method, path, body);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// A master without the endpoint (an older one, in a rolling upgrade)
// answers 404 "not found", where a missing job or run is named.
export const unserved = (e) => e?.status === 404 && e.message === 'not found';

// What a panel says when its data cannot be read.
export function notAvailable(what, e) {
  const why = unserved(e) ? 'this master does not serve it' : (e?.message || String(e));
  return el('div', { class: 'text-muted small not-available' }, `${what} not available: ${why}.`);
}

// ---- DOM ------------------------------------------------------------------

export const $ = (sel, root = document) => root.querySelector(sel);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ''));
  return node;
}

export function toast(message, kind = 'danger') {
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

// The page shown asks to be read again now (after a change made from it);
// set by the router.
let refresher = () => {};
export const setRefresher = (fn) => { refresher = fn; };
export const refreshNow = () => refresher();

// ---- times and their zones -------------------------------------------------

// Times are shown in the cluster's zone (GET /api/v1/cluster `timezone`,
// the zone of jobs without `timezone`) or a job's own, and always say which.
// The browser's zone is used only when the cluster's is not known yet or
// the browser does not know it, and is then labelled as such.
export const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
let clusterZone = null;
const formatters = new Map();

function formatter(tz) {
  if (!formatters.has(tz)) {
    let f = null;
    try {
      // sv-SE writes 2025-01-31 13:05:09: sortable, and the same everywhere.
      f = new Intl.DateTimeFormat('sv-SE', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
    } catch { /* a zone this browser does not know: the browser's is used */ }
    formatters.set(tz, f);
  }
  return formatters.get(tz);
}

// The zone times are shown in: `tz` (a job's), else the cluster's, else
// the browser's; one the browser does not know falls back to its own.
export function shownZone(tz) {
  const want = tz || clusterZone;
  return want && formatter(want) ? want : browserZone;
}

// How a zone is labelled: its name, and "your browser" when it is the
// browser's fallback rather than the zone asked for.
export function zoneLabel(tz) {
  const z = shownZone(tz);
  return z === (tz || clusterZone) ? z : `${z}, your browser`;
}

export function setClusterZone(tz) {
  clusterZone = tz || null;
  for (const n of document.querySelectorAll('.tz-cluster')) n.textContent = zoneLabel();
}

// 2025-01-31 13:05:09 in `tz` (see shownZone), or '–'.
export function fmtTime(ms, tz) {
  if (!ms) return '–';
  return formatter(shownZone(tz)).format(new Date(ms));
}
export const fmtIso = (iso, tz) => (iso ? fmtTime(Date.parse(iso), tz) : '–');
// HH:MM (or MM-DD HH:MM with `day`), for chart axes.
export function fmtClock(ms, tz, day = false) {
  const s = fmtTime(ms, tz);
  return day ? s.slice(5, 16) : s.slice(11, 16);
}
// A time with its zone beside it, for a cell whose column does not say it.
export const zonedTime = (ms, tz) => el('span', { class: 'text-nowrap' }, fmtTime(ms, tz), ' ', el('small', { class: 'text-muted tz' }, zoneLabel(tz)));

// The offset of `tz` from UTC at instant `ms`, in ms.
function zoneOffset(ms, tz) {
  const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' })
    .formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}

// A wall time "2025-01-31T13:05" (an <input type=datetime-local>) read in
// the zone times are shown in → ms since the epoch; null when empty.
export function parseWallTime(value, tz) {
  if (!value) return null;
  const [d, t = '00:00'] = value.split('T');
  const [y, mo, da] = d.split('-').map(Number);
  const [h, mi, s = 0] = t.split(':').map(Number);
  const wall = Date.UTC(y, mo - 1, da, h, mi, s);
  const z = shownZone(tz);
  // Twice: the offset at the guess may differ from the one at the answer
  // (a daylight-saving change between them).
  let ms = wall - zoneOffset(wall, z);
  ms = wall - zoneOffset(ms, z);
  return ms;
}

// ---- durations, statuses, labels -------------------------------------------

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
// Verdicts are ticks that ran no command: shown as badges, apart from runs.
const VERDICT_BADGE = { skipped: 'text-bg-secondary', missed: 'text-bg-warning' };
export const isVerdict = (status) => Object.hasOwn(VERDICT_BADGE, status);
export const statusBadge = (status) => el('span', { class: isVerdict(status) ? `badge ${VERDICT_BADGE[status]} status-${status}` : `status-${status}` }, status);
export const runningBadge = () => el('span', { class: 'badge text-bg-info running-badge' }, 'running');

// A worker's clock offset from the leader's beacon: "+3013 ms", "-12 ms".
export const fmtOffset = (ms) => `${ms >= 0 ? '+' : ''}${ms} ms`;

// Labels ({role: 'db'}) as `role=db, zone=eu-1`: how the job dialog shows them.
export const fmtLabels = (labels) => Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(', ');

// Labels as small badges, or null when there are none. With `pick`, a
// click on one calls it with `key=value` (the jobs list filters on it).
export function labelBadges(labels, pick) {
  const entries = Object.entries(labels || {});
  const badge = ([k, v]) => el('span', pick
    ? { class: 'badge text-bg-light border me-1 label-pick', 'data-label': k, role: 'button', title: `only jobs placed on ${k}=${v}`, onclick: () => pick(`${k}=${v}`) }
    : { class: 'badge text-bg-light border me-1', 'data-label': k }, `${k}=${v}`);
  return entries.length ? el('span', { class: 'labels' }, ...entries.map(badge)) : null;
}

// 10000 → "10,000"; a capped total (the logs count up to 10,000) → "10,000+".
export const fmtCount = (n, capped = false) => `${Number(n).toLocaleString('en-US')}${capped ? '+' : ''}`;

export const jobHref = (name) => `#/job?name=${encodeURIComponent(name)}`;
export const logsHref = (name, runId) => `#/logs?job=${encodeURIComponent(name)}${runId ? `&run=${encodeURIComponent(runId)}` : ''}`;
// A run's live output (its stored output once it has ended).
export const runHref = (runId, job) => `#/run?id=${encodeURIComponent(runId)}${job ? `&job=${encodeURIComponent(job)}` : ''}`;

// ---- running runs and kill ---------------------------------------------------

// The runs going now, from GET /api/v1/workers (small: one record per
// worker): job name → [{runId, worker, hostname, planTime, startTime}].
export async function runningRuns() {
  const { workers } = await api('GET', '/workers');
  const byJob = new Map();
  for (const w of workers) {
    for (const r of w.runs || []) {
      if (!byJob.has(r.job)) byJob.set(r.job, []);
      byJob.get(r.job).push({ ...r, worker: w.id, hostname: w.hostname });
    }
  }
  return byJob;
}

// Kills every run of a job, once the operator confirms.
export async function killJob(name) {
  if (!confirm(`Kill the running run of ${name}? Its process group gets SIGTERM, then SIGKILL.`)) return false;
  try {
    await api('POST', `/jobs/${encodeURIComponent(name)}/kill`);
    toast(`kill sent to ${name}`, 'success');
    return true;
  } catch (e) { toast(`kill ${name}: ${e.message}`); return false; }
}

// Kills one run, once the operator confirms.
export async function killRun(runId, job) {
  if (!confirm(`Kill run ${runId} of ${job}? Its process group gets SIGTERM, then SIGKILL.`)) return false;
  try {
    await api('POST', `/runs/${encodeURIComponent(runId)}/kill`);
    toast(`kill sent to the run of ${job}`, 'success');
    return true;
  } catch (e) { toast(e.message); return false; }
}

// A table in its own scrolling box: a narrow window scrolls the table,
// never the page.
export const scrollBox = (table) => el('div', { class: 'table-responsive' }, table);
