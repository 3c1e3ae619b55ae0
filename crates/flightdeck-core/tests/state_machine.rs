//! Walkthroughs of the rollout state machine, one behaviour per test.

mod common;

use common::*;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::Strategy;
use flightdeck_core::rollout::{step, Actor, Command, Effect, Event, Gate, Phase, Rollout, Version};
use flightdeck_core::time::Timestamp;
use flightdeck_core::verbs::Refusal;

struct Run {
    r: Rollout,
    now: Timestamp,
    effects: Vec<Effect>,
}

impl Run {
    fn new(plan: flightdeck_core::Plan) -> Run {
        let mut run = Run { r: Rollout::new("checkout", plan), now: Timestamp(0), effects: vec![] };
        run.send(Event::Start);
        run
    }
    fn send(&mut self, e: Event) -> Vec<Effect> {
        let (r, fx) = step(&self.r, e, self.now);
        self.r = r;
        self.effects.extend(fx.clone());
        fx
    }
    /// Advances time by whole minutes, with a healthy window and a tick each minute.
    fn minutes(&mut self, n: u32, sample: fn() -> Event) {
        for _ in 0..n {
            self.now = self.now.plus(MIN);
            self.send(sample());
            self.send(Event::Tick);
        }
    }
}

/// The core's refusal, as a typed value (`Refusal`'s words are for people).
fn rejected(fx: &[Effect]) -> Option<Refusal> {
    flightdeck_core::verbs::refusal_in(fx)
}

#[test]
fn start_enters_the_first_stage_and_sets_its_weight() {
    let run = Run::new(canary_plan());
    assert_eq!(run.r.stage, 0);
    assert_eq!(run.r.canary_weight, 1);
    // The canary is ready before it takes traffic (a rollback may have scaled it to 0).
    assert_eq!(
        run.effects,
        vec![Effect::Scale { version: Version::Canary, percent: 100 }, Effect::SetWeight { canary: 1 }]
    );
    assert!(matches!(run.r.phase, Phase::Progressing { .. }));
}

#[test]
fn healthy_canary_walks_every_stage_to_promoted_in_45_minutes() {
    let mut run = Run::new(canary_plan());
    run.minutes(44, healthy_sample);
    assert_eq!(run.r.stage, 2, "still baking 50 % at 44 min");
    run.minutes(1, healthy_sample);
    assert!(matches!(run.r.phase, Phase::Promoted { .. }), "{:?}", run.r.phase);
    let weights: Vec<u8> = run
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetWeight { canary } => Some(*canary),
            _ => None,
        })
        .collect();
    assert_eq!(weights, vec![1, 10, 50, 100]);
}

#[test]
fn bake_time_without_a_passing_verdict_does_not_promote() {
    let mut run = Run::new(canary_plan());
    run.minutes(15, low_traffic_sample);
    assert_eq!(run.r.stage, 0);
    assert_eq!(run.r.next_step(run.now), "Next: 10 % after a passing verdict");
}

/// Regression: a canary with too little traffic for a decision used to be
/// inconclusive forever, silently. Now the windows after the bake count and
/// the rollout asks a human, with the time a decision would take.
#[test]
fn a_low_traffic_canary_asks_a_human_with_the_time_to_a_decision() {
    let mut run = Run::new(canary_plan());
    run.minutes(16, low_traffic_sample);
    assert!(matches!(run.r.phase, Phase::Progressing { .. }), "{:?}", run.r.phase);
    run.minutes(1, low_traffic_sample);
    let Phase::Paused { by, reason, .. } = &run.r.phase else { panic!("{:?}", run.r.phase) };
    assert_eq!(by, &Actor::analysis());
    assert!(
        reason.starts_with("no decision 3 windows after the bake (canary gets ~5 req per window; a decision needs ~"),
        "{reason}"
    );
    assert!(run.r.needs_human().is_some());
    assert_eq!(run.r.stage, 0, "nothing promoted without evidence");
}

// Too few requests for a decision, but not "missing".
fn low_traffic_sample() -> Event {
    Event::Metrics(flightdeck_core::MetricsSample {
        window: MIN,
        stable: Some(window(9_000, 9, 250.0)),
        canary: Some(window(5, 0, 250.0)),
        missing: None,
    })
}

#[test]
fn severe_error_regression_rolls_back_at_once_with_the_reason() {
    let mut run = Run::new(canary_plan());
    run.minutes(3, healthy_sample);
    let fx = run.send(bad_sample());
    match &run.r.phase {
        Phase::RolledBack { by, reason, .. } => {
            assert_eq!(by, &Actor::analysis());
            assert!(reason.contains("error rate"), "{reason}");
        }
        other => panic!("expected rolled back, got {other:?}"),
    }
    assert_eq!(fx[..2], [Effect::SetWeight { canary: 0 }, Effect::Scale { version: Version::Canary, percent: 0 }]);
    assert_eq!(run.r.last_verdict.as_ref().unwrap().label(), "fail");
}

#[test]
fn one_noisy_window_does_not_roll_back_a_healthy_canary() {
    let mut run = Run::new(canary_plan());
    run.minutes(5, healthy_sample);
    // 2.5 % errors in one window of a canary that has been clean: a blip.
    run.send(Event::Metrics(flightdeck_core::MetricsSample {
        window: MIN,
        stable: Some(window(9_000, 9, 250.0)),
        canary: Some(window(1_000, 25, 252.0)),
        missing: None,
    }));
    assert!(matches!(run.r.phase, Phase::Progressing { .. }), "{:?}", run.r.phase);
    run.minutes(40, healthy_sample);
    assert!(run.r.stage >= 2, "the canary moves on: stage {}", run.r.stage);
}

#[test]
fn a_run_of_missing_metrics_pauses_and_asks_a_human() {
    let mut run = Run::new(canary_plan());
    run.minutes(2, missing_sample);
    assert!(matches!(run.r.phase, Phase::Progressing { .. }));
    run.minutes(1, missing_sample);
    match &run.r.phase {
        Phase::Paused { by, reason, .. } => {
            assert_eq!(by, &Actor::analysis());
            assert!(reason.contains("metrics missing for 3 windows"), "{reason}");
        }
        other => panic!("expected paused, got {other:?}"),
    }
    assert!(run.r.needs_human().is_some());
}

#[test]
fn stale_command_changes_nothing_and_says_why() {
    let mut run = Run::new(canary_plan());
    run.minutes(16, healthy_sample);
    assert_eq!(run.r.stage, 1);
    let before = run.r.clone();
    let fx = run.send(cmd(Command::Promote, 0));
    assert_eq!(run.r, before);
    let reason = rejected(&fx).expect("a rejection notice");
    assert_eq!(reason, Refusal::StaleStage { sent: 0, now: 1, stages: 4, weight: 10 });
    assert_eq!(reason.to_string(), "stale: sent for stage 1 but the rollout is at stage 2 of 4 (10 %)");
}

#[test]
fn a_forward_command_for_the_previous_revision_is_stale() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::Abort { reason: None }, 0));
    run.send(Event::NewRevision { revision: "v3".into() });
    run.send(Event::Start);
    let before = run.r.clone();
    // Meant for v2's first stage; v3 is at its first stage too.
    for command in [Command::Promote, Command::PromoteFull] {
        let fx = run.send(cmd_for(command, 0, "v2"));
        assert_eq!(run.r, before);
        let reason = rejected(&fx).expect("a rejection notice");
        assert_eq!(reason, Refusal::StaleRevision { sent: "v2".into(), now: "v3".into() });
    }
    let fx = run.send(cmd_for(Command::Promote, 0, "v3"));
    assert_eq!(weights(&fx), vec![10]);
}

#[test]
fn abort_rollback_and_pause_apply_whatever_stage_or_revision_they_were_sent_for() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::Promote, 0));
    let fx = run.send(cmd_for(Command::Pause { reason: None }, 0, "v1"));
    assert!(matches!(run.r.phase, Phase::Paused { .. }), "{fx:?}");
    let fx = run.send(cmd_for(Command::Abort { reason: None }, 3, "v0"));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 0 }]);
    assert!(matches!(run.r.phase, Phase::Aborted { .. }));
    // Aborting again re-sends the revert: an abort never bounces.
    let fx = run.send(cmd_for(Command::Abort { reason: None }, 0, "v2"));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 0 }]);
    let fx = run.send(cmd_for(Command::Rollback { reason: None }, 7, "v9"));
    assert_eq!(fx[..2], [Effect::SetWeight { canary: 0 }, Effect::Scale { version: Version::Canary, percent: 0 }]);
    assert!(matches!(run.r.phase, Phase::RolledBack { .. }));
}

#[test]
fn pause_stops_the_bake_timer_and_resume_continues_it() {
    let mut run = Run::new(canary_plan());
    run.minutes(5, healthy_sample);
    run.send(cmd(Command::Pause { reason: Some("checking dashboards".into()) }, 0));
    run.minutes(60, healthy_sample);
    assert_eq!(run.r.stage, 0, "no progress while paused");
    assert_eq!(run.r.bake_remaining(run.now), Some(MIN * 10));
    let fx = run.send(cmd(Command::Resume, 0));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 1 }], "resume re-applies the weight");
    run.minutes(10, healthy_sample);
    assert_eq!(run.r.stage, 1);
    assert_eq!(run.r.last_action.as_ref().unwrap().action, "resume");
}

#[test]
fn next_tick_at_is_the_end_of_the_bake_left_after_a_pause() {
    let mut run = Run::new(canary_plan());
    assert_eq!(run.r.next_tick_at(), Some(Timestamp(0).plus(MIN * 15)), "a 15-minute bake from the start");
    run.minutes(5, healthy_sample);
    run.send(cmd(Command::Pause { reason: None }, 0));
    assert_eq!(run.r.next_tick_at(), None, "paused: no tick moves it");
    run.minutes(60, healthy_sample);
    run.now = run.now.plus(MIN / 2);
    run.send(cmd(Command::Resume, 0));
    let due = run.now.plus(MIN * 10);
    assert_eq!(run.r.next_tick_at(), Some(due), "the 10 minutes left, from the resume");
    run.minutes(9, healthy_sample);
    // The engine sleeps until `due`: a tick just before it changes nothing.
    let (before, fx) = step(&run.r, Event::Tick, Timestamp(due.0 - 1));
    assert_eq!((before.stage, fx.is_empty()), (0, true));
    let (after, _) = step(&run.r, Event::Tick, due);
    assert_eq!(after.stage, 1, "the tick at the deadline advances");
}

#[test]
fn promote_skips_the_rest_of_the_bake_and_step_back_halves_exposure() {
    let mut run = Run::new(canary_plan());
    let fx = run.send(cmd(Command::Promote, 0));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 10 }]);
    run.send(cmd(Command::Promote, 1));
    assert_eq!(run.r.canary_weight, 50);
    let fx = run.send(cmd(Command::StepBack, 2));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 10 }]);
    assert_eq!(run.r.stage, 1);
    assert!(matches!(&run.r.phase, Phase::Paused { reason, .. } if reason.contains("from 50 % to 10 %")));
}

#[test]
fn step_back_at_the_first_stage_is_refused() {
    let mut run = Run::new(canary_plan());
    let fx = run.send(cmd(Command::StepBack, 0));
    assert_eq!(rejected(&fx), Some(Refusal::AtFirstStage));
}

#[test]
fn abort_keeps_the_canary_and_retry_starts_over() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::Promote, 0));
    let fx = run.send(cmd(Command::Abort { reason: None }, 1));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 0 }], "abort does not scale the canary down");
    assert!(matches!(run.r.phase, Phase::Aborted { .. }));
    let fx = run.send(cmd(Command::Retry, 1));
    assert_eq!(fx, vec![Effect::Scale { version: Version::Canary, percent: 100 }, Effect::SetWeight { canary: 1 }]);
    assert_eq!(run.r.stage, 0);
}

#[test]
fn promoted_is_terminal_until_a_new_revision() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::PromoteFull, 0));
    assert!(matches!(run.r.phase, Phase::Promoted { .. }));
    let fx = run.send(cmd(Command::Rollback { reason: None }, 3));
    assert_eq!(rejected(&fx), Some(Refusal::Finished { phase: "promoted".into() }));
    run.send(Event::NewRevision { revision: "v3".into() });
    assert_eq!(run.r.phase, Phase::Pending);
    assert_eq!((run.r.stable_revision.as_str(), run.r.canary_revision.as_str()), ("v2", "v3"));
}

#[test]
fn approval_gate_waits_for_a_human() {
    let mut plan = canary_plan();
    if let Strategy::Canary { stages } = &mut plan.strategy {
        stages[2].approval = true;
    }
    let mut run = Run::new(plan);
    run.minutes(40, healthy_sample);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 2, gate: Gate::Stage, .. }));
    assert_eq!(run.r.canary_weight, 10);
    let fx = run.send(cmd(Command::Approve, 1));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 50 }]);
}

#[test]
fn budget_freeze_blocks_promotion_until_an_override_with_a_reason() {
    let mut run = Run::new(canary_plan());
    // 99.8 % measured against 99.9 %: the budget is overspent.
    run.send(Event::Budget(SloMeasurement { availability: 0.998, ..Default::default() }));
    run.minutes(16, healthy_sample);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { gate: Gate::Freeze, next: 1, .. }));
    let fx = run.send(cmd(Command::Promote, 0));
    assert!(matches!(rejected(&fx), Some(Refusal::Frozen { .. })));
    let fx = run.send(cmd(Command::OverrideFreeze { reason: "  ".into() }, 0));
    assert_eq!(rejected(&fx), Some(Refusal::ReasonRequired { verb: "override-freeze".into() }));
    let fx = run.send(cmd(Command::OverrideFreeze { reason: "security fix CVE-1".into() }, 0));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 10 }]);
    assert_eq!(run.r.freeze_override.as_ref().unwrap().action, "override freeze: security fix CVE-1");
}

#[test]
fn a_failed_effect_pauses_with_the_backend_error_visible() {
    let mut run = Run::new(canary_plan());
    run.send(Event::EffectFailed { effect: Effect::SetWeight { canary: 1 }, error: "socket timeout".into() });
    assert!(matches!(&run.r.phase, Phase::Paused { by, .. } if *by == Actor::backend()));
    assert_eq!(run.r.backend_error.as_deref(), Some("set canary weight 1 %: socket timeout"));
    run.send(cmd(Command::Resume, 0));
    assert_eq!(run.r.backend_error, None);
}

#[test]
fn weight_drift_pauses_the_rollout() {
    let mut run = Run::new(canary_plan());
    let obs = flightdeck_core::rollout::Observation { canary_weight: Some(30), ..Default::default() };
    run.send(Event::Observation(obs));
    assert!(matches!(&run.r.phase, Phase::Paused { reason, .. } if reason.starts_with("drift")));
}

#[test]
fn blue_green_previews_switches_then_scales_the_old_side_down() {
    let plan = plan_with(Strategy::BlueGreen { preview: MIN * 5, verification: MIN * 5, approval: false });
    let mut run = Run::new(plan);
    run.minutes(11, healthy_sample);
    assert!(matches!(run.r.phase, Phase::Promoted { .. }));
    let backend: Vec<_> = run.effects.iter().filter(|e| e.is_backend()).cloned().collect();
    assert_eq!(
        backend,
        vec![
            Effect::Scale { version: Version::Canary, percent: 100 },
            Effect::SwitchActive { to: Version::Stable },
            Effect::SwitchActive { to: Version::Canary },
            Effect::Scale { version: Version::Stable, percent: 0 },
        ]
    );
}

#[test]
fn rolling_rollback_undoes_to_the_stable_revision() {
    let plan = plan_with(Strategy::Rolling { batch_percent: 25, bake: MIN * 2 });
    let mut run = Run::new(plan);
    assert_eq!(run.r.stages().len(), 4);
    let fx = run.send(cmd(Command::Rollback { reason: Some("bad batch".into()) }, 0));
    assert_eq!(fx, vec![Effect::Undo { to_revision: "v1".into() }]);
}

#[test]
fn eta_counts_the_current_bake_and_every_later_one() {
    let mut run = Run::new(canary_plan());
    run.minutes(5, healthy_sample);
    assert_eq!(run.r.eta(run.now), Some(MIN * 40));
    assert_eq!(run.r.next_step(run.now), "Next: 10 % in 10:00");
}

/// A canary promoted by hand to its 100 % stage, which bakes 5 minutes.
fn at_a_baking_100_percent_stage() -> Run {
    let mut plan = canary_plan();
    if let Strategy::Canary { stages } = &mut plan.strategy {
        stages[3].bake = MIN * 5;
    }
    let mut run = Run::new(plan);
    for stage in 0..3 {
        run.send(cmd(Command::Promote, stage));
    }
    assert_eq!(run.r.canary_weight, 100);
    run
}

#[test]
fn a_baking_100_percent_stage_needs_time_not_a_pass() {
    let mut run = at_a_baking_100_percent_stage();
    // Stable takes no traffic at 100 %: every window is inconclusive.
    run.minutes(4, low_traffic_sample);
    assert!(matches!(run.r.phase, Phase::Progressing { .. }));
    run.minutes(1, low_traffic_sample);
    assert!(matches!(run.r.phase, Phase::Promoted { .. }), "{:?}", run.r.phase);
}

#[test]
fn a_failing_verdict_during_the_100_percent_verification_still_rolls_back() {
    let mut run = at_a_baking_100_percent_stage();
    run.send(bad_sample());
    assert!(matches!(run.r.phase, Phase::RolledBack { .. }));
}

#[test]
fn an_unreadable_backend_pauses_once_and_again_after_a_blind_resume() {
    let mut run = Run::new(canary_plan());
    run.send(Event::ObserveFailed { error: "connection refused".into() });
    assert!(matches!(&run.r.phase, Phase::Paused { reason, .. } if reason.contains("connection refused")));
    assert!(run.r.needs_human().is_some());
    run.send(cmd(Command::Resume, 0));
    assert_eq!(run.r.observe_error, None);
    // Still down after the resume: it pauses again rather than advancing blind.
    run.send(Event::ObserveFailed { error: "connection refused".into() });
    assert!(matches!(run.r.phase, Phase::Paused { .. }));
    run.send(cmd(Command::Resume, 0));
    let seen = flightdeck_core::rollout::Observation { canary_weight: Some(1), ..Default::default() };
    run.send(Event::Observation(seen));
    assert_eq!(run.r.observe_error, None);
    assert!(matches!(run.r.phase, Phase::Progressing { .. }));
}

#[test]
fn an_observed_rollout_is_not_paused_by_a_dropped_watch() {
    let mut plan = canary_plan();
    plan.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
    let mut run = Run::new(plan);
    run.send(Event::ObserveFailed { error: "watch interrupted".into() });
    assert!(matches!(run.r.phase, Phase::Progressing { .. }), "Argo decides, not flightdeck");
    assert!(run.r.needs_human().unwrap().contains("watch interrupted"));
}

#[test]
fn blue_green_step_back_from_the_switch_sends_traffic_back_to_stable() {
    let plan = plan_with(Strategy::BlueGreen { preview: MIN * 5, verification: MIN * 5, approval: false });
    let mut run = Run::new(plan);
    run.send(cmd(Command::Promote, 0));
    assert_eq!(run.r.canary_weight, 100);
    let fx = run.send(cmd(Command::StepBack, 1));
    assert!(fx.contains(&Effect::SwitchActive { to: Version::Stable }), "{fx:?}");
    assert_eq!(run.r.canary_weight, 0);
}

#[test]
fn retry_during_a_budget_freeze_is_refused() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::Abort { reason: None }, 0));
    run.send(Event::Budget(SloMeasurement { availability: 0.998, ..Default::default() }));
    let fx = run.send(cmd(Command::Retry, 0));
    assert!(matches!(rejected(&fx), Some(Refusal::Frozen { .. })));
    assert!(matches!(run.r.phase, Phase::Aborted { .. }));
}

#[test]
fn pausing_at_an_approval_gate_keeps_the_bake_already_done() {
    let mut plan = canary_plan();
    if let Strategy::Canary { stages } = &mut plan.strategy {
        stages[1].approval = true;
    }
    let mut run = Run::new(plan);
    run.minutes(16, healthy_sample);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 1, .. }));
    run.send(cmd(Command::Pause { reason: None }, 0));
    run.send(cmd(Command::Resume, 0));
    // No re-bake: the next tick is back at the gate.
    run.minutes(1, healthy_sample);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 1, .. }), "{:?}", run.r.phase);
}

#[test]
fn a_budget_gate_lifts_when_the_budget_recovers() {
    let mut run = Run::new(canary_plan());
    // 0.06 % of the window failed: 40 % of a 99.9 % budget is left.
    run.send(Event::Budget(SloMeasurement { availability: 0.9994, ..Default::default() }));
    run.minutes(16, healthy_sample);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { gate: Gate::Budget, .. }));
    let fx = run.send(Event::Budget(SloMeasurement { availability: 1.0, ..Default::default() }));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 10 }]);
    assert_eq!(run.r.stage, 1);
}

#[test]
fn a_rollback_that_did_not_reach_the_system_is_failed_and_can_be_issued_again() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::Promote, 0));
    run.send(cmd(Command::Rollback { reason: None }, 1));
    run.send(Event::EffectFailed { effect: Effect::SetWeight { canary: 0 }, error: "timeout".into() });
    assert!(matches!(&run.r.phase, Phase::Failed { reason, .. } if reason.starts_with("rolled back was not applied")));
    assert_eq!(run.r.canary_weight, 0);
    assert_eq!(run.r.reconcile()[0], Effect::SetWeight { canary: 0 }, "a restart keeps the canary out");
    let fx = run.send(cmd(Command::Rollback { reason: None }, 1));
    assert_eq!(fx[0], Effect::SetWeight { canary: 0 });
    assert!(matches!(run.r.phase, Phase::RolledBack { .. }));
}

#[test]
fn a_refused_native_verb_is_shown_but_the_mirrored_phase_stands() {
    let mut plan = canary_plan();
    plan.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
    let mut run = Run::new(plan);
    let fx = run.send(cmd(Command::Abort { reason: None }, 0));
    assert_eq!(fx, vec![Effect::Native { verb: flightdeck_core::rollout::NativeVerb::Abort }]);
    let refused = "patch rollouts.argoproj.io/checkout/status in prod: 403 Forbidden".to_string();
    run.send(Event::EffectFailed { effect: fx[0].clone(), error: refused });
    assert!(matches!(run.r.phase, Phase::Progressing { .. }));
    assert!(run.r.needs_human().unwrap().contains("403 Forbidden"));
}

#[test]
fn an_unreadable_availability_needs_approval_never_auto() {
    // NaN used to read as a full budget (f64::max drops NaN) and auto-approve.
    for availability in [f64::NAN, -0.5, 1.5, f64::INFINITY] {
        let r = Rollout::new("checkout", canary_plan());
        let (r, _) = step(&r, Event::Budget(SloMeasurement { availability, ..Default::default() }), Timestamp(0));
        let budget = r.budget.expect("a budget status");
        assert_eq!(budget.policy, flightdeck_core::DeployPolicy::ApprovalRequired, "availability {availability}");
        let (r, fx) = step(&r, Event::Start, Timestamp(0));
        assert!(matches!(r.phase, Phase::AwaitingApproval { next: 0, gate: Gate::Budget, .. }), "{:?}", r.phase);
        assert!(fx.is_empty(), "{fx:?}");
        assert!(budget.unknown, "{budget:?}");
        assert!(r.needs_human().unwrap().contains("unknown"));
    }
}

#[test]
fn huge_bakes_saturate_instead_of_overflowing() {
    let stage = |weight| flightdeck_core::plan::CanaryStage { weight, bake: std::time::Duration::MAX, approval: false };
    let mut run = Run::new(plan_with(Strategy::Canary { stages: vec![stage(1), stage(10), stage(50)] }));
    assert_eq!(run.r.eta(run.now), Some(std::time::Duration::MAX));
    run.now = Timestamp(u64::MAX);
    run.send(Event::Tick);
    assert_eq!(run.r.stage, 0);
    run.send(cmd(Command::Pause { reason: None }, 0));
    run.send(cmd(Command::Resume, 0));
    assert_eq!(run.r.eta(run.now), Some(std::time::Duration::MAX));
    assert!(run.r.bake_remaining(run.now).is_some());
    assert!(run.r.next_step(run.now).starts_with("Next: 10 %"));
    assert_eq!(Timestamp(5).plus(std::time::Duration::MAX), Timestamp(u64::MAX));
}

#[test]
fn reconcile_never_drives_an_observed_rollout() {
    let mut plan = canary_plan();
    plan.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
    let mut run = Run::new(plan);
    let aborted = flightdeck_core::rollout::Observation {
        canary_weight: Some(0),
        native_status: Some(flightdeck_core::rollout::NativeStatus::Aborted { message: "by argo".into() }),
        ..Default::default()
    };
    run.send(Event::Observation(aborted));
    assert!(matches!(run.r.phase, Phase::Aborted { .. }));
    assert_eq!(run.r.reconcile(), vec![], "Argo owns the weights of an aborted rollout");
    run.r.phase = Phase::RolledBack { by: Actor::new("controller"), reason: "undo".into(), at: run.now };
    assert_eq!(run.r.reconcile(), vec![]);
}

fn weights(fx: &[Effect]) -> Vec<u8> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::SetWeight { canary } => Some(*canary),
            _ => None,
        })
        .collect()
}

/// 0.06 % of the window failed: 40 % of a 99.9 % budget is left.
fn approval_budget() -> Event {
    Event::Budget(SloMeasurement { availability: 0.9994, ..Default::default() })
}

fn frozen_budget() -> Event {
    Event::Budget(SloMeasurement { availability: 0.998, ..Default::default() })
}

#[test]
fn pause_and_resume_at_the_start_gate_sends_no_traffic() {
    let mut run = Run { r: Rollout::new("checkout", canary_plan()), now: Timestamp(0), effects: vec![] };
    run.send(frozen_budget());
    run.send(Event::Start);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 0, gate: Gate::Freeze, .. }));
    run.send(cmd(Command::Pause { reason: None }, 0));
    let fx = run.send(cmd(Command::Resume, 0));
    assert_eq!(weights(&fx), vec![0], "resume re-applies the 0 % the state holds, not stage 1's 1 %");
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 0, gate: Gate::Freeze, .. }), "{:?}", run.r.phase);
    assert_eq!(run.r.canary_weight, 0);
    run.minutes(30, healthy_sample);
    assert_eq!(run.r.canary_weight, 0, "still waiting for an override");
    assert!(weights(&run.r.reconcile()).iter().all(|w| *w == 0), "a restart at the gate sends no traffic either");
}

#[test]
fn pause_and_resume_after_a_gated_retry_keeps_the_canary_at_zero() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::Promote, 0));
    run.send(cmd(Command::Promote, 1));
    assert_eq!(run.r.canary_weight, 50);
    run.send(cmd(Command::Abort { reason: None }, 2));
    run.send(approval_budget());
    let fx = run.send(cmd(Command::Retry, 2));
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 0, gate: Gate::Budget, .. }), "{fx:?}");
    run.send(cmd(Command::Pause { reason: None }, 2));
    let fx = run.send(cmd(Command::Resume, 2));
    assert_eq!(weights(&fx), vec![0], "the state says 0 %: resume must not send stage 3's 50 %");
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 0, .. }), "{:?}", run.r.phase);
    // Stepping back from 0 % would raise the canary; promoting enters the first stage, not the next.
    run.send(cmd(Command::Pause { reason: None }, 2));
    let fx = run.send(cmd(Command::StepBack, 2));
    assert!(rejected(&fx).is_some(), "{fx:?}");
    let fx = run.send(cmd(Command::Promote, 2));
    assert_eq!(weights(&fx), vec![1]);
    assert_eq!((run.r.stage, run.r.canary_weight), (0, 1));
}

#[test]
fn resume_at_a_stage_gate_goes_back_to_waiting_with_the_live_weight() {
    let mut plan = canary_plan();
    if let Strategy::Canary { stages } = &mut plan.strategy {
        stages[2].approval = true;
    }
    let mut run = Run::new(plan);
    run.minutes(31, healthy_sample);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 2, gate: Gate::Stage, .. }));
    // Drift at the gate pauses; resume restores 10 % and waits again.
    let obs = flightdeck_core::rollout::Observation { canary_weight: Some(30), ..Default::default() };
    run.send(Event::Observation(obs));
    assert!(matches!(run.r.phase, Phase::Paused { .. }));
    let fx = run.send(cmd(Command::Resume, 1));
    assert_eq!(weights(&fx), vec![10]);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 2, gate: Gate::Stage, .. }), "{:?}", run.r.phase);
    run.minutes(30, healthy_sample);
    assert_eq!(run.r.canary_weight, 10, "the gate still needs a human");
}

/// Baked and passed stage 1 (1 %), waiting at a budget gate before 10 %.
fn at_a_budget_gate_after_a_pass() -> Run {
    let mut run = Run::new(canary_plan());
    run.send(approval_budget());
    run.minutes(16, healthy_sample);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 1, gate: Gate::Budget, .. }));
    run
}

#[test]
fn a_fail_while_waiting_at_a_budget_gate_rolls_back_and_the_gate_lifting_sends_nothing() {
    let mut run = at_a_budget_gate_after_a_pass();
    run.send(bad_sample());
    assert!(matches!(run.r.phase, Phase::RolledBack { .. }), "{:?}", run.r.phase);
    let fx = run.send(Event::Budget(SloMeasurement { availability: 1.0, ..Default::default() }));
    assert_eq!(weights(&fx), Vec::<u8>::new(), "a failed canary must not advance when the budget recovers");
    assert_eq!(run.r.canary_weight, 0);
}

#[test]
fn a_budget_gate_lifting_after_missing_metrics_waits_for_a_pass() {
    let mut run = at_a_budget_gate_after_a_pass();
    run.send(missing_sample());
    run.send(Event::Budget(SloMeasurement { availability: 1.0, ..Default::default() }));
    assert!(matches!(run.r.phase, Phase::Progressing { .. }), "{:?}", run.r.phase);
    assert_eq!(run.r.stage, 0);
    run.send(Event::Tick);
    assert_eq!(run.r.stage, 0, "no advance blind");
    assert_eq!(run.r.next_step(run.now), "Next: 10 % after a passing verdict");
    run.minutes(1, healthy_sample);
    assert_eq!(run.r.stage, 1);
}

#[test]
fn a_budget_gate_at_the_start_lifts_into_the_first_stage() {
    let mut run = Run { r: Rollout::new("checkout", canary_plan()), now: Timestamp(0), effects: vec![] };
    run.send(approval_budget());
    run.send(Event::Start);
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 0, gate: Gate::Budget, .. }));
    let fx = run.send(Event::Budget(SloMeasurement { availability: 1.0, ..Default::default() }));
    assert_eq!(weights(&fx), vec![1]);
    assert!(matches!(run.r.phase, Phase::Progressing { .. }));
}

#[test]
fn a_new_revision_after_a_failure_takes_traffic_back_first() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::PromoteFull, 0));
    run.send(Event::EffectFailed { effect: Effect::SetWeight { canary: 100 }, error: "timeout".into() });
    assert!(matches!(run.r.phase, Phase::Failed { .. }));
    let fx = run.send(Event::NewRevision { revision: "v3".into() });
    assert_eq!(fx, vec![Effect::SetWeight { canary: 0 }], "traffic may be anywhere after a failure");
    assert_eq!((run.r.phase.clone(), run.r.canary_weight), (Phase::Pending, 0));

    let plan = plan_with(Strategy::BlueGreen { preview: MIN * 5, verification: MIN * 5, approval: false });
    let mut run = Run::new(plan);
    run.send(cmd(Command::Promote, 0));
    run.send(Event::EffectFailed { effect: Effect::SwitchActive { to: Version::Canary }, error: "timeout".into() });
    run.send(cmd(Command::Abort { reason: None }, 1));
    run.send(Event::EffectFailed { effect: Effect::SwitchActive { to: Version::Stable }, error: "timeout".into() });
    assert!(matches!(run.r.phase, Phase::Failed { .. }));
    let fx = run.send(Event::NewRevision { revision: "v3".into() });
    assert_eq!(fx, vec![Effect::SwitchActive { to: Version::Stable }]);
}

#[test]
fn blue_green_promote_full_from_pending_scales_the_new_side_up_before_the_switch() {
    let plan = plan_with(Strategy::BlueGreen { preview: MIN * 5, verification: MIN * 5, approval: false });
    let mut run = Run { r: Rollout::new("checkout", plan), now: Timestamp(0), effects: vec![] };
    let fx = run.send(cmd(Command::PromoteFull, 0));
    let backend: Vec<_> = fx.into_iter().filter(Effect::is_backend).collect();
    assert_eq!(
        backend,
        vec![
            Effect::Scale { version: Version::Canary, percent: 100 },
            Effect::SwitchActive { to: Version::Canary },
            Effect::Scale { version: Version::Stable, percent: 0 },
        ]
    );
}

#[test]
fn a_canary_scaled_down_by_a_rollback_is_scaled_up_before_it_takes_traffic_again() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::Rollback { reason: None }, 0));
    run.send(Event::EffectFailed { effect: Effect::SetWeight { canary: 0 }, error: "timeout".into() });
    // Retry from the failed rollback: the canary was scaled to 0.
    let fx = run.send(cmd(Command::Retry, 0));
    assert_eq!(fx, vec![Effect::Scale { version: Version::Canary, percent: 100 }, Effect::SetWeight { canary: 1 }]);
    // A new revision after a rollback, promoted in one go.
    run.send(cmd(Command::Rollback { reason: None }, 0));
    run.send(Event::NewRevision { revision: "v3".into() });
    let fx = run.send(cmd_for(Command::PromoteFull, 0, "v3"));
    let backend: Vec<_> = fx.into_iter().filter(Effect::is_backend).collect();
    assert_eq!(
        backend,
        vec![Effect::Scale { version: Version::Canary, percent: 100 }, Effect::SetWeight { canary: 100 }]
    );
}

#[test]
fn a_gated_retry_after_a_failure_takes_traffic_back_before_waiting() {
    let mut run = Run::new(canary_plan());
    run.send(cmd(Command::PromoteFull, 0));
    run.send(Event::EffectFailed { effect: Effect::SetWeight { canary: 100 }, error: "timeout".into() });
    assert!(matches!(run.r.phase, Phase::Failed { .. }));
    run.send(approval_budget());
    let fx = run.send(cmd(Command::Retry, 3));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 0 }], "the gate holds the 0 % the state shows");
    assert!(matches!(run.r.phase, Phase::AwaitingApproval { next: 0, .. }));
    assert_eq!(run.r.canary_weight, 0);
}

/// ECS task sets are billed while they run: an aborted canary's goes to 0
/// at once and a promotion removes the old one. ECS targets are observed
/// unless flightdeck is their controller.
#[test]
fn an_ecs_canary_task_set_is_scaled_down_on_abort_and_the_old_one_goes_on_promotion() {
    use flightdeck_core::plan::{BackendKind, Control};
    let mut plan = canary_plan();
    plan.target.backend = BackendKind::Ecs;
    assert_eq!(Rollout::new("checkout", plan.clone()).control, Control::Observed);
    plan.target.params.insert("controller".into(), "external".into());
    assert_eq!(Rollout::new("checkout", plan.clone()).control, Control::Driven);

    let mut run = Run::new(plan.clone());
    let fx = run.send(cmd(Command::Abort { reason: None }, 0));
    assert_eq!(fx, vec![Effect::SetWeight { canary: 0 }, Effect::Scale { version: Version::Canary, percent: 0 }]);

    let mut run = Run::new(plan);
    let fx = run.send(cmd(Command::PromoteFull, 0));
    let backend: Vec<_> = fx.into_iter().filter(Effect::is_backend).collect();
    assert_eq!(
        backend,
        vec![
            Effect::Scale { version: Version::Canary, percent: 100 },
            Effect::SetWeight { canary: 100 },
            Effect::Scale { version: Version::Stable, percent: 0 },
        ]
    );
}

#[test]
fn resume_of_a_rollout_held_by_its_pause_step_says_promote_and_sends_nothing() {
    use flightdeck_core::rollout::{NativeStatus, NativeVerb, Observation, PausedFrom};
    let mut plan = canary_plan();
    plan.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
    let mut run = Run::new(plan);
    let held = |step| Observation {
        native_status: Some(NativeStatus::Paused { reason: "CanaryPauseStep".into(), step, before_switch: false }),
        ..Default::default()
    };
    run.send(Event::Observation(held(Some(2))));
    assert!(matches!(run.r.phase, Phase::Paused { from: PausedFrom::Step { step: 2 }, .. }), "{:?}", run.r.phase);
    assert_eq!(run.r.next_step(run.now), "Next: promote to continue");
    let fx = run.send(cmd(Command::Resume, 0));
    assert_eq!(rejected(&fx), Some(Refusal::HeldByStep { step: 2 }));
    // Promote is the verb that passes a pause step.
    let fx = run.send(cmd(Command::Promote, 0));
    assert_eq!(fx, vec![Effect::Native { verb: NativeVerb::Promote }]);
    // A user's pause (no step) is resumed with the native resume.
    run.send(Event::Observation(held(None)));
    assert!(matches!(run.r.phase, Phase::Paused { from: PausedFrom::Baking, .. }), "{:?}", run.r.phase);
    let fx = run.send(cmd(Command::Resume, 0));
    assert_eq!(fx, vec![Effect::Native { verb: NativeVerb::Resume }]);
}

#[test]
fn resume_of_a_blue_green_rollout_held_before_its_switch_says_promote() {
    use flightdeck_core::rollout::{NativeStatus, Observation, PausedFrom};
    let mut plan = canary_plan();
    plan.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
    let mut run = Run::new(plan);
    let held = Observation {
        native_status: Some(NativeStatus::Paused { reason: "BlueGreenPause".into(), step: None, before_switch: true }),
        ..Default::default()
    };
    run.send(Event::Observation(held));
    assert!(matches!(run.r.phase, Phase::Paused { from: PausedFrom::BeforeSwitch, .. }), "{:?}", run.r.phase);
    assert_eq!(run.r.next_step(run.now), "Next: promote to continue");
    let fx = run.send(cmd(Command::Resume, 0));
    assert_eq!(rejected(&fx), Some(Refusal::HeldBeforeSwitch));
    assert!(!fx.iter().any(|e| matches!(e, Effect::Native { .. })), "nothing sent: {fx:?}");
}

#[test]
fn native_verbs_without_a_flightdeck_equivalent_go_to_the_controller() {
    use flightdeck_core::rollout::{NativeStatus, NativeVerb, Observation};
    let mut plan = canary_plan();
    plan.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
    let mut run = Run::new(plan);
    let native = |verb| Command::Native { verb };
    let set_image = NativeVerb::SetImage { container: "web".into(), image: "web:2".into() };
    let fx = run.send(cmd(native(NativeVerb::TerminateAnalysis), 0));
    assert_eq!(fx, vec![Effect::Native { verb: NativeVerb::TerminateAnalysis }]);
    run.send(Event::Observation(Observation { native_status: Some(NativeStatus::Healthy), ..Default::default() }));
    assert!(matches!(run.r.phase, Phase::Promoted { .. }));
    // Set image and restart start the next revision from a promoted rollout; undo goes back to an older one.
    assert_eq!(run.send(cmd(native(set_image.clone()), 0)), vec![Effect::Native { verb: set_image }]);
    assert_eq!(run.send(cmd(native(NativeVerb::Restart), 0)), vec![Effect::Native { verb: NativeVerb::Restart }]);
    // Undo to a revision only reduces exposure: it applies even when sent for another stage.
    let undo = NativeVerb::UndoTo { revision: 3 };
    assert_eq!(run.send(cmd(native(undo.clone()), 7)), vec![Effect::Native { verb: undo }]);
    let fx = run.send(cmd(native(NativeVerb::TerminateAnalysis), 0));
    assert_eq!(rejected(&fx), Some(Refusal::NoAnalysisRunning { phase: "promoted".into() }));
    // A driven rollout has no native controller to send them to.
    let mut driven = Run::new(canary_plan());
    let fx = driven.send(cmd(native(NativeVerb::Restart), 0));
    assert_eq!(rejected(&fx), Some(Refusal::NativeVerbOnDriven { verb: "restart".into() }));
}

/// Argo Rollouts' undo has no state check: after a bad promotion it is
/// how the previous revision comes back. A rollback of a Healthy (promoted)
/// observed rollout is sent as undo; other verbs wait for a new revision.
#[test]
fn a_rollback_of_a_promoted_observed_rollout_is_an_undo() {
    use flightdeck_core::rollout::{NativeStatus, NativeVerb, Observation};
    let mut plan = canary_plan();
    plan.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
    let mut run = Run::new(plan);
    run.send(Event::Observation(Observation { native_status: Some(NativeStatus::Healthy), ..Default::default() }));
    assert!(matches!(run.r.phase, Phase::Promoted { .. }), "{:?}", run.r.phase);
    let stage = run.r.stage;
    let fx = run.send(cmd(Command::Rollback { reason: None }, stage));
    assert_eq!(fx, vec![Effect::Native { verb: NativeVerb::Undo }]);
    let fx = run.send(cmd(Command::Promote, stage));
    assert_eq!(rejected(&fx), Some(Refusal::Finished { phase: "promoted".into() }));
}
