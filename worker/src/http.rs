//! The worker's HTTP listener (`http_listen`): the [`metrics`] routes
//! (`/metrics`, `/healthz`, `/readyz`, open as before) and
//! `GET /runs/{runId}/output`, the live output of a run executing here
//! (from [`live`]), which masters relay to users (ARCHITECTURE §6, "Live
//! output").
//!
//! The output route answers newline-delimited JSON frames
//! ([`rcron_shared::live::WorkerFrame`]): what the run printed so far,
//! then what it prints as it is read, heartbeats while it is silent, and
//! an `end` frame when it has ended; 404 for a run it does not have.
//!
//! Only masters may read it: a request carries a grant signed with the
//! cluster secret for that run id ([`rcron_shared::run_token`]), else 401.
//! A worker without a secret serves output only on a loopback listener
//! (one host: whoever can reach it can read its metrics and processes
//! anyway), and refuses it (403) on any other.
//!
//! [`metrics`]: crate::metrics
//! [`live`]: crate::live

use std::net::SocketAddr;
use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Body, EndpointExt, Request, Response, Route, get, handler};
use rcron_shared::live::{WORKER_HEARTBEAT, WorkerFrame};
use rcron_shared::run_token::ClusterSecret;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::live::{LiveRun, LiveRuns, Piece};
use crate::metrics::{self, WorkerMetrics};
use crate::register::SessionLease;

/// Who may read output here.
#[derive(Clone)]
struct OutputAccess {
    runs: Arc<LiveRuns>,
    secret: Option<ClusterSecret>,
    /// No secret, but the listener is on loopback: served without one.
    open: bool,
}

/// What the listener serves.
pub struct HttpState {
    /// Counters for `/metrics`.
    pub metrics: Arc<WorkerMetrics>,
    /// The outbox directory (its size is a gauge).
    pub spill_dir: std::path::PathBuf,
    /// Whether the etcd session is live (`/readyz`).
    pub lease: SessionLease,
    /// Runs whose output can be read.
    pub live: Arc<LiveRuns>,
    /// The cluster secret grants are signed with.
    pub secret: Option<ClusterSecret>,
}

/// Serves the worker's routes on `addr` until `token` is cancelled. A port
/// that cannot be bound is logged, not fatal: the worker keeps running jobs.
pub async fn serve(addr: SocketAddr, state: HttpState, token: CancellationToken) {
    let open = state.secret.is_none() && addr.ip().is_loopback();
    if state.secret.is_none() && !open {
        tracing::warn!(listen = %addr, "no cluster_secret_file: live output is refused on this non-loopback listener");
    }
    let app = Route::new()
        .at("/metrics", get(metrics::metrics_text))
        .at("/healthz", get(metrics::health))
        .at("/readyz", get(metrics::ready))
        .at("/runs/:run_id/output", get(output))
        .data(metrics::Shared {
            metrics: state.metrics,
            spill_dir: state.spill_dir,
            lease: state.lease,
        })
        .data(OutputAccess {
            runs: state.live,
            secret: state.secret,
            open,
        });
    tracing::info!(listen = %addr, "worker HTTP serving (metrics, live output)");
    if let Err(e) = poem::Server::new(poem::listener::TcpListener::bind(addr))
        .run_with_graceful_shutdown(
            app,
            token.cancelled_owned(),
            Some(std::time::Duration::from_secs(1)),
        )
        .await
    {
        tracing::error!(listen = %addr, error = %e, "cannot serve the worker's HTTP routes");
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

/// The answer refusing `req` to read run `run_id`'s output; None when it may.
fn refusal(req: &Request, access: &OutputAccess, run_id: &str) -> Option<Response> {
    let Some(secret) = &access.secret else {
        if access.open {
            return None;
        }
        return Some(error(
            StatusCode::FORBIDDEN,
            "live output is off on this worker: it listens on a non-loopback address \
             without a cluster secret (set cluster_secret_file on masters and workers)",
        ));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let now = chrono::Utc::now().timestamp();
    let refused = match presented {
        None => rcron_shared::run_token::GrantError::Missing,
        Some(grant) => match secret.verify(grant, run_id, now) {
            Ok(()) => return None,
            Err(e) => e,
        },
    };
    tracing::warn!(run_id, remote = %req.remote_addr(), reason = %refused, "live output request refused");
    let mut resp = error(StatusCode::UNAUTHORIZED, &refused.to_string());
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"rcron-worker\""),
    );
    Some(resp)
}

/// `GET /runs/{runId}/output`.
#[handler]
fn output(
    req: &Request,
    Path(run_id): Path<String>,
    Data(access): Data<&OutputAccess>,
) -> Response {
    if let Some(refused) = refusal(req, access, &run_id) {
        return refused;
    }
    let Some(run) = access.runs.get(&run_id) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("run {run_id:?} is not running on this worker"),
        );
    };
    tracing::debug!(run_id, job = %run.job, "live output stream opened");
    let follow = Follow {
        changes: run.subscribe(),
        run,
        at: 0,
        utf8: Default::default(),
        done: false,
    };
    let frames = futures::stream::unfold(follow, |mut f| async move {
        let frame = f.next_frame().await?;
        Some((Ok::<_, std::io::Error>(frame.to_line()), f))
    });
    Response::builder()
        .content_type("application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_bytes_stream(frames))
}

/// One reader of a run's output.
struct Follow {
    run: Arc<LiveRun>,
    at: u64,
    utf8: rcron_shared::live::Utf8Carry,
    changes: watch::Receiver<u64>,
    done: bool,
}

impl Follow {
    /// The next frame for this reader; None once the `end` frame was sent.
    async fn next_frame(&mut self) -> Option<WorkerFrame> {
        if self.done {
            return None;
        }
        loop {
            match self.run.read(&mut self.at) {
                Piece::Bytes(bytes) => {
                    let data = self.utf8.decode(&bytes);
                    if !data.is_empty() {
                        return Some(WorkerFrame::Output { data });
                    }
                }
                Piece::Skipped(n) => {
                    self.utf8.reset();
                    // As the stored output marks the cut.
                    return Some(WorkerFrame::Output {
                        data: format!("\n…[{n} bytes truncated]…\n"),
                    });
                }
                Piece::Ended(end) => {
                    self.done = true;
                    return Some(WorkerFrame::End(end));
                }
                Piece::Nothing => {
                    match tokio::time::timeout(WORKER_HEARTBEAT, self.changes.changed()).await {
                        Err(_) => return Some(WorkerFrame::Heartbeat),
                        // The run holds the sender, and this reader the run.
                        Ok(Err(_)) => return None,
                        Ok(Ok(())) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(secret: Option<&str>, open: bool) -> OutputAccess {
        OutputAccess {
            runs: Arc::new(LiveRuns::new(64)),
            secret: secret.map(|s| ClusterSecret::new(s.as_bytes()).expect("secret")),
            open,
        }
    }

    fn request(auth: Option<String>) -> Request {
        let mut req = Request::builder().uri_str("/runs/r1/output");
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        req.finish()
    }

    fn status(refused: Option<Response>) -> Option<u16> {
        refused.map(|r| r.status().as_u16())
    }

    #[test]
    fn without_a_secret_output_is_served_on_loopback_only() {
        assert_eq!(
            status(refusal(&request(None), &access(None, true), "r1")),
            None
        );
        assert_eq!(
            status(refusal(&request(None), &access(None, false), "r1")),
            Some(403)
        );
    }

    #[test]
    fn with_a_secret_only_a_grant_for_the_run_is_let_through() {
        let secret = "0123456789abcdef-secret";
        let a = access(Some(secret), false);
        let grant = ClusterSecret::new(secret.as_bytes().to_vec())
            .expect("secret")
            .grant("r1", chrono::Utc::now().timestamp());
        let with = |auth: &str| status(refusal(&request(Some(auth.to_string())), &a, "r1"));
        assert_eq!(with(&format!("Bearer {grant}")), None);
        assert_eq!(status(refusal(&request(None), &a, "r1")), Some(401));
        assert_eq!(with(&format!("Bearer {secret}")), Some(401));
        assert_eq!(
            status(refusal(&request(Some(format!("Bearer {grant}"))), &a, "r2")),
            Some(401),
            "another run"
        );
        // Even on loopback, a configured secret is required.
        let local = access(Some(secret), true);
        assert_eq!(status(refusal(&request(None), &local, "r1")), Some(401));
    }
}
