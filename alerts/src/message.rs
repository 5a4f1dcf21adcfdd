//! What an alert says. Plain text, readable in a mail client or a chat:
//! which job, what happened, when, where, and how to see the log.

use chrono::{DateTime, Utc};
use rcron_shared::{RunStatus, Warning, WarningKind};
use serde_json::json;

/// A warning to deliver, with what the leader adds to it.
#[derive(Debug, Clone)]
pub struct Alert {
    /// What the worker reported.
    pub warning: Warning,
    /// Alerts about the same job dropped by storm control since the last one sent.
    pub suppressed: u32,
    /// Base URL of the web admin, for a link to the log.
    pub public_url: Option<String>,
    /// The job's own extra recipients (`alertEmails`).
    pub job_emails: Vec<String>,
    /// Id of the master that sends it (the leader at the time).
    pub sent_by: String,
}

fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

impl Alert {
    /// The run's id: the idempotency key of every delivery about it.
    pub fn idempotency_key(&self) -> &str {
        &self.warning.run_id
    }

    /// `failed`, `timeout`, `killed`, `interrupted`, or a placement
    /// change: `unschedulable`, `schedulable`.
    pub fn kind(&self) -> &'static str {
        match self.warning.kind {
            WarningKind::Run => self.warning.status.as_str(),
            other => other.as_str(),
        }
    }

    /// Whether it is about a run (and not a placement change).
    fn is_run(&self) -> bool {
        self.warning.kind == WarningKind::Run
    }

    /// One line: what happened to which job.
    pub fn subject(&self) -> String {
        let w = &self.warning;
        match w.kind {
            WarningKind::Unschedulable => {
                return format!("[rcron] job {} is unschedulable", w.job_name);
            }
            WarningKind::Schedulable => {
                return format!("[rcron] job {} is schedulable again", w.job_name);
            }
            WarningKind::ClockSkew => {
                return format!(
                    "[rcron] worker {} clock is off: it stopped firing",
                    w.worker
                );
            }
            WarningKind::ClockOk => {
                return format!("[rcron] worker {} clock is back: it fires again", w.worker);
            }
            WarningKind::ChainBroken => {
                return format!(
                    "[rcron] job {} could not start its chained jobs",
                    w.job_name
                );
            }
            WarningKind::Run => {}
        }
        let what = match (w.status, w.exit_code) {
            (RunStatus::Timeout, _) => "timed out".to_string(),
            (RunStatus::Missed, _) => "missed a tick".to_string(),
            (RunStatus::Interrupted, _) => "was interrupted (its worker died)".to_string(),
            (_, Some(code)) => format!("failed (exit code {code})"),
            _ => "failed".to_string(),
        };
        format!("[rcron] job {} {what}", w.job_name)
    }

    /// A link to the job's log in the web admin, when its URL is configured.
    pub fn log_link(&self) -> Option<String> {
        self.public_url.as_ref().map(|base| {
            format!(
                "{}/#/logs?job={}",
                base.trim_end_matches('/'),
                self.warning.job_name
            )
        })
    }

    /// The full text: the facts, the output's end, where to look next.
    pub fn body(&self) -> String {
        let w = &self.warning;
        let mut out = String::new();
        out.push_str(&format!("{}\n\n", self.subject()));
        if !self.is_run() {
            out.push_str(&format!("Job:       {}\n", w.job_name));
            let label = if w.kind == WarningKind::ChainBroken {
                "Chain:    "
            } else {
                "Placement:"
            };
            out.push_str(&format!("{label} {}\n", w.err));
            out.push_str(&format!("Since:     {}\n", time(w.plan_time)));
            out.push_str(&format!("Event id:  {}\n", w.run_id));
            if self.suppressed > 0 {
                out.push_str(&format!(
                    "\n{} more alert(s) about this job were suppressed since the last one.\n",
                    self.suppressed
                ));
            }
            return out;
        }
        out.push_str(&format!("Job:       {}\n", w.job_name));
        out.push_str(&format!("Status:    {}\n", w.status.as_str()));
        if let Some(code) = w.exit_code {
            out.push_str(&format!("Exit code: {code}\n"));
        }
        if !w.err.is_empty() {
            out.push_str(&format!("Error:     {}\n", w.err));
        }
        out.push_str(&format!("Command:   {}\n", w.command));
        out.push_str(&format!("Planned:   {}\n", time(w.plan_time)));
        out.push_str(&format!("Started:   {}\n", time(w.start_time)));
        out.push_str(&format!(
            "Ended:     {} ({} ms)\n",
            time(w.end_time),
            w.end_time - w.start_time
        ));
        out.push_str(&format!("Worker:    {}\n", w.worker));
        out.push_str(&format!("Attempt:   {}\n", w.attempt));
        out.push_str(&format!("Run id:    {}\n", w.run_id));
        if self.suppressed > 0 {
            out.push_str(&format!(
                "\n{} more alert(s) about this job were suppressed since the last one.\n",
                self.suppressed
            ));
        }
        if !w.output_tail.is_empty() {
            out.push_str("\nEnd of output:\n");
            for line in w.output_tail.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("\nLog: ");
        match self.log_link() {
            Some(link) => out.push_str(&link),
            None => out.push_str(&format!(
                "GET /api/v1/jobs/{}/logs on any master",
                w.job_name
            )),
        }
        out.push('\n');
        out
    }

    /// Text for a Slack-compatible webhook (`{"text": ...}`).
    pub fn slack_text(&self) -> String {
        let w = &self.warning;
        let mut text = format!("*{}*\n", self.subject());
        if !w.err.is_empty() {
            text.push_str(&format!("{}\n", w.err));
        }
        if !self.is_run() {
            text.push_str(&format!("since {} · event {}", time(w.plan_time), w.run_id));
            return text;
        }
        text.push_str(&format!(
            "planned {} · worker {} · attempt {} · run {}",
            time(w.plan_time),
            w.worker,
            w.attempt,
            w.run_id
        ));
        if self.suppressed > 0 {
            text.push_str(&format!(
                "\n({} similar alerts suppressed)",
                self.suppressed
            ));
        }
        if let Some(link) = self.log_link() {
            text.push_str(&format!("\n<{link}|log>"));
        }
        text
    }

    /// The generic webhook payload (documented in the README).
    pub fn payload(&self) -> serde_json::Value {
        let w = &self.warning;
        json!({
            "idempotencyKey": w.run_id,
            "kind": self.kind(),
            "job": w.job_name,
            "command": w.command,
            "exitCode": w.exit_code,
            "error": w.err,
            "outputTail": w.output_tail,
            "planTime": w.plan_time,
            "startTime": w.start_time,
            "endTime": w.end_time,
            "worker": w.worker,
            "runId": w.run_id,
            "attempt": w.attempt,
            "suppressed": self.suppressed,
            "subject": self.subject(),
            "logUrl": self.log_link(),
            "sentBy": self.sent_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use rcron_shared::JobName;

    use super::*;

    fn alert(status: RunStatus, exit_code: Option<i32>) -> Alert {
        Alert {
            warning: Warning {
                job_name: JobName::new("backup").expect("name"),
                run_id: "run-1".into(),
                status,
                command: "pg_dump x".into(),
                exit_code,
                err: "exit code 2".into(),
                output_tail: "line one\nline two\n".into(),
                plan_time: 1_700_000_000_000,
                start_time: 1_700_000_000_010,
                end_time: 1_700_000_001_010,
                worker: "host-1".into(),
                attempt: 1,
                kind: rcron_shared::WarningKind::Run,
            },
            suppressed: 0,
            public_url: None,
            job_emails: vec![],
            sent_by: "master-1".into(),
        }
    }

    #[test]
    fn placement_alerts_say_what_changed_not_a_run() {
        let mut a = alert(RunStatus::Failed, None);
        a.warning.kind = WarningKind::Unschedulable;
        a.warning.err = "no live worker carries role=db".into();
        assert_eq!(a.subject(), "[rcron] job backup is unschedulable");
        assert_eq!(a.kind(), "unschedulable");
        let body = a.body();
        assert!(
            body.contains("role=db") && !body.contains("Exit code"),
            "{body}"
        );
        assert_eq!(a.payload()["kind"], "unschedulable");
        a.warning.kind = WarningKind::Schedulable;
        assert_eq!(a.subject(), "[rcron] job backup is schedulable again");
        assert!(a.slack_text().contains("schedulable again"));
    }

    #[test]
    fn subject_names_the_job_and_what_happened() {
        assert_eq!(
            alert(RunStatus::Failed, Some(2)).subject(),
            "[rcron] job backup failed (exit code 2)"
        );
        assert_eq!(
            alert(RunStatus::Timeout, None).subject(),
            "[rcron] job backup timed out"
        );
    }

    #[test]
    fn body_says_what_when_where_and_how_to_see_the_log() {
        let mut a = alert(RunStatus::Failed, Some(2));
        a.suppressed = 3;
        a.public_url = Some("https://cron.example.com/".into());
        let body = a.body();
        for needle in [
            "Job:       backup",
            "Exit code: 2",
            "Planned:   2023-11-14 22:13:20.000 UTC",
            "Worker:    host-1",
            "(1000 ms)",
            "3 more alert(s)",
            "  line two",
            "https://cron.example.com/#/logs?job=backup",
        ] {
            assert!(body.contains(needle), "{needle:?} missing in:\n{body}");
        }
    }

    #[test]
    fn payload_carries_the_idempotency_key_and_facts() {
        let p = alert(RunStatus::Timeout, None).payload();
        assert_eq!(p["idempotencyKey"], "run-1");
        assert_eq!(p["kind"], "timeout");
        assert_eq!(p["job"], "backup");
        assert_eq!(p["exitCode"], serde_json::Value::Null);
        assert_eq!(p["outputTail"], "line one\nline two\n");
        assert!(
            alert(RunStatus::Failed, Some(1))
                .slack_text()
                .starts_with("*[rcron] job backup failed")
        );
    }
}
