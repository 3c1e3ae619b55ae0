//! The cockpit's loop: one task owns the terminal and the view state.
//! Input comes from a reader thread, snapshots and events from the engine,
//! command replies from small tasks; all through bounded channels. It
//! drains what is queued, then draws once, and only when something changed
//! or a visible timer ticked.

use super::app::App;
use super::view;
use crate::engine::clock::Clock;
use crate::engine::EngineHandle;
use crate::protocol::{CommandRequest, Output, Reply, Snapshot};
use crate::signals::Signals;
use ratatui::crossterm::event::{self, Event as TermEvent};
use ratatui::DefaultTerminal;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Slowest redraw for countdowns (one simulated second, at most 10 per real second).
fn timer_period(clock: &Clock) -> Duration {
    Duration::from_secs_f64(1.0 / clock.speed()).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Runs the cockpit on `terminal` until the captain quits or a signal
/// arrives (its number), and hands the view state back (for the summary
/// printed after it). The caller restores the terminal.
pub async fn run(
    mut app: App,
    terminal: &mut DefaultTerminal,
    engine: EngineHandle,
    mut snapshots: watch::Receiver<Snapshot>,
    mut outputs: mpsc::Receiver<Output>,
    clock: Clock,
    signals: &mut Signals,
) -> color_eyre::Result<(App, Option<i32>)> {
    let (input_tx, mut input_rx) = mpsc::channel::<TermEvent>(64);
    std::thread::spawn(move || read_input(input_tx));
    let (reply_tx, mut reply_rx) = mpsc::channel::<(CommandRequest, Reply)>(16);
    let period = timer_period(&clock);
    let mut result = Ok(None);
    // Each pass of the loop is woken by something that changed (input, a
    // snapshot, an event, a reply) or by a visible timer, so it draws once.
    while !app.quit {
        app.set_now(clock.now());
        app.expire_toast();
        if let Err(e) = terminal.draw(|f| view::render(f, &mut app)) {
            result = Err(e.into());
            break;
        }
        // The terminal test's way to check that a panic restores the terminal.
        #[cfg(debug_assertions)]
        if std::env::var_os("FLIGHTDECK_PANIC_IN_COCKPIT").is_some() {
            panic!("FLIGHTDECK_PANIC_IN_COCKPIT is set");
        }
        let timers_visible = app.view.rollouts.iter().any(|r| !r.phase.is_finished()) && !app.frozen;
        // The status line clears itself: wake up when it is due.
        let toast_due = app.toast_deadline().unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            Some(ev) = input_rx.recv() => {
                for req in app.on_event(&ev) {
                    send(&engine, req, &reply_tx);
                }
            }
            Ok(()) = snapshots.changed() => app.on_snapshot(snapshots.borrow_and_update().clone()),
            Some(out) = outputs.recv() => app.on_output(out),
            Some((req, reply)) = reply_rx.recv() => app.on_reply(&req, &reply),
            _ = tokio::time::sleep(period), if timers_visible => {}
            signo = signals.next() => {
                result = Ok(Some(signo));
                break;
            }
            _ = tokio::time::sleep_until(toast_due), if app.toast.is_some() => {}
        }
        // Drain whatever else is queued, then draw once.
        while let Ok(out) = outputs.try_recv() {
            app.on_output(out);
        }
        while let Ok(ev) = input_rx.try_recv() {
            for req in app.on_event(&ev) {
                send(&engine, req, &reply_tx);
            }
        }
    }
    result.map(|signal| (app, signal))
}

/// Sends a command without blocking the view; the reply comes back as a message.
fn send(engine: &EngineHandle, req: CommandRequest, replies: &mpsc::Sender<(CommandRequest, Reply)>) {
    let (engine, replies) = (engine.clone(), replies.clone());
    tokio::spawn(async move {
        let reply = engine.submit(req.clone()).await;
        let _ = replies.send((req, reply)).await;
    });
}

/// Blocking terminal reads on their own thread; stops when the cockpit is gone.
fn read_input(tx: mpsc::Sender<TermEvent>) {
    while !tx.is_closed() {
        match event::poll(Duration::from_millis(200)) {
            Ok(true) => match event::read() {
                Ok(ev) => {
                    if tx.blocking_send(ev).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Ok(false) => {}
            Err(_) => return,
        }
    }
}
