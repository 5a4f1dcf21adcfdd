use clap::Parser;
use rcron_worker::WorkerArgs;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerArgs::parse().load()?;
    rcron_shared::telemetry::init(config.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(rcron_shared::telemetry::cancel_on_signal(shutdown.clone()));
    rcron_worker::run(config, shutdown).await?;
    Ok(())
}
