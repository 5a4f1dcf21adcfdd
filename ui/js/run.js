// A run's page (#/run?id=RUNID&job=NAME): its output as it is printed,
// streamed from the master (live.js), Kill while it runs, and a link to
// its record once it has ended. The dashboard, the workers page and a
// job's page link here.
import { $, logsHref, jobHref, killRun, runningRuns, zonedTime, statusBadge } from './lib.js';
import { LiveOutput } from './live.js';

let runId = '';
let job = '';
let ended = false;
const live = new LiveOutput(document.getElementById('live-text'), document.getElementById('live-state'), {
  // The stream names the run's job (an address without `job`).
  onRun: (start) => { if (!job && start.job) setJob(start.job); },
  onEnd: (end) => {
    ended = true;
    $('#live-kill').disabled = true;
    if (end.status) $('#live-meta').append(' Ended: ', statusBadge(end.status), '.');
  },
});

export function showRun(id, name) {
  if (id === runId) return;
  runId = id;
  job = name || '';
  ended = false;
  $('#live-job').textContent = job || '(job unknown)';
  $('#live-job').href = job ? jobHref(job) : '#/jobs';
  $('#live-record').href = job ? logsHref(job, runId) : '#/logs';
  $('#live-meta').replaceChildren(`Run ${runId}.`);
  $('#live-kill').disabled = true;
  live.start(runId);
}

export const leaveRun = () => { live.stop(); runId = ''; };

// Where the run stands: on which worker since when, while it runs (Kill
// is offered only then).
export async function loadRun() {
  if (!runId || ended) return;
  const going = await runningRuns();
  const r = [...going.values()].flat().find((x) => x.runId === runId);
  if (ended) return;
  $('#live-kill').disabled = !r;
  $('#live-meta').replaceChildren(`Run ${runId}`, ...(r ? [` on ${r.hostname || r.worker}, started `, zonedTime(r.startTime), '.'] : ['.']));
  if (r && !job) setJob(r.job);
}

function setJob(name) {
  job = name;
  $('#live-job').textContent = job;
  $('#live-job').href = jobHref(job);
  $('#live-record').href = logsHref(job, runId);
}

export async function killThisRun() {
  if (await killRun(runId, job || 'this job')) $('#live-kill').disabled = true;
}

