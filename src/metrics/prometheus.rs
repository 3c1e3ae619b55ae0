//! Prometheus metrics source: one PromQL instant query per metric and version.
//!
//! A plan selects it with `[metrics] source = "prometheus"`, an `address`
//! (`http://127.0.0.1:9090`, a path prefix such as `http://host/prom` is kept)
//! and the query templates of [`PromQueries`]. In each template `{{version}}`
//! becomes the revision (the plan's `stable` or `canary`, verbatim) and
//! `{{interval}}` the analysis window in whole seconds (`60s`, at least `1s`).
//!
//! One sample is ten queries (requests, errors, p50, p95, p99 for each
//! version), sent concurrently to `GET {address}/api/v1/query` with a 2 s
//! limit per query (connect to last byte). Each query must answer a single
//! number: a scalar, or an instant vector with exactly one series (aggregate
//! with `sum(...)`). Latency queries answer in milliseconds.
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
//! invented, with two deliberate readings of "no data":
//! - `requests`: any failure makes the version missing, including an empty
//!   vector (no series: wrong label, no traffic ever, target not scraped).
//! - `errors`: an empty vector counts as 0 errors when `requests` was read.
//!   A `code=~"5.."` selector matches nothing until the first 5xx is
//!   counted, and most clients create that series lazily; the request count
//!   proves the version is scraped, so "no 5xx series" means "no 5xx".
//! - latency: NaN (`histogram_quantile` over a window without observations)
//!   or an empty vector leaves that quantile `None`; the analysis treats a
//!   missing p99 as inconclusive. `+Inf` (the quantile lies beyond the
//!   largest bucket) is not a number of milliseconds: the version is missing.
//! - HTTP errors (with Prometheus' own `errorType: error` text), connection
//!   failures, timeouts, `status` other than `success`, malformed JSON,
//!   range vectors, several series, NaN or infinite counts: the version is
//!   missing. Requests and errors are rounded to whole counts (`increase()`
//!   extrapolates to the window's edges, so it rarely answers integers).

use crate::metrics::MetricsSource;
use async_trait::async_trait;
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::PromQueries;
use flightdeck_core::time::Timestamp;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Limit for one query, connect to last byte.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The placeholders a query template may use.
const PLACEHOLDERS: [&str; 2] = ["{{version}}", "{{interval}}"];

/// Per-version metrics from a Prometheus server.
pub struct Prometheus {
    client: reqwest::Client,
    /// As written in the plan, for messages.
    address: String,
    /// `{address}/api/v1/query`.
    endpoint: reqwest::Url,
    timeout: Duration,
    queries: PromQueries,
    stable: String,
    canary: String,
}

impl Prometheus {
    /// `stable`/`canary`: the values substituted for `{{version}}` (the plan's revisions).
    /// Fails on an address that is not an http(s) URL or a template with an
    /// unknown `{{placeholder}}`.
    pub fn new(address: &str, queries: &PromQueries, stable: &str, canary: &str) -> Result<Prometheus, String> {
        Prometheus::with_timeout(address, queries, stable, canary, QUERY_TIMEOUT)
    }

    fn with_timeout(
        address: &str,
        queries: &PromQueries,
        stable: &str,
        canary: &str,
        timeout: Duration,
    ) -> Result<Prometheus, String> {
        let endpoint = query_endpoint(address)?;
        for query in Query::ALL {
            check_placeholders(query, query.template(queries))?;
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("prometheus: cannot build an HTTP client: {e}"))?;
        Ok(Prometheus {
            client,
            address: address.to_string(),
            endpoint,
            timeout,
            queries: queries.clone(),
            stable: stable.to_string(),
            canary: canary.to_string(),
        })
    }

    /// All five metrics of one version, queried concurrently.
    async fn read_version(&self, version: &str, interval: &str, time: &str) -> Result<VersionWindow, String> {
        let (requests, errors, p50, p95, p99) = tokio::join!(
            self.run(Query::Requests, version, interval, time),
            self.run(Query::Errors, version, interval, time),
            self.run(Query::P50, version, interval, time),
            self.run(Query::P95, version, interval, time),
            self.run(Query::P99, version, interval, time),
        );
        version_window(version, Readings { requests, errors, p50, p95, p99 })
    }

    async fn run(&self, query: Query, version: &str, interval: &str, time: &str) -> Reading {
        let promql = render(query.template(&self.queries), version, interval);
        let response = self
            .client
            .get(self.endpoint.clone())
            .query(&[("query", promql.as_str()), ("time", time)])
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
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

#[async_trait]
impl MetricsSource for Prometheus {
    async fn sample(&self, window: Duration, now: Timestamp) -> MetricsSample {
        let time = evaluation_time(now, wall_clock());
        let interval = interval(window);
        let (stable, canary) = tokio::join!(
            self.read_version(&self.stable, &interval, &time),
            self.read_version(&self.canary, &interval, &time),
        );
        let reasons: Vec<String> = [&stable, &canary].into_iter().filter_map(|r| r.as_ref().err().cloned()).collect();
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

/// Why one query gave no usable number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum QueryError {
    #[error("cannot connect to {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("no answer from {address} within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("request to {address} failed: {detail}")]
    Transport { address: String, detail: String },
    #[error("HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("status {status}: {detail}")]
    Failed { status: String, detail: String },
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("result type {0}, expected an instant vector or a scalar")]
    ResultType(String),
    #[error("{0} series, expected one (aggregate the query, e.g. with sum(...))")]
    SeveralSeries(usize),
    #[error("empty result (no series matched)")]
    Empty,
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    #[error("negative count {0}")]
    Negative(f64),
}

/// One query's answer: `None` is an empty vector.
type Reading = Result<Option<f64>, QueryError>;

struct Readings {
    requests: Reading,
    errors: Reading,
    p50: Reading,
    p95: Reading,
    p99: Reading,
}

/// Applies the module's rules for "no data" (see the module doc); the first
/// failing query, in `Query::ALL` order, names the reason.
fn version_window(version: &str, r: Readings) -> Result<VersionWindow, String> {
    let why = |query: Query| move |e: QueryError| format!("prometheus: {} for {version}: {e}", query.name());
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

/// Prometheus' answer envelope (`/api/v1/query`).
#[derive(Deserialize)]
struct Reply {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

impl Reply {
    /// "bad_data: parse error ..." or the bare status.
    fn error_text(&self) -> String {
        match (&self.error_type, &self.error) {
            (Some(t), Some(e)) => format!("{t}: {e}"),
            (None, Some(e)) => e.clone(),
            (Some(t), None) => t.clone(),
            (None, None) => format!("no error text (status {})", self.status),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar(Point),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    value: Point,
}

/// `[<unix seconds>, "<number>"]`; Prometheus writes NaN and ±Inf as text.
#[derive(Deserialize)]
struct Point(IgnoredAny, String);

impl Point {
    fn number(&self) -> Result<f64, QueryError> {
        self.1.parse().map_err(|_| QueryError::Malformed(format!("value {:?} is not a number", self.1)))
    }
}

/// One HTTP answer to a number, `None` for an empty vector.
fn parse_reply(status: u16, body: &str) -> Reading {
    let reply: Result<Reply, _> = serde_json::from_str(body);
    if !(200..300).contains(&status) {
        let detail = reply.map_or_else(|_| excerpt(body), |r| r.error_text());
        return Err(QueryError::Http { status, detail });
    }
    let reply = reply.map_err(|e| QueryError::Malformed(format!("{e} in {}", excerpt(body))))?;
    if reply.status != "success" {
        return Err(QueryError::Failed { status: reply.status.clone(), detail: reply.error_text() });
    }
    match reply.data {
        None => Err(QueryError::Malformed("no data".into())),
        Some(Data::Scalar(point)) => point.number().map(Some),
        Some(Data::Vector(series)) => match series.as_slice() {
            [] => Ok(None),
            [one] => one.value.number().map(Some),
            many => Err(QueryError::SeveralSeries(many.len())),
        },
        Some(Data::Matrix(_)) => Err(QueryError::ResultType("matrix".into())),
        Some(Data::String(_)) => Err(QueryError::ResultType("string".into())),
    }
}

/// The start of a body, for messages (an HTML error page can be long).
fn excerpt(body: &str) -> String {
    const LIMIT: usize = 200;
    let body = body.trim();
    match body.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{:?}…", &body[..cut]),
        None if body.is_empty() => "empty body".into(),
        None => format!("{body:?}"),
    }
}

fn query_endpoint(address: &str) -> Result<reqwest::Url, String> {
    let invalid =
        |why: &str| format!("prometheus address {address:?}: {why}; expected http://host:port or https://host:port");
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

/// A typo in a placeholder would reach Prometheus as a parse error on every
/// sample; say so once, when the plan is loaded.
fn check_placeholders(query: Query, template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let tail = &rest[start..];
        let end = tail.find("}}").map_or(tail.len(), |i| i + 2);
        let placeholder = &tail[..end];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(format!(
                "prometheus query {}: unknown placeholder {placeholder} (known: {})",
                query.name(),
                PLACEHOLDERS.join(", ")
            ));
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
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn vector(value: &str) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.0,"{value}"]}}]}}}}"#
        )
    }

    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

    fn readings(requests: Reading, errors: Reading, p99: Reading) -> Readings {
        Readings { requests, errors, p50: Ok(Some(3.0)), p95: Ok(Some(4.0)), p99 }
    }

    #[test]
    fn templates_get_version_and_interval() {
        let q = PromQueries::default();
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
    fn new_checks_address_and_placeholders() {
        let q = PromQueries::default();
        assert!(Prometheus::new("http://127.0.0.1:9090/", &q, "v1", "v2").is_ok());
        let e = Prometheus::new("127.0.0.1:9090", &q, "v1", "v2").err().unwrap();
        assert!(e.contains("expected http://host:port"), "{e}");
        let e = Prometheus::new("localhost:9090", &q, "v1", "v2").err().unwrap();
        assert_eq!(
            e,
            "prometheus address \"localhost:9090\": unsupported scheme \"localhost\"; \
             expected http://host:port or https://host:port"
        );
        let typo = PromQueries { p95: "m{v=\"{{verison}}\"}".into(), ..q };
        let e = Prometheus::new("http://localhost:9090", &typo, "v1", "v2").err().unwrap();
        assert_eq!(e, "prometheus query p95: unknown placeholder {{verison}} (known: {{version}}, {{interval}})");
    }

    #[test]
    fn evaluation_time_is_now_in_seconds_capped_at_the_wall_clock() {
        assert_eq!(evaluation_time(Timestamp(1_700_000_000_250), Timestamp(1_800_000_000_000)), "1700000000.250");
        assert_eq!(evaluation_time(Timestamp(1_800_000_000_000), Timestamp(1_700_000_000_000)), "1700000000.000");
    }

    #[test]
    fn replies_parse_to_one_number() {
        assert_eq!(parse_reply(200, &vector("299.6")), Ok(Some(299.6)));
        assert_eq!(parse_reply(200, EMPTY), Ok(None));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#;
        assert_eq!(parse_reply(200, scalar), Ok(Some(42.0)));
        assert!(parse_reply(200, &vector("NaN")).unwrap().unwrap().is_nan());
        assert_eq!(parse_reply(200, &vector("+Inf")), Ok(Some(f64::INFINITY)));
    }

    #[test]
    fn unusable_replies_say_why() {
        let failed = r#"{"status":"error","errorType":"execution","error":"query timed out"}"#;
        assert_eq!(parse_reply(200, failed).unwrap_err().to_string(), "status error: execution: query timed out");
        let bad = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \")\""}"#;
        assert_eq!(
            parse_reply(400, bad).unwrap_err().to_string(),
            r#"HTTP 400: bad_data: 1:5: parse error: unexpected ")""#
        );
        assert_eq!(
            parse_reply(502, "<html>Bad Gateway</html>").unwrap_err().to_string(),
            r#"HTTP 502: "<html>Bad Gateway</html>""#
        );
        let malformed = parse_reply(200, r#"{"status":"success","data":{"resultType":"vector","result":[{"#);
        assert!(matches!(malformed, Err(QueryError::Malformed(_))), "{malformed:?}");
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"code":"200"},"value":[1,"1"]},{"metric":{"code":"500"},"value":[1,"2"]}]}}"#;
        assert_eq!(parse_reply(200, two), Err(QueryError::SeveralSeries(2)));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse_reply(200, matrix), Err(QueryError::ResultType("matrix".into())));
        let text = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"many"]}]}}"#;
        assert!(matches!(parse_reply(200, text), Err(QueryError::Malformed(_))));
    }

    #[test]
    fn a_window_rounds_counts_and_keeps_quantiles() {
        let w = version_window("v2", readings(Ok(Some(299.6)), Ok(Some(59.4)), Ok(Some(4.9)))).unwrap();
        assert_eq!((w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms), (300, 59, Some(3.0), Some(4.0), Some(4.9)));
    }

    #[test]
    fn no_requests_series_means_no_window() {
        let e = version_window("v2", readings(Ok(None), Ok(None), Ok(None))).unwrap_err();
        assert_eq!(e, "prometheus: requests for v2: empty result (no series matched)");
        let e = version_window("v2", readings(Ok(Some(f64::NAN)), Ok(Some(0.0)), Ok(None))).unwrap_err();
        assert_eq!(e, "prometheus: requests for v2: value NaN is not a finite number");
    }

    #[test]
    fn no_error_series_means_no_errors_once_requests_are_read() {
        let w = version_window("v1", readings(Ok(Some(100.0)), Ok(None), Ok(Some(5.0)))).unwrap();
        assert_eq!((w.requests, w.errors), (100, 0));
        let e = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(f64::INFINITY)), Ok(None))).unwrap_err();
        assert_eq!(e, "prometheus: errors for v1: value inf is not a finite number");
    }

    #[test]
    fn a_nan_quantile_is_unknown_but_an_infinite_one_is_unusable() {
        let w = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(1.0)), Ok(Some(f64::NAN)))).unwrap();
        assert_eq!(w.p99_ms, None);
        let w = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(1.0)), Ok(None))).unwrap();
        assert_eq!(w.p99_ms, None);
        let e = version_window("v1", readings(Ok(Some(100.0)), Ok(Some(1.0)), Ok(Some(f64::INFINITY)))).unwrap_err();
        assert_eq!(e, "prometheus: p99 for v1: value inf is not a finite number");
    }

    /// A one-shot-per-connection HTTP server: `answer(request target)` gives
    /// status and body, `None` never answers. Returns its address and the
    /// decoded request targets it saw.
    async fn canned(
        answer: impl Fn(&str) -> Option<(u16, String)> + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (Arc::new(answer), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let target = decode(text.split_whitespace().nth(1).unwrap_or(""));
                    log.lock().unwrap().push(target.clone());
                    let Some((status, body)) = answer(&target) else {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        (address, seen)
    }

    /// `application/x-www-form-urlencoded` back to text.
    fn decode(s: &str) -> String {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap());
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn source(address: &str, timeout: Duration) -> Prometheus {
        Prometheus::with_timeout(address, &PromQueries::default(), "v1", "v2", timeout).unwrap()
    }

    #[tokio::test]
    async fn a_sample_queries_every_metric_of_both_versions() {
        let (address, seen) = canned(|target| {
            let value = if target.contains("code=~") {
                "3"
            } else if target.contains("0.99") {
                "8.5"
            } else {
                "120"
            };
            let value = if target.contains("version=\"v2\"") && target.contains("0.5,") { "NaN" } else { value };
            Some((200, vector(value)))
        })
        .await;
        let m = source(&address, Duration::from_secs(2)).sample(Duration::from_secs(60), NOW).await;
        assert_eq!(m.missing, None);
        let (stable, canary) = (m.stable.unwrap(), m.canary.unwrap());
        assert_eq!((stable.requests, stable.errors, stable.p50_ms, stable.p99_ms), (120, 3, Some(120.0), Some(8.5)));
        assert_eq!((canary.requests, canary.p50_ms), (120, None));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 10);
        let requests =
            r#"/api/v1/query?query=sum(increase(http_requests_total{version="v2"}[60s]))&time=1700000000.000"#;
        assert!(seen.iter().any(|t| t == requests), "{seen:#?}");
    }

    #[tokio::test]
    async fn http_errors_carry_prometheus_own_text() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\""}"#;
        let (address, _) = canned(move |_| Some((400, body.to_string()))).await;
        let m = source(&address, Duration::from_secs(2)).sample(Duration::from_secs(60), NOW).await;
        assert_eq!((m.stable, m.canary), (None, None));
        assert_eq!(
            m.missing.unwrap(),
            "prometheus: requests for v1: HTTP 400: bad_data: invalid parameter \"query\"; \
             prometheus: requests for v2: HTTP 400: bad_data: invalid parameter \"query\""
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (address, _) = canned(|target| (!target.contains("v2")).then(|| (200, vector("10")))).await;
        let m = source(&address, Duration::from_millis(300)).sample(Duration::from_secs(60), NOW).await;
        assert!(m.stable.is_some());
        assert_eq!(m.canary, None);
        assert_eq!(m.missing.unwrap(), format!("prometheus: requests for v2: no answer from {address} within 300ms"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("http://127.0.0.1:{port}");
        let m = source(&address, Duration::from_secs(2)).sample(Duration::from_secs(60), NOW).await;
        assert_eq!((m.stable, m.canary), (None, None));
        let missing = m.missing.unwrap();
        assert!(
            missing.starts_with(&format!("prometheus: requests for v1: cannot connect to {address}: ")),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn no_slo_queries_yet() {
        assert_eq!(source("http://127.0.0.1:9", QUERY_TIMEOUT).slo(NOW).await, None);
    }
}
