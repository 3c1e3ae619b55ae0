//! What the cockpit keeps per rollout does not grow with the hours it
//! runs: its event log and each rollout's sparkline history are capped,
//! and its list order, kept between frames, follows every change.

use flightdeck::protocol::{Output, Snapshot};
use flightdeck::ui::app::App;
use flightdeck_core::analysis::{evaluate, MetricsSample, VersionWindow};
use flightdeck_core::plan::{AnalysisConfig, Plan};
use flightdeck_core::rollout::{Actor, Gate, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// The cockpit's caps (`src/ui/app.rs`): events in the log, and windows
/// per metric in a rollout's sparklines.
const EVENT_LOG: usize = 2000;
const HISTORY: usize = 40;

fn rollout(group: &str, name: &str) -> Rollout {
    let text = format!(
        "[rollout]\nname = \"{name}\"\nstable = \"v1\"\ncanary = \"v2\"\n\n[target]\nbackend = \"sim\"\ngroup = \"{group}\"\n"
    );
    Rollout::new(format!("{group}/{name}"), Plan::parse("plan.toml", &text).unwrap())
}

fn app(rollouts: Vec<Rollout>) -> App {
    let snapshot = Snapshot { rollouts: rollouts.into_iter().map(Arc::new).collect(), ..Snapshot::default() };
    App::new(snapshot, flightdeck::preview::shipped_look("default"), Actor::new("alice"))
}

fn served(requests: u64, errors: u64) -> Option<VersionWindow> {
    Some(VersionWindow { requests, errors, p99_ms: Some(250.0), ..VersionWindow::default() })
}

#[test]
fn a_day_of_windows_keeps_the_event_log_and_the_sparklines_capped() {
    let ids = ["eu/checkout", "eu/search", "us/checkout"];
    let mut app = app(ids.iter().map(|id| id.split_once('/').unwrap()).map(|(g, n)| rollout(g, n)).collect());
    // A day of minute windows for each, failing ones (logged) and notices.
    let failing = MetricsSample {
        window: Duration::from_secs(60),
        stable: served(9_000, 9),
        canary: served(1_000, 300),
        missing: None,
    };
    let verdict = evaluate(&AnalysisConfig::default(), &failing);
    for minute in 0..1_440u64 {
        for id in ids {
            let at = Timestamp(minute * 60_000);
            let rollout = id.to_string();
            app.on_output(Output::Verdict { rollout: rollout.clone(), at, stage: 0, verdict: verdict.clone() });
            let message = "a notice".to_string();
            app.on_output(Output::Notice { rollout, at, level: "info".into(), message });
        }
    }
    assert_eq!(app.events.len(), EVENT_LOG, "8,640 events in, the last {EVENT_LOG} kept");
    assert_eq!(app.history.len(), ids.len(), "one history per rollout");
    for (id, history) in &app.history {
        assert!(!history.series.is_empty(), "{id} has sparklines");
        for (metric, series) in &history.series {
            assert_eq!(series.len(), HISTORY, "{id} {metric:?}: the last {HISTORY} windows");
        }
    }
}

#[test]
fn the_kept_list_order_follows_a_rollout_that_starts_needing_a_human() {
    let mut rollouts = vec![rollout("eu", "checkout"), rollout("eu", "search"), rollout("us", "checkout")];
    let mut app = app(rollouts.clone());
    let order = |app: &App| app.visible().iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(order(&app), ["eu/checkout", "eu/search", "us/checkout"]);
    // The last one reaches a gate: a new snapshot with only it changed.
    rollouts[2].phase = Phase::AwaitingApproval { next: 1, gate: Gate::Stage, since: Timestamp(60_000) };
    let snapshot = Snapshot {
        rollouts: app.view.rollouts[..2].iter().cloned().chain([Arc::new(rollouts[2].clone())]).collect(),
        ..app.view.clone()
    };
    app.on_snapshot(snapshot);
    assert_eq!(order(&app), ["us/checkout", "eu/checkout", "eu/search"], "needing a human comes first");
}
