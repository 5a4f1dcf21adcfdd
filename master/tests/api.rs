//! The master's HTTP API against a real etcd (started by
//! `deploy/test-env.sh`): legacy routes, REST routes, bad input, outages.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::GetOptions;
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use rcron_master::MasterConfig;
use rcron_master::api::{AppState, routes};
use rcron_testkit::{self as kit, ServerProcess};
use serde_json::{Value, json};

struct Harness {
    cli: TestClient<BoxEndpoint<'static, Response>>,
    etcd: etcd_client::Client,
    prefix: String,
    mongo_db: String,
}

fn config(endpoint: String) -> (MasterConfig, String) {
    let prefix = kit::unique_prefix();
    let mut cfg = MasterConfig::default();
    cfg.etcd.endpoints = vec![endpoint];
    cfg.etcd.prefix = prefix.clone();
    cfg.etcd.request_timeout_secs = 2;
    cfg.etcd.connect_timeout_secs = 1;
    cfg.max_body_bytes = 64 * 1024;
    cfg.mongo.uri = kit::mongo_uri();
    cfg.mongo.db = kit::unique_db();
    (cfg, prefix)
}

async fn harness_at(endpoint: String) -> Harness {
    let (cfg, prefix) = config(endpoint.clone());
    let state: Arc<AppState> = rcron_master::state(&cfg).await.expect("state");
    let etcd = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("etcd client");
    Harness {
        cli: TestClient::new(routes(state).boxed()),
        etcd,
        prefix,
        mongo_db: cfg.mongo.db,
    }
}

async fn harness() -> Harness {
    harness_at(kit::etcd_endpoint()).await
}

impl Harness {
    async fn legacy_post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self.cli.post(path).form(&form).send().await;
        read(resp.0).await
    }

    async fn legacy_raw(&self, path: &str, body: &'static [u8]) -> (StatusCode, Value) {
        let resp = self
            .cli
            .post(path)
            .content_type("application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        read(resp.0).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        read(self.cli.get(path).send().await.0).await
    }

    async fn send_json(&self, method: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let req = match method {
            "POST" => self.cli.post(path),
            "PUT" => self.cli.put(path),
            "PATCH" => self.cli.patch(path),
            other => panic!("unsupported {other}"),
        };
        read(req.body_json(body).send().await.0).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        read(self.cli.delete(path).send().await.0).await
    }

    async fn etcd_value(&self, key_suffix: &str) -> Option<Vec<u8>> {
        let resp = self
            .etcd
            .clone()
            .get(format!("{}{key_suffix}", self.prefix), None)
            .await
            .expect("etcd get");
        resp.kvs().first().map(|kv| kv.value().to_vec())
    }
}

async fn read(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.into_body().into_string().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn job(name: &str, command: &str) -> Value {
    json!({"name": name, "command": command, "cronExpr": "*/5 * * * * * *"})
}

#[tokio::test]
async fn legacy_save_stores_in_etcd_and_returns_the_previous_job() {
    let h = harness().await;
    let first = r#"{"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}"#;
    let resp = h.cli.post("/job/save").form(&[("job", first)]).send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("application/json");
    // Byte-compatible with the original for a first save.
    resp.assert_text(r#"{"errno":0,"msg":"success","data":null}"#)
        .await;

    let stored: Value =
        serde_json::from_slice(&h.etcd_value("jobs/job1").await.expect("stored")).expect("json");
    assert_eq!(stored["name"], "job1");
    assert_eq!(stored["command"], "echo hello");
    assert_eq!(stored["cronExpr"], "*/5 * * * * * *");

    let second = r#"{"name":"job1","command":"echo hello2","cronExpr":"*/5 * * * * * *"}"#;
    let (status, body) = h.legacy_post("/job/save", &[("job", second)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["errno"], 0);
    assert_eq!(
        body["data"]["command"], "echo hello",
        "data is the previous job"
    );

    let (_, body) = h.get("/job/list").await;
    assert_eq!(body["errno"], 0);
    let jobs = body["data"].as_array().expect("list");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["command"], "echo hello2");

    let (_, body) = h.legacy_post("/job/delete", &[("name", "job1")]).await;
    assert_eq!(body["errno"], 0);
    assert_eq!(
        body["data"]["command"], "echo hello2",
        "data is the deleted job"
    );
    assert_eq!(h.etcd_value("jobs/job1").await, None);
    let (_, body) = h.get("/job/list").await;
    assert_eq!(body["data"], json!([]));
}

#[tokio::test]
async fn legacy_bad_input_gets_errno_and_a_reason_and_stores_nothing() {
    let h = harness().await;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/job/save",
            vec![(
                "job",
                r#"{"name":"j","command":"x","cronExpr":"61 * * * *"}"#,
            )],
            "cron",
        ),
        (
            "/job/save",
            vec![("job", r#"{"name":"a/b","command":"x","cronExpr":"@daily"}"#)],
            "name",
        ),
        (
            "/job/save",
            vec![("job", r#"{"name":"j","command":"x""#)],
            "invalid job JSON",
        ),
        (
            "/job/save",
            vec![("job", r#"{"name":"j","command":"x"}"#)],
            "`cronExpr` is required",
        ),
        ("/job/save", vec![("other", "x")], "invalid job JSON"),
    ];
    for (path, form, needle) in cases {
        let (status, body) = h.legacy_post(path, &form).await;
        assert_eq!(status, StatusCode::OK, "{path} {form:?}: {body}");
        assert_eq!(body["errno"], -1, "{path} {form:?}: {body}");
        let msg = body["msg"].as_str().expect("msg");
        assert!(
            msg.contains(needle),
            "{path} {form:?}: {msg:?} lacks {needle:?}"
        );
        assert_eq!(body["data"], Value::Null);
    }
    let (status, body) = h.legacy_raw("/job/save", b"job=%ZZ%%&&==\xff\xfe").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["errno"], -1, "{body}");
    let (_, list) = h.get("/job/list").await;
    assert_eq!(list["data"], json!([]), "nothing was stored");

    // Deleting or killing what does not exist is no error to the original.
    for (path, form) in [
        ("/job/delete", vec![("name", "nope")]),
        ("/job/delete", vec![("name", "bad name")]),
        ("/job/delete", vec![]),
        ("/job/kill", vec![]),
        ("/job/kill", vec![("name", "bad name")]),
    ] {
        let (status, body) = h.legacy_post(path, &form).await;
        assert_eq!(status, StatusCode::OK, "{path} {form:?}: {body}");
        assert_eq!(
            body,
            json!({"errno": 0, "msg": "success", "data": null}),
            "{path} {form:?}"
        );
    }
    assert_eq!(
        h.etcd_value("killer/").await,
        None,
        "a kill of no name writes nothing"
    );
}

#[tokio::test]
async fn kill_puts_a_short_lived_killer_key() {
    let h = harness().await;
    let (_, body) = h
        .send_json("PUT", "/api/v1/jobs/sleepy", &job("sleepy", "sleep 300"))
        .await;
    assert_eq!(body["job"]["name"], "sleepy", "{body}");

    let (_, body) = h.legacy_post("/job/kill", &[("name", "sleepy")]).await;
    assert_eq!(body, json!({"errno": 0, "msg": "success", "data": null}));
    let resp = h
        .etcd
        .clone()
        .get(
            format!("{}killer/sleepy", h.prefix),
            Some(GetOptions::new()),
        )
        .await
        .expect("get");
    let kv = resp
        .kvs()
        .first()
        .expect("killer key exists right after the kill");
    let ttl = h
        .etcd
        .clone()
        .lease_time_to_live(kv.lease(), None)
        .await
        .expect("ttl")
        .ttl();
    assert!((0..=2).contains(&ttl), "killer lease ttl {ttl}");

    kit::eventually(Duration::from_secs(6), "killer key to expire", || async {
        h.etcd_value("killer/sleepy").await.is_none().then_some(())
    })
    .await;

    let (status, body) = read(h.cli.post("/api/v1/jobs/sleepy/kill").send().await.0).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["name"], "sleepy");
    assert!(h.etcd_value("killer/sleepy").await.is_some());
    let (status, body) = read(h.cli.post("/api/v1/jobs/sleepy/run").send().await.0).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["requestId"].as_str().expect("request id");
    let stored = h
        .etcd_value(&format!("run/sleepy/{id}"))
        .await
        .expect("run request stored for the workers");
    let stored: serde_json::Value = serde_json::from_slice(&stored).expect("JSON");
    assert_eq!(stored["trigger"], "manual");
    assert_eq!(stored["deadline"], body["deadline"]);
    // Parameters for that run only; bad ones refused, every problem named.
    let (status, body) = read(
        h.cli
            .post("/api/v1/jobs/sleepy/run")
            .body_json(&serde_json::json!({"env": {"TARGET": "eu", "1X": "a", "RCRON_JOB": "b"}}))
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("env.1X") && msg.contains("env.RCRON_JOB"),
        "{body}"
    );
    let (status, body) = read(
        h.cli
            .post("/api/v1/jobs/sleepy/run")
            .body_json(&serde_json::json!({"env": {"TARGET": "eu"}, "deadlineSecs": 30}))
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["requestId"].as_str().expect("request id");
    let stored = h
        .etcd_value(&format!("run/sleepy/{id}"))
        .await
        .expect("stored");
    let stored: serde_json::Value = serde_json::from_slice(&stored).expect("JSON");
    assert_eq!(stored["params"]["env"]["TARGET"], "eu");
    let (status, _) = read(h.cli.post("/api/v1/jobs/ghost/run").send().await.0).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = read(h.cli.post("/api/v1/jobs/ghost/kill").send().await.0).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn rest_job_lifecycle_with_real_status_codes() {
    let h = harness().await;
    let (status, body) = h
        .send_json("POST", "/api/v1/jobs", &job("a", "echo a"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "a");
    assert_eq!(body["concurrency"], "forbid");
    assert!(body["nextFireTime"].is_string(), "{body}");

    let (status, body) = h
        .send_json("POST", "/api/v1/jobs", &job("a", "echo again"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("already exists")
    );

    let (status, body) = h.get("/api/v1/jobs/a").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["command"], "echo a");

    let mut changed = job("a", "echo b");
    changed["timeoutSecs"] = json!(30);
    changed["timezone"] = json!("Europe/Berlin");
    changed["disabled"] = json!(true);
    let (status, body) = h.send_json("PUT", "/api/v1/jobs/a", &changed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["previous"]["command"], "echo a");
    assert_eq!(body["job"]["timeoutSecs"], 30);
    assert_eq!(body["job"]["timezone"], "Europe/Berlin");
    assert_eq!(
        body["job"]["nextFireTime"],
        Value::Null,
        "disabled jobs never fire"
    );

    let (status, body) = h
        .send_json("PUT", "/api/v1/jobs/b", &job("b", "echo b"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["previous"], Value::Null);

    let (status, body) = h.send_json("PUT", "/api/v1/jobs/c", &job("d", "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("does not match")
    );

    let (status, body) = h.get("/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 2);
    let names: Vec<&str> = body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["a", "b"]);

    // The REST and legacy views are of the same store.
    let (_, legacy) = h.get("/job/list").await;
    assert_eq!(legacy["data"].as_array().expect("list").len(), 2);

    let (status, body) = h.delete("/api/v1/jobs/a").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["command"], "echo b");
    let (status, _) = h.delete("/api/v1/jobs/a").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.get("/api/v1/jobs/a").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "job \"a\" not found");
}

/// A job as GET shows it: the stored job's fields (each one the REST schema
/// documents) plus what the cluster computes.
#[tokio::test]
async fn a_job_is_shown_with_every_field_it_is_stored_with() {
    let h = harness().await;
    let every = json!({"name": "every", "command": "true", "cronExpr": "@daily",
        "timeoutSecs": 30, "concurrency": "replace", "retries": 2, "retryBackoffSecs": 5,
        "timezone": "Europe/Paris", "disabled": true, "alertEmails": ["ops@example.com"],
        "target": {"labels": {"role": "db"}, "mode": "all"}, "misfire": "runOnce",
        "startingDeadlineSecs": 60, "alertOnMissed": false, "retryBackoffMaxSecs": 600,
        "onSuccess": ["next"], "onFailure": ["cleanup"],
        "env": {"A": "1", "S": {"file": "/run/secrets/s"}}, "workdir": "/srv", "user": "nobody"});
    let (status, body) = h.send_json("PUT", "/api/v1/jobs/every", &every).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let stored: Value =
        serde_json::from_slice(&h.etcd_value("jobs/every").await.expect("stored")).expect("json");
    let (_, shown) = h.get("/api/v1/jobs/every").await;
    for (field, value) in stored.as_object().expect("object") {
        assert_eq!(&shown[field], value, "{field} as stored: {shown}");
    }
    let (_, spec) = h.get("/api/v1/openapi.json").await;
    let documented = spec["components"]["schemas"]["Job"]["properties"]
        .as_object()
        .expect("properties");
    let mut fields: Vec<&String> = stored.as_object().expect("object").keys().collect();
    let mut names: Vec<&String> = documented.keys().collect();
    fields.sort();
    names.sort();
    assert_eq!(fields, names, "the REST schema documents each stored field");
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_keeps_unknown_ones() {
    let h = harness().await;
    let mut base = job("p", "echo p");
    base["timeoutSecs"] = json!(30);
    base["target"] = json!({"labels": {"role": "db"}});
    let (status, body) = h.send_json("PUT", "/api/v1/jobs/p", &base).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A field of a later version, written by it.
    let stored = || async {
        let bytes = h.etcd_value("jobs/p").await.expect("stored");
        serde_json::from_slice::<Value>(&bytes).expect("json")
    };
    let mut later = stored().await;
    later["futureField"] = json!({"x": 1});
    let first_stamp = later["updatedAt"].as_i64().expect("stamped");
    h.etcd
        .clone()
        .put(format!("{}jobs/p", h.prefix), later.to_string(), None)
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Pause: one field.
    let (status, body) = h
        .send_json("PATCH", "/api/v1/jobs/p", &json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["timeoutSecs"], 30);
    assert_eq!(body["nextFireTime"], Value::Null, "paused: {body}");
    assert!(body["warnings"].is_array(), "{body}");
    let now = stored().await;
    assert_eq!(now["disabled"], true);
    assert_eq!(now["command"], "echo p");
    assert_eq!(now["timeoutSecs"], 30);
    assert_eq!(now["futureField"], json!({"x": 1}), "kept: {now}");
    assert!(
        now["updatedAt"].as_i64().expect("stamped") > first_stamp,
        "{now}"
    );

    // Objects merge; other values replace; `null` resets.
    let (status, body) = h
        .send_json(
            "PATCH",
            "/api/v1/jobs/p",
            &json!({"target": {"labels": {"zone": "eu-1"}}, "timezone": "Europe/Berlin",
                    "alertEmails": ["a@example.com"], "updatedAt": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["target"]["labels"],
        json!({"role": "db", "zone": "eu-1"})
    );
    assert_eq!(body["timezone"], "Europe/Berlin");
    assert_ne!(body["updatedAt"], 1, "set by the master: {body}");
    let (status, body) = h
        .send_json(
            "PATCH",
            "/api/v1/jobs/p",
            &json!({"timezone": null, "target": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("timezone").is_none() && body.get("target").is_none(),
        "{body}"
    );
    assert_eq!(body["alertEmails"], json!(["a@example.com"]));

    // A body that changes nothing writes nothing.
    let revision = |h: &Harness| {
        let etcd = h.etcd.clone();
        let key = format!("{}jobs/p", h.prefix);
        async move { etcd.clone().get(key, None).await.expect("get").kvs()[0].mod_revision() }
    };
    let before = revision(&h).await;
    let (status, _) = h
        .send_json(
            "PATCH",
            "/api/v1/jobs/p",
            &json!({"disabled": true, "command": "echo p"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revision(&h).await, before, "no write");

    // Refused as a save would be, each problem named; nothing written.
    let (status, body) = h
        .send_json(
            "PATCH",
            "/api/v1/jobs/p",
            &json!({"cronExpr": "61 * * * *", "timeoutSecs": 99999999}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("`cronExpr`") && problems.contains("`timeoutSecs`"),
        "{body}"
    );
    let (status, body) = h
        .send_json("PATCH", "/api/v1/jobs/p", &json!({"command": null}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["problems"]
            .to_string()
            .contains("`command` is required"),
        "{body}"
    );
    let (status, body) = h
        .send_json("PATCH", "/api/v1/jobs/p", &json!({"name": "q"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("renamed")),
        "{body}"
    );
    let (status, body) = h.send_json("PATCH", "/api/v1/jobs/p", &json!([1, 2])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("JSON object")),
        "{body}"
    );
    let resp = h
        .cli
        .patch("/api/v1/jobs/p")
        .content_type("application/json")
        .body("{nope")
        .send()
        .await;
    let (status, body) = read(resp.0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(revision(&h).await, before, "nothing written");
    let (status, body) = h
        .send_json("PATCH", "/api/v1/jobs/ghost", &json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "job \"ghost\" not found");

    // The merge-patch media type is accepted too.
    let resp = h
        .cli
        .patch("/api/v1/jobs/p")
        .content_type("application/merge-patch+json")
        .body(r#"{"disabled": false}"#)
        .send()
        .await;
    let (status, body) = read(resp.0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stored().await["disabled"], false);
    assert_eq!(stored().await["futureField"], json!({"x": 1}));

    // Audited like every change: pause and resume by name, else update.
    let mut actions = Vec::new();
    for _ in 0..50 {
        let entries = audit_entries(&h.cli, "?job=p").await;
        actions = entries["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["route"] == "PATCH /api/v1/jobs/p")
            .map(|e| e["action"].as_str().unwrap_or_default().to_string())
            .collect();
        if actions.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        actions,
        ["resume", "update", "update", "pause"],
        "newest first"
    );
}

#[tokio::test]
async fn rest_bad_input_is_a_4xx_with_a_message() {
    let h = harness().await;
    // Every problem of a job at once.
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/jobs",
            &json!({"name": "bad/name", "command": "", "cronExpr": "* * *", "timezone": "Nowhere/X"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["problems"].as_array().expect("problems").len(),
        4,
        "{body}"
    );

    // Missing field and malformed JSON, checked by the typed body.
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/jobs",
            &json!({"name": "x", "command": "y"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("cronExpr"),
        "{body}"
    );
    let resp = h
        .cli
        .post("/api/v1/jobs")
        .content_type("application/json")
        .body("{\"name\":")
        .send()
        .await;
    let (status, body) = read(resp.0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let resp = h
        .cli
        .post("/api/v1/jobs")
        .content_type("application/json")
        .body(&b"\xff\xfe"[..])
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::BAD_REQUEST);

    // Names that cannot be jobs, in the path.
    for path in [
        "/api/v1/jobs/a%20b",
        "/api/v1/jobs/%2E%2E",
        &format!("/api/v1/jobs/{}", "x".repeat(129)),
    ] {
        let (status, body) = h.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .expect("error")
                .contains("invalid job name"),
            "{body}"
        );
    }

    // Oversized bodies, with and without a length, REST and legacy.
    let huge = "x".repeat(100 * 1024);
    let resp = h
        .cli
        .post("/api/v1/jobs")
        .content_type("application/json")
        .body(huge.clone())
        .send()
        .await;
    let (status, body) = read(resp.0).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("limit"),
        "{body}"
    );
    let stream = futures_util_stream(huge.clone());
    let resp = h
        .cli
        .post("/job/save")
        .content_type("application/x-www-form-urlencoded")
        .body(stream)
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown routes answer JSON too.
    let (status, body) = h.get("/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string(), "{body}");
    let (_, list) = h.get("/api/v1/jobs").await;
    assert_eq!(list["total"], 0, "nothing was stored");
}

/// A body with no Content-Length (sent as a stream).
fn futures_util_stream(text: String) -> poem::Body {
    poem::Body::from_async_read(std::io::Cursor::new(text.into_bytes()))
}

fn instants(list: &Value) -> Vec<chrono::DateTime<chrono::Utc>> {
    list.as_array()
        .expect("list of times")
        .iter()
        .map(|t| t.as_str().expect("string").parse().expect("RFC 3339 time"))
        .collect()
}

#[tokio::test]
async fn cron_preview_lists_next_fire_times_or_says_why_not() {
    let h = harness().await;
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/cron/preview",
            &json!({"cronExpr": "*/5 * * * * * *", "after": "2024-01-01T00:00:01Z", "count": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["timezone"], "UTC");
    assert_eq!(
        instants(&body["next"]),
        instants(&json!([
            "2024-01-01T00:00:05Z",
            "2024-01-01T00:00:10Z",
            "2024-01-01T00:00:15Z"
        ]))
    );
    let (_, body) = h
        .send_json(
            "POST",
            "/api/v1/cron/preview",
            &json!({"cronExpr": "0 9 * * *", "timezone": "Asia/Tokyo", "after": "2024-01-01T12:00:00Z"}),
        )
        .await;
    assert_eq!(
        body["next"].as_array().expect("next").len(),
        5,
        "default count"
    );
    assert_eq!(
        instants(&body["next"])[0],
        instants(&json!(["2024-01-02T00:00:00Z"]))[0]
    );

    for (req, needle) in [
        (json!({"cronExpr": "* * *"}), "expected 5 fields"),
        (
            json!({"cronExpr": "@daily", "timezone": "Mars/Base"}),
            "unknown time zone",
        ),
        (json!({"cronExpr": "@daily", "count": 0}), "count"),
        (json!({"cronExpr": "@daily", "count": 1000}), "count"),
    ] {
        let (status, body) = h.send_json("POST", "/api/v1/cron/preview", &req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{req}: {body}");
        assert!(
            body["error"].as_str().expect("error").contains(needle),
            "{body}"
        );
    }
}

/// `30 2 * * *` in Europe/Berlin after 2026-06-01: 02:30 is repeated on
/// 2026-10-25 and skipped on 2027-03-28.
const BERLIN_0230: [&str; 2] = [
    "02:30 on 2026-10-25 happens twice in Europe/Berlin; the job runs once, at the first",
    "runs at 03:00 instead of 02:30 on 2027-03-28 (Europe/Berlin skips 02:00–03:00)",
];

const QUARTZ_LOOKALIKE: &str = "6 fields are `min hour day month weekday year` here: \
     `*/30 * * * * *` runs every 30 minutes; for seconds first, write 7 fields: \
     `*/30 * * * * * *`";

#[tokio::test]
async fn preview_and_saves_warn_where_the_user_is_likely_wrong_but_never_refuse() {
    let h = harness().await;
    let preview = |expr: &str| json!({"cronExpr": expr, "timezone": "Europe/Berlin", "after": "2026-06-01T00:00:00Z", "count": 2});
    // A daily 02:30 in Berlin: fires are still listed, the DST changes are told.
    let (status, body) = h
        .send_json("POST", "/api/v1/cron/preview", &preview("30 2 * * *"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["next"].as_array().expect("next").len(), 2, "{body}");
    assert_eq!(body["warnings"], json!(BERLIN_0230), "{body}");
    // Seconds-first in 6 fields: every 30 *minutes* here.
    let (status, body) = h
        .send_json("POST", "/api/v1/cron/preview", &preview("*/30 * * * * *"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings[0], QUARTZ_LOOKALIKE, "{body}");
    // Every 5 seconds, in 7 fields, in UTC: nothing to say.
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/cron/preview",
            &json!({"cronExpr": "*/5 * * * * * *", "timezone": "UTC"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"], json!([]), "{body}");
    // A refusal names the field and what it accepts.
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/cron/preview",
            &json!({"cronExpr": "0 25 * * *"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(
        error.contains("field 2 (hour) `25` is out of range 0–23"),
        "{body}"
    );
    assert!(!error.contains("Component error"), "{body}");

    // Saves answer the warnings from now on (a year always holds Berlin's
    // spring-forward and fall-back) and store the job all the same.
    let mut dst = job("dst", "true");
    dst["cronExpr"] = json!("30 2 * * *");
    dst["timezone"] = json!("Europe/Berlin");
    let (status, body) = h.send_json("POST", "/api/v1/jobs", &dst).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "dst", "{body}");
    let texts: Vec<&str> = body["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().expect("text"))
        .collect();
    assert_eq!(texts.len(), 2, "{body}");
    assert!(
        texts
            .iter()
            .any(|w| w.starts_with("runs at 03:00 instead of 02:30 on ")
                && w.ends_with(" (Europe/Berlin skips 02:00–03:00)")),
        "{body}"
    );
    assert!(
        texts.iter().any(|w| w.starts_with("02:30 on ")
            && w.ends_with(" happens twice in Europe/Berlin; the job runs once, at the first")),
        "{body}"
    );
    assert!(h.etcd_value("jobs/dst").await.is_some(), "stored");

    let mut quartz = job("quartz", "true");
    quartz["cronExpr"] = json!("*/30 * * * * *");
    let (status, body) = h.send_json("PUT", "/api/v1/jobs/quartz", &quartz).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["warnings"], json!([QUARTZ_LOOKALIKE]), "{body}");
    assert_eq!(body["job"]["cronExpr"], "*/30 * * * * *");
    // Fixed as the warning says: replaced, nothing to say any more.
    quartz["cronExpr"] = json!("*/5 * * * * * *");
    let (status, body) = h.send_json("PUT", "/api/v1/jobs/quartz", &quartz).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"], json!([]), "{body}");
    let (status, body) = h
        .send_json("POST", "/api/v1/jobs", &job("clean", "true"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["warnings"], json!([]), "{body}");
    // Reads carry no warnings.
    let (_, body) = h.get("/api/v1/jobs/dst").await;
    assert!(body.get("warnings").is_none(), "{body}");

    // A refused save lists the field's problem.
    let mut bad = job("bad", "true");
    bad["cronExpr"] = json!("0 0 * * 8");
    let (status, body) = h.send_json("POST", "/api/v1/jobs", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["problems"][0]
            .as_str()
            .expect("problem")
            .contains("`cronExpr`: invalid cron expression \"0 0 * * 8\": field 5 (weekday) `8` is out of range 0–7"),
        "{body}"
    );

    // The legacy route answers as the original did: no warnings.
    let legacy = r#"{"name":"legacy-dst","command":"true","cronExpr":"30 2 * * *","timezone":"Europe/Berlin"}"#;
    let resp = h
        .cli
        .post("/job/save")
        .form(&[("job", legacy)])
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_text(r#"{"errno":0,"msg":"success","data":null}"#)
        .await;
}

#[tokio::test]
async fn openapi_document_lists_every_rest_route_and_swagger_ui_renders() {
    let h = harness().await;
    let (status, spec) = h.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = spec["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/jobs", vec!["get", "post"]),
        ("/api/v1/jobs/{name}", vec!["get", "put", "patch", "delete"]),
        ("/api/v1/jobs/{name}/kill", vec!["post"]),
        ("/api/v1/runs/{run_id}/kill", vec!["post"]),
        ("/api/v1/jobs/{name}/run", vec!["post"]),
        ("/api/v1/cluster", vec!["get"]),
        ("/api/v1/alerts", vec!["get"]),
        ("/api/v1/cron/preview", vec!["post"]),
        ("/api/v1/logs", vec!["get"]),
        ("/api/v1/jobs/{name}/logs", vec!["get"]),
        ("/api/v1/workers", vec!["get"]),
    ] {
        for m in methods {
            assert!(
                paths[path][m].is_object(),
                "{m} {path} missing from the OpenAPI document"
            );
        }
    }
    for schema in [
        "Job",
        "JobPatch",
        "JobView",
        "JobList",
        "ErrorBody",
        "PreviewRequest",
        "Preview",
        "CreatedJob",
        "SavedJob",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    // Saves and previews answer warnings, always present (maybe empty);
    // a created job is the job view plus its warnings.
    for schema in ["Preview", "CreatedJob", "SavedJob"] {
        let s = &spec["components"]["schemas"][schema];
        assert_eq!(
            s["properties"]["warnings"]["type"], "array",
            "{schema}: {s}"
        );
        assert!(
            s["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("warnings"))),
            "{schema}: {s}"
        );
    }
    // A patch names any fields of a job, none required.
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["JobPatch"]["properties"], schemas["Job"]["properties"],
        "a patch has the job's fields"
    );
    assert!(
        schemas["JobPatch"]["required"].is_null(),
        "{}",
        schemas["JobPatch"]
    );
    assert_eq!(
        spec["paths"]["/api/v1/jobs/{name}"]["patch"]["requestBody"]["content"]["application/json; charset=utf-8"]
            ["schema"]["$ref"],
        "#/components/schemas/JobPatch"
    );
    let created = &spec["components"]["schemas"]["CreatedJob"]["properties"];
    for field in ["name", "cronExpr", "nextFireTime", "unschedulable"] {
        assert!(created[field].is_object(), "CreatedJob lacks {field}");
    }
    let resp = h.cli.get("/docs").send().await;
    resp.assert_status_is_ok();
    let html = resp.0.into_body().into_string().await.expect("html");
    assert!(html.contains("swagger"), "Swagger UI page");
    assert!(
        html.contains("openapi.json") || html.contains("spec"),
        "Swagger UI points at the spec"
    );
    assert_eq!(
        h.cli.get("/healthz").send().await.0.status(),
        StatusCode::OK
    );
    assert_eq!(h.cli.get("/readyz").send().await.0.status(), StatusCode::OK);
}

#[tokio::test]
async fn etcd_outage_answers_503_and_recovers_by_itself() {
    let mut etcd = kit::ServerProcess::etcd();
    let h = harness_at(etcd.addr()).await;
    let (status, _) = h
        .send_json("PUT", "/api/v1/jobs/x", &job("x", "true"))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    etcd.stop();
    let started = std::time::Instant::now();
    // Reads come from the master's copy of the jobs while etcd confirms it
    // is current; within seconds of etcd's going they go to etcd: 503.
    let (status, body) = kit::eventually(
        Duration::from_secs(5),
        "reads to see the outage",
        || async {
            let (status, body) = h.get("/api/v1/jobs").await;
            (status != StatusCode::OK).then_some((status, body))
        },
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("etcd is unavailable"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered, not hung: {:?}",
        started.elapsed()
    );
    let (status, body) = h
        .legacy_post("/job/save", &[("job", &job("y", "true").to_string())])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errno"], -1);
    assert_eq!(
        h.cli.get("/readyz").send().await.0.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    etcd.start();
    kit::eventually(
        Duration::from_secs(30),
        "API to recover after etcd restarts",
        || async {
            let (status, body) = h.get("/api/v1/jobs").await;
            (status == StatusCode::OK).then_some(body)
        },
    )
    .await;
    let (_, body) = h.get("/api/v1/jobs").await;
    assert_eq!(
        body["total"], 1,
        "the job saved before the outage is still there"
    );
    assert_eq!(h.cli.get("/readyz").send().await.0.status(), StatusCode::OK);
}

async fn log_collection(db: &str) -> mongodb::Collection<mongodb::bson::Document> {
    mongodb::Client::with_uri_str(kit::mongo_uri())
        .await
        .expect("mongo client")
        .database(db)
        .collection("log")
}

#[tokio::test]
async fn run_logs_newest_first_paged_filtered_legacy_and_rest() {
    use mongodb::bson::doc;
    let h = harness().await;
    let coll = log_collection(&h.mongo_db).await;
    let mut docs = Vec::new();
    for i in 0..25i64 {
        let status = if i % 5 == 0 { "failed" } else { "success" };
        docs.push(doc! {
            "jobName": "job1", "command": "echo hello", "err": if status == "failed" { "exit code 1" } else { "" },
            "output": format!("run {i}\n"), "planTime": 1_000_000 + i * 5000, "scheduleTime": 1_000_001 + i * 5000,
            "startTime": 1_000_002 + i * 5000, "endTime": 1_000_010 + i * 5000, "runId": format!("r{i}"),
            "worker": "w1", "exitCode": if status == "failed" { 1 } else { 0 }, "status": status, "attempt": 1,
            "outputTruncated": false,
        });
    }
    // A document written by the original Go system: only its eight fields.
    docs.push(
        doc! {"jobName": "job1", "command": "echo old", "err": "", "output": "old\n",
        "planTime": 1i64, "scheduleTime": 2i64, "startTime": 3i64, "endTime": 4i64},
    );
    docs.push(
        doc! {"jobName": "other", "command": "x", "err": "", "output": "", "planTime": 5i64,
        "scheduleTime": 5i64, "startTime": 5i64, "endTime": 5i64, "status": "success"},
    );
    coll.insert_many(docs).await.expect("insert");

    let (_, body) = h.get("/job/log?name=job1").await;
    assert_eq!(body["errno"], 0, "{body}");
    let logs = body["data"].as_array().expect("list");
    assert_eq!(logs.len(), 20, "default limit 20");
    assert_eq!(logs[0]["output"], "run 24\n", "newest first");
    assert_eq!(logs[0]["planTime"], 1_000_000 + 24 * 5000);
    let (_, body) = h.get("/job/log?name=job1&skip=20&limit=10").await;
    let logs = body["data"].as_array().expect("list");
    assert_eq!(logs.len(), 6);
    assert_eq!(
        logs[5]["command"], "echo old",
        "original documents read back"
    );
    assert_eq!(logs[5]["status"], "success");
    // As the original: a limit that is not an integer is the default 20,
    // and no name matches no run.
    let (_, body) = h.get("/job/log?name=job1&limit=abc").await;
    assert_eq!(body["errno"], 0, "{body}");
    assert_eq!(body["data"].as_array().expect("list").len(), 20);
    let (_, body) = h.get("/job/log").await;
    assert_eq!(body, json!({"errno": 0, "msg": "success", "data": []}));
    let (_, body) = h.get("/job/log?name=job1&skip=-1").await;
    assert_eq!(body["errno"], -1, "{body}");

    let (status, body) = h.get("/api/v1/jobs/job1/logs?status=failed&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 5);
    assert_eq!(body["logs"].as_array().expect("logs").len(), 2);
    assert_eq!(body["logs"][0]["runId"], "r20");
    assert_eq!(body["logs"][0]["exitCode"], 1);
    let (_, body) = h.get("/api/v1/logs").await;
    assert_eq!(body["total"], 27, "all jobs");
    let (_, body) = h.get("/api/v1/logs?job=other").await;
    assert_eq!(body["total"], 1);
    for bad in [
        "/api/v1/logs?limit=0",
        "/api/v1/logs?limit=100000",
        "/api/v1/logs?status=weird",
        "/api/v1/logs?skip=-1",
        "/api/v1/logs?before=nonsense",
        "/api/v1/runs/bad%20id",
    ] {
        let (status, body) = h.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }

    // Pages by keyset: each page starts after the last record of the one
    // before; the list carries no output, one run's record has it.
    let mut seen = Vec::new();
    let mut before = None::<String>;
    loop {
        let path = match &before {
            Some(c) => format!("/api/v1/jobs/job1/logs?limit=7&before={c}"),
            None => "/api/v1/jobs/job1/logs?limit=7".to_string(),
        };
        let (status, page) = h.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 26);
        assert_eq!(page["totalCapped"], false);
        for l in page["logs"].as_array().expect("logs") {
            assert!(
                l.get("output").is_none_or(|o| o == ""),
                "no output in the list: {l}"
            );
            seen.push(l["startTime"].as_i64().expect("start"));
        }
        match page["nextCursor"].as_str() {
            Some(c) => before = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 26, "every record once over the pages");
    assert!(
        seen.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {seen:?}"
    );
    let (_, page) = h.get("/api/v1/logs?job=job1&limit=1&output=true").await;
    assert_eq!(page["logs"][0]["output"], "run 24\n");
    let (status, run) = h.get("/api/v1/runs/r20").await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["jobName"], "job1");
    assert_eq!(run["attempts"][0]["output"], "run 20\n");
    let (status, _) = h.get("/api/v1/runs/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Totals are counted up to 10,000, then shown as more.
    let many: Vec<_> = (0..10_050i64)
        .map(|i| {
            doc! {"_id": format!("m{i}-1"), "jobName": "busy", "command": "true", "err": "",
            "output": "", "planTime": i, "scheduleTime": i, "startTime": i, "endTime": i,
            "runId": format!("m{i}"), "status": "success", "attempt": 1}
        })
        .collect();
    coll.insert_many(many).await.expect("insert many");
    let (_, page) = h.get("/api/v1/jobs/busy/logs?limit=5").await;
    assert_eq!(page["total"], 10_000, "{}", page["total"]);
    assert_eq!(page["totalCapped"], true);
    assert_eq!(page["logs"][0]["runId"], "m10049");
}

#[tokio::test]
async fn workers_are_listed_from_their_registrations() {
    let h = harness().await;
    let info = json!({"id": "w1", "hostname": "host-a", "ip": "10.1.2.3", "pid": 42, "version": "0.1.0",
        "startTime": 1, "capacity": 8, "running": ["job1"]});
    h.etcd
        .clone()
        .put(format!("{}workers/w1", h.prefix), info.to_string(), None)
        .await
        .expect("put");
    let (_, body) = h.get("/worker/list").await;
    assert_eq!(
        body,
        json!({"errno": 0, "msg": "success", "data": ["10.1.2.3"]})
    );
    let (status, body) = h.get("/api/v1/workers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["workers"][0]["hostname"], "host-a");
    assert_eq!(body["workers"][0]["running"], json!(["job1"]));
}

#[tokio::test]
async fn mongo_outage_makes_log_queries_fail_cleanly() {
    let mut mongo = kit::ServerProcess::mongo();
    let (mut cfg, _) = config(kit::etcd_endpoint());
    cfg.mongo.uri = format!("mongodb://{}", mongo.addr());
    let state = rcron_master::state(&cfg).await.expect("state");
    let cli = TestClient::new(routes(state).boxed());
    let (status, body) = read(cli.get("/api/v1/logs").send().await.0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    mongo.stop();
    let started = std::time::Instant::now();
    let (status, body) = read(cli.get("/api/v1/logs").send().await.0).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("MongoDB is unavailable"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let (status, body) = read(cli.get("/job/log?name=x").send().await.0).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errno"], -1);
    mongo.start();
    kit::eventually(
        Duration::from_secs(30),
        "log queries to recover",
        || async {
            let (status, _) = read(cli.get("/api/v1/logs").send().await.0).await;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn with_tokens_configured_only_the_admin_token_changes_anything() {
    let (mut cfg, prefix) = config(kit::etcd_endpoint());
    cfg.api_token = Some("admin-token-0123456789".into());
    cfg.api_read_token = Some("read-token-0123456789".into());
    let state = rcron_master::state(&cfg).await.expect("state");
    let cli = TestClient::new(routes(state).boxed());
    let etcd = etcd_client::Client::connect([kit::etcd_endpoint()], None)
        .await
        .expect("etcd");
    let job = r#"{"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}"#;

    // Unauthenticated legacy save: 401, nothing stored.
    let resp = cli.post("/job/save").form(&[("job", job)]).send().await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    resp.assert_header("www-authenticate", "Bearer realm=\"rcron\"");
    let (_, body) = read(resp.0).await;
    assert!(
        body["error"].as_str().expect("error").contains("API token"),
        "{body}"
    );
    let stored = etcd
        .clone()
        .get(format!("{prefix}jobs/job1"), None)
        .await
        .expect("get");
    assert!(stored.kvs().is_empty(), "nothing stored");

    // A wrong token, a read token on a write: refused.
    let resp = cli
        .post("/job/save")
        .header("Authorization", "Bearer nope")
        .form(&[("job", job)])
        .send()
        .await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    let resp = cli
        .post("/job/save")
        .header("Authorization", "Bearer read-token-0123456789")
        .form(&[("job", job)])
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    let resp = cli
        .put("/api/v1/jobs/job1")
        .header("Authorization", "Bearer read-token-0123456789")
        .body_json(&job_value())
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);

    // The admin token writes; the read token reads; reads need a token too.
    let resp = cli
        .post("/job/save")
        .header("Authorization", "Bearer admin-token-0123456789")
        .form(&[("job", job)])
        .send()
        .await;
    resp.assert_status_is_ok();
    let resp = cli
        .get("/api/v1/jobs")
        .header("Authorization", "Bearer read-token-0123456789")
        .send()
        .await;
    resp.assert_status_is_ok();
    cli.get("/api/v1/jobs")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    cli.get("/job/list")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    // The legacy reads answer any method (as the original): a read token
    // lists with a POST; a GET of a legacy write reads no form and changes
    // nothing, so a read token may send it.
    let resp = cli
        .post("/job/list")
        .header("Authorization", "Bearer read-token-0123456789")
        .form(&[("x", "y")])
        .send()
        .await;
    resp.assert_status_is_ok();
    let (_, body) = read(resp.0).await;
    assert_eq!(body["data"][0]["name"], "job1", "{body}");
    let resp = cli
        .get("/job/delete?name=job1")
        .header("Authorization", "Bearer read-token-0123456789")
        .send()
        .await;
    let (_, body) = read(resp.0).await;
    assert_eq!(body, json!({"errno": 0, "msg": "success", "data": null}));
    let stored = etcd
        .clone()
        .get(format!("{prefix}jobs/job1"), None)
        .await
        .expect("get");
    assert_eq!(stored.kvs().len(), 1, "a GET deletes nothing");
    cli.get("/metrics")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);

    // Probes, the admin page and the API description stay public.
    for path in [
        "/healthz",
        "/readyz",
        "/",
        "/ui/app.js",
        "/api/v1/openapi.json",
        "/docs",
    ] {
        cli.get(path).send().await.assert_status_is_ok();
    }
}

fn job_value() -> Value {
    job("job1", "echo hello")
}

#[tokio::test]
async fn an_open_api_is_refused_on_a_public_address_unless_insecure() {
    let (mut cfg, _) = config(kit::etcd_endpoint());
    cfg.listen = "0.0.0.0:0".parse().expect("addr");
    let err = rcron_master::run(cfg.clone(), tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("without an admin token"), "{err}");
    cfg.api_token = Some("admin-token-0123456789".into());
    assert!(cfg.check_exposure().is_ok());
    cfg.api_token = None;
    cfg.insecure = true;
    assert!(cfg.check_exposure().is_ok());
}

#[tokio::test]
async fn kills_reach_runs_of_deleted_jobs_and_single_runs_by_id_and_zones_must_agree() {
    let h = harness().await;
    // A worker in another zone, draining, still running a job deleted meanwhile.
    let info = json!({"id": "w-tokyo", "hostname": "host-b", "ip": "10.1.2.4", "pid": 7, "version": "0.1.0",
        "startTime": 1, "capacity": 8, "running": ["gone"], "draining": true, "timezone": "Asia/Tokyo",
        "runs": [{"job": "gone", "runId": "0190abc-1", "planTime": 1000, "startTime": 1001}]});
    h.etcd
        .clone()
        .put(
            format!("{}workers/w-tokyo", h.prefix),
            info.to_string(),
            None,
        )
        .await
        .expect("put");

    let (status, body) = read(h.cli.post("/api/v1/jobs/gone/kill").send().await.0).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a deleted job's run can be killed: {body}"
    );
    assert!(h.etcd_value("killer/gone").await.is_some());
    let (status, body) = read(h.cli.post("/api/v1/jobs/never/kill").send().await.0).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no such job and no run of it: {body}"
    );
    let (_, body) = h.legacy_post("/job/kill", &[("name", "never")]).await;
    assert_eq!(
        body,
        json!({"errno": 0, "msg": "success", "data": null}),
        "the legacy route kills by name without a lookup, as the original"
    );

    let (status, body) = read(h.cli.post("/api/v1/runs/0190abc-1/kill").send().await.0).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"runId": "0190abc-1", "job": "gone", "worker": "w-tokyo"})
    );
    assert!(h.etcd_value("killrun/0190abc-1").await.is_some());
    let (status, body) = read(h.cli.post("/api/v1/runs/0190abc-2/kill").send().await.0).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not running")),
        "{body}"
    );
    let (status, body) = read(h.cli.post("/api/v1/runs/a.b/kill").send().await.0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (_, body) = h.get("/api/v1/workers").await;
    let w = &body["workers"][0];
    assert_eq!(w["draining"], true, "{body}");
    assert_eq!(w["runs"][0]["runId"], "0190abc-1", "{body}");
    assert_eq!(w["timezone"], "Asia/Tokyo", "{body}");

    let (_, body) = h.get("/api/v1/cluster").await;
    assert_eq!(body["timezone"], "UTC", "{body}");
    let mismatch = body["zoneMismatch"]
        .as_str()
        .expect("a zone mismatch is reported");
    assert!(
        mismatch.contains("Asia/Tokyo: worker w-tokyo") && mismatch.contains("UTC: master"),
        "{mismatch}"
    );
}

#[tokio::test]
async fn pages_of_other_origins_cannot_change_anything_and_foreign_hosts_are_refused_while_open() {
    let h = harness().await;
    let job = r#"{"name":"xsite","command":"touch /tmp/pwned","cronExpr":"* * * * * * *"}"#;
    // A form posted by a page on another site (no CORS preflight for forms).
    let resp = h
        .cli
        .post("/job/save")
        .header("Host", "127.0.0.1:8070")
        .header("Origin", "https://evil.example")
        .form(&[("job", job)])
        .send()
        .await;
    let (status, body) = read(resp.0).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("RCRON_ALLOWED_ORIGINS")),
        "{body}"
    );
    // The same through the REST API, and a browser that only says cross-site.
    let resp = h
        .cli
        .put("/api/v1/jobs/xsite")
        .header("Origin", "http://127.0.0.1:9999")
        .header("Host", "127.0.0.1:8070")
        .body_json(&serde_json::from_str::<Value>(job).expect("json"))
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    let resp = h
        .cli
        .post("/api/v1/jobs/xsite/run")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    assert!(h.etcd_value("jobs/xsite").await.is_none(), "nothing stored");
    assert!(h.etcd_value("run/xsite").await.is_none(), "nothing run");

    // The admin page served by the master (same origin), and scripts
    // sending no Origin, keep working.
    let resp = h
        .cli
        .post("/job/save")
        .header("Host", "127.0.0.1:8070")
        .header("Origin", "http://127.0.0.1:8070")
        .form(&[("job", job)])
        .send()
        .await;
    let (_, body) = read(resp.0).await;
    assert_eq!(body["errno"], 0, "{body}");
    let (_, body) = h.legacy_post("/job/delete", &[("name", "xsite")]).await;
    assert_eq!(body["errno"], 0, "{body}");

    // DNS rebinding: a foreign name for this machine, on the open API.
    let resp = h
        .cli
        .get("/api/v1/jobs")
        .header("Host", "rebind.evil.example:8070")
        .send()
        .await;
    let (status, body) = read(resp.0).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("RCRON_ALLOWED_HOSTS")),
        "{body}"
    );
    let resp = h
        .cli
        .get("/job/list")
        .header("Host", "localhost:8070")
        .send()
        .await;
    resp.assert_status_is_ok();
    let resp = h
        .cli
        .get("/healthz")
        .header("Host", "10.0.0.7:8070")
        .send()
        .await;
    resp.assert_status_is_ok();
    let resp = h
        .cli
        .get("/job/list")
        .header("Host", "bad host")
        .send()
        .await;
    resp.assert_status(StatusCode::BAD_REQUEST);

    // With a token the Host is not restricted (masters behind a proxy),
    // but cross-origin writes are still refused, token or not.
    let (mut cfg, _) = config(kit::etcd_endpoint());
    cfg.api_token = Some("admin-token-0123456789".into());
    cfg.allowed_origins = vec!["https://admin.example.com".into()];
    let cli = TestClient::new(routes(rcron_master::state(&cfg).await.expect("state")).boxed());
    let resp = cli
        .get("/api/v1/jobs")
        .header("Host", "cron.example.com")
        .header("Authorization", "Bearer admin-token-0123456789")
        .send()
        .await;
    resp.assert_status_is_ok();
    let resp = cli
        .post("/api/v1/jobs/none/kill")
        .header("Host", "cron.example.com")
        .header("Origin", "https://evil.example")
        .header("Authorization", "Bearer admin-token-0123456789")
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    let resp = cli
        .post("/api/v1/jobs/none/kill")
        .header("Host", "cron.example.com")
        .header("Origin", "https://admin.example.com")
        .header("Authorization", "Bearer admin-token-0123456789")
        .send()
        .await;
    resp.assert_status(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn named_keys_get_what_their_role_allows() {
    let secrets = [
        ("alice", "admin", "alice-secret-0123456789"),
        ("oscar", "operator", "oscar-secret-0123456789"),
        ("rita", "read", "rita-secret-0123456789"),
    ];
    let file = std::env::temp_dir().join(format!(
        "rcron-keys-{}.toml",
        kit::unique_prefix().trim_matches('/')
    ));
    let mut text = String::new();
    for (name, role, secret) in secrets {
        text.push_str(&format!(
            "[[key]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            rcron_master::api::hash_secret(secret)
        ));
    }
    std::fs::write(&file, text).expect("write keys file");
    let (mut cfg, prefix) = config(kit::etcd_endpoint());
    cfg.api_keys_file = Some(file.clone());
    let cli = TestClient::new(routes(rcron_master::state(&cfg).await.expect("state")).boxed());
    let etcd = etcd_client::Client::connect([kit::etcd_endpoint()], None)
        .await
        .expect("etcd");
    let job = json!({"name": "keyed", "command": "true", "cronExpr": "0 0 * * *"});
    let bearer = |s: &str| format!("Bearer {s}");

    // No key: the API is closed by the keys file alone.
    cli.get("/api/v1/jobs")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    // Read: reads only.
    cli.get("/api/v1/jobs")
        .header("Authorization", bearer("rita-secret-0123456789"))
        .send()
        .await
        .assert_status_is_ok();
    let resp = cli
        .put("/api/v1/jobs/keyed")
        .header("Authorization", bearer("rita-secret-0123456789"))
        .body_json(&job)
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    // Operator: may not create or delete…
    let resp = cli
        .put("/api/v1/jobs/keyed")
        .header("Authorization", bearer("oscar-secret-0123456789"))
        .body_json(&job)
        .send()
        .await;
    let (status, body) = read(resp.0).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("oscar")),
        "the refusal names the key: {body}"
    );
    // …the admin may.
    cli.put("/api/v1/jobs/keyed")
        .header("Authorization", bearer("alice-secret-0123456789"))
        .body_json(&job)
        .send()
        .await
        .assert_status(StatusCode::CREATED);
    // Operator: pause, resume, run, kill.
    for (path, want) in [
        ("/api/v1/jobs/keyed/pause", StatusCode::OK),
        ("/api/v1/jobs/keyed/resume", StatusCode::OK),
        ("/api/v1/jobs/keyed/run", StatusCode::ACCEPTED),
        ("/api/v1/jobs/keyed/kill", StatusCode::ACCEPTED),
    ] {
        cli.post(path)
            .header("Authorization", bearer("oscar-secret-0123456789"))
            .send()
            .await
            .assert_status(want);
    }
    // Operator: a PATCH of `disabled` alone is a pause or resume; any other
    // field is a change.
    for (patch, want) in [
        (json!({"disabled": true}), StatusCode::OK),
        (json!({"disabled": false}), StatusCode::OK),
        (json!({"command": "false"}), StatusCode::FORBIDDEN),
        (
            json!({"disabled": true, "command": "false"}),
            StatusCode::FORBIDDEN,
        ),
        (json!({"disabled": "yes"}), StatusCode::FORBIDDEN),
    ] {
        let resp = cli
            .patch("/api/v1/jobs/keyed")
            .header("Authorization", bearer("oscar-secret-0123456789"))
            .body_json(&patch)
            .send()
            .await;
        let (status, body) = read(resp.0).await;
        assert_eq!(status, want, "{patch}: {body}");
    }
    cli.patch("/api/v1/jobs/keyed")
        .header("Authorization", bearer("rita-secret-0123456789"))
        .body_json(&json!({"disabled": true}))
        .send()
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let resp = cli
        .post("/job/kill")
        .header("Authorization", bearer("oscar-secret-0123456789"))
        .form(&[("name", "keyed")])
        .send()
        .await;
    let (_, body) = read(resp.0).await;
    assert_eq!(
        body["errno"], 0,
        "operators kill through the legacy route: {body}"
    );
    let resp = cli
        .post("/job/delete")
        .header("Authorization", bearer("oscar-secret-0123456789"))
        .form(&[("name", "keyed")])
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    let stored = etcd
        .clone()
        .get(format!("{prefix}jobs/keyed"), None)
        .await
        .expect("get");
    let stored: Value = serde_json::from_slice(stored.kvs()[0].value()).expect("job json");
    assert_eq!(stored["disabled"], false, "paused, then resumed: {stored}");
    assert_eq!(stored["command"], "true", "nothing else changed: {stored}");
    cli.post("/api/v1/jobs/ghost/pause")
        .header("Authorization", bearer("oscar-secret-0123456789"))
        .send()
        .await
        .assert_status(StatusCode::NOT_FOUND);

    // A keys file that does not load refuses to start the master.
    std::fs::write(
        &file,
        "[[key]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"00\"\n",
    )
    .expect("write");
    let err = rcron_master::state(&cfg)
        .await
        .err()
        .expect("a bad file is refused");
    assert!(err.to_string().contains("API keys"), "{err}");
    let _ = std::fs::remove_file(file);
}

/// The audit trail's records, newest first, through the API.
async fn audit_entries(cli: &TestClient<BoxEndpoint<'static, Response>>, query: &str) -> Value {
    let (status, body) = read(cli.get(format!("/api/v1/audit{query}")).send().await.0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn every_change_through_any_route_is_audited_with_who_and_the_job_before_and_after() {
    let h = harness().await;
    let job = |cmd: &str| json!({"name": "audited", "command": cmd, "cronExpr": "0 0 * * *"});
    // Legacy save (create), REST replace, pause, resume, run, kill, legacy
    // kill, REST delete; then a legacy save and a legacy delete.
    let (_, body) = h
        .legacy_post("/job/save", &[("job", &job("echo one").to_string())])
        .await;
    assert_eq!(body["errno"], 0, "{body}");
    let (status, _) = h
        .send_json("PUT", "/api/v1/jobs/audited", &job("echo two"))
        .await;
    assert_eq!(status, StatusCode::OK);
    for action in ["pause", "resume", "run", "kill"] {
        let resp = h
            .cli
            .post(format!("/api/v1/jobs/audited/{action}"))
            .send()
            .await;
        assert!(resp.0.status().is_success(), "{action}");
    }
    let (_, body) = h.legacy_post("/job/kill", &[("name", "audited")]).await;
    assert_eq!(body["errno"], 0, "{body}");
    h.cli
        .delete("/api/v1/jobs/audited")
        .send()
        .await
        .assert_status_is_ok();
    let (_, body) = h
        .legacy_post("/job/save", &[("job", &job("echo three").to_string())])
        .await;
    assert_eq!(body["errno"], 0, "{body}");
    let (_, body) = h.legacy_post("/job/delete", &[("name", "audited")]).await;
    assert_eq!(body["errno"], 0, "{body}");
    // Refused changes leave no record.
    let (status, _) = h.send_json("PUT", "/api/v1/jobs/other", &job("x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "name mismatch");

    let want = [
        ("POST /job/delete", "delete"),
        ("POST /job/save", "create"),
        ("DELETE /api/v1/jobs/audited", "delete"),
        ("POST /job/kill", "kill"),
        ("POST /api/v1/jobs/audited/kill", "kill"),
        ("POST /api/v1/jobs/audited/run", "run"),
        ("POST /api/v1/jobs/audited/resume", "resume"),
        ("POST /api/v1/jobs/audited/pause", "pause"),
        ("PUT /api/v1/jobs/audited", "replace"),
        ("POST /job/save", "create"),
    ];
    let body = kit::eventually(Duration::from_secs(10), "every change audited", || async {
        let body = audit_entries(&h.cli, "?job=audited").await;
        (body["entries"].as_array().map_or(0, Vec::len) == want.len()).then_some(body)
    })
    .await;
    let entries = body["entries"].as_array().expect("entries");
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["route"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen, want,
        "newest first, one per change, none for the refused one"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["key"] == "anonymous" && e["job"] == "audited")
    );
    let replace = &entries[8];
    assert_eq!(replace["before"]["command"], "echo one", "{replace}");
    assert_eq!(replace["after"]["command"], "echo two", "{replace}");
    let pause = &entries[7];
    assert_eq!(
        (
            pause["before"]["disabled"].clone(),
            pause["after"]["disabled"].clone()
        ),
        (json!(false), json!(true))
    );
    assert_eq!(
        entries[2]["before"]["command"], "echo two",
        "a delete keeps what was deleted"
    );
    assert!(entries[0]["remote"].as_str().is_some());

    // Pages: two, then the rest from the cursor.
    let first = audit_entries(&h.cli, "?job=audited&limit=2").await;
    let cursor = first["nextBefore"].as_str().expect("a cursor").to_string();
    let rest = audit_entries(&h.cli, &format!("?job=audited&before={cursor}&limit=100")).await;
    assert_eq!(
        rest["entries"].as_array().map_or(0, Vec::len),
        want.len() - 2
    );
    assert!(rest.get("nextBefore").is_none(), "the last page: {rest}");
    let (status, _) = read(h.cli.get("/api/v1/audit?limit=0").send().await.0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Versions: every save, pause and resume, newest first, numbered from the oldest.
    let (status, body) = h.get("/api/v1/jobs/audited/versions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions: Vec<(u64, String, String)> = body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or(0),
                v["action"].as_str().unwrap_or("").to_string(),
                v["job"]["command"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected: Vec<(u64, String, String)> = [
        (5, "create", "echo three"),
        (4, "resume", "echo two"),
        (3, "pause", "echo two"),
        (2, "replace", "echo two"),
        (1, "create", "echo one"),
    ]
    .into_iter()
    .map(|(n, a, c)| (n, a.to_string(), c.to_string()))
    .collect();
    assert_eq!(versions, expected);
    let (status, _) = h.get("/api/v1/jobs/never-saved/versions").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changes_made_while_mongodb_is_down_are_audited_once_it_is_back() {
    let mut mongo = ServerProcess::mongo();
    let (mut cfg, _) = config(kit::etcd_endpoint());
    cfg.mongo.uri = format!("mongodb://{}", mongo.addr());
    let cli = TestClient::new(routes(rcron_master::state(&cfg).await.expect("state")).boxed());
    mongo.stop();
    for i in 0..3 {
        let job =
            json!({"name": format!("offline-{i}"), "command": "true", "cronExpr": "0 0 * * *"});
        let resp = cli
            .put(format!("/api/v1/jobs/offline-{i}"))
            .body_json(&job)
            .send()
            .await;
        resp.assert_status(StatusCode::CREATED);
    }
    let resp = cli.get("/api/v1/audit").send().await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    mongo.start();
    let body = kit::eventually(
        Duration::from_secs(30),
        "the queued records stored",
        || async {
            let (status, body) = read(cli.get("/api/v1/audit").send().await.0).await;
            (status == StatusCode::OK && body["entries"].as_array().map_or(0, Vec::len) >= 3)
                .then_some(body)
        },
    )
    .await;
    let jobs: Vec<&str> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["job"].as_str())
        .collect();
    assert_eq!(
        jobs,
        ["offline-2", "offline-1", "offline-0"],
        "each once, in order"
    );
}

#[tokio::test]
async fn a_chain_that_would_start_its_own_job_is_refused_by_every_way_of_saving() {
    let h = harness().await;
    let with = |name: &str, on_success: &[&str], on_failure: &[&str]| {
        let mut j = job(name, "true");
        j["onSuccess"] = json!(on_success);
        j["onFailure"] = json!(on_failure);
        j
    };
    for (name, next) in [("ca", "cb"), ("cb", "cc")] {
        let (status, body) = h
            .send_json(
                "PUT",
                &format!("/api/v1/jobs/{name}"),
                &with(name, &[next], &[]),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
    // cc → ca closes ca → cb → cc → ca: refused, with the path.
    let (status, body) = h
        .send_json("POST", "/api/v1/jobs", &with("cc", &[], &["ca"]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let err = body["error"].as_str().unwrap_or_default();
    assert!(err.contains("cc → ca → cb → cc"), "{err}");
    // A chain to itself, and a bad name, named with every other problem.
    let (status, body) = h
        .send_json(
            "PUT",
            "/api/v1/jobs/cd",
            &with("cd", &["cd", "no such/name"], &[]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let err = body["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("cannot start itself") && err.contains("not a job name"),
        "{err}"
    );
    // A patch and the legacy save are checked too.
    let (status, body) = h
        .send_json("PATCH", "/api/v1/jobs/cb", &json!({"onFailure": ["ca"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let legacy = with("cc", &["ca"], &[]).to_string();
    let resp = h
        .cli
        .post("/job/save")
        .form(&[("job", legacy.as_str())])
        .send()
        .await;
    let (_, body) = read(resp.0).await;
    assert_ne!(body["errno"], 0, "{body}");
    // Without the cycle it is fine; the chain is stored as given.
    let (status, body) = h
        .send_json("PUT", "/api/v1/jobs/cc", &with("cc", &[], &["cd2"]))
        .await;
    assert!(status.is_success(), "{body}");
    let (_, body) = read(h.cli.get("/api/v1/jobs/ca").send().await.0).await;
    assert_eq!(body["onSuccess"], json!(["cb"]), "{body}");
}

#[tokio::test]
async fn the_job_list_pages_and_filters_on_the_server_and_reads_follow_writes() {
    let h = harness().await;
    for i in 0..25 {
        let mut j = job(
            &format!("p{i:02}"),
            if i % 5 == 0 { "backup db" } else { "true" },
        );
        if i % 2 == 1 {
            j["disabled"] = json!(true);
        }
        if i == 7 {
            j["target"] = json!({"labels": {"role": "db"}});
        }
        let (status, body) = h
            .send_json("PUT", &format!("/api/v1/jobs/p{i:02}"), &j)
            .await;
        assert!(status.is_success(), "{body}");
        // A write through this master is in its next read.
        let (status, body) = h.get(&format!("/api/v1/jobs/p{i:02}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, first) = h.get("/api/v1/jobs?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["jobs"].as_array().map(Vec::len), Some(10));
    assert_eq!(first["total"], 25);
    assert_eq!(first["jobs"][0]["name"], "p00");
    let mut seen = Vec::new();
    let mut cursor = None::<String>;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?limit=10&cursor={c}"),
            None => "/api/v1/jobs?limit=10".to_string(),
        };
        let (_, page) = h.get(&path).await;
        for j in page["jobs"].as_array().expect("jobs") {
            seen.push(j["name"].as_str().expect("name").to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(seen, want, "every job once, in name order, over the pages");

    let (_, found) = h.get("/api/v1/jobs?q=BACKUP&limit=2").await;
    assert_eq!(found["total"], 5, "{found}");
    assert_eq!(found["jobs"].as_array().map(Vec::len), Some(2));
    assert!(found["nextCursor"].is_string());
    let (_, paused) = h.get("/api/v1/jobs?enabled=false&limit=1000").await;
    assert_eq!(paused["total"], 12, "{paused}");
    let (_, db) = h.get("/api/v1/jobs?label=role%3Ddb").await;
    assert_eq!(db["total"], 1, "{db}");
    assert_eq!(db["jobs"][0]["name"], "p07");
    for bad in ["limit=0", "limit=1001", "label=nokey", "enabled=maybe"] {
        let (status, body) = h.get(&format!("/api/v1/jobs?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // A write another master made reaches this one's copy through the
    // watch; `consistent=true` reads etcd at once.
    let other = json!({"name": "zz-other", "command": "true", "cronExpr": "@daily"});
    h.etcd
        .clone()
        .put(
            format!("{}jobs/zz-other", h.prefix),
            other.to_string(),
            None,
        )
        .await
        .expect("put");
    let (status, _) = h.get("/api/v1/jobs/zz-other?consistent=true").await;
    assert_eq!(status, StatusCode::OK);
    kit::eventually(
        Duration::from_secs(5),
        "the watch to bring the job",
        || async {
            let (status, _) = h.get("/api/v1/jobs/zz-other").await;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    let (status, _) = h.delete("/api/v1/jobs/p03").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.get("/api/v1/jobs/p03").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a delete is in the next read"
    );
    let (_, all) = h.get("/api/v1/jobs?limit=1000").await;
    assert_eq!(all["total"], 25, "{all}");
}

/// More jobs than one etcd answer holds (the client refuses answers over
/// 4 MiB): a master started on them lists every one, in its cache, from
/// etcd (`consistent=true`) and on the legacy list.
#[tokio::test]
async fn a_master_lists_more_jobs_than_one_etcd_answer_holds() {
    let (cfg, prefix) = config(kit::etcd_endpoint());
    let etcd = kit::etcd_client().await;
    // 2,500 jobs of ~2.5 KB: ~6 MB, written straight to etcd (as another
    // master would have) in transactions of 100 puts.
    let count = 2500;
    let filler = "x".repeat(2400);
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|i| {
                let name = format!("big-{i:05}");
                let doc = json!({"name": name, "command": format!("echo {filler}"), "cronExpr": "@daily"});
                etcd_client::TxnOp::put(format!("{prefix}jobs/{name}"), doc.to_string(), None)
            })
            .collect();
        etcd.clone()
            .txn(etcd_client::Txn::new().and_then(ops))
            .await
            .expect("txn");
    }
    let state: Arc<AppState> = rcron_master::state(&cfg).await.expect("state");
    let cli = TestClient::new(routes(state).boxed());
    let total = |v: &Value| v["total"].as_u64();
    let listed = kit::eventually(
        Duration::from_secs(20),
        "the job cache to list every job",
        || async {
            let (status, page) = read(cli.get("/api/v1/jobs?limit=10").send().await.0).await;
            (status == StatusCode::OK && total(&page) == Some(count)).then_some(page)
        },
    )
    .await;
    assert_eq!(listed["jobs"][0]["name"], "big-00000");
    let (status, page) = read(
        cli.get("/api/v1/jobs?limit=10&consistent=true")
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(total(&page), Some(count), "read from etcd in pages");
    let (status, legacy) = read(cli.get("/job/list").send().await.0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        legacy["data"].as_array().map(Vec::len),
        Some(count as usize)
    );
}

#[tokio::test]
async fn the_job_list_finds_the_jobs_that_chain_to_a_job() {
    let h = harness().await;
    let with = |name: &str, on_success: &[&str], on_failure: &[&str]| {
        let mut j = job(name, "true");
        j["onSuccess"] = json!(on_success);
        j["onFailure"] = json!(on_failure);
        j
    };
    for j in [
        with("report", &[], &[]),
        with("reporting", &[], &[]),
        with("backup", &["report"], &[]),
        with("cleanup", &[], &["report"]),
        with("import", &["reporting"], &["backup"]),
        with("nightly", &["backup", "report"], &[]),
    ] {
        let path = format!("/api/v1/jobs/{}", j["name"].as_str().expect("name"));
        let (status, body) = h.send_json("PUT", &path, &j).await;
        assert!(status.is_success(), "{body}");
    }
    let names = |page: &Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["name"].as_str().expect("name").to_string())
            .collect()
    };
    // On success or on failure; a whole name (`reporting` is another job).
    for consistent in ["false", "true"] {
        let (status, page) = h
            .get(&format!(
                "/api/v1/jobs?chainsTo=report&consistent={consistent}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(names(&page), ["backup", "cleanup", "nightly"], "{page}");
        assert_eq!(page["total"], 3, "{page}");
        assert!(page.get("nextCursor").is_none(), "{page}");
    }
    // Paged like every filter, the total on each page.
    let (_, first) = h.get("/api/v1/jobs?chainsTo=report&limit=2").await;
    assert_eq!(names(&first), ["backup", "cleanup"], "{first}");
    assert_eq!(first["total"], 3);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let (_, second) = h
        .get(&format!(
            "/api/v1/jobs?chainsTo=report&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(names(&second), ["nightly"], "{second}");
    assert_eq!(second["total"], 3);
    // With another filter, both hold.
    let (_, both) = h.get("/api/v1/jobs?chainsTo=backup&q=NIGHT").await;
    assert_eq!(names(&both), ["nightly"], "{both}");
    let (_, started_by) = h.get("/api/v1/jobs?chainsTo=backup").await;
    assert_eq!(names(&started_by), ["import", "nightly"], "{started_by}");

    // A chain removed is gone from the next read through this master.
    let (status, body) = h
        .send_json("PATCH", "/api/v1/jobs/nightly", &json!({"onSuccess": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, page) = h.get("/api/v1/jobs?chainsTo=report").await;
    assert_eq!(names(&page), ["backup", "cleanup"], "{page}");
    assert_eq!(page["total"], 2);

    // A name no job has: nothing starts it. A name no job can have: 400.
    let (status, page) = h.get("/api/v1/jobs?chainsTo=nobody").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 0, "{page}");
    assert_eq!(page["jobs"], json!([]));
    let (status, body) = h.get("/api/v1/jobs?chainsTo=no%20such%2Fname").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let err = body["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("`chainsTo`") && err.contains("no such/name"),
        "{err}"
    );
}

/// Every read of the run log a page or a run makes is served by an index
/// of the store in use: the plan names one (MongoDB `IXSCAN`; nx-27017, the
/// embedded default, `USING INDEX`). The all-jobs page is the exception on
/// nx-27017, which orders by no index (BENCHMARKS.md has its figures).
#[tokio::test]
async fn log_queries_of_one_job_and_one_run_are_served_by_an_index() {
    use rcron_shared::runlog::{LogCursor, LogQuery, RunLogWriter, mongo::MongoRunLog};
    let h = harness().await;
    let client = mongodb::Client::with_uri_str(kit::mongo_uri())
        .await
        .expect("mongo");
    let log = MongoRunLog::new(&client.database(&h.mongo_db), Duration::from_secs(3600));
    let record = rcron_shared::LogRecord {
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
    log.write(std::slice::from_ref(&record))
        .await
        .expect("write");
    let first = LogQuery {
        job: Some("indexed".into()),
        limit: 20,
        ..LogQuery::default()
    };
    let next = LogQuery {
        before: Some(LogCursor::after(&record)),
        ..first.clone()
    };
    let failed = LogQuery {
        status: Some(rcron_shared::RunStatus::Failed),
        ..first.clone()
    };
    for (what, query, run) in [
        ("a job's first page", &first, None),
        ("a job's next page", &next, None),
        ("a job's failed runs", &failed, None),
        ("one run", &first, Some("run-indexed")),
    ] {
        let plan = log.explain(query, run).await.expect("explain");
        let text = plan.to_string();
        assert!(
            text.contains("IXSCAN") || text.contains("USING INDEX"),
            "{what} is not served by an index: {text}"
        );
    }
}
