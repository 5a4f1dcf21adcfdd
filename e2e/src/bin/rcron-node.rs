//! `rcron-node master|worker [flags]`: exactly what `rcron-master` and
//! `rcron-worker` do (parse flags and `RCRON_*`, log, run until a signal),
//! built into this crate so the chaos suite starts real processes of the
//! current code, not a stale binary of another package.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    let role = args.next().unwrap_or_default();
    let rest = std::iter::once(format!("{program} {role}")).chain(args);
    let shutdown = CancellationToken::new();
    tokio::spawn(rcron_shared::telemetry::cancel_on_signal(shutdown.clone()));
    match role.as_str() {
        "master" => {
            let config = rcron_master::MasterArgs::parse_from(rest).load()?;
            rcron_shared::telemetry::init(config.log_format);
            rcron_master::run(config, shutdown).await?;
        }
        "worker" => {
            let config = rcron_worker::WorkerArgs::parse_from(rest).load()?;
            rcron_shared::telemetry::init(config.log_format);
            rcron_worker::run(config, shutdown).await?;
        }
        other => anyhow::bail!("usage: rcron-node master|worker [flags] (got {other:?})"),
    }
    Ok(())
}
