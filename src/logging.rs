//! Logs go to a daily file in the data dir, never to the terminal the
//! cockpit owns. Keep the returned guard alive for the whole run, or the
//! last lines are lost.
//!
//! Logging never stops the program: when the log folder cannot be made or
//! written, flightdeck runs without a log file and says so once on stderr
//! (before the cockpit takes the terminal).

use std::path::Path;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

pub fn init() -> Option<WorkerGuard> {
    let dir = crate::paths::log_dir();
    match open(&dir) {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let filter = EnvFilter::try_from_env("FLIGHTDECK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
            let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
            subscriber.try_init().ok()?;
            Some(guard)
        }
        Err(e) => {
            eprintln!("warning: no log file: {}: {e}; running without one", dir.display());
            None
        }
    }
}

/// The daily log file, or why it cannot be written.
fn open(dir: &Path) -> Result<RollingFileAppender, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    // `rolling::daily` panics when the file cannot be created; the builder says why instead.
    let appender =
        RollingFileAppender::builder().rotation(Rotation::DAILY).filename_prefix("flightdeck.log").build(dir)?;
    Ok(appender)
}
