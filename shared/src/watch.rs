//! List-then-watch of an etcd prefix, the way every mirror of etcd in
//! rcron reads it (worker: jobs, run requests, the placement mirror;
//! master: the job cache): list the prefix at a revision, then watch it
//! from the next one. Any error — the stream ends, etcd cancels the watch
//! (a compaction), etcd stops answering — is returned, and the caller lists
//! again and reconciles, so no change is missed or applied twice.

use std::time::Duration;

use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};
use tokio_util::sync::CancellationToken;

use crate::listing::{Listing, Read, list_prefix};

/// A watch of a prefix from the revision after its list.
pub struct PrefixWatch {
    stream: WatchStream,
    liveness: Option<Liveness>,
}

/// Asks etcd every `every` to confirm the stream, and gives the stream up
/// when nothing came for `stale_after`.
struct Liveness {
    tick: tokio::time::Interval,
    heard: tokio::time::Instant,
    stale_after: Duration,
}

/// Lists `dir` (with values, in pages: [`crate::listing`]) and watches it
/// from the next revision.
pub async fn list_then_watch(
    client: &Client,
    dir: &str,
) -> Result<(Listing, PrefixWatch), etcd_client::Error> {
    let listed = list_prefix(client, dir, Read::Values).await?;
    let revision = listed.revision;
    let stream = client
        .clone()
        .watch(
            dir,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await?;
    Ok((
        listed,
        PrefixWatch {
            stream,
            liveness: None,
        },
    ))
}

impl PrefixWatch {
    /// Asks etcd for the watch's progress every `every` and fails the
    /// watch when etcd has sent nothing for `stale_after`: a silent
    /// stream (etcd gone, a partition) is noticed within that time.
    pub fn confirmed(mut self, every: Duration, stale_after: Duration) -> Self {
        self.liveness = Some(Liveness {
            tick: tokio::time::interval(every),
            heard: tokio::time::Instant::now(),
            stale_after,
        });
        self
    }

    /// The next response with events, or None once `token` is cancelled.
    /// Progress answers are not returned (they only prove the stream alive).
    pub async fn next(
        &mut self,
        token: &CancellationToken,
    ) -> Result<Option<WatchResponse>, etcd_client::Error> {
        loop {
            let msg = match &mut self.liveness {
                Some(l) => tokio::select! {
                    () = token.cancelled() => return Ok(None),
                    msg = self.stream.message() => msg?,
                    _ = l.tick.tick() => {
                        if l.heard.elapsed() > l.stale_after {
                            return Err(etcd_client::Error::WatchError(format!(
                                "etcd did not answer the watch for {} ms",
                                l.heard.elapsed().as_millis()
                            )));
                        }
                        self.stream.request_progress().await?;
                        continue;
                    }
                },
                None => tokio::select! {
                    () = token.cancelled() => return Ok(None),
                    msg = self.stream.message() => msg?,
                },
            };
            if let Some(l) = &mut self.liveness {
                l.heard = tokio::time::Instant::now();
            }
            let Some(resp) = msg else {
                return Err(etcd_client::Error::WatchError("watch stream ended".into()));
            };
            if resp.canceled() {
                return Err(etcd_client::Error::WatchError(format!(
                    "watch canceled (compacted at {}): {}",
                    resp.compact_revision(),
                    resp.cancel_reason()
                )));
            }
            if !resp.events().is_empty() {
                return Ok(Some(resp));
            }
        }
    }
}
