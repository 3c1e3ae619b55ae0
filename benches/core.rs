//! core::step throughput and canary analysis over 10,000-sample windows.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flightdeck_core::analysis::{evaluate, MetricsSample, VersionWindow};
use flightdeck_core::plan::{AnalysisConfig, Plan};
use flightdeck_core::rollout::{step, Event, Rollout};
use flightdeck_core::time::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const PLAN: &str = include_str!("../examples/plans/canary.toml");

fn window(rng: &mut ChaCha8Rng, n: usize, median: f64) -> VersionWindow {
    let mut samples: Vec<f64> = (0..n).map(|_| median * (0.5 + rng.gen::<f64>())).collect();
    samples.sort_by(f64::total_cmp);
    VersionWindow {
        requests: n as u64 * 10,
        errors: n as u64 / 100,
        p50_ms: Some(samples[n / 2]),
        p95_ms: Some(samples[n * 95 / 100]),
        p99_ms: Some(samples[n * 99 / 100]),
        latency_samples_ms: samples,
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
    group.bench_function("metrics window (100 samples)", |b| {
        b.iter_batched(|| metrics.clone(), |e| step(black_box(&started), e, Timestamp(60_000)), BatchSize::SmallInput)
    });
    group.finish();
}

fn bench_analysis(c: &mut Criterion) {
    let config = AnalysisConfig::default();
    let s = sample(10_000);
    let mut group = c.benchmark_group("analysis");
    group.throughput(Throughput::Elements(20_000));
    group.bench_function("evaluate 2 × 10,000 samples", |b| b.iter(|| evaluate(black_box(&config), black_box(&s))));
    group.finish();
}

criterion_group!(benches, bench_step, bench_analysis);
criterion_main!(benches);
