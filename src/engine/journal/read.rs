//! Reading a journal back, strictly: a resume must rebuild exactly what
//! happened, so anything that does not follow from an append (a line that
//! is not a record, a sequence number out of order, time going backwards)
//! is refused with its line. Blank lines are harmless and skipped; a cut
//! last line is what a crash mid-write leaves, and is dropped.

use super::{Header, JournalError, Record};
use crate::files::TextError;
use std::path::Path;

/// A journal as read, not yet replayed.
pub(super) struct Parsed {
    pub header: Header,
    /// Records with their 1-based line numbers.
    pub records: Vec<(usize, Record)>,
    /// Bytes up to the end of the last complete line.
    pub valid_len: u64,
    /// The line number of a cut last line that was dropped.
    pub cut: Option<usize>,
}

/// Reads and checks the journal at `path`; `None` when it holds nothing
/// (empty, or a header cut short by a crash before its first newline).
pub(super) fn read(path: &Path) -> Result<Option<Parsed>, JournalError> {
    let shown = path.display().to_string();
    match crate::files::read_text(path) {
        Ok(text) => parse(&shown, &text),
        Err(TextError::Io(e)) => Err(super::io(path, e)),
        Err(TextError::NotUtf8 { line, column }) => {
            Err(JournalError::Corrupt { path: shown, line, message: format!("column {column}: not UTF-8 text") })
        }
    }
}

pub(super) fn parse(shown: &str, text: &str) -> Result<Option<Parsed>, JournalError> {
    let corrupt = |line: usize, message: String| JournalError::Corrupt { path: shown.to_owned(), line, message };
    let valid_len = text.rfind('\n').map_or(0, |i| i as u64 + 1);
    let complete = text.ends_with('\n');
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let Some((first, header)) = lines.next() else { return Ok(None) };
    let header: Header = match serde_json::from_str(header) {
        Ok(h) => h,
        Err(_) if valid_len == 0 => return Ok(None),
        Err(e) => return Err(corrupt(first, format!("not a journal header ({})", what(&e)))),
    };
    if header.journal != super::FORMAT && header.journal != 1 {
        let message = format!("journal format {} (this flightdeck reads format {})", header.journal, super::FORMAT);
        return Err(corrupt(first, message));
    }
    let mut records: Vec<(usize, Record)> = Vec::new();
    let mut cut = None;
    let mut lines = lines.peekable();
    while let Some((n, line)) = lines.next() {
        let record: Record = match super::pack::parse_record(line) {
            Ok(r) => r,
            // The process died mid-write: the last line may be cut short.
            Err(_) if lines.peek().is_none() && !complete => {
                cut = Some(n);
                break;
            }
            Err(e) => return Err(corrupt(n, format!("not a journal record ({})", what(&e)))),
        };
        let previous = records.last().map(|(line, r)| (line, r));
        // No number follows u64::MAX: whatever comes after it is out of order.
        let expected = previous.map_or(Some(1), |(_, r)| r.seq.checked_add(1)).unwrap_or(u64::MAX);
        let after_max = previous.is_some_and(|(_, r)| r.seq == u64::MAX);
        if record.seq != expected || after_max {
            let was = previous.map_or("none before".to_owned(), |(l, r)| format!("line {l} has {}", r.seq));
            let problem =
                if record.seq < expected || after_max { "repeats or goes back" } else { "skips: records are missing" };
            return Err(corrupt(n, format!("sequence number {} {problem} (expected {expected}; {was})", record.seq)));
        }
        if let Some((l, r)) = previous.filter(|(_, r)| record.at < r.at) {
            let message = format!("time goes backwards: at {} ms, after {} ms on line {l}", record.at.0, r.at.0);
            return Err(corrupt(n, message));
        }
        records.push((n, record));
    }
    Ok(Some(Parsed { header, records, valid_len, cut }))
}

/// A JSON error without serde's "at line 1 column N" (the line is the file's).
fn what(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    format!("column {}: {}", e.column(), text.strip_suffix(&position).unwrap_or(&text))
}
