//! Turns the REST framework's refusals of a request — a query or path
//! parameter that does not parse, a JSON body that does not fit its
//! schema, a body that is not JSON — into 4xx answers that name the field,
//! what it accepts and what was sent, read from the operation's own
//! OpenAPI schema (so they cannot drift from the documentation), never in
//! poem-openapi's type names (`integer(uint64)`, `StatusDto`).
//!
//! Sits inside [`super::limit_body`] (the body is already buffered and
//! bounded, so keeping a handle on it costs nothing) and only looks at
//! requests the framework refused.

use std::sync::Arc;

use poem::http::{Method, Uri};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use poem_openapi::error::{
    ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::payload::Json;
use serde_json::{Map, Value};

use super::{ApiError, ErrorBody};

/// The schemas of every REST operation, from the OpenAPI document.
pub(crate) struct Explainer {
    operations: Vec<Operation>,
    schemas: Map<String, Value>,
}

struct Operation {
    method: Method,
    /// Path segments; `None` stands for a `{param}`.
    segments: Vec<Option<String>>,
    /// `(name, in, schema)` of each parameter.
    params: Vec<(String, String, Value)>,
    body: Option<Value>,
}

impl Explainer {
    /// Reads the operations of `spec`, the OpenAPI document as JSON.
    pub(crate) fn new(spec: &str) -> Self {
        let spec: Value = serde_json::from_str(spec).unwrap_or_default();
        let schemas = spec["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut operations = Vec::new();
        for (path, methods) in spec["paths"].as_object().into_iter().flatten() {
            let segments: Vec<Option<String>> = path
                .split('/')
                .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                .collect();
            for (method, op) in methods.as_object().into_iter().flatten() {
                let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                    continue;
                };
                let params = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        Some((
                            p["name"].as_str()?.to_string(),
                            p["in"].as_str()?.to_string(),
                            p["schema"].clone(),
                        ))
                    })
                    .collect();
                let body = op["requestBody"]["content"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .map(|c| c["schema"].clone());
                operations.push(Operation {
                    method: method.clone(),
                    segments: segments.clone(),
                    params,
                    body,
                });
            }
        }
        Self {
            operations,
            schemas,
        }
    }

    fn operation(&self, method: &Method, path: &str) -> Option<&Operation> {
        let parts: Vec<&str> = path.split('/').collect();
        self.operations.iter().find(|op| {
            op.method == *method
                && op.segments.len() == parts.len()
                && op
                    .segments
                    .iter()
                    .zip(&parts)
                    .all(|(s, p)| s.as_deref().is_none_or(|s| s == *p))
        })
    }

    /// The schema itself, behind a `$ref` or the first part of an `allOf`
    /// (how poem-openapi documents a field of a named type).
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        if let Some(name) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            return self.schemas.get(name).map_or(schema, |s| self.resolve(s));
        }
        match schema["allOf"].as_array().and_then(|all| all.first()) {
            Some(first) => self.resolve(first),
            None => schema,
        }
    }

    /// What a value of `schema` must be: "one of a, b", "a whole number
    /// from 1 to 1000", "true or false".
    fn expectation(&self, schema: &Value) -> String {
        let schema = self.resolve(schema);
        if let Some(values) = schema["enum"].as_array() {
            let names: Vec<String> = values
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect();
            return format!("one of {}", names.join(", "));
        }
        match schema["type"].as_str() {
            Some("integer") => match bounds(schema) {
                (Some(min), Some(max)) if schema.get("maximum").is_some() => {
                    format!("a whole number from {min} to {max}")
                }
                (Some(min), _) => format!("a whole number, {min} or more"),
                _ => "a whole number".to_string(),
            },
            Some("number") => "a number".to_string(),
            Some("boolean") => "true or false".to_string(),
            Some("string") if schema["format"] == "date-time" => {
                "a date and time such as 2030-01-31T08:00:00Z (RFC 3339)".to_string()
            }
            Some("string") => "a string".to_string(),
            Some("array") => format!("a list of {}", self.expectation(&schema["items"])),
            Some("object") => "a JSON object".to_string(),
            _ => "a value as documented in /api/v1/openapi.json".to_string(),
        }
    }

    /// Whether `value` is one of `schema`, as the framework reads JSON.
    fn fits(&self, schema: &Value, value: &Value) -> bool {
        let schema = self.resolve(schema);
        if let Some(values) = schema["enum"].as_array() {
            return values.contains(value);
        }
        match schema["type"].as_str() {
            Some("integer") => {
                let (min, max) = bounds(schema);
                value
                    .as_i64()
                    .map(i128::from)
                    .or(value.as_u64().map(i128::from))
                    .is_some_and(|n| {
                        min.is_none_or(|min| n >= min) && max.is_none_or(|max| n <= max)
                    })
            }
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some("string") if schema["format"] == "date-time" => value
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
            // The framework takes a number or a boolean for a string too.
            Some("string") => value.is_string() || value.is_number() || value.is_boolean(),
            Some("array") => value
                .as_array()
                .is_some_and(|items| items.iter().all(|v| self.fits(&schema["items"], v))),
            Some("object") if schema.get("properties").is_none() => value.is_object(),
            _ => true,
        }
    }

    /// Every field of `value` that does not fit `schema`, one sentence
    /// each; `at` is the path of `value` (empty for the whole body).
    fn problems(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let resolved = self.resolve(schema);
        let Some(properties) = resolved["properties"].as_object() else {
            if !self.fits(resolved, value) {
                out.push(format!(
                    "`{at}` must be {}, got {}",
                    self.expectation(resolved),
                    shown(value)
                ));
            }
            return;
        };
        let Some(fields) = value.as_object() else {
            out.push(if at.is_empty() {
                format!("a JSON object is expected, got {}", shown(value))
            } else {
                format!("`{at}` must be a JSON object, got {}", shown(value))
            });
            return;
        };
        let prefix = if at.is_empty() {
            String::new()
        } else {
            format!("{at}.")
        };
        for required in resolved["required"].as_array().into_iter().flatten() {
            let Some(name) = required.as_str() else {
                continue;
            };
            if fields.get(name).is_none_or(Value::is_null) {
                out.push(format!(
                    "`{prefix}{name}` is required: {}",
                    self.expectation(&properties[name])
                ));
            }
        }
        for (name, property) in properties {
            if let Some(v) = fields.get(name).filter(|v| !v.is_null()) {
                self.problems(property, v, &format!("{prefix}{name}"), out);
            }
        }
    }

    fn param_message(&self, op: Option<&Operation>, name: &str, raw: Option<&str>) -> String {
        let schema = op.and_then(|op| op.params.iter().find(|(n, _, _)| n == name));
        let expectation = match schema {
            Some((_, _, schema)) => self.expectation(schema),
            None => "a value as documented in /api/v1/openapi.json".to_string(),
        };
        match raw {
            Some(raw) => format!("`{name}` must be {expectation}, got {raw:?}"),
            None => format!("`{name}` is required: {expectation}"),
        }
    }

    /// The 4xx answer for `err`, when it is a refusal this explains.
    fn explain(
        &self,
        err: &poem::Error,
        method: &Method,
        uri: &Uri,
        body: &[u8],
    ) -> Option<Response> {
        let op = self.operation(method, uri.path());
        if let Some(e) = err.downcast_ref::<ParseParamError>() {
            let query: Vec<(String, String)> =
                serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
            let raw = query
                .iter()
                .find(|(k, _)| k == e.name)
                .map(|(_, v)| v.as_str());
            return Some(bad_request(self.param_message(op, e.name, raw), Vec::new()));
        }
        if let Some(e) = err.downcast_ref::<ParsePathError>() {
            let raw = op.and_then(|op| path_value(op, e.name, uri.path()));
            return Some(bad_request(
                self.param_message(op, e.name, raw.as_deref()),
                Vec::new(),
            ));
        }
        if err.is::<ParseRequestPayloadError>() {
            let value = match serde_json::from_slice::<Value>(body) {
                Ok(value) => value,
                Err(_) if body.iter().all(u8::is_ascii_whitespace) => {
                    return Some(bad_request(
                        "the request body is empty: a JSON object is expected".into(),
                        Vec::new(),
                    ));
                }
                Err(e) => {
                    return Some(bad_request(
                        format!("the request body is not valid JSON: {e}"),
                        Vec::new(),
                    ));
                }
            };
            let mut problems = Vec::new();
            if let Some(schema) = op.and_then(|op| op.body.as_ref()) {
                self.problems(schema, &value, "", &mut problems);
            }
            let error = if problems.is_empty() {
                "the request body does not fit the operation's schema (see /api/v1/openapi.json)"
                    .to_string()
            } else {
                format!("invalid request body: {}", problems.join("; "))
            };
            return Some(bad_request(error, problems));
        }
        if let Some(e) = err.downcast_ref::<ContentTypeError>() {
            let sent = match e {
                ContentTypeError::NotSupported { content_type } => format!(", not {content_type}"),
                ContentTypeError::ExpectContentType => ", and none was given".to_string(),
            };
            return Some(
                ApiError::UnsupportedMediaType(Json(ErrorBody {
                    error: format!(
                        "the request body must be sent as JSON (Content-Type: application/json){sent}"
                    ),
                    problems: Vec::new(),
                }))
                .into_response(),
            );
        }
        None
    }
}

/// Lowest and highest value an integer schema accepts: its `minimum` and
/// `maximum`, else its format's range.
fn bounds(schema: &Value) -> (Option<i128>, Option<i128>) {
    let (min, max) = match schema["format"].as_str() {
        Some("uint8") => (Some(0), Some(i128::from(u8::MAX))),
        Some("uint16") => (Some(0), Some(i128::from(u16::MAX))),
        Some("uint32") => (Some(0), Some(i128::from(u32::MAX))),
        Some("uint64") => (Some(0), Some(i128::from(u64::MAX))),
        Some("int8") => (Some(i128::from(i8::MIN)), Some(i128::from(i8::MAX))),
        Some("int16") => (Some(i128::from(i16::MIN)), Some(i128::from(i16::MAX))),
        Some("int32") => (Some(i128::from(i32::MIN)), Some(i128::from(i32::MAX))),
        Some("int64") => (Some(i128::from(i64::MIN)), Some(i128::from(i64::MAX))),
        _ => (None, None),
    };
    let number = |key: &str| schema[key].as_f64().map(|n| n as i128);
    (number("minimum").or(min), number("maximum").or(max))
}

/// The raw value of path parameter `name` in `path`, percent-decoded.
fn path_value(op: &Operation, name: &str, path: &str) -> Option<String> {
    let template = op.params.iter().filter(|(_, at, _)| at == "path");
    let position = template.clone().position(|(n, _, _)| n == name)?;
    let raw = op
        .segments
        .iter()
        .zip(path.split('/'))
        .filter(|(s, _)| s.is_none())
        .nth(position)?
        .1;
    let decoded: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={raw}")).ok()?;
    decoded.into_iter().next().map(|(_, v)| v)
}

/// A value as quoted in a message: its JSON, cut short when long.
fn shown(value: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

fn bad_request(error: String, problems: Vec<String>) -> Response {
    ApiError::BadRequest(Json(ErrorBody { error, problems })).into_response()
}

/// Calls `ep`, answering a refusal [`Explainer::explain`] knows with its
/// message instead of the framework's.
pub(crate) async fn check<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    explainer: Arc<Explainer>,
) -> poem::Result<Response> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    // Already read into memory by `limit_body`: this only clones a handle.
    let body = req.take_body().into_bytes().await.unwrap_or_default();
    req.set_body(Body::from_bytes(body.clone()));
    match ep.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => match explainer.explain(&err, &method, &uri, &body) {
            Some(resp) => Ok(resp),
            None => Err(err),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explainer() -> Explainer {
        Explainer::new(
            &serde_json::json!({
                "paths": {
                    "/api/v1/things/{name}": {"post": {
                        "parameters": [
                            {"name": "name", "in": "path", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "format": "uint64", "minimum": 1, "maximum": 1000}},
                            {"name": "skip", "in": "query", "schema": {"type": "integer", "format": "uint64"}},
                            {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/StatusDto"}}
                        ],
                        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Req"}}}}
                    }}
                },
                "components": {"schemas": {
                    "StatusDto": {"type": "string", "enum": ["success", "failed"]},
                    "Req": {"type": "object", "required": ["cronExpr"], "properties": {
                        "cronExpr": {"type": "string"},
                        "count": {"type": "integer", "format": "uint32", "minimum": 1, "maximum": 100},
                        "after": {"type": "string", "format": "date-time"},
                        "mode": {"allOf": [{"$ref": "#/components/schemas/StatusDto"}, {"description": "x"}]}
                    }}
                }}
            })
            .to_string(),
        )
    }

    #[test]
    fn parameters_are_explained_from_their_schema() {
        let e = explainer();
        let op = e.operation(&Method::POST, "/api/v1/things/x");
        assert!(op.is_some());
        assert_eq!(
            e.param_message(op, "limit", Some("abc")),
            "`limit` must be a whole number from 1 to 1000, got \"abc\""
        );
        assert_eq!(
            e.param_message(op, "skip", Some("-1")),
            "`skip` must be a whole number, 0 or more, got \"-1\""
        );
        assert_eq!(
            e.param_message(op, "status", Some("weird")),
            "`status` must be one of success, failed, got \"weird\""
        );
        assert!(e.operation(&Method::GET, "/api/v1/things/x").is_none());
        assert!(e.operation(&Method::POST, "/api/v1/things/x/y").is_none());
    }

    #[test]
    fn bodies_are_explained_field_by_field() {
        let e = explainer();
        let op = e.operation(&Method::POST, "/api/v1/things/x").expect("op");
        let body = op.body.as_ref().expect("body");
        let mut out = Vec::new();
        e.problems(
            body,
            &serde_json::json!({"count": "x", "after": "yesterday", "mode": "sometimes"}),
            "",
            &mut out,
        );
        // In the schema's order, which serde_json's features decide.
        out.sort();
        assert_eq!(
            out,
            [
                "`after` must be a date and time such as 2030-01-31T08:00:00Z (RFC 3339), got \"yesterday\"",
                "`count` must be a whole number from 1 to 100, got \"x\"",
                "`cronExpr` is required: a string",
                "`mode` must be one of success, failed, got \"sometimes\"",
            ]
        );
        let mut out = Vec::new();
        e.problems(body, &serde_json::json!([1]), "", &mut out);
        assert_eq!(out, ["a JSON object is expected, got [1]"]);
        let mut out = Vec::new();
        e.problems(
            body,
            &serde_json::json!({"cronExpr": "@daily", "count": 5}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }
}
