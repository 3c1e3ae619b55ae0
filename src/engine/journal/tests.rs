//! The journal's unit tests: resume, refusals, strict reading.

use super::*;
use flightdeck_core::rollout::{Actor, Command, CommandRequest};

const PLAN: &str = "[rollout]\nname = \"checkout\"\nstable = \"v1\"\ncanary = \"v2\"\n";

fn plan() -> Plan {
    Plan::parse("p.toml", PLAN).expect("plan parses")
}

fn drive(j: &mut Journal, r: Rollout, events: Vec<(u64, Event)>) -> Rollout {
    events.into_iter().fold(r, |r, (at, e)| {
        let next = step(&r, e.clone(), Timestamp(at)).0;
        j.append(Timestamp(at), &e, &next).unwrap();
        next
    })
}

#[test]
fn resumes_an_unfinished_run_at_the_same_stage() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    let mut j = opened.journal;
    let promote = Event::Command(CommandRequest {
        actor: Actor::new("alice"),
        command: Command::Promote,
        expected_stage: 0,
        expected_revision: "v2".into(),
        expected_step: None,
        role: Default::default(),
        session: None,
    });
    let live = drive(&mut j, opened.rollout, vec![(0, Event::Start), (5_000, promote)]);
    assert_eq!(live.stage, 1);
    drop(j);

    let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    assert_eq!(again.resumed_at, Some(Timestamp(5_000)));
    assert_eq!(again.rollout, live);
}

#[test]
fn a_changed_plan_is_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    let mut j = opened.journal;
    drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
    drop(j);
    let changed = PLAN.replace("v2", "v3");
    let err = Journal::open(
        dir.path(),
        "checkout",
        &Plan::parse("p.toml", &changed).unwrap(),
        "p.toml",
        &changed,
        None,
        false,
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("written for a different plan than p.toml"), "{err}");
}

#[test]
fn a_corrupt_middle_line_names_the_line_and_a_cut_last_line_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    let mut j = opened.journal;
    drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
    let path = j.path().to_path_buf();
    drop(j);
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("{\"seq\":2,\"at\":");
    fs::write(&path, &text).unwrap();
    let ok = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    assert_eq!(ok.rollout.stage, 0);
    // The cut line is gone: the next record starts on a line of its own.
    let mut j = ok.journal;
    drive(&mut j, ok.rollout, vec![(1_000, Event::Tick)]);
    drop(j);
    let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    assert_eq!(again.resumed_at, Some(Timestamp(1_000)));
    drop(again);
    let text = fs::read_to_string(&path).unwrap();

    let lines: Vec<&str> = text.lines().collect();
    fs::write(&path, format!("{}\nnot json\n{}\n", lines[0], lines[1])).unwrap();
    let err = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).err().expect("corrupt");
    assert!(err.to_string().contains(&format!("{}:2:", path.display())), "{err}");
}

fn sim_run(scenario: &str, seed: u64) -> SimRun {
    SimRun { scenario: scenario.into(), seed }
}

#[test]
fn another_scenario_or_seed_is_refused_naming_both_and_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = sim_run("healthy", 1);
    let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&healthy), false).unwrap();
    let mut j = opened.journal;
    drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
    drop(j);

    for other in [sim_run("bad-canary", 1), sim_run("healthy", 7)] {
        let err =
            Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&other), false).err().expect("refused");
        assert!(err.is_refusal());
        let message = err.to_string();
        assert!(message.contains("was written with --scenario healthy --seed 1"), "{message}");
        let asks = format!("this run asks for --scenario {} --seed {}", other.scenario, other.seed);
        assert!(message.contains(&asks), "{message}");
        assert!(message.contains("pass --fresh"), "{message}");
    }
    // The same scenario and seed resume; --fresh starts the other run over.
    let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&healthy), false).unwrap();
    assert!(again.resumed_at.is_some());
    drop(again);
    let bad = sim_run("bad-canary", 7);
    let fresh = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&bad), true).unwrap();
    assert_eq!(fresh.resumed_at, None);
    drop(fresh);
    // The fresh run's journal now records its own scenario and seed.
    let err = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&healthy), false).err();
    assert!(err.is_some_and(|e| e.to_string().contains("written with --scenario bad-canary --seed 7")));
}

#[test]
fn plan_files_naming_the_same_rollout_keep_apart_journals() {
    let dir = tempfile::tempdir().unwrap();
    let plans = tempfile::tempdir().unwrap();
    let (a, b) = (plans.path().join("haproxy.toml"), plans.path().join("envoy.toml"));
    let other = PLAN.replace("v2", "v3");
    fs::write(&a, PLAN).unwrap();
    fs::write(&b, &other).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let first = Journal::open(dir.path(), "edge/checkout", &plan(), &a, PLAN, None, false).unwrap();
    let mut j = first.journal;
    drive(&mut j, first.rollout, vec![(0, Event::Start)]);
    let first_path = j.path().to_path_buf();
    drop(j);

    let other_plan = Plan::parse(&b, &other).unwrap();
    let second = Journal::open(dir.path(), "edge/checkout", &other_plan, &b, &other, None, false).unwrap();
    assert_eq!(second.resumed_at, None, "a new rollout, not the other file's");
    assert_ne!(second.journal.path(), first_path);
    let name = second.journal.path().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("edge_checkout-") && name.ends_with(".jsonl"), "{name}");
    drop(second);
    // The first file's run is still there to resume.
    let again = Journal::open(dir.path(), "edge/checkout", &plan(), &a, PLAN, None, false).unwrap();
    assert_eq!(again.resumed_at, Some(Timestamp(0)));
}

#[test]
fn a_journal_named_by_rollout_id_alone_is_resumed_by_its_plan_file() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    let mut j = opened.journal;
    drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
    let path = j.path().to_path_buf();
    drop(j);
    fs::rename(&path, dir.path().join("checkout.jsonl")).unwrap();

    // Another plan file leaves it alone; its own plan file adopts it.
    let elsewhere = Journal::open(dir.path(), "checkout", &plan(), "q.toml", PLAN, None, false).unwrap();
    assert_eq!(elsewhere.resumed_at, None);
    assert!(dir.path().join("checkout.jsonl").exists());
    drop(elsewhere);
    let adopted = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    assert_eq!(adopted.resumed_at, Some(Timestamp(0)));
    assert_eq!(adopted.journal.path(), path);
    assert!(!dir.path().join("checkout.jsonl").exists());
}

/// A journal of three records (Start, Tick, Tick) at 0, 1 s and 2 s; its path and lines.
fn three_records(dir: &Path) -> (PathBuf, Vec<String>) {
    let opened = Journal::open(dir, "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
    let mut j = opened.journal;
    drive(&mut j, opened.rollout, vec![(0, Event::Start), (1_000, Event::Tick), (2_000, Event::Tick)]);
    let path = j.path().to_path_buf();
    drop(j);
    let lines = fs::read_to_string(&path).unwrap().lines().map(str::to_owned).collect();
    (path, lines)
}

fn reopen(dir: &Path) -> Result<Opened, JournalError> {
    Journal::open(dir, "checkout", &plan(), "p.toml", PLAN, None, false)
}

#[test]
fn blank_lines_anywhere_are_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    fs::write(&path, format!("{}\n\n{}\n   \n{}\n{}\n\n", lines[0], lines[1], lines[2], lines[3])).unwrap();
    let again = reopen(dir.path()).expect("resumes");
    assert_eq!(again.resumed_at, Some(Timestamp(2_000)));
    drop(again);
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[test]
fn a_repeated_or_missing_sequence_number_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    let shown = path.display().to_string();
    fs::write(&path, format!("{}\n{}\n{}\n{}\n", lines[0], lines[1], lines[2], lines[2])).unwrap();
    let err = reopen(dir.path()).err().expect("a repeated record").to_string();
    assert_eq!(err, format!("{shown}:4: sequence number 2 repeats or goes back (expected 3; line 3 has 2)"));
    fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[1], lines[3])).unwrap();
    let err = verify(&path).expect_err("a missing record").to_string();
    assert!(err.starts_with(&format!("{shown}:3: sequence number 3 skips")), "{err}");
}

#[test]
fn time_going_backwards_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    let earlier = lines[3].replace("\"at\":2000", "\"at\":500");
    assert_ne!(earlier, lines[3]);
    fs::write(&path, format!("{}\n{}\n{}\n{earlier}\n", lines[0], lines[1], lines[2])).unwrap();
    let err = reopen(dir.path()).err().expect("refused").to_string();
    let expected = format!("{}:4: time goes backwards: at 500 ms, after 1000 ms on line 3", path.display());
    assert_eq!(err, expected);
}

#[test]
fn verify_replays_and_names_a_record_that_does_not_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    let sound = verify(&path).unwrap();
    assert_eq!((sound.records, sound.cut, sound.rollout.stage), (3, None, 0));
    let wrong = lines[2].replace("\"stage\":0", "\"stage\":2");
    fs::write(&path, format!("{}\n{}\n{wrong}\n{}\n", lines[0], lines[1], lines[3])).unwrap();
    let err = verify(&path).expect_err("refused").to_string();
    assert!(err.starts_with(&format!("{}:3: records progressing at stage 3", path.display())), "{err}");
    fs::write(&path, format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..10])).unwrap();
    assert_eq!(verify(&path).unwrap().cut, Some(3));
    fs::write(&path, format!("{}\n{{\"seq\": 1}}\n{}\n", lines[0], lines[2])).unwrap();
    let err = verify(&path).expect_err("refused").to_string();
    assert_eq!(err, format!("{}:2: not a journal record (column 10: missing field `at`)", path.display()));
}

#[test]
fn a_record_whose_state_does_not_follow_is_refused_on_resume_as_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    let wrong = lines[3].replace("\"weight\":1", "\"weight\":100");
    assert_ne!(wrong, lines[3]);
    fs::write(&path, format!("{}\n{}\n{}\n{wrong}\n", lines[0], lines[1], lines[2])).unwrap();
    let resumed = reopen(dir.path()).err().expect("refused").to_string();
    let verified = verify(&path).expect_err("refused").to_string();
    assert_eq!(resumed, verified);
    let expected = "records progressing at stage 1 and 100 %, but replaying reaches progressing at stage 1 and 1 %";
    assert_eq!(resumed, format!("{}:4: {expected}", path.display()));
}

#[test]
fn a_journal_that_does_not_begin_with_the_start_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    // A tick that keeps the rollout pending, numbered as the first record.
    let tick = lines[2].replace("\"seq\":2", "\"seq\":1").replace("\"phase\":\"progressing\"", "\"phase\":\"pending\"");
    let tick = tick.replace("\"weight\":1", "\"weight\":0");
    fs::write(&path, format!("{}\n{tick}\n", lines[0])).unwrap();
    let err = reopen(dir.path()).err().expect("refused").to_string();
    let expected = "2: the first record is not the rollout's start (every run journals its start first)";
    assert_eq!(err, format!("{}:{expected}", path.display()));
    assert_eq!(verify(&path).expect_err("refused").to_string(), err);
}

#[test]
fn an_empty_journal_or_a_cut_header_is_refused_not_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    for (text, expected) in [
        (String::new(), "1: empty: no journal header".to_owned()),
        ("\n \n".to_owned(), "1: empty: no journal header".to_owned()),
        (lines[0][..20].to_owned(), "1: the journal header is cut short".to_owned()),
    ] {
        fs::write(&path, &text).unwrap();
        let err = reopen(dir.path()).err().expect("refused");
        assert!(err.to_string().starts_with(&format!("{}:{expected}", path.display())), "{err}");
        assert!(err.way_out().unwrap().contains("--fresh"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "left as it was");
    }
    // A header and nothing else: a run that journaled nothing yet starts.
    fs::write(&path, format!("{}\n", lines[0])).unwrap();
    assert_eq!(reopen(dir.path()).unwrap().resumed_at, None);
}

#[test]
fn a_new_journal_is_its_whole_header_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let opened = reopen(dir.path()).unwrap();
    let path = opened.journal.path().to_path_buf();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
    assert!(!path.with_extension("partial").exists());
}

#[test]
fn what_follows_the_last_newline_is_dropped_and_cut_off_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = three_records(dir.path());
    // The last record whole but for its newline, then blanks after a cut.
    for tail in [lines[3].clone(), format!("{}  \t", &lines[3][..9])] {
        let sound = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2]);
        fs::write(&path, format!("{sound}{tail}")).unwrap();
        let checked = verify(&path).unwrap();
        assert_eq!((checked.records, checked.cut), (2, Some(4)));
        let again = reopen(dir.path()).unwrap();
        assert_eq!(again.resumed_at, Some(Timestamp(1_000)));
        let mut j = again.journal;
        drive(&mut j, again.rollout, vec![(3_000, Event::Tick)]);
        drop(j);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&sound), "{text}");
        let appended = text[sound.len()..].strip_suffix('\n').expect("one whole line");
        assert_eq!(parse_record(appended).unwrap().seq, 3, "{text}");
        assert_eq!(verify(&path).unwrap().records, 3);
    }
    // Trailing blank lines go too: the file ends with its last whole record.
    fs::write(&path, format!("{}\n{}\n\n  \n", lines[0], lines[1])).unwrap();
    drop(reopen(dir.path()).unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n{}\n", lines[0], lines[1]));
}

#[test]
fn removing_a_run_takes_its_lock_first_and_removes_nothing_while_it_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = three_records(dir.path());
    let other = Journal::open(dir.path(), "other", &plan(), "o.toml", PLAN, None, false).unwrap();
    let runs = [("checkout", "p.toml"), ("other", "o.toml")];
    let err = remove_runs(dir.path(), &runs).expect_err("in use");
    assert!(matches!(err, JournalError::InUse { .. }), "{err}");
    assert!(path.exists() && other.journal.path().exists(), "nothing removed");
    drop(other);
    assert_eq!(remove_runs(dir.path(), &runs).unwrap(), 2);
    assert!(!path.exists());
}
