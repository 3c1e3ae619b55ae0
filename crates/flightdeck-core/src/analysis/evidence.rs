//! The evidence of one rollout, window after window, and the verdict it
//! supports.
//!
//! Stable's windows build a *baseline* over the whole rollout (kept when
//! stable takes no traffic: the 100 % stage, a blue-green verification
//! window). The canary's windows build up over the current *stage*.
//!
//! Tests that can **fail** a canary run over the whole rollout and share the
//! plan's `alpha` between them, so the chance of rolling back a healthy
//! canary, over the whole rollout and however many windows it takes, is at
//! most `alpha`. Tests that **pass** a stage start again at each stage (the
//! canary may behave differently at a higher weight) and each needs
//! `confidence`. Absolute ceilings (error rate, p99) always run, whatever the
//! sample size and whether or not stable has traffic.

use super::confidence::{self, Difference, Tally};
use super::sequential::{Claim, SequentialTest};
use super::{stats, Check, CheckOutcome, DecisionEstimate, DeltaUnit, LatencyHistogram, Metric, MetricsSample};
use super::{LatencyBounds, Severity, Verdict, VersionWindow};
use crate::plan::AnalysisConfig;
use serde::{Deserialize, Serialize};

/// DOMAIN: "p95 latency > 2× stable → roll back", i.e. an increase over 100 %.
const P95_MAX_INCREASE_PCT: f64 = 100.0;
/// Floor for the stable error rate when computing the canary/stable ratio
/// that picks a severity: below 0.1 % (a 99.9 % SLO's whole budget) stable
/// counts as clean, so a few canary errors are not an infinite ratio.
const STABLE_ERROR_FLOOR_PCT: f64 = 0.1;
/// Stable's baseline enters the fail tests through an anytime-valid bound,
/// not a point, so stable's own noise never passes for a canary
/// regression: a margin test's share of α (and of β) goes this much to the
/// canary's test, the rest to stable's bound (a union bound: the test errs
/// only if one of the two does). Stable has 10–100× the canary's traffic,
/// so its bound is narrow at a small share.
const CANARY_SIDE: f64 = 0.8;
/// The pass tests take a milder bound (z = 1): a false pass costs one more
/// stage of exposure with the fail tests still running, and a strict bound
/// on a young baseline would hold healthy canaries for many windows.
const PASS_BASELINE_Z: f64 = 1.0;

/// The tests that can decide a canary's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Canary error rate above stable's plus `max_error_increase_pp`.
    ErrorMargin,
    /// Canary error rate above `max_error_rate_pct`, whatever stable does.
    ErrorCeiling,
    /// Canary p95 above 2 × stable's.
    P95Margin,
    /// Canary p99 above stable's plus `max_p99_increase_pct`.
    P99Margin,
    /// Canary p99 above `max_p99_ms`.
    P99Ceiling,
}

impl Rule {
    const ALL: [Rule; 5] = [Rule::ErrorMargin, Rule::ErrorCeiling, Rule::P95Margin, Rule::P99Margin, Rule::P99Ceiling];
    /// Rules a stage must pass; ceilings only ever fail.
    const PASSING: [Rule; 3] = [Rule::ErrorMargin, Rule::P95Margin, Rule::P99Margin];

    /// This rule's share of `alpha`. Shares add up to 1 (a union bound).
    /// The two margins that catch most bad canaries share almost all of it;
    /// ceilings guard against the blatant, which needs little evidence.
    fn alpha_share(self) -> f64 {
        match self {
            Rule::ErrorMargin => 0.55,
            Rule::P99Margin => 0.4,
            Rule::P95Margin => 0.03,
            Rule::ErrorCeiling | Rule::P99Ceiling => 0.01,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn pass_index(self) -> Option<usize> {
        Rule::PASSING.iter().position(|r| *r == self)
    }

    /// The latency margins, whose counts get a design effect.
    fn slow_index(self) -> Option<usize> {
        match self {
            Rule::P95Margin => Some(0),
            Rule::P99Margin => Some(1),
            _ => None,
        }
    }
}

/// What one version served over several windows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub windows: u64,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    /// Latency of every request, for sources with histograms or samples;
    /// for a source with coarse buckets, the low bound (see
    /// [`LatencyBounds`]).
    pub latency: LatencyHistogram,
    /// The high bound, once any window came in coarse buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_high: Option<LatencyHistogram>,
    /// Σ reported quantile × requests (p50, p95, p99), for sources that
    /// report quantiles only, and the requests they cover.
    quantile_sums: [f64; 3],
    quantile_requests: [f64; 3],
}

impl Totals {
    fn add(&mut self, w: &VersionWindow, seconds: f64, latency: &LatencyBounds) {
        self.windows += 1;
        self.seconds += seconds.max(0.0);
        self.requests = self.requests.saturating_add(w.requests);
        self.errors = self.errors.saturating_add(w.errors.min(w.requests));
        if self.latency_high.is_none() && latency.high.is_some() {
            // The first bucketed window: exact windows so far bound themselves.
            self.latency_high = Some(self.latency.clone());
        }
        self.latency.merge(&latency.low);
        if let Some(high) = &mut self.latency_high {
            high.merge(latency.side(false));
        }
        for (i, q) in [w.p50_ms, w.p95_ms, w.p99_ms].into_iter().enumerate() {
            if let Some(v) = usable(q) {
                self.quantile_sums[i] += v * w.requests as f64;
                self.quantile_requests[i] += w.requests as f64;
            }
        }
    }

    fn counts(&self) -> (u64, u64) {
        (self.errors, self.requests)
    }

    fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The latency histogram a test may use: the low bound (`slow`, for
    /// evidence of a regression) or the high one (evidence of health).
    fn latency_side(&self, slow: bool) -> &LatencyHistogram {
        if slow {
            &self.latency
        } else {
            self.latency_high.as_ref().unwrap_or(&self.latency)
        }
    }

    /// The `q` quantile (0.5, 0.95 or 0.99), ms, from the low (`slow`) or
    /// high latency bound; `shift` moves the rank by that many standard
    /// errors (a cautious bound) when a histogram exists.
    fn quantile(&self, q: f64, shift: f64, slow: bool) -> Option<f64> {
        let histogram = self.latency_side(slow);
        let n = histogram.total();
        if n > 0 {
            let rank = q + shift * (q * (1.0 - q) / n as f64).sqrt();
            return histogram.quantile(rank.clamp(0.0, 1.0));
        }
        let i = [0.5, 0.95, 0.99].iter().position(|x| *x == q)?;
        (self.quantile_requests[i] > 0.0).then(|| self.quantile_sums[i] / self.quantile_requests[i])
    }

    /// An anytime-valid upper bound of the `q` quantile at level `alpha`,
    /// ms, from the high latency bound: the smallest order statistic below
    /// which so many requests lie that the share at or below the true
    /// quantile (at most `q`) is ruled out ([`confidence`]'s bound on a
    /// rate, valid at every window at once). `None` before enough requests,
    /// or for a source with quantiles only (then its reported quantile).
    fn quantile_upper(&self, q: f64, alpha: f64) -> Option<f64> {
        let histogram = self.latency_side(false);
        let n = histogram.total();
        if n == 0 {
            return self.quantile(q, 0.0, false);
        }
        let level = (1.0 / alpha.clamp(1e-12, 0.5)).ln();
        let proven = |k: u64| confidence::log_evidence(true, k as f64, n as f64, q) >= level;
        if !proven(n) {
            return None;
        }
        // The fewest requests at or below a value that rule a share ≤ q out.
        let (mut lo, mut hi) = ((q * n as f64).floor() as u64, n);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if proven(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        histogram.quantile(hi as f64 / n as f64)
    }

    /// The quantile to show: exact, or for bucketed latencies the middle
    /// (geometric) of what the two bounds allow.
    fn shown_quantile(&self, q: f64) -> Option<f64> {
        let low = self.quantile(q, 0.0, true)?;
        match self.latency_high.is_some().then(|| self.quantile(q, 0.0, false)).flatten() {
            Some(high) => Some((low.max(1e-9) * high).sqrt()),
            None => Some(low),
        }
    }

    fn per_second(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.requests as f64 / self.seconds)
    }
}

/// A NaN, infinite or negative quantile counts as not reported.
fn usable(q: Option<f64>) -> Option<f64> {
    q.filter(|v| v.is_finite() && *v >= 0.0)
}

/// Stable in the window being judged: a stable that clearly shifted in this
/// very window (an incident hitting both versions) raises the fail limits
/// with it, so a shared outage is never blamed on the canary.
struct StableNow<'a> {
    counts: (u64, u64),
    latency: &'a LatencyBounds,
}

/// z for "stable clearly shifted in this window" (one-sided 97.7 %).
const SHIFT_Z: f64 = 2.0;

/// One window's input to one test: `hits` of `trials` against `limit`.
struct Counts {
    hits: f64,
    trials: f64,
    limit: f64,
    prior: f64,
}

/// A rollout's accumulated evidence; see the module docs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Stable over the whole rollout.
    pub baseline: Totals,
    /// Canary over the current stage.
    pub canary: Totals,
    /// Fail tests by [`Rule`], over the whole rollout.
    fail: [SequentialTest; 5],
    /// Pass tests by [`Rule::PASSING`], over the current stage.
    pass: [SequentialTest; 3],
    /// Error counts for the error-margin confidence sequences.
    #[serde(default)]
    errors: ErrorTallies,
    /// The latency margins' fail side: the canary's requests slower than
    /// the threshold, window by window over the rollout (p95, p99).
    #[serde(default)]
    slow: [Tally; 2],
}

/// Error counts per version: stable and the canary over the rollout (the
/// fail side), the canary over the stage (the pass side), and stable's
/// cautiously low rate in the latest window (a shared incident raises the
/// fail limit with it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct ErrorTallies {
    stable: Tally,
    canary: Tally,
    stage: Tally,
    stable_now: f64,
}

/// The verdict on one window alone, as a fresh rollout would reach it.
pub fn evaluate(config: &AnalysisConfig, sample: &MetricsSample) -> Verdict {
    Evidence::default().observe(config, sample)
}

impl Evidence {
    /// Folds in one window and returns the verdict the evidence now supports.
    pub fn observe(&mut self, config: &AnalysisConfig, sample: &MetricsSample) -> Verdict {
        let Some(canary) = &sample.canary else {
            return self.missing_metrics(config, sample);
        };
        let seconds = sample.window.as_secs_f64();
        let no_stable = VersionWindow::default();
        let stable = sample.stable.as_ref().unwrap_or(&no_stable);
        let (stable_latency, canary_latency) = (stable.latency_bounds(), canary.latency_bounds());
        if stable.requests > 0 || !stable_latency.is_empty() {
            self.baseline.add(stable, seconds, &stable_latency);
        }
        let now = StableNow { counts: (stable.errors.min(stable.requests), stable.requests), latency: &stable_latency };
        // The error ceiling's counts are divided by the design effect seen
        // so far (the windows before this one), as the margin's are.
        let phi = Some(self.canary_dispersion()).filter(|p| p.is_finite()).unwrap_or(1.0);
        self.errors.stable.add(stable.errors, stable.requests);
        self.errors.canary.add(canary.errors, canary.requests);
        self.errors.stage.add(canary.errors, canary.requests);
        self.errors.stable_now = stats::wilson_lower(now.counts, stats::normal_cdf(SHIFT_Z));
        for rule in Rule::ALL.into_iter().filter(|r| *r != Rule::ErrorMargin) {
            if let Some(c) = self.window_counts(config, rule, Claim::Above, &now, canary, &canary_latency) {
                if rule.slow_index().is_some() {
                    self.observe_slow(rule, c);
                    continue;
                }
                let scale = if rule == Rule::ErrorCeiling { phi } else { 1.0 };
                self.fail[rule.index()].observe(Claim::Above, c.hits / scale, c.trials / scale, c.limit, c.prior);
            }
        }
        for rule in Rule::PASSING.into_iter().filter(|r| *r != Rule::ErrorMargin) {
            if let (Some(c), Some(i)) =
                (self.window_counts(config, rule, Claim::Below, &now, canary, &canary_latency), rule.pass_index())
            {
                // Health is judged on as few effective requests as bursts
                // leave (no verdict passes before the error margin's third
                // window anyway, so young windows count as binomial).
                let phi = rule.slow_index().map_or(1.0, |j| self.slow[j].dispersion());
                let phi = if phi.is_finite() { phi } else { 1.0 };
                self.pass[i].observe(Claim::Below, c.hits / phi, c.trials / phi, c.limit, c.prior);
            }
        }
        self.canary.add(canary, seconds, &canary_latency);
        let verdict = self.verdict(config);
        // Without stable's window only a proven fail (ceilings, or margins
        // against the baseline) is news; otherwise the window is missing.
        if sample.stable.is_none() && verdict.label() != "fail" {
            return self.missing_metrics(config, sample);
        }
        verdict
    }

    /// A latency margin's fail side counts the canary's requests slower
    /// than the threshold, which is at least 1.1 × stable's true p99 (or 2 ×
    /// its p95) wherever stable's bound holds: a canary within the margin
    /// then has at most 1 % (5 %) of each window's requests counted, however
    /// the threshold moves. It is decided as the error margin is, on the
    /// anytime-valid bound of those counts divided by the windows' design
    /// effect (windows as the units: a slow dependency or a slow pod moves a
    /// whole window), recomputed from all the windows at every window, so an
    /// early underestimate of the effect is not kept for good.
    fn observe_slow(&mut self, rule: Rule, c: Counts) {
        if let Some(i) = rule.slow_index() {
            self.slow[i].add_counts(c.hits, c.trials);
        }
    }

    /// A latency margin's effective (slower, measured) requests.
    fn slow_effective(&self, rule: Rule) -> Option<(f64, f64)> {
        let tally = &self.slow[rule.slow_index()?];
        Some(tally.effective(tally.dispersion()))
    }

    /// A new stage: the canary's stage totals and the pass tests start over;
    /// the fail tests keep their evidence (α covers the whole rollout) but
    /// re-estimate the canary's rate from fresh data faster.
    pub fn new_stage(&mut self) {
        self.canary = Totals::default();
        self.pass = Default::default();
        self.errors.stage = Tally::default();
        for test in &mut self.fail {
            test.new_estimate();
        }
    }

    /// No checks at all: `Verdict::is_missing_metrics` relies on the empty list.
    fn missing_metrics(&self, config: &AnalysisConfig, sample: &MetricsSample) -> Verdict {
        let fallback = if sample.stable.is_none() { "no stable metrics" } else { "no canary metrics" };
        let reason = sample.missing.clone().filter(|m| !m.trim().is_empty()).unwrap_or_else(|| fallback.to_string());
        Verdict::Inconclusive {
            requests: self.canary.requests,
            needed: config.min_requests,
            reason,
            checks: vec![],
            estimate: None,
        }
    }

    /// The latency threshold a rule compares canary requests with, ms.
    /// `claim` picks the cautious side of stable's quantile.
    fn latency_threshold(&self, config: &AnalysisConfig, rule: Rule, claim: Claim, now: &StableNow) -> Option<f64> {
        let (q, increase) = match rule {
            Rule::P95Margin => (0.95, P95_MAX_INCREASE_PCT),
            Rule::P99Margin => (0.99, config.max_p99_increase_pct),
            Rule::P99Ceiling => return Some(config.max_p99_ms),
            Rule::ErrorMargin | Rule::ErrorCeiling => return None,
        };
        let stable = match claim {
            Claim::Above => {
                // Stable's high bound: a regression is measured from the
                // slowest stable the evidence allows, valid at every window
                // (its share of the rule's α; the canary's test has the rest).
                let alpha = config.alpha * rule.alpha_share() * (1.0 - CANARY_SIDE);
                let baseline = self.baseline.quantile_upper(q, alpha)?;
                // Stable's own quantile this window, cautiously low: above the
                // baseline only when stable clearly got slower right now.
                let latency = now.latency.side(false);
                let n = latency.total() as f64;
                let window = (n > 0.0)
                    .then(|| latency.quantile((q - SHIFT_Z * (q * (1.0 - q) / n).sqrt()).clamp(0.0, 1.0)))
                    .flatten();
                window.map_or(baseline, |w| baseline.max(w))
            }
            // Health is measured from the fastest stable the evidence allows.
            Claim::Below => self.baseline.quantile(q, -PASS_BASELINE_Z, true)?,
        };
        Some(stable * (1.0 + increase / 100.0))
    }

    /// The rate limit a rule tests, as a proportion.
    fn limit(&self, config: &AnalysisConfig, rule: Rule, claim: Claim) -> Option<f64> {
        match rule {
            // Decided on its interval (`difference`); the limits its ends meet.
            Rule::ErrorMargin => match claim {
                Claim::Above => self.fail_limit(config),
                Claim::Below => self.pass_limit(config),
            },
            Rule::ErrorCeiling => Some(config.max_error_rate_pct / 100.0),
            // Canary p95 ≤ 2 × stable's p95 ⟺ at most 5 % of canary requests
            // are slower than that; likewise 1 % for p99.
            Rule::P95Margin => Some(0.05),
            Rule::P99Margin | Rule::P99Ceiling => Some(0.01),
        }
    }

    /// What this window tells `rule`: hits (errors, or requests slower than
    /// the threshold), trials, the limit and a prior guess of the rate.
    fn window_counts(
        &self,
        config: &AnalysisConfig,
        rule: Rule,
        claim: Claim,
        now: &StableNow,
        canary: &VersionWindow,
        latency: &LatencyBounds,
    ) -> Option<Counts> {
        let limit = self.limit(config, rule, claim)?;
        // The first window bets on a regression a margin (or the limit
        // again) past the limit (fail), or on the canary matching stable (pass).
        let margin = config.max_error_increase_pp / 100.0;
        let prior = match (rule, claim) {
            (Rule::ErrorMargin, Claim::Above) => (limit + 2.0 * margin).min(0.5),
            (_, Claim::Above) => (3.0 * limit).min(0.5),
            // Never above the limit, never zero (a clamp would panic if the
            // limit itself were below the floor).
            (Rule::ErrorMargin, Claim::Below) => self.baseline.error_rate().unwrap_or(0.0).min(0.9 * limit).max(1e-9),
            (_, Claim::Below) => limit / 2.0,
        };
        let (hits, trials) = match rule {
            Rule::ErrorMargin | Rule::ErrorCeiling => {
                (canary.errors.min(canary.requests) as f64, canary.requests as f64)
            }
            _ => {
                let threshold = self.latency_threshold(config, rule, claim, now)?;
                // A regression is counted on the low bound, health on the high one.
                slower_than(canary, latency.side(claim == Claim::Above), threshold, claim)?
            }
        };
        Some(Counts { hits, trials, limit, prior })
    }

    fn fail_proven(&self, config: &AnalysisConfig, rule: Rule) -> bool {
        if rule == Rule::ErrorMargin {
            return self.difference(config).is_some_and(|d| d.fails(config.max_error_increase_pp / 100.0));
        }
        if let (Some((x, n)), Some(limit)) = (self.slow_effective(rule), self.limit(config, rule, Claim::Above)) {
            return confidence::lower_bound(x, n, Self::fail_alpha(config, rule)) > limit;
        }
        self.fail[rule.index()].proven(Self::fail_alpha(config, rule))
    }

    /// The level a fail test proves its claim at: its share of α, less the
    /// part a latency margin spends on stable's quantile bound.
    fn fail_alpha(config: &AnalysisConfig, rule: Rule) -> f64 {
        let side = if matches!(rule, Rule::P95Margin | Rule::P99Margin) { CANARY_SIDE } else { 1.0 };
        config.alpha * rule.alpha_share() * side
    }

    fn fail_progress(&self, config: &AnalysisConfig, rule: Rule) -> f64 {
        if rule == Rule::ErrorMargin {
            // The canary's evidence against the highest rate within the margin.
            let Some(limit) = self.fail_limit(config) else { return 0.0 };
            let (x, n) = self.errors.canary.effective(self.canary_dispersion());
            let alpha = config.alpha * rule.alpha_share() * CANARY_SIDE;
            return (confidence::log_evidence(true, x, n, limit) / (1.0 / alpha).ln()).max(0.0);
        }
        if let (Some((x, n)), Some(limit)) = (self.slow_effective(rule), self.limit(config, rule, Claim::Above)) {
            let level = (1.0 / Self::fail_alpha(config, rule)).ln();
            return (confidence::log_evidence(true, x, n, limit) / level).max(0.0);
        }
        self.fail[rule.index()].progress(Self::fail_alpha(config, rule))
    }

    /// The canary's design effect: its own, never below stable's (a canary
    /// on few pods is no less bursty than stable on many).
    fn canary_dispersion(&self) -> f64 {
        self.errors.canary.dispersion().max(self.errors.stable.dispersion())
    }

    /// The highest canary rate within the margin as the fail test sees it:
    /// stable's upper bound (or this window's stable, if clearly higher)
    /// plus the margin. `None` without a baseline.
    fn fail_limit(&self, config: &AnalysisConfig) -> Option<f64> {
        let stable = &self.errors.stable;
        if stable.requests <= 0.0 {
            return None;
        }
        let alpha = config.alpha * Rule::ErrorMargin.alpha_share() * (1.0 - CANARY_SIDE);
        let (x, n) = stable.effective(stable.dispersion());
        let high = confidence::upper_bound(x, n, alpha).max(self.errors.stable_now);
        Some(high + config.max_error_increase_pp / 100.0)
    }

    /// The lowest canary rate the pass test must show it is below: stable's
    /// lower bound plus the margin.
    fn pass_limit(&self, config: &AnalysisConfig) -> Option<f64> {
        let stable = &self.errors.stable;
        if stable.requests <= 0.0 {
            return None;
        }
        let beta = Self::beta(config) * (1.0 - CANARY_SIDE);
        let (x, n) = stable.effective(stable.dispersion());
        Some(confidence::lower_bound(x, n, beta) + config.max_error_increase_pp / 100.0)
    }

    /// The anytime-valid interval for canary minus stable that the
    /// error-margin test decides on: the low end from the canary's whole
    /// rollout at the fail level, the high end from this stage at the pass
    /// level (see [`confidence`]). `None` until both versions have requests.
    fn difference(&self, config: &AnalysisConfig) -> Option<Difference> {
        let margin = config.max_error_increase_pp / 100.0;
        let (fail_limit, pass_limit) = (self.fail_limit(config)?, self.pass_limit(config)?);
        if self.errors.canary.requests <= 0.0 {
            return None;
        }
        let phi = self.canary_dispersion();
        let alpha = config.alpha * Rule::ErrorMargin.alpha_share() * CANARY_SIDE;
        let (x, n) = self.errors.canary.effective(phi);
        let low = confidence::lower_bound(x, n, alpha) - (fail_limit - margin);
        let (x, n) = self.errors.stage.effective(phi);
        let high = confidence::upper_bound(x, n, Self::beta(config) * CANARY_SIDE) - (pass_limit - margin);
        Some(Difference { low, high })
    }

    fn pass_test(&self, rule: Rule) -> Option<&SequentialTest> {
        rule.pass_index().map(|i| &self.pass[i])
    }

    fn beta(config: &AnalysisConfig) -> f64 {
        (1.0 - config.confidence).clamp(1e-9, 0.5)
    }

    fn pass_proven(&self, config: &AnalysisConfig, rule: Rule) -> bool {
        if rule == Rule::ErrorMargin {
            return self.difference(config).is_some_and(|d| d.passes(config.max_error_increase_pp / 100.0));
        }
        self.pass_test(rule).is_some_and(|t| t.proven(Self::beta(config)))
    }

    /// Why a latency margin cannot be shown within its limit by this
    /// source, if it cannot (`None` when it can, or when the row is proven
    /// either way):
    /// - the canary's source reports quantiles but no histogram, which can
    ///   show a regression (and fail) but never health;
    /// - its buckets are too coarse where stable's quantile lies: the bucket
    ///   spans more than the margin, so no count of requests can show the
    ///   canary within it.
    ///
    /// Such a row is "not judged" and the stage does not pass on it, unless
    /// the plan accepts the risk (`pass_unjudged_latency`).
    fn unjudged(&self, config: &AnalysisConfig, rule: Rule) -> Option<String> {
        let (q, margin) = match rule {
            Rule::P95Margin => (0.95, P95_MAX_INCREASE_PCT),
            Rule::P99Margin => (0.99, config.max_p99_increase_pct),
            _ => return None,
        };
        if self.pass_proven(config, rule) {
            return None;
        }
        if self.canary.latency.is_empty() && self.canary.quantile(q, 0.0, true).is_some() {
            return Some(
                "the source reports quantiles only, which can show a regression but never health; read its \
                 histogram buckets"
                    .into(),
            );
        }
        self.baseline.latency_high.as_ref()?;
        let (low, high) = (self.baseline.quantile(q, 0.0, true)?, self.baseline.quantile(q, 0.0, false)?);
        (high > low * (1.0 + margin / 100.0)).then(|| {
            format!(
                "the source's buckets are too coarse here (stable's p{} lies between {} and {}); a {margin:.0} % \
                 limit needs bucket edges closer than {margin:.0} % apart",
                (q * 100.0).round(),
                ms(low),
                ms(high)
            )
        })
    }

    /// An unjudged row the plan lets pass.
    fn pass_waived(&self, config: &AnalysisConfig, rule: Rule) -> bool {
        config.pass_unjudged_latency && self.unjudged(config, rule).is_some()
    }

    /// The verdict the evidence supports now.
    pub fn verdict(&self, config: &AnalysisConfig) -> Verdict {
        let checks = self.checks(config);
        let worst = checks.iter().filter(|c| c.outcome == CheckOutcome::Fail).filter_map(|c| c.severity).max();
        if let Some(severity) = worst {
            return Verdict::Fail { severity, checks };
        }
        let enough = self.canary.requests >= config.min_requests;
        if enough && Rule::PASSING.iter().all(|r| self.pass_proven(config, *r) || self.pass_waived(config, *r)) {
            return Verdict::Pass { checks };
        }
        let mut unsure: Vec<String> = checks
            .iter()
            .filter(|c| !c.is_informational() && c.outcome != CheckOutcome::Pass)
            .map(|c| c.reason.clone())
            .collect();
        if !enough {
            unsure.insert(
                0,
                format!("{} canary requests this stage, need {}", self.canary.requests, config.min_requests),
            );
        }
        Verdict::Inconclusive {
            requests: self.canary.requests,
            needed: config.min_requests,
            reason: unsure.join("; "),
            checks,
            estimate: Some(self.estimate(config)),
        }
    }

    /// Windows to a decision at this stage's canary traffic: the slowest of
    /// the pass tests still open, and the requests still missing.
    fn estimate(&self, config: &AnalysisConfig) -> DecisionEstimate {
        let windows = self.canary.windows.max(1) as f64;
        let canary_per_window = self.canary.requests as f64 / windows;
        let beta = Self::beta(config);
        let mut needed: Option<f64> = Some(0.0);
        for rule in Rule::PASSING.into_iter().filter(|r| !self.pass_proven(config, *r) && !self.pass_waived(config, *r))
        {
            if self.unjudged(config, rule).is_some() {
                // No amount of such data decides it: say so, not a number of windows.
                needed = None;
                break;
            }
            if rule == Rule::ErrorMargin {
                let per_window = self.errors.stage.requests / windows;
                needed = match (needed, self.error_trials_to_pass(config)) {
                    (Some(so_far), Some(trials)) if per_window > 0.0 => Some(so_far.max(trials / per_window)),
                    _ => None,
                };
                continue;
            }
            let (Some(test), Some(limit)) = (self.pass_test(rule), self.limit(config, rule, Claim::Below)) else {
                needed = None;
                break;
            };
            let per_window = test.trials / windows;
            needed = match (needed, test.trials_to_proof(Claim::Below, limit, beta)) {
                (Some(so_far), Some(trials)) if per_window > 0.0 => Some(so_far.max(trials / per_window)),
                _ => None,
            };
        }
        let missing_requests = config.min_requests.saturating_sub(self.canary.requests) as f64;
        let needed = needed.and_then(|w| {
            let for_requests = if missing_requests > 0.0 {
                (canary_per_window > 0.0).then(|| missing_requests / canary_per_window)?
            } else {
                0.0
            };
            Some(w.max(for_requests).ceil().min(1e9) as u64)
        });
        DecisionEstimate { canary_per_window, windows: needed }
    }

    /// The rows, in display order: stable's baseline against the stage's canary.
    fn checks(&self, config: &AnalysisConfig) -> Vec<Check> {
        let mut rows = vec![self.request_row(), self.error_row(config)];
        rows.push(self.latency_row(config, Metric::LatencyP50, 0.5, None, &[]));
        rows.push(self.latency_row(config, Metric::LatencyP95, 0.95, Some(P95_MAX_INCREASE_PCT), &[Rule::P95Margin]));
        rows.push(self.latency_row(
            config,
            Metric::LatencyP99,
            0.99,
            Some(config.max_p99_increase_pct),
            &[Rule::P99Margin, Rule::P99Ceiling],
        ));
        rows
    }

    fn request_row(&self) -> Check {
        let (s, c) = (self.baseline.per_second(), self.canary.per_second());
        let reason = match (s, c) {
            (Some(s), Some(c)) => format!("requests stable {s:.1}/s, canary {c:.1}/s"),
            _ => format!("requests stable {}, canary {}", self.baseline.requests, self.canary.requests),
        };
        Check {
            delta: s.zip(c).map(|(s, c)| c - s),
            outcome: CheckOutcome::Pass,
            reason,
            ..row(Metric::Requests, DeltaUnit::PerSecond, None, s, c, self.canary.requests)
        }
    }

    fn error_row(&self, config: &AnalysisConfig) -> Check {
        let pct = |t: &Totals| t.error_rate().map(|r| r * 100.0);
        let (s, c) = (pct(&self.baseline), pct(&self.canary));
        let threshold = config.max_error_increase_pp;
        let mut check = row(Metric::ErrorRate, DeltaUnit::Pp, Some(threshold), s, c, self.canary.requests);
        check.delta = s.zip(c).map(|(s, c)| c - s);
        check.interval = self.error_interval(config);
        check.toward_fail =
            Some(self.fail_progress(config, Rule::ErrorMargin).max(self.fail_progress(config, Rule::ErrorCeiling)));
        check.toward_pass = self.error_pass_progress(config);
        let shown = match (s, c, check.delta) {
            (Some(s), Some(c), Some(d)) => {
                format!("error rate canary {c:.2} % vs stable {s:.2} % ({d:+.2} pp, limit {threshold:.2} pp)")
            }
            (None, Some(c), _) => format!("error rate canary {c:.2} % (no stable baseline yet)"),
            _ => format!("error rate unknown: no requests from {}", absent(s, c)),
        };
        let ceiling = config.max_error_rate_pct;
        let cautious = stats::wilson_lower(self.canary.counts(), 0.95) * 100.0;
        let severity = error_severity(s.unwrap_or(0.0), cautious);
        if self.fail_proven(config, Rule::ErrorCeiling) {
            return judged_fail(
                check,
                severity.max(Severity::High),
                format!("{shown}: above the {ceiling:.2} % ceiling"),
            );
        }
        if self.fail_proven(config, Rule::ErrorMargin) {
            return judged_fail(check, severity, format!("{shown}: worse than the limit"));
        }
        self.judge_open(config, check, &shown, Rule::ErrorMargin)
    }

    /// A row no fail test has proven: pass when its pass test has (and the
    /// stage has enough requests), otherwise inconclusive with how far along.
    fn judge_open(&self, config: &AnalysisConfig, mut check: Check, shown: &str, rule: Rule) -> Check {
        let progress = check.toward_pass.unwrap_or(0.0);
        let enough = self.canary.requests >= config.min_requests;
        let unjudged = self.unjudged(config, rule);
        if let (Some(why), true) = (&unjudged, config.pass_unjudged_latency) {
            check.outcome = CheckOutcome::Pass;
            check.toward_pass = None;
            check.reason = format!("{shown}: not judged ({why}); passed because the plan sets pass_unjudged_latency");
        } else if let Some(why) = unjudged {
            check.toward_pass = None;
            check.reason =
                format!("{shown}: not judged: {why}, or set analysis.pass_unjudged_latency = true to accept the risk");
        } else if self.pass_proven(config, rule) && enough {
            check.outcome = CheckOutcome::Pass;
            check.reason = format!("{shown}: within the limit, shown on {} requests", check.sample);
        } else if self.pass_proven(config, rule) {
            check.reason = format!("{shown}: within the limit so far; a pass needs {} requests", config.min_requests);
        } else if check.canary.is_none() || check.stable.is_none() {
            check.reason = shown.to_string();
        } else if let (Rule::ErrorMargin, None) = (rule, check.interval) {
            check.reason = format!("{shown}: undecided: {}", self.young_errors_reason());
        } else if let (Rule::ErrorMargin, Some((lo, hi)), Some(limit)) = (rule, check.interval, check.threshold) {
            check.reason = format!(
                "{shown}: undecided: canary minus stable is between {lo:+.2} and {hi:+.2} pp; it passes once the \
                 upper end is below {limit:+.2} pp and fails once the lower end is above it"
            );
        } else {
            check.reason = format!(
                "{shown}: undecided ({:.0} % of the evidence to pass, {:.0} % to fail)",
                (progress * 100.0).min(99.0),
                (check.toward_fail.unwrap_or(0.0) * 100.0).min(99.0)
            );
        }
        check
    }

    fn latency_row(
        &self,
        config: &AnalysisConfig,
        metric: Metric,
        q: f64,
        limit: Option<f64>,
        rules: &[Rule],
    ) -> Check {
        let name = metric.label();
        let (s, c) = (self.baseline.shown_quantile(q), self.canary.shown_quantile(q));
        let mut check = row(metric, DeltaUnit::Percent, limit, s, c, self.canary.requests);
        check.delta = s.zip(c).filter(|(s, _)| *s > 0.0).map(|(s, c)| (c - s) / s * 100.0);
        let shown = match (s, c, check.delta, limit) {
            (Some(s), Some(c), Some(d), Some(l)) => {
                format!("{name} canary {} vs stable {} ({d:+.1} %, limit {l:.0} %)", ms(c), ms(s))
            }
            (Some(s), Some(c), _, _) => format!("{name} canary {} vs stable {}", ms(c), ms(s)),
            (None, Some(c), _, _) => format!("{name} canary {} (no stable baseline yet)", ms(c)),
            _ => format!("{name} not reported by {}", absent(s, c)),
        };
        if rules.is_empty() {
            return Check { outcome: CheckOutcome::Pass, reason: shown, ..check };
        }
        check.toward_fail = Some(rules.iter().map(|r| self.fail_progress(config, *r)).fold(0.0, f64::max));
        check.toward_pass = rules.iter().find_map(|r| self.pass_test(*r)).map(|t| t.progress(Self::beta(config)));
        let severity = latency_severity(metric, check.delta.unwrap_or(0.0));
        if rules.contains(&Rule::P99Ceiling) && self.fail_proven(config, Rule::P99Ceiling) {
            let reason = format!("{shown}: above the {} ceiling", ms(config.max_p99_ms));
            return judged_fail(check, severity.max(Severity::High), reason);
        }
        if rules.iter().any(|r| r.pass_index().is_some() && self.fail_proven(config, *r)) {
            return judged_fail(check, severity, format!("{shown}: worse than the limit"));
        }
        let rule = rules.iter().copied().find(|r| r.pass_index().is_some()).unwrap_or(Rule::P99Margin);
        self.judge_open(config, check, &shown, rule)
    }

    /// Share of the evidence the error-margin pass needs: the stage's
    /// evidence that the canary is below the pass limit, over the level.
    fn error_pass_progress(&self, config: &AnalysisConfig) -> Option<f64> {
        let limit = self.pass_limit(config)?;
        let (x, n) = self.errors.stage.effective(self.canary_dispersion());
        let level = (1.0 / (Self::beta(config) * CANARY_SIDE)).ln();
        Some((confidence::log_evidence(false, x, n, limit) / level).max(0.0))
    }

    /// Canary requests still needed this stage for the error-margin pass if
    /// its rate stays where it is: the evidence still missing over what each
    /// (effective) request adds, the divergence of its rate from the limit.
    /// `None` when it sits at or above the limit.
    fn error_trials_to_pass(&self, config: &AnalysisConfig) -> Option<f64> {
        let limit = self.pass_limit(config)?;
        // Before the design effect can be seen, estimate as if binomial.
        let phi = Some(self.canary_dispersion()).filter(|p| p.is_finite()).unwrap_or(1.0);
        let stage = &self.errors.stage;
        let rate = stage.rate()?;
        let per_trial = stats::bernoulli_kl(rate, limit) / phi;
        if rate >= limit || per_trial <= 1e-12 {
            return None;
        }
        let level = (1.0 / (Self::beta(config) * CANARY_SIDE)).ln();
        let (x, n) = stage.effective(phi);
        let missing = (level - confidence::log_evidence(false, x, n, limit)).max(0.0);
        Some(missing / per_trial)
    }

    /// The error-margin test's interval, pp (see [`Evidence::difference`]);
    /// `None` while it cannot bound anything yet (every difference from
    /// −100 to +100 pp allowed), which no captain can act on.
    fn error_interval(&self, config: &AnalysisConfig) -> Option<(f64, f64)> {
        let d = self.difference(config)?;
        let (_, effective) = self.errors.canary.effective(self.canary_dispersion());
        (effective > 0.0).then_some((d.low * 100.0, d.high * 100.0))
    }

    /// Why the error margin has no interval yet, in words a captain can act on.
    fn young_errors_reason(&self) -> String {
        let windows = self.errors.canary.windows.min(self.errors.stable.windows);
        if windows < confidence::MIN_WINDOWS {
            let left = confidence::MIN_WINDOWS - windows;
            format!(
                "not enough windows yet to bound the difference: errors can come in bursts, which show only \
                 across windows; judged from window {}, {left} window{} from now",
                confidence::MIN_WINDOWS,
                if left == 1 { "" } else { "s" }
            )
        } else {
            "not enough requests yet to bound the difference; more canary traffic decides it sooner".into()
        }
    }
}

/// Requests of a canary window slower than `threshold` ms, and how many were
/// measured, from the histogram when there is one. A source with quantiles
/// only says no more than "at least 1 % were slower" (its p99 is above the
/// threshold) or 5 % (its p95 is): a lower bound, which is evidence for a
/// regression (fail) but never for health (pass). `None` when there is
/// nothing to count.
fn slower_than(canary: &VersionWindow, latency: &LatencyHistogram, threshold: f64, claim: Claim) -> Option<(f64, f64)> {
    if !latency.is_empty() {
        return Some((latency.count_above(threshold), latency.total() as f64));
    }
    if claim == Claim::Below || canary.requests == 0 {
        return None;
    }
    let at_least = [(canary.p50_ms, 0.5), (canary.p95_ms, 0.05), (canary.p99_ms, 0.01)]
        .into_iter()
        .find(|(q, _)| usable(*q).is_some_and(|v| v > threshold))
        .map_or(0.0, |(_, share)| share);
    Some((at_least * canary.requests as f64, canary.requests as f64))
}

fn row(
    metric: Metric,
    unit: DeltaUnit,
    threshold: Option<f64>,
    stable: Option<f64>,
    canary: Option<f64>,
    sample: u64,
) -> Check {
    Check {
        metric,
        stable,
        canary,
        delta: None,
        threshold,
        unit,
        interval: None,
        toward_fail: None,
        toward_pass: None,
        sample,
        outcome: CheckOutcome::Inconclusive,
        severity: None,
        reason: String::new(),
    }
}

fn judged_fail(check: Check, severity: Severity, reason: String) -> Check {
    let reason = format!("{reason}, shown on {} requests", check.sample);
    Check { outcome: CheckOutcome::Fail, severity: Some(severity), reason, ..check }
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
/// cautious rate (a lower confidence bound), so a failure is Critical only
/// when even that is 5× stable. A failing error row is at least Medium.
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

/// Milliseconds, with a decimal only where it matters ("0.4 ms", "320 ms").
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}
