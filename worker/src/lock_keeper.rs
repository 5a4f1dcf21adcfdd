//! Keeps the `forbid` locks of running runs tied to the live session, so
//! no two runs of such a job overlap whatever etcd does:
//!
//! - when the session can no longer vouch for its lease (`register`
//!   publishes `None` shortly before an unconfirmed lease could expire in
//!   etcd), every run holding a lock is stopped (`killed`, reason
//!   `lock lost`) before another worker could take the lock;
//! - when the session is replaced (a new lease after the old one was found
//!   gone), each lock is re-taken on the new lease in one transaction while
//!   it is still free or still this run's; a lock another worker holds by
//!   then stops its run the same way.

use rcron_shared::backoff::Backoff;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio_util::sync::CancellationToken;

use crate::lock::{Held, HeldLocks, delete_if_ours};
use crate::register::SessionLease;
use crate::run_stop::RunStopReason;

/// How often the held locks are checked against the session anyway.
const RECHECK: Duration = Duration::from_secs(1);

/// What re-taking one lock on a new lease found.
enum Retake {
    /// It hangs off the new lease now, written at this revision.
    Kept(i64),
    /// Another worker holds it.
    Taken,
}

/// Runs until `token` is cancelled.
pub async fn keep_locks(
    client: Client,
    held: Arc<HeldLocks>,
    mut session: SessionLease,
    token: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let lease = *session.borrow_and_update();
        let pending = held.not_on(lease);
        let mut retry = false;
        for (id, lock) in pending {
            let Some(lease) = lease else {
                if lock.stop.reason().is_some() {
                    continue; // stopped in an earlier round, not ended yet
                }
                tracing::warn!(job = %lock.job, "etcd session cannot be confirmed before its lease could expire; stopping the run that holds the job's lock");
                lock.stop.stop(RunStopReason::LockLost);
                continue;
            };
            match retake(&client, &lock, lease).await {
                Ok(Retake::Kept(revision)) => {
                    if held.rebound(id, lease, revision) {
                        tracing::info!(job = %lock.job, lease, "lock moved to the new etcd session");
                    } else if let Err(e) = delete_if_ours(&client, &lock.key, revision).await {
                        // Released meanwhile: what was just written goes too.
                        tracing::warn!(job = %lock.job, error = %e, "cannot delete a lock re-taken after its run ended; it expires with the session");
                    }
                }
                Ok(Retake::Taken) => {
                    tracing::error!(job = %lock.job, "the job's lock was taken by another worker while this worker's session was lost; stopping the run here");
                    lock.stop.stop(RunStopReason::LockLost);
                }
                Err(e) => {
                    tracing::warn!(job = %lock.job, error = %e, "cannot re-take the lock on the new session; retrying");
                    retry = true;
                }
            }
        }
        if retry {
            tokio::select! {
                () = token.cancelled() => return,
                () = backoff.wait() => {}
                changed = session.changed() => if changed.is_err() { return },
            }
            continue;
        }
        backoff.reset();
        // Also a look every second: a lock taken just as the session
        // changed was not in the list this round went through.
        tokio::select! {
            () = token.cancelled() => return,
            changed = session.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// Puts the lock on `lease` if it is free or still holds this run's value.
async fn retake(client: &Client, lock: &Held, lease: i64) -> Result<Retake, etcd_client::Error> {
    let put = || {
        TxnOp::put(
            lock.key.clone(),
            lock.holder.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )
    };
    let resp = client
        .clone()
        .txn(
            Txn::new()
                .when([Compare::create_revision(
                    lock.key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([put()])
                .or_else([TxnOp::get(lock.key.clone(), None)]),
        )
        .await?;
    if resp.succeeded() {
        return Ok(Retake::Kept(revision(&resp)));
    }
    let current = match resp.op_responses().first() {
        Some(TxnOpResponse::Get(g)) => g
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
        _ => None,
    };
    let Some((value, mod_revision)) = current else {
        // Deleted between the compare and the read: free again next round.
        return Err(etcd_client::Error::InvalidArgs(
            "lock changed while re-taking it".into(),
        ));
    };
    if value != lock.holder.as_bytes() {
        return Ok(Retake::Taken);
    }
    let resp = client
        .clone()
        .txn(
            Txn::new()
                .when([Compare::mod_revision(
                    lock.key.clone(),
                    CompareOp::Equal,
                    mod_revision,
                )])
                .and_then([put()]),
        )
        .await?;
    if resp.succeeded() {
        Ok(Retake::Kept(revision(&resp)))
    } else {
        Err(etcd_client::Error::InvalidArgs(
            "lock changed while re-taking it".into(),
        ))
    }
}

fn revision(resp: &etcd_client::TxnResponse) -> i64 {
    resp.header().map(|h| h.revision()).unwrap_or_default()
}
