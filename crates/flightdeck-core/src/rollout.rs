//! The rollout state machine: `step(state, event, now) -> (state, effects)`.
//!
//! Every decision flightdeck makes is here. The engine feeds events (timer
//! ticks, metrics windows, backend observations, operator commands, effect
//! results) and carries out the returned effects; nothing else changes a
//! rollout. Because `step` is pure, a journal of events replays to the same
//! state, which is how a crashed run resumes.

use crate::analysis::{Evidence, Verdict};
use crate::budget::{BudgetStatus, DeployPolicy, SloMeasurement};
use crate::plan::{Control, Plan, Stage, StageAction, Strategy};
use crate::time::Timestamp;
use crate::verbs::{check_phase, verb_of, Live, Refusal};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Who did something: a person ("alice") or a part of flightdeck
/// ("analysis", "backend", "budget").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(pub String);

impl Actor {
    pub fn new(name: impl Into<String>) -> Actor {
        Actor(name.into())
    }
    /// flightdeck's own canary analysis.
    pub fn analysis() -> Actor {
        Actor::new("analysis")
    }
    /// The backend (effects failing, drift observed).
    pub fn backend() -> Actor {
        Actor::new("backend")
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two sides of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Version {
    Stable,
    Canary,
}

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "command")]
pub enum Command {
    /// Hold the current stage; the bake timer stops.
    Pause { reason: Option<String> },
    /// Continue after a pause: back to baking, or to the gate it waited at,
    /// re-applying only the weight the rollout holds.
    Resume,
    /// Enter the next stage now, skipping the rest of the bake.
    Promote,
    /// Go straight to 100 % and finish.
    PromoteFull,
    /// Back to the previous stage's weight, paused.
    StepBack,
    /// Canary weight to 0; the canary keeps running for debugging (except
    /// where each version is billed capacity: see `BackendKind::removes_idle_side`).
    Abort { reason: Option<String> },
    /// Back to the previous revision: weight 0 and canary scaled down (or switch back, or undo).
    Rollback { reason: Option<String> },
    /// Start again from the first stage after an abort or a failure.
    Retry,
    /// Let an approval gate pass.
    Approve,
    /// Let the rollout advance despite a budget freeze; the reason is recorded.
    OverrideFreeze { reason: String },
    /// A person has seen a rollback or an abort: it stops asking for
    /// attention (it stays rolled back; nothing moves).
    Acknowledge,
    /// Observed rollouts: a verb of the native controller with no
    /// flightdeck equivalent (restart, set image, undo to a revision,
    /// terminate the running analysis).
    Native { verb: NativeVerb },
}

impl Command {
    /// The verb as typed in the cockpit and shown in the audit log.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Pause { .. } => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::PromoteFull => "promote-full",
            Command::StepBack => "step-back",
            Command::Abort { .. } => "abort",
            Command::Rollback { .. } => "rollback",
            Command::Retry => "retry",
            Command::Approve => "approve",
            Command::OverrideFreeze { .. } => "override-freeze",
            Command::Acknowledge => "acknowledge",
            Command::Native { verb } => verb.name(),
        }
    }
}

/// A command with who sent it and the revision and stage they were looking
/// at. If the rollout has moved since, a forward command is stale and
/// changes nothing; abort, rollback and pause only reduce risk and always
/// apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub actor: Actor,
    pub command: Command,
    /// 0-based index of the stage the actor saw.
    pub expected_stage: usize,
    /// The canary revision the actor saw: a stage index alone would let a
    /// command meant for the previous revision act on the next one.
    pub expected_revision: String,
    /// Observed rollouts: the controller's step the actor saw
    /// ([`Observation::native_step`]). Argo moves from one pause step to the
    /// next (or to an analysis step) without the weight stage changing, so
    /// without it a second captain's promote of the same pause skips the
    /// next one. `None` (a journal or client from before) is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_step: Option<usize>,
    /// What the sender may do: a viewer's command is refused (and kept in
    /// the journal like any other).
    #[serde(default, skip_serializing_if = "Role::is_captain")]
    pub role: Role,
    /// Where it came from ("local", "socket #3 (pid 1234)", "ssh #2
    /// (SHA256:…)"), for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// What a person attached to the engine may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sees everything and sends commands.
    #[default]
    Captain,
    /// Sees everything and sends nothing.
    Viewer,
}

impl Role {
    pub fn is_captain(&self) -> bool {
        *self == Role::Captain
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Captain => "captain",
            Role::Viewer => "viewer",
        }
    }
}

/// Argo-Rollouts-style verbs for rollouts a native controller runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NativeVerb {
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Pause,
    Resume,
    Undo,
    /// Restart the pods (Argo `spec.restartAt`).
    Restart,
    /// A container's image (`kubectl argo rollouts set image`): a new revision.
    SetImage {
        container: String,
        image: String,
    },
    /// Back to this numbered revision (`undo --to-revision=N`).
    UndoTo {
        revision: u64,
    },
    /// Stop the running analysis (`terminate analysisrun`).
    TerminateAnalysis,
}

impl NativeVerb {
    /// The verb as typed in the palette and shown in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            NativeVerb::Promote => "promote",
            NativeVerb::PromoteFull => "promote-full",
            NativeVerb::Abort => "abort",
            NativeVerb::Retry => "retry",
            NativeVerb::Pause => "pause",
            NativeVerb::Resume => "resume",
            NativeVerb::Undo => "undo",
            NativeVerb::Restart => "restart",
            NativeVerb::SetImage { .. } => "set-image",
            NativeVerb::UndoTo { .. } => "undo-to",
            NativeVerb::TerminateAnalysis => "terminate-analysis",
        }
    }

    /// Verbs that only reduce exposure (back to an earlier revision): like
    /// abort and rollback, never stale (the verb table says which).
    pub fn is_safety(&self) -> bool {
        crate::verbs::verb_of(&Command::Native { verb: self.clone() }).never_stale
    }
}

/// What a native controller reports about an observed rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum NativeStatus {
    Progressing,
    Paused {
        reason: String,
        /// The controller's own pause step (1-based) holds it, and only a
        /// promote moves it on (Argo's canary `pause` step).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<usize>,
        /// Argo's blue-green pause before the switch (`BlueGreenPause`):
        /// like a pause step, only a promote moves it on.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        before_switch: bool,
    },
    Degraded {
        message: String,
    },
    Aborted {
        message: String,
    },
    Healthy,
}

/// What a backend sees on the real system.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Observation {
    /// Canary traffic weight read back from the system, if it has one.
    pub canary_weight: Option<u8>,
    /// Observed rollouts: the controller's stage index and status.
    pub native_stage: Option<usize>,
    pub native_status: Option<NativeStatus>,
    /// Observed rollouts: what the controller shows beside its status
    /// ("step 3/8 · analysis Successful: error-rate 0.2 %").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_detail: Option<String>,
    /// Observed rollouts: the revision the controller is rolling out, as a
    /// label ("revision 4", "spec 5978589476"). A change is a new rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_revision: Option<String>,
    /// Observed rollouts whose controller counts more steps than the plan
    /// has stages: its 0-based step index (Argo's `status.currentStepIndex`).
    /// A forward command carries the one its sender saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_step: Option<usize>,
    /// Observed rollouts: the controller's objects (revisions, ReplicaSets,
    /// pods, analysis runs) for the full-screen view. Never journaled: it
    /// decides nothing, and the next reading brings it again.
    #[serde(skip)]
    pub native_tree: Option<Arc<crate::tree::NativeTree>>,
    /// Observed rollouts: the controller's own events new since the last
    /// reading, told in the event log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native_events: Vec<crate::tree::NativeEvent>,
}

/// Something that happened to a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum Event {
    /// Begin the rollout (enter the first stage).
    Start,
    /// Time passed; bake timers are checked.
    Tick,
    /// One analysis window of stable and canary metrics.
    Metrics(crate::analysis::MetricsSample),
    /// A fresh error-budget measurement for the service.
    Budget(SloMeasurement),
    Observation(Observation),
    Command(CommandRequest),
    EffectDone {
        effect: Effect,
    },
    EffectFailed {
        effect: Effect,
        error: String,
    },
    /// The backend cannot carry the effect out yet because what it needs
    /// is still starting (an ECS canary task set's tasks): `detail` says
    /// what it waits for. The backend allows `timeout` for it and asks to
    /// be tried again after `retry`; see [`Waiting`].
    EffectWaiting {
        effect: Effect,
        detail: String,
        #[serde(with = "crate::time::humane")]
        timeout: Duration,
        #[serde(with = "crate::time::humane")]
        retry: Duration,
    },
    /// The backend could not be read (proxy down, API unreachable).
    ObserveFailed {
        error: String,
    },
    /// A new revision to roll out, after the previous one finished.
    NewRevision {
        revision: String,
    },
}

/// What the engine must do. Effects are idempotent: applying one twice
/// leaves the system as applying it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "effect")]
pub enum Effect {
    /// Send `canary` % of traffic to the canary, the rest to stable.
    SetWeight {
        canary: u8,
    },
    /// Run `percent` % of the version's desired replicas.
    Scale {
        version: Version,
        percent: u8,
    },
    /// Blue-green: all traffic to this side.
    SwitchActive {
        to: Version,
    },
    /// Rolling: back to this revision.
    Undo {
        to_revision: String,
    },
    /// Observed rollouts: the native controller's verb.
    Native {
        verb: NativeVerb,
    },
    Notify(Notice),
}

impl Effect {
    /// True for effects that touch the real system (not notices).
    pub fn is_backend(&self) -> bool {
        !matches!(self, Effect::Notify(_))
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::SetWeight { canary } => write!(f, "set canary weight {canary} %"),
            // Replicas, not traffic: "scale Canary to 100 %" read as full traffic on a 5 % canary.
            Effect::Scale { version, percent } => {
                let side = if *version == Version::Canary { "canary" } else { "stable" };
                write!(f, "scale {side} to {percent} % of its replicas")
            }
            Effect::SwitchActive { to } => write!(f, "switch active to {to:?}"),
            Effect::Undo { to_revision } => write!(f, "undo to {to_revision}"),
            Effect::Native { verb } => write!(f, "native {verb:?}"),
            Effect::Notify(n) => write!(f, "{n}"),
        }
    }
}

/// A message for the event log; `Rejected` answers a command that changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "notice")]
pub enum Notice {
    Rejected { actor: Actor, command: String, refusal: Refusal },
    Warning { message: String },
    Info { message: String },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Rejected { actor, command, refusal } => write!(f, "{command} by {actor} refused: {refusal}"),
            Notice::Warning { message } => write!(f, "warning: {message}"),
            Notice::Info { message } => f.write_str(message),
        }
    }
}

/// Why a rollout waits at a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// The plan asks for a human before this stage.
    Stage,
    /// The error budget is between 25 and 50 %: every promotion needs approval.
    Budget,
    /// The error budget is frozen: only an override with a reason passes.
    Freeze,
}

/// Where a rollout is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum Phase {
    Pending,
    /// Baking the current stage since `since` (plus earlier bake time).
    Progressing {
        since: Timestamp,
    },
    Paused {
        by: Actor,
        reason: String,
        since: Timestamp,
        /// What the pause interrupted: resume goes back to it and no further.
        #[serde(default)]
        from: PausedFrom,
    },
    /// Waiting for a human before entering stage `next`.
    AwaitingApproval {
        next: usize,
        gate: Gate,
        since: Timestamp,
    },
    Promoted {
        at: Timestamp,
    },
    Aborted {
        by: Actor,
        reason: String,
        at: Timestamp,
    },
    RolledBack {
        by: Actor,
        reason: String,
        at: Timestamp,
    },
    /// An effect could not be applied after an abort or rollback, or a native
    /// controller reports the rollout degraded. A human must look.
    Failed {
        reason: String,
        at: Timestamp,
    },
}

/// What a pause interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PausedFrom {
    /// Baking the current stage.
    #[default]
    Baking,
    /// Waiting at a gate before stage `next`.
    Gate { next: usize, gate: Gate },
    /// Observed rollouts: held by the native controller's pause step
    /// (1-based), which only a promote passes.
    Step { step: usize },
    /// Observed blue-green rollouts: held before the switch until promoted.
    BeforeSwitch,
}

impl Phase {
    pub fn label(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Progressing { .. } => "progressing",
            Phase::Paused { .. } => "paused",
            Phase::AwaitingApproval { .. } => "awaiting approval",
            Phase::Promoted { .. } => "promoted",
            Phase::Aborted { .. } => "aborted",
            Phase::RolledBack { .. } => "rolled back",
            Phase::Failed { .. } => "failed",
        }
    }

    /// Promoted and rolled back stay put until a new revision arrives.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Promoted { .. } | Phase::RolledBack { .. })
    }

    /// No further automatic progress: terminal, aborted or failed.
    pub fn is_finished(&self) -> bool {
        self.is_terminal() || matches!(self, Phase::Aborted { .. } | Phase::Failed { .. })
    }
}

/// The plan and its compiled stages, shared between snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub plan: Plan,
    pub stages: Vec<Stage>,
}

/// A driven rollout's effect the backend could not carry out yet (see
/// [`Event::EffectWaiting`]). Meanwhile the rollout's loop goes on: ticks
/// try the effect again at `retry_at`, a command (abort, rollback, pause,
/// a step) applies at once and ends the wait, windows are not judged (the
/// canary has none of its weight yet) and the stage does not bake. Once
/// `deadline` passes without the effect done, the rollout pauses with what
/// it waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub effect: Effect,
    /// What it waits for, in the backend's words ("1 of 4 tasks running").
    pub detail: String,
    pub since: Timestamp,
    pub deadline: Timestamp,
    /// When a tick tries the effect again.
    pub retry_at: Timestamp,
}

/// A recorded operator action, shown as "who acted last".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorNote {
    pub actor: Actor,
    pub action: String,
    pub at: Timestamp,
    /// The stage (0-based) the action was taken from.
    pub stage: usize,
}

/// One rollout's whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub spec: Arc<RolloutSpec>,
    pub control: Control,
    pub phase: Phase,
    /// 0-based index into `spec.stages`.
    pub stage: usize,
    /// Canary weight flightdeck has asked for, percent.
    pub canary_weight: u8,
    /// Canary weight the backend last reported.
    pub observed_weight: Option<u8>,
    /// When flightdeck last asked for a different canary weight: with
    /// `observed_weight`, how long a wanted weight has waited to show on
    /// the backend.
    #[serde(default)]
    pub weight_since: Option<Timestamp>,
    pub stable_revision: String,
    pub canary_revision: String,
    /// Bake time of the current stage accumulated before the current run.
    pub bake_elapsed: Duration,
    /// The stage's evidence has shown the canary within every limit.
    pub stage_passed: bool,
    /// Windows in a row that could not move the rollout on: metrics
    /// missing, no canary traffic, or no decision after the bake.
    #[serde(default)]
    pub inconclusive_windows: u32,
    /// Windows in a row in which a canary with traffic weight got no requests.
    #[serde(default)]
    pub zero_traffic_windows: u32,
    /// The evidence of this revision's analysis so far.
    #[serde(default)]
    pub evidence: Evidence,
    pub last_verdict: Option<Verdict>,
    pub budget: Option<BudgetStatus>,
    pub freeze_override: Option<ActorNote>,
    pub last_action: Option<ActorNote>,
    /// The last backend error, shown as a banner until an effect succeeds.
    pub backend_error: Option<String>,
    /// Why the backend could not be read, until a reading succeeds again.
    #[serde(default)]
    pub observe_error: Option<String>,
    /// Observed rollouts: the controller's own steps and analysis, in words.
    #[serde(default)]
    pub native_detail: Option<String>,
    /// Observed rollouts: the controller's revision last seen (see
    /// [`Observation::native_revision`]).
    #[serde(default)]
    pub native_revision: Option<String>,
    /// Observed rollouts: the controller's step last seen (see
    /// [`Observation::native_step`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_step: Option<usize>,
    /// Observed rollouts: the controller's objects last seen (see
    /// [`Observation::native_tree`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_tree: Option<Arc<crate::tree::NativeTree>>,
    /// Approvals toward entering a stage with named approvers (`stage` is
    /// the stage they let in), cleared when a stage starts over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ActorNote>,
    /// Who acknowledged this revision's rollback or abort, and when: until
    /// then it asks for attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<ActorNote>,
    /// An effect waiting for the backend to be able to carry it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

impl Rollout {
    /// A pending rollout of `plan`.
    pub fn new(id: impl Into<String>, plan: Plan) -> Rollout {
        let stages = plan.stages();
        let control = plan.target.control();
        Rollout {
            id: id.into(),
            control,
            phase: Phase::Pending,
            stage: 0,
            canary_weight: 0,
            observed_weight: None,
            weight_since: None,
            stable_revision: plan.stable.clone(),
            canary_revision: plan.canary.clone(),
            bake_elapsed: Duration::ZERO,
            stage_passed: false,
            inconclusive_windows: 0,
            zero_traffic_windows: 0,
            evidence: Evidence::default(),
            last_verdict: None,
            budget: None,
            freeze_override: None,
            last_action: None,
            backend_error: None,
            observe_error: None,
            native_detail: None,
            native_revision: None,
            native_step: None,
            native_tree: None,
            approvals: Vec::new(),
            acknowledged: None,
            waiting: None,
            spec: Arc::new(RolloutSpec { plan, stages }),
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.spec.plan
    }

    pub fn stages(&self) -> &[Stage] {
        &self.spec.stages
    }

    pub fn current_stage(&self) -> Option<&Stage> {
        self.spec.stages.get(self.stage)
    }

    /// Bake time of the current stage so far.
    pub fn baked(&self, now: Timestamp) -> Duration {
        match self.phase {
            Phase::Progressing { since } => self.bake_elapsed.saturating_add(now.since(since)),
            _ => self.bake_elapsed,
        }
    }

    /// Bake time left in the current stage, while it is baking or paused.
    pub fn bake_remaining(&self, now: Timestamp) -> Option<Duration> {
        match self.phase {
            Phase::Progressing { .. } | Phase::Paused { .. } => {
                let bake = self.current_stage()?.bake;
                Some(bake.saturating_sub(self.baked(now)))
            }
            _ => None,
        }
    }

    /// When a tick alone may next change this rollout: the end of the
    /// current stage's bake (`on_tick` advances a driven rollout then).
    /// Everything else changes on an event (a window, a command, a reply),
    /// so the engine sleeps until this time or the next window, whichever
    /// comes first. `None` when no tick can change it.
    pub fn next_tick_at(&self) -> Option<Timestamp> {
        let Phase::Progressing { since } = self.phase else { return None };
        if self.control != Control::Driven {
            return None;
        }
        if let Some(w) = &self.waiting {
            // Waiting for the backend: try again, or give up at the deadline.
            return Some(w.retry_at.min(w.deadline));
        }
        let bake = self.current_stage()?.bake;
        Some(since.plus(bake.saturating_sub(self.bake_elapsed)))
    }

    /// Time to 100 % if every remaining stage bakes and passes on time.
    pub fn eta(&self, now: Timestamp) -> Option<Duration> {
        if self.phase.is_finished() {
            return None;
        }
        // Saturating: a plan may bake for "forever" (Duration::MAX); never panic.
        let later = self.stages().iter().skip(self.stage + 1).fold(Duration::ZERO, |sum, s| sum.saturating_add(s.bake));
        let current = match self.phase {
            Phase::Pending => self.current_stage().map_or(Duration::ZERO, |s| s.bake),
            _ => self.bake_remaining(now).unwrap_or_default(),
        };
        Some(current.saturating_add(later))
    }

    /// Why this rollout needs a person now, if it does.
    pub fn needs_human(&self) -> Option<String> {
        match &self.phase {
            Phase::AwaitingApproval { gate, next, .. } => Some(match gate {
                Gate::Stage => match self.plan().approvers_for(*next) {
                    Some(named) => {
                        let given: Vec<&str> =
                            self.approvals.iter().filter(|a| a.stage == *next).map(|a| a.actor.0.as_str()).collect();
                        let so_far = if given.is_empty() {
                            String::new()
                        } else {
                            format!("; approved by {}", given.join(", "))
                        };
                        format!(
                            "approve stage {} of {}: {} of {} needed{so_far}",
                            next + 1,
                            self.stages().len(),
                            named.required,
                            named.names.join(", ")
                        )
                    }
                    None => format!("approve stage {} of {}", next + 1, self.stages().len()),
                },
                Gate::Budget if self.budget.is_some_and(|b| b.unknown) => {
                    "error budget unknown (no valid availability reading): approve each promotion".to_string()
                }
                Gate::Budget => "error budget below 50 %: approve each promotion".to_string(),
                Gate::Freeze => "error budget frozen: override with a reason to continue".to_string(),
            }),
            Phase::Paused { by, reason, .. } if *by == Actor::analysis() || *by == Actor::backend() => {
                Some(reason.clone())
            }
            Phase::Failed { reason, .. } => Some(reason.clone()),
            _ => self.backend_error.clone().or_else(|| self.observe_error.clone()),
        }
    }

    /// The effects that bring a freshly started backend to this state, used
    /// when a run resumes from its journal. Idempotent like every effect.
    pub fn reconcile(&self) -> Vec<Effect> {
        let mut fx = Vec::new();
        match self.phase {
            // The native controller holds an observed rollout's traffic, whatever its phase.
            _ if self.control == Control::Observed => {}
            Phase::Pending => {}
            Phase::Aborted { .. } => revert(&mut self.clone(), &mut fx, false),
            Phase::RolledBack { .. } => revert(&mut self.clone(), &mut fx, true),
            // A failed rollback or abort: keep the canary out, never re-enter the stage.
            Phase::Failed { .. } if self.canary_weight == 0 => revert(&mut self.clone(), &mut fx, true),
            _ => fx.extend(live_effects(self)),
        }
        fx
    }

    /// What happens next and when, in words: "Next: 50 % in 9:42".
    pub fn next_step(&self, now: Timestamp) -> String {
        let next = self.stages().get(self.stage + 1);
        match (&self.phase, next) {
            (Phase::Pending, _) => "Next: start".to_string(),
            (Phase::Progressing { .. }, _) if self.waiting.is_some() => {
                let w = self.waiting.as_ref().expect("checked");
                let left = crate::time::clock(w.deadline.since(now.min(w.deadline)));
                format!("Next: {} % once ready: waiting for {} (pauses in {left})", self.canary_weight, w.detail)
            }
            (Phase::Progressing { .. }, None) => "Next: complete".to_string(),
            (Phase::Progressing { .. }, Some(n)) => match self.bake_remaining(now) {
                Some(left) if !left.is_zero() => {
                    format!("Next: {} % in {}", n.weight, crate::time::clock(left))
                }
                _ if !may_advance(self) => format!("Next: {} % after a passing verdict", n.weight),
                _ => format!("Next: {} %", n.weight),
            },
            (Phase::AwaitingApproval { .. }, _) => "Next: waiting for approval".to_string(),
            (Phase::Paused { from: PausedFrom::Step { .. } | PausedFrom::BeforeSwitch, .. }, _) => {
                "Next: promote to continue".to_string()
            }
            (Phase::Paused { .. }, _) => "Next: resume to continue".to_string(),
            (Phase::Aborted { .. }, _) => "Next: retry or rollback".to_string(),
            (Phase::Failed { .. }, _) => "Next: a human must look".to_string(),
            (Phase::Promoted { .. }, _) => "Next: nothing (done)".to_string(),
            // The way on from a rollback is a fixed revision, which starts a
            // rollout of its own.
            (Phase::RolledBack { .. }, _) => "Next: a fixed revision".to_string(),
        }
    }
}

/// Applies one event. Returns the new state and the effects to carry out.
/// A rejected command returns the state unchanged and a `Rejected` notice.
pub fn step(state: &Rollout, event: Event, now: Timestamp) -> (Rollout, Vec<Effect>) {
    let mut next = state.clone();
    let mut effects = Vec::new();
    match event {
        Event::Start => on_start(&mut next, &mut effects, now),
        Event::Tick => on_tick(&mut next, &mut effects, now),
        Event::Metrics(sample) => on_metrics(&mut next, &mut effects, &sample, now),
        Event::Budget(m) => on_budget(&mut next, &mut effects, &m, now),
        Event::Observation(o) => on_observation(&mut next, &mut effects, o, now),
        Event::Command(req) => {
            if let Err(refusal) = on_command(&mut next, &mut effects, &req, now) {
                let notice = Notice::Rejected { actor: req.actor, command: req.command.verb().to_string(), refusal };
                return (state.clone(), vec![Effect::Notify(notice)]);
            }
        }
        Event::EffectDone { effect } => on_effect_done(&mut next, &mut effects, &effect, now),
        Event::EffectFailed { effect, error } => on_effect_failed(&mut next, &effect, error, now),
        Event::EffectWaiting { effect, detail, timeout, retry } => {
            on_effect_waiting(&mut next, &mut effects, effect, detail, (timeout, retry), now)
        }
        Event::ObserveFailed { error } => on_observe_failed(&mut next, error, now),
        Event::NewRevision { revision } => on_new_revision(&mut next, &mut effects, revision),
    }
    if next.canary_weight != state.canary_weight {
        next.weight_since = Some(now);
    }
    // A wait ends with the phase or stage it belongs to, or when another
    // effect takes its place (abort, rollback, a step back or forward).
    if let Some(w) = &next.waiting {
        let superseded = effects.iter().any(|e| e.is_backend() && *e != w.effect);
        if !matches!(next.phase, Phase::Progressing { .. }) || next.stage != state.stage || superseded {
            next.waiting = None;
        }
    }
    (next, effects)
}

fn on_start(r: &mut Rollout, fx: &mut Vec<Effect>, now: Timestamp) {
    if r.phase == Phase::Pending && r.control == Control::Driven {
        enter_stage(r, fx, 0, now, false);
    } else if r.phase == Phase::Pending {
        // A native controller runs it: mirror it from its first observation.
        r.phase = Phase::Progressing { since: now };
    }
}

fn on_tick(r: &mut Rollout, fx: &mut Vec<Effect>, now: Timestamp) {
    let Phase::Progressing { .. } = r.phase else {
        return;
    };
    if r.control != Control::Driven {
        return;
    }
    if let Some(w) = r.waiting.clone() {
        if now >= w.deadline {
            let waited = now.since(w.since).as_secs();
            let reason = format!(
                "{} was not possible for {waited} s: waiting for {}; it was not applied. Fix it, then resume",
                w.effect, w.detail
            );
            fx.push(Effect::Notify(Notice::Warning { message: reason.clone() }));
            pause(r, Actor::backend(), reason, now);
            r.waiting = None;
        } else if now >= w.retry_at {
            fx.push(w.effect);
        }
        // The stage is not left while its own effect waits.
        return;
    }
    let Some(stage) = r.current_stage() else {
        return;
    };
    let baked = r.baked(now) >= stage.bake;
    if baked && may_advance(r) {
        let target = r.stage + 1;
        enter_stage(r, fx, target, now, false);
    }
}

/// Whether the current stage's analysis lets the rollout leave it without a
/// human: the one place that reads the stage's evidence for advancing.
fn may_advance(r: &Rollout) -> bool {
    // Otherwise the stage must have shown a pass (too few requests is never
    // one), and a window with no metrics since then leaves it blind.
    r.current_stage().is_some() && (may_pass_without_verdict(r) || (r.stage_passed && r.inconclusive_windows == 0))
}

/// Moves to stage `index` (or completes past the last one), stopping at a
/// gate unless a human already approved (`approved`).
fn enter_stage(r: &mut Rollout, fx: &mut Vec<Effect>, index: usize, now: Timestamp, approved: bool) {
    if index >= r.stages().len() {
        complete(r, fx, now);
        return;
    }
    if !approved {
        if let Some(gate) = gate_for(r, index) {
            // Keep the bake done so far: a pause while waiting must not re-bake.
            r.bake_elapsed = r.baked(now);
            r.phase = Phase::AwaitingApproval { next: index, gate, since: now };
            return;
        }
    }
    let stage = r.stages()[index].clone();
    r.stage = index;
    r.canary_weight = stage.weight;
    reset_stage_progress(r);
    r.phase = Phase::Progressing { since: now };
    if index == 0 && stage.action == StageAction::Weight {
        // A rollback (or a drain) may have scaled the canary to 0: have it
        // ready before it takes traffic. (A blue-green preview scales itself.)
        fx.push(Effect::Scale { version: Version::Canary, percent: 100 });
    }
    fx.extend(stage_effects(&stage));
    if stage.bake.is_zero() && index + 1 == r.stages().len() {
        // Nothing to bake at the last stage: reaching it is the promotion.
        complete(r, fx, now);
    }
}

/// Counts `actor`'s approval of entering stage `target` when the plan names
/// its approvers. True when the stage may be entered now (enough
/// approvals, or nobody named); false while more are needed (the rollout
/// then waits at the stage's gate, keeping its bake). A person not named,
/// or one who already approved, is refused.
fn count_approval(
    r: &mut Rollout,
    fx: &mut Vec<Effect>,
    target: usize,
    actor: &Actor,
    now: Timestamp,
) -> Result<bool, Refusal> {
    let Some(named) = r.plan().approvers_for(target).cloned() else { return Ok(true) };
    let stage = target + 1;
    if !named.names.contains(&actor.0) {
        return Err(Refusal::NotAnApprover { actor: actor.0.clone(), stage: target, approvers: named.names.clone() });
    }
    if r.approvals.iter().any(|a| a.stage == target && a.actor == *actor) {
        let waiting = waiting_for(r, &named, target);
        return Err(Refusal::AlreadyApproved { actor: actor.0.clone(), stage: target, waiting });
    }
    r.approvals.push(ActorNote { actor: actor.clone(), action: "approve".into(), at: now, stage: target });
    let given = r.approvals.iter().filter(|a| a.stage == target).count();
    if given >= named.required {
        fx.push(Effect::Notify(Notice::Info {
            message: format!("{actor} approved stage {stage} ({given} of {} required): entering it", named.required),
        }));
        return Ok(true);
    }
    fx.push(Effect::Notify(Notice::Info {
        message: format!(
            "{actor} approved stage {stage} ({given} of {}); {}",
            named.required,
            waiting_for(r, &named, target)
        ),
    }));
    if !matches!(r.phase, Phase::AwaitingApproval { .. }) {
        r.bake_elapsed = r.baked(now);
        r.phase = Phase::AwaitingApproval { next: target, gate: Gate::Stage, since: now };
    }
    Ok(false)
}

/// "waiting for 1 more of bob, carol".
fn waiting_for(r: &Rollout, named: &crate::plan::StageApprovers, target: usize) -> String {
    let approved: Vec<&Actor> = r.approvals.iter().filter(|a| a.stage == target).map(|a| &a.actor).collect();
    let left: Vec<&str> =
        named.names.iter().filter(|n| !approved.iter().any(|a| a.0 == **n)).map(String::as_str).collect();
    let more = named.required.saturating_sub(approved.len());
    format!("waiting for {more} more of {}", left.join(", "))
}

/// The gate in front of stage `index`, if any.
fn gate_for(r: &Rollout, index: usize) -> Option<Gate> {
    let frozen = r.budget.is_some_and(|b| b.policy == DeployPolicy::Freeze);
    match r.budget.map(|b| b.policy) {
        _ if frozen && r.freeze_override.is_none() => Some(Gate::Freeze),
        Some(DeployPolicy::ApprovalRequired) => Some(Gate::Budget),
        _ if r.stages()[index].approval => Some(Gate::Stage),
        _ => None,
    }
}

/// What entering (or re-applying) a stage does. Each list is absolute, so
/// stepping back or resuming lands on the same state as entering.
fn stage_effects(stage: &Stage) -> Vec<Effect> {
    match stage.action {
        StageAction::Weight => vec![Effect::SetWeight { canary: stage.weight }],
        // The preview runs beside the active side and takes no user traffic
        // (this also switches back when stepping back from the switch).
        StageAction::Preview => {
            vec![Effect::Scale { version: Version::Canary, percent: 100 }, Effect::SwitchActive { to: Version::Stable }]
        }
        StageAction::Switch => vec![Effect::SwitchActive { to: Version::Canary }],
        StageAction::Batch => vec![Effect::Scale { version: Version::Canary, percent: stage.weight }],
    }
}

/// True while waiting (or paused) at a gate in front of the first stage
/// after a start or a retry: no stage of this run is live yet.
fn before_first_stage(r: &Rollout) -> bool {
    match r.phase {
        Phase::Pending => true,
        Phase::AwaitingApproval { next, .. } | Phase::Paused { from: PausedFrom::Gate { next, .. }, .. } => {
            next <= r.stage
        }
        _ => false,
    }
}

/// The effects that re-assert what the state says is live and nothing
/// more: the current stage once it is entered, the canary out of traffic
/// before the first stage.
fn live_effects(r: &Rollout) -> Vec<Effect> {
    let mut fx = Vec::new();
    if before_first_stage(r) {
        revert(&mut r.clone(), &mut fx, false);
    } else if let Some(stage) = r.current_stage() {
        fx.extend(stage_effects(stage));
    }
    fx
}

fn complete(r: &mut Rollout, fx: &mut Vec<Effect>, now: Timestamp) {
    let last = r.stages().len().saturating_sub(1);
    if r.stage != last || r.canary_weight != 100 {
        let stage = r.stages()[last].clone();
        r.stage = last;
        r.canary_weight = 100;
        if !matches!(r.plan().strategy, Strategy::Rolling { .. }) {
            // Jumping to 100 % may skip the stage that scales the new side
            // up (a preview never run, a canary scaled down by a rollback).
            fx.push(Effect::Scale { version: Version::Canary, percent: 100 });
        }
        fx.extend(stage_effects(&stage));
    }
    let blue_green = matches!(r.plan().strategy, Strategy::BlueGreen { .. });
    let idle_side_goes =
        matches!(r.plan().strategy, Strategy::Canary { .. }) && r.plan().target.backend.removes_idle_side();
    if blue_green || idle_side_goes {
        // The old side ran through the verification window for an instant
        // switch back (or is a task set billed while idle); now it can go.
        fx.push(Effect::Scale { version: Version::Stable, percent: 0 });
    }
    r.phase = Phase::Promoted { at: now };
    fx.push(Effect::Notify(Notice::Info { message: format!("{} promoted to 100 %", r.canary_revision) }));
}

/// Canary weight to 0 and, for a rollback, the canary (or new side) removed.
fn revert(r: &mut Rollout, fx: &mut Vec<Effect>, scale_down: bool) {
    r.canary_weight = 0;
    match r.plan().strategy {
        Strategy::Canary { .. } => {
            fx.push(Effect::SetWeight { canary: 0 });
            if scale_down || r.plan().target.backend.removes_idle_side() {
                fx.push(Effect::Scale { version: Version::Canary, percent: 0 });
            }
        }
        Strategy::BlueGreen { .. } => {
            fx.push(Effect::SwitchActive { to: Version::Stable });
            if scale_down {
                fx.push(Effect::Scale { version: Version::Canary, percent: 0 });
            }
        }
        Strategy::Rolling { .. } if scale_down => fx.push(Effect::Undo { to_revision: r.stable_revision.clone() }),
        // Aborting a rolling update stops it where it is and sends no new
        // replicas; the old ones keep serving.
        Strategy::Rolling { .. } => fx.push(Effect::Scale { version: Version::Canary, percent: 0 }),
    }
}

fn roll_back(r: &mut Rollout, fx: &mut Vec<Effect>, by: Actor, reason: String, now: Timestamp) {
    revert(r, fx, true);
    r.phase = Phase::RolledBack { by, reason, at: now };
}

fn on_metrics(r: &mut Rollout, fx: &mut Vec<Effect>, sample: &crate::analysis::MetricsSample, now: Timestamp) {
    let live = matches!(r.phase, Phase::Progressing { .. } | Phase::Paused { .. } | Phase::AwaitingApproval { .. });
    // While the stage's effect waits the canary has none of its weight:
    // such a window says nothing about it (nor that it is dead).
    if !live || r.waiting.is_some() {
        return;
    }
    let verdict = r.evidence.observe(&r.spec.plan.analysis, sample);
    let was_failing = r.last_verdict.as_ref().is_some_and(|v| v.label() == "fail");
    match &verdict {
        // A stage that passed but whose canary now gets no traffic is not a
        // pass: a dead canary must not be promoted on its earlier evidence.
        Verdict::Pass { .. } if no_canary_traffic(r, sample) => {
            r.stage_passed = false;
            on_inconclusive(r, fx, sample, &verdict, now);
        }
        Verdict::Pass { .. } => {
            r.inconclusive_windows = 0;
            r.zero_traffic_windows = 0;
            r.stage_passed = true;
        }
        Verdict::Fail { severity, .. } => {
            r.stage_passed = false;
            let reason = format!("analysis failed ({severity:?}): {}", verdict.summary());
            if r.control == Control::Observed {
                // The native controller decides; our verdict is advice, given
                // once when it turns (a proven fail stays proven).
                if !was_failing {
                    fx.push(Effect::Notify(Notice::Warning { message: reason }));
                }
            } else {
                // The evidence is sequential: a fail is already beyond noise
                // (its false-alarm rate is bounded by the plan's alpha).
                roll_back(r, fx, Actor::analysis(), reason, now);
            }
        }
        Verdict::Inconclusive { .. } => on_inconclusive(r, fx, sample, &verdict, now),
    }
    r.last_verdict = Some(verdict);
}

/// Inconclusive never means "wait silently forever": a window that cannot
/// move the rollout on counts, and after the plan's limit a human is asked
/// with the reason. Observed rollouts are the native controller's to hold.
fn on_inconclusive(
    r: &mut Rollout,
    fx: &mut Vec<Effect>,
    sample: &crate::analysis::MetricsSample,
    verdict: &Verdict,
    now: Timestamp,
) {
    let limit = r.plan().analysis.inconclusive_limit;
    let no_traffic = no_canary_traffic(r, sample);
    r.zero_traffic_windows = if no_traffic { r.zero_traffic_windows + 1 } else { 0 };
    let waiting = verdict.is_missing_metrics() || no_traffic || (baked(r, now) && !may_pass_without_verdict(r));
    r.inconclusive_windows = if waiting { r.inconclusive_windows + 1 } else { 0 };
    let reason = if r.zero_traffic_windows >= ZERO_TRAFFIC_LIMIT {
        format!(
            "the canary got no requests in {} windows at {} % weight: is it running, ready and selected by the \
             route? Fix it, then resume",
            r.zero_traffic_windows, r.canary_weight
        )
    } else if r.inconclusive_windows < limit {
        return;
    } else if verdict.is_missing_metrics() {
        format!(
            "metrics missing for {limit} windows in a row ({}); check the metrics source, then resume",
            verdict.summary()
        )
    } else {
        let estimate = verdict.estimate_text().map(|e| format!(" ({e})")).unwrap_or_default();
        format!(
            "no decision {limit} windows after the bake{estimate}: {}; resume to keep waiting, or promote by hand",
            verdict.summary()
        )
    };
    if r.control == Control::Driven && matches!(r.phase, Phase::Progressing { .. }) {
        fx.push(Effect::Notify(Notice::Warning { message: reason.clone() }));
        pause(r, Actor::analysis(), reason, now);
    }
}

/// Windows without a single canary request (at weight > 0) before a pause.
const ZERO_TRAFFIC_LIMIT: u32 = 2;

/// A canary with traffic weight that got no request although stable's
/// traffic says it should have had at least a handful (so a quiet service
/// at 1 % is not mistaken for a dead canary). A missing canary window
/// (`None`) is missing metrics, not this.
fn no_canary_traffic(r: &Rollout, sample: &crate::analysis::MetricsSample) -> bool {
    let Some(canary) = &sample.canary else { return false };
    if r.canary_weight == 0 || canary.requests > 0 {
        return false;
    }
    let share = f64::from(r.canary_weight) / 100.0;
    let stable = sample.stable.as_ref().map_or(0, |s| s.requests) as f64;
    share >= 1.0 || stable * share / (1.0 - share) >= 5.0
}

/// The current stage has baked for its whole bake time.
fn baked(r: &Rollout, now: Timestamp) -> bool {
    r.current_stage().is_some_and(|stage| r.baked(now) >= stage.bake)
}

/// A stage whose bake is zero passes straight through; at 100 % stable takes
/// no traffic, so there is nothing to compare with: that bake is a
/// verification window in which a failing verdict still rolls back, but no
/// pass can be asked for.
fn may_pass_without_verdict(r: &Rollout) -> bool {
    r.current_stage().is_none_or(|stage| stage.bake.is_zero() || stage.weight >= 100)
}

impl Rollout {
    /// Pauses the rollout the way a human or the analysis does. For the
    /// engine's one emergency stop: when it can no longer record what
    /// happens (the journal cannot be written), it must stop acting.
    pub fn hold(&mut self, by: Actor, reason: String, now: Timestamp) {
        pause(self, by, reason, now);
    }
}

fn pause(r: &mut Rollout, by: Actor, reason: String, now: Timestamp) {
    r.bake_elapsed = r.baked(now);
    let from = match r.phase {
        Phase::AwaitingApproval { next, gate, .. } => PausedFrom::Gate { next, gate },
        Phase::Paused { from, .. } => from,
        _ => PausedFrom::Baking,
    };
    r.phase = Phase::Paused { by, reason, since: now, from };
}

fn on_observation(r: &mut Rollout, fx: &mut Vec<Effect>, o: Observation, now: Timestamp) {
    r.observed_weight = o.canary_weight;
    r.observe_error = None;
    // What the backend says beside its numbers (a driven ECS canary's sticky
    // sessions, a native controller's steps) is shown with the rollout.
    r.native_detail.clone_from(&o.native_detail);
    r.native_tree.clone_from(&o.native_tree);
    // The controller's own events (Flagger's failure reasons) join the log.
    fx.extend(o.native_events.iter().map(|e| {
        let message = e.text.clone();
        Effect::Notify(if e.warning { Notice::Warning { message } } else { Notice::Info { message } })
    }));
    if r.control == Control::Observed {
        follow_native_revision(r, fx, &o, now);
        mirror_native(r, &o, now);
        return;
    }
    let Some(seen) = o.canary_weight else { return };
    if matches!(r.plan().strategy, Strategy::Rolling { .. }) {
        // A rolling update's split is the Deployment controller's progress
        // toward the batch (surge by surge), not a weight that can drift.
        return;
    }
    // A weight still waiting to be set is not drift.
    let watching = matches!(r.phase, Phase::Progressing { .. } | Phase::AwaitingApproval { .. }) && r.waiting.is_none();
    if watching && seen != r.canary_weight {
        let reason = format!(
            "drift: the backend shows canary weight {seen} % but flightdeck set {} % \
             (changed by hand, or the proxy restarted); resume re-applies {} %",
            r.canary_weight, r.canary_weight
        );
        fx.push(Effect::Notify(Notice::Warning { message: reason.clone() }));
        pause(r, Actor::backend(), reason, now);
    }
}

/// Observed rollouts: when the controller starts another revision, that is
/// a new rollout of this plan: the one before ends (its events stay in the
/// history), the new one starts from its first stage with fresh evidence,
/// and commands sent for the old revision are stale from now on.
fn follow_native_revision(r: &mut Rollout, fx: &mut Vec<Effect>, o: &Observation, now: Timestamp) {
    let Some(revision) = &o.native_revision else { return };
    let Some(seen) = r.native_revision.replace(revision.clone()) else {
        // The first reading names the revision being rolled out now.
        r.canary_revision.clone_from(revision);
        return;
    };
    if seen == *revision {
        return;
    }
    let previous = std::mem::replace(&mut r.canary_revision, revision.clone());
    let message = format!("new rollout: the controller started {revision}; {previous} ended {}", r.phase.label());
    fx.push(Effect::Notify(Notice::Info { message }));
    if matches!(r.phase, Phase::Promoted { .. }) {
        r.stable_revision = previous;
    }
    r.phase = Phase::Progressing { since: now };
    r.stage = 0;
    r.canary_weight = 0;
    reset_stage_progress(r);
    r.evidence = Evidence::default();
    r.last_verdict = None;
    r.freeze_override = None;
    r.last_action = None;
    r.acknowledged = None;
}

/// Observed rollouts: the core's state follows the native controller.
fn mirror_native(r: &mut Rollout, o: &Observation, now: Timestamp) {
    r.native_detail.clone_from(&o.native_detail);
    r.native_step = o.native_step;
    if let Some(stage) = o.native_stage {
        if stage != r.stage && stage < r.stages().len() {
            r.stage = stage;
            // A new stage of the native controller: our stage evidence
            // starts over with it, as for a driven rollout.
            reset_stage_progress(r);
        }
    }
    if let Some(w) = o.canary_weight {
        r.canary_weight = w;
    }
    let Some(status) = &o.native_status else { return };
    let by = Actor::new("controller");
    let mirrored = match status {
        NativeStatus::Progressing => Phase::Progressing { since: now },
        NativeStatus::Paused { reason, step, before_switch } => {
            let from = match (step, before_switch) {
                (Some(step), _) => PausedFrom::Step { step: *step },
                (None, true) => PausedFrom::BeforeSwitch,
                (None, false) => PausedFrom::Baking,
            };
            Phase::Paused { by, reason: reason.clone(), since: now, from }
        }
        NativeStatus::Degraded { message } => Phase::Failed { reason: message.clone(), at: now },
        NativeStatus::Aborted { message } => Phase::Aborted { by, reason: message.clone(), at: now },
        NativeStatus::Healthy => Phase::Promoted { at: now },
    };
    // Only a change of phase (or of what holds a pause) is news: keep
    // "since" and "at" of the phase already mirrored, so a steady status
    // does not rewrite the state.
    let held_by = |p: &Phase| match p {
        Phase::Paused { from, reason, .. } => Some((*from, reason.clone())),
        _ => None,
    };
    if mirrored.label() != r.phase.label() || held_by(&mirrored) != held_by(&r.phase) {
        r.phase = mirrored;
    }
}

fn on_effect_done(r: &mut Rollout, fx: &mut Vec<Effect>, effect: &Effect, now: Timestamp) {
    r.backend_error = None;
    let Some(w) = r.waiting.take_if(|w| w.effect == *effect) else { return };
    // The stage bakes from now: until now its weight was not applied.
    if let Phase::Progressing { since } = &mut r.phase {
        *since = now;
    }
    let message = format!("{effect}: done after waiting {} s for {}", now.since(w.since).as_secs(), w.detail);
    fx.push(Effect::Notify(Notice::Info { message }));
}

/// The backend cannot carry `effect` out yet. A driven rollout baking its
/// stage waits for it (see [`Waiting`]) up to the backend's timeout from
/// the first such answer; anywhere else (a promotion, an abort) not being
/// able to carry it out is a failure.
fn on_effect_waiting(
    r: &mut Rollout,
    fx: &mut Vec<Effect>,
    effect: Effect,
    detail: String,
    (timeout, retry): (Duration, Duration),
    now: Timestamp,
) {
    if r.control != Control::Driven || !matches!(r.phase, Phase::Progressing { .. }) {
        on_effect_failed(r, &effect, format!("not ready: {detail}"), now);
        return;
    }
    let retry_at = now.plus(retry.max(Duration::from_secs(1)));
    match &mut r.waiting {
        Some(w) if w.effect == effect => {
            w.detail = detail;
            w.retry_at = retry_at;
        }
        _ => {
            let message = format!(
                "{effect} waits for {detail}; tried again every {} s, the rollout pauses if it is not done in {} s",
                retry.as_secs().max(1),
                timeout.as_secs()
            );
            fx.push(Effect::Notify(Notice::Info { message }));
            let deadline = now.plus(timeout);
            r.waiting = Some(Waiting { effect, detail, since: now, deadline, retry_at });
        }
    }
}

fn on_effect_failed(r: &mut Rollout, effect: &Effect, error: String, now: Timestamp) {
    r.backend_error = Some(format!("{effect}: {error}"));
    if r.control == Control::Observed {
        // The native controller's phase is the truth; a refused verb (RBAC,
        // conflict) is shown as a banner and changes nothing it mirrors.
        return;
    }
    match r.phase {
        Phase::Progressing { .. } | Phase::AwaitingApproval { .. } => {
            let reason = format!("backend failing ({effect}: {error}); fix it, then resume");
            pause(r, Actor::backend(), reason, now);
        }
        // A rollback, abort or promotion that did not reach the system must
        // not look done: say so, and let the captain issue it again.
        Phase::Aborted { .. } | Phase::RolledBack { .. } | Phase::Promoted { .. } => {
            let reason = format!(
                "{} was not applied ({effect}: {error}); traffic may not be where it should — roll back again or retry",
                r.phase.label()
            );
            r.phase = Phase::Failed { reason, at: now };
        }
        // Nothing runs before the start, which applies every stage effect
        // afresh; the banner shows the error until then.
        Phase::Paused { .. } | Phase::Failed { .. } | Phase::Pending => {}
    }
}

fn on_budget(r: &mut Rollout, fx: &mut Vec<Effect>, m: &SloMeasurement, now: Timestamp) {
    r.budget = Some(BudgetStatus::compute(&r.spec.plan.slo, m));
    // A gate the budget put up comes down when the budget recovers (or
    // becomes a different gate when it gets worse).
    if let Phase::AwaitingApproval { next, gate: gate @ (Gate::Budget | Gate::Freeze), .. } = r.phase {
        if gate_for(r, next) == Some(gate) {
            return;
        }
        // Nothing bakes in front of the first stage; otherwise the stage's
        // analysis must still allow leaving it (a fail may have come in while
        // waiting): if not, bake on and let a tick advance when it may.
        if before_first_stage(r) || may_advance(r) {
            enter_stage(r, fx, next, now, false);
        } else {
            r.phase = Phase::Progressing { since: now };
        }
    }
}

fn on_observe_failed(r: &mut Rollout, error: String, now: Timestamp) {
    let first = r.observe_error.is_none();
    r.observe_error = Some(format!("cannot read the backend: {error}"));
    // Traffic may be anywhere while a driven backend is dark: hold, never
    // advance blind. An observed rollout is the native controller's to hold;
    // flightdeck only shows that its view is stale.
    let live = matches!(r.phase, Phase::Progressing { .. } | Phase::AwaitingApproval { .. });
    if first && live && r.control == Control::Driven {
        let reason = format!("backend unreachable ({error}); resume once it is back");
        pause(r, Actor::backend(), reason, now);
    }
}

fn on_new_revision(r: &mut Rollout, fx: &mut Vec<Effect>, revision: String) {
    if !r.phase.is_finished() {
        let message = format!("new revision {revision} ignored: {} is still rolling out", r.canary_revision);
        fx.push(Effect::Notify(Notice::Warning { message }));
        return;
    }
    if matches!(r.phase, Phase::Promoted { .. }) {
        r.stable_revision = std::mem::take(&mut r.canary_revision);
    }
    if matches!(r.phase, Phase::Failed { .. }) && r.control == Control::Driven {
        // Traffic may be anywhere after a failure: back to stable before the
        // new revision waits at 0 %.
        revert(r, fx, false);
    }
    r.canary_revision = revision;
    r.phase = Phase::Pending;
    r.stage = 0;
    r.canary_weight = 0;
    reset_stage_progress(r);
    r.evidence = Evidence::default();
    r.last_verdict = None;
    r.freeze_override = None;
    r.acknowledged = None;
}

/// A stage starts over: its bake, its pass and its canary evidence (the
/// evidence toward failing the canary is kept for the whole revision).
fn reset_stage_progress(r: &mut Rollout) {
    r.approvals.clear();
    r.bake_elapsed = Duration::ZERO;
    r.stage_passed = false;
    r.inconclusive_windows = 0;
    r.zero_traffic_windows = 0;
    r.evidence.new_stage();
}

/// Applies an operator command, or says why it cannot. Who may send it,
/// whether it can be stale and in which phases it acts come from the verb
/// table (`verbs::VERBS`); what it does is here.
fn on_command(r: &mut Rollout, fx: &mut Vec<Effect>, req: &CommandRequest, now: Timestamp) -> Result<(), Refusal> {
    let row = verb_of(&req.command);
    if req.role == Role::Viewer && !row.viewer_may_send() {
        return Err(Refusal::Viewer { actor: req.actor.0.clone() });
    }
    // Abort, rollback and pause only reduce exposure: whatever the sender
    // saw, they apply to what runs now. Everything else moves forward (or
    // back from the stage the sender saw) and must be meant for this
    // revision and stage.
    if !row.never_stale && req.expected_revision != r.canary_revision {
        return Err(Refusal::StaleRevision { sent: req.expected_revision.clone(), now: r.canary_revision.clone() });
    }
    if !row.never_stale && req.expected_stage != r.stage {
        return Err(Refusal::StaleStage {
            sent: req.expected_stage,
            now: r.stage,
            stages: r.stages().len(),
            weight: r.canary_weight,
        });
    }
    // The controller's step, where it counts more steps than the stages
    // (two pause steps at one weight): a promote of a pause that has
    // already moved on must not promote the next one.
    if let Some(sent) = req.expected_step.filter(|sent| !row.never_stale && Some(*sent) != r.native_step) {
        return Err(Refusal::StaleStep { sent, now: r.native_step });
    }
    if let Command::Acknowledge = req.command {
        return acknowledge(r, &req.actor, now);
    }
    if r.control == Control::Observed {
        return native_command(r, fx, req, now);
    }
    if let Command::Native { verb } = &req.command {
        return Err(Refusal::NativeVerbOnDriven { verb: verb.name().into() });
    }
    if matches!(req.command, Command::Approve) && !matches!(r.phase, Phase::AwaitingApproval { .. }) {
        // Before the phase check: "nothing is waiting" says more than "not while baking".
        if Live::of(&r.phase).is_some() {
            return Err(Refusal::NothingWaiting);
        }
    }
    check_phase(r, &req.command)?;
    let actor = req.actor.clone();
    match &req.command {
        Command::Pause { reason } => {
            let reason = reason.clone().unwrap_or_else(|| format!("paused by {actor}"));
            pause(r, actor.clone(), reason, now);
        }
        Command::Resume => {
            r.phase = match r.phase {
                // Back to the gate, never past it: only a human or the budget lifts it.
                Phase::Paused { from: PausedFrom::Gate { next, gate }, .. } => {
                    Phase::AwaitingApproval { next, gate: gate_for(r, next).unwrap_or(gate), since: now }
                }
                _ => Phase::Progressing { since: now },
            };
            r.inconclusive_windows = 0;
            r.zero_traffic_windows = 0;
            r.backend_error = None;
            r.observe_error = None;
            // Re-apply what the state says is live: the pause may have come
            // from drift or a failed effect.
            fx.extend(live_effects(r));
        }
        Command::Promote | Command::Approve => {
            check_freeze(r)?;
            let target = match r.phase {
                Phase::AwaitingApproval { next, .. } => next,
                Phase::Paused { from: PausedFrom::Gate { next, .. }, .. } => next,
                _ => r.stage + 1,
            };
            // A promote into a stage with named approvers is that person's approval.
            if !count_approval(r, fx, target, &actor, now)? {
                return Ok(());
            }
            enter_stage(r, fx, target, now, true);
        }
        Command::PromoteFull => {
            check_freeze(r)?;
            if let Some(named) = r.plan().approvers.iter().find(|a| a.stage > r.stage) {
                return Err(Refusal::ApproversAhead {
                    stage: named.stage,
                    required: named.required,
                    approvers: named.names.clone(),
                });
            }
            complete(r, fx, now);
        }
        Command::StepBack => {
            if r.stage == 0 {
                return Err(Refusal::AtFirstStage);
            }
            if before_first_stage(r) {
                return Err(Refusal::NothingToStepBack { weight: r.canary_weight });
            }
            let from = r.canary_weight;
            let stage = r.stages()[r.stage - 1].clone();
            r.stage -= 1;
            r.canary_weight = stage.weight;
            reset_stage_progress(r);
            fx.extend(stage_effects(&stage));
            let reason = format!("stepped back by {actor} from {from} % to {} %", stage.weight);
            r.phase = Phase::Paused { by: actor.clone(), reason, since: now, from: PausedFrom::Baking };
        }
        Command::Abort { reason } => {
            // Again after an abort: re-sends the revert, in case it did not take.
            revert(r, fx, false);
            let reason = reason.clone().unwrap_or_else(|| format!("aborted by {actor}"));
            r.phase = Phase::Aborted { by: actor.clone(), reason, at: now };
        }
        Command::Rollback { reason } => {
            let reason = reason.clone().unwrap_or_else(|| format!("rolled back by {actor}"));
            roll_back(r, fx, actor.clone(), reason, now);
        }
        Command::Retry => {
            check_freeze(r)?;
            r.acknowledged = None;
            r.evidence = Evidence::default();
            r.backend_error = None;
            reset_stage_progress(r);
            if gate_for(r, 0).is_some() && r.canary_weight != 0 {
                // A failure left traffic anywhere: take it back before
                // waiting, so the gate holds the 0 % the state shows.
                revert(r, fx, false);
            }
            // Starting over passes the same gates as the first start.
            enter_stage(r, fx, 0, now, false);
        }
        Command::Native { .. } | Command::Acknowledge => unreachable!("handled above"),
        Command::OverrideFreeze { reason } => {
            if reason.trim().is_empty() {
                return Err(Refusal::ReasonRequired { verb: row.name.into() });
            }
            // An override is for a freeze that is there: armed ahead of
            // time it would pass a freeze nobody has seen yet.
            if !r.budget.is_some_and(|b| b.policy == DeployPolicy::Freeze) {
                return Err(Refusal::NotFrozen);
            }
            r.freeze_override = Some(note(r, &actor, format!("override freeze: {}", reason.trim()), now));
            if let Phase::AwaitingApproval { next, gate: Gate::Freeze, .. } = r.phase {
                enter_stage(r, fx, next, now, false);
            }
        }
    }
    r.last_action = Some(note(r, &actor, req.command.verb().to_string(), now));
    Ok(())
}

/// A rollback or an abort seen by a person: it stops asking for attention.
fn acknowledge(r: &mut Rollout, actor: &Actor, now: Timestamp) -> Result<(), Refusal> {
    if !matches!(r.phase, Phase::RolledBack { .. } | Phase::Aborted { .. }) {
        return Err(Refusal::NothingToAcknowledge { phase: r.phase.label().into() });
    }
    if let Some(seen) = &r.acknowledged {
        return Err(Refusal::AlreadyAcknowledged { by: seen.actor.0.clone() });
    }
    r.acknowledged = Some(note(r, actor, "acknowledge".into(), now));
    r.last_action = r.acknowledged.clone();
    Ok(())
}

fn note(r: &Rollout, actor: &Actor, action: String, now: Timestamp) -> ActorNote {
    ActorNote { actor: actor.clone(), action, at: now, stage: r.stage }
}

fn check_freeze(r: &Rollout) -> Result<(), Refusal> {
    let frozen = r.budget.is_some_and(|b| b.policy == DeployPolicy::Freeze);
    if frozen && r.freeze_override.is_none() {
        let left = r.budget.map_or(0.0, |b| b.remaining_pct);
        return Err(Refusal::Frozen { remaining_pct: left.round() as i64 });
    }
    Ok(())
}

/// Observed rollouts: commands become the controller's verbs; the state
/// follows when the controller reports back.
fn native_command(r: &mut Rollout, fx: &mut Vec<Effect>, req: &CommandRequest, now: Timestamp) -> Result<(), Refusal> {
    if let Command::Native { verb } = &req.command {
        // Restart, set image and undo to a revision act on a finished
        // rollout too (they are how the next revision, or an older one,
        // starts); terminating an analysis needs a live one.
        if matches!(verb, NativeVerb::TerminateAnalysis) && r.phase.is_finished() {
            return Err(Refusal::NoAnalysisRunning { phase: r.phase.label().into() });
        }
        fx.push(Effect::Native { verb: verb.clone() });
        r.last_action = Some(note(r, &req.actor, req.command.verb().to_string(), now));
        return Ok(());
    }
    // Undo has no state check in the controller (Argo Rollouts' plugin):
    // after a bad promotion it is how the previous revision comes back, so
    // a rollback is never "finished". Every other verb waits for a new one.
    if r.phase.is_terminal() && !matches!(req.command, Command::Rollback { .. }) {
        return Err(Refusal::Finished { phase: r.phase.label().into() });
    }
    // A resume clears a user's pause only; a pause step or the pause
    // before a blue-green switch stays where it is, so sending one would
    // look done and change nothing.
    if let (Command::Resume, Phase::Paused { from: PausedFrom::Step { step }, .. }) = (&req.command, &r.phase) {
        return Err(Refusal::HeldByStep { step: *step });
    }
    if let (Command::Resume, Phase::Paused { from: PausedFrom::BeforeSwitch, .. }) = (&req.command, &r.phase) {
        return Err(Refusal::HeldBeforeSwitch);
    }
    let verb = match &req.command {
        Command::Pause { .. } => NativeVerb::Pause,
        Command::Resume => NativeVerb::Resume,
        Command::Promote | Command::Approve => NativeVerb::Promote,
        Command::PromoteFull => NativeVerb::PromoteFull,
        Command::Abort { .. } => NativeVerb::Abort,
        Command::Retry => NativeVerb::Retry,
        Command::Rollback { .. } => NativeVerb::Undo,
        Command::StepBack | Command::OverrideFreeze { .. } | Command::Native { .. } | Command::Acknowledge => {
            return Err(Refusal::NoNativeVerb { verb: req.command.verb().into() })
        }
    };
    fx.push(Effect::Native { verb });
    r.last_action = Some(note(r, &req.actor, req.command.verb().to_string(), now));
    Ok(())
}
