//! N of M named approvers for a stage, and viewers who send nothing.

mod common;

use common::*;
use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::{step, Actor, Command, CommandRequest, Effect, Event, Notice, Phase, Role, Rollout};
use flightdeck_core::time::Timestamp;

/// Stage 2 (10 %) needs two of alice, bob and carol.
fn plan() -> Plan {
    let text = r#"
[rollout]
name = "checkout"
stable = "v1"
canary = "v2"

[target]
backend = "sim"
group = "sim"

[[strategy.stages]]
weight = 1
bake = "15m"

[[strategy.stages]]
weight = 10
bake = "15m"
approvers = ["alice", "bob", "carol"]
required = 2

[[strategy.stages]]
weight = 100
bake = "0s"
"#;
    Plan::parse("approvals.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn from(who: &str, role: Role, command: Command, stage: usize) -> Event {
    Event::Command(CommandRequest {
        actor: Actor::new(who),
        command,
        expected_stage: stage,
        expected_revision: "v2".into(),
        expected_step: None,
        role,
        session: Some("socket #1".into()),
    })
}

fn approve(who: &str) -> Event {
    from(who, Role::Captain, Command::Approve, 0)
}

/// The refusal in words (the typed value is `verbs::Refusal`).
fn refusal(effects: &[Effect]) -> Option<String> {
    flightdeck_core::verbs::refusal_in(effects).map(|r| r.to_string())
}

/// Started, and baked stage 1 until the gate of stage 2.
fn at_the_gate() -> Rollout {
    let mut r = Rollout::new("checkout", plan());
    r = step(&r, Event::Start, Timestamp(0)).0;
    for minute in 1..=16 {
        r = step(&r, healthy_sample(), Timestamp(minute * 60_000)).0;
        r = step(&r, Event::Tick, Timestamp(minute * 60_000)).0;
    }
    assert!(matches!(r.phase, Phase::AwaitingApproval { next: 1, .. }), "{:?}", r.phase);
    r
}

#[test]
fn the_plan_names_the_approvers_and_how_many_are_needed() {
    let plan = plan();
    let named = plan.approvers_for(1).expect("stage 2 has approvers");
    assert_eq!((named.names.len(), named.required), (3, 2));
    assert!(plan.stages()[1].approval, "named approvers gate their stage");
    let bad = plan_text_with("approvers = [\"alice\"]\nrequired = 2");
    let err = Plan::parse("p.toml", &bad).unwrap_err().to_string();
    assert!(err.starts_with("p.toml:17:12: strategy.stages[1].required: 2 is out of range"), "{err}");
    let twice = plan_text_with("approvers = [\"alice\", \"alice\"]");
    let err = Plan::parse("p.toml", &twice).unwrap_err().to_string();
    assert!(err.contains("strategy.stages[1].approvers: \"alice\" is named twice"), "{err}");
}

fn plan_text_with(keys: &str) -> String {
    format!(
        "[rollout]\nname = \"c\"\nstable = \"v1\"\ncanary = \"v2\"\n\n[target]\nbackend = \"sim\"\ngroup = \"g\"\n\n\
         [[strategy.stages]]\nweight = 1\nbake = \"15m\"\n\n[[strategy.stages]]\nweight = 10\n{keys}\n"
    )
}

#[test]
fn two_of_three_let_the_stage_in_and_nobody_counts_twice() {
    let r = at_the_gate();
    let (r, fx) = step(&r, approve("alice"), Timestamp(1_000_000));
    assert_eq!(refusal(&fx), None);
    assert!(matches!(r.phase, Phase::AwaitingApproval { next: 1, .. }), "one approval is not enough");
    assert!(r.needs_human().unwrap().contains("2 of alice, bob, carol needed; approved by alice"));
    let said = fx.iter().find_map(|e| match e {
        Effect::Notify(Notice::Info { message }) => Some(message.clone()),
        _ => None,
    });
    assert_eq!(said.as_deref(), Some("alice approved stage 2 (1 of 2); waiting for 1 more of bob, carol"));

    let (same, fx) = step(&r, approve("alice"), Timestamp(1_001_000));
    assert_eq!(same, r, "a second approval by the same person changes nothing");
    assert_eq!(refusal(&fx).as_deref(), Some("alice already approved stage 2; waiting for 1 more of bob, carol"));

    let (same, fx) = step(&r, approve("mallory"), Timestamp(1_002_000));
    assert_eq!(same, r);
    assert_eq!(
        refusal(&fx).as_deref(),
        Some("mallory is not an approver of stage 2; its approvers are alice, bob, carol")
    );

    let (r, fx) = step(&r, approve("bob"), Timestamp(1_003_000));
    assert_eq!(refusal(&fx), None);
    assert_eq!((r.stage, r.canary_weight), (1, 10));
    assert!(r.approvals.is_empty(), "the stage started: approvals are spent");
}

#[test]
fn a_promote_counts_as_an_approval_and_cannot_skip_the_approvers() {
    let mut r = Rollout::new("checkout", plan());
    r = step(&r, Event::Start, Timestamp(0)).0;
    // Mid-bake, alice promotes: her approval, and the rollout waits for one more.
    let (r, fx) = step(&r, from("alice", Role::Captain, Command::Promote, 0), Timestamp(60_000));
    assert_eq!(refusal(&fx), None);
    assert!(matches!(r.phase, Phase::AwaitingApproval { next: 1, .. }), "{:?}", r.phase);
    assert_eq!(r.stage, 0);
    let (same, fx) = step(&r, from("dave", Role::Captain, Command::PromoteFull, 0), Timestamp(61_000));
    assert_eq!(same, r);
    assert_eq!(
        refusal(&fx).as_deref(),
        Some("stage 2 needs 2 of alice, bob, carol to approve: promote-full cannot skip it")
    );
    let (r, _) = step(&r, from("carol", Role::Captain, Command::Promote, 0), Timestamp(62_000));
    assert_eq!(r.stage, 1);
}

#[test]
fn a_viewer_is_refused_even_for_a_safety_command() {
    let r = at_the_gate();
    for command in [Command::Approve, Command::Abort { reason: None }, Command::Pause { reason: None }] {
        let (same, fx) = step(&r, from("bob", Role::Viewer, command, 0), Timestamp(1_000_000));
        assert_eq!(same, r);
        assert_eq!(refusal(&fx).as_deref(), Some("bob is a viewer: viewers see everything and send nothing"));
    }
}
