//! How rcronctl prints: tables and sentences for people, or with `-o json`
//! the API's own document, one per command, exactly as the API sent it.
//! Warnings (never failures) go to stderr so stdout stays the answer.

use chrono::{DateTime, Local, Utc};
use clap::ValueEnum;
use rcron_shared::Labels;
use rcron_shared::placement::format_labels;
use serde_json::Value;

use crate::client::Answer;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables and sentences.
    Table,
    /// The API's JSON document.
    Json,
}

/// Prints answers in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    format: Format,
}

impl Printer {
    /// A printer of `format`.
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    /// Whether the API's JSON is printed.
    pub fn is_json(self) -> bool {
        self.format == Format::Json
    }

    /// The API's document with `-o json`, else what `human` makes of it.
    pub fn answer<T>(self, answer: &Answer<T>, human: impl FnOnce(&T) -> String) {
        if self.is_json() {
            self.document(&answer.document);
        } else {
            println!("{}", human(&answer.body));
        }
    }

    /// A JSON document, pretty.
    pub fn document(self, document: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(document).unwrap_or_default()
        );
    }
}

/// The API's `warnings` about a cron expression, on stderr: they never make
/// a command fail, and stdout stays the answer.
pub fn warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Rows under headers, each column as wide as its widest cell, two spaces
/// apart.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = vec![line(
        &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        &widths,
    )];
    out.extend(rows.iter().map(|r| line(r, &widths)));
    out.join("\n")
}

/// One table line: cells padded to `widths`, two spaces apart.
pub fn line(cells: &[String], widths: &[usize]) -> String {
    cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{c:<w$}"))
        .collect::<Vec<_>>()
        .join("  ")
        .trim_end()
        .to_string()
}

/// An optional value, `-` when absent.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Milliseconds since the epoch as local time.
pub fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// Labels written `role=db,zone=eu-1`, `-` when none.
pub fn labels_or_dash(labels: &Labels) -> String {
    match format_labels(labels) {
        l if l.is_empty() => "-".to_string(),
        l => l,
    }
}
