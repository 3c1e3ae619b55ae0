//! End-to-end runs of the real binary, headless, one per scenario.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use support::cli::{flightdeck, flightdeck_in, isolated, json_lines, weights_set};

const CANARY: &str = "examples/plans/canary.toml";

fn run_scenario(scenario: &str, speed: &str) -> (i32, Vec<Value>, String) {
    let data = tempfile::tempdir().unwrap();
    let out =
        flightdeck(data.path(), &["run", CANARY, "--headless", "--json", "--speed", speed, "--scenario", scenario]);
    (out.status.code().unwrap_or(-1), json_lines(&out), String::from_utf8_lossy(&out.stderr).into())
}

fn position(events: &[Value], pred: impl Fn(&Value) -> bool) -> Option<usize> {
    events.iter().position(pred)
}

#[test]
fn healthy_canary_walks_every_stage_and_exits_0() {
    let (code, ev, stderr) = run_scenario("healthy", "600");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(weights_set(&ev), vec![1, 10, 50, 100]);
    let last = ev.iter().rev().find(|e| e["type"] == "transition").unwrap();
    assert_eq!(last["to"], "promoted");
    // Promotion only after passing verdicts, never on an inconclusive one alone.
    assert!(ev.iter().any(|e| e["type"] == "verdict" && e["verdict"] == "pass"));
}

#[test]
fn bad_canary_exits_3_with_the_failing_verdict_before_weight_zero() {
    let (code, ev, _) = run_scenario("bad-canary", "3000");
    assert_eq!(code, 3);
    let fail = position(&ev, |e| e["type"] == "verdict" && e["verdict"] == "fail").expect("a failing verdict");
    let zero = position(&ev, |e| e["type"] == "effect" && e["effect"] == "set-weight" && e["canary"] == 0)
        .expect("a weight-0 effect");
    assert!(fail < zero, "verdict at {fail} must come before weight 0 at {zero}");
    let error_row = ev[fail]["checks"].as_array().unwrap().iter().find(|c| c["metric"] == "error-rate").unwrap();
    assert_eq!(error_row["outcome"], "fail");
    assert!(error_row["canary"].as_f64().unwrap() > 5.0, "{error_row}");
    assert!(error_row["stable"].as_f64().unwrap() < 1.0);
    assert!(error_row["threshold"].as_f64().unwrap() == 1.0);
    assert!(error_row["reason"].as_str().unwrap().contains("error rate"));
    let rolled = ev.iter().find(|e| e["type"] == "transition" && e["to"] == "rolled back").unwrap();
    assert!(rolled["reason"].as_str().unwrap().starts_with("analysis failed"));
}

#[test]
fn slow_canary_is_rolled_back_on_latency() {
    let (code, ev, _) = run_scenario("slow-canary", "3000");
    assert_eq!(code, 3);
    let fail = ev.iter().find(|e| e["type"] == "verdict" && e["verdict"] == "fail").unwrap();
    let failing: Vec<&str> = fail["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .map(|c| c["metric"].as_str().unwrap())
        .collect();
    assert!(!failing.is_empty(), "a failing verdict names its failing checks");
    assert!(failing.iter().all(|m| m.starts_with("latency")), "{failing:?}");
}

#[test]
fn flaky_metrics_pause_for_a_human_and_nobody_coming_takes_the_canary_traffic_away() {
    let (code, ev, stderr) = run_scenario("flaky-metrics", "3000");
    assert_eq!(code, 3, "{stderr}");
    let gaps: Vec<&Value> =
        ev.iter().filter(|e| e["type"] == "verdict" && e["checks"].as_array().unwrap().is_empty()).collect();
    assert!(gaps.len() >= 3);
    assert!(gaps.iter().all(|g| g["verdict"] == "inconclusive"), "a window without metrics must never pass");
    let paused = position(&ev, |e| e["type"] == "transition" && e["to"] == "paused").unwrap();
    assert!(ev[paused]["reason"].as_str().unwrap().contains("metrics missing for 3 windows"));
    // The run goes on analysing the paused canary, says what happens if nobody comes, then does it.
    let warned = position(&ev, |e| {
        e["type"] == "notice" && e["message"].as_str().unwrap().contains("if nobody acts within 15m, it aborts")
    })
    .expect("the unattended policy announced");
    let analysed = position(&ev, |e| e["type"] == "verdict" && e["stage"] == ev[paused]["stage"]).unwrap();
    assert!(paused < warned, "{paused} {warned}");
    assert!(ev[paused..].iter().any(|e| e["type"] == "verdict"), "no window analysed while paused ({analysed})");
    let aborted = position(&ev, |e| e["type"] == "transition" && e["to"] == "aborted").expect("an abort");
    let reason = ev[aborted]["reason"].as_str().unwrap();
    assert!(reason.starts_with("nobody acted within 15m while paused (metrics missing"), "{reason}");
    let zero = position(&ev, |e| e["type"] == "effect" && e["effect"] == "set-weight" && e["canary"] == 0).unwrap();
    assert!(aborted < zero && ev[zero]["ok"] == true);
    // 15 simulated minutes after the pause, not earlier.
    assert!(ev[aborted]["at"].as_u64().unwrap() >= ev[paused]["at"].as_u64().unwrap() + 15 * 60_000);
    assert!(stderr.contains("aborted — nobody acted within 15m"), "{stderr}");
    assert!(stderr.contains("traffic: all on stable v1.4.2: canary weight 0 % (read back 0 %)"), "{stderr}");
}

#[test]
fn with_unattended_hold_a_paused_run_exits_1_and_says_the_canary_is_left_undriven() {
    let data = tempfile::tempdir().unwrap();
    let args = ["run", CANARY, "--headless", "--json", "--speed", "3000", "--scenario", "flaky-metrics"];
    let out = flightdeck(data.path(), &[&args[..], &["--unattended", "hold", "--unattended-wait", "5m"]].concat());
    let (ev, stderr) = (json_lines(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let paused = ev.iter().find(|e| e["type"] == "transition" && e["to"] == "paused").unwrap();
    let weight = paused["weight"].as_u64().unwrap();
    assert!(weight > 0);
    let left = ev.iter().find(|e| e["type"] == "notice" && e["message"].as_str().unwrap().starts_with("nobody acted"));
    let left = left.expect("the run says it stops driving")["message"].as_str().unwrap();
    assert!(
        left.contains(&format!("the canary keeps {weight} % of traffic with no analysis and no rollback")),
        "{left}"
    );
    assert!(stderr.contains("— needs a human: metrics missing for 3 windows"), "{stderr}");
    let said = format!("traffic: canary v1.5.0 LEFT AT {weight} % (read back {weight} %) with nothing driving it");
    assert!(stderr.contains(&said), "{stderr}");
    assert!(!ev.iter().any(|e| e["type"] == "transition" && e["to"] == "aborted"));
}

/// The lab's story on the simulator: a canary with 12 % errors (against a
/// margin of 8 points, on a quiet service: 120 canary requests a window,
/// so the evidence takes a while) pauses with no
/// decision after its bake; the paused canary is still analysed, and the
/// failing window that comes rolls it back. Before, the run ended at the
/// pause with the bad canary at 10 %.
#[test]
fn a_bad_canary_paused_in_a_headless_run_is_still_rolled_back_by_a_later_failing_window() {
    let data = tempfile::tempdir().unwrap();
    let plan = data.path().join("slow-bad.toml");
    std::fs::write(
        &plan,
        "[rollout]\nname = \"orders\"\nstable = \"v1\"\ncanary = \"v2\"\n\n\
         [target]\nbackend = \"sim\"\ngroup = \"sim-lab\"\nscenario = \"bad-canary\"\nrps = 20\nprobe_rps = 0\n\n\
         [strategy]\nkind = \"canary\"\nstages = [{ weight = 10, bake = \"1m\" }, { weight = 100, bake = \"0s\" }]\n\n\
         [analysis]\ninterval = \"1m\"\nmax_error_increase_pp = 8.0\nmax_error_rate_pct = 60.0\ninconclusive_limit = 1\n",
    )
    .unwrap();
    let out = flightdeck(data.path(), &["run", plan.to_str().unwrap(), "--headless", "--json", "--speed", "3000"]);
    let (ev, stderr) = (json_lines(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let paused = position(&ev, |e| e["type"] == "transition" && e["to"] == "paused").expect("a pause first");
    assert!(ev[paused]["reason"].as_str().unwrap().starts_with("no decision 1 windows after the bake"));
    assert_eq!(ev[paused]["weight"], 10);
    let fail = position(&ev, |e| e["type"] == "verdict" && e["verdict"] == "fail").expect("a failing verdict");
    let rolled = position(&ev, |e| e["type"] == "transition" && e["to"] == "rolled back").expect("a rollback");
    assert!(paused < fail && fail < rolled, "pause {paused}, fail {fail}, rollback {rolled}");
    assert_eq!(ev[rolled]["from"], "paused");
    assert!(ev[rolled]["reason"].as_str().unwrap().starts_with("analysis failed"));
    let zero = position(&ev, |e| e["type"] == "effect" && e["effect"] == "set-weight" && e["canary"] == 0).unwrap();
    assert!(rolled < zero && ev[zero]["ok"] == true);
    assert!(
        stderr.contains("traffic: all on stable v1: canary weight 0 % (read back 0 %); canary scaled down"),
        "{stderr}"
    );
}

/// A paused headless run serves a socket: a captain attaches and acts on
/// it, and the run ends as the captain decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captain_attaches_to_a_paused_headless_run_and_acts_on_it() {
    let data = tempfile::tempdir().unwrap();
    let socket = data.path().join("run.sock");
    let mut child = isolated(data.path())
        .args(["run", CANARY, "--headless", "--json", "--speed", "300", "--scenario", "flaky-metrics"])
        .args(["--unattended-wait", "10h", "--socket", socket.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let line = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) if line.contains("waits for a human") => break line,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("no pause within 60 s ({e})");
            }
        }
    };
    assert!(line.contains(&format!("flightdeck attach --socket {}", socket.display())), "{line}");
    let (link, welcome) = flightdeck::share::client::attach(&socket, "alice").await.unwrap();
    assert_eq!(welcome.role, flightdeck::protocol::Role::Captain);
    // Viewers hear of changes every snapshot interval: the pause shows within one.
    let mut snapshots = link.snapshots.clone();
    let r = loop {
        let r = snapshots.borrow_and_update().rollouts[0].clone();
        if r.phase.label() == "paused" {
            break r;
        }
        let changed = tokio::time::timeout(std::time::Duration::from_secs(5), snapshots.changed()).await;
        assert!(matches!(changed, Ok(Ok(()))), "the attached cockpit never saw the pause: {:?}", r.phase);
    };
    let request = flightdeck::protocol::CommandRequest {
        rollout: r.id.clone(),
        actor: flightdeck_core::Actor::new("alice"),
        command: flightdeck_core::Command::Rollback { reason: Some("metrics blind; not worth the risk".into()) },
        expected_stage: r.stage,
        expected_revision: r.canary_revision.clone(),
        expected_step: None,
    };
    assert_eq!(link.commands.submit(request).await, flightdeck::protocol::Reply::Ack);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end after the rollback");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(3));
    let said: Vec<String> = rx.try_iter().collect();
    assert!(said.iter().any(|l| l.contains("rolled back — metrics blind; not worth the risk")), "{said:?}");
    assert!(!socket.exists(), "the socket is removed when the run ends");
}

#[test]
fn a_bad_blue_green_preview_is_rolled_back_before_the_switch() {
    // The preview takes probe traffic only; a bad build must be caught there,
    // before any user is switched to it.
    let data = tempfile::tempdir().unwrap();
    let plan = "examples/plans/blue-green.toml";
    let out =
        flightdeck(data.path(), &["run", plan, "--headless", "--json", "--speed", "600", "--scenario", "bad-canary"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let ev = json_lines(&out);
    let switched = ev.iter().any(|e| e["type"] == "effect" && e["effect"] == "switch-active" && e["to"] == "canary");
    assert!(!switched, "the bad preview was switched to: {ev:?}");
    assert!(ev.iter().any(|e| e["type"] == "verdict" && e["verdict"] == "fail"));
}

#[test]
fn stuck_backend_pauses_with_the_error_visible() {
    let (code, ev, stderr) = run_scenario("stuck-backend", "600");
    // The outage lasts minutes 15 to 30: the unattended abort, 15 minutes
    // after the pause, reaches the backend again and takes the canary's
    // traffic away.
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("canary weight 0 % (read back 0 %)"), "{stderr}");
    let failed = ev.iter().find(|e| e["type"] == "effect" && e["ok"] == false).unwrap();
    assert_eq!(failed["attempts"], 3);
    assert!(failed["error"].as_str().unwrap().contains("timed out"));
    let paused = ev.iter().find(|e| e["type"] == "transition" && e["to"] == "paused").unwrap();
    assert!(paused["reason"].as_str().unwrap().starts_with("backend failing"));
    // The 10 % was never applied: the pause says traffic is still at 1 %.
    assert_eq!((&paused["weight"], &paused["still_at"]), (&10.into(), &1.into()), "{paused}");
    // --json counts stages from 1; the event itself keeps the core's index.
    let mut event = paused.clone();
    event["stage"] = (paused["stage"].as_u64().unwrap() - 1).into();
    let line = flightdeck::headless::human(&serde_json::from_value(event).unwrap());
    assert!(line.contains("stage 2/4 still at 1% (wanted 10%, not applied)"), "{line}");
}

#[test]
fn demo_fleet_runs_headless_and_reports_the_bad_rollout() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &["demo", "--headless", "--json", "--speed", "3000"]);
    assert_eq!(out.status.code(), Some(3));
    let ev = json_lines(&out);
    let started: std::collections::BTreeSet<_> =
        ev.iter().filter(|e| e["type"] == "started").map(|e| e["rollout"].as_str().unwrap().to_string()).collect();
    assert_eq!(started.len(), 6);
    let rolled: Vec<_> = ev.iter().filter(|e| e["type"] == "transition" && e["to"] == "rolled back").collect();
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0]["rollout"], "prod-eu-1/payments");
}

#[test]
fn demo_keeps_only_its_latest_runs_journals() {
    let data = tempfile::tempdir().unwrap();
    // Journals only: a run's `.lock` file sits beside its journal.
    let journals = || {
        let entries = std::fs::read_dir(data.path().join("journal")).unwrap();
        entries.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "jsonl")).count()
    };
    for _ in 0..3 {
        let out = flightdeck(data.path(), &["demo", "--headless", "--speed", "3000"]);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(journals(), 6, "one journal per demo rollout, whatever ran before");
    }
}

#[test]
fn a_killed_run_resumes_at_the_same_stage_from_its_journal() {
    let data = tempfile::tempdir().unwrap();
    let mut child = isolated(data.path())
        .args(["run", CANARY, "--headless", "--json", "--speed", "300", "--scenario", "healthy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until the rollout is in stage 2, then kill it hard.
    let mut stage_at_kill = None;
    for line in lines.by_ref() {
        let e: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if e["type"] == "transition" && e["stage"] == 2 {
            stage_at_kill = Some(2);
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(stage_at_kill, Some(2), "never reached stage 2");

    let out = flightdeck(data.path(), &["run", CANARY, "--headless", "--json", "--speed", "3000"]);
    let ev = json_lines(&out);
    assert_eq!(ev[0]["type"], "started");
    assert_eq!(ev[0]["resumed"], true);
    assert_eq!(ev[0]["stage"], 2, "resumed at the stage it was killed in (counted from 1, as the text does)");
    // The resumed run re-applies the stage's weight, then carries on to 100 %.
    assert_eq!(weights_set(&ev), vec![10, 50, 100]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_accepts_every_example_plan() {
    let data = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir("examples/plans").unwrap() {
        let path = entry.unwrap().path();
        let out = flightdeck(data.path(), &["check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn check_rejects_every_invalid_plan_with_its_exact_message() {
    let data = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir("tests/invalid_plans").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let out = flightdeck(data.path(), &["check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), expected.trim(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 15, "only {seen} invalid plans");
}

#[test]
fn bad_flags_and_unknown_scenarios_exit_2() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &["run", CANARY, "--headless", "--scenario", "chaos"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario `chaos`"));
    let out = flightdeck(data.path(), &["run", "no/such/plan.toml", "--headless"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("no/such/plan.toml: cannot read"));
}

#[test]
fn check_refuses_what_run_refuses_at_the_same_place() {
    let (data, config) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut seen = 0;
    for entry in std::fs::read_dir("tests/invalid_run_plans").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let file = path.to_str().unwrap();
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let expected = expected.trim().replace("{config}", &config.path().display().to_string());
        let check = flightdeck_in(data.path(), config.path(), &["check", file]);
        assert_eq!(check.status.code(), Some(2), "check {file}");
        assert_eq!(String::from_utf8_lossy(&check.stderr).trim(), expected, "check {file}");
        let run = flightdeck_in(data.path(), config.path(), &["run", file, "--headless", "--json"]);
        assert_eq!(run.status.code(), Some(2), "run {file}");
        assert_eq!(String::from_utf8_lossy(&run.stderr).trim(), expected, "run {file}");
        assert!(run.stdout.is_empty(), "run {file} started: {}", String::from_utf8_lossy(&run.stdout));
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} plans");
}

#[test]
fn a_plan_may_name_a_user_theme_and_a_broken_one_is_refused_at_the_theme_key() {
    let (data, config) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let themes = config.path().join("themes");
    std::fs::create_dir(&themes).unwrap();
    std::fs::write(themes.join("ours.toml"), "inherits = \"prod\"\n").unwrap();
    std::fs::write(themes.join("broken.toml"), "\"ui.text\" = \"nocolour\"\n").unwrap();
    let plans = tempfile::tempdir().unwrap();
    let plan = |theme: &str| {
        let path = plans.path().join(format!("{theme}.toml"));
        let text = format!("[rollout]\nname = \"a\"\nstable = \"v1\"\ncanary = \"v2\"\ntheme = \"{theme}\"\n");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ours = plan("ours");
    let out = flightdeck_in(data.path(), config.path(), &["check", &ours]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let broken = plan("broken");
    let out = flightdeck_in(data.path(), config.path(), &["check", &broken]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("{broken}:5:9: rollout.theme: theme \"broken\" does not load: ")), "{stderr}");
    assert!(stderr.contains("broken.toml:1:"), "names the theme file: {stderr}");
}

#[test]
fn a_finished_run_is_not_replayed_for_another_scenario_or_seed() {
    let data = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", CANARY, "--headless", "--json"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--speed") {
            args.extend_from_slice(&["--speed", "3000"]);
        }
        flightdeck(data.path(), &args)
    };
    let first = run(&["--scenario", "healthy", "--seed", "1"]);
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));

    // Another scenario and seed: refused, nothing run, both named, --fresh offered.
    let other = run(&["--scenario", "bad-canary", "--seed", "7"]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(2), "{stderr}");
    assert!(other.stdout.is_empty(), "{}", String::from_utf8_lossy(&other.stdout));
    assert!(stderr.contains(".jsonl:1: journal was written with"), "{stderr}");
    assert!(
        stderr.contains(
            "was written with --scenario healthy --seed 1; this run asks for --scenario bad-canary --seed 7: \
             pass --fresh to start over (the old journal is kept aside)"
        ),
        "{stderr}"
    );
    // The seed alone is another run too; the speed is not.
    assert_eq!(run(&["--scenario", "healthy", "--seed", "2"]).status.code(), Some(2));
    let again = run(&["--scenario", "healthy", "--seed", "1", "--speed", "600"]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(json_lines(&again)[0]["resumed"], true);

    // --fresh runs the bad canary, which is rolled back.
    let fresh = run(&["--scenario", "bad-canary", "--seed", "7", "--fresh"]);
    assert_eq!(fresh.status.code(), Some(3), "{}", String::from_utf8_lossy(&fresh.stderr));
    let journals = std::fs::read_dir(data.path().join("journal"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "jsonl"))
        .count();
    assert_eq!(journals, 2, "the healthy run's journal is kept aside");
}

#[test]
fn plan_files_naming_the_same_rollout_run_one_after_another() {
    let data = tempfile::tempdir().unwrap();
    let plans = tempfile::tempdir().unwrap();
    let plan = |file: &str, canary: &str| {
        let path = plans.path().join(file);
        let text = format!(
            "[rollout]\nname = \"checkout-api\"\nstable = \"v1\"\ncanary = \"{canary}\"\n\n\
             [target]\ngroup = \"edge-eu-1\"\n\n[[strategy.stages]]\nweight = 50\nbake = \"2m\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (haproxy, envoy) = (plan("haproxy.toml", "v2"), plan("envoy.toml", "v3"));
    let run = |file: &str| flightdeck(data.path(), &["run", file, "--headless", "--json", "--speed", "3000"]);
    for file in [&haproxy, &envoy] {
        let out = run(file);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json_lines(&out)[0]["resumed"], false, "{file} is a rollout of its own");
    }
    // Each file finds its own journal again.
    let out = run(&haproxy);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out)[0]["resumed"], true);
}

/// `flightdeck analyze` on a rollout's journal reaches, window by window, the
/// verdicts the engine reached during the run.
#[test]
fn analyze_replays_a_journal_to_the_engines_own_verdicts() {
    let data = tempfile::tempdir().unwrap();
    let run = flightdeck(
        data.path(),
        &["run", CANARY, "--headless", "--json", "--speed", "3000", "--scenario", "bad-canary"],
    );
    assert_eq!(run.status.code(), Some(3));
    let engine: Vec<Value> = json_lines(&run).into_iter().filter(|e| e["type"] == "verdict").collect();
    assert!(engine.len() >= 5, "{} windows", engine.len());
    let journal = std::fs::read_dir(data.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a journal");
    let out = flightdeck(data.path(), &["analyze", journal.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3), "a failing window exits 3: {}", String::from_utf8_lossy(&out.stderr));
    let analysed = json_lines(&out);
    assert_eq!(analysed.len(), engine.len());
    for (a, e) in analysed.iter().zip(&engine) {
        assert_eq!(a["verdict"]["verdict"], e["verdict"], "window {}", a["window"]);
        let outcomes = |checks: &Value| -> Vec<Value> {
            checks.as_array().unwrap().iter().map(|c| c["outcome"].clone()).collect()
        };
        assert_eq!(outcomes(&a["verdict"]["checks"]), outcomes(&e["checks"]), "window {}", a["window"]);
    }
    assert_eq!(analysed.last().unwrap()["outcome"], "rolled back");
    let text = flightdeck(data.path(), &["analyze", journal.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("→ rolled back"), "{text}");
    assert!(text.contains("error rate"), "{text}");
}

/// A windows file: each window decided in order; a bad line names file:line.
#[test]
fn analyze_decides_a_windows_file_and_names_a_bad_line() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("windows.jsonl");
    let stable = r#"{"requests": 9500, "errors": 47, "p50_ms": 80, "p95_ms": 180, "p99_ms": 250}"#;
    let bad = r#"{"requests": 500, "errors": 40, "p50_ms": 80, "p95_ms": 180, "p99_ms": 252}"#;
    let lines: Vec<String> =
        (0..4).map(|_| format!(r#"{{"window": "1m", "stage": 0, "stable": {stable}, "canary": {bad}}}"#)).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = flightdeck(data.path(), &["analyze", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    // Windows are the error margin's units: it decides from the third.
    assert!(text.contains("\nwindow 3 (stage 1): fail"), "8 % errors on 500 requests: {text}");
    std::fs::write(&file, format!("{}\n{{\"window\": \"1m\", \"canary\": 7}}\n", lines[0])).unwrap();
    let out = flightdeck(data.path(), &["analyze", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("{}:2:", file.display())), "{stderr}");
}

/// A windows file is read strictly: an unknown key inside a version (`p99`
/// for `p99_ms`), more errors than requests, or a `0s` window is refused
/// with its file:line, not ignored, clamped or divided by.
#[test]
fn analyze_refuses_unknown_version_keys_impossible_counts_and_empty_windows() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("windows.jsonl");
    let good =
        r#"{"window": "1m", "stable": {"requests": 900, "errors": 1}, "canary": {"requests": 100, "errors": 0}}"#;
    for (bad, wanted) in [
        (
            r#"{"window": "1m", "stable": {"requests": 900, "errors": 1}, "canary": {"requests": 100, "errors": 0, "p99": 250}}"#,
            "unknown field `p99`",
        ),
        (
            r#"{"window": "1m", "stable": {"requests": 900, "errors": 1}, "canary": {"requests": 100, "errors": 120}}"#,
            "canary.errors: 120 errors out of 100 requests",
        ),
        (
            r#"{"window": "0s", "stable": {"requests": 900, "errors": 1}, "canary": {"requests": 100, "errors": 0}}"#,
            "window: must be longer than 0s",
        ),
    ] {
        std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
        let out = flightdeck(data.path(), &["analyze", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.starts_with(&format!("{}:2:", file.display())), "{stderr}");
        assert!(stderr.contains(wanted), "{wanted}: {stderr}");
    }
}

/// Every simulator plan in examples/plans/ finishes with every scenario:
/// promoted, rolled back, or paused asking a human with a reason — never a
/// silent wait (each run must end by itself).
#[test]
fn every_example_plan_finishes_with_every_scenario() {
    let plans: Vec<_> = std::fs::read_dir("examples/plans")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("backend = \"sim\""))
        .collect();
    assert!(plans.len() >= 3, "{plans:?}");
    for plan in &plans {
        for scenario in ["healthy", "bad-canary", "slow-canary", "flaky-metrics", "stuck-backend"] {
            let data = tempfile::tempdir().unwrap();
            let args = ["run", plan.to_str().unwrap(), "--headless", "--speed", "20000", "--scenario", scenario];
            let out = flightdeck(data.path(), &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{} --scenario {scenario}: {stderr}", plan.display());
            match out.status.code() {
                Some(0) | Some(3) => {}
                Some(1) => assert!(stderr.contains("needs a human: "), "{what}"),
                other => panic!("exit {other:?}: {what}"),
            }
            if scenario == "bad-canary" || scenario == "slow-canary" {
                assert_ne!(out.status.code(), Some(0), "a bad canary is never promoted: {what}");
            }
        }
    }
}

/// A signal that comes while the journals are opened (made slow by a
/// debug-only hook) stops the run before any rollout starts: the stop
/// message, 128 + the signal's number, nothing on stdout and nothing
/// journaled after the header.
#[test]
fn a_signal_while_journals_are_opened_stops_the_run_before_any_rollout_acts() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let data = tempfile::tempdir().unwrap();
        let child = isolated(data.path())
            .args(["run", CANARY, "--headless", "--json", "--speed", "20000", "--scenario", "healthy"])
            .env("FLIGHTDECK_DELAY_AFTER_JOURNAL_OPEN_MS", "3000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The journal is there (with its header) once it has been opened.
        let dir = data.path().join("journal");
        let start = std::time::Instant::now();
        let journal = loop {
            let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
                entries.map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "jsonl"))
            });
            if let Some(path) = found {
                break path;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "no journal opened");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        let name = if signal == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{said}");
        assert!(
            said.ends_with(&format!("stopped by {name}; run the same command again to resume from the journal\n")),
            "{said}"
        );
        assert!(out.stdout.is_empty(), "nothing started: {}", String::from_utf8_lossy(&out.stdout));
        let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
        assert_eq!(lines, 1, "only the header: no rollout started");
    }
}

/// `check` reports every bad plan, not only the first: each with its
/// file:line, then how many were refused, and checks the good ones too.
#[test]
fn check_reports_every_refused_plan_not_only_the_first() {
    let data = tempfile::tempdir().unwrap();
    let args = [
        "check",
        "tests/invalid_plans/unknown-analysis-key.toml",
        "examples/plans/canary.toml",
        "tests/invalid_plans/alpha-too-high.toml",
    ];
    let out = flightdeck(data.path(), &args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.contains("examples/plans/canary.toml: ok"), "{stdout}");
    assert!(stderr.contains("tests/invalid_plans/unknown-analysis-key.toml:8:1: analysis.intervall"), "{stderr}");
    assert!(stderr.contains("tests/invalid_plans/alpha-too-high.toml:7:9: analysis.alpha"), "{stderr}");
    assert!(stderr.trim_end().ends_with("2 of 3 plans refused"), "{stderr}");
}

/// The journals of a run with every wall-clock field left out, by file
/// name: what was decided, when in the run's time, in what order.
fn journals_without_wall_times(data: &Path) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(data.join("journal")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let records = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut record: Value = serde_json::from_str(l).unwrap();
                if let Some(map) = record.as_object_mut() {
                    map.retain(|k, _| !k.contains("wall"));
                }
                record
            })
            .collect();
        out.insert(path.file_name().unwrap().to_string_lossy().into_owned(), records);
    }
    out
}

/// The README promises the same decisions at any speed: the demo fleet,
/// one seed, five speeds from 600× to a million times, gives the same
/// journals (apart from wall-clock times) and the same exit code.
#[test]
fn a_simulated_run_is_the_same_run_at_any_speed() {
    let speeds = ["600", "3000", "6000", "60000", "1000000"];
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = speeds
            .iter()
            .map(|speed| {
                s.spawn(move || {
                    let data = tempfile::tempdir().unwrap();
                    let out = flightdeck(data.path(), &["demo", "--headless", "--seed", "1", "--speed", speed]);
                    (out.status.code(), journals_without_wall_times(data.path()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (code, journals) = &runs[0];
    assert_eq!(journals.len(), 6, "one journal per demo rollout: {:?}", journals.keys());
    for (speed, (other_code, other)) in speeds.iter().zip(&runs).skip(1) {
        assert_eq!(other_code, code, "exit code at {speed}×");
        for (name, records) in journals {
            let theirs = &other[name];
            let first_difference = records.iter().zip(theirs).position(|(a, b)| a != b);
            assert!(
                first_difference.is_none() && records.len() == theirs.len(),
                "{name} at {speed}× differs from 600× at record {first_difference:?}: {:?} vs {:?}",
                first_difference.map(|i| &records[i]),
                first_difference.map(|i| &theirs[i]),
            );
        }
    }
}
