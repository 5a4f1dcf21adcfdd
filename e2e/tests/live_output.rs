//! Live output end to end: a master (in this process) relays the output
//! of runs executing on workers that are real processes (`rcron-node
//! worker`), with a cluster secret on both, as a user reads it through
//! `GET /api/v1/…/output/stream` (Server-Sent Events).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcron_master::MasterConfig;
use rcron_shared::live::{LiveEvent, SseReader};
use rcron_shared::run_token::ClusterSecret;
use rcron_testkit as kit;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A job printing `line-1` … `line-n`, one a second.
fn ticker(n: u32) -> String {
    format!("for i in $(seq 1 {n}); do echo line-$i; sleep 1; done")
}

/// A master in this process and one worker process, sharing a secret.
struct Setup {
    base: String,
    http: reqwest::Client,
    dir: PathBuf,
    secret: ClusterSecret,
    worker: WorkerProcess,
    worker_addr: String,
    token: CancellationToken,
    master: tokio::task::JoinHandle<Result<(), rcron_master::Error>>,
}

impl Setup {
    async fn start() -> Self {
        let prefix = kit::unique_prefix();
        let db = kit::unique_db();
        let dir =
            std::env::temp_dir().join(format!("rcron-live-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let secret_file = dir.join("cluster-secret");
        let secret_text = format!("live-test-{}", uuid::Uuid::now_v7().simple());
        std::fs::write(&secret_file, format!("{secret_text}\n")).expect("secret");
        let port = kit::free_port();
        let mut master = MasterConfig {
            listen: format!("127.0.0.1:{port}").parse().expect("addr"),
            cluster_secret_file: Some(secret_file.clone()),
            ..MasterConfig::default()
        };
        master.etcd.endpoints = vec![kit::etcd_endpoint()];
        master.etcd.prefix = prefix.clone();
        master.mongo.uri = kit::mongo_uri();
        master.mongo.db = db.clone();
        let worker_addr = format!("127.0.0.1:{}", kit::free_port());
        let config = dir.join("worker.toml");
        std::fs::write(
            &config,
            format!(
                r#"worker_id = "live-w1"
kill_grace_secs = 1
drain_secs = 1
lease_ttl_secs = 3
log_flush_interval_ms = 100
spill_dir = {spill:?}
http_listen = {worker_addr:?}
cluster_secret_file = {secret_file:?}

[etcd]
endpoints = [{etcd:?}]
prefix = {prefix:?}

[mongo]
uri = {mongo:?}
db = {db:?}
"#,
                spill = dir.join("worker-state"),
                etcd = kit::etcd_endpoint(),
                mongo = kit::mongo_uri(),
            ),
        )
        .expect("worker config");
        let log = std::fs::File::create(dir.join("worker.log")).expect("log");
        let worker = Command::new(env!("CARGO_BIN_EXE_rcron-node"))
            .arg("worker")
            .env("RCRON_CONFIG", &config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rcron-node worker");
        let token = CancellationToken::new();
        let setup = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: kit::http_client(),
            dir,
            secret: ClusterSecret::new(secret_text.into_bytes()).expect("secret"),
            worker: WorkerProcess(Some(worker)),
            worker_addr,
            master: tokio::spawn(rcron_master::run(master, token.child_token())),
            token,
        };
        kit::eventually(
            Duration::from_secs(30),
            "master to serve and the worker to register with its address",
            || async {
                let workers = setup.get("/api/v1/workers").await?;
                let listed = workers["workers"].as_array()?.first()?.clone();
                (listed["id"] == "live-w1").then_some(())
            },
        )
        .await;
        setup
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// Saves a job that never fires on its own and starts a run of it.
    async fn run_now(&self, name: &str, command: &str) {
        let resp = self
            .http
            .put(format!("{}/api/v1/jobs/{name}", self.base))
            .json(&json!({"name": name, "command": command, "cronExpr": "0 0 1 1 *"}))
            .send()
            .await
            .expect("PUT job");
        assert!(resp.status().is_success(), "{}", resp.status());
        let resp = self
            .http
            .post(format!("{}/api/v1/jobs/{name}/run", self.base))
            .send()
            .await
            .expect("run now");
        assert_eq!(resp.status(), 202);
    }

    /// The id of `job`'s run once the registry lists it.
    async fn running(&self, job: &str) -> String {
        kit::eventually(Duration::from_secs(20), "the run to be listed", || async {
            let workers = self.get("/api/v1/workers").await?;
            workers["workers"]
                .as_array()?
                .iter()
                .flat_map(|w| w["runs"].as_array().cloned().unwrap_or_default())
                .find(|r| r["job"] == job)
                .and_then(|r| r["runId"].as_str().map(str::to_string))
        })
        .await
    }

    /// Whether run `run_id` is still going: listed by its worker, and
    /// without a record in the run log.
    async fn still_running(&self, run_id: &str) -> bool {
        let listed = self.get("/api/v1/workers").await.is_some_and(|w| {
            w["workers"].as_array().into_iter().flatten().any(|w| {
                w["runs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["runId"] == run_id)
            })
        });
        let recorded = self
            .http
            .get(format!("{}/api/v1/runs/{run_id}", self.base))
            .send()
            .await
            .expect("GET run")
            .status()
            != 404;
        listed && !recorded
    }

    async fn stop(mut self) {
        if let Some(mut worker) = self.worker.0.take() {
            // Ours: the worker process this test started.
            let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = worker.wait();
        }
        self.token.cancel();
        self.master.await.expect("master task").expect("master ran");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The worker process; SIGKILLed if the test ends without stopping it.
struct WorkerProcess(Option<Child>);

impl WorkerProcess {
    /// SIGKILL, as a crash or an OOM kill would, and reap it.
    fn kill(&mut self) {
        if let Some(mut worker) = self.0.take() {
            // Ours: the worker process this test started.
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An SSE stream being read.
struct Stream {
    resp: reqwest::Response,
    reader: SseReader,
    ready: std::collections::VecDeque<LiveEvent>,
}

impl Stream {
    async fn open(http: &reqwest::Client, url: &str) -> Self {
        let resp = http
            .get(url)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("open stream");
        assert_eq!(resp.status(), 200, "{url}");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(content_type, "text/event-stream");
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-cache")
        );
        Self {
            resp,
            reader: SseReader::default(),
            ready: Default::default(),
        }
    }

    /// The next event, or None when the stream closed; panics after `within`.
    async fn next(&mut self, within: Duration) -> Option<LiveEvent> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("an event in time")
                .expect("stream readable")?;
            for (name, data) in self.reader.feed(&chunk) {
                self.ready
                    .push_back(LiveEvent::parse(&name, &data).expect("a known event"));
            }
        }
    }

    /// Output text until it holds `want`.
    async fn output_until(&mut self, want: &str, within: Duration) -> String {
        let mut text = String::new();
        while !text.contains(want) {
            match self.next(within).await {
                Some(LiveEvent::Output(t)) => text.push_str(&t),
                Some(other) => {
                    panic!("expected output up to {want:?}, got {other:?} after {text:?}")
                }
                None => panic!("stream closed before {want:?}: {text:?}"),
            }
        }
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_streams_through_the_master_while_the_run_prints() {
    let s = Setup::start().await;
    s.run_now("ticker", &ticker(5)).await;
    let run_id = s.running("ticker").await;

    let url = format!("{}/api/v1/runs/{run_id}/output/stream", s.base);
    let mut stream = Stream::open(&s.http, &url).await;
    let mut by_job = Stream::open(
        &s.http,
        &format!("{}/api/v1/jobs/ticker/output/stream", s.base),
    )
    .await;
    match stream.next(Duration::from_secs(5)).await {
        Some(LiveEvent::Run(start)) => {
            assert_eq!(
                (
                    start.run_id.as_str(),
                    start.job.as_str(),
                    start.worker.as_str()
                ),
                (run_id.as_str(), "ticker", "live-w1")
            );
            assert!(start.running);
        }
        other => panic!("expected the run event, got {other:?}"),
    }
    let first = stream
        .output_until("line-2\n", Duration::from_secs(10))
        .await;
    assert!(
        s.still_running(&run_id).await,
        "line-2 arrived while the run was still going"
    );
    assert!(first.starts_with("line-1\nline-2\n"), "{first:?}");
    match by_job.next(Duration::from_secs(5)).await {
        Some(LiveEvent::Run(start)) => assert_eq!(start.run_id, run_id, "the job's running run"),
        other => panic!("expected the run event, got {other:?}"),
    }
    let rest = stream
        .output_until("line-5\n", Duration::from_secs(10))
        .await;
    assert_eq!(
        format!("{first}{rest}"),
        "line-1\nline-2\nline-3\nline-4\nline-5\n"
    );
    match stream.next(Duration::from_secs(10)).await {
        Some(LiveEvent::End(end)) => {
            assert_eq!(end.status, rcron_shared::RunStatus::Success);
            assert_eq!(end.exit_code, Some(0));
            assert_eq!(end.run_id, run_id);
        }
        other => panic!("expected the end event, got {other:?}"),
    }
    assert!(
        stream.next(Duration::from_secs(5)).await.is_none(),
        "closed after end"
    );
    let job_text = by_job
        .output_until("line-5\n", Duration::from_secs(10))
        .await;
    assert_eq!(job_text, "line-1\nline-2\nline-3\nline-4\nline-5\n");
    assert!(matches!(
        by_job.next(Duration::from_secs(10)).await,
        Some(LiveEvent::End(_))
    ));

    // Finished: once its worker no longer lists it, the stored output.
    kit::eventually(Duration::from_secs(15), "the run's record", || async {
        (!s.still_running(&run_id).await).then_some(())
    })
    .await;
    let mut stored = Stream::open(&s.http, &url).await;
    match stored.next(Duration::from_secs(5)).await {
        Some(LiveEvent::Run(start)) => assert!(!start.running, "a stored run"),
        other => panic!("expected the run event, got {other:?}"),
    }
    assert_eq!(
        stored.next(Duration::from_secs(5)).await,
        Some(LiveEvent::Output(
            "line-1\nline-2\nline-3\nline-4\nline-5\n".into()
        ))
    );
    assert!(matches!(
        stored.next(Duration::from_secs(5)).await,
        Some(LiveEvent::End(e)) if e.status == rcron_shared::RunStatus::Success
    ));
    assert!(stored.next(Duration::from_secs(5)).await.is_none());

    // The job's stream, with no run going: its newest recorded run.
    let mut by_job = Stream::open(
        &s.http,
        &format!("{}/api/v1/jobs/ticker/output/stream", s.base),
    )
    .await;
    match by_job.next(Duration::from_secs(5)).await {
        Some(LiveEvent::Run(start)) => {
            assert_eq!(start.run_id, run_id);
            assert!(!start.running);
        }
        other => panic!("expected the run event, got {other:?}"),
    }
    let resp = s
        .http
        .put(format!("{}/api/v1/jobs/never-ran", s.base))
        .json(&json!({"name": "never-ran", "command": "true", "cronExpr": "0 0 1 1 *"}))
        .send()
        .await
        .expect("PUT job");
    assert!(resp.status().is_success());

    // Unknown runs and jobs are 404, malformed ids 400, as JSON.
    for (path, status) in [
        ("/api/v1/jobs/never-ran/output/stream".to_string(), 404),
        (
            format!("/api/v1/runs/{}/output/stream", uuid::Uuid::now_v7()),
            404,
        ),
        ("/api/v1/runs/not%20an%20id/output/stream".to_string(), 400),
        ("/api/v1/jobs/no-such-job/output/stream".to_string(), 404),
    ] {
        let resp = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), status, "{path}");
        let body: Value = resp.json().await.expect("a JSON error");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_ends_the_stream_with_an_error() {
    let mut s = Setup::start().await;
    s.run_now("long-ticker", &ticker(120)).await;
    let run_id = s.running("long-ticker").await;
    let mut stream = Stream::open(
        &s.http,
        &format!("{}/api/v1/runs/{run_id}/output/stream", s.base),
    )
    .await;
    assert!(matches!(
        stream.next(Duration::from_secs(5)).await,
        Some(LiveEvent::Run(_))
    ));
    stream
        .output_until("line-2\n", Duration::from_secs(10))
        .await;
    s.worker.kill();
    let killed = Instant::now();
    loop {
        match stream.next(Duration::from_secs(30)).await {
            Some(LiveEvent::Output(_)) => continue,
            Some(LiveEvent::Error { message }) => {
                assert_eq!(
                    message,
                    "worker live-w1 stopped answering; the run's record will say how it ended"
                );
                break;
            }
            other => panic!("expected an error event, got {other:?}"),
        }
    }
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "told within the worker's silence limit: {:?}",
        killed.elapsed()
    );
    assert!(
        stream.next(Duration::from_secs(5)).await.is_none(),
        "closed after error"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_output_only_to_a_grant_for_that_run() {
    let s = Setup::start().await;
    s.run_now("guarded", &ticker(30)).await;
    let run_id = s.running("guarded").await;
    let url = format!("http://{}/runs/{run_id}/output", s.worker_addr);
    let now = chrono::Utc::now().timestamp();
    let status = |auth: Option<String>| {
        let (http, url) = (s.http.clone(), url.clone());
        async move {
            let mut req = http.get(&url).timeout(Duration::from_secs(5));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            req.send().await.expect("GET worker output").status()
        }
    };
    assert_eq!(status(None).await, 401, "no credential");
    let other = ClusterSecret::new(b"not-the-cluster-secret".to_vec()).expect("secret");
    assert_eq!(
        status(Some(format!("Bearer {}", other.grant(&run_id, now)))).await,
        401,
        "signed with another secret"
    );
    assert_eq!(
        status(Some(format!(
            "Bearer {}",
            s.secret.grant("another-run", now)
        )))
        .await,
        401,
        "a grant for another run"
    );
    assert_eq!(
        status(Some(format!(
            "Bearer {}",
            s.secret.grant(&run_id, now - 3600)
        )))
        .await,
        401,
        "an expired grant"
    );
    // The plain secret is not a credential either: only signed grants are.
    let plain = std::fs::read_to_string(s.dir.join("cluster-secret")).expect("secret");
    assert_eq!(
        status(Some(format!("Bearer {}", plain.trim()))).await,
        401,
        "the secret itself"
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let resp = s
        .http
        .get(format!("http://{}/runs/{unknown}/output", s.worker_addr))
        .bearer_auth(s.secret.grant(&unknown, now))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404, "a run it does not have");

    // A valid grant: the frames, starting with what was printed so far.
    let mut resp = s
        .http
        .get(&url)
        .bearer_auth(s.secret.grant(&run_id, now))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains("line-1") {
        let chunk = resp.chunk().await.expect("read").expect("more");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let first: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["event"], "output");
    // Metrics stay open, as before.
    let metrics = s
        .http
        .get(format!("http://{}/metrics", s.worker_addr))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    s.stop().await;
}
