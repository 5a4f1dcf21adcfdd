//! Leader failover timing, alone in its own test binary so that no other
//! test competes for the CPU while it measures (cargo runs test binaries
//! one after another).

mod common;

use std::time::{Duration, Instant};

use common::{MasterProcess, agreed_leader, get_json};
use rcron_testkit::{self as kit, WebhookReceiver};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_elect_one_leader_and_a_killed_leader_is_replaced_within_ttl() {
    let prefix = kit::unique_prefix();
    let hook = WebhookReceiver::start(0).await;
    let mut masters: Vec<MasterProcess> = (0..3)
        .map(|i| MasterProcess::spawn(&format!("m{i}"), &prefix, &hook.url))
        .collect();
    let leader = agreed_leader(&masters).await;
    let status = get_json(&format!("{}/api/v1/cluster", masters[0].base))
        .await
        .expect("status");
    let leaders: Vec<&Value> = status["masters"]
        .as_array()
        .expect("masters")
        .iter()
        .filter(|m| m["leader"] == true)
        .collect();
    assert_eq!(status["masters"].as_array().map(Vec::len), Some(3));
    assert_eq!(leaders.len(), 1, "exactly one leader");
    assert!(leaders[0]["leaderSince"].is_i64(), "{status}");

    let i = masters
        .iter()
        .position(|m| m.id == leader)
        .expect("leader is one of them");
    let mut dead = masters.remove(i);
    dead.child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = dead.child.wait();
    let new_leader = kit::eventually(Duration::from_secs(10), "a new leader", || async {
        let l = masters[0].leader().await?;
        (l != leader).then_some(l)
    })
    .await;
    let took = killed.elapsed();
    println!("failover: {took:?} (TTL 2 s)");
    assert!(
        took < Duration::from_secs(3),
        "replaced within TTL + 1 s, took {took:?}"
    );
    assert!(masters.iter().any(|m| m.id == new_leader));
    assert_eq!(agreed_leader(&masters).await, new_leader);
}
