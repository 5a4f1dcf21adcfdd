//! Test support for rcron's integration tests: the addresses of the real
//! etcd and MongoDB-wire servers that `deploy/test-env.sh` starts, private
//! servers for tests that stop and restart them, and a polling helper.
//!
//! Missing services are a failure with instructions, never a silent skip.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOW_TO_RUN: &str = "run the tests through the test environment, which starts a real etcd and \
     MongoDB-wire server: `deploy/test-env.sh cargo test --workspace` (or `deploy/test.sh`)";

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: {HOW_TO_RUN}"),
    }
}

/// `host:port` of the shared test etcd (`RCRON_TEST_ETCD`).
pub fn etcd_endpoint() -> String {
    required_env("RCRON_TEST_ETCD")
}

/// Connection string of the shared MongoDB-wire server (`RCRON_TEST_MONGO`).
pub fn mongo_uri() -> String {
    required_env("RCRON_TEST_MONGO")
}

/// A key prefix no other test uses, so tests can share one etcd.
pub fn unique_prefix() -> String {
    format!("/rcron-test-{}/", uuid::Uuid::now_v7().simple())
}

/// A database name no other test uses.
pub fn unique_db() -> String {
    format!("rcron_test_{}", uuid::Uuid::now_v7().simple())
}

/// A client for the shared test etcd.
pub async fn etcd_client() -> etcd_client::Client {
    let endpoint = etcd_endpoint();
    etcd_client::Client::connect([endpoint.as_str()], None)
        .await
        .unwrap_or_else(|e| panic!("cannot reach etcd at {endpoint} ({e}): {HOW_TO_RUN}"))
}

/// An HTTP client for talking to the binaries under test. Installs the
/// one TLS provider the project uses (ring) first, as the binaries do.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build HTTP client")
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with
/// `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server process of the test's own, on a fixed port, that the test can
/// stop and start again (to test outages). Killed on drop.
pub struct ServerProcess {
    what: &'static str,
    command: Command,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl ServerProcess {
    /// A private single-member etcd (binary from `RCRON_TEST_ETCD_BIN`).
    pub fn etcd() -> Self {
        let bin = required_env("RCRON_TEST_ETCD_BIN");
        let dir = temp_dir("etcd");
        let (port, peer) = (free_port(), free_port());
        let mut command = Command::new(bin);
        command
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{port}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &format!("t=http://127.0.0.1:{peer}")]);
        Self::launch("etcd", command, port, dir)
    }

    /// A private MongoDB-wire server (binary from `RCRON_TEST_MONGO_BIN`),
    /// storing to files so a restart keeps what was written (one file per
    /// database: nx-27017 mixes databases kept in a single file).
    pub fn mongo() -> Self {
        let bin = required_env("RCRON_TEST_MONGO_BIN");
        let dir = temp_dir("mongo");
        let port = free_port();
        let mut command = Command::new(bin);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("create data dir");
        command
            .arg("--data-dir")
            .arg(data)
            .args(["--host", "127.0.0.1", "-p", &port.to_string()])
            .arg("--log-file")
            .arg(dir.join("mongo.log"))
            .arg("--pid-file")
            .arg(dir.join("mongo.pid"));
        Self::launch("MongoDB-wire server", command, port, dir)
    }

    fn launch(what: &'static str, command: Command, port: u16, dir: PathBuf) -> Self {
        let mut server = Self {
            what,
            command,
            child: None,
            port,
            dir,
        };
        server.start();
        server
    }

    /// The loopback port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("out.log")).expect("create server log");
        let err = log.try_clone().expect("clone log handle");
        let child = self
            .command
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}: {HOW_TO_RUN}", self.what));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on port {}",
                self.what,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it (SIGKILL, as a crash or a pulled cable would) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rcron-{what}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
