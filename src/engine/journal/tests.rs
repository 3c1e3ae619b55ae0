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
