//! `rcronctl` (the real binary) against a real master on a real etcd.

use std::process::Command;
use std::time::Duration;

use rcron_master::MasterConfig;
use rcron_testkit as kit;
use tokio_util::sync::CancellationToken;

fn ctl(base: &str, args: &[&str]) -> (bool, String, String) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcronctl_manages_jobs_and_reads_the_cluster() {
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
    let base = format!("http://{}", cfg.listen);
    let token = CancellationToken::new();
    let master = tokio::spawn(rcron_master::run(cfg, token.clone()));
    let http = kit::http_client();
    kit::eventually(Duration::from_secs(20), "master to serve", || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;

    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "nightly",
                "--command",
                "echo hi",
                "--cron",
                "0 3 * * *",
                "--timezone",
                "Europe/Berlin",
                "--timeout",
                "60",
            ],
        );
        assert!(ok, "{err}");
        assert!(out.starts_with("job nightly created"), "{out}");

        let (ok, out, _) = ctl(&b, &["job", "list"]);
        assert!(ok);
        assert!(
            out.lines().next().is_some_and(|h| h.starts_with("NAME")),
            "{out}"
        );
        assert!(
            out.contains("nightly") && out.contains("0 3 * * *") && out.contains("Europe/Berlin"),
            "{out}"
        );

        let (ok, out, _) = ctl(&b, &["-o", "json", "job", "get", "nightly"]);
        assert!(ok);
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(job["timeoutSecs"], 60);

        let (ok, out, _) = ctl(&b, &["job", "pause", "nightly"]);
        assert!(ok && out.contains("paused"), "{out}");
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "nightly"]);
        assert!(out.contains("\"disabled\": true"), "{out}");
        let (ok, _, _) = ctl(&b, &["job", "resume", "nightly"]);
        assert!(ok);

        let file = std::env::temp_dir().join(format!("rcronctl-job-{}.json", std::process::id()));
        std::fs::write(
            &file,
            r#"{"name":"fromfile","command":"true","cronExpr":"@hourly"}"#,
        )
        .expect("write");
        let (ok, out, err) = ctl(&b, &["job", "save", "--file", file.to_str().expect("path")]);
        assert!(ok && out.contains("fromfile created"), "{out}{err}");
        let _ = std::fs::remove_file(file);

        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "bad",
                "--command",
                "x",
                "--cron",
                "61 * * * *",
            ],
        );
        assert!(!ok, "invalid jobs fail");
        assert!(err.contains("400") && err.contains("cronExpr"), "{err}");
        let (ok, _, err) = ctl(&b, &["job", "delete", "ghost"]);
        assert!(!ok && err.contains("not found"), "{err}");

        let (ok, out, _) = ctl(&b, &["job", "run", "nightly"]);
        assert!(ok && out.contains("will run once"), "{out}");
        let (ok, out, _) = ctl(&b, &["logs", "nightly"]);
        assert!(ok && out.starts_with("START"), "{out}");
        let (ok, out, _) = ctl(&b, &["preview", "*/5 * * * * * *", "--count", "3"]);
        assert!(ok && out.lines().count() == 4, "{out}");
        let (ok, out, _) = ctl(&b, &["cluster"]);
        assert!(
            ok && out.contains("etcd: ok") && out.contains("mongodb: ok"),
            "{out}"
        );
        let (ok, out, _) = ctl(&b, &["workers"]);
        assert!(
            ok && out.starts_with("ID") && out.contains("STATE"),
            "{out}"
        );
        // `key hash` needs no server: the keys file's form of a secret.
        let mut hash = Command::new(env!("CARGO_BIN_EXE_rcronctl"))
            .args(["key", "hash"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run rcronctl key hash");
        {
            use std::io::Write;
            let mut stdin = hash.stdin.take().expect("stdin");
            stdin
                .write_all(b"my-secret-0123456789\n")
                .expect("write secret");
        }
        let out = hash.wait_with_output().expect("hash output");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            rcron_master::api::hash_secret("my-secret-0123456789")
        );
        let (ok, _, err) = ctl(&b, &["run", "kill", "0190-none"]);
        assert!(!ok && err.contains("not running"), "{err}");
        // Versions from the audit trail, and a rollback to the first.
        let versions = || ctl(&b, &["job", "versions", "nightly"]);
        let mut out = versions().1;
        for _ in 0..50 {
            if out.lines().count() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = versions().1;
        }
        assert!(
            out.starts_with("VERSION") && out.lines().count() >= 3,
            "{out}"
        );
        let (ok, out, err) = ctl(&b, &["job", "rollback", "nightly", "--to", "1"]);
        assert!(ok && out.contains("version 1"), "{out} {err}");
        let (ok, _, err) = ctl(&b, &["job", "rollback", "nightly", "--to", "99"]);
        assert!(!ok && err.contains("no version 99"), "{err}");
        let (ok, out, _) = ctl(&b, &["job", "delete", "nightly"]);
        assert!(ok && out.contains("deleted"), "{out}");
        let audited = || ctl(&b, &["audit", "--job", "nightly"]);
        let (ok, out, _) = audited();
        assert!(ok && out.starts_with("TIME"), "{out}");
        // The writer stores records in the background: give it a moment.
        let mut out = out;
        for _ in 0..50 {
            if out.contains("delete") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = audited().1;
        }
        assert!(out.contains("delete") && out.contains("anonymous"), "{out}");
        let (ok, _, err) = ctl("http://127.0.0.1:1", &["job", "list"]);
        assert!(!ok && err.contains("cannot reach"), "{err}");
    })
    .await
    .expect("rcronctl checks");
    token.cancel();
    master.await.expect("master task").expect("master ran");
}
