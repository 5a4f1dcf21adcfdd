//! The real `rcron-master` binary, configured through `RCRON_*` variables,
//! driven over HTTP as the README's quick start does.

use std::process::{Command, Stdio};
use std::time::Duration;

use rcron_testkit as kit;
use serde_json::Value;

/// Kills the master if the test fails before stopping it.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_the_legacy_save_of_the_quick_start_and_stops_on_sigterm() {
    let port = kit::free_port();
    let prefix = kit::unique_prefix();
    let child = Command::new(env!("CARGO_BIN_EXE_rcron-master"))
        .env("RCRON_LISTEN", format!("127.0.0.1:{port}"))
        .env("RCRON_ETCD_ENDPOINTS", kit::etcd_endpoint())
        .env("RCRON_ETCD_PREFIX", &prefix)
        .env("RCRON_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rcron-master");
    let mut child = Guard(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = kit::http_client();
    kit::eventually(
        Duration::from_secs(20),
        "master to answer /healthz",
        || async {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        },
    )
    .await;

    let job = r#"{"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}"#;
    let first: Value = http
        .post(format!("{base}/job/save"))
        .form(&[("job", job)])
        .send()
        .await
        .expect("save")
        .json()
        .await
        .expect("json");
    assert_eq!(
        first,
        serde_json::json!({"errno": 0, "msg": "success", "data": null})
    );
    let second: Value = http
        .post(format!("{base}/job/save"))
        .form(&[("job", job)])
        .send()
        .await
        .expect("save again")
        .json()
        .await
        .expect("json");
    assert_eq!(
        second["data"]["name"], "job1",
        "the same job saved again returns the first one"
    );

    let mut etcd = kit::etcd_client().await;
    let stored = etcd
        .get(format!("{prefix}jobs/job1"), None)
        .await
        .expect("get");
    let value: Value = serde_json::from_slice(stored.kvs()[0].value()).expect("job json in etcd");
    assert_eq!(value["command"], "echo hello");

    let docs = http.get(format!("{base}/docs")).send().await.expect("docs");
    assert!(docs.status().is_success());

    // SIGTERM: a clean, prompt exit.
    let pid = child.0.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    let status = kit::eventually(
        Duration::from_secs(10),
        "master to exit after SIGTERM",
        || {
            let status = child.0.try_wait().expect("wait");
            async move { status }
        },
    )
    .await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_keys_file_is_read_again_on_sighup_and_a_broken_one_keeps_the_keys() {
    let port = kit::free_port();
    let file = std::env::temp_dir().join(format!(
        "rcron-hup-keys-{}.toml",
        kit::unique_prefix().trim_matches('/')
    ));
    let entry = |name: &str, role: &str, secret: &str| {
        format!(
            "[[key]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            rcron_master::api::hash_secret(secret)
        )
    };
    std::fs::write(&file, entry("first", "read", "first-secret-0123456789")).expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_rcron-master"))
        .env("RCRON_LISTEN", format!("127.0.0.1:{port}"))
        .env("RCRON_ETCD_ENDPOINTS", kit::etcd_endpoint())
        .env("RCRON_ETCD_PREFIX", kit::unique_prefix())
        .env("RCRON_API_KEYS_FILE", &file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rcron-master");
    let pid = child.id();
    let _child = Guard(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = kit::http_client();
    let status = |secret: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}/api/v1/jobs"))
                .bearer_auth(secret)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    kit::eventually(Duration::from_secs(20), "master to serve", || async {
        (status("first-secret-0123456789").await == 200).then_some(())
    })
    .await;
    assert_eq!(status("second-secret-0123456789").await, 401);
    let hangup = || {
        let done = Command::new("sh")
            .args(["-c", &format!("kill -HUP {pid}")])
            .status()
            .expect("send SIGHUP");
        assert!(done.success());
    };

    std::fs::write(&file, entry("second", "admin", "second-secret-0123456789")).expect("write");
    hangup();
    kit::eventually(Duration::from_secs(10), "the new key to work", || async {
        (status("second-secret-0123456789").await == 200).then_some(())
    })
    .await;
    assert_eq!(
        status("first-secret-0123456789").await,
        401,
        "a removed key stops working"
    );

    std::fs::write(&file, "[[key]]\nname = \"broken\"\nrole = \"superuser\"\n").expect("write");
    hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status("second-secret-0123456789").await,
        200,
        "a file that does not load keeps the keys in use"
    );
    let _ = std::fs::remove_file(file);
}
