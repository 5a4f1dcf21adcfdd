//! Jobs, kill and run requests in etcd: the master's only writer of
//! `/cron/jobs/`, `/cron/killer/` and of the run requests it is asked for.

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
};
use rcron_shared::chain::{ChainGraph, Links};
use rcron_shared::{Job, JobName, Keys, RunRequest, ScheduleCache};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::Error;
use rcron_shared::listing::{Read, list_prefix};

/// How long a kill request stays in etcd. Workers react to the put event;
/// the lease only cleans the key up.
const KILL_TTL_SECS: i64 = 2;

/// Job CRUD and kill requests over one etcd client.
#[derive(Clone)]
pub struct JobStore {
    client: Client,
    keys: Keys,
    /// The etcd revision of the newest job write made through this store:
    /// reads from the job cache wait until it has applied it.
    written: Arc<AtomicI64>,
}

impl JobStore {
    /// A store using `client` and the key layout `keys`.
    pub fn new(client: Client, keys: Keys) -> Self {
        Self {
            client,
            keys,
            written: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The etcd revision of the newest job write made through this store
    /// (0 before the first).
    pub fn written(&self) -> i64 {
        self.written.load(Ordering::Acquire)
    }

    fn wrote(&self, header: Option<&etcd_client::ResponseHeader>) {
        if let Some(h) = header {
            self.written.fetch_max(h.revision(), Ordering::AcqRel);
        }
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
        self.refuse_cycles(job).await?;
        let resp = self
            .client
            .clone()
            .put(
                self.keys.job(&job.name),
                stamped(job),
                Some(PutOptions::new().with_prev_key()),
            )
            .await?;
        self.wrote(resp.header());
        Ok(resp.prev_key().map(|kv| kv.value().to_vec()))
    }

    /// Creates a job that must not exist yet.
    pub async fn create(&self, job: &Job) -> Result<(), Error> {
        self.refuse_cycles(job).await?;
        let key = self.keys.job(&job.name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, stamped(job), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            self.wrote(resp.header());
            Ok(())
        } else {
            Err(Error::Conflict(job.name.to_string()))
        }
    }

    /// Changes the fields of a job that `patch` names, as a JSON merge patch
    /// (RFC 7396: objects merge, `null` removes a field, so it takes its
    /// default; anything else replaces). The merged document must be a
    /// valid job with the same name; fields of the stored document this
    /// version does not know are kept. Written only if nobody wrote in
    /// between (retried), and only if something changed, stamped like every
    /// write. `None` when the job does not exist.
    pub async fn patch(
        &self,
        name: &JobName,
        patch: &Map<String, Value>,
    ) -> Result<Option<Patched>, Error> {
        let key = self.keys.job(name);
        for _ in 0..5 {
            let resp = self.client.clone().get(key.clone(), None).await?;
            let Some(kv) = resp.kvs().first() else {
                return Ok(None);
            };
            let before = decode(kv)?;
            let stored = match serde_json::from_slice(kv.value()) {
                Ok(Value::Object(stored)) => stored,
                _ => {
                    return Err(Error::Corrupt {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        reason: "not a JSON object".into(),
                    });
                }
            };
            let Some(document) = patched_document(&stored, patch, name)? else {
                return Ok(Some(Patched {
                    after: before.clone(),
                    before,
                    changed: false,
                }));
            };
            let after = Job::from_stored(&document).map_err(|e| Error::Corrupt {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                reason: e.to_string(),
            })?;
            self.refuse_cycles(&after).await?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(key.clone(), document, None)]);
            let resp = self.client.clone().txn(txn).await?;
            if resp.succeeded() {
                self.wrote(resp.header());
                return Ok(Some(Patched {
                    before,
                    after,
                    changed: true,
                }));
            }
        }
        Err(Error::Conflict(format!(
            "{name} (changed by others while being changed here; try again)"
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
        let listing = list_prefix(&self.client, &self.keys.jobs_dir(), Read::Values).await?;
        // etcd returns keys in byte order, which is name order.
        let mut schedules = ScheduleCache::default();
        Ok(listing
            .kvs
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
        self.wrote(resp.header());
        Ok(resp.prev_kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Every value under `/cron/jobs/`, in key (= name) order, as stored:
    /// the legacy list shows documents the original wrote and rcron
    /// refuses (a name with a space, an expression it cannot parse).
    pub async fn list_stored(&self) -> Result<Vec<Vec<u8>>, Error> {
        let listing = list_prefix(&self.client, &self.keys.jobs_dir(), Read::Values).await?;
        Ok(listing.kvs.iter().map(|kv| kv.value().to_vec()).collect())
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

    /// Asks the workers to run the job once: a durable request under
    /// `/cron/run/<name>/<id>` that one worker claims when the job's lock
    /// and a slot are free (ARCHITECTURE §4, "Run requests").
    pub async fn request_run(&self, request: &RunRequest) -> Result<(), Error> {
        let Some(key) = self.keys.run_request(&request.job, &request.id) else {
            return Err(Error::BadRequest(format!(
                "bad request id {:?}",
                request.id
            )));
        };
        self.client
            .clone()
            .put(key, request.to_json(), None)
            .await?;
        Ok(())
    }

    /// Refuses `job` if saving it would let a job start itself through
    /// its chains (`onSuccess`, `onFailure`), naming the path. Only a job
    /// that starts others can close a cycle.
    async fn refuse_cycles(&self, job: &Job) -> Result<(), Error> {
        if job.on_success.is_empty() && job.on_failure.is_empty() {
            return Ok(());
        }
        let stored = self.list_stored().await?;
        let links = stored.iter().filter_map(|v| Links::of_stored(v));
        match ChainGraph::with(links, job).cycle_through(&job.name) {
            Some(path) => Err(Error::BadRequest(format!(
                "`onSuccess`/`onFailure`: {} would start itself through its chain ({})",
                job.name,
                path.join(" → ")
            ))),
            None => Ok(()),
        }
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

/// What a patch did to a job.
#[derive(Debug)]
pub struct Patched {
    /// The job before.
    pub before: Job,
    /// The job after (the same when nothing changed).
    pub after: Job,
    /// Whether anything was written.
    pub changed: bool,
}

/// The document `patch` makes of `stored`, stamped, or `None` when it
/// changes nothing. Invalid results are refused as a save would refuse
/// them (every problem named); so is a new name, which would be another
/// job.
fn patched_document(
    stored: &Map<String, Value>,
    patch: &Map<String, Value>,
    name: &JobName,
) -> Result<Option<Vec<u8>>, Error> {
    let mut document = Value::Object(stored.clone());
    merge_patch(&mut document, &Value::Object(patch.clone()));
    let Value::Object(mut document) = document else {
        // Merging an object into an object gives an object.
        return Ok(None);
    };
    // Set by the master on every write, never by a client.
    match stored.get(UPDATED_AT) {
        Some(at) => document.insert(UPDATED_AT.into(), at.clone()),
        None => document.remove(UPDATED_AT),
    };
    if &document == stored {
        return Ok(None);
    }
    let job = Job::from_json(&serde_json::to_vec(&document).unwrap_or_default())?;
    if job.name != *name {
        return Err(Error::BadRequest(format!(
            "a job cannot be renamed: the body's name {:?} is not the path's {:?}",
            job.name.as_str(),
            name.as_str()
        )));
    }
    // The fields a save would store, as it stores them; the rest of the
    // merged document (fields this version does not know, fields given at
    // their default) stays as it is.
    let stamped = job.stamped(chrono::Utc::now().timestamp_millis());
    if let Ok(Value::Object(fields)) = serde_json::to_value(stamped) {
        document.extend(fields);
    }
    Ok(Some(serde_json::to_vec(&document).unwrap_or_default()))
}

/// The job field every write stamps.
const UPDATED_AT: &str = "updatedAt";

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes a
/// key, any other value replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The job's JSON as stored: stamped with the time of this write, so that
/// workers and the leader owe no verdict for ticks before it.
fn stamped(job: &Job) -> String {
    job.stamped(chrono::Utc::now().timestamp_millis()).to_json()
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn name() -> JobName {
        JobName::new("p").expect("name")
    }

    fn patched(stored: Value, patch: Value) -> Result<Option<Value>, Error> {
        patched_document(&object(stored), &object(patch), &name())
            .map(|d| d.map(|bytes| serde_json::from_slice(&bytes).expect("json")))
    }

    #[test]
    fn a_patch_merges_keeps_unknown_fields_and_restamps() {
        let stored = json!({"name": "p", "command": "a", "cronExpr": "@daily", "timezone": "UTC",
            "target": {"labels": {"role": "db"}}, "future": {"x": 1}, "updatedAt": 5});
        let doc = patched(
            stored,
            json!({"command": "b", "timezone": null, "target": {"labels": {"zone": "eu"}},
                   "updatedAt": 7}),
        )
        .expect("valid")
        .expect("changed");
        assert_eq!(doc["command"], "b");
        assert!(doc.get("timezone").is_none(), "{doc}");
        assert_eq!(doc["target"]["labels"], json!({"role": "db", "zone": "eu"}));
        assert_eq!(doc["future"], json!({"x": 1}));
        let at = doc["updatedAt"].as_i64().expect("stamped");
        assert!(at > 7, "stamped by the master, not the client: {doc}");
    }

    #[test]
    fn a_patch_that_changes_nothing_writes_nothing() {
        let stored = json!({"name": "p", "command": "a", "cronExpr": "@daily", "updatedAt": 5});
        assert!(
            patched(stored.clone(), json!({"command": "a", "updatedAt": 9}))
                .expect("valid")
                .is_none()
        );
        assert!(patched(stored, json!({})).expect("valid").is_none());
    }

    #[test]
    fn a_patch_is_refused_as_a_save_would_be_and_cannot_rename() {
        let stored = json!({"name": "p", "command": "a", "cronExpr": "@daily"});
        let err = patched(stored.clone(), json!({"cronExpr": "nope", "command": null}))
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("`cronExpr`") && err.contains("`command` is required"),
            "{err}"
        );
        let err = patched(stored, json!({"name": "q"}))
            .expect_err("renamed")
            .to_string();
        assert!(err.contains("cannot be renamed"), "{err}");
    }
}
