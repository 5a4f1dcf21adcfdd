//! What the rcronctl tests share: a real master on the test etcd and
//! MongoDB-wire server, and the real binary.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rcron_master::MasterConfig;
use rcron_testkit as kit;
use tokio_util::sync::CancellationToken;

/// Runs `rcronctl --server base args…`: (success, stdout, stderr).
pub fn ctl(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rcronctl"))
        .arg("--server")
        .arg(base)
        .args(args)
        .output()
        .expect("run rcronctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A master on the test etcd and MongoDB-wire server, under a key prefix
/// and database of its own.
pub struct Master {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its etcd key prefix.
    pub prefix: String,
    /// Its MongoDB database.
    pub db: String,
    token: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), rcron_master::Error>>,
}

impl Master {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A master whose config `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut MasterConfig)) -> Self {
        let mut cfg = MasterConfig {
            listen: format!("127.0.0.1:{}", kit::free_port())
                .parse()
                .expect("addr"),
            ..MasterConfig::default()
        };
        cfg.etcd.endpoints = vec![kit::etcd_endpoint()];
        cfg.etcd.prefix = kit::unique_prefix();
        cfg.mongo.uri = kit::mongo_uri();
        cfg.mongo.db = kit::unique_db();
        adjust(&mut cfg);
        let base = format!("http://{}", cfg.listen);
        let prefix = cfg.etcd.prefix.clone();
        let db = cfg.mongo.db.clone();
        let token = CancellationToken::new();
        let task = tokio::spawn(rcron_master::run(cfg, token.clone()));
        let http = kit::http_client();
        kit::eventually(Duration::from_secs(20), "master to serve", || async {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        Self {
            base,
            prefix,
            db,
            token,
            task,
        }
    }

    pub async fn stop(self) {
        self.token.cancel();
        self.task.await.expect("master task").expect("master ran");
    }
}

/// Runs `rcronctl --server base args…` with `input` on its stdin.
pub fn ctl_with_stdin(base: &str, args: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcronctl"))
        .arg("--server")
        .arg(base)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rcronctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("rcronctl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Master {
    /// The master's run log, to write records as workers write them.
    pub async fn log_store(&self) -> rcron_shared::runlog::mongo::MongoRunLog {
        let db = rcron_shared::runlog::mongo::database(
            &rcron_shared::config::MongoConfig {
                uri: kit::mongo_uri(),
                db: self.db.clone(),
            },
            "rcronctl-test",
        )
        .await
        .expect("run log");
        rcron_shared::runlog::mongo::MongoRunLog::new(&db, std::time::Duration::from_secs(3600))
    }
}

/// A finished run of `job`, as a worker logs it.
pub fn run_record(job: &str, start_time: i64, output: &str) -> rcron_shared::LogRecord {
    rcron_shared::LogRecord {
        job_name: job.into(),
        command: "true".into(),
        err: String::new(),
        output: output.into(),
        plan_time: start_time,
        schedule_time: start_time,
        start_time,
        end_time: start_time + 25,
        run_id: format!("run-{job}-{start_time}"),
        worker: "w-test".into(),
        exit_code: Some(0),
        status: rcron_shared::RunStatus::Success,
        attempt: 1,
        output_truncated: false,
        reason: None,
        trigger: Default::default(),
        triggered_by: None,
        params: None,
    }
}

/// A fresh empty directory under the system's temporary one.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rcronctl-{what}-{}",
        kit::unique_prefix().trim_matches('/').replace('/', "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `rcronctl --server base args…` running, its stdout lines on a channel.
pub struct Follower {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    pub fn start(base: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rcronctl"))
            .arg("--server")
            .arg(base)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run rcronctl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line, waiting at most `within`.
    pub fn next_line(&self, within: Duration) -> String {
        self.lines
            .recv_timeout(within)
            .expect("a line from rcronctl within the wait")
    }

    /// Kills it; the lines it printed that were not read.
    pub fn stop(mut self) -> Vec<String> {
        // Ours to kill: the child this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.try_iter().collect()
    }
}
