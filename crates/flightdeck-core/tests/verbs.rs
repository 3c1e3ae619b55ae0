//! The verb table and `verbs::ask`: which commands ask first, and the
//! confirmation written from the dry run's effects.

mod common;

use common::*;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::{BackendKind, CanaryStage, Plan, Strategy};
use flightdeck_core::rollout::{step, Actor, Command, CommandRequest, Event, NativeVerb, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use flightdeck_core::verbs::{self, Answer, Ask, Confirmation, Direction, Refusal, VERBS};

fn started(plan: Plan) -> Rollout {
    let (r, _) = step(&Rollout::new("t/checkout", plan), Event::Start, Timestamp(0));
    r
}

fn request(r: &Rollout, command: Command) -> CommandRequest {
    CommandRequest {
        actor: Actor::new("alice"),
        command,
        expected_stage: r.stage,
        expected_revision: r.canary_revision.clone(),
        expected_step: r.native_step,
        role: Default::default(),
        session: None,
    }
}

fn ask(r: &Rollout, command: Command) -> Ask {
    verbs::ask(r, &request(r, command), Timestamp(60_000))
}

fn confirmation(ask: Ask) -> Confirmation {
    match ask {
        Ask::Confirm(c) => c,
        other => panic!("wanted a confirmation, got {other:?}"),
    }
}

fn production(mut plan: Plan) -> Plan {
    plan.target.production = true;
    plan
}

/// 1 → 10 (approval) → 100.
fn gated_plan() -> Plan {
    let stage = |weight, mins, approval| CanaryStage { weight, bake: MIN * mins, approval };
    plan_with(Strategy::Canary { stages: vec![stage(1, 10, false), stage(10, 10, true), stage(100, 0, false)] })
}

/// Baked the first stage: now waiting at the gate in front of stage 2.
fn at_gate(plan: Plan) -> Rollout {
    let mut r = started(plan);
    for minute in 1..=11 {
        let at = Timestamp(minute * 60_000);
        r = step(&r, healthy_sample(), at).0;
        r = step(&r, Event::Tick, at).0;
    }
    assert!(matches!(r.phase, Phase::AwaitingApproval { next: 1, .. }), "{:?}", r.phase);
    r
}

#[test]
fn every_command_has_one_row_and_only_commands_that_reduce_exposure_are_never_stale() {
    let commands = [
        Command::Pause { reason: None },
        Command::Resume,
        Command::Promote,
        Command::PromoteFull,
        Command::StepBack,
        Command::Abort { reason: None },
        Command::Rollback { reason: None },
        Command::Retry,
        Command::Approve,
        Command::OverrideFreeze { reason: "x".into() },
        Command::Acknowledge,
        Command::Native { verb: NativeVerb::Restart },
        Command::Native { verb: NativeVerb::UndoTo { revision: 3 } },
    ];
    for command in &commands {
        let row = verbs::verb_of(command);
        // `undo 3` in the palette; `undo-to` in the audit log.
        let typed = if command.verb() == "undo-to" { "undo" } else { command.verb() };
        assert_eq!(row.name, typed, "{command:?}");
        if row.never_stale {
            assert_eq!(row.direction, Direction::ReducesExposure, "{}", row.name);
        }
    }
    let names: Vec<&str> = VERBS.iter().map(|v| v.name).collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique, "one row per verb");
    assert!(VERBS.iter().all(|v| !v.viewer_may_send()), "viewers send nothing");
}

#[test]
fn a_promote_at_a_production_gate_is_an_approval_and_asks() {
    let r = at_gate(production(gated_plan()));
    for command in [Command::Promote, Command::Approve] {
        let c = confirmation(ask(&r, command.clone()));
        assert_eq!(c.title, "Approve checkout into stage 2/3?", "{command:?}");
        assert_eq!(c.changes, vec!["canary weight 1 % → 10 % on sim".to_string()]);
        assert!(c.outcome.contains("the plan asks for approval before this stage"), "{}", c.outcome);
        assert!(c.outcome.ends_with("PRODUCTION"), "{}", c.outcome);
        assert_eq!(c.answer, Answer::Key);
    }
    // The same gate outside production passes with the key alone.
    let r = at_gate(gated_plan());
    assert_eq!(ask(&r, Command::Approve), Ask::Send);
    assert_eq!(ask(&r, Command::Promote), Ask::Send);
}

#[test]
fn a_promote_that_reaches_100_percent_asks_like_promote_full() {
    let mut r = started(canary_plan());
    for stage in 1..=2 {
        assert_eq!(ask(&r, Command::Promote), Ask::Send, "stage {stage}");
        r = step(&r, Event::Command(request(&r, Command::Promote)), Timestamp(stage * 1000)).0;
    }
    assert_eq!(r.stage, 2);
    let c = confirmation(ask(&r, Command::Promote));
    assert_eq!(c.title, "Promote checkout to 100 %?");
    assert!(c.changes.contains(&"canary weight 50 % → 100 % on sim".to_string()), "{:?}", c.changes);
    assert!(c.outcome.starts_with("then promoted at stage 4/4 (100 %)"), "{}", c.outcome);
}

#[test]
fn production_promote_full_and_freeze_overrides_ask_for_the_name() {
    let r = started(production(canary_plan()));
    assert_eq!(confirmation(ask(&r, Command::PromoteFull)).answer, Answer::TypeName("checkout".into()));
    let r = started(canary_plan());
    assert_eq!(confirmation(ask(&r, Command::PromoteFull)).answer, Answer::Key);
    // Abort asks with a key in production too: it only reduces exposure.
    let r = started(production(canary_plan()));
    assert_eq!(confirmation(ask(&r, Command::Abort { reason: None })).answer, Answer::Key);
}

#[test]
fn an_override_needs_a_frozen_budget_and_is_refused_without_one() {
    let r = started(canary_plan());
    let override_ = || Command::OverrideFreeze { reason: "hotfix".into() };
    assert_eq!(ask(&r, override_()), Ask::Refused(Refusal::NotFrozen));
    let (after, fx) = step(&r, Event::Command(request(&r, override_())), Timestamp(1));
    assert_eq!(after.freeze_override, None, "nothing armed");
    assert_eq!(verbs::refusal_in(&fx), Some(Refusal::NotFrozen));
    // Frozen (99.8 % against 99.9 %): the override asks, with its reason.
    let (frozen, _) =
        step(&r, Event::Budget(SloMeasurement { availability: 0.998, ..Default::default() }), Timestamp(1));
    let c = confirmation(ask(&frozen, override_()));
    assert!(c.outcome.contains("recorded reason: “hotfix”"), "{}", c.outcome);
}

#[test]
fn an_abort_says_what_its_effects_do_on_each_backend() {
    // The simulator keeps an aborted canary running without traffic.
    let r = started(canary_plan());
    let c = confirmation(ask(&r, Command::Abort { reason: None }));
    assert_eq!(c.changes[0], "canary weight 1 % → 0 % on sim");
    assert!(c.changes.iter().any(|l| l.contains("keeps running, without traffic")), "{:?}", c.changes);
    // A driven ECS canary removes the idle task set: the text says so, from the effect.
    let mut plan = canary_plan();
    plan.target.backend = BackendKind::Ecs;
    plan.target.params.insert("controller".into(), "external".into());
    let r = started(plan);
    let c = confirmation(ask(&r, Command::Abort { reason: None }));
    assert!(c.changes.iter().any(|l| l == "canary v2 scaled to 0 (no longer running)"), "{:?}", c.changes);
    assert!(!c.changes.iter().any(|l| l.contains("keeps running")), "{:?}", c.changes);
    // A rollback scales the canary down everywhere.
    let r = started(canary_plan());
    let c = confirmation(ask(&r, Command::Rollback { reason: None }));
    assert_eq!(c.title, "Roll back checkout?");
    assert!(c.changes.iter().any(|l| l.contains("scaled to 0")), "{:?}", c.changes);
}

#[test]
fn what_the_core_refuses_is_refused_before_any_dialog() {
    let r = started(canary_plan());
    assert_eq!(
        ask(&r, Command::Retry),
        Ask::Refused(Refusal::NotInPhase { verb: "retry".into(), phase: "progressing".into() })
    );
    assert_eq!(ask(&r, Command::Approve), Ask::Refused(Refusal::NothingWaiting));
    let mut viewer = request(&r, Command::Abort { reason: None });
    viewer.role = flightdeck_core::rollout::Role::Viewer;
    assert_eq!(verbs::ask(&r, &viewer, Timestamp(1)), Ask::Refused(Refusal::Viewer { actor: "alice".into() }));
    // Pause and step back need no "yes".
    assert_eq!(ask(&r, Command::Pause { reason: None }), Ask::Send);
}

#[test]
fn a_rollback_asks_for_attention_until_someone_acknowledges_it() {
    use flightdeck_core::view::attention;
    let r = started(canary_plan());
    assert_eq!(attention(&r), None, "a baking canary needs nobody");
    assert_eq!(
        ask(&r, Command::Acknowledge),
        Ask::Refused(Refusal::NothingToAcknowledge { phase: "progressing".into() })
    );
    let (r, _) = step(&r, bad_sample(), Timestamp(60_000));
    assert!(matches!(r.phase, Phase::RolledBack { .. }), "{:?}", r.phase);
    let why = attention(&r).expect("a rollback stays loud");
    assert!(why.starts_with("rolled back by analysis: analysis failed"), "{why}");
    // Acknowledging needs no "yes", changes nothing on the system, and is recorded.
    assert_eq!(ask(&r, Command::Acknowledge), Ask::Send);
    let (seen, effects) = step(&r, Event::Command(request(&r, Command::Acknowledge)), Timestamp(61_000));
    assert!(effects.iter().all(|e| !e.is_backend()), "{effects:?}");
    assert_eq!(seen.phase, r.phase, "still rolled back");
    assert_eq!(attention(&seen), None);
    assert_eq!(seen.acknowledged.as_ref().map(|n| n.actor.0.as_str()), Some("alice"));
    assert_eq!(ask(&seen, Command::Acknowledge), Ask::Refused(Refusal::AlreadyAcknowledged { by: "alice".into() }));
    // The next revision starts unacknowledged.
    let (next, _) = step(&seen, Event::NewRevision { revision: "v3".into() }, Timestamp(62_000));
    assert_eq!(next.acknowledged, None);
}
