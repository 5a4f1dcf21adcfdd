//! What a run starts with, against real etcd and a real MongoDB-wire
//! server: the job's variables (values and worker-side files, whose
//! content goes nowhere but the command), its directory, its user, and the
//! `RCRON_*` run variables; and the runs that cannot start that way.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Env, InProcess, int, string};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use rcron_testkit as kit;
use serde_json::json;

/// Puts `job` (firing every 2 s), waits for `attempts` records of its
/// first run, deletes it and returns them.
async fn first_run(env: &Env, mut job: serde_json::Value, attempts: usize) -> Vec<Document> {
    job["cronExpr"] = json!("*/2 * * * * * *");
    let name = job["name"].as_str().expect("name").to_string();
    env.put_job(&job.to_string()).await;
    let docs = kit::eventually(
        Duration::from_secs(20),
        &format!("{attempts} record(s) of {name}"),
        || async {
            let docs = env.logs(&name).await;
            let run_id = string(docs.first()?, "runId");
            let first: Vec<Document> = docs
                .into_iter()
                .filter(|d| string(d, "runId") == run_id)
                .collect();
            (first.len() >= attempts).then_some(first)
        },
    )
    .await;
    env.delete_job(&name).await;
    docs
}

/// A fresh directory outside the worker's spill directory.
fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rcron-ctx-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Every file under `dir`, with its content.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

/// Every document of every collection of the test's database, as text.
async fn every_mongo_document(env: &Env) -> Vec<String> {
    let client = mongodb::Client::with_uri_str(&env.mongo_uri)
        .await
        .expect("mongo");
    let db = client.database(&env.db);
    let mut all = Vec::new();
    for name in db.list_collection_names().await.expect("collections") {
        let docs: Vec<Document> = db
            .collection::<Document>(&name)
            .find(doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("collect");
        all.extend(docs.iter().map(|d| format!("{name}: {d}")));
    }
    all
}

/// Whether the record says the command never got to run.
fn not_started(d: &Document) -> bool {
    string(d, "status") == "failed"
        && !matches!(d.get("exitCode"), Some(Bson::Int32(_) | Bson::Int64(_)))
        && string(d, "output").is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_values_and_files_reach_the_command_and_the_file_content_nowhere_else() {
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    let secrets = temp_dir();
    let secret = format!("s3cret-{}", uuid::Uuid::now_v7().simple());
    let file = secrets.join("token");
    // One trailing newline is dropped, as `echo … > file` leaves it.
    std::fs::write(&file, format!("{secret}\n")).expect("secret file");
    // The command checks the value by its hash: the secret is in neither
    // the command (stored in etcd and in records) nor the output.
    let hash = rcron_shared::secret::hash_secret(&secret);
    let job = json!({
        "name": "with-env",
        "command": format!(
            "[ \"$(printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1)\" = {hash} ] && echo token-ok; echo \"plain=$PLAIN\""
        ),
        "env": {"PLAIN": "hello world", "TOKEN": {"file": file.display().to_string()}},
    });
    let docs = first_run(&env, job, 1).await;
    let d = &docs[0];
    assert_eq!(string(d, "status"), "success", "{d}");
    assert_eq!(string(d, "output"), "token-ok\nplain=hello world\n", "{d}");

    // The job holds only the path; the content is in no etcd key or value …
    let mut etcd = env.etcd().await;
    let all = etcd
        .get(
            env.prefix.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("etcd");
    assert!(!all.kvs().is_empty());
    for kv in all.kvs() {
        let (k, v) = (
            String::from_utf8_lossy(kv.key()),
            String::from_utf8_lossy(kv.value()),
        );
        assert!(
            !k.contains(&secret) && !v.contains(&secret),
            "secret in etcd: {k} = {v}"
        );
    }
    // … in no MongoDB document …
    let documents = every_mongo_document(&env).await;
    assert!(!documents.is_empty());
    for d in &documents {
        assert!(!d.contains(&secret), "secret in MongoDB: {d}");
    }
    w.stop().await;
    // … and in no file the worker keeps (its outbox).
    for (path, bytes) in files_under(&env.spill_root) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "secret in {}",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_runs_in_its_workdir() {
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    let dir = temp_dir();
    let job = json!({"name": "in-dir", "command": "pwd", "workdir": dir.display().to_string()});
    let docs = first_run(&env, job, 1).await;
    assert_eq!(string(&docs[0], "status"), "success", "{}", docs[0]);
    assert_eq!(string(&docs[0], "output"), format!("{}\n", dir.display()));
    w.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_worker_runs_the_command_as_the_jobs_user_with_its_groups_and_home() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: only a worker running as root can run a job as another user \
         (run the tests as root, e.g. in the CI container)"
    );
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("user database")
        .expect("a `nobody` user on this host");
    let groups = nix::unistd::getgrouplist(c"nobody", nobody.gid).expect("groups");
    let groups: Vec<String> = groups.iter().map(|g| g.as_raw().to_string()).collect();
    let job = json!({
        "name": "as-nobody",
        "command": "id -un; id -G; echo \"home=$HOME user=$USER logname=$LOGNAME\"",
        "user": "nobody",
    });
    let docs = first_run(&env, job, 1).await;
    let d = &docs[0];
    assert_eq!(string(d, "status"), "success", "{d}");
    let output = string(d, "output");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "nobody", "{output}");
    // Its own groups, not root's.
    let mut seen: Vec<&str> = lines[1].split_whitespace().collect();
    let mut expected: Vec<&str> = groups.iter().map(String::as_str).collect();
    seen.sort_unstable();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(seen, expected, "{output}");
    assert!(!seen.contains(&"0"), "root's group leaked: {output}");
    assert_eq!(
        lines[2],
        format!("home={} user=nobody logname=nobody", nobody.dir.display())
    );

    // A uid works too.
    let job =
        json!({"name": "as-uid", "command": "id -u", "user": nobody.uid.as_raw().to_string()});
    let docs = first_run(&env, job, 1).await;
    assert_eq!(string(&docs[0], "output"), format!("{}\n", nobody.uid));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_be_set_up_fails_with_the_reason_and_starts_nothing() {
    let env = Env::new();
    let w = InProcess::start(env.config("w1"));
    let dir = temp_dir();
    let gone = dir.join("gone");
    let missing_file = dir.join("no-such-secret");
    let cases = [
        (
            json!({"workdir": gone.display().to_string()}),
            format!(
                "workdir {}: No such file or directory (os error 2)",
                gone.display()
            ),
        ),
        (
            json!({"user": "rcron-no-such-user"}),
            "user rcron-no-such-user: no such user".to_string(),
        ),
        (
            json!({"env": {"TOKEN": {"file": missing_file.display().to_string()}}}),
            format!(
                "env.TOKEN: cannot read {}: No such file or directory (os error 2)",
                missing_file.display()
            ),
        ),
    ];
    for (i, (fields, err)) in cases.into_iter().enumerate() {
        let marker = dir.join(format!("started-{i}"));
        let mut job =
            json!({"name": format!("bad-{i}"), "command": format!("touch {}", marker.display())});
        for (k, v) in fields.as_object().expect("fields") {
            job[k] = v.clone();
        }
        let docs = first_run(&env, job, 1).await;
        let d = &docs[0];
        assert!(not_started(d), "{d}");
        assert_eq!(string(d, "err"), err, "{d}");
        assert!(!marker.exists(), "the command ran: {d}");
        // A failure like any other: it warns.
        let run_id = string(d, "runId");
        kit::eventually(Duration::from_secs(10), "the warning", || async {
            env.get(&format!("warn/bad-{i}/{run_id}")).await
        })
        .await;
    }
    w.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_sees_the_run_variables() {
    let env = Env::new();
    let w = InProcess::start(env.config("w-vars"));
    let print = "echo \"$RCRON_JOB|$RCRON_RUN_ID|$RCRON_PLAN_TIME|$RCRON_ATTEMPT|$RCRON_WORKER|$RCRON_TRIGGER\"";
    let job = json!({
        "name": "vars",
        "command": format!("{print}; echo \"home=$HOME\"; exit 3"),
        "retries": 1,
        // The worker's own value is overridden by the job's.
        "env": {"HOME": "/job-home"},
    });
    let docs = first_run(&env, job, 2).await;
    assert_eq!(docs.len(), 2, "{docs:?}");
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(int(d, "attempt"), i as i64 + 1);
        assert_eq!(
            string(d, "output"),
            format!(
                "vars|{}|{}|{}|w-vars|schedule\nhome=/job-home\n",
                string(d, "runId"),
                int(d, "planTime"),
                int(d, "attempt"),
            ),
            "{d}"
        );
    }

    // A run-now request is `manual`.
    env.put_job(
        &json!({
            "name": "by-hand",
            "command": print,
            "cronExpr": "0 0 1 1 * 2099",
            "disabled": true,
        })
        .to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut etcd = env.etcd().await;
    let request = rcron_shared::RunRequest::manual(
        rcron_shared::JobName::new("by-hand").expect("name"),
        rcron_shared::RunParams::default(),
        chrono::Utc::now().timestamp_millis(),
        60,
    );
    etcd.put(
        format!("{}run/by-hand/{}", env.prefix, request.id),
        request.to_json(),
        None,
    )
    .await
    .expect("request");
    let d = kit::eventually(Duration::from_secs(10), "the requested run", || async {
        env.logs("by-hand").await.into_iter().next()
    })
    .await;
    assert_eq!(
        string(&d, "output"),
        format!(
            "by-hand|{}|{}|1|w-vars|manual\n",
            string(&d, "runId"),
            int(&d, "planTime")
        ),
        "{d}"
    );
    w.stop().await;
}
