//! Every REST refusal of bad input names the field and what it accepts,
//! never an internal type name. The bad requests are derived from the
//! OpenAPI document itself — each query parameter, each field of each
//! request body (nested objects too), each enum — so an operation or field
//! added later is checked without touching this test.

use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use rcron_master::MasterConfig;
use rcron_master::api::{AppState, routes};
use rcron_testkit as kit;
use serde_json::{Map, Value, json};

type Client = TestClient<BoxEndpoint<'static, Response>>;

async fn client() -> Client {
    let mut cfg = MasterConfig::default();
    cfg.etcd.endpoints = vec![kit::etcd_endpoint()];
    cfg.etcd.prefix = kit::unique_prefix();
    cfg.etcd.request_timeout_secs = 2;
    cfg.etcd.connect_timeout_secs = 1;
    cfg.mongo.uri = kit::mongo_uri();
    cfg.mongo.db = kit::unique_db();
    let state: Arc<AppState> = rcron_master::state(&cfg).await.expect("state");
    TestClient::new(routes(state).boxed())
}

async fn read(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.into_body().into_string().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The framework's and the decoder's names for types, which a user
/// cannot act on: with every schema name of the document, none may appear
/// in an error.
const INTERNAL: &[&str] = &[
    "integer(",
    "number(",
    "string_",
    "optional_",
    "uint",
    "int32",
    "int64",
    "u64",
    "u32",
    "i64",
    "Expected input type",
    "failed to parse",
    "occurred while parsing",
    "variant",
    "struct ",
    "RawJob",
];

/// One bad input and what its answer must say.
struct Case {
    method: &'static str,
    path: String,
    body: Option<String>,
    /// The field, as the message must name it.
    field: String,
    /// Words the message must contain besides the field (allowed values).
    says: Vec<String>,
}

fn resolve<'a>(schemas: &'a Map<String, Value>, schema: &'a Value) -> &'a Value {
    if let Some(name) = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return resolve(schemas, &schemas[name]);
    }
    match schema["allOf"].as_array().and_then(|a| a.first()) {
        Some(first) => resolve(schemas, first),
        None => schema,
    }
}

/// Values `schema` refuses, each with what the refusal must mention.
fn wrong_values(schemas: &Map<String, Value>, schema: &Value) -> Vec<(Value, Vec<String>)> {
    let schema = resolve(schemas, schema);
    if let Some(values) = schema["enum"].as_array() {
        let names = values
            .iter()
            .map(|v| v.as_str().expect("string enum").to_string())
            .collect();
        return vec![(json!("bogus"), names)];
    }
    match schema["type"].as_str() {
        Some("integer") => {
            let mut wrong = vec![(json!("x"), vec!["whole number".into()])];
            if let Some(max) = schema["maximum"].as_u64() {
                let range = vec![format!("to {max}")];
                wrong.push((json!(max + 1), range));
            }
            wrong
        }
        Some("boolean") => vec![(json!("x"), vec!["true or false".into()])],
        Some("string") if schema["format"] == "date-time" => {
            vec![(json!("yesterday"), vec!["date and time".into()])]
        }
        Some("string") => vec![(json!([1]), vec!["string".into()])],
        Some("array") => vec![(json!(5), vec!["list".into()])],
        Some("object") => vec![(json!(5), vec!["object".into()])],
        _ => Vec::new(),
    }
}

/// A valid example of `schema`'s required fields, so one field at a time
/// can be made wrong.
fn valid_body(schemas: &Map<String, Value>, schema: &Value) -> Map<String, Value> {
    let schema = resolve(schemas, schema);
    let mut body = Map::new();
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().expect("name");
        let value = match name {
            "name" => json!("j1"),
            "command" => json!("true"),
            "cronExpr" => json!("@daily"),
            other => panic!("give required field `{other}` a valid example"),
        };
        body.insert(name.to_string(), value);
    }
    body
}

/// Every field of `schema` (nested objects too) with a wrong value.
fn body_cases(
    schemas: &Map<String, Value>,
    schema: &Value,
    at: &str,
    base: &Map<String, Value>,
    out: &mut Vec<(Value, String, Vec<String>)>,
) {
    let schema = resolve(schemas, schema);
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        if property["readOnly"] == true {
            // Set by the server (`updatedAt`): what a client sends is ignored.
            continue;
        }
        let field = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        let nested = resolve(schemas, property);
        if nested["properties"].is_object() {
            let mut inner = Vec::new();
            body_cases(schemas, nested, &field, &Map::new(), &mut inner);
            for (value, f, says) in inner {
                let mut body = base.clone();
                body.insert(name.clone(), value);
                out.push((Value::Object(body), f, says));
            }
        }
        for (value, says) in wrong_values(schemas, property) {
            let mut body = base.clone();
            body.insert(name.clone(), value);
            out.push((Value::Object(body), field.clone(), says));
        }
    }
}

fn cases(spec: &Value) -> Vec<Case> {
    let schemas = spec["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .clone();
    let mut cases = Vec::new();
    for (template, methods) in spec["paths"].as_object().expect("paths") {
        let path = template.replace("{name}", "j1").replace("{run_id}", "r1");
        for (method, op) in methods.as_object().expect("methods") {
            let method: &'static str = match method.as_str() {
                "get" => "GET",
                "post" => "POST",
                "put" => "PUT",
                "patch" => "PATCH",
                "delete" => "DELETE",
                other => panic!("method {other}"),
            };
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["in"] != "query" {
                    continue;
                }
                let name = param["name"].as_str().expect("name");
                for (value, says) in wrong_values(&schemas, &param["schema"]) {
                    let raw = match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        // A string parameter takes any text: nothing to refuse.
                        _ => continue,
                    };
                    cases.push(Case {
                        method,
                        path: format!("{path}?{name}={raw}"),
                        body: None,
                        field: name.to_string(),
                        says,
                    });
                }
            }
            let Some(schema) = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| c["schema"].clone())
            else {
                continue;
            };
            let base = valid_body(&schemas, &schema);
            let mut bodies = Vec::new();
            body_cases(&schemas, &schema, "", &base, &mut bodies);
            for (body, field, says) in bodies {
                cases.push(Case {
                    method,
                    path: path.clone(),
                    body: Some(body.to_string()),
                    field,
                    says,
                });
            }
            for required in base.keys() {
                let mut body = base.clone();
                body.remove(required);
                cases.push(Case {
                    method,
                    path: path.clone(),
                    body: Some(Value::Object(body).to_string()),
                    field: required.clone(),
                    says: vec!["required".into()],
                });
            }
            // An optional body may be empty; a required one may not.
            let required = op["requestBody"]["required"] == true;
            for (body, says) in [("[1]", "JSON object"), ("{\"name\":", "JSON"), ("", "JSON")] {
                if body.is_empty() && !required {
                    continue;
                }
                cases.push(Case {
                    method,
                    path: path.clone(),
                    body: Some(body.to_string()),
                    field: String::new(),
                    says: vec![says.into()],
                });
            }
        }
    }
    cases
}

#[tokio::test]
async fn every_refusal_names_the_field_and_what_it_takes_never_a_type() {
    let cli = client().await;
    let (_, spec) = read(cli.get("/api/v1/openapi.json").send().await.0).await;
    let schemas: Vec<String> = spec["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
        .cloned()
        .collect();
    assert!(schemas.iter().any(|s| s == "StatusDto"), "{schemas:?}");
    let cases = cases(&spec);
    for needle in [
        "limit",
        "status",
        "count",
        "after",
        "timeoutSecs",
        "concurrency",
        "target.mode",
    ] {
        assert!(
            cases.iter().any(|c| c.field == needle),
            "no case for `{needle}`: the document changed?"
        );
    }

    // A job to patch: a patch's fields are judged against the job it
    // changes (a missing job is a 404 whatever the body).
    let (status, answer) = read(
        cli.put("/api/v1/jobs/j1")
            .content_type("application/json")
            .body(r#"{"name":"j1","command":"true","cronExpr":"0 0 * * *"}"#)
            .send()
            .await
            .0,
    )
    .await;
    assert!(status.is_success(), "{status}: {answer}");

    let mut failures = Vec::new();
    for case in &cases {
        let req = match case.method {
            "GET" => cli.get(&case.path),
            "POST" => cli.post(&case.path),
            "PUT" => cli.put(&case.path),
            "PATCH" => cli.patch(&case.path),
            "DELETE" => cli.delete(&case.path),
            other => panic!("{other}"),
        };
        let req = match &case.body {
            Some(body) => req.content_type("application/json").body(body.clone()),
            None => req,
        };
        let (status, answer) = read(req.send().await.0).await;
        let label = format!(
            "{} {} {}",
            case.method,
            case.path,
            case.body.as_deref().unwrap_or("")
        );
        if !status.is_client_error() {
            failures.push(format!("{label}: status {status}: {answer}"));
            continue;
        }
        let Some(error) = answer["error"].as_str() else {
            failures.push(format!("{label}: no error message: {answer}"));
            continue;
        };
        let text = format!("{error} {}", answer["problems"]);
        if !case.field.is_empty() && !text.contains(&format!("`{}`", case.field)) {
            failures.push(format!("{label}: does not name `{}`: {error}", case.field));
        }
        for word in &case.says {
            if !text.contains(word.as_str()) {
                failures.push(format!("{label}: does not say {word:?}: {error}"));
            }
        }
        for internal in INTERNAL
            .iter()
            .copied()
            .chain(schemas.iter().map(String::as_str))
        {
            if text.contains(internal) {
                failures.push(format!("{label}: internal name {internal:?}: {error}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} refusals are unclear:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_that_says_so() {
    let cli = client().await;
    for content_type in [Some("text/plain"), None] {
        let mut req = cli.put("/api/v1/jobs/j1").body("{}");
        if let Some(ct) = content_type {
            req = req.content_type(ct);
        }
        let (status, answer) = read(req.send().await.0).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .expect("error")
                .contains("Content-Type: application/json"),
            "{answer}"
        );
    }
}
