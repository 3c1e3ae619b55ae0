//! One release across regions: waves (or rings) of rollouts, a bake between
//! waves, an optional approval before a wave, and a failure policy.
//!
//! `step(release, event, now) -> (release, effects)`, pure like
//! [`crate::rollout::step`]: the engine feeds it what its rollouts do (each
//! rollout's phase, as a [`MemberState`]), timer ticks and the captain's
//! commands, and carries out the effects (start a rollout, roll one back,
//! tell a rollout it will never start). A journal of events replays to the
//! same state, which is how a crashed run resumes.
//!
//! What always holds (crates/flightdeck-core/tests/release_properties.rs):
//! no rollout of wave n+1 starts before every rollout of wave n is promoted
//! and the bake after wave n has passed (or a captain promoted the next wave
//! now); a rollback, abort or failure of any started rollout halts the
//! release, and no later wave ever starts; abort of the release reverts
//! every started rollout; a forward command naming another wave than the
//! live one changes nothing and says why, while pause and abort always apply.

pub mod file;

use crate::rollout::{Actor, Phase, Role};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use file::{ReleaseFile, RolloutRef, WaveFile};

/// A release as its file describes it, with rollout ids resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    pub name: String,
    pub waves: Vec<Wave>,
    /// A failing rollout also rolls back the other started rollouts of its
    /// wave (and of any wave started after it); without it they are left
    /// to finish as they would.
    pub rollback_siblings: bool,
}

/// One wave (ring): rollouts that start together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub name: String,
    pub members: Vec<Member>,
    /// How long the wave must stay promoted before the next one starts.
    pub bake: Duration,
    /// A captain approves before this wave starts.
    pub approval: bool,
}

/// One rollout of a wave, with the region (target group) it runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The rollout's id (`group/name`).
    pub rollout: String,
    /// Where it runs, as the plan's target group says (`eu-west-1`).
    pub region: String,
}

impl ReleaseSpec {
    /// The wave (index) and member a rollout belongs to.
    pub fn member(&self, rollout: &str) -> Option<(usize, &Member)> {
        self.waves.iter().enumerate().find_map(|(i, w)| w.members.iter().find(|m| m.rollout == rollout).map(|m| (i, m)))
    }

    /// Every rollout id, wave by wave.
    pub fn rollouts(&self) -> impl Iterator<Item = &str> {
        self.waves.iter().flat_map(|w| w.members.iter().map(|m| m.rollout.as_str()))
    }
}

/// What the release needs to know of a rollout: where it is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum MemberState {
    Pending,
    /// Started, not finished: baking, paused or at a gate.
    Running,
    Promoted,
    RolledBack {
        reason: String,
    },
    Aborted {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

impl MemberState {
    /// A rollout's phase, as the release reads it.
    pub fn of(phase: &Phase) -> MemberState {
        match phase {
            Phase::Pending => MemberState::Pending,
            Phase::Progressing { .. } | Phase::Paused { .. } | Phase::AwaitingApproval { .. } => MemberState::Running,
            Phase::Promoted { .. } => MemberState::Promoted,
            Phase::RolledBack { reason, .. } => MemberState::RolledBack { reason: reason.clone() },
            Phase::Aborted { reason, .. } => MemberState::Aborted { reason: reason.clone() },
            Phase::Failed { reason, .. } => MemberState::Failed { reason: reason.clone() },
        }
    }

    /// Rolled back, aborted or failed: the release stops here.
    pub fn failure(&self) -> Option<(&'static str, &str)> {
        match self {
            MemberState::RolledBack { reason } => Some(("rolled back", reason)),
            MemberState::Aborted { reason } => Some(("aborted", reason)),
            MemberState::Failed { reason } => Some(("failed", reason)),
            _ => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            MemberState::Pending => "pending",
            MemberState::Running => "running",
            MemberState::Promoted => "promoted",
            MemberState::RolledBack { .. } => "rolled back",
            MemberState::Aborted { .. } => "aborted",
            MemberState::Failed { .. } => "failed",
        }
    }
}

/// Where a release is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum ReleasePhase {
    Pending,
    /// Wave `wave` waits for a captain's promote before it starts.
    AwaitingApproval {
        since: Timestamp,
    },
    /// Wave `wave` runs: its rollouts are started, not all promoted yet.
    Running {
        since: Timestamp,
    },
    /// Wave `wave` is promoted everywhere; the next starts after the bake.
    Baking {
        since: Timestamp,
    },
    /// Held by a captain: no wave starts and the bake stops.
    Paused {
        by: Actor,
        reason: String,
        since: Timestamp,
        from: PausedFrom,
    },
    /// Every wave promoted.
    Promoted {
        at: Timestamp,
    },
    /// A rollout of wave `wave` rolled back, aborted or failed: no later wave starts.
    Halted {
        rollout: String,
        region: String,
        reason: String,
        at: Timestamp,
    },
    /// A captain aborted the release: every started rollout was rolled back.
    Aborted {
        by: Actor,
        reason: String,
        at: Timestamp,
    },
}

/// What a pause interrupted: resume goes back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PausedFrom {
    Approval,
    Running,
    Baking,
}

impl ReleasePhase {
    pub fn label(&self) -> &'static str {
        match self {
            ReleasePhase::Pending => "pending",
            ReleasePhase::AwaitingApproval { .. } => "awaiting approval",
            ReleasePhase::Running { .. } => "running",
            ReleasePhase::Baking { .. } => "baking",
            ReleasePhase::Paused { .. } => "paused",
            ReleasePhase::Promoted { .. } => "promoted",
            ReleasePhase::Halted { .. } => "halted",
            ReleasePhase::Aborted { .. } => "aborted",
        }
    }

    /// Promoted, halted or aborted: no wave starts any more.
    pub fn is_finished(&self) -> bool {
        matches!(self, ReleasePhase::Promoted { .. } | ReleasePhase::Halted { .. } | ReleasePhase::Aborted { .. })
    }
}

/// What a captain asks of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "command")]
pub enum ReleaseCommand {
    /// Hold the release: no wave starts and the bake stops (the live
    /// wave's rollouts go on; each has its own pause).
    Pause { reason: Option<String> },
    /// Continue after a pause.
    Resume,
    /// Start the next wave now: skips the rest of the bake, or passes the
    /// wave's approval. Refused while the live wave is not promoted everywhere.
    Promote,
    /// Roll back every started rollout; no later wave starts.
    Abort { reason: Option<String> },
}

impl ReleaseCommand {
    pub fn verb(&self) -> &'static str {
        match self {
            ReleaseCommand::Pause { .. } => "pause",
            ReleaseCommand::Resume => "resume",
            ReleaseCommand::Promote => "promote",
            ReleaseCommand::Abort { .. } => "abort",
        }
    }

    /// Pause and abort only reduce exposure: they apply whatever wave the sender saw.
    pub fn never_stale(&self) -> bool {
        matches!(self, ReleaseCommand::Pause { .. } | ReleaseCommand::Abort { .. })
    }
}

/// A command with who sent it and the wave (0-based) they saw live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub actor: Actor,
    pub command: ReleaseCommand,
    pub expected_wave: usize,
    #[serde(default, skip_serializing_if = "Role::is_captain")]
    pub role: Role,
}

/// Why a release command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "refusal")]
pub enum ReleaseRefusal {
    /// Sent for another wave than the live one.
    Stale { saw: usize, live: usize },
    /// The live wave still has rollouts that are not promoted.
    WaveNotPromoted { wave: usize, waiting: Vec<String> },
    /// Not in this phase.
    NotNow { command: String, phase: String },
    /// Viewers send nothing.
    Viewer,
}

impl fmt::Display for ReleaseRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseRefusal::Stale { saw, live } => {
                write!(f, "stale: sent for wave {}, but wave {} is live now; look again", saw + 1, live + 1)
            }
            ReleaseRefusal::WaveNotPromoted { wave, waiting } => {
                write!(f, "wave {} is not promoted everywhere yet: waiting for {}", wave + 1, waiting.join(", "))
            }
            ReleaseRefusal::NotNow { command, phase } => {
                write!(f, "{command} does nothing while the release is {phase}")
            }
            ReleaseRefusal::Viewer => f.write_str("viewers cannot act"),
        }
    }
}

/// Something that happened to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum ReleaseEvent {
    Start,
    /// Time passed: a bake may be over.
    Tick,
    /// A rollout of the release is now in `state`.
    Rollout {
        rollout: String,
        state: MemberState,
    },
    Command(ReleaseRequest),
}

/// What the engine must do for a release. Idempotent, like rollout effects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "effect")]
pub enum ReleaseEffect {
    /// Start this rollout (its first stage).
    Start {
        rollout: String,
    },
    /// Roll this rollout back to its previous revision.
    Rollback {
        rollout: String,
        reason: String,
    },
    /// This rollout will never start in this release.
    Cancel {
        rollout: String,
    },
    Notify(ReleaseNotice),
}

/// A line for the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "notice")]
pub enum ReleaseNotice {
    Rejected { actor: Actor, command: String, refusal: ReleaseRefusal },
    Warning { message: String },
    Info { message: String },
}

impl fmt::Display for ReleaseNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseNotice::Rejected { actor, command, refusal } => write!(f, "{command} by {actor} refused: {refusal}"),
            ReleaseNotice::Warning { message } => write!(f, "warning: {message}"),
            ReleaseNotice::Info { message } => f.write_str(message),
        }
    }
}

/// One release's whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub spec: Arc<ReleaseSpec>,
    pub phase: ReleasePhase,
    /// 0-based: the wave running, baking, or waiting for approval.
    pub wave: usize,
    /// Bake time of the live wave accumulated before a pause.
    pub bake_elapsed: Duration,
    /// The last state each rollout reported.
    pub states: BTreeMap<String, MemberState>,
    /// Rollouts this release has started.
    pub started: BTreeSet<String>,
}

impl Release {
    pub fn new(spec: ReleaseSpec) -> Release {
        let states = spec.rollouts().map(|id| (id.to_owned(), MemberState::Pending)).collect();
        Release {
            spec: Arc::new(spec),
            phase: ReleasePhase::Pending,
            wave: 0,
            bake_elapsed: Duration::ZERO,
            states,
            started: BTreeSet::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn live_wave(&self) -> Option<&Wave> {
        self.spec.waves.get(self.wave)
    }

    pub fn state(&self, rollout: &str) -> &MemberState {
        self.states.get(rollout).unwrap_or(&MemberState::Pending)
    }

    /// Bake time of the live wave so far.
    pub fn baked(&self, now: Timestamp) -> Duration {
        match self.phase {
            ReleasePhase::Baking { since } => self.bake_elapsed.saturating_add(now.since(since)),
            _ => self.bake_elapsed,
        }
    }

    /// When a tick alone may move the release: the end of the bake.
    pub fn next_tick_at(&self) -> Option<Timestamp> {
        let ReleasePhase::Baking { since } = self.phase else { return None };
        let bake = self.live_wave()?.bake;
        Some(since.plus(bake.saturating_sub(self.bake_elapsed)))
    }

    /// Rollouts of the live wave not promoted yet.
    pub fn waiting_for(&self) -> Vec<String> {
        self.live_wave()
            .map(|w| {
                w.members
                    .iter()
                    .filter(|m| *self.state(&m.rollout) != MemberState::Promoted)
                    .map(|m| m.rollout.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the release waits for, in words ("wave 2 of 3 (europe): waiting
    /// for eu-west-1/checkout", "next wave in 9:42").
    pub fn waits_for(&self, now: Timestamp) -> String {
        let waves = self.spec.waves.len();
        let name = self.live_wave().map_or(String::new(), |w| format!(" ({})", w.name));
        let wave = format!("wave {} of {waves}{name}", self.wave + 1);
        match &self.phase {
            ReleasePhase::Pending => "not started".into(),
            ReleasePhase::AwaitingApproval { .. } => format!("{wave}: waiting for approval (promote to start it)"),
            ReleasePhase::Running { .. } => format!("{wave}: waiting for {}", self.waiting_for().join(", ")),
            ReleasePhase::Baking { .. } => match self.next_tick_at() {
                _ if self.wave + 1 >= waves => format!("{wave}: complete"),
                Some(at) => format!("{wave} promoted: next wave in {}", crate::time::countdown(at.since(now))),
                None => format!("{wave} promoted"),
            },
            ReleasePhase::Paused { by, reason, .. } => format!("{wave}: paused by {by} ({reason}): resume to continue"),
            ReleasePhase::Promoted { .. } => "every wave promoted".into(),
            ReleasePhase::Halted { rollout, region, reason, .. } => {
                format!("halted at {wave}: {rollout} in {region}: {reason}; later waves never start")
            }
            ReleasePhase::Aborted { by, reason, .. } => format!("aborted by {by}: {reason}"),
        }
    }

    /// Time to the next wave's start, while the live wave bakes.
    pub fn next_wave_in(&self, now: Timestamp) -> Option<Duration> {
        if self.wave + 1 >= self.spec.waves.len() {
            return None;
        }
        self.next_tick_at().map(|at| at.since(now))
    }

    /// The effects that bring a freshly started engine to this state, used
    /// when a run resumes from its journal: rollouts started but not yet
    /// running are started, cancelled ones told again, and reverts the
    /// journal decided re-sent. Idempotent like every effect.
    pub fn reconcile(&self) -> Vec<ReleaseEffect> {
        let mut fx = Vec::new();
        for id in self.spec.rollouts() {
            let started = self.started.contains(id);
            let state = self.state(id);
            if started && *state == MemberState::Pending && !self.phase.is_finished() {
                fx.push(ReleaseEffect::Start { rollout: id.to_owned() });
            }
            if !started && self.phase.is_finished() {
                fx.push(ReleaseEffect::Cancel { rollout: id.to_owned() });
            }
        }
        match &self.phase {
            ReleasePhase::Aborted { reason, .. } => fx.extend(self.reverts(reason, |_| true)),
            ReleasePhase::Halted { rollout, reason, .. } if self.spec.rollback_siblings => {
                let wave = self.spec.member(rollout).map_or(0, |(w, _)| w);
                let why = format!("{rollout} {reason}");
                fx.extend(self.reverts(&why, |w| w >= wave));
            }
            _ => {}
        }
        fx
    }

    /// Rollbacks of every started rollout (of the waves `which` picks) not
    /// already rolled back.
    fn reverts(&self, reason: &str, which: impl Fn(usize) -> bool) -> Vec<ReleaseEffect> {
        let mut fx = Vec::new();
        for (i, wave) in self.spec.waves.iter().enumerate() {
            if !which(i) {
                continue;
            }
            for m in &wave.members {
                let done = matches!(self.state(&m.rollout), MemberState::RolledBack { .. });
                if self.started.contains(&m.rollout) && !done {
                    fx.push(ReleaseEffect::Rollback { rollout: m.rollout.clone(), reason: reason.to_owned() });
                }
            }
        }
        fx
    }
}

/// Applies one event. A refused command returns the state unchanged and a
/// `Rejected` notice.
pub fn step(state: &Release, event: ReleaseEvent, now: Timestamp) -> (Release, Vec<ReleaseEffect>) {
    let mut r = state.clone();
    let mut fx = Vec::new();
    match event {
        ReleaseEvent::Start => {
            if r.phase == ReleasePhase::Pending {
                enter_wave(&mut r, &mut fx, 0, now);
            }
        }
        ReleaseEvent::Tick => {}
        ReleaseEvent::Rollout { rollout, state } => {
            if !r.states.contains_key(&rollout) {
                return (r, fx);
            }
            r.states.insert(rollout, state);
        }
        ReleaseEvent::Command(request) => {
            if let Err(refusal) = command(&mut r, &mut fx, &request, now) {
                let notice = ReleaseNotice::Rejected {
                    actor: request.actor.clone(),
                    command: request.command.verb().into(),
                    refusal,
                };
                return (state.clone(), vec![ReleaseEffect::Notify(notice)]);
            }
        }
    }
    advance(&mut r, &mut fx, now);
    (r, fx)
}

/// Moves the release on as far as its rollouts' states and the clock allow.
fn advance(r: &mut Release, fx: &mut Vec<ReleaseEffect>, now: Timestamp) {
    loop {
        if r.phase.is_finished() || r.phase == ReleasePhase::Pending {
            return;
        }
        if halt_on_failure(r, fx, now) {
            return;
        }
        match r.phase {
            ReleasePhase::Running { .. } if r.waiting_for().is_empty() => {
                r.bake_elapsed = Duration::ZERO;
                r.phase = ReleasePhase::Baking { since: now };
                let wave = &r.spec.waves[r.wave];
                let message = if r.wave + 1 >= r.spec.waves.len() {
                    format!("wave {} ({}) promoted everywhere", r.wave + 1, wave.name)
                } else {
                    format!(
                        "wave {} ({}) promoted everywhere; wave {} starts after a bake of {}",
                        r.wave + 1,
                        wave.name,
                        r.wave + 2,
                        humantime::format_duration(wave.bake)
                    )
                };
                fx.push(info(message));
            }
            ReleasePhase::Baking { .. } if r.next_tick_at().is_some_and(|end| end <= now) => {
                next_wave(r, fx, now);
            }
            _ => return,
        }
    }
}

/// The bake after the live wave is over (or skipped): the next wave, or done.
fn next_wave(r: &mut Release, fx: &mut Vec<ReleaseEffect>, now: Timestamp) {
    if r.wave + 1 >= r.spec.waves.len() {
        r.phase = ReleasePhase::Promoted { at: now };
        fx.push(info(format!("release {} promoted: every wave, every region", r.spec.name)));
        return;
    }
    enter_wave(r, fx, r.wave + 1, now);
}

/// Wave `wave` starts, or waits for its approval.
fn enter_wave(r: &mut Release, fx: &mut Vec<ReleaseEffect>, wave: usize, now: Timestamp) {
    r.bake_elapsed = Duration::ZERO;
    r.wave = wave;
    let Some(w) = r.spec.waves.get(wave).cloned() else {
        r.phase = ReleasePhase::Promoted { at: now };
        return;
    };
    if w.approval {
        r.phase = ReleasePhase::AwaitingApproval { since: now };
        fx.push(info(format!("wave {} ({}) waits for approval", wave + 1, w.name)));
        return;
    }
    start_wave(r, fx, now);
}

fn start_wave(r: &mut Release, fx: &mut Vec<ReleaseEffect>, now: Timestamp) {
    let w = r.spec.waves[r.wave].clone();
    r.phase = ReleasePhase::Running { since: now };
    let regions: Vec<&str> = w.members.iter().map(|m| m.region.as_str()).collect();
    fx.push(info(format!("wave {} ({}) starts: {}", r.wave + 1, w.name, regions.join(", "))));
    for m in &w.members {
        r.started.insert(m.rollout.clone());
        fx.push(ReleaseEffect::Start { rollout: m.rollout.clone() });
    }
}

/// A started rollout that rolled back, aborted or failed halts the
/// release: rollouts not started never start, and with `rollback_siblings`
/// the others of its wave (and any later started wave) roll back.
fn halt_on_failure(r: &mut Release, fx: &mut Vec<ReleaseEffect>, now: Timestamp) -> bool {
    let failed = r.spec.waves.iter().enumerate().find_map(|(i, w)| {
        w.members.iter().find_map(|m| {
            let state = r.states.get(&m.rollout)?;
            let (what, reason) = state.failure()?;
            r.started.contains(&m.rollout).then(|| (i, m.clone(), what, reason.to_owned()))
        })
    });
    let Some((wave, member, what, reason)) = failed else { return false };
    let later: Vec<String> = r.spec.rollouts().filter(|id| !r.started.contains(*id)).map(str::to_owned).collect();
    let why = format!("{what}: {reason}");
    r.phase =
        ReleasePhase::Halted { rollout: member.rollout.clone(), region: member.region.clone(), reason: why, at: now };
    fx.push(ReleaseEffect::Notify(ReleaseNotice::Warning {
        message: format!(
            "release halted: {} in {} (wave {}) {what}: {reason}; {} rollout(s) of later waves never start",
            member.rollout,
            member.region,
            wave + 1,
            later.len()
        ),
    }));
    for id in later {
        fx.push(ReleaseEffect::Cancel { rollout: id });
    }
    if r.spec.rollback_siblings {
        let reason = format!("release {} halted: {} in {} {what}", r.spec.name, member.rollout, member.region);
        fx.extend(r.reverts(&reason, |w| w >= wave));
    }
    true
}

fn command(
    r: &mut Release,
    fx: &mut Vec<ReleaseEffect>,
    req: &ReleaseRequest,
    now: Timestamp,
) -> Result<(), ReleaseRefusal> {
    if !req.role.is_captain() {
        return Err(ReleaseRefusal::Viewer);
    }
    if !req.command.never_stale() && req.expected_wave != r.wave {
        return Err(ReleaseRefusal::Stale { saw: req.expected_wave, live: r.wave });
    }
    let not_now =
        |r: &Release| ReleaseRefusal::NotNow { command: req.command.verb().into(), phase: r.phase.label().into() };
    let actor = req.actor.clone();
    match &req.command {
        ReleaseCommand::Pause { reason } => {
            let from = match r.phase {
                ReleasePhase::AwaitingApproval { .. } => PausedFrom::Approval,
                ReleasePhase::Running { .. } => PausedFrom::Running,
                ReleasePhase::Baking { since } => {
                    r.bake_elapsed = r.bake_elapsed.saturating_add(now.since(since));
                    PausedFrom::Baking
                }
                _ => return Err(not_now(r)),
            };
            let reason = reason.clone().unwrap_or_else(|| format!("paused by {actor}"));
            fx.push(info(format!("release paused by {actor}: no wave starts until it resumes")));
            r.phase = ReleasePhase::Paused { by: actor, reason, since: now, from };
        }
        ReleaseCommand::Resume => {
            let ReleasePhase::Paused { from, .. } = r.phase else { return Err(not_now(r)) };
            r.phase = match from {
                PausedFrom::Approval => ReleasePhase::AwaitingApproval { since: now },
                PausedFrom::Running => ReleasePhase::Running { since: now },
                PausedFrom::Baking => ReleasePhase::Baking { since: now },
            };
            fx.push(info(format!("release resumed by {actor}")));
        }
        ReleaseCommand::Promote => match r.phase {
            ReleasePhase::AwaitingApproval { .. } => {
                fx.push(info(format!("wave {} approved by {actor}", r.wave + 1)));
                start_wave(r, fx, now);
            }
            ReleasePhase::Baking { .. } => {
                if r.wave + 1 >= r.spec.waves.len() {
                    fx.push(info(format!("bake of the last wave skipped by {actor}")));
                } else {
                    fx.push(info(format!("wave {} promoted now by {actor}: the bake is skipped", r.wave + 2)));
                }
                next_wave(r, fx, now);
            }
            ReleasePhase::Running { .. } => {
                return Err(ReleaseRefusal::WaveNotPromoted { wave: r.wave, waiting: r.waiting_for() });
            }
            _ => return Err(not_now(r)),
        },
        ReleaseCommand::Abort { reason } => {
            let reason = reason.clone().unwrap_or_else(|| format!("release aborted by {actor}"));
            let later: Vec<String> =
                r.spec.rollouts().filter(|id| !r.started.contains(*id)).map(str::to_owned).collect();
            fx.extend(r.reverts(&reason, |_| true));
            for id in later {
                fx.push(ReleaseEffect::Cancel { rollout: id });
            }
            fx.push(ReleaseEffect::Notify(ReleaseNotice::Warning {
                message: format!("release aborted by {actor}: every started rollout rolls back"),
            }));
            r.phase = ReleasePhase::Aborted { by: actor, reason, at: now };
        }
    }
    Ok(())
}

fn info(message: String) -> ReleaseEffect {
    ReleaseEffect::Notify(ReleaseNotice::Info { message })
}
