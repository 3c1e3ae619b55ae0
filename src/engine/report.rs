//! What viewers are told about one step of the core. The live task and a
//! journal replay use the same words, so the history restored after a
//! restart reads like the events seen live.

use crate::protocol::Output;
use flightdeck_core::rollout::{Command, Effect, Event, Notice, Phase, Rollout};
use flightdeck_core::time::Timestamp;

/// Attempts per effect before it is reported failed.
pub const EFFECT_ATTEMPTS: u32 = 3;

/// The outputs of `event` taking `before` to `after` with `effects`: a
/// verdict, the answer to a command (with what the actor typed), notices
/// and a change of phase or stage. Effects are reported where they are
/// carried out. Also returns why a command was refused, if it was.
pub fn step_outputs(
    before: &Rollout,
    event: &Event,
    effects: &[Effect],
    after: &Rollout,
    at: Timestamp,
) -> (Vec<Output>, Option<String>) {
    let id = after.id.clone();
    let mut out = Vec::new();
    let mut rejection = None;
    if let (Event::Metrics(_), Some(verdict)) = (event, &after.last_verdict) {
        out.push(Output::Verdict { rollout: id.clone(), at, stage: before.stage, verdict: verdict.clone() });
    }
    if let Event::Command(req) = event {
        rejection = effects.iter().find_map(|e| match e {
            Effect::Notify(Notice::Rejected { refusal, .. }) => Some(refusal.to_string()),
            _ => None,
        });
        out.push(Output::Action {
            rollout: id.clone(),
            at,
            actor: req.actor.clone(),
            command: req.command.verb().into(),
            stage: req.expected_stage,
            accepted: rejection.is_none(),
            reason: rejection.clone(),
            detail: typed(&req.command),
            revision: req.expected_revision.clone(),
            session: req.session.clone(),
        });
    }
    for notice in effects.iter().filter_map(|e| match e {
        Effect::Notify(n @ (Notice::Warning { .. } | Notice::Info { .. })) => Some(n),
        _ => None,
    }) {
        let level = if matches!(notice, Notice::Warning { .. }) { "warning" } else { "info" };
        out.push(Output::Notice { rollout: id.clone(), at, level: level.into(), message: notice.to_string() });
    }
    if before.phase.label() != after.phase.label() || before.stage != after.stage {
        out.push(Output::Transition {
            rollout: id,
            at,
            from: before.phase.label().into(),
            to: after.phase.label().into(),
            stage: after.stage,
            stages: after.stages().len(),
            weight: after.canary_weight,
            still_at: still_at(after),
            reason: phase_reason(after),
        });
    }
    (out, rejection)
}

/// The weight traffic is still at when the wanted one failed to apply
/// (the last reading, or the weight before if nothing was read).
pub fn still_at(r: &Rollout) -> Option<u8> {
    r.backend_error.as_ref()?;
    r.observed_weight.filter(|w| *w != r.canary_weight)
}

/// An effect's result as a journal holds it (`EffectDone` / `EffectFailed`),
/// told as the task told it when it was carried out.
pub fn effect_output(id: &str, event: &Event, at: Timestamp) -> Option<Output> {
    let (effect, error) = match event {
        Event::EffectDone { effect } => (effect, None),
        Event::EffectFailed { effect, error } => (effect, Some(error.clone())),
        _ => return None,
    };
    let attempts = if error.is_some() { EFFECT_ATTEMPTS } else { 1 };
    Some(Output::Effect { rollout: id.into(), at, effect: effect.clone(), ok: error.is_none(), attempts, error })
}

/// What a human typed along with a command.
fn typed(command: &Command) -> Option<String> {
    match command {
        Command::OverrideFreeze { reason } => Some(reason.clone()),
        Command::Pause { reason } | Command::Abort { reason } | Command::Rollback { reason } => reason.clone(),
        _ => None,
    }
}

/// Why the rollout is in its phase: the reason it carries, or the gate it waits at.
fn phase_reason(r: &Rollout) -> Option<String> {
    match &r.phase {
        Phase::Paused { reason, .. }
        | Phase::Aborted { reason, .. }
        | Phase::RolledBack { reason, .. }
        | Phase::Failed { reason, .. } => Some(reason.clone()),
        Phase::AwaitingApproval { .. } => r.needs_human(),
        _ => None,
    }
}
