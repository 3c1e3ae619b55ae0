//! Release files and the release state machine, case by case (the
//! invariants over random sequences are in release_properties.rs).

use flightdeck_core::release::{
    step, Member, MemberState, Release, ReleaseCommand, ReleaseEffect, ReleaseEvent, ReleaseFile, ReleasePhase,
    ReleaseRequest,
};
use flightdeck_core::rollout::{Actor, Role};
use flightdeck_core::time::Timestamp;
use std::time::Duration;

const FILE: &str = r#"[release]
name = "checkout-2.4"
on_failure = "rollback-wave"

[[waves]]
name = "canary region"
bake = "30m"

[[waves.rollouts]]
plan = "plans/checkout.toml"
regions = ["us-east-1"]

[[waves]]
name = "europe"
approval = true

[[waves.rollouts]]
plan = "plans/checkout.toml"
regions = ["eu-west-1", "eu-central-1"]

[[waves.rollouts]]
plan = "plans/payments.toml"
"#;

fn members(file: &ReleaseFile) -> Vec<Vec<Vec<Member>>> {
    file.waves
        .iter()
        .map(|w| {
            w.rollouts
                .iter()
                .map(|r| {
                    let name = r.plan.trim_start_matches("plans/").trim_end_matches(".toml");
                    let regions = if r.regions.is_empty() { vec!["own".to_string()] } else { r.regions.clone() };
                    regions.into_iter().map(|region| Member { rollout: format!("{region}/{name}"), region }).collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_release_file_reads_into_waves_with_bakes_approvals_and_the_failure_policy() {
    let file = ReleaseFile::parse("release.toml", FILE).unwrap();
    assert_eq!(file.name, "checkout-2.4");
    assert!(file.rollback_siblings);
    assert_eq!(file.waves.len(), 2);
    assert_eq!(file.waves[0].bake, Duration::from_secs(1800));
    assert!(!file.waves[0].approval && file.waves[1].approval);
    assert_eq!(file.waves[1].rollouts[0].regions, ["eu-west-1", "eu-central-1"]);
    assert_eq!(file.waves[1].rollouts[1].line, 22, "the line of the second entry's plan");
    let spec = file.spec(members(&file)).unwrap();
    let ids: Vec<&str> = spec.rollouts().collect();
    assert_eq!(ids, ["us-east-1/checkout", "eu-west-1/checkout", "eu-central-1/checkout", "own/payments"]);
    assert!(ReleaseFile::is_release(FILE));
    assert!(!ReleaseFile::is_release("[rollout]\nname = \"x\"\n"));
}

#[test]
fn bad_release_files_are_refused_at_file_line_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("bake = \"30m\"", "bake = \"3 fortnights\"", "release.toml:7:8: waves[0].bake: cannot read \"3 fortnights\""),
        ("bake = \"30m\"", "bake = \"30d\"", "release.toml:7:8: waves[0].bake: \"30d\" is too long"),
        (
            "on_failure = \"rollback-wave\"",
            "on_failure = \"panic\"",
            "release.toml:3:14: release.on_failure: unknown policy \"panic\"",
        ),
        ("regions = [\"us-east-1\"]", "regions = []", "release.toml:11:11: waves[0].rollouts[0].regions: empty"),
        (
            "regions = [\"us-east-1\"]",
            "regions = [\"us east\"]",
            "release.toml:11:12: waves[0].rollouts[0].regions[0]: \"us east\" is not a region name",
        ),
        ("approval = true", "aproval = true", "release.toml:15:1: waves[1].aproval: unknown key `aproval`"),
        ("name = \"checkout-2.4\"", "name = \"\"", "release.toml:2:8: release.name: must not be empty"),
    ];
    for (from, to, want) in cases {
        let text = FILE.replacen(from, to, 1);
        let err = ReleaseFile::parse("release.toml", &text).unwrap_err().to_string();
        assert!(err.starts_with(want), "{to}: got {err}");
    }
    let err = ReleaseFile::parse("r.toml", "[release]\nname = \"x\"\n").unwrap_err().to_string();
    assert!(err.starts_with("r.toml:1:1: waves: no [[waves]]"), "{err}");
    let err =
        ReleaseFile::parse("r.toml", "[release]\nname = \"x\"\n[[waves]]\nname = \"one\"\n").unwrap_err().to_string();
    assert!(err.starts_with("r.toml:3:1: waves[0].rollouts: missing"), "{err}");
}

#[test]
fn a_rollout_named_twice_is_refused_at_the_second_entry() {
    let text = FILE.replace("\"plans/payments.toml\"", "\"plans/checkout.toml\"\nregions = [\"us-east-1\"]");
    let file = ReleaseFile::parse("release.toml", &text).unwrap();
    let err = file.spec(members(&file)).unwrap_err().to_string();
    assert!(
        err.starts_with("release.toml:22:8: waves[1].rollouts[1].plan: rollout us-east-1/checkout is already in this release (line 10)"),
        "{err}"
    );
}

fn cmd(release: &Release, command: ReleaseCommand, wave: usize) -> ReleaseEvent {
    let _ = release;
    ReleaseEvent::Command(ReleaseRequest {
        actor: Actor::new("alice"),
        command,
        expected_wave: wave,
        role: Role::Captain,
    })
}

fn report(id: &str, state: MemberState) -> ReleaseEvent {
    ReleaseEvent::Rollout { rollout: id.into(), state }
}

fn starts(fx: &[ReleaseEffect]) -> Vec<&str> {
    fx.iter()
        .filter_map(|e| match e {
            ReleaseEffect::Start { rollout } => Some(rollout.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn waves_start_after_the_bake_and_the_approval_and_a_failure_halts_the_rest() {
    let file = ReleaseFile::parse("release.toml", FILE).unwrap();
    let r = Release::new(file.spec(members(&file)).unwrap());
    let t = |m: u64| Timestamp(m * 60_000);
    let (r, fx) = step(&r, ReleaseEvent::Start, t(0));
    assert_eq!(starts(&fx), ["us-east-1/checkout"]);
    let (r, _) = step(&r, report("us-east-1/checkout", MemberState::Running), t(1));
    let (r, _) = step(&r, report("us-east-1/checkout", MemberState::Promoted), t(45));
    assert!(matches!(r.phase, ReleasePhase::Baking { .. }));
    assert_eq!(r.next_wave_in(t(50)), Some(Duration::from_secs(25 * 60)));
    assert!(r.waits_for(t(50)).contains("next wave in 25m"), "{}", r.waits_for(t(50)));
    // Bake not over: nothing starts.
    let (r, fx) = step(&r, ReleaseEvent::Tick, t(74));
    assert!(starts(&fx).is_empty());
    // Over: wave 2 asks for approval first.
    let (r, fx) = step(&r, ReleaseEvent::Tick, t(75));
    assert!(starts(&fx).is_empty());
    assert!(matches!(r.phase, ReleasePhase::AwaitingApproval { .. }) && r.wave == 1);
    // An approval meant for wave 1 (sent before the bake ended) is stale.
    let (same, fx) = step(&r, cmd(&r, ReleaseCommand::Promote, 0), t(76));
    assert_eq!(same, r);
    let said = fx[0].clone();
    assert!(
        matches!(said, ReleaseEffect::Notify(ref n) if n.to_string() == "promote by alice refused: stale: sent for wave 1, but wave 2 is live now; look again"),
        "{said:?}"
    );
    let (r, fx) = step(&r, cmd(&r, ReleaseCommand::Promote, 1), t(76));
    assert_eq!(starts(&fx), ["eu-west-1/checkout", "eu-central-1/checkout", "own/payments"]);
    // Promote while the wave runs is refused, naming what it waits for.
    let (_, fx) = step(&r, cmd(&r, ReleaseCommand::Promote, 1), t(77));
    assert!(
        fx[0].clone()
            == ReleaseEffect::Notify(flightdeck_core::release::ReleaseNotice::Rejected {
                actor: Actor::new("alice"),
                command: "promote".into(),
                refusal: flightdeck_core::release::ReleaseRefusal::WaveNotPromoted {
                    wave: 1,
                    waiting: vec!["eu-west-1/checkout".into(), "eu-central-1/checkout".into(), "own/payments".into()],
                },
            })
    );
    let (r, _) = step(&r, report("eu-west-1/checkout", MemberState::Promoted), t(80));
    let (r, fx) =
        step(&r, report("eu-central-1/checkout", MemberState::RolledBack { reason: "error rate 4 %".into() }), t(81));
    let ReleasePhase::Halted { rollout, region, reason, .. } = &r.phase else { panic!("{:?}", r.phase) };
    assert_eq!(
        (rollout.as_str(), region.as_str(), reason.as_str()),
        ("eu-central-1/checkout", "eu-central-1", "rolled back: error rate 4 %")
    );
    assert!(r.waits_for(t(81)).contains("eu-central-1"));
    // rollback-wave: the started siblings roll back, the promoted one too.
    let rolled: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            ReleaseEffect::Rollback { rollout, .. } => Some(rollout.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(rolled, ["eu-west-1/checkout", "own/payments"]);
}

#[test]
fn pause_stops_the_bake_and_abort_reverts_every_started_rollout() {
    let file = ReleaseFile::parse("release.toml", &FILE.replace("approval = true", "approval = false")).unwrap();
    let r = Release::new(file.spec(members(&file)).unwrap());
    let t = |m: u64| Timestamp(m * 60_000);
    let (r, _) = step(&r, ReleaseEvent::Start, t(0));
    let (r, _) = step(&r, report("us-east-1/checkout", MemberState::Promoted), t(10));
    // Paused with 20 minutes baked (any wave named: pause is never stale).
    let (r, _) = step(&r, cmd(&r, ReleaseCommand::Pause { reason: None }, 7), t(30));
    let (r, fx) = step(&r, ReleaseEvent::Tick, t(100));
    assert!(starts(&fx).is_empty() && matches!(r.phase, ReleasePhase::Paused { .. }));
    let (r, _) = step(&r, cmd(&r, ReleaseCommand::Resume, 0), t(100));
    let (r, fx) = step(&r, ReleaseEvent::Tick, t(109));
    assert!(starts(&fx).is_empty(), "10 of the 30 minutes left at the resume");
    let (r, fx) = step(&r, ReleaseEvent::Tick, t(110));
    assert_eq!(starts(&fx).len(), 3);
    let (r, fx) = step(&r, cmd(&r, ReleaseCommand::Abort { reason: None }, 0), t(111));
    let rolled: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            ReleaseEffect::Rollback { rollout, .. } => Some(rollout.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(rolled, ["us-east-1/checkout", "eu-west-1/checkout", "eu-central-1/checkout", "own/payments"]);
    assert!(matches!(r.phase, ReleasePhase::Aborted { .. }));
    assert_eq!(r.reconcile().len(), 4, "a resume re-sends the reverts: {:?}", r.reconcile());
}
