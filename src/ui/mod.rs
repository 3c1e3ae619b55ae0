//! The cockpit: a ratatui view of engine snapshots. It renders and sends
//! commands; it never calls a backend or changes a rollout any other way.

pub mod action;
pub mod app;
pub mod keymap;
pub mod panes;
pub mod release;
pub mod run;
pub mod terminal;
pub mod text;
pub mod theme;
pub mod tree;
pub mod view;

use crate::protocol::{Link, Role};
use flightdeck_core::rollout::Actor;
use std::future::Future;
use std::path::Path;

/// How the cockpit looks and which keys it answers.
pub struct Look {
    pub theme: theme::Theme,
    /// Every theme to cycle through.
    pub themes: Vec<theme::Theme>,
    pub keymap: keymap::Keymap,
}

/// How the cockpit looks and whom it acts for.
pub struct CockpitSettings {
    pub theme: String,
    /// The theme was asked for on the command line: plans' themes do not override it.
    pub pin_theme: bool,
    pub keymap: String,
    pub actor: String,
    /// Capture the mouse (wheel and clicks); `mouse = false` in the config
    /// leaves the terminal's own text selection working.
    pub mouse: bool,
    /// Who drives the rollouts once this cockpit closes (what quit says).
    pub driver: app::Driver,
}

/// A theme or keymap asked for by name must exist: "no theme named x;
/// known: …" says what to type instead (not a file that is not there).
pub fn check_names(theme: Option<&str>, keymap: Option<&str>, config_dir: &Path) -> Result<(), String> {
    if let Some(name) = theme.filter(|n| !theme::Theme::exists(n, config_dir)) {
        let known = theme::Theme::known(config_dir).join(", ");
        let dir = config_dir.join("themes");
        return Err(format!("no theme named {name}; known: {known} (user themes go in {}/<name>.toml)", dir.display()));
    }
    if let Some(name) = keymap.filter(|n| !keymap::shipped_names().contains(n)) {
        return Err(format!("no keymap named {name}; known: {}", keymap::shipped_names().join(", ")));
    }
    Ok(())
}

/// Loads the theme, every shipped one and the user themes plans name (for
/// cycling and for rollouts that name one) and the keymap.
pub fn load_look(settings: &CockpitSettings, config_dir: &Path, plan_themes: &[String]) -> Result<Look, String> {
    load_look_in(theme::ColorMode::detect(), settings, config_dir, plan_themes)
}

/// [`load_look`] for a terminal whose colours are known otherwise (an SSH
/// session's, from the variables its client sent).
pub fn load_look_in(
    mode: theme::ColorMode,
    settings: &CockpitSettings,
    config_dir: &Path,
    plan_themes: &[String],
) -> Result<Look, String> {
    let mode_theme = if mode == theme::ColorMode::Mono { "mono" } else { settings.theme.as_str() };
    let chosen = theme::Theme::load(mode_theme, config_dir, mode).map_err(|e| e.to_string())?;
    let mut themes: Vec<theme::Theme> = Vec::new();
    let shipped = theme::Theme::shipped().into_iter().map(str::to_owned);
    for name in shipped.chain(plan_themes.iter().cloned()) {
        if !themes.iter().any(|t| t.name == name) {
            themes.push(theme::Theme::load(&name, config_dir, mode).map_err(|e| e.to_string())?);
        }
    }
    let keymap = keymap::Keymap::load(&settings.keymap, config_dir).map_err(|e| e.to_string())?;
    Ok(Look { theme: chosen, themes, keymap })
}

/// The view state for a link: its snapshot, the events before it, the look
/// and whom it acts for (a viewer gets a read-only cockpit).
pub fn app_for(link: &Link, look: Look, settings: &CockpitSettings, role: Role) -> app::App {
    let initial = link.snapshots.borrow().clone();
    let mut app = app::App::new(initial, look, Actor::new(settings.actor.clone()));
    if settings.pin_theme {
        app.pin_theme();
    }
    app.mouse = settings.mouse;
    app.driver = settings.driver;
    app.read_only = role == Role::Viewer;
    for output in &link.history {
        app.on_output(output.clone());
    }
    app
}

/// Opens the cockpit on this terminal over `link` and runs until the
/// captain quits (`None`) or `stop` resolves (a signal's number). Returns
/// one line per rollout saying where it was left, to print once the
/// terminal is back, and the signal.
pub async fn open(
    link: Link,
    look: Look,
    settings: &CockpitSettings,
    role: Role,
    stop: impl Future<Output = i32>,
) -> color_eyre::Result<(Vec<String>, Option<i32>)> {
    let app = app_for(&link, look, settings, role);
    let mut screen = terminal::enter(app.mouse)?;
    let result = run::run(app, &mut screen, link, run::terminal_input(), stop).await;
    drop(screen);
    terminal::restore();
    let (app, signal) = result?;
    Ok((app.quit_summary(), signal))
}
