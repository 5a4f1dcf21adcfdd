//! Job names: validated once, when built, so every other module can put a
//! [`JobName`] into an etcd key or a URL without checking it again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// The longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// A job's name: 1–128 characters, letters of any script, digits, `.`, `_`
/// and `-`. Never `/`, whitespace or control characters, so it is safe as
/// the last segment of an etcd key and of a URL path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct JobName(String);

impl JobName {
    /// Checks `name` against the naming rules.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        match name_problem(&name) {
            None => Ok(Self(name)),
            Some(reason) => Err(Error::InvalidName { name, reason }),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why `name` is not a valid job name, or `None` when it is.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Some("must not be empty".into());
    }
    if chars > MAX_NAME_CHARS {
        return Some(format!(
            "must be at most {MAX_NAME_CHARS} characters, got {chars}"
        ));
    }
    // "." and ".." are path segments that HTTP clients rewrite before sending.
    if name == "." || name == ".." {
        return Some("must not be `.` or `..`".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "may contain only letters, digits, `.`, `_` and `-`, found {bad:?}"
        ));
    }
    None
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for JobName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        JobName::new(raw).map_err(serde::de::Error::custom)
    }
}

/// Names order as their text, so maps keyed by name can be ranged by text
/// (a page cursor is the last name of the previous page).
impl std::borrow::Borrow<str> for JobName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_of_any_script_digits_and_punctuation() {
        for ok in [
            "job1",
            "backup.db-daily_2",
            "日次バックアップ",
            "Ünïcödé",
            "a",
            "-",
            "x".repeat(128).as_str(),
        ] {
            assert!(JobName::new(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn rejects_slash_space_control_and_lengths() {
        for bad in [
            "",
            "a/b",
            "a b",
            "tab\there",
            "nl\n",
            "nul\0",
            ".",
            "..",
            "x".repeat(129).as_str(),
            "semi;colon",
            "star*",
        ] {
            let err = JobName::new(bad).expect_err(bad);
            assert!(err.to_string().contains("job name"), "{err}");
        }
    }

    #[test]
    fn deserializing_checks_the_rules() {
        assert!(serde_json::from_str::<JobName>("\"ok\"").is_ok());
        let err = serde_json::from_str::<JobName>("\"a/b\"").expect_err("slash");
        assert!(err.to_string().contains("may contain only"), "{err}");
    }
}
