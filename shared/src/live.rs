//! Live output of running runs, as it travels (ARCHITECTURE §6, "Live
//! output"):
//!
//! - worker → master: `GET /runs/{runId}/output` on the worker's HTTP
//!   listener answers newline-delimited JSON, one [`WorkerFrame`] a line
//!   (`application/x-ndjson`): output text as it is read, a heartbeat
//!   every [`WORKER_HEARTBEAT`] while the run is silent, and one `end`
//!   frame when the run has ended;
//! - master → browser or `rcronctl`: Server-Sent Events ([`LiveEvent`],
//!   written with [`LiveEvent::to_sse`] and read back with [`SseReader`]).
//!
//! Both sides of each hop use this module, so they cannot disagree.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RunStatus;

/// How often a worker writes a heartbeat frame on an output stream while
/// the run prints nothing: a master that hears nothing for
/// [`WORKER_SILENCE`] takes the worker for gone.
pub const WORKER_HEARTBEAT: Duration = Duration::from_secs(5);

/// Silence after which a master gives up on a worker's output stream.
pub const WORKER_SILENCE: Duration = Duration::from_secs(15);

/// How often a master writes an SSE comment while a stream is quiet, so
/// proxies and browsers keep the connection.
pub const SSE_HEARTBEAT: Duration = Duration::from_secs(15);

/// How a run ended, as the `end` event and frame carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEnd {
    /// How it ended.
    pub status: RunStatus,
    /// Why, when the status alone does not say (the record's `reason`,
    /// else its `err`: `exit code 3`, `timed out after 5 s; …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Exit code, when the process exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The run's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
}

impl RunEnd {
    /// How the attempt `record` stands for ended: its `err` (the whole
    /// sentence) or else its `reason`.
    pub fn of_record(record: &crate::LogRecord) -> Self {
        let reason = if record.err.is_empty() {
            record.reason.clone()
        } else {
            Some(record.err.clone())
        };
        Self {
            status: record.status,
            reason,
            exit_code: record.exit_code,
            run_id: record.run_id.clone(),
        }
    }
}

/// The line that marks where attempt `attempt` (a retry) starts in a
/// run's output, preceded by a line break unless the output so far ends
/// with one.
pub fn attempt_mark(attempt: u32, at_line_start: bool) -> String {
    format!(
        "{}── attempt {attempt} ──\n",
        if at_line_start { "" } else { "\n" }
    )
}

/// The output of a finished run from its stored attempts (first first):
/// as its live output read, each retry marked.
pub fn stored_output(attempts: &[crate::LogRecord]) -> String {
    let mut out = String::new();
    for (i, record) in attempts.iter().enumerate() {
        if i > 0 {
            let at_line_start = out.is_empty() || out.ends_with('\n');
            out.push_str(&attempt_mark(record.attempt, at_line_start));
        }
        out.push_str(&record.output);
    }
    out
}

/// One line of a worker's output stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum WorkerFrame {
    /// Text the run printed (stdout and stderr as read, interleaved).
    Output {
        /// The text (invalid UTF-8 replaced).
        data: String,
    },
    /// Nothing printed for a while; the worker is alive.
    Heartbeat,
    /// The run ended; the stream ends after this frame.
    End(RunEnd),
}

impl WorkerFrame {
    /// The frame as one NDJSON line.
    pub fn to_line(&self) -> String {
        // A frame holds strings and numbers only: it always serializes.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// Which run a stream is about (the first event of every stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStart {
    /// The run's id.
    pub run_id: String,
    /// Its job.
    pub job: String,
    /// The worker running (or that ran) it.
    pub worker: String,
    /// When its command started (ms).
    pub start_time: i64,
    /// Still running when the stream opened (false: a stored record).
    pub running: bool,
}

/// What a master's live output stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// `event: run`: which run follows.
    Run(RunStart),
    /// `event: output`: text the run printed.
    Output(String),
    /// `event: end`: the run ended; the stream closes.
    End(RunEnd),
    /// `event: error`: the stream cannot go on (the worker died or cannot
    /// be reached); the stream closes.
    Error {
        /// What happened, for a human.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
struct ErrorData {
    message: String,
}

impl LiveEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Run(_) => "run",
            Self::Output(_) => "output",
            Self::End(_) => "end",
            Self::Error { .. } => "error",
        }
    }

    /// The event in SSE form. Output text is split into one `data:` line
    /// per line, so a reader joining them with `\n` gets it back exactly;
    /// a carriage return (which SSE reads as a line end) becomes a line
    /// break.
    pub fn to_sse(&self) -> String {
        let data = match self {
            Self::Output(text) => text.replace("\r\n", "\n").replace('\r', "\n"),
            Self::Run(start) => serde_json::to_string(start).unwrap_or_default(),
            Self::End(end) => serde_json::to_string(end).unwrap_or_default(),
            Self::Error { message } => serde_json::to_string(&ErrorData {
                message: message.clone(),
            })
            .unwrap_or_default(),
        };
        let mut out = format!("event: {}\n", self.name());
        for line in data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }

    /// The event named `name` with `data`, as [`SseReader`] yields them;
    /// None for an event this module does not know or data that does not
    /// decode.
    pub fn parse(name: &str, data: &str) -> Option<Self> {
        match name {
            "run" => serde_json::from_str(data).ok().map(Self::Run),
            "output" => Some(Self::Output(data.to_string())),
            "end" => serde_json::from_str(data).ok().map(Self::End),
            "error" => serde_json::from_str::<ErrorData>(data)
                .ok()
                .map(|e| Self::Error { message: e.message }),
            _ => None,
        }
    }
}

/// The SSE comment a master writes while a stream is quiet.
pub const SSE_KEEP_ALIVE: &str = ": keep-alive\n\n";

/// Reads SSE events out of bytes as they arrive (the parsing rules of
/// the HTML specification, for `event` and `data` fields; comments and
/// other fields are skipped).
#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseReader {
    /// Feeds `bytes`; returns the events they complete, as (name, data).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw[..raw.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let name = match std::mem::take(&mut self.event) {
                        e if e.is_empty() => "message".to_string(),
                        e => e,
                    };
                    events.push((name, std::mem::take(&mut self.data).join("\n")));
                }
                self.event.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        events
    }
}

/// Decodes bytes read in pieces as UTF-8: a character split between two
/// pieces is kept until its end arrives; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    carry: Vec<u8>,
}

impl Utf8Carry {
    /// The text of `bytes` after what was carried over.
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.carry;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // Checked valid just above.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            rest = &after[bad..];
                        }
                        // An incomplete character at the end: wait for more.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.carry = rest.to_vec();
        out
    }

    /// Drops a character left incomplete (output skipped, or the stream ended).
    pub fn reset(&mut self) -> bool {
        let had = !self.carry.is_empty();
        self.carry.clear();
        had
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_round_trip_with_their_line_breaks() {
        let events = [
            LiveEvent::Run(RunStart {
                run_id: "r1".into(),
                job: "j".into(),
                worker: "w".into(),
                start_time: 5,
                running: true,
            }),
            LiveEvent::Output("one\ntwo\n".into()),
            LiveEvent::Output("\n\nno newline at the end".into()),
            LiveEvent::End(RunEnd {
                status: RunStatus::Failed,
                reason: Some("exit code 3".into()),
                exit_code: Some(3),
                run_id: "r1".into(),
            }),
            LiveEvent::Error {
                message: "worker w stopped answering".into(),
            },
        ];
        let wire: String = events.iter().map(LiveEvent::to_sse).collect();
        assert!(wire.contains("event: output\ndata: one\ndata: two\ndata: \n\n"));
        let mut reader = SseReader::default();
        // Fed a byte at a time: events complete only at their blank line.
        let mut got = Vec::new();
        for b in format!("{SSE_KEEP_ALIVE}{wire}").bytes() {
            got.extend(reader.feed(&[b]));
        }
        let back: Vec<LiveEvent> = got
            .iter()
            .map(|(n, d)| LiveEvent::parse(n, d).expect("known event"))
            .collect();
        assert_eq!(back, events);
        assert_eq!(
            LiveEvent::Output("bar\rdone\r\n".into()).to_sse(),
            "event: output\ndata: bar\ndata: done\ndata: \n\n"
        );
    }

    #[test]
    fn worker_frames_are_one_json_line_each() {
        let end = WorkerFrame::End(RunEnd {
            status: RunStatus::Success,
            reason: None,
            exit_code: Some(0),
            run_id: String::new(),
        });
        assert_eq!(
            end.to_line(),
            "{\"event\":\"end\",\"status\":\"success\",\"exitCode\":0}\n"
        );
        assert_eq!(
            WorkerFrame::Heartbeat.to_line(),
            "{\"event\":\"heartbeat\"}\n"
        );
        let out = WorkerFrame::Output {
            data: "a\nb".into(),
        };
        let line = out.to_line();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert_eq!(
            serde_json::from_str::<WorkerFrame>(line.trim_end()).expect("decodes"),
            out
        );
    }

    #[test]
    fn utf8_split_between_reads_is_kept_whole_and_bad_bytes_replaced() {
        let mut c = Utf8Carry::default();
        let bytes = "é€".as_bytes();
        assert_eq!(c.decode(&bytes[..1]), "");
        assert_eq!(c.decode(&bytes[1..3]), "é");
        assert_eq!(c.decode(&bytes[3..]), "€");
        assert_eq!(c.decode(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(c.decode(&bytes[..1]), "");
        assert!(c.reset());
        assert_eq!(c.decode(b"x"), "x");
    }
}
