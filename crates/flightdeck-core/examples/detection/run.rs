//! One rollout per policy on the same seeded traffic.

use super::flightdeck;
use super::grid::Cell;
use super::grid::MINUTE;
use super::judges::{Every, FixedThresholds, Flagger, Judge, Oracle};
use super::kayenta::Kayenta;
use super::traffic::{Service, Window};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// How one rollout ended, with the time from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    RolledBack(Duration),
    Promoted(Duration),
    /// Paused to ask a human (at the time given, the first pause) and still
    /// paused, still analysing, at twice the plan's horizon: the analysis
    /// never rolled it back. A paused rollout that is rolled back later is
    /// `RolledBack`.
    Paused(Duration, Pause),
    /// Still undecided at twice the plan's horizon.
    Unfinished,
}

/// One rollout: how it ended, what the canary served until then, and (for
/// flightdeck) whether it asked a human on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub outcome: Outcome,
    /// Requests the canary served from the start to the outcome: up to the
    /// rollback effect for a rollback (windows judged, and the windows
    /// still served at the same weight until a delayed rollback lands), up
    /// to the run's end otherwise.
    pub canary_requests: u64,
    /// flightdeck's first pause to ask a human, whatever came after it.
    pub asked: Option<(Duration, Pause)>,
    /// flightdeck only: when the SPRT limit, run on the very windows
    /// flightdeck's canary served (its weights, not the fixed schedule's),
    /// would have rolled back; past flightdeck's end it goes on at the
    /// canary's last weight. `None`: not within twice the horizon.
    pub limit_on_path: Option<Duration>,
}

impl Run {
    pub fn rolled_back(&self) -> Option<Duration> {
        match self.outcome {
            Outcome::RolledBack(t) => Some(t),
            _ => None,
        }
    }
}

/// Why flightdeck asked a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// No decision some windows after the bake.
    NoDecision,
    /// Windows in a row without a single canary request.
    NoTraffic,
    Other,
}

/// The policies, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Flightdeck,
    Oracle,
    Flagger5,
    Flagger1,
    FlaggerDiff,
    Kayenta,
    Fixed,
}

impl Policy {
    pub const ALL: [Policy; 7] = [
        Policy::Flightdeck,
        Policy::Oracle,
        Policy::Flagger5,
        Policy::Flagger1,
        Policy::FlaggerDiff,
        Policy::Kayenta,
        Policy::Fixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Flightdeck => "flightdeck",
            Policy::Oracle => "SPRT limit",
            Policy::Flagger5 => "Flagger t=5",
            Policy::Flagger1 => "Flagger t=1",
            Policy::FlaggerDiff => "Flagger t=5 Δ",
            Policy::Kayenta => "Kayenta-style",
            Policy::Fixed => "fixed rules",
        }
    }
}

/// A cell's windows for one seed, drawn once and shared by every policy
/// that has the canary at the same weight in the same window.
pub struct Draws<'a> {
    service: &'a Service,
    seed: u64,
    cache: HashMap<(u32, u8), Rc<Window>>,
}

impl<'a> Draws<'a> {
    pub fn new(service: &'a Service, seed: u64) -> Draws<'a> {
        Draws { service, seed, cache: HashMap::new() }
    }

    pub fn window(&mut self, index: u32, weight: u8) -> Rc<Window> {
        let (service, seed) = (self.service, self.seed);
        self.cache.entry((index, weight)).or_insert_with(|| Rc::new(service.window(seed, index, weight))).clone()
    }
}

/// Every policy's rollout for one seed; `None` where a policy does not
/// apply (the SPRT limit of a canary within the margins).
pub fn run_seed(cell: &Cell, service: &Service, seed: u64) -> [Option<Run>; 7] {
    let mut draws = Draws::new(service, seed);
    let flightdeck = flightdeck::run(cell, &mut draws);
    let mut judges: Vec<Option<Box<dyn Judge>>> = vec![
        Oracle::new(&cell.scenario).map(|o| Box::new(o) as Box<dyn Judge>),
        // Flagger at its real interval, 1 m, whatever the cell's window.
        Some(Box::new(Every::new(Box::new(Flagger::new(5, MINUTE)), MINUTE, cell.interval))),
        Some(Box::new(Every::new(Box::new(Flagger::new(1, MINUTE)), MINUTE, cell.interval))),
        Some(Box::new(Every::new(Box::new(Flagger::versus_primary(5, MINUTE)), MINUTE, cell.interval))),
        Some(Box::new(Kayenta::new(service.buckets.clone()))),
        Some(Box::new(FixedThresholds)),
    ];
    let mut outcomes: Vec<Option<Outcome>> = judges.iter().map(|_| None).collect();
    let mut served = vec![0u64; judges.len()];
    let horizon = cell.horizon();
    for index in 0..cell.windows_in(horizon) {
        let open: Vec<usize> = (0..judges.len()).filter(|&j| judges[j].is_some() && outcomes[j].is_none()).collect();
        if open.is_empty() {
            break;
        }
        let weight = cell.scheduled_weight(index);
        let window = draws.window(index, weight);
        let end = cell.interval * (index + 1);
        for j in open {
            served[j] += window.canary.requests;
            if let Some(delay) = judges[j].as_mut().expect("open").judge(&window, weight) {
                // Until a delayed rollback lands the canary keeps serving, at
                // the weight it holds after the failed check.
                for later in 1..=cell.windows_in(delay) {
                    served[j] += draws.window(index + later, weight).canary.requests;
                }
                outcomes[j] = Some(Outcome::RolledBack(end + delay));
            }
        }
    }
    for (j, outcome) in outcomes.iter_mut().enumerate() {
        if judges[j].is_some() && outcome.is_none() {
            *outcome = Some(Outcome::Promoted(horizon));
        }
    }
    let judged = |j: usize| {
        outcomes[j].map(|outcome| Run { outcome, canary_requests: served[j], asked: None, limit_on_path: None })
    };
    [Some(flightdeck), judged(0), judged(1), judged(2), judged(3), judged(4), judged(5)]
}

/// A cell's rollouts over `seeds` seeds, by policy.
pub fn run_cell(cell: &Cell, seeds: u64) -> Vec<Vec<Run>> {
    run_cell_from(cell, 0, seeds)
}

/// The same over seeds `first..first + seeds` (the held-out set starts at
/// `stress::HELD_OUT_SEED`).
pub fn run_cell_from(cell: &Cell, first: u64, seeds: u64) -> Vec<Vec<Run>> {
    let service = cell.service();
    let mut by_policy = vec![Vec::new(); Policy::ALL.len()];
    for seed in first..first + seeds {
        for (p, run) in run_seed(cell, &service, seed).into_iter().enumerate() {
            by_policy[p].extend(run);
        }
    }
    by_policy
}
