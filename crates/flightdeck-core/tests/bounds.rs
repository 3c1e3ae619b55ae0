//! What one live rollout holds does not grow with the windows it has
//! been judged on: a stage that bakes for days keeps a latency histogram
//! of the buckets its traffic reaches, 4 bytes each, and the rest of its
//! state (verdict, counts, reasons) keeps its size.

mod common;

use common::{plan_with, MIN};
use flightdeck_core::analysis::{LatencyHistogram, MetricsSample, VersionWindow};
use flightdeck_core::plan::{CanaryStage, Strategy};
use flightdeck_core::rollout::{step, Event, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

/// The demo's stable profile (`src/backend/sim/scenario.rs`: p50 80 ms,
/// p99 250 ms) as the simulator draws it, a lognormal.
fn window(rng: &mut ChaCha8Rng, requests: usize) -> VersionWindow {
    let sigma = (250f64 / 80.0).ln() / 2.326;
    let latency = LogNormal::new(80f64.ln(), sigma).expect("a valid lognormal");
    let samples: Vec<f64> = (0..requests).map(|_| latency.sample(rng)).collect();
    VersionWindow {
        requests: requests as u64,
        errors: requests as u64 / 500,
        latency: LatencyHistogram::from_samples(&samples),
        ..VersionWindow::default()
    }
}

/// Bytes the rollout's latency evidence holds: stable's baseline and the canary's stage.
fn evidence_bytes(r: &Rollout) -> (usize, usize) {
    (r.evidence.baseline.latency.heap_bytes(), r.evidence.canary.latency.heap_bytes())
}

/// Occupied latency buckets, stable's and the canary's.
fn occupied(r: &Rollout) -> usize {
    let pairs = |h: &LatencyHistogram| Vec::<(i32, u64)>::from(h.clone()).len();
    pairs(&r.evidence.baseline.latency) + pairs(&r.evidence.canary.latency)
}

/// The rollout as JSON with every number one digit long: what it holds
/// (fields, entries, texts), not how large its counts have grown.
fn shape(r: &Rollout) -> usize {
    let json = serde_json::to_string(r).expect("a rollout serializes");
    let mut last_digit = false;
    json.chars()
        .filter(|c| {
            let digit = c.is_ascii_digit() || *c == '.' || *c == 'e' && last_digit;
            let counted = !(digit && last_digit);
            last_digit = digit;
            counted
        })
        .count()
}

#[test]
fn a_stage_judged_for_days_holds_bounded_evidence() {
    // One stage at 10 % that bakes for a week: every minute's window is
    // merged into the stage's evidence and stable's baseline.
    let stages = vec![CanaryStage { weight: 10, bake: MIN * 60 * 24 * 7, approval: false }];
    let mut r = Rollout::new("checkout", plan_with(Strategy::Canary { stages }));
    (r, _) = step(&r, Event::Start, Timestamp(0));
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let mut sizes = Vec::new();
    for minute in 1..=3_000u64 {
        let sample = MetricsSample {
            window: MIN,
            stable: Some(window(&mut rng, 450)),
            canary: Some(window(&mut rng, 50)),
            missing: None,
        };
        (r, _) = step(&r, Event::Metrics(sample), Timestamp(minute * 60_000));
        if minute == 100 || minute == 3_000 {
            sizes.push((evidence_bytes(&r), shape(&r), occupied(&r)));
        }
    }
    assert!(matches!(r.phase, Phase::Progressing { .. }), "still baking its one stage: {:?}", r.phase);
    assert_eq!(r.evidence.baseline.windows, 3_000);
    let [(early, early_json, early_buckets), (late, late_json, late_buckets)] = sizes[..] else { unreachable!() };
    // ±7 σ of a lognormal of σ 0.49 in buckets 2 % apart is 346 buckets:
    // 4 bytes each, held once, whatever the number of windows.
    for (name, bytes) in [("stable's baseline", late.0), ("the canary's stage", late.1)] {
        assert!(bytes <= 346 * 4, "{name} holds {bytes} bytes after 3,000 windows");
    }
    // From 100 to 3,000 windows only the histograms' tails fill in (the
    // canary's 5,000 requests reach ±3.7 σ, its 150,000 ±4.5 σ), and the
    // rest of the state keeps its size.
    assert!(late.0 >= early.0 && late.1 >= early.1, "{early:?} → {late:?}");
    let tails = (late_buckets - early_buckets) * "[0,0],".len();
    assert!(late_json <= early_json + tails, "the rollout's state grew from {early_json} to {late_json} bytes");
}
