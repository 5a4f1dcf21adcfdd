//! Keeping an etcd lease alive, and knowing for how long it certainly
//! lives. Used by the worker's session (its locks hang off the lease) and
//! by the masters' election (leadership hangs off it).
//!
//! [`keep_alive`] renews the lease every `period` on one keep-alive
//! stream, opening it again whenever it breaks, and publishes on a watch
//! channel the instant until which etcd cannot have expired the lease: the
//! time the answered keep-alive was *sent* plus the TTL in its answer (etcd
//! renews when it receives the request, never before it was sent). The
//! caller decides what to do as that instant comes near: the worker stops
//! vouching for its locks, a master stops leading. It ends only when etcd
//! says the lease is gone or the token is cancelled; an outage just stops
//! the published instant from moving.
//!
//! Answers come in order on one stream, one per request (etcd ends the
//! stream rather than skip one), so the n-th answer belongs to the n-th
//! request sent on that stream. The send times of a broken stream are
//! dropped with it: an answer is never matched to a later request than its
//! own, which would overestimate the lease.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// How long opening a keep-alive stream may take (at least one period): a
/// reconnection to a restarted etcd, or to another member, takes a while
/// and must be given the time. The caller's deadline does not wait for it.
const OPEN_WAIT: Duration = Duration::from_secs(3);

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease id.
    pub id: i64,
    /// The TTL etcd granted it with: each renewal extends it by this much.
    pub ttl: Duration,
}

/// Why [`keep_alive`] returned.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// etcd says the lease does not exist (expired or revoked): whatever
    /// hung off it is gone.
    Gone,
    /// The token was cancelled; the lease is left as it is (the caller may
    /// revoke it).
    Cancelled,
}

/// Asks etcd for a lease of `ttl_secs` and returns it with the instant
/// until which it certainly lives (the time of asking plus the TTL granted:
/// etcd starts the TTL when it receives the request).
pub async fn grant(client: &Client, ttl_secs: i64) -> Result<(Lease, Instant), etcd_client::Error> {
    let asked = Instant::now();
    let granted = client.clone().lease_grant(ttl_secs, None).await?;
    let lease = Lease {
        id: granted.id(),
        ttl: ttl_from_answer(granted.ttl()).unwrap_or(Duration::ZERO),
    };
    Ok((lease, asked + lease.ttl))
}

/// Keeps `lease` alive every `period` until etcd says it is gone or
/// `token` is cancelled, raising `confirmed` (never lowering it) each time
/// an answer proves the lease lives longer. Start `confirmed` at the
/// instant the grant (or the last answer) proved.
pub async fn keep_alive(
    client: Client,
    lease: Lease,
    period: Duration,
    confirmed: watch::Sender<Instant>,
    token: CancellationToken,
) -> LeaseEnd {
    let mut backoff = Backoff::new(period / 5, period);
    let open_wait = OPEN_WAIT.max(period);
    loop {
        // Opening the stream sends the first keep-alive and reads its
        // answer (whose TTL the client does not expose: it is the lease's).
        let asked = Instant::now();
        let opened = tokio::select! {
            () = token.cancelled() => return LeaseEnd::Cancelled,
            opened = tokio::time::timeout(open_wait, async {
                client.clone().lease_keep_alive(lease.id).await
            }) => opened,
        };
        let (keeper, answers) = match opened {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) if lease_not_found(&e) => return LeaseEnd::Gone,
            Ok(Err(e)) => {
                tracing::debug!(lease = lease.id, error = %e, "cannot open the keep-alive stream; retrying");
                if !backoff.wait_or_cancel(&token).await {
                    return LeaseEnd::Cancelled;
                }
                continue;
            }
            Err(_) => {
                // The wait is spent already: try again at once.
                tracing::debug!(
                    lease = lease.id,
                    "no answer opening the keep-alive stream; retrying"
                );
                continue;
            }
        };
        backoff.reset();
        raise(&confirmed, asked + lease.ttl);
        let stream = Stream {
            lease: lease.id,
            keeper,
            answers,
            pending: Pending::default(),
        };
        match stream
            .keep(period, asked + period, &confirmed, &token)
            .await
        {
            StreamEnd::Lease(end) => return end,
            StreamEnd::Broken => {
                tracing::debug!(
                    lease = lease.id,
                    "keep-alive stream broken; opening another"
                );
                // A stream that breaks as soon as it is opened must not
                // make this loop spin.
                if !backoff.wait_or_cancel(&token).await {
                    return LeaseEnd::Cancelled;
                }
            }
        }
    }
}

/// One open keep-alive stream and the requests on it not answered yet.
struct Stream {
    lease: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
    pending: Pending,
}

enum StreamEnd {
    Lease(LeaseEnd),
    /// The stream failed or fell out of step: open another.
    Broken,
}

impl Stream {
    async fn keep(
        mut self,
        period: Duration,
        mut next_send: Instant,
        confirmed: &watch::Sender<Instant>,
        token: &CancellationToken,
    ) -> StreamEnd {
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => return StreamEnd::Lease(LeaseEnd::Cancelled),
                answer = self.answers.message() => match answer {
                    Ok(Some(resp)) => match self.pending.answered(resp.ttl()) {
                        Answer::Alive { until } => {
                            raise(confirmed, until);
                        }
                        Answer::Gone => return StreamEnd::Lease(LeaseEnd::Gone),
                        Answer::Unexpected => {
                            tracing::warn!(lease = self.lease, "keep-alive answer without a request; opening another stream");
                            return StreamEnd::Broken;
                        }
                    },
                    Ok(None) => return StreamEnd::Broken,
                    Err(e) => {
                        tracing::debug!(lease = self.lease, error = %e, "keep-alive stream failed");
                        return StreamEnd::Broken;
                    }
                },
                () = tokio::time::sleep_until(next_send) => {
                    let now = Instant::now();
                    next_send = now + period;
                    // Recorded before sending: a request whose send time is
                    // missing would have its answer credited to a later one.
                    self.pending.sending(now);
                    // The send waits only when etcd has not read the last
                    // hundred requests; give up on such a stream then.
                    match tokio::time::timeout(period, self.keeper.keep_alive()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) | Err(_) => return StreamEnd::Broken,
                    }
                }
            }
        }
    }
}

/// Publishes `until` unless an earlier answer proved more already.
fn raise(confirmed: &watch::Sender<Instant>, until: Instant) {
    confirmed.send_if_modified(|current| {
        if until > *current {
            *current = until;
            true
        } else {
            false
        }
    });
}

fn lease_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::LeaseKeepAliveError(m) if m == "lease not found")
}

/// A TTL from etcd in seconds; `None` when it says the lease is gone.
fn ttl_from_answer(ttl_secs: i64) -> Option<Duration> {
    u64::try_from(ttl_secs)
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
}

/// Send times of the keep-alives on one stream not answered yet, oldest
/// first.
#[derive(Debug, Default)]
struct Pending {
    sent: VecDeque<Instant>,
}

/// What one keep-alive answer proves.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// etcd cannot expire the lease before `until`.
    Alive { until: Instant },
    /// The lease does not exist.
    Gone,
    /// An answer with no request waiting for it: the stream is out of
    /// step, and its answers can no longer be trusted to be dated.
    Unexpected,
}

impl Pending {
    fn sending(&mut self, at: Instant) {
        self.sent.push_back(at);
    }

    fn answered(&mut self, ttl_secs: i64) -> Answer {
        let Some(sent) = self.sent.pop_front() else {
            return Answer::Unexpected;
        };
        match ttl_from_answer(ttl_secs) {
            Some(ttl) => Answer::Alive { until: sent + ttl },
            None => Answer::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_dates_from_its_own_request() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        pending.sending(t0);
        pending.sending(t0 + Duration::from_secs(1));
        pending.sending(t0 + Duration::from_secs(2));
        // Answered late (say at t0 + 7 s), the first answer still only
        // proves its own send time plus the TTL.
        assert_eq!(
            pending.answered(10),
            Answer::Alive {
                until: t0 + Duration::from_secs(10)
            }
        );
        assert_eq!(
            pending.answered(10),
            Answer::Alive {
                until: t0 + Duration::from_secs(11)
            }
        );
        // The TTL is the answer's, not the one asked for.
        assert_eq!(
            pending.answered(5),
            Answer::Alive {
                until: t0 + Duration::from_secs(7)
            }
        );
    }

    #[test]
    fn an_answer_without_a_request_proves_nothing() {
        let mut pending = Pending::default();
        assert_eq!(pending.answered(10), Answer::Unexpected);
        pending.sending(Instant::now());
        let _ = pending.answered(10);
        assert_eq!(pending.answered(10), Answer::Unexpected);
    }

    #[test]
    fn a_ttl_of_zero_or_less_means_gone() {
        let mut pending = Pending::default();
        pending.sending(Instant::now());
        pending.sending(Instant::now());
        assert_eq!(pending.answered(0), Answer::Gone);
        assert_eq!(pending.answered(-1), Answer::Gone);
    }

    #[test]
    fn the_confirmed_instant_never_moves_back() {
        let t0 = Instant::now();
        let (tx, rx) = watch::channel(t0 + Duration::from_secs(10));
        raise(&tx, t0 + Duration::from_secs(5));
        assert_eq!(*rx.borrow(), t0 + Duration::from_secs(10));
        raise(&tx, t0 + Duration::from_secs(12));
        assert_eq!(*rx.borrow(), t0 + Duration::from_secs(12));
    }

    #[test]
    fn a_stream_opened_again_starts_with_nothing_pending() {
        // Each stream has its own `Pending`: the requests of a broken
        // stream are never answered on the next one.
        let t0 = Instant::now();
        let mut old = Pending::default();
        old.sending(t0);
        let mut new = Pending::default();
        assert_eq!(new.answered(10), Answer::Unexpected);
        new.sending(t0 + Duration::from_secs(3));
        assert_eq!(
            new.answered(10),
            Answer::Alive {
                until: t0 + Duration::from_secs(13)
            }
        );
    }
}
