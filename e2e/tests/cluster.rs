//! A master and a worker together, driven through the HTTP API only.

use std::time::Duration;

use rcron_master::MasterConfig;
use rcron_testkit as kit;
use rcron_worker::WorkerConfig;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Cluster {
    base: String,
    http: reqwest::Client,
    token: CancellationToken,
    master: JoinHandle<Result<(), rcron_master::Error>>,
    worker: JoinHandle<Result<(), rcron_worker::Error>>,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut MasterConfig)) -> Self {
        let prefix = kit::unique_prefix();
        let db = kit::unique_db();
        let port = kit::free_port();
        let mut master = MasterConfig {
            listen: format!("127.0.0.1:{port}").parse().expect("addr"),
            ..MasterConfig::default()
        };
        master.etcd.endpoints = vec![kit::etcd_endpoint()];
        master.etcd.prefix = prefix.clone();
        master.mongo.uri = kit::mongo_uri();
        master.mongo.db = db.clone();
        adjust(&mut master);
        let mut worker = WorkerConfig {
            worker_id: format!("e2e-{port}"),
            lease_ttl_secs: 3,
            kill_grace_secs: 1,
            drain_secs: 2,
            spill_dir: std::env::temp_dir().join(format!("rcron-e2e-{port}")),
            http_listen: String::new(),
            ..WorkerConfig::default()
        };
        worker.etcd = master.etcd.clone();
        worker.mongo = master.mongo.clone();
        let token = CancellationToken::new();
        let cluster = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: kit::http_client(),
            master: tokio::spawn(rcron_master::run(master, token.child_token())),
            worker: tokio::spawn(rcron_worker::run(worker, token.child_token())),
            token,
        };
        kit::eventually(Duration::from_secs(20), "master to serve", || async {
            cluster
                .http
                .get(format!("{}/healthz", cluster.base))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        cluster
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        resp.json().await.expect("json")
    }

    async fn form(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("POST");
        resp.json().await.expect("json")
    }

    async fn stop(self) {
        self.token.cancel();
        let (m, w) = tokio::join!(self.master, self.worker);
        m.expect("master task").expect("master ran");
        w.expect("worker task").expect("worker ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_scenario_echo_hello_every_5s_then_hello2() {
    let c = Cluster::start().await;
    let job = r#"{"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}"#;
    let saved = c.form("/job/save", &[("job", job)]).await;
    assert_eq!(saved, json!({"errno": 0, "msg": "success", "data": null}));
    kit::eventually(Duration::from_secs(15), "a run printing hello", || async {
        let logs = c.get("/job/log?name=job1").await;
        logs["data"]
            .as_array()?
            .iter()
            .any(|l| l["output"] == "hello\n")
            .then_some(())
    })
    .await;

    let job2 = r#"{"name":"job1","command":"echo hello2","cronExpr":"*/5 * * * * * *"}"#;
    let saved = c.form("/job/save", &[("job", job2)]).await;
    assert_eq!(
        saved["data"]["command"], "echo hello",
        "saving again returns the previous job"
    );
    let logs = kit::eventually(
        Duration::from_secs(20),
        "two runs printing hello2",
        || async {
            let logs = c.get("/job/log?name=job1").await;
            let list = logs["data"].as_array()?.clone();
            (list.iter().filter(|l| l["output"] == "hello2\n").count() >= 2).then_some(list)
        },
    )
    .await;
    c.form("/job/delete", &[("name", "job1")]).await;

    assert_eq!(logs[0]["output"], "hello2\n", "newest first");
    let starts: Vec<i64> = logs
        .iter()
        .map(|l| l["startTime"].as_i64().expect("startTime"))
        .collect();
    assert!(
        starts.windows(2).all(|p| p[0] >= p[1]),
        "sorted newest first: {starts:?}"
    );
    for l in &logs {
        let (plan, sched, start, end) = (
            l["planTime"].as_i64().expect("planTime"),
            l["scheduleTime"].as_i64().expect("scheduleTime"),
            l["startTime"].as_i64().expect("startTime"),
            l["endTime"].as_i64().expect("endTime"),
        );
        assert_eq!(plan % 5000, 0, "ticks on multiples of 5 s: {l}");
        assert!(
            (0..1000).contains(&(sched - plan)),
            "fired within a second of the plan: {l}"
        );
        assert!(start >= sched && end >= start, "ordered times: {l}");
        assert_eq!(l["status"], "success");
        assert_eq!(l["exitCode"], 0);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_through_the_api_ends_a_running_sleep_at_once() {
    let c = Cluster::start().await;
    let resp = c
        .http
        .put(format!("{}/api/v1/jobs/sleeper", c.base))
        .json(&json!({"name": "sleeper", "command": "sleep 300", "cronExpr": "*/2 * * * * * *"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 201);
    kit::eventually(
        Duration::from_secs(15),
        "the worker to report the job running",
        || async {
            let workers = c.get("/api/v1/workers").await;
            workers["workers"]
                .as_array()?
                .iter()
                .any(|w| w["running"] == json!(["sleeper"]))
                .then_some(())
        },
    )
    .await;
    // Pause it first so no new tick starts after the kill.
    let resp = c
        .http
        .put(format!("{}/api/v1/jobs/sleeper", c.base))
        .json(&json!({"name": "sleeper", "command": "sleep 300", "cronExpr": "*/2 * * * * * *", "disabled": true}))
        .send()
        .await
        .expect("pause");
    assert_eq!(resp.status(), 200);
    let killed_at = chrono::Utc::now().timestamp_millis();
    let resp = c
        .http
        .post(format!("{}/api/v1/jobs/sleeper/kill", c.base))
        .send()
        .await
        .expect("kill");
    assert_eq!(resp.status(), 202);
    let log = kit::eventually(
        Duration::from_secs(10),
        "a killed run in the log",
        || async {
            let page = c.get("/api/v1/jobs/sleeper/logs?status=killed").await;
            page["logs"].as_array()?.first().cloned()
        },
    )
    .await;
    assert!(
        log["endTime"].as_i64().expect("endTime") - killed_at < 3000,
        "ended at once: {log}"
    );
    assert_eq!(log["err"], "killed on request");

    let ips = c.get("/worker/list").await;
    assert_eq!(ips["data"], json!(["127.0.0.1"]));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_and_a_timing_out_job_each_produce_one_email_and_one_webhook() {
    let smtp = kit::ServerProcess::smtp();
    let hook = kit::WebhookReceiver::start(0).await;
    let c = Cluster::start_with(|m| {
        m.alerts.webhook_urls = vec![hook.url.clone()];
        m.alerts.emails = vec!["oncall@example.com".into()];
        m.alerts.smtp.host = "127.0.0.1".into();
        m.alerts.smtp.port = smtp.port();
        m.alerts.smtp.tls = rcron_alerts::SmtpTls::None;
        m.alerts.window_secs = 0;
    })
    .await;
    for job in [
        json!({"name": "breaks", "command": "echo oops; exit 3", "cronExpr": "*/10 * * * * * *"}),
        json!({"name": "hangs", "command": "sleep 30", "cronExpr": "*/10 * * * * * *", "timeoutSecs": 1}),
    ] {
        let resp = c
            .http
            .post(format!("{}/api/v1/jobs", c.base))
            .json(&job)
            .send()
            .await
            .expect("create");
        assert_eq!(resp.status(), 201);
    }
    // One tick each, then stop them before the next.
    kit::eventually(Duration::from_secs(20), "a run of each job", || async {
        let a = c.get("/api/v1/jobs/breaks/logs").await["total"].as_u64()?;
        let b = c.get("/api/v1/jobs/hangs/logs").await["total"].as_u64()?;
        (a >= 1 && b >= 1).then_some(())
    })
    .await;
    for name in ["breaks", "hangs"] {
        c.http
            .delete(format!("{}/api/v1/jobs/{name}", c.base))
            .send()
            .await
            .expect("delete");
    }
    kit::eventually(
        Duration::from_secs(20),
        "both alerts delivered and their warnings gone",
        || async {
            let pending = c.get("/api/v1/alerts").await;
            (hook.accepted().len() >= 2
                && smtp.mails().len() >= 2
                && pending["alerts"].as_array()?.is_empty())
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let posts = hook.accepted();
    assert_eq!(
        posts.len(),
        2,
        "exactly one webhook per failed run: {posts:?}"
    );
    let breaks = posts
        .iter()
        .find(|p| p["job"] == "breaks")
        .expect("webhook for breaks");
    assert_eq!(breaks["kind"], "failed");
    assert_eq!(breaks["exitCode"], 3);
    assert_eq!(breaks["outputTail"], "oops\n");
    let hangs = posts
        .iter()
        .find(|p| p["job"] == "hangs")
        .expect("webhook for hangs");
    assert_eq!(hangs["kind"], "timeout");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "exactly one email per failed run");
    assert!(mails.iter().any(
        |m| m.contains("Subject: [rcron] job breaks failed (exit code 3)") && m.contains("oops")
    ));
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: [rcron] job hangs timed out")
                && m.contains("oncall@example.com"))
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_job_stops_the_running_run_and_starts_the_new_tick() {
    let c = Cluster::start().await;
    let job = json!({"name": "fresh", "command": "sleep 300", "cronExpr": "*/3 * * * * * *",
        "concurrency": "replace"});
    let resp = c
        .http
        .put(format!("{}/api/v1/jobs/fresh", c.base))
        .json(&job)
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 201);
    let replaced = kit::eventually(
        Duration::from_secs(30),
        "a run replaced by the next tick",
        || async {
            let page = c.get("/api/v1/jobs/fresh/logs?status=killed").await;
            page["logs"].as_array()?.first().cloned()
        },
    )
    .await;
    assert_eq!(replaced["reason"], "replaced", "{replaced}");
    // The tick that replaced it runs now.
    let running = kit::eventually(Duration::from_secs(10), "the new run", || async {
        let workers = c.get("/api/v1/workers").await;
        let runs = workers["workers"].as_array()?.first()?["runs"]
            .as_array()?
            .clone();
        let run = runs.into_iter().find(|r| r["job"] == "fresh")?;
        (run["planTime"].as_i64()? > replaced["planTime"].as_i64()?).then_some(run)
    })
    .await;
    assert_ne!(running["runId"], replaced["runId"]);
    let skipped = c.get("/api/v1/jobs/fresh/logs?status=skipped").await;
    assert_eq!(skipped["total"], 0, "replace never skips: {skipped}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_longer_each_time_and_overlapping_ticks_are_logged_skipped() {
    let c = Cluster::start().await;
    // Fires once, 3 s from now (7 fields: seconds first, then a year).
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let once = at.format("%-S %-M %-H %-d %-m * %Y").to_string();
    let flaky = json!({"name": "flaky", "command": "exit 3", "cronExpr": once,
        "retries": 3, "retryBackoffSecs": 1, "retryBackoffMaxSecs": 3});
    let slow = json!({"name": "slow", "command": "sleep 300", "cronExpr": "* * * * * * *"});
    for job in [&flaky, &slow] {
        let name = job["name"].as_str().expect("name");
        let resp = c
            .http
            .put(format!("{}/api/v1/jobs/{name}", c.base))
            .json(job)
            .send()
            .await
            .expect("PUT");
        assert_eq!(resp.status(), 201);
    }
    let attempts = kit::eventually(Duration::from_secs(30), "four attempts", || async {
        let page = c.get("/api/v1/jobs/flaky/logs").await;
        let logs = page["logs"].as_array()?.clone();
        (logs.len() == 4).then_some(logs)
    })
    .await;
    let mut by_attempt: Vec<(i64, i64, i64)> = attempts
        .iter()
        .map(|l| {
            (
                l["attempt"].as_i64().unwrap_or_default(),
                l["startTime"].as_i64().unwrap_or_default(),
                l["endTime"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    by_attempt.sort_unstable();
    let waits: Vec<i64> = by_attempt.windows(2).map(|w| w[1].1 - w[0].2).collect();
    // 1 s, 2 s, then capped at 3 s, each ±20 % (plus a little scheduling).
    for (wait, nominal) in waits.iter().zip([1000, 2000, 3000]) {
        assert!(
            (nominal * 8 / 10..=nominal * 12 / 10 + 300).contains(wait),
            "waits {waits:?} (nominal 1 s, 2 s, 3 s)"
        );
    }
    let skipped = kit::eventually(Duration::from_secs(15), "skipped ticks", || async {
        let page = c.get("/api/v1/jobs/slow/logs?status=skipped").await;
        let first = page["logs"].as_array()?.first()?.clone();
        Some(first)
    })
    .await;
    assert_eq!(
        skipped["reason"], "overlap: the previous run was still going",
        "{skipped}"
    );
    c.stop().await;
}
