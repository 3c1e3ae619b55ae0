//! Prometheus metrics source: per metric, one PromQL instant query per
//! version, or one batched query for every rollout reading the same server.
//!
//! A plan selects it with `[metrics] source = "prometheus"`, an `address`
//! (`http://127.0.0.1:9090`, a path prefix such as `http://host/prom` is kept)
//! and the query templates of [`PromQueries`]. `{{interval}}` becomes the
//! analysis window in whole seconds (`60s`, at least `1s`). A template is in
//! one of two forms (`flightdeck_core::plan::promql`, checked when the plan
//! is read):
//! - per version: `{{version}}` becomes the revision (the plan's `stable` or
//!   `canary`, verbatim); the query must answer a single number: a scalar,
//!   or an instant vector with exactly one series (aggregate with `sum(...)`);
//! - batched (the defaults): `{{versions}}`, matched with `=~`, becomes the
//!   alternation of every version asked, each regex-escaped, and the query
//!   groups `by (<version_label>)`. Rollouts that ask the same Prometheus the
//!   same template at the same evaluation time share one query (`batch.rs`);
//!   each version's number is its one series by the label.
//!
//! All rollouts built with one [`PrometheusPool`] share one HTTP client per
//! address and at most [`MAX_IN_FLIGHT`] queries in flight to it (`pool.rs`).
//! One sample asks for the five metrics of both versions concurrently; each
//! reading must be answered within 2 s of the sample's start, waiting for a
//! batch or a query slot included. Latency queries answer in milliseconds.
//!
//! Evaluation time: `time` is the sample's `now` (Unix milliseconds: the
//! engine runs real backends on the wall clock) as fractional seconds,
//! capped at the current wall time so a window that ends a few milliseconds
//! ahead never asks Prometheus about the future.
//!
//! What becomes of each answer. A version that cannot be read is `None` and
//! the sample's `missing` names the query, the version and what went wrong
//! ("prometheus: requests for v2: empty result (no series matched)"); the
//! core treats it as inconclusive, never as a pass. Numbers are never
//! invented, with two deliberate readings of "no data" (an empty vector, or
//! in a batched answer no series for the version):
//! - `requests`: any failure makes the version missing, including no series
//!   (wrong label, no traffic ever, target not scraped).
//! - `errors`: no series counts as 0 errors when `requests` was read.
//!   A `code=~"5.."` selector matches nothing until the first 5xx is
//!   counted, and most clients create that series lazily; the request count
//!   proves the version is scraped, so "no 5xx series" means "no 5xx".
//! - latency buckets (`latency_buckets`, the default reads
//!   `http_request_duration_seconds_bucket`): every `le` series of the
//!   version, in seconds, becomes its window's bucket counts
//!   (`BucketCounts`), which the analysis judges on bounds. No series, a
//!   failed query or buckets that do not add up (no `+Inf`, counts going
//!   down) leave the version's latency to its quantiles, which cannot pass
//!   a stage; the failure is logged, the version is not missing.
//! - latency: NaN (`histogram_quantile` over a window without observations)
//!   or no series leaves that quantile `None`; the analysis treats a
//!   missing p99 as inconclusive. `+Inf` (the quantile lies beyond the
//!   largest bucket) is not a number of milliseconds: the version is missing.
//! - HTTP errors (with Prometheus' own `errorType: error` text), connection
//!   failures, timeouts, no free query slot in time, `status` other than
//!   `success`, malformed JSON, range vectors, several series (for one
//!   version, in a batched answer), a batched answer with a series that
//!   lacks the version label, NaN or infinite counts: the version is
//!   missing. Requests and errors are rounded to whole counts (`increase()`
//!   extrapolates to the window's edges, so it rarely answers integers).

mod batch;
mod pool;
mod reply;
#[cfg(test)]
mod test_server;

pub use pool::{PrometheusPool, MAX_IN_FLIGHT};

use crate::metrics::MetricsSource;
use async_trait::async_trait;
use batch::BatchKey;
use flightdeck_core::analysis::{BucketCounts, MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::promql::{self, Form};
use flightdeck_core::plan::PromQueries;
use flightdeck_core::time::Timestamp;
use pool::Server;
use reply::{QueryError, Reading};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The placeholders a query template may use.
const PLACEHOLDERS: [&str; 3] = [promql::VERSION, promql::VERSIONS, "{{interval}}"];

/// Per-version metrics from a Prometheus server.
pub struct Prometheus {
    server: Arc<Server>,
    queries: PromQueries,
    /// Each template's form, in `Query::ALL` order.
    forms: [Form; 5],
    /// The bucket query's form, when the plan has one.
    bucket_form: Option<Form>,
    stable: String,
    canary: String,
}

impl PrometheusPool {
    /// A source for one rollout on the pool's server at `address`.
    /// `stable`/`canary`: the values substituted for `{{version}}` (the
    /// plan's revisions). Fails on an address that is not an http(s) URL or
    /// a template that is in neither form or has an unknown `{{placeholder}}`.
    pub fn source(
        &self,
        address: &str,
        queries: &PromQueries,
        stable: &str,
        canary: &str,
    ) -> Result<Prometheus, SourceError> {
        let forms = forms(queries)?;
        let server = self.server(address)?;
        let mut source = Prometheus::on(server, queries, forms, stable, canary);
        source.bucket_form = bucket_form(queries)?;
        Ok(source)
    }
}

impl Prometheus {
    /// A source with its own client, shared with no other rollout (a pool
    /// of one; see [`PrometheusPool::source`]).
    pub fn new(address: &str, queries: &PromQueries, stable: &str, canary: &str) -> Result<Prometheus, SourceError> {
        PrometheusPool::new().source(address, queries, stable, canary)
    }

    #[cfg(test)]
    fn with_timeout(address: &str, queries: &PromQueries, timeout: Duration) -> Result<Prometheus, SourceError> {
        let server = Arc::new(Server::standalone(address, timeout, MAX_IN_FLIGHT)?);
        let mut source = Prometheus::on(server, queries, forms(queries)?, "v1", "v2");
        source.bucket_form = bucket_form(queries)?;
        Ok(source)
    }

    fn on(server: Arc<Server>, queries: &PromQueries, forms: [Form; 5], stable: &str, canary: &str) -> Prometheus {
        Prometheus {
            server,
            queries: queries.clone(),
            forms,
            bucket_form: None,
            stable: stable.to_string(),
            canary: canary.to_string(),
        }
    }

    /// Both versions' latency buckets, or `None` for a version whose
    /// buckets cannot be read (its latency is then its quantiles).
    async fn read_buckets(&self, interval: &str, time: &str, deadline: Instant) -> [Option<BucketCounts>; 2] {
        let Some(form) = self.bucket_form else { return [None, None] };
        let template = &self.queries.latency_buckets;
        let versions = [self.stable.as_str(), self.canary.as_str()];
        let answers: [Result<Vec<(f64, f64)>, QueryError>; 2] = match form {
            Form::PerVersion => {
                let read = |version: &str| {
                    let promql = render(template, version, interval);
                    async move { reply::buckets(&self.server.query(&promql, time, deadline).await?, None, "") }
                };
                let (a, b) = tokio::join!(read(versions[0]), read(versions[1]));
                [a, b]
            }
            Form::Batched => {
                let key = BatchKey { template: template.replace("{{interval}}", interval), time: time.to_string() };
                let answer = self.server.batched(key, &versions, deadline).await;
                let label = Some(self.queries.version_label.as_str());
                match answer.as_ref() {
                    Ok(data) => versions.map(|v| reply::buckets(data, label, v)),
                    Err(e) => [Err(e.clone()), Err(e.clone())],
                }
            }
        };
        let mut out = [None, None];
        for (slot, (version, answer)) in out.iter_mut().zip(versions.iter().zip(answers)) {
            *slot = match answer.map(|series| bucket_counts(&series)) {
                Ok(Ok(counts)) => counts,
                Ok(Err(why)) => {
                    tracing::warn!(%version, %why, "prometheus latency buckets unusable; quantiles only");
                    None
                }
                Err(QueryError::Malformed(why)) => {
                    tracing::warn!(%version, %why, "prometheus latency buckets unusable; quantiles only");
                    None
                }
                Err(e) => {
                    tracing::warn!(%version, error = %e, "prometheus latency buckets unread; quantiles only");
                    None
                }
            };
        }
        out
    }

    /// One metric of both versions: one batched query, or one per version.
    async fn read(&self, query: Query, interval: &str, time: &str, deadline: Instant) -> (Reading, Reading) {
        let template = query.template(&self.queries);
        let (stable, canary) = (self.stable.as_str(), self.canary.as_str());
        match self.forms[query as usize] {
            Form::PerVersion => {
                let one = |version: &str| {
                    let promql = render(template, version, interval);
                    async move { reply::single(&self.server.query(&promql, time, deadline).await?) }
                };
                tokio::join!(one(stable), one(canary))
            }
            Form::Batched => {
                let key = BatchKey { template: template.replace("{{interval}}", interval), time: time.to_string() };
                let answer = self.server.batched(key, &[stable, canary], deadline).await;
                let label = &self.queries.version_label;
                match answer.as_ref() {
                    Ok(data) => (reply::for_version(data, label, stable), reply::for_version(data, label, canary)),
                    Err(e) => (Err(e.clone()), Err(e.clone())),
                }
            }
        }
    }
}

#[async_trait]
impl MetricsSource for Prometheus {
    async fn sample(&self, window: Duration, now: Timestamp) -> MetricsSample {
        let time = evaluation_time(now, wall_clock());
        let interval = interval(window);
        let deadline = Instant::now() + self.server.timeout;
        let read = |query| self.read(query, &interval, &time, deadline);
        let (requests, errors, p50, p95, p99, [stable_buckets, canary_buckets]) = tokio::join!(
            read(Query::Requests),
            read(Query::Errors),
            read(Query::P50),
            read(Query::P95),
            read(Query::P99),
            self.read_buckets(&interval, &time, deadline)
        );
        let stable = Readings { requests: requests.0, errors: errors.0, p50: p50.0, p95: p95.0, p99: p99.0 };
        let canary = Readings { requests: requests.1, errors: errors.1, p50: p50.1, p95: p95.1, p99: p99.1 };
        let boxed = |b: Option<BucketCounts>| b.map(Box::new);
        let stable =
            version_window(&self.stable, stable).map(|w| VersionWindow { buckets: boxed(stable_buckets), ..w });
        let canary =
            version_window(&self.canary, canary).map(|w| VersionWindow { buckets: boxed(canary_buckets), ..w });
        let reasons: Vec<String> =
            [&stable, &canary].into_iter().filter_map(|r| r.as_ref().err().map(ToString::to_string)).collect();
        MetricsSample {
            window,
            stable: stable.ok(),
            canary: canary.ok(),
            missing: (!reasons.is_empty()).then(|| reasons.join("; ")),
        }
    }

    /// The plan has no SLO queries yet (`PromQueries` covers the canary
    /// analysis only), so the error budget comes from elsewhere.
    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

/// The metrics of a version window, in the order they are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Requests,
    Errors,
    P50,
    P95,
    P99,
}

impl Query {
    const ALL: [Query; 5] = [Query::Requests, Query::Errors, Query::P50, Query::P95, Query::P99];

    fn name(self) -> &'static str {
        match self {
            Query::Requests => "requests",
            Query::Errors => "errors",
            Query::P50 => "p50",
            Query::P95 => "p95",
            Query::P99 => "p99",
        }
    }

    fn template(self, q: &PromQueries) -> &str {
        match self {
            Query::Requests => &q.requests,
            Query::Errors => &q.errors,
            Query::P50 => &q.p50,
            Query::P95 => &q.p95,
            Query::P99 => &q.p99,
        }
    }
}

/// Why a Prometheus source cannot be built for a plan's `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("prometheus query {query}: {error}")]
    Template { query: &'static str, error: promql::TemplateError },
    /// A typo in a placeholder would reach Prometheus as a parse error on every sample.
    #[error("prometheus query {query}: unknown placeholder {placeholder} (known: {})", PLACEHOLDERS.join(", "))]
    Placeholder { query: &'static str, placeholder: String },
    #[error("prometheus address {address:?}: {why}; expected http://host:port or https://host:port")]
    Address { address: String, why: String },
    #[error("prometheus: cannot build an HTTP client: {0}")]
    Client(String),
}

/// Each template's form (the plan checker refuses the same templates with
/// their position; this holds for sources built in code).
fn forms(queries: &PromQueries) -> Result<[Form; 5], SourceError> {
    let mut forms = [Form::PerVersion; 5];
    for query in Query::ALL {
        let template = query.template(queries);
        forms[query as usize] = form_of(query.name(), template, &queries.version_label)?;
    }
    Ok(forms)
}

/// A template's form, its placeholders known.
fn form_of(query: &'static str, template: &str, label: &str) -> Result<Form, SourceError> {
    check_placeholders(query, template)?;
    promql::form(template, label).map_err(|error| SourceError::Template { query, error })
}

/// The bucket query's form, if the plan reads buckets (an empty template
/// reads none).
fn bucket_form(queries: &PromQueries) -> Result<Option<Form>, SourceError> {
    let template = &queries.latency_buckets;
    if template.trim().is_empty() {
        return Ok(None);
    }
    form_of("latency_buckets", template, &queries.version_label).map(Some)
}

/// One version's `(le seconds, count)` series as bucket counts in ms:
/// `Ok(None)` when there are none (no such histogram), an error when they
/// cannot be counts (no `+Inf`, a NaN, counts that go down).
fn bucket_counts(series: &[(f64, f64)]) -> Result<Option<BucketCounts>, BucketError> {
    if series.is_empty() {
        return Ok(None);
    }
    let mut sorted: Vec<(f64, f64)> = series.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(_, total)) = sorted.last().filter(|(le, _)| *le == f64::INFINITY) else {
        return Err(BucketError::NoInf);
    };
    let count = |v: f64| (v.is_finite() && v >= 0.0).then(|| v.round() as u64);
    let not_a_count = |bucket: String, value: f64| BucketError::NotACount { bucket, value: value.to_string() };
    let total = count(total).ok_or_else(|| not_a_count("+Inf bucket".into(), total))?;
    let finite = &sorted[..sorted.len() - 1];
    let mut le_ms = Vec::with_capacity(finite.len());
    let mut at_or_below = Vec::with_capacity(finite.len());
    for &(le, value) in finite {
        le_ms.push(le * 1000.0);
        at_or_below.push(count(value).ok_or_else(|| not_a_count(format!("bucket le={le}"), value))?);
    }
    let buckets = BucketCounts { le_ms, at_or_below, total };
    // The analysis checks the same; said here once, with the version, in the log.
    buckets.bounds().ok_or(BucketError::GoDown)?;
    Ok(Some(buckets))
}

/// Why one version's window could not be read: the first query, in
/// `Query::ALL` order, that gave no usable number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("prometheus: {query} for {version}: {error}")]
struct ReadError {
    query: &'static str,
    version: String,
    error: QueryError,
}

/// Why a version's bucket series cannot be counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BucketError {
    #[error("no le=\"+Inf\" bucket")]
    NoInf,
    #[error("{bucket} count {value} is not a count")]
    NotACount { bucket: String, value: String },
    #[error("bucket counts go down or edges repeat (a counter reset in the window?)")]
    GoDown,
}

struct Readings {
    requests: Reading,
    errors: Reading,
    p50: Reading,
    p95: Reading,
    p99: Reading,
}

/// Applies the module's rules for "no data" (see the module doc); the first
/// failing query, in `Query::ALL` order, names the reason.
fn version_window(version: &str, r: Readings) -> Result<VersionWindow, ReadError> {
    let why =
        |query: Query| move |error: QueryError| ReadError { query: query.name(), version: version.to_owned(), error };
    let requests = count(r.requests).map_err(why(Query::Requests))?;
    let errors = match r.errors {
        Ok(None) => Ok(0),
        other => count(other),
    }
    .map_err(why(Query::Errors))?;
    Ok(VersionWindow {
        requests,
        errors,
        p50_ms: quantile(r.p50).map_err(why(Query::P50))?,
        p95_ms: quantile(r.p95).map_err(why(Query::P95))?,
        p99_ms: quantile(r.p99).map_err(why(Query::P99))?,
        ..VersionWindow::default()
    })
}

fn count(reading: Reading) -> Result<u64, QueryError> {
    match reading? {
        None => Err(QueryError::Empty),
        Some(v) if !v.is_finite() => Err(QueryError::NotFinite(v)),
        Some(v) if v < 0.0 => Err(QueryError::Negative(v)),
        Some(v) => Ok(v.round() as u64),
    }
}

fn quantile(reading: Reading) -> Result<Option<f64>, QueryError> {
    match reading? {
        None => Ok(None),
        Some(v) if v.is_nan() => Ok(None),
        Some(v) if v.is_infinite() => Err(QueryError::NotFinite(v)),
        Some(v) => Ok(Some(v)),
    }
}

/// A typo in a placeholder would reach Prometheus as a parse error on every
/// sample; say so once, when the plan is loaded.
fn check_placeholders(query: &'static str, template: &str) -> Result<(), SourceError> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let tail = &rest[start..];
        let end = tail.find("}}").map_or(tail.len(), |i| i + 2);
        let placeholder = &tail[..end];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(SourceError::Placeholder { query, placeholder: placeholder.to_owned() });
        }
        rest = &tail[end..];
    }
    Ok(())
}

fn render(template: &str, version: &str, interval: &str) -> String {
    template.replace("{{version}}", version).replace("{{interval}}", interval)
}

/// PromQL range for a window: whole seconds, at least one.
fn interval(window: Duration) -> String {
    format!("{}s", window.as_secs().max(1))
}

/// `time=` for `now`, capped at the wall clock (see the module doc).
fn evaluation_time(now: Timestamp, wall: Timestamp) -> String {
    format!("{:.3}", now.0.min(wall.0) as f64 / 1000.0)
}

fn wall_clock() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::test_server::{self, Reply};
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn vector(value: &str) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.0,"{value}"]}}]}}}}"#
        )
    }

    fn readings(requests: Reading, errors: Reading, p99: Reading) -> Readings {
        Readings { requests, errors, p50: Ok(Some(3.0)), p95: Ok(Some(4.0)), p99 }
    }

    #[test]
    fn templates_get_version_and_interval() {
        let q = PromQueries::per_version();
        assert_eq!(
            render(&q.requests, "v1.5.0", &interval(Duration::from_secs(60))),
            r#"sum(increase(http_requests_total{version="v1.5.0"}[60s]))"#
        );
        assert_eq!(
            render(&q.p99, "v2", "90s"),
            r#"1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="v2"}[90s])))"#
        );
        assert_eq!(interval(Duration::from_millis(90_900)), "90s");
        assert_eq!(interval(Duration::from_millis(200)), "1s");
    }

    #[test]
    fn new_checks_address_placeholders_and_form() {
        let q = PromQueries::default();
        assert!(Prometheus::new("http://127.0.0.1:9090/", &q, "v1", "v2").is_ok());
        let e = Prometheus::new("127.0.0.1:9090", &q, "v1", "v2").err().unwrap();
        assert!(matches!(&e, SourceError::Address { address, .. } if address == "127.0.0.1:9090"), "{e}");
        let e = Prometheus::new("localhost:9090", &q, "v1", "v2").err().unwrap();
        let scheme = "unsupported scheme \"localhost\"".to_owned();
        assert_eq!(e, SourceError::Address { address: "localhost:9090".into(), why: scheme });
        assert_eq!(
            e.to_string(),
            "prometheus address \"localhost:9090\": unsupported scheme \"localhost\"; \
             expected http://host:port or https://host:port"
        );
        let typo = PromQueries { p95: "m{v=\"{{verison}}\"}".into(), ..q.clone() };
        let e = Prometheus::new("http://localhost:9090", &typo, "v1", "v2").err().unwrap();
        assert_eq!(e, SourceError::Placeholder { query: "p95", placeholder: "{{verison}}".into() });
        assert_eq!(
            e.to_string(),
            "prometheus query p95: unknown placeholder {{verison}} (known: {{version}}, {{versions}}, {{interval}})"
        );
        let folded = PromQueries { errors: "sum(e{version=~\"{{versions}}\"})".into(), ..q };
        let e = Prometheus::new("http://localhost:9090", &folded, "v1", "v2").err().unwrap();
        let drops = promql::TemplateError::AggregationDropsLabel { op: "sum".into(), label: "version".into() };
        assert_eq!(e, SourceError::Template { query: "errors", error: drops });
    }

    #[test]
    fn evaluation_time_is_now_in_seconds_capped_at_the_wall_clock() {
        assert_eq!(evaluation_time(Timestamp(1_700_000_000_250), Timestamp(1_800_000_000_000)), "1700000000.250");
        assert_eq!(evaluation_time(Timestamp(1_800_000_000_000), Timestamp(1_700_000_000_000)), "1700000000.000");
    }

    #[test]
    fn a_window_rounds_counts_and_keeps_quantiles() {
        let w = version_window("v2", readings(Ok(Some(299.6)), Ok(Some(59.4)), Ok(Some(4.9)))).unwrap();
        assert_eq!((w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms), (300, 59, Some(3.0), Some(4.0), Some(4.9)));
    }

    #[test]
    fn no_requests_series_means_no_window() {
        let e = version_window("v2", readings(Ok(None), Ok(None), Ok(None))).unwrap_err();
        assert_eq!((e.query, e.version.as_str()), ("requests", "v2"));
        assert_eq!(e.to_string(), "prometheus: requests for v2: empty result (no series matched)");
        let e = version_window("v2", readings(Ok(Some(f64::NAN)), Ok(Some(0.0)), Ok(None))).unwrap_err();
        assert_eq!(e.to_string(), "prometheus: requests for v2: value NaN is not a finite number");
    }

    #[test]
    fn no_error_series_means_no_errors_once_requests_are_read() {
        let w = version_window("v1", readings(Ok(Some(100.0)), Ok(None), Ok(Some(5.0)))).unwrap();
        assert_eq!((w.requests, w.errors), (100, 0));
        let e = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(f64::INFINITY)), Ok(None))).unwrap_err();
        assert_eq!(e.to_string(), "prometheus: errors for v1: value inf is not a finite number");
    }

    #[test]
    fn a_nan_quantile_is_unknown_but_an_infinite_one_is_unusable() {
        let w = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(1.0)), Ok(Some(f64::NAN)))).unwrap();
        assert_eq!(w.p99_ms, None);
        let w = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(1.0)), Ok(None))).unwrap();
        assert_eq!(w.p99_ms, None);
        let e = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(1.0)), Ok(Some(f64::INFINITY)))).unwrap_err();
        assert_eq!(e.to_string(), "prometheus: p99 for v1: value inf is not a finite number");
    }

    fn per_version(address: &str, timeout: Duration) -> Prometheus {
        Prometheus::with_timeout(address, &PromQueries::per_version(), timeout).unwrap()
    }

    #[test]
    fn bucket_series_become_counts_in_ms_or_say_why_not() {
        let series = [(0.25, 90.0), (f64::INFINITY, 100.0), (0.1, 60.4)];
        let counts = bucket_counts(&series).unwrap().unwrap();
        assert_eq!(counts.le_ms, vec![100.0, 250.0]);
        assert_eq!((counts.at_or_below, counts.total), (vec![60, 90], 100));
        assert_eq!(bucket_counts(&[]), Ok(None), "no histogram: quantiles only");
        assert_eq!(bucket_counts(&[(0.1, 5.0)]), Err(BucketError::NoInf));
        let nan = BucketError::NotACount { bucket: "bucket le=0.1".into(), value: "NaN".into() };
        assert_eq!(bucket_counts(&[(0.1, f64::NAN), (f64::INFINITY, 3.0)]), Err(nan));
        let reset = [(0.1, 9.0), (0.2, 4.0), (f64::INFINITY, 12.0)];
        assert_eq!(bucket_counts(&reset), Err(BucketError::GoDown));
    }

    #[tokio::test]
    async fn a_sample_queries_every_metric_of_both_versions() {
        let server = test_server::start(|target| {
            let value = if target.contains("code=~") {
                "3"
            } else if target.contains("0.99") {
                "8.5"
            } else {
                "120"
            };
            let value = if target.contains("version=\"v2\"") && target.contains("0.5,") { "NaN" } else { value };
            Reply::Now(200, vector(value))
        })
        .await;
        let m = per_version(&server.address, Duration::from_secs(2)).sample(Duration::from_secs(60), NOW).await;
        assert_eq!(m.missing, None);
        let (stable, canary) = (m.stable.unwrap(), m.canary.unwrap());
        assert_eq!((stable.requests, stable.errors, stable.p50_ms, stable.p99_ms), (120, 3, Some(120.0), Some(8.5)));
        assert_eq!((canary.requests, canary.p50_ms), (120, None));
        let seen = server.seen();
        assert_eq!(seen.len(), 12, "five metrics and the latency buckets, per version");
        let requests =
            r#"/api/v1/query?query=sum(increase(http_requests_total{version="v2"}[60s]))&time=1700000000.000"#;
        assert!(seen.iter().any(|t| t == requests), "{seen:#?}");
    }

    #[tokio::test]
    async fn http_errors_carry_prometheus_own_text() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\""}"#;
        let server = test_server::start(move |_| Reply::Now(400, body.to_string())).await;
        let m = per_version(&server.address, Duration::from_secs(2)).sample(Duration::from_secs(60), NOW).await;
        assert_eq!((m.stable, m.canary), (None, None));
        assert_eq!(
            m.missing.unwrap(),
            "prometheus: requests for v1: HTTP 400: bad_data: invalid parameter \"query\"; \
             prometheus: requests for v2: HTTP 400: bad_data: invalid parameter \"query\""
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let server =
            test_server::start(
                |target| {
                    if target.contains("v2") {
                        Reply::Never
                    } else {
                        Reply::Now(200, vector("10"))
                    }
                },
            )
            .await;
        let m = per_version(&server.address, Duration::from_millis(300)).sample(Duration::from_secs(60), NOW).await;
        assert!(m.stable.is_some());
        assert_eq!(m.canary, None);
        let address = &server.address;
        assert_eq!(m.missing.unwrap(), format!("prometheus: requests for v2: no answer from {address} within 300ms"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("http://127.0.0.1:{port}");
        let m = per_version(&address, Duration::from_secs(2)).sample(Duration::from_secs(60), NOW).await;
        assert_eq!((m.stable, m.canary), (None, None));
        let missing = m.missing.unwrap();
        assert!(
            missing.starts_with(&format!("prometheus: requests for v1: cannot connect to {address}: ")),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn no_slo_queries_yet() {
        assert_eq!(per_version("http://127.0.0.1:9", pool::QUERY_TIMEOUT).slo(NOW).await, None);
    }

    // ---- batched queries ----------------------------------------------

    /// The versions a batched query asks for: its `version=~"…"`, unescaped.
    fn asked(target: &str) -> Vec<String> {
        let start = target.find("version=~\"").expect("a batched query") + "version=~\"".len();
        let end = start + target[start..].find('"').unwrap();
        target[start..end].split('|').map(|v| v.replace('\\', "")).collect()
    }

    /// The metric a default query reads.
    fn metric(target: &str) -> &'static str {
        ["code=~", "0.5,", "0.95,", "0.99,"]
            .iter()
            .zip(["errors", "p50", "p95", "p99"])
            .find_map(|(mark, name)| target.contains(mark).then_some(name))
            .unwrap_or("requests")
    }

    /// A vector with one series per (version, value).
    fn series(answer: &[(String, String)]) -> String {
        let series: Vec<String> = answer
            .iter()
            .map(|(v, n)| format!(r#"{{"metric":{{"version":"{v}"}},"value":[1700000000,"{n}"]}}"#))
            .collect();
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, series.join(","))
    }

    /// A stand-in that answers batched queries from `value(metric, version)`:
    /// no series when `None`, two series when the text holds a `+`.
    async fn batched_server(value: fn(&str, &str) -> Option<&'static str>) -> test_server::TestServer {
        test_server::start(move |target| {
            let mut answer = Vec::new();
            for version in asked(target) {
                for n in value(metric(target), &version).into_iter().flat_map(|v| v.split('+')) {
                    answer.push((version.clone(), n.to_string()));
                }
            }
            Reply::Now(200, series(&answer))
        })
        .await
    }

    #[tokio::test]
    async fn rollouts_on_one_prometheus_share_one_query_per_metric() {
        let server = batched_server(|metric, version| match (metric, version) {
            ("requests", "v11") => None,
            ("requests", v) => Some(match v {
                "v1" => "100",
                "v2" => "200",
                _ => "300",
            }),
            ("errors", "v2") => Some("20"),
            ("errors", _) => None,
            ("p99", "v1.0") => Some("NaN"),
            (_, _) => Some("42"),
        })
        .await;
        let pool = PrometheusPool::new();
        let a = pool.source(&server.address, &PromQueries::default(), "v1", "v2").unwrap();
        let b = pool.source(&format!("{}/", server.address), &PromQueries::default(), "v1.0", "v11").unwrap();
        let window = Duration::from_secs(60);
        let (a, b) = tokio::join!(a.sample(window, NOW), b.sample(window, NOW));

        let seen = server.seen();
        assert_eq!(seen.len(), 6, "one query per metric (and the buckets) for both rollouts: {seen:#?}");
        for target in &seen {
            assert_eq!(asked(target), ["v1", "v1.0", "v11", "v2"], "{target}");
        }
        let requests = r#"/api/v1/query?query=sum by (version) (increase(http_requests_total{version=~"v1|v1\\.0|v11|v2"}[60s]))&time=1700000000.000"#;
        assert!(seen.iter().any(|t| t == requests), "{seen:#?}");

        assert_eq!(a.missing, None);
        let (stable, canary) = (a.stable.unwrap(), a.canary.unwrap());
        assert_eq!((stable.requests, stable.errors, stable.p99_ms), (100, 0, Some(42.0)));
        assert_eq!((canary.requests, canary.errors, canary.p99_ms), (200, 20, Some(42.0)));
        // `v1.0` is its own label value, not `v1`'s pattern; v11 has no requests series.
        let stable = b.stable.unwrap();
        assert_eq!((stable.requests, stable.errors, stable.p99_ms), (300, 0, None));
        assert_eq!(b.canary, None);
        assert_eq!(b.missing.unwrap(), "prometheus: requests for v11: empty result (no series matched)");
    }

    #[tokio::test]
    async fn several_series_for_one_version_make_that_version_missing() {
        let server = batched_server(|metric, version| match (metric, version) {
            ("p95", "v2") => Some("10+11"),
            _ => Some("5"),
        })
        .await;
        let source = Prometheus::new(&server.address, &PromQueries::default(), "v1", "v2").unwrap();
        let m = source.sample(Duration::from_secs(60), NOW).await;
        assert_eq!(m.stable.map(|w| w.p95_ms), Some(Some(5.0)));
        assert_eq!(m.canary, None);
        assert_eq!(
            m.missing.unwrap(),
            r#"prometheus: p95 for v2: 2 series with version="v2", expected one (group the query by (version) only)"#
        );
    }

    #[tokio::test]
    async fn a_failed_batched_query_fails_every_version_that_asked() {
        let body = r#"{"status":"error","errorType":"execution","error":"query timed out"}"#;
        let server = test_server::start(move |_| Reply::Now(503, body.to_string())).await;
        let pool = PrometheusPool::new();
        let a = pool.source(&server.address, &PromQueries::default(), "v1", "v2").unwrap();
        let b = pool.source(&server.address, &PromQueries::default(), "v3", "v4").unwrap();
        let window = Duration::from_secs(60);
        let (a, b) = tokio::join!(a.sample(window, NOW), b.sample(window, NOW));
        assert_eq!(server.queries(), 6);
        for m in [a, b] {
            assert_eq!((&m.stable, &m.canary), (&None, &None));
            assert!(m.missing.unwrap().contains("requests for v"), "names the version");
        }
    }

    #[tokio::test]
    async fn different_windows_are_different_queries() {
        let server = batched_server(|_, _| Some("7")).await;
        let pool = PrometheusPool::new();
        let a = pool.source(&server.address, &PromQueries::default(), "v1", "v2").unwrap();
        let b = pool.source(&server.address, &PromQueries::default(), "v1", "v2").unwrap();
        let later = Timestamp(NOW.0 + 60_000);
        let (a, b) = tokio::join!(a.sample(Duration::from_secs(60), NOW), b.sample(Duration::from_secs(30), later));
        assert_eq!((a.missing, b.missing), (None, None));
        assert_eq!(server.queries(), 12, "another interval and time cannot share an answer");
    }

    #[tokio::test]
    async fn a_batch_that_finds_no_free_query_slot_in_time_leaves_its_versions_missing() {
        let server =
            test_server::start(
                |target| {
                    if target.contains("hold") {
                        Reply::Never
                    } else {
                        Reply::Now(200, series(&[]))
                    }
                },
            )
            .await;
        let timeout = Duration::from_millis(300);
        let one_slot = Arc::new(Server::standalone(&server.address, timeout, 1).unwrap());
        // Another query holds the only slot past the sample's limit.
        let holder = tokio::spawn({
            let server = one_slot.clone();
            async move { server.query("hold", "1", Instant::now() + Duration::from_secs(10)).await.map(|_| ()) }
        });
        server.wait_for_queries(1).await;
        let q = PromQueries::default();
        let m = Prometheus::on(one_slot, &q, forms(&q).unwrap(), "v1", "v2").sample(Duration::from_secs(60), NOW).await;
        assert_eq!((m.stable, m.canary), (None, None));
        let why = format!("no answer from {} within 300ms: all 1 query slots stayed busy", server.address);
        assert_eq!(
            m.missing.unwrap(),
            format!("prometheus: requests for v1: {why}; prometheus: requests for v2: {why}")
        );
        assert_eq!(server.queries(), 1, "the batch never ran");
        holder.abort();
    }
}
