//! An effect the backend cannot carry out yet (an ECS canary task set
//! whose tasks are still starting): the core waits for it on its ticks,
//! with a deadline, while commands apply at once.

mod common;

use common::*;
use flightdeck_core::rollout::{step, Command, Effect, Event, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn at(r: &Rollout, event: Event, now: Timestamp) -> (Rollout, Vec<Effect>) {
    step(r, event, now)
}

fn waiting(effect: &Effect, detail: &str) -> Event {
    Event::EffectWaiting { effect: effect.clone(), detail: detail.into(), timeout: SEC * 300, retry: SEC * 2 }
}

/// A canary just started: stage 1 (1 %) entered at 0, its weight not ready.
fn started() -> (Rollout, Effect) {
    let r = Rollout::new("checkout", canary_plan());
    let (r, fx) = at(&r, Event::Start, Timestamp(0));
    let weight = Effect::SetWeight { canary: 1 };
    assert!(fx.contains(&weight), "{fx:?}");
    let (r, fx) = at(&r, waiting(&weight, "0 of 4 tasks running"), Timestamp(0));
    assert!(fx.iter().any(|e| matches!(e, Effect::Notify(_))), "the wait is told: {fx:?}");
    (r, weight)
}

#[test]
fn a_waiting_effect_is_tried_again_on_ticks_and_the_stage_bakes_from_when_it_is_done() {
    let (r, weight) = started();
    let w = r.waiting.clone().expect("waiting");
    assert_eq!((w.since, w.deadline, w.retry_at), (Timestamp(0), Timestamp(300_000), Timestamp(2_000)));
    assert_eq!(r.next_tick_at(), Some(Timestamp(2_000)), "the engine wakes to try again");
    assert!(r.next_step(Timestamp(60_000)).contains("waiting for 0 of 4 tasks running (pauses in 4:00)"));
    // A tick before the retry time does nothing; at it, the effect again.
    let (r, fx) = at(&r, Event::Tick, Timestamp(1_000));
    assert!(fx.is_empty(), "{fx:?}");
    let (r, fx) = at(&r, Event::Tick, Timestamp(2_000));
    assert_eq!(fx, vec![weight.clone()]);
    let (r, _) = at(&r, waiting(&weight, "3 of 4 tasks running"), Timestamp(2_000));
    let w = r.waiting.clone().expect("still waiting");
    assert_eq!((w.since, w.deadline, w.retry_at), (Timestamp(0), Timestamp(300_000), Timestamp(4_000)));
    assert_eq!(w.detail, "3 of 4 tasks running");
    // Windows meanwhile judge nothing: the canary has no traffic yet.
    let mut r = r;
    for minute in 1..=4 {
        r = at(&r, missing_sample(), Timestamp(minute * 60_000)).0;
        r = at(&r, healthy_sample(), Timestamp(minute * 60_000)).0;
    }
    assert_eq!((r.inconclusive_windows, r.zero_traffic_windows, r.stage_passed), (0, 0, false));
    // The backend shows 0 % while 1 % waits: not drift.
    let seen = flightdeck_core::rollout::Observation { canary_weight: Some(0), ..Default::default() };
    let (r, fx) = at(&r, Event::Observation(seen), Timestamp(240_000));
    assert!(matches!(r.phase, Phase::Progressing { .. }) && fx.is_empty(), "{:?} {fx:?}", r.phase);
    // Done at 4 min: the stage's 15 min bake starts then.
    let (r, fx) = at(&r, Event::EffectDone { effect: weight }, Timestamp(240_000));
    assert!(r.waiting.is_none());
    assert!(matches!(fx.as_slice(), [Effect::Notify(_)]), "{fx:?}");
    assert_eq!(r.bake_remaining(Timestamp(240_000)), Some(MIN * 15));
    assert_eq!(r.next_tick_at(), Some(Timestamp(240_000).plus(MIN * 15)));
}

#[test]
fn past_its_deadline_the_rollout_pauses_with_what_it_waited_for() {
    let (r, weight) = started();
    let (r, _) = at(&r, waiting(&weight, "1 of 4 tasks running, STABILIZING"), Timestamp(298_000));
    let (r, fx) = at(&r, Event::Tick, Timestamp(300_000));
    assert!(!fx.contains(&weight), "not tried again past the deadline: {fx:?}");
    let Phase::Paused { by, reason, .. } = &r.phase else { panic!("{:?}", r.phase) };
    assert_eq!(by.0, "backend");
    assert!(reason.contains("set canary weight 1 % was not possible for 300 s"), "{reason}");
    assert!(reason.contains("1 of 4 tasks running, STABILIZING"), "{reason}");
    assert!(r.waiting.is_none());
    assert_eq!(r.needs_human().as_deref(), Some(reason.as_str()));
    // Resume sends the weight again: a new wait, with a new deadline.
    let (r, fx) = at(&r, cmd(Command::Resume, 0), Timestamp(400_000));
    assert!(fx.contains(&weight), "{fx:?}");
    let (r, _) = at(&r, waiting(&weight, "0 of 4"), Timestamp(400_000));
    assert_eq!(r.waiting.map(|w| w.deadline), Some(Timestamp(700_000)));
}

#[test]
fn an_abort_or_pause_during_the_wait_applies_at_once_and_ends_it() {
    let (r, weight) = started();
    let (aborted, fx) = at(&r, cmd(Command::Abort { reason: None }, 0), Timestamp(5_000));
    assert!(matches!(aborted.phase, Phase::Aborted { .. }), "{:?}", aborted.phase);
    assert!(fx.contains(&Effect::SetWeight { canary: 0 }), "{fx:?}");
    assert!(aborted.waiting.is_none());
    // Nothing tries the weight no longer wanted again.
    assert_eq!(aborted.next_tick_at(), None);
    let (_, fx) = at(&aborted, Event::Tick, Timestamp(6_000));
    assert!(!fx.contains(&weight), "{fx:?}");
    let (paused, _) = at(&r, cmd(Command::Pause { reason: None }, 0), Timestamp(5_000));
    assert!(paused.waiting.is_none() && matches!(paused.phase, Phase::Paused { .. }));
    let (_, fx) = at(&paused, Event::Tick, Timestamp(10_000));
    assert!(fx.is_empty(), "a paused rollout tries nothing: {fx:?}");
}

#[test]
fn a_promotion_that_cannot_be_carried_out_is_a_failure_not_a_wait() {
    let (r, weight) = started();
    let (r, _) = at(&r, Event::EffectDone { effect: weight }, Timestamp(1_000));
    let (r, _) = at(&r, cmd(Command::PromoteFull, 0), Timestamp(2_000));
    assert!(matches!(r.phase, Phase::Promoted { .. }), "{:?}", r.phase);
    let full = Effect::SetWeight { canary: 100 };
    let (r, _) = at(&r, waiting(&full, "0 of 4 tasks running"), Timestamp(2_000));
    let Phase::Failed { reason, .. } = &r.phase else { panic!("{:?}", r.phase) };
    assert!(reason.contains("not ready: 0 of 4 tasks running"), "{reason}");
    assert!(r.waiting.is_none());
}
