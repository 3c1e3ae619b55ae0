//! One rollout's engine for a backend's integration test: no journal, its
//! events drained, and a wait on its snapshots that says where the rollout
//! was when it timed out.

use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, EngineOptions, RolloutSetup, StopWhen};
use flightdeck::metrics::MetricsSource;
use flightdeck::protocol::{Output, Snapshot};
use flightdeck_core::analysis::MetricsSample;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::rollout::{Phase, Rollout};
use flightdeck_core::time::Timestamp;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Starts `setup` alone on `clock`, without a journal.
pub fn one_rollout(setup: RolloutSetup, clock: Clock, stop_when: StopWhen) -> Engine {
    let (tx, mut rx) = mpsc::channel::<Output>(256);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let options = EngineOptions { clock, journal_dir: None, fresh: false, stop_when };
    Engine::start(vec![setup], options, tx).unwrap()
}

/// Waits until the first rollout of the snapshots is `done`, and returns it;
/// past `limit` the test fails with its phase, stage, verdict and backend error.
pub async fn wait_for(
    snapshots: &mut watch::Receiver<Snapshot>,
    limit: Duration,
    what: &str,
    done: impl Fn(&Rollout) -> bool,
) -> Rollout {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let rollout = Rollout::clone(&snapshots.borrow_and_update().rollouts[0]);
        if done(&rollout) {
            return rollout;
        }
        let changed = tokio::time::timeout_at(deadline, snapshots.changed()).await;
        assert!(
            matches!(changed, Ok(Ok(()))),
            "timed out after {limit:?} waiting for {what}; last phase {:?} at stage {}, verdict {:?}, backend error {:?}",
            rollout.phase,
            rollout.stage,
            rollout.last_verdict.as_ref().map(|v| v.summary()),
            rollout.backend_error
        );
    }
}

/// [`wait_for`] a phase.
pub async fn wait_for_phase(
    snapshots: &mut watch::Receiver<Snapshot>,
    limit: Duration,
    what: &str,
    done: impl Fn(&Phase) -> bool,
) -> Rollout {
    wait_for(snapshots, limit, what, |r| done(&r.phase)).await
}

/// Metrics that never answer, for tests about traffic, not analysis.
pub struct NoMetrics;

#[async_trait::async_trait]
impl MetricsSource for NoMetrics {
    async fn sample(&self, window: Duration, _now: Timestamp) -> MetricsSample {
        flightdeck::metrics::missing(window, "no metrics in this test".into())
    }
    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

/// The rollout ended rolled back by the analysis (not a person, not a backend).
pub fn assert_rolled_back_by_analysis(rollout: &Rollout) {
    match &rollout.phase {
        Phase::RolledBack { by, reason, .. } => {
            println!("rolled back by {by}: {reason}");
            assert_eq!(*by, flightdeck_core::rollout::Actor::analysis(), "{reason}");
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
}
