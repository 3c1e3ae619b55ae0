//! Releases across regions, end to end: the real binary runs a release
//! file headless on the simulator (`flightdeck run RELEASE.toml`).

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::cli::{flightdeck, isolated, json_lines};

/// A short canary on the simulator, `scenario` in every region it runs in.
fn plan(name: &str, scenario: &str) -> String {
    format!(
        "[rollout]\nname = \"{name}\"\nstable = \"v1\"\ncanary = \"v2\"\n\n[target]\nbackend = \"sim\"\n\
         group = \"somewhere\"\nscenario = \"{scenario}\"\n\n[strategy]\nkind = \"canary\"\n\n\
         [[strategy.stages]]\nweight = 10\nbake = \"5m\"\n\n[[strategy.stages]]\nweight = 100\nbake = \"0s\"\n\n\
         [analysis]\ninterval = \"1m\"\nmax_error_increase_pp = 1.0\nmax_p99_increase_pct = 10.0\nmin_requests = 100\n"
    )
}

/// Three waves: us-east-1, then eu-west-1 (whose canary goes bad), then
/// ap-southeast-1 and us-west-2.
fn three_waves(dir: &Path, bad_in_wave_two: bool) -> std::path::PathBuf {
    std::fs::write(dir.join("checkout.toml"), plan("checkout", "healthy")).unwrap();
    let second = if bad_in_wave_two { "bad-canary" } else { "healthy" };
    std::fs::write(dir.join("checkout-eu.toml"), plan("checkout", second)).unwrap();
    let release = "[release]\nname = \"checkout-2\"\n\n\
        [[waves]]\nname = \"canary region\"\nbake = \"20m\"\n[[waves.rollouts]]\nplan = \"checkout.toml\"\nregions = [\"us-east-1\"]\n\n\
        [[waves]]\nname = \"europe\"\nbake = \"10m\"\n[[waves.rollouts]]\nplan = \"checkout-eu.toml\"\nregions = [\"eu-west-1\"]\n\n\
        [[waves]]\nname = \"rest\"\n[[waves.rollouts]]\nplan = \"checkout.toml\"\nregions = [\"ap-southeast-1\", \"us-west-2\"]\n";
    let path = dir.join("release.toml");
    std::fs::write(&path, release).unwrap();
    path
}

fn at(e: &Value) -> u64 {
    e["at"].as_u64().unwrap()
}

#[test]
fn a_failing_second_wave_halts_the_release_the_third_never_starts_and_the_run_exits_3() {
    let data = tempfile::tempdir().unwrap();
    let release = three_waves(data.path(), true);
    let out = flightdeck(data.path(), &["run", release.to_str().unwrap(), "--headless", "--json", "--speed", "3000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let ev = json_lines(&out);
    let started = |id: &str| ev.iter().find(|e| e["type"] == "started" && e["rollout"] == id);
    // Wave 1 ran and was promoted; wave 2 started only after it and the 20 minute bake.
    let promoted = ev
        .iter()
        .find(|e| e["rollout"] == "us-east-1/checkout" && e["type"] == "transition" && e["to"] == "promoted")
        .expect("wave 1 promoted");
    let eu = started("eu-west-1/checkout").expect("wave 2 started");
    assert!(at(eu) >= at(promoted) + 20 * 60_000, "wave 2 at {} before the bake after {}", at(eu), at(promoted));
    // eu-west-1 rolled back; the third wave never started.
    assert!(ev
        .iter()
        .any(|e| e["rollout"] == "eu-west-1/checkout" && e["type"] == "transition" && e["to"] == "rolled back"));
    for id in ["ap-southeast-1/checkout", "us-west-2/checkout"] {
        assert!(ev.iter().all(|e| e["rollout"] != id), "{id} showed up: it must never start");
        assert!(
            ev.iter().any(|e| e["rollout"] == "release/checkout-2"
                && e["message"].as_str().is_some_and(|m| m.starts_with(&format!("{id} never starts")))),
            "{id} not said to never start"
        );
    }
    // The reason names the region.
    assert!(
        stderr.contains("release checkout-2: halted at wave 2 (europe): eu-west-1/checkout in region eu-west-1 rolled back: analysis failed"),
        "{stderr}"
    );
    assert!(stderr.contains("never started: ap-southeast-1/checkout, us-west-2/checkout"), "{stderr}");
}

#[test]
fn a_healthy_release_promotes_every_wave_in_order_and_exits_0() {
    let data = tempfile::tempdir().unwrap();
    let release = three_waves(data.path(), false);
    let out = flightdeck(data.path(), &["run", release.to_str().unwrap(), "--headless", "--json", "--speed", "3000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let ev = json_lines(&out);
    let time_of = |id: &str, kind: &str, to: Option<&str>| {
        ev.iter()
            .find(|e| e["rollout"] == id && e["type"] == kind && to.is_none_or(|t| e["to"] == t))
            .map(at)
            .unwrap_or_else(|| panic!("no {kind} {to:?} of {id}"))
    };
    let eu_done = time_of("eu-west-1/checkout", "transition", Some("promoted"));
    for id in ["ap-southeast-1/checkout", "us-west-2/checkout"] {
        assert!(time_of(id, "started", None) >= eu_done + 10 * 60_000, "{id} started before wave 2's bake ended");
        time_of(id, "transition", Some("promoted"));
    }
    assert!(stderr.contains("release checkout-2: promoted, every wave, every region"), "{stderr}");
}

#[test]
fn check_knows_a_release_and_refuses_a_missing_plan_at_its_line() {
    let data = tempfile::tempdir().unwrap();
    let release = three_waves(data.path(), false);
    let out = flightdeck(data.path(), &["check", release.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(
            "ok (release checkout-2: 3 waves, 4 rollouts in us-east-1, eu-west-1, ap-southeast-1, us-west-2)"
        ),
        "{stdout}"
    );
    std::fs::remove_file(data.path().join("checkout-eu.toml")).unwrap();
    let out = flightdeck(data.path(), &["check", release.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    let want = format!("{}:15:8: waves[1].rollouts[0].plan: cannot read plan", release.display());
    assert!(stderr.contains(&want), "{stderr}");
    // The shipped example checks.
    let out = flightdeck(data.path(), &["check", "examples/release/checkout.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Lines of a child's stdout, as they come.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    rx
}

/// Waits for a line containing `what` (60 s at most), keeping every line read.
fn wait_for(
    rx: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    child: &mut std::process::Child,
) {
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => {
                let found = line.contains(what);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("no line with {what:?} within 60 s ({e}); read:\n{}", seen.join("\n"));
            }
        }
    }
}

/// A headless release at a wave's approval is shared on its socket: a
/// promote sent for the wave before is stale and changes nothing; one for
/// the live wave starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captain_promotes_a_waiting_wave_over_the_socket_and_a_promote_for_the_wave_before_is_stale() {
    use flightdeck::protocol::{CommandRequest, Reply};
    use flightdeck_core::rollout::{Actor, Command as Verb};
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("checkout.toml"), plan("checkout", "healthy")).unwrap();
    let release = data.path().join("release.toml");
    std::fs::write(
        &release,
        "[release]\nname = \"gated\"\n\n[[waves]]\nbake = \"5m\"\n[[waves.rollouts]]\nplan = \"checkout.toml\"\n\
         regions = [\"us-east-1\"]\n\n[[waves]]\nname = \"europe\"\napproval = true\n[[waves.rollouts]]\n\
         plan = \"checkout.toml\"\nregions = [\"eu-west-1\"]\n",
    )
    .unwrap();
    let socket = data.path().join("run.sock");
    let mut child = isolated(data.path())
        .args(["run", release.to_str().unwrap(), "--headless", "--speed", "3000", "--unattended-wait", "10h"])
        .args(["--socket", socket.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&rx, &mut seen, "wave 2 (europe) waits for approval", &mut child);
    assert!(!seen.iter().any(|l| l.contains("eu-west-1/checkout")), "wave 2 started before its approval");
    let (link, _) = flightdeck::share::client::attach(&socket, "alice").await.unwrap();
    // The attached cockpit sees the release at its approval (within a
    // snapshot interval of the server's).
    let mut snapshots = link.snapshots.clone();
    let at_approval = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let shown = snapshots.borrow_and_update().releases.clone();
            if shown.first().is_some_and(|r| r.phase.label() == "awaiting approval" && r.wave == 1) {
                return;
            }
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });
    at_approval.await.expect("the release reaches attached cockpits, at its approval");
    let promote = |wave: usize| CommandRequest {
        rollout: "release/gated".into(),
        actor: Actor::new("alice"),
        command: Verb::Promote,
        expected_stage: wave,
        expected_revision: String::new(),
        expected_step: None,
    };
    let stale = link.commands.submit(promote(0)).await;
    assert_eq!(stale, Reply::Rejected { reason: "stale: sent for wave 1, but wave 2 is live now; look again".into() },);
    assert_eq!(link.commands.submit(promote(1)).await, Reply::Ack);
    // Its start reaches the attached cockpit as a change.
    let started = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if snapshots.borrow_and_update().releases.first().is_some_and(|r| r.phase.label() != "awaiting approval") {
                return;
            }
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });
    started.await.expect("the attached cockpit saw the release move on");
    let status = child.wait().unwrap();
    wait_for(&rx, &mut seen, "eu-west-1/checkout: v2 promoted to 100 %", &mut child);
    assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
    assert!(seen.iter().any(|l| l.contains("wave 2 approved by")), "{}", seen.join("\n"));
    // Both commands are journaled, the refused one too (the audit trail).
    let journal = std::fs::read_dir(data.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("release-gated-")
                && p.extension().is_some_and(|e| e == "jsonl")
        })
        .expect("a release journal");
    let text = std::fs::read_to_string(journal).unwrap();
    let promotes: Vec<&str> = text.lines().filter(|l| l.contains(r#""command":"promote""#)).collect();
    assert_eq!(promotes.len(), 2, "{text}");
    assert!(promotes[0].contains(r#""expected_wave":0"#) && promotes[1].contains(r#""expected_wave":1"#), "{text}");
    // `audit` tells them, who sent them, the wave they saw and the answer.
    let audit = flightdeck(data.path(), &["audit", release.to_str().unwrap()]);
    let lines = String::from_utf8_lossy(&audit.stdout);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    // (By the login name the server knows the captain by.)
    let stale = "saw wave 1: REFUSED: stale: sent for wave 1, but wave 2 is live now; look again";
    assert!(lines[0].contains("release/gated: promote by ") && lines[0].ends_with(stale), "{lines:?}");
    assert!(lines[1].contains("release/gated: promote by ") && lines[1].ends_with("saw wave 2: applied"), "{lines:?}");
}

/// A release stopped mid-run resumes from its journal: the waves it had
/// finished are not run again, and it goes on to the end.
#[test]
fn a_release_stopped_by_a_signal_resumes_from_its_journal_where_it_was() {
    let data = tempfile::tempdir().unwrap();
    let release = three_waves(data.path(), false);
    let args = ["run", release.to_str().unwrap(), "--headless", "--speed", "600"];
    let mut child = isolated(data.path())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&rx, &mut seen, "wave 2 (europe) starts", &mut child);
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "stopped by SIGTERM");
    // `journal verify` reads the release's journal; a record a crash cut
    // short is dropped, not refused.
    let journal = std::fs::read_dir(data.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("release-checkout-2-")
                && p.extension().is_some_and(|e| e == "jsonl")
        })
        .expect("a release journal");
    let verified = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && said.contains("release checkout-2: ") && said.contains(" at wave 2/3)"),
        "{said}"
    );
    let mut file = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
    std::io::Write::write_all(&mut file, b"{\"at\":99,\"event\":{\"ev").unwrap();
    let verified = flightdeck(data.path(), &["journal", "verify", journal.to_str().unwrap()]);
    assert!(verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stderr).contains("the last line was cut short by a crash mid-write"));
    let out = flightdeck(data.path(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("release/checkout-2: resumed: "), "{stdout}");
    assert!(!stdout.contains("wave 1 (canary region) starts"), "wave 1 ran again:\n{stdout}");
    assert!(!stdout.contains("us-east-1/checkout: started"), "us-east-1 started over:\n{stdout}");
    assert!(stdout.contains("ap-southeast-1/checkout: started"), "{stdout}");
}

/// `demo --release`: beside the demo fleet, a release across five pretend
/// regions in which eu-central-1 goes bad: the halt is visible (wave 2
/// rolls back, wave 3 never starts).
#[test]
fn the_demo_release_halts_when_its_bad_region_rolls_back() {
    let data = tempfile::tempdir().unwrap();
    let out = flightdeck(data.path(), &["demo", "--release", "--headless", "--json", "--speed", "3000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let ev = json_lines(&out);
    let said = |what: &str| {
        ev.iter().any(|e| {
            e["rollout"] == "release/storefront-4.1" && e["message"].as_str().is_some_and(|m| m.contains(what))
        })
    };
    assert!(said("wave 2 (europe) starts: eu-west-1, eu-central-1"));
    assert!(said("release halted: eu-central-1/storefront in eu-central-1 (wave 2) rolled back"));
    assert!(said("ap-southeast-1/storefront never starts"));
    let rolled = ev
        .iter()
        .find(|e| e["rollout"] == "eu-west-1/storefront" && e["type"] == "transition" && e["to"] == "rolled back")
        .expect("eu-west-1 rolled back with its wave");
    assert!(rolled["reason"].as_str().unwrap().contains("release storefront-4.1 halted"), "{rolled}");
    assert!(ev.iter().all(|e| e["rollout"] != "us-west-2/storefront"));
    assert!(
        stderr.contains(
            "release storefront-4.1: halted at wave 2 (europe): eu-central-1/storefront in region eu-central-1"
        ),
        "{stderr}"
    );
    // The demo fleet runs beside it as before.
    assert!(ev.iter().any(|e| e["rollout"] == "prod-eu-1/payments"));
}

/// The engine publishes the release's state in its snapshots beside the
/// rollouts (the cockpit's releases pane draws it), and its driver ends
/// once a headless release is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_publishes_the_release_in_its_snapshots() {
    use flightdeck::clock::Clock;
    use flightdeck::engine::{Engine, EngineOptions, StopWhen};
    use flightdeck_core::release::ReleasePhase;
    let mut run = flightdeck::release::demo(1).await.unwrap();
    let setups = std::mem::take(&mut run.setups);
    let clock = Clock::scaled(flightdeck_core::Timestamp(0), 3000.0);
    let options = EngineOptions { clock, journal_dir: None, fresh: true, stop_when: StopWhen::Unattended };
    let (drivers, outcome) = flightdeck::release::drivers(Some(&run), &options).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let engine = Engine::start_with(setups, options, tx, drivers).unwrap();
    let snapshots = engine.subscribe();
    tokio::time::timeout(std::time::Duration::from_secs(60), engine.wait()).await.expect("the run ends");
    let snapshot = snapshots.borrow().clone();
    assert_eq!(snapshot.releases.len(), 1);
    let published = &snapshot.releases[0];
    let ReleasePhase::Halted { region, .. } = &published.phase else { panic!("{:?}", published.phase) };
    assert_eq!(region, "eu-central-1");
    assert_eq!(outcome.lock().unwrap().as_ref(), Some(published.as_ref()));
}

/// Headless, a wave that waits for an approval nobody gives within
/// --unattended-wait ends the run (exit 1): no later wave starts, and the
/// run says so and how to resume.
#[test]
fn a_headless_approval_nobody_gives_ends_the_run_with_later_waves_never_started() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("checkout.toml"), plan("checkout", "healthy")).unwrap();
    let release = data.path().join("release.toml");
    std::fs::write(
        &release,
        "[release]\nname = \"gated\"\n\n[[waves]]\n[[waves.rollouts]]\nplan = \"checkout.toml\"\nregions = [\"us-east-1\"]\n\n\
         [[waves]]\napproval = true\n[[waves.rollouts]]\nplan = \"checkout.toml\"\nregions = [\"eu-west-1\"]\n",
    )
    .unwrap();
    let path = release.to_str().unwrap();
    let args = ["run", path, "--headless", "--speed", "3000", "--unattended-wait", "5m"];
    let out = flightdeck(data.path(), &args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("nobody acted within 5m while the release is awaiting approval"), "{stdout}");
    assert!(!stdout.contains("eu-west-1/checkout: started"), "{stdout}");
    assert!(stderr.contains("release gated: awaiting approval"), "{stderr}");
    assert!(stderr.contains("never started: eu-west-1/checkout"), "{stderr}");
}

/// A release journal is resumed only by the release file it was written
/// for: another text is refused (exit 2) with the way out, and nothing runs.
#[test]
fn a_release_journal_of_another_release_text_is_refused() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("checkout.toml"), plan("checkout", "healthy")).unwrap();
    let release = data.path().join("release.toml");
    let text = "[release]\nname = \"gated\"\n\n[[waves]]\n[[waves.rollouts]]\nplan = \"checkout.toml\"\n\
                regions = [\"us-east-1\"]\n\n[[waves]]\napproval = true\n[[waves.rollouts]]\nplan = \"checkout.toml\"\n\
                regions = [\"eu-west-1\"]\n";
    std::fs::write(&release, text).unwrap();
    let path = release.to_str().unwrap();
    // The first run ends at the approval: nobody comes within its unattended wait of 1s.
    let args = ["run", path, "--headless", "--speed", "3000", "--unattended-wait", "1s"];
    assert_eq!(flightdeck(data.path(), &args).status.code(), Some(1));
    std::fs::write(&release, text.replace("approval = true", "approval = true\nbake = \"1m\"")).unwrap();
    let out = flightdeck(data.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(":1: written for a different release than"), "{stderr}");
    assert!(stderr.contains("run with --fresh to start over"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&out.stdout));
    let mut fresh = args.to_vec();
    fresh.push("--fresh");
    assert_eq!(flightdeck(data.path(), &fresh).status.code(), Some(1), "--fresh starts over");
    // The same release text over a plan that now makes other rollouts is another release too.
    std::fs::write(data.path().join("checkout.toml"), plan("checkout-v2", "healthy")).unwrap();
    let out = flightdeck(data.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("(its text, or the rollouts its plans make)"), "{stderr}");
}
