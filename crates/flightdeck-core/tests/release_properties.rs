//! Property tests of the release state machine (`flightdeck_core::release`):
//! random releases (waves, bakes, approvals, failure policy) driven by random
//! sequences of rollout reports, ticks and commands, against the invariants
//! the release promises. The harness plays the engine: a rollout moves only
//! once the release has started it, and a rollback effect rolls it back.

use flightdeck_core::release::{
    step, Member, MemberState, Release, ReleaseCommand, ReleaseEffect, ReleaseEvent, ReleaseNotice, ReleasePhase,
    ReleaseRefusal, ReleaseRequest, ReleaseSpec, Wave,
};
use flightdeck_core::rollout::{Actor, Role};
use flightdeck_core::time::Timestamp;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Op {
    Tick(u64),
    /// Rollout number `n` (mod the started ones) reports a new state.
    Report(usize, u8),
    /// A command for the live wave, or for the wave `Some(w)` names.
    Cmd(ReleaseCommand, Option<usize>),
    Viewer(ReleaseCommand),
}

fn spec() -> impl Strategy<Value = ReleaseSpec> {
    let wave = (1usize..=3, prop_oneof![Just(0u64), Just(5), Just(30)], proptest::bool::weighted(0.3));
    (proptest::collection::vec(wave, 1..=4), any::<bool>()).prop_map(|(waves, rollback_siblings)| {
        let mut n = 0;
        let waves = waves
            .into_iter()
            .enumerate()
            .map(|(i, (members, bake, approval))| Wave {
                name: format!("ring {i}"),
                members: (0..members)
                    .map(|_| {
                        n += 1;
                        Member { rollout: format!("region-{n}/checkout"), region: format!("region-{n}") }
                    })
                    .collect(),
                bake: MIN * bake as u32,
                approval,
            })
            .collect();
        ReleaseSpec { name: "checkout-2.4".into(), waves, rollback_siblings }
    })
}

fn command() -> impl Strategy<Value = ReleaseCommand> {
    prop_oneof![
        1 => Just(ReleaseCommand::Pause { reason: None }),
        1 => Just(ReleaseCommand::Resume),
        3 => Just(ReleaseCommand::Promote),
        1 => Just(ReleaseCommand::Abort { reason: None }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..40 * 60_000).prop_map(Op::Tick),
        // Mostly promotions, so releases get far; sometimes a failure.
        8 => (0usize..12, prop_oneof![5 => Just(0u8), 8 => Just(1), 1 => Just(2), 1 => Just(3), 1 => Just(4)])
            .prop_map(|(n, s)| Op::Report(n, s)),
        3 => (command(), proptest::option::weighted(0.3, 0usize..5)).prop_map(|(c, w)| Op::Cmd(c, w)),
        1 => command().prop_map(Op::Viewer),
    ]
}

fn state_of(code: u8) -> MemberState {
    match code {
        0 => MemberState::Running,
        1 => MemberState::Promoted,
        2 => MemberState::RolledBack { reason: "analysis: error rate 4.1 % over 1 %".into() },
        3 => MemberState::Aborted { reason: "aborted by alice".into() },
        _ => MemberState::Failed { reason: "weight change failed".into() },
    }
}

fn request(command: ReleaseCommand, wave: usize, role: Role) -> ReleaseEvent {
    ReleaseEvent::Command(ReleaseRequest { actor: Actor::new("alice"), command, expected_wave: wave, role })
}

/// What the harness knows besides the release: the engine's side.
struct World {
    now: Timestamp,
    /// Each rollout's real state (moves only once started).
    states: BTreeMap<String, MemberState>,
    started: BTreeSet<String>,
    cancelled: BTreeSet<String>,
    /// When every rollout of wave w was last seen promoted.
    promoted_at: BTreeMap<usize, Timestamp>,
    /// A started rollout failed (rolled back, aborted, failed) at this time.
    failed: bool,
    aborted: bool,
}

fn wave_of(spec: &ReleaseSpec, id: &str) -> usize {
    spec.member(id).expect("a member").0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn release_invariants_hold_for_any_sequence(spec in spec(), ops in proptest::collection::vec(op(), 1..80)) {
        let mut release = Release::new(spec.clone());
        let mut w = World {
            now: Timestamp(0),
            states: spec.rollouts().map(|id| (id.to_owned(), MemberState::Pending)).collect(),
            started: BTreeSet::new(),
            cancelled: BTreeSet::new(),
            promoted_at: BTreeMap::new(),
            failed: false,
            aborted: false,
        };
        let mut queue: Vec<ReleaseEvent> = vec![ReleaseEvent::Start];
        let mut ops = ops.into_iter();
        loop {
            let event = match queue.pop() {
                Some(e) => e,
                None => match ops.next() {
                    None => break,
                    Some(Op::Tick(ms)) => {
                        w.now = w.now.plus(Duration::from_millis(ms));
                        ReleaseEvent::Tick
                    }
                    Some(Op::Report(n, code)) => {
                        // Only a started rollout that is not finished moves.
                        let live: Vec<String> = w.started.iter()
                            .filter(|id| matches!(w.states[*id], MemberState::Pending | MemberState::Running))
                            .cloned().collect();
                        if live.is_empty() {
                            continue;
                        }
                        let id = live[n % live.len()].clone();
                        ReleaseEvent::Rollout { rollout: id, state: state_of(code) }
                    }
                    Some(Op::Cmd(c, wave)) => request(c, wave.unwrap_or(release.wave), Role::Captain),
                    Some(Op::Viewer(c)) => request(c, release.wave, Role::Viewer),
                },
            };
            // The harness's own record of the engine's side, before the release sees it.
            if let ReleaseEvent::Rollout { rollout, state } = &event {
                w.states.insert(rollout.clone(), state.clone());
                if state.failure().is_some() {
                    w.failed = true;
                }
                let wave = wave_of(&spec, rollout);
                let all = spec.waves[wave].members.iter().all(|m| w.states[&m.rollout] == MemberState::Promoted);
                if all {
                    w.promoted_at.entry(wave).or_insert(w.now);
                }
            }
            let before = release.clone();
            let (after, effects) = step(&before, event.clone(), w.now);
            let promote_applied = matches!(&event, ReleaseEvent::Command(r)
                if r.command == ReleaseCommand::Promote && r.role == Role::Captain
                && !effects.iter().any(|e| matches!(e, ReleaseEffect::Notify(ReleaseNotice::Rejected { .. }))));

            // Stale: a forward command for another wave changes nothing and says why.
            if let ReleaseEvent::Command(r) = &event {
                let refusal = effects.iter().find_map(|e| match e {
                    ReleaseEffect::Notify(ReleaseNotice::Rejected { refusal, .. }) => Some(refusal.clone()),
                    _ => None,
                });
                if r.role == Role::Captain && !r.command.never_stale() && r.expected_wave != before.wave {
                    prop_assert_eq!(&after, &before, "a stale {:?} changed the release", r.command);
                    prop_assert_eq!(effects.len(), 1);
                    prop_assert_eq!(refusal.clone(), Some(ReleaseRefusal::Stale { saw: r.expected_wave, live: before.wave }));
                }
                // Pause and abort are never stale.
                if r.command.never_stale() {
                    prop_assert!(!matches!(refusal, Some(ReleaseRefusal::Stale { .. })), "a {:?} was stale", r.command);
                }
                if r.role == Role::Viewer {
                    prop_assert_eq!(&after, &before);
                    prop_assert_eq!(refusal, Some(ReleaseRefusal::Viewer));
                }
                if matches!(r.command, ReleaseCommand::Abort { .. }) && r.role == Role::Captain {
                    // Abort of the release reverts every started rollout.
                    prop_assert!(matches!(after.phase, ReleasePhase::Aborted { .. }), "abort left it {}", after.phase.label());
                    for id in &w.started {
                        let reverted = matches!(w.states[id], MemberState::RolledBack { .. })
                            || effects.iter().any(|e| matches!(e, ReleaseEffect::Rollback { rollout, .. } if rollout == id));
                        prop_assert!(reverted, "abort left {} as {:?}", id, w.states[id]);
                    }
                    w.aborted = true;
                }
            }

            for effect in &effects {
                match effect {
                    ReleaseEffect::Start { rollout } => {
                        let wave = wave_of(&spec, rollout);
                        prop_assert!(!w.failed, "{} started after a rollback", rollout);
                        prop_assert!(!w.aborted, "{} started after an abort", rollout);
                        prop_assert!(!w.cancelled.contains(rollout), "{} started after it was cancelled", rollout);
                        prop_assert!(w.started.insert(rollout.clone()), "{} started twice", rollout);
                        if wave > 0 {
                            // Every rollout of the wave before is promoted…
                            for m in &spec.waves[wave - 1].members {
                                prop_assert_eq!(&w.states[&m.rollout], &MemberState::Promoted,
                                    "{} (wave {}) started before {} was promoted", rollout, wave + 1, m.rollout);
                            }
                            // …and the bake has passed, unless a captain promoted the next wave now.
                            let since = w.promoted_at[&(wave - 1)];
                            if !promote_applied {
                                prop_assert!(w.now >= since.plus(spec.waves[wave - 1].bake),
                                    "{} started {:?} after wave {} was promoted, bake {:?}",
                                    rollout, w.now.since(since), wave, spec.waves[wave - 1].bake);
                            }
                        }
                        if spec.waves[wave].approval {
                            prop_assert!(promote_applied, "{} started without the wave's approval", rollout);
                        }
                        w.states.insert(rollout.clone(), MemberState::Pending);
                        // The engine starts it: it runs.
                        queue.push(ReleaseEvent::Rollout { rollout: rollout.clone(), state: MemberState::Running });
                    }
                    ReleaseEffect::Cancel { rollout } => {
                        prop_assert!(!w.started.contains(rollout), "{} cancelled after it started", rollout);
                        w.cancelled.insert(rollout.clone());
                    }
                    ReleaseEffect::Rollback { rollout, .. } => {
                        prop_assert!(w.started.contains(rollout), "{} rolled back without being started", rollout);
                        queue.push(ReleaseEvent::Rollout {
                            rollout: rollout.clone(),
                            state: MemberState::RolledBack { reason: "release".into() },
                        });
                    }
                    ReleaseEffect::Notify(_) => {}
                }
            }

            // A rollback anywhere halts every later wave: they never start
            // (checked at each Start above) and are told so.
            if w.failed && !before.phase.is_finished() {
                prop_assert!(after.phase.is_finished(), "still {} after a failure", after.phase.label());
            }
            let stopped = matches!(after.phase, ReleasePhase::Halted { .. } | ReleasePhase::Aborted { .. });
            if (w.failed || w.aborted) && stopped {
                for id in spec.rollouts() {
                    prop_assert!(w.started.contains(id) || w.cancelled.contains(id), "{} neither started nor cancelled", id);
                }
            }
            // With rollback-wave, the failed rollout's started siblings are rolled back.
            if let (ReleasePhase::Halted { rollout, .. }, false) = (&after.phase, before.phase.is_finished()) {
                if spec.rollback_siblings {
                    let wave = wave_of(&spec, rollout);
                    for m in &spec.waves[wave].members {
                        if w.started.contains(&m.rollout) && w.states[&m.rollout].failure().is_none() {
                            prop_assert!(effects.iter().any(|e| matches!(e, ReleaseEffect::Rollback { rollout, .. } if *rollout == m.rollout)),
                                "sibling {} not rolled back", m.rollout);
                        }
                    }
                }
            }
            // The release agrees with the engine about what it started.
            prop_assert_eq!(&after.started, &w.started);
            // Journaled state reads back as itself.
            let json = serde_json::to_string(&after).unwrap();
            let back: Release = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &after);
            release = after;
        }
    }

    /// A journal of events replays to the same state: a resumed run
    /// continues exactly where the crashed one was, and `reconcile` asks
    /// only for starts the engine has not seen yet.
    #[test]
    fn a_replayed_journal_rebuilds_the_release(spec in spec(), ops in proptest::collection::vec(op(), 1..40)) {
        let mut release = Release::new(spec.clone());
        let mut journal = vec![(Timestamp(0), ReleaseEvent::Start)];
        let mut now = Timestamp(0);
        release = step(&release, ReleaseEvent::Start, now).0;
        for op in ops {
            let event = match op {
                Op::Tick(ms) => { now = now.plus(Duration::from_millis(ms)); ReleaseEvent::Tick }
                Op::Report(n, code) => {
                    let started: Vec<&String> = release.started.iter().collect();
                    if started.is_empty() { continue; }
                    ReleaseEvent::Rollout { rollout: started[n % started.len()].clone(), state: state_of(code) }
                }
                Op::Cmd(c, wave) => request(c, wave.unwrap_or(release.wave), Role::Captain),
                Op::Viewer(c) => request(c, release.wave, Role::Viewer),
            };
            release = step(&release, event.clone(), now).0;
            journal.push((now, event));
        }
        let mut replayed = Release::new(spec);
        for (at, event) in journal {
            replayed = step(&replayed, event, at).0;
        }
        prop_assert_eq!(&replayed, &release);
        for effect in release.reconcile() {
            if let ReleaseEffect::Start { rollout } = effect {
                prop_assert!(release.started.contains(&rollout));
                prop_assert_eq!(release.state(&rollout), &MemberState::Pending);
            }
        }
    }
}
