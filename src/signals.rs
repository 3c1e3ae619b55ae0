//! The signals that end a run cleanly rather than by their default action
//! (which would leave the cockpit's terminal raw): SIGTERM, SIGINT, SIGHUP
//! and SIGQUIT are caught, the run stops (its journal already holds every
//! record), the terminal is restored, and the process exits with 128 + the
//! signal's number, as the default action would have.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    caught: Vec<(i32, Signal)>,
}

impl Signals {
    pub const ALL: [(i32, &'static str); 4] =
        [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT"), (libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")];

    /// Starts catching; from here on these signals no longer kill the
    /// process. Needs the tokio runtime.
    pub fn catch() -> std::io::Result<Signals> {
        let mut caught = Vec::new();
        for (n, _) in Signals::ALL {
            caught.push((n, signal(SignalKind::from_raw(n))?));
        }
        Ok(Signals { caught })
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
