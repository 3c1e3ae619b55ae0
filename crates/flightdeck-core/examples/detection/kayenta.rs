//! Kayenta-style judging: per window, a Mann-Whitney U test of canary
//! against stable per metric, and a score over the metrics.
//!
//! Sources: kayenta-judge `MannWhitneyClassifier` (Wilcoxon rank-sum of the
//! canary's values against the baseline's, classified High when the canary
//! is shifted up by more than an allowed effect) and `NetflixACAJudge` (score
//! = 100 × passing metrics / metrics, compared with the canary config's
//! `marginal` and `pass` score thresholds).

use super::grid::ERROR_MARGIN;
use super::judges::Judge;
use super::traffic::{Buckets, Window};
use flightdeck_core::analysis::stats::normal_cdf;
use std::time::Duration;

/// One-sided significance of a metric's shift towards worse.
pub const P_VALUE: f64 = 0.05;
/// The plan's p99 margin as a ratio.
pub const MAX_P99_RATIO: f64 = 1.1;
/// NetflixACAJudge score thresholds.
pub const MARGINAL: f64 = 75.0;
pub const PASS: f64 = 95.0;

/// One-sided Mann-Whitney U from tie groups, ascending: (stable, canary)
/// counts per distinct value. Normal approximation with the tie correction
/// and a continuity correction of ½ (as the core's `stats::mann_whitney`).
/// Returns the p-value of "canary values are stochastically greater";
/// `None` when a side is empty or every value ties.
pub fn mann_whitney_p(groups: impl IntoIterator<Item = (u64, u64)>) -> Option<f64> {
    let (mut below, mut canary_rank_sum, mut tie_sum) = (0.0, 0.0, 0.0);
    let (mut n_s, mut n_c) = (0.0, 0.0);
    for (s, c) in groups {
        let (s, c) = (s as f64, c as f64);
        let ties = s + c;
        canary_rank_sum += c * (below + (ties + 1.0) / 2.0);
        tie_sum += ties * ties * ties - ties;
        below += ties;
        n_s += s;
        n_c += c;
    }
    let n = n_s + n_c;
    if n_s == 0.0 || n_c == 0.0 {
        return None;
    }
    let u = canary_rank_sum - n_c * (n_c + 1.0) / 2.0;
    let variance = n_s * n_c / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0)));
    if variance.is_nan() || variance <= 0.0 {
        return None;
    }
    let z = (u - n_s * n_c / 2.0 - 0.5) / variance.sqrt();
    Some(1.0 - normal_cdf(z))
}

/// Latency tie groups: the parts of one analysis bucket are one value.
fn latency_groups(w: &Window, buckets: &Buckets) -> Vec<(u64, u64)> {
    let mut groups: Vec<(u64, u64)> = Vec::new();
    for k in 0..buckets.len() {
        let (s, c) = (w.stable.counts[k], w.canary.counts[k]);
        if k > 0 && buckets.ms[k] == buckets.ms[k - 1] {
            let last = groups.last_mut().expect("k > 0");
            last.0 += s;
            last.1 += c;
        } else {
            groups.push((s, c));
        }
    }
    groups
}

pub struct Kayenta {
    buckets: Buckets,
}

impl Kayenta {
    pub fn new(buckets: Buckets) -> Kayenta {
        Kayenta { buckets }
    }

    /// The window's score, 0–100; `None` without data on either side
    /// (every metric NoData).
    pub fn score(&self, w: &Window) -> Option<f64> {
        let (s, c) = (&w.stable, &w.canary);
        if s.requests == 0 || c.requests == 0 {
            return None;
        }
        // Errors as 0/1 per request: error is the higher (worse) value.
        let errors = [(s.requests - s.errors, c.requests - c.errors), (s.errors, c.errors)];
        let delta = c.errors as f64 / c.requests as f64 - s.errors as f64 / s.requests as f64;
        let error_fails = delta > ERROR_MARGIN && mann_whitney_p(errors).is_some_and(|p| p < P_VALUE);
        let ratio = match (c.latency.quantile(0.99), s.latency.quantile(0.99)) {
            (Some(canary), Some(stable)) => canary / stable,
            _ => 1.0,
        };
        let latency_fails =
            ratio > MAX_P99_RATIO && mann_whitney_p(latency_groups(w, &self.buckets)).is_some_and(|p| p < P_VALUE);
        let passing = [error_fails, latency_fails].iter().filter(|f| !**f).count();
        Some(100.0 * passing as f64 / 2.0)
    }
}

impl Judge for Kayenta {
    fn judge(&mut self, w: &Window, _weight: u8) -> Option<Duration> {
        self.score(w).filter(|score| *score < MARGINAL).map(|_| Duration::ZERO)
    }
}
