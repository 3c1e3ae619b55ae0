//! Reading the files a user writes (plans, themes, keymaps, the config)
//! and journals: bytes that are not UTF-8 are a mistake like any other,
//! named by line and column rather than a bare "stream did not contain
//! valid UTF-8".

use flightdeck_core::line_col;
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
