//! The worker registry: what live workers published under `/cron/workers/`
//! (ARCHITECTURE §2), read for the worker routes, placement and settling.

use etcd_client::{Client, GetOptions};
use rcron_shared::{Keys, WorkerInfo};

use crate::Error;

/// Reads the registry.
#[derive(Clone)]
pub struct WorkerRegistry {
    etcd: Client,
    keys: Keys,
}

impl WorkerRegistry {
    /// The registry under `keys`.
    pub fn new(etcd: Client, keys: Keys) -> Self {
        Self { etcd, keys }
    }

    /// Every registered worker, sorted by id (etcd lists keys in order).
    pub async fn list(&self) -> Result<Vec<WorkerInfo>, Error> {
        let resp = self
            .etcd
            .clone()
            .get(
                self.keys.workers_dir(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| match serde_json::from_slice::<WorkerInfo>(kv.value()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "skipping unreadable worker record");
                    None
                }
            })
            .collect())
    }
}
