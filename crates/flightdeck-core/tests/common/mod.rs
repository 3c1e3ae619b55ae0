//! Builders shared by the core's integration tests.
#![allow(dead_code)]

use flightdeck_core::analysis::{LatencyHistogram, MetricsSample, VersionWindow};
use flightdeck_core::plan::{AnalysisConfig, BackendKind, CanaryStage, Plan, Slo, Strategy, Target};
use flightdeck_core::rollout::{Actor, Command, CommandRequest, Event};
use std::collections::BTreeMap;
use std::time::Duration;

pub const MIN: Duration = Duration::from_secs(60);

pub fn plan_with(strategy: Strategy) -> Plan {
    Plan {
        name: "checkout".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        theme: None,
        target: Target { backend: BackendKind::Sim, group: "sim".into(), production: false, params: BTreeMap::new() },
        strategy,
        analysis: AnalysisConfig::default(),
        slo: Slo::default(),
        metrics: Default::default(),
        approvers: Vec::new(),
    }
}

/// 1 → 10 → 50 → 100 with 15 min bakes (100 % bakes 0).
pub fn canary_plan() -> Plan {
    let stage = |weight, mins| CanaryStage { weight, bake: MIN * mins, approval: false };
    plan_with(Strategy::Canary { stages: vec![stage(1, 15), stage(10, 15), stage(50, 15), stage(100, 0)] })
}

/// A window from a source with exact latencies (a histogram of every
/// request) whose p99 is `p99`: half at 0.4 × `p99`, 48.8 % at 0.8 ×,
/// 0.8 % at `p99` and the slowest 0.4 % at 1.05 ×.
pub fn window(requests: u64, errors: u64, p99: f64) -> VersionWindow {
    let mut latency = LatencyHistogram::default();
    let (tail, at_p99, middle) = (requests * 4 / 1000, requests * 8 / 1000, requests * 488 / 1000);
    latency.record(p99 * 0.4, requests - middle - at_p99 - tail);
    latency.record(p99 * 0.8, middle);
    latency.record(p99, at_p99);
    latency.record(p99 * 1.05, tail);
    VersionWindow { latency, ..quantiles_only(requests, errors, p99) }
}

/// A window from a source that reports quantiles only (Prometheus'
/// `histogram_quantile`, CloudWatch percentiles).
pub fn quantiles_only(requests: u64, errors: u64, p99: f64) -> VersionWindow {
    VersionWindow {
        requests,
        errors,
        p50_ms: Some(p99 * 0.4),
        p95_ms: Some(p99 * 0.8),
        p99_ms: Some(p99),
        latency_samples_ms: vec![],
        latency: Default::default(),
        buckets: None,
    }
}

pub fn healthy_sample() -> Event {
    Event::Metrics(MetricsSample {
        window: MIN,
        stable: Some(window(9_000, 9, 250.0)),
        canary: Some(window(1_000, 1, 252.0)),
        missing: None,
    })
}

pub fn bad_sample() -> Event {
    Event::Metrics(MetricsSample {
        window: MIN,
        stable: Some(window(9_000, 9, 250.0)),
        canary: Some(window(1_000, 200, 260.0)),
        missing: None,
    })
}

pub fn missing_sample() -> Event {
    Event::Metrics(MetricsSample {
        window: MIN,
        stable: None,
        canary: None,
        missing: Some("prometheus: connection refused".into()),
    })
}

/// A command from alice, who saw `expected_stage` of the plan's canary (v2).
pub fn cmd(command: Command, expected_stage: usize) -> Event {
    cmd_for(command, expected_stage, "v2")
}

/// A command from alice, who saw `expected_stage` of `revision`.
pub fn cmd_for(command: Command, expected_stage: usize, revision: &str) -> Event {
    let expected_revision = revision.to_string();
    Event::Command(CommandRequest {
        actor: Actor::new("alice"),
        command,
        expected_stage,
        expected_revision,
        expected_step: None,
        role: Default::default(),
        session: None,
    })
}
