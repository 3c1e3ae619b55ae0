//! Output that cannot be written (stdout or stderr on a full disk) is an
//! error with the documented exit code, never a panic (101) or an abort
//! (134); a refusal keeps its own code even when it cannot be told.

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const CANARY: &str = "examples/plans/canary.toml";

fn full() -> Stdio {
    Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full"))
}

/// `flightdeck args…` with stdout and/or stderr on /dev/full.
fn run(args: &[&str], stdout_full: bool, stderr_full: bool) -> Output {
    let data = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(args)
        .env("FLIGHTDECK_DATA_DIR", data.path())
        .env("FLIGHTDECK_CONFIG_DIR", data.path())
        .stdin(Stdio::null())
        .stdout(if stdout_full { full() } else { Stdio::piped() })
        .stderr(if stderr_full { full() } else { Stdio::piped() })
        .output()
        .unwrap()
}

#[test]
fn a_full_stdout_is_an_error_exit_1_said_on_stderr() {
    let out = run(&["check", CANARY], true, false);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said, "flightdeck: failed printing to stdout: No space left on device (os error 28)\n");
    let out = run(&["completions", "bash"], true, false);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"));
}

#[test]
fn with_stdout_and_stderr_full_the_exit_code_still_says_what_happened() {
    // Nothing can be said: bad input is still 2, lost output 1.
    assert_eq!(run(&["check", "no-such-plan.toml"], true, true).status.code(), Some(2));
    assert_eq!(run(&["check", "no-such-plan.toml"], false, true).status.code(), Some(2));
    assert_eq!(run(&["check", CANARY], true, true).status.code(), Some(1));
}

#[test]
fn a_headless_run_keeps_its_exit_code_when_stderr_is_full() {
    // The last words (where the traffic is left) go to stderr; lost, the
    // run still says how it ended: 3 for a rollback, 0 for a promotion.
    let bad = ["run", CANARY, "--headless", "--json", "--speed", "20000", "--scenario", "bad-canary"];
    let out = run(&bad, false, true);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(&bad, true, true);
    assert_eq!(out.status.code(), Some(3));
    let healthy = ["run", CANARY, "--headless", "--speed", "20000", "--scenario", "healthy"];
    assert_eq!(run(&healthy, false, true).status.code(), Some(0));
}

#[test]
fn analyze_refuses_a_windows_file_that_is_a_link_to_dev_zero_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let windows = dir.path().join("windows.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &windows).unwrap();
    // At most 1 GiB of address space: a read without a bound fails fast instead of taking the machine's memory.
    let out = Command::new("bash")
        .args(["-c", &format!("ulimit -v 1048576 && exec {BIN} analyze {}", windows.display())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert_eq!(said, format!("{}: cannot read: not a regular file (a character device)\n", windows.display()));
}
