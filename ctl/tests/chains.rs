//! `rcronctl job run` with its settings and `job save` with chains, against
//! a real master on a real etcd. No worker runs: a run request stays in
//! etcd (`/cron/run/<job>/<id>`), where the test reads what was asked.

mod common;

use common::{Master, ctl};
use rcron_shared::{JobName, Keys, RunRequest, Trigger};
use rcron_testkit as kit;

/// The run requests of `job` waiting in etcd.
async fn requests(keys: &Keys, job: &str) -> Vec<RunRequest> {
    let dir = format!("{}{job}/", keys.run_dir());
    let resp = kit::etcd_client()
        .await
        .get(
            dir.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("list run requests");
    resp.kvs()
        .iter()
        .map(|kv| RunRequest::from_stored(kv.value()).expect("a stored request"))
        .collect()
}

/// The value after `label: ` on a line of `out`.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no `{label}:` line in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_sends_variables_and_a_deadline_and_prints_the_request() {
    let master = Master::start().await;
    let keys = Keys::new(&master.prefix).expect("prefix");
    let b = master.base.clone();
    let (ok, _, err) = tokio::task::block_in_place(|| {
        ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "report",
                "--command",
                "echo $TARGET",
                "--cron",
                "@yearly",
            ],
        )
    });
    assert!(ok, "{err}");

    // Two variables (a value holding `=`) and a deadline of 30 s.
    let before = chrono::Utc::now().timestamp_millis();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        ctl(
            &b,
            &[
                "job",
                "run",
                "report",
                "-e",
                "TARGET=s3://bucket/x?a=b",
                "--env",
                "MODE=full",
                "--deadline",
                "30",
            ],
        )
    });
    assert!(ok, "{err}");
    assert!(out.starts_with("report will run once"), "{out}");
    let id = field(&out, "request").to_string();
    assert!(
        field(&out, "deadline")
            .ends_with("(logged skipped if not started by then; see `rcronctl logs report`)"),
        "{out}"
    );
    let waiting = requests(&keys, "report").await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let request = &waiting[0];
    assert_eq!(request.id, id, "the id printed is the request's");
    assert_eq!(request.trigger, Trigger::Manual);
    assert_eq!(
        request.params.env,
        [
            ("MODE".to_string(), "full".to_string()),
            ("TARGET".into(), "s3://bucket/x?a=b".into())
        ]
        .into()
    );
    assert_eq!(request.deadline - request.requested_at, 30_000);
    assert!(request.requested_at >= before, "{request:?}");

    // `-o json`: the API's answer; nothing set: the default deadline (600 s).
    let (ok, out, err) =
        tokio::task::block_in_place(|| ctl(&b, &["-o", "json", "job", "run", "report"]));
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("the API's document");
    assert_eq!(answer["name"], "report");
    let second = answer["requestId"].as_str().expect("requestId").to_string();
    let deadline = answer["deadline"].as_i64().expect("deadline (ms)");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (before + 600_000..=now + 600_000).contains(&deadline),
        "{answer}"
    );
    let waiting = requests(&keys, "report").await;
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    let plain = waiting
        .iter()
        .find(|r| r.id == second)
        .expect("the request");
    assert!(plain.params.env.is_empty(), "{plain:?}");

    // A variable without `=`: refused by rcronctl, nothing sent.
    let (ok, _, err) =
        tokio::task::block_in_place(|| ctl(&b, &["job", "run", "report", "-e", "TARGET"]));
    assert!(!ok, "refused");
    assert!(
        err.contains("expected KEY=VALUE, got \"TARGET\"") && err.contains("--env"),
        "{err}"
    );
    // Names the master refuses: its 400, every name in it.
    let (ok, _, err) = tokio::task::block_in_place(|| {
        ctl(
            &b,
            &["job", "run", "report", "-e", "1X=a", "-e", "RCRON_JOB=b"],
        )
    });
    assert!(!ok, "refused");
    assert!(
        err.contains("400") && err.contains("`env.1X`:") && err.contains("`env.RCRON_JOB`:"),
        "{err}"
    );
    let (ok, _, err) =
        tokio::task::block_in_place(|| ctl(&b, &["job", "run", "report", "--deadline", "0"]));
    assert!(!ok && err.contains("deadlineSecs"), "{err}");
    assert_eq!(
        requests(&keys, "report").await.len(),
        2,
        "no request for a refused run"
    );
    let (ok, _, err) = tokio::task::block_in_place(|| ctl(&b, &["job", "run", "ghost"]));
    assert!(!ok && err.contains("404"), "{err}");
    master.stop().await;
}

/// The cells of a table row: columns are padded and two spaces apart, and
/// a cell has at most single spaces inside.
fn cells(row: &str) -> Vec<String> {
    row.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The cell under `header` in the row of `job list` output that starts with `name`.
fn cell(out: &str, name: &str, header: &str) -> String {
    let headers = cells(out.lines().next().unwrap_or_default());
    let at = headers
        .iter()
        .position(|h| h == header)
        .unwrap_or_else(|| panic!("no {header} column in:\n{out}"));
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"));
    cells(row)[at].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_are_saved_from_flags_shown_and_a_cycle_is_refused() {
    let master = Master::start().await;
    let keys = Keys::new(&master.prefix).expect("prefix");
    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        let save = |name: &str, extra: &[&str]| {
            let mut args = vec![
                "job",
                "save",
                "--name",
                name,
                "--command",
                "true",
                "--cron",
                "@yearly",
            ];
            args.extend_from_slice(extra);
            ctl(&b, &args)
        };
        for name in ["load", "notify", "page-oncall"] {
            let (ok, _, err) = save(name, &[]);
            assert!(ok, "{err}");
        }
        let (ok, out, err) = save(
            "extract",
            &[
                "--on-success",
                "load",
                "--on-success",
                "notify",
                "--on-failure",
                "page-oncall",
            ],
        );
        assert!(ok && out.starts_with("job extract created"), "{out}{err}");

        let (ok, out, err) = ctl(&b, &["-o", "json", "job", "get", "extract"]);
        assert!(ok, "{err}");
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(job["onSuccess"], serde_json::json!(["load", "notify"]));
        assert_eq!(job["onFailure"], serde_json::json!(["page-oncall"]));
        let (ok, out, err) = ctl(&b, &["job", "get", "extract"]);
        assert!(ok, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"onSuccess: load, notify"), "{out}");
        assert!(lines.contains(&"onFailure: page-oncall"), "{out}");
        // A job without chains has no chain lines (its document shows the
        // empty lists, as it shows every field).
        let (_, out, _) = ctl(&b, &["job", "get", "load"]);
        assert!(
            !out.lines()
                .any(|l| l.starts_with("onSuccess:") || l.starts_with("onFailure:")),
            "{out}"
        );

        let (ok, out, err) = ctl(&b, &["job", "list"]);
        assert!(ok, "{err}");
        assert_eq!(
            cell(&out, "extract", "CHAINS"),
            "onSuccess: load, notify; onFailure: page-oncall"
        );
        assert_eq!(cell(&out, "load", "CHAINS"), "-");
        assert_eq!(cell(&out, "extract", "COMMAND"), "true");

        // A chain back to extract: the API's 400, the path named.
        let (ok, _, err) = save("load", &["--on-failure", "extract"]);
        assert!(!ok, "a cycle is refused");
        assert!(
            err.contains("400")
                && err
                    .contains("load would start itself through its chain (load → extract → load)"),
            "{err}"
        );
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "load"]);
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(job["onFailure"], serde_json::json!([]), "not stored: {job}");

        // The run settings of a job (env, workdir, user) are sent as the
        // master's job schema has them; a master that does not know them
        // yet ignores them, so only what it keeps is compared.
        let (ok, _, err) = save(
            "with-env",
            &[
                "--env",
                "MODE=full",
                "--env-file",
                "TOKEN=/run/secrets/token",
                "--workdir",
                "/srv",
                "--user",
                "nobody",
            ],
        );
        assert!(ok, "{err}");
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "with-env"]);
        let job: serde_json::Value = serde_json::from_str(&out).expect("json output");
        for (field, sent) in [
            (
                "env",
                serde_json::json!({"MODE": "full", "TOKEN": {"file": "/run/secrets/token"}}),
            ),
            ("workdir", serde_json::json!("/srv")),
            ("user", serde_json::json!("nobody")),
        ] {
            if let Some(kept) = job.get(field) {
                assert_eq!(kept, &sent, "{field} in {job}");
            }
        }
    })
    .await
    .expect("rcronctl checks");

    // What etcd holds: the chains as given, in order.
    let stored = kit::etcd_client()
        .await
        .get(keys.job(&JobName::new("extract").expect("name")), None)
        .await
        .expect("read the job");
    let stored: serde_json::Value =
        serde_json::from_slice(stored.kvs()[0].value()).expect("stored json");
    assert_eq!(stored["onSuccess"], serde_json::json!(["load", "notify"]));
    assert_eq!(stored["onFailure"], serde_json::json!(["page-oncall"]));
    master.stop().await;
}
