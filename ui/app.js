// rcron web admin. Uses only the public REST API (/api/v1); no framework,
// no build step: ES modules under ui/js/, Bootstrap and Chart.js vendored.
// Pages: #/dashboard (the landing page), #/jobs, #/job?name=NAME,
// #/run?id=RUNID&job=NAME (a run's live output), #/logs?job=NAME[&run=ID],
// #/workers, #/cluster, #/audit.
//
// Polling: only the page shown is read again, at its own modest interval,
// never while the tab is hidden (it catches up when shown) or a dialog is
// open; the next read is timed from the end of the last, so slow answers
// never pile up. Lists are paged by the server; the dashboard is one
// cached read.
import { $, api, setRefresher, toast } from './js/lib.js';
import { retheme } from './js/charts.js';
import { loadDashboard } from './js/dashboard.js';
import {
  loadJobs, setJobFilter, nextJobs, previousJobs, openEditor, openRunDialog, saveJob, submitRun, previewCron,
} from './js/jobs.js';
import { loadJob, showJob, leaveJob, currentJob, currentJobName, killThisJob, renderStats } from './js/job.js';
import { loadRun, showRun, leaveRun, killThisRun } from './js/run.js';
import {
  loadLogs, resetLogPages, focusOn, hideOutput, olderLogs, newerLogs, suggestJobs, suggestWorkers, clearFilters,
} from './js/logs.js';
import { loadWorkers, loadCluster, loadAudit, renderLeader } from './js/cluster.js';

// Each page's loader and how often it is read again (ms).
const PAGES = {
  dashboard: [loadDashboard, 5000],
  jobs: [loadJobs, 5000],
  job: [loadJob, 5000],
  run: [loadRun, 5000],
  logs: [loadLogs, 10000],
  workers: [loadWorkers, 5000],
  cluster: [loadCluster, 10000],
  audit: [loadAudit, 15000],
};
let current = 'dashboard';
let failing = false;
let timer = null;
let busy = false;

// Reads the page shown now, then schedules its next read.
async function refresh() {
  clearTimeout(timer);
  if (busy) { timer = setTimeout(refresh, 200); return; }
  busy = true;
  const page = current;
  try {
    await PAGES[page][0]();
    if (failing) toast('the master answers again', 'success');
    failing = false;
  } catch (e) {
    if (!failing) toast(`${page}: ${e.message}`);
    failing = true;
  } finally {
    busy = false;
  }
  schedule();
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => {
    if (document.visibilityState !== 'visible' || document.querySelector('.modal.show')) schedule();
    else refresh();
  }, PAGES[current][1]);
}

function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const previous = current;
  current = PAGES[path] ? path : 'dashboard';
  for (const p of document.querySelectorAll('.page')) p.classList.toggle('d-none', p.id !== `page-${current}`);
  // A job's page is under Jobs; a run's under Dashboard.
  const section = { job: 'jobs', run: 'dashboard' }[current] || current;
  for (const a of document.querySelectorAll('.nav-link')) a.classList.toggle('active', a.dataset.page === section);
  const params = new URLSearchParams(query || '');
  // Streams belong to their page.
  if (previous === 'job' && current !== 'job') leaveJob();
  if (previous === 'run' && current !== 'run') leaveRun();
  if (current === 'job') showJob(params.get('name') || '');
  if (current === 'run') showRun(params.get('id') || '', params.get('job') || '');
  if (current === 'logs') {
    const job = params.get('job') || '';
    if ($('#log-job').value !== job) { $('#log-job').value = job; resetLogPages(); hideOutput(); }
    focusOn(params.get('run'));
  }
  refresh();
}

// ---- theme ------------------------------------------------------------------

// Light or dark (Bootstrap's data-bs-theme): the operator's choice, kept
// in this browser, else the system's.
function applyTheme(theme) {
  document.documentElement.dataset.bsTheme = theme;
  retheme();
}
// theme.js has set it before the first paint.
applyTheme(document.documentElement.dataset.bsTheme === 'dark' ? 'dark' : 'light');

// ---- wiring -----------------------------------------------------------------

function wire() {
  let searchTimer = null;
  $('#job-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setJobFilter({ q: $('#job-search').value.trim() }), 300);
  });
  $('#job-enabled').addEventListener('change', () => setJobFilter({ enabled: $('#job-enabled').value }));
  $('#job-label-filter').addEventListener('click', () => setJobFilter({ label: '' }));
  $('#jobs-next').addEventListener('click', nextJobs);
  $('#jobs-prev').addEventListener('click', previousJobs);
  $('#audit-job').addEventListener('change', () => refresh());
  $('#new-job').addEventListener('click', () => openEditor(null));
  $('#job-form').addEventListener('submit', saveJob);
  $('#run-form').addEventListener('submit', submitRun);
  $('#job-edit').addEventListener('click', () => { if (currentJob()) openEditor(currentJob()); });
  $('#job-run').addEventListener('click', () => openRunDialog(currentJobName()));
  $('#job-kill').addEventListener('click', killThisJob);
  $('#live-kill').addEventListener('click', killThisRun);
  for (const r of document.querySelectorAll('input[name="stats-days"]')) r.addEventListener('change', renderStats);
  // The dialog's link to the job's runs leaves it: close it on the way.
  $('#run-logs').addEventListener('click', () => bootstrap.Modal.getOrCreateInstance($('#run-modal')).hide());
  // A refused field stays marked until it is edited.
  $('#run-env').addEventListener('input', (e) => e.target.classList.remove('is-invalid'));
  for (const id of ['#f-on-success', '#f-on-failure', '#f-env', '#f-env-files', '#f-workdir', '#f-target-labels']) {
    $(id).addEventListener('input', (e) => e.target.classList.remove('is-invalid'));
  }
  let previewTimer = null;
  for (const id of ['#f-cron', '#f-timezone']) {
    $(id).addEventListener('input', () => { clearTimeout(previewTimer); previewTimer = setTimeout(previewCron, 250); });
  }
  // Logs: each filter reads the first page again.
  const filtersChanged = () => { resetLogPages(); refresh(); };
  for (const id of ['#log-status', '#log-worker', '#log-from', '#log-to']) $(id).addEventListener('change', filtersChanged);
  $('#log-filters').addEventListener('submit', (e) => e.preventDefault());
  $('#log-clear').addEventListener('click', () => { clearFilters(); refresh(); });
  let suggestTimer = null;
  $('#log-job').addEventListener('input', () => { clearTimeout(suggestTimer); suggestTimer = setTimeout(suggestJobs, 200); });
  $('#log-job').addEventListener('focus', suggestJobs, { once: true });
  $('#log-worker').addEventListener('focus', suggestWorkers);
  // Another job: its first page, under its own address.
  $('#log-job').addEventListener('change', () => {
    resetLogPages();
    hideOutput();
    const hash = `#/logs?job=${encodeURIComponent($('#log-job').value.trim())}`;
    if (location.hash === hash) refresh();
    else location.hash = hash;
  });
  $('#log-newer').addEventListener('click', () => newerLogs(refresh));
  $('#log-older').addEventListener('click', () => olderLogs(refresh));
  $('#theme-toggle').addEventListener('click', () => {
    const theme = document.documentElement.dataset.bsTheme === 'dark' ? 'light' : 'dark';
    localStorage.setItem('rcron-theme', theme);
    applyTheme(theme);
  });
  window.addEventListener('hashchange', route);
  // Shown again: read at once rather than at the next tick.
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') refresh(); });
}

setRefresher(refresh);
wire();
// The cluster's zone first: every time on every page is shown in it.
api('GET', '/cluster').then(renderLeader).catch(() => {}).finally(route);
