//! The simulator: a pretend service with a stable and a canary version,
//! driven by the same effects as a real backend and measured like one.
//!
//! Deterministic from a seed: the metrics of window N depend only on the
//! seed, the rollout's name, N and the traffic split, so a resumed run sees
//! the same numbers it would have seen.

mod scenario;

pub use scenario::{Profile, Scenario, STABLE};

use crate::backend::{Backend, BackendError};
use crate::clock::Clock;
use crate::metrics::MetricsSource;
use async_trait::async_trait;
use flightdeck_core::analysis::histogram::{index_of, upper_edge};
use flightdeck_core::analysis::{LatencyHistogram, MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::params::ParamError;
use flightdeck_core::plan::params::{Param, ParamKind};
use flightdeck_core::plan::{Plan, Strategy};
use flightdeck_core::rollout::{Effect, Observation, Version};
use flightdeck_core::time::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Synthetic probe traffic each running side gets (smoke checks) unless the
/// target sets `probe_rps`, so a preview or a drained side still has numbers
/// to compare: enough for a 5-minute preview to show p99 within its limit (a
/// few thousand requests).
const PROBE_RPS: f64 = 100.0;
/// Requests per second of a simulated service unless the target sets `rps`:
/// a busy service, on which a 1 % stage sees enough traffic to decide p99
/// within a 15-minute bake (a quiet one pauses and asks, with an estimate).
const DEFAULT_RPS: f64 = 2_000.0;

/// What a simulated target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::optional("scenario", ParamKind::OneOf(Scenario::NAMES), "how the canary behaves (default `healthy`)"),
    Param::optional("rps", ParamKind::Number, "requests per second the whole service takes (default 2000)"),
    Param::optional("budget_left_pct", ParamKind::Number, "error budget left at the start, percent (default 85)"),
    Param::optional("probe_rps", ParamKind::Number, "probe requests per second each running side gets (default 100)"),
];

/// Settings of one simulated service, from the plan's `[target]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    pub scenario: Scenario,
    /// Requests per second the whole service takes.
    pub rps: f64,
    /// Error budget left at the start, percent.
    pub budget_left_pct: f64,
    /// Probe requests per second each running side gets besides user traffic.
    pub probe_rps: f64,
    pub seed: u64,
}

impl SimParams {
    /// Reads `scenario`, `rps`, `budget_left_pct` and `probe_rps` from the plan's target;
    /// `scenario` overrides the plan's, which must still be a known one (a
    /// plan is valid or not whatever the command line says).
    pub fn from_plan(plan: &Plan, scenario: Option<Scenario>, seed: u64) -> Result<SimParams, ParamError> {
        let p = &plan.target.params;
        let planned = p
            .get("scenario")
            .map(|name| name.parse::<Scenario>().map_err(|message| ParamError::new("scenario", message)))
            .transpose()?;
        let scenario = scenario.or(planned).unwrap_or(Scenario::Healthy);
        let number = |key: &'static str, default: f64| -> Result<f64, ParamError> {
            p.get(key)
                .map_or(Ok(default), |v| v.parse().map_err(|_| ParamError::new(key, format!("`{v}` is not a number"))))
        };
        Ok(SimParams {
            scenario,
            rps: number("rps", DEFAULT_RPS)?,
            budget_left_pct: number("budget_left_pct", 85.0)?,
            probe_rps: number("probe_rps", PROBE_RPS)?,
            seed,
        })
    }
}

/// What decides a simulated run besides the plan: the same plan with
/// another scenario or seed is another run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRun {
    pub scenario: String,
    pub seed: u64,
}

/// What the simulated system currently runs.
#[derive(Debug, Clone, Default)]
struct World {
    /// Percent of user traffic the canary takes.
    share: u8,
    canary_running: bool,
    stable_running: bool,
    /// The engine's clock, once it runs this simulator (the stuck-backend
    /// window is a time of the run); minute 0 until then.
    clock: Option<Clock>,
    /// The run's time of the effects being applied, when the engine says.
    effects_at: Option<Timestamp>,
}

/// One simulated service; cheap to clone (shared state).
#[derive(Clone)]
pub struct Simulator {
    name: String,
    group: String,
    strategy: Strategy,
    slo_objective: f64,
    params: SimParams,
    world: Arc<Mutex<World>>,
}

impl Simulator {
    pub fn new(plan: &Plan, params: SimParams) -> Simulator {
        let world = World { stable_running: true, ..World::default() };
        Simulator {
            name: plan.name.clone(),
            group: plan.target.group.clone(),
            strategy: plan.strategy.clone(),
            slo_objective: plan.slo.objective_pct,
            params,
            world: Arc::new(Mutex::new(world)),
        }
    }

    pub fn scenario(&self) -> Scenario {
        self.params.scenario
    }

    /// Whether the canary is a blue-green preview (no user traffic before
    /// the switch).
    fn previews(&self) -> bool {
        matches!(self.strategy, Strategy::BlueGreen { .. })
    }

    /// The simulated minute effects are applied at: the run's time of
    /// them, or the engine's clock when nobody said.
    fn minute(&self) -> u64 {
        let w = self.world();
        w.effects_at.or_else(|| w.clock.map(|c| c.now())).map_or(0, |t| t.0 / 60_000)
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        // A poisoned lock only means another task panicked mid-update; the
        // world is plain data, so keep going with it.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A generator for window `index`, independent of call order.
    fn rng(&self, index: u64) -> ChaCha8Rng {
        let name =
            self.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        ChaCha8Rng::seed_from_u64(self.params.seed ^ name ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn apply_to_world(&self, effect: &Effect) {
        let mut w = self.world();
        match effect {
            Effect::SetWeight { canary } => {
                w.share = *canary;
                w.canary_running |= *canary > 0;
            }
            Effect::Scale { version: Version::Canary, percent } => {
                w.canary_running = *percent > 0;
                if matches!(self.strategy, Strategy::Rolling { .. }) {
                    w.share = *percent;
                } else if *percent == 0 {
                    w.share = 0;
                }
            }
            Effect::Scale { version: Version::Stable, percent } => w.stable_running = *percent > 0,
            Effect::SwitchActive { to } => {
                w.share = if *to == Version::Canary { 100 } else { 0 };
                w.canary_running |= *to == Version::Canary;
            }
            Effect::Undo { .. } => {
                w.share = 0;
                w.canary_running = false;
            }
            Effect::Native { .. } | Effect::Notify(_) => {}
        }
    }
}

#[async_trait]
impl Backend for Simulator {
    fn name(&self) -> String {
        format!("sim {}", self.group)
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        if self.params.scenario.backend_stuck(self.minute()) {
            return Err(BackendError::Unreachable {
                backend: self.name(),
                detail: "control API timed out after 5 s (simulated)".into(),
            });
        }
        self.apply_to_world(effect);
        Ok(())
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let w = self.world();
        Ok(Observation { canary_weight: Some(w.share), ..Observation::default() })
    }

    fn run_on(&self, clock: Clock) {
        self.world().clock = Some(clock);
    }

    fn effects_at(&self, at: Timestamp) {
        self.world().effects_at = Some(at);
    }

    fn simulation(&self) -> Option<SimRun> {
        Some(SimRun { scenario: self.params.scenario.name().into(), seed: self.params.seed })
    }
}

#[async_trait]
impl MetricsSource for Simulator {
    async fn sample(&self, window: Duration, now: Timestamp) -> MetricsSample {
        let index = now.0 / window.as_millis().max(1) as u64;
        let mut rng = self.rng(index);
        if self.params.scenario.metrics_gap(index, rng.gen::<f64>()) {
            return MetricsSample {
                window,
                stable: None,
                canary: None,
                missing: Some("metrics query timed out (simulated gap)".into()),
            };
        }
        let w = self.world().clone();
        let secs = window.as_secs_f64();
        let share = w.share as f64 / 100.0;
        let probe = self.params.probe_rps;
        let canary_rps = if w.canary_running { self.params.rps * share + probe } else { 0.0 };
        let stable_rps = if w.stable_running { self.params.rps * (1.0 - share) + probe } else { 0.0 };
        let canary = self.params.scenario.canary_profile(w.share, self.previews());
        MetricsSample {
            window,
            stable: Some(draw(&mut rng, stable_rps * secs, STABLE)),
            canary: Some(draw(&mut rng, canary_rps * secs, canary)),
            missing: None,
        }
    }

    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        let allowed = 1.0 - self.slo_objective / 100.0;
        let availability = 1.0 - allowed * (1.0 - self.params.budget_left_pct / 100.0);
        let share = self.world().share as f64 / 100.0;
        let canary = self.params.scenario.canary_profile(self.world().share, self.previews());
        let now_ratio = STABLE.error_rate * (1.0 - share) + canary.error_rate * share;
        Some(SloMeasurement {
            availability,
            error_ratio_5m: now_ratio,
            error_ratio_30m: now_ratio,
            error_ratio_1h: now_ratio * 0.8 + STABLE.error_rate * 0.2,
            error_ratio_6h: STABLE.error_rate,
        })
    }
}

/// Draws one window of `expected` requests from `profile`.
fn draw(rng: &mut ChaCha8Rng, expected: f64, profile: Profile) -> VersionWindow {
    if expected <= 0.0 {
        return VersionWindow::default();
    }
    // ±5 % noise on the request count, binomial errors, log-normal latency.
    let requests = (expected * rng.gen_range(0.95..1.05)).round() as u64;
    let errors = Binomial::new(requests, profile.error_rate).map_or(0, |b| b.sample(rng));
    // A log-normal with median p50 whose 99th percentile is p99 (z = 2.326).
    let sigma = (profile.p99_ms / profile.p50_ms).ln() / 2.326;
    // Every request's latency is in the histogram: drawn per bucket, a busy window costs no more.
    let histogram = lognormal_histogram(rng, requests, profile.p50_ms.ln(), sigma);
    let q = |p: f64| histogram.quantile(p);
    VersionWindow {
        requests,
        errors,
        p50_ms: q(0.50),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        latency: histogram,
        ..VersionWindow::default()
    }
}

/// `n` log-normal latencies (of the log's mean `mu` and deviation
/// `sigma`) as a histogram, drawn bucket by bucket: each bucket's count is
/// binomial in the requests left, at its share of the probability left (a
/// multinomial over the buckets). That is exactly the histogram of `n`
/// independent draws, in a few hundred binomial draws instead of `n`
/// samples: drawing every sample was most of an idle demo's CPU.
fn lognormal_histogram(rng: &mut ChaCha8Rng, n: u64, mu: f64, sigma: f64) -> LatencyHistogram {
    let cdf = |ms: f64| 0.5 * libm::erfc(-(ms.ln() - mu) / (sigma * std::f64::consts::SQRT_2));
    // Beyond 8 σ lies less than 1e-15 of the mass: the end buckets take it.
    let (first, last) = (index_of((mu - 8.0 * sigma).exp()), index_of((mu + 8.0 * sigma).exp()));
    let (mut buckets, mut left, mut below) = (Vec::new(), n, 0.0);
    for index in first..=last {
        if left == 0 {
            break;
        }
        let upto = if index == last { 1.0 } else { cdf(upper_edge(index)) };
        let share = if below >= 1.0 { 1.0 } else { ((upto - below) / (1.0 - below)).clamp(0.0, 1.0) };
        let count = Binomial::new(left, share).map_or(0, |b| b.sample(rng));
        if count > 0 {
            buckets.push((index, count));
        }
        (left, below) = (left - count, upto);
    }
    LatencyHistogram::from(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::plan::{AnalysisConfig, BackendKind, Slo, Target};

    fn sim(scenario: Scenario) -> Simulator {
        let plan = Plan {
            name: "checkout".into(),
            stable: "v1".into(),
            canary: "v2".into(),
            theme: None,
            target: Target {
                backend: BackendKind::Sim,
                group: "lab".into(),
                production: false,
                params: Default::default(),
            },
            strategy: Strategy::Canary { stages: vec![] },
            analysis: AnalysisConfig::default(),
            slo: Slo::default(),
            metrics: Default::default(),
            approvers: Vec::new(),
        };
        Simulator::new(&plan, SimParams { scenario, rps: 200.0, budget_left_pct: 85.0, probe_rps: PROBE_RPS, seed: 7 })
    }

    #[tokio::test]
    async fn same_seed_and_window_give_the_same_numbers() {
        let (a, b) = (sim(Scenario::Healthy), sim(Scenario::Healthy));
        a.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
        b.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
        let t = Timestamp(600_000);
        assert_eq!(a.sample(Duration::from_secs(60), t).await, b.sample(Duration::from_secs(60), t).await);
    }

    #[test]
    fn a_histogram_drawn_bucket_by_bucket_is_the_distribution_of_every_draw() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (p50, p99) = (80.0f64, 250.0f64);
        let sigma = (p99 / p50).ln() / 2.326;
        let h = lognormal_histogram(&mut rng, 1_000_000, p50.ln(), sigma);
        assert_eq!(h.total(), 1_000_000, "every request is in it");
        // Quantiles of a million draws sit within a bucket (2 %) or so of the distribution's.
        for (q, want) in [(0.5, p50), (0.99, p99)] {
            let got = h.quantile(q).unwrap();
            assert!((got / want - 1.0).abs() < 0.03, "p{}: {got} ms, want {want}", q * 100.0);
        }
        // And it is random like the draws: another seed, another histogram.
        let other = lognormal_histogram(&mut ChaCha8Rng::seed_from_u64(8), 1_000_000, p50.ln(), sigma);
        assert_ne!(h, other);
        assert_eq!(lognormal_histogram(&mut rng, 0, p50.ln(), sigma).total(), 0);
    }

    #[tokio::test]
    async fn traffic_follows_the_weight() {
        let s = sim(Scenario::Healthy);
        s.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
        let m = s.sample(Duration::from_secs(60), Timestamp(60_000)).await;
        let (stable, canary) = (m.stable.unwrap().requests as f64, m.canary.unwrap().requests as f64);
        // 200 rps × 60 s: 10 % + 100/s probes ≈ 7,200 canary, 90 % + probes ≈ 16,800 stable.
        assert!((6_800.0..7_600.0).contains(&canary), "{canary}");
        assert!((16_000.0..17_600.0).contains(&stable), "{stable}");
    }

    #[tokio::test]
    async fn bad_canary_errors_from_ten_percent() {
        let s = sim(Scenario::BadCanary);
        s.apply(&Effect::SetWeight { canary: 1 }).await.unwrap();
        let low = s.sample(Duration::from_secs(60), Timestamp(60_000)).await.canary.unwrap();
        s.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
        let high = s.sample(Duration::from_secs(60), Timestamp(120_000)).await.canary.unwrap();
        assert!((low.errors as f64) / (low.requests as f64) < 0.02);
        assert!((high.errors as f64) / (high.requests as f64) > 0.08);
    }

    #[tokio::test]
    async fn stuck_backend_fails_effects_in_its_window_only() {
        let s = sim(Scenario::StuckBackend);
        s.run_on(Clock::scaled(Timestamp(14 * 60_000), 0.0)); // stopped at minute 14
        assert!(s.apply(&Effect::SetWeight { canary: 1 }).await.is_ok());
        s.run_on(Clock::scaled(Timestamp(16 * 60_000), 0.0)); // stopped at minute 16
        let err = s.apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        s.run_on(Clock::scaled(Timestamp(31 * 60_000), 0.0)); // stopped at minute 31
        assert!(s.apply(&Effect::SetWeight { canary: 10 }).await.is_ok());
    }

    #[tokio::test]
    async fn flaky_metrics_has_gaps_with_a_reason() {
        let s = sim(Scenario::FlakyMetrics);
        let m = s.sample(Duration::from_secs(60), Timestamp(19 * 60_000)).await;
        assert!(m.canary.is_none() && m.stable.is_none());
        assert!(m.missing.unwrap().contains("simulated gap"));
    }

    #[test]
    fn unknown_scenario_lists_the_known_ones() {
        let err = "chaos".parse::<Scenario>().unwrap_err();
        assert_eq!(
            err,
            "unknown scenario `chaos`; expected one of: healthy, bad-canary, slow-canary, flaky-metrics, stuck-backend, bad-flag"
        );
    }
}
