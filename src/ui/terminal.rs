//! The terminal the cockpit owns: whether there is one, taking it, and
//! putting it back as it was however the cockpit ends (quit, error, panic,
//! or a signal: see [`crate::signals`]).

use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::EnterAlternateScreen;
use ratatui::layout::Rect;
use ratatui::{DefaultTerminal, TerminalOptions, Viewport};
use std::io::IsTerminal;
use std::sync::Once;

/// The cockpit draws on stdout and reads keys from stdin, or from the
/// controlling terminal when stdin is redirected (as crossterm does).
pub fn available() -> bool {
    std::io::stdout().is_terminal() && (std::io::stdin().is_terminal() || std::fs::File::open("/dev/tty").is_ok())
}

/// Raw mode, the alternate screen and mouse capture, each undone by
/// [`restore`], which a panic runs too.
pub fn enter(mouse: bool) -> std::io::Result<DefaultTerminal> {
    // ratatui's hook restores raw mode and the screen; ours also turns mouse
    // tracking off and shows the cursor, which it leaves as they are.
    // A fixed viewport: with a full-screen one ratatui asks the terminal
    // for its size before every frame, and crossterm opens /dev/tty for
    // each ask. Resizes come as key-reader events; the loop applies them.
    let (width, height) = ratatui::crossterm::terminal::size()?;
    let viewport = Viewport::Fixed(Rect::new(0, 0, width, height));
    let terminal = ratatui::try_init_with_options(TerminalOptions { viewport })?;
    // `try_init` enters the alternate screen itself; with options it does not.
    execute!(std::io::stdout(), EnterAlternateScreen)?;
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let ratatui_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = execute!(std::io::stdout(), DisableMouseCapture, Show);
            ratatui_hook(info);
        }));
    });
    // Mouse capture is off when the config says so (terminal text selection works then).
    if mouse {
        execute!(std::io::stdout(), EnableMouseCapture)?;
    }
    Ok(terminal)
}

/// Puts the terminal back as [`enter`] found it. Safe to call twice.
pub fn restore() {
    let _ = execute!(std::io::stdout(), DisableMouseCapture, Show);
    ratatui::restore();
}
