//! The `flightdeck` binary as a test runs it: data and config folders of
//! the test's own (never the developer's), no stdin, and output read as the
//! JSON lines `--json` writes.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

/// `flightdeck ARGS` with its data in `data` and its config in `data/config`.
pub fn flightdeck(data: &Path, args: &[&str]) -> Output {
    isolated(data).args(args).output().expect("flightdeck runs")
}

/// `flightdeck ARGS` with its data in `data` and its config in `config`.
pub fn flightdeck_in(data: &Path, config: &Path, args: &[&str]) -> Output {
    command(data, config).args(args).output().expect("flightdeck runs")
}

/// The command, not yet run, with its data in `data` and its config in
/// `data/config`, for tests that spawn it or set more.
pub fn isolated(data: &Path) -> Command {
    command(data, &data.join("config"))
}

/// The command, not yet run, for tests that need more control over it.
pub fn command(data: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("FLIGHTDECK_DATA_DIR", data)
        .env("FLIGHTDECK_CONFIG_DIR", config)
        // A backtrace is what a developer asks for; a refusal must not show one even then.
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every line of stdout as JSON (what `--json` writes); a line that is not JSON fails the test.
pub fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// The canary weights a run set, in order: its successful `set-weight` effects.
pub fn weights_set(events: &[Value]) -> Vec<u64> {
    let set = |e: &&Value| e["type"] == "effect" && e["effect"] == "set-weight" && e["ok"] == true;
    events.iter().filter(set).map(|e| e["canary"].as_u64().unwrap()).collect()
}
