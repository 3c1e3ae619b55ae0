//! Envoy through its admin API: traffic shifting with a runtime fraction.
//!
//! This is Envoy's documented traffic-shifting pattern. The listener's route
//! configuration holds two routes for the same match; the first one carries a
//! `runtime_fraction` and sends its share to the canary cluster, everything
//! it does not take falls through to the stable cluster:
//!
//! ```yaml
//! routes:
//! - match:
//!     prefix: "/"
//!     runtime_fraction:
//!       default_value: { numerator: 0, denominator: HUNDRED }
//!       runtime_key: routing.traffic_shift.canary
//!   route: { cluster: canary }
//! - match: { prefix: "/" }
//!   route: { cluster: stable }
//! ```
//!
//! flightdeck moves the runtime key, never the route configuration. The
//! bootstrap must have an `admin_layer` in `layered_runtime` (without one,
//! `/runtime_modify` is refused). `examples/envoy/envoy.yaml` is a complete
//! configuration.
//!
//! ```toml
//! [target]
//! backend = "envoy"
//! admin = "127.0.0.1:9901"
//! stable_cluster = "stable"
//! canary_cluster = "canary"
//! ```
//!
//! Parameters (`[target]` or `[target.params]`): [`PARAMS`], and the
//! proxies' `timeout_ms` (default 2000): limit for one admin call, connect
//! to last byte. Clusters are named as in Envoy's stats (a cluster's
//! `alt_stat_name` if set).
//!
//! Effects: `SetWeight { canary: w }` is `POST /runtime_modify?<key>=<w>`, a
//! numerator out of the route's `HUNDRED` denominator; `SwitchActive` is 100
//! (canary) or 0 (stable). Admin runtime values live in the running process
//! only, exactly like HAProxy's runtime weights: a restarted Envoy is back at
//! the route's `default_value`, `observe` reports that, and the core pauses
//! on the drift. `Scale` is accepted and does nothing: Envoy routes to the
//! servers but does not run them, and taking a side out of traffic is what
//! weight 0 already does. `Undo` and `Native` have no Envoy meaning.
//!
//! Read-back: `observe` reads `GET /runtime?format=json` and reports the
//! key's `final_value` (the top layer's value). A key no layer sets reads as
//! 0, because the route's `default_value` then decides, and the shipped
//! configuration's default is 0. A value above 100 reads as 100: Envoy sends
//! everything to the canary once the numerator reaches the denominator.
//!
//! Metrics (`[metrics] source = "backend"`) come from `GET /stats/prometheus`,
//! per cluster: requests are `envoy_cluster_upstream_rq_xx` summed over the
//! response classes (per-code `envoy_cluster_upstream_rq` when the class
//! counters are missing), errors are class 5. Envoy counts its own 503s for
//! an unreachable or reset upstream there too, so a dead canary shows as
//! errors, not as silence. Latency comes from the
//! `envoy_cluster_upstream_rq_time` histogram, whose buckets are already in
//! milliseconds. Counters are cumulative: the source keeps the previous
//! reading per cluster and reports the difference, so the first reading (and
//! the first after the counters went back, i.e. a restart, or after a failed
//! read) has no window and reports the version missing. Quantiles come from
//! the bucket differences with linear interpolation inside the bucket, as
//! Prometheus' `histogram_quantile` does; a quantile that lands in the `+Inf`
//! bucket is reported as the largest finite bound.
//!
//! Envoy merges histograms from its worker threads only when it flushes
//! stats: every `stats_flush_interval` (5 s by default) or, with
//! `stats_flush_on_admin: true`, when an admin request arrives, and then
//! asynchronously, so the answer to that request still shows the previous
//! merge. The source therefore reads twice, [`HISTOGRAM_MERGE_WAIT`] apart,
//! and uses the second reading. With the default flush interval the
//! histograms lag the counters by up to 5 s, which shifts a minute-long
//! window's quantiles slightly and leaves request and error counts exact.
//! The shipped configuration sets `stats_flush_on_admin`.

use super::{Baseline, Counters};
use crate::backend::{Backend, BackendError};
use crate::metrics::Unread;
use crate::metrics::{missing, MetricsSource};
use async_trait::async_trait;
use flightdeck_core::analysis::{BucketCounts, MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::params::{Param, ParamError, ParamKind::Text, TargetError};
use flightdeck_core::plan::{BackendKind, Target};
use flightdeck_core::rollout::{Effect, Observation, Version};
use flightdeck_core::time::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// Limit for one admin call unless the plan sets `timeout_ms`.
/// What an Envoy target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("admin", Text, "the admin listener, `host:port` or an http(s) URL"),
    Param::required("stable_cluster", Text, "the Envoy cluster of the stable version"),
    Param::required("canary_cluster", Text, "the Envoy cluster of the canary"),
    Param::optional(
        "runtime_key",
        Text,
        "the key the canary route's `runtime_fraction` reads (default `routing.traffic_shift.canary`)",
    ),
];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The runtime key of Envoy's traffic-shifting example.
pub const DEFAULT_RUNTIME_KEY: &str = "routing.traffic_shift.canary";
/// Time for Envoy's asynchronous histogram merge after a flush-on-admin read.
pub const HISTOGRAM_MERGE_WAIT: Duration = Duration::from_millis(100);

/// One Envoy route splitting traffic between a stable and a canary cluster.
#[derive(Debug)]
pub struct Envoy {
    /// The admin address as the plan wrote it (for names and messages).
    admin: String,
    /// Base URL of the admin API, without a trailing `/`.
    admin_url: String,
    stable_cluster: String,
    canary_cluster: String,
    runtime_key: String,
    timeout: Duration,
    http: reqwest::Client,
    /// The previous cumulative stats per version: the start of the next window.
    baseline: Baseline<ClusterCounters>,
}

impl Envoy {
    /// Reads the target's parameters (see the module doc).
    pub fn from_target(target: &Target) -> Result<Envoy, TargetError> {
        crate::backend::target::expect_backend(target, BackendKind::Envoy)?;
        let param = |key: &'static str| crate::backend::target::required(target, "envoy", key);
        let timeout = crate::backend::target::timeout(target, DEFAULT_TIMEOUT)?;
        let admin = param("admin")?;
        let runtime_key = param("runtime_key").unwrap_or_else(|_| DEFAULT_RUNTIME_KEY.to_string());
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| TargetError::Target(format!("envoy: cannot build an HTTP client: {e}")))?;
        Ok(Envoy {
            admin_url: admin_url(&admin)?,
            admin,
            stable_cluster: param("stable_cluster")?,
            canary_cluster: param("canary_cluster")?,
            runtime_key,
            timeout,
            http,
            baseline: Baseline::new("envoy"),
        })
    }

    /// The admin address as configured.
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// The runtime key the canary route reads.
    pub fn runtime_key(&self) -> &str {
        &self.runtime_key
    }

    fn cluster(&self, version: Version) -> &str {
        match version {
            Version::Stable => &self.stable_cluster,
            Version::Canary => &self.canary_cluster,
        }
    }

    fn unreachable(&self, detail: String) -> BackendError {
        BackendError::Unreachable { backend: self.name(), detail }
    }

    fn refused(&self, action: &str, detail: String) -> BackendError {
        BackendError::Refused { backend: self.name(), action: action.to_string(), detail }
    }

    /// One admin call; any HTTP answer comes back with its status, transport
    /// failures (refused, timed out, cut off) are `Unreachable`.
    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<(u16, String), BackendError> {
        let fail = |e: reqwest::Error| self.unreachable(format!("{what} at {}: {}", self.admin_url, self.describe(&e)));
        // reqwest's timeout usually fires first; this bound holds whatever the client does.
        let exchange = async {
            let response = request.send().await.map_err(fail)?;
            let status = response.status().as_u16();
            let body = response.text().await.map_err(fail)?;
            Ok((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(self.unreachable(format!(
                "{what} at {}: no answer within {} ms",
                self.admin_url,
                self.timeout.as_millis()
            ))),
        }
    }

    /// The innermost cause says what happened ("Connection refused"); reqwest's
    /// own message only repeats the URL.
    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer within {} ms", self.timeout.as_millis());
        }
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let prefix = if e.is_connect() { "cannot connect: " } else { "" };
        format!("{prefix}{cause}")
    }

    /// Sets the canary route's runtime numerator (percent).
    async fn set_canary_share(&self, canary: u8) -> Result<(), BackendError> {
        let action = format!("{}={canary}", self.runtime_key);
        if canary > 100 {
            return Err(self.refused(&action, "a share is at most 100 %".into()));
        }
        let url = format!("{}/runtime_modify", self.admin_url);
        let request = self.http.post(url).query(&[(self.runtime_key.as_str(), canary.to_string())]);
        let (status, body) = self.call(request, "POST /runtime_modify").await?;
        match status {
            200 => Ok(()),
            // "No admin layer specified" when layered_runtime lacks an admin_layer.
            _ => Err(self.refused(&action, format!("HTTP {status}: {}", first_line(&body)))),
        }
    }

    /// The runtime key's final value, percent; 0 when no layer sets it.
    async fn canary_share(&self) -> Result<u8, BackendError> {
        let request = self.http.get(format!("{}/runtime", self.admin_url)).query(&[("format", "json")]);
        let (status, body) = self.call(request, "GET /runtime").await?;
        let action = format!("read runtime key {}", self.runtime_key);
        if status != 200 {
            return Err(self.refused(&action, format!("HTTP {status}: {}", first_line(&body))));
        }
        runtime_share(&body, &self.runtime_key).map_err(|detail| self.refused(&action, detail))
    }

    /// The `upstream_rq` stats of both clusters, after letting Envoy merge
    /// its histograms (see the module doc).
    async fn read_stats(&self) -> Result<StatsPage, Unread> {
        let url = format!("{}/stats/prometheus", self.admin_url);
        let filter = stats_filter(&[&self.stable_cluster, &self.canary_cluster]);
        let read = || self.call(self.http.get(&url).query(&[("filter", filter.as_str())]), "GET /stats/prometheus");
        let unreachable = |e| Unread::Unreachable(without_name(e));
        read().await.map_err(unreachable)?;
        tokio::time::sleep(HISTOGRAM_MERGE_WAIT).await;
        let (status, body) = read().await.map_err(unreachable)?;
        if status != 200 {
            let said = format!("GET /stats/prometheus answered HTTP {status}: {}", first_line(&body));
            return Err(Unread::Unreachable(said));
        }
        Ok(StatsPage::parse(&body))
    }

    /// One reading into a window; no stats for the cluster breaks the window.
    fn window(&self, version: Version, reading: Option<ClusterCounters>) -> Result<VersionWindow, Unread> {
        let cluster = self.cluster(version);
        let reading = reading.ok_or_else(|| {
            Unread::NotFound(format!("no upstream_rq stats for cluster `{cluster}` (is it defined in envoy?)"))
        });
        self.baseline.window(version, reading)
    }
}

impl std::fmt::Display for Envoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "envoy {} at {}", self.canary_cluster, self.admin)
    }
}

/// `127.0.0.1:9901` → `http://127.0.0.1:9901`; a trailing `/` goes.
fn admin_url(admin: &str) -> Result<String, ParamError> {
    let url = if admin.contains("://") { admin.to_string() } else { format!("http://{admin}") };
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| ParamError::new("admin", format!("`{admin}` is not an address: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ParamError::new("admin", format!("`{admin}` is not an http(s) address")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The error without the backend's name, for messages that already start with it.
fn without_name(error: BackendError) -> String {
    match error {
        BackendError::Unreachable { detail, .. } => format!("unreachable: {detail}"),
        other => other.to_string(),
    }
}

fn first_line(body: &str) -> &str {
    body.trim().lines().next().unwrap_or("empty reply")
}

/// The runtime key's share from `/runtime`'s JSON:
/// `{"entries": {"<key>": {"final_value": "10", ...}}}`.
fn runtime_share(body: &str, key: &str) -> Result<u8, String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("/runtime is not JSON ({e}): {}", first_line(body)))?;
    let value = json.get("entries").and_then(|entries| entries.get(key)).and_then(|entry| entry.get("final_value"));
    let text = match value {
        // No layer sets the key: the route's default_value (0 in the shipped config) decides.
        None => return Ok(0),
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => return Ok(0),
        Some(serde_json::Value::String(text)) => text.trim().to_string(),
        Some(other) => other.to_string(),
    };
    let numerator: u64 = text.parse().map_err(|_| format!("{key} is {text:?}, not a whole percent"))?;
    // Envoy sends everything once the numerator reaches the denominator.
    Ok(numerator.min(100) as u8)
}

/// A `filter` regex (RE2, on Envoy's own stat names) for the clusters'
/// response counters and request-time histogram. Envoy creates those on the
/// first response; `upstream_rq_total` exists from the start and tells an
/// idle cluster (zero requests) from one Envoy does not have.
fn stats_filter(clusters: &[&str]) -> String {
    let names: Vec<String> = clusters.iter().map(|c| regex_escape(c)).collect();
    format!(r"^cluster\.({})\.upstream_rq_(total|time|[0-9]xx|[0-9]{{3}})$", names.join("|"))
}

/// Escapes RE2 metacharacters (cluster names often hold `.`, `-` or `|`).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl Backend for Envoy {
    fn name(&self) -> String {
        self.to_string()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        match effect {
            Effect::SetWeight { canary } => self.set_canary_share(*canary).await,
            Effect::SwitchActive { to: Version::Canary } => self.set_canary_share(100).await,
            Effect::SwitchActive { to: Version::Stable } => self.set_canary_share(0).await,
            // Envoy does not run the servers; weight 0 already takes a side out of traffic.
            Effect::Scale { .. } => Ok(()),
            Effect::Undo { .. } | Effect::Native { .. } => {
                Err(BackendError::Unsupported { backend: self.name(), effect: effect.to_string() })
            }
            // Notices are for viewers; the engine never sends them here.
            Effect::Notify(_) => Ok(()),
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let canary = self.canary_share().await?;
        Ok(Observation { canary_weight: Some(canary), ..Observation::default() })
    }
}

#[async_trait]
impl MetricsSource for Envoy {
    async fn sample(&self, window: Duration, _now: Timestamp) -> MetricsSample {
        let page = match self.read_stats().await {
            Ok(page) => page,
            Err(reason) => {
                self.baseline.clear();
                return missing(window, format!("{}: {reason}", self.name()));
            }
        };
        let read = |version: Version| self.window(version, page.cluster(self.cluster(version)));
        let (stable, canary) = (read(Version::Stable), read(Version::Canary));
        let name = self.name();
        crate::metrics::per_version(window, &name, stable, canary)
    }

    /// Envoy's counters are per process lifetime, not an SLO window.
    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

/// One cluster's cumulative numbers from one stats reading.
#[derive(Debug, Clone, PartialEq, Default)]
struct ClusterCounters {
    requests: u64,
    errors: u64,
    /// Request-time histogram: (upper bound in ms, cumulative count),
    /// ascending, `+Inf` last.
    buckets: Vec<(f64, u64)>,
}

impl Counters for ClusterCounters {
    fn since(&self, before: &ClusterCounters) -> Option<VersionWindow> {
        let requests = self.requests.checked_sub(before.requests)?;
        let errors = self.errors.checked_sub(before.errors)?;
        let buckets = bucket_delta(&self.buckets, &before.buckets)?;
        Some(VersionWindow {
            requests,
            errors,
            p50_ms: histogram_quantile(0.50, &buckets),
            p95_ms: histogram_quantile(0.95, &buckets),
            p99_ms: histogram_quantile(0.99, &buckets),
            // The buckets themselves are the evidence, judged on bounds.
            // Envoy's defaults (…, 250, 500, 1000 ms) are too coarse for a
            // 10 % p99 limit, and the analysis says so; finer ones
            // (`histogram_bucket_settings`) let it judge.
            buckets: bucket_counts(&buckets).map(Box::new),
            ..VersionWindow::default()
        })
    }
}

/// Per-bucket differences. Different bucket bounds (a changed
/// `histogram_bucket_settings`) give an empty histogram: no quantiles, but
/// the counts still stand. `None` if a bucket went back.
fn bucket_delta(now: &[(f64, u64)], before: &[(f64, u64)]) -> Option<Vec<(f64, u64)>> {
    if before.is_empty() {
        return Some(now.to_vec());
    }
    let same_bounds = now.len() == before.len() && now.iter().zip(before).all(|(a, b)| a.0 == b.0);
    if !same_bounds {
        return Some(Vec::new());
    }
    now.iter().zip(before).map(|(a, b)| Some((a.0, a.1.checked_sub(b.1)?))).collect()
}

/// Cumulative `(upper bound ms, count)` buckets, `+Inf` last, as the
/// analysis' bucket counts; `None` without a `+Inf` bucket.
fn bucket_counts(buckets: &[(f64, u64)]) -> Option<BucketCounts> {
    let (&(last, total), finite) = buckets.split_last()?;
    if !last.is_infinite() {
        return None;
    }
    Some(BucketCounts {
        le_ms: finite.iter().map(|b| b.0).collect(),
        at_or_below: finite.iter().map(|b| b.1).collect(),
        total,
    })
}

/// Prometheus' `histogram_quantile` on cumulative buckets (the last one
/// `+Inf`): find the bucket holding the rank and interpolate linearly
/// between its bounds (the first bucket starts at 0). A rank in `+Inf`
/// answers the largest finite bound. `None` without observations.
fn histogram_quantile(q: f64, buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let index = buckets.iter().position(|(_, count)| *count as f64 >= rank)?;
    let (upper, count) = buckets[index];
    let (lower, below) = if index == 0 { (0.0, 0) } else { buckets[index - 1] };
    if upper.is_infinite() {
        return Some(lower);
    }
    if index == 0 && upper <= 0.0 {
        return Some(upper);
    }
    let in_bucket = (count - below) as f64;
    Some(lower + (upper - lower) * (rank - below as f64) / in_bucket)
}

/// The clusters found in one `/stats/prometheus` answer.
#[derive(Debug, Default)]
struct StatsPage {
    clusters: HashMap<String, ClusterTally>,
}

/// What one page says about one cluster, before choosing which counters count.
#[derive(Debug, Default)]
struct ClusterTally {
    /// `upstream_rq_xx` by class ("2", "5").
    by_class: HashMap<String, u64>,
    /// `upstream_rq` by code ("200", "503").
    by_code: HashMap<String, u64>,
    buckets: Vec<(f64, u64)>,
}

impl StatsPage {
    fn parse(text: &str) -> StatsPage {
        let mut page = StatsPage::default();
        for sample in text.lines().filter_map(PromSample::parse) {
            let Some(cluster) = sample.label("envoy_cluster_name") else { continue };
            let tally = page.clusters.entry(cluster.to_string()).or_default();
            let count = sample.count();
            match sample.name {
                "envoy_cluster_upstream_rq_xx" => {
                    if let Some(class) = sample.label("envoy_response_code_class") {
                        tally.by_class.insert(class.to_string(), count);
                    }
                }
                "envoy_cluster_upstream_rq" => {
                    if let Some(code) = sample.label("envoy_response_code") {
                        tally.by_code.insert(code.to_string(), count);
                    }
                }
                "envoy_cluster_upstream_rq_time_bucket" => {
                    if let Some(le) = sample.label("le").and_then(parse_bound) {
                        tally.buckets.push((le, count));
                    }
                }
                _ => {}
            }
        }
        page
    }

    /// `None` when the page has nothing about the cluster (wrong name, or an
    /// Envoy that never had it).
    fn cluster(&self, name: &str) -> Option<ClusterCounters> {
        let tally = self.clusters.get(name)?;
        // Class counters are the documented ones; per-code ones say the same in more rows.
        let (requests, errors) = if !tally.by_class.is_empty() {
            (tally.by_class.values().sum(), tally.by_class.get("5").copied().unwrap_or(0))
        } else {
            let errors = tally.by_code.iter().filter(|(code, _)| code.starts_with('5')).map(|(_, n)| n).sum();
            (tally.by_code.values().sum(), errors)
        };
        let mut buckets = tally.buckets.clone();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(ClusterCounters { requests, errors, buckets })
    }
}

/// `"0.5"` → 0.5, `"+Inf"` → ∞.
fn parse_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => le.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

/// One line of the Prometheus text format: `name{k="v",…} value [timestamp]`.
#[derive(Debug, PartialEq)]
struct PromSample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl<'a> PromSample<'a> {
    /// `None` for comments, blank and malformed lines.
    fn parse(line: &'a str) -> Option<PromSample<'a>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
        let name = &line[..name_end];
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(inner) => parse_labels(inner)?,
            None => (Vec::new(), &line[name_end..]),
        };
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(PromSample { name, labels, value })
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    /// Counters and bucket counts as whole numbers (negative or NaN → 0).
    fn count(&self) -> u64 {
        if self.value.is_finite() && self.value > 0.0 {
            self.value.round() as u64
        } else {
            0
        }
    }
}

/// Parses `k="v",k2="v2"}` (after the `{`); returns the labels and the
/// text after the `}`. Values may hold `\\`, `\"` and `\n` escapes.
fn parse_labels(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start().trim_start_matches(',').trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once('=')?;
        let mut chars = rest.trim_start().strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim(), value));
        text = &rest.trim_start()[1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(params: &[(&str, &str)]) -> Target {
        Target {
            backend: BackendKind::Envoy,
            group: "edge".into(),
            production: false,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    const PARAMS: [(&str, &str); 3] =
        [("admin", "127.0.0.1:9901"), ("stable_cluster", "stable"), ("canary_cluster", "canary")];

    #[test]
    fn reads_the_target() {
        let e = Envoy::from_target(&target(&PARAMS)).unwrap();
        assert_eq!(e.admin_url, "http://127.0.0.1:9901");
        assert_eq!(e.runtime_key, DEFAULT_RUNTIME_KEY);
        assert_eq!(e.timeout, DEFAULT_TIMEOUT);
        assert_eq!(e.name(), "envoy canary at 127.0.0.1:9901");
        let mut more = PARAMS.to_vec();
        more.extend([("runtime_key", "shift.checkout"), ("timeout_ms", "250")]);
        let e = Envoy::from_target(&target(&more)).unwrap();
        assert_eq!((e.runtime_key.as_str(), e.timeout), ("shift.checkout", Duration::from_millis(250)));
        let err = Envoy::from_target(&target(&PARAMS[..2])).unwrap_err();
        assert_eq!(err, TargetError::Missing { backend: "envoy", key: "canary_cluster" });
        let mut bad = PARAMS.to_vec();
        bad[0] = ("admin", "ftp://host:1");
        let err = Envoy::from_target(&target(&bad)).unwrap_err();
        assert!(matches!(&err, TargetError::Param(p) if p.key == "admin"), "{err}");
    }

    #[test]
    fn admin_addresses_become_urls() {
        assert_eq!(admin_url("127.0.0.1:9901").unwrap(), "http://127.0.0.1:9901");
        assert_eq!(admin_url("http://envoy.internal:9901/").unwrap(), "http://envoy.internal:9901");
        assert_eq!(admin_url("https://edge/admin/").unwrap(), "https://edge/admin");
        assert!(admin_url("http://").is_err());
    }

    #[test]
    fn reads_the_runtime_share() {
        let body = r#"{"entries": {"routing.traffic_shift.canary": {"layer_values": ["", "10"], "final_value": "10"}},
                       "layers": ["static", "admin"]}"#;
        assert_eq!(runtime_share(body, DEFAULT_RUNTIME_KEY), Ok(10));
        assert_eq!(runtime_share(r#"{"entries": {}, "layers": []}"#, DEFAULT_RUNTIME_KEY), Ok(0), "default_value");
        assert_eq!(runtime_share(r#"{"entries": {"k": {"final_value": ""}}}"#, "k"), Ok(0));
        assert_eq!(runtime_share(r#"{"entries": {"k": {"final_value": "250"}}}"#, "k"), Ok(100));
        assert!(runtime_share(r#"{"entries": {"k": {"final_value": "abc"}}}"#, "k").unwrap_err().contains("abc"));
        assert!(runtime_share("404 Not Found", "k").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn filter_escapes_cluster_names() {
        assert_eq!(
            stats_filter(&["stable", "outbound|80||app.ns"]),
            r"^cluster\.(stable|outbound\|80\|\|app\.ns)\.upstream_rq_(total|time|[0-9]xx|[0-9]{3})$"
        );
    }

    #[test]
    fn parses_the_text_format() {
        let s =
            PromSample::parse(r#"envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="a\"b"} 7"#)
                .unwrap();
        assert_eq!(s.name, "envoy_cluster_upstream_rq");
        assert_eq!((s.label("envoy_response_code"), s.label("envoy_cluster_name")), (Some("503"), Some("a\"b")));
        assert_eq!(s.count(), 7);
        let bare = PromSample::parse("envoy_server_live 1 1700000000").unwrap();
        assert_eq!((bare.name, bare.labels.len(), bare.value), ("envoy_server_live", 0, 1.0));
        assert_eq!(PromSample::parse("# TYPE envoy_cluster_upstream_rq counter"), None);
        assert_eq!(PromSample::parse(r#"broken{le="1" 3"#), None);
    }

    const PAGE: &str = r#"# TYPE envoy_cluster_upstream_rq counter
envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="canary"} 80
envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="canary"} 20
envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="stable"} 900
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="canary"} 80
envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="canary"} 20
envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="stable"} 900
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="canary",le="0.5"} 0
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="canary",le="1"} 10
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="canary",le="5"} 90
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="canary",le="10"} 100
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="canary",le="+Inf"} 100
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="canary"} 300.5
envoy_cluster_upstream_rq_time_count{envoy_cluster_name="canary"} 100
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="stable",le="+Inf"} 0
"#;

    #[test]
    fn counts_requests_errors_and_buckets_per_cluster() {
        let page = StatsPage::parse(PAGE);
        let canary = page.cluster("canary").unwrap();
        assert_eq!((canary.requests, canary.errors), (100, 20));
        assert_eq!(canary.buckets, [(0.5, 0), (1.0, 10), (5.0, 90), (10.0, 100), (f64::INFINITY, 100)]);
        let stable = page.cluster("stable").unwrap();
        assert_eq!((stable.requests, stable.errors), (900, 0));
        assert!(page.cluster("nope").is_none());
        // Without class counters, the per-code ones give the same answer.
        let codes_only: String = PAGE.lines().filter(|l| !l.contains("rq_xx")).map(|l| format!("{l}\n")).collect();
        let canary = StatsPage::parse(&codes_only).cluster("canary").unwrap();
        assert_eq!((canary.requests, canary.errors), (100, 20));
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let buckets = [(0.5, 0), (1.0, 10), (5.0, 90), (10.0, 100), (f64::INFINITY, 100)];
        // Rank 50 of 100 is 40 of the 80 in (1, 5]: 1 + 4 × 40/80.
        assert_eq!(histogram_quantile(0.5, &buckets), Some(3.0));
        // Rank 99 is 9 of the 10 in (5, 10].
        assert_eq!(histogram_quantile(0.99, &buckets), Some(9.5));
        // Rank 5 is in the first non-empty bucket, (0.5, 1].
        assert_eq!(histogram_quantile(0.05, &buckets), Some(0.75));
        let slow = [(1.0, 1), (f64::INFINITY, 10)];
        assert_eq!(histogram_quantile(0.99, &slow), Some(1.0), "+Inf answers the largest finite bound");
        assert_eq!(histogram_quantile(0.99, &[(1.0, 0), (f64::INFINITY, 0)]), None);
        assert_eq!(histogram_quantile(0.99, &[]), None);
    }

    #[test]
    fn windows_are_deltas_and_never_invented() {
        let e = Envoy::from_target(&target(&PARAMS)).unwrap();
        let at = |requests, errors, fast, all| {
            Some(ClusterCounters { requests, errors, buckets: vec![(1.0, fast), (10.0, all), (f64::INFINITY, all)] })
        };
        assert_eq!(e.window(Version::Canary, at(100, 5, 50, 100)).unwrap_err(), Unread::FirstReading);
        let w = e.window(Version::Canary, at(200, 25, 150, 200)).unwrap();
        assert_eq!((w.requests, w.errors), (100, 20));
        assert_eq!(w.p50_ms, Some(0.5));
        let idle = e.window(Version::Canary, at(200, 25, 150, 200)).unwrap();
        assert_eq!((idle.requests, idle.p99_ms), (0, None), "no requests, no latency");
        assert_eq!(e.window(Version::Canary, at(3, 0, 3, 3)).unwrap_err(), Unread::CountersWentBack("envoy"));
        let missing = e.window(Version::Canary, None).unwrap_err();
        assert!(matches!(&missing, Unread::NotFound(m) if m.contains("cluster `canary`")), "{missing}");
        assert_eq!(e.window(Version::Canary, at(10, 0, 10, 10)).unwrap_err(), Unread::FirstReading);
    }

    #[test]
    fn changed_bucket_bounds_keep_the_counts() {
        let now = [(1.0, 5), (f64::INFINITY, 5)];
        assert_eq!(bucket_delta(&now, &[(2.0, 1), (f64::INFINITY, 1)]), Some(vec![]));
        assert_eq!(bucket_delta(&now, &[(1.0, 6), (f64::INFINITY, 6)]), None);
    }
}
