//! Runs' output as it prints: `GET /api/v1/runs/{runId}/output/stream`,
//! Server-Sent Events read as they arrive (the events of
//! [`rcron_shared::live`]).

use std::collections::VecDeque;
use std::time::Duration;

use rcron_shared::live::{LiveEvent, SSE_HEARTBEAT, SseReader};
use reqwest::Method;

use super::{Client, ClientError, ErrorBody};

/// Silence after which the master is taken for gone: it writes a comment
/// every [`SSE_HEARTBEAT`] while a run is quiet.
const MASTER_SILENCE: Duration = Duration::from_secs(SSE_HEARTBEAT.as_secs() * 3);

/// The whole stream may last as long as its run does.
const STREAM_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// One open output stream.
pub struct OutputStream {
    url: String,
    response: Option<reqwest::Response>,
    reader: SseReader,
    ready: VecDeque<LiveEvent>,
}

impl Client {
    /// Opens the output stream of run `run_id`: its output so far and as it
    /// prints if it runs, its stored output if it ended.
    pub async fn run_output(&self, run_id: &str) -> Result<OutputStream, ClientError> {
        let url = self.url(&["runs", run_id, "output", "stream"], &[]);
        let mut request = self.http.get(url.clone()).timeout(STREAM_LIMIT);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let error: Option<ErrorBody> = serde_json::from_str(&text).ok();
            let (message, problems) = match error {
                Some(e) => (e.error, e.problems),
                None => (text, Vec::new()),
            };
            return Err(ClientError::Api {
                method: Method::GET,
                path: url.path().to_string(),
                status,
                message,
                problems,
            });
        }
        Ok(OutputStream {
            url: url.to_string(),
            response: Some(response),
            reader: SseReader::default(),
            ready: VecDeque::new(),
        })
    }
}

/// Why a stream stopped before its `end` or `error` event.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The connection broke or the master went silent.
    #[error("the output stream from {url} broke off: {reason}")]
    Broken {
        /// The stream's URL.
        url: String,
        /// What happened.
        reason: String,
    },
}

impl OutputStream {
    /// The next event; None after the stream closed (after `end` or `error`).
    pub async fn next(&mut self) -> Result<Option<LiveEvent>, StreamError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let Some(response) = self.response.as_mut() else {
                return Ok(None);
            };
            let broken = |reason: String| StreamError::Broken {
                url: self.url.clone(),
                reason,
            };
            let chunk = match tokio::time::timeout(MASTER_SILENCE, response.chunk()).await {
                Err(_) => return Err(broken(format!("silent for {} s", MASTER_SILENCE.as_secs()))),
                Ok(Err(e)) => return Err(broken(e.to_string())),
                Ok(Ok(None)) => {
                    self.response = None;
                    continue;
                }
                Ok(Ok(Some(chunk))) => chunk,
            };
            for (name, data) in self.reader.feed(&chunk) {
                // Events of later versions are skipped.
                if let Some(event) = LiveEvent::parse(&name, &data) {
                    self.ready.push_back(event);
                }
            }
        }
    }
}
