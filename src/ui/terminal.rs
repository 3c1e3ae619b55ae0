//! The terminal the cockpit owns: whether there is one, taking it, and
//! putting it back as it was however the cockpit ends (quit, error, panic,
//! or a signal: see [`crate::signals`]), and for as long as it is stopped
//! (Ctrl-Z, SIGTSTP): the shell gets its terminal back meanwhile, and the
//! cockpit takes it again and redraws it whole when it continues.

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, Once};

/// The cockpit draws on stdout and reads keys from stdin, or from the
/// controlling terminal when stdin is redirected (as crossterm does).
pub fn available() -> bool {
    std::io::stdout().is_terminal() && (std::io::stdin().is_terminal() || std::fs::File::open("/dev/tty").is_ok())
}

/// What the cockpit holds of the terminal.
struct State {
    /// Between [`enter`] and [`restore`].
    entered: bool,
    /// Stopped (or about to be): the shell has the terminal, frames are dropped.
    suspended: bool,
    /// Mouse capture was asked for.
    mouse: bool,
}

static STATE: Mutex<State> = Mutex::new(State { entered: false, suspended: false, mouse: false });

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stdout while the cockpit owns the terminal. Each write is checked
/// against a stop under one lock, so no frame reaches the shell's screen:
/// while the cockpit is stopped its frames are dropped (the whole screen
/// is redrawn when it continues).
pub struct Screen;

impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let state = state();
        if state.suspended {
            return Ok(buf.len());
        }
        std::io::stdout().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let state = state();
        if state.suspended {
            return Ok(());
        }
        std::io::stdout().flush()
    }
}

/// Raw mode, the alternate screen and mouse capture, each undone by
/// [`restore`], which a panic runs too.
pub fn enter(mouse: bool) -> std::io::Result<Terminal<CrosstermBackend<Screen>>> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Not `restore`: the panic may have struck with the state locked.
            if let Ok(mut state) = STATE.try_lock() {
                state.entered = false;
            }
            leave();
            next(info);
        }));
    });
    // A fixed viewport: with a full-screen one ratatui asks the terminal
    // for its size before every frame, and crossterm opens /dev/tty for
    // each ask. Resizes come as key-reader events; the loop applies them.
    let (width, height) = ratatui::crossterm::terminal::size()?;
    let viewport = Viewport::Fixed(Rect::new(0, 0, width, height));
    let mut state = state();
    *state = State { entered: true, suspended: false, mouse };
    take(mouse)?;
    drop(state);
    Terminal::with_options(CrosstermBackend::new(Screen), TerminalOptions { viewport })
}

/// Raw mode, the alternate screen, mouse capture if asked for, the cursor hidden.
fn take(mouse: bool) -> std::io::Result<()> {
    enable_raw_mode()?;
    execute!(std::io::stdout(), EnterAlternateScreen, Hide)?;
    // Mouse capture is off when the config says so (terminal text selection works then).
    if mouse {
        execute!(std::io::stdout(), EnableMouseCapture)?;
    }
    Ok(())
}

/// The terminal as the shell wants it: what is pending drawn first, then
/// mouse tracking off, the cursor shown, the main screen, raw mode off.
fn leave() {
    let mut out = std::io::stdout();
    let _ = out.flush();
    let _ = execute!(out, DisableMouseCapture, Show, LeaveAlternateScreen);
    let _ = disable_raw_mode();
}

/// Puts the terminal back as [`enter`] found it. Safe to call twice.
pub fn restore() {
    let mut state = state();
    state.entered = false;
    state.suspended = false;
    leave();
}

/// Whose stop a [`suspend`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-Z read as a key (raw mode keeps the terminal from sending
    /// SIGTSTP): the whole foreground job stops, as the terminal would do.
    Job,
    /// A SIGTSTP sent to this process.
    Process,
}

/// Gives the terminal back to the shell, stops (SIGTSTP with its default
/// action) and, once continued in the foreground, takes the terminal
/// again. True when the caller must have the screen redrawn whole.
pub fn suspend(whom: Stop) -> bool {
    {
        let mut state = state();
        if state.entered {
            state.suspended = true;
            leave();
        }
    }
    // SAFETY: sigaction with a zeroed struct (empty mask, no flags) set to
    // SIG_DFL, then the saved action put back; kill and raise take no pointers.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        let mut caught: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTSTP, &default, &mut caught) == 0 {
            // The signal is taken by this thread on its way back from the
            // call: the process stops here (unless its process group is
            // orphaned, where nobody could continue it: then it goes on).
            match whom {
                Stop::Job => libc::kill(0, libc::SIGTSTP),
                Stop::Process => libc::raise(libc::SIGTSTP),
            };
            libc::sigaction(libc::SIGTSTP, &caught, std::ptr::null_mut());
        }
    }
    resume()
}

/// After a stop (ours, or a SIGSTOP's): takes the terminal again if the
/// cockpit still holds it and runs in the foreground (after `bg` it waits
/// for the `fg`, whose SIGCONT comes here again). True when the caller
/// must have the screen redrawn whole.
pub fn resume() -> bool {
    let mut state = state();
    if !state.entered || !in_foreground() {
        return false;
    }
    if take(state.mouse).is_err() {
        return false;
    }
    state.suspended = false;
    true
}

/// Whether this process's group owns the terminal (a background job that
/// touches its modes is stopped again).
fn in_foreground() -> bool {
    // SAFETY: plain calls on a file descriptor number.
    let (owner, ours) = unsafe { (libc::tcgetpgrp(libc::STDOUT_FILENO), libc::getpgrp()) };
    owner < 0 || owner == ours
}
