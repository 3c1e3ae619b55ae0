//! `flightdeck serve` as a service: health and metrics over HTTP
//! (`--http ADDR`, [`health`], [`metrics`]) and notifications to Slack,
//! PagerDuty and signed webhooks ([`notify`]).
//!
//! Everything here is a viewer: it follows the engine's snapshots (a
//! `watch`, read at scrape time) and the events the hub broadcasts, and
//! never waits on the engine nor makes it wait. A follower that falls
//! behind the broadcast skips events and counts them
//! (`flightdeck_events_skipped_total`) rather than slow anyone.

pub mod health;
#[cfg(feature = "k8s")]
pub mod lease;
pub mod metrics;
pub mod notify;
pub mod plans;

use crate::protocol::{inert, Output, Snapshot};
use crate::share::hub::Hub;
use crate::share::standby::Controls;
use flightdeck_core::rollout::{Phase, Rollout};
use metrics::Counters;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

/// How long queued notifications may take to go out when serve stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What `serve` runs beside its socket.
#[derive(Debug, Default)]
pub struct ServiceOptions {
    /// `--http ADDR`: `/healthz`, `/readyz`, `/metrics`.
    pub http: Option<String>,
    /// `[[notify]]` destinations, their secrets read.
    pub sinks: Vec<notify::Sink>,
    /// `--leader-elect`: drive only while holding this Lease.
    #[cfg(feature = "k8s")]
    pub lease: Option<lease::LeaseOptions>,
    /// What SIGHUP (and a change in `--plans-dir`) re-reads.
    pub reload: Option<plans::Reload>,
    /// Rollouts whose plan files were removed mid-way, and why they go on.
    pub removed: Vec<(String, String)>,
}

/// What the HTTP endpoints read: the engine, once it has started.
pub struct Shared {
    engine: OnceLock<Sources>,
    counters: Arc<Mutex<Counters>>,
    /// Backend call latency, timed around every rollout's backend.
    latency: metrics::Latency,
    /// `--leader-elect`, until the Lease is held: who holds it (or why it cannot be read).
    standby: Mutex<Option<String>>,
    /// `--leader-elect`: the Lease's name, and the record as last read or written.
    #[cfg(feature = "k8s")]
    lease: OnceLock<(String, Arc<Mutex<lease::Seen>>)>,
}

struct Sources {
    snapshots: watch::Receiver<Snapshot>,
    hub: Arc<Hub>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            engine: OnceLock::new(),
            counters: Arc::new(Mutex::new(Counters::default())),
            latency: metrics::Latency::default(),
            standby: Mutex::new(None),
            #[cfg(feature = "k8s")]
            lease: OnceLock::new(),
        }
    }

    /// The latest rollouts (pointers, not copies: the engine's lock is held for a moment only).
    fn rollouts(&self) -> Option<Vec<Arc<Rollout>>> {
        self.engine.get().map(|e| e.snapshots.borrow().rollouts.clone())
    }

    /// `/healthz`: the process runs its loop (`Err` once the engine's rollout tasks are all gone).
    pub fn liveness(&self) -> Result<String, String> {
        if let Some(standby) = self.standby.lock().expect("standby").as_ref() {
            return Ok(format!("ok: standby ({})\n", inert(standby)));
        }
        match self.engine.get() {
            None => Ok("ok: starting (opening journals)\n".into()),
            Some(e) if e.snapshots.has_changed().is_err() => Err("the engine stopped\n".into()),
            Some(_) => Ok("ok\n".into()),
        }
    }

    /// `/readyz`: every journal is open (and can be written) and no
    /// rollout's backend is unreachable; else the reasons, one a line.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        // A standby drives nothing: traffic (SSH, metrics) belongs to the holder.
        if let Some(standby) = self.standby.lock().expect("standby").as_ref() {
            return Err(vec![format!("standby: {}", inert(standby))]);
        }
        let Some(e) = self.engine.get() else {
            return Err(vec!["starting: the journals are being opened".into()]);
        };
        if e.snapshots.has_changed().is_err() {
            return Err(vec!["the engine stopped".into()]);
        }
        let mut reasons = Vec::new();
        for r in e.snapshots.borrow().rollouts.iter() {
            if let Phase::Paused { by, reason, .. } = &r.phase {
                if by.0 == "journal" {
                    reasons.push(format!("{}: {}", inert(&r.id), inert(reason)));
                }
            }
            if let Some(error) = &r.observe_error {
                reasons.push(format!("{}: backend unreachable: {}", inert(&r.id), inert(error)));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        let rollouts = self.rollouts().unwrap_or_default();
        let attached = self.engine.get().map_or(0, |e| e.hub.attached().len());
        let counters = self.counters.lock().expect("counters").clone();
        metrics::render(&counters, &rollouts, attached, &self.latency, self.lease().as_ref())
    }

    /// `--leader-elect`: the Lease as this replica last read or wrote it.
    fn lease(&self) -> Option<metrics::LeaseView> {
        #[cfg(feature = "k8s")]
        if let Some((name, seen)) = self.lease.get() {
            let seen = seen.lock().expect("lease seen").clone();
            // Leading: the term holds now (renewed within its deadline, no other holder seen).
            let leading = self.standby.lock().expect("standby").is_none()
                && crate::engine::journal::fence::installed().is_some_and(|f| f.check().is_ok());
            return Some(metrics::LeaseView {
                lease: name.clone(),
                holder: seen.holder,
                transitions: seen.transitions,
                renewed_ago: seen.renewed.map(|at| at.elapsed().as_secs_f64()),
                leading,
            });
        }
        None
    }
}

/// The running service: its HTTP listener and its event follower.
pub struct Service {
    shared: Arc<Shared>,
    /// Where `--http` listens (port 0 resolved).
    pub http_addr: Option<SocketAddr>,
    http: Option<JoinHandle<()>>,
    #[cfg_attr(not(feature = "notify"), allow(dead_code))]
    sinks: Vec<notify::Sink>,
    follower: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
    #[cfg(feature = "k8s")]
    lease: Option<lease::LeaseOptions>,
    /// The renewing task, and what stops it (releasing the Lease).
    keeper: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
    reload: Option<plans::Reload>,
    removed: Vec<(String, String)>,
}

/// What `--leader-elect` holds: [`Leadership::lost`] ends when the Lease is
/// lost (never without `--leader-elect`).
pub struct Leadership {
    lost: Option<oneshot::Receiver<String>>,
}

impl Leadership {
    /// Why the Lease was lost, when it is.
    pub async fn lost(&mut self) -> String {
        match self.lost.as_mut() {
            Some(lost) => lost.await.unwrap_or_else(|_| "the lease keeper stopped".into()),
            None => std::future::pending().await,
        }
    }
}

impl Service {
    /// Binds `--http` (before any journal is opened: a taken port stops
    /// serve first) and starts answering; `/readyz` says "starting" until
    /// [`Service::follow`].
    pub async fn bind(options: ServiceOptions) -> Result<Service, String> {
        #[cfg(not(feature = "notify"))]
        if !options.sinks.is_empty() {
            return Err("[[notify]]: this flightdeck was built without the `notify` feature".into());
        }
        let shared = Arc::new(Shared::new());
        let (http, http_addr) = match &options.http {
            Some(addr) => {
                let listener = health::bind(addr).await?;
                let local = listener.local_addr().ok();
                (Some(tokio::spawn(health::serve(listener, shared.clone()))), local)
            }
            None => (None, None),
        };
        Ok(Service {
            shared,
            http_addr,
            http,
            sinks: options.sinks,
            follower: None,
            #[cfg(feature = "k8s")]
            lease: options.lease,
            keeper: None,
            reload: options.reload,
            removed: options.removed,
        })
    }

    /// Times every backend call of `setups` for `/metrics`.
    pub fn time_backends(&self, setups: &mut [crate::engine::RolloutSetup]) {
        for setup in setups {
            let timed = metrics::Timed::new(setup.backend.clone(), setup.id.clone(), self.shared.latency.clone());
            setup.backend = Arc::new(timed);
        }
    }

    /// Whether `serve` stands by until it holds a Lease (`--leader-elect`).
    pub fn elects_leader(&self) -> bool {
        #[cfg(feature = "k8s")]
        return self.lease.is_some();
        #[cfg(not(feature = "k8s"))]
        false
    }

    /// `--leader-elect`: stands by (health says so) until this replica
    /// holds the Lease, then fences every journal with its term and keeps
    /// renewing it. Without `--leader-elect`, at once. Meanwhile `controls`
    /// (a standby's viewers' commands) are refused with who holds the Lease.
    pub async fn lead(&mut self, controls: Option<&Controls>) -> Result<Leadership, String> {
        #[cfg(not(feature = "k8s"))]
        let _ = controls;
        #[cfg(feature = "k8s")]
        if let Some(options) = self.lease.take() {
            options.check()?;
            let config =
                kube::Config::infer().await.map_err(|e| format!("--leader-elect: no Kubernetes configuration: {e}"))?;
            let client = kube::Client::try_from(config).map_err(|e| format!("--leader-elect: {e}"))?;
            let mut elector = lease::Elector::new(client, options);
            let _ = self.shared.lease.set((elector.options().describe(), elector.seen()));
            let shared = self.shared.clone();
            let mut said = String::new();
            let acquiring = elector.acquire(|why| {
                if said != why {
                    tracing::info!("standing by: {why}");
                    say(format_args!("flightdeck: standing by: {why}"));
                    said = why.to_owned();
                }
                *shared.standby.lock().expect("standby") = Some(why.to_owned());
                if let Some(controls) = controls {
                    controls.refuse_because(crate::share::standby::refusal(why));
                }
            });
            let fence = acquiring.await;
            say(format_args!("flightdeck: holding the lease {} as {}", elector.options().describe(), fence.term()));
            crate::engine::journal::fence::install(fence.clone()).map_err(|e| e.to_string())?;
            *self.shared.standby.lock().expect("standby") = None;
            let (lost_tx, lost) = oneshot::channel();
            let (stop_tx, mut stop) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                tokio::select! {
                    why = elector.keep(&fence) => {
                        tracing::error!("lost the lease: {why}");
                        let _ = lost_tx.send(why);
                    }
                    _ = &mut stop => {
                        // A clean stop: the rollouts have stopped; a standby need not wait the lease out.
                        fence.lose("this replica stopped".into());
                        if let Err(e) = elector.release().await {
                            tracing::warn!("could not release the lease: {e}");
                        }
                    }
                }
            });
            self.keeper = Some((task, stop_tx));
            return Ok(Leadership { lost: Some(lost) });
        }
        Ok(Leadership { lost: None })
    }

    /// Follows the started engine: its snapshots, and the events its hub broadcasts.
    pub fn follow(&mut self, snapshots: watch::Receiver<Snapshot>, hub: Arc<Hub>) -> Result<(), String> {
        let events = hub.events();
        // Plans removed mid-way: their viewers are told why the rollout goes on.
        let at = snapshots.borrow().at;
        for (rollout, message) in std::mem::take(&mut self.removed) {
            hub.tell(Output::Notice { rollout, at, level: "warning".into(), message });
        }
        let _ = self.shared.engine.set(Sources { snapshots: snapshots.clone(), hub });
        #[cfg(feature = "notify")]
        let notifier = match self.sinks.is_empty() {
            true => None,
            false => Some(notify::Notifier::start(
                std::mem::take(&mut self.sinks),
                self.shared.counters.clone(),
                notify::journal_path(),
            )?),
        };
        #[cfg(not(feature = "notify"))]
        let notifier: Option<()> = None;
        let (stop_tx, stop) = oneshot::channel();
        let task = tokio::spawn(follow(events, snapshots, self.shared.counters.clone(), notifier, stop));
        self.follower = Some((task, stop_tx));
        Ok(())
    }

    /// Waits for what stops serve: a signal (its number), or a reload
    /// (SIGHUP, or a change in `--plans-dir`) whose config and plans all
    /// check out (`SIGHUP`). A reload that does not check out is said,
    /// with every `file:line`, and nothing changes.
    pub async fn next_stop(&mut self, signals: &mut crate::signals::Signals) -> i32 {
        let Some(reload) = self.reload.clone() else { return signals.next().await };
        let mut seen = reload.dir.as_deref().map(|d| plans::listing(d).unwrap_or_default());
        loop {
            let why = tokio::select! {
                signo = signals.next() => match signo {
                    libc::SIGHUP => "SIGHUP",
                    other => return other,
                },
                () = tokio::time::sleep(plans::WATCH_EVERY), if seen.is_some() => {
                    let dir = reload.dir.as_deref().expect("watched");
                    let now = plans::listing(dir).unwrap_or_default();
                    if seen.as_ref() == Some(&now) {
                        continue;
                    }
                    seen = Some(now);
                    "the plans directory changed"
                }
            };
            match reload.check() {
                Ok(n) => {
                    tracing::info!("{why}: reloading {n} plans");
                    say(format_args!("flightdeck: {why}: reloading the config and {n} plans"));
                    return libc::SIGHUP;
                }
                Err(problems) => {
                    tracing::warn!("{why}: reload refused: {problems}");
                    say(format_args!("flightdeck: {why}: reload refused, nothing changed:\n{problems}"));
                }
            }
        }
    }

    /// Stops: queued notifications get [`SHUTDOWN_GRACE`] to go out.
    pub async fn stop(mut self) {
        if let Some((task, stop)) = self.follower.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), task).await;
        }
        if let Some((task, stop)) = self.keeper.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(http) = &self.http {
            http.abort();
        }
        if let Some((task, _)) = &self.follower {
            task.abort();
        }
        if let Some((task, _)) = &self.keeper {
            task.abort();
        }
    }
}

/// Raises the soft limit of open files to the hard one (as Go's runtime
/// does for every program): each rollout holds its journal (and its lock)
/// open, so 1,000 rollouts need about 2,000 descriptors, past the 1,024 a
/// systemd service or a shell starts with. Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
        }
    }
    Some(limit.rlim_cur)
}

/// A line on stderr if it can be written.
fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(feature = "notify")]
type Notifier = notify::Notifier;
#[cfg(not(feature = "notify"))]
type Notifier = ();

/// Counts and notifies what the engine's events say, until stopped.
async fn follow(
    mut events: broadcast::Receiver<Output>,
    snapshots: watch::Receiver<Snapshot>,
    counters: Arc<Mutex<Counters>>,
    notifier: Option<Notifier>,
    mut stop: oneshot::Receiver<()>,
) {
    let index: HashMap<String, usize> =
        snapshots.borrow().rollouts.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
    let mut watcher = notify::Watcher::default();
    loop {
        let out = tokio::select! {
            _ = &mut stop => break,
            event = events.recv() => match event {
                Ok(out) => out,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "metrics and notifications fell behind the engine's events");
                    counters.lock().expect("counters").skipped_events += n;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        let rollout = index.get(out.rollout()).and_then(|&i| snapshots.borrow().rollouts.get(i).cloned());
        let notice = watcher.notice(&out, rollout.as_deref());
        {
            let mut c = counters.lock().expect("counters");
            c.observe(&out);
            if let Some(n) = notice.as_ref().filter(|n| n.event == notify::EventKind::Rollback) {
                c.rollback(&n.rollout, n.by.as_deref().unwrap_or("analysis"));
            }
        }
        #[cfg(feature = "notify")]
        if let (Some(notifier), Some(n)) = (&notifier, &notice) {
            notifier.offer(n);
        }
    }
    #[cfg(feature = "notify")]
    if let Some(notifier) = notifier {
        notifier.finish(SHUTDOWN_GRACE).await;
    }
    #[cfg(not(feature = "notify"))]
    let _ = notifier;
}
