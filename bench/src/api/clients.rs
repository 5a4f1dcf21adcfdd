//! The load side of the API benchmark: concurrent clients repeating one
//! kind of request for a while ([`hammer`]), their latencies as a row
//! ([`ApiRow`]), and the CPU time the master, etcd and the store spent on
//! them (from `/proc`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::store::quiesce;
use super::{ApiRow, describe};
use crate::procfs::{Cpu, cpu_secs};

/// An answer other than 2xx.
#[derive(Debug)]
pub(super) struct HttpStatus {
    status: u16,
    text: String,
}

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.text)
    }
}

impl std::error::Error for HttpStatus {}

/// Latencies of the requests that succeeded and the failures.
#[derive(Default)]
pub(super) struct Outcomes {
    ok: Vec<Duration>,
    errors: usize,
    unavailable: usize,
    first_error: Option<String>,
}

impl Outcomes {
    pub(super) fn add(&mut self, took: Duration, result: anyhow::Result<()>) {
        match result {
            Ok(()) => self.ok.push(took),
            Err(e) => {
                self.errors += 1;
                if e.downcast_ref::<HttpStatus>()
                    .is_some_and(|s| s.status == 503)
                {
                    self.unavailable += 1;
                }
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    pub(super) fn merge(&mut self, other: Outcomes) {
        self.ok.extend(other.ok);
        self.errors += other.errors;
        self.unavailable += other.unavailable;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

pub(super) fn row(what: &str, outcomes: Outcomes, wall: Duration) -> ApiRow {
    let mut lat = outcomes.ok;
    lat.sort_unstable();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    ApiRow {
        what: what.to_string(),
        requests: lat.len() + outcomes.errors,
        errors: outcomes.errors,
        unavailable: outcomes.unavailable,
        first_error: outcomes.first_error,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        per_sec: lat.len() as f64 / wall.as_secs_f64(),
        cpu_ms: [f64::NAN; 3],
    }
}

/// Runs `clients` loops of `request(client, i)` until `secs` have passed
/// and every client has made `min_each` requests; returns what happened.
pub(super) async fn hammer<F, Fut>(
    clients: usize,
    secs: u64,
    min_each: usize,
    request: F,
) -> anyhow::Result<(Outcomes, Duration)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut outcomes = Outcomes::default();
                let mut i = 0;
                loop {
                    let t = Instant::now();
                    let result = request(c, i).await;
                    outcomes.add(t.elapsed(), result);
                    i += 1;
                    if Instant::now() >= until && i >= min_each {
                        return outcomes;
                    }
                }
            })
        })
        .collect();
    let mut all = Outcomes::default();
    for t in tasks {
        all.merge(t.await?);
    }
    Ok((all, started.elapsed()))
}

/// A pseudo-random pick in `0..n` for request `i` of client `c` (spread so
/// that clients do not ask for the same thing at once).
pub(super) fn pick(c: usize, i: usize, n: usize) -> usize {
    (c.wrapping_mul(7919) + i.wrapping_mul(104_729)) % n.max(1)
}

/// The processes whose CPU time a row accounts.
#[derive(Clone, Copy)]
pub(super) struct Pids {
    pub(super) master: u32,
    pub(super) etcd: Option<u32>,
    pub(super) store: Option<u32>,
}

impl Pids {
    pub(super) fn cpu(&self) -> [f64; 3] {
        let of = |p: Option<u32>| p.map_or(f64::NAN, |p| cpu_secs(&p.to_string(), Cpu::Own));
        [of(Some(self.master)), of(self.etcd), of(self.store)]
    }
}

/// The HTTP side: a client, the master's address, the load.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) clients: usize,
    pub(super) secs: u64,
    pub(super) pids: Pids,
    /// CPU seconds per second each process spends with no request (the
    /// leader's loops), taken off the per-request figures.
    pub(super) idle: [f64; 3],
    /// Requests each client makes at least.
    pub(super) min_each: usize,
}

impl Ctx {
    /// The same with one client making at least 3 requests: the time of a
    /// request alone.
    pub(super) fn alone(&self) -> Self {
        Self {
            clients: 1,
            min_each: 3,
            ..self.clone()
        }
    }

    /// `clients` clients GETting `path(client, i)` for `secs` seconds: one row.
    pub(super) async fn get_row<P>(&self, what: &str, path: P) -> anyhow::Result<ApiRow>
    where
        P: Fn(usize, usize) -> String + Send + Sync + 'static,
    {
        let path = Arc::new(path);
        let (http, base) = (self.http.clone(), self.base.clone());
        let request = move |c: usize, i: usize| {
            let (http, url) = (http.clone(), format!("{base}{}", path(c, i)));
            async move {
                let resp = http.get(url).send().await?;
                expect_ok(resp).await.map(drop)
            }
        };
        quiesce(self.pids.store).await;
        let before = self.pids.cpu();
        let (outcomes, wall) = hammer(self.clients, self.secs, self.min_each, request).await?;
        let after = self.pids.cpu();
        let mut r = row(what, outcomes, wall);
        let ok = (r.requests - r.errors).max(1) as f64;
        for k in 0..3 {
            let busy = after[k] - before[k] - self.idle[k] * wall.as_secs_f64();
            r.cpu_ms[k] = busy.max(0.0) * 1000.0 / ok;
        }
        println!("  {}", describe(&r));
        Ok(r)
    }

    pub(super) async fn json(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        let body = expect_ok(resp).await?;
        Ok(serde_json::from_slice(body.as_ref())?)
    }
}

pub(super) async fn expect_ok(resp: reqwest::Response) -> anyhow::Result<impl AsRef<[u8]>> {
    let status = resp.status();
    let url = resp.url().as_str().to_string();
    let body = resp.bytes().await?;
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(HttpStatus {
            status: status.as_u16(),
            text: format!("GET {url}: {status} {text}"),
        }
        .into());
    }
    Ok(body)
}
