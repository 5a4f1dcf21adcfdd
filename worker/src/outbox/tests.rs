//! The outbox and its recovery.

use std::os::unix::process::CommandExt;

use std::io::Write;

use rcron_shared::RunStatus;

use super::*;

fn record(run_id: &str, attempt: u32) -> LogRecord {
    LogRecord {
        job_name: "j".into(),
        command: "true".into(),
        err: String::new(),
        output: String::new(),
        plan_time: 1_000,
        schedule_time: 1_001,
        start_time: 1_002,
        end_time: 1_003,
        run_id: run_id.into(),
        worker: "w1".into(),
        exit_code: Some(0),
        status: RunStatus::Success,
        attempt,
        output_truncated: false,
        reason: None,
        trigger: Default::default(),
        triggered_by: None,
        params: None,
    }
}

fn temp() -> PathBuf {
    std::env::temp_dir().join(format!("rcron-outbox-{}", uuid::Uuid::now_v7().simple()))
}

const GRACE: Duration = Duration::from_millis(200);

/// A journaled run whose process group is long gone.
fn gone_run(record: &LogRecord) -> Started {
    Started {
        job: JobName::new("j").expect("name"),
        record: record.clone(),
        pgid: u32::MAX - 1,
        proc_start: None,
    }
}

#[tokio::test]
async fn a_live_journal_is_left_alone_and_a_dead_one_is_recovered_once() {
    let dir = temp();
    let (first, none) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    assert!(none.records.is_empty());
    let (delivered, pending) = (record("r1", 1), record("r2", 1));
    first.finished(&delivered);
    first.logged(&delivered);
    first.finished(&pending);

    let (second, recovered) = Outbox::open(&dir, "w2", GRACE, 5_000).await.expect("open");
    assert!(recovered.records.is_empty(), "w1 is alive (holds its lock)");
    drop(first); // the process "dies": its lock goes
    let (third, recovered) = Outbox::open(&dir, "w3", GRACE, 5_000).await.expect("open");
    assert_eq!(recovered.records, vec![pending.clone()]);
    assert!(
        !dir.join("journal/w1").exists(),
        "the dead journal is removed"
    );
    // Still in w3's journal until stored: a crash now loses nothing either.
    drop(third);
    let (fourth, again) = Outbox::open(&dir, "w4", GRACE, 5_000).await.expect("open");
    assert_eq!(again.records, vec![pending.clone()]);
    fourth.logged(&pending);
    fourth.close();
    second.close();
    assert!(!dir.exists() || std::fs::read_dir(&dir).expect("dir").count() == 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_lock_request_left_without_outcome_is_handed_back_unless_its_run_started() {
    let dir = temp();
    let (journal, _) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let job = JobName::new("j").expect("name");
    let spec =
        rcron_shared::Job::from_json(br#"{"name":"j","command":"true","cronExpr":"@daily"}"#)
            .expect("job");
    let take = |run_id: &str| Take {
        run_id: run_id.to_string(),
        job: spec.clone(),
        plan_ms: 1_000,
        fired_key: "/cron/fired/j".to_string(),
        from_revision: 7,
        verdict: None,
        request: None,
    };
    // Died between sending the request and starting the run.
    journal.take(take("r1"));
    // Started its run: the run's entry stands for the tick.
    journal.take(take("r2"));
    journal.started(&job, &record("r2", 1), u32::MAX - 1);
    // Knew the outcome (the tick was not taken).
    journal.take(take("r3"));
    journal.took("r3");
    drop(journal);

    let (_journal, recovered) = Outbox::open(&dir, "w2", GRACE, 9_000).await.expect("open");
    assert_eq!(recovered.takes, vec![take("r1")]);
    assert_eq!(recovered.interrupted, 1, "r2 is reported as its run");
}

#[tokio::test]
async fn a_run_left_going_is_reported_as_interrupted_ended_when_last_seen_or_killed() {
    let dir = temp();
    let (journal, _) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let mut child = std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .expect("spawn sleep");
    let job = JobName::new("j").expect("name");
    journal.started(&job, &record("r1", 2), child.id());
    // A run whose process is gone already: outcome unknown.
    journal.started(&job, &record("r2", 1), u32::MAX - 1);
    journal.heartbeat();
    // The worker was last seen alive 5 s after the epoch (a fixed
    // heartbeat time the test can check), then died.
    let last_seen = std::time::UNIX_EPOCH + Duration::from_millis(5_000);
    File::options()
        .append(true)
        .open(dir.join("journal/w1").join(FILE))
        .and_then(|f| f.set_modified(last_seen))
        .expect("set the heartbeat time");
    drop(journal);

    let (_journal, recovered) = Outbox::open(&dir, "w2", GRACE, 9_000).await.expect("open");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the leftover command was killed");
    assert_eq!(recovered.interrupted, 2);
    assert_eq!(recovered.killed_groups, 1);
    let killed = recovered
        .records
        .iter()
        .find(|r| r.run_id == "r1")
        .expect("r1");
    assert_eq!(killed.status, RunStatus::Interrupted);
    assert_eq!(killed.attempt, 2);
    assert!(
        killed.end_time > 1_700_000_000_000,
        "a group killed at recovery ends when it was killed: {}",
        killed.end_time
    );
    assert!(killed.err.contains("was killed"), "{}", killed.err);
    let unknown = recovered
        .records
        .iter()
        .find(|r| r.run_id == "r2")
        .expect("r2");
    assert!(unknown.err.contains("unknown"), "{}", unknown.err);
    assert_eq!(unknown.status, RunStatus::Interrupted);
    assert_eq!(
        unknown.end_time, 5_000,
        "a group gone by recovery ends when its worker was last seen alive, not at the restart"
    );
    assert_eq!(recovered.warnings.len(), 2);
    assert!(recovered.warnings.iter().all(|w| w.status.warns()));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_grown_journal_is_compacted_to_its_open_entries_and_still_recovers() {
    let dir = temp();
    let (journal, _) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let pending = record("pending", 1);
    journal.finished(&pending);
    let mut big = record("big", 1);
    big.output = "x".repeat(64 * 1024);
    let mut peak = 0;
    for i in 0..200 {
        big.run_id = format!("big-{i}");
        journal.finished(&big);
        journal.logged(&big);
        let size = std::fs::metadata(dir.join("journal/w1").join(FILE))
            .expect("journal file")
            .len();
        peak = peak.max(size);
    }
    assert!(
        peak <= COMPACT_AT + 2 * 70 * 1024,
        "compacted as it grew: peak {peak} bytes"
    );
    drop(journal);
    let (_other, recovered) = Outbox::open(&dir, "w2", GRACE, 5_000).await.expect("open");
    assert_eq!(recovered.records, vec![pending]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_torn_line_is_skipped_and_the_rest_recovered() {
    let dir = temp();
    let (journal, _) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let (a, b) = (record("a", 1), record("b", 1));
    journal.finished(&a);
    drop(journal);
    // A crash mid-append (say, a full disk) left half a line.
    let path = dir.join("journal/w1").join(FILE);
    let mut file = File::options().append(true).open(&path).expect("journal");
    file.write_all(br#"{"log":{"key":"b-1","record":{"jobNa"#)
        .expect("torn line");
    file.write_all(b"\n").expect("newline");
    drop(file);
    // The same worker starts again, and b's record is journaled after.
    let (journal, recovered) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    assert_eq!(recovered.records, vec![a.clone()]);
    journal.finished(&b);
    drop(journal);
    let (_journal, recovered) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    assert_eq!(recovered.records, vec![a, b]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn entry_files_of_the_former_journal_are_recovered_too() {
    let dir = temp();
    let old = dir.join("journal/w1");
    std::fs::create_dir_all(&old).expect("dir");
    let (ended, pending) = (record("ended", 1), record("pending", 1));
    let put = |name: &str, bytes: Vec<u8>| std::fs::write(old.join(name), bytes).expect("write");
    put(
        "ended-1.run.json",
        serde_json::to_vec(&gone_run(&ended)).expect("json"),
    );
    put(
        "ended-1.log.json",
        serde_json::to_vec(&ended).expect("json"),
    );
    put(
        "pending-1.run.json",
        serde_json::to_vec(&gone_run(&pending)).expect("json"),
    );
    let (journal, recovered) = Outbox::open(&dir, "w2", GRACE, 9_000).await.expect("open");
    assert_eq!(recovered.interrupted, 1, "only the run without a record");
    let ids: Vec<&str> = recovered
        .records
        .iter()
        .map(|r| r.run_id.as_str())
        .collect();
    assert_eq!(ids, ["ended", "pending"]);
    assert!(
        !old.exists(),
        "the former journal is taken over and removed"
    );
    // Taken over into the new journal: recovered again after a crash.
    drop(journal);
    let (journal, again) = Outbox::open(&dir, "w3", GRACE, 9_000).await.expect("open");
    assert_eq!(again.records.len(), 2);
    assert_eq!(again.warnings.len(), 1);
    for record in &again.records {
        journal.logged(record);
    }
    for warning in &again.warnings {
        journal.warned(warning);
    }
    journal.close();
    assert!(
        !dir.join("journal").exists(),
        "every entry closed: journal removed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_dead_workers_set_aside_file_is_replayed_before_its_current_one() {
    // w1 died while recovering its earlier life: the set-aside file
    // still says the run was going, the current one has its record.
    let dir = temp();
    let old = dir.join("journal/w1");
    std::fs::create_dir_all(&old).expect("dir");
    let r = record("r", 1);
    let line = |l: &Line| {
        let mut bytes = serde_json::to_vec(l).expect("json");
        bytes.push(b'\n');
        bytes
    };
    let run = Line::Run {
        key: attempt_key(&r),
        started: gone_run(&r),
    };
    let log = Line::Log {
        key: attempt_key(&r),
        record: r.clone(),
    };
    std::fs::write(old.join(recovery::set_aside_name()), line(&run)).expect("write");
    std::fs::write(old.join(FILE), line(&log)).expect("write");
    let (_journal, recovered) = Outbox::open(&dir, "w2", GRACE, 9_000).await.expect("open");
    assert_eq!(recovered.interrupted, 0, "the run had ended");
    assert_eq!(recovered.records, vec![r]);
    assert!(recovered.warnings.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

fn warning(run_id: &str) -> Warning {
    crate::records::warning(&JobName::new("j").expect("name"), &record(run_id, 1))
}

#[tokio::test]
async fn open_records_are_read_back_from_the_file_in_order_between_two_places() {
    let dir = temp();
    let (outbox, _) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(
            outbox
                .finished(&record(&format!("r{i}"), 1))
                .expect("appended"),
        );
        outbox.warning(&warning(&format!("r{i}")));
    }
    // Stored ones are no longer open.
    outbox.logged(&record("r2", 1));
    outbox.warned(&warning("r3"));
    let ids = |items: Vec<(Seq, LogRecord)>| -> Vec<String> {
        items.into_iter().map(|(_, r)| r.run_id).collect()
    };
    let all = outbox.open_records(Seq::START, outbox.last_seq(), usize::MAX);
    assert_eq!(
        ids(all),
        ["r0", "r1", "r3", "r4", "r5", "r6", "r7", "r8", "r9"]
    );
    // After r1 up to r6, at most 3 (r2 is stored): where a sink resumes
    // its backlog.
    let page = outbox.open_records(seqs[1], seqs[6], 3);
    assert_eq!(page.last().map(|(seq, _)| *seq), Some(seqs[5]));
    assert_eq!(ids(page), ["r3", "r4", "r5"]);
    let page = outbox.open_records(seqs[5], seqs[6], 3);
    assert_eq!(ids(page), ["r6"]);
    assert!(outbox.open_records(seqs[6], seqs[6], 3).is_empty());
    let warnings = outbox.open_warnings(Seq::START, outbox.last_seq(), usize::MAX);
    assert_eq!(warnings.len(), 9);
    assert!(warnings.iter().all(|(_, w)| w.run_id != "r3"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn memory_holds_where_open_entries_are_not_their_bytes() {
    let dir = temp();
    let (outbox, _) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let mut big = record("big", 1);
    big.output = "x".repeat(64 * 1024);
    for i in 0..100 {
        big.run_id = format!("big-{i}");
        outbox.finished(&big);
    }
    let file = std::fs::metadata(dir.join("journal/w1").join(FILE))
        .expect("file")
        .len();
    assert!(file > 100 * 64 * 1024, "the records are on disk: {file}");
    let held = outbox.index_bytes();
    assert!(
        held < 100 * 256,
        "the index holds about a hundred bytes per entry, not 64 KiB: {held}"
    );
    let back = outbox.open_records(Seq::START, outbox.last_seq(), usize::MAX);
    assert_eq!(back.len(), 100);
    assert!(back.iter().all(|(_, r)| r.output.len() == 64 * 1024));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_compaction_keeps_every_open_entry_readable_at_its_new_place() {
    let dir = temp();
    let (outbox, _) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let first = outbox.finished(&record("first", 1)).expect("appended");
    outbox.warning(&warning("first"));
    let mut big = record("big", 1);
    big.output = "x".repeat(64 * 1024);
    let mut kept = Vec::new();
    for i in 0..200 {
        big.run_id = format!("big-{i}");
        outbox.finished(&big);
        // Every tenth stays open; the others are stored.
        if i % 10 == 0 {
            kept.push(big.run_id.clone());
        } else {
            outbox.logged(&big);
        }
    }
    let size = std::fs::metadata(dir.join("journal/w1").join(FILE))
        .expect("file")
        .len();
    assert!(
        size <= COMPACT_AT + 70 * 1024,
        "compacted as it grew (13 MB appended): {size} bytes"
    );
    let back = outbox.open_records(Seq::START, outbox.last_seq(), usize::MAX);
    assert_eq!(
        back[0],
        (first, record("first", 1)),
        "same place in the order"
    );
    let ids: Vec<String> = back[1..].iter().map(|(_, r)| r.run_id.clone()).collect();
    assert_eq!(ids, kept);
    assert!(back[1..].iter().all(|(_, r)| r.output == big.output));
    let warnings = outbox.open_warnings(Seq::START, outbox.last_seq(), usize::MAX);
    assert_eq!(warnings.len(), 1);
    // And appends go on at the end of the compacted file.
    outbox.finished(&record("after", 1));
    let last = outbox.open_records(first, outbox.last_seq(), usize::MAX);
    assert_eq!(last.last().map(|(_, r)| r.run_id.as_str()), Some("after"));
    drop(outbox);
    let (_other, recovered) = Outbox::open(&dir, "w2", GRACE, 5_000).await.expect("open");
    assert_eq!(recovered.records.len(), 1 + kept.len() + 1);
    assert_eq!(recovered.warnings.len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn spill_files_of_an_earlier_version_are_sent_once_through_the_outbox() {
    let dir = temp();
    std::fs::create_dir_all(&dir).expect("dir");
    let lines = |items: Vec<Vec<u8>>| {
        let mut bytes = Vec::new();
        for item in items {
            bytes.extend(item);
            bytes.push(b'\n');
        }
        bytes
    };
    let json = |r: &LogRecord| serde_json::to_vec(r).expect("json");
    std::fs::write(
        dir.join("logs-w0-1700000000000-0.jsonl"),
        lines(vec![json(&record("s1", 1)), json(&record("s2", 1))]),
    )
    .expect("write");
    // Claimed by a worker that died before sending it; a torn last line.
    std::fs::write(
        dir.join("logs-w0-claimed-3.jsonl"),
        lines(vec![json(&record("s3", 1)), b"{\"jobNa".to_vec()]),
    )
    .expect("write");
    std::fs::write(
        dir.join("warnings-w0-1700000000000-1.jsonl"),
        lines(vec![serde_json::to_vec(&warning("s1")).expect("json")]),
    )
    .expect("write");
    // Not complete when its worker stopped: never renamed, never sent.
    std::fs::write(dir.join("logs-w0-1700000000000-2.tmp"), b"{").expect("write");

    let (outbox, recovered) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    let mut ids: Vec<&str> = recovered
        .records
        .iter()
        .map(|r| r.run_id.as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    assert_eq!(recovered.warnings, vec![warning("s1")]);
    assert_eq!(recovered.interrupted, 0);
    let left: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    assert!(left.is_empty(), "spill files taken over: {left:?}");
    // In the outbox now, open until stored: a crash before that loses
    // nothing, and the files are not read a second time.
    assert_eq!(
        outbox
            .open_records(Seq::START, outbox.last_seq(), usize::MAX)
            .len(),
        3
    );
    drop(outbox);
    let (outbox, again) = Outbox::open(&dir, "w1", GRACE, 5_000).await.expect("open");
    assert_eq!(again.records.len(), 3, "once each");
    assert_eq!(again.warnings.len(), 1);
    for record in &again.records {
        outbox.logged(record);
    }
    for warning in &again.warnings {
        outbox.warned(warning);
    }
    outbox.close();
    assert!(!dir.join("journal").exists(), "all sent: outbox removed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_backlog_covers_every_entry_let_go_and_ends_when_a_read_finds_none() {
    let seq = Seq;
    let b = Backlog::with(None, seq(5));
    let b = Backlog::with(Some(b), seq(3));
    let b = Backlog::with(Some(b), seq(8));
    assert_eq!((b.after, b.upto), (seq(2), seq(8)));
    let rest = b.rest(Some(seq(6))).expect("more to read");
    assert_eq!((rest.after, rest.upto), (seq(6), seq(8)));
    assert_eq!(rest.rest(None), None);
}
