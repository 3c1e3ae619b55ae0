//! Canary analysis: canary against stable, per version, never the aggregate.
//!
//! One window of metrics becomes a table of checks (requests, error rate,
//! p50/p95/p99) and a verdict. A regression fails only when it breaks a
//! limit *and* a one-sided test says it is real (error rate: an Agresti–Caffo
//! test that the increase exceeds the limit, not merely that there is one;
//! latency: Mann-Whitney U when raw samples exist). Too few canary requests,
//! missing metrics or a regression that is not yet significant give
//! *inconclusive*, never *pass*.

use crate::plan::AnalysisConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What one version served during one analysis window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VersionWindow {
    pub requests: u64,
    /// Responses counted as errors (5xx).
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Raw latency samples when the source has them (the simulator, access
    /// logs); enables the Mann-Whitney U test. May be empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_samples_ms: Vec<f64>,
}

/// Stable and canary windows for one analysis interval. `None` for a
/// version means its metrics could not be read; `missing` says why.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricsSample {
    #[serde(with = "crate::time::humane")]
    pub window: Duration,
    pub stable: Option<VersionWindow>,
    pub canary: Option<VersionWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Requests,
    ErrorRate,
    LatencyP50,
    LatencyP95,
    LatencyP99,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckOutcome {
    Pass,
    Fail,
    Inconclusive,
}

/// How bad a failing check is (DOMAIN.md rollback severity table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One metric compared between stable and canary, with the reason in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub metric: Metric,
    pub stable: Option<f64>,
    pub canary: Option<f64>,
    /// Canary minus stable, in `unit` (pp for error rate, % of stable for latency).
    pub delta: Option<f64>,
    /// The configured limit for `delta`, in the same unit; `None` for shown-only rows.
    pub threshold: Option<f64>,
    pub unit: DeltaUnit,
    /// One-sided confidence that canary breaks the row's limit, 0..=1 (error
    /// rate: that the increase exceeds `threshold`; latency: that canary is
    /// slower than stable); `None` when the test could not run.
    pub confidence: Option<f64>,
    pub outcome: CheckOutcome,
    /// Severity when failing.
    pub severity: Option<Severity>,
    /// Why, in words ("canary 20.0 % vs stable 0.5 %: +19.5 pp > 1.0 pp (99.9 % confident)").
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaUnit {
    /// Percentage points.
    Pp,
    /// Percent of the stable value.
    Percent,
    /// Requests per second, for the request-rate row.
    PerSecond,
}

/// The outcome of one analysis interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    Pass {
        checks: Vec<Check>,
    },
    Fail {
        severity: Severity,
        checks: Vec<Check>,
    },
    /// Not enough evidence either way: too few canary requests, missing
    /// metrics, or a regression not yet significant. Never a pass.
    Inconclusive {
        requests: u64,
        needed: u64,
        reason: String,
        checks: Vec<Check>,
    },
}

impl Verdict {
    pub fn checks(&self) -> &[Check] {
        match self {
            Verdict::Pass { checks } | Verdict::Fail { checks, .. } | Verdict::Inconclusive { checks, .. } => checks,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass { .. } => "pass",
            Verdict::Fail { .. } => "fail",
            Verdict::Inconclusive { .. } => "inconclusive",
        }
    }

    /// True when the window had no metrics at all (as opposed to too few requests).
    pub fn is_missing_metrics(&self) -> bool {
        matches!(self, Verdict::Inconclusive { checks, .. } if checks.is_empty())
    }

    /// The failing (or inconclusive) checks' reasons joined, for one-line displays.
    pub fn summary(&self) -> String {
        match self {
            Verdict::Pass { .. } => "all checks pass".to_string(),
            Verdict::Inconclusive { reason, .. } => reason.clone(),
            Verdict::Fail { checks, .. } => checks
                .iter()
                .filter(|c| c.outcome == CheckOutcome::Fail)
                .map(|c| c.reason.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

impl Metric {
    /// Short name used in reasons and tables ("error rate", "p99").
    pub fn label(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::ErrorRate => "error rate",
            Metric::LatencyP50 => "p50",
            Metric::LatencyP95 => "p95",
            Metric::LatencyP99 => "p99",
        }
    }
}

impl Check {
    /// A row without a threshold (request rate, p50) is shown but never
    /// decides the verdict, even when its data is missing.
    pub fn is_informational(&self) -> bool {
        self.threshold.is_none()
    }
}

/// DOMAIN: "p95 latency > 2× stable → roll back", i.e. an increase over 100 %.
const P95_MAX_INCREASE_PCT: f64 = 100.0;

/// Floor for the stable error rate when computing the canary/stable ratio
/// that picks a severity. A healthy stable often has 0 errors in a window,
/// which would make every failure an infinite ratio (Critical); 0.1 % is the
/// whole error budget of a 99.9 % SLO, so below it stable counts as "clean".
const STABLE_ERROR_FLOOR_PCT: f64 = 0.1;

/// Compares canary with stable for one window.
pub fn evaluate(config: &AnalysisConfig, sample: &MetricsSample) -> Verdict {
    let (stable, canary) = match (&sample.stable, &sample.canary) {
        (Some(stable), Some(canary)) => (stable, canary),
        _ => return missing_metrics(config, sample),
    };
    let checks = compare(config, sample.window, stable, canary);
    if canary.requests < config.min_requests {
        return too_few_requests(config, canary.requests, checks);
    }
    decide(config, canary.requests, checks)
}

/// No checks at all: `Verdict::is_missing_metrics` relies on the empty list.
fn missing_metrics(config: &AnalysisConfig, sample: &MetricsSample) -> Verdict {
    let fallback = if sample.stable.is_none() { "no stable metrics" } else { "no canary metrics" };
    let reason = sample.missing.clone().filter(|m| !m.trim().is_empty()).unwrap_or_else(|| fallback.to_string());
    Verdict::Inconclusive {
        requests: sample.canary.as_ref().map_or(0, |c| c.requests),
        needed: config.min_requests,
        reason,
        checks: vec![],
    }
}

/// The rows, in display order.
fn compare(config: &AnalysisConfig, window: Duration, stable: &VersionWindow, canary: &VersionWindow) -> Vec<Check> {
    // One rank test over the raw samples serves every latency row: it
    // compares whole distributions, not a single quantile.
    let latency_confidence =
        stats::mann_whitney(&stable.latency_samples_ms, &canary.latency_samples_ms).map(|t| t.confidence);
    let mut rows = vec![request_rate_check(window, stable, canary), error_rate_check(config, stable, canary)];
    rows.extend(
        latency_rules(config).iter().map(|rule| latency_check(config, rule, stable, canary, latency_confidence)),
    );
    rows
}

/// Below `min_requests` nothing decides: rows are kept for display, but every
/// deciding row becomes inconclusive (a small window can neither pass nor fail).
fn too_few_requests(config: &AnalysisConfig, requests: u64, mut checks: Vec<Check>) -> Verdict {
    for check in checks.iter_mut().filter(|c| !c.is_informational()) {
        if check.outcome != CheckOutcome::Inconclusive {
            check.reason = format!("{}; too few canary requests to decide", check.reason);
        }
        check.outcome = CheckOutcome::Inconclusive;
        check.severity = None;
    }
    Verdict::Inconclusive {
        requests,
        needed: config.min_requests,
        reason: format!("only {requests} canary requests, need {}", config.min_requests),
        checks,
    }
}

/// Any failing row fails the window (worst severity wins); otherwise any
/// inconclusive deciding row makes it inconclusive; otherwise it passes.
fn decide(config: &AnalysisConfig, requests: u64, checks: Vec<Check>) -> Verdict {
    let deciding = || checks.iter().filter(|c| !c.is_informational());
    let worst =
        deciding().filter(|c| c.outcome == CheckOutcome::Fail).map(|c| c.severity.unwrap_or(Severity::Medium)).max();
    if let Some(severity) = worst {
        return Verdict::Fail { severity, checks };
    }
    let unsure: Vec<&str> =
        deciding().filter(|c| c.outcome == CheckOutcome::Inconclusive).map(|c| c.reason.as_str()).collect();
    if unsure.is_empty() {
        return Verdict::Pass { checks };
    }
    let reason = unsure.join("; ");
    Verdict::Inconclusive { requests, needed: config.min_requests, reason, checks }
}

/// Request rate per version: context for the captain, never a verdict.
fn request_rate_check(window: Duration, stable: &VersionWindow, canary: &VersionWindow) -> Check {
    let secs = window.as_secs_f64();
    let rate = |v: &VersionWindow| (secs > 0.0).then(|| v.requests as f64 / secs);
    let (s, c) = (rate(stable), rate(canary));
    let reason = match (s, c) {
        (Some(s), Some(c)) => format!("requests stable {s:.1}/s, canary {c:.1}/s"),
        _ => format!("requests stable {}, canary {} (window length unknown)", stable.requests, canary.requests),
    };
    Check {
        metric: Metric::Requests,
        stable: s,
        canary: c,
        delta: s.zip(c).map(|(s, c)| c - s),
        threshold: None,
        unit: DeltaUnit::PerSecond,
        confidence: None,
        outcome: CheckOutcome::Pass,
        severity: None,
        reason,
    }
}

/// Error rate in percent; `None` without requests. Errors are capped at the
/// request count so a miscounting source cannot produce rates above 100 %.
fn error_pct(v: &VersionWindow) -> Option<f64> {
    (v.requests > 0).then(|| v.errors.min(v.requests) as f64 / v.requests as f64 * 100.0)
}

fn error_rate_check(config: &AnalysisConfig, stable: &VersionWindow, canary: &VersionWindow) -> Check {
    let threshold = config.max_error_increase_pp;
    let row = Check {
        stable: error_pct(stable),
        canary: error_pct(canary),
        ..unjudged(Metric::ErrorRate, DeltaUnit::Pp, Some(threshold))
    };
    let (Some(s), Some(c)) = (row.stable, row.canary) else {
        let reason = format!("error rate unknown: no requests from {}", absent(row.stable, row.canary));
        return Check { reason, ..row };
    };
    let counts = |v: &VersionWindow| (v.errors.min(v.requests), v.requests);
    let (stable_counts, canary_counts) = (counts(stable), counts(canary));
    let delta = c - s;
    // Tests "the increase exceeds the threshold", not "canary is worse": a
    // small canary with a few errors is surely worse than a clean stable, but
    // rarely surely worse by more than the allowed margin.
    let confidence = stats::agresti_caffo(stable_counts, canary_counts, threshold / 100.0);
    let shown = format!("error rate canary {c:.2} % vs stable {s:.2} %: {delta:+.2} pp");
    let cautious_canary = stats::wilson_lower(canary_counts, config.confidence) * 100.0;
    let severity = error_severity(s, cautious_canary);
    let mut judged = if delta > threshold {
        let reason = format!("{shown} > {threshold:.2} pp");
        gate(Some(confidence), config.confidence, severity, reason, &format!(" it exceeds {threshold:.2} pp"))
    } else {
        (CheckOutcome::Pass, None, format!("{shown} ≤ {threshold:.2} pp"))
    };
    let ceiling = config.max_error_rate_pct;
    if c > ceiling {
        let sure = stats::rate_above(canary_counts, ceiling / 100.0);
        judged = above_ceiling(judged, Some(sure), config.confidence, severity, format!("{ceiling:.2} %"));
    }
    let (outcome, severity, reason) = judged;
    Check { delta: Some(delta), confidence: Some(confidence), outcome, severity, reason, ..row }
}

/// A deciding row before any data is looked at: inconclusive, no values.
fn unjudged(metric: Metric, unit: DeltaUnit, threshold: Option<f64>) -> Check {
    Check {
        metric,
        stable: None,
        canary: None,
        delta: None,
        threshold,
        unit,
        confidence: None,
        outcome: CheckOutcome::Inconclusive,
        severity: None,
        reason: String::new(),
    }
}

/// Which side lacks a value, for "not reported by …" reasons.
fn absent(stable: Option<f64>, canary: Option<f64>) -> &'static str {
    match (stable, canary) {
        (None, None) => "either version",
        (None, _) => "stable",
        _ => "canary",
    }
}

/// DOMAIN severity table by canary/stable error ratio. The canary side is a
/// cautious rate (the lower confidence bound), so a failure is Critical only
/// when even that is 5× stable, not when a few errors on a small canary
/// happen to make a big point ratio. A failing error row is at least Medium:
/// it already broke the configured increase limit.
fn error_severity(stable_pct: f64, cautious_canary_pct: f64) -> Severity {
    let ratio = cautious_canary_pct / stable_pct.max(STABLE_ERROR_FLOOR_PCT);
    if ratio > 5.0 {
        Severity::Critical
    } else if ratio > 2.0 {
        Severity::High
    } else {
        Severity::Medium
    }
}

/// How one latency quantile is judged.
struct LatencyRule {
    metric: Metric,
    quantile: fn(&VersionWindow) -> Option<f64>,
    /// Largest allowed increase, percent of stable; `None` = shown only.
    threshold_pct: Option<f64>,
    /// Absolute ceiling on the canary value, ms.
    ceiling_ms: Option<f64>,
}

/// p50 is shown only; p95 fails past 2× stable; p99 on the configured
/// relative limit and absolute ceiling.
fn latency_rules(config: &AnalysisConfig) -> [LatencyRule; 3] {
    [
        LatencyRule { metric: Metric::LatencyP50, quantile: |v| v.p50_ms, threshold_pct: None, ceiling_ms: None },
        LatencyRule {
            metric: Metric::LatencyP95,
            quantile: |v| v.p95_ms,
            threshold_pct: Some(P95_MAX_INCREASE_PCT),
            ceiling_ms: None,
        },
        LatencyRule {
            metric: Metric::LatencyP99,
            quantile: |v| v.p99_ms,
            threshold_pct: Some(config.max_p99_increase_pct),
            ceiling_ms: Some(config.max_p99_ms),
        },
    ]
}

/// A usable quantile: NaN, infinite or negative values count as not reported.
fn quantile(q: Option<f64>) -> Option<f64> {
    q.filter(|v| v.is_finite() && *v >= 0.0)
}

fn latency_check(
    config: &AnalysisConfig,
    rule: &LatencyRule,
    stable: &VersionWindow,
    canary: &VersionWindow,
    confidence: Option<f64>,
) -> Check {
    let name = rule.metric.label();
    let row = Check {
        stable: quantile((rule.quantile)(stable)),
        canary: quantile((rule.quantile)(canary)),
        confidence,
        ..unjudged(rule.metric, DeltaUnit::Percent, rule.threshold_pct)
    };
    let (Some(s), Some(c)) = (row.stable, row.canary) else {
        let reason = format!("{name} not reported by {}", absent(row.stable, row.canary));
        return Check { reason, ..row };
    };
    if s <= 0.0 {
        let reason = format!("{name} stable is 0 ms, no relative change to judge");
        return Check { reason, ..row };
    }
    let delta = (c - s) / s * 100.0;
    let shown = format!("{name} canary {} vs stable {}: {delta:+.1} %", ms(c), ms(s));
    let severity = latency_severity(rule.metric, delta);
    let mut judged = match rule.threshold_pct {
        Some(limit) if delta > limit => {
            let reason = format!("{shown} > {limit:.1} %");
            gate(confidence, config.confidence, severity, reason, "")
        }
        Some(limit) => (CheckOutcome::Pass, None, format!("{shown} ≤ {limit:.1} %")),
        None => (CheckOutcome::Pass, None, shown),
    };
    if let Some(max) = rule.ceiling_ms.filter(|&max| c > max) {
        judged = above_ceiling(judged, None, config.confidence, severity, ms(max));
    }
    let (outcome, severity, reason) = judged;
    Check { delta: Some(delta), outcome, severity, reason, ..row }
}

/// DOMAIN severity table: p99 +50 % High, +25–50 % Medium, less Low; the p95
/// rule only triggers at 2× stable, which the table rates as a rollback (High).
fn latency_severity(metric: Metric, delta_pct: f64) -> Severity {
    match metric {
        Metric::LatencyP95 => Severity::High,
        _ if delta_pct >= 50.0 => Severity::High,
        _ if delta_pct >= 25.0 => Severity::Medium,
        _ => Severity::Low,
    }
}

/// A row's outcome, severity when failing, and reason.
type Judgement = (CheckOutcome, Option<Severity>, String);

/// A relative limit is broken: it fails only if the statistical test (when
/// it could run) is confident enough; otherwise the row waits for more data.
/// `claim` says what the confidence is about when it is not obvious.
fn gate(confidence: Option<f64>, needed: f64, severity: Severity, reason: String, claim: &str) -> Judgement {
    match confidence {
        Some(p) if p >= needed => (CheckOutcome::Fail, Some(severity), format!("{reason} ({} confident)", percent(p))),
        Some(p) => (
            CheckOutcome::Inconclusive,
            None,
            format!("{reason}, not yet significant ({} confident{claim})", percent(p)),
        ),
        None => (CheckOutcome::Fail, Some(severity), reason),
    }
}

/// An absolute ceiling (DOMAIN: error rate > 5 %, p99 > 1 s) fails the row
/// on its own, at least High: the canary is bad whatever stable does. When a
/// test gives the confidence that the canary really is above the ceiling
/// (error rate), it must reach `needed`; until then a row that would
/// otherwise pass waits, and a row already failing keeps its own reason.
fn above_ceiling(
    judged: Judgement,
    confidence: Option<f64>,
    needed: f64,
    severity: Severity,
    ceiling: String,
) -> Judgement {
    let (outcome, old_severity, reason) = judged;
    match confidence {
        Some(p) if p < needed => match outcome {
            CheckOutcome::Fail => (outcome, old_severity, reason),
            _ => (
                CheckOutcome::Inconclusive,
                None,
                format!(
                    "{reason}, above the {ceiling} ceiling but not yet significant ({} confident it exceeds {ceiling})",
                    percent(p)
                ),
            ),
        },
        _ => (CheckOutcome::Fail, Some(severity.max(Severity::High)), format!("{reason}, above the {ceiling} ceiling")),
    }
}

/// Confidence as "99.9 %": rounded down and capped, because a test never
/// proves certainty even when Φ(z) rounds to exactly 1.
fn percent(p: f64) -> String {
    format!("{:.1} %", (p * 1000.0).floor().min(999.0) / 10.0)
}

/// Milliseconds, with a decimal only where it matters ("0.4 ms", "320 ms").
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// The few statistics the verdict needs, written out (the core has no stats
/// crate). Tests return a one-sided confidence, `1 - p`, that the canary is
/// worse than the stated limit.
mod stats {
    /// Standard normal CDF, Φ(x) = erfc(-x/√2) / 2.
    pub fn normal_cdf(x: f64) -> f64 {
        0.5 * erfc(-x / std::f64::consts::SQRT_2)
    }

    /// Complementary error function, Chebyshev fit from Numerical Recipes
    /// (`erfcc`): fractional error below 1.2e-7 everywhere, so tail
    /// probabilities stay accurate where 1 - erf(x) would cancel to 0.
    fn erfc(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let poly = -z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
        let tail = t * poly.exp();
        if x >= 0.0 {
            tail
        } else {
            2.0 - tail
        }
    }

    /// The z with Φ(z) = p, by bisection on `normal_cdf` (|z| ≤ 10 covers
    /// every confidence a plan can ask for; 64 halvings reach f64 precision).
    pub fn normal_quantile(p: f64) -> f64 {
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..64 {
            let mid = (lo + hi) / 2.0;
            if normal_cdf(mid) < p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo + hi) / 2.0
    }

    /// Confidence that canary's error proportion exceeds stable's by more
    /// than `margin` (a proportion, 0.01 = 1 pp): one-sided test of
    /// H0: p_c − p_s ≤ margin. Agresti–Caffo adjusted Wald: one error and one
    /// success added to each group, p̃ = (x+1)/(n+2), which keeps the
    /// variance positive with zero errors and is well calibrated for small
    /// counts. Arguments are `(errors, requests)` with errors ≤ requests.
    pub fn agresti_caffo(stable: (u64, u64), canary: (u64, u64), margin: f64) -> f64 {
        let adjusted = |(x, n): (u64, u64)| {
            let (x, n) = (x as f64 + 1.0, n as f64 + 2.0);
            (x / n, (x / n) * (1.0 - x / n) / n)
        };
        let ((p_s, var_s), (p_c, var_c)) = (adjusted(stable), adjusted(canary));
        normal_cdf((p_c - p_s - margin) / (var_s + var_c).sqrt())
    }

    /// Confidence that a version's error proportion exceeds `rate`: one-sample
    /// Agresti–Coull z with p̃ = (x+2)/(n+4).
    pub fn rate_above((x, n): (u64, u64), rate: f64) -> f64 {
        let (x, n) = (x as f64 + 2.0, n as f64 + 4.0);
        let p = x / n;
        normal_cdf((p - rate) / (p * (1.0 - p) / n).sqrt())
    }

    /// One-sided lower bound of the error proportion at `confidence` (Wilson
    /// score interval): a cautious rate that a handful of errors on a small
    /// window cannot inflate. 0 without requests.
    pub fn wilson_lower((x, n): (u64, u64), confidence: f64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let (x, n, z) = (x as f64, n as f64, normal_quantile(confidence));
        let (p, z2) = (x / n, z * z);
        let centre = p + z2 / (2.0 * n);
        let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        ((centre - spread) / (1.0 + z2 / n)).max(0.0)
    }

    /// Result of a Mann-Whitney U test of canary against stable.
    #[derive(Debug, Clone, Copy)]
    #[allow(dead_code)] // `u` and `z` are read by the tests; kept for diagnostics.
    pub struct MannWhitney {
        /// U of the canary sample: pairs where canary is slower, ties count ½.
        pub u: f64,
        pub z: f64,
        /// Confidence that canary latencies are stochastically greater.
        pub confidence: f64,
    }

    /// One-sided Mann-Whitney U (Kayenta's comparison), normal approximation
    /// with tie correction and continuity correction. One sort of the pooled
    /// samples, then average ranks per run of ties: O(n log n), so 10,000-sample
    /// windows are cheap. Non-finite samples are dropped; `None` when a side
    /// has no samples or every value is tied (no ordering to test).
    pub fn mann_whitney(stable: &[f64], canary: &[f64]) -> Option<MannWhitney> {
        let tagged = |xs: &[f64], is_canary: bool| {
            xs.iter().filter(|v| v.is_finite()).map(move |&v| (v, is_canary)).collect::<Vec<_>>()
        };
        let mut pooled = tagged(stable, false);
        pooled.extend(tagged(canary, true));
        let n_c = pooled.iter().filter(|(_, is_canary)| *is_canary).count() as f64;
        let n = pooled.len() as f64;
        let n_s = n - n_c;
        if n_c == 0.0 || n_s == 0.0 {
            return None;
        }
        pooled.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let (mut canary_rank_sum, mut tie_sum) = (0.0, 0.0);
        let mut start = 0;
        while start < pooled.len() {
            let end = start + pooled[start..].iter().take_while(|(v, _)| *v == pooled[start].0).count();
            // Ranks start+1 ..= end share their average.
            let (ties, avg_rank) = ((end - start) as f64, (start + 1 + end) as f64 / 2.0);
            let canaries = pooled[start..end].iter().filter(|(_, is_canary)| *is_canary).count() as f64;
            canary_rank_sum += avg_rank * canaries;
            tie_sum += ties * ties * ties - ties;
            start = end;
        }
        let u = canary_rank_sum - n_c * (n_c + 1.0) / 2.0;
        let mean = n_s * n_c / 2.0;
        let variance = n_s * n_c / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0)));
        if variance.is_nan() || variance <= 0.0 {
            return None;
        }
        // −0.5: continuity correction towards the null (as scipy does).
        let z = (u - mean - 0.5) / variance.sqrt();
        Some(MannWhitney { u, z, confidence: normal_cdf(z) })
    }
}

#[cfg(test)]
mod tests {
    use super::stats;
    use super::*;

    /// A version with the given traffic and a p99; p50/p95 follow it so only
    /// p99 (and error rate) vary between cases unless a case says otherwise.
    fn version(requests: u64, errors: u64, p99_ms: f64) -> VersionWindow {
        VersionWindow {
            requests,
            errors,
            p50_ms: Some(p99_ms * 0.4),
            p95_ms: Some(p99_ms * 0.8),
            p99_ms: Some(p99_ms),
            latency_samples_ms: vec![],
        }
    }

    fn sample(stable: Option<VersionWindow>, canary: Option<VersionWindow>) -> MetricsSample {
        MetricsSample { window: Duration::from_secs(60), stable, canary, missing: None }
    }

    fn both(stable: VersionWindow, canary: VersionWindow) -> MetricsSample {
        sample(Some(stable), Some(canary))
    }

    fn failing(verdict: &Verdict) -> Vec<Metric> {
        verdict.checks().iter().filter(|c| c.outcome == CheckOutcome::Fail).map(|c| c.metric).collect()
    }

    fn severity(verdict: &Verdict) -> Option<Severity> {
        match verdict {
            Verdict::Fail { severity, .. } => Some(*severity),
            _ => None,
        }
    }

    fn row(verdict: &Verdict, metric: Metric) -> &Check {
        verdict.checks().iter().find(|c| c.metric == metric).expect("row present")
    }

    /// Uniform samples in [lo, hi), whole milliseconds (so ties occur), from
    /// a fixed LCG: deterministic without a rand dependency.
    fn uniform_ms(count: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
                (lo + unit * (hi - lo)).floor()
            })
            .collect()
    }

    fn with_samples(mut v: VersionWindow, samples: Vec<f64>) -> VersionWindow {
        v.latency_samples_ms = samples;
        v
    }

    struct Case {
        name: &'static str,
        sample: MetricsSample,
        label: &'static str,
        severity: Option<Severity>,
        failing: Vec<Metric>,
    }

    fn case(name: &'static str, sample: MetricsSample, label: &'static str) -> Case {
        Case { name, sample, label, severity: None, failing: vec![] }
    }

    fn fails(name: &'static str, sample: MetricsSample, severity: Severity, failing: &[Metric]) -> Case {
        Case { name, sample, label: "fail", severity: Some(severity), failing: failing.to_vec() }
    }

    #[test]
    fn verdict_table() {
        use Metric::*;
        let healthy = || version(10_000, 50, 250.0); // 0.5 % errors, p99 250 ms
        let mut p95_doubled = version(1_000, 5, 250.0);
        p95_doubled.p95_ms = Some(450.0); // stable p95 is 200 ms
        let mut no_p50 = version(1_000, 5, 250.0);
        no_p50.p50_ms = None;
        let mut nan_p99 = version(1_000, 5, 250.0);
        nan_p99.p99_ms = Some(f64::NAN);
        let same = uniform_ms(500, 100.0, 300.0, 1);
        let same_too = uniform_ms(500, 100.0, 300.0, 2);
        let slower: Vec<f64> = uniform_ms(500, 100.0, 300.0, 3).iter().map(|v| v * 1.3).collect();
        let cases = vec![
            case("healthy canary passes", both(healthy(), version(1_000, 6, 255.0)), "pass"),
            fails(
                "error regression 0.5 → 3 % on 1,000 (6×, cautiously 4.5×)",
                both(healthy(), version(1_000, 30, 250.0)),
                Severity::High,
                &[ErrorRate],
            ),
            fails(
                "clear regression on 2,500 requests (0.2 → 12 %, cautiously 55×)",
                both(version(10_000, 20, 250.0), version(2_500, 300, 250.0)),
                Severity::Critical,
                &[ErrorRate],
            ),
            fails(
                "error regression 1 → 2.5 % on 10,000 (cautiously 2.3×)",
                both(version(10_000, 100, 250.0), version(10_000, 250, 250.0)),
                Severity::High,
                &[ErrorRate],
            ),
            case(
                "1 → 2.5 % on 2,000 is only 93 % sure to exceed 1 pp",
                both(version(10_000, 100, 250.0), version(2_000, 50, 250.0)),
                "inconclusive",
            ),
            fails(
                "error regression 2 → 4 % on 10,000 (cautiously 1.8×)",
                both(version(10_000, 200, 250.0), version(10_000, 400, 250.0)),
                Severity::Medium,
                &[ErrorRate],
            ),
            case(
                "small canary noise is not a failure (4/243 vs 21/11,838)",
                both(version(11_838, 21, 250.0), version(243, 4, 250.0)),
                "inconclusive",
            ),
            case(
                "zero canary errors vs zero stable errors",
                both(version(10_000, 0, 250.0), version(1_000, 0, 250.0)),
                "pass",
            ),
            fails("p99 +28 %", both(healthy(), version(1_000, 5, 320.0)), Severity::Medium, &[LatencyP99]),
            fails("p99 +60 %", both(healthy(), version(1_000, 5, 400.0)), Severity::High, &[LatencyP99]),
            fails("p99 +15 %", both(healthy(), version(1_000, 5, 287.5)), Severity::Low, &[LatencyP99]),
            fails("p95 over 2× stable", both(healthy(), p95_doubled), Severity::High, &[LatencyP95]),
            fails(
                "error ceiling: 6 % of 3,000 with stable at 5.5 %",
                both(version(10_000, 550, 250.0), version(3_000, 180, 250.0)),
                Severity::High,
                &[ErrorRate],
            ),
            case(
                "6 % of 1,000 is only 93 % sure to be above the 5 % ceiling",
                both(version(10_000, 550, 250.0), version(1_000, 60, 250.0)),
                "inconclusive",
            ),
            fails(
                "p99 ceiling 1010 ms with stable at 950 ms",
                both(version(10_000, 50, 950.0), version(1_000, 5, 1_010.0)),
                Severity::High,
                &[LatencyP99],
            ),
            case("too few requests", both(healthy(), version(50, 0, 250.0)), "inconclusive"),
            case("too few requests, even with half failing", both(healthy(), version(50, 25, 900.0)), "inconclusive"),
            case("canary metrics missing", sample(Some(healthy()), None), "inconclusive"),
            case("stable metrics missing", sample(None, Some(healthy())), "inconclusive"),
            case(
                "+1.5 pp on 100 requests is not yet significant",
                both(healthy(), version(100, 2, 250.0)),
                "inconclusive",
            ),
            case(
                "p99 not reported by canary",
                both(healthy(), VersionWindow { p99_ms: None, ..version(1_000, 5, 250.0) }),
                "inconclusive",
            ),
            case("NaN p99 counts as missing", both(healthy(), nan_p99), "inconclusive"),
            case("p50 missing is shown, not decisive", both(healthy(), no_p50), "pass"),
            case(
                "p99 +28 % but samples alike: not significant",
                both(with_samples(healthy(), same.clone()), with_samples(version(1_000, 5, 320.0), same_too)),
                "inconclusive",
            ),
            fails(
                "p99 +30 % with samples shifted 30 %",
                both(with_samples(healthy(), same), with_samples(version(1_000, 5, 325.0), slower)),
                Severity::Medium,
                &[LatencyP99],
            ),
            case(
                "zero-length window still judges",
                MetricsSample { window: Duration::ZERO, ..both(healthy(), version(1_000, 6, 255.0)) },
                "pass",
            ),
        ];
        let config = AnalysisConfig::default();
        for c in cases {
            let verdict = evaluate(&config, &c.sample);
            assert_eq!(verdict.label(), c.label, "{}: {verdict:#?}", c.name);
            assert_eq!(severity(&verdict), c.severity, "{}: {}", c.name, verdict.summary());
            assert_eq!(failing(&verdict), c.failing, "{}: {}", c.name, verdict.summary());
        }
    }

    #[test]
    fn missing_metrics_have_no_checks_and_keep_the_reason() {
        let config = AnalysisConfig::default();
        let mut s = sample(Some(version(1_000, 5, 250.0)), None);
        let verdict = evaluate(&config, &s);
        assert!(verdict.is_missing_metrics());
        assert_eq!(verdict.summary(), "no canary metrics");
        s.missing = Some("prometheus: connection refused".into());
        assert_eq!(evaluate(&config, &s).summary(), "prometheus: connection refused");
    }

    #[test]
    fn too_few_requests_shows_rows_but_decides_nothing() {
        let config = AnalysisConfig::default();
        let verdict = evaluate(&config, &both(version(10_000, 50, 250.0), version(50, 25, 900.0)));
        let Verdict::Inconclusive { requests, needed, reason, checks } = &verdict else { panic!("{verdict:?}") };
        assert_eq!((*requests, *needed), (50, 100));
        assert_eq!(reason, "only 50 canary requests, need 100");
        assert_eq!(checks.len(), 5);
        assert!(!verdict.is_missing_metrics());
        assert!(checks.iter().all(|c| c.outcome != CheckOutcome::Fail && c.severity.is_none()));
        assert!(checks.iter().filter(|c| !c.is_informational()).all(|c| c.outcome == CheckOutcome::Inconclusive));
    }

    #[test]
    fn rows_come_in_order_with_units() {
        let verdict = evaluate(&AnalysisConfig::default(), &both(version(9_000, 45, 250.0), version(1_000, 6, 255.0)));
        let metrics: Vec<Metric> = verdict.checks().iter().map(|c| c.metric).collect();
        use Metric::*;
        assert_eq!(metrics, [Requests, ErrorRate, LatencyP50, LatencyP95, LatencyP99]);
        let requests = row(&verdict, Requests);
        assert_eq!(
            (requests.stable, requests.canary, requests.unit),
            (Some(150.0), Some(1_000.0 / 60.0), DeltaUnit::PerSecond)
        );
        let errors = row(&verdict, ErrorRate);
        assert_eq!(errors.unit, DeltaUnit::Pp);
        assert!((errors.delta.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(errors.reason, "error rate canary 0.60 % vs stable 0.50 %: +0.10 pp ≤ 1.00 pp");
        assert_eq!(row(&verdict, LatencyP95).threshold, Some(100.0));
        assert_eq!(row(&verdict, LatencyP50).threshold, None);
    }

    #[test]
    fn reasons_are_sentences_with_numbers() {
        let config = AnalysisConfig::default();
        let verdict = evaluate(&config, &both(version(10_000, 50, 250.0), version(1_000, 200, 320.0)));
        let errors = row(&verdict, Metric::ErrorRate);
        assert_eq!(
            errors.reason,
            "error rate canary 20.00 % vs stable 0.50 %: +19.50 pp > 1.00 pp (99.9 % confident), above the 5.00 % ceiling"
        );
        assert_eq!(errors.severity, Some(Severity::Critical));
        assert_eq!(row(&verdict, Metric::LatencyP99).reason, "p99 canary 320 ms vs stable 250 ms: +28.0 % > 10.0 %");
        let insignificant = evaluate(&config, &both(version(10_000, 50, 250.0), version(100, 2, 250.0)));
        assert!(insignificant.summary().contains("not yet significant ("), "{}", insignificant.summary());
        let noise = evaluate(&config, &both(version(11_838, 21, 250.0), version(243, 4, 250.0)));
        assert_eq!(
            row(&noise, Metric::ErrorRate).reason,
            "error rate canary 1.65 % vs stable 0.18 %: +1.47 pp > 1.00 pp, \
             not yet significant (82.7 % confident it exceeds 1.00 pp)"
        );
        let near_ceiling = evaluate(&config, &both(version(10_000, 550, 250.0), version(1_000, 60, 250.0)));
        assert_eq!(
            row(&near_ceiling, Metric::ErrorRate).reason,
            "error rate canary 6.00 % vs stable 5.50 %: +0.50 pp ≤ 1.00 pp, \
             above the 5.00 % ceiling but not yet significant (93.9 % confident it exceeds 5.00 %)"
        );
    }

    /// DOMAIN: 5 % canary at 10 % errors + 95 % stable at 0.1 % looks like
    /// 0.595 % overall — under the 1 pp limit — yet the canary is broken.
    #[test]
    fn aggregate_masks_a_broken_canary_but_per_version_does_not() {
        let (stable, canary) = (version(95_000, 95, 250.0), version(5_000, 500, 250.0));
        let aggregate_pct = (stable.errors + canary.errors) as f64 / (stable.requests + canary.requests) as f64 * 100.0;
        assert!((aggregate_pct - 0.595).abs() < 1e-9);
        let config = AnalysisConfig::default();
        assert!(aggregate_pct - 0.1 < config.max_error_increase_pp, "an aggregate check would pass");
        let verdict = evaluate(&config, &both(stable, canary));
        assert_eq!(verdict.label(), "fail");
        assert_eq!(failing(&verdict), [Metric::ErrorRate]);
        assert_eq!(severity(&verdict), Some(Severity::Critical));
    }

    #[test]
    fn normal_cdf_matches_tables() {
        // Reference values: 0.5 * erfc(-x / sqrt 2) in double precision.
        for (x, want) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_543),
            (-1.0, 0.158_655_253_931_457),
            (1.96, 0.975_002_104_851_780),
            (3.0, 0.998_650_101_968_370),
            (-3.0, 0.001_349_898_031_630),
        ] {
            let got = stats::normal_cdf(x);
            assert!((got - want).abs() < 1e-7, "Φ({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn agresti_caffo_hand_computed() {
        // Stable 8/98, canary 18/98, margin 5 pp. Adding one error and one
        // success per group: p̃s = 9/100 = 0.09, p̃c = 19/100 = 0.19.
        // SE = √(0.19·0.81/100 + 0.09·0.91/100) = √0.002358 = 0.0485592,
        // z = (0.19 − 0.09 − 0.05)/0.0485592 = 1.0296701, Φ(z) = 0.8484176.
        let confidence = stats::agresti_caffo((8, 98), (18, 98), 0.05);
        assert!((confidence - 0.848_417_6).abs() < 1e-6, "{confidence}");
        // The same data against "canary is worse at all" (margin 0):
        // z = 0.10/0.0485592 = 2.0593402, Φ(z) = 0.9802692.
        assert!((stats::agresti_caffo((8, 98), (18, 98), 0.0) - 0.980_269_2).abs() < 1e-6);
        // Zero errors on both sides: finite, and no evidence of an excess.
        let clean = stats::agresti_caffo((0, 10_000), (0, 1_000), 0.01);
        assert!(clean < 1e-6, "{clean}");
        // No requests at all still gives a number, never NaN.
        assert!(stats::agresti_caffo((0, 0), (0, 0), 0.01).is_finite());
    }

    #[test]
    fn ceiling_and_cautious_rate_known_values() {
        // 60/1000 against 5 %: p̃ = 62/1004 = 0.0617530, SE = √(p̃(1−p̃)/1004)
        // = 0.0075966, z = 1.5471327, Φ(z) = 0.9390844.
        assert!((stats::rate_above((60, 1_000), 0.05) - 0.939_084_4).abs() < 1e-6);
        assert!((stats::normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((stats::normal_quantile(0.95) - 1.644_854).abs() < 1e-5);
        // Wilson lower bound, 30/1000 at 95 % one-sided: 0.0223168.
        assert!((stats::wilson_lower((30, 1_000), 0.95) - 0.022_316_8).abs() < 1e-6);
        assert_eq!(stats::wilson_lower((0, 1_000), 0.95), 0.0);
        assert_eq!(stats::wilson_lower((0, 0), 0.95), 0.0);
    }

    #[test]
    fn mann_whitney_hand_computed() {
        // Stable [1,2,2,3], canary [2,3,4,5]. Canary-slower pairs: 2 beats 1
        // and ties two 2s (1 + ½ + ½ = 2), 3 beats 1,2,2 and ties 3 (3.5),
        // 4 and 5 beat all four (8): U = 13.5. Ties {2:3, 3:2} give
        // Σ(t³−t) = 30, variance 16/12·(9 − 30/56) = 11.2857,
        // z = (13.5 − 8 − 0.5)/√11.2857 = 1.48835.
        let t = stats::mann_whitney(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(t.u, 13.5);
        assert!((t.z - 1.488_351_394).abs() < 1e-8, "{}", t.z);
        assert!((t.confidence - 0.931_670_876).abs() < 1e-6, "{}", t.confidence);
        // Fully separated, no ties: U = 9, z = 4/√5.25.
        let t = stats::mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.u, 9.0);
        assert!((t.confidence - 0.959_572_2).abs() < 1e-6);
    }

    #[test]
    fn mann_whitney_degenerate_inputs() {
        assert!(stats::mann_whitney(&[], &[1.0]).is_none());
        assert!(stats::mann_whitney(&[1.0], &[f64::NAN]).is_none());
        assert!(stats::mann_whitney(&[5.0, 5.0], &[5.0, 5.0]).is_none(), "all tied");
    }

    #[test]
    fn odd_inputs_never_panic() {
        let config = AnalysisConfig::default();
        let weird = VersionWindow {
            requests: 0,
            errors: 7,
            p50_ms: Some(f64::INFINITY),
            p95_ms: Some(-1.0),
            p99_ms: Some(0.0),
            latency_samples_ms: vec![f64::NAN, f64::INFINITY],
        };
        for (stable, canary) in [
            (weird.clone(), weird.clone()),
            (weird.clone(), version(1_000, 2_000, 250.0)),
            (version(1_000, 5, 0.0), version(1_000, 5, 250.0)),
            (version(u64::MAX, u64::MAX, 250.0), version(u64::MAX / 4, 3, 250.0)),
        ] {
            let s = MetricsSample { window: Duration::ZERO, ..both(stable, canary) };
            let _ = evaluate(&config, &s);
            let lenient = AnalysisConfig { min_requests: 0, confidence: f64::NAN, ..config.clone() };
            let _ = evaluate(&lenient, &s);
        }
    }

    #[test]
    fn ten_thousand_sample_windows() {
        let config = AnalysisConfig::default();
        let stable_samples = uniform_ms(10_000, 100.0, 300.0, 7);
        let alike = uniform_ms(10_000, 100.0, 300.0, 8);
        let slower: Vec<f64> = uniform_ms(10_000, 100.0, 300.0, 9).iter().map(|v| v * 1.3).collect();
        let window = |samples: Vec<f64>| {
            let mut sorted = samples.clone();
            sorted.sort_by(f64::total_cmp);
            let q = |p: f64| Some(sorted[((sorted.len() - 1) as f64 * p) as usize]);
            VersionWindow {
                requests: 10_000,
                errors: 10,
                p50_ms: q(0.5),
                p95_ms: q(0.95),
                p99_ms: q(0.99),
                latency_samples_ms: samples,
            }
        };
        let pass = evaluate(&config, &both(window(stable_samples.clone()), window(alike)));
        assert_eq!(pass.label(), "pass", "{}", pass.summary());
        let fail = evaluate(&config, &both(window(stable_samples), window(slower)));
        assert_eq!(fail.label(), "fail", "{}", fail.summary());
        assert_eq!(failing(&fail), [Metric::LatencyP99]);
        assert!(row(&fail, Metric::LatencyP99).confidence.unwrap() > 0.999);
    }
}
