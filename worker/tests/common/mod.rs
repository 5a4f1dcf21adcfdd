//! Shared set-up of the worker's integration tests: a worker (in-process or
//! the real binary) against the real etcd and MongoDB-wire server started
//! by `deploy/test-env.sh`, each test under its own key prefix and database.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use rcron_testkit as kit;
use rcron_worker::WorkerConfig;
use rcron_worker::clock::{Clock, SystemClock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where one test's cluster lives.
#[derive(Clone)]
pub struct Env {
    pub etcd_endpoint: String,
    pub prefix: String,
    pub mongo_uri: String,
    pub db: String,
    pub spill_root: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        Self {
            etcd_endpoint: kit::etcd_endpoint(),
            prefix: kit::unique_prefix(),
            mongo_uri: kit::mongo_uri(),
            db: kit::unique_db(),
            spill_root: std::env::temp_dir()
                .join(format!("rcron-spill-{}", uuid::Uuid::now_v7().simple())),
        }
    }

    pub fn config(&self, worker_id: &str) -> WorkerConfig {
        let mut cfg = WorkerConfig {
            worker_id: worker_id.to_string(),
            ..WorkerConfig::default()
        };
        cfg.etcd.endpoints = vec![self.etcd_endpoint.clone()];
        cfg.etcd.prefix = self.prefix.clone();
        cfg.etcd.request_timeout_secs = 2;
        cfg.mongo.uri = self.mongo_uri.clone();
        cfg.mongo.db = self.db.clone();
        cfg.spill_dir = self.spill_root.join(worker_id);
        cfg.lease_ttl_secs = 3;
        cfg.kill_grace_secs = 1;
        cfg.drain_secs = 5;
        cfg.log_flush_interval_ms = 100;
        // Several workers share this host: only tests that read metrics serve them.
        cfg.http_listen = String::new();
        cfg
    }

    pub async fn etcd(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.etcd_endpoint.as_str()], None)
            .await
            .expect("etcd")
    }

    pub async fn put_job(&self, json: &str) {
        let v: serde_json::Value = serde_json::from_str(json).expect("job json");
        let name = v["name"].as_str().expect("name");
        self.etcd()
            .await
            .put(format!("{}jobs/{name}", self.prefix), json, None)
            .await
            .expect("put job");
    }

    pub async fn delete_job(&self, name: &str) {
        self.etcd()
            .await
            .delete(format!("{}jobs/{name}", self.prefix), None)
            .await
            .expect("delete job");
    }

    pub async fn get(&self, suffix: &str) -> Option<Vec<u8>> {
        let resp = self
            .etcd()
            .await
            .get(format!("{}{suffix}", self.prefix), None)
            .await
            .expect("get");
        resp.kvs().first().map(|kv| kv.value().to_vec())
    }

    pub async fn keys_under(&self, suffix: &str) -> Vec<String> {
        let resp = self
            .etcd()
            .await
            .get(
                format!("{}{suffix}", self.prefix),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .expect("get");
        resp.kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect()
    }

    /// Run records of `job` (commands that ran; not the verdicts on ticks
    /// that ran none), oldest plan time first.
    pub async fn logs(&self, job: &str) -> Vec<Document> {
        logs_at(&self.mongo_uri, &self.db, job).await
    }

    /// Verdict records of `job` (`skipped`, `missed`), oldest plan time first.
    pub async fn verdicts(&self, job: &str) -> Vec<Document> {
        records_at(&self.mongo_uri, &self.db, job)
            .await
            .into_iter()
            .filter(is_verdict)
            .collect()
    }
}

fn is_verdict(d: &Document) -> bool {
    matches!(d.get_str("status"), Ok("skipped" | "missed"))
}

/// Run records of `job` (no verdicts), oldest plan time first.
pub async fn logs_at(uri: &str, db: &str, job: &str) -> Vec<Document> {
    records_at(uri, db, job)
        .await
        .into_iter()
        .filter(|d| !is_verdict(d))
        .collect()
}

async fn records_at(uri: &str, db: &str, job: &str) -> Vec<Document> {
    let client = mongodb::Client::with_uri_str(uri).await.expect("mongo");
    let cursor = client
        .database(db)
        .collection::<Document>("log")
        .find(doc! {"jobName": job})
        .sort(doc! {"planTime": 1, "attempt": 1})
        .await
        .expect("find");
    cursor.try_collect().await.expect("collect")
}

/// A worker running in this process.
pub struct InProcess {
    pub token: CancellationToken,
    pub handle: JoinHandle<Result<(), rcron_worker::Error>>,
}

impl InProcess {
    pub fn start(cfg: WorkerConfig) -> Self {
        Self::start_with_clock(cfg, Arc::new(SystemClock::default()))
    }

    pub fn start_with_clock(cfg: WorkerConfig, clock: Arc<dyn Clock>) -> Self {
        let token = CancellationToken::new();
        let handle = tokio::spawn(rcron_worker::run_with_clock(cfg, clock, token.clone()));
        Self { token, handle }
    }

    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("worker stops within 30 s")
            .expect("worker task")
            .expect("worker ran without error");
    }
}

pub fn int(doc: &Document, field: &str) -> i64 {
    doc.get_i64(field)
        .or_else(|_| doc.get_i32(field).map(i64::from))
        .unwrap_or_else(|_| panic!("field {field} in {doc}"))
}

pub fn string(doc: &Document, field: &str) -> String {
    doc.get_str(field)
        .unwrap_or_else(|_| panic!("field {field} in {doc}"))
        .to_string()
}
