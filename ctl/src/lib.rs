//! `rcronctl`: the command-line client of rcron's REST API. `main.rs`
//! parses the command line and calls [`run`].
//!
//! [`client`] speaks the API with typed documents (the shared `Job`,
//! `LogRecord` and `WorkerInfo`, and the API's own in `client::types`);
//! one module per command group turns arguments into calls and answers
//! into text: [`jobs`], [`logs`] (and [`live`]: `logs --follow JOB`),
//! [`workers`] (and `run kill`), [`cluster`]
//! (and `audit`), [`cron`] (`preview`), [`apply`] (`apply`, `export`),
//! [`keys`] (no server). [`output`] prints tables for people or, with
//! `-o json`, the API's own document; errors are the API's messages, with
//! a non-zero exit code.

pub mod apply;
pub mod client;
pub mod cluster;
pub mod cron;
pub mod jobs;
pub mod keys;
pub mod live;
pub mod logs;
pub mod output;
pub mod workers;

use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::output::{Format, Printer};

/// The command line.
#[derive(Parser)]
#[command(
    name = "rcronctl",
    version,
    about = "Manage an rcron cluster through its REST API"
)]
pub struct Cli {
    /// Base URL of any master.
    #[arg(
        long,
        env = "RCRON_SERVER",
        default_value = "http://127.0.0.1:8070",
        global = true
    )]
    pub server: String,
    /// API token (sent as a bearer token).
    #[arg(long, env = "RCRON_API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format: tables, or the API's JSON document.
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand)]
pub enum Command {
    /// Jobs: list, get, save, delete, kill, run, pause, resume.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// Create, update (and with --prune delete) jobs to match job files.
    Apply(apply::ApplyArgs),
    /// Write every job to <DIR>/<name>.json, as `apply` reads them.
    Export(apply::ExportArgs),
    /// Runs of one job or of all jobs, newest first.
    Logs(logs::LogsArgs),
    /// Live workers.
    Workers,
    /// One run: kill it by id (ids are listed by `workers -o json` and in the log).
    #[command(subcommand)]
    Run(workers::RunCommand),
    /// Masters, leader, health, pending alerts.
    Cluster,
    /// Who changed what, newest first (the audit trail).
    Audit(cluster::AuditArgs),
    /// API keys: `key hash` prints the SHA-256 of a secret read from
    /// stdin, for the master's keys file (`RCRON_API_KEYS_FILE`).
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// The next fire times of a cron expression (and, on stderr, warnings:
    /// daylight-saving changes it runs into, seconds-first look-alikes).
    Preview(cron::PreviewArgs),
}

/// Runs one command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Printer::new(cli.output);
    let command = match cli.command {
        Command::Key(command) => return keys::run(command),
        command => command,
    };
    // reqwest is built without a crypto provider; use the project's one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(&cli.server, cli.token)?;
    match command {
        Command::Job(command) => jobs::run(&client, out, command).await,
        Command::Apply(args) => apply::apply(&client, out, args).await,
        Command::Export(args) => apply::export(&client, out, args).await,
        Command::Logs(args) => logs::run(&client, out, args).await,
        Command::Workers => workers::list(&client, out).await,
        Command::Run(command) => workers::run(&client, out, command).await,
        Command::Cluster => cluster::status(&client, out).await,
        Command::Audit(args) => cluster::audit(&client, out, args).await,
        Command::Preview(args) => cron::preview(&client, out, args).await,
        // Answered above, without a server.
        Command::Key(command) => keys::run(command),
    }
}
