//! Reading TOML with positions: the one way every file a user writes
//! (plans, the config, themes, keymaps) is read, and the one error they
//! all report, `file:line:column: field: message`.
//!
//! The text is parsed once with `toml_edit`, whose documents keep the
//! byte span of every key, value and table header. From that document a
//! file is read either
//! - with serde ([`TomlFile::deserialize`]), into structs whose fields may
//!   be `toml::Spanned` to keep their own positions; a serde error is
//!   placed at its span and named by the key written there, or
//! - as a loose [`Node`] tree ([`TomlFile::tree`]), for files whose every
//!   check is the reader's own (themes, keymaps) and so can name its field.
//!
//! Parsing strings only: reading the file is the caller's business.

use serde::de::DeserializeOwned;
use std::ops::Range;
use toml_edit::{ImDocument, Item, Key as EditKey};

/// A file that could not be read, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct TomlError {
    pub file: String,
    /// 1-based line of the offending value or key (1 for the whole file).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Path of the field (`strategy.stages[2].weight`), or the file's
    /// kind (`plan`, `keymap`, `theme`, `config`) for the whole file.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl TomlError {
    /// An error about a whole file (no position to point at).
    pub fn whole_file(file: &str, field: &str, message: impl Into<String>) -> TomlError {
        TomlError { file: file.to_owned(), line: 1, column: 1, field: field.to_owned(), message: message.into() }
    }
}

/// One parsed file: its name for messages, its text for positions and the
/// document with its spans.
pub struct TomlFile<'a> {
    file: &'a str,
    text: &'a str,
    /// What the whole file is called in errors (`plan`, `keymap`, …).
    kind: &'a str,
    document: ImDocument<String>,
}

impl<'a> TomlFile<'a> {
    /// Parses `text`; a syntax error is reported against the whole `kind`.
    pub fn parse(file: &'a str, text: &'a str, kind: &'a str) -> Result<TomlFile<'a>, TomlError> {
        let document = ImDocument::parse(text.to_owned()).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            TomlError { file: file.to_owned(), line, column, field: kind.to_owned(), message: one_line(e.message()) }
        })?;
        Ok(TomlFile { file, text, kind, document })
    }

    /// An error at `span` (1:1 when there is none).
    pub fn error(&self, span: Option<&Range<usize>>, field: &str, message: impl Into<String>) -> TomlError {
        let (line, column) = span.map_or((1, 1), |s| line_col(self.text, s.start));
        TomlError { file: self.file.to_owned(), line, column, field: field.to_owned(), message: message.into() }
    }

    /// The 1-based line of `span`.
    pub fn line(&self, span: Option<&Range<usize>>) -> usize {
        span.map_or(1, |s| line_col(self.text, s.start).0)
    }

    /// The document through serde. A serde error (unknown key, wrong type)
    /// is placed at the span it names, and its field is the key written
    /// there, with rust type names said in plain words.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, TomlError> {
        let deserializer = toml_edit::de::Deserializer::from(self.document.clone());
        T::deserialize(deserializer).map_err(|e| {
            let field = e.span().and_then(|s| self.tree().path_at(s.start)).unwrap_or_else(|| self.kind.to_owned());
            self.error(e.span().as_ref(), &field, humanize(e.message()))
        })
    }

    /// The whole document as a tree that keeps every span, in file order.
    pub fn tree(&self) -> Node {
        let root = 0..0;
        Node { span: root.clone(), value: Value::Table(table(self.document.as_table().keyed_entries(), &root)) }
    }

    /// Where the value at a path of keys is written (a table: its
    /// `[header]`); `None` when it is absent or only implied by a deeper
    /// header, as `[strategy]` is by `[[strategy.stages]]`.
    pub fn span_of(&self, path: &[&str]) -> Option<Range<usize>> {
        let mut item = self.document.as_item();
        for key in path {
            item = item.get(key)?;
        }
        item.span()
    }
}

/// A value and the bytes it was written at. Values TOML writes no span for
/// (tables implied by `[a.b]` or a dotted key) get their key's, else their
/// parent's, so every error can point somewhere near.
pub struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

/// A key of a table and where it is written.
pub struct Key {
    pub name: String,
    pub span: Range<usize>,
}

/// A TOML value, tables with their entries in file order.
pub enum Value {
    Str(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

impl Value {
    /// The entries of a table; nothing for other values.
    pub fn entries(&self) -> impl Iterator<Item = &(Key, Node)> {
        match self {
            Value::Table(entries) => entries.iter(),
            _ => [].iter(),
        }
    }

    /// What the value is, for "found …" in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

impl Node {
    /// The dotted path of the key or value written at byte `offset`
    /// (`strategy.stages[1].wait`), if any.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        let covers = |span: &Range<usize>| span.contains(&offset) || span.start == offset && span.is_empty();
        match &self.value {
            Value::Table(entries) => entries.iter().find_map(|(key, node)| {
                let name = toml_key(&key.name);
                match node.path_at(offset) {
                    Some(rest) if rest.starts_with('[') => Some(format!("{name}{rest}")),
                    Some(rest) => Some(format!("{name}.{rest}")),
                    None if covers(&key.span) || covers(&node.span) => Some(name),
                    None => None,
                }
            }),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| match item.path_at(offset) {
                Some(rest) if rest.starts_with('[') => Some(format!("[{i}]{rest}")),
                Some(rest) => Some(format!("[{i}].{rest}")),
                None if covers(&item.span) => Some(format!("[{i}]")),
                None => None,
            }),
            _ => None,
        }
    }
}

/// A key as written in TOML: bare when it can be, quoted otherwise, so
/// that the path `"verdict.fail".fg` names two keys, not three.
pub fn toml_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn table<'t>(entries: impl IntoIterator<Item = (&'t EditKey, &'t Item)>, parent: &Range<usize>) -> Vec<(Key, Node)> {
    entries
        .into_iter()
        .filter(|(_, item)| !item.is_none())
        .map(|(key, item)| {
            let key_span = key.span().unwrap_or_else(|| parent.clone());
            let node = self::item(item, &key_span);
            (Key { name: key.get().to_owned(), span: key_span }, node)
        })
        .collect()
}

fn item(item: &Item, parent: &Range<usize>) -> Node {
    let span = item.span().unwrap_or_else(|| parent.clone());
    let value = match item {
        Item::Value(v) => return value(v, parent),
        Item::Table(t) => Value::Table(table(t.keyed_entries(), &span)),
        Item::ArrayOfTables(tables) => Value::Array(
            tables
                .iter()
                .map(|t| {
                    let at = t.span().unwrap_or_else(|| span.clone());
                    Node { value: Value::Table(table(t.keyed_entries(), &at)), span: at }
                })
                .collect(),
        ),
        Item::None => unreachable!("empty items are filtered out"),
    };
    Node { span, value }
}

fn value(v: &toml_edit::Value, parent: &Range<usize>) -> Node {
    use toml_edit::Value as V;
    let span = v.span().unwrap_or_else(|| parent.clone());
    let value = match v {
        V::String(s) => Value::Str(s.value().clone()),
        V::Integer(i) => Value::Integer(*i.value()),
        V::Float(f) => Value::Float(*f.value()),
        V::Boolean(b) => Value::Bool(*b.value()),
        V::Datetime(_) => Value::Datetime,
        V::Array(items) => Value::Array(items.iter().map(|item| value(item, &span)).collect()),
        V::InlineTable(t) => Value::Table(table(t.keyed_entries(), &span)),
    };
    Node { span, value }
}

/// The entries of a table with their keys, in file order.
trait KeyedEntries {
    fn keyed_entries(&self) -> Vec<(&EditKey, &Item)>;
}

impl KeyedEntries for toml_edit::Table {
    fn keyed_entries(&self) -> Vec<(&EditKey, &Item)> {
        self.iter().filter_map(|(name, _)| self.get_key_value(name)).collect()
    }
}

impl KeyedEntries for toml_edit::InlineTable {
    fn keyed_entries(&self) -> Vec<(&EditKey, &Item)> {
        self.iter().filter_map(|(name, _)| self.get_key_value(name)).collect()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// toml's messages span several lines; errors are one line.
fn one_line(message: &str) -> String {
    message.trim().replace('\n', "; ")
}

/// serde's messages on one line, with Rust type names in plain words.
fn humanize(message: &str) -> String {
    one_line(message)
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("unknown field", "unknown key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const TEXT: &str = "[a]\nx = 1\n\"b.c\" = { d = [1, \"two\"] }\n\n[[e.f]]\ng = true\n\n[[e.f]]\ng = 2024-01-01\n";

    fn file() -> TomlFile<'static> {
        TomlFile::parse("f.toml", TEXT, "test").unwrap()
    }

    /// The byte offset of the `n`th (0-based) occurrence of `needle`.
    fn at(needle: &str, n: usize) -> usize {
        TEXT.match_indices(needle).nth(n).unwrap().0
    }

    #[test]
    fn paths_name_keys_values_and_array_items_with_quoted_dotted_keys() {
        let tree = file().tree();
        assert_eq!(tree.path_at(at("x", 0)).as_deref(), Some("a.x"));
        assert_eq!(tree.path_at(at("1", 0)).as_deref(), Some("a.x"));
        assert_eq!(tree.path_at(at("\"two\"", 0)).as_deref(), Some("a.\"b.c\".d[1]"));
        assert_eq!(tree.path_at(at("true", 0)).as_deref(), Some("e.f[0].g"));
        assert_eq!(tree.path_at(at("2024", 0)).as_deref(), Some("e.f[1].g"));
        assert_eq!(tree.path_at(at("\n\n", 0)), None);
    }

    #[test]
    fn every_value_has_a_span_and_its_kind() {
        let tree = file().tree();
        let (e, node) = tree.value.entries().find(|(k, _)| k.name == "e").unwrap();
        // `e` is only implied by `[[e.f]]`: it takes its key's place.
        assert_eq!(node.span, e.span);
        let Value::Table(f) = &node.value else { panic!("e is a table") };
        let Value::Array(items) = &f[0].1.value else { panic!("f is an array") };
        let kinds: Vec<&str> = items.iter().flat_map(|t| t.value.entries().map(|(_, v)| v.value.kind())).collect();
        assert_eq!(kinds, ["a boolean", "a datetime"]);
    }

    #[test]
    fn span_of_finds_values_and_headers_but_not_implied_tables() {
        let toml = file();
        assert_eq!(toml.span_of(&["a", "x"]).map(|s| line_col(TEXT, s.start)), Some((2, 5)));
        assert_eq!(toml.span_of(&["a"]).map(|s| line_col(TEXT, s.start)), Some((1, 1)));
        assert_eq!(toml.span_of(&["e"]), None);
        assert_eq!(toml.span_of(&["nothing"]), None);
    }

    #[test]
    fn serde_errors_carry_position_and_field() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct A {
            x: String,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            a: A,
        }
        let toml = TomlFile::parse("f.toml", "[a]\nx = 1\n", "test").unwrap();
        let error = toml.deserialize::<Doc>().unwrap_err();
        assert_eq!(error.to_string(), "f.toml:2:5: a.x: invalid type: integer `1`, expected a string");
        let toml = TomlFile::parse("f.toml", "[a]\nx = \"1\"\ny = 2\n", "test").unwrap();
        let error = toml.deserialize::<Doc>().unwrap_err();
        assert_eq!(error.to_string(), "f.toml:3:1: a.y: unknown key `y`, expected `x`");
    }

    #[test]
    fn syntax_errors_are_about_the_whole_file_on_one_line() {
        let error = TomlFile::parse("f.toml", "[a\nx = 1\n", "test").err().unwrap();
        assert_eq!((error.line, error.column, error.field.as_str()), (1, 3, "test"));
        assert!(!error.message.contains('\n'), "{}", error.message);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_col("é = 1\nñé = 2", 11), (2, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
