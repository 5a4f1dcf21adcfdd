//! What a dead worker's outbox says about run requests and chains is done
//! by the next start on its host, once, against real etcd and MongoDB-wire:
//! a run's end (its request deleted, its chain requested), a claim whose
//! run never started (handed back, then run), and a verdict it sent but
//! did not note as settled (recorded again, stored once).

mod common;

use std::time::Duration;

use common::{Env, InProcess, string};
use rcron_shared::{Job, JobName, RunParams, RunRequest, RunStatus, verdict};
use rcron_testkit as kit;
use rcron_worker::outbox::{Finish, Outbox, Take, TakenRequest, TakenVerdict};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_its_dead_worker_sent_but_did_not_note_settled_is_stored_once() {
    let env = Env::new();
    let doc = r#"{"name":"slow","command":"sleep 5","cronExpr":"@yearly","disabled":true}"#;
    env.put_job(doc).await;
    let job = Job::from_json(doc.as_bytes()).expect("job");
    let now = chrono::Utc::now().timestamp_millis();
    let plan = (now - 60_000) / 1000 * 1000;
    let tag = "settled-0190a1b2c3d4";
    let fired = format!("{}fired/slow", env.prefix);
    let mut etcd = env.etcd().await;
    // An earlier run took the job's last tick.
    let from_revision = etcd
        .put(
            fired.clone(),
            verdict::encode_fired(plan - 5_000, "run-1"),
            None,
        )
        .await
        .expect("put the marker")
        .header()
        .expect("a header")
        .revision();
    // The dead worker's settlement moved the job's marker to the tick,
    // its verdict's record went into its outbox, and it died before
    // noting the settlement done.
    etcd.put(fired.clone(), verdict::encode_fired(plan, tag), None)
        .await
        .expect("move the marker");
    let reason = "overlap: the previous run was still going";
    let sent = verdict::record(&job, plan, RunStatus::Skipped, reason.into(), "dead", now);
    let cfg = env.config("next");
    dead_outbox(&cfg.spill_dir, |o| {
        o.take(Take {
            run_id: tag.into(),
            job: job.clone(),
            plan_ms: plan,
            fired_key: fired.clone(),
            from_revision,
            verdict: Some(TakenVerdict {
                status: RunStatus::Skipped,
                reason: reason.into(),
            }),
            request: None,
        });
        o.finished(&sent);
    })
    .await;
    // The next start delivers the record and, finding that the dead
    // worker's settlement moved the marker, records the verdict again.
    let worker = InProcess::start(cfg);
    kit::eventually(Duration::from_secs(15), "the verdict's record", || async {
        (!env.verdicts("slow").await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logs = env.verdicts("slow").await;
    assert_eq!(logs.len(), 1, "one record for the tick: {logs:?}");
    assert_eq!(string(&logs[0], "status"), "skipped");
    assert_eq!(string(&logs[0], "runId"), sent.run_id);
    worker.stop().await;
}
