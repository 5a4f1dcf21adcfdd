//! Leader election and alerting against real etcd, a real SMTP server
//! (aiosmtpd) and real HTTP receivers on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{MasterProcess, agreed_leader, get_json};
use rcron_master::MasterConfig;
use rcron_testkit::{self as kit, ServerProcess, WebhookReceiver};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn warning(job: &str, run_id: &str, status: &str) -> Value {
    json!({
        "jobName": job, "runId": run_id, "status": status, "command": "false",
        "exitCode": if status == "failed" { json!(3) } else { Value::Null },
        "err": if status == "failed" { "exit code 3" } else { "timed out after 1 s; process group killed" },
        "outputTail": "something broke\n", "planTime": 1_700_000_000_000i64, "startTime": 1_700_000_000_001i64,
        "endTime": 1_700_000_001_001i64, "worker": "w1", "attempt": 1
    })
}

async fn put_warning(prefix: &str, job: &str, run_id: &str, status: &str) {
    kit::etcd_client()
        .await
        .put(
            format!("{prefix}warn/{job}/{run_id}"),
            warning(job, run_id, status).to_string(),
            None,
        )
        .await
        .expect("put warning");
}

async fn warn_keys(prefix: &str) -> usize {
    kit::etcd_client()
        .await
        .get(
            format!("{prefix}warn/"),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .expect("count")
        .count() as usize
}

fn base_config(prefix: &str) -> MasterConfig {
    let mut cfg = MasterConfig {
        listen: format!("127.0.0.1:{}", kit::free_port())
            .parse()
            .expect("addr"),
        election_ttl_secs: 2,
        ..MasterConfig::default()
    };
    cfg.etcd.endpoints = vec![kit::etcd_endpoint()];
    cfg.etcd.prefix = prefix.to_string();
    cfg.mongo.uri = kit::mongo_uri();
    cfg.mongo.db = kit::unique_db();
    cfg.alerts.window_secs = 0;
    cfg
}

struct InProcessMaster {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), rcron_master::Error>>,
    base: String,
}

impl InProcessMaster {
    async fn start(cfg: MasterConfig) -> Self {
        let base = format!("http://{}", cfg.listen);
        let token = CancellationToken::new();
        let handle = tokio::spawn(rcron_master::run(cfg, token.clone()));
        let http = kit::http_client();
        kit::eventually(Duration::from_secs(20), "master to serve", || async {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        Self {
            token,
            handle,
            base,
        }
    }

    async fn stop(self) {
        self.token.cancel();
        self.handle.await.expect("master task").expect("master ran");
    }
}

fn header(mail: &str, name: &str) -> String {
    mail.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_left_while_no_master_runs_is_delivered_by_every_sink_once_a_master_starts() {
    let prefix = kit::unique_prefix();
    let smtp = ServerProcess::smtp();
    let hook = WebhookReceiver::start(0).await;
    let slack = WebhookReceiver::start(0).await;
    for i in 0..4 {
        put_warning(&prefix, &format!("job-{i}"), &format!("run-{i}"), "failed").await;
    }
    put_warning(&prefix, "slowpoke", "run-t", "timeout").await;

    let mut cfg = base_config(&prefix);
    cfg.alerts.webhook_urls = vec![hook.url.clone()];
    cfg.alerts.slack_webhook_url = Some(slack.url.clone());
    cfg.alerts.emails = vec!["ops@example.com".into()];
    cfg.alerts.smtp.host = "127.0.0.1".into();
    cfg.alerts.smtp.port = smtp.port();
    cfg.alerts.smtp.tls = rcron_alerts::SmtpTls::None;
    cfg.alerts.public_url = Some("https://cron.example.com".into());
    let master = InProcessMaster::start(cfg).await;

    kit::eventually(
        Duration::from_secs(20),
        "every warning delivered and deleted",
        || async { (warn_keys(&prefix).await == 0).then_some(()) },
    )
    .await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 5, "one email per warning");
    let timeout_mail = mails
        .iter()
        .find(|m| m.contains("slowpoke"))
        .expect("mail about slowpoke");
    assert_eq!(
        header(timeout_mail, "Subject"),
        "[rcron] job slowpoke timed out"
    );
    assert!(timeout_mail.contains("ops@example.com"));
    assert!(
        timeout_mail.contains("https://cron.example.com/#/logs?job=slowpoke"),
        "{timeout_mail}"
    );
    let failed_mail = mails
        .iter()
        .find(|m| m.contains("job-2"))
        .expect("mail about job-2");
    assert_eq!(
        header(failed_mail, "Subject"),
        "[rcron] job job-2 failed (exit code 3)"
    );

    let posts = hook.accepted();
    assert_eq!(posts.len(), 5, "one webhook POST per warning");
    let p = posts
        .iter()
        .find(|p| p["job"] == "slowpoke")
        .expect("payload");
    assert_eq!(p["kind"], "timeout");
    assert_eq!(p["idempotencyKey"], "run-t");
    assert_eq!(p["worker"], "w1");
    assert_eq!(p["outputTail"], "something broke\n");
    assert!(
        hook.received()
            .iter()
            .all(|r| r.idempotency_key.as_deref() == r.body["runId"].as_str())
    );
    let texts = slack.accepted();
    assert_eq!(texts.len(), 5);
    assert!(texts.iter().any(|t| {
        t["text"]
            .as_str()
            .is_some_and(|s| s.contains("job-0 failed"))
    }));

    let status = get_json(&format!("{}/api/v1/cluster", master.base))
        .await
        .expect("cluster");
    assert_eq!(status["leader"], status["thisMaster"]);
    assert_eq!(status["pendingAlerts"], 0);
    assert_eq!(status["alerts"]["sent"], 15);
    assert_eq!(
        status["alerts"]["sinks"],
        json!(["email", "slack", "webhook"])
    );
    assert_eq!(status["etcd"]["healthy"], true);
    assert_eq!(status["mongo"]["healthy"], true);
    // The dashboard's health says the same.
    let dashboard = get_json(&format!("{}/api/v1/dashboard", master.base))
        .await
        .expect("dashboard");
    let health = &dashboard["health"];
    assert_eq!(health["leader"], status["thisMaster"], "{dashboard}");
    assert_eq!(health["alerts"], status["alerts"], "{dashboard}");
    assert_eq!(health["pendingAlerts"], 0);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_sinks_are_retried_and_do_not_hold_back_the_others() {
    let prefix = kit::unique_prefix();
    let mut smtp = ServerProcess::smtp();
    smtp.stop(); // unreachable for now
    let flaky = WebhookReceiver::start(3).await;
    let healthy = WebhookReceiver::start(0).await;
    let mut cfg = base_config(&prefix);
    cfg.alerts.webhook_urls = vec![flaky.url.clone(), healthy.url.clone()];
    cfg.alerts.emails = vec!["ops@example.com".into()];
    cfg.alerts.smtp.host = "127.0.0.1".into();
    cfg.alerts.smtp.port = smtp.port();
    cfg.alerts.smtp.tls = rcron_alerts::SmtpTls::None;
    cfg.alerts.smtp.timeout_secs = 2;
    let master = InProcessMaster::start(cfg).await;
    put_warning(&prefix, "broken", "run-b", "failed").await;

    let started = Instant::now();
    kit::eventually(
        Duration::from_secs(10),
        "the healthy webhook to get it",
        || async { (!healthy.accepted().is_empty()).then_some(()) },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not held back: {:?}",
        started.elapsed()
    );
    kit::eventually(
        Duration::from_secs(20),
        "the flaky webhook to accept it after retries",
        || async { (!flaky.accepted().is_empty()).then_some(()) },
    )
    .await;
    let tries = flaky.received();
    assert_eq!(tries.len(), 4, "three 500s then a 200");
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "backoff grows: {gaps:?}"
    );

    // SMTP is still down: the warning must stay until it is delivered there too.
    assert_eq!(warn_keys(&prefix).await, 1);
    let pending = get_json(&format!("{}/api/v1/alerts", master.base))
        .await
        .expect("alerts");
    assert_eq!(pending["alerts"][0]["runId"], "run-b");
    smtp.start();
    kit::eventually(
        Duration::from_secs(40),
        "the email once SMTP is back",
        || async { (!smtp.mails().is_empty()).then_some(()) },
    )
    .await;
    kit::eventually(Duration::from_secs(10), "the warning deleted", || async {
        (warn_keys(&prefix).await == 0).then_some(())
    })
    .await;
    assert_eq!(healthy.accepted().len(), 1, "no sink got it twice");
    assert_eq!(flaky.accepted().len(), 1);
    assert_eq!(smtp.mails().len(), 1);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_control_sends_one_alert_per_job_per_window_and_counts_the_rest() {
    let prefix = kit::unique_prefix();
    let hook = WebhookReceiver::start(0).await;
    let mut cfg = base_config(&prefix);
    cfg.alerts.webhook_urls = vec![hook.url.clone()];
    cfg.alerts.window_secs = 3;
    let master = InProcessMaster::start(cfg).await;
    for i in 0..4 {
        put_warning(&prefix, "noisy", &format!("n{i}"), "failed").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    put_warning(&prefix, "quiet", "q0", "failed").await;
    kit::eventually(
        Duration::from_secs(10),
        "the first wave handled",
        || async { (warn_keys(&prefix).await == 0).then_some(()) },
    )
    .await;
    let posts = hook.accepted();
    assert_eq!(
        posts.iter().filter(|p| p["job"] == "noisy").count(),
        1,
        "one alert per window: {posts:?}"
    );
    assert_eq!(
        posts.iter().filter(|p| p["job"] == "quiet").count(),
        1,
        "other jobs are not held back"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    put_warning(&prefix, "noisy", "n4", "failed").await;
    let next = kit::eventually(
        Duration::from_secs(10),
        "the next alert after the window",
        || async { hook.accepted().into_iter().find(|p| p["runId"] == "n4") },
    )
    .await;
    assert_eq!(next["suppressed"], 3, "says how many were suppressed");
    let status = get_json(&format!("{}/api/v1/cluster", master.base))
        .await
        .expect("cluster");
    assert_eq!(status["alerts"]["suppressed"], 3);
    let metrics = kit::http_client()
        .get(format!("{}/metrics", master.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("rcron_alerts_suppressed_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("rcron_alerts_sent_total 3"), "{metrics}");
    assert!(metrics.contains("rcron_is_leader 1"), "{metrics}");
    assert!(metrics.contains("rcron_jobs 0"), "{metrics}");
    assert!(
        metrics.contains("rcron_master_api_request_seconds_count"),
        "{metrics}"
    );
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_20_times_loses_no_warning_and_never_has_two_senders() {
    let prefix = kit::unique_prefix();
    let hook = WebhookReceiver::start(0).await;
    let mut masters: Vec<MasterProcess> = (0..3)
        .map(|i| MasterProcess::spawn(&format!("k{i}"), &prefix, &hook.url))
        .collect();
    let stop = CancellationToken::new();
    let producer = {
        let prefix = prefix.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.is_cancelled() {
                put_warning(
                    &prefix,
                    &format!("job{}", n % 7),
                    &format!("r{n}"),
                    "failed",
                )
                .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            n
        })
    };
    for round in 0..20 {
        let leader = agreed_leader(&masters).await;
        let i = masters
            .iter()
            .position(|m| m.id == leader)
            .expect("leader known");
        let mut dead = masters.remove(i);
        dead.child.kill().expect("SIGKILL");
        let _ = dead.child.wait();
        masters.push(MasterProcess::spawn(
            &format!("k{}", round + 3),
            &prefix,
            &hook.url,
        ));
        println!("round {round}: killed leader {leader}");
    }
    stop.cancel();
    let produced = producer.await.expect("producer");
    kit::eventually(
        Duration::from_secs(60),
        "every warning delivered and deleted",
        || async { (warn_keys(&prefix).await == 0).then_some(()) },
    )
    .await;
    let posts = hook.accepted();
    let mut delivered: Vec<u32> = posts
        .iter()
        .filter_map(|p| p["runId"].as_str()?.strip_prefix('r')?.parse().ok())
        .collect();
    delivered.sort();
    let duplicates = delivered.len() - {
        let mut d = delivered.clone();
        d.dedup();
        d.len()
    };
    delivered.dedup();
    let missing: Vec<u32> = (0..produced)
        .filter(|n| delivered.binary_search(n).is_err())
        .collect();
    println!(
        "warnings: {produced}, delivered: {}, duplicates: {duplicates}, failovers: 20",
        delivered.len()
    );
    assert!(missing.is_empty(), "never delivered: {missing:?}");

    // Deliveries by one master never resume once another master has sent.
    let senders: Vec<String> = hook
        .received()
        .iter()
        .filter_map(|r| r.body["sentBy"].as_str().map(str::to_string))
        .collect();
    let mut finished: Vec<&String> = Vec::new();
    for pair in senders.windows(2) {
        if pair[0] != pair[1] {
            assert!(
                !finished.contains(&&pair[1]),
                "{} sent again after another leader: {senders:?}",
                pair[1]
            );
            finished.push(&pair[0]);
        }
    }
}
