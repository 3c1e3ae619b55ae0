//! The journal from the outside: damaged journals are refused with
//! `file:line` and the way out, one run per journal, a full disk stops the
//! rollout loudly, and `kill -9` at any point resumes where it was.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const CANARY: &str = "examples/plans/canary.toml";

fn flightdeck(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("FLIGHTDECK_DATA_DIR", data)
        // A backtrace is what a developer asks for; a refusal must not show one even then.
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("flightdeck runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn journal_of(data: &Path) -> PathBuf {
    try_journal_of(data).expect("a journal")
}

/// The rollout's journal, not one kept aside (those carry a timestamp, so
/// their names are longer).
fn try_journal_of(data: &Path) -> Option<PathBuf> {
    let files = std::fs::read_dir(data.join("journal")).ok()?.map(|e| e.unwrap().path());
    files.filter(|p| p.extension().is_some_and(|x| x == "jsonl")).min_by_key(|p| p.as_os_str().len())
}

/// A finished healthy canary's journal.
fn finished_run(data: &Path) -> PathBuf {
    let out = flightdeck(data, &["run", CANARY, "--headless", "--speed", "20000", "--scenario", "healthy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    journal_of(data)
}

#[test]
fn a_corrupt_middle_line_is_refused_with_file_line_and_the_way_out() {
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let mut lines: Vec<String> = std::fs::read_to_string(&journal).unwrap().lines().map(str::to_owned).collect();
    lines[4] = "garbage".into();
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let out = flightdeck(data.path(), &["run", CANARY, "--headless", "--speed", "20000", "--scenario", "healthy"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let expected = format!(
        "{}:5: not a journal record (column 1: expected value)\n\
         to start over, run again with --fresh (the old journal is kept aside)\n",
        journal.display()
    );
    assert_eq!(text(&out.stderr), expected, "one line and the way out: no backtrace, no colour");
    let verify = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(2));
    assert_eq!(
        text(&verify.stderr),
        format!("{}:5: not a journal record (column 1: expected value)\n", journal.display())
    );

    let fresh = flightdeck(data.path(), &["run", CANARY, "--headless", "--speed", "20000", "--fresh"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", text(&fresh.stderr));
}

#[test]
fn a_trailing_blank_line_resumes_and_verify_says_ok() {
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let mut with_blank = std::fs::read_to_string(&journal).unwrap();
    with_blank.push('\n');
    std::fs::write(&journal, with_blank).unwrap();
    let out = flightdeck(data.path(), &["run", CANARY, "--headless", "--json", "--speed", "20000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(r#"{"type":"started""#) && text(&out.stdout).contains(r#""resumed":true"#));
    let verify = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    let said = text(&verify.stdout);
    assert!(said.starts_with(&format!("{}: ok (", journal.display())), "{said}");
    assert!(said.ends_with("records; sim-eu-1/checkout-api: promoted at stage 4/4)\n"), "{said}");
}

#[test]
fn verify_refuses_a_duplicate_record_with_its_line() {
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let mut lines: Vec<String> = std::fs::read_to_string(&journal).unwrap().lines().map(str::to_owned).collect();
    lines.insert(7, lines[6].clone());
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let verify = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(2));
    let said = text(&verify.stderr);
    assert!(said.starts_with(&format!("{}:8: sequence number 6 repeats", journal.display())), "{said}");
}

/// A child process that dies with the test, even a failing one.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless run of `plan` whose JSON events can be read as they come.
fn spawn(data: &Path, plan: &str, extra: &[&str]) -> (Running, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = Command::new(BIN)
        .args(["run", plan, "--headless", "--json"])
        .args(extra)
        .env("FLIGHTDECK_DATA_DIR", data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (Running(child), lines)
}

#[test]
fn a_second_run_of_the_same_plan_is_refused_naming_the_first() {
    let data = tempfile::tempdir().unwrap();
    let (first, mut events) = spawn(data.path(), CANARY, &["--speed", "60", "--scenario", "healthy"]);
    let started: Value = serde_json::from_str(&events.next().unwrap().unwrap()).unwrap();
    assert_eq!(started["type"], "started");

    let second = flightdeck(data.path(), &["run", CANARY, "--headless", "--speed", "20000", "--scenario", "healthy"]);
    let said = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{said}");
    assert!(second.stdout.is_empty(), "the second run did nothing: {}", text(&second.stdout));
    let holder = format!(".jsonl: in use by flightdeck pid {} on host ", first.0.id());
    assert!(said.contains(&holder), "{said}");
    assert!(said.contains(" UTC; one run per plan: wait for it to finish or stop it"), "{said}");

    // The OS lets go of a killed holder's lock: the next run resumes.
    drop(first);
    let third = flightdeck(data.path(), &["run", CANARY, "--headless", "--json", "--speed", "20000"]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third.stderr));
    assert!(text(&third.stdout).contains(r#""resumed":true"#));
    let verify = flightdeck(data.path(), &["journal", "verify", journal_of(data.path()).to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "one writer, one sound journal: {}", text(&verify.stderr));
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    text(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn weights_set(events: &[Value]) -> Vec<u64> {
    let set = |e: &&Value| e["type"] == "effect" && e["effect"] == "set-weight" && e["ok"] == true;
    events.iter().filter(set).map(|e| e["canary"].as_u64().unwrap()).collect()
}

/// A full disk, played by a 64 KiB file size limit (the journal fills up
/// in the second stage): the rollout stops, says why, exits 1, and a run
/// with room resumes exactly where the backend was left.
#[test]
fn a_journal_that_cannot_be_written_stops_the_rollout_loudly() {
    let data = tempfile::tempdir().unwrap();
    let args = "run examples/plans/canary.toml --headless --json --speed 20000 --scenario healthy";
    let limited = Command::new("bash")
        // 22 KiB: packed, a healthy run's journal is about 45 KB and stage 2
        // (10 %) spans about 15 KB to 30 KB of it, so the write fails mid-stage.
        .args(["-c", &format!("ulimit -f 22 && exec {BIN} {args}")])
        .env("FLIGHTDECK_DATA_DIR", data.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = text(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{said}");
    assert!(said.contains(": paused at stage 2/4 — needs a human: journal cannot be written ("), "{said}");
    assert!(said.contains("File too large"), "{said}");
    let events = json_lines(&limited.stdout);
    let stop = events.last().unwrap();
    assert_eq!((&stop["type"], &stop["to"]), (&"transition".into(), &"paused".into()), "{stop}");
    let applied = weights_set(&events);
    assert_eq!(applied, vec![1, 10]);

    let resumed = flightdeck(data.path(), &["run", CANARY, "--headless", "--json", "--speed", "20000"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    let events = json_lines(&resumed.stdout);
    assert_eq!((&events[0]["resumed"], &events[0]["stage"]), (&true.into(), &1.into()), "{}", events[0]);
    // The backend is told again what it was last told, never less.
    assert_eq!(weights_set(&events), vec![10, 50, 100]);
    let verify = flightdeck(data.path(), &["journal", "verify", journal_of(data.path()).to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
}

/// Kills per plan: `FLIGHTDECK_KILLS` (scripts/fuzz runs 100), else 5.
fn kills() -> u32 {
    std::env::var("FLIGHTDECK_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(5)
}

/// The 0-based stage the journal holds (`None` without a record), after
/// `journal verify` has found it sound.
fn journaled_stage(data: &Path) -> Option<u64> {
    let journal = try_journal_of(data)?;
    let out = flightdeck(data, &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "a killed run leaves a sound journal: {}", text(&out.stderr));
    let said = text(&out.stdout);
    if said.contains("(0 records;") {
        return None;
    }
    let stage = said.rsplit(" at stage ").next().and_then(|s| s.split('/').next()).and_then(|s| s.parse::<u64>().ok());
    Some(stage.unwrap_or_else(|| panic!("no stage in {said}")) - 1)
}

/// `kill -9` at random points of simulated rollouts, again and again:
/// every restart resumes at the stage its journal reached (or starts
/// afresh when it held nothing yet), and a run left alone ends with `code`.
/// A rollout that ends before the kills are used up is started over with
/// `--fresh`. (Simulated time resumes from the last journaled event, so a
/// run must live past a window or two to get anywhere: about 2 per run.)
fn killed_again_and_again(plan: &str, code: i32) {
    use rand::{Rng, SeedableRng};
    let data = tempfile::tempdir().unwrap();
    let kills = kills();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(kills) ^ plan.len() as u64);
    let (mut killed, mut finished, mut reached) = (0, 0, std::collections::BTreeMap::new());
    // The stage the next run must resume at; `None`: it must start afresh.
    let (mut expected, mut fresh): (Option<u64>, bool) = (None, false);
    loop {
        let last = killed == kills;
        let mut args = vec!["--speed", if last { "20000" } else { "600" }, "--scenario", "healthy"];
        if fresh {
            args.push("--fresh");
        }
        let (mut run, lines) = spawn(data.path(), plan, &args);
        let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
        if !last {
            std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(0..800)));
            let _ = run.0.kill(); // SIGKILL
        }
        let status = run.0.wait().unwrap();
        let events = reader.join().unwrap();
        let which = format!("{plan}, run {} after {killed} kills", killed + finished + 1);
        if let Some(first) = events.first() {
            let started: Value = serde_json::from_str(first).unwrap();
            assert_eq!(started["type"], "started", "{which}: {first}");
            assert_eq!(started["resumed"], expected.is_some(), "{which}: {first}");
            assert_eq!(started["stage"], expected.unwrap_or(0), "{which} resumes where its journal was: {first}");
        }
        if status.code().is_some() {
            // Ended by itself: finished, or waiting for a human.
            assert_eq!(status.code(), Some(code), "{which}: {}", events.last().map_or("", String::as_str));
            finished += 1;
            if last {
                break;
            }
            (expected, fresh) = (None, true);
            continue;
        }
        killed += 1;
        expected = journaled_stage(data.path());
        fresh = false;
        *reached.entry(expected.map_or(0, |s| s + 1)).or_insert(0) += 1;
    }
    println!(
        "{plan}: {killed} kills over {finished} rollouts, every restart resumed at its journal's stage, \
         every run left alone exited {code}; kills by stage reached (0: nothing journaled yet): {reached:?}"
    );
}

#[test]
fn a_canary_killed_again_and_again_resumes_each_time_and_is_promoted() {
    killed_again_and_again(CANARY, 0);
}

#[test]
fn a_rolling_update_killed_again_and_again_resumes_each_time_and_finishes() {
    killed_again_and_again("examples/plans/rolling.toml", 0);
}

#[test]
fn a_blue_green_killed_again_and_again_resumes_each_time_and_waits_for_approval() {
    killed_again_and_again("examples/plans/blue-green.toml", 1);
}
