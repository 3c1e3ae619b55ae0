//! The flagd backend's files, held to what flagd itself reads: each file
//! flightdeck writes is checked against flagd's JSON schema (vendored in
//! tests/flags/schema from open-feature/flagd-schemas) and evaluated by the
//! OpenFeature flagd evaluator (`@openfeature/flagd-core`, the engine of
//! flagd's in-process providers) through `tests/flags/evaluate.cjs`, so the
//! percentages are shown to mean what the plan says. `scripts/setup`
//! installs both (npm, into tests/flags).
#![cfg(feature = "flags")]

mod support;

use flightdeck::backend::flag::flagd::Flagd;
use flightdeck::backend::Backend;
use flightdeck_core::plan::{BackendKind, Target};
use flightdeck_core::rollout::{Effect, Version};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The shipped example, the file examples/plans/flagd.toml drives.
const EXAMPLE: &str = "examples/flagd/flags.json";
/// Targeting keys evaluated per split.
const USERS: u64 = 10_000;

fn target(file: &Path) -> Target {
    let params = [
        ("file", file.display().to_string()),
        ("flag", "new-checkout".to_string()),
        ("stable_variant", "off".to_string()),
        ("canary_variant", "on".to_string()),
    ];
    Target {
        backend: BackendKind::Flagd,
        group: "flags".into(),
        production: false,
        params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

/// flagd's verdict on `file`: schema errors, the evaluator's parse error,
/// and how many of `USERS` targeting keys got each variant.
fn evaluate(file: &Path, flag: &str) -> Value {
    let out = Command::new("node")
        .args(["tests/flags/evaluate.cjs", file.to_str().unwrap(), flag, &USERS.to_string()])
        .output()
        .expect("node (run scripts/setup)");
    assert!(out.status.success(), "evaluate.cjs: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `count` of `n` within 4.5 standard deviations of a binomial(n, p)
/// (exact at 0 % and 100 %): the hash flagd buckets by is uniform.
fn within_binomial_bound(count: u64, n: u64, percent: u8) -> bool {
    let p = f64::from(percent) / 100.0;
    let bound = 4.5 * (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - n as f64 * p).abs() <= bound
}

#[tokio::test]
async fn every_stage_written_is_valid_flagd_and_splits_users_as_the_plan_says() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    let shipped = std::fs::read_to_string(EXAMPLE).unwrap();
    std::fs::write(&file, &shipped).unwrap();
    let flagd = Flagd::from_target(&target(&file)).unwrap();
    for weight in [1u8, 5, 10, 25, 50, 100, 0] {
        flagd.apply(&Effect::SetWeight { canary: weight }).await.unwrap();
        assert_eq!(flagd.observe().await.unwrap().canary_weight, Some(weight));
        let verdict = evaluate(&file, "new-checkout");
        assert_eq!(verdict["schemaErrors"], serde_json::json!([]), "at {weight} %: {verdict}");
        assert_eq!(verdict["parseError"], Value::Null, "at {weight} %: {verdict}");
        let on = verdict["counts"]["on"].as_u64().unwrap_or(0);
        let off = verdict["counts"]["off"].as_u64().unwrap_or(0);
        println!("{weight:>3} %: {on} of {USERS} users get `on`");
        assert_eq!(on + off, USERS, "every user gets one of the two variants: {verdict}");
        assert!(within_binomial_bound(on, USERS, weight), "{weight} %: {on} of {USERS} got the canary");
        // Only the two weights changed: the rest of the file is byte for byte the shipped one.
        let written = std::fs::read_to_string(&file).unwrap();
        let expected = shipped
            .replace("[\"off\", 100]", &format!("[\"off\", {}]", 100 - weight))
            .replace("[\"on\", 0]", &format!("[\"on\", {weight}]"));
        assert_eq!(written, expected);
    }
    // Blue-green on a flag: the switch is all or nothing.
    flagd.apply(&Effect::SwitchActive { to: Version::Canary }).await.unwrap();
    assert_eq!(evaluate(&file, "new-checkout")["counts"]["on"], USERS);
}

#[test]
fn the_checker_refuses_what_flagd_refuses() {
    // Shows the schema check and the evaluator are live: a state flagd does
    // not know is an error to both.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    let shipped = std::fs::read_to_string(EXAMPLE).unwrap();
    std::fs::write(&file, shipped.replacen("\"ENABLED\"", "\"ON\"", 1)).unwrap();
    let verdict = evaluate(&file, "new-checkout");
    assert!(verdict["schemaErrors"].as_array().is_some_and(|e| !e.is_empty()), "{verdict}");
    assert!(verdict["parseError"].as_str().is_some_and(|e| e.contains("Invalid flag state")), "{verdict}");
}

#[tokio::test]
async fn a_hand_edit_is_read_back_as_it_is_and_a_flag_turned_off_reads_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, std::fs::read_to_string(EXAMPLE).unwrap()).unwrap();
    let flagd = Flagd::from_target(&target(&file)).unwrap();
    flagd.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
    // Someone edits the file (or the ConfigMap it comes from) to 70/30:
    // the read-back says 30 %, which the core pauses on as drift.
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[\"off\", 90]", "[\"off\", 70]")
        .replace("[\"on\", 10]", "[\"on\", 30]");
    std::fs::write(&file, &edited).unwrap();
    assert_eq!(flagd.observe().await.unwrap().canary_weight, Some(30));
    std::fs::write(&file, edited.replacen("\"ENABLED\"", "\"DISABLED\"", 1)).unwrap();
    let seen = flagd.observe().await.unwrap();
    assert_eq!(seen.canary_weight, Some(0));
    assert!(seen.native_detail.unwrap().contains("DISABLED"));
    let verdict = evaluate(&file, "new-checkout");
    // A disabled flag gives no variant: every user gets the code's default.
    assert_eq!(verdict["counts"], serde_json::json!({ "undefined": USERS }), "{verdict}");
}

#[test]
fn the_demos_flag_goes_bad_at_its_first_stage_and_is_turned_back_to_zero() {
    // `demo --flags` runs the simulator's flag (src/demo/flags/new-checkout.toml,
    // scenario `bad-flag`) beside the demo fleet.
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .env("FLIGHTDECK_DATA_DIR", data.path())
        .env("FLIGHTDECK_CONFIG_DIR", data.path().join("config"))
        .stdin(std::process::Stdio::null())
        .args(["demo", "--flags", "--headless", "--speed", "60000", "--rollouts", "1"])
        .output()
        .unwrap();
    // Events on stdout, where each rollout was left on stderr.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let flag: Vec<&str> = text.lines().filter(|l| l.contains("flags/new-checkout")).collect();
    let rolled_back = flag.iter().find(|l| l.contains("progressing → rolled back")).expect("a rollback");
    assert!(rolled_back.contains("stage 1/4 at 0%") && rolled_back.contains("error rate"), "{rolled_back}");
    assert!(text.contains("all on stable off: canary weight 0 % (read back 0 %)"), "{text}");
    assert_eq!(out.status.code(), Some(3), "a rollback ends the headless run with 3");
}

/// Healthy traffic for the engine test: both sides alike, whatever the split.
struct Healthy;

#[async_trait::async_trait]
impl flightdeck::metrics::MetricsSource for Healthy {
    async fn sample(
        &self,
        window: std::time::Duration,
        _now: flightdeck_core::Timestamp,
    ) -> flightdeck_core::analysis::MetricsSample {
        let side = || flightdeck_core::analysis::VersionWindow {
            requests: 200,
            errors: 0,
            p50_ms: Some(40.0),
            p95_ms: Some(80.0),
            p99_ms: Some(120.0),
            ..Default::default()
        };
        flightdeck_core::analysis::MetricsSample { window, stable: Some(side()), canary: Some(side()), missing: None }
    }

    async fn slo(&self, _now: flightdeck_core::Timestamp) -> Option<flightdeck_core::budget::SloMeasurement> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_during_a_stage_pauses_the_rollout_as_drift_and_resume_writes_the_stage_back() {
    use flightdeck::engine::{RolloutSetup, StopWhen};
    use flightdeck::protocol::{CommandRequest, Reply};
    use flightdeck_core::rollout::Phase;
    use flightdeck_core::{Actor, Command as Verb, Plan};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, std::fs::read_to_string(EXAMPLE).unwrap()).unwrap();
    let text = format!(
        "[rollout]\nname = \"new-checkout\"\nstable = \"off\"\ncanary = \"on\"\n\n\
         [target]\nbackend = \"flagd\"\ngroup = \"flags\"\nfile = \"{}\"\nflag = \"new-checkout\"\n\
         stable_variant = \"off\"\ncanary_variant = \"on\"\n\n\
         [strategy]\nkind = \"canary\"\nstages = [{{ weight = 10, bake = \"1h\" }}, {{ weight = 100, bake = \"0s\" }}]\n\n\
         [analysis]\ninterval = \"1s\"\nmin_requests = 20\n",
        file.display()
    );
    let plan = Plan::parse("flagd-test.toml", &text).unwrap();
    let setup = RolloutSetup {
        id: "flags/new-checkout".into(),
        backend: std::sync::Arc::new(Flagd::from_target(&plan.target).unwrap()),
        metrics: std::sync::Arc::new(Healthy),
        plan,
        plan_file: "flagd-test.toml".into(),
        plan_text: text,
    };
    let engine = support::engine::one_rollout(setup, flightdeck::clock::Clock::Wall, StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let phase = |snapshots: &tokio::sync::watch::Receiver<flightdeck::protocol::Snapshot>| {
        snapshots.borrow().rollouts[0].phase.clone()
    };
    let weight = || off_on(&file);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while weight() != (90, 10) {
        assert!(std::time::Instant::now() < deadline, "stage 1 never reached the file");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A hand edit to 70/30 while the stage bakes.
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[\"off\", 90]", "[\"off\", 70]")
        .replace("[\"on\", 10]", "[\"on\", 30]");
    std::fs::write(&file, edited).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let reason = loop {
        if let Phase::Paused { by, reason, .. } = phase(&snapshots) {
            assert_eq!(by, Actor::backend());
            break reason;
        }
        assert!(std::time::Instant::now() < deadline, "no pause; phase {:?}", phase(&snapshots));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), snapshots.changed()).await;
    };
    println!("paused: {reason}");
    assert!(reason.contains("drift") && reason.contains("30 %") && reason.contains("10 %"), "{reason}");
    assert_eq!(weight(), (70, 30), "paused, not overwritten");
    let resume = CommandRequest {
        rollout: "flags/new-checkout".into(),
        actor: Actor::new("captain"),
        command: Verb::Resume,
        expected_stage: 0,
        expected_revision: "on".into(),
        expected_step: None,
    };
    assert_eq!(engine.submit(resume).await, Reply::Ack);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while weight() != (90, 10) {
        assert!(std::time::Instant::now() < deadline, "resume did not write the stage back: {:?}", weight());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The new-checkout split in the example's layout, as (off, on) weights.
fn off_on(file: &Path) -> (u64, u64) {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let buckets = &json["flags"]["new-checkout"]["targeting"]["fractional"];
    (buckets[1][1].as_u64().unwrap(), buckets[2][1].as_u64().unwrap())
}
