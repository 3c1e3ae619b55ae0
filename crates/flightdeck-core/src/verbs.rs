//! The one verb table: every command a person can send, how risky it is,
//! who may send it and in which phases, and what the core refuses, as
//! typed values. The state machine enforces it; the cockpit's help, footer,
//! palette and confirmations read it, and keep no copy of its rules.
//!
//! Before a command that needs a "yes" is sent, [`ask`] runs it on a copy
//! of the rollout (a dry run of [`step`](crate::rollout::step)) and
//! writes the confirmation from the effects that run returned, so the
//! dialog cannot say anything other than what will happen.

use crate::plan::Strategy;
use crate::rollout::{self, Command, CommandRequest, Effect, Event, Gate, NativeVerb, Notice, Phase, Rollout, Version};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Phases a command may act in (driven rollouts; an observed rollout's
/// commands become its controller's verbs, which it judges itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Live {
    Pending,
    Baking,
    Waiting,
    Paused,
    Aborted,
    Failed,
}

impl Live {
    /// The phase a rollout is in, or `None` when it is done (promoted,
    /// rolled back): then nothing changes until a new revision.
    pub fn of(phase: &Phase) -> Option<Live> {
        Some(match phase {
            Phase::Pending => Live::Pending,
            Phase::Progressing { .. } => Live::Baking,
            Phase::AwaitingApproval { .. } => Live::Waiting,
            Phase::Paused { .. } => Live::Paused,
            Phase::Aborted { .. } => Live::Aborted,
            Phase::Failed { .. } => Live::Failed,
            Phase::Promoted { .. } | Phase::RolledBack { .. } => return None,
        })
    }
}

/// Which way a command moves exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Takes traffic or replicas away from the new version (pause holds it).
    ReducesExposure,
    /// Moves the new version on (more traffic, a gate passed, a new start).
    MovesForward,
    /// Changes what runs without moving traffic between versions.
    Neutral,
}

/// When the cockpit asks "are you sure?" before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Never on its own (a dry run may still call for it: see [`ask`]).
    Never,
    /// On plans whose target is production.
    InProduction,
    Always,
}

/// Whether a command carries a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    None,
    Optional,
    /// Refused without a typed reason (it is recorded).
    Required,
}

/// One row of the verb table.
#[derive(Debug, Clone, Copy)]
pub struct Verb {
    /// As typed in the palette and keymaps, and shown in the audit log.
    pub name: &'static str,
    /// What may follow the name in the palette ("[rollout]", "reason").
    pub args: &'static str,
    /// One line for the help screen.
    pub summary: &'static str,
    pub direction: Direction,
    /// Applies to the rollout as it is when it arrives, whatever stage the
    /// sender saw: only commands that reduce exposure from wherever it is.
    pub never_stale: bool,
    pub confirm: Confirm,
    /// In production the confirmation asks for the rollout's name typed
    /// out, not a key (a key can be pressed twice by accident).
    pub typed_in_production: bool,
    pub reason: Reason,
    /// Phases it acts in on a driven rollout (empty: any phase).
    pub phases: &'static [Live],
    /// Only for rollouts a native controller runs.
    pub native_only: bool,
}

impl Verb {
    /// Viewers see everything and send nothing: no verb is theirs.
    pub fn viewer_may_send(&self) -> bool {
        false
    }

    /// Confirms in some plans (for the help: "asks to confirm").
    pub fn may_confirm(&self) -> bool {
        self.confirm != Confirm::Never
    }
}

use Live::*;

const LIVE_STAGE: &[Live] = &[Baking, Waiting, Paused];
const SAFETY_PHASES: &[Live] = &[Baking, Waiting, Paused, Pending, Failed, Aborted];

/// Every command, in help order.
pub const VERBS: &[Verb] = &[
    Verb {
        name: "pause",
        args: "[rollout]",
        summary: "hold the current stage; the bake timer stops",
        direction: Direction::ReducesExposure,
        never_stale: true,
        confirm: Confirm::Never,
        typed_in_production: false,
        reason: Reason::Optional,
        phases: &[Baking, Waiting],
        native_only: false,
    },
    Verb {
        name: "resume",
        args: "[rollout]",
        summary: "continue after a pause, re-applying the weight the rollout holds",
        direction: Direction::Neutral,
        never_stale: false,
        confirm: Confirm::Never,
        typed_in_production: false,
        reason: Reason::None,
        phases: &[Paused],
        native_only: false,
    },
    Verb {
        name: "promote",
        args: "[rollout]",
        summary: "enter the next stage now (asks when it passes a production gate or reaches 100 %)",
        direction: Direction::MovesForward,
        never_stale: false,
        confirm: Confirm::Never,
        typed_in_production: false,
        reason: Reason::None,
        phases: LIVE_STAGE,
        native_only: false,
    },
    Verb {
        name: "promote-full",
        args: "[rollout]",
        summary: "straight to 100 %, skipping bakes and analysis",
        direction: Direction::MovesForward,
        never_stale: false,
        confirm: Confirm::Always,
        typed_in_production: true,
        reason: Reason::None,
        phases: &[Baking, Waiting, Paused, Pending],
        native_only: false,
    },
    Verb {
        name: "step-back",
        args: "[rollout]",
        summary: "back to the previous stage's weight, paused",
        direction: Direction::ReducesExposure,
        never_stale: false,
        confirm: Confirm::Never,
        typed_in_production: false,
        reason: Reason::None,
        phases: LIVE_STAGE,
        native_only: false,
    },
    Verb {
        name: "abort",
        args: "[rollout]",
        summary: "canary traffic to 0 % from wherever it is",
        direction: Direction::ReducesExposure,
        never_stale: true,
        confirm: Confirm::Always,
        typed_in_production: false,
        reason: Reason::Optional,
        phases: SAFETY_PHASES,
        native_only: false,
    },
    Verb {
        name: "rollback",
        args: "[rollout]",
        summary: "back to the previous revision from wherever it is",
        direction: Direction::ReducesExposure,
        never_stale: true,
        confirm: Confirm::Always,
        typed_in_production: false,
        reason: Reason::Optional,
        phases: SAFETY_PHASES,
        native_only: false,
    },
    Verb {
        name: "retry",
        args: "[rollout]",
        summary: "start again from the first stage after an abort or failure",
        direction: Direction::MovesForward,
        never_stale: false,
        confirm: Confirm::Always,
        typed_in_production: false,
        reason: Reason::None,
        phases: &[Aborted, Failed],
        native_only: false,
    },
    Verb {
        name: "approve",
        args: "[rollout]",
        summary: "let the gate the rollout waits at pass",
        direction: Direction::MovesForward,
        never_stale: false,
        confirm: Confirm::InProduction,
        typed_in_production: false,
        reason: Reason::None,
        phases: LIVE_STAGE,
        native_only: false,
    },
    Verb {
        name: "override-freeze",
        args: "reason",
        summary: "promote despite a frozen error budget; the reason is recorded",
        direction: Direction::MovesForward,
        never_stale: false,
        confirm: Confirm::Always,
        typed_in_production: true,
        reason: Reason::Required,
        phases: &[Baking, Waiting, Paused, Pending],
        native_only: false,
    },
    Verb {
        name: "acknowledge",
        args: "[rollout]",
        summary: "a rollback or abort seen: it stops asking for attention",
        direction: Direction::Neutral,
        never_stale: false,
        confirm: Confirm::Never,
        typed_in_production: false,
        reason: Reason::None,
        // Rolled back or aborted only; judged in the core, not by this list.
        phases: &[],
        native_only: false,
    },
    Verb {
        name: "restart",
        args: "[rollout]",
        summary: "restart the pods (native controller)",
        direction: Direction::Neutral,
        never_stale: false,
        confirm: Confirm::Always,
        typed_in_production: false,
        reason: Reason::None,
        phases: &[],
        native_only: true,
    },
    Verb {
        name: "set-image",
        args: "container=image",
        summary: "a container's image: starts a new revision (native controller)",
        direction: Direction::MovesForward,
        never_stale: false,
        confirm: Confirm::Always,
        typed_in_production: false,
        reason: Reason::None,
        phases: &[],
        native_only: true,
    },
    Verb {
        name: "undo",
        args: "revision",
        summary: "back to a numbered revision (native controller)",
        direction: Direction::ReducesExposure,
        never_stale: true,
        confirm: Confirm::Always,
        typed_in_production: false,
        reason: Reason::None,
        phases: &[],
        native_only: true,
    },
    Verb {
        name: "terminate-analysis",
        args: "[rollout]",
        summary: "stop the running analysis (native controller)",
        direction: Direction::Neutral,
        never_stale: false,
        confirm: Confirm::Always,
        typed_in_production: false,
        reason: Reason::None,
        phases: &[],
        native_only: true,
    },
];

/// The table row of a verb name.
pub fn verb(name: &str) -> Option<&'static Verb> {
    VERBS.iter().find(|v| v.name == name)
}

/// The table row a command belongs to. A native controller's verb sent
/// as such (`Command::Native`) shares the row of the command it mirrors.
pub fn verb_of(command: &Command) -> &'static Verb {
    let name = match command {
        Command::Native { verb } => match verb {
            NativeVerb::Undo => "rollback",
            NativeVerb::UndoTo { .. } => "undo",
            other => other.name(),
        },
        other => other.verb(),
    };
    verb(name).expect("every command has a row in the verb table")
}

/// Why the core refused a command: what the cockpit shows, the audit
/// records and tests match on, as a value rather than a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "refusal")]
pub enum Refusal {
    /// The sender is a viewer.
    Viewer {
        actor: String,
    },
    /// Sent for another revision than the one rolling out now.
    StaleRevision {
        sent: String,
        now: String,
    },
    /// Sent for another stage (0-based) than the one the rollout is at.
    StaleStage {
        sent: usize,
        now: usize,
        stages: usize,
        weight: u8,
    },
    /// Sent for another step (0-based) of the native controller than the
    /// one it is at now (`None`: it has left its steps).
    StaleStep {
        sent: usize,
        now: Option<usize>,
    },
    /// Promoted or rolled back: nothing changes until a new revision.
    Finished {
        phase: String,
    },
    /// Not a command of the phase the rollout is in.
    NotInPhase {
        verb: String,
        phase: String,
    },
    /// Approve with no gate waiting.
    NothingWaiting,
    /// Override with no frozen budget to override.
    NotFrozen,
    /// The error budget is frozen and not overridden.
    Frozen {
        remaining_pct: i64,
    },
    /// A freeze override without a typed reason.
    ReasonRequired {
        verb: String,
    },
    /// The stage names its approvers and the sender is not one.
    NotAnApprover {
        actor: String,
        stage: usize,
        approvers: Vec<String>,
    },
    /// The sender already approved this stage.
    AlreadyApproved {
        actor: String,
        stage: usize,
        waiting: String,
    },
    /// Promote-full would skip a stage with named approvers.
    ApproversAhead {
        stage: usize,
        required: usize,
        approvers: Vec<String>,
    },
    /// Step back at the first stage.
    AtFirstStage,
    /// Step back while waiting to start over.
    NothingToStepBack {
        weight: u8,
    },
    /// A native controller's verb on a rollout flightdeck drives.
    NativeVerbOnDriven {
        verb: String,
    },
    /// A command the native controller has no verb for.
    NoNativeVerb {
        verb: String,
    },
    /// Resume where only a promote moves an observed rollout on.
    HeldByStep {
        step: usize,
    },
    HeldBeforeSwitch,
    /// Terminate-analysis with none running.
    NoAnalysisRunning {
        phase: String,
    },
    /// Acknowledge with no rollback or abort to acknowledge.
    NothingToAcknowledge {
        phase: String,
    },
    AlreadyAcknowledged {
        by: String,
    },
}

impl Refusal {
    /// Sent for a stage or revision that has passed.
    pub fn is_stale(&self) -> bool {
        matches!(self, Refusal::StaleRevision { .. } | Refusal::StaleStage { .. } | Refusal::StaleStep { .. })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Viewer { actor } => write!(f, "{actor} is a viewer: viewers see everything and send nothing"),
            Refusal::StaleRevision { sent, now } => {
                write!(f, "stale: sent for revision {sent} but the rollout is now rolling out {now}")
            }
            Refusal::StaleStage { sent, now, stages, weight } => write!(
                f,
                "stale: sent for stage {} but the rollout is at stage {} of {stages} ({weight} %)",
                sent + 1,
                now + 1
            ),
            Refusal::StaleStep { sent, now: Some(now) } => {
                write!(f, "stale: sent for the controller's step {} but it has moved on to step {}", sent + 1, now + 1)
            }
            Refusal::StaleStep { sent, now: None } => {
                write!(f, "stale: sent for the controller's step {} but it has left its steps", sent + 1)
            }
            Refusal::Finished { phase } => write!(f, "the rollout is {phase}; nothing changes until a new revision"),
            Refusal::NotInPhase { verb, phase } => write!(f, "{verb} is not possible while {phase}"),
            Refusal::NothingWaiting => f.write_str("nothing is waiting for approval"),
            Refusal::NotFrozen => f.write_str("the error budget is not frozen: there is nothing to override"),
            Refusal::Frozen { remaining_pct } => {
                write!(f, "error budget frozen ({remaining_pct} % left); override with a reason first")
            }
            Refusal::ReasonRequired { verb } => write!(f, "{verb} needs a typed reason"),
            Refusal::NotAnApprover { actor, stage, approvers } => write!(
                f,
                "{actor} is not an approver of stage {}; its approvers are {}",
                stage + 1,
                approvers.join(", ")
            ),
            Refusal::AlreadyApproved { actor, stage, waiting } => {
                write!(f, "{actor} already approved stage {}; {waiting}", stage + 1)
            }
            Refusal::ApproversAhead { stage, required, approvers } => write!(
                f,
                "stage {} needs {required} of {} to approve: promote-full cannot skip it",
                stage + 1,
                approvers.join(", ")
            ),
            Refusal::AtFirstStage => f.write_str("already at the first stage; abort sends the canary to 0 %"),
            Refusal::NothingToStepBack { weight } => {
                write!(f, "the canary is at {weight} %, waiting to start over: nothing to step back to")
            }
            Refusal::NativeVerbOnDriven { verb } => {
                write!(f, "{verb} is a native controller's verb; flightdeck drives this rollout itself")
            }
            Refusal::NoNativeVerb { verb } => write!(f, "{verb} is not a verb the native controller has"),
            Refusal::HeldByStep { step } => write!(f, "paused by step {step}: promote to continue"),
            Refusal::HeldBeforeSwitch => f.write_str("paused before the blue-green switch: promote to continue"),
            Refusal::NoAnalysisRunning { phase } => write!(f, "the rollout is {phase}; no analysis is running"),
            Refusal::NothingToAcknowledge { phase } => {
                write!(f, "the rollout is {phase}: only a rollback or an abort is acknowledged")
            }
            Refusal::AlreadyAcknowledged { by } => write!(f, "already acknowledged by {by}"),
        }
    }
}

/// Whether `command` may act in the rollout's phase, per the table.
pub fn check_phase(r: &Rollout, command: &Command) -> Result<(), Refusal> {
    let row = verb_of(command);
    let Some(live) = Live::of(&r.phase) else {
        return Err(Refusal::Finished { phase: r.phase.label().into() });
    };
    if row.phases.is_empty() || row.phases.contains(&live) {
        Ok(())
    } else {
        Err(Refusal::NotInPhase { verb: row.name.into(), phase: r.phase.label().into() })
    }
}

/// How a confirmation is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The confirm key (never an action key of the cockpit).
    Key,
    /// The rollout's name, typed out, then the confirm key.
    TypeName(String),
}

/// What the cockpit shows before a command that needs a "yes": written
/// from the dry run's effects and the state it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub title: String,
    /// What changes on the real system, one line per effect, in order.
    pub changes: Vec<String>,
    /// Where the rollout is afterwards, and why this asks (production).
    pub outcome: String,
    pub answer: Answer,
}

/// The core's answer to "may I send this, and must I ask first?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The state machine would refuse it: send nothing, say why.
    Refused(Refusal),
    /// Send it as it is.
    Send,
    /// Ask first.
    Confirm(Confirmation),
}

/// Runs `request` on a copy of `r` at `now` and says whether it would be
/// refused, may be sent at once, or needs a confirmation (and which).
///
/// A command asks when its row says so, and also when the dry run shows
/// it reaching 100 % (a promote on the next-to-last stage is a
/// promote-full) or passing a gate of a production plan (a promote at a
/// production gate is an approval).
pub fn ask(r: &Rollout, request: &CommandRequest, now: Timestamp) -> Ask {
    let (after, effects) = rollout::step(r, Event::Command(request.clone()), now);
    if let Some(refusal) = refusal_in(&effects) {
        return Ask::Refused(refusal);
    }
    let row = verb_of(&request.command);
    let production = r.plan().target.production;
    let reaches_full = !matches!(r.phase, Phase::Promoted { .. }) && matches!(after.phase, Phase::Promoted { .. });
    let passes_gate = at_gate(r).is_some() && at_gate(&after).is_none() && after.phase != r.phase;
    let asks = match row.confirm {
        Confirm::Always => true,
        Confirm::InProduction => production,
        Confirm::Never => false,
    } || (row.direction == Direction::MovesForward && (reaches_full || (passes_gate && production)));
    if !asks {
        return Ask::Send;
    }
    let answer =
        if production && row.typed_in_production { Answer::TypeName(r.plan().name.clone()) } else { Answer::Key };
    Ask::Confirm(confirmation(r, request, &after, &effects, answer))
}

/// The refusal among a step's effects, if the command was refused.
pub fn refusal_in(effects: &[Effect]) -> Option<Refusal> {
    effects.iter().find_map(|e| match e {
        Effect::Notify(Notice::Rejected { refusal, .. }) => Some(refusal.clone()),
        _ => None,
    })
}

/// The gate a rollout waits at (or is paused at): the stage it opens on.
pub fn at_gate(r: &Rollout) -> Option<(usize, Gate)> {
    match r.phase {
        Phase::AwaitingApproval { next, gate, .. }
        | Phase::Paused { from: rollout::PausedFrom::Gate { next, gate }, .. } => Some((next, gate)),
        _ => None,
    }
}

fn confirmation(
    r: &Rollout,
    request: &CommandRequest,
    after: &Rollout,
    effects: &[Effect],
    answer: Answer,
) -> Confirmation {
    let name = &r.plan().name;
    let title = match &request.command {
        Command::Promote if matches!(after.phase, Phase::Promoted { .. }) => format!("Promote {name} to 100 %?"),
        Command::Promote | Command::Approve if at_gate(r).is_some() => {
            format!("Approve {name} into stage {}/{}?", after.stage + 1, after.stages().len())
        }
        Command::Promote => format!("Promote {name} to stage {}/{}?", after.stage + 1, after.stages().len()),
        Command::PromoteFull => format!("Promote {name} all the way?"),
        Command::Abort { .. } => format!("Abort {name}?"),
        Command::Rollback { .. } => format!("Roll back {name}?"),
        Command::Retry => format!("Retry {name} from the first stage?"),
        Command::OverrideFreeze { .. } => format!("Override the budget freeze for {name}?"),
        Command::Native { verb } => format!("{} {name} ({})?", verb.name(), crate::view::target_label(r)),
        other => format!("{} {name}?", other.verb()),
    };
    let mut changes: Vec<String> = effects.iter().filter_map(|e| effect_text(r, e)).collect();
    changes.extend(kept_running(r, &request.command, effects));
    if changes.is_empty() {
        changes.push("nothing moves on the backend yet".into());
    }
    let mut outcome = format!(
        "then {} at stage {}/{} ({} %)",
        crate::view::state_label(after),
        after.stage + 1,
        after.stages().len(),
        after.canary_weight
    );
    if let Command::OverrideFreeze { reason } = &request.command {
        outcome.push_str(&format!("; {}; recorded reason: “{}”", crate::view::budget_numbers(r), reason.trim()));
    }
    if let Some((_, gate)) = at_gate(r).filter(|_| at_gate(after).is_none()) {
        let why = match gate {
            Gate::Budget => format!("{}: below 50 % each promotion needs approval", crate::view::budget_numbers(r)),
            Gate::Freeze => format!("{}: at most 25 % freezes", crate::view::budget_numbers(r)),
            Gate::Stage => "the plan asks for approval before this stage".into(),
        };
        outcome.push_str(&format!("; {why}"));
    }
    if r.plan().target.production {
        outcome.push_str(" · PRODUCTION");
    }
    Confirmation { title, changes, outcome, answer }
}

/// One effect in words, from the rollout as it is before it runs.
fn effect_text(r: &Rollout, effect: &Effect) -> Option<String> {
    let on = crate::view::target_label(r);
    Some(match effect {
        Effect::SetWeight { canary } => format!("canary weight {} % → {canary} % on {on}", r.canary_weight),
        Effect::Scale { version: Version::Canary, percent: 0 } => {
            format!("canary {} scaled to 0 (no longer running)", r.canary_revision)
        }
        Effect::Scale { version: Version::Canary, percent: 100 } => {
            format!("canary {} scaled up to all its replicas", r.canary_revision)
        }
        Effect::Scale { version: Version::Canary, percent } => {
            format!("canary {} scaled to {percent} % of its replicas", r.canary_revision)
        }
        Effect::Scale { version: Version::Stable, percent: 0 } => {
            format!("stable {} scaled to 0: no instant switch back after this", r.stable_revision)
        }
        Effect::Scale { version: Version::Stable, percent } => {
            format!("stable {} scaled to {percent} % of its replicas", r.stable_revision)
        }
        Effect::SwitchActive { to: Version::Canary } => {
            format!("all traffic switches to {} on {on}", r.canary_revision)
        }
        Effect::SwitchActive { to: Version::Stable } => {
            format!("all traffic switches back to {} on {on}", r.stable_revision)
        }
        Effect::Undo { to_revision } => format!("undo on {on}: {to_revision} replaces {}", r.canary_revision),
        Effect::Native { verb } => format!("{} {} on {on}", native_controller(r), native_words(verb)),
        Effect::Notify(Notice::Info { message }) => message.clone(),
        Effect::Notify(_) => return None,
    })
}

/// An abort that takes traffic away without scaling the canary leaves it
/// running (for debugging): say so, from the effects, not from a rule.
fn kept_running(r: &Rollout, command: &Command, effects: &[Effect]) -> Option<String> {
    let traffic_away = effects.iter().any(|e| matches!(e, Effect::SetWeight { canary: 0 }));
    let scaled = effects.iter().any(|e| matches!(e, Effect::Scale { version: Version::Canary, .. }));
    let canary = matches!(r.plan().strategy, Strategy::Canary { .. });
    (matches!(command, Command::Abort { .. }) && canary && traffic_away && !scaled)
        .then(|| format!("canary {} keeps running, without traffic, for debugging", r.canary_revision))
}

fn native_controller(r: &Rollout) -> &'static str {
    r.plan().target.backend.name()
}

fn native_words(verb: &NativeVerb) -> String {
    match verb {
        NativeVerb::SetImage { container, image } => format!("set image {container}={image} (a new revision)"),
        NativeVerb::UndoTo { revision } => format!("undo to revision {revision}"),
        NativeVerb::Undo => "undo to the previous revision".into(),
        other => other.name().replace('-', " "),
    }
}
