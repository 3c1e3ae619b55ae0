//! The journal from the outside: damaged journals are refused with
//! `file:line` and the way out, one run per journal, a full disk stops the
//! rollout loudly, and `kill -9` at any point resumes where it was.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use support::cli::{flightdeck, isolated, json_lines, weights_set, BIN};

const CANARY: &str = "examples/plans/canary.toml";

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
    let expected =
        format!("{}:5: not a journal record (column 1: expected value)\n{}\n", journal.display(), way_out(&journal));
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

/// What a refusal of a damaged journal says to do, after `file:line: …`.
fn way_out(journal: &Path) -> String {
    format!(
        "nothing was done. Check it with `flightdeck journal verify {}` and repair or restore it, or run again with \
         --fresh to start the rollout over from its first stage (the damaged journal is kept aside)",
        journal.display()
    )
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
    let mut child = isolated(data)
        .args(["run", plan, "--headless", "--json"])
        .args(extra)
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
        .env("FLIGHTDECK_CONFIG_DIR", data.path().join("config"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = text(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{said}");
    assert!(said.contains(": paused at stage 2/4 — needs a human: journal cannot be written ("), "{said}");
    assert!(said.contains("File too large"), "{said}");
    let events = json_lines(&limited);
    let stop = events.last().unwrap();
    assert_eq!((&stop["type"], &stop["to"]), (&"transition".into(), &"paused".into()), "{stop}");
    let applied = weights_set(&events);
    assert_eq!(applied, vec![1, 10]);

    let resumed = flightdeck(data.path(), &["run", CANARY, "--headless", "--json", "--speed", "20000"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    let events = json_lines(&resumed);
    assert_eq!((&events[0]["resumed"], &events[0]["stage"]), (&true.into(), &2.into()), "{}", events[0]);
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
fn killed_again_and_again(plan: &str, code: i32, extra: &[&str]) {
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
        args.extend_from_slice(extra);
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
            // The journal keeps the index; --json counts stages from 1.
            let stage = expected.unwrap_or(0) + 1;
            assert_eq!(started["stage"], stage, "{which} resumes where its journal was: {first}");
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
    killed_again_and_again(CANARY, 0, &[]);
}

#[test]
fn a_rolling_update_killed_again_and_again_resumes_each_time_and_finishes() {
    killed_again_and_again("examples/plans/rolling.toml", 0, &[]);
}

#[test]
fn a_blue_green_killed_again_and_again_resumes_each_time_and_waits_for_approval() {
    // Held, not aborted, when nobody answers: the run stops at the gate.
    killed_again_and_again("examples/plans/blue-green.toml", 1, &["--unattended", "hold", "--unattended-wait", "0s"]);
}

const HEALTHY: [&str; 8] = ["run", CANARY, "--headless", "--json", "--speed", "20000", "--scenario", "healthy"];
const BAD: [&str; 8] = ["run", CANARY, "--headless", "--json", "--speed", "20000", "--scenario", "bad-canary"];

fn lines_of(journal: &Path) -> Vec<String> {
    std::fs::read_to_string(journal).unwrap().lines().map(str::to_owned).collect()
}

/// Sets the canary's error count (`errors` of its requests) of the metrics
/// records `pick` chooses, only the first of them if `only_first`; the
/// 1-based line of the first changed.
fn set_canary_errors(
    journal: &Path,
    pick: impl Fn(&Value) -> bool,
    errors: impl Fn(u64) -> u64,
    only_first: bool,
) -> usize {
    let mut lines = lines_of(journal);
    let mut first = None;
    for (i, line) in lines.iter_mut().enumerate().skip(1) {
        let mut record: Value = serde_json::from_str(line).unwrap();
        let canary = &record["event"]["canary"];
        let done = only_first && first.is_some();
        if done || record["event"]["event"] != "metrics" || !canary.is_object() || !pick(&record) {
            continue;
        }
        let requests = canary["requests"].as_u64().unwrap();
        let changed = errors(requests);
        if record["event"]["canary"]["errors"] == changed {
            continue;
        }
        record["event"]["canary"]["errors"] = changed.into();
        *line = serde_json::to_string(&record).unwrap();
        first.get_or_insert(i + 1);
    }
    std::fs::write(journal, lines.join("\n") + "\n").unwrap();
    first.expect("a metrics record to change")
}

/// A resume refused before any effect: exit 2, nothing on stdout, the
/// journal as it was, and the same `file:line: …` as `journal verify`.
fn refused_before_any_effect(data: &Path, journal: &Path, args: &[&str]) -> (usize, String) {
    let before = std::fs::read(journal).unwrap();
    let out = flightdeck(data, args);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}\n{}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    assert_eq!(std::fs::read(journal).unwrap(), before, "the journal is left as it was");
    let (first, rest) = said.split_once('\n').unwrap();
    assert_eq!(rest, format!("{}\n", way_out(journal)), "{said}");
    let verify = flightdeck(data, &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(2));
    assert_eq!(text(&verify.stderr), format!("{first}\n"), "resume and verify say the same");
    let at = first.strip_prefix(&format!("{}:", journal.display())).unwrap_or_else(|| panic!("{first}"));
    let (line, message) = at.split_once(": ").unwrap();
    (line.parse().unwrap(), message.to_owned())
}

#[test]
fn a_damaged_metrics_record_is_refused_not_replayed_into_a_rollback_or_back_to_traffic() {
    // A promoted canary whose journal now says a 10 % window failed every
    // request: replaying it would roll back from 100 % to 0 %.
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let changed = set_canary_errors(&journal, |r| r["stage"] == 1, |requests| requests, true);
    let (line, message) = refused_before_any_effect(data.path(), &journal, &HEALTHY);
    assert!(line >= changed, "{line}: {message}");
    assert!(message.starts_with("records progressing at stage 2 and 10 %, but replaying reaches "), "{message}");

    // The reverse: a rolled-back canary whose errors are gone from its
    // journal would be put back at 10 %.
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &BAD);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let journal = journal_of(data.path());
    let changed = set_canary_errors(&journal, |_| true, |_| 0, false);
    let (line, message) = refused_before_any_effect(data.path(), &journal, &BAD);
    assert!(line >= changed, "{line}: {message}");
    assert!(message.starts_with("records rolled back at stage "), "{message}");
    assert!(message.contains(" and 0 %, but replaying reaches progressing at stage "), "{message}");
}

#[test]
fn an_empty_or_header_cut_journal_is_refused_not_started_over() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &BAD);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let journal = journal_of(data.path());
    let header = lines_of(&journal).remove(0);

    std::fs::write(&journal, "").unwrap();
    let (line, message) = refused_before_any_effect(data.path(), &journal, &BAD);
    assert_eq!((line, message.as_str()), (1, "empty: no journal header"));
    std::fs::write(&journal, &header[..header.len() / 2]).unwrap();
    let (line, message) = refused_before_any_effect(data.path(), &journal, &BAD);
    let cut = "the journal header is cut short: this is not a journal flightdeck finished writing";
    assert_eq!((line, message.as_str()), (1, cut));

    // The way out named: --fresh starts over and keeps the damaged file aside.
    let fresh = flightdeck(data.path(), &[&BAD[..], &["--fresh"]].concat());
    assert_eq!(fresh.status.code(), Some(3), "{}", text(&fresh.stderr));
    let kept = std::fs::read_dir(data.path().join("journal")).unwrap().filter_map(|e| {
        let path = e.unwrap().path();
        std::fs::read_to_string(&path).ok().filter(|t| *t == header[..header.len() / 2])
    });
    assert_eq!(kept.count(), 1, "the damaged journal is kept aside");
}

#[test]
fn a_cut_last_line_is_dropped_the_same_way_every_time() {
    // The last record whole but for its newline (a crash mid-write): it is
    // dropped, the file cut back to the record before, and the next run
    // finds a sound journal.
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let whole = std::fs::read_to_string(&journal).unwrap();
    let records = whole.lines().count() - 1;
    std::fs::write(&journal, whole.trim_end_matches('\n')).unwrap();
    let verify = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    let note = format!("{}:{}: note: the last line was cut short", journal.display(), records + 1);
    assert!(text(&verify.stderr).starts_with(&note), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).contains(&format!("ok ({} records;", records - 1)), "{}", text(&verify.stdout));
    for run in 1..=3 {
        let out = flightdeck(data.path(), &HEALTHY);
        assert_eq!(out.status.code(), Some(0), "run {run}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(r#""resumed":true"#));
        let verify = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
        assert_eq!(verify.status.code(), Some(0), "run {run}: {}", text(&verify.stderr));
        assert!(verify.stderr.is_empty(), "run {run}: {}", text(&verify.stderr));
    }

    // A cut line followed by blanks, with no newline at the end: the same.
    let mut text_now = std::fs::read_to_string(&journal).unwrap();
    let sound_len = text_now.len();
    text_now.push_str("{\"seq\":999,\"at\":  \t ");
    std::fs::write(&journal, &text_now).unwrap();
    let out = flightdeck(data.path(), &HEALTHY);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = std::fs::read_to_string(&journal).unwrap();
    assert!(after.starts_with(&text_now[..sound_len]) && !after.contains("{\"seq\":999,"), "cut back");
    let again = flightdeck(data.path(), &HEALTHY);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));

    // A line that ends with a newline was not cut by a crash: refused, every time.
    let mut damaged = std::fs::read_to_string(&journal).unwrap();
    let line = damaged.lines().count() + 1;
    damaged.push_str("{\"seq\":999,\"at\":\n  ");
    std::fs::write(&journal, &damaged).unwrap();
    for _ in 0..2 {
        let (at, message) = refused_before_any_effect(data.path(), &journal, &HEALTHY);
        assert_eq!(at, line, "{message}");
        assert!(message.starts_with("not a journal record"), "{message}");
    }
}

/// `flightdeck args…` killed after `limit`; `None` if it had to be.
fn within(data: &Path, args: &[&str], limit: std::time::Duration) -> Option<Output> {
    let child =
        isolated(data).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let start = std::time::Instant::now();
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = waiter.join();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some(waiter.join().unwrap())
}

#[test]
fn a_journal_left_pending_is_refused_rather_than_waited_on_forever() {
    // A header and one tick that leaves the rollout pending: no run writes
    // that (each journals its start first), and a resume would wait for a
    // start that never comes.
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let header = lines_of(&journal).remove(0);
    let tick = r#"{"seq":1,"at":0,"wall":0,"event":{"event":"tick"},"phase":"pending","stage":0,"weight":0}"#;
    std::fs::write(&journal, format!("{header}\n{tick}\n")).unwrap();
    let out = within(data.path(), &HEALTHY, std::time::Duration::from_secs(60)).expect("no hang");
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    let expected = format!(
        "{}:2: the first record is not the rollout's start (every run journals its start first)\n{}\n",
        journal.display(),
        way_out(&journal)
    );
    assert_eq!(said, expected);
}

#[test]
fn a_second_demo_is_refused_before_it_deletes_the_running_demos_journals() {
    let data = tempfile::tempdir().unwrap();
    let mut child = isolated(data.path())
        .args(["demo", "--headless", "--json", "--speed", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut events = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = Running(child);
    let started: Value = serde_json::from_str(&events.next().unwrap().unwrap()).unwrap();
    assert_eq!(started["type"], "started");
    let journals = || {
        use std::os::unix::fs::MetadataExt;
        let entries = std::fs::read_dir(data.path().join("journal")).unwrap().map(|e| e.unwrap().path());
        let journals = entries.filter(|p| p.extension().is_some_and(|x| x == "jsonl"));
        journals.map(|p| (std::fs::metadata(&p).unwrap().ino(), p)).collect::<std::collections::BTreeSet<_>>()
    };
    let before = journals();
    assert_eq!(before.len(), 6, "{before:?}");

    let second = flightdeck(data.path(), &["demo", "--headless", "--speed", "20000"]);
    let said = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!(".jsonl: in use by flightdeck pid {} on host ", first.0.id())), "{said}");
    assert_eq!(journals(), before, "the running demo's journals are where they were");
    drop(first);
    // Once it is gone, a demo starts over (its old journals deleted).
    let third = flightdeck(data.path(), &["demo", "--headless", "--json", "--speed", "20000"]);
    assert!(matches!(third.status.code(), Some(1 | 3)), "{}", text(&third.stderr));
    assert!(!text(&third.stdout).contains(r#""resumed":true"#));
}

/// `flightdeck args…` with at most 1 GiB of address space, so a read
/// without a bound fails fast instead of taking the machine's memory.
fn in_1gib(data: &Path, config: &Path, args: &str) -> Output {
    Command::new("bash")
        .args(["-c", &format!("ulimit -v 1048576 && exec {BIN} {args}")])
        .env("FLIGHTDECK_DATA_DIR", data)
        .env("FLIGHTDECK_CONFIG_DIR", config)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn files_that_are_not_regular_or_too_large_are_refused_naming_them() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    // A plan that is a link to /dev/zero.
    let plan = data.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &plan).unwrap();
    let out = in_1gib(data.path(), config.path(), &format!("check {}", plan.display()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let expected = format!("{}: cannot read: not a regular file (a character device)\n", plan.display());
    assert_eq!(text(&out.stderr), expected);

    // A journal that is a link to /dev/zero, a FIFO, or larger than any run writes.
    let journal = finished_run(data.path());
    let sound = std::fs::read(&journal).unwrap();
    let healthy = HEALTHY.join(" ");
    std::fs::remove_file(&journal).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &journal).unwrap();
    let out = in_1gib(data.path(), config.path(), &healthy);
    let expected = format!("{}: not a regular file (a character device)\n{}\n", journal.display(), way_out(&journal));
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected));
    std::fs::remove_file(&journal).unwrap();
    let c = std::ffi::CString::new(journal.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = within(data.path(), &HEALTHY, std::time::Duration::from_secs(60)).expect("no wait for a writer");
    let expected = format!("{}: not a regular file (a FIFO)\n{}\n", journal.display(), way_out(&journal));
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected));
    std::fs::remove_file(&journal).unwrap();
    std::fs::write(&journal, &sound).unwrap();
    std::fs::OpenOptions::new().append(true).open(&journal).unwrap().set_len((64 << 20) + 1).unwrap();
    let out = in_1gib(data.path(), config.path(), &healthy);
    let expected = format!(
        "{}: larger than 64 MiB, the most flightdeck reads from such a file\n{}\n",
        journal.display(),
        way_out(&journal)
    );
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected));
    std::fs::write(&journal, &sound).unwrap();

    // A config that is there but cannot be read is refused, not taken for
    // none (its production contexts would stop asking for confirmation).
    let path = config.path().join("config.toml");
    std::fs::create_dir(&path).unwrap();
    let out = in_1gib(data.path(), config.path(), &healthy);
    let expected = format!("{}:1:1: config: cannot read the file: not a regular file (a directory)\n", path.display());
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected));
    assert!(out.stdout.is_empty());
    std::fs::remove_dir(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let out = in_1gib(data.path(), config.path(), &healthy);
    let expected =
        format!("{}:1:1: config: cannot read the file: not a regular file (a character device)\n", path.display());
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected));
}

#[test]
fn a_resumed_run_left_pending_by_a_new_revision_starts_it_rather_than_waiting_for_ever() {
    // A promoted canary, then a new revision: the rollout is pending again
    // (sound: replaying reaches it). Nothing but a start moves it on.
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let lines = lines_of(&journal);
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let (seq, at) = (last["seq"].as_u64().unwrap() + 1, last["at"].as_u64().unwrap());
    let record = format!(
        r#"{{"seq":{seq},"at":{at},"wall":0,"event":{{"event":"new-revision","revision":"v9.9.9"}},"phase":"pending","stage":0,"weight":0}}"#
    );
    std::fs::write(&journal, format!("{}\n{record}\n", lines.join("\n"))).unwrap();
    let verify = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).contains(": pending at stage 1/"), "{}", text(&verify.stdout));

    let out =
        within(data.path(), &HEALTHY, std::time::Duration::from_secs(60)).expect("a pending resume must not hang");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let events = json_lines(&out);
    let promoted = events.iter().any(|e| e["to"] == "promoted");
    assert!(promoted, "v9.9.9 rolled out to the end: {}", text(&out.stdout));
    assert!(text(&journal_lines_after(&journal, seq)).contains(r#""event":{"event":"start"}"#));
}

/// The journal's lines after record `seq`, joined.
fn journal_lines_after(journal: &Path, seq: u64) -> Vec<u8> {
    let after: Vec<String> = lines_of(journal)
        .into_iter()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["seq"].as_u64().is_some_and(|s| s > seq)))
        .collect();
    after.join("\n").into_bytes()
}

#[test]
fn a_journal_that_is_a_dangling_symlink_is_refused_naming_it_and_where_it_points() {
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    std::fs::remove_file(&journal).unwrap();
    let nowhere = data.path().join("gone.jsonl");
    std::os::unix::fs::symlink(&nowhere, &journal).unwrap();
    let out = flightdeck(data.path(), &HEALTHY);
    let expected = format!(
        "{}: a symbolic link to {}, which does not exist\n{}\n",
        journal.display(),
        nowhere.display(),
        way_out(&journal)
    );
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected));
    assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    let verify = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(2), "{}", text(&verify.stderr));
    assert!(text(&verify.stderr).contains("which does not exist"), "{}", text(&verify.stderr));
}

/// Journals hold every command, name and reason: their folder is 0700 and
/// the journal, its lock and the log 0600 whatever the umask (the usual 022
/// would make them readable by everyone), and the log folder 0700.
#[test]
fn journals_their_locks_and_the_logs_are_the_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let journal = finished_run(data.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.path().join("journal")), 0o700);
    assert_eq!(mode(&journal), 0o600, "{}", journal.display());
    let lock = std::fs::read_dir(data.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "lock"))
        .expect("a lock file");
    assert_eq!(mode(&lock), 0o600);
    let logs = data.path().join("logs");
    assert_eq!(mode(&logs), 0o700);
    let log = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).next().expect("a log file");
    assert_eq!(mode(&log), 0o600, "{}", log.display());
}
