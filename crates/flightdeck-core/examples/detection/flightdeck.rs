//! flightdeck as shipped: the real core's `step`, fed as the engine feeds
//! it (Start; then per window the metrics at the window's end and a Tick),
//! with the canary's share taken from the `SetWeight` effects it returns.
//! `DETECTION_TRACE=1` prints how and why each run ended.

use super::grid::Cell;
use super::judges::{Judge, Oracle};
use super::run::{Draws, Outcome, Pause, Run};
use super::traffic::Served;
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::plan::{AnalysisConfig, BackendKind, CanaryStage, Plan, Slo, Strategy, Target};
use flightdeck_core::rollout::{step, Effect, Event, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// The default canary plan with the cell's stages and analysis interval;
/// every other analysis setting is the default.
pub fn plan(cell: &Cell) -> Plan {
    let stages =
        cell.stages().into_iter().map(|(weight, bake)| CanaryStage { weight, bake, approval: false }).collect();
    Plan {
        name: "detection".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        theme: None,
        target: Target { backend: BackendKind::Sim, group: "sim".into(), production: false, params: BTreeMap::new() },
        strategy: Strategy::Canary { stages },
        analysis: AnalysisConfig { interval: cell.interval, ..AnalysisConfig::default() },
        slo: Slo::default(),
        metrics: Default::default(),
        approvers: Vec::new(),
    }
}

/// What a proxy with a latency histogram reports for one version.
fn version_window(s: &Served) -> VersionWindow {
    VersionWindow {
        requests: s.requests,
        errors: s.errors,
        p50_ms: s.latency.quantile(0.50),
        p95_ms: s.latency.quantile(0.95),
        p99_ms: s.latency.quantile(0.99),
        latency_samples_ms: vec![],
        latency: s.latency.clone(),
        buckets: None,
    }
}

/// One rollout, until it is promoted or rolled back, or twice the plan's
/// horizon has passed. A pause that asks a human does not stop the analysis:
/// while nobody has answered, windows keep coming at the paused weight and
/// a canary that proves bad is still rolled back (as the engine does). The
/// outcome is the rollback if one comes, else the first pause.
pub fn run(cell: &Cell, draws: &mut Draws) -> Run {
    let mut rollout = Rollout::new("detection", plan(cell));
    let mut weight = 0u8;
    let trace = std::env::var_os("DETECTION_TRACE").is_some();
    let feed = |rollout: &mut Rollout, event: Event, at: Duration, weight: &mut u8| {
        let (next, effects) = step(rollout, event, Timestamp(at.as_millis() as u64));
        for e in &effects {
            if let Effect::SetWeight { canary } = e {
                *weight = *canary;
            }
        }
        let changed = next.phase.label() != rollout.phase.label();
        *rollout = next;
        if trace && changed && !matches!(rollout.phase, Phase::Progressing { .. }) {
            eprintln!("{:?} at {at:?}: {:?}", rollout.phase, rollout.last_verdict.as_ref().map(|v| v.summary()));
        }
        match rollout.phase {
            Phase::RolledBack { .. } => Some(Outcome::RolledBack(at)),
            Phase::Promoted { .. } => Some(Outcome::Promoted(at)),
            Phase::Paused { ref reason, .. } if reason.contains("no decision") => {
                Some(Outcome::Paused(at, Pause::NoDecision))
            }
            Phase::Paused { ref reason, .. } if reason.contains("no requests") => {
                Some(Outcome::Paused(at, Pause::NoTraffic))
            }
            Phase::Paused { .. } | Phase::AwaitingApproval { .. } | Phase::Failed { .. } => {
                Some(Outcome::Paused(at, Pause::Other))
            }
            _ => None,
        }
    };
    // A pause is noted (the first one) and the run goes on; anything else ends it.
    let settle = |done: Outcome, asked: &mut Option<(Duration, Pause)>| match done {
        Outcome::Paused(at, why) => {
            asked.get_or_insert((at, why));
            None
        }
        other => Some(other),
    };
    let mut asked = None;
    let mut served = 0u64;
    let mut path = PathLimit::new(cell);
    if let Some(outcome) =
        feed(&mut rollout, Event::Start, Duration::ZERO, &mut weight).and_then(|d| settle(d, &mut asked))
    {
        return Run { outcome, canary_requests: served, asked, limit_on_path: None };
    }
    let last = cell.windows_in(2 * cell.horizon());
    for index in 0..last {
        let end = cell.interval * (index + 1);
        let (w, drawn_at) = (draws.window(index, weight), weight);
        path.judge(&w, weight, end);
        served += w.canary.requests;
        let sample = MetricsSample {
            window: cell.interval,
            stable: Some(version_window(&w.stable)),
            canary: Some(version_window(&w.canary)),
            missing: None,
        };
        for event in [Event::Metrics(sample.clone()), Event::Tick] {
            if let Some(outcome) = feed(&mut rollout, event, end, &mut weight).and_then(|d| settle(d, &mut asked)) {
                let limit_on_path = path.finish(cell, draws, index + 1, drawn_at);
                return Run { outcome, canary_requests: served, asked, limit_on_path };
            }
        }
    }
    let outcome = asked.map_or(Outcome::Unfinished, |(at, why)| Outcome::Paused(at, why));
    Run { outcome, canary_requests: served, asked, limit_on_path: path.at }
}

/// The SPRT limit on flightdeck's own windows: the fixed schedule the
/// limit is usually run on raises the canary's weight every bake whatever
/// the evidence, while flightdeck holds an unproven canary at its weight
/// (and pauses there), so it sees up to 50× fewer canary requests.
struct PathLimit {
    oracle: Option<Oracle>,
    at: Option<Duration>,
}

impl PathLimit {
    fn new(cell: &Cell) -> PathLimit {
        PathLimit { oracle: Oracle::new(&cell.scenario), at: None }
    }

    fn judge(&mut self, w: &super::traffic::Window, weight: u8, end: Duration) {
        if let (Some(oracle), None) = (self.oracle.as_mut(), self.at) {
            if oracle.judge(w, weight).is_some() {
                self.at = Some(end);
            }
        }
    }

    /// After flightdeck's run ended at window `next`: the limit goes on at
    /// the canary's last weight until it decides or twice the horizon.
    fn finish(mut self, cell: &Cell, draws: &mut Draws, next: u32, weight: u8) -> Option<Duration> {
        for index in next..cell.windows_in(2 * cell.horizon()) {
            if self.at.is_some() || self.oracle.is_none() {
                break;
            }
            let w = draws.window(index, weight);
            self.judge(&w, weight, cell.interval * (index + 1));
        }
        self.at
    }
}
