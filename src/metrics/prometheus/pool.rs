//! One HTTP client per Prometheus, shared by every rollout that reads it,
//! with a bound on the queries in flight.
//!
//! Without it 1,000 rollouts opened 14,748 connections in three minutes
//! (each its own client and pool, one connection per concurrent query) and
//! ran out of file descriptors; see `benchmarks/cost.md`.
//!
//! Deadline: a reading has [`QUERY_TIMEOUT`] from the moment the sample asks
//! for it to the answer's last byte, and the time spent collecting a batch
//! and waiting for a query slot counts against it. A query that cannot start
//! in time leaves its versions missing with that reason (never a pass), and
//! the limit means the same thing whatever the load: the engine never waits
//! longer than that for a window's numbers.

use super::batch::Batches;
use super::reply::{parse_reply, Data, QueryError};
use super::SourceError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Limit for one reading, from the sample's request to the last byte.
pub(super) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Queries in flight to one Prometheus at most. Prometheus itself runs 20
/// queries at once (`--query.max-concurrency`) and queues the rest behind
/// its rules and dashboards; 16 leaves it room for those, keeps the
/// connections (and file descriptors) flightdeck holds to a handful, and
/// with batching a whole fleet's window is only 5 queries anyway.
pub const MAX_IN_FLIGHT: usize = 16;

/// The Prometheus servers of a fleet, by address: every rollout built with
/// the same pool and pointed at the same address shares one [`Server`].
#[derive(Clone, Default)]
pub struct PrometheusPool {
    servers: Arc<Mutex<HashMap<String, Arc<Server>>>>,
}

impl PrometheusPool {
    pub fn new() -> PrometheusPool {
        PrometheusPool::default()
    }

    /// The server at `address` (keyed by its normalised query URL, so
    /// `http://Prom:9090/` and `http://prom:9090` are one), made on first use.
    pub(super) fn server(&self, address: &str) -> Result<Arc<Server>, SourceError> {
        let endpoint = query_endpoint(address)?;
        let mut servers = self.servers.lock().expect("the pool's lock is never poisoned");
        if let Some(server) = servers.get(endpoint.as_str()) {
            return Ok(server.clone());
        }
        let server = Arc::new(Server::new(address, endpoint.clone(), QUERY_TIMEOUT, MAX_IN_FLIGHT)?);
        servers.insert(endpoint.to_string(), server.clone());
        Ok(server)
    }

    /// How many servers the pool holds.
    pub fn len(&self) -> usize {
        self.servers.lock().expect("the pool's lock is never poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One Prometheus: its client (one connection pool), its query slots and
/// the batches being collected for it.
pub(super) struct Server {
    client: reqwest::Client,
    /// As written in the (first) plan, for messages.
    pub(super) address: String,
    /// `{address}/api/v1/query`.
    endpoint: reqwest::Url,
    pub(super) timeout: Duration,
    slots: Semaphore,
    max_in_flight: usize,
    pub(super) batches: Batches,
}

impl Server {
    pub(super) fn new(
        address: &str,
        endpoint: reqwest::Url,
        timeout: Duration,
        max_in_flight: usize,
    ) -> Result<Server, SourceError> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_in_flight)
            .build()
            .map_err(|e| SourceError::Client(e.to_string()))?;
        Ok(Server {
            client,
            address: address.to_string(),
            endpoint,
            timeout,
            slots: Semaphore::new(max_in_flight),
            max_in_flight,
            batches: Batches::default(),
        })
    }

    /// A server of its own with these limits, for tests.
    #[cfg(test)]
    pub(super) fn standalone(address: &str, timeout: Duration, max_in_flight: usize) -> Result<Server, SourceError> {
        Server::new(address, query_endpoint(address)?, timeout, max_in_flight)
    }

    /// One query at evaluation `time`: a slot, then the request, all by `deadline`.
    pub(super) async fn query(&self, promql: &str, time: &str, deadline: Instant) -> Result<Data, QueryError> {
        let slot = self.slot(deadline).await?;
        self.send(slot, promql, time, deadline).await
    }

    /// A query slot, if one frees up by `deadline`.
    pub(super) async fn slot(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, QueryError> {
        let acquired = tokio::time::timeout_at(deadline, self.slots.acquire()).await;
        let no_slot =
            || QueryError::NoSlot { address: self.address.clone(), timeout: self.timeout, slots: self.max_in_flight };
        acquired.map_err(|_| no_slot())?.map_err(|_| no_slot())
    }

    /// The request itself, holding `_slot` until the answer's last byte.
    pub(super) async fn send(
        &self,
        _slot: SemaphorePermit<'_>,
        promql: &str,
        time: &str,
        deadline: Instant,
    ) -> Result<Data, QueryError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let request = self.client.get(self.endpoint.clone()).query(&[("query", promql), ("time", time)]);
        let response = request.timeout(left).send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.transport_error(e))?;
        parse_reply(status, &body)
    }

    fn transport_error(&self, e: reqwest::Error) -> QueryError {
        let address = self.address.clone();
        if e.is_timeout() {
            QueryError::Timeout { address, timeout: self.timeout }
        } else if e.is_connect() {
            QueryError::Connect { address, detail: root_cause(&e) }
        } else {
            QueryError::Transport { address, detail: root_cause(&e) }
        }
    }
}

pub(super) fn query_endpoint(address: &str) -> Result<reqwest::Url, SourceError> {
    let invalid = |why: &str| SourceError::Address { address: address.to_owned(), why: why.to_owned() };
    let url = reqwest::Url::parse(&format!("{}/api/v1/query", address.trim_end_matches('/')))
        .map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(&format!("unsupported scheme {:?}", url.scheme())));
    }
    if url.host().is_none() {
        return Err(invalid("no host"));
    }
    Ok(url)
}

/// The innermost cause ("Connection refused (os error 111)"): reqwest's
/// own text repeats the whole query URL.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{self, Reply};
    use super::*;

    #[test]
    fn rollouts_on_one_address_share_one_server() {
        let pool = PrometheusPool::new();
        let a = pool.server("http://Prom.internal:9090/").unwrap();
        let b = pool.server("http://prom.internal:9090").unwrap();
        let c = pool.server("http://prom.internal:9091").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(pool.len(), 2);
        assert!(pool.server("prom:9090").is_err());
    }

    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_queries_in_flight_than_the_slots() {
        // Answers wait for a 4th request to be open (or 50 ms): without the
        // bound of 3, 4 or more would be at once.
        let server = test_server::start(|_| Reply::Crowded(200, EMPTY.into(), 4)).await;
        let prometheus = Arc::new(Server::standalone(&server.address, Duration::from_secs(10), 3).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        let queries: Vec<_> = (0..20)
            .map(|i| {
                let p = prometheus.clone();
                tokio::spawn(async move { p.query(&format!("q{i}"), "1", deadline).await.map(|_| ()) })
            })
            .collect();
        for query in queries {
            assert_eq!(query.await.unwrap(), Ok(()));
        }
        assert_eq!(server.queries(), 20);
        let most = server.most_open();
        assert!((2..=3).contains(&most), "{most} queries were open at once; the bound is 3");
    }

    #[tokio::test]
    async fn a_query_that_finds_no_free_slot_in_time_says_so() {
        // The first query holds the only slot; the second cannot start in time.
        let server =
            test_server::start(
                |target| {
                    if target.contains("first") {
                        Reply::Never
                    } else {
                        Reply::Now(200, EMPTY.into())
                    }
                },
            )
            .await;
        let prometheus = Arc::new(Server::standalone(&server.address, Duration::from_millis(300), 1).unwrap());
        let deadline = Instant::now() + Duration::from_millis(300);
        let first = tokio::spawn({
            let p = prometheus.clone();
            async move { p.query("first", "1", deadline).await.map(|_| ()) }
        });
        server.wait_for_queries(1).await;
        let second = prometheus.query("second", "1", deadline).await.unwrap_err();
        assert_eq!(
            second.to_string(),
            format!("no answer from {} within 300ms: all 1 query slots stayed busy", server.address)
        );
        let first = first.await.unwrap().unwrap_err();
        assert_eq!(first.to_string(), format!("no answer from {} within 300ms", server.address));
        assert_eq!(server.queries(), 1, "the second query never reached the server");
    }
}
