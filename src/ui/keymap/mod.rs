//! Keymaps: which keys run which [`Action`] in each [`Layer`] of the UI,
//! read from TOML so that keys are data, not code.
//!
//! # File format (yazi-style)
//!
//! ```toml
//! [cockpit]                  # layers: cockpit, confirm, input, help
//! keymap = [
//!   { on = "p", run = "pause", desc = "Pause / resume" },
//!   { on = ["g", "g"], run = "top", desc = "First rollout" },
//!   { on = "<C-c>", run = "quit" },        # desc defaults to the action name
//! ]
//! ```
//!
//! A layer may hold `keymap` (replaces the layer's bindings so far),
//! `prepend_keymap` (checked first, so it overrides) and `append_keymap`
//! (checked last). [`Keymap::load`] reads a shipped keymap
//! (`keymaps/NAME.toml`, embedded in the binary) and then the user's
//! `<config dir>/keymap.toml` on top of it.
//!
//! Key names: one character (`"p"`, `"P"`, `"?"`) or `<Name>` with Name one
//! of Space, Esc, Enter, Tab, S-Tab, BackTab, Backspace, Up, Down, Left,
//! Right, Home, End, PageUp, PageDown, F1..F12 or a character, after any of
//! the modifiers `C-` (Ctrl), `A-` (Alt), `S-` (Shift): `<C-c>`, `<C-A-x>`.
//! An uppercase character means Shift; `"P"` and `"<S-p>"` are the same key.
//!
//! # Conflicts
//!
//! Within one file, a key bound twice in a layer, or bound alone and also
//! as the start of a sequence (`g` and `gg`), is an error. Across files the
//! earlier binding wins: a user's prepended `g` hides the shipped `gg`, and
//! hidden bindings are dropped so that the footer and the help list only
//! keys that work.
//!
//! # Errors
//!
//! Errors name the file, the 1-based line and column of the offending value
//! (of the entry's `{` when a field is missing), the field path
//! (`cockpit.keymap[3].on`) and what is allowed. Only the first is reported.

mod key;
mod layers;
mod read;
#[cfg(test)]
mod tests;

pub use key::{sequence_name, KeyCombo};
pub use layers::{Binding, KeyOutcome, KeySequence, Keymap, Layer};
pub use read::{shipped_names, KeymapError, USER_FILE};

use crate::ui::action::Action;

/// Keys that work whatever a keymap says, so that no keymap can trap the
/// captain: the key, what it runs, the layers where it is reserved, and
/// how errors describe it. The cockpit handles them before the keymap.
pub const WAYS_OUT: [(&str, Action, &[Layer], &str); 2] = [
    ("<C-c>", Action::Quit, &[Layer::Cockpit, Layer::Confirm, Layer::Input, Layer::Help], "quits"),
    ("<Esc>", Action::Cancel, &[Layer::Confirm, Layer::Input, Layer::Help], "closes what is open"),
];
