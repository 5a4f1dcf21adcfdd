//! `rcronctl logs` against a real master: newest first, `-o json` as the
//! API's page (also empty), and `--follow` printing only what comes, in
//! aligned columns.

mod common;

use rcron_shared::runlog::RunLogWriter;
use std::time::Duration;

use common::{Follower, Master, ctl, run_record};
use rcron_shared::{RunParams, Trigger, TriggeredBy};
use rcron_testkit as kit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_newest_first_and_json_is_the_apis_page() {
    let master = Master::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<_> = (1..=3)
        .map(|i| run_record("paged", now - 10_000 + i * 1000, &format!("hello\nrun-{i}")))
        .collect();
    master
        .log_store()
        .await
        .write(&records)
        .await
        .expect("write records");
    let api: serde_json::Value = kit::http_client()
        .get(format!(
            "{}/api/v1/logs?limit=20&output=true&job=paged",
            master.base
        ))
        .send()
        .await
        .expect("GET logs")
        .json()
        .await
        .expect("json");

    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = ctl(&b, &["logs", "paged"]);
        assert!(ok, "{err}");
        let last_lines: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.rsplit("  ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            last_lines,
            ["run-3", "run-2", "run-1"],
            "newest first:\n{out}"
        );

        // The API's document, as it sent it.
        let (ok, out, err) = ctl(&b, &["-o", "json", "logs", "paged"]);
        assert!(ok, "{err}");
        let page: serde_json::Value = serde_json::from_str(&out).expect("one document");
        assert_eq!(page, api);
        assert_eq!(page["logs"][0]["output"], "hello\nrun-3");

        // No run: still the page, empty.
        let (ok, out, err) = ctl(&b, &["-o", "json", "logs", "nothing-ran"]);
        assert!(ok, "{err}");
        let page: serde_json::Value = serde_json::from_str(&out).expect("one document");
        assert_eq!(
            page,
            serde_json::json!({"logs": [], "total": 0, "totalCapped": false, "skip": 0, "limit": 20})
        );
        let (ok, out, _) = ctl(&b, &["logs", "nothing-ran"]);
        assert!(
            ok && out.trim_end().starts_with("START") && out.lines().count() == 1,
            "{out}"
        );
    })
    .await
    .expect("rcronctl checks");
    master.stop().await;
}

/// Where each column starts in `header` (columns are two spaces apart;
/// names hold at most one space).
fn column_starts(header: &str) -> Vec<usize> {
    let chars: Vec<char> = header.chars().collect();
    let mut starts = vec![0];
    for i in 2..chars.len() {
        if chars[i] != ' ' && chars[i - 1] == ' ' && chars[i - 2] == ' ' {
            starts.push(i);
        }
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_only_new_runs_in_aligned_columns() {
    let master = Master::start().await;
    let store = master.log_store().await;
    let now = chrono::Utc::now().timestamp_millis();
    store
        .write(&[run_record("before", now - 5000, "OLD-RUN")])
        .await
        .expect("write");

    let table = Follower::start(&master.base, &["logs", "--follow"]);
    let json = Follower::start(&master.base, &["-o", "json", "logs", "--follow"]);
    let header = tokio::task::block_in_place(|| table.next_line(Duration::from_secs(20)));
    assert!(header.starts_with("START"), "{header}");
    // Both have read what is logged already once the table one printed its
    // header; the JSON one prints nothing before a new run: give it a poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let long_name = "a-job-whose-name-is-longer-than-its-column";
    let mut skipped = run_record("after", now + 1000, "");
    skipped.status = rcron_shared::RunStatus::Skipped;
    skipped.exit_code = None;
    skipped.reason = Some("overlap: the previous run was still going".into());
    store
        .write(&[run_record(long_name, now, "first\nNEW-RUN-1"), skipped])
        .await
        .expect("write");

    let (rows, json_lines) = tokio::task::block_in_place(|| {
        let rows = [
            table.next_line(Duration::from_secs(20)),
            table.next_line(Duration::from_secs(20)),
        ];
        let json_lines = [
            json.next_line(Duration::from_secs(20)),
            json.next_line(Duration::from_secs(20)),
        ];
        (rows, json_lines)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let more = table.stop();
    assert!(more.is_empty(), "nothing else was logged: {more:?}");
    assert!(json.stop().is_empty());

    // Only the new runs, oldest first.
    assert!(!rows.iter().any(|r| r.contains("OLD-RUN")), "{rows:?}");
    assert!(rows[0].ends_with("NEW-RUN-1"), "{rows:?}");
    assert!(
        rows[1].contains("skipped") && rows[1].contains("overlap"),
        "{rows:?}"
    );
    // Each cell starts under its header.
    let starts = column_starts(&header);
    assert_eq!(starts.len(), 9, "{header}");
    for row in &rows {
        let chars: Vec<char> = row.chars().collect();
        // (A verdict has no output: its line ends before the last column.)
        for &at in starts[1..].iter().filter(|at| **at < chars.len()) {
            assert!(
                chars.get(at).is_some_and(|c| *c != ' ')
                    && chars[at - 1] == ' '
                    && chars[at - 2] == ' ',
                "column at {at} misaligned:\n{header}\n{row}"
            );
        }
    }
    assert!(
        rows[0].contains("a-job-whose-name-is-lon…"),
        "cut to its column: {rows:?}"
    );

    // With -o json: one record a line, as the API sent it.
    let records: Vec<serde_json::Value> = json_lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON record a line"))
        .collect();
    assert_eq!(records[0]["jobName"], long_name);
    assert_eq!(records[1]["status"], "skipped");
    master.stop().await;
}

/// The TRIGGER column: what started each run, and for a chained run the
/// run whose end requested it; `-o json` has the API's fields (`trigger`,
/// `triggeredBy`, `params`) as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_what_started_each_run() {
    let master = Master::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    let scheduled = run_record("extract", now - 3000, "ran on its schedule");
    let mut manual = run_record("extract", now - 2000, "ran on request");
    manual.trigger = Trigger::Manual;
    manual.params = Some(RunParams {
        env: [("MODE".to_string(), "full".to_string())].into(),
    });
    let mut chained = run_record("load", now - 1000, "ran after extract");
    chained.trigger = Trigger::Chain;
    chained.triggered_by = Some(TriggeredBy {
        job: "extract".into(),
        run_id: manual.run_id.clone(),
    });
    master
        .log_store()
        .await
        .write(&[scheduled, manual.clone(), chained])
        .await
        .expect("write records");

    let b = master.base.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = ctl(&b, &["logs"]);
        assert!(ok, "{err}");
        let mut lines = out.lines();
        let header = lines.next().unwrap_or_default();
        let at = header.find("TRIGGER").expect("a TRIGGER column");
        // Newest first; each cell starts under its header.
        let triggers: Vec<&str> = lines
            .map(|l| l[at..].split("  ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            triggers,
            [
                format!("chain ← extract/{}", manual.run_id).as_str(),
                "manual",
                "schedule"
            ],
            "{out}"
        );

        let (ok, out, err) = ctl(&b, &["-o", "json", "logs"]);
        assert!(ok, "{err}");
        let page: serde_json::Value = serde_json::from_str(&out).expect("one document");
        let logs = &page["logs"];
        assert_eq!(logs[0]["trigger"], "chain");
        assert_eq!(
            logs[0]["triggeredBy"],
            serde_json::json!({"job": "extract", "runId": manual.run_id})
        );
        assert_eq!(logs[1]["trigger"], "manual");
        assert_eq!(
            logs[1]["params"],
            serde_json::json!({"env": {"MODE": "full"}})
        );
        assert_eq!(logs[2]["trigger"], "schedule");
        assert!(logs[2].get("params").is_none(), "{}", logs[2]);
    })
    .await
    .expect("rcronctl checks");
    master.stop().await;
}
