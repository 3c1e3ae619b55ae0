//! core::step throughput and canary analysis of 10,000-request windows.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flightdeck_core::analysis::{evaluate, Evidence, LatencyHistogram, MetricsSample, VersionWindow};
use flightdeck_core::plan::{AnalysisConfig, Plan};
use flightdeck_core::rollout::{step, Event, Rollout};
use flightdeck_core::time::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const PLAN: &str = include_str!("../examples/plans/canary.toml");

/// A window of `n` requests with their latencies in a histogram.
fn window(rng: &mut ChaCha8Rng, n: usize, median: f64) -> VersionWindow {
    let samples: Vec<f64> = (0..n).map(|_| median * (0.5 + rng.gen::<f64>())).collect();
    let latency = LatencyHistogram::from_samples(&samples);
    VersionWindow {
        requests: n as u64,
        errors: n as u64 / 100,
        p50_ms: latency.quantile(0.5),
        p95_ms: latency.quantile(0.95),
        p99_ms: latency.quantile(0.99),
        latency,
        ..VersionWindow::default()
    }
}

fn sample(n: usize) -> MetricsSample {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    MetricsSample {
        window: Duration::from_secs(60),
        stable: Some(window(&mut rng, n, 100.0)),
        canary: Some(window(&mut rng, n, 101.0)),
        missing: None,
    }
}

fn bench_step(c: &mut Criterion) {
    let plan = Plan::parse("canary.toml", PLAN).unwrap();
    let started = step(&Rollout::new("bench", plan), Event::Start, Timestamp(0)).0;
    let mut group = c.benchmark_group("core::step");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tick", |b| b.iter(|| step(black_box(&started), Event::Tick, Timestamp(1_000))));
    let metrics = Event::Metrics(sample(100));
    group.bench_function("metrics window (100 requests)", |b| {
        b.iter_batched(|| metrics.clone(), |e| step(black_box(&started), e, Timestamp(60_000)), BatchSize::SmallInput)
    });
    group.finish();
}

fn bench_analysis(c: &mut Criterion) {
    let config = AnalysisConfig::default();
    let s = sample(10_000);
    let mut group = c.benchmark_group("analysis");
    group.throughput(Throughput::Elements(20_000));
    group.bench_function("evaluate 2 × 10,000 requests", |b| b.iter(|| evaluate(black_box(&config), black_box(&s))));
    // A stage late in a rollout: the evidence of 45 windows already folded in.
    let mut evidence = Evidence::default();
    for _ in 0..45 {
        evidence.observe(&config, &s);
    }
    group.bench_function("observe one window after 45", |b| {
        b.iter_batched(|| evidence.clone(), |mut e| e.observe(&config, black_box(&s)), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, bench_step, bench_analysis);
criterion_main!(benches);
