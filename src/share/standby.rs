//! A standby's cockpit (`serve --leader-elect`, the Lease held by another
//! replica): viewers attach to it as to the leader and see the rollouts,
//! read-only.
//!
//! **What it shows comes from the journals**, which both replicas mount
//! (the `ReadWriteMany` volume): every [`REFRESH`] the standby re-reads each
//! journal that changed, replays and checks it as a resume would (without
//! its lock, writing nothing), and publishes the rollouts through a
//! [`Hub`] exactly as an engine's snapshots are. Nothing is relayed from
//! the leader: a standby needs no connection to it, and shows at most one
//! refresh (plus the leader's write) behind. A journal that cannot be read
//! shows its rollout paused with the reason.
//!
//! **Commands** go through [`Controls`], shared by every session: on a
//! standby each is refused with why ("this replica is a standby; the lease
//! … is held by …"). When the standby takes the Lease, [`Standby::drive`]
//! points the same hub at the engine's snapshots and events and the same
//! controls at the engine: the viewers attached meanwhile go live without
//! reconnecting.

use super::hub::Hub;
use crate::engine::journal::{self, JournalError};
use crate::engine::{Engine, EngineHandle, EngineOptions, RolloutSetup};
use crate::protocol::{CommandRequest, Origin, Output, Reply, Snapshot, Submit};
use flightdeck_core::rollout::{Actor, Rollout};
use flightdeck_core::time::Timestamp;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often a standby re-reads the journals that changed.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Where every session's commands go: the engine this process drives, or
/// (a standby) nowhere, each refused with the reason. Clones share it.
#[derive(Clone)]
pub struct Controls(Arc<RwLock<Result<EngineHandle, String>>>);

impl Controls {
    /// Commands refused with `why` until [`Controls::drive`].
    pub fn standby(why: String) -> Controls {
        Controls(Arc::new(RwLock::new(Err(why))))
    }

    /// While standing by: the reason commands are refused with, anew (the holder changed).
    pub fn refuse_because(&self, why: String) {
        let mut controls = self.0.write().expect("controls");
        if controls.is_err() {
            *controls = Err(why);
        }
    }

    /// From now on, commands go to `engine`.
    pub fn drive(&self, engine: EngineHandle) {
        *self.0.write().expect("controls") = Ok(engine);
    }

    /// Sends `request` on behalf of `origin` and waits for the answer.
    pub async fn submit_from(&self, request: CommandRequest, origin: Origin) -> Reply {
        let engine = self.0.read().expect("controls").clone();
        match engine {
            Ok(engine) => engine.submit_from(request, origin).await,
            Err(why) => Reply::Rejected { reason: why },
        }
    }
}

impl From<EngineHandle> for Controls {
    fn from(engine: EngineHandle) -> Controls {
        Controls(Arc::new(RwLock::new(Ok(engine))))
    }
}

#[async_trait::async_trait]
impl Submit for Controls {
    async fn submit(&self, request: CommandRequest) -> Reply {
        self.submit_from(request, Origin::local()).await
    }
}

/// Why a standby refuses commands: `holder` says who holds the Lease (or why it cannot be read).
pub fn refusal(holder: &str) -> String {
    format!("this replica is a standby and drives nothing ({holder}); commands go to the replica holding the lease")
}

/// A standby's view: its hub, its controls, and the journal follower feeding them.
pub struct Standby {
    pub hub: Arc<Hub>,
    pub controls: Controls,
    snapshots: Arc<watch::Sender<Snapshot>>,
    follower: JoinHandle<()>,
}

/// One rollout as the standby follows it.
struct Followed {
    setup: Setup,
    /// The journal's length and modification time when last read: unchanged, not read again.
    seen: Option<(u64, SystemTime)>,
    rollout: Arc<Rollout>,
    last: Timestamp,
}

/// What reading one journal needs (a rollout's setup, without its backend).
struct Setup {
    id: String,
    plan: flightdeck_core::plan::Plan,
    plan_file: String,
    plan_text: String,
    sim: Option<crate::backend::sim::SimRun>,
}

impl Standby {
    /// Reads the journals of `setups` in `options.journal_dir` (once now,
    /// then every [`REFRESH`]) and shows them; the hub's events come from
    /// `outputs` (the engine's, once it starts). Commands are refused with `why`.
    pub fn start(
        setups: &[RolloutSetup],
        options: &EngineOptions,
        outputs: mpsc::Receiver<Output>,
        why: String,
    ) -> Standby {
        let mut followed: Vec<Followed> = setups
            .iter()
            .map(|s| Followed {
                setup: Setup {
                    id: s.id.clone(),
                    plan: s.plan.clone(),
                    plan_file: s.plan_file.clone(),
                    plan_text: s.plan_text.clone(),
                    sim: s.backend.simulation(),
                },
                seen: None,
                rollout: Arc::new(Rollout::new(s.id.clone(), s.plan.clone())),
                last: Timestamp::default(),
            })
            .collect();
        let dir = options.journal_dir.clone();
        let (speed, wall) = (options.clock.speed(), options.clock.origin().is_none());
        let mut history = Vec::new();
        for f in &mut followed {
            history.extend(refresh(dir.as_ref(), f));
        }
        history.sort_by_key(Output::at);
        let (snapshots, receiver) = watch::channel(snapshot(&followed, speed, wall));
        let snapshots = Arc::new(snapshots);
        let hub = Hub::start(receiver, outputs, history);
        hub.notice(format!(
            "this replica is a standby: it shows the journals, read again every {} s, and refuses commands \
             until it holds the lease",
            REFRESH.as_secs()
        ));
        let follower = {
            let snapshots = snapshots.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH).await;
                    let mut changed = false;
                    for f in &mut followed {
                        let before = f.rollout.clone();
                        refresh(dir.as_ref(), f);
                        changed |= !Arc::ptr_eq(&before, &f.rollout);
                    }
                    if changed {
                        snapshots.send_replace(snapshot(&followed, speed, wall));
                    }
                }
            })
        };
        Standby { hub, controls: Controls::standby(why), snapshots, follower }
    }

    /// This replica holds the Lease and `engine` drives: the journals are
    /// no longer followed; the engine's snapshots reach the same hub, and
    /// commands the engine; viewers are told `news`. Returns the hub and
    /// controls to serve with.
    pub fn drive(self, engine: &Engine, news: String) -> (Arc<Hub>, Controls) {
        self.follower.abort();
        let mut from = engine.subscribe();
        let into = self.snapshots;
        tokio::spawn(async move {
            loop {
                into.send_replace(from.borrow_and_update().clone());
                if from.changed().await.is_err() {
                    return;
                }
            }
        });
        self.controls.drive(engine.handle());
        self.hub.notice(news);
        (self.hub, self.controls)
    }
}

/// Re-reads `f`'s journal if it changed; returns its last events the first time it is read.
fn refresh(dir: Option<&PathBuf>, f: &mut Followed) -> Vec<Output> {
    let Some(dir) = dir else { return Vec::new() };
    let s = &f.setup;
    let path = journal::path_of(dir, &s.id, &s.plan_file);
    let seen = std::fs::metadata(&path).ok().map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
    if seen.is_none() || seen == f.seen {
        return Vec::new();
    }
    let first = f.seen.is_none();
    f.seen = seen;
    match journal::follow(dir, &s.id, &s.plan, &s.plan_file, &s.plan_text, s.sim.as_ref()) {
        Ok(Some(read)) => {
            f.rollout = Arc::new(read.rollout);
            f.last = read.last;
            if first {
                return read.history;
            }
        }
        Ok(None) => {}
        Err(e) => unreadable(f, &e),
    }
    Vec::new()
}

/// A journal the standby cannot read shows its rollout paused, with why.
fn unreadable(f: &mut Followed, error: &JournalError) {
    tracing::warn!(rollout = %f.setup.id, %error, "standby: cannot follow the journal");
    let mut rollout = (*f.rollout).clone();
    let reason = format!("this standby cannot read the journal: {error}");
    if !rollout.phase.is_finished() {
        rollout.hold(Actor::new("journal"), reason, f.last);
    }
    f.rollout = Arc::new(rollout);
}

/// The followed rollouts as an engine's snapshot: at the latest journaled
/// time on a simulated clock, the wall clock's now otherwise.
fn snapshot(followed: &[Followed], speed: f64, wall: bool) -> Snapshot {
    let at = match wall {
        true => Timestamp(crate::clock::wall_ms()),
        false => followed.iter().map(|f| f.last).max().unwrap_or_default(),
    };
    Snapshot {
        at,
        speed,
        rollouts: followed.iter().map(|f| f.rollout.clone()).collect(),
        attached: Vec::new(),
        releases: Vec::new(),
    }
}
