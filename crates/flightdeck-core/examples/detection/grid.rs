//! The grid: what the canary does wrong, how much traffic it gets, how
//! often it is looked at.

use super::traffic::{Behaviour, Latency, Service, SLOW_MS, STABLE_ERROR_RATE};
use std::time::Duration;

pub const MINUTE: Duration = Duration::from_secs(60);
/// Every stage but the last bakes this long (the default canary plan).
pub const BAKE: Duration = Duration::from_secs(15 * 60);
/// The plan's margin: canary error rate ≤ stable's + 1 pp.
pub const ERROR_MARGIN: f64 = 0.01;
/// The plan's margin: ≤ 1 % of canary requests slower than 1.1 × stable's p99.
pub const SLOW_MARGIN: f64 = 0.01;

/// Where a canary stands against the plan's margins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Within every margin: it must pass.
    Inside,
    /// Exactly on a margin: neither verdict is wrong.
    OnMargin,
    /// Past a margin: it must be rolled back.
    Beyond,
}

/// The metric a regression shows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Errors,
    Latency,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub name: &'static str,
    pub canary: Behaviour,
    pub standing: Standing,
    /// The metric that regressed, if any.
    pub regressed: Option<Metric>,
}

impl Scenario {
    fn errors(name: &'static str, pp: f64) -> Scenario {
        let rate = STABLE_ERROR_RATE + pp / 100.0;
        let standing = if pp / 100.0 < ERROR_MARGIN { Standing::Inside } else { Standing::Beyond };
        let canary = Behaviour { error_rate: rate, ..Behaviour::stable() };
        Scenario { name, canary, standing, regressed: Some(Metric::Errors) }
    }

    fn latency(name: &'static str, latency: Latency) -> Scenario {
        let share = latency.share_above(SLOW_MS);
        let standing = if (share - SLOW_MARGIN).abs() < 1e-6 {
            Standing::OnMargin
        } else if share < SLOW_MARGIN {
            Standing::Inside
        } else {
            Standing::Beyond
        };
        Scenario {
            name,
            canary: Behaviour { latency, ..Behaviour::stable() },
            standing,
            regressed: Some(Metric::Latency),
        }
    }

    pub fn all() -> Vec<Scenario> {
        vec![
            Scenario { name: "A/A", canary: Behaviour::stable(), standing: Standing::Inside, regressed: None },
            Scenario::errors("errors +0.5 pp", 0.5),
            Scenario::errors("errors +2 pp", 2.0),
            Scenario::errors("errors +5 pp", 5.0),
            Scenario::latency("p99 +10 %", Latency::p99_times(1.10)),
            Scenario::latency("p99 +25 %", Latency::p99_times(1.25)),
            Scenario::latency("p99 +50 %", Latency::p99_times(1.50)),
            Scenario::latency(
                "tail: 3 % 4× slower",
                Latency::SlowTail { sigma: sigma_stable(), share: 0.03, factor: 4.0 },
            ),
        ]
    }

    /// The true rate of the regressed metric: (the margin's limit, the canary's rate).
    pub fn true_rates(&self) -> Option<(f64, f64)> {
        match self.regressed? {
            Metric::Errors => Some((STABLE_ERROR_RATE + ERROR_MARGIN, self.canary.error_rate)),
            Metric::Latency => Some((SLOW_MARGIN, self.canary.latency.share_above(SLOW_MS))),
        }
    }
}

fn sigma_stable() -> f64 {
    match Latency::stable() {
        Latency::LogNormal { sigma } => sigma,
        Latency::SlowTail { sigma, .. } => sigma,
    }
}

/// One cell of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub scenario: Scenario,
    /// Requests per second, both versions together.
    pub rate: u32,
    /// The first stage's canary weight, %.
    pub share: u8,
    pub interval: Duration,
}

impl Cell {
    /// Stage weights and bakes: share → 10 → 50 → 100 (10 → 50 → 100 when
    /// the share is 10 %), 15 min each, 100 % bakes 0.
    pub fn stages(&self) -> Vec<(u8, Duration)> {
        let mut weights = vec![self.share];
        weights.extend([10, 50, 100].into_iter().filter(|w| *w > self.share));
        weights.into_iter().map(|w| (w, if w == 100 { Duration::ZERO } else { BAKE })).collect()
    }

    /// The plan's horizon: every bake, back to back.
    pub fn horizon(&self) -> Duration {
        self.stages().iter().map(|s| s.1).sum()
    }

    /// Whole windows in `d`.
    pub fn windows_in(&self, d: Duration) -> u32 {
        (d.as_millis() / self.interval.as_millis()) as u32
    }

    /// The canary weight during window `index` if every stage advances on time.
    pub fn scheduled_weight(&self, index: u32) -> u8 {
        let start = self.interval * index;
        let mut end = Duration::ZERO;
        for (weight, bake) in self.stages() {
            end += bake;
            if start < end {
                return weight;
            }
        }
        100
    }

    pub fn service(&self) -> Service {
        let per_window = u64::from(self.rate) * self.interval.as_secs();
        Service::new(self.scenario.canary, per_window)
    }

    pub fn interval_label(&self) -> String {
        if self.interval >= MINUTE {
            format!("{} m", self.interval.as_secs() / 60)
        } else {
            format!("{} s", self.interval.as_secs())
        }
    }

    pub fn label(&self) -> String {
        format!("{} · {} · {} req/s · {} %", self.scenario.name, self.interval_label(), self.rate, self.share)
    }
}

pub const RATES: [u32; 3] = [10, 100, 1000];
pub const SHARES: [u8; 3] = [1, 5, 10];
pub const INTERVALS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(10)];

/// The held-out cells: traffic the grid does not have, fixed before any
/// number on them was seen, for the scenarios that matter most.
pub fn held_out_cells() -> Vec<Cell> {
    let mut out = Vec::new();
    for scenario in Scenario::all() {
        if !["A/A", "errors +0.5 pp", "errors +2 pp", "errors +5 pp", "p99 +25 %", "p99 +50 %"].contains(&scenario.name)
        {
            continue;
        }
        for interval in INTERVALS {
            for rate in [30, 300] {
                for share in [2, 20] {
                    out.push(Cell { scenario, rate, share, interval });
                }
            }
        }
    }
    out
}

/// Every cell, or with `quick` the few the tests run: 5 % of 100 req/s.
pub fn cells(quick: bool) -> Vec<Cell> {
    let mut out = Vec::new();
    for scenario in Scenario::all() {
        if quick && !["A/A", "errors +0.5 pp", "errors +5 pp", "p99 +50 %"].contains(&scenario.name) {
            continue;
        }
        for interval in INTERVALS {
            for rate in RATES {
                for share in SHARES {
                    if quick && (rate != 100 || share != 5) {
                        continue;
                    }
                    out.push(Cell { scenario, rate, share, interval });
                }
            }
        }
    }
    // DETECTION_CELLS=<words>[,<words>…]: only the cells whose label contains
    // one of them ("errors +5 pp · 10 s", "beyond" for every cell past a
    // margin), to iterate on a part; the held-out cells are then skipped.
    if let Some(only) = only_cells() {
        out.retain(|c| {
            only.iter()
                .any(|w| c.label().contains(w.as_str()) || (w == "beyond" && c.scenario.standing == Standing::Beyond))
        });
    }
    out
}

/// The `DETECTION_CELLS` filter, if set.
pub fn only_cells() -> Option<Vec<String>> {
    let only = std::env::var("DETECTION_CELLS").ok()?;
    Some(only.split(',').map(|w| w.trim().to_string()).collect())
}
