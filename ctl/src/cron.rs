//! `rcronctl preview`: the next fire times of a cron expression, asked of
//! the master (so they are the cluster's own reading of it).

use clap::Args;

use crate::client::Client;
use crate::client::types::PreviewRequest;
use crate::output::{Printer, warnings};

/// The arguments of `preview`.
#[derive(Args)]
pub struct PreviewArgs {
    /// The expression, e.g. "*/5 * * * * * *".
    expr: String,
    /// IANA time zone.
    #[arg(long)]
    timezone: Option<String>,
    /// How many fire times.
    #[arg(long, default_value_t = 5)]
    count: u32,
}

/// Runs `preview`.
pub async fn preview(client: &Client, out: Printer, args: PreviewArgs) -> anyhow::Result<()> {
    let answer = client
        .preview(&PreviewRequest {
            cron_expr: args.expr.clone(),
            timezone: args.timezone,
            count: args.count,
        })
        .await?;
    out.answer(&answer, |p| {
        format!("{} in {}:\n{}", args.expr, p.timezone, p.next.join("\n"))
    });
    warnings(&answer.body.warnings);
    Ok(())
}
