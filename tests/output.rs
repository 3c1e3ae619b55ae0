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
