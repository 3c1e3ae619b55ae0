//! The access log in the `flightdeck` format: lines read from the right,
//! tallied per version, and a cursor that follows appends, truncation and
//! rotation.

use flightdeck_core::analysis::{LatencyHistogram, VersionWindow};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A sample reads at most this much new log; older lines of a bigger jump are skipped.
const MAX_LOG_READ: u64 = 64 * 1024 * 1024;

/// A position in the access log: the file (inode) and the byte after the last whole line read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogCursor {
    inode: u64,
    offset: u64,
}

/// What one access-log line says.
#[derive(Debug, Clone, PartialEq)]
struct LogLine<'a> {
    /// The address that produced the response (the last one tried).
    upstream: &'a str,
    status: u16,
    request_ms: f64,
}

/// `$upstream_addr $status $request_time`, read from the right; `$upstream_addr`
/// may list several tries ("a:1, b:2" or "a:1 : b:2").
fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let mut words = line.split_whitespace().rev();
    let request_time: f64 = words.next()?.parse().ok()?;
    let status: u16 = words.next()?.parse().ok()?;
    let upstream = words.map(|w| w.trim_end_matches(',')).find(|w| *w != ":" && !w.is_empty())?;
    if upstream == "-" {
        return None;
    }
    Some(LogLine { upstream, status, request_ms: request_time * 1000.0 })
}

/// Requests, errors and latencies of one version in one window.
#[derive(Debug, Default)]
pub(super) struct Tally {
    requests: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

impl Tally {
    fn add(&mut self, line: &LogLine) {
        self.requests += 1;
        if (500..600).contains(&line.status) {
            self.errors += 1;
        }
        if line.request_ms.is_finite() && line.request_ms >= 0.0 {
            self.latencies_ms.push(line.request_ms);
        }
    }

    pub(super) fn window(mut self) -> VersionWindow {
        self.latencies_ms.sort_by(f64::total_cmp);
        let all = &self.latencies_ms;
        let q = |p: f64| all.get(((all.len() as f64 - 1.0) * p).round() as usize).copied();
        let (p50_ms, p95_ms, p99_ms) = (q(0.50), q(0.95), q(0.99));
        VersionWindow {
            requests: self.requests,
            errors: self.errors,
            p50_ms,
            p95_ms,
            p99_ms,
            // Every request's latency, in a histogram: the evidence the
            // analysis needs in a few hundred counts, not every sample.
            latency: LatencyHistogram::from_samples(&self.latencies_ms),
            ..VersionWindow::default()
        }
    }
}

/// Tallies the lines of `text` by version.
pub(super) fn tally(text: &str, stable: &[String], canary: &[String]) -> (Tally, Tally) {
    let (mut s, mut c) = (Tally::default(), Tally::default());
    for line in text.lines().filter_map(parse_line) {
        if stable.iter().any(|a| a == line.upstream) {
            s.add(&line);
        } else if canary.iter().any(|a| a == line.upstream) {
            c.add(&line);
        }
    }
    (s, c)
}

/// The whole lines appended to `path` since `cursor`, and the new cursor.
/// Without a cursor (the first reading) it only marks the end: `None` text.
pub(super) fn read_new_lines(path: &Path, cursor: Option<LogCursor>) -> std::io::Result<(LogCursor, Option<String>)> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let (inode, len) = (meta.ino(), meta.len());
    let from = match cursor {
        None => return Ok((LogCursor { inode, offset: len }, None)),
        // Same file, not shorter: carry on. Rotated (new inode) or truncated: from the top.
        Some(c) if c.inode == inode && c.offset <= len => c.offset,
        Some(_) => 0,
    };
    let start = from.max(len.saturating_sub(MAX_LOG_READ));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut bytes)?;
    // A line NGINX is still writing stays for the next sample.
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut text = String::from_utf8_lossy(&bytes[..whole]).into_owned();
    if start > from {
        // Skipped ahead: the first line is a fragment.
        text = text.split_once('\n').map_or(String::new(), |(_, rest)| rest.to_string());
    }
    Ok((LogCursor { inode, offset: start + whole as u64 }, Some(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::proxy::nginx::upstream::literal_addresses;

    #[test]
    fn log_lines_are_read_from_the_right() {
        let line = parse_line("127.0.0.1:8001 200 0.004").unwrap();
        assert_eq!((line.upstream, line.status, line.request_ms), ("127.0.0.1:8001", 200, 4.0));
        assert_eq!(parse_line("10.0.0.1:80, 10.0.0.2:80 502 1.5").unwrap().upstream, "10.0.0.2:80");
        assert_eq!(parse_line("10.0.0.1:80 : 10.0.0.2:80 200 0.1").unwrap().upstream, "10.0.0.2:80");
        assert_eq!(parse_line("192.168.1.9 10.0.0.1:80 200 0.1").unwrap().upstream, "10.0.0.1:80");
        assert_eq!(parse_line("- 404 0.000"), None);
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn tallies_count_errors_and_latency_per_version() {
        let stable = literal_addresses("10.0.0.1:80");
        let canary = literal_addresses("10.0.0.2");
        let log = "10.0.0.1:80 200 0.010\n10.0.0.1:80 200 0.020\n10.0.0.2:80 500 0.100\n\
                   10.0.0.2:80 200 0.050\napp 502 0.000\n10.0.0.9:80 200 0.001\n";
        let (s, c) = tally(log, &stable, &canary);
        let (s, c) = (s.window(), c.window());
        assert_eq!((s.requests, s.errors, s.p50_ms), (2, 0, Some(20.0)));
        assert_eq!((c.requests, c.errors, c.p99_ms), (2, 1, Some(100.0)));
        assert_eq!((c.latency.total(), c.latency.count_above(75.0)), (2, 1.0));
        let empty = Tally::default().window();
        assert_eq!((empty.requests, empty.p50_ms), (0, None));
    }

    #[test]
    fn the_log_cursor_follows_appends_truncation_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "old 200 0.1\n").unwrap();
        let (c, text) = read_new_lines(&path, None).unwrap();
        assert_eq!((c.offset, text), (12, None));
        std::fs::write(&path, "old 200 0.1\nnew 200 0.1\nhal").unwrap();
        let (c, text) = read_new_lines(&path, Some(c)).unwrap();
        assert_eq!((c.offset, text.as_deref()), (24, Some("new 200 0.1\n")));
        std::fs::write(&path, "t 200 0.1\n").unwrap();
        let (c, text) = read_new_lines(&path, Some(c)).unwrap();
        assert_eq!(text.as_deref(), Some("t 200 0.1\n"), "shorter than the cursor: from the top");
        let rotated = dir.path().join("access.log.new");
        std::fs::write(&rotated, "r 200 0.1\nr 200 0.1\n").unwrap();
        std::fs::rename(&rotated, &path).unwrap();
        let (_, text) = read_new_lines(&path, Some(c)).unwrap();
        assert_eq!(text.as_deref(), Some("r 200 0.1\nr 200 0.1\n"), "a new inode: from the top");
    }
}
