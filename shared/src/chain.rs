//! Chains between jobs (`onSuccess`, `onFailure`): the graph they form and
//! the cycles refused at save (ARCHITECTURE §4, "Chains").

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::{Job, JobName};

/// The chain fields of a stored job, read without decoding the rest (a
/// save reads every job's links to look for a cycle).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    /// The job.
    pub name: String,
    /// Started after a success.
    #[serde(default)]
    pub on_success: Vec<String>,
    /// Started after a failure.
    #[serde(default)]
    pub on_failure: Vec<String>,
}

impl Links {
    /// The links of a stored job document; None when it has no name.
    pub fn of_stored(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }
}

/// Which jobs each job starts, by name.
#[derive(Debug, Default)]
pub struct ChainGraph {
    next: BTreeMap<String, BTreeSet<String>>,
}

impl ChainGraph {
    /// The graph of `links` (stored jobs), with `job` as it is about to be
    /// saved in place of its stored version.
    pub fn with(links: impl IntoIterator<Item = Links>, job: &Job) -> Self {
        let mut next: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for l in links {
            if l.name == job.name.as_str() {
                continue;
            }
            next.entry(l.name)
                .or_default()
                .extend(l.on_success.into_iter().chain(l.on_failure));
        }
        next.insert(
            job.name.to_string(),
            job.on_success
                .iter()
                .chain(&job.on_failure)
                .map(|j| j.to_string())
                .collect(),
        );
        Self { next }
    }

    /// A path from `start` back to itself, if there is one
    /// (`[start, b, …, start]`).
    pub fn cycle_through(&self, start: &JobName) -> Option<Vec<String>> {
        let start = start.as_str();
        // Depth-first, remembering how each job was reached.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut stack: Vec<&str> = vec![start];
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        while let Some(job) = stack.pop() {
            for n in self.next.get(job).into_iter().flatten() {
                if n == start {
                    let mut path = vec![start.to_string()];
                    let mut at = job;
                    while at != start {
                        path.push(at.to_string());
                        at = came_from.get(at).copied().unwrap_or(start);
                    }
                    path.push(start.to_string());
                    // [start, job, …, start] → [start, …, job, start]
                    let last = path.len() - 1;
                    path[1..last].reverse();
                    return Some(path);
                }
                if seen.insert(n.as_str()) {
                    came_from.insert(n.as_str(), job);
                    stack.push(n.as_str());
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, on_success: &[&str]) -> Job {
        let doc = serde_json::json!({"name": name, "command": "true", "cronExpr": "@daily",
            "onSuccess": on_success});
        Job::from_json(doc.to_string().as_bytes()).expect("valid")
    }

    fn links(name: &str, on_success: &[&str], on_failure: &[&str]) -> Links {
        Links {
            name: name.into(),
            on_success: on_success.iter().map(|s| s.to_string()).collect(),
            on_failure: on_failure.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_cycle_through_the_saved_job_is_found_with_its_path() {
        let stored = vec![links("b", &["c"], &[]), links("c", &[], &["a"])];
        let a = job("a", &["b"]);
        let g = ChainGraph::with(stored, &a);
        assert_eq!(
            g.cycle_through(&a.name),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }

    #[test]
    fn a_chain_without_a_way_back_is_not_a_cycle() {
        let stored = vec![
            links("a", &["x"], &[]), // the stored version: replaced
            links("b", &["c"], &[]),
            links("c", &["d"], &[]),
            links("d", &["b"], &[]), // a cycle, but not through a
        ];
        let a = job("a", &["b"]);
        assert_eq!(ChainGraph::with(stored, &a).cycle_through(&a.name), None);
    }
}
