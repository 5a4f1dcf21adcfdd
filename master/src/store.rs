//! Jobs and kill requests in etcd: the master's only writer of
//! `/cron/jobs/` and `/cron/killer/`.

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
};
use rcron_shared::{Job, JobName, Keys, ScheduleCache};

use crate::Error;

/// How long a kill request stays in etcd. Workers react to the put event;
/// the lease only cleans the key up.
const KILL_TTL_SECS: i64 = 2;

/// How long a run-now request waits for a worker to claim it.
const RUN_REQUEST_TTL_SECS: i64 = 30;

/// Job CRUD and kill requests over one etcd client.
#[derive(Clone)]
pub struct JobStore {
    client: Client,
    keys: Keys,
}

impl JobStore {
    /// A store using `client` and the key layout `keys`.
    pub fn new(client: Client, keys: Keys) -> Self {
        Self { client, keys }
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A handle on the etcd client, for reads outside job CRUD.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates or replaces a job; returns the job it replaced.
    pub async fn save(&self, job: &Job) -> Result<Option<Job>, Error> {
        Ok(self
            .save_returning_stored(job)
            .await?
            .and_then(decode_lenient))
    }

    /// [`JobStore::save`], returning the replaced value as stored, whether
    /// or not it reads as an rcron job (the legacy routes show what the
    /// original would have read in it).
    pub async fn save_returning_stored(&self, job: &Job) -> Result<Option<Vec<u8>>, Error> {
        let resp = self
            .client
            .clone()
            .put(
                self.keys.job(&job.name),
                stamped(job),
                Some(PutOptions::new().with_prev_key()),
            )
            .await?;
        Ok(resp.prev_key().map(|kv| kv.value().to_vec()))
    }

    /// Creates a job that must not exist yet.
    pub async fn create(&self, job: &Job) -> Result<(), Error> {
        let key = self.keys.job(&job.name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, stamped(job), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(Error::Conflict(job.name.to_string()))
        }
    }

    /// Pauses (`disabled`) or resumes a job without touching anything
    /// else in it: read, change the one field, write back only if nobody
    /// wrote in between (retried). The job before and after; `None` when
    /// the job does not exist.
    pub async fn set_disabled(
        &self,
        name: &JobName,
        disabled: bool,
    ) -> Result<Option<(Job, Job)>, Error> {
        let key = self.keys.job(name);
        for _ in 0..5 {
            let resp = self.client.clone().get(key.clone(), None).await?;
            let Some(kv) = resp.kvs().first() else {
                return Ok(None);
            };
            let before = decode(kv)?;
            let mut job = before.clone();
            if job.disabled == disabled {
                return Ok(Some((before, job)));
            }
            job.disabled = disabled;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(key.clone(), stamped(&job), None)]);
            if self.client.clone().txn(txn).await?.succeeded() {
                return Ok(Some((before, job)));
            }
        }
        Err(Error::Conflict(format!(
            "{name} (changed by others while being paused or resumed; try again)"
        )))
    }

    /// The named job, if it exists.
    pub async fn get(&self, name: &JobName) -> Result<Option<Job>, Error> {
        let resp = self.client.clone().get(self.keys.job(name), None).await?;
        resp.kvs().first().map(decode).transpose()
    }

    /// Every job, sorted by name. A value that is not a valid job (written
    /// by hand, say) is skipped with a warning rather than hiding the rest.
    pub async fn list(&self) -> Result<Vec<Job>, Error> {
        let resp = self
            .client
            .clone()
            .get(self.keys.jobs_dir(), Some(GetOptions::new().with_prefix()))
            .await?;
        // etcd returns keys in byte order, which is name order.
        let mut schedules = ScheduleCache::default();
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| match decode_cached(kv, &mut schedules) {
                Ok(job) => Some(job),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping invalid stored job");
                    None
                }
            })
            .collect())
    }

    /// Deletes a job; returns it, or `None` when it did not exist.
    pub async fn delete(&self, name: &JobName) -> Result<Option<Job>, Error> {
        Ok(self
            .delete_key(self.keys.job(name))
            .await?
            .and_then(decode_lenient))
    }

    /// Deletes `/cron/jobs/<name>` for any string, as the original did;
    /// returns the value it held, whether or not it reads as an rcron job.
    /// For the legacy delete: jobs stored by the original may have names
    /// rcron refuses.
    pub async fn delete_any_name(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.delete_key(self.keys.job_of_any_name(name)).await
    }

    async fn delete_key(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        let resp = self
            .client
            .clone()
            .delete(key, Some(DeleteOptions::new().with_prev_key()))
            .await?;
        Ok(resp.prev_kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Every value under `/cron/jobs/`, in key (= name) order, as stored:
    /// the legacy list shows documents the original wrote and rcron
    /// refuses (a name with a space, an expression it cannot parse).
    pub async fn list_stored(&self) -> Result<Vec<Vec<u8>>, Error> {
        let resp = self
            .client
            .clone()
            .get(self.keys.jobs_dir(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(resp.kvs().iter().map(|kv| kv.value().to_vec()).collect())
    }

    /// Asks every worker to kill the job's running run(s): a short-lived
    /// put under `/cron/killer/<name>`.
    pub async fn kill(&self, name: &JobName) -> Result<(), Error> {
        let mut client = self.client.clone();
        let lease = client.lease_grant(KILL_TTL_SECS, None).await?;
        client
            .put(
                self.keys.killer(name),
                "",
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await?;
        Ok(())
    }

    /// Asks the worker running run `run_id` to kill it: a short-lived put
    /// under `/cron/killrun/<runId>`.
    pub async fn kill_run(&self, run_id: &str) -> Result<(), Error> {
        let key = self
            .keys
            .killrun(run_id)
            .ok_or_else(|| Error::BadRequest(format!("{run_id:?} is not a run id")))?;
        let mut client = self.client.clone();
        let lease = client.lease_grant(KILL_TTL_SECS, None).await?;
        client
            .put(key, "", Some(PutOptions::new().with_lease(lease.id())))
            .await?;
        Ok(())
    }

    /// How many jobs exist (a count-only read).
    pub async fn count(&self) -> Result<u64, Error> {
        let resp = self
            .client
            .clone()
            .get(
                self.keys.jobs_dir(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?;
        Ok(resp.count().max(0) as u64)
    }

    /// Asks the workers to run the job once, now: a put under
    /// `/cron/run/<name>` that one worker claims (and deletes) in its lock
    /// transaction; unclaimed requests expire with their lease.
    pub async fn run_now(&self, name: &JobName) -> Result<(), Error> {
        let mut client = self.client.clone();
        let lease = client.lease_grant(RUN_REQUEST_TTL_SECS, None).await?;
        let requested = chrono::Utc::now().timestamp_millis().to_string();
        client
            .put(
                self.keys.run(name),
                requested,
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await?;
        Ok(())
    }

    /// Whether etcd answers (for `/readyz` and cluster status).
    pub async fn ping(&self) -> Result<(), Error> {
        self.client
            .clone()
            .get(
                self.keys.master_election(),
                Some(GetOptions::new().with_count_only()),
            )
            .await?;
        Ok(())
    }
}

fn decode(kv: &KeyValue) -> Result<Job, Error> {
    decode_cached(kv, &mut ScheduleCache::default())
}

fn decode_cached(kv: &KeyValue, schedules: &mut ScheduleCache) -> Result<Job, Error> {
    Job::from_stored_cached(kv.value(), schedules).map_err(|e| Error::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: e.to_string(),
    })
}

/// For values returned as "the previous job": an unreadable one is reported
/// as absent rather than failing a write that already happened.
fn decode_lenient(value: Vec<u8>) -> Option<Job> {
    Job::from_stored(&value)
        .map_err(|e| tracing::warn!(error = %e, "previous value is not a valid job"))
        .ok()
}

/// The job's JSON as stored: stamped with the time of this write, so that
/// workers and the leader owe no verdict for ticks before it.
fn stamped(job: &Job) -> String {
    job.stamped(chrono::Utc::now().timestamp_millis()).to_json()
}
