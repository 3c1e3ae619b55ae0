//! Property tests: random event sequences against the state machine's invariants.

mod common;

use common::*;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::Strategy as PlanStrategy;
use flightdeck_core::rollout::{step, Command, Effect, Event, Notice, Observation, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use proptest::prelude::*;

/// An event template; commands pick their expected stage when applied.
#[derive(Debug, Clone)]
enum Op {
    Start,
    Tick(u64),
    Healthy,
    Bad,
    Missing,
    Budget(f64),
    Observe(u8),
    Failed,
    /// A revert effect (weight 0) that did not reach the system.
    FailedRevert,
    NewRevision,
    Cmd(Command, Option<usize>),
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Pause { reason: None }),
        Just(Command::Resume),
        Just(Command::Promote),
        Just(Command::PromoteFull),
        Just(Command::StepBack),
        Just(Command::Abort { reason: None }),
        Just(Command::Rollback { reason: None }),
        Just(Command::Retry),
        Just(Command::Approve),
        Just(Command::OverrideFreeze { reason: "p0 fix".into() }),
        Just(Command::OverrideFreeze { reason: String::new() }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Start),
        1 => (0u64..20 * 60_000).prop_map(Op::Tick),
        3 => Just(Op::Healthy),
        1 => Just(Op::Bad),
        1 => Just(Op::Missing),
        1 => prop_oneof![Just(1.0), Just(0.9985), Just(0.998)].prop_map(Op::Budget),
        1 => (0u8..=100).prop_map(Op::Observe),
        1 => Just(Op::Failed),
        1 => Just(Op::FailedRevert),
        1 => Just(Op::NewRevision),
        4 => (command(), proptest::option::weighted(0.2, 0usize..6)).prop_map(|(c, s)| Op::Cmd(c, s)),
    ]
}

fn plan() -> impl Strategy<Value = flightdeck_core::Plan> {
    prop_oneof![
        Just(canary_plan()),
        Just(plan_with(PlanStrategy::BlueGreen { preview: MIN, verification: MIN * 2, approval: true })),
        Just(plan_with(PlanStrategy::Rolling { batch_percent: 30, bake: MIN })),
        Just({
            let mut observed = canary_plan();
            observed.target.backend = flightdeck_core::plan::BackendKind::ArgoRollouts;
            observed
        }),
    ]
}

fn event(op: &Op, r: &Rollout) -> Event {
    match op {
        Op::Start => Event::Start,
        Op::Tick(_) => Event::Tick,
        Op::Healthy => healthy_sample(),
        Op::Bad => bad_sample(),
        Op::Missing => missing_sample(),
        Op::Budget(a) => Event::Budget(SloMeasurement { availability: *a, ..Default::default() }),
        Op::Observe(w) => Event::Observation(Observation { canary_weight: Some(*w), ..Default::default() }),
        Op::Failed => {
            Event::EffectFailed { effect: Effect::SetWeight { canary: r.canary_weight }, error: "boom".into() }
        }
        Op::FailedRevert => Event::EffectFailed { effect: Effect::SetWeight { canary: 0 }, error: "boom".into() },
        Op::NewRevision => Event::NewRevision { revision: "v9".into() },
        Op::Cmd(c, stage) => cmd_for(c.clone(), stage.unwrap_or(r.stage), &r.canary_revision),
    }
}

/// Events that may legitimately raise the canary weight.
fn may_raise_weight(e: &Event) -> bool {
    // A budget that recovers lifts its gate, like a tick after a bake.
    matches!(e, Event::Start | Event::Tick | Event::Budget(_))
        || matches!(e, Event::Command(c) if matches!(
            c.command,
            Command::Promote | Command::PromoteFull | Command::Approve | Command::OverrideFreeze { .. } | Command::Retry
        ))
}

fn raises_traffic(fx: &[Effect]) -> bool {
    fx.iter().any(|e| {
        matches!(e, Effect::SetWeight { canary } if *canary > 0)
            || matches!(e, Effect::SwitchActive { to: flightdeck_core::rollout::Version::Canary })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_event_sequences(plan in plan(), ops in proptest::collection::vec(op(), 1..80)) {
        let mut r = Rollout::new("p", plan);
        let mut now = Timestamp(0);
        for op in &ops {
            if let Op::Tick(ms) = op { now = Timestamp(now.0 + ms); }
            let e = event(op, &r);
            let (next, fx) = step(&r, e.clone(), now);

            // An observed rollout mirrors its native controller: weights and
            // phases come from observations, so only the command rules apply.
            let driven = r.control == flightdeck_core::plan::Control::Driven;

            // The weight never exceeds the current stage's weight.
            prop_assert!(!driven ||next.canary_weight <= next.stages()[next.stage].weight,
                "weight {} above stage {} weight", next.canary_weight, next.stage);

            // Only promote-like events raise the weight or move the stage forward.
            if driven && !may_raise_weight(&e) {
                prop_assert!(next.canary_weight <= r.canary_weight, "{e:?} raised the weight");
                prop_assert!(next.stage <= r.stage, "{e:?} moved the stage forward");
            }

            // Observed or driven: a stale command changes nothing and says why,
            // and a command never moves an observed rollout by itself.
            if let (false, Event::Command(_)) = (driven, &e) {
                prop_assert_eq!(&next.phase, &r.phase);
                prop_assert_eq!(next.canary_weight, r.canary_weight);
                let only_verbs = fx.iter().all(|f| matches!(f, Effect::Native { .. } | Effect::Notify(_)));
                prop_assert!(only_verbs, "{:?}", fx);
            }
            // A stale forward command changes nothing and says why.
            if let Event::Command(c) = &e {
                let safety = matches!(c.command, Command::Abort { .. } | Command::Rollback { .. } | Command::Pause { .. });
                if !safety && c.expected_stage != r.stage {
                    prop_assert_eq!(&next, &r);
                    let is_stale_notice = matches!(fx.as_slice(),
                        [Effect::Notify(Notice::Rejected { reason, .. })] if reason.starts_with("stale"));
                    prop_assert!(is_stale_notice, "{:?}", fx);
                }
            }

            // Abort and rollback hold weight 0 until someone explicitly restarts.
            let held = matches!(r.phase, Phase::Aborted { .. } | Phase::RolledBack { .. });
            let restart = matches!(&e, Event::NewRevision { .. })
                || matches!(&e, Event::Command(c) if c.command == Command::Retry);
            if driven && held && !restart {
                prop_assert_eq!(next.canary_weight, 0);
                prop_assert!(!raises_traffic(&fx), "{e:?} sent traffic to the canary after {:?}: {fx:?}", r.phase);
            }

            // Promoted and rolled back are terminal until a new revision;
            // only the system reporting that they were not applied moves them (to failed).
            let not_applied = matches!(e, Event::EffectFailed { .. });
            if driven && r.phase.is_terminal() && !matches!(e, Event::NewRevision { .. }) && !not_applied {
                prop_assert_eq!(&next.phase, &r.phase);
                prop_assert_eq!(next.stage, r.stage);
            }

            r = next;
        }
    }

    #[test]
    fn replaying_journaled_events_gives_the_same_state(plan in plan(), ops in proptest::collection::vec(op(), 1..40)) {
        // What the journal does: every event goes through JSON (as written
        // to disk) and is stepped again from the plan's initial state.
        let mut live = Rollout::new("p", plan.clone());
        let mut journal: Vec<(String, Timestamp)> = Vec::new();
        let mut now = Timestamp(0);
        for op in &ops {
            if let Op::Tick(ms) = op { now = Timestamp(now.0 + ms); }
            let e = event(op, &live);
            journal.push((serde_json::to_string(&e).unwrap(), now));
            live = step(&live, e, now).0;
        }
        let mut replayed = Rollout::new("p", plan);
        for (line, at) in &journal {
            let e: Event = serde_json::from_str(line).unwrap();
            replayed = step(&replayed, e, *at).0;
        }
        prop_assert_eq!(replayed, live);
    }
}
