use clap::Parser;
use rcron_master::MasterArgs;
use tokio_util::sync::CancellationToken;

// glibc's malloc kept most of what bursts of API requests freed: with
// 100,000 jobs cached, 8 clients' job pages left the master at ~300 MiB
// and whole-list reads from etcd at ~590 MiB; jemalloc gives it back
// (~230 and 360–490 MiB, BENCHMARKS.md §11) and serves pages faster.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = MasterArgs::parse().load()?;
    rcron_shared::telemetry::init(config.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(rcron_shared::telemetry::cancel_on_signal(shutdown.clone()));
    rcron_master::run(config, shutdown).await?;
    Ok(())
}
