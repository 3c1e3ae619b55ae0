//! What a viewer holds of an engine: the latest snapshot, the events as
//! they happen, and a way to submit commands. The cockpit in the engine's
//! process, `attach` over the socket and each SSH session get the same
//! [`Link`]; none of them sees the engine itself.

use super::{CommandRequest, Output, Reply, Role, Snapshot};
use flightdeck_core::time::Timestamp;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Sends a command to the engine and waits for its answer.
#[async_trait::async_trait]
pub trait Submit: Send + Sync {
    async fn submit(&self, request: CommandRequest) -> Reply;
}

/// A viewer's connection to an engine.
pub struct Link {
    /// The latest snapshot; a viewer that falls behind skips to it.
    pub snapshots: watch::Receiver<Snapshot>,
    /// Events, oldest first.
    pub outputs: mpsc::Receiver<Output>,
    pub commands: Arc<dyn Submit>,
    /// What happened before the viewer joined (the event log starts with it).
    pub history: Vec<Output>,
    /// The link's own trouble ("connection lost; reconnecting…"), `None`
    /// while all is well.
    pub status: watch::Receiver<Option<String>>,
    /// The role the server gave in its latest welcome (`attach`: a server
    /// restarted with other roles gives another one on reconnecting);
    /// `None` where the role is fixed for the link's life (the cockpit in
    /// the engine's process, an SSH session: the opener says which).
    pub role: watch::Receiver<Option<Role>>,
}

impl Link {
    /// A link whose status never changes (the engine is in this process).
    pub fn new(
        snapshots: watch::Receiver<Snapshot>,
        outputs: mpsc::Receiver<Output>,
        commands: Arc<dyn Submit>,
        history: Vec<Output>,
    ) -> Link {
        let (_, status) = watch::channel(None);
        let (_, role) = watch::channel(None);
        Link { snapshots, outputs, commands, history, status, role }
    }
}

/// The engine's time as a viewer reads it: the latest snapshot's `at`,
/// run forward at its `speed` since it arrived. Timers count down between
/// snapshots without the engine's clock.
#[derive(Debug, Clone, Copy)]
pub struct ViewClock {
    at: Timestamp,
    speed: f64,
    seen: Instant,
}

impl ViewClock {
    pub fn new(snapshot: &Snapshot) -> ViewClock {
        ViewClock { at: snapshot.at, speed: snapshot.speed.max(f64::MIN_POSITIVE), seen: Instant::now() }
    }

    /// A newer snapshot sets the clock again (never back: a snapshot taken
    /// before the last reading must not make timers jump).
    pub fn update(&mut self, snapshot: &Snapshot) {
        let next = ViewClock::new(snapshot);
        if next.at >= self.now() || next.speed != self.speed {
            *self = next;
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.at.0 + (self.seen.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64)
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_view_clock_runs_at_the_snapshots_speed() {
        let snap = Snapshot { at: Timestamp(10_000), speed: 60.0, ..Snapshot::default() };
        let mut clock = ViewClock::new(&snap);
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert_eq!(clock.now(), Timestamp(130_000));
        // An older snapshot arriving late does not turn the clock back.
        clock.update(&Snapshot { at: Timestamp(50_000), ..snap.clone() });
        assert_eq!(clock.now(), Timestamp(130_000));
        clock.update(&Snapshot { at: Timestamp(200_000), ..snap });
        assert_eq!(clock.now(), Timestamp(200_000));
    }
}
