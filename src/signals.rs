//! The signals that end a run cleanly rather than by their default action
//! (which would leave the cockpit's terminal raw): SIGTERM, SIGINT, SIGHUP
//! and SIGQUIT are caught, the run stops (its journal already holds every
//! record), the terminal is restored, and the process exits with 128 + the
//! signal's number, as the default action would have.
//!
//! `serve` takes SIGHUP as a reload instead (checked first, then applied
//! whole: see `service::plans`).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The first of [`Signals::ALL`] caught since [`Signals::catch`], set in
/// the signal handler itself: what the runtime has not passed on yet is
/// known here at once (see [`Signals::caught`]).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(signo: libc::c_int) {
    // Async-signal-safe: one atomic operation.
    let _ = CAUGHT.compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst);
}

pub struct Signals {
    caught: Vec<(i32, Signal)>,
}

impl Signals {
    pub const ALL: [(i32, &'static str); 4] =
        [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT"), (libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")];

    /// Starts catching; from here on these signals no longer kill the
    /// process. Needs the tokio runtime.
    pub fn catch() -> std::io::Result<Signals> {
        // Ours first: tokio's handler, installed next, calls it after its own.
        static NOTE: Once = Once::new();
        NOTE.call_once(|| {
            for (n, _) in Signals::ALL {
                // SAFETY: a zeroed sigaction (empty mask) whose handler only
                // does an atomic operation.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = note as extern "C" fn(libc::c_int) as usize;
                    action.sa_flags = libc::SA_RESTART;
                    libc::sigaction(n, &action, std::ptr::null_mut());
                }
            }
        });
        CAUGHT.store(0, Ordering::SeqCst);
        let mut caught = Vec::new();
        for (n, _) in Signals::ALL {
            caught.push((n, signal(SignalKind::from_raw(n))?));
        }
        Ok(Signals { caught })
    }

    /// A signal caught since [`Signals::catch`] (the first), even one the
    /// runtime has not delivered to [`Signals::next`] yet: for a start that
    /// runs synchronously (opening journals) to stop before anything acts.
    pub fn caught() -> Option<i32> {
        Some(CAUGHT.load(Ordering::SeqCst)).filter(|n| *n != 0)
    }

    /// Waits for the next signal; its number.
    pub async fn next(&mut self) -> i32 {
        let [(a, sa), (b, sb), (c, sc), (d, sd)] = &mut self.caught[..] else { unreachable!("four signals") };
        tokio::select! {
            _ = sa.recv() => *a,
            _ = sb.recv() => *b,
            _ = sc.recv() => *c,
            _ = sd.recv() => *d,
        }
    }

    /// "SIGTERM" for 15.
    pub fn name(signo: i32) -> &'static str {
        Signals::ALL.iter().find(|(n, _)| *n == signo).map_or("a signal", |(_, name)| name)
    }

    /// The exit code after `signo`: 128 + its number, as a shell reports it.
    pub fn exit_code(signo: i32) -> u8 {
        (128 + signo).clamp(0, 255) as u8
    }
}
