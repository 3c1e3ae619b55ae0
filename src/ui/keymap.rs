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

use crate::files::{TextError, NOT_UTF8};
use crate::ui::action::Action;
use flightdeck_core::toml_file::{Node, TomlError, TomlFile, Value};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

/// Shipped keymaps by name, with the file name their errors cite.
const SHIPPED: &[(&str, &str, &str)] = &[
    ("default", "keymaps/default.toml", include_str!("../../keymaps/default.toml")),
    ("vim", "keymaps/vim.toml", include_str!("../../keymaps/vim.toml")),
];

/// Keys that work whatever a keymap says, so that no keymap can trap the
/// captain: the key, what it runs, the layers where it is reserved, and
/// how errors describe it. The cockpit handles them before the keymap.
pub const WAYS_OUT: [(&str, Action, &[Layer], &str); 2] = [
    ("<C-c>", Action::Quit, &[Layer::Cockpit, Layer::Confirm, Layer::Input, Layer::Help], "quits"),
    ("<Esc>", Action::Cancel, &[Layer::Confirm, Layer::Input, Layer::Help], "closes what is open"),
];

/// The user's overrides, inside the config dir.
pub const USER_FILE: &str = "keymap.toml";

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

    fn index(self) -> usize {
        self as usize
    }

    fn from_name(name: &str) -> Option<Layer> {
        Layer::ALL.iter().find(|(_, n)| *n == name).map(|(layer, _)| *layer)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One key press, normalised so that a press compares equal to its name
/// in a keymap however the terminal reports it. Build it with
/// [`KeyCombo::new`], from a [`KeyEvent`], or by parsing a key name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCombo {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl KeyCombo {
    pub fn new(code: KeyCode, modifiers: KeyModifiers) -> Self {
        // Terminals disagree on whether a shifted character also carries
        // SHIFT ('P' alone, 'P' + SHIFT, even 'p' + SHIFT). The character
        // already says it, so the case goes into the character and the flag
        // is dropped. Shift+Tab likewise arrives as Tab + SHIFT or BackTab.
        let shifted = modifiers.contains(KeyModifiers::SHIFT);
        let code = match code {
            KeyCode::Char(c) if shifted => KeyCode::Char(uppercase(c)),
            KeyCode::Tab if shifted => KeyCode::BackTab,
            other => other,
        };
        let modifiers = match code {
            KeyCode::Char(_) | KeyCode::BackTab => modifiers.difference(KeyModifiers::SHIFT),
            _ => modifiers,
        };
        KeyCombo { code, modifiers }
    }
}

impl From<&KeyEvent> for KeyCombo {
    fn from(event: &KeyEvent) -> Self {
        KeyCombo::new(event.code, event.modifiers)
    }
}

fn uppercase(c: char) -> char {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c, // 'ß' and friends have no single-character uppercase
    }
}

/// Named keys, in the spelling [`KeyCombo`]'s `Display` uses.
const NAMED_KEYS: &[(&str, KeyCode)] = &[
    ("Space", KeyCode::Char(' ')),
    ("Esc", KeyCode::Esc),
    ("Enter", KeyCode::Enter),
    ("Tab", KeyCode::Tab),
    ("BackTab", KeyCode::BackTab),
    ("Backspace", KeyCode::Backspace),
    ("Up", KeyCode::Up),
    ("Down", KeyCode::Down),
    ("Left", KeyCode::Left),
    ("Right", KeyCode::Right),
    ("Home", KeyCode::Home),
    ("End", KeyCode::End),
    ("PageUp", KeyCode::PageUp),
    ("PageDown", KeyCode::PageDown),
];

const KEY_FORMS: &str = "use one character (\"p\", \"P\", \"?\") or <Name> with Name one of Space, Esc, Enter, Tab, \
     S-Tab, BackTab, Backspace, Up, Down, Left, Right, Home, End, PageUp, PageDown, F1..F12 or a character, \
     after modifiers C- (Ctrl), A- (Alt), S- (Shift) as in <C-c> or <C-A-x>; a sequence is an array: \
     on = [\"g\", \"g\"]";

impl FromStr for KeyCombo {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => single_character(c),
            _ => name
                .strip_prefix('<')
                .and_then(|n| n.strip_suffix('>'))
                .and_then(bracketed)
                .ok_or_else(|| format!("`{name}` is not a key name; {KEY_FORMS}")),
        }
    }
}

fn single_character(c: char) -> Result<KeyCombo, String> {
    match c {
        ' ' => Err("a space is written \"<Space>\"".to_string()),
        // Tabs, newlines and control characters are invisible in the file.
        c if c.is_whitespace() || c.is_control() => Err(format!("{c:?} is not a key name; {KEY_FORMS}")),
        c => Ok(KeyCombo::new(KeyCode::Char(c), KeyModifiers::NONE)),
    }
}

/// The inside of `<…>`: modifiers, then a key.
fn bracketed(inner: &str) -> Option<KeyCombo> {
    let mut modifiers = KeyModifiers::NONE;
    let mut rest = inner;
    while let Some((flag, tail)) = split_modifier(rest) {
        modifiers |= flag;
        rest = tail;
    }
    Some(KeyCombo::new(named_code(rest)?, modifiers))
}

/// `C-x` → (CONTROL, "x"); `None` when `s` does not start with a modifier
/// followed by a key ("C-" alone, or "-" as the key in "<C-->", is a key).
fn split_modifier(s: &str) -> Option<(KeyModifiers, &str)> {
    let tail = s.get(2..).filter(|t| !t.is_empty())?;
    if s.as_bytes()[1] != b'-' {
        return None;
    }
    let flag = match s.as_bytes()[0].to_ascii_uppercase() {
        b'C' => KeyModifiers::CONTROL,
        b'A' => KeyModifiers::ALT,
        b'S' => KeyModifiers::SHIFT,
        _ => return None,
    };
    Some((flag, tail))
}

fn named_code(name: &str) -> Option<KeyCode> {
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return (!c.is_whitespace() && !c.is_control()).then_some(KeyCode::Char(c));
    }
    if let Some(n) = name.strip_prefix(['F', 'f']).and_then(|n| n.parse::<u8>().ok()) {
        return (1..=12).contains(&n).then_some(KeyCode::F(n));
    }
    NAMED_KEYS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, code)| *code)
}

impl fmt::Display for KeyCombo {
    /// The canonical name: "p", "P", "<C-c>", "<Esc>", "<S-Tab>".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            KeyCode::Char(c) if c != ' ' && self.modifiers.is_empty() => return write!(f, "{c}"),
            _ => {}
        }
        f.write_str("<")?;
        for (flag, prefix) in [(KeyModifiers::CONTROL, "C-"), (KeyModifiers::ALT, "A-"), (KeyModifiers::SHIFT, "S-")] {
            if self.modifiers.contains(flag) {
                f.write_str(prefix)?;
            }
        }
        match self.code {
            KeyCode::BackTab => f.write_str("S-Tab")?,
            KeyCode::Char(' ') => f.write_str("Space")?,
            KeyCode::Char(c) => write!(f, "{c}")?,
            KeyCode::F(n) => write!(f, "F{n}")?,
            code => match NAMED_KEYS.iter().find(|(_, c)| *c == code) {
                Some((name, _)) => f.write_str(name)?,
                None => write!(f, "{code:?}")?, // keys no keymap can name, e.g. Insert
            },
        }
        f.write_str(">")
    }
}

/// The name of a key sequence: "p", "gg", "<C-w>j".
pub fn sequence_name(keys: &[KeyCombo]) -> String {
    keys.iter().map(KeyCombo::to_string).collect()
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
    layers: [Vec<Binding>; 4],
}

impl Keymap {
    /// Shipped keymap `name` (embedded from `keymaps/NAME.toml`), then the
    /// user file `<config_dir>/keymap.toml` layered on top if it exists.
    pub fn load(name: &str, config_dir: &Path) -> Result<Keymap, KeymapError> {
        let Some((_, file, text)) = SHIPPED.iter().find(|(n, _, _)| *n == name) else {
            let message = format!("no shipped keymap named `{name}`; shipped: {}", shipped_names().join(", "));
            return Err(whole_file(&format!("keymaps/{name}.toml"), message));
        };
        let keymap = Keymap::parse(file, text)?;
        let user = config_dir.join(USER_FILE);
        let user_name = user.display().to_string();
        match crate::files::read_text(&user) {
            Ok(text) => keymap.with_overrides(&user_name, &text),
            Err(TextError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(keymap),
            Err(TextError::Io(e)) => Err(whole_file(&user_name, format!("cannot read the file: {e}"))),
            Err(TextError::NotUtf8 { line, column }) => {
                let (file, field, message) = (user_name, "keymap".to_owned(), NOT_UTF8.to_owned());
                Err(KeymapError { file, line, column, field, message })
            }
        }
    }

    /// Parses one keymap file on its own. `file` is only used in errors.
    pub fn parse(file: &str, text: &str) -> Result<Keymap, KeymapError> {
        Keymap::default().with_overrides(file, text)
    }

    /// Layers the file `text` on top of this keymap: per layer, `keymap`
    /// replaces, `prepend_keymap` goes first and `append_keymap` last.
    pub fn with_overrides(mut self, file: &str, text: &str) -> Result<Keymap, KeymapError> {
        let overlay = Reader { toml: TomlFile::parse(file, text, "keymap")? }.document()?;
        for (layer, edit) in Layer::ALL.iter().map(|(l, _)| *l).zip(overlay) {
            let slot = &mut self.layers[layer.index()];
            let base = edit.replace.unwrap_or_else(|| std::mem::take(slot));
            *slot = drop_hidden(edit.prepend.into_iter().chain(base).chain(edit.append));
        }
        Ok(self)
    }

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

/// Names of the shipped keymaps ("default", "vim").
pub fn shipped_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _, _)| *name).collect()
}

/// Either sequence starts with the other: the later one can never run.
fn overlaps(a: &[KeyCombo], b: &[KeyCombo]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Keeps the bindings that can still fire: an earlier binding with the
/// same keys, or a prefix relation, wins (see [`Keymap::resolve`]).
fn drop_hidden(bindings: impl Iterator<Item = Binding>) -> Vec<Binding> {
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

/// A keymap file that could not be read, with where and why.
pub type KeymapError = TomlError;

fn whole_file(file: &str, message: String) -> KeymapError {
    TomlError::whole_file(file, "keymap", message)
}

/// The sections of a layer table.
#[derive(Clone, Copy)]
enum Section {
    Keymap,
    Prepend,
    Append,
}

impl Section {
    const NAMES: [(Section, &'static str); 3] =
        [(Section::Keymap, "keymap"), (Section::Prepend, "prepend_keymap"), (Section::Append, "append_keymap")];

    fn from_name(name: &str) -> Option<Section> {
        Section::NAMES.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }
}

/// What one file does to one layer.
#[derive(Default)]
struct LayerEdit {
    replace: Option<Vec<Binding>>,
    prepend: Vec<Binding>,
    append: Vec<Binding>,
}

/// A binding read so far in a layer, for the conflict checks.
struct Seen {
    keys: Vec<KeyCombo>,
    line: usize,
}

type Checked<T> = Result<T, KeymapError>;

const ENTRY_EXAMPLE: &str = "{ on = \"p\", run = \"pause\", desc = \"Pause / resume\" }";

/// Turns the TOML tree of one file into layer edits; knows the file and
/// its text so that every error gets its position.
struct Reader<'a> {
    toml: TomlFile<'a>,
}

impl Reader<'_> {
    fn error(&self, span: Option<&Range<usize>>, field: &str, message: impl Into<String>) -> KeymapError {
        self.toml.error(span, field, message)
    }

    fn line(&self, span: Option<&Range<usize>>) -> usize {
        self.toml.line(span)
    }

    fn document(&self) -> Checked<[LayerEdit; 4]> {
        let root = self.toml.tree();
        let mut edits: [LayerEdit; 4] = Default::default();
        for (key, node) in root.value.entries() {
            let Some(layer) = Layer::from_name(&key.name) else {
                let allowed = Layer::ALL.map(|(_, n)| n).join(", ");
                let message = format!("unknown layer `{}`; expected one of: {allowed}", key.name);
                return Err(self.error(Some(&key.span), &key.name, message));
            };
            self.layer(layer, node, &mut edits[layer.index()])?;
        }
        Ok(edits)
    }

    fn layer(&self, layer: Layer, node: &Node, edit: &mut LayerEdit) -> Checked<()> {
        let Value::Table(sections) = &node.value else {
            let message =
                format!("expected a table of keymap, prepend_keymap, append_keymap; found {}", node.value.kind());
            return Err(self.error(Some(&node.span), layer.name(), message));
        };
        let mut seen = Vec::new();
        for (key, node) in sections {
            let path = format!("{layer}.{}", key.name);
            let Some(section) = Section::from_name(&key.name) else {
                let allowed = Section::NAMES.map(|(_, n)| n).join(", ");
                let message = format!("unknown key `{}`; expected one of: {allowed}", key.name);
                return Err(self.error(Some(&key.span), &path, message));
            };
            let bindings = self.section(layer, &path, node, &mut seen)?;
            match section {
                Section::Keymap => edit.replace = Some(bindings),
                Section::Prepend => edit.prepend = bindings,
                Section::Append => edit.append = bindings,
            }
        }
        Ok(())
    }

    /// One `keymap = [...]` array; `seen` holds the layer's earlier entries.
    fn section(&self, layer: Layer, path: &str, node: &Node, seen: &mut Vec<Seen>) -> Checked<Vec<Binding>> {
        let at = Some(&node.span);
        let Value::Array(entries) = &node.value else {
            let message = format!("expected an array of entries like {ENTRY_EXAMPLE}; found {}", node.value.kind());
            return Err(self.error(at, path, message));
        };
        let mut bindings = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let (binding, on_span) = self.entry(&path, entry)?;
            self.check_reserved(layer, &format!("{path}.on"), &binding, on_span.as_ref())?;
            self.check_conflicts(layer, &format!("{path}.on"), &binding.keys, on_span.as_ref(), seen)?;
            seen.push(Seen { keys: binding.keys.clone(), line: self.line(on_span.as_ref()) });
            bindings.push(binding);
        }
        Ok(bindings)
    }

    /// One `{ on, run, desc }` entry, with the span of its `on` value.
    fn entry(&self, path: &str, node: &Node) -> Checked<(Binding, Option<Range<usize>>)> {
        // A table TOML only implies has the span of the array around it.
        let at = Some(&node.span);
        let Value::Table(fields) = &node.value else {
            let message = format!("expected an entry like {ENTRY_EXAMPLE}; found {}", node.value.kind());
            return Err(self.error(at, path, message));
        };
        let (mut on, mut run, mut desc) = (None, None, None);
        for (key, value) in fields {
            let field = format!("{path}.{}", key.name);
            let value_at = Some(&value.span);
            match key.name.as_str() {
                "on" => on = Some((self.keys(&field, value, value_at)?, value_at.cloned())),
                "run" => run = Some(self.action(&field, value, value_at)?),
                "desc" => desc = Some(self.text(&field, value, value_at)?),
                other => {
                    let message = format!("unknown key `{other}`; expected one of: on, run, desc");
                    return Err(self.error(Some(&key.span), &field, message));
                }
            }
        }
        let Some((keys, on_span)) = on else {
            return Err(self.error(at, &format!("{path}.on"), "missing required field; add e.g. on = \"p\""));
        };
        let Some(action) = run else {
            return Err(self.error(at, &format!("{path}.run"), "missing required field; add e.g. run = \"pause\""));
        };
        let desc = desc.unwrap_or_else(|| action.name().to_string());
        Ok((Binding { keys, action, desc }, on_span))
    }

    /// `on`: one key name or an array of them.
    fn keys(&self, field: &str, node: &Node, at: Option<&Range<usize>>) -> Checked<Vec<KeyCombo>> {
        match &node.value {
            Value::Str(name) => Ok(vec![self.key(field, name, at)?]),
            Value::Array(items) if items.is_empty() => {
                Err(self.error(at, field, "empty key sequence; give at least one key, e.g. on = [\"g\", \"g\"]"))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let (field, at) = (format!("{field}[{i}]"), Some(&item.span));
                    match &item.value {
                        Value::Str(name) => self.key(&field, name, at),
                        other => Err(self.error(at, &field, format!("expected a key name; found {}", other.kind()))),
                    }
                })
                .collect(),
            other => {
                let message = format!("expected a key name or an array of key names; found {}", other.kind());
                Err(self.error(at, field, message))
            }
        }
    }

    fn key(&self, field: &str, name: &str, at: Option<&Range<usize>>) -> Checked<KeyCombo> {
        name.parse().map_err(|message: String| self.error(at, field, message))
    }

    fn action(&self, field: &str, node: &Node, at: Option<&Range<usize>>) -> Checked<Action> {
        match &node.value {
            Value::Str(name) => name.parse().map_err(|message: String| self.error(at, field, message)),
            other => {
                let message = format!("expected an action name such as \"pause\"; found {}", other.kind());
                Err(self.error(at, field, message))
            }
        }
    }

    fn text(&self, field: &str, node: &Node, at: Option<&Range<usize>>) -> Checked<String> {
        match &node.value {
            Value::Str(text) => Ok(text.clone()),
            other => Err(self.error(at, field, format!("expected a string; found {}", other.kind()))),
        }
    }

    /// The ways out no keymap may take away (see [`WAYS_OUT`]): a binding
    /// that would never fire is refused rather than silently dead.
    fn check_reserved(&self, layer: Layer, field: &str, binding: &Binding, at: Option<&Range<usize>>) -> Checked<()> {
        for (key, action, layers, what) in WAYS_OUT {
            let combo: KeyCombo = key.parse().expect("reserved keys are valid names");
            let applies = layers.contains(&layer) && binding.keys.contains(&combo);
            if applies && (binding.keys.len() > 1 || binding.action != action) {
                let message = format!("`{key}` always {what}; bind `{}` to another key", binding.action.name());
                return Err(self.error(at, field, message));
            }
        }
        Ok(())
    }

    /// Within one file a layer must never leave a key press ambiguous.
    fn check_conflicts(
        &self,
        layer: Layer,
        field: &str,
        keys: &[KeyCombo],
        at: Option<&Range<usize>>,
        seen: &[Seen],
    ) -> Checked<()> {
        let Some(earlier) = seen.iter().find(|s| overlaps(&s.keys, keys)) else {
            return Ok(());
        };
        let (name, line) = (sequence_name(keys), self.line(at));
        let message = if earlier.keys == keys {
            format!("`{name}` is bound twice in layer {layer}, on line {} and on line {line}; keep one", earlier.line)
        } else {
            let earlier_name = sequence_name(&earlier.keys);
            let ((short, short_line), (long, long_line)) = if earlier.keys.len() < keys.len() {
                ((earlier_name, earlier.line), (name, line))
            } else {
                ((name, line), (earlier_name, earlier.line))
            };
            format!(
                "`{short}` (line {short_line}) is a prefix of `{long}` (line {long_line}) in layer {layer}, \
                 so `{short}` is ambiguous; bind one of them to other keys"
            )
        };
        Err(self.error(at, field, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventState;
    use std::path::PathBuf;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn char_key(c: char) -> KeyEvent {
        press(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn shipped(name: &str) -> Keymap {
        Keymap::load(name, Path::new("/nonexistent/flightdeck-test")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn keys(names: &[&str]) -> Vec<KeyCombo> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    /// Feeds `names` in order and returns the outcome of the last key.
    fn feed_all(keymap: &Keymap, layer: Layer, names: &[&str]) -> KeyOutcome {
        let mut sequence = KeySequence::new();
        let mut outcome = KeyOutcome::NoMatch;
        for key in keys(names) {
            outcome = sequence.feed(keymap, layer, &press(key.code, key.modifiers));
        }
        outcome
    }

    #[test]
    fn shipped_keymaps_bind_every_cockpit_action() {
        let needed = Action::ALL.iter().map(|(a, _)| *a).filter(|a| a.is_rollout_command()).chain([
            Action::Help,
            Action::Palette,
            Action::Filter,
            Action::Quit,
        ]);
        for name in shipped_names() {
            let keymap = shipped(name);
            for action in needed.clone() {
                assert!(keymap.key_for(Layer::Cockpit, action).is_some(), "{name}: nothing runs {action}");
            }
            for layer in [Layer::Confirm, Layer::Input, Layer::Help] {
                assert!(keymap.key_for(layer, Action::Cancel).is_some(), "{name}: no way out of {layer}");
            }
        }
    }

    #[test]
    fn shipped_descriptions_fit_the_footer() {
        for name in shipped_names() {
            for (layer, _) in Layer::ALL {
                for b in shipped(name).bindings(layer) {
                    assert!(
                        b.desc.chars().count() <= 24,
                        "{name}: {layer} `{}`: {:?} is too long",
                        b.key_name(),
                        b.desc
                    );
                }
            }
        }
    }

    #[test]
    fn shipped_dangerous_keys_cannot_confirm_themselves() {
        // Pressing a dangerous key twice (or key repeat) must not confirm it.
        for name in shipped_names() {
            let keymap = shipped(name);
            for b in keymap.bindings(Layer::Cockpit).iter().filter(|b| b.action.is_dangerous()) {
                let outcome = feed_all(&keymap, Layer::Confirm, &[&b.keys[0].to_string()]);
                assert_ne!(outcome, KeyOutcome::Matched(Action::Confirm), "{name}: `{}` confirms", b.key_name());
            }
        }
    }

    #[test]
    fn shipped_input_layers_leave_printable_keys_to_the_text_field() {
        for name in shipped_names() {
            for b in shipped(name).bindings(Layer::Input) {
                let printable = matches!(b.keys[0].code, KeyCode::Char(_)) && b.keys[0].modifiers.is_empty();
                assert!(!printable, "{name}: input binds `{}`", b.key_name());
            }
        }
    }

    #[test]
    fn freeze_view_and_pause_are_different_keys() {
        for name in shipped_names() {
            let keymap = shipped(name);
            assert_ne!(
                keymap.key_for(Layer::Cockpit, Action::Pause),
                keymap.key_for(Layer::Cockpit, Action::FreezeView)
            );
        }
    }

    #[test]
    fn key_for_gives_the_first_binding() {
        let keymap = shipped("default");
        assert_eq!(keymap.key_for(Layer::Cockpit, Action::Pause).as_deref(), Some("p"));
        assert_eq!(keymap.key_for(Layer::Cockpit, Action::Down).as_deref(), Some("j"));
        assert_eq!(keymap.key_for(Layer::Confirm, Action::Cancel).as_deref(), Some("<Esc>"));
        assert_eq!(keymap.key_for(Layer::Input, Action::Help), None);
        assert_eq!(shipped("vim").key_for(Layer::Cockpit, Action::Top).as_deref(), Some("gg"));
    }

    #[test]
    fn key_names_round_trip_to_canonical_form() {
        let cases = [
            ("p", "p"),
            ("P", "P"),
            ("<S-p>", "P"),
            ("?", "?"),
            ("<", "<"),
            ("<Space>", "<Space>"),
            ("<esc>", "<Esc>"),
            ("<C-c>", "<C-c>"),
            ("<c-C>", "<C-C>"),
            ("<A-C-x>", "<C-A-x>"),
            ("<C-->", "<C-->"),
            ("<S-Tab>", "<S-Tab>"),
            ("<BackTab>", "<S-Tab>"),
            ("<F12>", "<F12>"),
            ("<S-Up>", "<S-Up>"),
            ("<PageDown>", "<PageDown>"),
        ];
        for (name, canonical) in cases {
            let key: KeyCombo = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key.to_string(), canonical, "{name}");
            assert_eq!(canonical.parse::<KeyCombo>().unwrap(), key, "{canonical}");
        }
        for bad in ["", " ", "\t", "gg", "<Ctrl-x>", "<F13>", "<F0>", "<C->", "<>", "<X-a>"] {
            assert!(bad.parse::<KeyCombo>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn single_key_matches() {
        let keymap = shipped("default");
        let mut sequence = KeySequence::new();
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('p')), KeyOutcome::Matched(Action::Pause));
        let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &ctrl_c), KeyOutcome::Matched(Action::Quit));
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('x')), KeyOutcome::NoMatch);
        assert!(sequence.pending().is_empty());
    }

    #[test]
    fn sequence_waits_then_matches() {
        let keymap = shipped("vim");
        let mut sequence = KeySequence::new();
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Pending);
        assert_eq!(sequence.pending(), keys(&["g"]));
        assert_eq!(sequence_name(sequence.pending()), "g");
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Matched(Action::Top));
        assert!(sequence.pending().is_empty());
    }

    #[test]
    fn wrong_second_key_drops_the_sequence() {
        let keymap = shipped("vim");
        let mut sequence = KeySequence::new();
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Pending);
        // `j` alone is bound, but after `g` it does not complete anything.
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('j')), KeyOutcome::NoMatch);
        assert!(sequence.pending().is_empty());
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('j')), KeyOutcome::Matched(Action::Down));
    }

    #[test]
    fn changing_layer_drops_the_sequence() {
        let keymap = shipped("vim");
        let mut sequence = KeySequence::new();
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('Z')), KeyOutcome::Pending);
        assert_eq!(sequence.feed(&keymap, Layer::Help, &char_key('Z')), KeyOutcome::Pending);
        assert_eq!(sequence.feed(&keymap, Layer::Help, &char_key('Z')), KeyOutcome::Matched(Action::Cancel));
    }

    #[test]
    fn uppercase_matches_with_or_without_shift() {
        let keymap = shipped("default");
        for modifiers in [KeyModifiers::NONE, KeyModifiers::SHIFT] {
            let outcome = KeySequence::new().feed(&keymap, Layer::Cockpit, &press(KeyCode::Char('R'), modifiers));
            assert_eq!(outcome, KeyOutcome::Matched(Action::Rollback), "{modifiers:?}");
        }
        // Some terminals (kitty protocol) report the base key plus SHIFT.
        let lower_shift = press(KeyCode::Char('r'), KeyModifiers::SHIFT);
        assert_eq!(
            KeySequence::new().feed(&keymap, Layer::Cockpit, &lower_shift),
            KeyOutcome::Matched(Action::Rollback)
        );
        let question = press(KeyCode::Char('?'), KeyModifiers::SHIFT);
        assert_eq!(KeySequence::new().feed(&keymap, Layer::Cockpit, &question), KeyOutcome::Matched(Action::Help));
        let shift_tab = KeyCombo::new(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(shift_tab, "<S-Tab>".parse().unwrap());
    }

    #[test]
    fn release_events_are_ignored() {
        let keymap = shipped("vim");
        let mut sequence = KeySequence::new();
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Pending);
        let mut release = char_key('g');
        release.kind = KeyEventKind::Release;
        release.state = KeyEventState::NONE;
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &release), KeyOutcome::NoMatch);
        assert_eq!(sequence.pending(), keys(&["g"]));
        assert_eq!(sequence.feed(&keymap, Layer::Cockpit, &char_key('g')), KeyOutcome::Matched(Action::Top));
    }

    fn with_user_file(text: &str) -> Keymap {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(USER_FILE), text).unwrap();
        Keymap::load("default", dir.path()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn user_prepend_overrides_shipped_keys() {
        let keymap = with_user_file(
            r#"
            [cockpit]
            prepend_keymap = [
              { on = "p", run = "freeze-view", desc = "Freeze" },
              { on = "<C-p>", run = "pause", desc = "Pause" },
            ]
            "#,
        );
        let cockpit = keymap.bindings(Layer::Cockpit);
        assert_eq!((cockpit[0].key_name().as_str(), cockpit[0].action), ("p", Action::FreezeView));
        assert_eq!(feed_all(&keymap, Layer::Cockpit, &["p"]), KeyOutcome::Matched(Action::FreezeView));
        // The shipped `p` → pause can no longer fire, so help must not list it.
        assert_eq!(cockpit.iter().filter(|b| b.key_name() == "p").count(), 1);
        assert_eq!(keymap.key_for(Layer::Cockpit, Action::Pause).as_deref(), Some("<C-p>"));
        assert_eq!(feed_all(&keymap, Layer::Cockpit, &["q"]), KeyOutcome::Matched(Action::Quit));
    }

    #[test]
    fn user_prepended_sequence_hides_its_prefix() {
        let keymap = with_user_file("[cockpit]\nprepend_keymap = [ { on = [\"g\", \"g\"], run = \"top\" } ]\n");
        assert_eq!(feed_all(&keymap, Layer::Cockpit, &["g"]), KeyOutcome::Pending);
        assert_eq!(feed_all(&keymap, Layer::Cockpit, &["g", "g"]), KeyOutcome::Matched(Action::Top));
        assert_eq!(keymap.key_for(Layer::Cockpit, Action::Top).as_deref(), Some("gg"));
        assert_eq!(keymap.bindings(Layer::Cockpit)[0].desc, "top", "desc defaults to the action name");
    }

    #[test]
    fn user_append_adds_keys_last() {
        let keymap = with_user_file(
            "[cockpit]\nappend_keymap = [ { on = \"x\", run = \"abort\", desc = \"Abort\" }, { on = \"q\", run = \"abort\" } ]\n",
        );
        let cockpit = keymap.bindings(Layer::Cockpit);
        assert_eq!(cockpit.last().unwrap().key_name(), "x");
        assert_eq!(keymap.key_for(Layer::Cockpit, Action::Abort).as_deref(), Some("a"));
        // An appended key the shipped keymap already binds stays shadowed.
        assert_eq!(feed_all(&keymap, Layer::Cockpit, &["q"]), KeyOutcome::Matched(Action::Quit));
    }

    #[test]
    fn user_keymap_replaces_a_layer_only() {
        let keymap = with_user_file("[confirm]\nkeymap = [ { on = \"<Enter>\", run = \"confirm\", desc = \"OK\" } ]\n");
        assert_eq!(keymap.bindings(Layer::Confirm).len(), 1);
        assert_eq!(feed_all(&keymap, Layer::Confirm, &["y"]), KeyOutcome::NoMatch);
        assert_eq!(keymap.bindings(Layer::Cockpit), shipped("default").bindings(Layer::Cockpit));
    }

    #[test]
    fn missing_user_file_is_fine_and_unknown_shipped_name_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Keymap::load("default", dir.path()).unwrap(), shipped("default"));
        let e = Keymap::load("emacs", dir.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keymaps/emacs.toml:1:1: keymap: no shipped keymap named `emacs`; shipped: default, vim"
        );
    }

    #[test]
    fn user_file_errors_name_the_user_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(USER_FILE), "[cockpit]\nappend_keymap = [ { on = \"x\", run = \"launch\" } ]\n")
            .unwrap();
        let e = Keymap::load("default", dir.path()).unwrap_err();
        assert_eq!(e.file, dir.path().join(USER_FILE).display().to_string());
        assert_eq!((e.line, e.column, e.field.as_str()), (2, 37, "cockpit.append_keymap[0].run"));
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let e =
            Keymap::parse("u.toml", "[help]\nkeymap = [ { desc = \"é\", on = \"<é>\", run = \"x\" } ]\n").unwrap_err();
        assert_eq!((e.line, e.column, e.field.as_str()), (2, 44, "help.keymap[0].run"));
    }

    #[test]
    fn array_of_tables_form_parses() {
        let keymap = Keymap::parse("t.toml", "[[cockpit.keymap]]\non = \"p\"\nrun = \"pause\"\n").unwrap();
        assert_eq!(keymap.key_for(Layer::Cockpit, Action::Pause).as_deref(), Some("p"));
    }

    /// Every `tests/invalid_keymaps/NAME.toml` fails with exactly the text
    /// of `NAME.expected`.
    #[test]
    fn invalid_keymaps_fail_with_the_expected_message() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/invalid_keymaps"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 8, "fixtures missing");
        let mut failures = Vec::new();
        for path in files {
            let name = format!("tests/invalid_keymaps/{}", path.file_name().unwrap().to_string_lossy());
            let got = match Keymap::parse(&name, &std::fs::read_to_string(&path).unwrap()) {
                Ok(_) => "parsed without error".to_string(),
                Err(e) => e.to_string(),
            };
            let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap_or_default();
            if got != expected.trim_end() {
                failures.push(format!("{name}\n  expected: {}\n  got:      {got}", expected.trim_end()));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
