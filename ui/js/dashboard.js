// The dashboard, the landing page: one read of GET /api/v1/dashboard (the
// server computes it and caches it 2 s) drawn into panels — runs and
// failures per minute over the hour and per 15 minutes over the day,
// the runs going now (linked to their live output), the next runs, the
// failing jobs, missed ticks, the workers' load and the cluster's health.
// When the read fails every panel says so; nothing else is asked.
import {
  $, api, el, notAvailable, fmtTime, fmtClock, fmtDuration, fmtIso, statusBadge, jobHref, logsHref, runHref,
  scrollBox, zoneLabel,
} from './lib.js';
import { draw } from './charts.js';
import { alertDelivery } from './cluster.js';

// The panels, each drawn from its part of the answer.
const PANELS = ['#dash-leader', '#dash-etcd', '#dash-mongo', '#dash-alerts', '#dash-missed', '#dash-running', '#dash-failing', '#dash-next', '#dash-workers', '#chart-hour-na', '#chart-day-na'];

export async function loadDashboard() {
  let d;
  try {
    d = await api('GET', '/dashboard');
  } catch (e) {
    // Said once at the top; each panel only that it has nothing.
    $('#dash-errors').replaceChildren(notAvailable('Dashboard data', e));
    $('#dash-errors').classList.remove('d-none');
    for (const id of PANELS) $(id).replaceChildren(el('span', { class: 'text-muted small not-available' }, 'not available'));
    for (const id of ['#chart-hour', '#chart-day']) { Chart.getChart($(id))?.destroy(); $(id).closest('.chart-box').classList.add('d-none'); }
    $('#dash-generated').textContent = '';
    return;
  }
  for (const id of ['#chart-hour-na', '#chart-day-na']) $(id).replaceChildren();
  const errors = d.errors || [];
  $('#dash-errors').replaceChildren(...(errors.length ? ['Parts of this page could not be read: ', errors.map((x) => (typeof x === 'string' ? x : x.message || JSON.stringify(x))).join('; ')] : []));
  $('#dash-errors').classList.toggle('d-none', !errors.length);
  const tz = d.zone;
  renderHealth(d.health);
  $('#dash-missed').replaceChildren(...(d.missed
    ? [el('span', { class: d.missed.hour ? 'text-warning-emphasis fw-semibold' : '' }, `${d.missed.hour} in the last hour`), el('br'), el('span', { class: 'small text-muted' }, `${d.missed.day} in 24 hours`)]
    : [el('span', { class: 'text-muted small not-available' }, 'not reported')]));
  bucketChart($('#chart-hour'), d.hour, tz, false);
  bucketChart($('#chart-day'), d.day, tz, true);
  renderRunning(d.running || [], tz);
  renderFailing(d.failing || [], tz);
  renderNext(d.next || [], tz);
  renderWorkers(d.workers || []);
  $('#dash-generated').textContent = `As of ${fmtTime(d.generatedAt, tz)} (${zoneLabel(tz)}); read again every 5 s while this tab is shown.`;
}

function health(ok, text) {
  return [el('span', { class: `badge me-1 text-bg-${ok ? 'success' : 'danger'}` }, ok ? 'ok' : 'down'), text ? el('span', { class: 'small' }, text) : ''];
}

// `h.etcd`, `h.mongo`: {healthy, error?} as on GET /cluster (or a bool).
function renderHealth(h) {
  if (!h) { for (const id of ['#dash-leader', '#dash-etcd', '#dash-mongo', '#dash-alerts']) $(id).replaceChildren('–'); return; }
  const dep = (x) => (typeof x === 'object' && x !== null ? health(x.healthy, x.error) : health(!!x));
  $('#dash-leader').replaceChildren(h.leader ? el('span', { title: h.leader }, h.leader) : el('span', { class: 'text-danger' }, 'no leader'));
  $('#dash-etcd').replaceChildren(...dep(h.etcd));
  $('#dash-mongo').replaceChildren(...dep(h.mongo));
  $('#dash-alerts').replaceChildren(...alertDelivery(h.alerts, h.pendingAlerts));
}

// Runs per bucket: runs that did not fail, failed ones and missed ticks,
// stacked; a bar per bucket.
function bucketChart(canvas, series, tz, day) {
  canvas.closest('.chart-box').classList.remove('d-none');
  const buckets = series?.buckets || [];
  const step = (series?.bucketSecs || 60) * 1000;
  draw(canvas, (c) => ({
    type: 'bar',
    data: {
      labels: buckets.map((b) => fmtClock(b.t, tz, day)),
      datasets: [
        { label: 'succeeded', data: buckets.map((b) => Math.max(0, (b.runs || 0) - (b.failed || 0))), backgroundColor: c.ok, stack: 's' },
        { label: 'failed', data: buckets.map((b) => b.failed || 0), backgroundColor: c.bad, stack: 's' },
        { label: 'missed', data: buckets.map((b) => b.missed || 0), backgroundColor: c.warn, stack: 's' },
      ],
    },
    options: {
      scales: { x: { stacked: true, ticks: { maxTicksLimit: day ? 12 : 10 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      plugins: {
        tooltip: {
          callbacks: {
            title: (items) => {
              const b = buckets[items[0].dataIndex];
              return `${fmtTime(b.t, tz)} – ${fmtClock(b.t + step, tz)}`;
            },
            footer: (items) => `${buckets[items[0].dataIndex].runs || 0} run(s) in all`,
          },
        },
      },
    },
  }));
}

const table = (head, rows, cls) => scrollBox(el('table', { class: `table table-sm mb-0 align-middle ${cls}` },
  el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))), el('tbody', {}, ...rows)));
const empty = (text) => el('p', { class: 'text-muted small m-3' }, text);

function renderRunning(running, tz) {
  $('#dash-running').replaceChildren(running.length
    ? table(['Job', 'Worker', 'Started', 'Elapsed', ''], running.map((r) => el('tr', { 'data-job': r.job, 'data-run': r.runId },
      el('td', {}, el('a', { href: jobHref(r.job) }, r.job)),
      el('td', { class: 'small', title: r.worker }, r.hostname || r.worker),
      el('td', { class: 'small text-nowrap' }, fmtTime(r.startTime, tz).slice(11)),
      el('td', { class: 'elapsed' }, fmtDuration(r.elapsedMs)),
      el('td', { class: 'text-end' }, el('a', { class: 'btn btn-sm btn-outline-info py-0 live-link', href: runHref(r.runId, r.job) }, 'live output')))), 'dash-running')
    : empty('Nothing is running.'));
}

function renderFailing(failing, tz) {
  $('#dash-failing').replaceChildren(failing.length
    ? table(['Job', 'Last run', 'Ended', 'Failures today'], failing.map((f) => el('tr', { 'data-job': f.job },
      el('td', {}, el('a', { href: jobHref(f.job) }, f.job)),
      el('td', {}, el('a', { href: logsHref(f.job, f.lastRun?.runId) }, statusBadge(f.lastRun?.status || '?')),
        f.lastRun?.attempt > 1 ? el('span', { class: 'small text-muted' }, ` attempt ${f.lastRun.attempt}`) : ''),
      el('td', { class: 'small text-nowrap' }, fmtTime(f.lastRun?.endTime, tz)),
      el('td', {}, String(f.failuresToday ?? '–')))), 'dash-failing')
    : empty('No job\'s last run failed.'));
}

function renderNext(next, tz) {
  $('#dash-next').replaceChildren(next.length
    ? table(['Time', 'Job'], next.map((n) => el('tr', { 'data-job': n.job },
      el('td', { class: 'small text-nowrap' }, typeof n.time === 'string' ? fmtIso(n.time, tz) : fmtTime(n.time, tz)),
      el('td', {}, el('a', { href: jobHref(n.job) }, n.job)))), 'dash-next')
    : empty('No run is due in the next 15 minutes.'));
}

function renderWorkers(workers) {
  $('#dash-workers').replaceChildren(...(workers.length ? workers.map((w) => {
    const pct = w.capacity ? Math.min(100, Math.round((100 * w.running) / w.capacity)) : 0;
    const cls = pct >= 100 ? 'bg-danger' : pct >= 75 ? 'bg-warning' : 'bg-success';
    return el('div', { class: 'mb-2', 'data-worker': w.id },
      el('div', { class: 'd-flex small' }, el('span', { class: 'text-truncate', title: w.id }, w.hostname || w.id),
        w.draining ? el('span', { class: 'badge text-bg-warning ms-2' }, 'draining') : '',
        el('span', { class: 'ms-auto load' }, `${w.running} / ${w.capacity || '∞'}`)),
      el('div', { class: 'progress', role: 'progressbar', 'aria-label': `load of ${w.id}`, 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100, style: 'height: .5rem' },
        el('div', { class: `progress-bar ${cls}`, style: `width: ${pct}%` })));
  }) : [empty('No worker is registered.')]));
}
