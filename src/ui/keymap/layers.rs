//! Layers and sequences: which bindings each part of the UI has, in
//! priority order, and how key presses (one or several) resolve to actions.

use super::key::{sequence_name, KeyCombo};
use crate::ui::action::Action;
use ratatui::crossterm::event::{KeyEvent, KeyEventKind};
use std::fmt;

/// Which part of the UI has the keyboard; each has its own bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The main view.
    Cockpit,
    /// A confirmation modal is open.
    Confirm,
    /// Typing in the filter or the command palette; printable keys go to
    /// the text field, so only the remaining keys are looked up.
    Input,
    /// The help screen is open.
    Help,
}

impl Layer {
    /// Every layer with its name in keymap files.
    pub const ALL: [(Layer, &'static str); 4] =
        [(Layer::Cockpit, "cockpit"), (Layer::Confirm, "confirm"), (Layer::Input, "input"), (Layer::Help, "help")];

    pub fn name(self) -> &'static str {
        Layer::ALL[self.index()].1
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }

    pub(super) fn from_name(name: &str) -> Option<Layer> {
        Layer::ALL.iter().find(|(_, n)| *n == name).map(|(layer, _)| *layer)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `{ on, run, desc }` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The keys to press in order; usually one.
    pub keys: Vec<KeyCombo>,
    pub action: Action,
    /// Short text for the footer and the help screen.
    pub desc: String,
}

impl Binding {
    /// The keys as written in hints: "p", "gg", "<C-c>".
    pub fn key_name(&self) -> String {
        sequence_name(&self.keys)
    }
}

/// Bindings for every layer, each list in priority order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keymap {
    pub(super) layers: [Vec<Binding>; 4],
}

impl Keymap {
    /// The bindings of `layer` in priority order (for the footer and help).
    pub fn bindings(&self, layer: Layer) -> &[Binding] {
        &self.layers[layer.index()]
    }

    /// The first key name bound to `action` in `layer`, for hints like "p pause".
    pub fn key_for(&self, layer: Layer, action: Action) -> Option<String> {
        self.bindings(layer).iter().find(|b| b.action == action).map(Binding::key_name)
    }

    /// What `keys` (typed so far) mean in `layer`: the first binding that
    /// starts with them decides, matched when complete, pending otherwise.
    fn resolve(&self, layer: Layer, keys: &[KeyCombo]) -> KeyOutcome {
        match self.bindings(layer).iter().find(|b| b.keys.starts_with(keys)) {
            Some(b) if b.keys.len() == keys.len() => KeyOutcome::Matched(b.action),
            Some(_) => KeyOutcome::Pending,
            None => KeyOutcome::NoMatch,
        }
    }
}

/// Either sequence starts with the other: the later one can never run.
pub(super) fn overlaps(a: &[KeyCombo], b: &[KeyCombo]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Keeps the bindings that can still fire: an earlier binding with the
/// same keys, or a prefix relation, wins (see [`Keymap::resolve`]).
pub(super) fn drop_hidden(bindings: impl Iterator<Item = Binding>) -> Vec<Binding> {
    let mut live: Vec<Binding> = Vec::new();
    for binding in bindings {
        if !live.iter().any(|l| overlaps(&l.keys, &binding.keys)) {
            live.push(binding);
        }
    }
    live
}

/// What a key press did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The keys so far complete a binding.
    Matched(Action),
    /// The keys so far start a longer binding; wait for more.
    Pending,
    /// Nothing is bound; the pending keys were dropped.
    NoMatch,
}

/// Resolves key presses, including multi-key sequences, to actions.
#[derive(Debug, Clone, Default)]
pub struct KeySequence {
    pending: Vec<KeyCombo>,
    /// The layer the pending keys were typed in.
    layer: Option<Layer>,
}

impl KeySequence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one key. Release events are ignored (terminals with the kitty
    /// protocol report them, and a key must not act twice).
    pub fn feed(&mut self, keymap: &Keymap, layer: Layer, key: &KeyEvent) -> KeyOutcome {
        if key.kind == KeyEventKind::Release {
            return KeyOutcome::NoMatch;
        }
        // A modal opening mid-sequence must not complete a cockpit sequence.
        if self.layer != Some(layer) {
            self.clear();
            self.layer = Some(layer);
        }
        self.pending.push(KeyCombo::from(key));
        let outcome = keymap.resolve(layer, &self.pending);
        if outcome != KeyOutcome::Pending {
            self.pending.clear();
        }
        outcome
    }

    /// The keys typed so far of an unfinished sequence (for "g…" in the footer).
    pub fn pending(&self) -> &[KeyCombo] {
        &self.pending
    }

    /// Drops the pending keys.
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}
