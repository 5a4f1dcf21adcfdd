//! A lock request whose answer was lost (etcd stalled past the request
//! timeout) against the real etcd: the worker must learn for certain
//! whether it took the tick, even when etcd applies it late, so that the
//! tick and the ticks it skipped over are recorded once (ARCHITECTURE §4,
//! "Verdicts").

use std::sync::Arc;

use rcron_shared::{Job, Keys};
use rcron_testkit as kit;
use rcron_worker::lock::{HeldLocks, LockOutcome, Locker, LostRequest};
use rcron_worker::run_stop::RunStop;
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_800_000_000_000;

async fn locker() -> (Locker, Job, i64) {
    let client = kit::etcd_client().await;
    let keys = Keys::new(&kit::unique_prefix()).expect("keys");
    let lease = client
        .clone()
        .lease_grant(30, None)
        .await
        .expect("grant a lease")
        .id();
    let job = Job::from_json(br#"{"name":"nightly","command":"true","cronExpr":"* * * * * * *"}"#)
        .expect("job");
    let locker = Locker::new(client, keys, "w1".into(), Arc::new(HeldLocks::default()));
    (locker, job, lease)
}

/// Takes tick `plan` as run `run_id` and ends the run at once; whether
/// it could.
async fn run(locker: &Locker, job: &Job, plan: i64, run_id: &str, lease: i64) -> bool {
    let outcome = locker
        .acquire(job, plan, run_id, lease, &RunStop::new())
        .await
        .expect("lock request");
    match outcome {
        LockOutcome::Acquired(guard) => {
            guard.release().await;
            true
        }
        _ => false,
    }
}

#[tokio::test]
async fn a_request_applied_although_its_answer_was_lost_is_found_with_the_ticks_it_skipped() {
    let (locker, job, lease) = locker().await;
    assert!(run(&locker, &job, T0, "r0", lease).await);
    let from = locker.revision();
    // Applied by etcd; the worker never heard back.
    let guard = locker
        .acquire(&job, T0 + 3000, "r1", lease, &RunStop::new())
        .await
        .expect("lock request");
    let LockOutcome::Acquired(guard) = guard else {
        panic!("the tick was free");
    };
    drop(guard);
    let found = locker
        .resolve_lost(
            &job,
            T0 + 3000,
            "r1",
            from,
            "settled-a",
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(found, Some(LostRequest::Moved { previous: Some(T0) }));
}

#[tokio::test]
async fn a_request_etcd_applies_after_the_worker_gave_up_on_it_can_no_longer_take_its_tick() {
    let (locker, job, lease) = locker().await;
    assert!(run(&locker, &job, T0, "r0", lease).await);
    let from = locker.revision();
    // The answer was lost and etcd had not applied the request yet.
    let found = locker
        .resolve_lost(
            &job,
            T0 + 2000,
            "r2",
            from,
            "settled-b",
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(found, Some(LostRequest::Fenced { previous: Some(T0) }));
    // Now etcd gets to it: it must not start the tick recorded missed.
    let late = locker
        .acquire(&job, T0 + 2000, "r2", lease, &RunStop::new())
        .await
        .expect("lock request");
    assert!(
        matches!(late, LockOutcome::AlreadyFired),
        "a fenced tick was taken by its late request"
    );
    // The next tick runs as usual.
    assert!(run(&locker, &job, T0 + 3000, "r3", lease).await);
}

#[tokio::test]
async fn a_lost_request_beaten_by_another_worker_is_not_counted_as_this_workers() {
    let (locker, job, lease) = locker().await;
    assert!(run(&locker, &job, T0, "r0", lease).await);
    let from = locker.revision();
    // Another worker took the tick; this worker's request lost the race.
    assert!(run(&locker, &job, T0 + 1000, "other", lease).await);
    let found = locker
        .resolve_lost(
            &job,
            T0 + 1000,
            "r4",
            from,
            "settled-c",
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(found, Some(LostRequest::Elsewhere));
}

#[tokio::test]
async fn a_fence_whose_own_answer_was_lost_is_still_known_as_this_workers_settlement() {
    let (locker, job, lease) = locker().await;
    assert!(run(&locker, &job, T0, "r0", lease).await);
    let from = locker.revision();
    // The first settlement of the tick was applied; its answer was lost.
    locker
        .settle(&job, T0 + 2000, "settled-d")
        .await
        .expect("settle");
    let found = locker
        .resolve_lost(
            &job,
            T0 + 2000,
            "r5",
            from,
            "settled-d",
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(found, Some(LostRequest::Fenced { previous: Some(T0) }));
}
