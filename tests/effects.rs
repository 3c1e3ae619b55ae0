//! Effects stop at the first failure, and no backend scales down or
//! removes a side whose weight it has not read back out of traffic.
//!
//! A scripted backend stands in for ECS task sets behind an ALB (a driven
//! canary whose idle side is removed): an abort is `SetWeight 0` then
//! `Scale canary 0`, a promotion `SetWeight 100` then `Scale stable 0`.

mod support;

use flightdeck::backend::{Backend, BackendError};
use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, EngineOptions, RolloutSetup, StopWhen};
use flightdeck::protocol::{CommandRequest, Output, Reply};
use flightdeck_core::rollout::{Effect, Observation, Phase, Version};
use flightdeck_core::{Actor, Command, Plan, Rollout};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::engine::NoMetrics;
use tokio::sync::mpsc;

/// How the scripted backend treats `SetWeight`.
#[derive(Clone, Copy, PartialEq)]
enum Weights {
    /// Applied and read back.
    Work,
    /// Refused, as a throttled or denied API call is.
    Fail,
    /// Acknowledged but not applied (a proxy that lost it, a stale read).
    Ignore,
    /// Applied, but `observe` cannot read a weight back.
    Unreadable,
}

struct Scripted {
    weights: Mutex<Weights>,
    weight: Mutex<u8>,
    /// Every effect the backend carried out, in order.
    applied: Mutex<Vec<Effect>>,
}

impl Scripted {
    fn new() -> Arc<Scripted> {
        Arc::new(Scripted {
            weights: Mutex::new(Weights::Work),
            weight: Mutex::new(0),
            applied: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, weights: Weights) {
        *self.weights.lock().unwrap() = weights;
    }

    fn applied(&self) -> Vec<Effect> {
        self.applied.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Backend for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        let mode = *self.weights.lock().unwrap();
        if let Effect::SetWeight { canary } = effect {
            match mode {
                Weights::Fail => {
                    return Err(BackendError::Refused {
                        backend: self.name(),
                        action: effect.to_string(),
                        detail: "ThrottlingException: Rate exceeded".into(),
                    })
                }
                Weights::Ignore => {}
                Weights::Work | Weights::Unreadable => *self.weight.lock().unwrap() = *canary,
            }
        }
        self.applied.lock().unwrap().push(effect.clone());
        Ok(())
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let unreadable = *self.weights.lock().unwrap() == Weights::Unreadable;
        let weight = (!unreadable).then(|| *self.weight.lock().unwrap());
        Ok(Observation { canary_weight: weight, ..Observation::default() })
    }
}

/// A driven ECS canary (10 % → 50 % → 100 %) whose windows are an hour
/// apart: nothing but the test's commands moves it.
fn start(backend: Arc<Scripted>) -> (Engine, tokio::task::JoinHandle<Vec<Output>>) {
    let text = "[rollout]\nname = \"checkout\"\nstable = \"checkout:1\"\ncanary = \"checkout:2\"\n\n\
                [target]\nbackend = \"ecs\"\ncontroller = \"external\"\ncluster = \"prod\"\nservice = \"checkout\"\n\
                region = \"us-east-1\"\nlistener_rule = \"arn:rule\"\nstable_target_group = \"arn:blue\"\n\
                canary_target_group = \"arn:green\"\n\n\
                [strategy]\nkind = \"canary\"\nstages = [{ weight = 10, bake = \"1h\" }, \
                { weight = 50, bake = \"1h\" }, { weight = 100, bake = \"0s\" }]\n\n\
                [analysis]\ninterval = \"1h\"\n"
        .to_string();
    let plan = Plan::parse("effects-test.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let setup = RolloutSetup {
        id: "ecs/checkout".into(),
        plan,
        plan_file: "effects-test.toml".into(),
        plan_text: text,
        backend,
        metrics: Arc::new(NoMetrics),
    };
    let (tx, mut rx) = mpsc::channel(256);
    let drain = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(out) = rx.recv().await {
            seen.push(out);
        }
        seen
    });
    let options = EngineOptions { clock: Clock::Wall, journal_dir: None, fresh: false, stop_when: StopWhen::Never };
    (Engine::start(vec![setup], options, tx).unwrap(), drain)
}

async fn rollout_when(engine: &Engine, what: &str, done: impl Fn(&Rollout) -> bool) -> Rollout {
    let mut snapshots = engine.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = Rollout::clone(&snapshots.borrow_and_update().rollouts[0]);
        if done(&r) {
            return r;
        }
        let changed = tokio::time::timeout_at(deadline, snapshots.changed()).await;
        assert!(matches!(changed, Ok(Ok(()))), "timed out waiting for {what}; last {:?}", r.phase);
    }
}

async fn send(engine: &Engine, command: Command) -> Reply {
    let r = Rollout::clone(&engine.subscribe().borrow().rollouts[0]);
    let request = CommandRequest {
        rollout: r.id.clone(),
        actor: Actor::new("captain"),
        command,
        expected_stage: r.stage,
        expected_revision: r.canary_revision.clone(),
        expected_step: None,
    };
    engine.submit(request).await
}

/// Runs `command` on a rollout baking at 10 % once `weights` is in force;
/// returns the rollout when it has settled, what the backend carried out
/// after the command, and every event.
async fn after(weights: Weights, command: Command) -> (Rollout, Vec<Effect>, Vec<Output>) {
    let backend = Scripted::new();
    let (engine, drain) = start(backend.clone());
    let baking = rollout_when(&engine, "stage 1", |r| matches!(r.phase, Phase::Progressing { .. })).await;
    assert_eq!(baking.canary_weight, 10);
    let before = backend.applied().len();
    backend.set(weights);
    assert_eq!(send(&engine, command).await, Reply::Ack);
    let settled = rollout_when(&engine, "the command's effects", |r| {
        matches!(r.phase, Phase::Failed { .. } | Phase::Aborted { .. } | Phase::Promoted { .. })
    })
    .await;
    // The effects run before the command is answered: the log is complete.
    let applied = backend.applied()[before..].to_vec();
    engine.shutdown().await;
    (settled, applied, drain.await.unwrap())
}

fn notices(events: &[Output]) -> Vec<String> {
    events
        .iter()
        .filter_map(|o| match o {
            Output::Notice { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn failed_reason(r: &Rollout) -> &str {
    match &r.phase {
        Phase::Failed { reason, .. } => reason,
        other => panic!("expected failed, got {other:?}"),
    }
}

#[tokio::test]
async fn an_abort_whose_weight_change_fails_never_scales_the_canary_down() {
    let (r, applied, events) = after(Weights::Fail, Command::Abort { reason: None }).await;
    assert!(applied.is_empty(), "nothing may follow the failed weight change: {applied:?}");
    let reason = failed_reason(&r);
    assert!(reason.contains("set canary weight 0 %") && reason.contains("Rate exceeded"), "{reason}");
    let said = notices(&events);
    assert!(
        said.iter().any(|n| n
            .contains("set canary weight 0 % failed: not carried out after it: scale canary to 0 % of its replicas")),
        "{said:?}"
    );
}

#[tokio::test]
async fn a_promotion_whose_weight_change_fails_never_removes_stable() {
    let (r, applied, events) = after(Weights::Fail, Command::PromoteFull).await;
    let stable_gone = Effect::Scale { version: Version::Stable, percent: 0 };
    assert!(!applied.contains(&stable_gone), "stable removed while it takes 90 % of traffic: {applied:?}");
    assert!(!applied.iter().any(|e| matches!(e, Effect::SetWeight { .. })), "{applied:?}");
    let reason = failed_reason(&r);
    assert!(reason.contains("set canary weight 100 %"), "{reason}");
    let said = notices(&events);
    assert!(
        said.iter().any(|n| n.contains("not carried out after it: scale stable to 0 % of its replicas")),
        "{said:?}"
    );
}

#[tokio::test]
async fn the_canary_is_not_scaled_down_while_its_weight_reads_back_above_0() {
    let (r, applied, _) = after(Weights::Ignore, Command::Abort { reason: None }).await;
    assert_eq!(applied, vec![Effect::SetWeight { canary: 0 }], "the scale-down must be refused");
    let reason = failed_reason(&r);
    assert!(reason.contains("the canary weight reads 10 %, not 0 %"), "{reason}");
}

#[tokio::test]
async fn stable_is_not_removed_while_the_canary_weight_reads_back_below_100() {
    let (r, applied, _) = after(Weights::Ignore, Command::PromoteFull).await;
    assert!(!applied.contains(&Effect::Scale { version: Version::Stable, percent: 0 }), "{applied:?}");
    let reason = failed_reason(&r);
    assert!(reason.contains("the canary weight reads 10 %, not 100 %"), "{reason}");
}

#[tokio::test]
async fn a_side_is_not_removed_when_no_weight_can_be_read_back() {
    let (r, applied, _) = after(Weights::Unreadable, Command::Abort { reason: None }).await;
    assert_eq!(applied, vec![Effect::SetWeight { canary: 0 }], "{applied:?}");
    let reason = failed_reason(&r);
    assert!(reason.contains("the backend shows no canary weight"), "{reason}");
}

#[tokio::test]
async fn with_every_weight_read_back_an_abort_and_a_promotion_remove_their_side() {
    let (r, applied, _) = after(Weights::Work, Command::Abort { reason: None }).await;
    assert!(matches!(r.phase, Phase::Aborted { .. }), "{:?}", r.phase);
    let canary_gone = Effect::Scale { version: Version::Canary, percent: 0 };
    assert_eq!(applied, vec![Effect::SetWeight { canary: 0 }, canary_gone]);
    let (r, applied, _) = after(Weights::Work, Command::PromoteFull).await;
    assert!(matches!(r.phase, Phase::Promoted { .. }), "{:?}", r.phase);
    assert_eq!(applied.last(), Some(&Effect::Scale { version: Version::Stable, percent: 0 }), "{applied:?}");
}
