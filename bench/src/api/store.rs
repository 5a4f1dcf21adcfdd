//! The log store through its own driver client: the find and the count
//! the master sends for a log page (and the find of one run), timed with
//! the same clients as the API, for the store's own time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::{Collection, Database};
use rcron_shared::runlog;

use super::clients::{hammer, row};
use super::describe;
use super::records::StoreQuery;
use super::{ApiRow, LOG_PAGE};
use crate::procfs::{Cpu, cpu_secs};

/// The log store through its own driver.
#[derive(Clone)]
pub(super) struct Store {
    pub(super) db: Database,
    pub(super) coll: Collection<Document>,
    pub(super) clients: usize,
    pub(super) secs: u64,
    pub(super) min_each: usize,
    pub(super) pid: Option<u32>,
}

impl Store {
    pub(super) async fn find(&self, q: &StoreQuery) -> anyhow::Result<()> {
        self.find_with(q.filters().1).await
    }

    /// The page's find with `filter`.
    async fn find_with(&self, filter: Document) -> anyhow::Result<()> {
        let docs: Vec<Document> = self
            .coll
            .find(filter)
            .sort(doc! {"startTime": -1, "runId": -1, "attempt": -1})
            .limit(LOG_PAGE as i64 + 1)
            .projection(doc! {"output": 0})
            .await?
            .try_collect()
            .await?;
        anyhow::ensure!(!docs.is_empty(), "the store found no record");
        Ok(())
    }

    pub(super) async fn count(&self, q: &StoreQuery) -> anyhow::Result<()> {
        let (filter, _) = q.filters();
        self.db
            .run_command(doc! {"count": runlog::mongo::COLLECTION, "query": filter,
            "limit": (runlog::COUNT_CAP + 1) as i64})
            .await?;
        Ok(())
    }

    pub(super) async fn run(&self, run_id: &str) -> anyhow::Result<()> {
        let docs: Vec<Document> = self
            .coll
            .find(doc! {"runId": run_id})
            .sort(doc! {"attempt": 1})
            .await?
            .try_collect()
            .await?;
        anyhow::ensure!(!docs.is_empty(), "the store found no run {run_id}");
        Ok(())
    }

    /// The same with one client making at least 3 requests.
    pub(super) fn alone(&self) -> Self {
        Self {
            clients: 1,
            min_each: 3,
            ..self.clone()
        }
    }

    pub(super) async fn timed<F, Fut>(&self, what: String, request: F) -> anyhow::Result<ApiRow>
    where
        F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        quiesce(self.pid).await;
        let (outcomes, wall) = hammer(self.clients, self.secs, self.min_each, request).await?;
        let r = row(&what, outcomes, wall);
        println!("  {}", describe(&r));
        Ok(r)
    }

    /// The find and the count of `query(c, i)` at once, as the master
    /// sends them.
    pub(super) async fn both(&self, what: &str, query: QueryOf) -> anyhow::Result<ApiRow> {
        let s = self.clone();
        self.timed(
            format!("store, {} client(s): find + count, {what}", self.clients),
            move |c, i| {
                let (s, q) = (s.clone(), query(c, i));
                async move {
                    tokio::try_join!(s.find(&q), s.count(&q))?;
                    Ok(())
                }
            },
        )
        .await
    }

    pub(super) async fn find_alone(&self, what: &str, query: QueryOf) -> anyhow::Result<ApiRow> {
        let s = self.clone();
        self.timed(
            format!("store, {} client(s): find, {what}", self.clients),
            move |c, i| {
                let (s, q) = (s.clone(), query(c, i));
                async move { s.find(&q).await }
            },
        )
        .await
    }

    /// The find with [`StoreQuery::bounded_filter`]; None for a first page.
    pub(super) async fn bounded_alone(
        &self,
        what: &str,
        query: QueryOf,
    ) -> anyhow::Result<Option<ApiRow>> {
        if query(0, 0).bounded_filter().is_none() {
            return Ok(None);
        }
        let s = self.clone();
        self.timed(
            format!(
                "store, {} client(s): find with startTime <= cursor, {what}",
                self.clients
            ),
            move |c, i| {
                let (s, filter) = (s.clone(), query(c, i).bounded_filter());
                async move {
                    let filter = filter.ok_or_else(|| anyhow::anyhow!("no cursor"))?;
                    s.find_with(filter).await
                }
            },
        )
        .await
        .map(Some)
    }

    pub(super) async fn count_alone(&self, what: &str, query: QueryOf) -> anyhow::Result<ApiRow> {
        let s = self.clone();
        self.timed(
            format!("store, {} client(s): count, {what}", self.clients),
            move |c, i| {
                let (s, q) = (s.clone(), query(c, i));
                async move { s.count(&q).await }
            },
        )
        .await
    }

    pub(super) async fn run_alone(&self, what: &str, run_of: RunOf) -> anyhow::Result<ApiRow> {
        let s = self.clone();
        self.timed(
            format!("store, {} client(s): find, {what}", self.clients),
            move |c, i| {
                let (s, run) = (s.clone(), run_of(c, i));
                async move { s.run(&run).await }
            },
        )
        .await
    }
}

/// Which log query request `i` of client `c` sends.
pub(super) type QueryOf = Arc<dyn Fn(usize, usize) -> StoreQuery + Send + Sync>;

/// Which run request `i` of client `c` reads.
pub(super) type RunOf = Arc<dyn Fn(usize, usize) -> String + Send + Sync>;

/// Waits until the store has finished what it was asked before (requests
/// the clients of the previous row gave up on are still being answered):
/// less than a tenth of a core busy over a second, for at most 15 minutes.
pub(super) async fn quiesce(pid: Option<u32>) {
    let Some(pid) = pid.map(|p| p.to_string()) else {
        return;
    };
    let started = Instant::now();
    loop {
        let before = cpu_secs(&pid, Cpu::Own);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = cpu_secs(&pid, Cpu::Own) - before;
        if busy.is_nan() || busy < 0.1 || started.elapsed() > Duration::from_secs(900) {
            break;
        }
    }
    if started.elapsed() > Duration::from_secs(3) {
        println!(
            "  (the store was still busy for {:.0} s before this row)",
            started.elapsed().as_secs_f64()
        );
    }
}
