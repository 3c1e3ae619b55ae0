//! A real terminal for the cockpit: a tmux server of the test's own
//! (tests run in parallel), driven with send-keys and read back with
//! capture-pane. `scripts/setup` installs tmux.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `cmd` in a 120×40 terminal.
    pub fn start(cmd: &str) -> Tmux {
        Tmux::sized(cmd, 120, 40)
    }

    /// `cmd` in a `width`×`height` terminal.
    pub fn sized(cmd: &str, width: u16, height: u16) -> Tmux {
        static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("flightdeck-test-{}-{n}", std::process::id());
        let (w, h) = (width.to_string(), height.to_string());
        let args = ["-L", &socket, "new-session", "-d", "-s", "fd", "-x", &w, "-y", &h, cmd];
        let status = Command::new("tmux").args(args).status().expect("tmux is installed (scripts/setup installs it)");
        assert!(status.success());
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) {
        let ok = Command::new("tmux").args(["-L", &self.socket]).args(args).status().unwrap();
        assert!(ok.success(), "tmux {args:?}");
    }

    fn output(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Each key (tmux key names: "Enter", "C-c", "q"), a beat apart as a person types.
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "fd", k]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Types `line` as it is, then Enter.
    pub fn type_line(&self, line: &str) {
        self.tmux(&["send-keys", "-t", "fd", "-l", line]);
        self.tmux(&["send-keys", "-t", "fd", "Enter"]);
    }

    pub fn resize(&self, width: u16, height: u16) {
        self.tmux(&["resize-window", "-t", "fd", "-x", &width.to_string(), "-y", &height.to_string()]);
    }

    /// A tmux format about the pane, e.g. `#{alternate_on}`.
    pub fn pane(&self, format: &str) -> String {
        self.output(&["display", "-p", "-t", "fd", format]).trim().to_owned()
    }

    pub fn screen(&self) -> String {
        self.output(&["capture-pane", "-p", "-t", "fd"])
    }

    /// The screen with its colours as escape sequences.
    pub fn coloured(&self) -> String {
        self.output(&["capture-pane", "-p", "-e", "-t", "fd"])
    }

    /// Waits (up to 20 s) until every needle is on screen; returns the screen.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        self.wait_within(needles, Duration::from_secs(20)).1
    }

    /// Waits up to `limit` until every needle is on screen; returns how long
    /// it took and the screen.
    pub fn wait_within(&self, needles: &[&str], limit: Duration) -> (Duration, String) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return (start.elapsed(), screen);
            }
            assert!(start.elapsed() < limit, "waited {limit:?} for {needles:?}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}
