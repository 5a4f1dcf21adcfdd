//! The master against an etcd that requires TLS and client certificates,
//! with certificates made by `openssl` for the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use poem::EndpointExt;
use poem::http::StatusCode;
use poem::test::TestClient;
use rcron_master::MasterConfig;
use rcron_master::api::routes;
use rcron_testkit as kit;

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is needed for this test (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rcron-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=rcron",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.ext",
            "-out",
            "client.crt",
        ],
    );
}

struct Etcd(Child, PathBuf);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn tls_etcd(dir: &Path, port: u16) -> Etcd {
    let peer = kit::free_port();
    let p = |f: &str| dir.join(f).display().to_string();
    let child = Command::new(
        std::env::var("RCRON_TEST_ETCD_BIN")
            .expect("RCRON_TEST_ETCD_BIN: run through deploy/test-env.sh"),
    )
    .args(["--name", "tls", "--data-dir", &p("data")])
    .args(["--listen-client-urls", &format!("https://127.0.0.1:{port}")])
    .args([
        "--advertise-client-urls",
        &format!("https://127.0.0.1:{port}"),
    ])
    .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
    .args([
        "--initial-advertise-peer-urls",
        &format!("http://127.0.0.1:{peer}"),
    ])
    .args(["--initial-cluster", &format!("tls=http://127.0.0.1:{peer}")])
    .args([
        "--cert-file",
        &p("server.crt"),
        "--key-file",
        &p("server.key"),
    ])
    .args(["--client-cert-auth", "--trusted-ca-file", &p("ca.crt")])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start etcd");
    Etcd(child, dir.to_path_buf())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_stored_in_an_etcd_that_requires_tls_and_client_certificates() {
    let dir = std::env::temp_dir().join(format!("rcron-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    certificates(&dir);
    let port = kit::free_port();
    let _etcd = tls_etcd(&dir, port);

    let mut cfg = MasterConfig::default();
    cfg.etcd.endpoints = vec![format!("https://127.0.0.1:{port}")];
    cfg.etcd.prefix = kit::unique_prefix();
    cfg.etcd.ca_file = Some(dir.join("ca.crt"));
    cfg.etcd.cert_file = Some(dir.join("client.crt"));
    cfg.etcd.key_file = Some(dir.join("client.key"));
    cfg.mongo.uri = kit::mongo_uri();
    let cli = TestClient::new(routes(rcron_master::state(&cfg).await.expect("state")).boxed());
    let job = serde_json::json!({"name": "secure", "command": "true", "cronExpr": "@daily"});
    kit::eventually(Duration::from_secs(20), "a job saved over TLS", || async {
        let resp = cli.put("/api/v1/jobs/secure").body_json(&job).send().await;
        (resp.0.status() == StatusCode::CREATED).then_some(())
    })
    .await;
    let resp = cli.get("/api/v1/jobs/secure").send().await;
    resp.assert_status_is_ok();

    // Without the client certificate etcd refuses the connection: 503, not a hang.
    cfg.etcd.cert_file = None;
    cfg.etcd.key_file = None;
    let anonymous =
        TestClient::new(routes(rcron_master::state(&cfg).await.expect("state")).boxed());
    let resp = anonymous.get("/api/v1/jobs").send().await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
}
