//! `rcronctl` (the real binary) against a real master on a real etcd.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Master, ctl};
use rcron_testkit as kit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcronctl_manages_jobs_and_reads_the_cluster() {
    let master = Master::start().await;
    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "nightly",
                "--command",
                "echo hi",
                "--cron",
                "0 3 * * *",
                "--timezone",
                "Europe/Berlin",
                "--timeout",
                "60",
            ],
        );
        assert!(ok, "{err}");
        assert!(out.starts_with("job nightly created"), "{out}");

        let (ok, out, _) = ctl(&b, &["job", "list"]);
        assert!(ok);
        assert!(
            out.lines().next().is_some_and(|h| h.starts_with("NAME")),
            "{out}"
        );
        assert!(
            out.contains("nightly") && out.contains("0 3 * * *") && out.contains("Europe/Berlin"),
            "{out}"
        );

        let (ok, out, _) = ctl(&b, &["-o", "json", "job", "get", "nightly"]);
        assert!(ok);
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(job["timeoutSecs"], 60);

        let (ok, out, _) = ctl(&b, &["job", "pause", "nightly"]);
        assert!(ok && out.contains("paused"), "{out}");
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "nightly"]);
        assert!(out.contains("\"disabled\": true"), "{out}");
        let (ok, _, _) = ctl(&b, &["job", "resume", "nightly"]);
        assert!(ok);

        let file = std::env::temp_dir().join(format!("rcronctl-job-{}.json", std::process::id()));
        std::fs::write(
            &file,
            r#"{"name":"fromfile","command":"true","cronExpr":"@hourly"}"#,
        )
        .expect("write");
        let (ok, out, err) = ctl(&b, &["job", "save", "--file", file.to_str().expect("path")]);
        assert!(ok && out.contains("fromfile created"), "{out}{err}");
        let _ = std::fs::remove_file(file);

        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "bad",
                "--command",
                "x",
                "--cron",
                "61 * * * *",
            ],
        );
        assert!(!ok, "invalid jobs fail");
        assert!(err.contains("400") && err.contains("cronExpr"), "{err}");
        let (ok, _, err) = ctl(&b, &["job", "delete", "ghost"]);
        assert!(!ok && err.contains("not found"), "{err}");

        let (ok, out, _) = ctl(&b, &["job", "run", "nightly"]);
        assert!(ok && out.contains("will run once"), "{out}");
        let (ok, out, _) = ctl(&b, &["logs", "nightly"]);
        assert!(ok && out.starts_with("START"), "{out}");
        let (ok, out, _) = ctl(&b, &["preview", "*/5 * * * * * *", "--count", "3"]);
        assert!(ok && out.lines().count() == 4, "{out}");
        let (ok, out, _) = ctl(&b, &["cluster"]);
        assert!(
            ok && out.contains("etcd: ok") && out.contains("mongodb: ok"),
            "{out}"
        );
        let (ok, out, _) = ctl(&b, &["workers"]);
        assert!(
            ok && out.starts_with("ID") && out.contains("STATE"),
            "{out}"
        );
        // `key hash` needs no server: the keys file's form of a secret.
        let mut hash = Command::new(env!("CARGO_BIN_EXE_rcronctl"))
            .args(["key", "hash"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run rcronctl key hash");
        {
            use std::io::Write;
            let mut stdin = hash.stdin.take().expect("stdin");
            stdin
                .write_all(b"my-secret-0123456789\n")
                .expect("write secret");
        }
        let out = hash.wait_with_output().expect("hash output");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            rcron_master::api::hash_secret("my-secret-0123456789")
        );
        let (ok, _, err) = ctl(&b, &["run", "kill", "0190-none"]);
        assert!(!ok && err.contains("not running"), "{err}");
        // Versions from the audit trail, and a rollback to the first.
        let versions = || ctl(&b, &["job", "versions", "nightly"]);
        let mut out = versions().1;
        for _ in 0..50 {
            if out.lines().count() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = versions().1;
        }
        assert!(
            out.starts_with("VERSION") && out.lines().count() >= 3,
            "{out}"
        );
        let (ok, out, err) = ctl(&b, &["job", "rollback", "nightly", "--to", "1"]);
        assert!(ok && out.contains("version 1"), "{out} {err}");
        let (ok, _, err) = ctl(&b, &["job", "rollback", "nightly", "--to", "99"]);
        assert!(!ok && err.contains("no version 99"), "{err}");
        let (ok, out, _) = ctl(&b, &["job", "delete", "nightly"]);
        assert!(ok && out.contains("deleted"), "{out}");
        let audited = || ctl(&b, &["audit", "--job", "nightly"]);
        let (ok, out, _) = audited();
        assert!(ok && out.starts_with("TIME"), "{out}");
        // The writer stores records in the background: give it a moment.
        let mut out = out;
        for _ in 0..50 {
            if out.contains("delete") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = audited().1;
        }
        assert!(out.contains("delete") && out.contains("anonymous"), "{out}");
        let (ok, _, err) = ctl("http://127.0.0.1:1", &["job", "list"]);
        assert!(!ok && err.contains("cannot reach"), "{err}");
    })
    .await
    .expect("rcronctl checks");
    master.stop().await;
}

/// The `ctl` output line of `job list` / `workers` that starts with `first`.
fn row<'a>(out: &'a str, first: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcronctl_targets_jobs_at_labelled_workers() {
    let master = Master::start().await;
    // A live worker as the registry holds it: the record a worker started
    // with `RCRON_WORKER_LABELS=role=db,zone=eu-1` publishes.
    let keys = rcron_shared::Keys::new(&master.prefix).expect("prefix");
    let worker = rcron_shared::WorkerInfo {
        id: "db-1".into(),
        hostname: "db-host".into(),
        ip: "10.0.0.7".into(),
        pid: 4242,
        version: "test".into(),
        start_time: 0,
        capacity: 4,
        running: vec![],
        runs: vec![],
        draining: false,
        timezone: "UTC".into(),
        labels: rcron_shared::placement::parse_labels("role=db,zone=eu-1").expect("labels"),
        clock_offset_ms: None,
        clock_skewed: false,
        misfire_grace_secs: 5,
        http_addr: None,
    };
    kit::etcd_client()
        .await
        .put(
            keys.worker(&worker.id),
            serde_json::to_vec(&worker).expect("worker json"),
            None,
        )
        .await
        .expect("register the worker");

    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = ctl(&b, &["workers"]);
        assert!(ok, "{err}");
        assert!(
            out.lines().next().is_some_and(|h| h.ends_with("LABELS")),
            "{out}"
        );
        assert!(row(&out, "db-1").ends_with("role=db,zone=eu-1"), "{out}");

        let save = |name: &str, extra: &[&str]| {
            let mut args = vec![
                "job",
                "save",
                "--name",
                name,
                "--command",
                "true",
                "--cron",
                "@hourly",
            ];
            args.extend_from_slice(extra);
            ctl(&b, &args)
        };

        // On a label the worker carries: placed, nothing to warn of.
        let (ok, out, err) = save("backup", &["--target", "role=db"]);
        assert!(ok, "{err}");
        assert!(
            out.starts_with("job backup created") && !out.contains("unschedulable"),
            "{out}"
        );
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "backup"]);
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(
            job["target"],
            serde_json::json!({"labels": {"role": "db"}, "mode": "one"})
        );
        assert_eq!(job["matchingWorkers"], 1);
        assert_eq!(job["unschedulable"], false);
        let (ok, out, _) = ctl(&b, &["job", "get", "backup"]);
        assert!(ok, "{out}");
        assert!(
            out.contains("target: role=db (one); 1 live worker matches")
                && !out.contains("unschedulable:"),
            "{out}"
        );

        // On labels no worker carries: saved, and flagged everywhere it shows.
        let (ok, out, err) = save("train", &["--target", "gpu=a100, zone=eu-1", "--all"]);
        assert!(ok, "{err}");
        assert!(
            out.contains("warning: unschedulable: no live worker carries gpu=a100,zone=eu-1"),
            "{out}"
        );
        let (ok, out, _) = ctl(&b, &["job", "get", "train"]);
        assert!(ok, "{out}");
        assert!(
            out.contains("target: gpu=a100,zone=eu-1 (all); 0 live workers match")
                && out.contains("unschedulable: no live worker carries gpu=a100,zone=eu-1"),
            "{out}"
        );

        // `--all` alone: every worker runs each tick.
        let (ok, _, err) = save("everywhere", &["--all"]);
        assert!(ok, "{err}");
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "everywhere"]);
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(
            job["target"],
            serde_json::json!({"labels": {}, "mode": "all"})
        );
        // A paused job runs nowhere on purpose: not unschedulable.
        let (ok, _, err) = save("parked", &["--target", "gpu=a100", "--disabled"]);
        assert!(ok, "{err}");

        let (ok, out, _) = ctl(&b, &["job", "list"]);
        assert!(ok, "{out}");
        let header = out.lines().next().unwrap_or_default();
        assert!(
            header.contains("STATUS") && header.contains("TARGET"),
            "{out}"
        );
        let backup = row(&out, "backup");
        assert!(
            backup.contains(" enabled ") && backup.contains("role=db (one)"),
            "{out}"
        );
        let train = row(&out, "train");
        assert!(
            train.contains("UNSCHEDULABLE") && train.contains("gpu=a100,zone=eu-1 (all)"),
            "{out}"
        );
        assert!(row(&out, "everywhere").contains("all workers"), "{out}");
        let parked = row(&out, "parked");
        assert!(
            parked.contains(" paused ") && !parked.contains("UNSCHEDULABLE"),
            "{out}"
        );

        // Bad selectors are refused before anything is sent.
        let (ok, _, err) = save("bad", &["--target", "role"]);
        assert!(!ok, "a label without a value fails");
        assert!(
            err.contains("--target") && err.contains("key=value"),
            "{err}"
        );
        let (ok, _, err) = save("bad", &["--target", "role=d b"]);
        assert!(!ok, "a value with a space fails");
        assert!(err.contains("--target") && err.contains("ASCII"), "{err}");
        let (ok, _, err) = ctl(&b, &["job", "get", "bad"]);
        assert!(!ok && err.contains("not found"), "{err}");
        let (ok, _, err) = ctl(&b, &["job", "save", "--file", "-", "--target", "role=db"]);
        assert!(!ok && err.contains("cannot be used"), "{err}");
    })
    .await
    .expect("rcronctl checks");
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcronctl_prints_cron_warnings_on_stderr_and_still_succeeds() {
    let master = Master::start().await;
    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        // Daily 02:30 in Berlin: skipped in March, repeated in October.
        let (ok, out, err) = ctl(
            &b,
            &["preview", "30 2 * * *", "--timezone", "Europe/Berlin"],
        );
        assert!(ok, "{err}");
        assert_eq!(out.lines().count(), 6, "the times on stdout: {out}");
        let warnings: Vec<&str> = err.lines().collect();
        assert_eq!(warnings.len(), 2, "{err}");
        assert!(
            warnings.iter().any(
                |w| w.starts_with("warning: runs at 03:00 instead of 02:30 on ")
                    && w.ends_with("(Europe/Berlin skips 02:00–03:00)")
            ),
            "{err}"
        );
        assert!(
            warnings.iter().any(|w| w.starts_with("warning: 02:30 on ")
                && w.ends_with("happens twice in Europe/Berlin; the job runs once, at the first")),
            "{err}"
        );
        // Seconds-first in 6 fields.
        let (ok, _, err) = ctl(&b, &["preview", "*/30 * * * * *"]);
        assert!(ok, "{err}");
        assert_eq!(
            err.trim_end(),
            "warning: 6 fields are `min hour day month weekday year` here: `*/30 * * * * *` \
             runs every 30 minutes; for seconds first, write 7 fields: `*/30 * * * * * *`"
        );
        let (ok, _, err) = ctl(&b, &["preview", "*/5 * * * * * *"]);
        assert!(ok && err.is_empty(), "{err}");

        // A save with warnings is a save: exit 0, the job stored, stdout
        // as usual (JSON stays parseable), the warnings on stderr.
        let save = |name: &str, cron: &str, extra: &[&str]| {
            let mut args = extra.to_vec();
            args.extend_from_slice(&[
                "job",
                "save",
                "--name",
                name,
                "--command",
                "true",
                "--cron",
                cron,
                "--timezone",
                "Europe/Berlin",
            ]);
            ctl(&b, &args)
        };
        let (ok, out, err) = save("nightly", "30 2 * * *", &[]);
        assert!(ok, "{err}");
        assert!(out.starts_with("job nightly created"), "{out}");
        assert_eq!(err.lines().count(), 2, "{err}");
        assert!(
            err.contains("warning: runs at 03:00 instead of 02:30 on "),
            "{err}"
        );
        let (ok, out, err) = save("nightly", "30 2 * * *", &["-o", "json"]);
        assert!(ok, "{err}");
        let answer: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(answer["warnings"].as_array().map(Vec::len), Some(2));
        assert_eq!(err.lines().count(), 2, "{err}");
        let (ok, out, _) = ctl(&b, &["job", "get", "nightly"]);
        assert!(ok && out.contains("30 2 * * *"), "{out}");
        let (ok, out, err) = save("nightly", "0 3 * * *", &[]);
        assert!(ok && out.starts_with("job nightly replaced"), "{out}");
        assert!(err.is_empty(), "{err}");

        // A refusal names the field and its range.
        let (ok, _, err) = save("bad", "0 25 * * *", &[]);
        assert!(!ok, "refused");
        assert!(
            err.contains("field 2 (hour) `25` is out of range 0–23"),
            "{err}"
        );
    })
    .await
    .expect("rcronctl checks");
    master.stop().await;
}

/// The cells of a table row: columns are padded and two spaces apart, and
/// a cell has at most single spaces inside.
fn cells(row: &str) -> Vec<String> {
    row.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Tick policies given as flags are stored as given, and a job saved
/// without them does not gain them; `logs --status skipped|missed` lists
/// the verdicts with their reason; `workers` shows each worker's clock.
///
/// The harness starts a master, no worker: the `missed` records are the
/// leader's real verdicts on the ticks of a job no live worker may run; the
/// `skipped` record (a worker's verdict) is written as a worker writes it,
/// and the worker with a skewed clock is a registration record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcronctl_saves_tick_policies_and_lists_verdicts() {
    const OVERLAP: &str = "overlap: the previous run was still going";
    let master = Master::start().await;
    let keys = rcron_shared::Keys::new(&master.prefix).expect("prefix");
    let mut etcd = kit::etcd_client().await;
    // A worker 3 s ahead of the leader's beacon: registered, firing nothing
    // (and not counted as one that may run a job).
    let skewed = rcron_shared::WorkerInfo {
        id: "skewed-1".into(),
        hostname: "fast-clock".into(),
        ip: "10.0.0.9".into(),
        pid: 77,
        version: "test".into(),
        start_time: 0,
        capacity: 2,
        running: vec![],
        runs: vec![],
        draining: false,
        timezone: "UTC".into(),
        labels: rcron_shared::Labels::default(),
        clock_offset_ms: Some(3013),
        clock_skewed: true,
        misfire_grace_secs: 5,
        http_addr: None,
    };
    etcd.put(
        keys.worker(&skewed.id),
        serde_json::to_vec(&skewed).expect("worker json"),
        None,
    )
    .await
    .expect("register the worker");
    // A tick a worker skipped because the job's previous run was still going.
    let overlapping = rcron_shared::Job::from_json(
        br#"{"name":"overlapping","command":"sleep 3","cronExpr":"* * * * * * *"}"#,
    )
    .expect("job");
    let now = chrono::Utc::now().timestamp_millis();
    let skipped = rcron_shared::verdict::record(
        &overlapping,
        now - 1000,
        rcron_shared::RunStatus::Skipped,
        OVERLAP.to_string(),
        "w-elsewhere",
        now,
    );
    let db = rcron_shared::runlog::mongo::database(
        &rcron_shared::config::MongoConfig {
            uri: kit::mongo_uri(),
            db: master.db.clone(),
        },
        "rcronctl-test",
    )
    .await
    .expect("run log");
    let logs = rcron_shared::runlog::mongo::MongoRunLog::new(&db, Duration::from_secs(3600));
    rcron_shared::runlog::RunLogWriter::write(&logs, &[skipped])
        .await
        .expect("write the skipped record");

    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        // The clock column: the offset, and SKEWED beyond the worker's bound.
        let (ok, out, err) = ctl(&b, &["workers"]);
        assert!(ok, "{err}");
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert!(header.ends_with(&["ZONE", "CLOCK", "LABELS"]), "{out}");
        assert!(
            cells(row(&out, "skewed-1")).ends_with(&[
                "UTC".to_string(),
                "+3013 ms SKEWED".into(),
                "-".into()
            ]),
            "{out}"
        );

        // Every policy flag, stored as given.
        let (ok, out, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "policies",
                "--command",
                "true",
                "--cron",
                "@hourly",
                "--concurrency",
                "replace",
                "--misfire",
                "run-once",
                "--starting-deadline",
                "30",
                "--no-alert-on-missed",
                "--retries",
                "3",
                "--retry-backoff",
                "2",
                "--retry-backoff-max",
                "600",
            ],
        );
        assert!(ok && out.starts_with("job policies created"), "{out}{err}");
        let (ok, out, err) = ctl(&b, &["-o", "json", "job", "get", "policies"]);
        assert!(ok, "{err}");
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(job["concurrency"], "replace");
        assert_eq!(job["misfire"], "runOnce");
        assert_eq!(job["startingDeadlineSecs"], 30);
        assert_eq!(job["alertOnMissed"], false);
        assert_eq!(job["retries"], 3);
        assert_eq!(job["retryBackoffSecs"], 2);
        assert_eq!(job["retryBackoffMaxSecs"], 600);
        // `--misfire skip` and `--concurrency forbid` are the defaults, sent as given.
        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "policies",
                "--command",
                "true",
                "--cron",
                "@hourly",
                "--concurrency",
                "forbid",
                "--misfire",
                "skip",
            ],
        );
        assert!(ok, "{err}");
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "policies"]);
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(job["concurrency"], "forbid");
        assert_eq!(job["misfire"], "skip");
        assert_eq!(job["alertOnMissed"], true, "a save replaces the whole job");
        assert_eq!(job["startingDeadlineSecs"], 0);
        // A job saved without them: the original system's document.
        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "plain",
                "--command",
                "true",
                "--cron",
                "@hourly",
            ],
        );
        assert!(ok, "{err}");

        // Refused before anything is sent.
        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "bad",
                "--command",
                "true",
                "--cron",
                "@hourly",
                "--allow-overlap",
                "--concurrency",
                "replace",
            ],
        );
        assert!(!ok && err.contains("cannot be used with"), "{err}");
        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "bad",
                "--command",
                "true",
                "--cron",
                "@hourly",
                "--misfire",
                "sometimes",
            ],
        );
        assert!(!ok && err.contains("run-once"), "{err}");
        let (ok, _, err) = ctl(&b, &["job", "save", "--file", "-", "--misfire", "skip"]);
        assert!(!ok && err.contains("cannot be used with"), "{err}");
        let (ok, _, err) = ctl(&b, &["logs", "--status", "late"]);
        assert!(
            !ok && err.contains("skipped") && err.contains("missed"),
            "{err}"
        );
        let (ok, _, err) = ctl(&b, &["job", "get", "bad"]);
        assert!(!ok && err.contains("not found"), "{err}");

        // The skipped tick, with its reason (a verdict has no duration).
        let (ok, out, err) = ctl(&b, &["logs", "--status", "skipped"]);
        assert!(ok, "{err}");
        let header = out.lines().next().unwrap_or_default();
        assert!(
            header.contains(" WORKER ") && header.contains(" REASON "),
            "{out}"
        );
        let skipped: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(skipped.len(), 1, "{out}");
        assert_eq!(
            cells(skipped[0])[1..],
            [
                "overlapping",
                "skipped",
                "-",
                "-",
                "schedule",
                "w-elsewhere",
                OVERLAP
            ],
            "{out}"
        );
        // `-o json`: the API's page, one document.
        let (ok, out, err) = ctl(&b, &["-o", "json", "logs", "--status", "skipped"]);
        assert!(ok, "{err}");
        let page: serde_json::Value = serde_json::from_str(&out).expect("one document");
        assert_eq!(page["total"], 1, "{out}");
        let record = &page["logs"][0];
        assert_eq!(record["reason"], OVERLAP);
        assert_eq!(record["output"], "");

        // A job due every second that no live worker may run: the leader
        // logs its ticks `missed` (10 s after each), with the reason.
        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "every-second",
                "--command",
                "true",
                "--cron",
                "* * * * * * *",
                "--no-alert-on-missed",
            ],
        );
        assert!(ok, "{err}");
        let missed = || ctl(&b, &["logs", "every-second", "--status", "missed"]).1;
        let mut out = missed();
        for _ in 0..90 {
            if out.lines().count() > 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            out = missed();
        }
        let rows: Vec<&str> = out.lines().skip(1).collect();
        assert!(!rows.is_empty(), "no missed tick logged in 45 s:\n{out}");
        for r in &rows {
            let r = cells(r);
            assert_eq!(r[1..5], ["every-second", "missed", "-", "-"], "{out}");
            assert_eq!(r[5], "schedule", "{out}");
            assert!(r[7].starts_with("no live worker"), "{out}");
        }
        // The filter keeps the kinds apart.
        let (ok, out, err) = ctl(&b, &["-o", "json", "logs", "--status", "missed"]);
        assert!(ok, "{err}");
        let page: serde_json::Value = serde_json::from_str(&out).expect("one document");
        let records = page["logs"].as_array().expect("logs");
        assert!(!records.is_empty(), "{out}");
        assert!(
            records
                .iter()
                .all(|l| l["status"] == "missed" && l["jobName"] == "every-second"),
            "{out}"
        );
        let (ok, _, err) = ctl(&b, &["job", "delete", "every-second"]);
        assert!(ok, "{err}");
    })
    .await
    .expect("rcronctl checks");

    // What etcd holds: the defaults of a job saved without the policy
    // flags are left out, as in the original system's documents.
    let plain = etcd
        .get(
            keys.job(&rcron_shared::JobName::new("plain").expect("name")),
            None,
        )
        .await
        .expect("read the job");
    let stored: serde_json::Value =
        serde_json::from_slice(plain.kvs()[0].value()).expect("stored json");
    for absent in [
        "misfire",
        "startingDeadlineSecs",
        "alertOnMissed",
        "retryBackoffMaxSecs",
    ] {
        assert!(stored.get(absent).is_none(), "{absent} in {stored}");
    }
    assert_eq!(stored["concurrency"], "forbid");
    master.stop().await;
}

/// Pause and resume are a patch of `disabled` alone: an operator key may
/// send it, and what this client does not know of the job is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_key_pauses_and_resumes_and_nothing_else_of_the_job_changes() {
    const ADMIN: &str = "admin-secret-0123456789";
    const OPERATOR: &str = "oscar-secret-0123456789";
    let keys_file = common::temp_dir("keys").join("keys.toml");
    std::fs::write(
        &keys_file,
        format!(
            "[[key]]\nname = \"ada\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
             [[key]]\nname = \"oscar\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
            rcron_master::api::hash_secret(ADMIN),
            rcron_master::api::hash_secret(OPERATOR)
        ),
    )
    .expect("write keys file");
    let file = keys_file.clone();
    let master = Master::start_with(move |cfg| cfg.api_keys_file = Some(file)).await;
    let b = master.base.clone();
    let job = || {
        [
            "job",
            "save",
            "--name",
            "nightly",
            "--command",
            "echo hi",
            "--cron",
            "0 3 * * *",
        ]
    };
    let (ok, _, err) = tokio::task::block_in_place(|| {
        let mut args = vec!["--token", ADMIN];
        args.extend(job());
        ctl(&b, &args)
    });
    assert!(ok, "{err}");
    // A field of a later version, written by it.
    let keys = rcron_shared::Keys::new(&master.prefix).expect("prefix");
    let key = keys.job(&rcron_shared::JobName::new("nightly").expect("name"));
    let stored = || {
        let key = key.clone();
        async move {
            let resp = kit::etcd_client().await.get(key, None).await.expect("get");
            serde_json::from_slice::<serde_json::Value>(resp.kvs()[0].value()).expect("json")
        }
    };
    let mut later = stored().await;
    later["futureField"] = serde_json::json!([1, 2]);
    kit::etcd_client()
        .await
        .put(key.clone(), later.to_string(), None)
        .await
        .expect("put");

    let b = master.base.clone();
    tokio::task::block_in_place(|| {
        let (ok, out, err) = ctl(&b, &["--token", OPERATOR, "job", "pause", "nightly"]);
        assert!(ok, "{err}");
        assert_eq!(out.trim_end(), "job nightly paused");
        let mut args = vec!["--token", OPERATOR];
        args.extend(job());
        let (ok, _, err) = ctl(&b, &args);
        assert!(!ok && err.contains("403") && err.contains("oscar"), "{err}");
    });
    let paused = stored().await;
    assert_eq!(paused["disabled"], true);
    assert_eq!(
        paused["futureField"],
        serde_json::json!([1, 2]),
        "kept: {paused}"
    );
    assert_eq!(paused["command"], "echo hi");
    tokio::task::block_in_place(|| {
        let (ok, out, err) = ctl(
            &b,
            &[
                "--token", OPERATOR, "-o", "json", "job", "resume", "nightly",
            ],
        );
        assert!(ok, "{err}");
        let answer: serde_json::Value = serde_json::from_str(&out).expect("the API's document");
        assert_eq!(answer["disabled"], false);
        assert!(answer["warnings"].is_array(), "{answer}");
    });
    assert_eq!(stored().await["futureField"], serde_json::json!([1, 2]));
    let _ = std::fs::remove_file(keys_file);
    master.stop().await;
}
