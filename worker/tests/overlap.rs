//! Never two runs of a `forbid` job at once, and nothing dropped, against
//! real etcd (some tests start their own, to stall it with SIGSTOP or to
//! count its writes) and a real MongoDB-wire server: graceful drains,
//! etcd stalls, full workers, kills by run id.
//!
//! Overlap is judged twice: from the run log (each run starts after the
//! previous one ended) and on the host, by a marker directory each command
//! takes with `mkdir` and gives back with `rmdir` (a second run that finds
//! it taken writes to an `overlaps` file).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Env, InProcess, int, string};
use mongodb::bson::Document;
use rcron_testkit::{self as kit, ServerProcess};

/// A shell command that takes the host marker in `dir`, sleeps, gives it
/// back (also when it is stopped with SIGTERM).
fn guarded(dir: &Path, sleep: &str) -> String {
    format!(
        "mkdir {d}/held 2>/dev/null || echo overlap >> {d}/overlaps; trap 'rmdir {d}/held; exit 143' TERM; echo started >> {d}/starts; sleep {sleep}; rmdir {d}/held",
        d = dir.display()
    )
}

/// Every record of a job, oldest start first, checked for overlap.
fn assert_no_overlap(docs: &[Document], dir: &Path) {
    let mut runs: Vec<(i64, i64, String)> = docs
        .iter()
        .map(|d| (int(d, "startTime"), int(d, "endTime"), string(d, "worker")))
        .collect();
    runs.sort();
    for pair in runs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs overlapped: {:?} started before {:?} ended",
            pair[1],
            pair[0]
        );
    }
    assert!(
        !dir.join("overlaps").exists(),
        "a run found the host marker taken by another run"
    );
}

fn starts(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("starts"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn marker_dir(env: &Env) -> std::path::PathBuf {
    let dir = env.spill_root.join("marker");
    std::fs::create_dir_all(&dir).expect("marker dir");
    dir
}

async fn registration(env: &Env, worker: &str) -> Option<serde_json::Value> {
    let raw = env.get(&format!("workers/{worker}")).await?;
    serde_json::from_slice(&raw).ok()
}

/// An environment on a private etcd (the test may stall it or count its writes).
fn private_env(etcd: &ServerProcess) -> Env {
    Env {
        etcd_endpoint: etcd.addr(),
        ..Env::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_keeps_lock_and_registration_until_the_run_ends_and_writes_etcd_a_few_times() {
    let etcd = ServerProcess::etcd();
    let env = private_env(&etcd);
    let dir = marker_dir(&env);
    let mut cfg = env.config("drain-1");
    cfg.drain_secs = 30;
    let w = InProcess::start(cfg);
    env.put_job(&format!(
        r#"{{"name":"long","command":"{}","cronExpr":"* * * * * * *"}}"#,
        guarded(&dir, "4")
    ))
    .await;
    kit::eventually(Duration::from_secs(10), "the run to start", || async {
        (starts(&dir) == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = kit::etcd_metric(&etcd.addr(), "etcd_server_proposals_committed_total").await;
    let asked = Instant::now();
    w.token.cancel();
    let draining = kit::eventually(
        Duration::from_secs(5),
        "registration marked draining",
        || async {
            let v = registration(&env, "drain-1").await?;
            (v["draining"] == true).then_some(v)
        },
    )
    .await;
    assert_eq!(draining["running"], serde_json::json!(["long"]));
    assert_eq!(draining["runs"][0]["job"], "long");
    let holder = env
        .get("lock/long")
        .await
        .expect("the lock is kept while the run drains");
    let holder: serde_json::Value = serde_json::from_slice(&holder).expect("holder json");
    assert_eq!(holder["worker"], "drain-1");
    tokio::time::timeout(Duration::from_secs(30), w.handle)
        .await
        .expect("the worker stops once its run ended")
        .expect("join")
        .expect("worker ran without error");
    let drained_in = asked.elapsed();
    let after = kit::etcd_metric(&etcd.addr(), "etcd_server_proposals_committed_total").await;
    let writes = after - before;
    eprintln!(
        "drain of one run: {drained_in:?}, etcd proposals during the drain: {writes} ({:.1}/s)",
        writes / drained_in.as_secs_f64()
    );
    assert_eq!(starts(&dir), 1, "no new run while draining");
    assert_eq!(
        env.get("lock/long").await,
        None,
        "lock released when the run ended"
    );
    assert_eq!(
        env.get("workers/drain-1").await,
        None,
        "unregistered once, at the end"
    );
    let docs = env.logs("long").await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(
        string(&docs[0], "status"),
        "success",
        "the run finished, not killed"
    );
    // Registration (draining), lock release, registration (no runs), lease
    // revoke: a constant few, not a storm.
    assert!(
        writes <= 10.0,
        "etcd writes during a one-run drain: {writes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_of_the_running_worker_never_overlaps_a_forbid_run() {
    let env = Env::new();
    let dir = marker_dir(&env);
    let mut a_cfg = env.config("gr-a");
    a_cfg.drain_secs = 30;
    let mut b_cfg = env.config("gr-b");
    b_cfg.drain_secs = 30;
    let mut workers = vec![
        ("gr-a", Some(InProcess::start(a_cfg))),
        ("gr-b", Some(InProcess::start(b_cfg))),
    ];
    // Runs longer than its interval: every tick finds the previous run going.
    env.put_job(&format!(
        r#"{{"name":"slow","command":"{}","cronExpr":"*/2 * * * * * *"}}"#,
        guarded(&dir, "5")
    ))
    .await;
    let holder = kit::eventually(
        Duration::from_secs(15),
        "a run holding the lock",
        || async {
            let raw = env.get("lock/slow").await?;
            let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
            v["worker"].as_str().map(str::to_string)
        },
    )
    .await;
    // SIGTERM (the README's upgrade procedure) on the worker running it.
    let victim = workers
        .iter_mut()
        .find(|(id, _)| *id == holder)
        .expect("holder is ours");
    let draining = victim.1.take().expect("running");
    draining.token.cancel();
    tokio::time::timeout(Duration::from_secs(30), draining.handle)
        .await
        .expect("drained")
        .expect("join")
        .expect("worker ran without error");
    // The other worker takes over after the run ended.
    tokio::time::sleep(Duration::from_secs(8)).await;
    env.delete_job("slow").await;
    for (_, w) in workers {
        if let Some(w) = w {
            w.stop().await;
        }
    }
    let docs = env.logs("slow").await;
    let by: Vec<String> = docs.iter().map(|d| string(d, "worker")).collect();
    assert!(
        by.contains(&holder) && by.iter().any(|w| *w != holder),
        "both workers ran it: {by:?}"
    );
    assert!(
        docs.iter().all(|d| string(d, "status") == "success"),
        "{docs:?}"
    );
    assert_no_overlap(&docs, &dir);
    // The ticks that found a run going are logged as such, never as well
    // as run.
    let verdicts = env.verdicts("slow").await;
    let ran: std::collections::BTreeSet<i64> = docs.iter().map(|d| int(d, "planTime")).collect();
    for v in &verdicts {
        assert_eq!(string(v, "status"), "skipped", "{v:?}");
        assert_eq!(
            string(v, "reason"),
            "overlap: the previous run was still going"
        );
        assert!(
            !ran.contains(&int(v, "planTime")),
            "a tick both ran and was skipped: {v:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_stall_past_the_lease_stops_the_run_before_its_lock_could_expire() {
    let etcd = ServerProcess::etcd();
    let env = private_env(&etcd);
    let dir = marker_dir(&env);
    let mut cfg = env.config("stall-1");
    // The production lease.
    cfg.lease_ttl_secs = 10;
    cfg.etcd.request_timeout_secs = 1;
    let w = InProcess::start(cfg);
    env.put_job(&format!(
        r#"{{"name":"held","command":"{}","cronExpr":"* * * * * * *"}}"#,
        guarded(&dir, "30")
    ))
    .await;
    kit::eventually(Duration::from_secs(10), "the run to start", || async {
        (starts(&dir) == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcd.pause();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let resumed = chrono::Utc::now().timestamp_millis();
    etcd.resume();
    // The next runs start after the stall; the first must have ended before.
    kit::eventually(Duration::from_secs(20), "a run after the stall", || async {
        (starts(&dir) >= 2).then_some(())
    })
    .await;
    env.delete_job("held").await;
    w.stop().await;
    let docs = env.logs("held").await;
    let first = docs.first().expect("the first run is logged");
    assert_eq!(string(first, "status"), "killed", "{first}");
    assert_eq!(string(first, "reason"), "lock lost", "{first}");
    assert!(
        int(first, "endTime") < resumed,
        "stopped during the stall, before etcd could expire its lock: {first}"
    );
    assert_no_overlap(&docs, &dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_stall_shorter_than_the_lease_costs_the_run_nothing() {
    let etcd = ServerProcess::etcd();
    let env = private_env(&etcd);
    let dir = marker_dir(&env);
    let mut cfg = env.config("stall-2");
    cfg.lease_ttl_secs = 10;
    let w = InProcess::start(cfg);
    env.put_job(&format!(
        r#"{{"name":"kept","command":"{}","cronExpr":"* * * * * * *"}}"#,
        guarded(&dir, "9")
    ))
    .await;
    kit::eventually(Duration::from_secs(10), "the run to start", || async {
        (starts(&dir) == 1).then_some(())
    })
    .await;
    etcd.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    etcd.resume();
    kit::eventually(Duration::from_secs(20), "the run to finish", || async {
        (!env.logs("kept").await.is_empty()).then_some(())
    })
    .await;
    env.delete_job("kept").await;
    w.stop().await;
    let docs = env.logs("kept").await;
    assert_eq!(string(&docs[0], "status"), "success", "{:?}", docs[0]);
    assert_no_overlap(&docs, &dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_runs_every_job_in_turn() {
    let env = Env::new();
    let mut cfg = env.config("full-1");
    cfg.max_concurrency = 1;
    let w = InProcess::start(cfg);
    // Saved first, so it came first in every batch; each run takes most of
    // the only slot's second.
    for name in ["first", "second"] {
        env.put_job(&format!(
            r#"{{"name":"{name}","command":"sleep 0.6","cronExpr":"* * * * * * *"}}"#
        ))
        .await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    env.delete_job("first").await;
    env.delete_job("second").await;
    w.stop().await;
    let first = env.logs("first").await;
    let second = env.logs("second").await;
    eprintln!(
        "one slot, two jobs every second for 10 s: first ran {}, second ran {}",
        first.len(),
        second.len()
    );
    assert!(first.len() >= 3, "first ran {}", first.len());
    assert!(
        second.len() >= 3,
        "second is not starved: it ran {}",
        second.len()
    );
    let mut all: Vec<Document> = first.into_iter().chain(second).collect();
    all.sort_by_key(|d| int(d, "startTime"));
    for pair in all.windows(2) {
        assert!(
            int(&pair[1], "startTime") >= int(&pair[0], "endTime"),
            "one slot: runs one at a time"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_killed_by_id_while_other_runs_of_its_job_go_on() {
    let env = Env::new();
    let w = InProcess::start(env.config("kr-1"));
    env.put_job(
        r#"{"name":"many","command":"sleep 30","cronExpr":"* * * * * * *","concurrency":"allow"}"#,
    )
    .await;
    let runs = kit::eventually(Duration::from_secs(10), "two runs going", || async {
        let v = registration(&env, "kr-1").await?;
        let runs = v["runs"].as_array()?.clone();
        (runs.len() >= 2).then_some(runs)
    })
    .await;
    env.put_job(r#"{"name":"many","command":"sleep 30","cronExpr":"* * * * * * *","concurrency":"allow","disabled":true}"#)
        .await;
    let victim = runs[0]["runId"].as_str().expect("run id").to_string();
    let survivor = runs[1]["runId"].as_str().expect("run id").to_string();
    env.etcd()
        .await
        .put(format!("{}killrun/{victim}", env.prefix), "", None)
        .await
        .expect("put kill request");
    let doc = kit::eventually(Duration::from_secs(10), "the killed run logged", || async {
        env.logs("many")
            .await
            .into_iter()
            .find(|d| string(d, "runId") == victim)
    })
    .await;
    let still = registration(&env, "kr-1").await.expect("registered");
    let going: Vec<&str> = still["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["runId"].as_str())
        .collect();
    // Then a job deleted while it runs can still be killed by name.
    env.delete_job("many").await;
    env.etcd()
        .await
        .put(format!("{}killer/many", env.prefix), "", None)
        .await
        .expect("put kill request");
    kit::eventually(Duration::from_secs(10), "every run killed", || async {
        let v = registration(&env, "kr-1").await?;
        v["runs"].as_array()?.is_empty().then_some(())
    })
    .await;
    w.stop().await;
    assert_eq!(string(&doc, "status"), "killed");
    assert_eq!(string(&doc, "reason"), "killed on request");
    assert!(
        going.contains(&survivor.as_str()),
        "the other run went on: {going:?}"
    );
    let docs = env.logs("many").await;
    assert!(
        docs.iter().all(|d| string(d, "status") == "killed"),
        "the deleted job's runs were killed too: {docs:?}"
    );
}
