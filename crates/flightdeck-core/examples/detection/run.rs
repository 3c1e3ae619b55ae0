//! One rollout per policy on the same seeded traffic.

use super::flightdeck;
use super::grid::Cell;
use super::judges::{FixedThresholds, Flagger, Judge, Oracle};
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
    /// Stopped to ask a human.
    Paused(Duration, Pause),
    /// Still undecided at twice the plan's horizon.
    Unfinished,
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
    Kayenta,
    Fixed,
}

impl Policy {
    pub const ALL: [Policy; 6] =
        [Policy::Flightdeck, Policy::Oracle, Policy::Flagger5, Policy::Flagger1, Policy::Kayenta, Policy::Fixed];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Flightdeck => "flightdeck",
            Policy::Oracle => "SPRT limit",
            Policy::Flagger5 => "Flagger t=5",
            Policy::Flagger1 => "Flagger t=1",
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

/// Every policy's outcome for one seed; `None` where a policy does not
/// apply (the SPRT limit of a canary within the margins).
pub fn run_seed(cell: &Cell, service: &Service, seed: u64) -> [Option<Outcome>; 6] {
    let mut draws = Draws::new(service, seed);
    let flightdeck = flightdeck::run(cell, &mut draws);
    let mut judges: Vec<Option<Box<dyn Judge>>> = vec![
        Oracle::new(&cell.scenario).map(|o| Box::new(o) as Box<dyn Judge>),
        Some(Box::new(Flagger::new(5, cell.interval))),
        Some(Box::new(Flagger::new(1, cell.interval))),
        Some(Box::new(Kayenta::new(service.buckets.clone()))),
        Some(Box::new(FixedThresholds)),
    ];
    let mut outcomes: Vec<Option<Outcome>> = judges.iter().map(|_| None).collect();
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
            if let Some(delay) = judges[j].as_mut().expect("open").judge(&window, weight) {
                outcomes[j] = Some(Outcome::RolledBack(end + delay));
            }
        }
    }
    for (j, outcome) in outcomes.iter_mut().enumerate() {
        if judges[j].is_some() && outcome.is_none() {
            *outcome = Some(Outcome::Promoted(horizon));
        }
    }
    [Some(flightdeck), outcomes[0], outcomes[1], outcomes[2], outcomes[3], outcomes[4]]
}

/// A cell's outcomes over `seeds` seeds, by policy.
pub fn run_cell(cell: &Cell, seeds: u64) -> Vec<Vec<Outcome>> {
    let service = cell.service();
    let mut by_policy = vec![Vec::new(); Policy::ALL.len()];
    for seed in 0..seeds {
        for (p, outcome) in run_seed(cell, &service, seed).into_iter().enumerate() {
            by_policy[p].extend(outcome);
        }
    }
    by_policy
}
