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

use crate::files::{TextError, NOT_UTF8};
use flightdeck_core::toml_file::{line_col, toml_key, Key, Node, TomlError, TomlFile, Value};
use ratatui::style::{Color, Modifier, Style};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

/// Every scope the cockpit draws with; shipped themes define them all.
pub const SCOPES: &[&str] = &[
    "ui.background",
    "ui.text",
    "ui.dim",
    "ui.border",
    "ui.border.focused",
    "ui.title",
    "ui.selection",
    "ui.group",
    "ui.group.production",
    "ui.needs-human",
    "ui.banner.error",
    "ui.banner.info",
    "ui.key",
    "ui.frozen",
    "state.pending",
    "state.progressing",
    "state.paused",
    "state.awaiting",
    "state.promoted",
    "state.rolled-back",
    "state.aborted",
    "state.failed",
    "verdict.pass",
    "verdict.fail",
    "verdict.inconclusive",
    "split.stable",
    "split.canary",
    "budget.auto",
    "budget.approval",
    "budget.freeze",
    "event.time",
    "event.action",
    "event.verdict",
    "event.effect",
    "event.error",
    "modal",
    "modal.danger",
    "sparkline.stable",
    "sparkline.canary",
];

/// Shipped themes, sorted by name; embedded so the binary works anywhere.
const SHIPPED: &[(&str, &str)] = &[
    ("colorblind", include_str!("../../themes/colorblind.toml")),
    ("default", include_str!("../../themes/default.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("mono", include_str!("../../themes/mono.toml")),
    ("prod", include_str!("../../themes/prod.toml")),
    ("staging", include_str!("../../themes/staging.toml")),
];

// ---- colour mode -------------------------------------------------------

/// What the terminal can show; decides how theme colours are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// 24-bit RGB as written in the theme.
    TrueColor,
    /// RGB mapped to the nearest of the 16 ANSI colours.
    Ansi16,
    /// No colours, modifiers only (`NO_COLOR`).
    Mono,
}

impl ColorMode {
    /// NO_COLOR (set, any value) → Mono; COLORTERM = truecolor|24bit →
    /// TrueColor; else Ansi16. Reads the real environment, which over SSH is
    /// the session's, not the host's.
    pub fn detect() -> ColorMode {
        let no_color = std::env::var("NO_COLOR").ok();
        let colorterm = std::env::var("COLORTERM").ok();
        ColorMode::from_env(no_color.as_deref(), colorterm.as_deref())
    }

    /// The decision of [`ColorMode::detect`] on given variable values.
    pub fn from_env(no_color: Option<&str>, colorterm: Option<&str>) -> ColorMode {
        // no-color.org: presence alone disables colour, whatever the value.
        if no_color.is_some() {
            return ColorMode::Mono;
        }
        match colorterm.map(str::to_ascii_lowercase).as_deref() {
            Some("truecolor" | "24bit") => ColorMode::TrueColor,
            _ => ColorMode::Ansi16,
        }
    }

    /// The colour to draw in this mode; `None` leaves the terminal default.
    fn adapt(self, color: Color) -> Option<Color> {
        match (self, color) {
            (ColorMode::Mono, _) => None,
            (ColorMode::Ansi16, Color::Rgb(r, g, b)) => Some(nearest_ansi(r, g, b)),
            _ => Some(color),
        }
    }
}

// ---- symbols -----------------------------------------------------------

/// Glyphs the cockpit draws next to states and verdicts, so meaning never
/// rests on colour alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbols {
    pub pass: String,
    pub fail: String,
    pub warn: String,
    pub paused: String,
    pub progressing: String,
    pub promoted: String,
    pub rolled_back: String,
    pub aborted: String,
    pub awaiting: String,
    pub failed: String,
    pub pending: String,
    /// Badge on production target groups.
    pub production: String,
}

impl Default for Symbols {
    fn default() -> Symbols {
        let s = |glyph: &str| glyph.to_owned();
        Symbols {
            pass: s("✓"),
            fail: s("✗"),
            warn: s("⚠"),
            paused: s("⏸"),
            progressing: s("▶"),
            promoted: s("●"),
            rolled_back: s("↺"),
            aborted: s("■"),
            awaiting: s("?"),
            failed: s("!"),
            pending: s("·"),
            production: s("PROD"),
        }
    }
}

impl Symbols {
    /// Keys accepted in `[symbols]`, in field order, for error messages.
    const NAMES: &'static [&'static str] = &[
        "pass",
        "fail",
        "warn",
        "paused",
        "progressing",
        "promoted",
        "rolled_back",
        "aborted",
        "awaiting",
        "failed",
        "pending",
        "production",
    ];

    fn slot(&mut self, name: &str) -> Option<&mut String> {
        Some(match name {
            "pass" => &mut self.pass,
            "fail" => &mut self.fail,
            "warn" => &mut self.warn,
            "paused" => &mut self.paused,
            "progressing" => &mut self.progressing,
            "promoted" => &mut self.promoted,
            "rolled_back" => &mut self.rolled_back,
            "aborted" => &mut self.aborted,
            "awaiting" => &mut self.awaiting,
            "failed" => &mut self.failed,
            "pending" => &mut self.pending,
            "production" => &mut self.production,
            _ => return None,
        })
    }
}

// ---- theme -------------------------------------------------------------

/// A loaded theme, already adapted to a [`ColorMode`].
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub symbols: Symbols,
    scopes: BTreeMap<String, Style>,
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

// ---- finding files and following `inherits` ----------------------------

/// Where themes come from: a user folder first, then the shipped set.
/// `label` is how the folder is named in error messages.
struct Library<'a> {
    dir: &'a Path,
    label: &'a str,
}

/// The text of one theme file and where it came from.
struct Source {
    name: String,
    label: String,
    text: Cow<'static, str>,
    user: bool,
}

impl Library<'_> {
    fn load(&self, name: &str, mode: ColorMode) -> Result<Theme, ThemeError> {
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
                Err(TextError::Io(e)) => return Err(file_error(label, format!("cannot read the file: {e}"))),
                Err(TextError::NotUtf8 { line, column }) => {
                    let field = "theme".to_owned();
                    return Err(ThemeError { file: label, line, column, field, message: NOT_UTF8.into() });
                }
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

const NAME_RULE: &str = "theme names use only letters, digits, '-' and '_'";

/// Names become file names, so keep them to a safe, portable set.
fn valid_name(name: &str) -> bool {
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
                scope => file.scopes.push(text.scope(scope, value)?),
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

const ANSI: &[(&str, Color)] = &[
    ("black", Color::Black),
    ("red", Color::Red),
    ("green", Color::Green),
    ("yellow", Color::Yellow),
    ("blue", Color::Blue),
    ("magenta", Color::Magenta),
    ("cyan", Color::Cyan),
    ("gray", Color::Gray),
    ("darkgray", Color::DarkGray),
    ("lightred", Color::LightRed),
    ("lightgreen", Color::LightGreen),
    ("lightyellow", Color::LightYellow),
    ("lightblue", Color::LightBlue),
    ("lightmagenta", Color::LightMagenta),
    ("lightcyan", Color::LightCyan),
    ("white", Color::White),
    ("reset", Color::Reset),
];

const ANSI_HINT: &str = "an ANSI name (black, red, green, yellow, blue, magenta, cyan, gray, darkgray, \
lightred, lightgreen, lightyellow, lightblue, lightmagenta, lightcyan, white, reset)";

fn ansi_color(name: &str) -> Option<Color> {
    ANSI.iter().find(|(known, _)| *known == name).map(|(_, color)| *color)
}

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

/// The standard xterm values of the 16 ANSI colours, and whether each is a gray.
const XTERM: &[(Color, (u8, u8, u8), bool)] = &[
    (Color::Black, (0, 0, 0), true),
    (Color::Red, (205, 0, 0), false),
    (Color::Green, (0, 205, 0), false),
    (Color::Yellow, (205, 205, 0), false),
    (Color::Blue, (0, 0, 238), false),
    (Color::Magenta, (205, 0, 205), false),
    (Color::Cyan, (0, 205, 205), false),
    (Color::Gray, (229, 229, 229), true),
    (Color::DarkGray, (127, 127, 127), true),
    (Color::LightRed, (255, 0, 0), false),
    (Color::LightGreen, (0, 255, 0), false),
    (Color::LightYellow, (255, 255, 0), false),
    (Color::LightBlue, (92, 92, 255), false),
    (Color::LightMagenta, (255, 0, 255), false),
    (Color::LightCyan, (0, 255, 255), false),
    (Color::White, (255, 255, 255), true),
];

/// Nearest ANSI colour by squared RGB distance. Gray entries count triple:
/// xterm's grays sit close to every muted tint, and plain distance would
/// turn a soft green "pass" or pink "fail" gray, losing its meaning.
fn nearest_ansi(r: u8, g: u8, b: u8) -> Color {
    let distance = |&(_, (xr, xg, xb), gray): &(Color, (u8, u8, u8), bool)| {
        let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).pow(2);
        let sum = d(r, xr) + d(g, xg) + d(b, xb);
        if gray {
            sum * 3
        } else {
            sum
        }
    };
    XTERM.iter().min_by_key(|entry| distance(entry)).map_or(Color::Reset, |(color, _, _)| *color)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const MODES: [ColorMode; 3] = [ColorMode::TrueColor, ColorMode::Ansi16, ColorMode::Mono];

    fn repo(sub: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(sub)
    }

    fn shipped(name: &str, mode: ColorMode) -> Theme {
        let empty = tempfile::tempdir().unwrap();
        Theme::load(name, empty.path(), mode).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A config dir whose `themes/` holds the given files.
    fn config_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("themes")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join("themes").join(name), text).unwrap();
        }
        dir
    }

    /// Loads from `files` with the folder labelled `themes`, as in fixtures.
    fn load_files(name: &str, files: &[(&str, &str)]) -> Result<Theme, ThemeError> {
        let config = config_with(files);
        Library { dir: &config.path().join("themes"), label: "themes" }.load(name, ColorMode::TrueColor)
    }

    #[test]
    fn every_shipped_theme_loads_in_every_mode() {
        for name in Theme::shipped() {
            for mode in MODES {
                assert_eq!(shipped(name, mode).name, name);
            }
        }
    }

    #[test]
    fn every_shipped_theme_defines_every_cockpit_scope() {
        for name in Theme::shipped() {
            let theme = shipped(name, ColorMode::TrueColor);
            let missing: Vec<&&str> = SCOPES.iter().filter(|s| !theme.scopes.contains_key(**s)).collect();
            assert!(missing.is_empty(), "{name} lacks {missing:?}");
        }
    }

    #[test]
    fn shipped_list_is_sorted_and_matches_the_themes_folder() {
        let names = Theme::shipped();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        let mut files: Vec<String> = std::fs::read_dir(repo("themes"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort_unstable();
        assert_eq!(names, files);
    }

    #[test]
    fn a_theme_exists_when_shipped_or_in_the_user_folder() {
        let config = config_with(&[("mine.toml", "")]);
        assert!(Theme::exists("prod", config.path()));
        assert!(Theme::exists("mine", config.path()));
        assert!(!Theme::exists("prdo", config.path()));
        assert!(!Theme::exists("../themes/mine", config.path()));
        assert!(!Theme::exists("", config.path()));
    }

    #[test]
    fn mono_theme_has_no_colours_and_marks_the_selection() {
        let mono = shipped("mono", ColorMode::TrueColor);
        assert!(mono.scopes.values().all(|s| s.fg.is_none() && s.bg.is_none()));
        assert!(mono.style("ui.selection").add_modifier.contains(Modifier::REVERSED));
        assert!(mono.style("verdict.fail").add_modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn themes_differ_where_it_matters() {
        let prod = shipped("prod", ColorMode::TrueColor);
        let staging = shipped("staging", ColorMode::TrueColor);
        assert_ne!(prod.style("ui.border"), staging.style("ui.border"));
        assert_eq!(prod.symbols.production, "PROD");
        let colorblind = shipped("colorblind", ColorMode::TrueColor);
        assert_ne!(colorblind.symbols.pass, colorblind.symbols.fail);
        assert_ne!(colorblind.symbols.promoted, colorblind.symbols.failed);
    }

    #[test]
    fn dotted_scopes_fall_back_to_their_parents() {
        let theme = load_files("t", &[("t.toml", "verdict = \"#ff0000\"\n\"ui.border\" = \"blue\"\n")]).unwrap();
        let red = Style::default().fg(Color::Rgb(255, 0, 0));
        assert_eq!(theme.style("verdict.fail"), red);
        assert_eq!(theme.style("verdict"), red);
        assert_eq!(theme.style("ui.border.focused"), Style::default().fg(Color::Blue));
        assert_eq!(theme.style("ui.text"), Style::default());
        assert_eq!(theme.style("nothing.like.this"), Style::default());
    }

    #[test]
    fn children_override_scopes_and_merge_palettes_and_symbols() {
        let parent = "a = { fg = \"main\", modifiers = [\"bold\"] }\nb = \"other\"\n\
                      [palette]\nmain = \"#010203\"\nother = \"#0a0b0c\"\n[symbols]\npass = \"P\"\nfail = \"F\"\n";
        let child = "inherits = \"parent\"\nb = { bg = \"main\" }\n\
                     [palette]\nmain = \"#ffffff\"\n[symbols]\npass = \"ok\"\n";
        let theme = load_files("child", &[("parent.toml", parent), ("child.toml", child)]).unwrap();
        // The parent's scope sees the child's palette entry.
        assert_eq!(theme.style("a"), Style::default().fg(Color::Rgb(255, 255, 255)).add_modifier(Modifier::BOLD));
        // The child's scope replaces the parent's whole, fg included.
        assert_eq!(theme.style("b"), Style::default().bg(Color::Rgb(255, 255, 255)));
        assert_eq!((theme.symbols.pass.as_str(), theme.symbols.fail.as_str()), ("ok", "F"));
        assert_eq!(theme.symbols.warn, Symbols::default().warn);
    }

    #[test]
    fn shipped_children_are_complete_through_inheritance() {
        let default = shipped("default", ColorMode::TrueColor);
        let prod = shipped("prod", ColorMode::TrueColor);
        assert_eq!(prod.style("verdict.pass"), default.style("verdict.pass"));
        assert_ne!(prod.style("ui.group.production"), default.style("ui.group.production"));
    }

    #[test]
    fn user_themes_override_shipped_ones() {
        let config = config_with(&[("default.toml", "\"ui.text\" = \"#123456\"\n")]);
        let theme = Theme::load("default", config.path(), ColorMode::TrueColor).unwrap();
        assert_eq!(theme.style("ui.text"), Style::default().fg(Color::Rgb(0x12, 0x34, 0x56)));
        assert_eq!(theme.style("verdict.pass"), Style::default(), "the shipped default is replaced whole");
    }

    #[test]
    fn a_user_theme_may_extend_the_shipped_theme_of_its_name() {
        let config = config_with(&[("default.toml", "inherits = \"default\"\n\"ui.text\" = \"#123456\"\n")]);
        let theme = Theme::load("default", config.path(), ColorMode::TrueColor).unwrap();
        assert_eq!(theme.style("ui.text"), Style::default().fg(Color::Rgb(0x12, 0x34, 0x56)));
        assert_eq!(theme.style("verdict.pass"), shipped("default", ColorMode::TrueColor).style("verdict.pass"));
    }

    #[test]
    fn user_file_errors_name_the_full_path() {
        let config = config_with(&[("x.toml", "a = \"nope\"\n")]);
        let e = Theme::load("x", config.path(), ColorMode::TrueColor).unwrap_err();
        assert_eq!(e.file, config.path().join("themes").join("x.toml").display().to_string());
        assert_eq!((e.line, e.column, e.field.as_str()), (1, 5, "a"));
    }

    #[test]
    fn unknown_theme_names_are_errors() {
        let e = load_files("nope", &[]).unwrap_err();
        assert_eq!(e.file, "themes/nope.toml");
        assert!(e.message.contains("shipped themes are colorblind, default"), "{e}");
        let e = load_files("../etc/passwd", &[]).unwrap_err();
        assert_eq!(e.message, NAME_RULE);
    }

    #[test]
    fn colour_mode_comes_from_the_environment() {
        let table = [
            (Some(""), Some("truecolor"), ColorMode::Mono),
            (Some("1"), None, ColorMode::Mono),
            (None, Some("truecolor"), ColorMode::TrueColor),
            (None, Some("24bit"), ColorMode::TrueColor),
            (None, Some("TrueColor"), ColorMode::TrueColor),
            (None, Some("yes"), ColorMode::Ansi16),
            (None, None, ColorMode::Ansi16),
        ];
        for (no_color, colorterm, mode) in table {
            assert_eq!(ColorMode::from_env(no_color, colorterm), mode, "{no_color:?} {colorterm:?}");
        }
    }

    #[test]
    fn ansi16_maps_rgb_to_the_nearest_ansi_colour() {
        for (rgb, expected) in [
            ((255, 0, 0), [Color::LightRed, Color::Red]),
            ((0xd0, 0x10, 0x10), [Color::Red, Color::LightRed]),
            ((0x10, 0x12, 0x18), [Color::Black, Color::Black]),
            ((0xf8, 0xf8, 0xf8), [Color::White, Color::White]),
        ] {
            let got = ColorMode::Ansi16.adapt(Color::Rgb(rgb.0, rgb.1, rgb.2)).unwrap();
            assert!(expected.contains(&got), "{rgb:?} → {got:?}");
        }
        assert_eq!(ColorMode::Ansi16.adapt(Color::Blue), Some(Color::Blue));
    }

    #[test]
    fn ansi16_keeps_the_meaning_of_pass_and_fail() {
        let reds = [Color::Red, Color::LightRed];
        let greens = [Color::Green, Color::LightGreen];
        let blues = [Color::Blue, Color::LightBlue, Color::Cyan, Color::LightCyan];
        for name in Theme::shipped().into_iter().filter(|n| *n != "mono") {
            let theme = shipped(name, ColorMode::Ansi16);
            // A coloured block (bg) carries the meaning when there is one.
            let colour = |scope: &str| theme.style(scope).bg.or(theme.style(scope).fg).unwrap();
            let pass_hues = if name == "colorblind" { &blues[..] } else { &greens[..] };
            assert!(pass_hues.contains(&colour("verdict.pass")), "{name}: pass is {:?}", colour("verdict.pass"));
            assert!(reds.contains(&colour("verdict.fail")), "{name}: fail is {:?}", colour("verdict.fail"));
            assert!(theme.scopes.values().all(|s| !matches!(s.fg.or(s.bg), Some(Color::Rgb(..)))));
        }
    }

    #[test]
    fn mono_drops_colours_but_keeps_modifiers() {
        let theme = shipped("default", ColorMode::Mono);
        assert!(theme.scopes.values().all(|s| s.fg.is_none() && s.bg.is_none()));
        assert!(theme.style("ui.selection").add_modifier.contains(Modifier::BOLD));
        assert!(theme.style("verdict.fail").add_modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn every_symbol_name_has_a_field() {
        let mut symbols = Symbols::default();
        for name in Symbols::NAMES {
            assert!(symbols.slot(name).is_some(), "{name}");
        }
    }

    #[test]
    fn invalid_themes_report_their_exact_error() {
        let dir = repo("tests/invalid_themes");
        let (mut checked, mut wrong) = (0, Vec::new());
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
            let name = path.file_stem().unwrap().to_str().unwrap();
            let expected = std::fs::read_to_string(path.with_extension("expected"))
                .unwrap_or_else(|e| panic!("{name}.expected: {e}"));
            let library = Library { dir: &dir, label: "themes" };
            let error = library.load(name, ColorMode::TrueColor).expect_err(name).to_string();
            if error != expected.trim_end() {
                wrong.push(format!("{name}.expected:\n  want {}\n  got  {error}", expected.trim_end()));
            }
            checked += 1;
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(checked >= 9, "only {checked} fixtures");
    }
}
