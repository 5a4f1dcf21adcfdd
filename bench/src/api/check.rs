//! Walks through pages by their cursors, one client, checking every
//! answer against what was loaded: each job once and in order, each run
//! record in page order (ties included) with the filter kept and no
//! output, totals, and `nextCursor` the last record of its page. A wrong
//! answer becomes a finding (the request and what came back).

use std::time::{Duration, Instant};

use rcron_shared::runlog;
use serde_json::Value;

use super::clients::Ctx;
use super::records::{Key, StoreQuery, encode, job_name, key_of};
use super::{JOB_PAGE, LOG_PAGE, Walk};

/// Follows `nextCursor` through every job page, checking each name comes
/// once and in order and `total`; returns every `nextCursor`.
pub(super) async fn walk_jobs(
    ctx: &Ctx,
    jobs: usize,
    findings: &mut Vec<String>,
) -> anyhow::Result<(Vec<String>, Walk)> {
    let started = Instant::now();
    let mut cursors = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = 0usize;
    let mut pages = 0;
    let mut last: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?limit={JOB_PAGE}&cursor={c}"),
            None => format!("/api/v1/jobs?limit={JOB_PAGE}"),
        };
        let page = ctx.json(&path).await?;
        pages += 1;
        let names: Vec<&str> = page["jobs"]
            .as_array()
            .map(|a| a.iter().filter_map(|j| j["name"].as_str()).collect())
            .unwrap_or_default();
        if page["total"].as_u64() != Some(jobs as u64) && findings.len() < 20 {
            findings.push(format!(
                "GET {path}: total {} (expected {jobs})",
                page["total"]
            ));
        }
        for name in &names {
            let expected = job_name(seen);
            if *name != expected && findings.len() < 20 {
                findings.push(format!(
                    "GET {path}: job {name} where {expected} was expected (after {last:?})"
                ));
            }
            seen += 1;
            last = Some(name.to_string());
        }
        match page["nextCursor"].as_str() {
            Some(next) => {
                if Some(next) != names.last().copied() && findings.len() < 20 {
                    findings.push(format!(
                        "GET {path}: nextCursor {next} is not the page's last name {:?}",
                        names.last()
                    ));
                }
                cursors.push(next.to_string());
                cursor = Some(next.to_string());
            }
            None => break,
        }
        anyhow::ensure!(
            pages <= jobs / JOB_PAGE + 2,
            "job pages do not end ({pages} pages)"
        );
    }
    if seen != jobs {
        findings.push(format!(
            "following nextCursor from GET /api/v1/jobs?limit={JOB_PAGE} gave {seen} jobs in {pages} pages, expected {jobs}"
        ));
    }
    Ok((
        cursors,
        Walk {
            what: format!("every job page, limit={JOB_PAGE}, {jobs} jobs"),
            pages,
            secs: started.elapsed().as_secs_f64(),
        },
    ))
}

/// Checks the records of a page answered to `path` against `expected`
/// (from position `at` of the walk): order, job filter, no output. Adds
/// at most `room` findings; returns how many it added.
pub(super) fn check_records(
    path: &str,
    logs: &[Value],
    query: &StoreQuery,
    expected: &[Key],
    at: usize,
    room: usize,
    findings: &mut Vec<String>,
) -> usize {
    let mut added = 0;
    for (n, l) in logs.iter().enumerate() {
        let got = key_of(l);
        let job_ok = query
            .job
            .as_deref()
            .is_none_or(|j| l["jobName"].as_str() == Some(j));
        let output_ok = l["output"].as_str().is_none_or(str::is_empty);
        if (expected.get(at + n) != Some(&got) || !job_ok || !output_ok) && added < room {
            added += 1;
            findings.push(format!(
                "GET {path}: record {} of the walk is {} of {} (output {} bytes), expected {}",
                at + n,
                encode(&got),
                l["jobName"],
                l["output"].as_str().map_or(0, str::len),
                expected.get(at + n).map_or("none".into(), encode)
            ));
        }
    }
    added
}

/// Reads one page of `query` and checks it is `expected`.
pub(super) async fn check_page(
    ctx: &Ctx,
    query: &StoreQuery,
    expected: &[Key],
    findings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let path = query.path();
    let page = ctx.json(&path).await?;
    let logs = page["logs"].as_array().cloned().unwrap_or_default();
    if logs.len() != expected.len() {
        findings.push(format!(
            "GET {path}: {} records, expected {}",
            logs.len(),
            expected.len()
        ));
    }
    check_records(&path, &logs, query, expected, 0, 3, findings);
    Ok(())
}

/// Follows `nextCursor` from `query`'s first page for `pages` pages (fewer
/// when `budget` runs out first), checking each record against `expected`
/// (page order) and the totals; returns the cursor after the last page
/// read.
pub(super) async fn walk_logs(
    ctx: &Ctx,
    query: &StoreQuery,
    pages: usize,
    budget: Duration,
    expected: &[Key],
    total: usize,
    findings: &mut Vec<String>,
) -> anyhow::Result<(Option<Key>, Walk)> {
    let started = Instant::now();
    let mut q = query.clone();
    let mut at = 0usize;
    let mut done = 0;
    let want_total = total.min(runlog::COUNT_CAP as usize) as u64;
    let want_capped = total > runlog::COUNT_CAP as usize;
    // At most 3 findings per walk: one wrong record tends to shift the rest.
    let mut room = 3usize;
    while done < pages && started.elapsed() < budget {
        let path = q.path();
        let page = ctx.json(&path).await?;
        done += 1;
        if (page["total"].as_u64() != Some(want_total)
            || page["totalCapped"].as_bool() != Some(want_capped))
            && room > 0
        {
            room -= 1;
            findings.push(format!(
                "GET {path}: total {} totalCapped {} (expected {want_total}, {want_capped})",
                page["total"], page["totalCapped"]
            ));
        }
        let logs = page["logs"].as_array().cloned().unwrap_or_default();
        room -= check_records(&path, &logs, query, expected, at, room, findings);
        at += logs.len();
        let next = page["nextCursor"].as_str();
        let last = logs.last().map(|l| encode(&key_of(l)));
        if next.is_some() && next.map(str::to_string) != last && room > 0 {
            room -= 1;
            findings.push(format!(
                "GET {path}: nextCursor {next:?} is not the page's last record {last:?}"
            ));
        }
        match next.and_then(|n| runlog::LogCursor::parse(n).ok()) {
            Some(c) => q.before = Some((c.start_time, c.run_id, c.attempt)),
            None => {
                if at < expected.len().min(total) && room > 0 {
                    findings.push(format!(
                        "GET {path}: no nextCursor after {at} records, {} expected",
                        expected.len().min(total)
                    ));
                }
                break;
            }
        }
    }
    let ran_out = if done < pages && q.before.is_some() {
        format!(" (stopped by the {} s budget)", budget.as_secs())
    } else {
        String::new()
    };
    Ok((
        q.before,
        Walk {
            what: format!(
                "{done} pages of {}, limit={LOG_PAGE}{ran_out}",
                query.job.as_deref().unwrap_or("every job")
            ),
            pages: done,
            secs: started.elapsed().as_secs_f64(),
        },
    ))
}
