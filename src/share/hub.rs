//! One engine, many viewers: what every connection sends comes from here.
//!
//! The hub follows the engine's snapshots at most once per
//! [`SNAPSHOT_INTERVAL`] and keeps each rollout as JSON fields, each with
//! the number of the change that last touched it. A connection remembers
//! the change it has sent up to, and sends only the fields changed since:
//! a connection that fell behind gets the latest state in one message,
//! never every step, and an idle fleet sends nothing. The hub never waits
//! for a connection, so a slow or dead one cannot slow the engine.

use crate::protocol::wire::{self, Fields, RolloutPatch, ServerMessage};
use crate::protocol::{Output, Peer, Snapshot};
use flightdeck_core::rollout::Rollout;
use flightdeck_core::time::Timestamp;
use serde_json::Map;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

/// How often viewers hear of changes, at most.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(250);

/// Events a connection may fall behind by before it skips some.
const EVENT_QUEUE: usize = 1024;

/// Events a newly attached viewer gets.
const HISTORY: usize = 200;

/// A rollout as its fields, with the change number of each.
struct Held {
    rollout: Arc<Rollout>,
    /// Per field, the change that last set it.
    changed_at: HashMap<String, u64>,
    /// The newest change to any field.
    newest: u64,
}

struct State {
    /// The engine's clock in the latest snapshot taken, and when it was
    /// taken here: an idle engine publishes nothing, so the time sent is
    /// run forward from it ([`State::now`]).
    at: Timestamp,
    taken: Instant,
    speed: f64,
    /// In the engine's order.
    rollouts: Vec<Held>,
    fields: Fields,
    attached: Vec<(u64, Peer)>,
    attached_changed: u64,
    /// Releases as the engine published them, and the change that last set them.
    releases: Vec<Arc<flightdeck_core::release::Release>>,
    releases_changed: u64,
    /// Number of the latest change.
    change: u64,
    history: VecDeque<Output>,
}

pub struct Hub {
    state: Mutex<State>,
    /// The latest change number: connections wait on it.
    changes: watch::Sender<u64>,
    outputs: broadcast::Sender<Output>,
    next_session: Mutex<u64>,
}

impl Hub {
    /// Follows `snapshots` and `outputs` of an engine (with the events of
    /// resumed runs in `history`) until they end.
    pub fn start(
        mut snapshots: watch::Receiver<Snapshot>,
        mut outputs: mpsc::Receiver<Output>,
        history: Vec<Output>,
    ) -> Arc<Hub> {
        let first = snapshots.borrow_and_update().clone();
        let releases = first.releases.clone();
        let mut fields = Fields::default();
        let rollouts = first
            .rollouts
            .into_iter()
            .map(|r| {
                let patch = fields.diff(&r);
                let changed_at = patch.map(|p| p.fields.keys().map(|k| (k.clone(), 0)).collect()).unwrap_or_default();
                Held { rollout: r, changed_at, newest: 0 }
            })
            .collect();
        let state = State {
            at: first.at,
            taken: Instant::now(),
            speed: first.speed,
            rollouts,
            fields,
            attached: Vec::new(),
            attached_changed: 0,
            releases,
            releases_changed: 0,
            change: 0,
            history: history.into_iter().rev().take(HISTORY).rev().collect(),
        };
        let (changes, _) = watch::channel(0);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let hub = Arc::new(Hub { state: Mutex::new(state), changes, outputs: events, next_session: Mutex::new(0) });
        let follower = hub.clone();
        tokio::spawn(async move {
            while snapshots.changed().await.is_ok() {
                follower.take(&snapshots.borrow_and_update());
                // Steps in between are folded into the next look.
                tokio::time::sleep(SNAPSHOT_INTERVAL).await;
            }
        });
        let teller = hub.clone();
        tokio::spawn(async move {
            while let Some(out) = outputs.recv().await {
                teller.tell(out);
            }
        });
        hub
    }

    /// Takes in a new snapshot: only the rollouts that changed are turned into JSON.
    fn take(&self, snapshot: &Snapshot) {
        let mut s = self.state.lock().expect("hub state");
        let s = &mut *s;
        s.at = snapshot.at;
        s.taken = Instant::now();
        let mut changed = false;
        for (held, rollout) in s.rollouts.iter_mut().zip(&snapshot.rollouts) {
            // The engine replaces a rollout that changed: the same pointer is the same state.
            if Arc::ptr_eq(&held.rollout, rollout) || held.rollout == *rollout {
                continue;
            }
            if let Some(patch) = s.fields.diff(rollout) {
                s.change += 1;
                for key in patch.fields.keys() {
                    held.changed_at.insert(key.clone(), s.change);
                }
                held.newest = s.change;
                changed = true;
            }
            held.rollout = rollout.clone();
        }
        if snapshot.releases != s.releases {
            s.change += 1;
            s.releases = snapshot.releases.clone();
            s.releases_changed = s.change;
            changed = true;
        }
        if changed {
            self.changes.send_replace(s.change);
        }
    }

    /// A warning from the server itself (not from a rollout) to every
    /// viewer's events; not journaled.
    pub fn notice(&self, message: String) {
        let at = self.state.lock().expect("hub state").now();
        self.tell(Output::Notice { rollout: "flightdeck".into(), at, level: "warning".into(), message });
    }

    /// The latest change number of rollout `id` as viewers have it (`None`:
    /// no such rollout). Equal numbers: viewers saw the same rollout.
    pub fn rollout_change(&self, id: &str) -> Option<u64> {
        let s = self.state.lock().expect("hub state");
        s.rollouts.iter().find(|h| h.rollout.id == id).map(|h| h.newest)
    }

    pub(crate) fn tell(&self, out: Output) {
        {
            let mut s = self.state.lock().expect("hub state");
            if s.history.len() >= HISTORY {
                s.history.pop_front();
            }
            s.history.push_back(out.clone());
        }
        // Nobody attached is fine.
        let _ = self.outputs.send(out);
    }

    /// The whole state and the events so far, and the change it is as of:
    /// a `Full` message, then the rollouts in batches.
    pub fn full(&self) -> (Vec<ServerMessage>, u64) {
        let s = self.state.lock().expect("hub state");
        let at = s.now();
        let snapshot = Snapshot {
            at,
            speed: s.speed,
            rollouts: Vec::new(),
            attached: s.attached.iter().map(|(_, p)| p.clone()).collect(),
            releases: s.releases.clone(),
        };
        let history = s.history.iter().cloned().collect();
        let mut messages = vec![ServerMessage::Full { snapshot, history, follow: s.rollouts.len() }];
        let patches: Vec<RolloutPatch> = s
            .rollouts
            .iter()
            .map(|h| {
                let fields = s.fields.rollouts.get(&h.rollout.id).cloned().unwrap_or_default();
                RolloutPatch { id: h.rollout.id.clone(), fields }
            })
            .collect();
        for batch in patches.chunks(wire::BATCH) {
            messages.push(ServerMessage::Changed { at, rollouts: batch.to_vec(), attached: None, releases: None });
        }
        (messages, s.change)
    }

    /// The whole state as one snapshot, for a viewer in this process (an SSH session).
    pub fn snapshot(&self) -> Snapshot {
        let s = self.state.lock().expect("hub state");
        Snapshot {
            at: s.now(),
            speed: s.speed,
            rollouts: s.rollouts.iter().map(|h| Arc::new(wire::for_viewers(&h.rollout))).collect(),
            attached: s.attached.iter().map(|(_, p)| p.clone()).collect(),
            releases: s.releases.clone(),
        }
    }

    /// The events a newly attached viewer gets.
    pub fn history(&self) -> Vec<Output> {
        self.state.lock().expect("hub state").history.iter().cloned().collect()
    }

    /// What changed after change `since` (`None`: nothing), and the change it is as of.
    pub fn changes_since(&self, since: u64) -> (Option<ServerMessage>, u64) {
        let s = self.state.lock().expect("hub state");
        if s.change <= since {
            return (None, s.change);
        }
        let mut rollouts = Vec::new();
        for held in s.rollouts.iter().filter(|h| h.newest > since) {
            let Some(all) = s.fields.rollouts.get(&held.rollout.id) else { continue };
            let fields: Map<_, _> = all
                .iter()
                .filter(|(k, _)| held.changed_at.get(*k).is_some_and(|c| *c > since))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            rollouts.push(RolloutPatch { id: held.rollout.id.clone(), fields });
        }
        let attached =
            (s.attached_changed > since).then(|| s.attached.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>());
        let releases = (s.releases_changed > since).then(|| s.releases.clone());
        (Some(ServerMessage::Changed { at: s.now(), rollouts, attached, releases }), s.change)
    }

    /// Wakes when something changed.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Output> {
        self.outputs.subscribe()
    }

    /// A number for a new session.
    pub fn session_number(&self) -> u64 {
        let mut n = self.next_session.lock().expect("session counter");
        *n += 1;
        *n
    }

    /// `peer` (session number `id`) is attached until the guard is dropped.
    pub fn attach(self: &Arc<Self>, id: u64, peer: Peer) -> Presence {
        self.set_attached(|a| a.push((id, peer)));
        Presence { hub: self.clone(), id }
    }

    fn set_attached(&self, change: impl FnOnce(&mut Vec<(u64, Peer)>)) {
        let mut s = self.state.lock().expect("hub state");
        change(&mut s.attached);
        s.change += 1;
        s.attached_changed = s.change;
        self.changes.send_replace(s.change);
    }

    /// Who is attached now.
    pub fn attached(&self) -> Vec<Peer> {
        self.state.lock().expect("hub state").attached.iter().map(|(_, p)| p.clone()).collect()
    }
}

impl State {
    /// The engine's time now: the latest snapshot's, run forward at its
    /// speed since it was taken (what every viewer's clock does between
    /// snapshots). Without it a viewer attaching to an idle fleet would
    /// start its clock at the last change, however long ago.
    fn now(&self) -> Timestamp {
        let ran = self.taken.elapsed().as_secs_f64() * 1000.0 * self.speed;
        Timestamp(self.at.0.saturating_add(ran as u64))
    }
}

/// One attached session; dropping it takes it off the presence line.
pub struct Presence {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let id = self.id;
        self.hub.set_attached(|a| a.retain(|(i, _)| *i != id));
    }
}
