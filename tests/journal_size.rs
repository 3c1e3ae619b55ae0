//! Journal bytes per rollout-hour at 1 m windows and 100 req/s: what a
//! journal costs on disk now (latency as packed per-window histograms), as
//! JSON pairs, and when every raw latency sample was written. Prints the
//! three; fails if a rollout-day would grow past 1.2 MB (the goal is about
//! one megabyte: 1440 windows a day).

use flightdeck::clock::Clock;
use flightdeck::engine::journal;
use flightdeck::engine::{Engine, EngineOptions, StopWhen};
use flightdeck::fleet;
use flightdeck_core::analysis::VersionWindow;
use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::Event;
use flightdeck_core::time::Timestamp;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use std::time::Duration;

/// A canary that stays live for well over an hour: 1 m windows, 100 req/s.
const PLAN: &str = r#"
[rollout]
name = "orders"
stable = "v1"
canary = "v2"

[target]
backend = "sim"
group = "lab"
scenario = "healthy"
rps = 100
# The service's own traffic only: no simulated probes on top.
probe_rps = 0

[strategy]
kind = "canary"

[[strategy.stages]]
weight = 5
bake = "45m"

[[strategy.stages]]
weight = 25
bake = "45m"

[[strategy.stages]]
weight = 100
bake = "0s"

[analysis]
interval = "1m"
"#;

/// Simulated minutes per real second (tokio's clock is paused: no waiting).
const SPEED: f64 = 600.0;

/// The same window as the journal held it before histograms: every raw
/// latency sample (as many as requests, up to the simulator's 100 000),
/// drawn like the simulator drew them (stable's log-normal profile).
fn with_raw_samples(w: &VersionWindow, rng: &mut rand_chacha::ChaCha8Rng) -> serde_json::Value {
    let sigma = (248.0f64 / 80.0).ln() / 2.326;
    let latency = LogNormal::new(80.0f64.ln(), sigma).unwrap();
    let mut samples: Vec<f64> = (0..w.requests.min(100_000)).map(|_| latency.sample(rng)).collect();
    samples.sort_by(f64::total_cmp);
    let mut value = serde_json::to_value(w).unwrap();
    let map = value.as_object_mut().unwrap();
    map.remove("latency");
    map.insert("latency_samples_ms".into(), serde_json::to_value(samples).unwrap());
    value
}

#[tokio::test(start_paused = true)]
async fn a_rollout_day_of_journal_is_about_a_megabyte() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::parse("orders.toml", PLAN).unwrap();
    let setup = fleet::setup(plan, "orders.toml", PLAN.into(), None, 1).await.unwrap();
    let options = EngineOptions {
        clock: Clock::scaled(Timestamp(0), SPEED),
        journal_dir: Some(dir.path().to_path_buf()),
        fresh: false,
        stop_when: StopWhen::Never,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let engine = Engine::start(vec![setup], options, tx).unwrap();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    // One simulated hour (and a second, so the 60th window is in).
    tokio::time::sleep(Duration::from_secs_f64(3_601.0 / SPEED)).await;
    let state = engine.subscribe().borrow().rollouts[0].clone();
    engine.shutdown().await;
    drain.abort();
    assert!(!state.phase.is_finished(), "live for the whole hour: {:?}", state.phase);

    // The journal, not the `.lock` file the engine keeps beside it.
    let path = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a journal");
    let text = std::fs::read_to_string(&path).unwrap();
    if let Ok(keep) = std::env::var("JOURNAL_SIZE_KEEP") {
        std::fs::write(keep, &text).unwrap();
    }
    let (header, records) = text.split_once('\n').unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut now, mut pairs, mut before, mut windows) = (0usize, 0usize, 0usize, 0usize);
    for line in records.lines() {
        now += line.len() + 1;
        let record = journal::parse_record(line).unwrap();
        let mut value = serde_json::to_value(&record).unwrap();
        pairs += serde_json::to_string(&value).unwrap().len() + 1;
        if let Event::Metrics(sample) = &record.event {
            windows += 1;
            let event = value["event"].as_object_mut().unwrap();
            for (side, w) in [("stable", &sample.stable), ("canary", &sample.canary)] {
                if let Some(w) = w {
                    event.insert(side.into(), with_raw_samples(w, &mut rng));
                }
            }
        }
        before += serde_json::to_string(&value).unwrap().len() + 1;
    }
    assert!(windows >= 60, "{windows} windows in the hour");
    let per_day = |bytes: usize| bytes as f64 * 24.0 / 1e6;
    println!(
        "journal per rollout-hour at 1 m windows, 100 req/s ({windows} windows; plan header {} B once):\n  \
         raw samples:              {before} B/h ≈ {:.0} B per window, {:.1} MB per rollout-day\n  \
         histograms as JSON pairs: {pairs} B/h ≈ {:.0} B per window, {:.2} MB per rollout-day\n  \
         packed histograms (now):  {now} B/h ≈ {:.0} B per window, {:.2} MB per rollout-day",
        header.len() + 1,
        before as f64 / windows as f64,
        per_day(before),
        pairs as f64 / windows as f64,
        per_day(pairs),
        now as f64 / windows as f64,
        per_day(now),
    );
    assert!(per_day(now) < 1.2, "{now} B per rollout-hour is {:.2} MB per day", per_day(now));
}
