//! The worker against real etcd and a real MongoDB-wire server: run-once
//! across workers and clock skew, timeouts, kills, MongoDB outages, crashes,
//! registration and shutdown.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Env, InProcess, int, string};
use rcron_testkit as kit;
use rcron_worker::clock::SystemClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_one_clock_500ms_behind_run_each_second_exactly_once() {
    let env = Env::new();
    let a = InProcess::start(env.config("wa"));
    let mut lagging = env.config("wb");
    lagging.clock_offset_ms = -500;
    let b = InProcess::start_with_clock(lagging, Arc::new(SystemClock::with_offset_ms(-500)));
    env.put_job(r#"{"name":"every-second","command":"echo tick","cronExpr":"* * * * * * *"}"#)
        .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    env.delete_job("every-second").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.stop().await;
    b.stop().await;

    let docs = env.logs("every-second").await;
    let mut per_second: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for d in &docs {
        assert_eq!(string(d, "status"), "success", "{d}");
        per_second
            .entry(int(d, "planTime"))
            .or_default()
            .push(string(d, "worker"));
    }
    let plans: Vec<i64> = per_second.keys().copied().collect();
    assert!(plans.len() >= 17, "about 20 ticks ran, got {}", plans.len());
    for pair in plans.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "no second missing between {} and {}",
            pair[0],
            pair[1]
        );
    }
    let doubled: Vec<_> = per_second.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(doubled.is_empty(), "ticks run twice: {doubled:?}");
    let by_worker = |w: &str| docs.iter().filter(|d| string(d, "worker") == w).count();
    println!(
        "runs: {} (wa {}, wb {}), duplicates 0",
        docs.len(),
        by_worker("wa"),
        by_worker("wb")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_process_group_logs_timeout_and_leaves_a_warning() {
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    let pidfile = env.spill_root.join("grandchild.pid");
    std::fs::create_dir_all(&env.spill_root).expect("dir");
    let job = serde_json::json!({
        "name": "slow",
        "command": format!("sleep 300 & echo $! > {}; sleep 30", pidfile.display()),
        "cronExpr": "*/2 * * * * * *",
        "timeoutSecs": 1,
    });
    env.put_job(&job.to_string()).await;
    let doc = kit::eventually(
        Duration::from_secs(20),
        "a timed-out run in the log",
        || async { env.logs("slow").await.into_iter().next() },
    )
    .await;
    env.delete_job("slow").await;
    assert_eq!(string(&doc, "status"), "timeout", "{doc}");
    let took = int(&doc, "endTime") - int(&doc, "startTime");
    assert!(
        (900..4000).contains(&took),
        "killed about 1 s after start, took {took} ms"
    );
    assert!(string(&doc, "err").contains("timed out"), "{doc}");

    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    kit::eventually(
        Duration::from_secs(5),
        "the background sleep to be gone",
        || async {
            (!std::path::Path::new(&format!("/proc/{grandchild}")).exists()
                || std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")))
            .then_some(())
        },
    )
    .await;

    let run_id = string(&doc, "runId");
    let warning = kit::eventually(Duration::from_secs(10), "the warning key", || async {
        env.get(&format!("warn/slow/{run_id}")).await
    })
    .await;
    let warning: serde_json::Value = serde_json::from_slice(&warning).expect("warning json");
    assert_eq!(warning["status"], "timeout");
    assert_eq!(warning["jobName"], "slow");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_and_warn_once() {
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    env.put_job(r#"{"name":"flaky","command":"echo boom; exit 7","cronExpr":"0 0 0 1 1 * 2099","retries":2,"retryBackoffSecs":1}"#)
        .await;
    // The yearly job never fires on its own: change it to fire once soon.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.put_job(r#"{"name":"flaky","command":"echo boom; exit 7","cronExpr":"*/5 * * * * * *","retries":2,"retryBackoffSecs":1}"#)
        .await;
    let docs = kit::eventually(Duration::from_secs(20), "three attempts", || async {
        let docs = env.logs("flaky").await;
        (docs.len() >= 3).then_some(docs)
    })
    .await;
    env.delete_job("flaky").await;
    let first_run = string(&docs[0], "runId");
    let attempts: Vec<&mongodb::bson::Document> = docs
        .iter()
        .filter(|d| string(d, "runId") == first_run)
        .collect();
    assert_eq!(
        attempts
            .iter()
            .map(|d| int(d, "attempt"))
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    for d in &attempts {
        assert_eq!(string(d, "status"), "failed");
        assert_eq!(int(d, "exitCode"), 7);
        assert_eq!(string(d, "output"), "boom\n");
    }
    assert!(
        // retryBackoffSecs 1, with up to 20 % jitter either way.
        int(attempts[1], "startTime") - int(attempts[0], "endTime") >= 790,
        "backoff between attempts"
    );
    let warnings = env.keys_under("warn/flaky/").await;
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the run, not one per attempt: {warnings:?}"
    );
    assert!(warnings[0].ends_with(&first_run));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_request_ends_a_running_job_at_once_as_killed() {
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    env.put_job(r#"{"name":"long","command":"sleep 300","cronExpr":"*/2 * * * * * *"}"#)
        .await;
    kit::eventually(
        Duration::from_secs(10),
        "the run to hold its lock",
        || async { env.get("lock/long").await },
    )
    .await;
    env.delete_job("long").await;
    let mut etcd = env.etcd().await;
    let lease = etcd.lease_grant(2, None).await.expect("lease").id();
    etcd.put(
        format!("{}killer/long", env.prefix),
        "",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("kill");
    let killed_at = chrono::Utc::now().timestamp_millis();
    let doc = kit::eventually(
        Duration::from_secs(10),
        "the killed run's record",
        || async { env.logs("long").await.into_iter().next() },
    )
    .await;
    assert_eq!(string(&doc, "status"), "killed", "{doc}");
    assert!(int(&doc, "endTime") - killed_at < 3000, "ended at once");
    assert!(
        env.keys_under("warn/long/").await.is_empty(),
        "a requested kill is not a failure"
    );
    assert_eq!(env.get("lock/long").await, None, "lock released");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_never_overlaps_and_allow_does() {
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    env.put_job(r#"{"name":"forbid","command":"sleep 2.5","cronExpr":"* * * * * * *"}"#)
        .await;
    env.put_job(r#"{"name":"allow","command":"sleep 2.5","cronExpr":"* * * * * * *","concurrency":"allow"}"#).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    env.delete_job("forbid").await;
    env.delete_job("allow").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.stop().await;
    let overlaps = |docs: &[mongodb::bson::Document]| {
        let mut spans: Vec<(i64, i64)> = docs
            .iter()
            .map(|d| (int(d, "startTime"), int(d, "endTime")))
            .collect();
        spans.sort();
        spans.windows(2).filter(|p| p[1].0 < p[0].1).count()
    };
    let forbid = env.logs("forbid").await;
    let allow = env.logs("allow").await;
    assert!(forbid.len() >= 2, "forbid ran: {}", forbid.len());
    assert_eq!(overlaps(&forbid), 0, "forbid runs never overlap");
    assert!(
        allow.len() > forbid.len(),
        "allow runs each tick: {} vs {}",
        allow.len(),
        forbid.len()
    );
    assert!(overlaps(&allow) > 0, "allow runs overlap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outage_of_20s_loses_no_run_record() {
    let mut mongo = kit::ServerProcess::mongo();
    let mut env = Env::new();
    env.mongo_uri = format!("mongodb://{}", mongo.addr());
    let w = InProcess::start(env.config("w1"));
    env.put_job(r#"{"name":"steady","command":"echo ok","cronExpr":"* * * * * * *"}"#)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    mongo.stop();
    tokio::time::sleep(Duration::from_secs(20)).await;
    mongo.start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.delete_job("steady").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop().await;

    let docs = env.logs("steady").await;
    let plans: Vec<i64> = docs.iter().map(|d| int(d, "planTime")).collect();
    assert!(
        plans.len() >= 24,
        "about 26 runs recorded, got {}",
        plans.len()
    );
    for pair in plans.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "record missing between {} and {}",
            pair[0],
            pair[1]
        );
    }
    println!(
        "runs recorded across a 20 s MongoDB outage: {}, lost: 0",
        plans.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spilled_at_shutdown_are_sent_by_the_next_start() {
    let mut mongo = kit::ServerProcess::mongo();
    let mut env = Env::new();
    env.mongo_uri = format!("mongodb://{}", mongo.addr());
    let cfg = env.config("w1");
    let w = InProcess::start(cfg.clone());
    env.put_job(r#"{"name":"spilly","command":"echo ok","cronExpr":"* * * * * * *"}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    mongo.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    env.delete_job("spilly").await;
    w.stop().await; // MongoDB is down: the records go to the spill directory
    let spilled = std::fs::read_dir(&cfg.spill_dir)
        .expect("spill dir")
        .count();
    assert!(spilled >= 1, "records spilled to disk");
    mongo.start();
    let again = InProcess::start(cfg.clone());
    let docs = kit::eventually(
        Duration::from_secs(20),
        "spilled records to arrive",
        || async {
            let docs = env.logs("spilly").await;
            (docs.len() >= 4).then_some(docs)
        },
    )
    .await;
    let plans: Vec<i64> = docs.iter().map(|d| int(d, "planTime")).collect();
    for pair in plans.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "record missing between {} and {}",
            pair[0],
            pair[1]
        );
    }
    again.stop().await;
    let left = std::fs::read_dir(&cfg.spill_dir)
        .expect("spill dir")
        .count();
    assert_eq!(left, 0, "spill files removed once sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_carries_the_worker_record_and_goes_away_on_shutdown() {
    let env = Env::new();
    let mut cfg = env.config("reg-1");
    cfg.max_concurrency = 7;
    let w = InProcess::start(cfg);
    env.put_job(r#"{"name":"napper","command":"sleep 3","cronExpr":"* * * * * * *"}"#)
        .await;
    let info = kit::eventually(
        Duration::from_secs(10),
        "registration listing a running job",
        || async {
            let raw = env.get("workers/reg-1").await?;
            let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
            (v["running"] == serde_json::json!(["napper"])).then_some(v)
        },
    )
    .await;
    assert_eq!(info["id"], "reg-1");
    assert_eq!(info["capacity"], 7);
    assert_eq!(info["ip"], "127.0.0.1");
    assert_eq!(info["pid"], std::process::id());
    assert!(info["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    env.delete_job("napper").await;
    w.stop().await;
    assert_eq!(
        env.get("workers/reg-1").await,
        None,
        "unregistered at shutdown"
    );
    let docs = env.logs("napper").await;
    assert!(
        docs.iter().all(|d| string(d, "status") == "success"),
        "runs drained before stopping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_runs_still_going_after_the_drain_time() {
    let env = Env::new();
    let mut cfg = env.config("drainer");
    cfg.drain_secs = 1;
    let w = InProcess::start(cfg);
    env.put_job(r#"{"name":"endless","command":"sleep 300","cronExpr":"* * * * * * *"}"#)
        .await;
    kit::eventually(Duration::from_secs(10), "the run to start", || async {
        env.get("lock/endless").await
    })
    .await;
    let started = std::time::Instant::now();
    w.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let docs = env.logs("endless").await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(string(&docs[0], "status"), "killed");
    assert!(string(&docs[0], "err").contains("shut down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_loses_its_lock_with_its_lease_and_another_runs_the_next_tick() {
    let env = Env::new();
    let cfg = env.config("victim");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcron-worker"))
        .env("RCRON_WORKER_ID", "victim")
        .env("RCRON_ETCD_ENDPOINTS", &env.etcd_endpoint)
        .env("RCRON_ETCD_PREFIX", &env.prefix)
        .env("RCRON_MONGO_URI", &env.mongo_uri)
        .env("RCRON_MONGO_DB", &env.db)
        .env("RCRON_SPILL_DIR", &cfg.spill_dir)
        .env("RCRON_METRICS_LISTEN", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rcron-worker");
    env.put_job(r#"{"name":"hog","command":"sleep 6","cronExpr":"*/2 * * * * * *"}"#)
        .await;
    let holder = kit::eventually(
        Duration::from_secs(15),
        "the victim to hold the lock",
        || async { env.get("lock/hog").await },
    )
    .await;
    let holder: serde_json::Value = serde_json::from_slice(&holder).expect("holder json");
    assert_eq!(holder["worker"], "victim");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed_at = std::time::Instant::now();
    let survivor = InProcess::start(env.config("survivor"));
    kit::eventually(
        Duration::from_secs(15),
        "the dead worker's lock to expire",
        || async {
            match env.get("lock/hog").await {
                None => Some(()),
                Some(v) => serde_json::from_slice::<serde_json::Value>(&v)
                    .ok()
                    .filter(|h| h["worker"] == "survivor")
                    .map(|_| ()),
            }
        },
    )
    .await;
    // Default lease TTL is 10 s: the lock goes at most that long after the kill.
    assert!(
        killed_at.elapsed() < Duration::from_secs(13),
        "{:?}",
        killed_at.elapsed()
    );
    kit::eventually(
        Duration::from_secs(20),
        "a run on the surviving worker",
        || async {
            env.logs("hog")
                .await
                .into_iter()
                .find(|d| string(d, "worker") == "survivor")
        },
    )
    .await;
    env.delete_job("hog").await;
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_resyncs_jobs_and_registration() {
    let mut etcd = kit::ServerProcess::etcd();
    let mut env = Env::new();
    env.etcd_endpoint = etcd.addr();
    let w = InProcess::start(env.config("phoenix"));
    env.put_job(r#"{"name":"before","command":"echo before","cronExpr":"* * * * * * *"}"#)
        .await;
    kit::eventually(
        Duration::from_secs(10),
        "a run before the outage",
        || async { env.logs("before").await.into_iter().next() },
    )
    .await;
    etcd.stop();
    // Longer than the 3 s session lease: the worker must register again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    etcd.start();
    // Changes made after the outage reach the worker through a fresh list + watch.
    kit::eventually(
        Duration::from_secs(30),
        "etcd to accept writes again",
        || async {
            let mut c = etcd_client::Client::connect([env.etcd_endpoint.as_str()], None)
                .await
                .ok()?;
            c.put(
                format!("{}jobs/after", env.prefix),
                r#"{"name":"after","command":"echo after","cronExpr":"* * * * * * *"}"#,
                None,
            )
            .await
            .ok()
        },
    )
    .await;
    env.delete_job("before").await;
    kit::eventually(
        Duration::from_secs(30),
        "the worker registered again",
        || async { env.get("workers/phoenix").await },
    )
    .await;
    let after = kit::eventually(
        Duration::from_secs(30),
        "runs of the job saved after the outage",
        || async {
            let docs = env.logs("after").await;
            (docs.len() >= 3).then_some(docs)
        },
    )
    .await;
    env.delete_job("after").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_count = env.logs("before").await.len();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        env.logs("before").await.len(),
        before_count,
        "the job deleted after the outage stopped firing"
    );
    let plans: Vec<i64> = after.iter().map(|d| int(d, "planTime")).collect();
    let mut unique = plans.clone();
    unique.dedup();
    assert_eq!(plans, unique, "no tick doubled after the re-sync");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_collection_gets_its_query_and_ttl_indexes() {
    use futures::TryStreamExt;
    let env = Env::new();
    let w = InProcess::start(env.config("indexer"));
    env.put_job(r#"{"name":"ix","command":"true","cronExpr":"* * * * * * *"}"#)
        .await;
    let doc = kit::eventually(Duration::from_secs(10), "a run record", || async {
        env.logs("ix").await.into_iter().next()
    })
    .await;
    env.delete_job("ix").await;
    w.stop().await;
    let expire = doc.get_datetime("expireAt").expect("expireAt is a date");
    let days = (expire.timestamp_millis() - int(&doc, "endTime")) / 86_400_000;
    assert_eq!(days, 30, "kept for the default retention");
    let client = mongodb::Client::with_uri_str(&env.mongo_uri)
        .await
        .expect("mongo");
    let indexes: Vec<mongodb::IndexModel> = client
        .database(&env.db)
        .collection::<mongodb::bson::Document>("log")
        .list_indexes()
        .await
        .expect("list indexes")
        .try_collect()
        .await
        .expect("indexes");
    let keys: Vec<String> = indexes.iter().map(|i| i.keys.to_string()).collect();
    // The index is created as {jobName: 1, startTime: -1, runId: -1,
    // attempt: -1} (the page order); nx-27017 (the MongoDB-wire test server)
    // reports every direction as 1, so only the fields and their order are
    // checked.
    let query_index = indexes
        .iter()
        .find(|i| i.keys.contains_key("jobName"))
        .unwrap_or_else(|| panic!("{keys:?}"));
    let fields: Vec<&str> = query_index.keys.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        vec!["jobName", "startTime", "runId", "attempt"],
        "{keys:?}"
    );
    assert!(
        indexes.iter().any(|i| i.keys.keys().eq(["runId"].iter())),
        "one run's attempts: {keys:?}"
    );
    let ttl = indexes
        .iter()
        .find(|i| i.keys.contains_key("expireAt"))
        .unwrap_or_else(|| panic!("no TTL index in {keys:?}"));
    let after = ttl.options.as_ref().and_then(|o| o.expire_after);
    assert_eq!(
        after,
        Some(Duration::ZERO),
        "documents expire at their expireAt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_runs_and_a_firing_lag_histogram_that_moves() {
    let env = Env::new();
    let mut cfg = env.config("metered");
    let port = kit::free_port();
    cfg.http_listen = format!("127.0.0.1:{port}");
    let w = InProcess::start(cfg);
    let http = kit::http_client();
    let base = format!("http://127.0.0.1:{port}");
    kit::eventually(
        Duration::from_secs(10),
        "ready (etcd session up)",
        || async {
            let r = http.get(format!("{base}/readyz")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    env.put_job(r#"{"name":"metered","command":"true","cronExpr":"* * * * * * *"}"#)
        .await;
    env.put_job(r#"{"name":"sad","command":"exit 1","cronExpr":"* * * * * * *"}"#)
        .await;
    let count = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let first = kit::eventually(
        Duration::from_secs(10),
        "a firing-lag observation",
        || async {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (count(&text, "rcron_worker_fire_lag_seconds_count") >= 2).then_some(text)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let later = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    env.delete_job("metered").await;
    env.delete_job("sad").await;
    assert!(
        count(&later, "rcron_worker_fire_lag_seconds_count")
            >= count(&first, "rcron_worker_fire_lag_seconds_count") + 4,
        "the lag histogram moves as jobs run:\n{later}"
    );
    assert!(
        count(&later, "rcron_worker_runs_total{status=\"success\"}") >= 2,
        "{later}"
    );
    assert!(
        count(&later, "rcron_worker_runs_total{status=\"failed\"}") >= 2,
        "{later}"
    );
    assert_eq!(count(&later, "rcron_worker_jobs"), 2, "{later}");
    assert!(
        later.contains("rcron_worker_fire_lag_seconds_bucket{le=\"0.01\"}"),
        "{later}"
    );
    assert!(
        later.contains("# TYPE rcron_worker_spill_bytes gauge"),
        "{later}"
    );
    assert!(
        later.contains("rcron_worker_lock_conflicts_total"),
        "{later}"
    );
    assert!(later.contains("rcron_worker_log_buffer_records"), "{later}");
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_now_request_runs_a_paused_job_once_on_one_of_two_workers() {
    let env = Env::new();
    let a = InProcess::start(env.config("ra"));
    let b = InProcess::start(env.config("rb"));
    env.put_job(
        r#"{"name":"adhoc","command":"echo by hand","cronExpr":"0 0 1 1 * 2099","disabled":true}"#,
    )
    .await;
    kit::eventually(
        Duration::from_secs(10),
        "both workers registered",
        || async { (env.keys_under("workers/").await.len() == 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut etcd = env.etcd().await;
    let request = rcron_shared::RunRequest::manual(
        rcron_shared::JobName::new("adhoc").expect("name"),
        rcron_shared::RunParams::default(),
        chrono::Utc::now().timestamp_millis(),
        60,
    );
    let key = format!("run/adhoc/{}", request.id);
    etcd.put(format!("{}{key}", env.prefix), request.to_json(), None)
        .await
        .expect("request");
    let doc = kit::eventually(Duration::from_secs(10), "the requested run", || async {
        env.logs("adhoc").await.into_iter().next()
    })
    .await;
    assert_eq!(string(&doc, "output"), "by hand\n");
    assert_eq!(string(&doc, "trigger"), "manual");
    kit::eventually(
        Duration::from_secs(5),
        "the request to be done with",
        || async { env.get(&key).await.is_none().then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.logs("adhoc").await.len(), 1, "run once, by one worker");
    a.stop().await;
    b.stop().await;
}

/// Whether `pid` is a live process (a zombie awaiting its reaper is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn spawn_worker_binary(env: &Env, spill_dir: &std::path::Path) -> std::process::Child {
    // No worker id: like a default install, each start gets `hostname-pid`.
    Command::new(env!("CARGO_BIN_EXE_rcron-worker"))
        .env("RCRON_ETCD_ENDPOINTS", &env.etcd_endpoint)
        .env("RCRON_ETCD_PREFIX", &env.prefix)
        .env("RCRON_MONGO_URI", &env.mongo_uri)
        .env("RCRON_MONGO_DB", &env.db)
        .env("RCRON_SPILL_DIR", spill_dir)
        .env("RCRON_METRICS_LISTEN", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rcron-worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sigkilled_mid_run_has_the_run_killed_and_logged_by_its_next_start() {
    let env = Env::new();
    let spill_dir = env.spill_root.join("shared");
    std::fs::create_dir_all(&env.spill_root).expect("dir");
    let pidfile = env.spill_root.join("sleeper.pid");
    let mut first = spawn_worker_binary(&env, &spill_dir);
    let job = format!(
        r#"{{"name":"orphan","command":"sleep 300 & echo $! > {}; wait","cronExpr":"*/2 * * * * * *"}}"#,
        pidfile.display()
    );
    env.put_job(&job).await;
    let pid: i32 = kit::eventually(Duration::from_secs(15), "the run to start", || async {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    })
    .await;
    // No further tick: only the interrupted run is in play.
    env.put_job(&job.replace(r#""cronExpr""#, r#""disabled":true,"cronExpr""#))
        .await;
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    assert!(
        alive(pid),
        "the command outlives a SIGKILLed worker (its own process group)"
    );
    assert!(
        env.logs("orphan").await.is_empty(),
        "nothing logged by the dead worker"
    );

    let mut second = spawn_worker_binary(&env, &spill_dir);
    let docs = kit::eventually(
        Duration::from_secs(20),
        "the interrupted run in the log",
        || async {
            let docs = env.logs("orphan").await;
            (!docs.is_empty()).then_some(docs)
        },
    )
    .await;
    kit::eventually(
        Duration::from_secs(10),
        "the leftover command to be killed",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    let warnings = kit::eventually(Duration::from_secs(10), "a warning", || async {
        let keys = env.keys_under("warn/orphan/").await;
        (!keys.is_empty()).then_some(keys)
    })
    .await;
    second.kill().expect("SIGKILL");
    let _ = second.wait();

    assert_eq!(docs.len(), 1, "one record for the one run: {docs:?}");
    let doc = &docs[0];
    assert_eq!(string(doc, "status"), "interrupted");
    assert!(
        string(doc, "err").contains("interrupted") && string(doc, "err").contains("was killed"),
        "{doc:?}"
    );
    assert_eq!(int(doc, "planTime") % 2000, 0);
    assert!(int(doc, "endTime") >= int(doc, "startTime"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].ends_with(&string(doc, "runId")),
        "the warning is about that run: {warnings:?}"
    );
}
