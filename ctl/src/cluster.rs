//! `rcronctl cluster` and `rcronctl audit`: the masters and their health,
//! and who changed what.

use clap::Args;

use crate::client::Client;
use crate::client::types::{ClusterStatus, Health};
use crate::output::{Printer, or_dash, table, time};

/// The flags of `audit`.
#[derive(Args)]
pub struct AuditArgs {
    /// Only changes of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only changes by this key.
    #[arg(long)]
    key: Option<String>,
    /// How many changes.
    #[arg(long, default_value_t = 50)]
    limit: u64,
}

/// Runs `cluster`.
pub async fn status(client: &Client, out: Printer) -> anyhow::Result<()> {
    let answer = client.cluster().await?;
    out.answer(&answer, status_text);
    Ok(())
}

/// Runs `audit`.
pub async fn audit(client: &Client, out: Printer, args: AuditArgs) -> anyhow::Result<()> {
    let answer = client
        .audit(args.job.as_deref(), args.key.as_deref(), args.limit)
        .await?;
    out.answer(&answer, |page| {
        let rows = page
            .entries
            .iter()
            .map(|e| {
                vec![
                    time(e.time),
                    e.key.clone(),
                    e.action.clone(),
                    or_dash(e.job.as_deref()),
                    e.route.clone(),
                    e.remote.clone(),
                ]
            })
            .collect();
        table(&["TIME", "KEY", "ACTION", "JOB", "ROUTE", "FROM"], rows)
    });
    Ok(())
}

fn status_text(v: &ClusterStatus) -> String {
    let mut human = String::new();
    for m in &v.masters {
        let role = if m.leader { "leader" } else { "follower" };
        human.push_str(&format!("master {} ({role}) {}\n", m.id, m.url));
    }
    let health = |h: &Health| {
        if h.healthy {
            "ok".to_string()
        } else {
            format!("DOWN: {}", or_dash(h.error.as_deref()))
        }
    };
    human.push_str(&format!(
        "etcd: {}\nmongodb: {}\n",
        health(&v.etcd),
        health(&v.mongo)
    ));
    human.push_str(&format!(
        "workers: {}\npending alerts: {}\nzone: {}",
        v.workers, v.pending_alerts, v.timezone
    ));
    if let Some(mismatch) = &v.zone_mismatch {
        human.push_str(&format!("\nERROR: {mismatch}"));
    }
    human
}
