//! Prometheus text exposition for counters, gauges and histograms kept in
//! atomics. Each process owns its metric structs and passes them down
//! explicitly (no global registry); this module only knows how to count
//! and how to print.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket bounds (seconds) for latencies from a millisecond to seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A histogram of seconds with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram with `bounds` (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: std::time::Duration) {
        self.observe_n(d, 1);
    }

    /// Records `n` observations of the same value (a batch of ticks fired
    /// together) at the cost of one.
    pub fn observe_n(&self, d: std::time::Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(n, Ordering::Relaxed);
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        let nanos = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the histogram in the text format.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Appends one counter.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// Appends one gauge.
pub fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Appends a counter with one label, one line per labelled value.
pub fn labelled_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (v, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{v}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "lag_seconds", "Lag.");
        assert!(
            out.contains("lag_seconds_bucket{le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("lag_seconds_bucket{le=\"0.01\"} 3\n"), "{out}");
        assert!(out.contains("lag_seconds_bucket{le=\"0.1\"} 3\n"), "{out}");
        assert!(out.contains("lag_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("lag_seconds_count 4\n"), "{out}");
        assert!(out.contains("# TYPE lag_seconds histogram"), "{out}");
    }

    #[test]
    fn counters_and_labels_render() {
        let mut out = String::new();
        labelled_counter(
            &mut out,
            "runs_total",
            "Runs.",
            "status",
            &[("success", 2), ("failed", 1)],
        );
        assert!(out.contains("runs_total{status=\"failed\"} 1\n"), "{out}");
    }
}
