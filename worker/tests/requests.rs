//! What a dead worker's outbox says about run requests and chains is done
//! by the next start on its host, once, against real etcd and MongoDB-wire:
//! a run's end (its request deleted, its chain requested) and a claim whose
//! run never started (handed back, then run).

mod common;

use std::time::Duration;

use common::{Env, InProcess, string};
use rcron_shared::{Job, JobName, RunParams, RunRequest};
use rcron_testkit as kit;
use rcron_worker::outbox::{Finish, Outbox, Take, TakenRequest};

fn name(s: &str) -> JobName {
    JobName::new(s).expect("valid name")
}

/// The outbox of worker `dead` under `spill_dir`, with `fill` noted in it,
/// left as a SIGKILLed worker leaves it (open entries, lock released).
async fn dead_outbox(spill_dir: &std::path::Path, fill: impl FnOnce(&Outbox)) {
    let (outbox, _) = Outbox::open(spill_dir, "dead", Duration::from_millis(100), 0)
        .await
        .expect("open outbox");
    fill(&outbox);
    outbox.sync();
    drop(outbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_end_left_in_a_dead_outbox_requests_its_chain_once_and_deletes_its_request() {
    let env = Env::new();
    env.put_job(r#"{"name":"parent","command":"true","cronExpr":"@yearly","disabled":true,"onSuccess":["child"]}"#)
        .await;
    env.put_job(r#"{"name":"child","command":"echo child","cronExpr":"@yearly","disabled":true}"#)
        .await;
    // The parent's request, claimed by the run that ended.
    let request = RunRequest::manual(name("parent"), RunParams::default(), 0, 600);
    let key = format!("run/parent/{}", request.id);
    let mut etcd = env.etcd().await;
    etcd.put(
        format!("{}{key}", env.prefix),
        request.claimed_by("dead", "run-1", 1).to_json(),
        None,
    )
    .await
    .expect("put request");
    let finish = Finish {
        run_id: "run-1".into(),
        job: name("parent"),
        request: Some(format!("{}{key}", env.prefix)),
        chain: vec![name("child")],
        depth: 0,
    };
    let cfg = env.config("next");
    // Twice, as after a lost answer: the second must request nothing more.
    dead_outbox(&cfg.spill_dir, |o| o.finish(finish.clone())).await;
    let worker = InProcess::start(cfg.clone());
    let doc = kit::eventually(Duration::from_secs(15), "the chained run", || async {
        env.logs("child").await.into_iter().next()
    })
    .await;
    assert_eq!(string(&doc, "trigger"), "chain");
    let by = doc.get_document("triggeredBy").expect("triggeredBy");
    assert_eq!(by.get_str("job"), Ok("parent"));
    assert_eq!(by.get_str("runId"), Ok("run-1"));
    assert_eq!(
        env.get(&key).await,
        None,
        "the parent's request is done with"
    );
    worker.stop().await;

    dead_outbox(&cfg.spill_dir, |o| o.finish(finish.clone())).await;
    let worker = InProcess::start(cfg);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(env.logs("child").await.len(), 1, "requested once");
    assert!(
        env.keys_under("run/").await.is_empty(),
        "no request left waiting"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_run_never_started_is_handed_back_and_then_runs_once() {
    let env = Env::new();
    env.put_job(
        r#"{"name":"adhoc","command":"echo by hand","cronExpr":"@yearly","disabled":true}"#,
    )
    .await;
    let job = Job::from_json(
        br#"{"name":"adhoc","command":"echo by hand","cronExpr":"@yearly","disabled":true}"#,
    )
    .expect("job");
    let now = chrono::Utc::now().timestamp_millis();
    let request = RunRequest::manual(name("adhoc"), RunParams::default(), now, 600);
    let key = format!("{}run/adhoc/{}", env.prefix, request.id);
    let mut etcd = env.etcd().await;
    // The dead worker's claim took; its run never started.
    etcd.put(
        key.clone(),
        request.claimed_by("dead", "run-9", 1).to_json(),
        None,
    )
    .await
    .expect("put request");
    let cfg = env.config("next");
    dead_outbox(&cfg.spill_dir, |o| {
        o.take(Take {
            run_id: "run-9".into(),
            job,
            plan_ms: 1,
            fired_key: String::new(),
            from_revision: 0,
            verdict: None,
            request: Some(TakenRequest {
                key: key.clone(),
                request: request.clone(),
            }),
        })
    })
    .await;
    let worker = InProcess::start(cfg);
    let doc = kit::eventually(
        Duration::from_secs(15),
        "the handed-back request's run",
        || async { env.logs("adhoc").await.into_iter().next() },
    )
    .await;
    assert_eq!(string(&doc, "output"), "by hand\n");
    assert_ne!(
        string(&doc, "runId"),
        "run-9",
        "run by the next start, as a new run"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.logs("adhoc").await.len(), 1, "once");
    worker.stop().await;
}
