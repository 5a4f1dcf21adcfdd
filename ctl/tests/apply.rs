//! `rcronctl apply` and `rcronctl export` against a real master: jobs kept
//! as files, created, updated field by field, pruned, dry runs, and an
//! export that `apply --prune` finds nothing to change in.

mod common;

use std::path::Path;

use common::{Master, ctl, ctl_with_stdin, temp_dir};
use rcron_testkit as kit;
use serde_json::{Value, json};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write job file");
}

fn json_out(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_updates_and_prunes_and_export_then_apply_changes_nothing() {
    let master = Master::start().await;
    let b = master.base.clone();
    let prefix = master.prefix.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let save = |name: &str, cron: &str| {
            let (ok, _, err) = ctl(
                &b,
                &[
                    "job",
                    "save",
                    "--name",
                    name,
                    "--command",
                    "true",
                    "--cron",
                    cron,
                ],
            );
            assert!(ok, "{err}");
        };
        save("keep", "@hourly");
        save("change", "0 3 * * *");
        save("stale", "@daily");
        // A field of a later version, in a job apply will change.
        let key = rcron_shared::Keys::new(&prefix)
            .expect("prefix")
            .job(&rcron_shared::JobName::new("change").expect("name"));
        let stored = || {
            let key = key.clone();
            handle.block_on(async move {
                let resp = kit::etcd_client().await.get(key, None).await.expect("get");
                serde_json::from_slice::<Value>(resp.kvs()[0].value()).expect("json")
            })
        };
        let mut later = stored();
        later["futureField"] = json!("kept");
        handle.block_on(async {
            kit::etcd_client()
                .await
                .put(key.clone(), later.to_string(), None)
                .await
                .expect("put")
        });

        let dir = temp_dir("apply");
        // One job in JSON; a list in YAML; other files are not job files.
        write(
            &dir,
            "keep.json",
            r#"{"name": "keep", "command": "true", "cronExpr": "@hourly"}"#,
        );
        write(
            &dir,
            "more.yaml",
            "- name: change\n  command: \"true\"\n  cronExpr: '0 4 * * *'\n  timeoutSecs: 60\n\
             - name: fresh\n  command: backup.sh\n  cronExpr: '@daily'\n  \
               target: {labels: {role: db}}\n  alertEmails: [ops@example.com]\n",
        );
        write(&dir, "README.txt", "not a job");
        let d = dir.to_str().expect("path");

        // A dry run says what would change and writes nothing.
        let (ok, out, err) = ctl(&b, &["apply", "-f", d, "--dry-run"]);
        assert!(ok, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "dry run: nothing is written", "{out}");
        assert!(lines.contains(&"created    fresh"), "{out}");
        assert!(lines.contains(&"updated    change"), "{out}");
        assert!(
            lines.contains(&r#"             cronExpr: "0 3 * * *" → "0 4 * * *""#),
            "{out}"
        );
        assert!(lines.contains(&"             timeoutSecs: 0 → 60"), "{out}");
        assert!(lines.contains(&"unchanged  keep"), "{out}");
        assert!(!out.contains("stale"), "not pruned without --prune: {out}");
        assert_eq!(
            lines.last(),
            Some(&"1 created, 1 updated, 1 unchanged, 0 deleted")
        );
        let (ok, _, err) = ctl(&b, &["job", "get", "fresh"]);
        assert!(!ok && err.contains("not found"), "{err}");

        let (ok, out, err) = ctl(
            &b,
            &["-o", "json", "apply", "-f", d, "--prune", "--dry-run"],
        );
        assert!(ok, "{err}");
        assert_eq!(
            json_out(&out),
            json!({
                "dryRun": true,
                "created": ["fresh"],
                "updated": [{"name": "change", "changes": [
                    {"field": "cronExpr", "from": "0 3 * * *", "to": "0 4 * * *"},
                    {"field": "timeoutSecs", "from": 0, "to": 60},
                ]}],
                "unchanged": ["keep"],
                "deleted": ["stale"],
            })
        );
        let (ok, _, err) = ctl(&b, &["job", "get", "stale"]);
        assert!(ok, "still there after a dry run: {err}");

        // For real.
        let (ok, out, err) = ctl(&b, &["apply", "-f", d, "--prune"]);
        assert!(ok, "{err}");
        assert!(!out.contains("dry run"), "{out}");
        assert!(
            out.ends_with("1 created, 1 updated, 1 unchanged, 1 deleted\n"),
            "{out}"
        );
        let (ok, out, err) = ctl(&b, &["-o", "json", "job", "get", "fresh"]);
        assert!(ok, "{err}");
        let fresh = json_out(&out);
        assert_eq!(fresh["command"], "backup.sh");
        assert_eq!(
            fresh["target"],
            json!({"labels": {"role": "db"}, "mode": "one"})
        );
        assert_eq!(fresh["alertEmails"], json!(["ops@example.com"]));
        assert_eq!(stored()["futureField"], "kept", "patched, not replaced");
        let (_, out, _) = ctl(&b, &["-o", "json", "job", "get", "change"]);
        let change = json_out(&out);
        assert_eq!(
            (change["cronExpr"].clone(), change["timeoutSecs"].clone()),
            (json!("0 4 * * *"), json!(60))
        );
        let (ok, _, err) = ctl(&b, &["job", "get", "stale"]);
        assert!(!ok && err.contains("not found"), "pruned: {err}");
        let (ok, out, err) = ctl(&b, &["apply", "-f", d, "--prune"]);
        assert!(ok, "{err}");
        assert!(
            out.ends_with("0 created, 0 updated, 3 unchanged, 0 deleted\n"),
            "applied twice, changed once: {out}"
        );

        // A paused job and one changed by hand: export, then apply --prune
        // on the export changes nothing.
        let (ok, _, err) = ctl(&b, &["job", "pause", "keep"]);
        assert!(ok, "{err}");
        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "tz",
                "--command",
                "date",
                "--cron",
                "30 2 * * *",
                "--timezone",
                "Europe/Berlin",
                "--misfire",
                "run-once",
                "--starting-deadline",
                "60",
                "--no-alert-on-missed",
                "--all",
            ],
        );
        assert!(ok, "{err}");
        let export = temp_dir("export");
        let e = export.to_str().expect("path");
        let (ok, out, err) = ctl(&b, &["export", e]);
        assert!(ok, "{err}");
        assert_eq!(out.trim_end(), format!("exported 4 jobs to {e}"));
        let mut names: Vec<String> = std::fs::read_dir(&export)
            .expect("read export")
            .map(|f| f.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["change.json", "fresh.json", "keep.json", "tz.json"]);
        let keep = json_out(&std::fs::read_to_string(export.join("keep.json")).expect("read"));
        assert_eq!(keep["disabled"], true);
        assert!(
            keep.get("updatedAt").is_none(),
            "set by the master, not kept: {keep}"
        );
        let (ok, out, err) = ctl(
            &b,
            &["-o", "json", "apply", "-f", e, "--prune", "--dry-run"],
        );
        assert!(ok, "{err}");
        assert_eq!(
            json_out(&out),
            json!({"dryRun": true, "created": [], "updated": [],
                   "unchanged": ["change", "fresh", "keep", "tz"], "deleted": []})
        );
        let (ok, out, err) = ctl(&b, &["apply", "-f", e, "--prune"]);
        assert!(ok, "{err}");
        assert!(
            out.ends_with("0 created, 0 updated, 4 unchanged, 0 deleted\n"),
            "{out}"
        );
        // A file the export did not write is pointed out.
        write(
            &export,
            "other.json",
            r#"{"name": "other", "command": "x", "cronExpr": "@daily"}"#,
        );
        let (ok, _, err) = ctl(&b, &["export", e]);
        assert!(
            ok && err.contains("other.json is not a job of the cluster"),
            "{err}"
        );

        // Stdin, JSON or YAML.
        let (ok, out, err) = ctl_with_stdin(
            &b,
            &["apply", "-f", "-", "--dry-run"],
            "name: piped\ncommand: \"true\"\ncronExpr: '@hourly'\n",
        );
        assert!(ok, "{err}");
        assert!(out.contains("created    piped"), "{out}");

        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(export);
    })
    .await
    .expect("rcronctl checks");
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_names_every_problem_and_writes_nothing() {
    let master = Master::start().await;
    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, _, err) = ctl(
            &b,
            &[
                "job",
                "save",
                "--name",
                "kept",
                "--command",
                "true",
                "--cron",
                "@daily",
            ],
        );
        assert!(ok, "{err}");
        let dir = temp_dir("apply-bad");
        write(
            &dir,
            "a.json",
            r#"[{"name": "good", "command": "true", "cronExpr": "@hourly"},
            {"name": "a/b", "command": " ", "cronExpr": "61 * * * *"}]"#,
        );
        write(
            &dir,
            "b.json",
            r#"{"name": "good", "command": "x", "cronExpr": "@daily"}"#,
        );
        write(&dir, "c.json", "{not json");
        write(&dir, "d.yml", "- 42\n");
        let d = dir.to_str().expect("path");
        let (ok, out, err) = ctl(&b, &["apply", "-f", d, "--prune"]);
        assert!(!ok, "{out}");
        assert!(err.contains("nothing applied"), "{err}");
        for needle in [
            "a.json: job a/b: invalid job:",
            "`name`",
            "`command`",
            "`cronExpr`",
            "job good is in both",
            "c.json: not JSON",
            "d.yml: item #1 is not a job",
        ] {
            assert!(err.contains(needle), "{needle} missing from:\n{err}");
        }
        let (ok, _, err) = ctl(&b, &["job", "get", "good"]);
        assert!(!ok && err.contains("not found"), "{err}");
        let (ok, _, err) = ctl(&b, &["job", "get", "kept"]);
        assert!(ok, "nothing pruned: {err}");

        // A prune from files holding no job would delete every job.
        let empty = temp_dir("apply-empty");
        let (ok, _, err) = ctl(
            &b,
            &["apply", "-f", empty.to_str().expect("path"), "--prune"],
        );
        assert!(!ok && err.contains("refusing"), "{err}");
        let (ok, _, err) = ctl(&b, &["job", "get", "kept"]);
        assert!(ok, "{err}");
        let (ok, _, err) = ctl(&b, &["apply"]);
        assert!(!ok && err.contains("--file"), "{err}");

        // A job the master would refuse to save is refused before anything
        // is written.
        write(
            &empty,
            "past.json",
            r#"{"name": "past", "command": "x", "cronExpr": "0 0 1 1 * 2001"}"#,
        );
        let (ok, _, err) = ctl(&b, &["apply", "-f", empty.to_str().expect("path")]);
        assert!(!ok && err.contains("never fires again"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(empty);
    })
    .await
    .expect("rcronctl checks");
    master.stop().await;
}
