//! `rcronctl logs --follow JOB` against a real master and worker: the
//! output of the job's runs, printed as they print, run after run.

mod common;

use std::time::{Duration, Instant};

use common::{Follower, Master};
use rcron_testkit as kit;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Whether `job` has a run listed by a live worker.
async fn is_running(http: &reqwest::Client, base: &str, job: &str) -> bool {
    let workers: Value = match http.get(format!("{base}/api/v1/workers")).send().await {
        Ok(resp) => resp.json().await.unwrap_or_default(),
        Err(_) => return false,
    };
    workers["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|w| {
            w["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["job"] == job)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_job_prints_each_runs_output_as_it_prints() {
    let master = Master::start().await;
    let mut worker = rcron_worker::WorkerConfig {
        worker_id: "ctl-live-w".into(),
        http_listen: format!("127.0.0.1:{}", kit::free_port()),
        lease_ttl_secs: 3,
        kill_grace_secs: 1,
        drain_secs: 1,
        log_flush_interval_ms: 100,
        spill_dir: std::env::temp_dir()
            .join(format!("rcronctl-live-{}", uuid::Uuid::now_v7().simple())),
        ..Default::default()
    };
    worker.etcd.endpoints = vec![kit::etcd_endpoint()];
    worker.etcd.prefix = master.prefix.clone();
    worker.mongo.uri = kit::mongo_uri();
    worker.mongo.db = master.db.clone();
    let token = CancellationToken::new();
    let worker_task = tokio::spawn(rcron_worker::run(worker, token.clone()));
    let http = kit::http_client();
    let base = master.base.clone();
    let command = "for i in 1 2 3 4; do echo tick-$i; sleep 1; done; echo done >&2";
    let resp = http
        .put(format!("{base}/api/v1/jobs/ticker"))
        .json(&json!({"name": "ticker", "command": command, "cronExpr": "0 0 1 1 *"}))
        .send()
        .await
        .expect("PUT job");
    assert!(resp.status().is_success(), "{}", resp.status());

    let follower = Follower::start(&base, &["logs", "--follow", "ticker"]);
    // Give it a look at the registry and the log before the run starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run_now = || async {
        let resp = http
            .post(format!("{base}/api/v1/jobs/ticker/run"))
            .send()
            .await
            .expect("run now");
        assert_eq!(resp.status(), 202);
    };
    run_now().await;

    let wait = Duration::from_secs(20);
    let header = tokio::task::block_in_place(|| follower.next_line(wait));
    assert!(
        header.starts_with("==> ticker run ") && header.contains(" on ctl-live-w, started "),
        "{header}"
    );
    let first = tokio::task::block_in_place(|| follower.next_line(wait));
    assert_eq!(first, "tick-1");
    assert!(
        is_running(&http, &base, "ticker").await,
        "tick-1 was printed while the run was still going"
    );
    let rest: Vec<String> =
        tokio::task::block_in_place(|| (0..4).map(|_| follower.next_line(wait)).collect());
    assert_eq!(
        rest[..4],
        ["tick-2", "tick-3", "tick-4", "done"],
        "{rest:?}"
    );
    let last = tokio::task::block_in_place(|| follower.next_line(wait));
    let run_id = header
        .strip_prefix("==> ticker run ")
        .and_then(|r| r.split(' ').next())
        .expect("the run id in the header");
    assert_eq!(last, format!("==> ticker run {run_id} success <=="));

    // It keeps following: the next run comes with its own header.
    let started = Instant::now();
    run_now().await;
    let second = tokio::task::block_in_place(|| follower.next_line(wait));
    assert!(
        second.starts_with("==> ticker run ") && !second.contains(run_id),
        "a new run: {second}"
    );
    assert_eq!(
        tokio::task::block_in_place(|| follower.next_line(wait)),
        "tick-1"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "live, not after the run"
    );
    follower.stop();

    // With -o json: one event a line.
    let json_follower = Follower::start(&base, &["-o", "json", "logs", "--follow", "ticker"]);
    let mut events: Vec<Value> = Vec::new();
    tokio::task::block_in_place(|| {
        while !events.iter().any(|e| e["event"] == "end") {
            let line = json_follower.next_line(wait);
            events.push(serde_json::from_str(&line).expect("a JSON event a line"));
        }
    });
    json_follower.stop();
    assert_eq!(events[0]["event"], "run", "{events:?}");
    assert!(events.iter().any(|e| e["event"] == "output"), "{events:?}");
    assert_eq!(events.last().expect("end")["data"]["status"], "success");

    token.cancel();
    worker_task.await.expect("worker task").expect("worker ran");
    master.stop().await;
}
