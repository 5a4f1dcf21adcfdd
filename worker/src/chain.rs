//! What a run's end does in etcd, and what a claim that never led to a
//! run undoes (ARCHITECTURE §4, "Run requests" and "Chains").
//!
//! A run's end deletes the request it was claimed from and puts one
//! request per chained job, in one transaction guarded by the marker
//! `/cron/chained/<runId>`: however often it is sent (a lost answer, the
//! next start of a worker that died), the chained jobs are requested once.

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use rcron_shared::request::MAX_CHAIN_DEPTH;
use rcron_shared::{JobName, Keys, RunRequest, TriggeredBy};

use crate::outbox::Finish;

/// What finishing a run found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Chained jobs that do not exist: not requested.
    pub missing: Vec<JobName>,
    /// The chain was not followed: it is already [`MAX_CHAIN_DEPTH`] deep.
    pub too_deep: bool,
}

/// Applies run ends and hands back claims.
#[derive(Clone)]
pub struct Chains {
    client: Client,
    keys: Keys,
}

impl Chains {
    /// Works under `keys` through `client`.
    pub fn new(client: Client, keys: Keys) -> Self {
        Self { client, keys }
    }

    /// Does what `finish` says in etcd: requests its chained jobs (once,
    /// whatever happened before) and deletes its request. An error means
    /// etcd did not answer: call again.
    pub async fn finish(
        &self,
        finish: &Finish,
        now_ms: i64,
    ) -> Result<Finished, etcd_client::Error> {
        let mut out = Finished::default();
        let mut chain: Vec<JobName> = finish.chain.clone();
        if !chain.is_empty() && finish.depth >= MAX_CHAIN_DEPTH {
            out.too_deep = true;
            chain.clear();
        }
        let Some(marker) = self
            .keys
            .chained(&finish.run_id)
            .filter(|_| !chain.is_empty())
        else {
            // Nothing to start: deleting the request is idempotent.
            self.delete_request(finish).await?;
            return Ok(out);
        };
        let parent = TriggeredBy {
            job: finish.job.to_string(),
            run_id: finish.run_id.clone(),
        };
        // A job deleted between two tries leaves the chain; at most one
        // round per chained job.
        for _ in 0..=chain.len() {
            let mut when = vec![Compare::create_revision(
                marker.clone(),
                CompareOp::Equal,
                0,
            )];
            let mut then = vec![TxnOp::put(marker.clone(), now_ms.to_string(), None)];
            let mut otherwise = vec![TxnOp::get(
                marker.clone(),
                Some(GetOptions::new().with_count_only()),
            )];
            for job in &chain {
                let job_key = self.keys.job(job);
                when.push(Compare::create_revision(
                    job_key.clone(),
                    CompareOp::Greater,
                    0,
                ));
                otherwise.push(TxnOp::get(
                    job_key,
                    Some(GetOptions::new().with_count_only()),
                ));
                let request =
                    RunRequest::chained(job.clone(), parent.clone(), finish.depth, now_ms);
                if let Some(key) = self.keys.run_request(job, &request.id) {
                    then.push(TxnOp::put(key, request.to_json(), Some(PutOptions::new())));
                }
            }
            then.extend(
                finish
                    .request
                    .iter()
                    .map(|k| TxnOp::delete(k.clone(), None)),
            );
            let resp = self
                .client
                .clone()
                .txn(Txn::new().when(when).and_then(then).or_else(otherwise))
                .await?;
            if resp.succeeded() {
                return Ok(out);
            }
            let counts: Vec<i64> = resp
                .op_responses()
                .into_iter()
                .map(|op| match op {
                    TxnOpResponse::Get(g) => g.count(),
                    _ => 0,
                })
                .collect();
            if counts.first().copied().unwrap_or(0) > 0 {
                // Done before (an earlier try whose answer was lost).
                self.delete_request(finish).await?;
                return Ok(out);
            }
            let (present, gone): (Vec<_>, Vec<_>) = chain
                .into_iter()
                .zip(counts.into_iter().skip(1))
                .partition(|(_, count)| *count > 0);
            out.missing.extend(gone.into_iter().map(|(job, _)| job));
            chain = present.into_iter().map(|(job, _)| job).collect();
            if chain.is_empty() {
                self.delete_request(finish).await?;
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// `/cron/run/<job>/<id>` of `request`.
    pub fn request_key(&self, request: &RunRequest) -> Option<String> {
        self.keys.run_request(&request.job, &request.id)
    }

    async fn delete_request(&self, finish: &Finish) -> Result<(), etcd_client::Error> {
        if let Some(key) = &finish.request {
            self.client.clone().delete(key.as_str(), None).await?;
        }
        Ok(())
    }

    /// Hands back request `key`, claimed for run `run_id`, which never
    /// started: if the claim took, the request is put back unclaimed (for
    /// any worker to run); if it did not, the request is re-put unchanged,
    /// so a claim etcd still holds in its buffers can no longer apply.
    /// An error means etcd did not answer: call again.
    pub async fn hand_back(&self, key: &str, run_id: &str) -> Result<(), etcd_client::Error> {
        // Each round either ends or saw the request change under it, which
        // only other workers' claims and runs do: a few rounds settle it.
        for _ in 0..8 {
            let resp = self.client.clone().get(key, None).await?;
            let Some(kv) = resp.kvs().first() else {
                return Ok(()); // run and finished, or expired
            };
            let Some(request) = RunRequest::from_stored(kv.value()) else {
                return Ok(());
            };
            let value = match &request.claimed {
                Some(c) if c.run_id == run_id => request.unclaimed().to_json(),
                Some(_) => return Ok(()), // another worker's
                None => request.to_json(),
            };
            let resp = self
                .client
                .clone()
                .txn(
                    Txn::new()
                        .when([Compare::mod_revision(
                            key,
                            CompareOp::Equal,
                            kv.mod_revision(),
                        )])
                        .and_then([TxnOp::put(key, value, None)]),
                )
                .await?;
            if resp.succeeded() {
                return Ok(());
            }
        }
        Err(etcd_client::Error::InvalidArgs(format!(
            "run request {key} kept changing while it was handed back"
        )))
    }
}
