//! One rollout's task: the loop that ties clock, metrics, backend, journal
//! and `core::step` together.

use super::journal::{Journal, JournalError};
use super::report::{step_outputs, EFFECT_ATTEMPTS};
use super::{RolloutSetup, StopWhen};
use crate::backend::BackendError;
use crate::clock::Clock;
use crate::protocol::{CommandRequest, Origin, Output, Reply, Snapshot};
use flightdeck_core::rollout::{self, step, Actor, Effect, Event, Phase, Rollout};
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
    pub rollout: Rollout,
    pub journal: Option<Journal>,
    /// Time of the last journaled event, when resuming.
    pub resumed_at: Option<Timestamp>,
    pub clock: Clock,
    pub stop_when: StopWhen,
    pub sink: mpsc::Sender<Output>,
    pub snapshots: Arc<watch::Sender<Snapshot>>,
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
}

impl RolloutTask {
    pub fn new(p: Parts) -> RolloutTask {
        let last_at = p.resumed_at.unwrap_or_default();
        RolloutTask { p, next_window: Timestamp::default(), last_at, halted: None, ticked_at: Timestamp::default() }
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
        self.announce().await;
        let now = self.now();
        if self.p.resumed_at.is_some() {
            // A fresh backend process knows nothing: bring it to the journaled state.
            for effect in self.p.rollout.reconcile() {
                // A backend still down after the restart must show, not pass silently.
                let result = self.execute(effect, now).await;
                self.feed(result, now).await;
            }
        } else {
            self.feed(Event::Start, now).await;
        }
        // A window that ended before the rollout (re)started holds nothing of this run.
        self.next_window = self.window_after(self.last_at.max(now));
        self.ticked_at = now;
        let mut open = true;
        loop {
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
    }

    fn now(&self) -> Timestamp {
        self.p.clock.now()
    }

    /// When the next tick is due: the end of the next analysis window, or
    /// earlier when the core says a tick may move the rollout then (its
    /// bake ends) and no tick has been fed since. Nothing while halted.
    fn next_due(&self) -> Option<Timestamp> {
        if self.halted.is_some() {
            return None;
        }
        let bake_end = self.p.rollout.next_tick_at().filter(|t| *t > self.ticked_at);
        Some(bake_end.map_or(self.next_window, |t| t.min(self.next_window)))
    }

    fn should_stop(&self) -> bool {
        // Unattended, nobody can resume a pause or answer a gate.
        let r = &self.p.rollout;
        self.p.stop_when == StopWhen::Unattended
            && (r.phase.is_finished() || r.needs_human().is_some() || matches!(r.phase, Phase::Paused { .. }))
    }

    async fn announce(&mut self) {
        let r = &self.p.rollout;
        let out = Output::Started {
            rollout: r.id.clone(),
            at: self.p.clock.now(),
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
        // Every window that ended since the last tick, none skipped, each
        // after a tick at its end: bake timers see time pass window by
        // window, so a fast simulation (or a stalled machine) decides on as
        // many windows as a slow one.
        while self.next_window <= now && self.halted.is_none() && !self.should_stop() {
            let end = self.next_window;
            self.next_window = end.plus(interval);
            self.feed(Event::Tick, end).await;
            self.analyse(end, interval).await;
        }
        self.feed(Event::Tick, now).await;
        self.ticked_at = now;
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
        let event = Event::Command(rollout::CommandRequest {
            actor: request.actor,
            command: request.command,
            expected_stage: request.expected_stage,
            expected_revision: request.expected_revision,
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
            let before = self.p.rollout.clone();
            let (next, effects) = step(&before, event.clone(), at);
            if next == before && effects.is_empty() {
                continue; // nothing happened; nothing to journal or show
            }
            // Write-ahead: what the journal does not hold did not happen.
            if let Err(e) = self.journal(|j| j.append(at, &event, &next)) {
                return Some(self.halt(e, at).await);
            }
            self.p.rollout = next;
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
            for effect in effects {
                queue.push_back(self.execute(effect, at).await);
            }
        }
        rejection
    }

    fn journal(&mut self, write: impl FnOnce(&mut Journal) -> Result<(), JournalError>) -> Result<(), JournalError> {
        self.p.journal.as_mut().map_or(Ok(()), write)
    }

    /// Stops acting for good (until a restart resumes from the journal):
    /// the rollout shows paused with the reason, commands are refused, and
    /// headless runs end with exit code 1.
    async fn halt(&mut self, error: JournalError, at: Timestamp) -> String {
        let reason = format!("journal cannot be written ({error}); stopped: make room, then run again to resume");
        tracing::error!(rollout = %self.id(), %error, "journal write failed; rollout stopped");
        self.halted = Some(reason.clone());
        let before = self.p.rollout.phase.label();
        if !self.p.rollout.phase.is_finished() {
            self.p.rollout.hold(Actor::new("journal"), reason.clone(), at);
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
        let result = loop {
            attempts += 1;
            match self.p.setup.backend.apply(&effect).await {
                Ok(()) => break Ok(()),
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
        let (index, rollout) = (self.p.index, Arc::new(self.p.rollout.clone()));
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
