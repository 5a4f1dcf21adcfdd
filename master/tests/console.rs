//! The operator console's data against real etcd and a real MongoDB-wire
//! server (started by `deploy/test-env.sh`): job statistics, each job's
//! last run, the dashboard, log filters by worker and time, alert sinks.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, TimeZone, Utc};
use mongodb::bson::{Document, doc};
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use rcron_master::MasterConfig;
use rcron_master::api::{AppState, routes};
use rcron_testkit as kit;
use serde_json::{Value, json};

struct Harness {
    cli: TestClient<BoxEndpoint<'static, Response>>,
    etcd: etcd_client::Client,
    prefix: String,
    log: mongodb::Collection<Document>,
}

fn config() -> MasterConfig {
    let mut cfg = MasterConfig::default();
    cfg.etcd.endpoints = vec![kit::etcd_endpoint()];
    cfg.etcd.prefix = kit::unique_prefix();
    cfg.etcd.request_timeout_secs = 2;
    cfg.etcd.connect_timeout_secs = 1;
    cfg.mongo.uri = kit::mongo_uri();
    cfg.mongo.db = kit::unique_db();
    cfg
}

async fn harness_with(cfg: MasterConfig) -> Harness {
    let state: Arc<AppState> = rcron_master::state(&cfg).await.expect("state");
    let log = mongodb::Client::with_uri_str(&cfg.mongo.uri)
        .await
        .expect("mongo client")
        .database(&cfg.mongo.db)
        .collection("log");
    Harness {
        cli: TestClient::new(routes(state).boxed()),
        etcd: kit::etcd_client().await,
        prefix: cfg.etcd.prefix,
        log,
    }
}

async fn harness() -> Harness {
    harness_with(config()).await
}

impl Harness {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        read(self.cli.get(path).send().await.0).await
    }

    async fn put_job(&self, job: Value) {
        let name = job["name"].as_str().expect("name").to_string();
        let resp = self
            .cli
            .put(format!("/api/v1/jobs/{name}"))
            .body_json(&job)
            .send()
            .await;
        let (status, body) = read(resp.0).await;
        assert!(status.is_success(), "{name}: {body}");
    }

    async fn put_etcd(&self, key: &str, value: String) {
        self.etcd
            .clone()
            .put(format!("{}{key}", self.prefix), value, None)
            .await
            .expect("etcd put");
    }

    async fn insert(&self, records: Vec<Document>) {
        self.log.insert_many(records).await.expect("insert records");
    }
}

async fn read(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.into_body().into_string().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A stored run record as a worker writes it.
fn record(job: &str, run: &str, start: i64, ms: i64, status: &str, worker: &str) -> Document {
    doc! {
        "_id": format!("{run}-1"), "jobName": job, "command": "true", "err": "", "output": "",
        "planTime": start, "scheduleTime": start, "startTime": start, "endTime": start + ms,
        "runId": run, "worker": worker, "status": status, "attempt": 1, "outputTruncated": false,
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[tokio::test]
async fn job_stats_count_each_day_in_the_jobs_zone_with_percentiles_and_the_newest_runs() {
    let h = harness().await;
    h.put_job(
        json!({"name": "nightly", "command": "true", "cronExpr": "0 3 * * *",
        "timezone": "Asia/Tokyo"}),
    )
    .await;
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().expect("zone");
    let today = Utc::now().with_timezone(&tokyo).date_naive();
    let midnight = |d: chrono::NaiveDate| {
        tokyo
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .single()
            .expect("Tokyo has no clock changes")
            .timestamp_millis()
    };
    let t0 = midnight(today);
    let y0 = midnight(today - Days::new(1));
    let d3 = midnight(today - Days::new(3));
    let mut records = vec![
        // Yesterday in Tokyo, from its first to its last millisecond.
        record("nightly", "y1", y0, 100, "success", "w1"),
        record("nightly", "y2", y0 + 3_600_000, 300, "success", "w1"),
        record("nightly", "y3", y0 + 7_200_000, 400, "failed", "w1"),
        record("nightly", "y4", t0 - 1_000, 200, "success", "w1"),
        record("nightly", "ys", y0 + 10, 0, "skipped", "w1"),
        record("nightly", "ym", y0 + 20, 0, "missed", "w1"),
        record("nightly", "d3", d3 + 5, 5_000, "timeout", "w2"),
        // Another job's runs are not this one's.
        record("other", "o1", y0 + 50, 9, "failed", "w1"),
    ];
    // Today: 120 runs, more than `lastRuns` holds.
    for i in 0..120 {
        records.push(record(
            "nightly",
            &format!("t{i:03}"),
            t0 + i * 1000,
            10,
            "success",
            "w1",
        ));
    }
    h.insert(records).await;

    let (status, stats) = h.get("/api/v1/jobs/nightly/stats?days=7").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["name"], "nightly");
    assert_eq!(stats["zone"], "Asia/Tokyo");
    let daily = stats["daily"].as_array().expect("daily");
    assert_eq!(daily.len(), 7, "{stats}");
    assert_eq!(daily[6]["day"], today.format("%Y-%m-%d").to_string());
    assert_eq!(daily[6]["start"], t0);
    assert_eq!(daily[6]["runs"], 120);
    assert_eq!(daily[6]["successRate"], 1.0);
    let y = &daily[5];
    assert_eq!(
        (
            &y["runs"],
            &y["succeeded"],
            &y["failed"],
            &y["skipped"],
            &y["missed"]
        ),
        (&json!(4), &json!(3), &json!(1), &json!(1), &json!(1)),
        "{y}"
    );
    assert_eq!(y["successRate"], 0.75);
    assert_eq!(
        (&y["p50Ms"], &y["p95Ms"]),
        (&json!(200), &json!(400)),
        "{y}"
    );
    let d = &daily[3];
    assert_eq!(
        (&d["runs"], &d["failed"], &d["p50Ms"]),
        (&json!(1), &json!(1), &json!(5000))
    );
    for quiet in [0, 1, 2, 4] {
        let q = &daily[quiet];
        assert_eq!(q["runs"], 0, "{q}");
        assert_eq!(q["successRate"], Value::Null, "{q}");
        assert_eq!(q["p50Ms"], Value::Null, "{q}");
    }
    let last = stats["lastRuns"].as_array().expect("lastRuns");
    assert_eq!(last.len(), 100, "capped at 100");
    assert_eq!(last[0]["runId"], "t119", "newest first");
    assert_eq!(last[0]["durationMs"], 10);
    assert_eq!(last[0]["status"], "success");
    let starts: Vec<i64> = last
        .iter()
        .map(|r| r["startTime"].as_i64().expect("start"))
        .collect();
    assert!(starts.windows(2).all(|w| w[0] > w[1]), "{starts:?}");

    let (_, month) = h.get("/api/v1/jobs/nightly/stats").await;
    assert_eq!(
        month["daily"].as_array().expect("daily").len(),
        30,
        "30 days by default"
    );

    // A job that never ran (or is gone): no runs, the cluster's zone.
    let (status, none) = h.get("/api/v1/jobs/gone/stats?days=2").await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none["zone"], "UTC");
    assert_eq!(none["lastRuns"], json!([]));
    assert_eq!(none["daily"][1]["runs"], 0);

    for (bad, needle) in [
        ("/api/v1/jobs/nightly/stats?days=0", "days"),
        ("/api/v1/jobs/nightly/stats?days=31", "days"),
        ("/api/v1/jobs/nightly/stats?days=week", "days"),
        ("/api/v1/jobs/bad%20name/stats", "name"),
    ] {
        let (status, body) = h.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let msg = body["error"].as_str().expect("an error message");
        assert!(msg.contains(needle), "{bad}: {msg}");
    }
}

#[tokio::test]
async fn a_rarely_run_failing_job_shows_its_own_last_run_however_busy_the_others_are() {
    let h = harness().await;
    for name in ["busy", "rare", "fresh"] {
        h.put_job(json!({"name": name, "command": "true", "cronExpr": "@daily"}))
            .await;
    }
    let now = now_ms();
    let mut records = vec![
        record(
            "rare",
            "rare-1",
            now - 2 * 86_400_000,
            1_500,
            "failed",
            "w1",
        ),
        // A verdict is no run: it does not hide the failed one.
        record("rare", "rare-m", now - 60_000, 0, "missed", "w1"),
    ];
    for i in 0..1_000 {
        records.push(record(
            "busy",
            &format!("b{i}"),
            now - 50_000 + i,
            5,
            "success",
            "w2",
        ));
    }
    h.insert(records).await;

    let (status, page) = h.get("/api/v1/jobs?lastRun=true").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let jobs = page["jobs"].as_array().expect("jobs");
    let by_name = |n: &str| {
        jobs.iter()
            .find(|j| j["name"] == n)
            .expect("job listed")
            .clone()
    };
    let rare = by_name("rare");
    assert_eq!(rare["lastRun"]["runId"], "rare-1", "{rare}");
    assert_eq!(rare["lastRun"]["status"], "failed");
    assert_eq!(rare["lastRun"]["durationMs"], 1_500);
    assert_eq!(by_name("busy")["lastRun"]["runId"], "b999");
    assert!(by_name("fresh").get("lastRun").is_none(), "never ran");

    let (_, plain) = h.get("/api/v1/jobs").await;
    assert!(
        plain["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .all(|j| j.get("lastRun").is_none()),
        "only when asked: {plain}"
    );
    let (status, one) = h.get("/api/v1/jobs/rare?lastRun=true").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["lastRun"]["runId"], "rare-1");
    assert_eq!(one["lastRun"]["startTime"], now - 2 * 86_400_000);
}

#[tokio::test]
async fn the_dashboard_shows_running_runs_next_fires_failing_jobs_and_minute_buckets() {
    let h = harness().await;
    let now = now_ms();
    h.put_job(json!({"name": "minutely", "command": "true", "cronExpr": "* * * * *"}))
        .await;
    h.put_job(
        json!({"name": "paused", "command": "true", "cronExpr": "* * * * *",
        "disabled": true}),
    )
    .await;
    h.put_job(json!({"name": "far", "command": "true", "cronExpr": "0 0 1 1 * 2090"}))
        .await;
    let worker = json!({"id": "w1", "hostname": "host-a", "ip": "10.0.0.1", "pid": 1,
        "version": "0.1.0", "startTime": now - 100_000, "capacity": 4, "running": ["long"],
        "runs": [{"job": "long", "runId": "run-long", "planTime": now - 5_000, "startTime": now - 4_000}]});
    h.put_etcd("workers/w1", worker.to_string()).await;
    let warning = json!({"jobName": "flaky", "runId": "f1", "status": "failed", "command": "false",
        "err": "exit code 1", "outputTail": "", "planTime": now, "startTime": now, "endTime": now,
        "worker": "w1", "attempt": 1});
    h.put_etcd("warn/flaky/f1", warning.to_string()).await;
    let minute = |ago: i64| (now - ago * 60_000).div_euclid(60_000) * 60_000 + 7;
    h.insert(vec![
        // flaky: failed, succeeded, failed again: failing, 2 failures today.
        record("flaky", "f0", minute(30), 10, "failed", "w1"),
        record("flaky", "f-ok", minute(20), 10, "success", "w1"),
        record("flaky", "f1", minute(2), 10, "failed", "w1"),
        // recovered: its last run succeeded.
        record("recovered", "r0", minute(30), 10, "timeout", "w1"),
        record("recovered", "r1", minute(2) + 1, 10, "success", "w1"),
        // old: failed, but not in the last 24 hours.
        record("old", "old0", now - 2 * 86_400_000, 10, "failed", "w1"),
        record("minutely", "m-missed", minute(3), 0, "missed", "w1"),
    ])
    .await;

    let (status, d) = h.get("/api/v1/dashboard").await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["errors"], json!([]), "{d}");
    assert_eq!(d["zone"], "UTC");
    assert_eq!(d["health"]["etcd"], true);
    assert_eq!(d["health"]["mongo"], true);
    assert_eq!(
        d["health"]["leader"],
        Value::Null,
        "no master campaigns here"
    );
    assert_eq!(d["health"]["pendingAlerts"], 1);
    assert_eq!(
        d["health"]["alerts"]["sinks"],
        json!([]),
        "no sink configured"
    );

    let running = d["running"].as_array().expect("running");
    assert_eq!(running.len(), 1, "{d}");
    let r = &running[0];
    assert_eq!(
        (&r["job"], &r["runId"], &r["worker"]),
        (&json!("long"), &json!("run-long"), &json!("w1"))
    );
    assert_eq!(r["hostname"], "host-a");
    assert!(r["elapsedMs"].as_i64().expect("elapsed") >= 4_000, "{r}");
    assert_eq!(
        d["workers"],
        json!([{"id": "w1", "hostname": "host-a", "running": 1, "capacity": 4, "draining": false}])
    );

    let next = d["next"].as_array().expect("next");
    assert_eq!(
        next.len(),
        1,
        "paused and far-off jobs are not next: {next:?}"
    );
    assert_eq!(next[0]["job"], "minutely");
    let at = next[0]["time"].as_i64().expect("time");
    assert!(
        at > now - 1_000 && at <= now + 61_000 && at % 60_000 == 0,
        "{at}"
    );

    let failing = d["failing"].as_array().expect("failing");
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0]["job"], "flaky");
    assert_eq!(failing[0]["lastRun"]["runId"], "f1");
    assert_eq!(failing[0]["lastRun"]["status"], "failed");
    assert_eq!(failing[0]["failuresToday"], 2);

    let hour = &d["hour"];
    assert_eq!(hour["bucketSecs"], 60);
    let buckets = hour["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 60);
    let at_minute = |ago: i64| {
        let t = minute(ago) - 7;
        buckets
            .iter()
            .find(|b| b["t"] == t)
            .expect("a bucket of that minute")
            .clone()
    };
    assert_eq!(
        at_minute(2),
        json!({"t": minute(2) - 7, "runs": 2, "failed": 1, "missed": 0})
    );
    assert_eq!(at_minute(3)["missed"], 1);
    assert_eq!(at_minute(3)["runs"], 0, "a missed tick is no run");
    assert_eq!(at_minute(30)["failed"], 2);
    assert_eq!(d["missed"], json!({"hour": 1, "day": 1}));
    let day = &d["day"];
    assert_eq!(day["bucketSecs"], 900);
    let quarter: Vec<Value> = day["buckets"].as_array().expect("buckets").clone();
    assert_eq!(quarter.len(), 96);
    let day_runs: u64 = quarter
        .iter()
        .map(|b| b["runs"].as_u64().expect("runs"))
        .sum();
    assert_eq!(day_runs, 5, "the runs of the last 24 hours");

    // Served from the 2 s cache: same computation for every caller.
    let (_, again) = h.get("/api/v1/dashboard").await;
    assert_eq!(again["generatedAt"], d["generatedAt"]);
}

#[tokio::test]
async fn the_dashboard_still_shows_runs_and_workers_while_mongodb_is_down() {
    let mut mongo = kit::ServerProcess::mongo();
    let mut cfg = config();
    cfg.mongo.uri = format!("mongodb://{}", mongo.addr());
    let h = harness_with(cfg).await;
    let worker = json!({"id": "w9", "hostname": "host-z", "ip": "10.0.0.9", "pid": 1,
        "version": "0.1.0", "startTime": 1, "capacity": 2, "running": ["j"],
        "runs": [{"job": "j", "runId": "run-j", "planTime": 1, "startTime": 2}]});
    h.put_etcd("workers/w9", worker.to_string()).await;
    mongo.stop();
    let (status, d) = h.get("/api/v1/dashboard").await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["health"]["mongo"], false);
    assert_eq!(d["health"]["etcd"], true);
    assert_eq!(d["hour"]["buckets"], json!([]));
    let errors = d["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.contains("MongoDB is unavailable"))),
        "{errors:?}"
    );
    assert_eq!(d["running"][0]["runId"], "run-j");
    assert_eq!(d["workers"][0]["id"], "w9");
}

#[tokio::test]
async fn logs_filter_by_worker_and_time_range_and_page_by_cursor_within_them() {
    let h = harness().await;
    let base = 1_700_000_000_000i64;
    let mut records = Vec::new();
    for i in 0..40i64 {
        let worker = if i % 2 == 0 { "w-even" } else { "w-odd" };
        let job = if i % 4 < 2 { "a" } else { "b" };
        records.push(record(
            job,
            &format!("r{i:02}"),
            base + i * 1_000,
            5,
            "success",
            worker,
        ));
    }
    h.insert(records).await;

    let (status, page) = h.get("/api/v1/logs?worker=w-odd&limit=100").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 20);
    assert!(
        page["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .all(|l| l["worker"] == "w-odd")
    );

    let (from, to) = (base + 10_000, base + 20_000);
    let (_, page) = h
        .get(&format!("/api/v1/logs?from={from}&to={to}&limit=100"))
        .await;
    let starts: Vec<i64> = page["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["startTime"].as_i64().expect("start"))
        .collect();
    assert_eq!(
        starts,
        (10..20).rev().map(|i| base + i * 1_000).collect::<Vec<_>>(),
        "from inclusive, to exclusive"
    );
    assert_eq!(page["total"], 10);

    let (_, page) = h
        .get(&format!(
            "/api/v1/jobs/a/logs?worker=w-even&from={from}&limit=100"
        ))
        .await;
    let ids: Vec<&str> = page["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["runId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec!["r36", "r32", "r28", "r24", "r20", "r16", "r12"]);

    // Pages by cursor stay within the filters.
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/logs?worker=w-even&from={from}&to={}&limit=3",
            base + 30_000
        );
        if let Some(c) = &before {
            path.push_str(&format!("&before={c}"));
        }
        let (status, page) = h.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 10);
        for l in page["logs"].as_array().expect("logs") {
            seen.push(l["runId"].as_str().expect("id").to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => before = Some(c.to_string()),
            None => break,
        }
    }
    let want: Vec<String> = (10..30)
        .rev()
        .filter(|i| i % 2 == 0)
        .map(|i| format!("r{i:02}"))
        .collect();
    assert_eq!(seen, want);

    for bad in [
        format!("/api/v1/logs?from={to}&to={from}"),
        format!("/api/v1/jobs/a/logs?from={to}&to={from}"),
    ] {
        let (status, body) = h.get(&bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let msg = body["error"].as_str().expect("message");
        assert!(msg.contains("`from`") && msg.contains("`to`"), "{msg}");
    }
    let (status, _) = h.get("/api/v1/logs?from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_cluster_names_its_alert_sinks_and_says_when_there_is_none() {
    let h = harness().await;
    let (_, cluster) = h.get("/api/v1/cluster").await;
    assert_eq!(
        cluster["alerts"],
        json!({"sinks": [], "sent": 0, "failed": 0, "suppressed": 0})
    );

    let mut cfg = config();
    cfg.alerts.webhook_urls = vec!["http://127.0.0.1:9/a".into(), "http://127.0.0.1:9/b".into()];
    cfg.alerts.slack_webhook_url = Some("http://127.0.0.1:9/slack".into());
    let h = harness_with(cfg).await;
    let (_, cluster) = h.get("/api/v1/cluster").await;
    assert_eq!(cluster["alerts"]["sinks"], json!(["slack", "webhook"]));
    let (_, d) = h.get("/api/v1/dashboard").await;
    assert_eq!(d["health"]["alerts"]["sinks"], json!(["slack", "webhook"]));
}

#[tokio::test]
async fn every_console_read_is_served_by_an_index() {
    use rcron_shared::runlog::mongo::{MongoRunLog, Read};
    use rcron_shared::runlog::{LogCursor, LogQuery, RunLogWriter, Span, Tally};
    let h = harness().await;
    let db = mongodb::Client::with_uri_str(kit::mongo_uri())
        .await
        .expect("mongo")
        .database(h.log.namespace().db.as_str());
    let log = MongoRunLog::new(&db, Duration::from_secs(3600));
    let one = rcron_shared::LogRecord {
        job_name: "indexed".into(),
        command: "true".into(),
        err: String::new(),
        output: String::new(),
        plan_time: 1,
        schedule_time: 1,
        start_time: 1,
        end_time: 2,
        run_id: "run-indexed".into(),
        worker: "w".into(),
        exit_code: Some(0),
        status: rcron_shared::RunStatus::Success,
        attempt: 1,
        output_truncated: false,
        reason: None,
        trigger: Default::default(),
        triggered_by: None,
        params: None,
    };
    // The first write creates the indexes.
    log.write(std::slice::from_ref(&one)).await.expect("write");
    let page = LogQuery {
        limit: 20,
        ..LogQuery::default()
    };
    let by_worker = LogQuery {
        worker: Some("w".into()),
        ..page.clone()
    };
    let by_worker_next = LogQuery {
        before: Some(LogCursor::after(&one)),
        from: Some(0),
        to: Some(10),
        ..by_worker.clone()
    };
    let by_job_worker = LogQuery {
        job: Some("indexed".into()),
        ..by_worker.clone()
    };
    let in_range = LogQuery {
        from: Some(0),
        to: Some(10),
        ..page.clone()
    };
    let job_in_range_next = LogQuery {
        job: Some("indexed".into()),
        before: Some(LogCursor::after(&one)),
        ..in_range.clone()
    };
    let span = Span { from: 0, to: 10 };
    let mut reads = vec![
        ("a worker's page", Read::Page(&by_worker)),
        (
            "a worker's next page in a range",
            Read::Page(&by_worker_next),
        ),
        ("a job's page of one worker", Read::Page(&by_job_worker)),
        ("a time range", Read::Page(&in_range)),
        (
            "a job's next page in a range",
            Read::Page(&job_in_range_next),
        ),
        ("a job's last runs", Read::LatestRuns("indexed")),
        (
            "a job's run times",
            Read::RunTimes {
                job: "indexed",
                span,
            },
        ),
    ];
    for tally in [
        Tally::Runs,
        Tally::Succeeded,
        Tally::Failed,
        Tally::Skipped,
        Tally::Missed,
    ] {
        reads.push((
            "a job's tally",
            Read::Tally {
                job: Some("indexed"),
                tally,
                span,
            },
        ));
    }
    for tally in [Tally::Runs, Tally::Failed, Tally::Missed] {
        reads.push((
            "every job's tally",
            Read::Tally {
                job: None,
                tally,
                span,
            },
        ));
    }
    for (what, read) in reads {
        let plan = log.explain_read(read).await.expect("explain");
        let text = plan.to_string();
        assert!(
            text.contains("IXSCAN") || text.contains("USING INDEX"),
            "{what} ({read:?}) is not served by an index: {text}"
        );
    }
}

/// A run id as a worker mints it now (UUIDv7).
fn fresh_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test]
async fn a_stream_asked_for_a_run_just_begun_waits_for_its_worker_or_its_record() {
    let h = Arc::new(harness().await);
    let now = now_ms();

    // Ended before its record reached the run log: the record arrives 1 s
    // after the request, and the stream serves its output.
    let ended = fresh_run_id();
    let mut rec = record("quick", &ended, now, 5, "success", "w1");
    rec.insert("output", "hello from the record\n");
    let writer = {
        let h = h.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            h.insert(vec![rec]).await;
        })
    };
    let (status, body) = h.get(&format!("/api/v1/runs/{ended}/output/stream")).await;
    writer.await.expect("writer");
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.as_str().expect("an event stream");
    assert!(text.contains("hello from the record"), "{text}");
    assert!(text.contains("event: end"), "{text}");

    // Just started, not yet in its worker's registration: the master
    // finds it there once it appears (this worker serves no live output,
    // which the answer names, rather than "no such run").
    let started = fresh_run_id();
    let worker = json!({"id": "w-late", "hostname": "host-b", "ip": "10.0.0.2", "pid": 1,
        "version": "0.1.0", "startTime": now - 60_000, "capacity": 2, "running": ["slow"],
        "runs": [{"job": "slow", "runId": started, "planTime": now, "startTime": now}]});
    let registrar = {
        let h = h.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            h.put_etcd("workers/w-late", worker.to_string()).await;
        })
    };
    let (status, body) = h
        .get(&format!("/api/v1/runs/{started}/output/stream"))
        .await;
    registrar.await.expect("registrar");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|m| m.contains("w-late")),
        "{body}"
    );

    // An id no worker mints now (not a recent UUIDv7): 404 at once.
    let started_at = std::time::Instant::now();
    let (status, body) = h.get("/api/v1/runs/no-such-run/output/stream").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        started_at.elapsed() < Duration::from_secs(4),
        "answered at once, not after the 5 s wait"
    );
}
