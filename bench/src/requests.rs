//! Run requests and chains (ARCHITECTURE §4, "Run requests", "Chains"):
//! how soon a run-now request starts, how soon a chained job starts after
//! its parent ended, and what each costs etcd, at several worker counts
//! (ranking on, every setting at its default).
//!
//! Each worker count starts its own workers in this process ([`Workers`]:
//! fresh prefix and database, etcd compacted and defragmented first) and
//! saves paused jobs running `true` (`disabled`: no tick fires them, only
//! requests run them). Three phases follow, one after the other:
//!
//! 1. run-now requests put straight into etcd (as the master's
//!    `POST /api/v1/jobs/{name}/run` does), one per job, spread evenly
//!    over time, for `concurrency: allow` jobs;
//! 2. the same for `concurrency: forbid` jobs (the claim also takes the
//!    job's lock);
//! 3. chains `chain-0 → chain-1 → …` (`onSuccess`), the first job
//!    requested again each time the previous chain has ended.
//!
//! A phase's window runs from its first request until etcd holds no
//! request and no lock, plus a second for the workers' last registration
//! updates. Over it: etcd's own counters (`/metrics`: transactions and
//! raft proposals, whoever caused them) and every write under the prefix,
//! read back from etcd's history and sorted by what it did (one revision
//! per write; a transaction whose compare failed writes nothing, so
//! proposals − writes counts those and lease operations). Latencies, runs
//! and duplicates come from the run log once the workers have stopped
//! (their log sinks flush on the way out).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use mongodb::bson::{Document, doc};
use rcron_shared::placement::{self, Candidate};
use rcron_shared::{JobName, Keys, RunParams, RunRequest};

use crate::cluster::{
    Services, Workers, compact_and_defragment, connect, etcd_metric, millis, p50_p99,
};
use crate::placement::{PROPOSALS, TXN_TOTAL};

/// Longest a phase may take to drain after its last request.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Longest one chain may take before the next is requested anyway.
const CHAIN_LIMIT: Duration = Duration::from_secs(30);

/// How often etcd is polled for requests and locks left.
const POLL: Duration = Duration::from_millis(20);

/// What the benchmark asks for, per worker count.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    /// Run-now requests per concurrency mode (one job each).
    pub(crate) requests: usize,
    /// Run-now requests put per second.
    pub(crate) rate: f64,
    /// Chains requested, one after the other.
    pub(crate) chains: usize,
    /// Jobs per chain (hops = jobs − 1).
    pub(crate) chain_jobs: usize,
}

/// Writes (etcd revisions) in a window, by what each did.
#[derive(Default, Clone, Copy)]
pub(crate) struct Writes {
    /// The benchmark's own puts of unclaimed requests (run-now; the first
    /// job of each chain).
    pub(crate) requests: u64,
    /// A request rewritten `claimed` (and, for `forbid`, the lock put).
    pub(crate) claims: u64,
    /// A run's end: its request deleted (and the chained requests and the
    /// `/cron/chained/<runId>` marker put).
    pub(crate) ends: u64,
    /// A lock deleted on its own (a `forbid` run's release).
    pub(crate) releases: u64,
    /// A worker's registration rewritten.
    pub(crate) registrations: u64,
    /// Anything else (a claim handed back: the request rewritten unclaimed).
    pub(crate) other: u64,
}

impl Writes {
    pub(crate) fn total(&self) -> u64 {
        self.requests + self.claims + self.ends + self.releases + self.registrations + self.other
    }
}

/// What etcd did during one phase.
#[derive(Default, Clone, Copy)]
pub(crate) struct EtcdWork {
    /// `etcd_mvcc_txn_total` delta. etcd counts a transaction only when
    /// its compares, or its operations, number more than one, and then once
    /// for each side (etcd 3.4, measured: 1 compare + 1 put → 0, 2
    /// compares + 2 puts → 2).
    pub(crate) txns: f64,
    /// `etcd_server_proposals_committed_total` delta: every write request,
    /// whether it changed anything or not.
    pub(crate) proposals: f64,
    pub(crate) writes: Writes,
}

impl EtcdWork {
    /// Proposals that wrote nothing: transactions whose compare failed
    /// (a claim another worker won), lease grants and revokes.
    pub(crate) fn idle_proposals(&self) -> f64 {
        self.proposals - self.writes.total() as f64
    }
}

/// A run-now phase at one worker count.
pub(crate) struct RunNowRow {
    pub(crate) workers: usize,
    /// `allow` or `forbid`.
    pub(crate) concurrency: &'static str,
    pub(crate) requested: u64,
    /// Requests with at least one run.
    pub(crate) ran: u64,
    /// Runs beyond the first of a request.
    pub(crate) duplicates: u64,
    /// Requests with no run.
    pub(crate) lost: u64,
    /// Runs whose status is not `success`.
    pub(crate) not_success: u64,
    /// Requests still in etcd when the phase gave up waiting.
    pub(crate) left: u64,
    /// `requestedAt` → the run's `startTime`, ms: p50, p99, max.
    pub(crate) latency_ms: (i64, i64, i64),
    /// Runs per worker: fewest, most (workers that ran nothing count).
    pub(crate) runs_per_worker: (u64, u64),
    pub(crate) etcd: EtcdWork,
}

/// The chain phase at one worker count.
pub(crate) struct ChainRow {
    pub(crate) workers: usize,
    pub(crate) chains: u64,
    pub(crate) chain_jobs: u64,
    /// Chains whose every job ran exactly once, in order.
    pub(crate) complete: u64,
    /// Runs beyond the first for the same job and parent run.
    pub(crate) duplicates: u64,
    /// Runs whose status is not `success`.
    pub(crate) not_success: u64,
    /// Chains not finished within [`CHAIN_LIMIT`].
    pub(crate) stalled: u64,
    /// Hops measured (a chained run and its parent both logged).
    pub(crate) hops: u64,
    /// Parent's `endTime` → child's `startTime`, ms: p50, p99, max.
    pub(crate) hop_ms: (i64, i64, i64),
    /// First job's `requestedAt` → last job's `endTime`, ms: p50, max.
    pub(crate) chain_ms: (i64, i64),
    pub(crate) etcd: EtcdWork,
}

impl ChainRow {
    /// Runs the phase asked for (each chain's jobs).
    pub(crate) fn runs(&self) -> u64 {
        self.chains * self.chain_jobs
    }
}

/// Both run-now phases and the chain phase at `count` workers.
pub(crate) async fn measure(
    s: &Services,
    http: &reqwest::Client,
    count: usize,
    load: Load,
) -> anyhow::Result<(Vec<RunNowRow>, ChainRow)> {
    let mut etcd = connect(&s.etcd).await?;
    compact_and_defragment(etcd.clone()).await?;
    let workers = Workers::start(s, count, |_| {});
    workers
        .registered(&mut etcd, Duration::from_secs(30))
        .await?;
    let keys = Keys::new(workers.prefix())?;
    for concurrency in ["allow", "forbid"] {
        for i in 0..load.requests {
            put_job(
                &mut etcd,
                &keys,
                &format!("now-{concurrency}-{i}"),
                concurrency,
                None,
            )
            .await?;
        }
    }
    for i in 0..load.chain_jobs {
        let next = (i + 1 < load.chain_jobs).then(|| format!("chain-{}", i + 1));
        put_job(
            &mut etcd,
            &keys,
            &format!("chain-{i}"),
            "forbid",
            next.as_deref(),
        )
        .await?;
    }
    // Every worker's mirror holds every job before the first request.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut phases = Vec::new();
    for concurrency in ["allow", "forbid"] {
        let window = Window::open(&mut etcd, http, s).await?;
        let started = Instant::now();
        let mut sent = Vec::with_capacity(load.requests);
        for i in 0..load.requests {
            // Evenly spread: the i-th request at i / rate seconds.
            let at = started + Duration::from_secs_f64(i as f64 / load.rate.max(0.001));
            tokio::time::sleep_until(at.into()).await;
            let job = format!("now-{concurrency}-{i}");
            sent.push(request(&mut etcd, &keys, &job, RunParams::default()).await?);
        }
        let left = drained(&mut etcd, &keys, None, DRAIN_LIMIT).await?;
        let work = window.close(&mut etcd, http, s, &keys).await?;
        phases.push((concurrency, sent, left, work));
    }

    let window = Window::open(&mut etcd, http, s).await?;
    let mut chain_requests = Vec::with_capacity(load.chains);
    let mut stalled = 0;
    let hops_per_chain = load.chain_jobs.saturating_sub(1) as i64;
    for i in 0..load.chains {
        let mut params = RunParams::default();
        params.env.insert("BENCH_CHAIN".into(), i.to_string());
        chain_requests.push(
            request(&mut etcd, &keys, "chain-0", params)
                .await?
                .requested_at,
        );
        let markers = hops_per_chain * (i as i64 + 1);
        if drained(&mut etcd, &keys, Some(markers), CHAIN_LIMIT).await? > 0 {
            stalled += 1;
        }
    }
    let chain_work = window.close(&mut etcd, http, s, &keys).await?;

    let ids = workers.ids.clone();
    let docs = workers.stop_matching(s, doc! {}).await?;
    let mut by_job: HashMap<&str, Vec<&Document>> = HashMap::new();
    for d in &docs {
        by_job
            .entry(d.get_str("jobName").unwrap_or_default())
            .or_default()
            .push(d);
    }

    let mut rows = Vec::new();
    for (concurrency, sent, left, etcd_work) in phases {
        let mut per_worker: HashMap<&str, u64> = ids.iter().map(|id| (id.as_str(), 0)).collect();
        let (mut ran, mut duplicates, mut not_success) = (0, 0, 0);
        let mut latencies = Vec::with_capacity(sent.len());
        for r in &sent {
            let runs = by_job.get(r.job.as_str()).map_or(&[][..], Vec::as_slice);
            if let Some(first) = runs.iter().min_by_key(|d| millis(d, "startTime")) {
                ran += 1;
                let latency = millis(first, "startTime") - r.requested_at;
                latencies.push(latency);
                if latency >= SLOW_MS {
                    slow(r, first, latency, &ids);
                }
            }
            duplicates += runs.len().saturating_sub(1) as u64;
            for d in runs {
                not_success += u64::from(d.get_str("status").unwrap_or_default() != "success");
                *per_worker
                    .entry(d.get_str("worker").unwrap_or_default())
                    .or_default() += 1;
            }
        }
        rows.push(RunNowRow {
            workers: count,
            concurrency,
            requested: sent.len() as u64,
            ran,
            duplicates,
            lost: sent.len() as u64 - ran,
            not_success,
            left,
            latency_ms: p50_p99_max(latencies),
            runs_per_worker: (
                per_worker.values().copied().min().unwrap_or_default(),
                per_worker.values().copied().max().unwrap_or_default(),
            ),
            etcd: etcd_work,
        });
    }

    let chain = chains(&docs, &chain_requests, load.chain_jobs);
    Ok((
        rows,
        ChainRow {
            workers: count,
            chains: load.chains as u64,
            chain_jobs: load.chain_jobs as u64,
            stalled,
            etcd: chain_work,
            ..chain
        },
    ))
}

/// Follows each chain through the run log: from the first job's run
/// (found by its `BENCH_CHAIN` parameter) down the `triggeredBy` links.
fn chains(docs: &[Document], requested_at: &[i64], chain_jobs: usize) -> ChainRow {
    let chain_docs: Vec<&Document> = docs
        .iter()
        .filter(|d| d.get_str("jobName").is_ok_and(|j| j.starts_with("chain-")))
        .collect();
    let parent_of = |d: &Document| {
        d.get_document("triggeredBy")
            .ok()
            .and_then(|t| t.get_str("runId").ok())
            .map(str::to_string)
    };
    let chain_index = |d: &Document| {
        d.get_document("params")
            .ok()
            .and_then(|p| p.get_document("env").ok())
            .and_then(|e| e.get_str("BENCH_CHAIN").ok())
            .and_then(|i| i.parse::<usize>().ok())
    };
    let mut children: HashMap<String, Vec<&Document>> = HashMap::new();
    let mut firsts: HashMap<usize, Vec<&Document>> = HashMap::new();
    for d in &chain_docs {
        if let Some(parent) = parent_of(d) {
            children.entry(parent).or_default().push(d);
        } else if let Some(i) = chain_index(d) {
            firsts.entry(i).or_default().push(d);
        }
    }
    let duplicates = children
        .values()
        .chain(firsts.values())
        .map(|runs| runs.len().saturating_sub(1) as u64)
        .sum();
    let (mut complete, mut hops, mut totals) = (0, Vec::new(), Vec::new());
    for (i, requested) in requested_at.iter().enumerate() {
        let Some(mut run) = firsts.get(&i).and_then(|r| r.first().copied()) else {
            continue;
        };
        let mut whole = firsts[&i].len() == 1;
        for _ in 1..chain_jobs {
            let kids = run
                .get_str("runId")
                .ok()
                .and_then(|id| children.get(id))
                .map_or(&[][..], Vec::as_slice);
            let Some(kid) = kids.first() else {
                whole = false;
                break;
            };
            whole &= kids.len() == 1;
            hops.push(millis(kid, "startTime") - millis(run, "endTime"));
            run = kid;
        }
        let last = format!("chain-{}", chain_jobs - 1);
        if whole && run.get_str("jobName") == Ok(last.as_str()) {
            complete += 1;
            totals.push(millis(run, "endTime") - requested);
        }
    }
    let (p50, _, max) = p50_p99_max(totals);
    ChainRow {
        workers: 0,
        chains: 0,
        chain_jobs: 0,
        complete,
        duplicates,
        not_success: chain_docs
            .iter()
            .filter(|d| d.get_str("status").unwrap_or_default() != "success")
            .count() as u64,
        stalled: 0,
        hops: hops.len() as u64,
        hop_ms: p50_p99_max(hops),
        chain_ms: (p50, max),
        etcd: EtcdWork::default(),
    }
}

/// A run-now latency worth a line of its own.
const SLOW_MS: i64 = 100;

/// Prints what the run log says of a slow request: who ran it and that
/// worker's rank for it (0 = first to try).
fn slow(r: &Sent, run: &Document, latency: i64, ids: &[String]) {
    let worker = run.get_str("worker").unwrap_or_default();
    let candidates: Vec<Candidate<'_>> =
        ids.iter().map(|id| Candidate { id, full: false }).collect();
    let ranks: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                "{id}:{}",
                placement::rank(&r.job, r.revision, id, &candidates)
            )
        })
        .collect();
    println!(
        "        slow: {} requested {} (revision {}), started {latency} ms later on {worker}; ranks {}",
        r.job,
        r.requested_at,
        r.revision,
        ranks.join(" ")
    );
}

fn p50_p99_max(v: Vec<i64>) -> (i64, i64, i64) {
    let max = v.iter().copied().max().unwrap_or(-1);
    let (p50, p99) = p50_p99(v);
    (p50, p99, max)
}

/// Saves paused job `name` running `true`, chaining `next` on success.
async fn put_job(
    etcd: &mut Client,
    keys: &Keys,
    name: &str,
    concurrency: &str,
    next: Option<&str>,
) -> anyhow::Result<()> {
    let on_success = next.map_or(String::new(), |n| format!(r#","onSuccess":["{n}"]"#));
    etcd.put(
        keys.job(&JobName::new(name)?),
        format!(
            r#"{{"name":"{name}","command":"true","cronExpr":"* * * * * * *","disabled":true,"concurrency":"{concurrency}"{on_success}}}"#
        ),
        None,
    )
    .await?;
    Ok(())
}

/// A run-now request the benchmark put.
struct Sent {
    job: String,
    requested_at: i64,
    /// The revision of its put, which seeds the workers' ranking.
    revision: i64,
}

/// Puts a run-now request of `job`, as the master's API does.
async fn request(
    etcd: &mut Client,
    keys: &Keys,
    job: &str,
    params: RunParams,
) -> anyhow::Result<Sent> {
    let now = chrono::Utc::now().timestamp_millis();
    let r = RunRequest::manual(
        JobName::new(job)?,
        params,
        now,
        rcron_shared::request::DEFAULT_DEADLINE_SECS,
    );
    let key = keys
        .run_request(&r.job, &r.id)
        .ok_or_else(|| anyhow::anyhow!("{} cannot be a request id", r.id))?;
    let resp = etcd.put(key, r.to_json(), None).await?;
    Ok(Sent {
        job: job.to_string(),
        requested_at: now,
        revision: resp.header().map_or(0, |h| h.revision()),
    })
}

async fn count(etcd: &mut Client, dir: &str) -> anyhow::Result<i64> {
    Ok(etcd
        .get(dir, Some(GetOptions::new().with_prefix().with_count_only()))
        .await?
        .count())
}

/// Waits until etcd holds no run request and no lock (and, with
/// `markers`, at least that many chain markers), at most `limit`; returns
/// how many requests were left.
async fn drained(
    etcd: &mut Client,
    keys: &Keys,
    markers: Option<i64>,
    limit: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + limit;
    loop {
        let requests = count(etcd, &keys.run_dir()).await?;
        let locks = count(etcd, &keys.lock_dir()).await?;
        let chained = match markers {
            Some(want) => count(etcd, &keys.chained_dir()).await? >= want,
            None => true,
        };
        if (requests == 0 && locks == 0 && chained) || Instant::now() >= deadline {
            return Ok(requests as u64);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// etcd's counters and revision at the start of a phase.
struct Window {
    txns: f64,
    proposals: f64,
    revision: i64,
}

impl Window {
    async fn open(etcd: &mut Client, http: &reqwest::Client, s: &Services) -> anyhow::Result<Self> {
        Ok(Self {
            txns: etcd_metric(http, &s.etcd, TXN_TOTAL).await?,
            proposals: etcd_metric(http, &s.etcd, PROPOSALS).await?,
            revision: revision(etcd).await?,
        })
    }

    /// Lets the workers' registration updates of the phase's last runs
    /// land, reads the counters and sorts every write since the start.
    async fn close(
        self,
        etcd: &mut Client,
        http: &reqwest::Client,
        s: &Services,
        keys: &Keys,
    ) -> anyhow::Result<EtcdWork> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let txns = etcd_metric(http, &s.etcd, TXN_TOTAL).await? - self.txns;
        let proposals = etcd_metric(http, &s.etcd, PROPOSALS).await? - self.proposals;
        let last = revision(etcd).await?;
        Ok(EtcdWork {
            txns,
            proposals,
            writes: writes(etcd, keys, self.revision, last).await?,
        })
    }
}

async fn revision(etcd: &mut Client) -> anyhow::Result<i64> {
    Ok(etcd
        .get("/", Some(GetOptions::new().with_count_only()))
        .await?
        .header()
        .map_or(0, |h| h.revision()))
}

/// Every write after revision `from` up to `to`, from etcd's history
/// (replayed by a watch), sorted by what it did.
async fn writes(etcd: &mut Client, keys: &Keys, from: i64, to: i64) -> anyhow::Result<Writes> {
    let mut out = Writes::default();
    if to <= from {
        return Ok(out);
    }
    // Every write in etcd during a phase is this benchmark's or its
    // workers', all under the prefix.
    let mut stream = etcd
        .watch(
            keys.prefix(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(from + 1),
            ),
        )
        .await?;
    // Events of one revision (one transaction) arrive together, in order.
    let mut current: Option<(i64, Vec<Change>)> = None;
    let mut seen_last = false;
    while !seen_last {
        let Ok(resp) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await else {
            // Only if something wrote outside the prefix last.
            eprintln!("etcd's history stopped before revision {to}: writes counted so far");
            break;
        };
        let resp =
            resp?.ok_or_else(|| anyhow::anyhow!("etcd's history ended before revision {to}"))?;
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let rev = kv.mod_revision();
            if rev > to {
                seen_last = true;
                break;
            }
            seen_last |= rev == to;
            let change = Change::of(keys, event.event_type(), kv);
            match &mut current {
                Some((r, changes)) if *r == rev => changes.push(change),
                _ => {
                    if let Some((_, changes)) = current.replace((rev, vec![change])) {
                        out.count(&changes);
                    }
                }
            }
        }
    }
    if let Some((_, changes)) = current {
        out.count(&changes);
    }
    Ok(out)
}

/// One key a write changed, by kind.
#[derive(PartialEq, Eq)]
enum Change {
    /// `fresh`: the key's first version (a new request, not one handed
    /// back by rewriting it unclaimed).
    RequestPut {
        claimed: bool,
        fresh: bool,
    },
    RequestDelete,
    ChainMarker,
    LockPut,
    LockDelete,
    Registration,
    Other,
}

impl Change {
    fn of(keys: &Keys, kind: EventType, kv: &etcd_client::KeyValue) -> Self {
        let (put, key) = (kind == EventType::Put, kv.key());
        if keys.parse_run_request(key).is_some() {
            return match (put, RunRequest::from_stored(kv.value())) {
                (true, Some(r)) => Self::RequestPut {
                    claimed: r.claimed.is_some(),
                    fresh: kv.version() == 1,
                },
                (true, None) => Self::Other,
                (false, _) => Self::RequestDelete,
            };
        }
        if key.starts_with(keys.chained_dir().as_bytes()) {
            return Self::ChainMarker;
        }
        if keys.parse_lock(key).is_some() {
            return if put { Self::LockPut } else { Self::LockDelete };
        }
        if keys.parse_worker(key).is_some() && put {
            return Self::Registration;
        }
        Self::Other
    }
}

impl Writes {
    /// Counts one write (one revision) that made `changes`.
    fn count(&mut self, changes: &[Change]) {
        let has = |c: &Change| changes.contains(c);
        let slot = if has(&Change::ChainMarker) || has(&Change::RequestDelete) {
            &mut self.ends
        } else if changes
            .iter()
            .any(|c| matches!(c, Change::RequestPut { claimed: true, .. }))
        {
            &mut self.claims
        } else if has(&Change::RequestPut {
            claimed: false,
            fresh: true,
        }) {
            &mut self.requests
        } else if changes.iter().all(|c| *c == Change::LockDelete) {
            &mut self.releases
        } else if changes.iter().all(|c| *c == Change::Registration) {
            &mut self.registrations
        } else {
            &mut self.other
        };
        *slot += 1;
    }
}
