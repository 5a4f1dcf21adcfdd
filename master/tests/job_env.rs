//! A job's `env`, `workdir` and `user` through the REST API, against a
//! real etcd (started by `deploy/test-env.sh`): a file value is stored and
//! shown as its path only (the master never reads it), and a save with
//! several bad fields is refused once, naming each.

use std::sync::Arc;

use etcd_client::GetOptions;
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use rcron_master::MasterConfig;
use rcron_master::api::{AppState, routes};
use rcron_testkit as kit;
use serde_json::{Value, json};

type Client = TestClient<BoxEndpoint<'static, Response>>;

async fn client(prefix: &str) -> Client {
    let mut cfg = MasterConfig::default();
    cfg.etcd.endpoints = vec![kit::etcd_endpoint()];
    cfg.etcd.prefix = prefix.to_string();
    cfg.etcd.request_timeout_secs = 2;
    cfg.etcd.connect_timeout_secs = 1;
    cfg.mongo.uri = kit::mongo_uri();
    cfg.mongo.db = kit::unique_db();
    let state: Arc<AppState> = rcron_master::state(&cfg).await.expect("state");
    TestClient::new(routes(state).boxed())
}

async fn read(resp: Response) -> (StatusCode, String) {
    let status = resp.status();
    (status, resp.into_body().into_string().await.expect("body"))
}

async fn put(cli: &Client, name: &str, body: &Value) -> (StatusCode, String) {
    read(
        cli.put(format!("/api/v1/jobs/{name}"))
            .content_type("application/json")
            .body(body.to_string())
            .send()
            .await
            .0,
    )
    .await
}

#[tokio::test]
async fn a_file_value_is_stored_and_shown_as_its_path_never_its_content() {
    let prefix = kit::unique_prefix();
    let cli = client(&prefix).await;
    // A real file with a secret, on the master's own host: the master must
    // not read it either.
    let secret = format!("s3cret-{}", uuid::Uuid::now_v7().simple());
    let file = std::env::temp_dir().join(format!("rcron-secret-{}", uuid::Uuid::now_v7()));
    std::fs::write(&file, &secret).expect("secret file");
    let path = file.display().to_string();
    let job = json!({
        "name": "ctx",
        "command": "env",
        "cronExpr": "@daily",
        "env": {"PLAIN": "visible", "TOKEN": {"file": path}},
        "workdir": "/srv/app",
        "user": "nobody",
    });
    let (status, body) = put(&cli, "ctx", &job).await;
    assert!(status.is_success(), "{status}: {body}");
    assert!(!body.contains(&secret), "{body}");

    for url in ["/api/v1/jobs/ctx", "/api/v1/jobs"] {
        let (status, body) = read(cli.get(url).send().await.0).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.contains(&secret), "secret in {url}: {body}");
        let view: Value = serde_json::from_str(&body).expect("json");
        let view = if url.ends_with("/ctx") {
            view
        } else {
            view["jobs"][0].clone()
        };
        assert_eq!(view["env"]["TOKEN"], json!({"file": path}), "{view}");
        assert_eq!(view["env"]["PLAIN"], "visible", "{view}");
        assert_eq!(view["workdir"], "/srv/app");
        assert_eq!(view["user"], "nobody");
    }

    let mut etcd = kit::etcd_client().await;
    let all = etcd
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .expect("etcd");
    let stored = all
        .kvs()
        .iter()
        .find(|kv| kv.key().ends_with(b"jobs/ctx"))
        .expect("the stored job");
    let stored: Value = serde_json::from_slice(stored.value()).expect("json");
    assert_eq!(stored["env"]["TOKEN"], json!({"file": path}));
    for kv in all.kvs() {
        assert!(
            !String::from_utf8_lossy(kv.value()).contains(&secret),
            "secret in etcd: {}",
            String::from_utf8_lossy(kv.key())
        );
    }

    // A patch merges variables: `null` removes one.
    let (status, body) = read(
        cli.patch("/api/v1/jobs/ctx")
            .content_type("application/merge-patch+json")
            .body(json!({"env": {"PLAIN": null, "NEW": "n"}}).to_string())
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let patched: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        patched["env"],
        json!({"NEW": "n", "TOKEN": {"file": path}}),
        "{patched}"
    );

    // The schema says what a value may be.
    let (_, spec) = read(cli.get("/api/v1/openapi.json").send().await.0).await;
    let spec: Value = serde_json::from_str(&spec).expect("spec");
    let env = &spec["components"]["schemas"]["Job"]["properties"]["env"];
    assert_eq!(env["type"], "object", "{env}");
    let one_of = env["additionalProperties"]["oneOf"]
        .as_array()
        .expect("oneOf");
    assert_eq!(one_of[0]["type"], "string", "{env}");
    assert_eq!(one_of[1]["properties"]["file"]["type"], "string", "{env}");
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn a_save_with_bad_names_and_a_relative_file_is_refused_once_naming_each() {
    let cli = client(&kit::unique_prefix()).await;
    let job = json!({
        "name": "bad",
        "command": "true",
        "cronExpr": "@daily",
        "env": {"1ST": "x", "RCRON_JOB": "y", "OK": "z", "TOKEN": {"file": "secrets/token"}},
    });
    let (status, body) = put(&cli, "bad", &job).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    let problems: Vec<&str> = answer["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p.as_str().expect("text"))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    for (field, says) in [
        ("`env.1ST`", "ASCII letters, digits and `_`"),
        ("`env.RCRON_JOB`", "reserved"),
        ("`env.TOKEN`", "absolute path"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(field) && p.contains(says)),
            "{field}: {problems:?}"
        );
    }
    let (status, _) = read(cli.get("/api/v1/jobs/bad").send().await.0).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");
}
