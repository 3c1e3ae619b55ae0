//! Reading themes: finding a theme's file (the user's, else the shipped
//! one), following `inherits`, checking each file with positions, and
//! merging the chain into a [`Theme`].

use super::colour::{ansi_color, ColorMode, ANSI_HINT};
use super::scopes::{Symbols, SCOPES};
use super::{Theme, ThemeError};
use crate::files::TextError;
use flightdeck_core::toml_file::{line_col, toml_key, Key, Node, TomlError, TomlFile, Value};
use ratatui::style::{Color, Modifier, Style};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

/// Shipped themes, sorted by name; embedded so the binary works anywhere.
pub(super) const SHIPPED: &[(&str, &str)] = &[
    ("colorblind", include_str!("../../../themes/colorblind.toml")),
    ("default", include_str!("../../../themes/default.toml")),
    ("high-contrast", include_str!("../../../themes/high-contrast.toml")),
    ("light", include_str!("../../../themes/light.toml")),
    ("mono", include_str!("../../../themes/mono.toml")),
    ("prod", include_str!("../../../themes/prod.toml")),
    ("staging", include_str!("../../../themes/staging.toml")),
];

// ---- finding files and following `inherits` ----------------------------

/// Where themes come from: a user folder first, then the shipped set.
/// `label` is how the folder is named in error messages.
pub(super) struct Library<'a> {
    pub(super) dir: &'a Path,
    pub(super) label: &'a str,
}

/// The text of one theme file and where it came from.
struct Source {
    name: String,
    label: String,
    text: Cow<'static, str>,
    user: bool,
}

impl Library<'_> {
    pub(super) fn load(&self, name: &str, mode: ColorMode) -> Result<Theme, ThemeError> {
        let chain = self.chain(name)?;
        build(name, chain, mode)
    }

    /// The theme and its ancestors, root first.
    fn chain(&self, name: &str) -> Result<Vec<ThemeFile>, ThemeError> {
        let source = if valid_name(name) { self.open(name, false)? } else { None };
        let source = source.ok_or_else(|| self.no_such_theme(name))?;
        let mut chain = vec![source.parse()?];
        loop {
            let child = chain.last().expect("the chain starts with one file");
            let Some(parent) = &child.inherits else { break };
            let source = self.open_parent(child, parent)?;
            if chain.iter().any(|f| f.name == source.name && f.user == source.user) {
                let names: Vec<&str> = chain.iter().map(|f| f.name.as_str()).collect();
                let cycle = format!("{} → {}", names.join(" → "), source.name);
                return Err(parent.at.error(format!("inheritance cycle: {cycle}")));
            }
            chain.push(source.parse()?);
        }
        chain.reverse();
        Ok(chain)
    }

    fn open_parent(&self, child: &ThemeFile, parent: &Located<String>) -> Result<Source, ThemeError> {
        let name = parent.value.as_str();
        if !valid_name(name) {
            return Err(parent.at.error(NAME_RULE));
        }
        // A user theme extending its own name means the shipped one (helix).
        let shipped_only = child.user && name == child.name;
        let source = self.open(name, shipped_only)?;
        source.ok_or_else(|| parent.at.error(format!("no theme named `{name}`; {}", self.where_themes_are())))
    }

    /// The user's file if there is one (unless `shipped_only`), else the shipped one.
    fn open(&self, name: &str, shipped_only: bool) -> Result<Option<Source>, ThemeError> {
        if !shipped_only {
            let label = format!("{}/{name}.toml", self.label);
            match crate::files::read_text(&self.dir.join(format!("{name}.toml"))) {
                Ok(text) => return Ok(Some(Source { name: name.to_owned(), label, text: text.into(), user: true })),
                Err(TextError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.at(&label, "theme")),
            }
        }
        let shipped = SHIPPED.iter().find(|(shipped, _)| *shipped == name);
        Ok(shipped.map(|(_, text)| Source {
            name: name.to_owned(),
            label: format!("<built-in>/{name}.toml"),
            text: Cow::Borrowed(*text),
            user: false,
        }))
    }

    fn no_such_theme(&self, name: &str) -> ThemeError {
        let message = if valid_name(name) {
            format!("no theme named `{name}`; {}", self.where_themes_are())
        } else {
            NAME_RULE.to_owned()
        };
        file_error(format!("{}/{name}.toml", self.label), message)
    }

    fn where_themes_are(&self) -> String {
        format!("shipped themes are {}; user themes go in {}/<name>.toml", Theme::shipped().join(", "), self.label)
    }
}

pub(super) const NAME_RULE: &str = "theme names use only letters, digits, '-' and '_'";

/// Names become file names, so keep them to a safe, portable set.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An error about a whole file (no position to point at).
fn file_error(file: String, message: String) -> ThemeError {
    TomlError::whole_file(&file, "theme", message)
}

// ---- one file, checked but not yet resolved -----------------------------

/// One theme file after syntax and shape checks. Colour names stay names
/// until the whole chain is known, because a child may redefine them.
struct ThemeFile {
    name: String,
    user: bool,
    inherits: Option<Located<String>>,
    palette: Vec<(String, Color)>,
    symbols: Vec<(String, String)>,
    scopes: Vec<RawScope>,
}

struct RawScope {
    name: String,
    fg: Option<Located<String>>,
    bg: Option<Located<String>>,
    modifiers: Modifier,
}

/// A value with the place it was written, for errors found after parsing.
#[derive(Clone)]
struct Located<T> {
    value: T,
    at: Origin,
}

#[derive(Clone)]
struct Origin {
    file: String,
    line: usize,
    column: usize,
    field: String,
}

impl Origin {
    fn error(&self, message: impl Into<String>) -> ThemeError {
        let Origin { file, line, column, field } = self.clone();
        ThemeError { file, line, column, field, message: message.into() }
    }
}

impl Source {
    fn parse(self) -> Result<ThemeFile, ThemeError> {
        let text = FileText { label: &self.label, text: &self.text };
        let entries = text.document()?;
        let mut file = ThemeFile {
            name: self.name.clone(),
            user: self.user,
            inherits: None,
            palette: Vec::new(),
            symbols: Vec::new(),
            scopes: Vec::new(),
        };
        for (key, value) in &entries {
            match key.name.as_str() {
                "inherits" => file.inherits = Some(text.string(value, "inherits")?),
                "palette" => file.palette = text.palette(value)?,
                "symbols" => file.symbols = text.symbols(value)?,
                scope => {
                    text.known_scope(key)?;
                    file.scopes.push(text.scope(scope, value)?)
                }
            }
        }
        Ok(file)
    }
}

/// Entries of a TOML table, keys and values with their byte spans.
type Entries = Vec<(Key, Node)>;

/// The file being checked, to turn byte spans into errors.
struct FileText<'a> {
    label: &'a str,
    text: &'a str,
}

impl FileText<'_> {
    fn origin(&self, span: Range<usize>, field: &str) -> Origin {
        let (line, column) = line_col(self.text, span.start);
        Origin { file: self.label.to_owned(), line, column, field: field.to_owned() }
    }

    fn error(&self, at: &Range<usize>, field: &str, message: impl Into<String>) -> ThemeError {
        self.origin(at.clone(), field).error(message)
    }

    fn document(&self) -> Result<Entries, ThemeError> {
        match TomlFile::parse(self.label, self.text, "theme")?.tree().value {
            Value::Table(entries) => Ok(entries),
            _ => unreachable!("a TOML document is a table"),
        }
    }

    fn table<'n>(&self, value: &'n Node, field: &str) -> Result<&'n Entries, ThemeError> {
        match &value.value {
            Value::Table(entries) => Ok(entries),
            other => Err(self.error(&value.span, field, format!("expected a table, found {}", other.kind()))),
        }
    }

    fn string(&self, value: &Node, field: &str) -> Result<Located<String>, ThemeError> {
        match &value.value {
            Value::Str(s) => Ok(Located { value: s.clone(), at: self.origin(value.span.clone(), field) }),
            other => Err(self.error(&value.span, field, format!("expected a string, found {}", other.kind()))),
        }
    }

    fn palette(&self, value: &Node) -> Result<Vec<(String, Color)>, ThemeError> {
        let mut palette = Vec::new();
        for (key, value) in self.table(value, "palette")? {
            let field = format!("palette.{}", toml_key(&key.name));
            if key.name.contains('.') || matches!(&value.value, Value::Table(_)) {
                return Err(self.error(&key.span, &field, format!("a palette entry cannot be a scope; {MISPLACED}")));
            }
            let colour = self.string(value, &field)?;
            let parsed = parse_hex(&colour)?.or_else(|| ansi_color(&colour.value)).ok_or_else(|| {
                colour
                    .at
                    .error(format!("unknown colour `{}`; palette entries are \"#rrggbb\" or {ANSI_HINT}", colour.value))
            })?;
            palette.push((key.name.clone(), parsed));
        }
        Ok(palette)
    }

    fn symbols(&self, value: &Node) -> Result<Vec<(String, String)>, ThemeError> {
        let mut symbols = Vec::new();
        for (key, value) in self.table(value, "symbols")? {
            let name = &key.name;
            let field = format!("symbols.{}", toml_key(name));
            if !Symbols::NAMES.contains(&name.as_str()) {
                let mut message = format!("unknown symbol `{name}`; expected one of {}", Symbols::NAMES.join(", "));
                if name.contains('.') {
                    message = format!("{message}; {MISPLACED}");
                }
                return Err(self.error(&key.span, &field, message));
            }
            symbols.push((name.clone(), self.string(value, &field)?.value));
        }
        Ok(symbols)
    }

    /// A scope the cockpit draws with, or a prefix of some (`verdict`
    /// styles every `verdict.*`): a misspelt one would style nothing.
    fn known_scope(&self, key: &Key) -> Result<(), ThemeError> {
        let name = key.name.as_str();
        if SCOPES.iter().any(|s| *s == name || s.starts_with(&format!("{name}."))) {
            return Ok(());
        }
        let closest = SCOPES.iter().min_by_key(|s| strsim::levenshtein(s, name)).expect("scopes exist");
        let hint = if strsim::levenshtein(closest, name) <= 3 {
            format!("did you mean {closest:?}?")
        } else {
            "see the scope table in the README's Themes section".to_string()
        };
        Err(self.error(&key.span, &toml_key(name), format!("unknown scope `{name}`; {hint}")))
    }

    /// `"scope" = "colour"` or `"scope" = { fg, bg, modifiers }`.
    fn scope(&self, name: &str, value: &Node) -> Result<RawScope, ThemeError> {
        let field = toml_key(name);
        let mut scope = RawScope { name: name.to_owned(), fg: None, bg: None, modifiers: Modifier::empty() };
        let entries = match &value.value {
            Value::Str(_) => {
                scope.fg = Some(self.colour(value, &field)?);
                return Ok(scope);
            }
            Value::Table(entries) => entries,
            other => {
                let message = format!(
                    "expected a colour or a style like {{ fg = \"red\", modifiers = [\"bold\"] }}, found {}",
                    other.kind()
                );
                return Err(self.error(&value.span, &field, message));
            }
        };
        for (key, value) in entries {
            let field = format!("{field}.{}", toml_key(&key.name));
            match key.name.as_str() {
                "fg" => scope.fg = Some(self.colour(value, &field)?),
                "bg" => scope.bg = Some(self.colour(value, &field)?),
                "modifiers" => scope.modifiers = self.modifiers(value, &field)?,
                other => return Err(self.error(&key.span, &field, unknown_style_key(name, other))),
            }
        }
        Ok(scope)
    }

    /// A colour reference; hex is checked now, names once the palette is known.
    fn colour(&self, value: &Node, field: &str) -> Result<Located<String>, ThemeError> {
        let colour = self.string(value, field)?;
        parse_hex(&colour)?;
        Ok(colour)
    }

    fn modifiers(&self, value: &Node, field: &str) -> Result<Modifier, ThemeError> {
        let Value::Array(items) = &value.value else {
            let message = format!("expected an array like [\"bold\"], found {}", value.value.kind());
            return Err(self.error(&value.span, field, message));
        };
        let mut modifiers = Modifier::empty();
        for (i, item) in items.iter().enumerate() {
            let name = self.string(item, &format!("{field}[{i}]"))?;
            let found = MODIFIERS.iter().find(|(known, _)| *known == name.value);
            let Some((_, modifier)) = found else {
                let known: Vec<&str> = MODIFIERS.iter().map(|(known, _)| *known).collect();
                let message = format!("unknown modifier `{}`; expected one of {}", name.value, known.join(", "));
                return Err(name.at.error(message));
            };
            modifiers |= *modifier;
        }
        Ok(modifiers)
    }
}

/// `ui.text = "white"` (unquoted) is the table `ui` with a key `text`, so
/// point at the quoting when the two together name a cockpit scope.
fn unknown_style_key(scope: &str, key: &str) -> String {
    let message = format!("unknown key `{key}`; a style has fg, bg and modifiers");
    let dotted = format!("{scope}.{key}");
    let names_a_scope = SCOPES.iter().any(|s| *s == dotted || s.starts_with(&format!("{dotted}.")));
    if names_a_scope {
        format!("{message}; to style the scope {dotted:?}, quote its whole name")
    } else {
        message
    }
}

/// The likely cause of a scope showing up inside `[palette]` or `[symbols]`.
const MISPLACED: &str =
    "scopes go before [palette] and [symbols], since TOML puts every key after a table header into that table";

const MODIFIERS: &[(&str, Modifier)] = &[
    ("bold", Modifier::BOLD),
    ("dim", Modifier::DIM),
    ("italic", Modifier::ITALIC),
    ("underlined", Modifier::UNDERLINED),
    ("reversed", Modifier::REVERSED),
    ("crossed_out", Modifier::CROSSED_OUT),
];

// ---- merging a chain into a theme ---------------------------------------

fn build(name: &str, chain: Vec<ThemeFile>, mode: ColorMode) -> Result<Theme, ThemeError> {
    let mut palette = HashMap::new();
    let mut symbols = Symbols::default();
    let mut scopes = BTreeMap::new();
    for file in chain {
        palette.extend(file.palette);
        // Names must resolve within this file and its ancestors, so that
        // every theme also loads on its own; errors come in file order.
        for scope in &file.scopes {
            scope.colours().try_for_each(|c| resolve(c, &palette).map(drop))?;
        }
        for (symbol, glyph) in file.symbols {
            *symbols.slot(&symbol).expect("symbol names are checked when parsing") = glyph;
        }
        scopes.extend(file.scopes.into_iter().map(|scope| (scope.name.clone(), scope)));
    }
    let styles = scopes.into_iter().map(|(name, scope)| Ok((name, scope.style(&palette, mode)?)));
    Ok(Theme { name: name.to_owned(), symbols, scopes: styles.collect::<Result<_, ThemeError>>()? })
}

impl RawScope {
    fn colours(&self) -> impl Iterator<Item = &Located<String>> {
        self.fg.iter().chain(self.bg.iter())
    }

    fn style(&self, palette: &HashMap<String, Color>, mode: ColorMode) -> Result<Style, ThemeError> {
        let mut style = Style::default().add_modifier(self.modifiers);
        if let Some(fg) = &self.fg {
            style.fg = mode.adapt(resolve(fg, palette)?);
        }
        if let Some(bg) = &self.bg {
            style.bg = mode.adapt(resolve(bg, palette)?);
        }
        Ok(style)
    }
}

// ---- colours -------------------------------------------------------------

/// `Some` colour for valid hex, `None` when it is not hex at all, an error
/// when it starts with `#` but is malformed.
fn parse_hex(colour: &Located<String>) -> Result<Option<Color>, ThemeError> {
    let Some(digits) = colour.value.strip_prefix('#') else { return Ok(None) };
    let channel = |i: usize| digits.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok());
    match (digits.len(), channel(0), channel(2), channel(4)) {
        (6, Some(r), Some(g), Some(b)) => Ok(Some(Color::Rgb(r, g, b))),
        _ => Err(colour.at.error(format!("bad hex colour `{}`; write \"#rrggbb\"", colour.value))),
    }
}

/// Palette first (so a theme may redefine "red"), then hex and ANSI names.
fn resolve(colour: &Located<String>, palette: &HashMap<String, Color>) -> Result<Color, ThemeError> {
    if let Some(color) = palette.get(&colour.value) {
        return Ok(*color);
    }
    if let Some(color) = parse_hex(colour)?.or_else(|| ansi_color(&colour.value)) {
        return Ok(color);
    }
    let mut names: Vec<&str> = palette.keys().map(String::as_str).collect();
    names.sort_unstable();
    let palette_hint =
        if names.is_empty() { String::new() } else { format!("a palette name ({}), ", names.join(", ")) };
    Err(colour.at.error(format!("unknown colour `{}`; use {palette_hint}\"#rrggbb\" or {ANSI_HINT}", colour.value)))
}
