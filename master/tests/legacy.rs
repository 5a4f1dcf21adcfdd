//! The legacy routes answer as the original Go system did: the requests of
//! `fixtures/legacy_pairs.json`, with what the original answers to them
//! (derived from its source, each pair saying where from), replayed in
//! order against a real `rcron-master` over HTTP, on state seeded in the
//! real etcd and MongoDB-wire server `deploy/test-env.sh` starts.

use std::process::{Command, Stdio};
use std::time::Duration;

use rcron_testkit as kit;
use serde_json::Value;

/// Kills the master when the test ends, passed or not.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/legacy_pairs.json"
    );
    let text = std::fs::read_to_string(path).expect("read the fixture");
    serde_json::from_str(&text).expect("the fixture is JSON")
}

/// Records where `actual` does not answer as `expected` (the original's
/// answer) does: scalars equal and of the same JSON type, arrays element
/// by element, objects with every field the original sends — and, where
/// `extra_fields` (inside `data`), maybe rcron's own beside them. The
/// placeholders `<string>`, `<number>` and `<any>` stand for values that
/// differ by design or vary.
fn compare(
    expected: &Value,
    actual: &Value,
    at: &str,
    extra_fields: bool,
    diffs: &mut Vec<String>,
) {
    match (expected, actual) {
        (Value::String(p), a) if p == "<any>" => {
            let _ = a;
        }
        (Value::String(p), Value::String(_)) if p == "<string>" => {}
        (Value::String(p), Value::Number(_)) if p == "<number>" => {}
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let here = format!("{at}.{key}");
                match a.get(key) {
                    Some(got) => compare(value, got, &here, extra_fields || key == "data", diffs),
                    None => diffs.push(format!("{here}: missing (expected {value})")),
                }
            }
            if !extra_fields {
                for key in a.keys().filter(|k| !e.contains_key(*k)) {
                    diffs.push(format!("{at}.{key}: not sent by the original"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                diffs.push(format!("{at}: {} elements, expected {}", a.len(), e.len()));
            }
            for (i, (value, got)) in e.iter().zip(a).enumerate() {
                compare(value, got, &format!("{at}[{i}]"), extra_fields, diffs);
            }
        }
        (e, a) if e == a => {}
        (e, a) => diffs.push(format!("{at}: {a}, expected {e}")),
    }
}

async fn seed(fixture: &Value, prefix: &str, db: &str) {
    let mut etcd = kit::etcd_client().await;
    for entry in fixture["seed"]["etcd"].as_array().expect("seed.etcd") {
        let key = entry["key"].as_str().expect("key");
        let value = entry["value"].as_str().expect("value");
        etcd.put(format!("{prefix}{key}"), value, None)
            .await
            .expect("seed etcd");
    }
    let client = mongodb::Client::with_uri_str(kit::mongo_uri())
        .await
        .expect("mongo client");
    let docs: Vec<mongodb::bson::Document> = fixture["seed"]["log"]
        .as_array()
        .expect("seed.log")
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.as_object_mut().expect("a log document").remove("why");
            mongodb::bson::to_document(&d).expect("bson")
        })
        .collect();
    client
        .database(db)
        .collection::<mongodb::bson::Document>("log")
        .insert_many(docs)
        .await
        .expect("seed the log");
}

#[tokio::test]
async fn legacy_routes_answer_the_recorded_pairs_of_the_original() {
    let fixture = fixture();
    let prefix = kit::unique_prefix();
    let db = kit::unique_db();
    seed(&fixture, &prefix, &db).await;

    let port = kit::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_rcron-master"))
        .env("RCRON_LISTEN", format!("127.0.0.1:{port}"))
        .env("RCRON_ETCD_ENDPOINTS", kit::etcd_endpoint())
        .env("RCRON_ETCD_PREFIX", &prefix)
        .env("RCRON_MONGO_URI", kit::mongo_uri())
        .env("RCRON_MONGO_DB", &db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rcron-master");
    let _child = Guard(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = kit::http_client();
    kit::eventually(
        Duration::from_secs(20),
        "master to answer /readyz",
        || async {
            http.get(format!("{base}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        },
    )
    .await;

    let mut failures = Vec::new();
    for (i, pair) in fixture["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .enumerate()
    {
        let req = &pair["request"];
        let method = req["method"].as_str().expect("method");
        let path = req["path"].as_str().expect("path");
        let mut builder = http.request(
            method.parse().expect("an HTTP method"),
            format!("{base}{path}"),
        );
        if let Some(form) = req["form"].as_object() {
            let fields: Vec<(&str, &str)> = form
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().expect("form values are strings")))
                .collect();
            builder = builder.form(&fields);
        }
        let resp = builder.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let label = format!("pair {i} ({method} {path}: {})", pair["why"]);
        if status != 200 {
            failures.push(format!("{label}\n  status {status}, expected 200: {text}"));
            continue;
        }
        let Ok(actual) = serde_json::from_str::<Value>(&text) else {
            failures.push(format!("{label}\n  not JSON: {text}"));
            continue;
        };
        let mut diffs = Vec::new();
        compare(&pair["response"], &actual, "", false, &mut diffs);
        if !diffs.is_empty() {
            failures.push(format!("{label}\n  {}\n  got {actual}", diffs.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the original's answers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_allows_additions_only_inside_data() {
    let expected = serde_json::json!({"errno": 0, "msg": "success", "data": [{"name": "a"}]});
    let mut diffs = Vec::new();
    compare(
        &expected,
        &serde_json::json!({"errno": 0, "msg": "success", "data": [{"name": "a", "retries": 0}]}),
        "",
        false,
        &mut diffs,
    );
    assert!(diffs.is_empty(), "{diffs:?}");
    for wrong in [
        serde_json::json!({"errno": 0, "msg": "success", "data": [{"name": "a"}], "extra": 1}),
        serde_json::json!({"errno": 0, "msg": "success", "data": null}),
        serde_json::json!({"errno": 0, "msg": "success", "data": []}),
        serde_json::json!({"errno": "0", "msg": "success", "data": [{"name": "a"}]}),
        serde_json::json!({"errno": 0, "msg": "ok", "data": [{"name": "a"}]}),
    ] {
        let mut diffs = Vec::new();
        compare(&expected, &wrong, "", false, &mut diffs);
        assert!(!diffs.is_empty(), "{wrong} passed");
    }
    let mut diffs = Vec::new();
    compare(
        &serde_json::json!({"msg": "<string>", "data": null}),
        &serde_json::json!({"msg": "anything", "data": null}),
        "",
        false,
        &mut diffs,
    );
    assert!(diffs.is_empty(), "{diffs:?}");
}
