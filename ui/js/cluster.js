// The workers page (each worker's running runs, linked to their live
// output), the cluster page (masters, health, alert delivery, pending
// alerts) and the audit page.
import {
  $, api, el, fmtTime, fmtDuration, fmtOffset, labelBadges, statusBadge, runHref, killRun, refreshNow,
  setClusterZone, zoneLabel,
} from './lib.js';

export async function loadWorkers() {
  const { workers } = await api('GET', '/workers');
  const runs = (w) => (w.runs || []).length
    ? el('ul', { class: 'list-unstyled mb-0' }, ...w.runs.map((r) => el('li', { 'data-run': r.runId },
      el('a', { href: runHref(r.runId, r.job), title: 'its live output' }, r.job), ' ',
      el('span', { class: 'text-muted small' }, fmtDuration(Date.now() - r.startTime)), ' ',
      el('button', { class: 'btn btn-outline-danger btn-sm py-0 kill-run', onclick: async () => { if (await killRun(r.runId, r.job)) refreshNow(); } }, 'Kill'))))
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

// Where alerts go and how delivery went: the sinks configured (none: the
// alerts wait, undelivered), and this master's sent/failed/suppressed.
export function alertDelivery(alerts, pending) {
  const sinks = alerts?.sinks;
  const parts = [];
  if (Array.isArray(sinks) && !sinks.length) {
    parts.push(el('div', { class: 'text-danger fw-semibold no-sink' }, 'No alert sink is configured', pending ? `: ${pending} alert(s) wait, undelivered` : ': alerts are not delivered'));
  } else if (Array.isArray(sinks)) {
    parts.push(el('div', { class: 'sinks' }, 'Sinks: ', ...sinks.map((s) => el('span', { class: 'badge text-bg-secondary me-1' }, typeof s === 'string' ? s : (s.name || s.kind || JSON.stringify(s))))));
  } else {
    parts.push(el('div', { class: 'text-muted small' }, 'Sinks: not reported by this master.'));
  }
  if (pending !== undefined) parts.push(el('div', { class: 'pending' }, `${pending} pending`));
  if (alerts) {
    parts.push(el('div', { class: 'small alert-counters' },
      el('span', { class: 'me-2', 'data-counter': 'sent' }, `sent ${alerts.sent ?? '–'}`),
      el('span', { class: `me-2 ${alerts.failed ? 'text-danger' : ''}`, 'data-counter': 'failed' }, `failed ${alerts.failed ?? '–'}`),
      el('span', { 'data-counter': 'suppressed' }, `suppressed ${alerts.suppressed ?? '–'}`)));
  }
  return parts;
}

export async function loadCluster() {
  const [c, pending] = await Promise.all([api('GET', '/cluster'), api('GET', '/alerts')]);
  renderLeader(c);
  $('#masters').replaceChildren(...c.masters.map((m) => el('li', { class: 'list-group-item text-break' },
    m.leader ? el('span', { class: 'badge text-bg-primary me-2' }, 'leader') : '', `${m.id} `,
    el('a', { href: m.url }, m.url),
    m.leader && m.leaderSince ? el('span', { class: 'text-muted small ms-2' }, `since ${fmtTime(m.leaderSince)} (${zoneLabel()})`) : '')));
  const health = (name, h) => el('li', { class: 'list-group-item' },
    el('span', { class: `badge me-2 text-bg-${h.healthy ? 'success' : 'danger'}` }, h.healthy ? 'ok' : 'down'), name, h.error ? ` — ${h.error}` : '');
  $('#health').replaceChildren(health('etcd', c.etcd), health('MongoDB', c.mongo),
    el('li', { class: 'list-group-item' }, `${c.workers} worker(s), ${c.pendingAlerts} pending alert(s)`),
    c.zoneMismatch
      ? el('li', { class: 'list-group-item list-group-item-danger', id: 'zone-mismatch' }, el('span', { class: 'badge text-bg-danger me-2' }, 'zone'), c.zoneMismatch)
      : el('li', { class: 'list-group-item' }, `cluster zone: ${c.timezone}`));
  $('#alert-delivery').replaceChildren(...alertDelivery(c.alerts, c.pendingAlerts));
  $('#alerts-table tbody').replaceChildren(...pending.alerts.map((a) => el('tr', {},
    el('td', {}, a.jobName), el('td', {}, statusBadge(a.status)), el('td', {}, a.err), el('td', {}, a.worker), el('td', {}, fmtTime(a.endTime)))));
}

// The navbar: who leads, and the zone times are shown in.
export function renderLeader(c) {
  setClusterZone(c.timezone);
  $('#leader-badge').textContent = c.leader ? `leader: ${c.leader}` : 'no leader';
  $('#zone-badge').textContent = `times: ${zoneLabel()}`;
}

// ---- audit ----------------------------------------------------------------

// What changed between two versions of a job, in a few words.
function changeSummary(e) {
  if (!e.before || !e.after) return '';
  const keys = new Set([...Object.keys(e.before), ...Object.keys(e.after)]);
  return [...keys].filter((k) => JSON.stringify(e.before[k]) !== JSON.stringify(e.after[k]))
    .map((k) => `${k}: ${JSON.stringify(e.before[k]) ?? '–'} → ${JSON.stringify(e.after[k]) ?? '–'}`).join('; ');
}

export async function loadAudit() {
  const job = $('#audit-job').value.trim();
  const { entries } = await api('GET', `/audit?limit=100${job ? `&job=${encodeURIComponent(job)}` : ''}`);
  $('#audit-table tbody').replaceChildren(...entries.map((e) => el('tr', { 'data-action': e.action },
    el('td', {}, fmtTime(e.time)), el('td', {}, e.key), el('td', {}, e.action), el('td', {}, e.job || e.runId || '–'),
    el('td', { class: 'small' }, changeSummary(e)), el('td', { class: 'small text-muted' }, e.route),
    el('td', { class: 'small text-muted' }, e.forwardedFor || e.remote))));
  $('#audit-empty').classList.toggle('d-none', entries.length > 0);
}
