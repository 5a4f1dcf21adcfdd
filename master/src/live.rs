//! The live output of runs, relayed from the workers running them
//! (ARCHITECTURE §6, "Live output"). Any master serves it, leader or not.
//!
//! A run is looked up in the worker registry (each registration lists
//! its runs and `httpAddr`); the master opens the worker's
//! `GET /runs/{runId}/output` with a grant signed with the cluster secret
//! for that run ([`rcron_shared::run_token`]) and turns its frames into
//! Server-Sent Events as they arrive ([`Relay`]); nothing is buffered
//! beyond one frame. A finished run (no worker has it) streams its stored
//! output from the run log instead ([`stored_events`]).
//!
//! A worker that goes silent for [`WORKER_SILENCE`] (it heartbeats every
//! few seconds), or whose stream breaks before its `end` frame, ends the
//! stream with an `error` event: the run's record, written by the worker
//! or by whoever recovers its runs, says how it ended.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rcron_shared::live::{
    LiveEvent, RunEnd, RunStart, SSE_HEARTBEAT, SSE_KEEP_ALIVE, WORKER_SILENCE,
};
use rcron_shared::live::{WorkerFrame, stored_output};
use rcron_shared::run_token::ClusterSecret;
use rcron_shared::{LogRecord, RunRef, WorkerInfo};

/// Time to connect to a worker and get its answer's head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens workers' output streams.
pub struct LiveOutput {
    http: reqwest::Client,
    secret: Option<ClusterSecret>,
}

/// Why a worker's stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The worker publishes no HTTP address.
    #[error(
        "worker {0} does not serve live output (its http_listen is off, or it runs an older version)"
    )]
    NoAddress(String),
    /// The worker does not have the run (it has just ended, and its
    /// output is no longer kept there).
    #[error("worker {0} no longer has the run")]
    NotThere(String),
    /// The worker refused the master's credential.
    #[error(
        "worker {worker} refused the master's credential ({status}: {message}); is cluster_secret_file the same on masters and workers?"
    )]
    Refused {
        /// The worker.
        worker: String,
        /// Its answer's status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The worker cannot be reached, or answered something else.
    #[error("cannot read live output from worker {worker} at {addr}: {reason}")]
    Unreachable {
        /// The worker.
        worker: String,
        /// Where it was looked for.
        addr: String,
        /// What happened.
        reason: String,
    },
}

impl LiveOutput {
    /// Reads workers' output with grants signed by `secret` (none: workers
    /// serving output on loopback without one).
    pub fn new(secret: Option<ClusterSecret>) -> Result<Self, reqwest::Error> {
        // reqwest is built without a crypto provider; use the project's one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(WORKER_SILENCE)
            .build()?;
        Ok(Self { http, secret })
    }

    /// Opens the output stream of `run`, executing on `worker`.
    pub async fn open(&self, worker: &WorkerInfo, run: &RunRef) -> Result<Relay, OpenError> {
        let addr = worker
            .http_addr
            .clone()
            .ok_or_else(|| OpenError::NoAddress(worker.id.clone()))?;
        let url = format!("http://{addr}/runs/{}/output", run.run_id);
        let mut request = self.http.get(&url);
        if let Some(secret) = &self.secret {
            let grant = secret.grant(&run.run_id, chrono::Utc::now().timestamp());
            request = request.bearer_auth(grant);
        }
        let unreachable = |reason: String| OpenError::Unreachable {
            worker: worker.id.clone(),
            addr: addr.clone(),
            reason,
        };
        let resp = tokio::time::timeout(CONNECT_TIMEOUT, request.send())
            .await
            .map_err(|_| unreachable("no answer".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Relay {
                worker: worker.id.clone(),
                run_id: run.run_id.clone(),
                resp: Some(resp),
                pending: Vec::new(),
                queue: VecDeque::from([LiveEvent::Run(RunStart {
                    run_id: run.run_id.clone(),
                    job: run.job.clone(),
                    worker: worker.id.clone(),
                    start_time: run.start_time,
                    running: true,
                })]),
                last_write: Instant::now(),
            });
        }
        let message = resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        Err(match status.as_u16() {
            404 => OpenError::NotThere(worker.id.clone()),
            code @ (401 | 403) => OpenError::Refused {
                worker: worker.id.clone(),
                status: code,
                message,
            },
            code => unreachable(format!("answered {code}: {message}")),
        })
    }
}

/// One worker's output stream, read as SSE text: each call of
/// [`Relay::next_sse`] waits for the next event (or keep-alive comment).
pub struct Relay {
    worker: String,
    run_id: String,
    /// None once the stream is over.
    resp: Option<reqwest::Response>,
    /// Bytes of a frame not yet complete.
    pending: Vec<u8>,
    /// Events ready to be sent.
    queue: VecDeque<LiveEvent>,
    last_write: Instant,
}

impl Relay {
    /// The next piece of the SSE body; None once the stream is over.
    pub async fn next_sse(&mut self) -> Option<String> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                self.last_write = Instant::now();
                return Some(event.to_sse());
            }
            self.resp.as_ref()?;
            match self.next_frame().await {
                Ok(WorkerFrame::Output { data }) => self.queue.push_back(LiveEvent::Output(data)),
                Ok(WorkerFrame::Heartbeat) => {
                    if self.last_write.elapsed() >= SSE_HEARTBEAT {
                        self.last_write = Instant::now();
                        return Some(SSE_KEEP_ALIVE.to_string());
                    }
                }
                Ok(WorkerFrame::End(mut end)) => {
                    self.resp = None;
                    if end.run_id.is_empty() {
                        end.run_id = self.run_id.clone();
                    }
                    self.queue.push_back(LiveEvent::End(end));
                }
                Err(reason) => {
                    self.resp = None;
                    tracing::warn!(worker = %self.worker, run_id = %self.run_id, %reason, "live output stream from the worker broke off");
                    self.queue.push_back(LiveEvent::Error {
                        message: format!(
                            "worker {} stopped answering; the run's record will say how it ended",
                            self.worker
                        ),
                    });
                }
            }
        }
    }

    /// The worker's next frame, or why there is none.
    async fn next_frame(&mut self) -> Result<WorkerFrame, String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(line).map_err(|e| format!("unreadable frame: {e}"));
            }
            let Some(resp) = self.resp.as_mut() else {
                return Err("stream closed".into());
            };
            match tokio::time::timeout(WORKER_SILENCE, resp.chunk()).await {
                Err(_) => return Err(format!("silent for {} s", WORKER_SILENCE.as_secs())),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(None)) => return Err("the stream ended before the run did".into()),
                Ok(Ok(Some(bytes))) => self.pending.extend_from_slice(&bytes),
            }
        }
    }
}

/// The events of a finished run from its stored attempts (first first):
/// which run, its output (retries marked), how it ended. Empty for no
/// attempt.
pub fn stored_events(attempts: &[LogRecord]) -> Vec<LiveEvent> {
    let (Some(first), Some(last)) = (attempts.first(), attempts.last()) else {
        return Vec::new();
    };
    let mut events = vec![LiveEvent::Run(RunStart {
        run_id: first.run_id.clone(),
        job: first.job_name.clone(),
        worker: last.worker.clone(),
        start_time: first.start_time,
        running: false,
    })];
    let output = stored_output(attempts);
    if !output.is_empty() {
        events.push(LiveEvent::Output(output));
    }
    events.push(LiveEvent::End(RunEnd::of_record(last)));
    events
}

/// The run `run_id` as the registry lists it, with its worker.
pub fn find_run(workers: Vec<WorkerInfo>, run_id: &str) -> Option<(WorkerInfo, RunRef)> {
    workers.into_iter().find_map(|w| {
        let run = w.runs.iter().find(|r| r.run_id == run_id)?.clone();
        Some((w, run))
    })
}

/// The newest run of `job` that the registry lists, with its worker.
pub fn newest_run_of(workers: Vec<WorkerInfo>, job: &str) -> Option<(WorkerInfo, RunRef)> {
    let mut newest: Option<(WorkerInfo, RunRef)> = None;
    for w in workers {
        let best = w
            .runs
            .iter()
            .filter(|r| r.job == job)
            .max_by(|a, b| (a.start_time, &a.run_id).cmp(&(b.start_time, &b.run_id)))
            .cloned();
        if let Some(run) = best
            && newest
                .as_ref()
                .is_none_or(|(_, n)| (run.start_time, &run.run_id) > (n.start_time, &n.run_id))
        {
            newest = Some((w, run));
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcron_shared::RunStatus;

    fn record(attempt: u32, output: &str, status: RunStatus, err: &str) -> LogRecord {
        let mut r =
            rcron_shared::verdict::record_of("j", "x", 1_000, status, err.into(), "w1", 2_000);
        r.run_id = "r1".into();
        r.attempt = attempt;
        r.output = output.into();
        r.reason = None;
        r.exit_code = Some(if status == RunStatus::Success { 0 } else { 1 });
        r
    }

    #[test]
    fn a_stored_run_streams_its_attempts_then_how_the_last_ended() {
        let events = stored_events(&[
            record(1, "first try", RunStatus::Failed, "exit code 1"),
            record(2, "second try\n", RunStatus::Success, ""),
        ]);
        assert!(matches!(&events[0], LiveEvent::Run(s) if s.run_id == "r1" && !s.running));
        assert_eq!(
            events[1],
            LiveEvent::Output("first try\n── attempt 2 ──\nsecond try\n".into())
        );
        assert!(
            matches!(&events[2], LiveEvent::End(e) if e.status == RunStatus::Success && e.reason.is_none()),
            "{events:?}"
        );
        assert!(stored_events(&[]).is_empty());
    }

    #[test]
    fn runs_are_found_in_the_registry_and_the_newest_of_a_job_wins() {
        let worker = |id: &str, runs: &[(&str, &str, i64)]| -> WorkerInfo {
            serde_json::from_value(serde_json::json!({
                "id": id, "hostname": "h", "ip": "127.0.0.1", "pid": 1, "version": "x",
                "startTime": 0, "capacity": 4, "running": [],
                "runs": runs.iter().map(|(job, run, start)| serde_json::json!({
                    "job": job, "runId": run, "planTime": start, "startTime": start,
                })).collect::<Vec<_>>(),
            }))
            .expect("worker")
        };
        let workers = vec![
            worker("w1", &[("a", "r1", 10), ("b", "r2", 30)]),
            worker("w2", &[("a", "r3", 20)]),
        ];
        let (w, r) = find_run(workers.clone(), "r2").expect("listed");
        assert_eq!((w.id.as_str(), r.job.as_str()), ("w1", "b"));
        assert!(find_run(workers.clone(), "nope").is_none());
        let (w, r) = newest_run_of(workers.clone(), "a").expect("running");
        assert_eq!((w.id.as_str(), r.run_id.as_str()), ("w2", "r3"));
        assert!(newest_run_of(workers, "c").is_none());
    }
}
