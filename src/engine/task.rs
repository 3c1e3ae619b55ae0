//! One rollout's task: the loop that ties clock, metrics, backend, journal
//! and `core::step` together.

use super::journal::{Journal, JournalError};
use super::report::{step_outputs, EFFECT_ATTEMPTS};
use super::{wait_text, AfterWait, RolloutSetup, StopWhen};
use crate::backend::BackendError;
use crate::clock::Clock;
use crate::protocol::{CommandRequest, Origin, Output, Reply, Snapshot};
use flightdeck_core::plan::Control;
use flightdeck_core::rollout::{self, step, Actor, Command, Effect, Event, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// First retry delay (real time); doubles per attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

pub struct Parts {
    pub index: usize,
    pub setup: RolloutSetup,
    /// Shared with the published snapshot: one copy of each rollout's
    /// state (its evidence is most of it), not one here and one there.
    pub rollout: Arc<Rollout>,
    pub journal: Option<Journal>,
    /// Time of the last journaled event, when resuming.
    pub resumed_at: Option<Timestamp>,
    pub clock: Clock,
    pub stop_when: StopWhen,
    pub sink: mpsc::Sender<Output>,
    pub snapshots: Arc<watch::Sender<Snapshot>>,
    /// A release starts this rollout: pending until it says so.
    pub hold: Option<watch::Receiver<super::Hold>>,
}

pub struct RolloutTask {
    p: Parts,
    /// End of the next analysis window.
    next_window: Timestamp,
    /// Time of the latest event fed to the core: time never goes back in
    /// the journal, which a resume checks.
    last_at: Timestamp,
    /// Why this rollout stopped acting: its journal cannot be written, and
    /// nothing the journal does not hold may reach the backend.
    halted: Option<String>,
    /// Time of the latest tick fed to the core.
    ticked_at: Timestamp,
    /// When this task started: a rollout resumed waiting for a human waits
    /// from then, not from when the journal says its wait began.
    started_at: Timestamp,
    /// The start of the wait for a human already announced.
    announced_wait: Option<Timestamp>,
    /// Why an unattended run stopped driving a rollout that still waits
    /// for a human (`--unattended hold` ran out).
    let_go: Option<String>,
}

impl RolloutTask {
    pub fn new(p: Parts) -> RolloutTask {
        let last_at = p.resumed_at.unwrap_or_default();
        RolloutTask {
            p,
            next_window: Timestamp::default(),
            last_at,
            halted: None,
            ticked_at: Timestamp::default(),
            started_at: Timestamp::default(),
            announced_wait: None,
            let_go: None,
        }
    }

    /// The end of the first window after `t`. Windows end on multiples of
    /// the interval, so a resumed run keeps the grid.
    fn window_after(&self, t: Timestamp) -> Timestamp {
        let interval = self.p.rollout.plan().analysis.interval.as_millis().max(1) as u64;
        Timestamp((t.0 / interval).saturating_add(1).saturating_mul(interval))
    }

    fn id(&self) -> String {
        self.p.rollout.id.clone()
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<super::Order>) {
        let held = self.p.hold.is_some();
        if let Some(hold) = self.p.hold.take() {
            if self.p.rollout.phase == Phase::Pending && !self.wait_for_release(hold, &mut commands).await {
                return;
            }
        }
        // A fresh simulated rollout starts when its run does, not when its
        // task got going: at 6,000× a tenth of a second would be ten
        // simulated minutes, and the run would depend on the machine.
        let now = match self.p.clock.origin() {
            Some(origin) if self.p.resumed_at.is_none() && !held => origin,
            _ => self.now(),
        };
        self.announce(now).await;
        self.started_at = now;
        if self.p.resumed_at.is_some() {
            // A fresh backend process knows nothing: bring it to the journaled state.
            let effects = self.p.rollout.reconcile();
            for result in self.execute_batch(effects, now).await {
                // A backend still down after the restart must show, not pass silently.
                self.feed(result, now).await;
            }
            // Pending (a new revision after a finished one): nothing else
            // starts it, and it would wait for ever.
            if self.p.rollout.phase == Phase::Pending && self.halted.is_none() {
                self.feed(Event::Start, now).await;
            }
        } else {
            self.feed(Event::Start, now).await;
        }
        // A window that ended before the rollout (re)started holds nothing of this run.
        self.next_window = self.window_after(self.last_at.max(now));
        self.ticked_at = now;
        let mut open = true;
        loop {
            // Not past a window or core tick still to be processed: the
            // policy acts in the run's order, not before what came first.
            let core = self.p.rollout.next_tick_at().filter(|t| *t > self.ticked_at);
            let first_pending = core.map_or(self.next_window, |t| t.min(self.next_window));
            self.unattended(self.now().min(first_pending)).await;
            if self.should_stop() {
                break;
            }
            // Asleep until something is due: an idle fleet costs nothing between windows.
            tokio::select! {
                _ = sleep_until(self.p.clock, self.next_due()) => self.on_tick().await,
                received = commands.recv(), if open => match received {
                    Some(order) => {
                        let (request, origin, reply) = *order;
                        let answer = self.on_command(request, origin).await;
                        let _ = reply.send(answer);
                    }
                    None => open = false,
                },
            }
        }
        if self.p.stop_when.unattended().is_some() && self.halted.is_none() {
            // Nobody drives it from here on: read back where its traffic is
            // left, for the run's last words (and the journal). A
            // simulation reads it as of its last event: its clock has raced
            // on meanwhile, by how much depends on the machine.
            let now = if self.p.clock.origin().is_some() { self.last_at } else { self.now() };
            let event = match self.p.setup.backend.observe().await {
                Ok(o) => Event::Observation(o),
                Err(e) => Event::ObserveFailed { error: e.to_string() },
            };
            self.feed(event, now).await;
        }
    }

    fn now(&self) -> Timestamp {
        self.p.clock.now()
    }

    /// A rollout its release has not started: waits for its wave, refusing
    /// commands meanwhile. False when the release says it never starts.
    async fn wait_for_release(
        &mut self,
        mut hold: watch::Receiver<super::Hold>,
        commands: &mut mpsc::Receiver<super::Order>,
    ) -> bool {
        loop {
            match *hold.borrow_and_update() {
                super::Hold::Go => return true,
                super::Hold::Never => return false,
                super::Hold::Wait => {}
            }
            // Biased: a release tells a rollout to start before it sends it
            // anything, so a command never overtakes the start it follows.
            tokio::select! {
                biased;
                changed = hold.changed() => if changed.is_err() { return false },
                received = commands.recv() => match received {
                    Some(order) => {
                        let (_, _, reply) = *order;
                        let reason = "not started: it waits for its wave of the release".to_string();
                        let _ = reply.send(Reply::Rejected { reason });
                    }
                    None => return false,
                },
            }
        }
    }

    /// When the next tick is due: the end of the next analysis window, or
    /// earlier when the core says a tick may move the rollout then (its
    /// bake ends) and no tick has been fed since. Nothing while halted.
    fn next_due(&self) -> Option<Timestamp> {
        if self.halted.is_some() {
            return None;
        }
        let bake_end = self.p.rollout.next_tick_at().filter(|t| *t > self.ticked_at);
        let due = bake_end.map_or(self.next_window, |t| t.min(self.next_window));
        Some(self.unattended_deadline().map_or(due, |t| t.min(due)))
    }

    fn should_stop(&self) -> bool {
        if self.p.stop_when.unattended().is_none() {
            return false;
        }
        let r = &self.p.rollout;
        // A rollout waiting for a human goes on being driven (analysed,
        // rolled back on a failing window) until the unattended policy acts;
        // one whose journal cannot be written can do nothing at all. A
        // native controller drives an observed rollout: at a pause or gate,
        // a headless run leaves it to it.
        let observed_waits =
            r.control == Control::Observed && (r.needs_human().is_some() || matches!(r.phase, Phase::Paused { .. }));
        r.phase.is_finished() || self.halted.is_some() || self.let_go.is_some() || observed_waits
    }

    /// When the unattended policy acts on this rollout: the wait after it
    /// began waiting for a human (paused, or at a gate), counted from this
    /// task's start at the earliest. `None` when nothing waits or someone
    /// watches (the cockpit, `serve`).
    fn unattended_deadline(&self) -> Option<Timestamp> {
        let policy = self.p.stop_when.unattended()?;
        let r = &self.p.rollout;
        if r.control != Control::Driven || self.halted.is_some() || self.let_go.is_some() {
            return None;
        }
        let since = match r.phase {
            Phase::Paused { since, .. } | Phase::AwaitingApproval { since, .. } => since,
            _ => return None,
        };
        Some(since.max(self.started_at).plus(policy.wait))
    }

    /// Unattended runs: says once when a rollout starts waiting for a human
    /// (and what happens if nobody comes), and carries out the policy once
    /// its wait is over at `now`.
    async fn unattended(&mut self, now: Timestamp) {
        let Some(policy) = self.p.stop_when.unattended() else { return };
        let Some(deadline) = self.unattended_deadline() else { return };
        let r = &self.p.rollout;
        let wait = wait_text(policy.wait);
        let why = r.needs_human().unwrap_or_else(|| r.phase.label().to_string());
        let weight = r.canary_weight;
        if self.announced_wait != Some(deadline) && deadline > now {
            self.announced_wait = Some(deadline);
            let then = match policy.then {
                AfterWait::Abort => "it aborts: canary weight 0 %".to_string(),
                AfterWait::Hold => format!("this run stops driving it and leaves the canary at {weight} %"),
            };
            let message = format!(
                "waiting for a human; analysis goes on and a failing window still rolls back; \
                 if nobody acts within {wait}, {then}"
            );
            // Said as of when the wait began, whenever this loop got to it.
            let began = Timestamp(deadline.0.saturating_sub(policy.wait.as_millis() as u64));
            self.notice("warning", message, began).await;
        }
        if deadline > now {
            return;
        }
        let r = &self.p.rollout;
        let label = r.phase.label();
        match policy.then {
            AfterWait::Abort => {
                let reason = format!(
                    "nobody acted within {wait} while {label} ({why}): unattended, the canary's traffic is taken away"
                );
                let request = CommandRequest {
                    rollout: r.id.clone(),
                    actor: Actor::new("unattended"),
                    command: Command::Abort { reason: Some(reason) },
                    expected_stage: r.stage,
                    expected_revision: r.canary_revision.clone(),
                    expected_step: r.native_step,
                };
                let reply = self.command_at(request, Origin::local(), deadline).await;
                if let Reply::Rejected { reason } = reply {
                    // Never loop on a refused abort: stop driving, and say so.
                    self.let_go = Some(format!("the unattended abort was refused ({reason})"));
                }
            }
            AfterWait::Hold => {
                let reason = format!(
                    "nobody acted within {wait} while {label} ({why}): this run stops driving it; the canary \
                     keeps {weight} % of traffic with no analysis and no rollback until a run resumes it"
                );
                self.notice("warning", reason.clone(), deadline).await;
                self.let_go = Some(reason);
            }
        }
        if !self.p.rollout.phase.is_finished() && self.let_go.is_none() {
            self.let_go = Some(format!("the unattended abort left it {}", self.p.rollout.phase.label()));
        }
    }

    async fn notice(&mut self, level: &str, message: String, at: Timestamp) {
        let out = Output::Notice { rollout: self.id(), at, level: level.into(), message };
        self.emit(out).await;
    }

    async fn announce(&mut self, at: Timestamp) {
        let r = &self.p.rollout;
        let out = Output::Started {
            rollout: r.id.clone(),
            at,
            strategy: r.plan().strategy_name().into(),
            stages: r.stages().iter().map(|s| s.weight).collect(),
            resumed: self.p.resumed_at.is_some(),
            stage: r.stage,
        };
        self.emit(out).await;
        self.publish();
    }

    async fn on_tick(&mut self) {
        if self.halted.is_some() {
            return;
        }
        let now = self.now();
        let interval = self.p.rollout.plan().analysis.interval;
        // Everything that came due since the last tick, in time order and
        // each at its own time: every window's end (none skipped) and every
        // time the core said a tick may move the rollout (a bake's end). A
        // fast simulation or a stalled machine then decides on the same
        // windows, at the same moments, as a slow one: a simulated run is
        // the same run at any speed.
        while self.halted.is_none() && !self.should_stop() {
            let window = Some(self.next_window).filter(|t| *t <= now);
            let core = self.p.rollout.next_tick_at().filter(|t| *t > self.ticked_at && *t <= now);
            let (at, window) = match (window, core) {
                (Some(end), None) => (end, true),
                (Some(end), Some(t)) if end <= t => (end, true),
                (_, Some(t)) => (t, false),
                (None, None) => break,
            };
            // Nobody came before this moment: the policy acts first.
            self.unattended(at).await;
            if self.should_stop() {
                break;
            }
            // A window is judged in the stage that ran during it, before a
            // bake ending at the same moment moves the rollout on; the core
            // then acts on its verdict at the window's end.
            if window {
                self.next_window = at.plus(interval);
                self.analyse(at, interval).await;
            }
            self.feed(Event::Tick, at).await;
            self.ticked_at = at;
        }
        // A simulation has had every moment that mattered at its own time;
        // a tick at the clock's reading, which races on by how much the
        // machine allows, would only make the run depend on the machine.
        if self.p.clock.origin().is_none() {
            self.feed(Event::Tick, now).await;
            self.ticked_at = now;
        }
    }

    /// One analysis window: budget, backend observation, metrics.
    async fn analyse(&mut self, end: Timestamp, interval: Duration) {
        if let Some(m) = self.p.setup.metrics.slo(end).await {
            self.feed(Event::Budget(m), end).await;
        }
        // Every reading goes to the core, which decides what is news (an
        // unchanged reading changes nothing and is not journaled).
        match self.p.setup.backend.observe().await {
            Ok(o) => {
                self.feed(Event::Observation(o), end).await;
            }
            Err(e) => {
                self.feed(Event::ObserveFailed { error: e.to_string() }, end).await;
            }
        }
        let sample = self.p.setup.metrics.sample(interval, end).await;
        self.feed(Event::Metrics(sample), end).await;
    }

    async fn on_command(&mut self, request: CommandRequest, origin: Origin) -> Reply {
        // `scripts/cost` times a key press to this line (`FLIGHTDECK_LOG=flightdeck::latency=debug`).
        tracing::debug!(target: "flightdeck::latency", rollout = %request.rollout, command = ?request.command, "command reached the engine");
        let now = self.now();
        self.command_at(request, origin, now).await
    }

    async fn command_at(&mut self, request: CommandRequest, origin: Origin, now: Timestamp) -> Reply {
        let event = Event::Command(rollout::CommandRequest {
            actor: request.actor,
            command: request.command,
            expected_stage: request.expected_stage,
            expected_revision: request.expected_revision,
            expected_step: request.expected_step,
            role: origin.role,
            session: Some(origin.session.to_string()),
        });
        match self.feed(event, now).await {
            Some(reason) => Reply::Rejected { reason },
            None => Reply::Ack,
        }
    }

    /// Steps the core with `event` and everything it leads to (effect
    /// results). Returns the rejection reason if a command was refused.
    /// Boxed: its state (rollouts, events, the effect in flight) is most of
    /// a task's future, which every idle rollout would otherwise hold (9 KB
    /// each, 9 MB at 1,000 rollouts); it lives only while an event is stepped.
    async fn feed(&mut self, event: Event, at: Timestamp) -> Option<String> {
        Box::pin(self.feed_now(event, at)).await
    }

    async fn feed_now(&mut self, event: Event, at: Timestamp) -> Option<String> {
        // A window is analysed after it ends, possibly after a command or the
        // start already happened at a later time: it is decided then.
        let at = at.max(self.last_at);
        self.last_at = at;
        let mut queue = VecDeque::from([event]);
        let mut rejection = None;
        while let Some(event) = queue.pop_front() {
            if let Some(reason) = &self.halted {
                return Some(reason.clone());
            }
            let before = Arc::clone(&self.p.rollout);
            let (next, effects) = step(&before, event.clone(), at);
            if next == *before && effects.is_empty() {
                continue; // nothing happened; nothing to journal or show
            }
            // Write-ahead: what the journal does not hold did not happen.
            if let Err(e) = self.journal(|j| j.append(at, &event, &next)) {
                return Some(self.halt(e, at).await);
            }
            self.p.rollout = Arc::new(next);
            self.report(&before, &event, &effects, at, &mut rejection).await;
            self.publish();
            let effects: Vec<Effect> = effects.into_iter().filter(Effect::is_backend).collect();
            if effects.is_empty() {
                continue;
            }
            // On disk before the backend acts, not just in the page cache.
            if let Err(e) = self.journal(Journal::sync) {
                return Some(self.halt(e, at).await);
            }
            queue.extend(self.execute_batch(effects, at).await);
        }
        rejection
    }

    /// Carries out one step's effects in order and stops at the first that
    /// fails: the rest were meant to follow it (scale the canary down once
    /// its weight is 0, remove stable once the canary has 100 %), and would
    /// take away a side that still gets traffic. Returns the results to
    /// feed back, the failure last; the skipped effects are told to viewers.
    async fn execute_batch(&mut self, effects: Vec<Effect>, at: Timestamp) -> Vec<Event> {
        let mut results = Vec::new();
        let mut effects = effects.into_iter();
        while let Some(effect) = effects.next() {
            self.p.setup.backend.effects_at(at);
            let result = self.execute(effect, at).await;
            let failed = match &result {
                Event::EffectFailed { effect, .. } | Event::EffectWaiting { effect, .. } => Some(effect.to_string()),
                _ => None,
            };
            results.push(result);
            if self.halted.is_some() {
                break;
            }
            if let Some(failed) = failed {
                let skipped: Vec<String> = effects.by_ref().map(|e| e.to_string()).collect();
                if !skipped.is_empty() {
                    let message = format!("{failed} failed: not carried out after it: {}", skipped.join(", "));
                    self.notice("warning", message, at).await;
                }
                break;
            }
        }
        results
    }

    fn journal(&mut self, write: impl FnOnce(&mut Journal) -> Result<(), JournalError>) -> Result<(), JournalError> {
        self.p.journal.as_mut().map_or(Ok(()), write)
    }

    /// Stops acting for good (until a restart resumes from the journal):
    /// the rollout shows paused with the reason, commands are refused, and
    /// headless runs end with exit code 1.
    async fn halt(&mut self, error: JournalError, at: Timestamp) -> String {
        let reason = match &error {
            JournalError::Fenced { reason, .. } => {
                format!("lost the lease ({reason}); stopped before its next effect: the replica holding the lease drives it")
            }
            _ => format!("journal cannot be written ({error}); stopped: make room, then run again to resume"),
        };
        tracing::error!(rollout = %self.id(), %error, "journal write failed; rollout stopped");
        self.halted = Some(reason.clone());
        let before = self.p.rollout.phase.label();
        if !self.p.rollout.phase.is_finished() {
            Arc::make_mut(&mut self.p.rollout).hold(Actor::new("journal"), reason.clone(), at);
        }
        let r = &self.p.rollout;
        let out = Output::Transition {
            rollout: r.id.clone(),
            at,
            from: before.into(),
            to: r.phase.label().into(),
            stage: r.stage,
            stages: r.stages().len(),
            weight: r.canary_weight,
            still_at: super::report::still_at(r),
            reason: Some(reason.clone()),
        };
        self.emit(out).await;
        self.publish();
        reason
    }

    /// Carries out one effect with retry and backoff; the result is the
    /// event to feed back.
    async fn execute(&mut self, effect: Effect, at: Timestamp) -> Event {
        let mut delay = FIRST_BACKOFF;
        let mut attempts = 0;
        let (backend, strategy) = (self.p.setup.backend.clone(), self.p.rollout.plan().strategy.clone());
        let result = loop {
            attempts += 1;
            // `serve --leader-elect`: each attempt, a retry after its backoff too, only while the Lease is held.
            if let Err(e) = self.journal(|j| j.fence_check().map(drop)) {
                let error = self.halt(e, at).await;
                return Event::EffectFailed { effect, error };
            }
            // A refusal to scale down a side still in traffic is retried
            // too: a weight just set may take a moment to read back.
            match backend.apply_guarded(&effect, &strategy).await {
                Ok(()) => break Ok(()),
                // Not possible yet: the core tries it again on its ticks, and commands go on meanwhile.
                Err(BackendError::NotReady { detail, timeout, retry, .. }) => {
                    return Event::EffectWaiting { effect, detail, timeout, retry }
                }
                // A verb the backend does not have will not have it on a retry.
                Err(e) if attempts >= EFFECT_ATTEMPTS || matches!(e, BackendError::Unsupported { .. }) => {
                    break Err(e.to_string())
                }
                Err(e) => {
                    tracing::warn!(rollout = %self.id(), %effect, error = %e, attempts, "effect failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        };
        let (ok, error) = match &result {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e.clone())),
        };
        let out = Output::Effect { rollout: self.id(), at, effect: effect.clone(), ok, attempts, error };
        self.emit(out).await;
        match result {
            Ok(()) => Event::EffectDone { effect },
            Err(error) => Event::EffectFailed { effect, error },
        }
    }

    /// Turns one step into viewer events.
    async fn report(
        &mut self,
        before: &Rollout,
        event: &Event,
        effects: &[Effect],
        at: Timestamp,
        rejection: &mut Option<String>,
    ) {
        let (outputs, refused) = step_outputs(before, event, effects, &self.p.rollout, at);
        if matches!(event, Event::Command(_)) {
            *rejection = refused;
        }
        for out in outputs {
            self.emit(out).await;
        }
    }

    async fn emit(&self, out: Output) {
        // A viewer that went away must not stop the rollout.
        let _ = self.p.sink.send(out).await;
    }

    fn publish(&self) {
        let (index, rollout) = (self.p.index, Arc::clone(&self.p.rollout));
        let at = self.p.clock.now();
        self.p.snapshots.send_modify(|s| {
            s.at = at;
            if let Some(slot) = s.rollouts.get_mut(index) {
                *slot = rollout;
            }
        });
    }
}

/// Sleeps until `due` on `clock` (forever when nothing is due).
async fn sleep_until(clock: Clock, due: Option<Timestamp>) {
    match due {
        Some(due) => tokio::time::sleep(clock.real_time_until(due)).await,
        None => std::future::pending().await,
    }
}
