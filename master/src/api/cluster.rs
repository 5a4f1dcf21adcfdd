//! `/api/v1/cluster` and `/api/v1/alerts`: who leads, what is healthy, what
//! is waiting to be alerted.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use etcd_client::GetOptions;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use rcron_shared::Warning;

use crate::Error;
use crate::api::logs::StatusDto;
use crate::api::{ApiError, ApiTags, AppState};
use crate::election::MasterInfo;
use rcron_shared::listing::{Read, list_prefix};

/// REST operations on the cluster.
pub struct ClusterApi {
    state: Arc<AppState>,
}

impl ClusterApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// A master taking part in the election.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct MasterView {
    /// Unique master id.
    pub id: String,
    /// URL it serves at.
    pub url: String,
    /// Start time (ms since the epoch).
    pub start_time: i64,
    /// Whether it is the leader (the one sending alerts).
    pub leader: bool,
    /// Since when it leads (ms), for the leader.
    #[oai(skip_serializing_if_is_none)]
    pub leader_since: Option<i64>,
    /// The zone it shows jobs without `timezone` in (empty: an older master).
    pub timezone: String,
}

/// Whether a dependency answers.
#[derive(Debug, Object)]
pub struct Health {
    /// It answered.
    pub healthy: bool,
    /// Why not, when it did not.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

impl<T> From<Result<T, Error>> for Health {
    fn from(r: Result<T, Error>) -> Self {
        match r {
            Ok(_) => Self {
                healthy: true,
                error: None,
            },
            Err(e) => Self {
                healthy: false,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Alert sinks and counters of this master (counters since it started).
#[derive(Debug, Clone, Object)]
pub struct AlertCounters {
    /// The kinds of sink configured (`email`, `slack`, `webhook`); empty
    /// when none is: warnings then stay pending.
    pub sinks: Vec<String>,
    /// Deliveries accepted by a sink.
    pub sent: u64,
    /// Delivery attempts that failed (and were retried).
    pub failed: u64,
    /// Warnings dropped by storm control.
    pub suppressed: u64,
}

/// The state of the cluster as this master sees it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The master that answered.
    pub this_master: String,
    /// Every master in the election, the leader first.
    pub masters: Vec<MasterView>,
    /// The leader, if there is one.
    #[oai(skip_serializing_if_is_none)]
    pub leader: Option<String>,
    /// etcd health.
    pub etcd: Health,
    /// MongoDB health.
    pub mongo: Health,
    /// Live workers.
    pub workers: u64,
    /// Warnings waiting for delivery.
    pub pending_alerts: u64,
    /// This master's alert sinks and counters.
    pub alerts: AlertCounters,
    /// How often this master gained or lost leadership.
    pub leader_changes: u64,
    /// The zone this master uses for jobs without `timezone`.
    pub timezone: String,
    /// Set when masters and workers do not all use the same zone for jobs
    /// without `timezone` (they would fire and show such jobs at different
    /// instants): says which process uses which zone. Set the same
    /// `RCRON_TIMEZONE` / `timezone` everywhere.
    #[oai(skip_serializing_if_is_none)]
    pub zone_mismatch: Option<String>,
}

/// A warning waiting for the leader to deliver it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct PendingAlert {
    /// The job.
    pub job_name: String,
    /// The run.
    pub run_id: String,
    /// `failed` or `timeout`.
    pub status: StatusDto,
    /// Exit code, if any.
    #[oai(skip_serializing_if_is_none)]
    pub exit_code: Option<i32>,
    /// What went wrong.
    pub err: String,
    /// The worker that ran it.
    pub worker: String,
    /// The tick (ms).
    pub plan_time: i64,
    /// End of the run (ms).
    pub end_time: i64,
}

/// Pending warnings.
#[derive(Debug, Object)]
pub struct PendingAlerts {
    /// Oldest key first.
    pub alerts: Vec<PendingAlert>,
}

/// Says which process uses which zone when they are not all the same
/// (processes of older versions, which do not say, are left out).
fn zone_mismatch<'a>(processes: impl Iterator<Item = (String, &'a str)>) -> Option<String> {
    let mut by_zone: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (who, zone) in processes {
        if !zone.is_empty() {
            let names = by_zone.entry(zone).or_default();
            if !names.contains(&who) {
                names.push(who);
            }
        }
    }
    if by_zone.len() < 2 {
        return None;
    }
    let parts: Vec<String> = by_zone
        .iter()
        .map(|(zone, who)| format!("{zone}: {}", who.join(", ")))
        .collect();
    Some(format!(
        "the cluster zone differs between processes ({}); jobs without a timezone fire and show at different instants; set the same timezone on every master and worker",
        parts.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_names_each_zone_and_its_processes() {
        let same = [
            ("master m1".to_string(), "UTC"),
            ("worker w1".to_string(), "UTC"),
            ("worker old".to_string(), ""),
        ];
        assert_eq!(zone_mismatch(same.into_iter()), None);
        let mixed = [
            ("master m1".to_string(), "Asia/Tokyo"),
            ("master m1".to_string(), "Asia/Tokyo"),
            ("worker w1".to_string(), "UTC"),
        ];
        let msg = zone_mismatch(mixed.into_iter()).expect("a mismatch");
        assert!(
            msg.contains("Asia/Tokyo: master m1; UTC: worker w1"),
            "{msg}"
        );
    }
}

/// This master's alert sinks and counters.
pub fn alert_counters(state: &AppState) -> AlertCounters {
    let stats = &state.alert_stats;
    AlertCounters {
        sinks: state.alert_sinks.clone(),
        sent: stats.sent.load(Ordering::Relaxed),
        failed: stats.failed.load(Ordering::Relaxed),
        suppressed: stats.suppressed.load(Ordering::Relaxed),
    }
}

/// How many warnings wait for delivery (a count of keys, not a read).
pub async fn pending_count(state: &AppState) -> Result<u64, Error> {
    let resp = state
        .store
        .client()
        .get(
            state.store.keys().warn_dir(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    Ok(resp.count().max(0) as u64)
}

/// Every master in the election, the leader first.
pub async fn masters(state: &AppState) -> Result<Vec<MasterView>, Error> {
    ClusterApi::masters_of(state).await
}

impl ClusterApi {
    async fn masters(&self) -> Result<Vec<MasterView>, Error> {
        Self::masters_of(&self.state).await
    }

    async fn masters_of(state: &AppState) -> Result<Vec<MasterView>, Error> {
        let keys = state.store.keys();
        let resp = state
            .store
            .client()
            .get(
                format!("{}/", keys.master_election()),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut kvs: Vec<_> = resp.kvs().iter().collect();
        // etcd's election: the candidate with the oldest key leads.
        kvs.sort_by_key(|kv| kv.create_revision());
        Ok(kvs
            .iter()
            .enumerate()
            .filter_map(|(i, kv)| {
                let info: MasterInfo = serde_json::from_slice(kv.value()).ok()?;
                Some(MasterView {
                    id: info.id,
                    url: info.url,
                    start_time: info.start_time,
                    leader: i == 0,
                    leader_since: if i == 0 { info.leader_since } else { None },
                    timezone: info.timezone,
                })
            })
            .collect())
    }

    async fn pending(&self) -> Result<Vec<Warning>, Error> {
        let keys = self.state.store.keys();
        let listing =
            list_prefix(&self.state.store.client(), &keys.warn_dir(), Read::Values).await?;
        Ok(listing
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Warning>(kv.value()).ok())
            .collect())
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Cluster")]
impl ClusterApi {
    /// Cluster status
    ///
    /// Masters and the leader, etcd and MongoDB health, worker count,
    /// pending alerts. Answers even when etcd or MongoDB is down (with
    /// `healthy: false`).
    #[oai(path = "/cluster", method = "get", operation_id = "clusterStatus")]
    async fn cluster(&self) -> Json<ClusterStatus> {
        let masters = self.masters().await;
        let etcd = Health::from(self.state.store.ping().await);
        let mongo = Health::from(self.state.logs.ping().await.map_err(Error::from));
        let workers = self.state.workers.list().await.unwrap_or_default();
        let pending = self.pending().await.map(|p| p.len() as u64).unwrap_or(0);
        let masters = masters.unwrap_or_default();
        let own_zone = self.state.timezone.name().to_string();
        let zone_mismatch = zone_mismatch(
            std::iter::once((
                format!("master {}", self.state.master_id),
                own_zone.as_str(),
            ))
            .chain(
                masters
                    .iter()
                    .map(|m| (format!("master {}", m.id), m.timezone.as_str())),
            )
            .chain(
                workers
                    .iter()
                    .map(|w| (format!("worker {}", w.id), w.timezone.as_str())),
            ),
        );
        if let Some(mismatch) = &zone_mismatch {
            tracing::error!(mismatch, "processes of the cluster use different zones");
        }
        let workers = workers.len() as u64;
        Json(ClusterStatus {
            this_master: self.state.master_id.clone(),
            leader: masters.iter().find(|m| m.leader).map(|m| m.id.clone()),
            masters,
            etcd,
            mongo,
            workers,
            pending_alerts: pending,
            alerts: alert_counters(&self.state),
            leader_changes: self.state.leader.changes(),
            timezone: own_zone,
            zone_mismatch,
        })
    }

    /// Pending alerts
    ///
    /// Warnings reported by workers that the leader has not delivered yet.
    #[oai(path = "/alerts", method = "get", operation_id = "listPendingAlerts")]
    async fn alerts(&self) -> Result<Json<PendingAlerts>, ApiError> {
        let pending = self.pending().await?;
        Ok(Json(PendingAlerts {
            alerts: pending
                .into_iter()
                .map(|w| PendingAlert {
                    job_name: w.job_name.to_string(),
                    run_id: w.run_id,
                    status: w.status.into(),
                    exit_code: w.exit_code,
                    err: w.err,
                    worker: w.worker,
                    plan_time: w.plan_time,
                    end_time: w.end_time,
                })
                .collect(),
        }))
    }
}
