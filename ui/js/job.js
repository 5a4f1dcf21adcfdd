// One job's page: its definition and next runs (in its zone), its chain,
// the live output of its running run, a chart of its last 100 runs
// (duration bars coloured by status) and its success rate and duration
// p50/p95 per day over 7 or 30 days (GET /api/v1/jobs/{name}/stats,
// computed by the server). The definition and the running run are read at
// every refresh; the statistics every 30 s and when a run ends.
import {
  $, api, el, notAvailable, fmtTime, fmtIso, fmtDuration, fmtCount, jobHref, logsHref, runHref,
  runningRuns, killJob, zonedTime, zoneLabel, refreshNow, runningBadge, fmtClock,
} from './lib.js';
import { draw, statusColor } from './charts.js';
import { LiveOutput } from './live.js';
import { findJob, targetCell } from './jobs.js';

const STATS_EVERY_MS = 30_000;

let detailName = '';
let detailJob = null;
let stats = null; // the last answer of /stats for detailName, or an error
let statsAt = 0;
let running = [];
const live = new LiveOutput(document.getElementById('job-live-text'), document.getElementById('job-live-state'), {
  // The run ended: its bar joins the chart.
  onEnd: () => { statsAt = 0; setTimeout(refreshNow, 1500); },
});

export const currentJob = () => detailJob;
export const currentJobName = () => detailName;

// Shows another job (from the address); the page's state starts over.
export function showJob(name) {
  if (name === detailName) return;
  detailName = name;
  detailJob = null;
  stats = null;
  statsAt = 0;
  live.stop();
  $('#job-live-card').classList.add('d-none');
  $('#job-fields').replaceChildren();
  $('#job-runs-summary').textContent = '';
}

// The page left: its stream closed.
export const leaveJob = () => live.stop();

export async function loadJob() {
  const name = detailName;
  const job = await findJob(name);
  const [startedBy, going, next] = job
    ? await Promise.all([
      api('GET', `/jobs?${new URLSearchParams({ chainsTo: name, limit: 1000 })}`),
      runningRuns().catch(() => new Map()),
      nextRuns(job).catch(() => null),
    ])
    : [null, new Map(), null];
  if (name !== detailName) return;
  detailJob = job;
  running = going.get(name) || [];
  renderJob(startedBy, next);
  if (!job) return;
  renderLive();
  if (Date.now() - statsAt > STATS_EVERY_MS) {
    statsAt = Date.now();
    try {
      stats = await api('GET', `/jobs/${encodeURIComponent(name)}/stats?days=30`);
    } catch (e) {
      stats = { error: e };
    }
    if (name !== detailName) return;
  }
  renderStats();
}

// The job's next 5 fire times, in its zone, from the server's preview:
// asked again only when the schedule changes or the first one has passed.
let nextCache = { key: '', next: [] };
async function nextRuns(j) {
  if (j.disabled) return [];
  const key = `${j.name}\n${j.cronExpr}\n${j.timezone || ''}`;
  if (nextCache.key === key && nextCache.next.length && Date.parse(nextCache.next[0]) > Date.now()) return nextCache.next;
  const body = { cronExpr: j.cronExpr, count: 5 };
  if (j.timezone) body.timezone = j.timezone;
  const { next } = await api('POST', '/cron/preview', body);
  nextCache = { key, next };
  return next;
}

// One job: its definition and its chain.
function renderJob(startedByPage, next) {
  const j = detailJob;
  $('#job-title').textContent = detailName;
  $('#job-runs').href = logsHref(detailName);
  $('#job-missing').classList.toggle('d-none', !!j);
  $('#job-body').classList.toggle('d-none', !j);
  for (const b of ['#job-edit', '#job-run']) $(b).disabled = !j;
  $('#job-kill').disabled = !j || !running.length;
  if (!j) { $('#job-state').replaceChildren(); return; }
  $('#job-state').replaceChildren(j.disabled ? el('span', { class: 'badge text-bg-secondary' }, 'paused') : el('span', { class: 'badge text-bg-success' }, 'enabled'),
    j.unschedulable ? el('span', { class: 'badge bg-danger ms-1' }, 'unschedulable') : '',
    running.length ? el('span', { class: 'ms-1' }, runningBadge()) : '');
  const env = Object.entries(j.env || {}).map(([k, v]) => (typeof v === 'string' ? `${k}=${v}` : `${k} from file ${v?.file}`));
  const tz = j.timezone || undefined;
  const nextList = next === null ? el('span', { class: 'text-muted' }, 'not available')
    : next.length ? el('ul', { class: 'list-unstyled mb-0 next-runs' }, ...next.map((t) => el('li', {}, fmtIso(t, tz))))
      : el('span', { class: 'text-muted' }, j.disabled ? 'none: paused' : 'none: the expression never fires again');
  const rows = [
    ['Command', el('code', {}, j.command)],
    ['Cron', el('code', {}, j.cronExpr)],
    ['Time zone', j.timezone || `cluster (${zoneLabel()})`],
    [`Next runs (${zoneLabel(tz)})`, nextList],
    ['Target', targetCell(j).textContent],
    ['Overlapping runs', j.concurrency],
    ['Timeout', j.timeoutSecs ? `${j.timeoutSecs} s` : 'none'],
    ['Retries', String(j.retries)],
    ['Environment', env.length ? el('pre', { class: 'mb-0 env' }, env.join('\n')) : '–'],
    ['Working directory', j.workdir || '–'],
    ['User', j.user || '–'],
  ];
  $('#job-fields').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { class: 'col-sm-4' }, k), el('dd', { class: 'col-sm-8 text-break' }, v)]));

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

// The running run's output, streamed; the card stays on the run that ended
// until the next one starts, so its end can be read.
function renderLive() {
  const r = running[0];
  if (!r) return;
  $('#job-live-card').classList.remove('d-none');
  // Runs going at once (a `mode: all` job, `allow` overlap): this card
  // follows the first; each other one is a link to its own live page.
  const others = running.slice(1);
  const links = others.flatMap((o, i) => [...(i ? [', '] : []),
    el('a', { href: runHref(o.runId, detailName), class: 'other-run' }, `since ${fmtClock(o.startTime)} on ${o.hostname || o.worker}`)]);
  $('#job-live-run').replaceChildren(el('a', { href: runHref(r.runId, detailName) }, `run ${r.runId}`),
    ` on ${r.hostname || r.worker}, since `, zonedTime(r.startTime),
    ...(others.length ? [` (${others.length} more running: `, ...links, ')'] : []));
  live.start(r.runId);
}

export async function killThisJob() {
  if (await killJob(detailName)) refreshNow();
}

// The day chosen: the last 7 or 30 days of the answer's `daily`.
const daysShown = () => Number(document.querySelector('input[name="stats-days"]:checked')?.value || 7);

export function renderStats() {
  const runsCanvas = $('#chart-runs');
  const dailyBox = [$('#chart-rate'), $('#chart-duration')];
  if (!stats) return;
  if (stats.error) {
    $('#chart-runs-na').replaceChildren(notAvailable('Run history', stats.error));
    $('#chart-daily-na').replaceChildren(notAvailable('Daily statistics', stats.error));
    for (const c of [runsCanvas, ...dailyBox]) { Chart.getChart(c)?.destroy(); c.closest('.chart-box').classList.add('d-none'); }
    return;
  }
  $('#chart-runs-na').replaceChildren();
  $('#chart-daily-na').replaceChildren();
  for (const c of [runsCanvas, ...dailyBox]) c.closest('.chart-box').classList.remove('d-none');
  const tz = stats.zone;
  $('#job-stats-zone').textContent = zoneLabel(tz);
  // Newest first from the server: oldest left on the chart.
  const runs = [...(stats.lastRuns || [])].reverse();
  const failed = runs.filter((r) => r.status !== 'success').length;
  $('#job-runs-summary').textContent = runs.length ? `${runs.length} run(s), ${failed} not successful` : 'no run yet';
  draw(runsCanvas, () => ({
    type: 'bar',
    data: {
      labels: runs.map((r) => fmtTime(r.startTime, tz).slice(5, 16)),
      datasets: [{
        label: 'duration',
        data: runs.map((r) => r.durationMs ?? Math.max(0, (r.endTime || 0) - r.startTime)),
        backgroundColor: runs.map((r) => statusColor(r.status)),
      }],
    },
    options: {
      onClick: (_ev, elements) => { const r = runs[elements[0]?.index]; if (r) location.hash = logsHref(detailName, r.runId); },
      scales: { x: { ticks: { maxTicksLimit: 8 } }, y: { beginAtZero: true, title: { text: 'ms' } } },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: (items) => `${fmtTime(runs[items[0].dataIndex].startTime, tz)} (${zoneLabel(tz)})`,
            label: (item) => { const r = runs[item.dataIndex]; return `${r.status}, ${fmtDuration(item.raw)}${r.attempt > 1 ? `, attempt ${r.attempt}` : ''}`; },
            footer: () => 'click: its record',
          },
        },
      },
    },
  }));
  const days = (stats.daily || []).slice(-daysShown());
  const labels = days.map((d) => d.day.slice(5));
  // `successRate` is succeeded / runs, in [0, 1]; null on a day without runs.
  const pct = days.map((d) => (d.successRate === null || d.successRate === undefined ? null : +(d.successRate * 100).toFixed(1)));
  const totals = days.reduce((a, d) => ({ runs: a.runs + d.runs, ok: a.ok + d.succeeded }), { runs: 0, ok: 0 });
  $('#job-rate-summary').textContent = totals.runs ? `(${Math.round((100 * totals.ok) / totals.runs)}% of ${fmtCount(totals.runs)} runs in ${days.length} days)` : `(no run in ${days.length} days)`;
  draw($('#chart-rate'), (c) => ({
    type: 'bar',
    data: {
      labels,
      datasets: [{
        label: 'success rate',
        data: pct,
        backgroundColor: pct.map((v) => (v === null ? c.muted : v >= 99 ? c.ok : v >= 90 ? c.warn : c.bad)),
      }],
    },
    options: {
      scales: { x: {}, y: { min: 0, max: 100, ticks: { callback: (v) => `${v}%` } } },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (item) => { const d = days[item.dataIndex]; return `${item.raw ?? '–'}% of ${d.runs} run(s): ${d.succeeded} ok, ${d.failed} failed, ${d.skipped} skipped, ${d.missed} missed`; } } },
      },
    },
  }));
  draw($('#chart-duration'), (c) => ({
    type: 'line',
    data: {
      labels,
      datasets: [
        { label: 'p50', data: days.map((d) => d.p50Ms ?? null), borderColor: c.primary, backgroundColor: c.primary, spanGaps: false, pointRadius: 2 },
        { label: 'p95', data: days.map((d) => d.p95Ms ?? null), borderColor: c.warn, backgroundColor: c.warn, spanGaps: false, pointRadius: 2 },
      ],
    },
    options: {
      scales: { x: {}, y: { beginAtZero: true, ticks: { callback: (v) => fmtDuration(v) } } },
      plugins: { tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${fmtDuration(item.raw)}` } } },
    },
  }));
}
