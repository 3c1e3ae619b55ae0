//! The policies flightdeck is compared with. Each looks at one window at a
//! time on the fixed schedule (every stage advances when its bake ends) and
//! says when it rolls back.

use super::grid::{Metric, Scenario, ERROR_MARGIN};
use super::traffic::{Window, STABLE_ERROR_RATE, STABLE_P99_MS};
use std::time::Duration;

/// A policy that judges window after window.
pub trait Judge {
    /// Folds in one window (the canary at `weight` %). `Some(delay)`: the
    /// rollback effect comes `delay` after the window's end.
    fn judge(&mut self, window: &Window, weight: u8) -> Option<Duration>;
}

/// The information limit: Wald's SPRT of the regressed metric, told both
/// true rates (H0: the margin's limit, H1: the canary's real rate). Rolls
/// back when the log-likelihood ratio reaches ln(1/α).
pub struct Oracle {
    metric: Metric,
    p0: f64,
    p1: f64,
    llr: f64,
    bound: f64,
}

pub const ORACLE_ALPHA: f64 = 0.01;

impl Oracle {
    /// `None` unless the scenario is past a margin (then H1 ≠ H0).
    pub fn new(scenario: &Scenario) -> Option<Oracle> {
        let (p0, p1) = scenario.true_rates()?;
        let metric = scenario.regressed?;
        (p1 > p0 + 1e-9).then(|| Oracle { metric, p0, p1, llr: 0.0, bound: (1.0 / ORACLE_ALPHA).ln() })
    }
}

impl Judge for Oracle {
    fn judge(&mut self, w: &Window, _weight: u8) -> Option<Duration> {
        let n = w.canary.requests as f64;
        let x = match self.metric {
            Metric::Errors => w.canary.errors,
            Metric::Latency => w.canary.slow,
        } as f64;
        self.llr += x * (self.p1 / self.p0).ln() + (n - x) * ((1.0 - self.p1) / (1.0 - self.p0)).ln();
        (self.llr >= self.bound).then_some(Duration::ZERO)
    }
}

/// Flagger's scheduler (pkg/controller/scheduler.go): one check per
/// interval on the canary alone; a failed check increments failedChecks
/// and a passing one does not reset it; the tick after failedChecks reaches
/// the threshold rolls back. Checks on the plan's margins: success rate ≥
/// 98.5 % (stable 0.5 % + 1 pp) and p99 ≤ 275 ms (1.1 × stable's 250 ms).
pub struct Flagger {
    threshold: u32,
    interval: Duration,
    failed_checks: u32,
    /// Prometheus has series for the canary once it has served a request.
    series_exist: bool,
}

pub const FLAGGER_MIN_SUCCESS_PCT: f64 = 100.0 * (1.0 - STABLE_ERROR_RATE - ERROR_MARGIN);
pub const FLAGGER_MAX_P99_MS: f64 = 1.1 * STABLE_P99_MS;

impl Flagger {
    pub fn new(threshold: u32, interval: Duration) -> Flagger {
        Flagger { threshold, interval, failed_checks: 0, series_exist: false }
    }

    fn check_passes(&mut self, w: &Window) -> bool {
        let c = &w.canary;
        if c.requests == 0 {
            // No series yet: "no values found" fails the check. Afterwards the
            // queries return NaN, and NaN < min is false: the check passes.
            return self.series_exist;
        }
        self.series_exist = true;
        let success_pct = 100.0 * (1.0 - c.errors as f64 / c.requests as f64);
        let p99 = c.latency.quantile(0.99).unwrap_or(0.0);
        success_pct >= FLAGGER_MIN_SUCCESS_PCT && p99 <= FLAGGER_MAX_P99_MS
    }
}

impl Judge for Flagger {
    fn judge(&mut self, w: &Window, _weight: u8) -> Option<Duration> {
        if !self.check_passes(w) {
            self.failed_checks += 1;
        }
        (self.failed_checks >= self.threshold).then_some(self.interval)
    }
}

/// The fixed per-window rules of DOMAIN.md, on windows with ≥ 100 canary
/// requests: error rate > 1.5× stable at ≤ 5 % weight, > 1.2× at ≤ 25 %,
/// > 1.1× above; p95 > 2× stable; error rate > 5 %; p99 > 1 s.
pub struct FixedThresholds;

pub const FIXED_MIN_REQUESTS: u64 = 100;

impl Judge for FixedThresholds {
    fn judge(&mut self, w: &Window, weight: u8) -> Option<Duration> {
        let (s, c) = (&w.stable, &w.canary);
        if c.requests < FIXED_MIN_REQUESTS {
            return None;
        }
        let canary_rate = c.error_rate().unwrap_or(0.0);
        let factor = match weight {
            0..=5 => 1.5,
            6..=25 => 1.2,
            _ => 1.1,
        };
        let ratio_fails = s.error_rate().is_some_and(|stable| canary_rate > factor * stable);
        let p95_fails = match (s.latency.quantile(0.95), c.latency.quantile(0.95)) {
            (Some(stable), Some(canary)) => canary > 2.0 * stable,
            _ => false,
        };
        let ceilings = canary_rate > 0.05 || c.latency.quantile(0.99).is_some_and(|p99| p99 > 1000.0);
        (ratio_fails || p95_fails || ceilings).then_some(Duration::ZERO)
    }
}
