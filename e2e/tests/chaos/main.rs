//! The chaos suite: a cluster of real processes (masters and workers, a
//! real etcd — one member or three —, a real MongoDB-wire server, a real
//! webhook receiver) under faults. Each scenario asserts on what a user
//! sees — the run log in MongoDB and the alerts received — and writes its
//! figures to `target/chaos-report.md` (printed at the end of
//! `deploy/test.sh`).
//!
//! Scenarios run one at a time: each loads the two cores fully.

mod harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use harness::{
    Cluster, ELECTION_TTL_SECS, EVERY_WORKER_STEM, Overlaps, Services, Ticks, WORKER_LEASE_SECS,
    WorkerTuning, deliveries, every_second, int, names, now_ms,
};
use rcron_testkit::{self as kit, ServerProcess};
use serde_json::Value;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Appends a scenario's figures to the report (and to the test's output).
fn report(scenario: &str, lines: &[String]) {
    let mut text = format!("\n## {scenario}\n\n");
    for line in lines {
        text.push_str(&format!("- {line}\n"));
    }
    eprintln!("{text}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/chaos-report.md");
    let fresh = !path.exists();
    if let Ok(mut file) = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
    {
        use std::io::Write;
        if fresh {
            let _ = writeln!(
                file,
                "# Chaos suite figures\n\nWritten by `cargo test -p rcron-e2e --test chaos`; one section per scenario run."
            );
        }
        let _ = file.write_all(text.as_bytes());
    }
}

/// Sleeps until the start of the next whole second, and returns it (ms).
async fn next_second() -> i64 {
    let now = now_ms();
    let next = (now / 1000 + 1) * 1000;
    tokio::time::sleep(Duration::from_millis((next - now) as u64)).await;
    next
}

fn current_second() -> i64 {
    now_ms() / 1000 * 1000
}

/// A simple generator for picking victims; seeded from the clock and
/// printed, so a failing sequence can be told apart from another.
struct Picker(u64);

impl Picker {
    fn new() -> Self {
        Self(now_ms() as u64 | 1)
    }
    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every missed tick falls in one of `windows` (ms, inclusive).
fn assert_misses_within(ticks: &Ticks, windows: &[(i64, i64)], why: &str) {
    let unexplained: Vec<&(String, i64)> = ticks
        .missed
        .iter()
        .filter(|(_, plan)| !windows.iter().any(|(a, b)| (a..=b).contains(&plan)))
        .collect();
    assert!(
        unexplained.is_empty(),
        "ticks missed outside {why}: {} of them, first {:?} (windows {windows:?})",
        unexplained.len(),
        unexplained.iter().take(5).collect::<Vec<_>>()
    );
}

/// Waits until every failed run in `failed` got a webhook; returns the
/// deliveries by run id.
async fn all_delivered(
    cluster: &Cluster,
    failed: &BTreeSet<String>,
) -> std::collections::BTreeMap<String, usize> {
    let wait = kit::eventually(
        Duration::from_secs(90),
        "every warning delivered",
        || async {
            let got = deliveries(&cluster.hook);
            failed.iter().all(|r| got.contains_key(r)).then_some(got)
        },
    );
    match tokio::time::timeout(Duration::from_secs(95), wait).await {
        Ok(got) => got,
        Err(_) => panic!("warnings not delivered"),
    }
}

fn overlap_line(o: &Overlaps) -> String {
    format!(
        "forbid runs overlapping: {} in the log, {} on the host; targeted runs on a non-matching worker: {}; mode-all runs twice on one worker for one tick: {}",
        o.in_log,
        o.on_host,
        o.misplaced.wrong_worker.len(),
        o.misplaced.twice_on_one_worker
    )
}

/// The invariants every scenario checks: no two runs of a `forbid` job at
/// once, no targeted run on a worker without the labels, no `mode: all`
/// tick twice on one worker.
fn assert_no_overlap(o: &Overlaps) {
    assert_eq!(
        (o.in_log, o.on_host),
        (0, 0),
        "two runs of a forbid job overlapped (log, host)"
    );
    assert!(
        o.misplaced.wrong_worker.is_empty(),
        "targeted jobs ran on workers without their labels: {:?}",
        o.misplaced.wrong_worker
    );
    assert_eq!(
        o.misplaced.twice_on_one_worker, 0,
        "a mode-all tick ran twice on one worker"
    );
}

fn failed_runs(docs: &[mongodb::bson::Document]) -> BTreeSet<String> {
    docs.iter()
        // Runs that ended badly; verdicts alert once per settlement.
        .filter(|d| {
            d.get_str("status")
                .is_ok_and(|s| !matches!(s, "success" | "skipped" | "missed"))
        })
        .filter_map(|d| d.get_str("runId").ok().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilling_a_random_worker_every_few_seconds_runs_no_tick_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(Services::shared(), 3, 3).await;
    let jobs = c.guarded(&every_second("tick", 50, "true"));
    c.put_jobs(&jobs).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;
    let mut picker = Picker::new();
    let seed = picker.0;
    let mut kills = Vec::new();
    let chaos = Instant::now();
    while chaos.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let victim = picker.pick(c.workers.len());
        c.workers[victim].kill();
        kills.push((now_ms(), c.workers[victim].name.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.workers[victim].start();
    }
    let to = current_second();
    // Past the leader's settling delay before pausing: every tick of the
    // window has its verdict by then.
    tokio::time::sleep(Duration::from_secs(14)).await;
    c.pause(&jobs).await;
    let want = jobs.len() * ((to - from) / 1000) as usize;
    let docs = c.records_settled(from, to, want).await;
    let ticks = Ticks::count(&docs, &names(&jobs), from, to);
    let overlaps = c.overlaps(&docs);
    report(
        "SIGKILL a random worker every 5 s for 60 s (3 masters, 3 workers, 50 jobs every second)",
        &[
            format!("victim seed {seed}; kills: {}", kills.len()),
            format!(
                "ticks planned {}, run {}, duplicates {}, missed {}",
                ticks.expected,
                ticks.ran,
                ticks.duplicates,
                ticks.missed.len()
            ),
            format!("records by status: {:?}", ticks.statuses),
            overlap_line(&overlaps),
            ticks.accounting(),
        ],
    );
    assert_eq!(ticks.duplicates, 0, "a tick ran twice");
    assert_no_overlap(&overlaps);
    // A killed worker's locks outlive it by its session lease; in that
    // time (and the second around the kill) its jobs cannot run anywhere.
    let windows: Vec<(i64, i64)> = kills
        .iter()
        .map(|(at, _)| (at - 1000, at + (WORKER_LEASE_SECS as i64 + 2) * 1000))
        .collect();
    assert_misses_within(&ticks, &windows, "the lock-expiry window after a kill");
    if let Some((job, _)) = ticks.missed.first() {
        let history = c.marker_history(job).await;
        panic!(
            "ticks without a record (run, skipped or missed): {:?}\nthe fired marker of {job}:\n{}",
            ticks.missed,
            history.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_for_15_s_then_everything_resumes_with_nothing_lost() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut etcd = ServerProcess::etcd();
    let c = Cluster::start(
        Services {
            etcd: vec![etcd.addr()],
            mongo_uri: kit::mongo_uri(),
        },
        3,
        3,
    )
    .await;
    let beats = every_second("beat", 10, "true");
    let fails = every_second("fail", 2, "echo broken; exit 3");
    let all = c.guarded(&beats.iter().chain(&fails).cloned().collect::<Vec<_>>());
    c.put_jobs(&all).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;
    // Due once, 12 s from now: in the middle of the outage below.
    let once_at = from + 12_000;
    let once_plan = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(once_at).expect("time");
    let catch_up = serde_json::json!({
        "name": "catch-up", "command": "true",
        "cronExpr": once_plan.format("%-S %-M %-H %-d %-m * %Y").to_string(),
        "misfire": "runOnce", "startingDeadlineSecs": 120,
    });
    c.put_jobs(std::slice::from_ref(&catch_up)).await;
    tokio::time::sleep(Duration::from_millis((from + 5000 - now_ms()).max(0) as u64)).await;

    etcd.stop();
    let down = now_ms();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut answers = Vec::new();
    for url in &c.master_urls {
        let asked = Instant::now();
        let resp = c
            .http
            .get(format!("{url}/api/v1/jobs"))
            .send()
            .await
            .expect("the master answers while etcd is down");
        answers.push((resp.status().as_u16(), asked.elapsed()));
    }
    tokio::time::sleep(Duration::from_millis(
        (down + 15_000 - now_ms()).max(0) as u64
    ))
    .await;
    etcd.start();
    let up = now_ms();
    // Schedules resume by themselves: every beat job runs again.
    let resumed = kit::eventually(
        Duration::from_secs(60),
        "every job to run again after etcd returned",
        || async {
            let docs = c.records(up, up + 120_000).await;
            let ran: BTreeSet<&str> = docs
                .iter()
                .filter_map(|d| d.get_str("jobName").ok())
                .collect();
            all.iter()
                .all(|j| ran.contains(j["name"].as_str().unwrap_or_default()))
                .then(now_ms)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let to = current_second();
    c.pause(&all).await;
    let listed = kit::eventually(Duration::from_secs(10), "the job list", || async {
        let resp = c
            .http
            .get(format!("{}/api/v1/jobs", c.api()))
            .send()
            .await
            .ok()?;
        resp.status().is_success().then_some(())?;
        resp.json::<Value>().await.ok()
    })
    .await;
    let docs = c
        .records_settled(from, to, all.len() * ((to - from) / 1000) as usize)
        .await;
    let ticks = Ticks::count(&docs, &names(&all), from, to);
    let overlaps = c.overlaps(&docs);
    let failed = failed_runs(&docs);
    let delivered = all_delivered(&c, &failed).await;
    let duplicate_alerts: usize = delivered.values().map(|n| n - 1).sum();
    report(
        "etcd stopped for 15 s and restarted (3 masters, 3 workers, 12 jobs every second, 2 of them failing)",
        &[
            format!(
                "API during the outage (status, time): {:?}",
                answers
                    .iter()
                    .map(|(s, t)| format!("{s} in {} ms", t.as_millis()))
                    .collect::<Vec<_>>()
            ),
            format!(
                "every job running again {:.1} s after etcd returned",
                (resumed - up) as f64 / 1000.0
            ),
            format!(
                "ticks planned {}, run {}, duplicates {}, missed {} (all during the outage)",
                ticks.expected,
                ticks.ran,
                ticks.duplicates,
                ticks.missed.len()
            ),
            format!(
                "failed runs {}, alerted {}, lost 0, delivered twice {duplicate_alerts}",
                failed.len(),
                failed.iter().filter(|r| delivered.contains_key(*r)).count()
            ),
            overlap_line(&overlaps),
            ticks.accounting(),
        ],
    );
    assert_no_overlap(&overlaps);
    for (status, took) in &answers {
        assert_eq!(*status, 503, "the API says etcd is unavailable");
        assert!(
            *took < Duration::from_secs(10),
            "answered, not hung: {took:?}"
        );
    }
    let jobs_listed = listed["jobs"].as_array().map_or(0, Vec::len);
    // The scenario's jobs and the placement probes.
    assert_eq!(
        jobs_listed,
        all.len() + c.probes().len() + 1,
        "no job lost: {listed}"
    );
    assert_eq!(ticks.duplicates, 0);
    assert_misses_within(&ticks, &[(down - 1000, resumed)], "the outage");
    let caught: Vec<&mongodb::bson::Document> = docs
        .iter()
        .filter(|d| d.get_str("jobName") == Ok("catch-up"))
        .collect();
    eprintln!(
        "runOnce tick due during the outage: {:?}",
        caught
            .iter()
            .map(|d| (
                d.get_str("status").unwrap_or_default(),
                int(d, "planTime") - once_at,
                int(d, "startTime") - up
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(caught.len(), 1, "the runOnce tick has one record");
    assert_eq!(caught[0].get_str("status"), Ok("success"), "and it ran");
    assert_eq!(int(caught[0], "planTime"), once_at);
    assert!(
        int(caught[0], "startTime") >= up,
        "late, once etcd was back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_down_for_30_s_loses_no_run_record() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut mongo = ServerProcess::mongo();
    let c = Cluster::start(
        Services {
            etcd: vec![kit::etcd_endpoint()],
            mongo_uri: format!("mongodb://{}", mongo.addr()),
        },
        3,
        3,
    )
    .await;
    let jobs = c.guarded(&every_second("rec", 20, "echo kept"));
    c.put_jobs(&jobs).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    mongo.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    let resp = c
        .http
        .get(format!("{}/api/v1/logs?job=rec-0", c.api()))
        .send()
        .await
        .expect("the master answers while MongoDB is down");
    let (status, took) = (resp.status().as_u16(), asked.elapsed());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    tokio::time::sleep(Duration::from_secs(28)).await;
    mongo.start();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let to = current_second();
    c.pause(&jobs).await;
    let want = jobs.len() * ((to - from) / 1000) as usize;
    let docs = c.records_settled(from, to, want).await;
    let ticks = Ticks::count(&docs, &names(&jobs), from, to);
    let overlaps = c.overlaps(&docs);
    report(
        "MongoDB-wire server stopped for 30 s (3 masters, 3 workers, 20 jobs every second)",
        &[
            format!(
                "log query during the outage: {status} in {} ms",
                took.as_millis()
            ),
            format!(
                "ticks planned {}, recorded {}, duplicates {}, lost {}",
                ticks.expected,
                ticks.ran,
                ticks.duplicates,
                ticks.missed.len()
            ),
            overlap_line(&overlaps),
            ticks.accounting(),
        ],
    );
    assert_no_overlap(&overlaps);
    assert_eq!(status, 503, "log queries fail cleanly: {body}");
    assert!(body["error"].is_string(), "with a message: {body}");
    assert!(
        took < Duration::from_secs(10),
        "answered, not hung: {took:?}"
    );
    assert_eq!(ticks.duplicates, 0);
    assert!(
        ticks.missed.is_empty(),
        "run records lost: {} (first {:?})",
        ticks.missed.len(),
        ticks.missed.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilling_the_leader_master_in_a_loop_loses_no_alert() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(Services::shared(), 3, 2).await;
    let jobs = c.guarded(&every_second("boom", 4, "echo boom; exit 1"));
    c.put_jobs(&jobs).await;
    let from = next_second().await;
    let mut failovers = 0;
    let chaos = Instant::now();
    while chaos.elapsed() < Duration::from_secs(30) {
        let leader = c.leader().await;
        c.masters[leader].kill();
        failovers += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.masters[leader].start();
        tokio::time::sleep(Duration::from_secs(ELECTION_TTL_SECS + 1)).await;
    }
    let to = current_second();
    c.pause(&jobs).await;
    let docs = c
        .records_settled(from, to, jobs.len() * ((to - from) / 1000) as usize)
        .await;
    let failed = failed_runs(&docs);
    let overlaps = c.overlaps(&docs);
    let delivered = all_delivered(&c, &failed).await;
    let duplicate_alerts: usize = delivered.values().map(|n| n - 1).sum();
    report(
        "leader master SIGKILLed every ~4 s for 30 s (3 masters, 2 workers, 4 failing jobs every second)",
        &[
            format!("leader kills: {failovers}"),
            format!(
                "failed runs {}, alerted {}, lost 0, delivered twice {duplicate_alerts} (same idempotency key)",
                failed.len(),
                failed.iter().filter(|r| delivered.contains_key(*r)).count()
            ),
            overlap_line(&overlaps),
        ],
    );
    assert_no_overlap(&overlaps);
    assert!(
        failed.len() >= 100,
        "warnings arrived throughout: {}",
        failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_mid_run_has_its_run_killed_and_logged() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(Services::shared(), 1, 2).await;
    let pidfile = c.dir.join("long.pid");
    let job = serde_json::json!({
        "name": "long",
        "command": format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
        "cronExpr": "*/2 * * * * * *",
    });
    c.put_jobs(std::slice::from_ref(&job)).await;
    let pid: i32 = kit::eventually(Duration::from_secs(15), "the run to start", || async {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    })
    .await;
    c.pause(std::slice::from_ref(&job)).await;
    let mut etcd = etcd_client::Client::connect([kit::etcd_endpoint()], None)
        .await
        .expect("etcd");
    let holder = etcd
        .get(format!("{}lock/long", c.prefix), None)
        .await
        .expect("read the lock");
    let holder: Value = holder
        .kvs()
        .first()
        .and_then(|kv| serde_json::from_slice(kv.value()).ok())
        .expect("a lock holder");
    let victim = c
        .workers
        .iter()
        .position(|w| holder["worker"] == w.name.as_str())
        .expect("the holder is one of ours");
    c.workers[victim].kill();
    let orphaned = std::path::Path::new(&format!("/proc/{pid}")).exists();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = Instant::now();
    c.workers[victim].start();
    let of_long = |docs: Vec<mongodb::bson::Document>| -> Vec<mongodb::bson::Document> {
        docs.into_iter()
            .filter(|d| d.get_str("jobName") == Ok("long"))
            .collect()
    };
    let doc = kit::eventually(Duration::from_secs(30), "the run in the log", || async {
        of_long(c.records(0, i64::MAX).await).into_iter().next()
    })
    .await;
    let logged_after = restarted.elapsed();
    let gone = kit::eventually(Duration::from_secs(10), "the command to end", || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = stat
            .rsplit_once(')')
            .is_some_and(|(_, s)| !s.trim_start().starts_with('Z'));
        (!alive).then_some(())
    })
    .await;
    let run_id = doc.get_str("runId").expect("runId").to_string();
    let failed = BTreeSet::from([run_id.clone()]);
    all_delivered(&c, &failed).await;
    let records = of_long(c.records(0, i64::MAX).await);
    report(
        "a worker SIGKILLed during a run and started again (1 master, 2 workers)",
        &[
            format!("command left running by the dead worker: {orphaned}"),
            format!(
                "run logged {:.1} s after the restart as `{}`: {}",
                logged_after.as_secs_f64(),
                doc.get_str("status").unwrap_or_default(),
                doc.get_str("err").unwrap_or_default()
            ),
            format!(
                "records of the run: {}, alert delivered: yes",
                records.len()
            ),
        ],
    );
    let () = gone;
    assert!(
        orphaned,
        "the command outlived its worker (own process group)"
    );
    assert_eq!(records.len(), 1, "one record for the one run");
    assert_eq!(doc.get_str("status"), Ok("interrupted"));
    assert!(
        doc.get_str("err")
            .unwrap_or_default()
            .contains("interrupted")
    );
}

/// Index of the member etcd's members agree is the leader.
async fn etcd_leader(members: &[ServerProcess]) -> usize {
    kit::eventually(Duration::from_secs(30), "an etcd leader", || async {
        let mut leader_id = None;
        let mut ids = Vec::new();
        for m in members {
            if !m.is_running() {
                ids.push(None);
                continue;
            }
            let mut client = etcd_client::Client::connect([m.addr()], None).await.ok()?;
            let status = client.status().await.ok()?;
            leader_id = Some(status.leader());
            ids.push(status.header().map(|h| h.member_id()));
        }
        let leader_id = leader_id?;
        ids.iter().position(|id| *id == Some(leader_id))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilling_the_etcd_leader_member_runs_no_tick_twice_and_keeps_one_alerting_leader() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut members = ServerProcess::etcd_cluster(3);
    let c = Cluster::start(
        Services {
            etcd: members.iter().map(ServerProcess::addr).collect(),
            mongo_uri: kit::mongo_uri(),
        },
        3,
        3,
    )
    .await;
    let beats = every_second("quorum", 20, "true");
    let fails = every_second("alarm", 2, "exit 2");
    let all = c.guarded(&beats.iter().chain(&fails).cloned().collect::<Vec<_>>());
    c.put_jobs(&all).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;
    let mut kills = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let leader = etcd_leader(&members).await;
        members[leader].stop();
        kills.push(now_ms());
        tokio::time::sleep(Duration::from_secs(8)).await;
        members[leader].start();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let to = current_second();
    c.pause(&all).await;
    let docs = c
        .records_settled(from, to, all.len() * ((to - from) / 1000) as usize)
        .await;
    let ticks = Ticks::count(&docs, &names(&all), from, to);
    let overlaps = c.overlaps(&docs);
    let failed = failed_runs(&docs);
    let delivered = all_delivered(&c, &failed).await;
    let duplicate_alerts: usize = delivered.values().map(|n| n - 1).sum();
    report(
        "etcd leader member SIGKILLed twice in a 3-member cluster (3 masters, 3 workers, 22 jobs every second)",
        &[
            format!("etcd leader kills: {}", kills.len()),
            format!(
                "ticks planned {}, run {}, duplicates {}, missed {}",
                ticks.expected,
                ticks.ran,
                ticks.duplicates,
                ticks.missed.len()
            ),
            format!(
                "failed runs {}, alerted {}, delivered twice {duplicate_alerts}",
                failed.len(),
                failed.iter().filter(|r| delivered.contains_key(*r)).count()
            ),
            overlap_line(&overlaps),
            ticks.accounting(),
        ],
    );
    assert_no_overlap(&overlaps);
    assert_eq!(ticks.duplicates, 0, "a tick ran twice");
    assert_eq!(
        duplicate_alerts, 0,
        "an alert was sent twice: two masters acted as leader"
    );
    // A new etcd leader is elected within a few seconds; leases are
    // renewed (extended, even) across the change.
    let windows: Vec<(i64, i64)> = kills.iter().map(|at| (at - 1000, at + 10_000)).collect();
    assert_misses_within(&ticks, &windows, "the etcd leader election after a kill");
}

/// The same jobs on another schedule.
fn on_schedule(jobs: &[Value], cron: &str) -> Vec<Value> {
    jobs.iter()
        .map(|j| {
            let mut j = j.clone();
            j["cronExpr"] = Value::String(cron.to_string());
            j
        })
        .collect()
}

/// Records beyond the first for one (job, planTime).
fn duplicates(docs: &[mongodb::bson::Document]) -> usize {
    let mut seen = BTreeSet::new();
    docs.iter()
        .filter(|d| {
            let job = d.get_str("jobName").unwrap_or_default().to_string();
            // A job on every worker runs each tick once per worker.
            let worker = if job.starts_with(EVERY_WORKER_STEM) {
                d.get_str("worker").unwrap_or_default().to_string()
            } else {
                String::new()
            };
            !seen.insert((job, int(d, "planTime"), int(d, "attempt"), worker))
        })
        .count()
}

fn statuses(docs: &[mongodb::bson::Document]) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for d in docs {
        let status = d.get_str("status").unwrap_or_default();
        let reason = d
            .get_str("reason")
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        *by.entry(format!("{status}{reason}")).or_default() += 1;
    }
    by
}

/// (worker, job) of every run the live workers list now.
async fn listed_runs(c: &Cluster) -> Vec<(String, String)> {
    let Ok(resp) = c
        .http
        .get(format!("{}/api/v1/workers", c.api()))
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let mut runs = Vec::new();
    for w in v["workers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        for r in w["runs"].as_array().map(Vec::as_slice).unwrap_or_default() {
            runs.push((
                w["id"].as_str().unwrap_or_default().to_string(),
                r["job"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    runs
}

/// Waits until the log stops growing, then reads the window.
async fn settled(c: &Cluster, from: i64, to: i64) -> Vec<mongodb::bson::Document> {
    c.records_settled(from, to, usize::MAX).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_worker_never_overlaps_long_forbid_runs() {
    let _one = ONE_AT_A_TIME.lock().await;
    // A private etcd: its write counters are this cluster's alone.
    let etcd = ServerProcess::etcd();
    let mut c = Cluster::start_with(
        Services {
            etcd: vec![etcd.addr()],
            mongo_uri: kit::mongo_uri(),
        },
        1,
        3,
        WorkerTuning {
            drain_secs: 30,
            ..WorkerTuning::default()
        },
    )
    .await;
    // Each run takes 3 s and the job is due every 2 s: every tick finds
    // the previous run going, on whichever worker.
    let jobs = c.guarded(&on_schedule(
        &every_second("slow", 6, "sleep 3"),
        "*/2 * * * * * *",
    ));
    c.put_jobs(&jobs).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let from = now_ms();
    let metric = "etcd_server_proposals_committed_total";
    let base_at = Instant::now();
    let base_before = kit::etcd_metric(&etcd.addr(), metric).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let baseline = (kit::etcd_metric(&etcd.addr(), metric).await - base_before)
        / base_at.elapsed().as_secs_f64();
    let mut drains = Vec::new();
    for i in 0..c.workers.len() {
        // Stop it while it runs something (a drain with nothing to wait for
        // proves nothing); the fastest worker tends to win most ticks.
        let name = c.workers[i].name.clone();
        let busy = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if listed_runs(&c).await.iter().any(|(w, _)| *w == name) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .is_ok();
        let before = kit::etcd_metric(&etcd.addr(), metric).await;
        let took = c.workers[i].terminate();
        let writes = kit::etcd_metric(&etcd.addr(), metric).await - before;
        drains.push((
            format!("{name}{}", if busy { "" } else { " (idle)" }),
            took,
            writes,
        ));
        c.workers[i].start();
        c.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let to = now_ms();
    c.pause(&jobs).await;
    let docs = settled(&c, from, to).await;
    let overlaps = c.overlaps(&docs);
    let dups = duplicates(&docs);
    let by_status = statuses(&docs);
    let rates: Vec<f64> = drains
        .iter()
        .map(|(_, took, writes)| writes / took.as_secs_f64().max(1.0))
        .collect();
    report(
        "rolling restart: SIGTERM each of 3 workers in turn (drain 30 s) while 6 forbid jobs that run 3 s are due every 2 s",
        &[
            format!(
                "drains: {}",
                drains
                    .iter()
                    .zip(&rates)
                    .map(|((w, took, writes), rate)| format!(
                        "{w} {:.1} s, {writes} etcd proposals ({rate:.1}/s)",
                        took.as_secs_f64()
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!("etcd proposals/s of the whole cluster outside drains: {baseline:.1}"),
            format!(
                "runs {}, by status {by_status:?}, duplicates {dups}",
                docs.len()
            ),
            overlap_line(&overlaps),
        ],
    );
    assert_no_overlap(&overlaps);
    assert_eq!(dups, 0, "a tick ran twice");
    assert!(
        docs.iter()
            .filter(|d| !matches!(d.get_str("status"), Ok("skipped" | "missed")))
            .all(|d| d.get_str("status") == Ok("success")),
        "every drain let its runs finish: {by_status:?}"
    );
    for (w, took, writes) in &drains {
        // The whole cluster's writes during a drain stay near its usual
        // rate plus a few (a drain that re-registered in a loop wrote
        // ~1,800 a second).
        let usual = baseline * took.as_secs_f64();
        assert!(
            *writes <= usual * 2.0 + 20.0,
            "etcd written {writes} times in the {took:?} {w} drained (usually {baseline:.1}/s)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stalled_for_5_8_and_12_s_never_overlaps_and_runs_no_tick_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let etcd = ServerProcess::etcd();
    let c = Cluster::start_with(
        Services {
            etcd: vec![etcd.addr()],
            mongo_uri: kit::mongo_uri(),
        },
        1,
        3,
        // The production lease: a stall shorter than most of it costs nothing.
        WorkerTuning {
            lease_secs: 10,
            ..WorkerTuning::default()
        },
    )
    .await;
    let pulse = c.guarded(&every_second("pulse", 10, "true"));
    c.put_jobs(&pulse).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let from = next_second().await;
    let mut stalls = Vec::new();
    let mut held_all = Vec::new();
    for secs in [5u64, 8, 12] {
        // A forbid job whose run spans the stall, started just before it
        // and over before the next stall.
        let name = format!("held-{secs}s");
        let held = c.guarded(&[serde_json::json!({
            "name": name, "command": format!("sleep {}", secs + 4), "cronExpr": "* * * * * * *",
        })]);
        c.put_jobs(&held).await;
        kit::eventually(Duration::from_secs(15), "the held run to start", || async {
            listed_runs(&c)
                .await
                .iter()
                .any(|(_, j)| *j == name)
                .then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        etcd.pause();
        let at = now_ms();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        etcd.resume();
        stalls.push((secs, at, now_ms()));
        c.pause(&held).await;
        held_all.extend(held);
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    // The last held run has ended (or was stopped) by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let to = current_second();
    // Past the leader's settling delay before pausing: every tick of the
    // window has its verdict by then.
    tokio::time::sleep(Duration::from_secs(14)).await;
    c.pause(&pulse).await;
    let docs = settled(&c, from, to).await;
    let overlaps = c.overlaps(&docs);
    let pulse_docs: Vec<_> = docs
        .iter()
        .filter(|d| d.get_str("jobName").is_ok_and(|j| j.starts_with("pulse")))
        .cloned()
        .collect();
    let ticks = Ticks::count(&pulse_docs, &names(&pulse), from, to);
    // The first run of each held job: the one that spanned its stall.
    let held_outcome = |secs: u64| {
        let name = format!("held-{secs}s");
        docs.iter()
            .filter(|d| d.get_str("jobName") == Ok(name.as_str()))
            .min_by_key(|d| int(d, "startTime"))
            .map(|d| {
                let status = d.get_str("status").unwrap_or_default().to_string();
                match d.get_str("reason") {
                    Ok(reason) => format!("{status} ({reason})"),
                    Err(_) => status,
                }
            })
            .unwrap_or_else(|| "no record".to_string())
    };
    let missed_in = |a: i64, b: i64| {
        ticks
            .missed
            .iter()
            .filter(|(_, p)| (a - 1000..=b + 2000).contains(p))
            .count()
    };
    report(
        "etcd frozen (SIGSTOP) for 5, 8 and 12 s (1 master, 3 workers, lease 10 s; a forbid job running across each stall, 10 jobs every second)",
        &[
            format!(
                "per stall (s: the run spanning it, every-second ticks missed): {}",
                stalls
                    .iter()
                    .map(|(s, a, b)| format!("{s}: {}, {}", held_outcome(*s), missed_in(*a, *b)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!(
                "every-second ticks planned {}, run {}, duplicates {}, missed {}",
                ticks.expected,
                ticks.ran,
                ticks.duplicates,
                ticks.missed.len()
            ),
            format!("records by status: {:?}", statuses(&docs)),
            overlap_line(&overlaps),
            ticks.accounting(),
        ],
    );
    assert_eq!(
        held_outcome(5),
        "success",
        "a stall shorter than most of the lease costs the run nothing"
    );
    assert_eq!(
        held_outcome(12),
        "killed (lock lost)",
        "a stall past the lease stops the run before its lock could expire"
    );
    assert_no_overlap(&overlaps);
    assert_eq!(ticks.duplicates, 0, "a tick ran twice");
    assert_eq!(duplicates(&docs), 0, "a tick ran twice");
    // Ticks can only be missed while etcd is frozen (and the second after).
    let windows: Vec<(i64, i64)> = stalls
        .iter()
        .map(|(_, a, b)| (a - 1000, b + 2000))
        .collect();
    assert_misses_within(&ticks, &windows, "the stalls");
    if let Some((job, _)) = ticks.missed.first() {
        let history = c.marker_history(job).await;
        panic!(
            "ticks without a record (run, skipped or missed): {:?}\nthe fired marker of {job}:\n{}",
            ticks.missed,
            history.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_with_more_due_jobs_than_slots_starves_none() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start_with(
        Services::shared(),
        1,
        1,
        WorkerTuning {
            max_concurrency: 2,
            ..WorkerTuning::default()
        },
    )
    .await;
    // 6 jobs due every second, each run 0.5 s, 2 slots: about 4 runs a
    // second fit, 6 are due.
    let jobs = c.guarded(&every_second("crowd", 6, "sleep 0.5"));
    c.put_jobs(&jobs).await;
    let from = next_second().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let to = current_second();
    c.pause(&jobs).await;
    let docs = settled(&c, from, to).await;
    let overlaps = c.overlaps(&docs);
    let ticks = Ticks::count(&docs, &names(&jobs), from, to);
    let per_job: Vec<usize> = names(&jobs)
        .iter()
        .map(|n| {
            docs.iter()
                .filter(|d| d.get_str("jobName") == Ok(n.as_str()))
                .count()
        })
        .collect();
    let (min, max) = (
        per_job.iter().copied().min().unwrap_or(0),
        per_job.iter().copied().max().unwrap_or(0),
    );
    report(
        "a full worker: 1 worker with 2 slots, 6 jobs due every second running 0.5 s, for 30 s",
        &[
            format!("ticks started per job: {per_job:?} (min {min}, max {max})"),
            format!(
                "ticks planned {}, run {}, duplicates {}, not run {} (no slot within the misfire grace, or the job's previous tick still waiting)",
                ticks.expected,
                ticks.ran,
                ticks.duplicates,
                ticks.missed.len()
            ),
            overlap_line(&overlaps),
            ticks.accounting(),
        ],
    );
    assert_no_overlap(&overlaps);
    assert_eq!(ticks.duplicates, 0);
    assert!(min >= 5, "a job was starved: {per_job:?}");
    assert!(
        min * 2 >= max,
        "jobs get a fair share of the slots: {per_job:?}"
    );
}

/// A job's REST view, as the API shows it.
async fn job_view(c: &Cluster, name: &str) -> Option<Value> {
    let resp = c
        .http
        .get(format!("{}/api/v1/jobs/{name}", c.api()))
        .send()
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.json().await.ok()
}

/// Placement alerts received, by (job, kind).
fn placement_alerts(c: &Cluster) -> std::collections::BTreeMap<(String, String), usize> {
    let mut out = std::collections::BTreeMap::new();
    for body in c.hook.accepted() {
        let kind = body["kind"].as_str().unwrap_or_default();
        if kind == "unschedulable" || kind == "schedulable" {
            let job = body["job"].as_str().unwrap_or_default().to_string();
            *out.entry((job, kind.to_string())).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_jobs_follow_their_labelled_workers_through_kills_and_absence() {
    let _one = ONE_AT_A_TIME.lock().await;
    // w1 and w3 carry role=db, w2 role=web.
    let mut c = Cluster::start(Services::shared(), 2, 3).await;
    let db: Vec<Value> = every_second("db", 8, "true")
        .into_iter()
        .map(|mut j| {
            j["target"] = serde_json::json!({"labels": {"role": "db"}});
            j
        })
        .collect();
    let db = c.guarded(&db);
    let anywhere = c.guarded(&every_second("any", 4, "true"));
    let every = serde_json::json!({
        "name": format!("{EVERY_WORKER_STEM}rotate"), "command": "true",
        "cronExpr": "* * * * * * *",
        "target": {"labels": {"role": "db"}, "mode": "all"},
    });
    let all: Vec<Value> = db
        .iter()
        .chain(&anywhere)
        .cloned()
        .chain([every.clone()])
        .collect();
    c.put_jobs(&all).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;

    // 1. SIGKILL one of the two db workers every 4 s, restarted 1 s later.
    let db_workers = [0usize, 2];
    let mut picker = Picker::new();
    let seed = picker.0;
    let mut kills = Vec::new();
    let chaos = Instant::now();
    while chaos.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let victim = db_workers[picker.pick(db_workers.len())];
        c.workers[victim].kill();
        kills.push(now_ms());
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.workers[victim].start();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 2. Both db workers gone: the API says so at once, the leader alerts.
    let gone_at = now_ms();
    for i in db_workers {
        c.workers[i].kill();
    }
    let db_names = names(&db);
    let seen_unschedulable = kit::eventually(
        Duration::from_secs(30),
        "db jobs shown unschedulable",
        || async {
            for name in &db_names {
                let view = job_view(&c, name).await?;
                (view["unschedulable"] == true && view["matchingWorkers"] == 0).then_some(())?;
            }
            Some(now_ms())
        },
    )
    .await;
    let any_view = job_view(&c, "any-0").await.expect("any-0");
    let alerted = kit::eventually(
        Duration::from_secs(45),
        "an unschedulable alert for every db job",
        || async {
            let got = placement_alerts(&c);
            db_names
                .iter()
                .all(|n| got.contains_key(&(n.clone(), "unschedulable".to_string())))
                .then(now_ms)
        },
    )
    .await;

    // 3. One db worker returns: schedulable again, and its jobs run.
    let back_at = now_ms();
    c.workers[0].start();
    let recovered = kit::eventually(
        Duration::from_secs(30),
        "a schedulable alert for every db job",
        || async {
            let got = placement_alerts(&c);
            db_names
                .iter()
                .all(|n| got.contains_key(&(n.clone(), "schedulable".to_string())))
                .then(now_ms)
        },
    )
    .await;
    let view_back = job_view(&c, &db_names[0]).await.expect("db-0");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let to = current_second();
    c.pause(&all).await;
    let docs = settled(&c, from, to).await;
    let misplaced = c.misplaced(&docs, &all);
    let overlaps = c.overlaps(&docs);
    let db_ticks = Ticks::count(&docs, &db_names, from, to);
    let any_ticks = Ticks::count(&docs, &names(&anywhere), from, to);
    let ran_after_return = docs
        .iter()
        .filter(|d| d.get_str("jobName").is_ok_and(|j| j.starts_with("db-")))
        .filter(|d| int(d, "planTime") > back_at)
        .count();
    let every_runs = docs
        .iter()
        .filter(|d| d.get_str("jobName") == Ok(every["name"].as_str().unwrap_or_default()))
        .count();
    let alerts = placement_alerts(&c);
    report(
        "targeted jobs: 8 role=db jobs, 4 untargeted, 1 mode-all on role=db; 30 s of SIGKILLs of the db workers (w1, w3), then both down, then w1 back (2 masters, 3 workers)",
        &[
            format!("victim seed {seed}; kills: {}", kills.len()),
            format!(
                "db ticks planned {}, run {}, duplicates {}, missed {}; untargeted: run {} of {}, duplicates {}",
                db_ticks.expected,
                db_ticks.ran,
                db_ticks.duplicates,
                db_ticks.missed.len(),
                any_ticks.ran,
                any_ticks.expected,
                any_ticks.duplicates
            ),
            format!(
                "runs on a non-matching worker: {}; mode-all runs: {every_runs}, twice on one worker: {}",
                misplaced.wrong_worker.len(),
                misplaced.twice_on_one_worker
            ),
            format!(
                "both db workers down: shown unschedulable after {:.1} s, alerted after {:.1} s; back: schedulable alert after {:.1} s, {ran_after_return} db runs since",
                (seen_unschedulable - gone_at) as f64 / 1000.0,
                (alerted - gone_at) as f64 / 1000.0,
                (recovered - back_at) as f64 / 1000.0
            ),
            format!("placement alerts by (job, kind): {alerts:?}"),
            overlap_line(&overlaps),
            db_ticks.accounting(),
        ],
    );
    assert!(
        misplaced.wrong_worker.is_empty(),
        "targeted runs on workers without the labels: {:?}",
        misplaced.wrong_worker
    );
    assert_eq!(
        misplaced.twice_on_one_worker, 0,
        "a mode-all tick ran twice on one worker"
    );
    assert!(every_runs > 0, "the mode-all job ran");
    assert_no_overlap(&overlaps);
    assert_eq!(
        (db_ticks.duplicates, any_ticks.duplicates),
        (0, 0),
        "a tick ran twice"
    );
    assert_eq!(
        any_view["unschedulable"], false,
        "untargeted jobs stay schedulable"
    );
    assert_eq!(view_back["unschedulable"], false);
    assert!(
        ran_after_return > 0,
        "db jobs ran again once a db worker returned"
    );
    for name in &db_names {
        for kind in ["unschedulable", "schedulable"] {
            assert_eq!(
                alerts.get(&(name.clone(), kind.to_string())),
                Some(&1),
                "one {kind} alert for {name}: {alerts:?}"
            );
        }
    }
    assert!(
        !alerts.keys().any(|(job, _)| job.starts_with("any-")),
        "no placement alert for untargeted jobs: {alerts:?}"
    );
    // Misses only where no db worker could run them: around each kill
    // (the dead worker's locks outlive it by its lease) and while none lived.
    let mut windows: Vec<(i64, i64)> = kills
        .iter()
        .map(|at| (at - 1000, at + (WORKER_LEASE_SECS as i64 + 2) * 1000))
        .collect();
    windows.push((gone_at - 1000, back_at + 5000));
    assert_misses_within(&db_ticks, &windows, "the kill windows and the absence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planned_tick_ends_as_one_record_run_skipped_or_missed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(Services::shared(), 1, 2).await;
    // Runs 2.5 s, due every second: most ticks find the previous run going.
    let slow = c.guarded(&every_second("slow", 1, "sleep 2.5"));
    // No worker carries role=nowhere: every tick is missed, settled by the leader.
    let nowhere: Vec<Value> = every_second("nowhere", 1, "true")
        .into_iter()
        .map(|mut j| {
            j["target"] = serde_json::json!({"labels": {"role": "nowhere"}});
            j
        })
        .collect();
    // Runs everywhere, while every worker is gone for 8 s.
    let steady = c.guarded(&every_second("steady", 2, "true"));
    let all: Vec<Value> = slow
        .iter()
        .chain(&nowhere)
        .chain(&steady)
        .cloned()
        .collect();
    c.put_jobs(&all).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    for w in &mut c.workers {
        w.kill();
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    for w in &mut c.workers {
        w.start();
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let to = current_second();
    // Past the leader's settling delay before pausing: every tick of the
    // window has its verdict by then.
    tokio::time::sleep(Duration::from_secs(14)).await;
    c.pause(&all).await;
    let docs = settled(&c, from, to).await;
    let overlaps = c.overlaps(&docs);
    let per = |jobs: &[Value]| Ticks::count(&docs, &names(jobs), from, to);
    let (slow_t, nowhere_t, steady_t) = (per(&slow), per(&nowhere), per(&steady));
    let by_status = statuses(&docs);
    let missed_alerts = c
        .hook
        .accepted()
        .iter()
        .filter(|b| b["kind"] == "missed" && b["job"] == "nowhere-0")
        .count();
    report(
        "every tick accounted for: a forbid job longer than its interval, a job no worker matches, 2 jobs while every worker is gone for 8 s (1 master, 2 workers)",
        &[
            format!("slow: {}", slow_t.accounting()),
            format!("nowhere: {}", nowhere_t.accounting()),
            format!("steady: {}", steady_t.accounting()),
            format!("records by status: {by_status:?}"),
            format!("missed alerts for nowhere-0: {missed_alerts}"),
            overlap_line(&overlaps),
        ],
    );
    assert_no_overlap(&overlaps);
    for (what, t) in [
        ("slow", &slow_t),
        ("nowhere", &nowhere_t),
        ("steady", &steady_t),
    ] {
        assert_eq!(
            t.duplicates, 0,
            "{what}: a tick has two records (run and verdict?)"
        );
        assert!(
            t.missed.is_empty(),
            "{what}: ticks without a verdict: {:?}",
            t.missed
        );
    }
    assert!(slow_t.skipped > 0, "overlapping ticks are recorded skipped");
    assert_eq!(
        nowhere_t.missed_verdicts, nowhere_t.expected,
        "every tick of an unschedulable job is missed"
    );
    assert!(
        steady_t.missed_verdicts > 0,
        "ticks while no worker lived are missed"
    );
    assert!(missed_alerts > 0, "missed ticks alert");
    let reasons: BTreeSet<String> = docs
        .iter()
        .filter(|d| d.get_str("status") == Ok("missed") && d.get_str("jobName") == Ok("nowhere-0"))
        .filter_map(|d| d.get_str("reason").ok().map(str::to_string))
        .collect();
    assert!(
        reasons.iter().all(|r| r.contains("role=nowhere")),
        "the reason names the selector: {reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_clocks_3_s_off_fire_nothing_and_no_run_starts_early() {
    let _one = ONE_AT_A_TIME.lock().await;
    // w1 runs 3 s ahead, w2 3 s behind, w3 on time.
    let c = Cluster::start_with(
        Services::shared(),
        1,
        3,
        WorkerTuning {
            clock_offsets: &[3000, -3000, 0],
            ..WorkerTuning::default()
        },
    )
    .await;
    // Each command prints the true time it started at (ms).
    let jobs = c.guarded(&every_second("clock", 5, "date +%s%3N"));
    c.put_jobs(&jobs).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let to = current_second();
    let workers = c
        .http
        .get(format!("{}/api/v1/workers", c.api()))
        .send()
        .await
        .expect("workers")
        .json::<Value>()
        .await
        .expect("workers JSON");
    // Every tick of the window gets its verdict first.
    tokio::time::sleep(Duration::from_secs(14)).await;
    c.pause(&jobs).await;
    let docs = settled(&c, from, to).await;
    let ticks = Ticks::count(&docs, &names(&jobs), from, to);
    let overlaps = c.overlaps(&docs);
    let runs: Vec<&mongodb::bson::Document> = docs
        .iter()
        .filter(|d| d.get_str("jobName").is_ok_and(|j| j.starts_with("clock-")))
        .filter(|d| d.get_str("status") == Ok("success"))
        .collect();
    let early: Vec<i64> = runs
        .iter()
        .filter_map(|d| {
            let started: i64 = d.get_str("output").ok()?.trim().parse().ok()?;
            Some(started - int(d, "planTime"))
        })
        .filter(|lead| *lead < -50)
        .collect();
    let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
    for d in &runs {
        *by_worker
            .entry(d.get_str("worker").unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let clocks: Vec<(String, Value, Value)> = workers["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    (
                        w["id"].as_str().unwrap_or_default().to_string(),
                        w["clockOffsetMs"].clone(),
                        w["clockSkewed"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let skew_alerts: BTreeSet<String> = c
        .hook
        .accepted()
        .iter()
        .filter(|b| b["kind"] == "clockSkew")
        .filter_map(|b| b["worker"].as_str().map(str::to_string))
        .collect();
    report(
        "clock skew: workers 3 s ahead (w1) and 3 s behind (w2) beside a correct one (w3); 5 jobs every second printing the true time (1 master)",
        &[
            format!("workers (id, measured offset ms, skewed): {clocks:?}"),
            format!("runs by worker: {by_worker:?}"),
            format!(
                "runs starting more than 50 ms before their planned time (true clock): {}",
                early.len()
            ),
            format!("clock alerts for: {skew_alerts:?}"),
            ticks.accounting(),
            overlap_line(&overlaps),
        ],
    );
    assert_no_overlap(&overlaps);
    assert!(
        early.is_empty(),
        "runs started early by the true clock: {early:?}"
    );
    assert_eq!(ticks.duplicates, 0, "a tick ran twice");
    assert!(
        ticks.missed.is_empty(),
        "ticks without a record: {:?}",
        ticks.missed
    );
    assert_eq!(
        by_worker.keys().cloned().collect::<Vec<_>>(),
        vec!["w3".to_string()],
        "only the correct worker runs jobs"
    );
    for (id, offset, skewed) in &clocks {
        let offset = offset.as_i64().unwrap_or_default();
        match id.as_str() {
            "w1" => assert!(
                *skewed == true && (2900..3300).contains(&offset),
                "{clocks:?}"
            ),
            "w2" => assert!(
                *skewed == true && (-3100..-2700).contains(&offset),
                "{clocks:?}"
            ),
            _ => assert!(*skewed == false && offset.abs() < 200, "{clocks:?}"),
        }
    }
    assert_eq!(
        skew_alerts,
        BTreeSet::from(["w1".to_string(), "w2".to_string()]),
        "one clock alert per skewed worker"
    );
}
