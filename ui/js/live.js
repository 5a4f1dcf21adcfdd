// Live output of a run: the master's Server-Sent Events
// (GET /api/v1/runs/{runId}/output/stream), read with fetch() and a stream
// reader rather than EventSource, which cannot send the API token. Events:
// `run` (which run: {runId, job, worker, startTime, running}), `output` (a
// chunk of text), then `end` ({status, reason?, exitCode?}) or `error`
// ({message}: its worker died or cannot be reached). A run that has ended
// streams its stored output, then `end`.
import { ApiError, authHeaders, askToken, el, statusBadge, unserved } from './lib.js';

// Reads the event stream at `path` until it ends or `signal` aborts,
// calling onEvent(name, data) for each event.
export async function readEvents(path, signal, onEvent) {
  let resp = await fetch(`/api/v1${path}`, { headers: { ...authHeaders(), Accept: 'text/event-stream' }, signal });
  if (resp.status === 401 && askToken()) resp = await fetch(`/api/v1${path}`, { headers: { ...authHeaders(), Accept: 'text/event-stream' }, signal });
  if (!resp.ok) {
    const text = await resp.text();
    let body = null;
    try { body = JSON.parse(text); } catch { body = { error: text || `HTTP ${resp.status}` }; }
    throw new ApiError(resp.status, body);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // Events end at a blank line; CR LF and CR end lines as LF does.
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'event') name = v;
        else if (field === 'data') data.push(v);
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

// A panel showing one run's output as it is printed: the text in `pre`,
// where the run stands in `state`. start() replaces the run shown; stop()
// closes the stream (the page left).
export class LiveOutput {
  constructor(pre, state, { onEnd, onRun } = {}) {
    this.pre = pre;
    this.state = state;
    this.onEnd = onEnd;
    this.onRun = onRun;
    this.runId = null;
    this.abort = null;
  }

  start(runId) {
    if (runId === this.runId && this.abort) return;
    this.stop();
    this.runId = runId;
    this.ended = false;
    const abort = new AbortController();
    this.abort = abort;
    this.pre.textContent = '';
    this.pre.dataset.state = 'streaming';
    this.state.replaceChildren(el('span', { class: 'spinner-grow spinner-grow-sm text-info me-1', role: 'status' }), 'live: waiting for output…');
    readEvents(`/runs/${encodeURIComponent(runId)}/output/stream`, abort.signal, (name, data) => this.event(name, data))
      .then(() => { if (!this.ended && !abort.signal.aborted) this.finish('the stream closed before the run ended'); })
      .catch((e) => {
        if (abort.signal.aborted) return;
        const why = unserved(e) ? 'this master does not serve it' : e.message;
        this.finish(`live output not available: ${why}`);
      });
  }

  event(name, data) {
    if (name === 'run') {
      // Which run follows: {runId, job, worker, startTime, running}.
      try { this.onRun?.(JSON.parse(data)); } catch { /* details are optional */ }
    } else if (name === 'output') {
      // Follows the end of the output, unless the reader scrolled up.
      const atEnd = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
      this.pre.append(document.createTextNode(data));
      if (atEnd) this.pre.scrollTop = this.pre.scrollHeight;
      if (!this.ended) this.state.replaceChildren(el('span', { class: 'spinner-grow spinner-grow-sm text-info me-1', role: 'status' }), 'live');
    } else if (name === 'end') {
      let end = {};
      try { end = JSON.parse(data); } catch { /* an end without details */ }
      this.ended = true;
      this.pre.dataset.state = 'ended';
      this.state.replaceChildren('ended: ', statusBadge(end.status || 'unknown'),
        end.exitCode !== undefined && end.exitCode !== null ? ` (exit ${end.exitCode})` : '', end.reason ? ` — ${end.reason}` : '');
      this.state.dataset.status = end.status || '';
      this.onEnd?.(end);
    } else if (name === 'error') {
      let message = data;
      try { message = JSON.parse(data).message || data; } catch { /* plain text */ }
      this.finish(message);
    }
  }

  finish(message) {
    this.ended = true;
    this.pre.dataset.state = 'error';
    this.state.replaceChildren(el('span', { class: 'text-danger live-error' }, message));
    this.onEnd?.({ error: message });
  }

  stop() {
    this.abort?.abort();
    this.abort = null;
    this.runId = null;
  }
}
