//! Firing lag and memory of one worker's real scheduler with N jobs due
//! every second and a launcher that only records when each run would be
//! spawned (no command, no etcd, no MongoDB: the scheduler alone).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rcron_shared::Job;
use rcron_worker::clock::SystemClock;
use rcron_worker::scheduler::{Launcher, Run, RunEvents, Scheduler};
use rcron_worker::watcher::SchedulerEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::procfs::{Cpu, cpu_secs, self_status_kib};

/// Lags in microseconds, bucketed by 10 µs up to 2 s (later ones count in
/// the last bucket; the maximum is kept apart), so memory use does not grow
/// with the number of ticks measured.
struct Histogram {
    buckets: Vec<u32>,
    max_us: u64,
    count: u64,
}

const BUCKET_US: u64 = 10;
const BUCKETS: usize = 200_000;

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            max_us: 0,
            count: 0,
        }
    }

    fn record(&mut self, us: u64) {
        let i = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.buckets[i] += 1;
        self.max_us = self.max_us.max(us);
        self.count += 1;
    }

    fn percentile(&self, p: f64) -> u64 {
        let target = ((self.count as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= target.max(1) {
                return (i as u64 + 1) * BUCKET_US;
            }
        }
        self.max_us
    }
}

struct LagRecorder {
    histogram: Histogram,
    measure_from: chrono::DateTime<Utc>,
    measure_until: chrono::DateTime<Utc>,
}

impl Launcher for LagRecorder {
    fn launch(&mut self, run: Run, events: &RunEvents) {
        // The raw clock: a calendar conversion per launch would weigh on
        // the figure being measured.
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let plan = run.tick.plan_time;
        if plan >= self.measure_from && plan < self.measure_until {
            let lag = (now_us - plan.timestamp_micros()).max(0) as u64;
            self.histogram.record(lag);
        }
        events.finished(run.id);
    }
}

/// Measures `n` jobs for `seconds`; one tab-separated line:
/// jobs ticks missed p50 p99 max (ms) cpu% rss peak (MiB).
pub(crate) async fn measure(n: usize, seconds: u64) -> String {
    let jobs: Vec<Job> = (0..n)
        .map(|i| {
            Job::from_json(
                format!(r#"{{"name":"bench-{i}","command":"true","cronExpr":"* * * * * * *"}}"#)
                    .as_bytes(),
            )
            .expect("valid benchmark job")
        })
        .collect();
    let start = Utc::now();
    let measure_from = start + chrono::Duration::seconds(2);
    let measure_until = measure_from + chrono::Duration::seconds(seconds as i64);
    let recorder = LagRecorder {
        histogram: Histogram::new(),
        measure_from,
        measure_until,
    };
    let scheduler = Scheduler::new(
        recorder,
        Arc::new(SystemClock::default()),
        chrono_tz::Tz::UTC,
        Duration::from_secs(5),
        Arc::new(rcron_worker::metrics::WorkerMetrics::default()),
    );
    let (tx, rx) = mpsc::channel(4);
    let token = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(rx, token.clone()));
    tx.send(SchedulerEvent::Snapshot(jobs))
        .await
        .expect("scheduler alive");
    let wait = (measure_from - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let cpu_before = cpu_secs("self", Cpu::Own);
    let wall_before = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu =
        (cpu_secs("self", Cpu::Own) - cpu_before) / wall_before.elapsed().as_secs_f64() * 100.0;
    let rss = self_status_kib("VmRSS:");
    let hwm = self_status_kib("VmHWM:");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    token.cancel();
    let (recorder, stats) = task.await.expect("scheduler task");
    let h = &recorder.histogram;
    format!(
        "{n}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{cpu:.1}\t{}\t{}",
        h.count,
        stats.missed,
        h.percentile(0.50) as f64 / 1000.0,
        h.percentile(0.99) as f64 / 1000.0,
        h.max_us as f64 / 1000.0,
        rss / 1024,
        hwm / 1024,
    )
}
