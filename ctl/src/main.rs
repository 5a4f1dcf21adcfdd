//! The `rcronctl` binary: parses the command line and runs it (see the
//! library, `rcronctl::run`).

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = rcronctl::Cli::parse();
    if let Err(e) = rcronctl::run(cli).await {
        eprintln!("rcronctl: {e:#}");
        std::process::exit(1);
    }
}
