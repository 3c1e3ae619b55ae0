//! The cockpit in a real terminal: `flightdeck demo` in tmux at 120×40,
//! driven with send-keys and read back with capture-pane.
//! `scripts/setup` installs tmux.

use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let socket = format!("flightdeck-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-s", "fd", "-x", "120", "-y", "40", cmd])
            .status()
            .expect("tmux is installed (scripts/setup installs it)");
        assert!(status.success());
        Tmux { socket }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "fd", k]).status().unwrap();
            assert!(ok.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", "fd"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until every needle is on screen; returns how long it took.
    fn wait_for(&self, needles: &[&str], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return start.elapsed();
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

#[test]
fn demo_in_a_real_terminal_pauses_promotes_aborts_and_catches_the_bad_canary() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let cmd = format!(
        "env FLIGHTDECK_DATA_DIR={} FLIGHTDECK_CONFIG_DIR={} USER=tester COLORTERM=truecolor {} demo --speed 60",
        data.path().display(),
        config.path().display(),
        env!("CARGO_BIN_EXE_flightdeck")
    );
    let t = Tmux::start(&cmd);
    let shown = t.wait_for(
        &["Rollouts", "Stages", "Canary analysis", "Error budget", "Events", "Next:"],
        Duration::from_secs(10),
    );
    println!("every pane on screen after {shown:?}");

    t.keys(&["/", "c", "h", "e", "c", "k", "o", "u", "t", "Enter"]);
    t.wait_for(&["checkout-api  canary"], Duration::from_secs(3));

    t.keys(&["p"]);
    t.wait_for(&["paused by tester"], Duration::from_secs(3));
    t.keys(&["p"]);
    t.wait_for(&["▶ progressing"], Duration::from_secs(3));

    t.keys(&["n"]);
    t.wait_for(&["Stage 2/4", "promote sent"], Duration::from_secs(3));

    t.keys(&["a"]);
    t.wait_for(&["Abort checkout-api?", "→ 0 % on sim prod-eu-1"], Duration::from_secs(3));
    t.keys(&["y"]);
    t.wait_for(&["aborted by tester"], Duration::from_secs(3));

    // The bad canary goes bad at 10 % (after its 10 minute first stage) and
    // analysis rolls it back by itself.
    t.keys(&["/", "p", "a", "y", "m", "e", "n", "t", "s", "Enter"]);
    let caught = t.wait_for(&["payments", "rolled back", "analysis failed"], Duration::from_secs(40));
    println!("bad canary rolled back on screen after {caught:?}");

    t.keys(&["q"]);
}
