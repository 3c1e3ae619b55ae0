//! Batching: one query per metric for every rollout that asks the same
//! Prometheus the same batched template (interval filled in) at the same
//! evaluation time, with `{{versions}}` the alternation of all their versions.
//!
//! The first request for a key opens a batch and starts its query task;
//! requests that arrive while it waits ([`BATCH_WINDOW`], then a free query
//! slot) join it. Then the batch closes (a later request opens the next
//! one), its one query runs, and every waiter gets the whole answer to read
//! its own versions from. The batch's deadline is its first waiter's, so
//! every waiter has its answer within its own limit.

use super::pool::Server;
use super::reply::{Data, QueryError};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a new batch waits for others to join. Windows end on multiples
/// of the interval and rollout tasks started together tick together, so a
/// fleet asks within a few milliseconds; 25 ms gathers it at no cost next to
/// the 2 s limit and a window of a second or more.
pub(super) const BATCH_WINDOW: Duration = Duration::from_millis(25);

/// A batched query's answer, shared by every waiter.
pub(super) type Answer = Arc<Result<Data, QueryError>>;

/// What makes requests one query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BatchKey {
    /// The template with `{{interval}}` filled in, `{{versions}}` left.
    pub(super) template: String,
    /// Evaluation time (`time=`).
    pub(super) time: String,
}

/// A batch being collected.
struct Batch {
    versions: BTreeSet<String>,
    waiters: Vec<oneshot::Sender<Answer>>,
}

/// The open batches of one server.
#[derive(Default)]
pub(super) struct Batches {
    open: Mutex<HashMap<BatchKey, Batch>>,
}

impl Batches {
    /// Joins the open batch for `key`, or opens one; true when opened (the
    /// caller then starts its query).
    fn join(&self, key: &BatchKey, versions: &[&str], waiter: oneshot::Sender<Answer>) -> bool {
        let mut open = self.open.lock().expect("the batches' lock is never poisoned");
        let opened = !open.contains_key(key);
        let batch = open.entry(key.clone()).or_insert_with(|| Batch { versions: BTreeSet::new(), waiters: Vec::new() });
        batch.versions.extend(versions.iter().map(|v| v.to_string()));
        batch.waiters.push(waiter);
        opened
    }

    fn close(&self, key: &BatchKey) -> Option<Batch> {
        self.open.lock().expect("the batches' lock is never poisoned").remove(key)
    }
}

impl Server {
    /// The answer to `key`'s query for (at least) `versions`, shared with
    /// every request that joined the same batch; by `deadline`.
    pub(super) async fn batched(self: &Arc<Self>, key: BatchKey, versions: &[&str], deadline: Instant) -> Answer {
        let (tx, rx) = oneshot::channel();
        if self.batches.join(&key, versions, tx) {
            // Its own task: the batch answers every waiter even if the
            // rollout that opened it stops waiting.
            tokio::spawn(self.clone().run_batch(key, deadline));
        }
        rx.await.unwrap_or_else(|_| {
            let detail = "the batched query ended without an answer".to_string();
            Arc::new(Err(QueryError::Transport { address: self.address.clone(), detail }))
        })
    }

    async fn run_batch(self: Arc<Self>, key: BatchKey, deadline: Instant) {
        tokio::time::sleep(BATCH_WINDOW).await;
        // Requests keep joining while the query waits for a slot: under
        // load the batch grows instead of the queue.
        let slot = self.slot(deadline).await;
        let Some(batch) = self.batches.close(&key) else { return };
        let answer = match slot {
            Ok(slot) => {
                let promql = render_versions(&key.template, &batch.versions);
                self.send(slot, &promql, &key.time, deadline).await
            }
            Err(e) => Err(e),
        };
        let answer = Arc::new(answer);
        for waiter in batch.waiters {
            let _ = waiter.send(answer.clone());
        }
    }
}

/// `template` with `{{versions}}` the alternation of `versions`, each
/// regex-escaped and then escaped for a double-quoted PromQL string (the
/// template writes `=~"{{versions}}"`; Prometheus anchors the expression).
pub(super) fn render_versions(template: &str, versions: &BTreeSet<String>) -> String {
    let alternation: Vec<String> = versions.iter().map(|v| promql_string(&regex_escape(v))).collect();
    template.replace(flightdeck_core::plan::promql::VERSIONS, &alternation.join("|"))
}

/// RE2's metacharacters escaped: a version is matched literally.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The content of a double-quoted PromQL string (Go's escapes).
fn promql_string(text: &str) -> String {
    text.replace('\\', r"\\").replace('"', r#"\""#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_an_escaped_alternation() {
        let versions: BTreeSet<String> = ["v1.5.0", "v1.4.2", "build-7+x", "a\"b"].map(String::from).into();
        assert_eq!(
            render_versions(r#"sum by (version) (m{version=~"{{versions}}"}[60s])"#, &versions),
            r#"sum by (version) (m{version=~"a\"b|build-7\\+x|v1\\.4\\.2|v1\\.5\\.0"}[60s])"#
        );
    }
}
