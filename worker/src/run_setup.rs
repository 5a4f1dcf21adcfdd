//! What an attempt starts with besides its command (ARCHITECTURE §4, "Run
//! environment"): its variables, working directory and user.
//!
//! The runner builds a [`RunSetup`] in one place (`RunContext::setup`)
//! from the job, the run's own variables and the run variables
//! ([`RunVars`]); the [`executor`](crate::executor) resolves it on this
//! worker just before it starts the command ([`RunSetup::resolve`]: files
//! read, user looked up, directory checked) and fails the attempt, without
//! starting anything, when that goes wrong.
//!
//! A file's content is a secret: it lives only in the [`Resolved`] handed
//! to the child process, which has no `Debug`, and no error quotes it.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use rcron_shared::job_env::MAX_ENV_VALUE_BYTES;
use rcron_shared::{EnvValue, Job, RunAs, Trigger};

use crate::scheduler::Tick;

/// What started `tick`: its run request's trigger (`manual`, `chain`),
/// else its schedule. The `RCRON_TRIGGER` run variable.
pub fn trigger_of(tick: &Tick) -> Trigger {
    tick.request
        .as_ref()
        .map_or(Trigger::Schedule, |r| r.request.trigger)
}

/// Which attempt of which run this is: the `RCRON_*` run variables.
#[derive(Debug, Clone)]
pub struct RunVars<'a> {
    /// `RCRON_JOB`: the job's name.
    pub job: &'a str,
    /// `RCRON_RUN_ID`: the run's id, as in its records.
    pub run_id: &'a str,
    /// `RCRON_PLAN_TIME`: the tick (ms since the epoch).
    pub plan_ms: i64,
    /// `RCRON_ATTEMPT`: 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// `RCRON_WORKER`: this worker's id.
    pub worker: &'a str,
    /// `RCRON_TRIGGER`.
    pub trigger: Trigger,
}

impl RunVars<'_> {
    /// The variables, by name.
    pub fn pairs(&self) -> [(&'static str, String); 6] {
        [
            ("RCRON_JOB", self.job.to_string()),
            ("RCRON_RUN_ID", self.run_id.to_string()),
            ("RCRON_PLAN_TIME", self.plan_ms.to_string()),
            ("RCRON_ATTEMPT", self.attempt.to_string()),
            ("RCRON_WORKER", self.worker.to_string()),
            ("RCRON_TRIGGER", self.trigger.as_str().to_string()),
        ]
    }
}

/// What an attempt asks for besides its command; nothing read yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSetup {
    /// Variables set on top of the worker's environment (and the user's
    /// `HOME`, `USER`, `LOGNAME`), in order: a later one wins.
    pub env: Vec<(String, EnvValue)>,
    /// Where the command runs; None = the worker's directory.
    pub workdir: Option<PathBuf>,
    /// Who it runs as (a name or a uid); None = the worker's user.
    pub user: Option<String>,
}

impl RunSetup {
    /// The setup of an attempt of `job`: the job's variables, then the
    /// run's own `extra` ones, then the run variables, which nothing can
    /// override.
    pub fn new(job: &Job, extra: &BTreeMap<String, String>, vars: &RunVars<'_>) -> Self {
        let env = job
            .env
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .chain(
                extra
                    .iter()
                    .map(|(name, value)| (name.clone(), EnvValue::Value(value.clone()))),
            )
            .chain(
                vars.pairs()
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), EnvValue::Value(value))),
            )
            .collect();
        Self {
            env,
            workdir: job.workdir.as_ref().map(PathBuf::from),
            user: job.user.clone(),
        }
    }

    /// Reads what the setup names on this worker: the user (and whether
    /// this worker may switch to it), the directory, the env files.
    /// Blocking (files, the user database): call it off the runtime.
    pub fn resolve(&self) -> Result<Resolved, SetupError> {
        let mut env = Vec::with_capacity(self.env.len() + 3);
        let mut account = None;
        if let Some(user) = &self.user {
            let found = find_user(user)?;
            // The user's own login variables, under the job's (which win).
            env.push(("HOME".to_string(), found.dir.clone().into_os_string()));
            env.push(("USER".to_string(), found.name.clone().into()));
            env.push(("LOGNAME".to_string(), found.name.clone().into()));
            account = switch_to(user, found)?;
        }
        if let Some(dir) = &self.workdir {
            check_workdir(dir)?;
        }
        for (name, value) in &self.env {
            let value = match value {
                EnvValue::Value(v) => OsString::from(v),
                EnvValue::File { file } => read_env_file(name, Path::new(file))?,
            };
            env.push((name.clone(), value));
        }
        Ok(Resolved {
            env,
            workdir: self.workdir.clone(),
            account,
        })
    }
}

/// A setup ready to apply to a command. No `Debug`: it holds the content
/// of env files.
pub struct Resolved {
    /// Variables to set on top of the worker's environment, in order.
    pub env: Vec<(String, OsString)>,
    /// Where the command runs.
    pub workdir: Option<PathBuf>,
    /// The user to switch to before the command starts (None: run as the
    /// worker's own user).
    pub account: Option<Account>,
}

/// A user the worker (root) switches to in the child before it runs the
/// command.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: Uid,
    /// Its primary group.
    pub gid: Gid,
    /// Every group it is in (the primary one included), as `initgroups`
    /// would set them.
    pub groups: Vec<Gid>,
}

/// Why an attempt could not start; the record's `err`. Never carries the
/// content of an env file.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The job names a user this worker's host does not know.
    #[error("user {user}: no such user")]
    NoSuchUser {
        /// As the job names it.
        user: String,
    },
    /// The user database could not be read.
    #[error("user {user}: cannot look it up: {source}")]
    UserLookup {
        /// As the job names it.
        user: String,
        /// Why.
        source: nix::Error,
    },
    /// The user's groups could not be listed.
    #[error("user {user}: cannot list its groups: {source}")]
    Groups {
        /// As the job names it.
        user: String,
        /// Why.
        source: nix::Error,
    },
    /// Only root can run a command as another user.
    #[error("cannot run as user {user}: the worker runs as uid {uid}, not root")]
    NotRoot {
        /// As the job names it.
        user: String,
        /// The worker's effective uid.
        uid: u32,
    },
    /// The working directory cannot be used.
    #[error("workdir {}: {source}", path.display())]
    Workdir {
        /// The job's `workdir`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The working directory is a file.
    #[error("workdir {}: not a directory", path.display())]
    NotADirectory {
        /// The job's `workdir`.
        path: PathBuf,
    },
    /// A variable's file cannot be read.
    #[error("env.{name}: cannot read {}: {source}", path.display())]
    EnvFile {
        /// The variable.
        name: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A variable's file holds something no variable can hold.
    #[error("env.{name}: {}: {problem}", path.display())]
    EnvFileContent {
        /// The variable.
        name: String,
        /// Its file.
        path: PathBuf,
        /// What is wrong with it, never the content itself.
        problem: String,
    },
}

/// The passwd entry of `user` (a name or a uid).
fn find_user(user: &str) -> Result<User, SetupError> {
    let found = match RunAs::of(user) {
        RunAs::Name(name) => User::from_name(&name),
        RunAs::Uid(uid) => User::from_uid(Uid::from_raw(uid)),
    };
    match found {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(SetupError::NoSuchUser {
            user: user.to_string(),
        }),
        Err(source) => Err(SetupError::UserLookup {
            user: user.to_string(),
            source,
        }),
    }
}

/// Whom to switch to for `found`: None when the worker already runs as it
/// (and is not root); an error when it runs as someone else, not root.
fn switch_to(user: &str, found: User) -> Result<Option<Account>, SetupError> {
    let me = nix::unistd::geteuid();
    if !me.is_root() {
        if found.uid == me {
            return Ok(None);
        }
        return Err(SetupError::NotRoot {
            user: user.to_string(),
            uid: me.as_raw(),
        });
    }
    let groups = CString::new(found.name.clone())
        .map_err(|_| nix::Error::EINVAL)
        .and_then(|name| nix::unistd::getgrouplist(&name, found.gid))
        .map_err(|source| SetupError::Groups {
            user: user.to_string(),
            source,
        })?;
    Ok(Some(Account {
        name: found.name,
        uid: found.uid,
        gid: found.gid,
        groups,
    }))
}

fn check_workdir(dir: &Path) -> Result<(), SetupError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(SetupError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Err(source) => Err(SetupError::Workdir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The value of variable `name` from `path`: its content less one trailing
/// newline (what `echo secret > file` leaves).
fn read_env_file(name: &str, path: &Path) -> Result<OsString, SetupError> {
    let unreadable = |source| SetupError::EnvFile {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let content = |problem: String| SetupError::EnvFileContent {
        name: name.to_string(),
        path: path.to_path_buf(),
        problem,
    };
    // A FIFO or a device would block the read or never end.
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(content("not a regular file".into()));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    // One byte more than the limit and its newline tells "too large".
    file.take(MAX_ENV_VALUE_BYTES as u64 + 2)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() > MAX_ENV_VALUE_BYTES {
        return Err(content(format!("larger than {MAX_ENV_VALUE_BYTES} bytes")));
    }
    if bytes.contains(&0) {
        return Err(content("holds a NUL byte, which no variable can".into()));
    }
    Ok(OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(json: &str) -> Job {
        Job::from_json(json.as_bytes()).expect("job")
    }

    fn vars() -> RunVars<'static> {
        RunVars {
            job: "j",
            run_id: "r-1",
            plan_ms: 1_700_000_000_000,
            attempt: 2,
            worker: "w1",
            trigger: Trigger::Schedule,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rcron-setup-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join(name)
    }

    fn value(resolved: &Resolved, name: &str) -> Option<OsString> {
        // The last one wins, as for the child.
        resolved
            .env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn job_variables_then_the_runs_then_the_run_variables() {
        let j = job(
            r#"{"name":"j","command":"true","cronExpr":"@daily","workdir":"/tmp",
            "env":{"A":"job","B":"job"}}"#,
        );
        let extra = BTreeMap::from([("B".to_string(), "run".to_string())]);
        let setup = RunSetup::new(&j, &extra, &vars());
        let names: Vec<&str> = setup.env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "A",
                "B",
                "B",
                "RCRON_JOB",
                "RCRON_RUN_ID",
                "RCRON_PLAN_TIME",
                "RCRON_ATTEMPT",
                "RCRON_WORKER",
                "RCRON_TRIGGER"
            ]
        );
        let resolved = setup.resolve().expect("resolves");
        assert_eq!(value(&resolved, "B"), Some("run".into()));
        assert_eq!(
            value(&resolved, "RCRON_PLAN_TIME"),
            Some("1700000000000".into())
        );
        assert_eq!(value(&resolved, "RCRON_ATTEMPT"), Some("2".into()));
        assert_eq!(value(&resolved, "RCRON_TRIGGER"), Some("schedule".into()));
        assert_eq!(resolved.workdir, Some(PathBuf::from("/tmp")));
        assert!(resolved.account.is_none());
    }

    #[test]
    fn a_file_value_is_its_content_less_one_trailing_newline() {
        let path = temp("token");
        std::fs::write(&path, "s3cret\n\n").expect("write");
        let setup = RunSetup {
            env: vec![(
                "TOKEN".into(),
                EnvValue::File {
                    file: path.display().to_string(),
                },
            )],
            ..RunSetup::default()
        };
        let resolved = setup.resolve().expect("resolves");
        assert_eq!(value(&resolved, "TOKEN"), Some("s3cret\n".into()));
    }

    #[test]
    fn unusable_files_fail_naming_the_variable_and_path_never_the_content() {
        let missing = temp("missing");
        let big = temp("big");
        std::fs::write(&big, "x".repeat(MAX_ENV_VALUE_BYTES + 1)).expect("write");
        let nul = temp("nul");
        std::fs::write(&nul, "top\0secret").expect("write");
        let dir = temp("dir");
        std::fs::create_dir_all(&dir).expect("dir");
        for (path, says) in [
            (&missing, "cannot read"),
            (&big, "larger than 32768 bytes"),
            (&nul, "holds a NUL byte"),
            (&dir, "not a regular file"),
        ] {
            let setup = RunSetup {
                env: vec![(
                    "S".into(),
                    EnvValue::File {
                        file: path.display().to_string(),
                    },
                )],
                ..RunSetup::default()
            };
            let err = setup.resolve().err().expect("fails").to_string();
            assert!(err.starts_with("env.S: "), "{err}");
            assert!(
                err.contains(&path.display().to_string()) && err.contains(says),
                "{err}"
            );
            assert!(!err.contains("secret") && !err.contains("xxxx"), "{err}");
        }
        let err = RunSetup {
            env: vec![(
                "S".into(),
                EnvValue::File {
                    file: missing.display().to_string(),
                },
            )],
            ..RunSetup::default()
        }
        .resolve()
        .err()
        .expect("fails")
        .to_string();
        assert_eq!(
            err,
            format!(
                "env.S: cannot read {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }

    #[test]
    fn a_missing_workdir_or_user_is_a_clear_error() {
        let setup = RunSetup {
            workdir: Some("/nonexistent/rcron".into()),
            ..RunSetup::default()
        };
        assert_eq!(
            setup.resolve().err().expect("fails").to_string(),
            "workdir /nonexistent/rcron: No such file or directory (os error 2)"
        );
        let file = temp("f");
        std::fs::write(&file, "").expect("write");
        let setup = RunSetup {
            workdir: Some(file.clone()),
            ..RunSetup::default()
        };
        assert_eq!(
            setup.resolve().err().expect("fails").to_string(),
            format!("workdir {}: not a directory", file.display())
        );
        let setup = RunSetup {
            user: Some("rcron-nobody-here".into()),
            ..RunSetup::default()
        };
        assert_eq!(
            setup.resolve().err().expect("fails").to_string(),
            "user rcron-nobody-here: no such user"
        );
    }

    #[test]
    fn the_workers_own_user_needs_no_switch() {
        let me = nix::unistd::geteuid();
        let setup = RunSetup {
            user: Some(me.as_raw().to_string()),
            ..RunSetup::default()
        };
        let resolved = setup.resolve().expect("resolves");
        // Root switches (to itself); anyone else runs as it is.
        assert_eq!(resolved.account.is_some(), me.is_root());
        assert!(value(&resolved, "HOME").is_some() && value(&resolved, "USER").is_some());
    }
}
