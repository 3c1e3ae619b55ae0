//! Property tests: random event sequences against the state machine's invariants.

mod common;

use common::*;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::{CanaryStage, Control, Strategy as PlanStrategy};
use flightdeck_core::rollout::{
    step, Command, Effect, Event, NativeStatus, NativeVerb, Notice, Observation, PausedFrom, Phase, Rollout, Version,
};
use flightdeck_core::time::Timestamp;
use proptest::prelude::*;

/// An event template; commands pick their expected stage and revision when
/// applied (the rollout's own unless the template names another).
#[derive(Debug, Clone)]
enum Op {
    Start,
    Tick(u64),
    Healthy,
    Bad,
    Missing,
    Budget(f64),
    Observe(u8),
    /// A native controller's status (observed rollouts mirror it).
    Native(u8, usize),
    Failed,
    /// A revert effect (weight 0) that did not reach the system.
    FailedRevert,
    NewRevision(u8),
    Cmd(Command, Option<usize>, Option<&'static str>),
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
        1 => prop_oneof![9 => 0u64..20 * 60_000, 1 => Just(u64::MAX / 2), 1 => Just(u64::MAX)].prop_map(Op::Tick),
        3 => Just(Op::Healthy),
        1 => Just(Op::Bad),
        1 => Just(Op::Missing),
        // Auto, approval required (40 % left), freeze, and readings that mean nothing.
        2 => prop_oneof![
            Just(1.0), Just(0.9994), Just(0.9985), Just(0.998), Just(f64::NAN), Just(-1.0), Just(2.0)
        ].prop_map(Op::Budget),
        1 => (0u8..=100).prop_map(Op::Observe),
        1 => (0u8..5, 0usize..4).prop_map(|(s, stage)| Op::Native(s, stage)),
        1 => Just(Op::Failed),
        1 => Just(Op::FailedRevert),
        1 => (0u8..3).prop_map(Op::NewRevision),
        4 => (
            command(),
            proptest::option::weighted(0.2, 0usize..6),
            proptest::option::weighted(0.15, prop_oneof![Just("v1"), Just("v2"), Just("v3"), Just("v9")]),
        ).prop_map(|(c, s, v)| Op::Cmd(c, s, v)),
    ]
}

fn plan() -> impl Strategy<Value = flightdeck_core::Plan> {
    prop_oneof![
        Just(canary_plan()),
        Just({
            let mut gated = canary_plan();
            if let PlanStrategy::Canary { stages } = &mut gated.strategy {
                stages[2].approval = true;
            }
            gated
        }),
        // Bakes that never end: time math must saturate, not panic.
        Just(plan_with(PlanStrategy::Canary {
            stages: vec![
                CanaryStage { weight: 5, bake: std::time::Duration::MAX, approval: false },
                CanaryStage { weight: 50, bake: std::time::Duration::MAX, approval: true },
            ],
        })),
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
        Op::Native(status, stage) => Event::Observation(Observation {
            canary_weight: Some([0, 20, 40, 100, 0][*status as usize]),
            native_stage: Some(*stage),
            native_status: Some(match status {
                0 => NativeStatus::Aborted { message: "aborted by the controller".into() },
                1 => NativeStatus::Paused { reason: "CanaryPauseStep".into(), step: None, before_switch: false },
                2 => NativeStatus::Progressing,
                3 => NativeStatus::Healthy,
                _ => NativeStatus::Degraded { message: "ProgressDeadlineExceeded".into() },
            }),
            native_detail: None,
            native_revision: None,
            native_step: None,
            ..Default::default()
        }),
        Op::Failed => {
            Event::EffectFailed { effect: Effect::SetWeight { canary: r.canary_weight }, error: "boom".into() }
        }
        Op::FailedRevert => Event::EffectFailed { effect: Effect::SetWeight { canary: 0 }, error: "boom".into() },
        Op::NewRevision(n) => Event::NewRevision { revision: format!("v{}", 3 + n) },
        Op::Cmd(c, stage, revision) => {
            cmd_for(c.clone(), stage.unwrap_or(r.stage), revision.unwrap_or(r.canary_revision.as_str()))
        }
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
    traffic(fx).iter().any(|w| *w > 0)
}

/// The canary shares the effects send: weights, and a switch as 100 or 0.
fn traffic(fx: &[Effect]) -> Vec<u8> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::SetWeight { canary } => Some(*canary),
            Effect::SwitchActive { to } => Some(if *to == Version::Canary { 100 } else { 0 }),
            _ => None,
        })
        .collect()
}

fn set_weights(fx: &[Effect]) -> Vec<u8> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::SetWeight { canary } => Some(*canary),
            _ => None,
        })
        .collect()
}

/// Forward commands move a rollout on; the others only reduce exposure.
/// Written out here, apart from the verb table, so the table is checked.
fn is_safety(c: &Command) -> bool {
    matches!(c, Command::Abort { .. } | Command::Rollback { .. } | Command::Pause { .. })
}

/// Waiting at a gate, or paused while waiting at one: `Some(next)`.
fn gated(r: &Rollout) -> Option<usize> {
    match r.phase {
        Phase::AwaitingApproval { next, .. } | Phase::Paused { from: PausedFrom::Gate { next, .. }, .. } => Some(next),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_event_sequences(plan in plan(), ops in proptest::collection::vec(op(), 1..80)) {
        let mut r = Rollout::new("p", plan);
        // What the system looks like if every effect sent so far applied:
        // the canary's traffic share and whether the canary side runs.
        let modelled = !matches!(r.plan().strategy, PlanStrategy::Rolling { .. }) && r.control == Control::Driven;
        let (mut sent, mut ready) = (0u8, false);
        let mut now = Timestamp(0);
        for op in &ops {
            if let Op::Tick(ms) = op { now = Timestamp(now.0.saturating_add(*ms)); }
            let e = event(op, &r);
            let (next, fx) = step(&r, e.clone(), now);

            // What the cockpit reads of every state never panics either.
            let _ = (next.eta(now), next.bake_remaining(now), next.next_step(now), next.needs_human());

            // An observed rollout mirrors its native controller: weights and
            // phases come from observations, so only the command rules apply.
            let driven = r.control == Control::Driven;

            // Every weight sent is the weight the state then holds, within its
            // stage; a restart (reconcile) re-sends exactly that too.
            let stage_weight = next.stages()[next.stage].weight;
            for w in set_weights(&fx).into_iter().chain(set_weights(&next.reconcile())) {
                prop_assert!(driven, "{e:?} sent a weight to an observed rollout: {fx:?}");
                prop_assert_eq!(w, next.canary_weight, "{:?} sent {} % but the state holds {} %: {:?}", e, w, next.canary_weight, fx);
                prop_assert!(w <= stage_weight, "{e:?} sent {w} % above stage {} ({stage_weight} %)", next.stage);
            }
            // An observed rollout only ever gets its controller's verbs.
            if !driven {
                let only_verbs = fx.iter().chain(&next.reconcile()).all(|f| matches!(f, Effect::Native { .. } | Effect::Notify(_)));
                prop_assert!(only_verbs, "{e:?}: {fx:?}");
            }

            // The canary runs before it gets traffic, and outside a failure
            // the traffic sent is the traffic the state shows.
            if modelled {
                if matches!((&e, &r.phase), (Event::NewRevision { .. }, Phase::Promoted { .. })) {
                    // The promoted revision is the stable one now; the new
                    // revision's canary side has yet to run.
                    (sent, ready) = (0, false);
                }
                for f in &fx {
                    match f {
                        Effect::Scale { version: Version::Canary, percent } => ready = *percent > 0,
                        Effect::SetWeight { canary } => sent = *canary,
                        Effect::SwitchActive { to } => sent = if *to == Version::Canary { 100 } else { 0 },
                        _ => {}
                    }
                    let traffic_to_canary = matches!(f, Effect::SetWeight { canary } if *canary > 0)
                        || matches!(f, Effect::SwitchActive { to: Version::Canary });
                    prop_assert!(!traffic_to_canary || ready, "{e:?} sent traffic to a canary not scaled up: {fx:?}");
                }
                if !matches!(next.phase, Phase::Failed { .. }) {
                    prop_assert_eq!(sent, next.canary_weight, "{:?} left {} % sent but the state shows {} % ({:?})", e, sent, next.canary_weight, next.phase);
                }
            }

            // A budget nobody can read never auto-approves; while the budget
            // asks for a human, nothing but a command sends more traffic.
            if let Event::Budget(m) = &e {
                if !(0.0..=1.0).contains(&m.availability) {
                    let policy = next.budget.map(|b| b.policy);
                    prop_assert_eq!(policy, Some(flightdeck_core::DeployPolicy::ApprovalRequired));
                }
            }
            let held_by_budget = next.budget.is_some_and(|b| match b.policy {
                flightdeck_core::DeployPolicy::Auto => false,
                flightdeck_core::DeployPolicy::ApprovalRequired => true,
                flightdeck_core::DeployPolicy::Freeze => next.freeze_override.is_none(),
            });
            if driven && held_by_budget && !matches!(e, Event::Command(_)) {
                let more = traffic(&fx).into_iter().any(|w| w > r.canary_weight);
                prop_assert!(!more, "{e:?} sent more traffic under a budget gate: {fx:?}");
            }

            // Gated, aborted or rolled back: no traffic beyond what was
            // already live, and none at all in front of the first stage or
            // after an abort or rollback.
            if driven {
                if let Some(gate) = gated(&next) {
                    let held = traffic(&fx).into_iter().all(|w| w <= r.canary_weight && w <= next.canary_weight);
                    prop_assert!(held, "{e:?} sent traffic while gated ({:?}): {fx:?}", next.phase);
                    if gate <= next.stage {
                        prop_assert!(!raises_traffic(&fx), "{e:?} sent traffic before the first stage: {fx:?}");
                        prop_assert_eq!(next.canary_weight, 0);
                    }
                }
                if matches!(next.phase, Phase::Aborted { .. } | Phase::RolledBack { .. }) {
                    prop_assert!(!raises_traffic(&fx), "{e:?} sent traffic while {:?}: {fx:?}", next.phase);
                    prop_assert_eq!(next.canary_weight, 0);
                }
            }

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
            if let Event::Command(c) = &e {
                // A forward command sent for another revision or stage is
                // stale: it changes nothing and says why.
                let stale = c.expected_revision != r.canary_revision || c.expected_stage != r.stage;
                if !is_safety(&c.command) && stale {
                    prop_assert_eq!(&next, &r);
                    let is_stale_notice = matches!(fx.as_slice(),
                        [Effect::Notify(Notice::Rejected { refusal, .. })] if refusal.is_stale());
                    prop_assert!(is_stale_notice, "{:?}", fx);
                }
                // Abort and rollback apply from every phase short of done,
                // whatever stage or revision they were sent for.
                let rejected = fx.iter().any(|f| matches!(f, Effect::Notify(Notice::Rejected { .. })));
                let (abort, rollback) =
                    (matches!(c.command, Command::Abort { .. }), matches!(c.command, Command::Rollback { .. }));
                if (abort || rollback) && !r.phase.is_terminal() {
                    prop_assert!(!rejected, "{:?} from {:?} refused: {fx:?}", c.command, r.phase);
                    if driven {
                        let done = if abort {
                            matches!(next.phase, Phase::Aborted { .. })
                        } else {
                            matches!(next.phase, Phase::RolledBack { .. })
                        };
                        prop_assert!(done, "{:?} from {:?} left {:?}", c.command, r.phase, next.phase);
                        prop_assert_eq!(next.canary_weight, 0);
                    } else {
                        let verb = if abort { NativeVerb::Abort } else { NativeVerb::Undo };
                        prop_assert!(fx.contains(&Effect::Native { verb }), "{fx:?}");
                    }
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
    fn a_tick_before_next_tick_at_changes_nothing(
        plan in plan(),
        ops in proptest::collection::vec(op(), 1..60),
        early in 1u64..20 * 60_000,
    ) {
        // The engine sleeps until `next_tick_at` (or the next window): any
        // tick it skips must be one that would have done nothing.
        let mut r = Rollout::new("p", plan);
        let mut now = Timestamp(0);
        for op in &ops {
            if let Op::Tick(ms) = op { now = Timestamp(now.0.saturating_add(*ms)); }
            r = step(&r, event(op, &r), now).0;
            // Ticks at `now` are fed after every wake; so is one at the deadline.
            r = step(&r, Event::Tick, now).0;
            let due = r.next_tick_at();
            // The last moment before the deadline, and one drawn before it.
            let skipped = match due {
                Some(due) if due.0 <= now.0 => continue,
                Some(due) => [Timestamp(due.0 - 1), Timestamp(due.0 - 1 - (early - 1) % (due.0 - now.0))],
                None => [Timestamp(now.0.saturating_add(early)), Timestamp(u64::MAX)],
            };
            for at in skipped {
                let (next, fx) = step(&r, Event::Tick, at);
                prop_assert!(next == r && fx.is_empty(), "a tick at {at:?} (due {due:?}) changed {:?}: {fx:?}", r.phase);
            }
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
            if let Op::Tick(ms) = op { now = Timestamp(now.0.saturating_add(*ms)); }
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
