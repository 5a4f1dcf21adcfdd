//! `rcronctl workers` and `rcronctl run kill`: who runs things, and
//! stopping one run.

use clap::Subcommand;
use rcron_shared::WorkerInfo;

use crate::client::Client;
use crate::output::{Printer, labels_or_dash, table, time};

#[derive(Subcommand)]
pub enum RunCommand {
    /// Kill one run (other runs of its job go on).
    Kill {
        /// The run's id.
        run_id: String,
    },
}

/// Runs `workers`.
pub async fn list(client: &Client, out: Printer) -> anyhow::Result<()> {
    let answer = client.workers().await?;
    out.answer(&answer, |list| {
        table(
            &[
                "ID", "IP", "HOST", "VERSION", "STARTED", "RUNNING", "STATE", "ZONE", "CLOCK",
                "LABELS",
            ],
            list.workers.iter().map(row).collect(),
        )
    });
    Ok(())
}

/// Runs `run …`.
pub async fn run(client: &Client, out: Printer, command: RunCommand) -> anyhow::Result<()> {
    match command {
        RunCommand::Kill { run_id } => {
            let answer = client.kill_run(&run_id).await?;
            out.answer(&answer, |k| {
                format!("kill sent to run {run_id} of {} on {}", k.job, k.worker)
            });
        }
    }
    Ok(())
}

fn row(w: &WorkerInfo) -> Vec<String> {
    vec![
        w.id.clone(),
        w.ip.clone(),
        w.hostname.clone(),
        w.version.clone(),
        time(w.start_time),
        format!("{}/{}", w.runs.len(), w.capacity),
        if w.draining { "draining" } else { "up" }.to_string(),
        w.timezone.clone(),
        clock_text(w),
        labels_or_dash(&w.labels),
    ]
}

/// A worker's clock offset from the leader's beacon (`+3013 ms`; `-` until
/// measured), then `SKEWED` when it is beyond the worker's
/// `max_clock_skew_ms` (it fires nothing).
fn clock_text(w: &WorkerInfo) -> String {
    let offset = w
        .clock_offset_ms
        .map_or_else(|| "-".to_string(), |ms| format!("{ms:+} ms"));
    if w.clock_skewed {
        format!("{offset} SKEWED")
    } else {
        offset
    }
}
