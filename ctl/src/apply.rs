//! `rcronctl apply` and `rcronctl export`: jobs kept as files.
//!
//! `apply` reads job files (JSON, or YAML by extension; one job or a list
//! each), checks every job with the same rules as the master before it
//! writes anything, compares them with the cluster's jobs field by field,
//! creates the new ones and patches what differs in the others (so fields
//! of a stored job this version does not know are kept; `--prune`: deletes
//! the jobs no file holds; `--dry-run`: only says what it would do). `export` writes each job of
//! the cluster to `<name>.json` in the form `apply` reads, without what
//! the master sets itself (`updatedAt`), so `export` then `apply --prune`
//! on the same directory changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use rcron_shared::Job;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::client::Client;
use crate::output::{Printer, warnings};

/// Extensions of job files in a directory.
const JOB_FILE_EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// The flags of `apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// A job file — JSON, or YAML when named `.yaml`/`.yml`; one job or a
    /// list of jobs — a directory of such files (not its subdirectories),
    /// or `-` for stdin (JSON or YAML). Repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
    files: Vec<PathBuf>,
    /// Also delete the cluster's jobs that no file holds (refused when the
    /// files hold no job at all).
    #[arg(long)]
    prune: bool,
    /// Print what would change (jobs created, updated with the fields that
    /// change, unchanged, deleted) and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The arguments of `export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Where to write `<name>.json` for each job (created if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// A job read from a file, and where.
struct Desired {
    job: Job,
    origin: String,
}

/// One field that differs: absent (`None`) means its default.
#[derive(Debug, Serialize)]
struct FieldChange {
    field: String,
    from: Option<Value>,
    to: Option<Value>,
}

#[derive(Debug, Serialize)]
struct Update {
    name: String,
    changes: Vec<FieldChange>,
}

/// What `apply` does (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Plan {
    dry_run: bool,
    created: Vec<String>,
    updated: Vec<Update>,
    unchanged: Vec<String>,
    deleted: Vec<String>,
}

/// Runs `apply`.
pub async fn apply(client: &Client, out: Printer, args: ApplyArgs) -> anyhow::Result<()> {
    let desired = read_all(&args.files)?;
    if args.prune && desired.is_empty() {
        bail!("the files hold no job: --prune would delete every job of the cluster; refusing");
    }
    let current: BTreeMap<String, Job> = client
        .jobs()
        .await?
        .body
        .jobs
        .into_iter()
        .map(|v| (v.job.name.to_string(), v.job))
        .collect();

    let mut plan = Plan {
        dry_run: args.dry_run,
        ..Plan::default()
    };
    let mut writes = Vec::new();
    for (name, d) in &desired {
        let write = match current.get(name) {
            None => {
                plan.created.push(name.clone());
                Write::Create(&d.job)
            }
            Some(now) => {
                let changes = field_changes(now, &d.job);
                if changes.is_empty() {
                    plan.unchanged.push(name.clone());
                    continue;
                }
                plan.updated.push(Update {
                    name: name.clone(),
                    changes,
                });
                Write::Update(
                    &d.job,
                    merge_patch(&stored_fields(now), &stored_fields(&d.job)),
                )
            }
        };
        // What is written must pass the master's rules of today (a stored
        // job whose expression fires no more may stay, not be saved again).
        d.job
            .validate()
            .with_context(|| format!("{}: job {name}", d.origin))?;
        writes.push(write);
    }
    if args.prune {
        plan.deleted = current
            .keys()
            .filter(|name| !desired.contains_key(*name))
            .cloned()
            .collect();
    }

    if !args.dry_run {
        let total = writes.len() + plan.deleted.len();
        let mut done = 0;
        for write in writes {
            let (job, answer) = match write {
                Write::Create(job) => (job, client.save_job(job).await.map(|a| a.body.warnings)),
                Write::Update(job, fields) => (
                    job,
                    client
                        .patch_job(job.name.as_str(), &fields)
                        .await
                        .map(|a| a.body.warnings),
                ),
            };
            let found = answer.with_context(|| {
                format!("saving job {} ({done} of {total} changes made)", job.name)
            })?;
            let named: Vec<String> = found.iter().map(|w| format!("{}: {w}", job.name)).collect();
            warnings(&named);
            done += 1;
        }
        for name in &plan.deleted {
            client
                .delete_job(name)
                .await
                .with_context(|| format!("deleting job {name} ({done} of {total} changes made)"))?;
            done += 1;
        }
    }

    if out.is_json() {
        out.document(&serde_json::to_value(&plan)?);
    } else {
        println!("{}", plan_text(&plan));
    }
    Ok(())
}

/// Runs `export`.
pub async fn export(client: &Client, out: Printer, args: ExportArgs) -> anyhow::Result<()> {
    let jobs = client.jobs().await?.body.jobs;
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = BTreeSet::new();
    for view in jobs {
        // Set by the master on every write: not part of what a user keeps.
        let job = Job {
            updated_at: None,
            ..view.job
        };
        let path = dir.join(format!("{}.json", job.name));
        let mut text = serde_json::to_string_pretty(&job)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.insert(path);
    }
    // Job files this export did not write would be applied along with it.
    for path in job_files(dir)? {
        if !written.contains(&path) {
            eprintln!(
                "warning: {} is not a job of the cluster; `rcronctl apply --prune -f {}` would apply it too",
                path.display(),
                dir.display()
            );
        }
    }
    let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    if out.is_json() {
        out.document(&serde_json::json!({ "dir": dir.display().to_string(), "files": files }));
    } else {
        let jobs = if files.len() == 1 { "job" } else { "jobs" };
        println!("exported {} {jobs} to {}", files.len(), dir.display());
    }
    Ok(())
}

/// Every job of `paths`, by name; every problem in them at once.
fn read_all(paths: &[PathBuf]) -> anyhow::Result<BTreeMap<String, Desired>> {
    let mut problems = Vec::new();
    let mut jobs: BTreeMap<String, Desired> = BTreeMap::new();
    for path in paths {
        let files = if path.as_os_str() == "-" || !path.is_dir() {
            vec![path.clone()]
        } else {
            job_files(path)?
        };
        for file in files {
            let origin = if file.as_os_str() == "-" {
                "stdin".to_string()
            } else {
                file.display().to_string()
            };
            let documents = match read_documents(&file) {
                Ok(documents) => documents,
                Err(e) => {
                    problems.push(format!("{origin}: {e:#}"));
                    continue;
                }
            };
            for (i, document) in documents.iter().enumerate() {
                let which = match document.get("name").and_then(Value::as_str) {
                    Some(name) => format!("job {name}"),
                    None => format!("job #{}", i + 1),
                };
                // Read as the master reads stored jobs: a job whose
                // expression fires no more is still a job.
                let bytes = serde_json::to_vec(document)?;
                match Job::from_stored(&bytes) {
                    Err(e) => problems.push(format!("{origin}: {which}: {e}")),
                    Ok(job) => {
                        let name = job.name.to_string();
                        if let Some(other) = jobs.get(&name) {
                            problems.push(format!(
                                "job {name} is in both {} and {origin}",
                                other.origin
                            ));
                        } else {
                            jobs.insert(
                                name,
                                Desired {
                                    job: Job {
                                        updated_at: None,
                                        ..job
                                    },
                                    origin: origin.clone(),
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("nothing applied:\n  - {}", problems.join("\n  - "));
    }
    Ok(jobs)
}

/// The job documents of one file: an object is one job, an array a list.
fn read_documents(path: &Path) -> anyhow::Result<Vec<Map<String, Value>>> {
    let (text, yaml) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        // JSON, else YAML.
        let yaml = serde_json::from_str::<Value>(&text).is_err();
        (text, yaml)
    } else {
        let text = std::fs::read_to_string(path).context("cannot read")?;
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        (text, yaml)
    };
    let value: Value = if yaml {
        serde_yaml::from_str(&text).context("not YAML")?
    } else {
        serde_json::from_str(&text).context("not JSON")?
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(job) => Ok(job),
            _ => bail!("item #{} is not a job (a JSON object)", i + 1),
        })
        .collect()
}

/// The job files directly in `dir`, sorted.
fn job_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let is_job_file = path.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| JOB_FILE_EXTENSIONS.contains(&e));
        if is_job_file {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A write `apply` makes.
enum Write<'a> {
    /// A new job, saved whole.
    Create(&'a Job),
    /// A job that differs, changed by a patch of what differs: fields of
    /// the stored job this client does not know are kept.
    Update(&'a Job, Map<String, Value>),
}

/// A job's fields as stored (defaults left out), without what the master
/// sets itself.
fn stored_fields(job: &Job) -> Map<String, Value> {
    let job = Job {
        updated_at: None,
        ..job.clone()
    };
    match serde_json::to_value(job) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    }
}

/// The JSON merge patch (RFC 7396) that makes `from` into `to`: what
/// differs, `null` for what `to` lacks; objects (a target's labels) are
/// patched key by key, since a patch merges them.
fn merge_patch(from: &Map<String, Value>, to: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in from.keys().filter(|k| !to.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in to {
        match (from.get(key), value) {
            (Some(old), new) if old == new => {}
            (Some(Value::Object(old)), Value::Object(new)) => {
                patch.insert(key.clone(), Value::Object(merge_patch(old, new)));
            }
            _ => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    patch
}

/// The fields in which `to` differs from `from`, as stored (what the
/// master sets itself left out).
fn field_changes(from: &Job, to: &Job) -> Vec<FieldChange> {
    let (from, to) = (stored_fields(from), stored_fields(to));
    let names: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    names
        .into_iter()
        .filter(|name| from.get(*name) != to.get(*name))
        .map(|name| FieldChange {
            field: name.clone(),
            from: from.get(name).cloned(),
            to: to.get(name).cloned(),
        })
        .collect()
}

fn plan_text(plan: &Plan) -> String {
    let mut lines = Vec::new();
    if plan.dry_run {
        lines.push("dry run: nothing is written".to_string());
    }
    let value = |v: &Option<Value>| v.as_ref().map_or("(default)".to_string(), Value::to_string);
    lines.extend(plan.created.iter().map(|n| format!("created    {n}")));
    for u in &plan.updated {
        lines.push(format!("updated    {}", u.name));
        for c in &u.changes {
            lines.push(format!(
                "             {}: {} → {}",
                c.field,
                value(&c.from),
                value(&c.to)
            ));
        }
    }
    lines.extend(plan.unchanged.iter().map(|n| format!("unchanged  {n}")));
    lines.extend(plan.deleted.iter().map(|n| format!("deleted    {n}")));
    lines.push(format!(
        "{} created, {} updated, {} unchanged, {} deleted",
        plan.created.len(),
        plan.updated.len(),
        plan.unchanged.len(),
        plan.deleted.len()
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::merge_patch;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_merge_patch_names_what_differs_and_nulls_what_is_gone() {
        let from = object(json!({"name": "j", "command": "a", "timeoutSecs": 5,
            "target": {"labels": {"role": "db", "zone": "eu"}, "mode": "one"}}));
        let to = object(json!({"name": "j", "command": "b",
            "target": {"labels": {"role": "db", "gpu": "yes"}, "mode": "one"}}));
        assert_eq!(
            Value::Object(merge_patch(&from, &to)),
            json!({"command": "b", "timeoutSecs": null,
                   "target": {"labels": {"zone": null, "gpu": "yes"}}})
        );
        assert!(merge_patch(&to, &to).is_empty());
    }
}
