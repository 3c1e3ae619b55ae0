//! Reading keymap files: the shipped ones, then the user's on top, with
//! every mistake reported at its file, line and field.

use super::key::{sequence_name, KeyCombo};
use super::layers::{drop_hidden, overlaps, Binding, Keymap, Layer};
use super::WAYS_OUT;
use crate::files::TextError;
use crate::ui::action::Action;
use flightdeck_core::toml_file::{Node, TomlError, TomlFile, Value};
use std::ops::Range;
use std::path::Path;

/// Shipped keymaps by name, with the file name their errors cite.
const SHIPPED: &[(&str, &str, &str)] = &[
    ("default", "keymaps/default.toml", include_str!("../../../keymaps/default.toml")),
    ("vim", "keymaps/vim.toml", include_str!("../../../keymaps/vim.toml")),
];

/// The user's overrides, inside the config dir.
pub const USER_FILE: &str = "keymap.toml";

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
            Err(e) => Err(e.at(&user_name, "keymap")),
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
        confirm_apart(&self, file, text)?;
        Ok(self)
    }
}

/// No key that sends a rollout command may also confirm one: pressed
/// twice (or held), it would answer its own question. Checked on the
/// layered keymap, so a user file cannot undo it either; the error points
/// at the line of this file that binds the key, when it is this file's.
fn confirm_apart(keymap: &Keymap, file: &str, text: &str) -> Result<(), KeymapError> {
    for confirm in keymap.bindings(Layer::Confirm).iter().filter(|b| b.action == Action::Confirm) {
        let sends = keymap
            .bindings(Layer::Cockpit)
            .iter()
            .find(|b| b.action.is_rollout_command() && !b.keys.is_empty() && b.keys.first() == confirm.keys.first());
        if let Some(command) = sends {
            let key = confirm.key_name();
            let quoted = format!("\"{key}\"");
            let line = text.lines().position(|l| l.contains(&quoted)).map_or(1, |i| i + 1);
            let message = format!(
                "`{key}` confirms and also runs `{}` in the cockpit: pressed twice it would confirm its own \
                 command; bind confirm to another key (<Enter>)",
                command.action.name()
            );
            return Err(TomlError { file: file.to_owned(), line, column: 1, field: "confirm.keymap".into(), message });
        }
    }
    Ok(())
}

/// Names of the shipped keymaps ("default", "vim").
pub fn shipped_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _, _)| *name).collect()
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
