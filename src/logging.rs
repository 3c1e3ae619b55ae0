//! Logs go to a daily file in the data dir, never to the terminal the
//! cockpit owns. Keep the returned guard alive for the whole run, or the
//! last lines are lost.
//!
//! Logging never stops the program: when the log folder cannot be made or
//! written, flightdeck runs without a log file and says so once on stderr
//! (before the cockpit takes the terminal).

use std::path::Path;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

pub fn init() -> Option<WorkerGuard> {
    let dir = crate::paths::log_dir();
    match open(&dir) {
        Ok(appender) => {
            // 8,192 lines queued for the writer thread (tracing-appender's default,
            // 128,000, is 4 MB allocated and touched up front: a third of
            // the cockpit's resident memory).
            let (writer, guard) = NonBlockingBuilder::default().buffered_lines_limit(8192).finish(appender);
            let filter = EnvFilter::try_from_env("FLIGHTDECK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
            let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
            subscriber.try_init().ok()?;
            Some(guard)
        }
        Err(e) => {
            // Not even this line must stop the run (stderr on a full disk).
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "warning: no log file: {}: {e}; running without one", dir.display());
            None
        }
    }
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
