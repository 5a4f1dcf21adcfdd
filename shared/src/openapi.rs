//! How the shared string types of a job appear in the REST API's OpenAPI
//! document (feature `openapi`, enabled by the master).
//!
//! [`crate::Job`], [`crate::Target`] and the job's enums derive their
//! schema where they are defined, so the REST schema cannot drift from the
//! stored document. Three of their fields' types need the hand-written
//! impls below: a [`JobName`] and a [`Timezone`] are plain strings on the
//! wire, and an [`EnvValue`] is a string or `{"file": "/abs/path"}`.
//! The REST handlers decode bodies with [`crate::Job::from_json`] (every
//! problem named at once); the parsers here only serve poem-openapi's own
//! machinery and apply the same rules.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

use crate::cron::{Timezone, parse_timezone};
use crate::job_env::EnvValue;
use crate::name::JobName;

fn string_schema() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
}

/// The JSON string a parser was given, or the error poem-openapi expects.
fn string_value(value: Option<Value>) -> ParseResult<String> {
    match value {
        Some(Value::String(s)) => Ok(s),
        other => Err(ParseError::expected_type(other.unwrap_or_default())),
    }
}

impl Type for JobName {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        string_schema()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for JobName {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let s = string_value(value).map_err(ParseError::propagate)?;
        JobName::new(s).map_err(ParseError::custom)
    }
}

impl ToJSON for JobName {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.to_string()))
    }
}

impl Type for Timezone {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        string_schema()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for Timezone {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let s = string_value(value).map_err(ParseError::propagate)?;
        parse_timezone(&s).map(Timezone).map_err(ParseError::custom)
    }
}

impl ToJSON for Timezone {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.name().to_string()))
    }
}

impl Type for EnvValue {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_or_file".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let file = MetaSchema {
            description: Some("A file on the worker, read when the run starts."),
            required: vec!["file"],
            properties: vec![(
                "file",
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    description: Some("Absolute path on the worker."),
                    ..MetaSchema::new("string")
                })),
            )],
            ..MetaSchema::new("object")
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "The value, or `{\"file\": \"/abs/path\"}`: the content of a file on the \
                 worker (less one trailing newline), never stored or shown.",
            ),
            one_of: vec![string_schema(), MetaSchemaRef::Inline(Box::new(file))],
            ..MetaSchema::ANY
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for EnvValue {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let value = value.unwrap_or_default();
        serde_json::from_value(value.clone()).map_err(|_| ParseError::expected_type(value))
    }
}

impl ToJSON for EnvValue {
    fn to_json(&self) -> Option<Value> {
        serde_json::to_value(self).ok()
    }
}
