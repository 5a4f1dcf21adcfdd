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

    /// A private etcd cluster of `n` members on loopback, for tests that
    /// take its leader away. Returns once every member accepts connections.
    pub fn etcd_cluster(n: usize) -> Vec<Self> {
        let bin = required_env("RCRON_TEST_ETCD_BIN");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = uuid::Uuid::now_v7().simple().to_string();
        let mut members: Vec<Self> = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, peer))| {
                let dir = temp_dir("etcd-member");
                let mut command = Command::new(&bin);
                command
                    .args(["--name", &format!("m{i}"), "--data-dir"])
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
                    .args(["--initial-cluster", &initial])
                    .args(["--initial-cluster-token", &token]);
                Self {
                    what: "etcd cluster member",
                    command,
                    child: None,
                    port,
                    dir,
                }
            })
            .collect();
        // A member serves clients only once a quorum is up: start all first.
        for member in &mut members {
            member.spawn();
        }
        for member in &members {
            member.wait_listening();
        }
        members
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

    /// A real SMTP server (aiosmtpd, from `RCRON_TEST_PYTHON`) that stores
    /// every message it accepts in a Maildir; see [`ServerProcess::mails`].
    pub fn smtp() -> Self {
        let python = required_env("RCRON_TEST_PYTHON");
        let dir = temp_dir("smtp");
        let port = free_port();
        let mut command = Command::new(python);
        command
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.join("maildir"));
        Self::launch("SMTP server (aiosmtpd)", command, port, dir)
    }

    /// The raw messages an [`ServerProcess::smtp`] server accepted.
    pub fn mails(&self) -> Vec<String> {
        let mut mails = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.dir.join("maildir").join(sub)) {
                for e in entries.flatten() {
                    if let Ok(text) = std::fs::read_to_string(e.path()) {
                        mails.push(text);
                    }
                }
            }
        }
        mails
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
        self.spawn();
        self.wait_listening();
    }

    /// Whether its process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("out.log")).expect("create server log");
        let err = log.try_clone().expect("clone log handle");
        let child = self
            .command
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}: {HOW_TO_RUN}", self.what));
        self.child = Some(child);
    }

    fn wait_listening(&self) {
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

    /// Freezes it (SIGSTOP): connections stay open and requests hang, as
    /// with a stalled disk or a paused VM.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the server runs");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the server");
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

/// The sum of a counter in etcd's Prometheus metrics at `addr`
/// (`host:port`), e.g. `etcd_server_proposals_committed_total`.
pub async fn etcd_metric(addr: &str, name: &str) -> f64 {
    let text = http_client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("etcd metrics")
        .text()
        .await
        .expect("etcd metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Its JSON body.
    pub body: serde_json::Value,
    /// Its `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The status it was answered with.
    pub status: u16,
}

/// A real HTTP server on loopback that records every POST and answers 500
/// to the first `fail_first` of them, then 200.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl WebhookReceiver {
    /// Starts the receiver on a free port.
    pub async fn start(fail_first: usize) -> Self {
        use poem::{EndpointExt, Route, handler, post, web::Data};
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Shared {
            received: Arc<Mutex<Vec<Received>>>,
            fail_first: usize,
        }

        #[handler]
        async fn hook(
            req: &poem::Request,
            body: poem::Body,
            Data(shared): Data<&Shared>,
        ) -> poem::http::StatusCode {
            let bytes = body.into_vec().await.unwrap_or_default();
            let mut list = shared.received.lock().unwrap_or_else(|p| p.into_inner());
            let status = if list.len() < shared.fail_first {
                500
            } else {
                200
            };
            list.push(Received {
                at: Instant::now(),
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                idempotency_key: req.header("idempotency-key").map(str::to_string),
                status,
            });
            poem::http::StatusCode::from_u16(status).unwrap_or(poem::http::StatusCode::OK)
        }

        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            received: received.clone(),
            fail_first,
        };
        let port = free_port();
        let app = Route::new().at("/hook", post(hook)).data(shared);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = poem::Server::new(poem::listener::TcpListener::bind(format!(
            "127.0.0.1:{port}"
        )));
        tokio::spawn(async move {
            let _ = server
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(Duration::from_secs(1)),
                )
                .await;
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "webhook receiver did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            received,
            stop: Some(stop),
        }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The bodies of the requests answered 200.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
