//! Explains a job document that is JSON but not of the job's shape, field
//! by field: which field, what it accepts, what it got — in the words of
//! the job's documentation, never the decoder's type names (`u64`,
//! "unknown variant"). [`crate::Job::from_json`] asks for it only when
//! decoding fails, so valid documents never pay for it.

use serde_json::{Map, Value};

use crate::job::{
    MAX_RETRIES, MAX_RETRY_BACKOFF_SECS, MAX_STARTING_DEADLINE_SECS, MAX_TIMEOUT_SECS,
};
use crate::{Concurrency, Misfire, TargetMode};

/// What a field of the job accepts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    /// A whole number from 0 to the bound.
    Whole(u64),
    /// Milliseconds since the epoch (any whole number).
    Millis,
    Flag,
    OneOf(&'static [&'static str]),
    /// A list of email addresses.
    Emails,
    Names,
    Target,
    /// A job's `env`: names to strings or `{"file": …}`.
    Env,
    /// A user name or a numeric uid, as a string.
    User,
}

/// Every top-level field a job has, with what it accepts. A field missing
/// here is still decoded, but a wrong type in it is explained only in the
/// decoder's words: the test below checks that none is missing.
const FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Text),
    ("command", Kind::Text),
    ("env", Kind::Env),
    ("workdir", Kind::Text),
    ("user", Kind::User),
    ("cronExpr", Kind::Text),
    ("timeoutSecs", Kind::Whole(MAX_TIMEOUT_SECS)),
    ("concurrency", Kind::OneOf(Concurrency::NAMES)),
    ("retries", Kind::Whole(MAX_RETRIES as u64)),
    ("retryBackoffSecs", Kind::Whole(MAX_RETRY_BACKOFF_SECS)),
    ("timezone", Kind::Text),
    ("disabled", Kind::Flag),
    ("alertEmails", Kind::Emails),
    ("target", Kind::Target),
    ("misfire", Kind::OneOf(Misfire::NAMES)),
    (
        "startingDeadlineSecs",
        Kind::Whole(MAX_STARTING_DEADLINE_SECS),
    ),
    ("alertOnMissed", Kind::Flag),
    ("retryBackoffMaxSecs", Kind::Whole(MAX_RETRY_BACKOFF_SECS)),
    ("onSuccess", Kind::Names),
    ("onFailure", Kind::Names),
    ("updatedAt", Kind::Millis),
];

/// The sentence for a whole-number field out of its range or of another
/// type (also used by the job's own range checks, so both read the same).
pub(crate) fn whole_number(field: &str, max: u64, got: &Value) -> String {
    format!(
        "`{field}` must be a whole number from 0 to {max}, got {}",
        shown(got)
    )
}

/// A value as quoted in a message: its JSON, cut short when long.
pub(crate) fn shown(value: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

/// What a JSON value is, for "a job must be a JSON object, got …".
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn one_of(names: &[&str]) -> String {
    names.join(", ")
}

/// Each field of `fields` whose value the job cannot take, with the
/// sentence saying why. An absent or null field is never a problem here
/// (it takes its default, or is reported missing by the job's rules).
pub(crate) fn field_problems(fields: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    for &(field, kind) in FIELDS {
        let Some(value) = fields.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let mut say = |sentence: String| problems.push((field, sentence));
        match kind {
            Kind::Text if !value.is_string() => {
                say(format!("`{field}` must be a string, got {}", shown(value)));
            }
            Kind::Whole(max) if value.as_u64().is_none_or(|n| n > max) => {
                say(whole_number(field, max, value));
            }
            Kind::Millis if value.as_i64().is_none() => say(format!(
                "`{field}` must be a whole number of milliseconds since the epoch, got {}",
                shown(value)
            )),
            Kind::Flag if !value.is_boolean() => {
                say(format!(
                    "`{field}` must be true or false, got {}",
                    shown(value)
                ));
            }
            Kind::OneOf(names) if !value.as_str().is_some_and(|s| names.contains(&s)) => {
                say(format!(
                    "`{field}` must be one of {}, got {}",
                    one_of(names),
                    shown(value)
                ));
            }
            Kind::Emails
                if !value
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string)) =>
            {
                say(format!(
                    "`{field}` must be a list of email addresses (strings), got {}",
                    shown(value)
                ));
            }
            Kind::Names
                if !value
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string)) =>
            {
                say(format!(
                    "`{field}` must be a list of job names (strings), got {}",
                    shown(value)
                ));
            }
            Kind::Target => {
                for sentence in target_problems(value) {
                    say(sentence);
                }
            }
            Kind::Env => {
                for sentence in env_problems(value) {
                    say(sentence);
                }
            }
            Kind::User if !value.is_string() => say(format!(
                "`{field}` must be a string: a user name, or a numeric uid such as \"1000\", got {}",
                shown(value)
            )),
            _ => {}
        }
    }
    problems
}

fn target_problems(value: &Value) -> Vec<String> {
    let Some(fields) = value.as_object() else {
        return vec![format!(
            "`target` must be an object such as {{\"labels\": {{\"role\": \"db\"}}, \"mode\": \"one\"}}, got {}",
            shown(value)
        )];
    };
    let mut problems = Vec::new();
    // In a fixed order: whether a JSON object keeps its keys' order depends
    // on serde_json's features in the build.
    let mut keys: Vec<&String> = fields.keys().collect();
    keys.sort_by_key(|k| (!matches!(k.as_str(), "labels" | "mode"), k.as_str()));
    for key in keys {
        let value = &fields[key];
        match key.as_str() {
            "labels" => {
                let strings = value
                    .as_object()
                    .is_some_and(|labels| labels.values().all(Value::is_string));
                if !value.is_null() && !strings {
                    problems.push(format!(
                        "`target.labels` must be an object of label names to string values, got {}",
                        shown(value)
                    ));
                }
            }
            "mode" => {
                let known = value
                    .as_str()
                    .is_some_and(|s| TargetMode::NAMES.contains(&s));
                if !value.is_null() && !known {
                    problems.push(format!(
                        "`target.mode` must be one of {}, got {}",
                        one_of(TargetMode::NAMES),
                        shown(value)
                    ));
                }
            }
            other => problems.push(format!(
                "`target` has no field `{other}` (it takes `labels` and `mode`)"
            )),
        }
    }
    problems
}

/// A variable given by a file, as the messages below show it.
const FILE_EXAMPLE: &str = "{\"file\": \"/absolute/path\"}";

fn env_problems(value: &Value) -> Vec<String> {
    let Some(vars) = value.as_object() else {
        return vec![format!(
            "`env` must be an object of variable names to values (a string, or {FILE_EXAMPLE}), got {}",
            shown(value)
        )];
    };
    let mut problems = Vec::new();
    // Sorted, as the job's own rules list them.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let value = &vars[name];
        let field: String = name.escape_debug().take(60).collect();
        match value {
            Value::String(_) => {}
            Value::Object(fields) => {
                let mut unknown: Vec<&String> = fields.keys().filter(|k| *k != "file").collect();
                unknown.sort();
                for key in &unknown {
                    problems.push(format!(
                        "`env.{field}` has no field `{key}` (it takes only `file`)"
                    ));
                }
                match fields.get("file") {
                    Some(file) if !file.is_string() => problems.push(format!(
                        "`env.{field}.file` must be a string (an absolute path), got {}",
                        shown(file)
                    )),
                    Some(_) => {}
                    None if unknown.is_empty() => problems.push(format!(
                        "`env.{field}` must be a string or {FILE_EXAMPLE}, got {}",
                        shown(value)
                    )),
                    None => {}
                }
            }
            other => problems.push(format!(
                "`env.{field}` must be a string or {FILE_EXAMPLE}, got {}",
                shown(other)
            )),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Deserialize, Deserializer, Visitor};

    /// A deserializer that only records the field names a struct asks for.
    struct FieldNames<'a>(&'a mut Vec<&'static str>);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only structs"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(fields);
            Err(de::Error::custom("names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    #[test]
    fn every_field_of_the_wire_form_is_explained() {
        let mut names = Vec::new();
        let _ = crate::job::RawJob::deserialize(FieldNames(&mut names));
        assert!(!names.is_empty());
        for name in names {
            assert!(
                FIELDS.iter().any(|(f, _)| *f == name),
                "add `{name}` to job_shape::FIELDS, so a wrong type in it is explained"
            );
        }
    }

    #[test]
    fn enum_names_are_the_wire_names() {
        for name in Concurrency::NAMES {
            let v: Concurrency = serde_json::from_value(Value::from(*name)).expect(name);
            assert_eq!(serde_json::to_value(v).expect("json"), Value::from(*name));
        }
        for name in Misfire::NAMES {
            let v: Misfire = serde_json::from_value(Value::from(*name)).expect(name);
            assert_eq!(serde_json::to_value(v).expect("json"), Value::from(*name));
        }
        for name in TargetMode::NAMES {
            let v: TargetMode = serde_json::from_value(Value::from(*name)).expect(name);
            assert_eq!(serde_json::to_value(v).expect("json"), Value::from(*name));
        }
        for v in [
            Concurrency::Forbid,
            Concurrency::Allow,
            Concurrency::Replace,
        ] {
            let name = serde_json::to_value(v).expect("json");
            assert!(Concurrency::NAMES.contains(&name.as_str().expect("str")));
        }
        for v in [Misfire::Skip, Misfire::RunOnce] {
            let name = serde_json::to_value(v).expect("json");
            assert!(Misfire::NAMES.contains(&name.as_str().expect("str")));
        }
        for v in [TargetMode::One, TargetMode::All] {
            let name = serde_json::to_value(v).expect("json");
            assert!(TargetMode::NAMES.contains(&name.as_str().expect("str")));
        }
    }

    #[test]
    fn problems_name_the_field_and_what_it_takes() {
        let doc: Value = serde_json::from_str(
            r#"{"name":5,"timeoutSecs":"abc","retries":-1,"concurrency":"bogus",
               "disabled":"yes","alertEmails":"a@b","misfire":null,
               "target":{"mode":"some","labels":{"role":1},"lables":{}}}"#,
        )
        .expect("json");
        let problems = field_problems(doc.as_object().expect("object"));
        let all: Vec<&str> = problems.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            all,
            [
                "`name` must be a string, got 5",
                "`timeoutSecs` must be a whole number from 0 to 2592000, got \"abc\"",
                "`concurrency` must be one of forbid, allow, replace, got \"bogus\"",
                "`retries` must be a whole number from 0 to 100, got -1",
                "`disabled` must be true or false, got \"yes\"",
                "`alertEmails` must be a list of email addresses (strings), got \"a@b\"",
                "`target.labels` must be an object of label names to string values, got {\"role\":1}",
                "`target.mode` must be one of one, all, got \"some\"",
                "`target` has no field `lables` (it takes `labels` and `mode`)",
            ]
        );
    }

    #[test]
    fn env_of_the_wrong_shape_is_explained_per_variable() {
        let doc: Value = serde_json::from_str(
            r#"{"env":{"A":"ok","B":5,"C":{"file":5},"D":{"path":"/x"},"E":{},"F":{"file":"/x"}},
               "workdir":5,"user":1000}"#,
        )
        .expect("json");
        let problems = field_problems(doc.as_object().expect("object"));
        let all: Vec<&str> = problems.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            all,
            [
                "`env.B` must be a string or {\"file\": \"/absolute/path\"}, got 5",
                "`env.C.file` must be a string (an absolute path), got 5",
                "`env.D` has no field `path` (it takes only `file`)",
                "`env.E` must be a string or {\"file\": \"/absolute/path\"}, got {}",
                "`workdir` must be a string, got 5",
                "`user` must be a string: a user name, or a numeric uid such as \"1000\", got 1000",
            ]
        );
        let doc: Value = serde_json::from_str(r#"{"env":["A=1"]}"#).expect("json");
        let problems = field_problems(doc.as_object().expect("object"));
        assert_eq!(
            problems[0].1,
            "`env` must be an object of variable names to values (a string, or {\"file\": \"/absolute/path\"}), got [\"A=1\"]"
        );
    }
}
