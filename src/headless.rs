//! Headless runs: the event stream on stdout (text or JSON lines) and an
//! exit code that says how it ended.
//!
//! A headless run drives its rollouts to the end. One that waits for a
//! human (paused, or at an approval gate) is still driven: analysed every
//! window (a failing one rolls it back), shared on a socket a captain can
//! `flightdeck attach` to, and after `--unattended-wait` the
//! `--unattended` policy acts: abort (canary weight 0) or hold (stop
//! driving, leave the weight, say so). The last words on stderr say where
//! each rollout's traffic is left.

use crate::cli::RunOptions;
use crate::engine::{Engine, EngineOptions, Interrupted, RolloutSetup, StopWhen};
use crate::protocol::{Output, Snapshot};
use crate::share::{hub::Hub, roles::Roles, server};
use crate::signals::Signals;
use flightdeck_core::analysis::{CheckOutcome, Verdict};
use flightdeck_core::plan::Control;
use flightdeck_core::rollout::{Phase, Rollout};
use flightdeck_core::time::stamp;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A line on stderr if it can be written (stderr on a full disk, a closed
/// pipe): the exit code is the run's whatever can be said.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Every rollout promoted.
pub const EXIT_PROMOTED: u8 = 0;
/// Something else: a rollout waits for a human, or failed. (A signal ends
/// a run with 128 + its number.)
pub const EXIT_OTHER: u8 = 1;
/// Bad input (plan, flags).
pub const EXIT_BAD_INPUT: u8 = 2;
/// At least one rollout was rolled back or aborted.
pub const EXIT_ROLLED_BACK: u8 = 3;

/// Where a headless run listens when `--socket` does not say: beside
/// `flightdeck serve`'s socket, one per process.
pub fn default_socket() -> PathBuf {
    crate::paths::socket_path().with_file_name(format!("run-{}.sock", std::process::id()))
}

/// Runs to the end and prints as it goes.
pub async fn run(setups: Vec<RolloutSetup>, options: EngineOptions, run: &RunOptions) -> color_eyre::Result<ExitCode> {
    run_with(setups, options, run, Vec::new(), summarise).await
}

/// [`run`] with drivers beside the rollouts (a release: `crate::release`),
/// and the run's last words and exit code from `summary`.
pub async fn run_with(
    setups: Vec<RolloutSetup>,
    mut options: EngineOptions,
    run: &RunOptions,
    drivers: Vec<crate::engine::Driver>,
    summary: impl FnOnce(&Snapshot) -> u8,
) -> color_eyre::Result<ExitCode> {
    let json = run.json;
    options.stop_when = StopWhen::UnattendedWith(run.unattended.policy());
    // Before anything starts, so no signal falls between start and catching.
    let mut signals = Signals::catch()?;
    // Taken before any journal, like `serve`: a socket asked for and held
    // by another stops the run before it touches anything.
    let path = run.unattended.socket.clone().unwrap_or_else(default_socket);
    let listening = match server::bind(&path).await {
        Ok(socket) => Some(socket),
        Err(e) if run.unattended.socket.is_some() => return Err(e.into()),
        Err(e) => {
            say!("flightdeck: cannot share this run ({e}): nobody can attach to it");
            None
        }
    };
    let (tx, mut rx) = mpsc::channel::<Output>(1024);
    let engine = match Engine::start_with(setups, options, tx, drivers) {
        Ok(engine) => engine,
        Err(e) => return Interrupted::signal_in(&e).map(stopped).ok_or(e),
    };
    let snapshots = engine.subscribe();
    let (hub_tx, hub_rx) = mpsc::channel::<Output>(1024);
    let hub = Hub::start(engine.subscribe(), hub_rx, engine.history().to_vec());
    let watching = hub.clone();
    let attach = listening.as_ref().map(|_| format!("flightdeck attach --socket {}", path.display()));
    let printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        let mut printing = true;
        while let Some(o) = rx.recv().await {
            // Attached cockpits see the same events; a full queue drops one for them, never for stdout.
            let _ = hub_tx.try_send(o.clone());
            if let (Output::Transition { rollout, to, .. }, Some(attach)) = (&o, &attach) {
                if to == "paused" || to == "awaiting approval" {
                    say!("flightdeck: {rollout} waits for a human; act on it with `{attach}`");
                }
            }
            if !printing {
                continue;
            }
            let line = if json { json_line(&o) } else { human(&o) };
            // stdout closed (piped into head): keep running, stop printing.
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                printing = false;
            }
        }
    });
    let handle = engine.handle();
    let serving = async {
        match &listening {
            Some(socket) => server::serve(socket, hub, handle, Arc::new(Roles::default())).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = engine.wait() => {}
        () = serving => {}
        signo = signals.next() => return Ok(stopped(signo)),
    }
    if !watching.attached().is_empty() {
        // The command that finished the run (an attached captain's
        // rollback) is answered on its connection's own task: give it a
        // moment to be written before the process ends, or the captain
        // reads "the connection was lost" for a rollback that happened.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(listening);
    let _ = tokio::time::timeout(Duration::from_secs(2), printer).await;
    let snapshot = snapshots.borrow().clone();
    Ok(ExitCode::from(summary(&snapshot)))
}

/// Stopped by signal `signo`: says so, and exits as the signal would have.
fn stopped(signo: i32) -> ExitCode {
    let name = Signals::name(signo);
    say!("stopped by {name}; run the same command again to resume from the journal");
    ExitCode::from(Signals::exit_code(signo))
}

/// The exit code for how the rollouts ended; explains anything but
/// success on stderr, with where each rollout's traffic is left.
pub fn summarise(snapshot: &Snapshot) -> u8 {
    let mut code = EXIT_PROMOTED;
    for r in &snapshot.rollouts {
        match &r.phase {
            Phase::Promoted { .. } => {}
            Phase::RolledBack { reason, .. } | Phase::Aborted { reason, .. } => {
                say!("{}: {} — {reason}", r.id, r.phase.label());
                say!("  traffic: {}", traffic(r));
                code = EXIT_ROLLED_BACK;
            }
            _ => {
                let paused = match &r.phase {
                    Phase::Paused { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                let why = r.needs_human().or(paused).unwrap_or_else(|| "did not finish".into());
                say!(
                    "{}: {} at stage {}/{} — needs a human: {why}",
                    r.id,
                    r.phase.label(),
                    r.stage + 1,
                    r.stages().len()
                );
                say!("  traffic: {}", traffic(r));
                if code == EXIT_PROMOTED {
                    code = EXIT_OTHER;
                }
            }
        }
    }
    code
}

/// Where a rollout's traffic is, in words: what flightdeck asked for, what
/// the backend last showed, and whether anything still drives it.
pub fn traffic(r: &Rollout) -> String {
    let read = match r.observed_weight {
        Some(w) => format!("read back {w} %"),
        None => "not read back".to_string(),
    };
    let (canary, stable, weight) = (&r.canary_revision, &r.stable_revision, r.canary_weight);
    match &r.phase {
        _ if r.control == Control::Observed => {
            format!(
                "canary {canary} at {weight} % ({read}), held by the native controller (flightdeck only observes it)"
            )
        }
        Phase::Promoted { .. } => format!("all on {canary}: canary weight 100 % ({read})"),
        Phase::RolledBack { .. } => format!("all on stable {stable}: canary weight 0 % ({read}); canary scaled down"),
        Phase::Aborted { .. } => {
            format!("all on stable {stable}: canary weight 0 % ({read}); the canary takes no traffic")
        }
        Phase::Failed { .. } => format!(
            "NOT known to be where it should: flightdeck asked for canary weight {weight} % ({read}) and an effect \
             failed; nothing drives this rollout now"
        ),
        _ => format!(
            "canary {canary} LEFT AT {weight} % ({read}) with nothing driving it: no analysis, no rollback, until a \
             run of this plan resumes it from its journal"
        ),
    }
}

/// One JSON object per event, for `--json`: stages count from 1, as in the
/// text, the cockpit and the audit (the journal and the wire keep the
/// core's 0-based index).
pub fn json_line(o: &Output) -> String {
    let mut o = o.clone();
    match &mut o {
        Output::Started { stage, .. }
        | Output::Transition { stage, .. }
        | Output::Verdict { stage, .. }
        | Output::Action { stage, .. } => *stage += 1,
        Output::Effect { .. } | Output::Notice { .. } => {}
    }
    serde_json::to_string(&o).expect("outputs serialize")
}

/// One line of text per event.
pub fn human(o: &Output) -> String {
    let t = |at: &flightdeck_core::Timestamp| stamp(*at);
    match o {
        Output::Started { rollout, at, strategy, stages, resumed, stage } => {
            let verb = if *resumed { format!("resumed at stage {}", stage + 1) } else { "started".into() };
            let stages = stages.iter().map(|w| format!("{w}%")).collect::<Vec<_>>().join(" → ");
            format!("[{:>7}] {rollout}: {verb} ({strategy}: {stages})", t(at))
        }
        Output::Transition { rollout, at, from, to, stage, stages, weight, still_at, reason } => {
            let why = reason.as_ref().map(|r| format!(" — {r}")).unwrap_or_default();
            let moved = if from == to { format!("{to}:") } else { format!("{from} → {to},") };
            let at_weight = transition_weight(*weight, *still_at);
            format!("[{:>7}] {rollout}: {moved} stage {}/{stages} {at_weight}{why}", t(at), stage + 1)
        }
        Output::Verdict { rollout, at, verdict, .. } => {
            format!("[{:>7}] {rollout}: verdict {} — {}", t(at), verdict.label(), verdict_detail(verdict))
        }
        Output::Effect { rollout, at, effect, ok, attempts, error } => match error {
            None if *ok => format!("[{:>7}] {rollout}: applied {effect}", t(at)),
            _ => format!(
                "[{:>7}] {rollout}: FAILED {effect} after {attempts} attempts: {}",
                t(at),
                error.as_deref().unwrap_or("?")
            ),
        },
        Output::Action { rollout, at, actor, command, accepted, reason, detail, .. } => {
            let typed = detail.as_ref().map(|d| format!(": “{d}”")).unwrap_or_default();
            match reason {
                Some(r) if !accepted => format!("[{:>7}] {rollout}: {command} by {actor}{typed} refused: {r}", t(at)),
                _ => format!("[{:>7}] {rollout}: {command} by {actor}{typed}", t(at)),
            }
        }
        Output::Notice { rollout, at, message, .. } => format!("[{:>7}] {rollout}: {message}", t(at)),
    }
}

/// One line of `flightdeck audit`: when, which rollout, who from where,
/// what they sent, the stage and revision they saw, and the answer.
pub fn audit_line(o: &Output) -> String {
    let Output::Action { rollout, at, actor, command, stage, accepted, reason, detail, revision, session } = o else {
        return human(o);
    };
    let from = session.as_deref().unwrap_or("local");
    let typed = detail.as_ref().map(|d| format!(" “{d}”")).unwrap_or_default();
    let seen =
        if revision.is_empty() { format!("stage {}", stage + 1) } else { format!("stage {} of {revision}", stage + 1) };
    let answer = match reason {
        Some(r) if !accepted => format!("REFUSED: {r}"),
        _ => "applied".to_string(),
    };
    format!("[{:>7}] {rollout}: {command}{typed} by {actor} via {from}, saw {seen}: {answer}", stamp(*at))
}

/// "at 10%", or, when the 10 % could not be applied, where traffic still is.
pub fn transition_weight(weight: u8, still_at: Option<u8>) -> String {
    match still_at {
        Some(shown) => format!("still at {shown}% (wanted {weight}%, not applied)"),
        None => format!("at {weight}%"),
    }
}

fn verdict_detail(v: &Verdict) -> String {
    match v {
        Verdict::Pass { .. } => "all checks pass".into(),
        Verdict::Inconclusive { reason, .. } => reason.clone(),
        Verdict::Fail { severity, checks } => {
            let failing: Vec<_> =
                checks.iter().filter(|c| c.outcome == CheckOutcome::Fail).map(|c| c.reason.as_str()).collect();
            format!("{severity:?}: {}", failing.join("; "))
        }
    }
}
