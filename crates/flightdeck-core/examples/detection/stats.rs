//! What the outcomes of one cell and policy add up to.

use super::run::{Outcome, Pause, Run};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub rolled_back: usize,
    pub promoted: usize,
    /// Paused to ask a human and still paused, still analysing, at the
    /// run's end (never rolled back).
    pub paused: usize,
    /// Paused to ask a human at some point (flightdeck), whatever came after.
    pub asked: usize,
    /// Of those, rolled back later by the analysis while paused.
    pub asked_then_rolled_back: usize,
    /// First paused because the canary got no requests (the rest: no decision).
    pub asked_no_traffic: usize,
    /// The median time of the first pause, among the rollouts that paused.
    pub pause_median: Option<Duration>,
    /// Time to the rollback effect; `None`: that share of rollouts was not
    /// rolled back at all (a rollout never rolled back counts as infinitely slow).
    pub rollback_median: Option<Duration>,
    pub rollback_p95: Option<Duration>,
    /// Time to 100 %, likewise.
    pub promote_median: Option<Duration>,
    /// Canary requests served until the rollback effect; `None` likewise.
    pub served_median: Option<u64>,
    pub served_p95: Option<u64>,
    /// Every run's time to the rollback effect (`None`: not rolled back).
    pub rollbacks: Vec<Option<Duration>>,
    /// flightdeck only: the median of [`Run::limit_on_path`].
    pub limit_on_path_median: Option<Duration>,
}

/// The nearest-rank `q` quantile of values where `None` is infinite.
fn quantile<T: Ord + Copy>(mut times: Vec<Option<T>>, q: f64) -> Option<T> {
    if times.is_empty() {
        return None;
    }
    times.sort_by_key(|t| (t.is_none(), *t));
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
    times[rank - 1]
}

impl Summary {
    pub fn of(runs: &[Run]) -> Summary {
        let count = |f: &dyn Fn(&Run) -> bool| runs.iter().filter(|r| f(r)).count();
        let rollbacks: Vec<Option<Duration>> = runs.iter().map(Run::rolled_back).collect();
        let promotions: Vec<Option<Duration>> =
            runs.iter().map(|r| if let Outcome::Promoted(t) = r.outcome { Some(t) } else { None }).collect();
        let served: Vec<Option<u64>> = runs.iter().map(|r| r.rolled_back().map(|_| r.canary_requests)).collect();
        // Among the runs that paused only.
        let pauses = runs.iter().filter_map(|r| r.asked.map(|(t, _)| Some(t)));
        Summary {
            runs: runs.len(),
            rolled_back: count(&|r| matches!(r.outcome, Outcome::RolledBack(_))),
            promoted: count(&|r| matches!(r.outcome, Outcome::Promoted(_))),
            paused: count(&|r| matches!(r.outcome, Outcome::Paused(..))),
            asked: count(&|r| r.asked.is_some()),
            asked_then_rolled_back: count(&|r| r.asked.is_some() && matches!(r.outcome, Outcome::RolledBack(_))),
            asked_no_traffic: count(&|r| matches!(r.asked, Some((_, Pause::NoTraffic)))),
            pause_median: quantile(pauses.collect(), 0.5),
            rollback_median: quantile(rollbacks.clone(), 0.5),
            rollback_p95: quantile(rollbacks, 0.95),
            promote_median: quantile(promotions, 0.5),
            served_median: quantile(served.clone(), 0.5),
            served_p95: quantile(served, 0.95),
            rollbacks: runs.iter().map(Run::rolled_back).collect(),
            limit_on_path_median: quantile(runs.iter().map(|r| r.limit_on_path).collect(), 0.5),
        }
    }

    /// The median time to rollback counting only rollbacks by `horizon`
    /// (later ones as never): every policy on the same horizon.
    pub fn median_within(&self, horizon: Duration) -> Option<Duration> {
        quantile(self.rollbacks.iter().map(|t| t.filter(|t| *t <= horizon)).collect(), 0.5)
    }

    pub fn share(&self, n: usize) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            n as f64 / self.runs as f64
        }
    }
}

/// `m:ss`, or ∞ for "not at all".
pub fn clock(t: Option<Duration>) -> String {
    match t {
        Some(t) => {
            let s = t.as_secs();
            format!("{}:{:02}", s / 60, s % 60)
        }
        None => "∞".to_string(),
    }
}

/// A share as a percentage: "0 %", "0.03 %", "0.5 %", "12 %", "100 %".
pub fn pct(share: f64) -> String {
    let p = 100.0 * share;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0} %")
    } else if p < 0.1 {
        format!("{p:.2} %")
    } else {
        format!("{p:.1} %")
    }
}

/// An amount of requests: "0", "0.4", "6.0", "12", "1250", or ∞ for
/// "never rolled back".
pub fn amount(x: Option<f64>) -> String {
    match x {
        None => "∞".to_string(),
        Some(x) if x > 0.0 && x < 9.95 => format!("{x:.1}"),
        Some(x) => format!("{x:.0}"),
    }
}
