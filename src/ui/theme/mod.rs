//! Themes: TOML files that map semantic scopes to terminal styles.
//!
//! The format follows helix (`book/src/themes.md`):
//!
//! ```toml
//! inherits = "default"            # optional: start from another theme
//! # every other top-level key is a dotted semantic scope
//! "verdict.fail" = { fg = "red", bg = "black", modifiers = ["bold", "reversed"] }
//! "ui.text" = "blue"              # shorthand: fg only
//! [palette]                       # optional: named colours
//! blue = "#5fafff"
//! [symbols]                       # optional: glyphs the cockpit draws
//! pass = "✓"
//! ```
//!
//! Scopes must come before `[palette]` and `[symbols]`: TOML puts every key
//! after a table header into that table (errors say so).
//!
//! - **Colours** are a palette name, `"#rrggbb"`, one of the 16 ANSI names
//!   (black, red, green, yellow, blue, magenta, cyan, gray, darkgray,
//!   lightred, lightgreen, lightyellow, lightblue, lightmagenta, lightcyan,
//!   white) or `reset`. Palette names shadow ANSI names. Palette values are
//!   `"#rrggbb"` or ANSI names.
//! - **Modifiers**: bold, dim, italic, underlined, reversed, crossed_out.
//! - **Styles** have the keys `fg`, `bg` and `modifiers`; nothing else.
//! - **Lookup falls back** along the dots: `verdict.fail` → `verdict` →
//!   the terminal's default style.
//! - **Inheritance**: the parent is loaded first; a scope the child defines
//!   replaces the parent's scope of that name as a whole, palettes merge and
//!   symbols merge (the child wins). Scopes are resolved against the merged
//!   palette, so a child can restyle its parent by redefining palette entries
//!   alone. A colour must be defined in its own file or an ancestor, so every
//!   theme also loads on its own.
//! - **Where themes come from**: `<config dir>/themes/<name>.toml` wins over
//!   the shipped theme of the same name (embedded in the binary). A user
//!   file that inherits its own name (`default.toml` with
//!   `inherits = "default"`) extends the shipped theme, as in helix.
//!
//! Errors name the file, 1-based line and column, the field
//! (`"verdict.fail".fg`, `palette.blue`, `symbols.pas`) and what is allowed;
//! only the first is reported. User files are named by their full path,
//! shipped ones as `<built-in>/<name>.toml`.
//!
//! # Scopes the cockpit uses
//!
//! Every shipped theme defines all of [`SCOPES`]:
//!
//! | scope | used for |
//! |---|---|
//! | `ui.background` | the whole screen (its `bg` fills it) |
//! | `ui.text`, `ui.dim` | body text, secondary text |
//! | `ui.border`, `ui.border.focused` | pane borders |
//! | `ui.title` | pane titles |
//! | `ui.selection` | the selected row |
//! | `ui.group`, `ui.group.production` | target group headings, production ones |
//! | `ui.needs-human` | rollouts waiting for an operator |
//! | `ui.banner.error`, `ui.banner.info` | banners above the panes |
//! | `ui.key` | key names in the footer |
//! | `ui.frozen` | the "view frozen" badge |
//! | `state.{pending,progressing,paused,awaiting,promoted,rolled-back,aborted,failed}` | rollout states |
//! | `verdict.{pass,fail,inconclusive}` | analysis verdicts |
//! | `split.stable`, `split.canary` | traffic split bars |
//! | `budget.{auto,approval,freeze}` | error-budget policy |
//! | `event.{time,action,verdict,effect,error}` | event log columns |
//! | `modal`, `modal.danger` | dialogs, confirmations of dangerous actions |
//! | `sparkline.stable`, `sparkline.canary` | metric sparklines |
//!
//! # Colour modes
//!
//! [`ColorMode`] adapts any theme to the terminal: truecolor keeps RGB,
//! 16-colour maps RGB to the nearest ANSI colour and mono drops colours but
//! keeps modifiers (the shipped `mono` theme is designed for that mode).

mod colour;
mod read;
mod scopes;
#[cfg(test)]
mod tests;

pub use colour::ColorMode;
pub use scopes::{Symbols, SCOPES};

use flightdeck_core::TomlError;
use ratatui::style::Style;
use read::{valid_name, Library, SHIPPED};
use std::collections::BTreeMap;
use std::path::Path;

/// A loaded theme, already adapted to a [`ColorMode`].
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub symbols: Symbols,
    pub(super) scopes: BTreeMap<String, Style>,
}

/// A theme file that could not be used, with where and why.
pub type ThemeError = TomlError;

impl Theme {
    /// Shipped themes (embedded from `themes/*.toml`) overridden by user
    /// files `<config_dir>/themes/<name>.toml`.
    pub fn load(name: &str, config_dir: &Path, mode: ColorMode) -> Result<Theme, ThemeError> {
        let dir = config_dir.join("themes");
        let label = dir.display().to_string();
        Library { dir: &dir, label: &label }.load(name, mode)
    }

    /// Names of all shipped themes, sorted.
    pub fn shipped() -> Vec<&'static str> {
        SHIPPED.iter().map(|(name, _)| *name).collect()
    }

    /// Every theme name [`Theme::load`] finds: the shipped ones and the
    /// user's `<config_dir>/themes/*.toml`, sorted.
    pub fn known(config_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = Theme::shipped().into_iter().map(str::to_owned).collect();
        let user = std::fs::read_dir(config_dir.join("themes")).into_iter().flatten().flatten();
        let user = user.filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_owned));
        names.extend(user.filter(|n| valid_name(n)));
        names.sort();
        names.dedup();
        names
    }

    /// Whether [`Theme::load`] finds a theme of this name: a user file
    /// `<config_dir>/themes/<name>.toml` or a shipped theme. Says nothing of
    /// whether it loads.
    pub fn exists(name: &str, config_dir: &Path) -> bool {
        valid_name(name)
            && (SHIPPED.iter().any(|(shipped, _)| *shipped == name)
                || config_dir.join("themes").join(format!("{name}.toml")).is_file())
    }

    /// Style for a dotted scope with fallback: "verdict.fail" → "verdict" →
    /// `Style::default()`.
    pub fn style(&self, scope: &str) -> Style {
        let mut scope = scope;
        loop {
            if let Some(style) = self.scopes.get(scope) {
                return *style;
            }
            match scope.rsplit_once('.') {
                Some((parent, _)) => scope = parent,
                None => return Style::default(),
            }
        }
    }
}
