//! Canary analysis: canary against stable, per version, never the aggregate.
//!
//! A window of metrics is a sample, not a verdict. [`Evidence`] accumulates
//! the windows of a rollout (stable's baseline) and of the current stage
//! (the canary) and decides with anytime-valid sequential tests
//! ([`sequential`]): *fail* once the evidence shows the canary worse than
//! stable by more than the plan's margin (or above an absolute ceiling),
//! *pass* once it shows the canary is not, *inconclusive* until then — and
//! with too few requests or missing metrics, never pass. Looking every window
//! costs nothing: over a whole rollout the chance of failing a healthy canary
//! is at most the plan's `alpha`.

pub mod confidence;
mod evidence;
pub mod histogram;
pub mod sequential;
pub mod stats;

pub use evidence::{evaluate, Evidence};
pub use histogram::{BucketCounts, LatencyHistogram};

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
    /// Raw latency samples when the source has them (access logs). May be
    /// empty; the analysis folds them into a histogram.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_samples_ms: Vec<f64>,
    /// Latency histogram of every request when the source has one: the
    /// evidence latency tests need, in a few hundred counts.
    #[serde(default, skip_serializing_if = "LatencyHistogram::is_empty")]
    pub latency: LatencyHistogram,
    /// The source's own histogram buckets (Prometheus `_bucket` series),
    /// when it keeps latency in buckets of its choosing rather than ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Boxed: most sources have none, and a window travels in every event.
    pub buckets: Option<Box<BucketCounts>>,
}

impl VersionWindow {
    /// The window's latency histogram: the source's, or one built from raw samples.
    pub fn histogram(&self) -> std::borrow::Cow<'_, LatencyHistogram> {
        if self.latency.is_empty() && !self.latency_samples_ms.is_empty() {
            std::borrow::Cow::Owned(LatencyHistogram::from_samples(&self.latency_samples_ms))
        } else {
            std::borrow::Cow::Borrowed(&self.latency)
        }
    }

    /// The window's latency as two histograms bounding the truth (see
    /// [`BucketCounts::bounds`]): the same one twice for a source with
    /// exact latencies, the two bounds for one with coarse buckets.
    pub fn latency_bounds(&self) -> LatencyBounds {
        let exact = self.histogram();
        if exact.is_empty() {
            if let Some((low, high)) = self.buckets.as_deref().and_then(BucketCounts::bounds) {
                return LatencyBounds { low, high: Some(high) };
            }
        }
        LatencyBounds { low: exact.into_owned(), high: None }
    }
}

/// Latency bounds of one window: `low` never shows more slow requests than
/// there were, `high` never fewer; `high` is `None` when both are the same
/// (exact latencies).
#[derive(Debug, Clone, Default)]
pub struct LatencyBounds {
    pub low: LatencyHistogram,
    pub high: Option<LatencyHistogram>,
}

impl LatencyBounds {
    /// The side a test may use: `slow` for evidence of a regression (the
    /// low bound), otherwise evidence of health (the high bound).
    pub fn side(&self, slow: bool) -> &LatencyHistogram {
        if slow {
            &self.low
        } else {
            self.high.as_ref().unwrap_or(&self.low)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.low.is_empty()
    }
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
    /// Anytime-valid interval for `delta` (error rate), same unit: the
    /// error-margin test's dual (fail exactly when the low end is past the
    /// limit, pass exactly when the high end is inside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<(f64, f64)>,
    /// Share of the evidence needed to fail this row (1 = proven worse than
    /// the limit); `None` when no test runs on this row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toward_fail: Option<f64>,
    /// Share of the evidence needed to pass this row (1 = proven within it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toward_pass: Option<f64>,
    /// Canary requests this stage the row is decided on.
    #[serde(default)]
    pub sample: u64,
    pub outcome: CheckOutcome,
    /// Severity when failing.
    pub severity: Option<Severity>,
    /// Why, in words ("error rate canary 5.60 % vs stable 0.50 % (+5.10 pp,
    /// limit 1.00 pp): worse than the limit, proven on 412 requests").
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

/// How long a decision should take at the current traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecisionEstimate {
    /// Canary requests per window this stage, on average.
    pub canary_per_window: f64,
    /// Windows still needed if traffic and rates stay as they are; `None`
    /// when the data point to no decision at all (the canary sits on a limit).
    pub windows: Option<u64>,
}

/// The stage's verdict after the latest window.
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
    /// metrics, or evidence still gathering. Never a pass.
    Inconclusive {
        /// Canary requests this stage.
        requests: u64,
        /// Canary requests a stage needs before it can pass.
        needed: u64,
        reason: String,
        checks: Vec<Check>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimate: Option<DecisionEstimate>,
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

    /// The time-to-decision estimate of an inconclusive verdict, in words:
    /// "canary gets ~44 req per window; a decision needs ~6 more windows".
    pub fn estimate_text(&self) -> Option<String> {
        let Verdict::Inconclusive { estimate: Some(e), .. } = self else { return None };
        if e.canary_per_window < 0.5 {
            return Some("the canary gets no requests: no decision without traffic".to_string());
        }
        let rate = format!("canary gets ~{:.0} req per window", e.canary_per_window);
        Some(match e.windows {
            Some(0) => format!("{rate}; a decision is due next window"),
            Some(w) if w <= 10_000 => format!("{rate}; a decision needs ~{w} more windows"),
            Some(_) => format!("{rate}; not at this traffic: raise the canary's share or the bake"),
            None => format!(
                "{rate}; no decision in sight at this rate (the canary sits near a limit, or a metric is missing)"
            ),
        })
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
