//! A mutation fuzzer over everything flightdeck reads: plans, themes,
//! keymaps and journals. Each case mutates a real file (see
//! `fuzz/mutate.rs`) and feeds it to what `check`, the cockpit and a resume
//! use. It must be accepted or rejected with a message that names
//! `file:line`; a panic fails the test with the smallest mutation that
//! shows it. A few hundred cases per kind here; `scripts/fuzz` runs
//! thousands by setting `FLIGHTDECK_FUZZ_PLANS` (…`_THEMES`, `_KEYMAPS`,
//! `_JOURNALS`).

#[path = "fuzz/mutate.rs"]
mod mutate;

use flightdeck::ui::keymap::Keymap;
use flightdeck::ui::theme::{ColorMode, Theme};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn cases(kind: &str, default: u32) -> u32 {
    let var = format!("FLIGHTDECK_FUZZ_{}", kind.to_uppercase());
    std::env::var(var).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// The text of every file in `dirs` ending in `.toml`.
fn seeds(dirs: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

/// `path:line:` (or `path:line:column:`) at the start.
fn names_file_line(message: &str) -> bool {
    let Some((file, rest)) = message.split_once(':') else { return false };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    !file.is_empty() && digits > 0 && rest[digits..].starts_with(':')
}

/// Runs `cases` mutations of `seeds` through `load` (Ok: accepted, Err:
/// the rejection's message) and prints the tally.
fn fuzz(kind: &str, cases: u32, seeds: &[String], load: impl Fn(&[u8]) -> Result<(), String>) {
    let (accepted, rejected, panics) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let strategy = (0..seeds.len(), mutate::mutations());
    let result = TestRunner::new(config).run(&strategy, |(seed, edits)| {
        let bytes = mutate::apply(&seeds[seed], seeds, &edits);
        match catch_unwind(AssertUnwindSafe(|| load(&bytes))) {
            Ok(Ok(())) => accepted.set(accepted.get() + 1),
            Ok(Err(message)) if names_file_line(&message) => rejected.set(rejected.get() + 1),
            Ok(Err(message)) => return Err(TestCaseError::fail(format!("rejected without file:line: {message}"))),
            Err(_) => {
                panics.set(panics.get() + 1);
                return Err(TestCaseError::fail(format!("panicked on:\n{}", String::from_utf8_lossy(&bytes))));
            }
        }
        Ok(())
    });
    println!(
        "fuzz {kind}: {cases} cases: {} accepted, {} rejected naming file:line, {} panics",
        accepted.get(),
        rejected.get(),
        panics.get()
    );
    if let Err(e) = result {
        panic!("{kind}: {e}");
    }
}

#[test]
fn mutated_plans_are_checked_without_panic() {
    let seeds = seeds(&["examples/plans", "src/demo", "tests/invalid_plans", "tests/invalid_run_plans"]);
    let (dir, config) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = dir.path().join("plan.toml");
    fuzz("plans", cases("plans", 300), &seeds, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        flightdeck::fleet::check(&path, config.path()).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn mutated_themes_load_without_panic() {
    let seeds = seeds(&["themes"]);
    let config = tempfile::tempdir().unwrap();
    std::fs::create_dir(config.path().join("themes")).unwrap();
    let path = config.path().join("themes/fuzz.toml");
    fuzz("themes", cases("themes", 200), &seeds, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let mut outcome = Ok(());
        for mode in [ColorMode::TrueColor, ColorMode::Ansi16, ColorMode::Mono] {
            outcome = Theme::load("fuzz", config.path(), mode).map(drop).map_err(|e| e.to_string());
        }
        outcome
    });
}

#[test]
fn mutated_keymaps_load_without_panic() {
    let seeds = seeds(&["keymaps", "tests/invalid_keymaps"]);
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("keymap.toml");
    fuzz("keymaps", cases("keymaps", 200), &seeds, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        Keymap::load("vim", config.path()).map(drop).map_err(|e| e.to_string())
    });
}

/// Journals of finished simulator runs: a canary promoted, one rolled back,
/// a rolling update, a blue-green waiting for approval.
fn journals() -> Vec<String> {
    let runs = [
        ("examples/plans/canary.toml", "healthy"),
        ("examples/plans/canary.toml", "bad-canary"),
        ("examples/plans/rolling.toml", "healthy"),
        ("examples/plans/blue-green.toml", "healthy"),
    ];
    runs.iter()
        .map(|(plan, scenario)| {
            let data = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
                .args(["run", plan, "--headless", "--speed", "20000", "--scenario", scenario])
                .env("FLIGHTDECK_DATA_DIR", data.path())
                .output()
                .unwrap();
            assert!(out.status.code().is_some_and(|c| c != 2), "{plan}: {}", String::from_utf8_lossy(&out.stderr));
            let journal = std::fs::read_dir(data.path().join("journal"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .unwrap();
            std::fs::read_to_string(journal).unwrap()
        })
        .collect()
}

#[test]
fn mutated_journals_are_verified_without_panic() {
    let seeds = journals();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.jsonl");
    fuzz("journals", cases("journals", 200), &seeds, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        flightdeck::engine::journal::verify(&path).map(drop).map_err(|e| e.to_string())
    });
}
