//! What a job's runs start with besides the command (ARCHITECTURE §3–§4):
//! environment variables (`env`), a working directory (`workdir`) and a
//! Unix user (`user`), and the rules a saved job must follow for them.
//!
//! A variable's value is a string, or `{"file": "/abs/path"}`: a file the
//! worker reads when the run starts. Only the path is ever part of the job
//! (etcd, REST answers, records); the content stays on the worker.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Most variables in one job's `env`.
pub const MAX_ENV_VARS: usize = 100;
/// Longest variable name, in bytes.
pub const MAX_ENV_NAME_BYTES: usize = 128;
/// Longest variable value (given in the job or read from a file), in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;
/// Longest path (an env file, the workdir), in bytes: Linux's `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest user name, in bytes.
pub const MAX_USER_BYTES: usize = 32;
/// Names starting with this are the run variables the worker sets
/// (`RCRON_JOB`, `RCRON_RUN_ID`, …): a job cannot set them.
pub const RESERVED_PREFIX: &str = "RCRON_";

/// A job's variables, by name.
pub type Env = BTreeMap<String, EnvValue>;

/// The value of one variable of a job's `env`.
// Untagged on the wire: a plain string, or an object naming a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// The value itself.
    Value(String),
    /// A file on the worker whose content (less one trailing newline) is
    /// the value, read when the run starts. The content is a secret: it is
    /// never stored, logged or shown, only the path is.
    File {
        /// Absolute path on the worker.
        file: String,
    },
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde cannot refuse unknown fields in one variant of an untagged
        // enum; a helper struct can. A misspelt `file` would otherwise
        // pass as an object and fail at every run.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileRef {
            file: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Value(String),
            File(FileRef),
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Value(value) => Self::Value(value),
            Wire::File(FileRef { file }) => Self::File { file },
        })
    }
}

/// Who a job's command runs as: the job's `user` read as a uid when it is
/// all digits, as a name otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// A user name, looked up on the worker.
    Name(String),
    /// A numeric uid, looked up on the worker.
    Uid(u32),
}

impl RunAs {
    /// How the worker reads a (valid) `user` field.
    pub fn of(user: &str) -> Self {
        match user.parse() {
            Ok(uid) if user.bytes().all(|b| b.is_ascii_digit()) => Self::Uid(uid),
            _ => Self::Name(user.to_string()),
        }
    }
}

/// Every problem with a job's `env`, each naming its variable.
pub fn env_problems(env: &Env) -> Vec<String> {
    let mut problems = Vec::new();
    if env.len() > MAX_ENV_VARS {
        problems.push(format!(
            "`env` may set at most {MAX_ENV_VARS} variables, got {}",
            env.len()
        ));
    }
    for (name, value) in env {
        let field = env_field(name);
        if let Some(p) = env_name_problem(name) {
            problems.push(format!("{field}: {p}"));
        }
        match value {
            EnvValue::Value(v) if v.contains('\0') => {
                problems.push(format!(
                    "{field}: the value must not contain a NUL character"
                ));
            }
            EnvValue::Value(v) if v.len() > MAX_ENV_VALUE_BYTES => problems.push(format!(
                "{field}: the value must be at most {MAX_ENV_VALUE_BYTES} bytes, got {}",
                v.len()
            )),
            EnvValue::Value(_) => {}
            EnvValue::File { file } => {
                if let Some(p) = path_problem(file) {
                    problems.push(format!("{field}: the file {p}"));
                }
            }
        }
    }
    problems
}

/// Why `workdir` is not a usable working directory, or `None`.
pub fn workdir_problem(workdir: &str) -> Option<String> {
    path_problem(workdir).map(|p| format!("`workdir` {p}"))
}

/// Why `user` is neither a Unix user name nor a numeric uid, or `None`.
pub fn user_problem(user: &str) -> Option<String> {
    let numeric = !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit());
    if numeric {
        return user
            .parse::<u32>()
            .is_err()
            .then(|| format!("`user`: uid {user} is out of range (at most {})", u32::MAX));
    }
    // The portable user name of useradd(8): `[a-z_][a-z0-9_-]*[$]?`.
    let bytes = user.as_bytes();
    let body = bytes.strip_suffix(b"$").unwrap_or(bytes);
    let valid = user.len() <= MAX_USER_BYTES
        && body
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || *b == b'_')
        && body
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    (!valid).then(|| {
        format!(
            "`user` must be a Unix user name (up to {MAX_USER_BYTES} lowercase letters, digits, `_`, `-`, \
             not starting with a digit or `-`) or a numeric uid, got {}",
            crate::job_shape::shown(&user.into())
        )
    })
}

/// The field a message about variable `name` names: `env.NAME`, quoted so
/// that a name with odd characters stays readable.
fn env_field(name: &str) -> String {
    const MAX_CHARS: usize = 60;
    let escaped: String = name.escape_debug().collect();
    if escaped.chars().count() <= MAX_CHARS {
        format!("`env.{escaped}`")
    } else {
        let head: String = escaped.chars().take(MAX_CHARS).collect();
        format!("`env.{head}…`")
    }
}

fn env_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a variable name must not be empty".into());
    }
    if name.len() > MAX_ENV_NAME_BYTES {
        return Some(format!(
            "a variable name must be at most {MAX_ENV_NAME_BYTES} bytes"
        ));
    }
    let bytes = name.as_bytes();
    let valid = !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if !valid {
        return Some(
            "a variable name takes ASCII letters, digits and `_`, and does not start with a digit"
                .into(),
        );
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Some(format!(
            "names starting with `{RESERVED_PREFIX}` are reserved for the run variables the worker sets"
        ));
    }
    None
}

/// Why `path` is not an absolute path the worker can use, or `None`;
/// phrased to follow the field's name.
fn path_problem(path: &str) -> Option<String> {
    if path.contains('\0') {
        return Some("must not contain a NUL character".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Some(format!("must be at most {MAX_PATH_BYTES} bytes"));
    }
    // Relative to what? The worker's directory is no contract.
    if !path.starts_with('/') {
        return Some(format!(
            "must be an absolute path (starting with `/`), got {}",
            crate::job_shape::shown(&path.into())
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, EnvValue)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn value(v: &str) -> EnvValue {
        EnvValue::Value(v.into())
    }

    fn file(f: &str) -> EnvValue {
        EnvValue::File { file: f.into() }
    }

    #[test]
    fn values_are_strings_or_file_objects_and_nothing_else() {
        let env: Env =
            serde_json::from_str(r#"{"A":"x","B":{"file":"/run/secrets/b"}}"#).expect("env");
        assert_eq!(env["A"], value("x"));
        assert_eq!(env["B"], file("/run/secrets/b"));
        assert_eq!(
            serde_json::to_string(&env).expect("json"),
            r#"{"A":"x","B":{"file":"/run/secrets/b"}}"#
        );
        for bad in [
            r#"{"A":5}"#,
            r#"{"A":{"file":"/x","mode":"0600"}}"#,
            r#"{"A":{"path":"/x"}}"#,
            r#"{"A":{"file":5}}"#,
            r#"{"A":null}"#,
        ] {
            assert!(serde_json::from_str::<Env>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn good_env_has_no_problem() {
        let good = env(&[
            ("PATH", value("/usr/bin")),
            ("_x9", value("")),
            ("TOKEN", file("/run/secrets/token")),
            (
                "rcron_lowercase",
                value("not reserved: names are case-sensitive"),
            ),
        ]);
        assert_eq!(env_problems(&good), Vec::<String>::new());
    }

    #[test]
    fn every_problem_names_its_variable() {
        let long_name = "N".repeat(MAX_ENV_NAME_BYTES + 1);
        let bad = env(&[
            ("1ST", value("x")),
            ("A-B", value("x")),
            ("", value("x")),
            ("RCRON_JOB", value("x")),
            (&long_name, value("x")),
            ("NUL", value("a\0b")),
            ("BIG", value(&"x".repeat(MAX_ENV_VALUE_BYTES + 1))),
            ("REL", file("secrets/x")),
            ("NULPATH", file("/a\0b")),
            (
                "LONGPATH",
                file(&format!("/{}", "p".repeat(MAX_PATH_BYTES))),
            ),
        ]);
        let problems = env_problems(&bad);
        let all = problems.join("\n");
        assert_eq!(problems.len(), 10, "{all}");
        for needle in [
            "`env.1ST`: a variable name takes ASCII letters, digits and `_`, and does not start with a digit",
            "`env.A-B`: a variable name takes ASCII letters",
            "`env.`: a variable name must not be empty",
            "`env.RCRON_JOB`: names starting with `RCRON_` are reserved",
            "a variable name must be at most 128 bytes",
            "`env.NUL`: the value must not contain a NUL character",
            "`env.BIG`: the value must be at most 32768 bytes, got 32769",
            "`env.REL`: the file must be an absolute path (starting with `/`), got \"secrets/x\"",
            "`env.NULPATH`: the file must not contain a NUL character",
            "`env.LONGPATH`: the file must be at most 4096 bytes",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(!all.contains(&long_name), "a long name is cut short: {all}");
    }

    #[test]
    fn at_most_a_hundred_variables() {
        let many: Env = (0..=MAX_ENV_VARS)
            .map(|i| (format!("V{i}"), value("x")))
            .collect();
        assert_eq!(
            env_problems(&many),
            ["`env` may set at most 100 variables, got 101"]
        );
        let enough: Env = (0..MAX_ENV_VARS)
            .map(|i| (format!("V{i}"), value("x")))
            .collect();
        assert!(env_problems(&enough).is_empty());
    }

    #[test]
    fn workdir_is_absolute_without_nul() {
        assert_eq!(workdir_problem("/srv/app"), None);
        assert_eq!(
            workdir_problem("srv").as_deref(),
            Some("`workdir` must be an absolute path (starting with `/`), got \"srv\"")
        );
        assert!(workdir_problem("/a\0").is_some_and(|p| p.contains("NUL")));
    }

    #[test]
    fn user_is_a_unix_name_or_a_uid() {
        for good in ["nobody", "_apt", "www-data", "a1", "machine$", "0", "1000"] {
            assert_eq!(user_problem(good), None, "{good}");
        }
        for bad in [
            "Bob",
            "-x",
            "1x",
            "a b",
            "a$b",
            "$",
            "",
            &"a".repeat(MAX_USER_BYTES + 1),
        ] {
            let p = user_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(p.starts_with("`user` must be a Unix user name"), "{p}");
        }
        assert!(user_problem("99999999999").is_some_and(|p| p.contains("out of range")));
        assert_eq!(RunAs::of("1000"), RunAs::Uid(1000));
        assert_eq!(RunAs::of("nobody"), RunAs::Name("nobody".into()));
    }
}
