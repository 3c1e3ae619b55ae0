//! Frame render time of the whole cockpit at 1, 100 and 1,000 rollouts,
//! into a 200×50 buffer (ratatui's own benches use the same approach).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flightdeck::preview::shipped_look;
use flightdeck::protocol::Snapshot;
use flightdeck::ui::app::App;
use flightdeck::ui::view;
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::rollout::{step, Actor, Event, Rollout};
use flightdeck_core::time::Timestamp;
use flightdeck_core::Plan;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::Duration;

fn window(requests: u64, errors: u64, p99: f64) -> VersionWindow {
    VersionWindow {
        requests,
        errors,
        p50_ms: Some(p99 / 3.0),
        p95_ms: Some(p99 / 1.5),
        p99_ms: Some(p99),
        ..Default::default()
    }
}

/// `n` rollouts, each started and with one analysis window.
fn fleet(n: usize) -> Snapshot {
    let plans: Vec<Plan> =
        flightdeck::fleet::DEMO_FLEET.iter().map(|(file, text)| Plan::parse(file, text).unwrap()).collect();
    let sample = Event::Metrics(MetricsSample {
        window: Duration::from_secs(60),
        stable: Some(window(12_000, 24, 250.0)),
        canary: Some(window(1_200, 3, 255.0)),
        missing: None,
    });
    let rollouts = (0..n)
        .map(|i| {
            let r = Rollout::new(format!("cluster-{}/svc-{i}", i % 7), plans[i % plans.len()].clone());
            let r = step(&r, Event::Start, Timestamp(0)).0;
            step(&r, sample.clone(), Timestamp(60_000)).0
        })
        .collect();
    Snapshot { at: Timestamp(90_000), rollouts, ..Snapshot::default() }
}

fn bench_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render 200x50");
    for n in [1usize, 100, 1000] {
        let (theme, themes, keymap) = shipped_look("default");
        let mut app = App::new(fleet(n), theme, themes, keymap, Actor::new("bench"));
        app.now = Timestamp(90_000);
        let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(format!("{n} rollouts")), &n, |b, _| {
            b.iter(|| {
                terminal.draw(|f| view::render(f, &mut app)).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
