//! The engine: one tokio task per rollout. Each task feeds events to
//! `flightdeck_core::step`, journals them, carries out the effects through
//! its backend with retry and backoff, feeds the results back, and
//! publishes snapshots and events. Viewers only `subscribe` and `submit`.

pub mod journal;
pub mod report;
mod task;

use crate::backend::Backend;
use crate::clock::Clock;
use crate::metrics::MetricsSource;
use crate::protocol::{CommandRequest, Link, Origin, Output, Reply, Snapshot, Submit};
use flightdeck_core::plan::Plan;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Everything needed to run one rollout.
pub struct RolloutSetup {
    pub id: String,
    pub plan: Plan,
    /// Where the plan came from, and its text (journaled so a resume can
    /// tell the plan has not changed).
    pub plan_file: String,
    pub plan_text: String,
    pub backend: Arc<dyn Backend>,
    pub metrics: Arc<dyn MetricsSource>,
}

/// When a rollout task stops by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhen {
    /// Keep watching (the cockpit: a human may still act).
    Never,
    /// Headless with the default policy ([`Unattended::default`]).
    Unattended,
    /// Headless: stop when finished. A rollout that waits for a human
    /// (paused, or at a gate) is still driven meanwhile (analysed, rolled
    /// back on a failing window, open to commands) and, if nobody acts
    /// within the policy's wait, the policy acts.
    UnattendedWith(Unattended),
}

impl StopWhen {
    /// The unattended policy, for headless runs.
    pub fn unattended(self) -> Option<Unattended> {
        match self {
            StopWhen::Never => None,
            StopWhen::Unattended => Some(Unattended::default()),
            StopWhen::UnattendedWith(policy) => Some(policy),
        }
    }
}

/// What a headless run does with a rollout waiting for a human when nobody comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unattended {
    /// How long a rollout may wait (on the engine's clock: simulated time
    /// for simulations) before `then`.
    pub wait: Duration,
    pub then: AfterWait,
}

impl Default for Unattended {
    /// Abort after 15 minutes: a canary nobody watches loses its traffic.
    fn default() -> Self {
        Unattended { wait: DEFAULT_UNATTENDED_WAIT, then: AfterWait::Abort }
    }
}

/// How long a headless run waits for a human by default.
pub const DEFAULT_UNATTENDED_WAIT: Duration = Duration::from_secs(15 * 60);

/// What happens after the unattended wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWait {
    /// Take the canary's traffic away (canary weight 0, as `abort`); the
    /// run then ends with exit code 3.
    Abort,
    /// Stop driving and leave the canary at its weight; the run ends with
    /// exit code 1 and says so.
    Hold,
}

/// A wait as typed on the command line: `90s`, `15m`, `2h`, `1h30m`.
pub fn wait_text(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let mut text = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (sec, "s")] {
        if n > 0 {
            text += &format!("{n}{unit}");
        }
    }
    if text.is_empty() {
        "0s".into()
    } else {
        text
    }
}

pub struct EngineOptions {
    pub clock: Clock,
    /// Directory for journals; `None` keeps no journal (tests, benches).
    pub journal_dir: Option<PathBuf>,
    /// Start over even if a journal holds an unfinished run.
    pub fresh: bool,
    pub stop_when: StopWhen,
}

/// A command on its way to a rollout task, with the session it came from
/// and where its answer goes. Boxed: a channel allocates 32 slots up front,
/// 4 KB per rollout unboxed.
pub type Order = Box<(CommandRequest, Origin, oneshot::Sender<Reply>)>;
type CommandTx = mpsc::Sender<Order>;

/// A rollout a driver (a release) starts: it stays pending until told
/// `Go`, and ends without starting when told `Never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Wait,
    Go,
    Never,
}

/// Something that runs beside the rollouts and acts on them only through
/// the engine's handle (a release: `crate::release`). It takes commands
/// under its own `id`, and the rollouts it names in `held` wait for it.
pub struct Driver {
    pub id: String,
    pub held: Vec<String>,
    #[allow(clippy::type_complexity)]
    pub run: Box<dyn FnOnce(DriverParts) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>,
}

/// What a driver runs with.
pub struct DriverParts {
    pub handle: EngineHandle,
    pub snapshots: watch::Receiver<Snapshot>,
    pub commands: mpsc::Receiver<Order>,
    pub clock: Clock,
    pub sink: mpsc::Sender<Output>,
    pub stop_when: StopWhen,
    /// Where the driver publishes its own state for viewers.
    pub publish: Arc<watch::Sender<Snapshot>>,
}

/// A signal (SIGTERM, SIGINT …) came before the rollouts started: none
/// was started, their journals hold what they held. The caller stops as
/// it does for the signal (`128 + signo`).
#[derive(Debug, thiserror::Error)]
#[error("stopped by {} before any rollout started", crate::signals::Signals::name(*.signo))]
pub struct Interrupted {
    pub signo: i32,
}

impl Interrupted {
    /// The signal in `report`, if the engine stopped for one before it started.
    pub fn signal_in(report: &color_eyre::Report) -> Option<i32> {
        report.downcast_ref::<Interrupted>().map(|i| i.signo)
    }
}

/// A running engine.
pub struct Engine {
    handle: EngineHandle,
    clock: Clock,
    snapshots: watch::Receiver<Snapshot>,
    tasks: JoinSet<()>,
    /// Events of resumed runs, restored from their journals, oldest first.
    history: Vec<Output>,
}

/// What a viewer needs to send commands; cheap to clone into tasks.
#[derive(Clone)]
pub struct EngineHandle {
    commands: Arc<HashMap<String, CommandTx>>,
    holds: Arc<HashMap<String, watch::Sender<Hold>>>,
}

impl EngineHandle {
    /// Starts a held rollout (`Go`) or tells it it never starts (`Never`).
    /// False when no rollout of that name is held.
    pub fn hold(&self, rollout: &str, hold: Hold) -> bool {
        self.holds.get(rollout).is_some_and(|tx| tx.send(hold).is_ok() || hold == Hold::Never)
    }

    /// Sends a command from the cockpit in this process and waits for the answer.
    pub async fn submit(&self, request: CommandRequest) -> Reply {
        self.submit_from(request, Origin::local()).await
    }

    /// Sends a command to its rollout on behalf of `origin` (role and
    /// session, which the journal keeps) and waits for the answer.
    pub async fn submit_from(&self, request: CommandRequest, origin: Origin) -> Reply {
        let Some(tx) = self.commands.get(&request.rollout) else {
            return Reply::Rejected { reason: format!("no rollout named {}", request.rollout) };
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if tx.send(Box::new((request, origin, reply_tx))).await.is_err() {
            return Reply::Rejected { reason: "the rollout is no longer running".into() };
        }
        reply_rx.await.unwrap_or(Reply::Rejected { reason: "the rollout stopped before answering".into() })
    }
}

#[async_trait::async_trait]
impl Submit for EngineHandle {
    async fn submit(&self, request: CommandRequest) -> Reply {
        EngineHandle::submit(self, request).await
    }
}

impl Engine {
    /// Opens every rollout's journal (resuming where one holds an
    /// unfinished run) and starts one task per rollout. Events go to `sink`.
    pub fn start(
        setups: Vec<RolloutSetup>,
        options: EngineOptions,
        sink: mpsc::Sender<Output>,
    ) -> color_eyre::Result<Engine> {
        Engine::start_with(setups, options, sink, Vec::new())
    }

    /// [`Engine::start`] with drivers beside the rollouts (a release).
    pub fn start_with(
        setups: Vec<RolloutSetup>,
        options: EngineOptions,
        sink: mpsc::Sender<Output>,
        drivers: Vec<Driver>,
    ) -> color_eyre::Result<Engine> {
        let mut opened = Vec::new();
        let mut history = Vec::new();
        for setup in setups {
            let o = match &options.journal_dir {
                Some(dir) => {
                    // The simulator's scenario and seed decide the run as much as the plan.
                    let sim = setup.backend.simulation();
                    let j = journal::Journal::open(
                        dir,
                        &setup.id,
                        &setup.plan,
                        &setup.plan_file,
                        &setup.plan_text,
                        sim.as_ref(),
                        options.fresh,
                    )?;
                    history.extend(j.history);
                    (Some(j.journal), j.rollout, j.resumed_at)
                }
                None => (None, flightdeck_core::Rollout::new(setup.id.clone(), setup.plan.clone()), None),
            };
            opened.push((setup, o));
            // The headless signal test's way to have a signal arrive while journals are opened.
            #[cfg(debug_assertions)]
            if let Some(ms) = std::env::var("FLIGHTDECK_DELAY_AFTER_JOURNAL_OPEN_MS").ok().and_then(|v| v.parse().ok())
            {
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
        // A signal that came while the journals were opened stops the run
        // here, before any rollout task acts (it waits to be delivered).
        if let Some(signo) = crate::signals::Signals::caught() {
            return Err(Interrupted { signo }.into());
        }
        // One clock for every rollout and for viewers: a resumed simulation
        // continues from the latest journaled time.
        let clock = match options.clock {
            Clock::Scaled { speed, .. } => {
                let origin = opened.iter().filter_map(|(_, o)| o.2).max().unwrap_or_default();
                Clock::scaled(origin, speed)
            }
            wall => wall,
        };
        let initial = Snapshot {
            at: clock.now(),
            speed: clock.speed(),
            rollouts: opened.iter().map(|(_, o)| Arc::new(o.1.clone())).collect(),
            attached: Vec::new(),
            releases: Vec::new(),
        };
        let (snap_tx, snap_rx) = watch::channel(initial);
        let snap_tx = Arc::new(snap_tx);
        let mut commands = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut holds = HashMap::new();
        let mut driver_commands = Vec::new();
        for driver in &drivers {
            for id in &driver.held {
                holds.insert(id.clone(), watch::channel(Hold::Wait));
            }
            let (tx, rx) = mpsc::channel(16);
            commands.insert(driver.id.clone(), tx);
            driver_commands.push(rx);
        }
        let mut hold_txs = HashMap::new();
        for (index, (mut setup, (journal, rollout, resumed_at))) in opened.into_iter().enumerate() {
            // `serve --leader-elect`: every effect is checked against the Lease at the last moment.
            if let Some(fence) = journal::fence::installed() {
                setup.backend = Arc::new(journal::fence::FencedBackend::new(setup.backend, fence));
            }
            setup.backend.run_on(clock);
            let (tx, rx) = mpsc::channel(16);
            commands.insert(setup.id.clone(), tx);
            let hold = holds.remove(&setup.id).map(|(tx, rx)| {
                hold_txs.insert(setup.id.clone(), tx);
                rx
            });
            let task = task::RolloutTask::new(task::Parts {
                index,
                setup,
                rollout: Arc::new(rollout),
                journal,
                resumed_at,
                clock,
                stop_when: options.stop_when,
                sink: sink.clone(),
                snapshots: snap_tx.clone(),
                hold,
            });
            tasks.spawn(task.run(rx));
        }
        // One log for the fleet, in time order (a stable sort keeps each rollout's order).
        history.sort_by_key(Output::at);
        let handle = EngineHandle { commands: Arc::new(commands), holds: Arc::new(hold_txs) };
        for (driver, commands) in drivers.into_iter().zip(driver_commands) {
            let parts = DriverParts {
                handle: handle.clone(),
                snapshots: snap_rx.clone(),
                commands,
                clock,
                sink: sink.clone(),
                stop_when: options.stop_when,
                publish: snap_tx.clone(),
            };
            tasks.spawn((driver.run)(parts));
        }
        Ok(Engine { handle, snapshots: snap_rx, tasks, clock, history })
    }

    /// What happened in resumed runs before this start, restored from their
    /// journals (oldest first): the cockpit's event log begins with it.
    pub fn history(&self) -> &[Output] {
        &self.history
    }

    /// The latest snapshot, updated whenever a rollout changes.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshots.clone()
    }

    /// Sends a command to its rollout and waits for the answer.
    pub async fn submit(&self, request: CommandRequest) -> Reply {
        self.handle.submit(request).await
    }

    /// The clock every rollout runs on (viewers draw timers with it).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// A viewer's link in this process: snapshots, the events `outputs`
    /// receives (the other end of the sink given to [`Engine::start`]), and
    /// commands. The history of resumed runs comes with it.
    pub fn link(&self, outputs: mpsc::Receiver<Output>) -> Link {
        Link::new(self.subscribe(), outputs, Arc::new(self.handle()), self.history.clone())
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Waits until every rollout task has stopped.
    pub async fn wait(mut self) {
        drop(self.handle);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops every rollout task now (the journal keeps their state).
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}
