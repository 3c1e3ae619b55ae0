//! The flagd backend's files, held to what flagd itself reads: each file
//! flightdeck writes is checked against flagd's JSON schema (vendored in
//! tests/flags/schema from open-feature/flagd-schemas) and evaluated by the
//! OpenFeature flagd evaluator (`@openfeature/flagd-core`, the engine of
//! flagd's in-process providers) through `tests/flags/evaluate.cjs`, so the
//! percentages are shown to mean what the plan says. `scripts/setup`
//! installs both (npm, into tests/flags).
#![cfg(feature = "flags")]

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
