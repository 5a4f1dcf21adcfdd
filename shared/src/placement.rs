//! Where a job may run and which worker goes first (ARCHITECTURE §4,
//! "Placement"): worker labels, the job's `target`, and the ranking every
//! worker computes the same way for a tick.
//!
//! The ranking is rendezvous hashing of (job, tick) over worker ids: each
//! worker scores itself, the highest score goes first. Every worker with
//! the same view of the live workers computes the same order without
//! talking to the others, and each worker is first for about 1/N of the
//! ticks. The hash is spelled out here (FNV-1a, then a SplitMix64 finish)
//! rather than taken from `std`, whose hasher may change between releases:
//! workers of two versions must agree during a rolling upgrade.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most labels on a worker or in a selector.
pub const MAX_LABELS: usize = 32;
/// Longest label key or value, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// Labels of a worker, or the labels a job requires: `key → value`.
pub type Labels = BTreeMap<String, String>;

/// Which workers run a tick of the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
pub enum TargetMode {
    /// One matching worker runs each tick (the default).
    #[default]
    One,
    /// Every matching live worker runs each tick once.
    All,
}

impl TargetMode {
    /// The names the job's JSON accepts.
    pub const NAMES: &'static [&'static str] = &["one", "all"];
}

/// Where a job may run: the labels a worker must carry, and how many of the
/// matching workers run each tick.
// Unknown fields are refused: a misspelt `labels` would otherwise let a
// job pinned to some hosts run anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(
    feature = "openapi",
    oai(rename_all = "camelCase", deny_unknown_fields)
)]
pub struct Target {
    /// Labels a worker must all carry (`{"role": "db"}`); keys and values
    /// are 1–63 ASCII letters, digits, `.`, `_`, `-`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub labels: Labels,
    /// `one` (default) or `all`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub mode: TargetMode,
}

impl Target {
    /// Whether a worker with `labels` may run the job.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// Whether this target is the same as none: any worker, one per tick.
    pub fn is_any(&self) -> bool {
        self.labels.is_empty() && self.mode == TargetMode::One
    }

    /// Every problem with the selector, phrased for the job's error message.
    pub fn problems(&self) -> Vec<String> {
        label_problems(&self.labels)
            .into_iter()
            .map(|p| format!("`target.labels`: {p}"))
            .collect()
    }
}

/// Whether a worker with `labels` may run a job with `target` (none = any).
pub fn matches(target: Option<&Target>, labels: &Labels) -> bool {
    target.is_none_or(|t| t.matches(labels))
}

/// The mode of `target` (none = `one`).
pub fn mode(target: Option<&Target>) -> TargetMode {
    target.map(|t| t.mode).unwrap_or_default()
}

/// Every problem with a set of labels.
pub fn label_problems(labels: &Labels) -> Vec<String> {
    let mut problems = Vec::new();
    if labels.len() > MAX_LABELS {
        problems.push(format!("at most {MAX_LABELS} labels"));
    }
    for (k, v) in labels {
        if let Some(p) = part_problem(k) {
            problems.push(format!("key {k:?} {p}"));
        }
        if let Some(p) = part_problem(v) {
            problems.push(format!("value {v:?} of {k:?} {p}"));
        }
    }
    problems
}

fn part_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".to_string());
    }
    if s.len() > MAX_LABEL_LEN {
        return Some(format!("must be at most {MAX_LABEL_LEN} bytes"));
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| "may only contain ASCII letters, digits, `.`, `_` and `-`".to_string())
}

/// Parses `k=v,k=v` (the worker's `RCRON_WORKER_LABELS`, the CLI's
/// `--target`). Spaces around items are ignored; an empty string is no label.
pub fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("label {item:?} is not `key=value`"));
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if labels.insert(k.clone(), v).is_some() {
            return Err(format!("label {k:?} is given twice"));
        }
    }
    let problems = label_problems(&labels);
    if problems.is_empty() {
        Ok(labels)
    } else {
        Err(problems.join("; "))
    }
}

/// Formats labels as `k=v,k=v` (the inverse of [`parse_labels`]).
pub fn format_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The score of `worker` for tick `plan_ms` of `job`: the highest goes first.
pub fn score(job: &str, plan_ms: i64, worker: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    let plan = plan_ms.to_le_bytes();
    let parts: [&[u8]; 5] = [job.as_bytes(), &[0], &plan, &[0], worker.as_bytes()];
    for b in parts.into_iter().flatten() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    // FNV alone spreads nearby inputs poorly; SplitMix64's finish mixes
    // every bit into every other.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A live worker as the ranking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its id.
    pub id: &'a str,
    /// Every run slot taken: ranked after every worker with a free one.
    pub full: bool,
}

/// The position (0 = first) of `me` among `candidates` for tick `plan_ms`
/// of `job`: workers with a free slot first, then by score; ties by id so
/// that every worker breaks them alike. `me` must be among the candidates.
pub fn rank<'a>(job: &str, plan_ms: i64, me: &str, candidates: &[Candidate<'a>]) -> usize {
    let key = |c: &Candidate<'a>| (c.full, std::cmp::Reverse(score(job, plan_ms, c.id)), c.id);
    let Some(mine) = candidates.iter().find(|c| c.id == me) else {
        return candidates.len();
    };
    let mine = key(mine);
    candidates.iter().filter(|c| key(c) < mine).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> Labels {
        parse_labels(s).expect("labels")
    }

    #[test]
    fn labels_parse_and_format_round_trip() {
        let l = labels(" role=db , zone=eu-1");
        assert_eq!(l.get("role").map(String::as_str), Some("db"));
        assert_eq!(format_labels(&l), "role=db,zone=eu-1");
        assert_eq!(labels(""), Labels::new());
        assert!(
            parse_labels("role")
                .expect_err("no =")
                .contains("key=value")
        );
        assert!(
            parse_labels("a=1,a=2")
                .expect_err("twice")
                .contains("twice")
        );
        assert!(parse_labels("a=").expect_err("empty").contains("empty"));
        assert!(parse_labels("a b=1").expect_err("space").contains("ASCII"));
        assert!(parse_labels(&format!("a={}", "x".repeat(64))).is_err());
    }

    #[test]
    fn a_worker_matches_when_it_carries_every_label() {
        let t = Target {
            labels: labels("role=db"),
            mode: TargetMode::One,
        };
        assert!(t.matches(&labels("role=db,zone=eu")));
        assert!(!t.matches(&labels("role=web")));
        assert!(!t.matches(&Labels::new()));
        assert!(matches(None, &Labels::new()));
        assert!(Target::default().matches(&Labels::new()));
        assert!(Target::default().is_any());
    }

    #[test]
    fn every_worker_computes_the_same_order() {
        let ids: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
        let cands: Vec<Candidate<'_>> =
            ids.iter().map(|id| Candidate { id, full: false }).collect();
        for plan in [0, 1000, 2000, 1_700_000_000_000] {
            let mut ranks: Vec<usize> =
                ids.iter().map(|id| rank("job", plan, id, &cands)).collect();
            ranks.sort_unstable();
            assert_eq!(ranks, (0..8).collect::<Vec<_>>(), "a permutation at {plan}");
        }
        assert_eq!(rank("job", 0, "stranger", &cands), 8);
    }

    #[test]
    fn full_workers_go_last() {
        let cands = [
            Candidate {
                id: "a",
                full: true,
            },
            Candidate {
                id: "b",
                full: false,
            },
        ];
        for plan in 0..50 {
            assert_eq!(rank("j", plan * 1000, "b", &cands), 0);
            assert_eq!(rank("j", plan * 1000, "a", &cands), 1);
        }
    }

    #[test]
    fn first_places_spread_evenly() {
        let ids: Vec<String> = (0..32).map(|i| format!("host-{i}-{}", 1000 + i)).collect();
        let cands: Vec<Candidate<'_>> =
            ids.iter().map(|id| Candidate { id, full: false }).collect();
        let mut firsts = vec![0u32; ids.len()];
        let ticks = 32_000;
        for t in 0..ticks {
            let job = format!("job-{}", t % 100);
            let plan = (t / 100) as i64 * 1000;
            let first = ids
                .iter()
                .position(|id| rank(&job, plan, id, &cands) == 0)
                .expect("someone is first");
            firsts[first] += 1;
        }
        let mean = ticks as f64 / ids.len() as f64;
        let max = f64::from(*firsts.iter().max().expect("max"));
        let min = f64::from(*firsts.iter().min().expect("min"));
        assert!(max < mean * 1.2 && min > mean * 0.8, "{firsts:?}");
    }
}
