//! Canary analysis: canary against stable, per version, never the aggregate.
//!
//! One window of metrics becomes a table of checks (requests, error rate,
//! p50/p95/p99) and a verdict. A regression fails only when it breaks a
//! limit *and* a one-sided test says it is real (error rate: Fisher's exact
//! test for small counts, else a two-proportion z-test; latency: Mann-Whitney
//! U when raw samples exist). Too few canary requests, missing metrics or a
//! regression that is not yet significant give *inconclusive*, never *pass*.

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
    /// One-sided confidence that canary is worse than stable, 0..=1, from a
    /// statistical test; `None` when the test could not run.
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
    Pass { checks: Vec<Check> },
    Fail { severity: Severity, checks: Vec<Check> },
    /// Not enough evidence either way: too few canary requests, missing
    /// metrics, or a regression not yet significant. Never a pass.
    Inconclusive { requests: u64, needed: u64, reason: String, checks: Vec<Check> },
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
    let latency = |rule: LatencyRule, pick: fn(&VersionWindow) -> Option<f64>| {
        latency_check(config, &rule, pick(stable), pick(canary), latency_confidence)
    };
    vec![
        request_rate_check(window, stable, canary),
        error_rate_check(config, stable, canary),
        latency(LatencyRule { metric: Metric::LatencyP50, threshold_pct: None, ceiling_ms: None }, |v| v.p50_ms),
        latency(
            LatencyRule { metric: Metric::LatencyP95, threshold_pct: Some(P95_MAX_INCREASE_PCT), ceiling_ms: None },
            |v| v.p95_ms,
        ),
        latency(
            LatencyRule {
                metric: Metric::LatencyP99,
                threshold_pct: Some(config.max_p99_increase_pct),
                ceiling_ms: Some(config.max_p99_ms),
            },
            |v| v.p99_ms,
        ),
    ]
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
    let worst = deciding()
        .filter(|c| c.outcome == CheckOutcome::Fail)
        .map(|c| c.severity.unwrap_or(Severity::Medium))
        .max();
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
        metric: Metric::ErrorRate,
        stable: error_pct(stable),
        canary: error_pct(canary),
        delta: None,
        threshold: Some(threshold),
        unit: DeltaUnit::Pp,
        confidence: None,
        outcome: CheckOutcome::Inconclusive,
        severity: None,
        reason: String::new(),
    };
    let (s, c) = match (row.stable, row.canary) {
        (Some(s), Some(c)) => (s, c),
        (None, _) => return Check { reason: "error rate unknown: stable served no requests".into(), ..row },
        (_, None) => return Check { reason: "error rate unknown: canary served no requests".into(), ..row },
    };
    let delta = c - s;
    let confidence = stats::error_rate_confidence(
        (stable.errors.min(stable.requests), stable.requests),
        (canary.errors.min(canary.requests), canary.requests),
    );
    let shown = format!("error rate canary {c:.2} % vs stable {s:.2} %: {delta:+.2} pp");
    let severity = error_severity(s, c);
    let ceiling = config.max_error_rate_pct;
    let (outcome, severity, reason) = if c > ceiling {
        // An absolute ceiling needs no comparison: the canary is bad on its own.
        (CheckOutcome::Fail, Some(severity.max(Severity::High)), format!("{shown}, above the {ceiling:.2} % ceiling"))
    } else if delta > threshold {
        gate(confidence, config.confidence, severity, format!("{shown} > {threshold:.2} pp"))
    } else {
        (CheckOutcome::Pass, None, format!("{shown} ≤ {threshold:.2} pp"))
    };
    Check { delta: Some(delta), confidence, outcome, severity, reason, ..row }
}

/// DOMAIN severity table by canary/stable error ratio. A failing error row is
/// at least Medium: it already broke the configured increase limit.
fn error_severity(stable_pct: f64, canary_pct: f64) -> Severity {
    let ratio = canary_pct / stable_pct.max(STABLE_ERROR_FLOOR_PCT);
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
    /// Largest allowed increase, percent of stable; `None` = shown only.
    threshold_pct: Option<f64>,
    /// Absolute ceiling on the canary value, ms.
    ceiling_ms: Option<f64>,
}

/// A usable quantile: NaN, infinite or negative values count as not reported.
fn quantile(q: Option<f64>) -> Option<f64> {
    q.filter(|v| v.is_finite() && *v >= 0.0)
}

fn latency_check(
    config: &AnalysisConfig,
    rule: &LatencyRule,
    stable: Option<f64>,
    canary: Option<f64>,
    confidence: Option<f64>,
) -> Check {
    let name = rule.metric.label();
    let row = Check {
        metric: rule.metric,
        stable: quantile(stable),
        canary: quantile(canary),
        delta: None,
        threshold: rule.threshold_pct,
        unit: DeltaUnit::Percent,
        confidence,
        outcome: CheckOutcome::Inconclusive,
        severity: None,
        reason: String::new(),
    };
    let (s, c) = match (row.stable, row.canary) {
        (Some(s), Some(c)) => (s, c),
        (None, None) => return Check { reason: format!("{name} not reported by either version"), ..row },
        (None, _) => return Check { reason: format!("{name} not reported by stable"), ..row },
        (_, None) => return Check { reason: format!("{name} not reported by canary"), ..row },
    };
    if s <= 0.0 {
        let reason = format!("{name} stable is 0 ms, no relative change to judge");
        return Check { reason, ..row };
    }
    let delta = (c - s) / s * 100.0;
    let shown = format!("{name} canary {} vs stable {}: {delta:+.1} %", ms(c), ms(s));
    let (outcome, severity, reason) = match (rule.ceiling_ms.filter(|&max| c > max), rule.threshold_pct) {
        (Some(max), _) => (CheckOutcome::Fail, Some(Severity::High), format!("{shown}, above the {} ceiling", ms(max))),
        (None, Some(limit)) if delta > limit => {
            gate(confidence, config.confidence, latency_severity(rule.metric, delta), format!("{shown} > {limit:.1} %"))
        }
        (None, Some(limit)) => (CheckOutcome::Pass, None, format!("{shown} ≤ {limit:.1} %")),
        (None, None) => (CheckOutcome::Pass, None, shown),
    };
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

/// A limit is broken: it fails only if the statistical test (when it could
/// run) is confident enough; otherwise the row waits for more data.
fn gate(confidence: Option<f64>, needed: f64, severity: Severity, reason: String) -> (CheckOutcome, Option<Severity>, String) {
    match confidence {
        Some(p) if p >= needed => (CheckOutcome::Fail, Some(severity), format!("{reason} ({} confident)", percent(p))),
        Some(p) => (CheckOutcome::Inconclusive, None, format!("{reason}, not yet significant ({} confident)", percent(p))),
        None => (CheckOutcome::Fail, Some(severity), reason),
    }
}

/// Confidence as "99.9 %", rounded down so 0.99996 never reads as certainty.
fn percent(p: f64) -> String {
    format!("{:.1} %", (p * 1000.0).floor() / 10.0)
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
/// crate). Every function returns a one-sided confidence that the canary is
/// worse than stable, `1 - p`.
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
                                + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
        let tail = t * poly.exp();
        if x >= 0.0 {
            tail
        } else {
            2.0 - tail
        }
    }

    /// Confidence that canary's error proportion exceeds stable's, from
    /// `(errors, requests)` pairs (errors ≤ requests). Fisher's exact test
    /// when any expected cell of the 2×2 table is below 5 (the textbook limit
    /// of the normal approximation; typical for a 100-request canary with a
    /// handful of errors), the pooled z-test otherwise. `None` without requests.
    pub fn error_rate_confidence(stable: (u64, u64), canary: (u64, u64)) -> Option<f64> {
        let ((x_s, n_s), (x_c, n_c)) = (stable, canary);
        if n_s == 0 || n_c == 0 {
            return None;
        }
        let (n, k) = ((n_s + n_c) as f64, (x_s + x_c) as f64);
        let smallest_expected = (n_s.min(n_c) as f64) * k.min(n - k) / n;
        if smallest_expected < 5.0 {
            Some(fisher_exact(x_s, n_s, x_c, n_c))
        } else {
            two_proportion_z(x_s, n_s, x_c, n_c)
        }
    }

    /// One-sided two-proportion z-test with the pooled standard error.
    /// `None` when the pooled rate is 0 or 1 (no variance, nothing to test).
    pub fn two_proportion_z(x_s: u64, n_s: u64, x_c: u64, n_c: u64) -> Option<f64> {
        let (n_s, n_c) = (n_s as f64, n_c as f64);
        let pooled = (x_s + x_c) as f64 / (n_s + n_c);
        let se = (pooled * (1.0 - pooled) * (1.0 / n_s + 1.0 / n_c)).sqrt();
        if !(se > 0.0) {
            return None;
        }
        let z = (x_c as f64 / n_c - x_s as f64 / n_s) / se;
        Some(normal_cdf(z))
    }

    /// One-sided Fisher exact test. With the error total fixed, the canary's
    /// error count is hypergeometric; confidence = P(X < observed).
    /// Summing always walks *away* from the mode, so terms shrink, an
    /// underflowed start is harmless, and the loop stops once they vanish.
    pub fn fisher_exact(x_s: u64, n_s: u64, x_c: u64, n_c: u64) -> f64 {
        let (n, k, draws, x) = ((n_s + n_c) as f64, (x_s + x_c) as f64, n_c as f64, x_c as f64);
        let (low, high) = ((draws - (n - k)).max(0.0), k.min(draws));
        let pmf = |i: f64| (ln_choose(k, i) + ln_choose(n - k, draws - i) - ln_choose(n, draws)).exp();
        let mode = ((draws + 1.0) * (k + 1.0) / (n + 2.0)).floor();
        if x > mode {
            // Upper tail P(X ≥ x), walking up: pmf(i+1)/pmf(i).
            let step = |i: f64| (k - i) * (draws - i) / ((i + 1.0) * (n - k - draws + i + 1.0));
            1.0 - walk(pmf(x), x, high, 1.0, step).min(1.0)
        } else {
            // Lower tail P(X ≤ x-1), walking down: pmf(i-1)/pmf(i).
            let step = |i: f64| i * (n - k - draws + i) / ((k - i + 1.0) * (draws - i + 1.0));
            if x - 1.0 < low {
                return 0.0;
            }
            walk(pmf(x - 1.0), x - 1.0, low, -1.0, step).min(1.0)
        }
    }

    /// Sums pmf terms from `start` towards `end` (inclusive) by `dir`, each
    /// term from the previous one times `step(i)`.
    fn walk(first: f64, start: f64, end: f64, dir: f64, step: impl Fn(f64) -> f64) -> f64 {
        let (mut term, mut i, mut sum) = (first, start, 0.0);
        loop {
            sum += term;
            if (i - end).abs() < 0.5 || term <= sum * 1e-17 {
                return sum;
            }
            term *= step(i);
            i += dir;
        }
    }

    fn ln_choose(n: f64, k: f64) -> f64 {
        ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
    }

    /// ln(n!) = ln Γ(n+1) by the Lanczos approximation (g = 7, 9 terms),
    /// ~15 significant digits: enough for hypergeometric terms at millions
    /// of requests, where plain factorials overflow.
    fn ln_factorial(n: f64) -> f64 {
        const G: f64 = 7.0;
        const COEF: [f64; 9] = [
            0.999_999_999_999_809_9,
            676.520_368_121_885_1,
            -1_259.139_216_722_402_8,
            771.323_428_777_653_1,
            -176.615_029_162_140_6,
            12.507_343_278_686_905,
            -0.138_571_095_265_720_12,
            9.984_369_578_019_572e-6,
            1.505_632_735_149_311_6e-7,
        ];
        let x = n; // Γ(n+1) with the usual shift x = (n+1) - 1
        let series = COEF[1..].iter().enumerate().fold(COEF[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
        let t = x + G + 0.5;
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
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
        let tagged = |xs: &[f64], is_canary: bool| xs.iter().filter(|v| v.is_finite()).map(move |&v| (v, is_canary)).collect::<Vec<_>>();
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
        if !(variance > 0.0) {
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
            fails("error regression 0.5 → 3 % (6×)", both(healthy(), version(1_000, 30, 250.0)), Severity::Critical, &[ErrorRate]),
            fails("error regression 1 → 2.5 % (2.5×)", both(version(10_000, 100, 250.0), version(2_000, 50, 250.0)), Severity::High, &[ErrorRate]),
            fails("error regression 2 → 3.2 % (1.6×)", both(version(10_000, 200, 250.0), version(5_000, 160, 250.0)), Severity::Medium, &[ErrorRate]),
            fails("p99 +28 %", both(healthy(), version(1_000, 5, 320.0)), Severity::Medium, &[LatencyP99]),
            fails("p99 +60 %", both(healthy(), version(1_000, 5, 400.0)), Severity::High, &[LatencyP99]),
            fails("p99 +15 %", both(healthy(), version(1_000, 5, 287.5)), Severity::Low, &[LatencyP99]),
            fails("p95 over 2× stable", both(healthy(), p95_doubled), Severity::High, &[LatencyP95]),
            fails("error ceiling 6 % with stable at 5.5 %", both(version(10_000, 550, 250.0), version(1_000, 60, 250.0)), Severity::High, &[ErrorRate]),
            fails("p99 ceiling 1010 ms with stable at 950 ms", both(version(10_000, 50, 950.0), version(1_000, 5, 1_010.0)), Severity::High, &[LatencyP99]),
            case("too few requests", both(healthy(), version(50, 0, 250.0)), "inconclusive"),
            case("too few requests, even with half failing", both(healthy(), version(50, 25, 900.0)), "inconclusive"),
            case("canary metrics missing", sample(Some(healthy()), None), "inconclusive"),
            case("stable metrics missing", sample(None, Some(healthy())), "inconclusive"),
            case("+1.5 pp on 100 requests is not yet significant", both(healthy(), version(100, 2, 250.0)), "inconclusive"),
            case("p99 not reported by canary", both(healthy(), VersionWindow { p99_ms: None, ..version(1_000, 5, 250.0) }), "inconclusive"),
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
            case("zero-length window still judges", MetricsSample { window: Duration::ZERO, ..both(healthy(), version(1_000, 6, 255.0)) }, "pass"),
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
        assert_eq!((requests.stable, requests.canary, requests.unit), (Some(150.0), Some(1_000.0 / 60.0), DeltaUnit::PerSecond));
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
        assert!(errors.reason.starts_with("error rate canary 20.00 % vs stable 0.50 %: +19.50 pp"), "{}", errors.reason);
        assert_eq!(errors.severity, Some(Severity::Critical));
        assert_eq!(row(&verdict, Metric::LatencyP99).reason, "p99 canary 320 ms vs stable 250 ms: +28.0 % > 10.0 %");
        let insignificant = evaluate(&config, &both(version(10_000, 50, 250.0), version(100, 2, 250.0)));
        assert!(insignificant.summary().contains("not yet significant ("), "{}", insignificant.summary());
    }

    /// DOMAIN: 5 % canary at 10 % errors + 95 % stable at 0.1 % looks like
    /// 0.595 % overall — under the 1 pp limit — yet the canary is broken.
    #[test]
    fn aggregate_masks_a_broken_canary_but_per_version_does_not() {
        let (stable, canary) = (version(19_000, 19, 250.0), version(1_000, 100, 250.0));
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
    fn z_test_known_case() {
        // Stable 50/1000 vs canary 80/1000: pooled 6.5 %, z = 2.7211, Φ(z) = 0.99675.
        let confidence = stats::two_proportion_z(50, 1_000, 80, 1_000).unwrap();
        assert!((confidence - 0.996_746_7).abs() < 1e-6, "{confidence}");
        // Canary better: confidence it is worse is low.
        assert!(stats::two_proportion_z(80, 1_000, 50, 1_000).unwrap() < 0.01);
        assert_eq!(stats::two_proportion_z(0, 1_000, 0, 100), None);
    }

    #[test]
    fn fisher_exact_known_cases() {
        // Stable 0/1000, canary 3/100: P(X ≥ 3) = C(1000,97)/C(1100,100) = 7.309e-4.
        let confidence = stats::fisher_exact(0, 1_000, 3, 100);
        assert!((confidence - (1.0 - 7.309_178e-4)).abs() < 1e-8, "{confidence}");
        // Stable 3/1000, canary 2/100: P(X ≥ 2) = 0.068221 (lower-tail walk).
        let confidence = stats::fisher_exact(3, 1_000, 2, 100);
        assert!((confidence - (1.0 - 0.068_221_078)).abs() < 1e-8, "{confidence}");
        // No errors anywhere: no evidence at all.
        assert_eq!(stats::fisher_exact(0, 1_000, 0, 100), 0.0);
        // Small expected counts route to Fisher, large ones to z.
        assert_eq!(stats::error_rate_confidence((0, 1_000), (3, 100)), Some(stats::fisher_exact(0, 1_000, 3, 100)));
        assert_eq!(stats::error_rate_confidence((50, 1_000), (80, 1_000)), stats::two_proportion_z(50, 1_000, 80, 1_000));
        assert_eq!(stats::error_rate_confidence((0, 0), (3, 100)), None);
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
            VersionWindow { requests: 10_000, errors: 10, p50_ms: q(0.5), p95_ms: q(0.95), p99_ms: q(0.99), latency_samples_ms: samples }
        };
        let pass = evaluate(&config, &both(window(stable_samples.clone()), window(alike)));
        assert_eq!(pass.label(), "pass", "{}", pass.summary());
        let fail = evaluate(&config, &both(window(stable_samples), window(slower)));
        assert_eq!(fail.label(), "fail", "{}", fail.summary());
        assert_eq!(failing(&fail), [Metric::LatencyP99]);
        assert!(row(&fail, Metric::LatencyP99).confidence.unwrap() > 0.999);
    }
}
