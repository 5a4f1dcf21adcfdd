//! The worker registry: what live workers published under `/cron/workers/`
//! (ARCHITECTURE §2), read for the worker routes, placement and settling.

use etcd_client::{Client, GetOptions};
use rcron_shared::{Keys, WorkerInfo};

use crate::Error;

/// One key of the worker registry (`/cron/workers/<id>`).
#[derive(Debug, Clone)]
pub struct Registration {
    /// The key's last segment: an rcron worker's id, or the IP address an
    /// original worker registered.
    pub id: String,
    /// The rcron worker's record; `None` for an original worker (empty
    /// value) or a value that does not read as one.
    pub record: Option<WorkerInfo>,
}

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

    /// Every registered rcron worker, sorted by id (etcd lists keys in order).
    pub async fn list(&self) -> Result<Vec<WorkerInfo>, Error> {
        Ok(self
            .registrations()
            .await?
            .into_iter()
            .filter_map(|r| r.record)
            .collect())
    }

    /// Every key of the registry, sorted by id, with its record when it is
    /// an rcron worker's. The original's workers register their IP as the
    /// id with an empty value: they run nothing rcron schedules, but the
    /// legacy worker list shows them, as the original did.
    pub async fn registrations(&self) -> Result<Vec<Registration>, Error> {
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
            .filter_map(|kv| {
                let id = self.keys.parse_worker(kv.key())?;
                let record = if kv.value().is_empty() {
                    None
                } else {
                    serde_json::from_slice::<WorkerInfo>(kv.value())
                        .map_err(|e| tracing::warn!(worker = %id, error = %e, "unreadable worker record"))
                        .ok()
                };
                Some(Registration { id, record })
            })
            .collect())
    }
}
