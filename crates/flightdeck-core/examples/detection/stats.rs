//! What the outcomes of one cell and policy add up to.

use super::run::{Outcome, Pause};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub rolled_back: usize,
    pub promoted: usize,
    pub paused: usize,
    /// Paused because the canary got no requests (the rest: no decision).
    pub paused_no_traffic: usize,
    pub pause_median: Option<Duration>,
    /// Time to the rollback effect; `None`: that share of rollouts was not
    /// rolled back at all (a rollout never rolled back counts as infinitely slow).
    pub rollback_median: Option<Duration>,
    pub rollback_p95: Option<Duration>,
    /// Time to 100 %, likewise.
    pub promote_median: Option<Duration>,
}

/// The nearest-rank `q` quantile of times where `None` is infinite.
fn quantile(mut times: Vec<Option<Duration>>, q: f64) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    times.sort_by_key(|t| t.unwrap_or(Duration::MAX));
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
    times[rank - 1]
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        let rollbacks: Vec<Option<Duration>> =
            outcomes.iter().map(|o| if let Outcome::RolledBack(t) = o { Some(*t) } else { None }).collect();
        let promotions: Vec<Option<Duration>> =
            outcomes.iter().map(|o| if let Outcome::Promoted(t) = o { Some(*t) } else { None }).collect();
        // Among the paused runs only.
        let pauses = outcomes.iter().filter_map(|o| if let Outcome::Paused(t, _) = o { Some(Some(*t)) } else { None });
        Summary {
            runs: outcomes.len(),
            rolled_back: count(|o| matches!(o, Outcome::RolledBack(_))),
            promoted: count(|o| matches!(o, Outcome::Promoted(_))),
            paused: count(|o| matches!(o, Outcome::Paused(..))),
            paused_no_traffic: count(|o| matches!(o, Outcome::Paused(_, Pause::NoTraffic))),
            pause_median: quantile(pauses.collect(), 0.5),
            rollback_median: quantile(rollbacks.clone(), 0.5),
            rollback_p95: quantile(rollbacks, 0.95),
            promote_median: quantile(promotions, 0.5),
        }
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

/// A share as a percentage: "0 %", "0.5 %", "12 %", "100 %".
pub fn pct(share: f64) -> String {
    let p = 100.0 * share;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}
