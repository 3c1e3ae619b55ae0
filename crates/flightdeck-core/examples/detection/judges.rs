//! The policies flightdeck is compared with. Each looks at one window at a
//! time on the fixed schedule (every stage advances when its bake ends) and
//! says when it rolls back.

use super::grid::{Metric, Scenario, ERROR_MARGIN};
use super::traffic::{Served, Window, STABLE_ERROR_RATE, STABLE_P99_MS};
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
    /// The error check: the built-in `request-success-rate` (canary alone),
    /// or the documented custom `MetricTemplate` kind that subtracts the
    /// primary's error rate from the canary's (docs.flagger.app/usage/metrics,
    /// "Custom metrics"), `thresholdRange: max: 1` (pp).
    versus_primary: bool,
}

pub const FLAGGER_MIN_SUCCESS_PCT: f64 = 100.0 * (1.0 - STABLE_ERROR_RATE - ERROR_MARGIN);
pub const FLAGGER_MAX_P99_MS: f64 = 1.1 * STABLE_P99_MS;

impl Flagger {
    pub fn new(threshold: u32, interval: Duration) -> Flagger {
        Flagger { threshold, interval, failed_checks: 0, series_exist: false, versus_primary: false }
    }

    /// The custom canary-minus-primary error metric instead of the built-in success rate.
    pub fn versus_primary(threshold: u32, interval: Duration) -> Flagger {
        Flagger { versus_primary: true, ..Flagger::new(threshold, interval) }
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
        let errors_pass = if self.versus_primary {
            // NaN (a primary without requests) compared with max is false: passes.
            let primary_pct = 100.0 * w.stable.errors as f64 / w.stable.requests as f64;
            (100.0 - success_pct - primary_pct).is_nan() || 100.0 - success_pct - primary_pct <= ERROR_MARGIN * 100.0
        } else {
            success_pct >= FLAGGER_MIN_SUCCESS_PCT
        };
        errors_pass && p99 <= FLAGGER_MAX_P99_MS
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

/// A judge that runs at its own interval (Flagger's 1 m) over the analysis
/// windows of a cell: it sees the windows of each of its intervals merged
/// into one, as a Prometheus query over `[1m]` would.
pub struct Every {
    inner: Box<dyn Judge>,
    windows: u32,
    seen: u32,
    merged: Option<Window>,
}

impl Every {
    /// `inner` every `every` (a whole number of the cell's `interval`s).
    pub fn new(inner: Box<dyn Judge>, every: Duration, interval: Duration) -> Every {
        let windows = (every.as_millis() / interval.as_millis()).max(1) as u32;
        Every { inner, windows, seen: 0, merged: None }
    }
}

fn merge(into: &mut Served, w: &Served) {
    into.requests += w.requests;
    into.errors += w.errors;
    into.slow += w.slow;
    into.latency.merge(&w.latency);
    if into.counts.len() < w.counts.len() {
        into.counts.resize(w.counts.len(), 0);
    }
    for (a, b) in into.counts.iter_mut().zip(&w.counts) {
        *a += b;
    }
}

impl Judge for Every {
    fn judge(&mut self, window: &Window, weight: u8) -> Option<Duration> {
        match &mut self.merged {
            None => self.merged = Some(window.clone()),
            Some(m) => {
                merge(&mut m.stable, &window.stable);
                merge(&mut m.canary, &window.canary);
            }
        }
        self.seen += 1;
        if self.seen < self.windows {
            return None;
        }
        self.seen = 0;
        let merged = self.merged.take().expect("merged above");
        self.inner.judge(&merged, weight)
    }
}
