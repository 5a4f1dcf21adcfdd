//! The cluster's reference clock (ARCHITECTURE §4, "Clock"): while it
//! leads, a master writes its time to `/cron/clock` every second; workers
//! measure their own clocks against it and stop firing beyond their
//! `max_clock_skew_ms`.

use std::time::Duration;

use etcd_client::{Client, Txn, TxnOp};
use rcron_shared::Keys;

use crate::election::Leadership;

/// How often the beacon is written.
pub const EVERY: Duration = Duration::from_secs(1);

/// Writes the beacon until leadership ends (only while this master leads,
/// checked in the same transaction).
pub async fn run(client: Client, keys: Keys, master_id: String, leadership: Leadership) {
    let token = leadership.token().clone();
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = every.tick() => {}
        }
        if !leadership.is_valid() {
            continue;
        }
        let value = serde_json::json!({
            "masterId": master_id,
            "timeMs": chrono::Utc::now().timestamp_millis(),
        })
        .to_string();
        let txn = Txn::new()
            .when([leadership.still_leads()])
            .and_then([TxnOp::put(keys.clock(), value, None)]);
        if let Err(e) = client.clone().txn(txn).await {
            tracing::debug!(error = %e, "cannot write the clock beacon");
        }
    }
}
