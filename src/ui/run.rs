//! The cockpit's loop: one task owns a terminal and the view state. Key
//! events come from any source (a reader thread on the local terminal, the
//! bytes of an SSH channel), frames go to any ratatui backend, snapshots
//! and events come from a [`Link`], command replies from small tasks; all
//! through bounded channels. It drains what is queued, then draws once,
//! and only when something changed or a visible timer ticked.

use super::app::App;
use super::terminal;
use super::view;
use crate::protocol::link::ViewClock;
use crate::protocol::{CommandRequest, Link, Reply, Submit};
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::Terminal;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Shortest time between two frames drawn for data (snapshots, events): a
/// fleet's windows end within milliseconds of each other, and one frame
/// for all of them costs what one frame for each would not. Keys, replies
/// and signals draw at once.
const DATA_FRAME: Duration = Duration::from_millis(100);

/// Slowest redraw for countdowns (one simulated second, at most 10 per real second).
fn timer_period(clock: &ViewClock) -> Duration {
    Duration::from_secs_f64(1.0 / clock.speed()).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Runs the cockpit on `terminal` until the captain quits, the input ends
/// or `stop` resolves (with a signal's number), and hands the view state
/// back (for the summary printed after it). The caller restores the terminal.
pub async fn run<B>(
    mut app: App,
    terminal: &mut Terminal<B>,
    mut link: Link,
    mut input: mpsc::Receiver<TermEvent>,
    stop: impl Future<Output = i32>,
) -> color_eyre::Result<(App, Option<i32>)>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
{
    tokio::pin!(stop);
    let (reply_tx, mut reply_rx) = mpsc::channel::<(CommandRequest, Reply)>(16);
    let mut clock = ViewClock::new(&link.snapshots.borrow());
    let period = timer_period(&clock);
    let commands = link.commands.clone();
    app.on_link_status(link.status.borrow().clone());
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
        let drawn = tokio::time::Instant::now();
        let mut data_woke = false;
        // The terminal test's way to check that a panic restores the terminal.
        #[cfg(debug_assertions)]
        if std::env::var_os("FLIGHTDECK_PANIC_IN_COCKPIT").is_some() {
            panic!("FLIGHTDECK_PANIC_IN_COCKPIT is set");
        }
        let timers_visible = app.view.rollouts.iter().any(|r| !r.phase.is_finished()) && !app.frozen;
        // The status line clears itself: wake up when it is due.
        let toast_due = app.toast_deadline().unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            ev = input.recv() => match ev {
                Some(ev) => {
                    if let Err(e) = take_input(&mut app, terminal, &ev, &commands, &reply_tx) {
                        result = Err(e);
                        break;
                    }
                }
                // The terminal (or the SSH channel) is gone: nobody to draw for.
                None => break,
            },
            Ok(()) = link.snapshots.changed() => {
                let snapshot = link.snapshots.borrow_and_update().clone();
                clock.update(&snapshot);
                app.on_snapshot(snapshot);
                data_woke = true;
            }
            Some(out) = link.outputs.recv() => {
                app.on_output(out);
                data_woke = true;
            }
            Ok(()) = link.status.changed() => app.on_link_status(link.status.borrow_and_update().clone()),
            // A server restarted with other roles welcomes this cockpit as another role.
            Ok(()) = link.role.changed() => {
                if let Some(role) = *link.role.borrow_and_update() {
                    app.on_role(role);
                }
            }
            Some((req, reply)) = reply_rx.recv() => app.on_reply(&req, &reply),
            _ = tokio::time::sleep(period), if timers_visible => {}
            signo = &mut stop => {
                result = Ok(Some(signo));
                break;
            }
            _ = tokio::time::sleep_until(toast_due), if app.toast.is_some() => {}
        }
        // Data draws at most every DATA_FRAME (what comes meanwhile joins
        // the frame); a key cuts the wait short.
        if data_woke {
            let key = tokio::select! {
                _ = tokio::time::sleep_until(drawn + DATA_FRAME) => None,
                Some(ev) = input.recv() => Some(ev),
            };
            // A key acts on the newest state, as the captain will see it.
            if link.snapshots.has_changed().unwrap_or(false) {
                let snapshot = link.snapshots.borrow_and_update().clone();
                clock.update(&snapshot);
                app.on_snapshot(snapshot);
            }
            if let Some(ev) = key {
                if let Err(e) = take_input(&mut app, terminal, &ev, &commands, &reply_tx) {
                    result = Err(e);
                    break;
                }
            }
        }
        // Drain whatever else is queued, then draw once.
        while let Ok(out) = link.outputs.try_recv() {
            app.on_output(out);
        }
        while let Ok(ev) = input.try_recv() {
            if let Err(e) = take_input(&mut app, terminal, &ev, &commands, &reply_tx) {
                result = Err(e);
                break;
            }
        }
        if result.is_err() {
            break;
        }
    }
    result.map(|signal| (app, signal))
}

/// One input event: a resize reshapes the terminal (its viewport is set
/// only here), anything else goes to the app, whose commands are sent.
fn take_input<B>(
    app: &mut App,
    terminal: &mut Terminal<B>,
    ev: &TermEvent,
    commands: &Arc<dyn Submit>,
    replies: &mpsc::Sender<(CommandRequest, Reply)>,
) -> color_eyre::Result<()>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
{
    if let TermEvent::Resize(width, height) = *ev {
        terminal.resize(Rect::new(0, 0, width, height))?;
    }
    for req in app.on_event(ev) {
        send(commands, req, replies);
    }
    Ok(())
}

/// Sends a command without blocking the view; the reply comes back as a message.
fn send(commands: &Arc<dyn Submit>, req: CommandRequest, replies: &mpsc::Sender<(CommandRequest, Reply)>) {
    let (commands, replies) = (commands.clone(), replies.clone());
    tokio::spawn(async move {
        let reply = commands.submit(req.clone()).await;
        let _ = replies.send((req, reply)).await;
    });
}

/// Key events of the local terminal, read on their own thread (the reads
/// block); the thread stops when the cockpit is gone. Ctrl-Z, and SIGTSTP,
/// stop the cockpit with the terminal given back to the shell; when it
/// continues (SIGCONT) a resize to the terminal's size comes in, which
/// redraws the whole screen.
pub fn terminal_input() -> mpsc::Receiver<TermEvent> {
    let (tx, rx) = mpsc::channel::<TermEvent>(64);
    watch_stops(&tx);
    std::thread::spawn(move || read_input(tx));
    rx
}

fn read_input(tx: mpsc::Sender<TermEvent>) {
    // Wakes once a second without input only to see whether the cockpit is gone.
    while !tx.is_closed() {
        match event::poll(Duration::from_secs(1)) {
            Ok(true) => match event::read() {
                // Raw mode reads Ctrl-Z as a key rather than stopping the job.
                Ok(TermEvent::Key(key)) if is_suspend(&key) => {
                    if terminal::suspend(terminal::Stop::Job) && tx.blocking_send(redraw()).is_err() {
                        return;
                    }
                }
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

/// Ctrl-Z pressed (not released, not with other modifiers).
fn is_suspend(key: &KeyEvent) -> bool {
    key.code == KeyCode::Char('z') && key.modifiers == KeyModifiers::CONTROL && key.kind != KeyEventKind::Release
}

/// A resize to the terminal's size: the loop clears the screen and draws it whole.
fn redraw() -> TermEvent {
    let (width, height) = ratatui::crossterm::terminal::size().unwrap_or((80, 24));
    TermEvent::Resize(width, height)
}

/// SIGTSTP stops the cockpit as Ctrl-Z does; SIGCONT (also after a
/// SIGSTOP, which cannot be caught) takes the terminal again and redraws.
/// Without a tokio runtime or the signals, a stop is the default one.
fn watch_stops(tx: &mpsc::Sender<TermEvent>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let _entered = runtime.enter();
    let (Ok(mut stops), Ok(mut continues)) =
        (signal(SignalKind::from_raw(libc::SIGTSTP)), signal(SignalKind::from_raw(libc::SIGCONT)))
    else {
        return;
    };
    // Weak: the channel still closes when the key reader ends.
    let tx = tx.downgrade();
    runtime.spawn(async move {
        loop {
            let redrawn = tokio::select! {
                Some(()) = stops.recv() => tokio::task::spawn_blocking(|| terminal::suspend(terminal::Stop::Process))
                    .await
                    .unwrap_or(false),
                Some(()) = continues.recv() => terminal::resume(),
                else => return,
            };
            if redrawn {
                let Some(tx) = tx.upgrade() else { return };
                let _ = tx.send(redraw()).await;
            }
        }
    });
}
