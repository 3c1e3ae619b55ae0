//! Reading the files a user writes (plans, themes, keymaps, the config)
//! and journals: bytes that are not UTF-8 are a mistake like any other,
//! named by line and column rather than a bare "stream did not contain
//! valid UTF-8".
//!
//! Every read is bounded and only regular files are read (a symlink is
//! followed to one): a plan that is a link to `/dev/zero` or a FIFO is
//! refused at once, naming what it is, instead of eating all memory or
//! waiting forever for a writer.

use flightdeck_core::{line_col, TomlError};
use std::io::{ErrorKind, Read};
use std::path::Path;

/// The most a file a person writes may hold (plans, the config, themes,
/// keymaps, authorized keys): 1 MiB, a thousand times the largest example.
pub const USER_FILE_LIMIT: u64 = 1 << 20;

#[derive(Debug)]
pub enum TextError {
    /// Cannot be read, also: not a regular file (`ErrorKind::InvalidInput`)
    /// or larger than the limit (`ErrorKind::FileTooLarge`).
    Io(std::io::Error),
    /// The first byte that is not UTF-8, 1-based.
    NotUtf8 { line: usize, column: usize },
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

/// A user file's text, at most [`USER_FILE_LIMIT`] bytes.
pub fn read_text(path: &Path) -> Result<String, TextError> {
    read_text_within(path, USER_FILE_LIMIT)
}

/// A file's text, at most `limit` bytes.
pub fn read_text_within(path: &Path, limit: u64) -> Result<String, TextError> {
    let bytes = read_bounded(path, limit).map_err(TextError::Io)?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let (line, column) = line_col(&before, valid);
        TextError::NotUtf8 { line, column }
    })
}

/// The bytes of the regular file at `path` (a symlink is followed), at
/// most `limit` of them. Anything else is refused without reading it or
/// waiting for it: a device, a FIFO, a socket, a directory, a file larger
/// than `limit` (also one that grows past it while read).
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: opening a FIFO must not wait for a writer (regular files ignore it).
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    // The file opened, not the path looked at before: nothing can be swapped in between.
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = file_type(&meta.file_type());
        return Err(std::io::Error::new(ErrorKind::InvalidInput, format!("not a regular file ({what})")));
    }
    let too_large = || {
        let message = format!("larger than {}, the most flightdeck reads from such a file", size(limit));
        std::io::Error::new(ErrorKind::FileTooLarge, message)
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// "a directory", "a character device" …
fn file_type(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// 1 MiB, 64 MiB, 512 KiB, 100 bytes.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
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

    #[test]
    fn only_regular_files_are_read_and_never_more_than_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("plan.toml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let error = read_text(&link).unwrap_err().at("plan.toml", "plan").to_string();
        assert_eq!(error, "plan.toml:1:1: plan: cannot read the file: not a regular file (a character device)");
        let error = read_text(dir.path()).unwrap_err().at("d", "theme").to_string();
        assert_eq!(error, "d:1:1: theme: cannot read the file: not a regular file (a directory)");
        // A FIFO nobody writes to is refused at once, not waited on.
        let fifo = dir.path().join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let error = read_text(&fifo).unwrap_err().at("f", "keymap").to_string();
        assert_eq!(error, "f:1:1: keymap: cannot read the file: not a regular file (a FIFO)");

        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; USER_FILE_LIMIT as usize + 1]).unwrap();
        let error = read_text(&big).unwrap_err().at("big.toml", "config").to_string();
        assert_eq!(
            error,
            "big.toml:1:1: config: cannot read the file: larger than 1 MiB, the most flightdeck reads from such a file"
        );
        std::fs::write(&big, vec![b'#'; USER_FILE_LIMIT as usize]).unwrap();
        assert_eq!(read_text(&big).unwrap().len(), USER_FILE_LIMIT as usize);
        assert_eq!(read_bounded(&big, 100).unwrap_err().kind(), ErrorKind::FileTooLarge);
    }
}
