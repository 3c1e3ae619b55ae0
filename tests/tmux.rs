//! The cockpit in a real terminal: `flightdeck demo` in tmux at 120×40,
//! driven with send-keys and read back with capture-pane; and after every
//! way it can end (q, SIGTERM, SIGINT, SIGHUP, SIGQUIT, a panic), the
//! terminal as it was: `stty -a` unchanged, no alternate screen, no mouse
//! tracking, the cursor shown. `scripts/setup` installs tmux.

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

    /// Types `line` as it is, then Enter.
    fn type_line(&self, line: &str) {
        for args in [["-l", line], ["Enter", ""]] {
            let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
            let ok = Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "fd"]).args(args).status();
            assert!(ok.unwrap().success());
        }
    }

    /// A tmux format about the pane, e.g. `#{alternate_on}`.
    fn pane(&self, format: &str) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket, "display", "-p", "-t", "fd", format]).output();
        String::from_utf8_lossy(&out.unwrap().stdout).trim().to_owned()
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

/// Waits for `path` to hold a whole line.
fn wait_for_file(path: &std::path::Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => return text,
            _ => assert!(start.elapsed() < limit, "waited {limit:?} for {}", path.display()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid of the shell's foreground child (the cockpit).
fn cockpit_pid(t: &Tmux) -> String {
    let shell = t.pane("#{pane_pid}");
    let children = format!("/proc/{shell}/task/{shell}/children");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            return pid.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no cockpit under shell {shell}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the cockpit from a shell in tmux, ends it by `end` (a key, a
/// signal name for `kill -s`, or "panic"), and checks the exit code and
/// that the terminal is as it was before.
fn ends_with_the_terminal_as_it_was(end: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let t = Tmux::start("bash --norc --noprofile");
    let panic = if end == "panic" { "FLIGHTDECK_PANIC_IN_COCKPIT=1 " } else { "" };
    t.type_line(&format!(
        "cd {} && stty -a > before; {panic}FLIGHTDECK_DATA_DIR=data FLIGHTDECK_CONFIG_DIR=config {} demo --speed 60; \
         echo $? > code; stty -a > after",
        dir.path().display(),
        env!("CARGO_BIN_EXE_flightdeck")
    ));
    if end != "panic" {
        t.wait_for(&["Rollouts", "Events"], Duration::from_secs(10));
        assert_eq!(t.pane("#{alternate_on} #{mouse_any_flag}"), "1 1", "the cockpit took the terminal");
        match end {
            "q" => t.keys(&["q"]),
            signal => {
                let pid = cockpit_pid(&t);
                assert!(Command::new("kill").args(["-s", signal, &pid]).status().unwrap().success());
            }
        }
    }
    let exit = wait_for_file(&dir.path().join("code"), Duration::from_secs(10));
    assert_eq!(exit.trim(), code.to_string(), "exit code after {end}; screen:\n{}", t.screen());
    let after = wait_for_file(&dir.path().join("after"), Duration::from_secs(5));
    let before = std::fs::read_to_string(dir.path().join("before")).unwrap();
    assert_eq!(after, before, "stty -a after {end}");
    let state =
        "#{alternate_on} #{mouse_any_flag} #{mouse_button_flag} #{mouse_all_flag} #{mouse_sgr_flag} #{cursor_flag}";
    assert_eq!(t.pane(state), "0 0 0 0 0 1", "alternate screen, mouse tracking off, cursor shown after {end}");
}

#[test]
fn q_restores_the_terminal() {
    ends_with_the_terminal_as_it_was("q", 0);
}

#[test]
fn sigterm_restores_the_terminal_and_exits_143() {
    ends_with_the_terminal_as_it_was("TERM", 143);
}

#[test]
fn sigint_restores_the_terminal_and_exits_130() {
    ends_with_the_terminal_as_it_was("INT", 130);
}

#[test]
fn sighup_restores_the_terminal_and_exits_129() {
    ends_with_the_terminal_as_it_was("HUP", 129);
}

#[test]
fn sigquit_restores_the_terminal_and_exits_131() {
    ends_with_the_terminal_as_it_was("QUIT", 131);
}

#[test]
fn a_panic_restores_the_terminal_and_exits_101() {
    ends_with_the_terminal_as_it_was("panic", 101);
}
