//! Logs go to a daily file in the data dir, never to the terminal the
//! cockpit owns. Keep the returned guard alive for the whole run, or the
//! last lines are lost.
//!
//! `serve` run as a service (its stderr not a terminal: systemd's journal,
//! a container's log) logs to stderr as well, one plain line per event
//! (RFC 3339 UTC time, level, target, message, `key=value` fields, no
//! colours), where the service manager already collects and rotates logs.
//!
//! Logging never stops the program: when the log folder cannot be made or
//! written, flightdeck runs without a log file and says so once on stderr
//! (before the cockpit takes the terminal).

use std::io::IsTerminal;
use std::path::Path;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

pub fn init() -> Option<WorkerGuard> {
    init_for(false)
}

/// [`init`]; for a service (`serve`) whose stderr is not a terminal, to
/// stderr as well ([`to_stderr`]).
pub fn init_for(service: bool) -> Option<WorkerGuard> {
    let stderr = to_stderr(service, std::io::stderr().is_terminal());
    let dir = crate::paths::log_dir();
    let file = match open(&dir) {
        Ok(appender) => Some(appender),
        Err(e) => {
            // Not even this line must stop the run (stderr on a full disk).
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "warning: no log file: {}: {e}; running without one", dir.display());
            None
        }
    };
    if file.is_none() && !stderr {
        return None;
    }
    // 8,192 lines queued for the writer thread (tracing-appender's default,
    // 128,000, is 4 MB allocated and touched up front: a third of
    // the cockpit's resident memory).
    let (writer, guard) = NonBlockingBuilder::default().buffered_lines_limit(8192).finish(Sinks { file, stderr });
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(writer).with_ansi(false);
    subscriber.try_init().ok()?;
    Some(guard)
}

/// The log file and, for a service, stderr. A write that fails is dropped:
/// a full disk or a closed stderr must not stop the writer thread (or,
/// through a panic, the process).
struct Sinks {
    file: Option<RollingFileAppender>,
    stderr: bool,
}

impl std::io::Write for Sinks {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if let Some(file) = self.file.as_mut() {
            let _ = file.write_all(line);
        }
        if self.stderr {
            let _ = std::io::stderr().write_all(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            let _ = file.flush();
        }
        Ok(())
    }
}

/// A service whose stderr is not a terminal (systemd's journal, a container's log) logs there too.
pub fn to_stderr(service: bool, stderr_is_terminal: bool) -> bool {
    service && !stderr_is_terminal
}

/// `FLIGHTDECK_LOG` (tracing's filter syntax), `info` by default.
fn filter() -> EnvFilter {
    EnvFilter::try_from_env("FLIGHTDECK_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The daily log file, or why it cannot be written.
fn open(dir: &Path) -> Result<RollingFileAppender, Box<dyn std::error::Error>> {
    // 0700 whatever the umask: the log names people, sessions and reasons.
    crate::paths::private_dir(dir)?;
    // `rolling::daily` panics when the file cannot be created; the builder says why instead.
    let appender =
        RollingFileAppender::builder().rotation(Rotation::DAILY).filename_prefix("flightdeck.log").build(dir)?;
    Ok(appender)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_service_off_a_terminal_logs_to_stderr() {
        assert!(super::to_stderr(true, false));
        assert!(!super::to_stderr(true, true), "a person at a terminal reads the cockpit's lines, not logs");
        assert!(!super::to_stderr(false, false), "run --headless keeps stderr for its own words");
    }
}
