//! Start-up as a hostile user tries it: no terminal, unwritable logs,
//! unknown names, extreme speeds. Nothing here may panic (exit 101).

mod support;

use std::process::{Command, Stdio};
use support::cli::{flightdeck, isolated, stderr};

const CANARY: &str = "examples/plans/canary.toml";

#[test]
fn unwritable_logs_warn_once_and_every_command_still_runs() {
    let data = tempfile::tempdir().unwrap();
    // The log file's place is taken by a folder (root ignores permissions):
    // yesterday's, today's and tomorrow's, so midnight UTC cannot slip by.
    let logs = data.path().join("logs");
    let day = 86_400;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for t in [now - day, now, now + day] {
        std::fs::create_dir_all(logs.join(format!("flightdeck.log.{}", utc_date(t)))).unwrap();
    }
    let check = flightdeck(data.path(), &["check", CANARY]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_eq!(stderr(&check).matches("warning: no log file").count(), 1, "{}", stderr(&check));
    let run = flightdeck(data.path(), &["run", CANARY, "--headless", "--speed", "20000"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));

    // A file where the folder should be.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("logs"), "").unwrap();
    let check = flightdeck(other.path(), &["check", CANARY]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(stderr(&check).starts_with("warning: no log file: "), "{}", stderr(&check));
}

/// `YYYY-MM-DD` of a Unix time (the log file's suffix).
fn utc_date(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
}

#[test]
fn without_a_terminal_the_cockpit_says_so_and_exits_2() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &["demo"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out), "flightdeck needs a terminal; use --headless\n");
}

#[test]
fn json_implies_headless() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &["run", CANARY, "--json", "--speed", "20000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned).unwrap_or_default();
    let first: serde_json::Value = serde_json::from_str(&first).expect("JSON lines on stdout");
    assert_eq!(first["type"], "started");
}

#[test]
fn unknown_theme_or_keymap_names_the_known_ones() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &["run", CANARY, "--headless", "--speed", "20000", "--theme", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let known = "no theme named nosuch; known: colorblind, default, high-contrast, light, mono, prod, staging";
    assert!(stderr(&out).starts_with(known), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing ran");
    let out = flightdeck(data.path(), &["demo", "--keymap", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out), "no keymap named nosuch; known: default, vim\n");
}

/// However fast simulated time runs, a stage decides on every window of
/// its bake: 15 one-minute windows per 15-minute stage of the canary plan.
#[test]
fn a_million_times_faster_skips_no_window() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &["run", CANARY, "--headless", "--json", "--speed", "1e6"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut per_stage = [0; 3];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["type"] == "verdict" {
            per_stage[event["stage"].as_u64().unwrap() as usize - 1] += 1;
        }
    }
    assert_eq!(per_stage, [15, 15, 15]);
}

/// Headless, a signal stops the run the same way: a line on stderr and
/// 128 + the signal's number; the journal resumes it.
#[test]
fn headless_runs_stop_on_sigterm_with_143() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let mut child = isolated(data.path())
        .args(["run", CANARY, "--headless", "--json", "--speed", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains(r#""type":"started""#));
    let kill = Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(stderr(&out), "stopped by SIGTERM; run the same command again to resume from the journal\n");
}

/// `run --help` and the shell completions offer the names a flag takes:
/// the simulator's scenarios, the shipped themes and keymaps.
#[test]
fn help_and_completions_offer_scenario_theme_and_keymap_names() {
    let data = tempfile::tempdir().unwrap();
    let help = String::from_utf8_lossy(&flightdeck(data.path(), &["run", "--help"]).stdout).into_owned();
    for name in ["bad-canary", "stuck-backend", "high-contrast", "colorblind", "vim"] {
        assert!(help.contains(name), "run --help does not offer {name}:\n{help}");
    }
    let bash = String::from_utf8_lossy(&flightdeck(data.path(), &["completions", "bash"]).stdout).into_owned();
    assert!(bash.contains("healthy bad-canary slow-canary flaky-metrics stuck-backend"), "no scenario completions");
    assert!(bash.contains("colorblind default high-contrast light mono prod staging"), "no theme completions");
}
