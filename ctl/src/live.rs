//! `rcronctl logs --follow JOB`: the output of the job's runs as they
//! print, run after run, until interrupted.
//!
//! Runs going now are found in the worker registry (`GET /workers`, once
//! a second) and each is followed through its output stream from its
//! first line; a run that started and ended between two looks is found by
//! its record (`GET /logs`, as `--follow` without a job does) and its
//! stored output is printed. What ran before rcronctl started is not
//! shown.
//!
//! Like `tail -f` on several files, a header names the run whenever the
//! lines that follow are another run's than the lines before; a run's
//! last line says how it ended. With `-o json`, each event is one JSON
//! object a line: `{"event", "runId", "data"}`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rcron_shared::live::{LiveEvent, RunEnd, RunStart};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{Client, LogQuery};
use crate::output::{Printer, time};

/// How often the registry and the log are looked at for new runs.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Newest records compared each time (runs are found as long as fewer
/// started after them than this between two looks).
const RECORD_WINDOW: u64 = 200;

/// What a run's stream task reports.
enum Report {
    /// An event of run `run_id`.
    Event(String, LiveEvent),
    /// The master has no such run (it ended and its record is not in yet):
    /// to be found again by its record.
    NotFound(String),
}

/// Follows the runs of `job` until interrupted.
pub async fn follow(client: &Client, out: Printer, job: &str) -> anyhow::Result<()> {
    let query = LogQuery {
        job: Some(job),
        status: None,
        skip: 0,
        limit: RECORD_WINDOW,
    };
    // What is logged already is not shown: only what comes.
    let mut recorded: HashSet<String> = client
        .logs(&query)
        .await?
        .body
        .logs
        .iter()
        .map(|r| r.run_id.clone())
        .collect();
    let mut followed: HashSet<String> = HashSet::new();
    let (tx, mut rx) = mpsc::channel::<Report>(256);
    let mut streams = JoinSet::new();
    let mut printer = LivePrinter::new(out, job);
    if !out.is_json() {
        eprintln!("following the output of {job}'s runs (Ctrl-C to stop)");
    }
    loop {
        let mut fresh: Vec<String> = Vec::new();
        match client.workers().await {
            Ok(answer) => {
                let mut going: Vec<_> = answer
                    .body
                    .workers
                    .iter()
                    .flat_map(|w| w.runs.iter())
                    .filter(|r| r.job == job)
                    .collect();
                going.sort_by_key(|r| r.start_time);
                fresh.extend(going.into_iter().map(|r| r.run_id.clone()));
            }
            Err(e) => eprintln!("rcronctl: {e}; retrying"),
        }
        match client.logs(&query).await {
            Ok(answer) => {
                // Oldest first, as a stream reads; verdicts ran nothing.
                for r in answer.body.logs.iter().rev() {
                    if !r.status.is_verdict() && recorded.insert(r.run_id.clone()) {
                        fresh.push(r.run_id.clone());
                    }
                }
            }
            Err(e) => eprintln!("rcronctl: {e}; retrying"),
        }
        for run_id in fresh {
            if followed.insert(run_id.clone()) {
                let (client, tx) = (client.clone(), tx.clone());
                streams.spawn(async move { stream_run(&client, run_id, tx).await });
            }
        }
        // Finished tasks are reaped as they go; the rest keep streaming.
        while streams.try_join_next().is_some() {}
        let pause = tokio::time::sleep(LOOK_EVERY);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                Some(report) = rx.recv() => match report {
                    Report::Event(run_id, event) => printer.print(&run_id, event),
                    Report::NotFound(run_id) => {
                        followed.remove(&run_id);
                        recorded.remove(&run_id);
                    }
                },
            }
        }
    }
}

/// Streams run `run_id`'s events to `tx` until its stream closes.
async fn stream_run(client: &Client, run_id: String, tx: mpsc::Sender<Report>) {
    let report = |event| Report::Event(run_id.clone(), event);
    let mut stream = match client.run_output(&run_id).await {
        Ok(stream) => stream,
        Err(crate::client::ClientError::Api { status, .. }) if status.as_u16() == 404 => {
            let _ = tx.send(Report::NotFound(run_id.clone())).await;
            return;
        }
        Err(e) => {
            let _ = tx
                .send(report(LiveEvent::Error {
                    message: e.to_string(),
                }))
                .await;
            return;
        }
    };
    loop {
        let event = match stream.next().await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(e) => LiveEvent::Error {
                message: e.to_string(),
            },
        };
        let last = matches!(event, LiveEvent::End(_) | LiveEvent::Error { .. });
        if tx.send(report(event)).await.is_err() || last {
            return;
        }
    }
}

/// Prints events of several runs, each line whole.
struct LivePrinter {
    out: Printer,
    job: String,
    /// The run whose lines were printed last.
    current: Option<String>,
    /// Each run's start, once known.
    starts: HashMap<String, RunStart>,
    /// Each run's text after its last line break.
    partial: HashMap<String, String>,
}

impl LivePrinter {
    fn new(out: Printer, job: &str) -> Self {
        Self {
            out,
            job: job.to_string(),
            current: None,
            starts: HashMap::new(),
            partial: HashMap::new(),
        }
    }

    fn print(&mut self, run_id: &str, event: LiveEvent) {
        if self.out.is_json() {
            let data = match &event {
                LiveEvent::Output(text) => serde_json::Value::String(text.clone()),
                LiveEvent::Run(start) => serde_json::to_value(start).unwrap_or_default(),
                LiveEvent::End(end) => serde_json::to_value(end).unwrap_or_default(),
                LiveEvent::Error { message } => serde_json::json!({ "message": message }),
            };
            let line = serde_json::json!({"event": event.name(), "runId": run_id, "data": data});
            println!("{line}");
            return;
        }
        match event {
            LiveEvent::Run(start) => {
                self.starts.insert(run_id.to_string(), start);
            }
            LiveEvent::Output(text) => {
                let mut pending = self.partial.remove(run_id).unwrap_or_default();
                pending.push_str(&text);
                match pending.rfind('\n') {
                    Some(cut) => {
                        self.switch_to(run_id);
                        println!("{}", &pending[..cut]);
                        self.keep(run_id, pending[cut + 1..].to_string());
                    }
                    None => self.keep(run_id, pending),
                }
            }
            LiveEvent::End(end) => {
                self.flush(run_id);
                self.switch_to(run_id);
                println!("==> {} run {run_id} {} <==", self.job, ended(&end));
                self.forget(run_id);
            }
            LiveEvent::Error { message } => {
                self.flush(run_id);
                self.switch_to(run_id);
                println!("==> {} run {run_id}: {message} <==", self.job);
                self.forget(run_id);
            }
        }
    }

    fn keep(&mut self, run_id: &str, rest: String) {
        if !rest.is_empty() {
            self.partial.insert(run_id.to_string(), rest);
        }
    }

    /// Prints what is left of a run's last line.
    fn flush(&mut self, run_id: &str) {
        if let Some(rest) = self.partial.remove(run_id) {
            self.switch_to(run_id);
            println!("{rest}");
        }
    }

    fn forget(&mut self, run_id: &str) {
        self.starts.remove(run_id);
        self.partial.remove(run_id);
        self.current = None;
    }

    /// A header when the next lines are another run's.
    fn switch_to(&mut self, run_id: &str) {
        if self.current.as_deref() == Some(run_id) {
            return;
        }
        self.current = Some(run_id.to_string());
        match self.starts.get(run_id) {
            Some(start) => println!(
                "==> {} run {run_id} on {}, started {}{} <==",
                self.job,
                start.worker,
                time(start.start_time),
                if start.running { "" } else { " (finished)" }
            ),
            None => println!("==> {} run {run_id} <==", self.job),
        }
    }
}

/// How a run ended, for its last line: `success`, `failed (exit 3)`,
/// `killed: killed on request`.
fn ended(end: &RunEnd) -> String {
    let mut s = end.status.as_str().to_string();
    if let Some(code) = end.exit_code.filter(|c| *c != 0) {
        s.push_str(&format!(" (exit {code})"));
    }
    if let Some(reason) = &end.reason
        && !reason.starts_with("exit code")
    {
        s.push_str(&format!(": {reason}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcron_shared::RunStatus;

    #[test]
    fn the_last_line_says_how_the_run_ended() {
        let end = |status, exit_code, reason: Option<&str>| RunEnd {
            status,
            exit_code,
            reason: reason.map(str::to_string),
            run_id: "r".into(),
        };
        assert_eq!(ended(&end(RunStatus::Success, Some(0), None)), "success");
        assert_eq!(
            ended(&end(RunStatus::Failed, Some(3), Some("exit code 3"))),
            "failed (exit 3)"
        );
        assert_eq!(
            ended(&end(RunStatus::Killed, None, Some("killed on request"))),
            "killed: killed on request"
        );
    }
}
