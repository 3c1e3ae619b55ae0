//! CloudWatch metrics source (cargo feature `ecs`): an Application Load
//! Balancer's per-target-group metrics, one target group per version; or,
//! for a `lambda` target, `AWS/Lambda`'s per executed version of its alias
//! (see "Lambda" below).
//!
//! A plan selects it with `[metrics] source = "cloudwatch"`. The
//! dimensions are `LoadBalancer` (`app/<name>/<id>`) and `TargetGroup`
//! (`targetgroup/<name>/<id>`), written as such or as ARNs; unset, they come
//! from an ECS target's `listener_rule` and target groups. Region and
//! profile are the ECS target's (or the environment's).
//!
//! The load balancer publishes one datapoint per metric and whole minute
//! (AWS, "CloudWatch metrics for your Application Load Balancer": "reports
//! metrics to CloudWatch only when requests are flowing … in 60-second
//! intervals"), and `GetMetricData` rounds a start time down to the whole
//! minute. So a window is whole minutes, aligned: one `GetMetricData` call
//! over `[end − period, end)` where `end` is the last whole minute at or
//! before `now − lag` and `period` the window rounded up to whole minutes
//! (`check` refuses an `analysis.interval` that is not whole minutes with
//! CloudWatch). Consecutive windows then read consecutive minutes, each
//! once, and never the minute still being written: `lag` (default 1m)
//! leaves the last minute too, as its datapoints may still arrive.
//!
//! Per target group (one per version), in that one call (14 metrics):
//! - `RequestCount`, `Sum`: no datapoint makes the version missing (no
//!   traffic, or a wrong dimension).
//! - errors: `HTTPCode_Target_5XX_Count` + `TargetConnectionErrorCount`,
//!   `Sum` (at most the requests). The first counts 5XX answers of the
//!   targets only; a canary that crashes or refuses connections makes the
//!   load balancer answer 502/503/504 itself, which only
//!   `TargetConnectionErrorCount` ("connections that were not successfully
//!   established between the load balancer and target") shows per target
//!   group. Requests whose connection failed are in `RequestCount` (it
//!   counts every request for which a target was chosen). No datapoint
//!   with requests counted is 0 (the load balancer publishes no zeros).
//! - `UnHealthyHostCount`, `Maximum` ("the number of targets that are
//!   considered unhealthy"; the docs name Average, Minimum and Maximum as
//!   its statistics): a count of targets, not of requests, so it is shown,
//!   never added to errors: in the sample's note, and in the reason a
//!   version without requests is missing.
//! - latency: `TargetResponseTime` with the extended statistics `p50`,
//!   `p95`, `p99` (seconds, turned into milliseconds).
//!
//! Cost: `GetMetricData` is billed per metric requested ($0.01 per 1,000
//! in us-east-1): 14 per window, so 840 an hour at `1m` windows ($0.0084
//! per rollout-hour), 168 at `5m`.
//!
//! A result whose `StatusCode` is not `Complete` (`PartialData`,
//! `InternalError`, `Forbidden`) counts as missing, never as what it
//! holds: a count makes its version missing (a partial 5XX sum is not "no
//! errors"), a quantile is `None` and `missing` says why.
//!
//! # Lambda
//!
//! A weighted alias publishes its metrics per version that ran, with the
//! dimensions `FunctionName` (the bare name), `Resource` (`name:alias`)
//! and `ExecutedVersion` (AWS Lambda Developer Guide, "Types of metrics for
//! Lambda functions": "ExecutedVersion … only applies to alias
//! invocations"; the same three make one dimension set in CloudWatch's
//! listing of `AWS/Lambda`). Per version, in one call (10 metrics):
//! `Invocations` (`Sum`) are the requests, `Errors` (`Sum`, invocations
//! that ended in a function error; throttled requests are not invocations)
//! the errors, `Duration` `p50`/`p95`/`p99` the latency, already in
//! milliseconds. Lambda publishes per minute as well, so the windows are
//! the same whole settled minutes.

use crate::metrics::MetricsSource;
use crate::metrics::Unread;
use async_trait::async_trait;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StatusCode};
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::params::{FieldError, ParamError, TargetError};
use flightdeck_core::plan::{BackendKind, CloudwatchMetrics, Plan, Target};
use flightdeck_core::time::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

const QUANTILES: [&str; 3] = ["p50", "p95", "p99"];

/// Which metrics of a namespace a window reads per version.
#[derive(Debug)]
struct Family {
    namespace: &'static str,
    /// `Sum`: the requests.
    requests: &'static str,
    /// `Sum`s added up as errors: (query id, metric).
    errors: &'static [(&'static str, &'static str)],
    /// `Maximum`: targets unhealthy (shown, never errors).
    unhealthy: Option<&'static str>,
    /// Extended statistics `p50`, `p95`, `p99`, and milliseconds per unit.
    latency: (&'static str, f64),
}

const ALB: Family = Family {
    namespace: "AWS/ApplicationELB",
    requests: "RequestCount",
    errors: &[("errors", "HTTPCode_Target_5XX_Count"), ("connection_errors", "TargetConnectionErrorCount")],
    unhealthy: Some("UnHealthyHostCount"),
    latency: ("TargetResponseTime", 1000.0),
};

const LAMBDA: Family = Family {
    namespace: "AWS/Lambda",
    requests: "Invocations",
    errors: &[("errors", "Errors")],
    unhealthy: None,
    latency: ("Duration", 1.0),
};

impl Family {
    /// Metrics requested per window, for both versions.
    const fn metrics_per_window(&self) -> usize {
        2 * (1 + self.errors.len() + self.unhealthy.is_some() as usize + QUANTILES.len())
    }
}

/// What a window reads: a load balancer's target groups, or a Lambda alias's versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    LoadBalancer(Dimensions),
    Lambda(LambdaDimensions),
}

impl From<Dimensions> for Scope {
    fn from(d: Dimensions) -> Scope {
        Scope::LoadBalancer(d)
    }
}

impl From<LambdaDimensions> for Scope {
    fn from(d: LambdaDimensions) -> Scope {
        Scope::Lambda(d)
    }
}

impl Scope {
    /// From the plan's `[metrics]` and target: a `lambda` target's alias
    /// and versions, else the load balancer's (see [`Dimensions::resolve`]).
    pub fn resolve(config: &CloudwatchMetrics, plan: &Plan) -> Result<Scope, TargetError> {
        if plan.target.backend != BackendKind::Lambda {
            return Dimensions::resolve(config, &plan.target).map(Scope::LoadBalancer).map_err(TargetError::from);
        }
        let set = [
            ("metrics.load_balancer", &config.load_balancer),
            ("metrics.stable_target_group", &config.stable_target_group),
            ("metrics.canary_target_group", &config.canary_target_group),
        ];
        if let Some((field, _)) = set.iter().find(|(_, v)| v.is_some()) {
            let message = "a load balancer's dimension; a lambda target's metrics are its alias's, per version";
            return Err(FieldError::new(field, message).into());
        }
        let param = |key: &str| {
            plan.target.params.get(key).filter(|v| !v.trim().is_empty()).cloned().ok_or_else(|| {
                ParamError::new(key, "required by the `lambda` backend (CloudWatch's dimensions come from it)")
            })
        };
        Ok(Scope::Lambda(LambdaDimensions {
            function: function_name(&param("function")?).to_owned(),
            alias: param("alias")?,
            stable: plan.stable.clone(),
            canary: plan.canary.clone(),
        }))
    }

    fn family(&self) -> &'static Family {
        match self {
            Scope::LoadBalancer(_) => &ALB,
            Scope::Lambda(_) => &LAMBDA,
        }
    }

    /// The dimensions of one version's metrics, and its name in messages.
    fn side(&self, side: &str) -> (Vec<Dimension>, String) {
        let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
        let canary = side == "canary";
        match self {
            Scope::LoadBalancer(d) => {
                let group = if canary { &d.canary } else { &d.stable };
                (vec![dimension("LoadBalancer", &d.load_balancer), dimension("TargetGroup", group)], group.clone())
            }
            Scope::Lambda(d) => {
                let version = if canary { &d.canary } else { &d.stable };
                let dimensions = vec![
                    dimension("FunctionName", &d.function),
                    dimension("Resource", &d.resource()),
                    dimension("ExecutedVersion", version),
                ];
                (dimensions, format!("{}:{version} via {}", d.function, d.alias))
            }
        }
    }

    /// Metrics requested per window (`GetMetricData` bills each).
    pub fn metrics_per_window(&self) -> usize {
        self.family().metrics_per_window()
    }
}

/// A Lambda alias's dimensions: the function's bare name, the alias, and
/// the two versions (`ExecutedVersion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaDimensions {
    pub function: String,
    pub alias: String,
    pub stable: String,
    pub canary: String,
}

impl LambdaDimensions {
    /// The `Resource` dimension of the alias: `name:alias`.
    pub fn resource(&self) -> String {
        format!("{}:{}", self.function, self.alias)
    }
}

/// A function's bare name from itself or its ARN (full or partial, with or
/// without a qualifier): `arn:aws:lambda:…:function:checkout:live` → `checkout`.
pub fn function_name(text: &str) -> &str {
    match text.split_once("function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => text.split(':').next().unwrap_or(text),
    }
}

/// The three dimension values: load balancer, stable and canary target groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimensions {
    pub load_balancer: String,
    pub stable: String,
    pub canary: String,
}

impl Dimensions {
    /// From the plan's `[metrics]`, falling back on the target's parameters.
    /// Errors name the key to set.
    pub fn resolve(config: &CloudwatchMetrics, target: &Target) -> Result<Dimensions, FieldError> {
        let param = |key: &str| target.params.get(key).cloned();
        let pick = |own: &Option<String>, field: &'static str, key: &str| {
            let message = || format!("required (the target has no `{key}` to take it from)");
            own.clone().or_else(|| param(key)).ok_or_else(|| FieldError::new(field, message()))
        };
        let load_balancer = pick(&config.load_balancer, "metrics.load_balancer", "listener_rule")?;
        let not_a_target_group = "not a target group (targetgroup/<name>/<id> or its ARN)";
        let target_group = |own: &Option<String>, field: &'static str, key: &str| {
            target_group_dimension(&pick(own, field, key)?).ok_or_else(|| FieldError::new(field, not_a_target_group))
        };
        let dimensions = Dimensions {
            load_balancer: load_balancer_dimension(&load_balancer).ok_or_else(|| {
                let message = format!("`{load_balancer}` names no application load balancer (app/<name>/<id>)");
                FieldError::new("metrics.load_balancer", message)
            })?,
            stable: target_group(&config.stable_target_group, "metrics.stable_target_group", "stable_target_group")?,
            canary: target_group(&config.canary_target_group, "metrics.canary_target_group", "canary_target_group")?,
        };
        Ok(dimensions)
    }
}

/// `app/<name>/<id>` from itself, a load balancer ARN, or a listener or rule ARN.
pub fn load_balancer_dimension(text: &str) -> Option<String> {
    let at = text.find("app/")?;
    let parts: Vec<&str> = text[at..].split('/').take(3).collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then(|| parts.join("/"))
}

/// `targetgroup/<name>/<id>` from itself or a target group ARN.
pub fn target_group_dimension(text: &str) -> Option<String> {
    let at = text.find("targetgroup/")?;
    let parts: Vec<&str> = text[at..].split('/').take(3).collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then(|| parts.join("/"))
}

/// The period of a window: whole minutes, at least one, that cover it.
pub fn period(window: Duration) -> i32 {
    (window.as_secs().div_ceil(60).max(1) * 60).min(i32::MAX as u64 / 60 * 60) as i32
}

/// Metrics requested per window of a load balancer (`GetMetricData` bills each).
pub const METRICS_PER_WINDOW: usize = ALB.metrics_per_window();

/// The window read at `now` (ms since the epoch): `[end − period, end)` in
/// ms, `end` the last whole minute at or before `now − lag`.
pub fn bounds(window: Duration, now_ms: u64, lag: Duration) -> (u64, u64) {
    let end = now_ms.saturating_sub(lag.as_millis() as u64) / 60_000 * 60_000;
    (end.saturating_sub(period(window) as u64 * 1000), end)
}

/// Per-version metrics from CloudWatch: a load balancer's or a Lambda alias's.
pub struct Cloudwatch {
    client: aws_sdk_cloudwatch::Client,
    scope: Scope,
    lag: Duration,
}

impl Cloudwatch {
    pub fn new(aws: &aws_config::SdkConfig, scope: impl Into<Scope>, lag: Duration) -> Cloudwatch {
        Cloudwatch { client: aws_sdk_cloudwatch::Client::new(aws), scope: scope.into(), lag }
    }

    fn query(&self, id: String, dimensions: &[Dimension], metric: &str, stat: &str, period: i32) -> MetricDataQuery {
        let metric = Metric::builder()
            .namespace(self.scope.family().namespace)
            .metric_name(metric)
            .set_dimensions(Some(dimensions.to_vec()))
            .build();
        let stat = MetricStat::builder().metric(metric).period(period).stat(stat).build();
        MetricDataQuery::builder().id(id).metric_stat(stat).return_data(true).build()
    }

    /// One `GetMetricData` call: values by query id, or the `StatusCode`
    /// of a result that is not `Complete`.
    async fn read(&self, queries: Vec<MetricDataQuery>, start: DateTime, end: DateTime) -> Result<Results, Unread> {
        let call = self.client.get_metric_data().start_time(start).end_time(end).set_metric_data_queries(Some(queries));
        let failed = |e| Unread::Unreachable(aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string());
        let out = call.send().await.map_err(failed)?;
        let results = out.metric_data_results().iter();
        Ok(results
            .filter_map(|r| {
                let values = match r.status_code() {
                    Some(StatusCode::Complete) => Ok(r.values().to_vec()),
                    other => Err(Incomplete(other.map_or("none", StatusCode::as_str).to_owned())),
                };
                Some((r.id()?.to_owned(), values))
            })
            .collect())
    }
}

/// Values by query id, or the `StatusCode` of a result that is not `Complete`.
type Results = HashMap<String, Result<Vec<f64>, Incomplete>>;

/// The `StatusCode` of a result that is not `Complete` (`PartialData`, `Forbidden`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Incomplete(String);

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One version's window from the results of its queries (`{side}_requests`,
/// `{side}_errors`, `{side}_p50` …); `Err` says why it is missing.
fn version(family: &Family, side: &str, group: &str, results: &Results) -> Result<VersionWindow, Unread> {
    let incomplete = |metric: &str, status: &Incomplete| {
        Unread::Partial(format!(
            "{metric} for {group} is incomplete (StatusCode {status}); the window counts as missing"
        ))
    };
    let requests = match results.get(&format!("{side}_requests")) {
        Some(Ok(v)) if !v.is_empty() => v,
        Some(Err(status)) => return Err(incomplete(family.requests, status)),
        _ => {
            let unhealthy = match unhealthy(side, results) {
                Some(n) if n > 0 => format!("; {n} of its targets unhealthy (UnHealthyHostCount)"),
                _ => String::new(),
            };
            return Err(Unread::NotFound(format!(
                "no {} datapoint for {group} (no traffic in the window, or a wrong dimension){unhealthy}",
                family.requests
            )));
        }
    };
    let sum = |values: &[f64]| values.iter().filter(|v| v.is_finite()).sum::<f64>().max(0.0).round() as u64;
    let count = |id: &str, metric: &str| match results.get(&format!("{side}_{id}")) {
        Some(Ok(v)) => Ok(sum(v)),
        Some(Err(status)) => Err(incomplete(metric, status)),
        None => Ok(0),
    };
    let mut errors = 0;
    for (id, metric) in family.errors {
        errors += count(id, metric)?;
    }
    let quantile = |q: &str| {
        let values = results.get(&format!("{side}_{q}"))?.as_ref().ok()?;
        values.iter().copied().filter(|v| v.is_finite()).reduce(f64::max).map(|v| v * family.latency.1)
    };
    let requests = sum(requests);
    Ok(VersionWindow {
        requests,
        errors: errors.min(requests),
        p50_ms: quantile("p50"),
        p95_ms: quantile("p95"),
        p99_ms: quantile("p99"),
        ..VersionWindow::default()
    })
}

/// The most targets of `side` unhealthy at once in the window.
fn unhealthy(side: &str, results: &Results) -> Option<u64> {
    let values = results.get(&format!("{side}_unhealthy"))?.as_ref().ok()?;
    values.iter().copied().filter(|v| v.is_finite()).reduce(f64::max).map(|v| v.max(0.0).round() as u64)
}

/// Unhealthy targets in the window, when there were any.
fn unhealthy_note(results: &Results) -> Option<String> {
    let counts: Vec<String> = ["stable", "canary"]
        .into_iter()
        .filter_map(|side| unhealthy(side, results).filter(|n| *n > 0).map(|n| format!("{side} {n}")))
        .collect();
    (!counts.is_empty())
        .then(|| format!("cloudwatch: unhealthy targets (UnHealthyHostCount, Maximum): {}", counts.join(", ")))
}

/// Why a latency quantile is missing, if one came back incomplete.
fn latency_note(results: &Results) -> Option<String> {
    let mut bad: Vec<String> = QUANTILES
        .iter()
        .flat_map(|q| ["stable", "canary"].map(|side| format!("{side}_{q}")))
        .filter_map(|id| results.get(&id)?.as_ref().err().map(|status| format!("{id} {status}")))
        .collect();
    bad.sort();
    (!bad.is_empty()).then(|| format!("cloudwatch: latency quantiles incomplete ({})", bad.join(", ")))
}

#[async_trait]
impl MetricsSource for Cloudwatch {
    async fn sample(&self, window: Duration, now: Timestamp) -> MetricsSample {
        let period = period(window);
        let (start_ms, end_ms) = bounds(window, now.0, self.lag);
        let at = |ms: u64| DateTime::from_millis(ms as i64);
        let family = self.scope.family();
        let mut queries = Vec::new();
        for side in ["stable", "canary"] {
            let (dims, _) = self.scope.side(side);
            let id = |name: &str| format!("{side}_{name}");
            queries.push(self.query(id("requests"), &dims, family.requests, "Sum", period));
            for (name, metric) in family.errors {
                queries.push(self.query(id(name), &dims, metric, "Sum", period));
            }
            if let Some(metric) = family.unhealthy {
                queries.push(self.query(id("unhealthy"), &dims, metric, "Maximum", period));
            }
            for q in QUANTILES {
                queries.push(self.query(id(q), &dims, family.latency.0, q, period));
            }
        }
        let results = match self.read(queries, at(start_ms), at(end_ms)).await {
            Ok(r) => r,
            Err(e) => return crate::metrics::missing(window, format!("cloudwatch: GetMetricData: {e}")),
        };
        let stable = version(family, "stable", &self.scope.side("stable").1, &results);
        let canary = version(family, "canary", &self.scope.side("canary").1, &results);
        let mut sample = crate::metrics::per_version(window, "cloudwatch", stable, canary);
        if sample.missing.is_none() {
            sample.missing = latency_note(&results);
        }
        if let Some(note) = unhealthy_note(&results) {
            tracing::warn!(scope = ?self.scope, "{note}");
            if sample.missing.is_none() {
                sample.missing = Some(note);
            }
        }
        sample
    }

    /// No SLO queries for CloudWatch yet: the budget stays unknown.
    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::plan::MetricsConfig;

    #[test]
    fn dimensions_come_from_arns() {
        let rule = "arn:aws:elasticloadbalancing:eu-west-1:123:listener-rule/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee";
        assert_eq!(load_balancer_dimension(rule).as_deref(), Some("app/checkout/50dc6c495c0c9188"));
        let tg = "arn:aws:elasticloadbalancing:eu-west-1:123:targetgroup/checkout-green/6d0ecf831eec9f09";
        assert_eq!(target_group_dimension(tg).as_deref(), Some("targetgroup/checkout-green/6d0ecf831eec9f09"));
        assert_eq!(target_group_dimension("checkout-green"), None);
    }

    #[test]
    fn a_result_that_is_not_complete_counts_as_missing() {
        let complete = |v: &[f64]| Ok(v.to_vec());
        let mut results: Results = [
            ("canary_requests", complete(&[100.0])),
            ("canary_errors", Err(Incomplete("PartialData".to_owned()))),
            ("canary_p99", complete(&[0.25])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let e = version(&ALB, "canary", "targetgroup/green/1", &results).unwrap_err();
        let said = "HTTPCode_Target_5XX_Count for targetgroup/green/1 is incomplete (StatusCode PartialData)";
        assert!(matches!(&e, Unread::Partial(m) if m.contains(said)), "{e}");
        results.insert("canary_errors".into(), complete(&[]));
        let w = version(&ALB, "canary", "targetgroup/green/1", &results).unwrap();
        assert_eq!((w.requests, w.errors, w.p99_ms), (100, 0, Some(250.0)));
        results.insert("canary_requests".into(), Err(Incomplete("InternalError".into())));
        let e = version(&ALB, "canary", "g", &results).unwrap_err();
        assert!(matches!(&e, Unread::Partial(m) if m.contains("RequestCount for g is incomplete")), "{e}");
        results.insert("stable_p95".into(), Err(Incomplete("Forbidden".into())));
        assert_eq!(
            latency_note(&results).as_deref(),
            Some("cloudwatch: latency quantiles incomplete (stable_p95 Forbidden)")
        );
    }

    #[test]
    fn a_lambda_alias_is_read_per_executed_version_in_milliseconds() {
        let text = "[rollout]\nname = \"f\"\nstable = \"3\"\ncanary = \"4\"\n\n[target]\nbackend = \"lambda\"\n\
                    function = \"arn:aws:lambda:eu-west-1:123:function:checkout\"\nalias = \"live\"\n\n\
                    [analysis]\ninterval = \"1m\"\n\n[metrics]\nsource = \"cloudwatch\"\n";
        let plan = Plan::parse("lambda.toml", text).unwrap();
        let MetricsConfig::Cloudwatch(config) = &plan.metrics else { panic!("{:?}", plan.metrics) };
        let scope = Scope::resolve(config, &plan).unwrap();
        let (dimensions, label) = scope.side("canary");
        let pairs: Vec<(&str, &str)> = dimensions.iter().map(|d| (d.name().unwrap(), d.value().unwrap())).collect();
        assert_eq!(pairs, [("FunctionName", "checkout"), ("Resource", "checkout:live"), ("ExecutedVersion", "4")]);
        assert_eq!(label, "checkout:4 via live");
        assert_eq!(scope.metrics_per_window(), 10);
        let results: Results =
            [("canary_requests", vec![100.0]), ("canary_errors", vec![7.0]), ("canary_p99", vec![250.0])]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Ok(v)))
                .collect();
        let w = version(&LAMBDA, "canary", &label, &results).unwrap();
        assert_eq!((w.requests, w.errors, w.p99_ms), (100, 7, Some(250.0)), "Duration is already in ms");
        let e = version(&LAMBDA, "stable", "checkout:3 via live", &results).unwrap_err();
        assert!(matches!(&e, Unread::NotFound(m) if m.starts_with("no Invocations datapoint for checkout:3 via live")));
        assert_eq!(function_name("checkout"), "checkout");
        assert_eq!(function_name("123456789012:function:checkout:live"), "checkout");
    }

    #[test]
    fn periods_are_whole_minutes() {
        let p = |s| period(Duration::from_secs(s));
        assert_eq!((p(0), p(2), p(45), p(60), p(61), p(300)), (60, 60, 60, 60, 120, 300));
    }

    #[test]
    fn windows_are_whole_minutes_that_end_before_the_lag_and_follow_each_other() {
        let minute = 60_000;
        let t = |m: u64, s: u64| m * minute + s * 1000;
        let (min, two) = (Duration::from_secs(60), Duration::from_secs(120));
        // 12:03:25, lag 1m: the minute being written (12:03) and the one
        // whose datapoints may still arrive (12:02) are left for later.
        assert_eq!(bounds(min, t(723, 25), min), (t(721, 0), t(722, 0)));
        assert_eq!(bounds(min, t(724, 25), min), (t(722, 0), t(723, 0)), "the next window reads the next minute");
        assert_eq!(bounds(min, t(723, 25), Duration::ZERO), (t(722, 0), t(723, 0)));
        assert_eq!(bounds(two, t(724, 0), min), (t(721, 0), t(723, 0)));
        assert_eq!(bounds(two, t(726, 0), min), (t(723, 0), t(725, 0)));
    }

    #[test]
    fn connection_errors_are_errors_and_unhealthy_targets_are_shown() {
        let complete = |v: &[f64]| Ok(v.to_vec());
        let mut results: Results = [
            ("canary_requests", complete(&[100.0])),
            ("canary_errors", complete(&[2.0])),
            ("canary_connection_errors", complete(&[30.0])),
            ("canary_unhealthy", complete(&[1.0, 3.0])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let w = version(&ALB, "canary", "targetgroup/green/1", &results).unwrap();
        assert_eq!((w.requests, w.errors), (100, 32), "a 502 the load balancer answered is an error");
        assert_eq!(
            unhealthy_note(&results).as_deref(),
            Some("cloudwatch: unhealthy targets (UnHealthyHostCount, Maximum): canary 3")
        );
        results.insert("canary_connection_errors".into(), complete(&[500.0]));
        assert_eq!(version(&ALB, "canary", "g", &results).unwrap().errors, 100, "never more errors than requests");
        results.insert("canary_connection_errors".into(), Err(Incomplete("PartialData".into())));
        let e = version(&ALB, "canary", "g", &results).unwrap_err();
        assert!(matches!(&e, Unread::Partial(m) if m.contains("TargetConnectionErrorCount for g is incomplete")));
        results.remove("canary_requests");
        let e = version(&ALB, "canary", "g", &results).unwrap_err();
        assert!(matches!(&e, Unread::NotFound(m) if m.ends_with("; 3 of its targets unhealthy (UnHealthyHostCount)")));
        assert_eq!(METRICS_PER_WINDOW, 14);
    }
}
