//! The per-run cluster lock (DESIGN §4): one etcd transaction that both
//! advances the job's "last fired tick" and, for `concurrency: forbid`,
//! takes `/cron/lock/<name>`. A tick therefore starts at most once in the
//! whole cluster, even when a worker's clock lags and the previous run has
//! already released the lock (the original system ran such a tick twice).
//!
//! Locks hang off the worker's session lease (see `register`): if the
//! worker dies, the lease expires and its locks vanish with it.

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use rcron_shared::{Concurrency, Job, JobName, Keys};
use serde::Serialize;

/// What the lock transaction found.
pub enum LockOutcome {
    /// This worker runs the tick; release the guard when done.
    Acquired(Box<LockGuard>),
    /// Another worker already started this tick (or a later one).
    AlreadyFired,
    /// `forbid` and another run of the job is still going.
    Busy,
}

/// Who holds a lock, stored as its value (for operators reading etcd).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Holder<'a> {
    worker: &'a str,
    run_id: &'a str,
    plan_time: i64,
}

/// Takes per-run locks.
#[derive(Clone)]
pub struct Locker {
    client: Client,
    keys: Keys,
    worker_id: String,
}

impl Locker {
    /// A locker for `worker_id` under `keys`.
    pub fn new(client: Client, keys: Keys, worker_id: String) -> Self {
        Self {
            client,
            keys,
            worker_id,
        }
    }

    /// Claims a run-now request (`/cron/run/<name>` at `revision`) for run
    /// `run_id`: deletes the request and, for `forbid`, takes the lock, in
    /// one transaction, so one worker runs it. Leaves the fired tick alone.
    pub async fn acquire_request(
        &self,
        job: &Job,
        revision: i64,
        run_id: &str,
        lease: i64,
    ) -> Result<LockOutcome, etcd_client::Error> {
        let request = self.keys.run(&job.name);
        let lock = self.keys.lock(&job.name);
        let forbid = job.concurrency == Concurrency::Forbid;
        let mut when = vec![Compare::mod_revision(
            request.clone(),
            CompareOp::Equal,
            revision,
        )];
        let mut then = vec![TxnOp::delete(request.clone(), None)];
        if forbid {
            when.push(Compare::create_revision(lock.clone(), CompareOp::Equal, 0));
            then.push(TxnOp::put(
                lock.clone(),
                self.holder(run_id, chrono::Utc::now().timestamp_millis()),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        let resp = self
            .client
            .clone()
            .txn(
                Txn::new()
                    .when(when)
                    .and_then(then)
                    .or_else([TxnOp::get(request, None)]),
            )
            .await?;
        if resp.succeeded() {
            return Ok(LockOutcome::Acquired(Box::new(self.guard(
                job,
                forbid.then_some(lock),
                &resp,
            ))));
        }
        let still_pending = matches!(resp.op_responses().first(), Some(TxnOpResponse::Get(g))
            if g.kvs().first().is_some_and(|kv| kv.mod_revision() == revision));
        Ok(if still_pending {
            LockOutcome::Busy
        } else {
            LockOutcome::AlreadyFired
        })
    }

    fn holder(&self, run_id: &str, plan_time: i64) -> String {
        serde_json::to_string(&Holder {
            worker: &self.worker_id,
            run_id,
            plan_time,
        })
        .unwrap_or_default()
    }

    fn guard(&self, job: &Job, key: Option<String>, resp: &etcd_client::TxnResponse) -> LockGuard {
        LockGuard {
            client: self.client.clone(),
            key,
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
            name: job.name.clone(),
            released: false,
        }
    }

    /// Tries to start tick `plan_ms` of `job` as run `run_id`, attaching a
    /// `forbid` lock to `lease`.
    pub async fn acquire(
        &self,
        job: &Job,
        plan_ms: i64,
        run_id: &str,
        lease: i64,
    ) -> Result<LockOutcome, etcd_client::Error> {
        match self.try_acquire(job, plan_ms, run_id, lease).await? {
            Attempt::Done(outcome) => Ok(outcome),
            Attempt::NoFiredKey => {
                // First run of this job anywhere: create the marker, then retry once.
                let fired = self.keys.fired(&job.name);
                let init = Txn::new()
                    .when([Compare::create_revision(fired.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(fired, encode_plan(-1), None)]);
                self.client.clone().txn(init).await?;
                match self.try_acquire(job, plan_ms, run_id, lease).await? {
                    Attempt::Done(outcome) => Ok(outcome),
                    // Deleted again in between (the job was deleted): nothing to run.
                    Attempt::NoFiredKey => Ok(LockOutcome::AlreadyFired),
                }
            }
        }
    }

    async fn try_acquire(
        &self,
        job: &Job,
        plan_ms: i64,
        run_id: &str,
        lease: i64,
    ) -> Result<Attempt, etcd_client::Error> {
        let fired = self.keys.fired(&job.name);
        let lock = self.keys.lock(&job.name);
        let plan = encode_plan(plan_ms);
        let forbid = job.concurrency == Concurrency::Forbid;

        let mut when = vec![Compare::value(fired.clone(), CompareOp::Less, plan.clone())];
        let mut then = vec![TxnOp::put(fired.clone(), plan, None)];
        let mut otherwise = vec![TxnOp::get(fired, None)];
        if forbid {
            let holder = serde_json::to_string(&Holder {
                worker: &self.worker_id,
                run_id,
                plan_time: plan_ms,
            })
            .unwrap_or_default();
            when.push(Compare::create_revision(lock.clone(), CompareOp::Equal, 0));
            then.push(TxnOp::put(
                lock.clone(),
                holder,
                Some(PutOptions::new().with_lease(lease)),
            ));
            otherwise.push(TxnOp::get(lock.clone(), None));
        }
        let resp = self
            .client
            .clone()
            .txn(Txn::new().when(when).and_then(then).or_else(otherwise))
            .await?;
        if resp.succeeded() {
            return Ok(Attempt::Done(LockOutcome::Acquired(Box::new(self.guard(
                job,
                forbid.then_some(lock),
                &resp,
            )))));
        }
        let mut fired_value = None;
        if let Some(TxnOpResponse::Get(get)) = resp.op_responses().first() {
            fired_value = get.kvs().first().map(|kv| kv.value().to_vec());
        }
        Ok(match fired_value {
            None => Attempt::NoFiredKey,
            Some(v) if v.as_slice() >= encode_plan(plan_ms).as_bytes() => {
                Attempt::Done(LockOutcome::AlreadyFired)
            }
            Some(_) => Attempt::Done(LockOutcome::Busy),
        })
    }
}

enum Attempt {
    Done(LockOutcome),
    NoFiredKey,
}

/// Plan times as fixed-width decimals, so etcd's byte comparison of values
/// orders them numerically. -1 (no tick yet) sorts before every real one.
fn encode_plan(plan_ms: i64) -> String {
    if plan_ms < 0 {
        "-".to_string()
    } else {
        format!("{plan_ms:020}")
    }
}

/// A held lock. Call [`LockGuard::release`]; dropping it unreleased (a
/// panic) releases it from a background task instead.
pub struct LockGuard {
    client: Client,
    /// The lock key, for `forbid` jobs; `allow` jobs hold no key.
    key: Option<String>,
    /// Revision of the transaction that took it: only that version is deleted.
    revision: i64,
    name: JobName,
    released: bool,
}

impl LockGuard {
    /// Deletes the lock if it is still this run's. Retries while etcd is
    /// unreachable, because a lock left behind blocks the job until the
    /// worker's lease expires.
    pub async fn release(mut self) {
        self.released = true;
        release(
            self.client.clone(),
            self.key.take(),
            self.revision,
            self.name.clone(),
        )
        .await;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released && self.key.is_some() {
            let (client, key, revision, name) = (
                self.client.clone(),
                self.key.take(),
                self.revision,
                self.name.clone(),
            );
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(release(client, key, revision, name));
            }
        }
    }
}

async fn release(client: Client, key: Option<String>, revision: i64, name: JobName) {
    let Some(key) = key else { return };
    let mut delay = std::time::Duration::from_millis(100);
    for attempt in 1..=20 {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::delete(key.clone(), None)]);
        match client.clone().txn(txn).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(job = %name, attempt, error = %e, "cannot release lock; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
    tracing::error!(job = %name, "lock not released; it expires with this worker's lease");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_plan_times_order_like_numbers() {
        let mut values = vec![
            encode_plan(10_000),
            encode_plan(9),
            encode_plan(-1),
            encode_plan(1_700_000_000_000),
        ];
        values.sort();
        assert_eq!(
            values,
            vec![
                encode_plan(-1),
                encode_plan(9),
                encode_plan(10_000),
                encode_plan(1_700_000_000_000)
            ]
        );
    }
}
