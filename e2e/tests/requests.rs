//! Run requests and chains on a cluster of real processes (masters and
//! workers from `rcron-node`, real etcd, real MongoDB-wire): a run-now
//! request waits for a held lock and runs once, one that cannot start by
//! its deadline is recorded `skipped`, requests outlive restarts of every
//! worker and of etcd, and a chain A → B → C runs each job once per run of
//! A although the worker that ran A is SIGKILLed as A ends.

// Shared with the chaos suite; not every helper is used here.
#[allow(dead_code)]
#[path = "chaos/harness.rs"]
mod harness;

use std::time::Duration;

use futures::TryStreamExt;
use harness::{Cluster, Services, WorkerTuning, int};
use mongodb::bson::{Document, doc};
use rcron_testkit::{self as kit, ServerProcess};
use serde_json::{Value, json};

/// One scenario at a time: each runs a cluster of processes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every record of `job`, oldest start first.
async fn job_records(c: &Cluster, job: &str) -> Vec<Document> {
    let client = mongodb::Client::with_uri_str(&c.mongo_uri)
        .await
        .expect("mongo client");
    let mut docs: Vec<Document> = client
        .database(&c.db)
        .collection::<Document>("log")
        .find(doc! {"jobName": job})
        .await
        .expect("query the run log")
        .try_collect()
        .await
        .expect("read the run log");
    docs.sort_by_key(|d| int(d, "startTime"));
    docs
}

/// Waits until `job` has at least `n` records; returns them.
async fn wait_records(c: &Cluster, job: &str, n: usize, within: Duration) -> Vec<Document> {
    let what = format!("{n} record(s) of {job}");
    kit::eventually(within, &what, || async {
        let docs = job_records(c, job).await;
        (docs.len() >= n).then_some(docs)
    })
    .await
}

/// `POST /api/v1/jobs/{job}/run` with `body`; the answer.
async fn run_now(c: &Cluster, job: &str, body: Value) -> Value {
    let resp = c
        .http
        .post(format!("{}/api/v1/jobs/{job}/run", c.api()))
        .json(&body)
        .send()
        .await
        .expect("POST run");
    assert_eq!(resp.status().as_u16(), 202, "run-now of {job} accepted");
    resp.json().await.expect("JSON answer")
}

/// The run requests waiting in etcd.
async fn pending_requests(c: &Cluster) -> Vec<Value> {
    let mut etcd = etcd_client::Client::connect(&c.etcd, None)
        .await
        .expect("etcd");
    let resp = etcd
        .get(
            format!("{}run/", c.prefix),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("list requests");
    resp.kvs()
        .iter()
        .map(|kv| serde_json::from_slice(kv.value()).expect("request JSON"))
        .collect()
}

fn text(d: &Document, field: &str) -> String {
    d.get_str(field).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_now_request_waits_for_the_held_lock_then_runs_once_and_one_past_its_deadline_is_skipped()
 {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start(Services::shared(), 1, 2).await;
    // Paused: only requests run it. `forbid` (the default): never two at once.
    let slow = json!({"name": "slow", "command": "sleep 3; echo \"target=$TARGET\"",
        "cronExpr": "@yearly", "disabled": true});
    c.put_jobs(&[slow]).await;

    let first = run_now(&c, "slow", json!({})).await;
    wait_records_started(&c, "slow").await;
    // The lock is held: this one waits, then runs with its own variables.
    let second = run_now(&c, "slow", json!({"env": {"TARGET": "eu-1"}})).await;
    // Too short a deadline to outlast the first run and the second: skipped.
    let third = run_now(&c, "slow", json!({"deadlineSecs": 2})).await;

    let docs = wait_records(&c, "slow", 3, Duration::from_secs(40)).await;
    let runs: Vec<&Document> = docs
        .iter()
        .filter(|d| text(d, "status") != "skipped")
        .collect();
    let skipped: Vec<&Document> = docs
        .iter()
        .filter(|d| text(d, "status") == "skipped")
        .collect();
    assert_eq!(runs.len(), 2, "two runs: {docs:#?}");
    assert_eq!(skipped.len(), 1, "one skipped: {docs:#?}");
    for r in &runs {
        assert_eq!(text(r, "status"), "success", "{r:#?}");
        assert_eq!(text(r, "trigger"), "manual", "{r:#?}");
    }
    assert!(
        int(runs[1], "startTime") >= int(runs[0], "endTime"),
        "the waiting request started after the first run ended: {runs:#?}"
    );
    let params = runs[1].get_document("params").expect("params recorded");
    assert_eq!(
        params.get_document("env").expect("env").get_str("TARGET"),
        Ok("eu-1")
    );
    assert!(
        text(runs[1], "output").contains("target=eu-1"),
        "the run saw its variable: {:#?}",
        runs[1]
    );
    assert_eq!(
        text(skipped[0], "runId"),
        third["requestId"].as_str().unwrap_or_default()
    );
    let reason = text(skipped[0], "reason");
    assert!(
        reason.contains("not started within 2 s") && reason.contains("lock"),
        "the reason says what held it: {reason}"
    );
    assert_ne!(first["requestId"], second["requestId"]);
    kit::eventually(
        Duration::from_secs(10),
        "every request to be gone",
        || async { pending_requests(&c).await.is_empty().then_some(()) },
    )
    .await;
}

/// Waits until a run of `job` is listed by a worker.
async fn wait_records_started(c: &Cluster, job: &str) {
    kit::eventually(Duration::from_secs(20), "the run to start", || async {
        let resp = c
            .http
            .get(format!("{}/api/v1/workers", c.api()))
            .send()
            .await
            .ok()?;
        let body: Value = resp.json().await.ok()?;
        let running = body["workers"]
            .as_array()?
            .iter()
            .flat_map(|w| w["runs"].as_array().cloned().unwrap_or_default())
            .any(|r| r["job"] == job);
        running.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_while_every_worker_is_down_survives_an_etcd_restart_and_runs_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut etcd = ServerProcess::etcd();
    let mut c = Cluster::start(
        Services {
            etcd: vec![etcd.addr()],
            mongo_uri: kit::mongo_uri(),
        },
        1,
        2,
    )
    .await;
    c.put_jobs(&[json!({"name": "later", "command": "echo ran",
        "cronExpr": "@yearly", "disabled": true})])
        .await;
    for w in &mut c.workers {
        w.kill();
    }
    let asked = run_now(&c, "later", json!({"env": {"WHY": "outage"}})).await;
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    etcd.start();
    assert_eq!(
        kit::eventually(
            Duration::from_secs(20),
            "etcd back with the request",
            || async {
                let p = pending_requests(&c).await;
                (!p.is_empty()).then_some(p)
            }
        )
        .await[0]["id"],
        asked["requestId"]
    );
    for w in &mut c.workers {
        w.start();
    }
    let docs = wait_records(&c, "later", 1, Duration::from_secs(40)).await;
    // Both workers saw it: still one run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let docs_after = job_records(&c, "later").await;
    assert_eq!(docs_after.len(), 1, "one run: {docs_after:#?}");
    assert_eq!(text(&docs[0], "status"), "success");
    assert_eq!(text(&docs[0], "output").trim(), "ran");
    assert!(
        pending_requests(&c).await.is_empty(),
        "the request is done with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_a_b_c_runs_each_once_per_run_of_a_although_its_worker_is_sigkilled_as_a_ends() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start_with(
        Services::shared(),
        1,
        2,
        WorkerTuning {
            lease_secs: 3,
            ..WorkerTuning::default()
        },
    )
    .await;
    let flag = c.dir.join("a-ended");
    let jobs = [
        json!({"name": "chain-c", "command": "echo c", "cronExpr": "@yearly", "disabled": true}),
        json!({"name": "chain-b", "command": "sleep 1; echo b", "cronExpr": "@yearly",
            "disabled": true, "onSuccess": ["chain-c"]}),
        // On w1 only, the worker killed below.
        json!({"name": "chain-a", "command": format!("sleep 1; echo a; touch {}", flag.display()),
            "cronExpr": "@yearly", "disabled": true, "onSuccess": ["chain-b"],
            "target": {"labels": {"node": "w1"}}}),
        // A chained job that does not exist: reported, not a crash.
        json!({"name": "chain-broken", "command": "true", "cronExpr": "@yearly",
            "disabled": true, "onSuccess": ["chain-ghost"]}),
    ];
    c.put_jobs(&jobs).await;
    let rounds = 3;
    for round in 0..rounds {
        let _ = std::fs::remove_file(&flag);
        run_now(&c, "chain-a", json!({})).await;
        kit::eventually(Duration::from_secs(20), "A's command to end", || async {
            flag.exists().then_some(())
        })
        .await;
        // As A ends (before, during or after its end reaches etcd), its
        // worker dies; it comes back a moment later.
        tokio::time::sleep(Duration::from_millis(30 * round as u64)).await;
        c.workers[0].kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.workers[0].start();
        wait_records(&c, "chain-a", round + 1, Duration::from_secs(30)).await;
    }
    run_now(&c, "chain-broken", json!({})).await;
    // A run of A cut short by the kill is `interrupted` and starts nothing;
    // each successful run starts exactly one run of the next job.
    let ok = |docs: &[Document]| -> Vec<String> {
        let mut ids: Vec<String> = docs
            .iter()
            .filter(|d| text(d, "status") == "success")
            .map(|d| text(d, "runId"))
            .collect();
        ids.sort();
        ids
    };
    let parents = |docs: &[Document]| -> Vec<String> {
        let mut ids: Vec<String> = docs
            .iter()
            .map(|d| {
                assert_eq!(text(d, "trigger"), "chain", "{d:#?}");
                d.get_document("triggeredBy")
                    .ok()
                    .and_then(|t| t.get_str("runId").ok())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids
    };
    let (a, b, cc) = kit::eventually(
        Duration::from_secs(60),
        "one B per successful A and one C per successful B",
        || async {
            let a = job_records(&c, "chain-a").await;
            let b = job_records(&c, "chain-b").await;
            let cc = job_records(&c, "chain-c").await;
            (b.len() == ok(&a).len() && cc.len() == ok(&b).len()).then_some((a, b, cc))
        },
    )
    .await;
    // Settled: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        job_records(&c, "chain-b").await.len(),
        b.len(),
        "no second B"
    );
    assert_eq!(
        job_records(&c, "chain-c").await.len(),
        cc.len(),
        "no second C"
    );
    assert_eq!(a.len(), rounds, "A ran once per request: {a:#?}");
    assert!(
        !ok(&a).is_empty(),
        "at least one A ended before its worker died: {a:#?}"
    );
    assert_eq!(parents(&b), ok(&a), "one B per successful A: {b:#?}");
    assert_eq!(parents(&cc), ok(&b), "one C per successful B: {cc:#?}");
    eprintln!(
        "chain under SIGKILL: {} A runs ({} successful), {} B, {} C",
        a.len(),
        ok(&a).len(),
        b.len(),
        cc.len()
    );
    // The broken chain: its run succeeded, and a warning named the ghost.
    kit::eventually(
        Duration::from_secs(20),
        "an alert about the broken chain",
        || async {
            c.hook.accepted().into_iter().find(|body| {
                body.to_string().contains("chain-ghost")
                    && body.to_string().contains("chain-broken")
            })
        },
    )
    .await;
}
