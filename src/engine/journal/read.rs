//! Reading a journal back, strictly: a resume must rebuild exactly what
//! happened, so anything that does not follow from an append (a line that
//! is not a record, a sequence number out of order, time going backwards,
//! a first record that is not the rollout's start) is refused with its
//! line. Blank lines are harmless and skipped.
//!
//! The one thing a crash mid-write can leave is a cut last line: a record
//! is written as one `write` of the line and its newline, so a crash leaves
//! a prefix of it, never a newline without the whole line before it. What
//! follows the last newline is therefore never a record that was synced
//! (nothing acted on it) and is always dropped, whatever it holds, even a
//! record that lacks only its newline; a resume truncates the file to the
//! end of its last whole record before appending. A line that ends with a
//! newline and is not a record is damage, refused every time.
//!
//! A journal is created whole (its header written to a temporary file,
//! synced and renamed into place), so an empty journal or one whose header
//! is cut short is no crash's doing either: it is refused too, never taken
//! for "nothing happened yet" (a rolled-back canary would be run again).

use super::{Header, JournalError, Record};
use crate::files::TextError;
use flightdeck_core::rollout::Event;
use std::io::ErrorKind;
use std::path::Path;

/// The most a journal may hold: 64 MiB, about two months of a rollout
/// with 1 m windows at 100 req/s (1.1 MB a day, see `tests/journal_size.rs`).
pub const JOURNAL_LIMIT: u64 = 64 << 20;

/// A journal as read, not yet replayed.
pub(super) struct Parsed {
    pub header: Header,
    /// Records with their 1-based line numbers.
    pub records: Vec<(usize, Record)>,
    /// Bytes up to the end of the last whole record (or of the header).
    pub valid_len: u64,
    /// The line number of a cut last line that was dropped.
    pub cut: Option<usize>,
    /// Records a deposed Lease holder wrote after a newer holder's record
    /// (their lines, and why): refused, never replayed (see [`super::fence`]).
    pub fenced_out: Vec<(usize, String)>,
}

/// Reads and checks the journal at `path`.
pub(super) fn read(path: &Path) -> Result<Parsed, JournalError> {
    let shown = path.display().to_string();
    match crate::files::read_text_within(path, JOURNAL_LIMIT) {
        Ok(text) => parse(&shown, &text),
        // Not a regular file, or too large: not a journal flightdeck wrote.
        Err(TextError::Io(e)) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::FileTooLarge) => {
            Err(JournalError::NotAJournal { path: shown, reason: e.to_string() })
        }
        // A symbolic link to nothing: someone's mistake to settle, not a failure of flightdeck.
        Err(TextError::Io(e)) if e.kind() == ErrorKind::NotFound => match std::fs::read_link(path) {
            Ok(target) => {
                let reason = format!("a symbolic link to {}, which does not exist", target.display());
                Err(JournalError::NotAJournal { path: shown, reason })
            }
            Err(_) => Err(super::io(path, e)),
        },
        Err(TextError::Io(e)) => Err(super::io(path, e)),
        Err(TextError::NotUtf8 { line, column }) => {
            Err(JournalError::Corrupt { path: shown, line, message: format!("column {column}: not UTF-8 text") })
        }
    }
}

pub(super) fn parse(shown: &str, text: &str) -> Result<Parsed, JournalError> {
    let corrupt = |line: usize, message: String| JournalError::Corrupt { path: shown.to_owned(), line, message };
    // Whole lines only: what follows the last newline is a cut line (or blanks).
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    let (body, tail) = text.split_at(whole);
    let tail_line = body.bytes().filter(|b| *b == b'\n').count() + 1;
    let cut = (!tail.trim().is_empty()).then_some(tail_line);
    let mut offset = 0;
    let mut lines = body
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            offset += l.len();
            (i + 1, l.trim_end_matches('\n'), offset as u64)
        })
        .filter(|(_, l, _)| !l.trim().is_empty());
    let Some((first, header, mut valid_len)) = lines.next() else {
        let message = if cut.is_some() {
            "the journal header is cut short: this is not a journal flightdeck finished writing".to_owned()
        } else {
            "empty: no journal header".to_owned()
        };
        return Err(corrupt(cut.unwrap_or(1), message));
    };
    let header: Header =
        serde_json::from_str(header).map_err(|e| corrupt(first, format!("not a journal header ({})", what(&e))))?;
    if header.journal != super::FORMAT && header.journal != 1 {
        let message = format!("journal format {} (this flightdeck reads format {})", header.journal, super::FORMAT);
        return Err(corrupt(first, message));
    }
    let mut records: Vec<(usize, Record)> = Vec::new();
    let mut fenced_out = Vec::new();
    // The latest Lease term seen so far, and its first line.
    let mut newest: Option<(usize, super::Term)> = None;
    for (n, line, end) in lines {
        let record: Record =
            super::pack::parse_record(line).map_err(|e| corrupt(n, format!("not a journal record ({})", what(&e))))?;
        // A term ends before the next begins (the fence): a record of an
        // older term after one of a newer term was written by a holder
        // that had lost the Lease, and nothing it led to was carried out
        // by the rollout's driver. Its sequence number is its own term's.
        if let (Some(old), Some((l, new))) = (&record.lease, &newest) {
            if old.transitions < new.transitions {
                let why = format!("written by {old} after {new} took the lease (line {l}): refused, not replayed");
                fenced_out.push((n, why));
                valid_len = end;
                continue;
            }
        }
        let previous = records.last().map(|(line, r)| (line, r));
        if previous.is_none() && !matches!(record.event, Event::Start) {
            let message = "the first record is not the rollout's start (every run journals its start first)";
            return Err(corrupt(n, message.to_owned()));
        }
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
        if let Some(term) = record.lease.as_ref().filter(|t| newest.as_ref().is_none_or(|(_, n)| n != *t)) {
            newest = Some((n, term.clone()));
        }
        records.push((n, record));
        valid_len = end;
    }
    Ok(Parsed { header, records, valid_len, cut, fenced_out })
}

/// A JSON error without serde's "at line 1 column N" (the line is the file's).
fn what(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    format!("column {}: {}", e.column(), text.strip_suffix(&position).unwrap_or(&text))
}
