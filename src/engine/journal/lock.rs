//! One writer per journal: an exclusive advisory lock (`flock`) on a file
//! beside it. The OS drops the lock when the holder exits, however it
//! exits, so a crash never leaves a stale lock to clean up. The file keeps
//! who took it (pid, host, since), for the message a second run shows.

use super::{io, JournalError};
use serde::{Deserialize, Serialize};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Held while the journal is open; dropping it releases the lock.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
}

#[derive(Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    /// Seconds since the Unix epoch.
    since: u64,
}

impl JournalLock {
    /// Takes the lock at `path` for `journal`, or says who holds it.
    pub fn take(path: &Path, journal: &Path) -> Result<JournalLock, JournalError> {
        // Never truncated on open: the holder's note must survive a refused run.
        let mut file = crate::paths::private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut note = String::new();
                let _ = file.read_to_string(&mut note);
                return Err(JournalError::InUse { path: journal.display().to_string(), holder: describe(&note) });
            }
            Err(TryLockError::Error(e)) => return Err(io(path, e)),
        }
        let since = crate::clock::wall_ms() / 1000;
        let holder = Holder { pid: std::process::id(), host: hostname(), since };
        let note = serde_json::to_string(&holder).expect("a holder serializes");
        let written = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| writeln!(file, "{note}"));
        written.map_err(|e| io(path, e))?;
        Ok(JournalLock { _file: file })
    }
}

/// "flightdeck pid 4242 on host web-1 since 2025-01-31 09:15:02 UTC".
fn describe(note: &str) -> String {
    match serde_json::from_str::<Holder>(note.trim()) {
        Ok(h) => format!("flightdeck pid {} on host {} since {}", h.pid, h.host, utc(h.since)),
        // Taken a moment ago, not yet written.
        Err(_) => "another flightdeck (starting up)".to_owned(),
    }
}

/// This host's name (a pod's name in Kubernetes).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, Howard Hinnant's algorithm).
pub(super) fn utc(secs: u64) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_735_689_599), "2024-12-31 23:59:59 UTC");
    }

    #[test]
    fn a_second_taker_is_refused_with_the_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let (path, journal) = (dir.path().join("j.lock"), dir.path().join("j.jsonl"));
        let first = JournalLock::take(&path, &journal).unwrap();
        let err = JournalLock::take(&path, &journal).unwrap_err().to_string();
        let pid = format!("in use by flightdeck pid {} on host ", std::process::id());
        assert!(err.starts_with(&format!("{}: {pid}", journal.display())), "{err}");
        assert!(err.contains(" UTC; one run per plan"), "{err}");
        drop(first);
        JournalLock::take(&path, &journal).expect("free again");
    }
}
