// The logs page: runs newest first, paged by keyset (`before`), filtered
// by the server on job (picked from a list fed by the server's job search),
// status, worker and a time range (`from`/`to`, ms, entered in the zone
// times are shown in); a run's output in a panel below.
import {
  $, api, el, fmtTime, fmtDuration, fmtCount, isVerdict, statusBadge, logsHref, parseWallTime, zoneLabel,
} from './lib.js';

// Runs on a page of the logs.
const PAGE_SIZE = 20;

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

// The filters as query parameters; a time that cannot be read is marked.
function filterQuery() {
  const q = new URLSearchParams();
  const job = $('#log-job').value.trim();
  const status = $('#log-status').value;
  const worker = $('#log-worker').value.trim();
  if (job) q.set('job', job);
  if (status) q.set('status', status);
  if (worker) q.set('worker', worker);
  for (const [id, key] of [['#log-from', 'from'], ['#log-to', 'to']]) {
    const ms = parseWallTime($(id).value);
    if (ms !== null && Number.isFinite(ms)) q.set(key, String(ms));
  }
  return q;
}

export async function loadLogs() {
  const q = filterQuery();
  q.set('limit', PAGE_SIZE);
  const before = logCursors[logCursors.length - 1];
  if (before) q.set('before', before);
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
    const row = el('tr', { 'data-run': key, 'data-worker': l.worker, 'data-start': l.startTime, 'data-run-id': l.runId, 'data-status': l.status, 'data-trigger': l.trigger || 'schedule', class: classes, onclick: () => showOutput(l, key) },
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

export function resetLogPages() {
  logCursors = [null];
  logNext = null;
}

export function showOutput(l, key) {
  selectedRun = key;
  for (const r of document.querySelectorAll('#logs-table tbody tr')) r.classList.toggle('table-active', r.dataset.run === key);
  $('#log-output').classList.remove('d-none');
  $('#log-output-title').textContent = `${l.jobName} · ${fmtTime(l.startTime)} (${zoneLabel()}) · ${l.status}${l.err ? ` · ${l.err}` : ''}`;
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

// The job field's list: names the server's search finds for what is typed
// (`q`, 20 at most), so a cluster of 10,000 jobs is never listed whole.
let suggestSeq = 0;
export async function suggestJobs() {
  const typed = $('#log-job').value.trim();
  const seq = ++suggestSeq;
  try {
    const page = await api('GET', `/jobs?${new URLSearchParams({ q: typed, limit: 20 })}`);
    if (seq !== suggestSeq) return;
    $('#log-job-list').replaceChildren(...page.jobs.map((j) => el('option', { value: j.name })));
  } catch { /* no suggestions: the field still takes any name */ }
}

// The worker field's list: the live workers.
export async function suggestWorkers() {
  try {
    const { workers } = await api('GET', '/workers');
    $('#log-worker-list').replaceChildren(...workers.map((w) => el('option', { value: w.id }, w.hostname)));
  } catch { /* no suggestions */ }
}

// The filters to their defaults (job kept: it is the page's address).
export function clearFilters() {
  for (const id of ['#log-status', '#log-worker', '#log-from', '#log-to']) $(id).value = '';
  resetLogPages();
}

// A run's record asked for (#/logs?job=A&run=ID) is selected once shown.
export const focusOn = (runId) => { focusRun = runId; };
export const hideOutput = () => { selectedRun = null; $('#log-output').classList.add('d-none'); };
export const olderLogs = (refresh) => { if (logNext) { logCursors.push(logNext); refresh(); } };
export const newerLogs = (refresh) => { if (logCursors.length > 1) { logCursors.pop(); refresh(); } };
