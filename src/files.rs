//! Reading the files a user writes (plans, themes, keymaps, the config)
//! and journals: bytes that are not UTF-8 are a mistake like any other,
//! named by line and column rather than a bare "stream did not contain
//! valid UTF-8".

use flightdeck_core::{line_col, TomlError};
use std::path::Path;

#[derive(Debug)]
pub enum TextError {
    Io(std::io::Error),
    /// The first byte that is not UTF-8, 1-based.
    NotUtf8 {
        line: usize,
        column: usize,
    },
}

impl TextError {
    /// The error as every user file reports its mistakes,
    /// `file:line:column: kind: message` (`kind`: plan, config, theme, keymap).
    pub fn at(&self, file: &str, kind: &str) -> TomlError {
        match self {
            TextError::Io(e) => TomlError::whole_file(file, kind, format!("cannot read the file: {e}")),
            TextError::NotUtf8 { line, column } => TomlError {
                file: file.to_owned(),
                line: *line,
                column: *column,
                field: kind.to_owned(),
                message: NOT_UTF8.to_owned(),
            },
        }
    }
}

/// What callers append after `file:line:column: `.
pub const NOT_UTF8: &str = "not UTF-8 text; save the file as UTF-8";

pub fn read_text(path: &Path) -> Result<String, TextError> {
    let bytes = std::fs::read(path).map_err(TextError::Io)?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let (line, column) = line_col(&before, valid);
        TextError::NotUtf8 { line, column }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_placed_like_any_other_mistake() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, b"[rollout]\nn\xc3\xa9 = \xff\n").unwrap();
        let error = read_text(&path).unwrap_err().at("plan.toml", "plan");
        assert_eq!(error.to_string(), "plan.toml:2:6: plan: not UTF-8 text; save the file as UTF-8");
        let missing = read_text(&dir.path().join("none.toml")).unwrap_err().at("none.toml", "keymap");
        assert!(missing.to_string().starts_with("none.toml:1:1: keymap: cannot read the file: "), "{missing}");
    }
}
