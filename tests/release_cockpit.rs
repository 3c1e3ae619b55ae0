//! The cockpit's releases pane (src/ui/release.rs), drawn from a snapshot
//! that carries a release, on ratatui's TestBackend.

use flightdeck::protocol::Snapshot;
use flightdeck::ui::app::App;
use flightdeck_core::release::{step, Member, MemberState, Release, ReleaseEvent, ReleaseSpec, Wave};
use flightdeck_core::rollout::{Actor, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use flightdeck_core::Plan;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::sync::Arc;
use std::time::Duration;

fn plan(region: &str) -> Plan {
    let text = format!(
        "[rollout]\nname = \"storefront\"\nstable = \"v1\"\ncanary = \"v2\"\n\n[target]\nbackend = \"sim\"\ngroup = \"{region}\"\n"
    );
    Plan::parse("storefront.toml", &text).unwrap()
}

fn spec() -> ReleaseSpec {
    let member = |r: &str| Member { rollout: format!("{r}/storefront"), region: r.into() };
    let wave = |name: &str, regions: &[&str], bake: u64| Wave {
        name: name.into(),
        members: regions.iter().map(|r| member(r)).collect(),
        bake: Duration::from_secs(bake * 60),
        approval: false,
    };
    ReleaseSpec {
        name: "storefront-4.1".into(),
        waves: vec![
            wave("canary region", &["us-east-1"], 10),
            wave("europe", &["eu-west-1", "eu-central-1"], 10),
            wave("rest of world", &["ap-southeast-1"], 0),
        ],
        rollback_siblings: true,
    }
}

fn t(minutes: u64) -> Timestamp {
    Timestamp(minutes * 60_000)
}

fn screen(release: &Release, rollouts: Vec<Rollout>, selected: &str, now: Timestamp) -> String {
    let snapshot = Snapshot {
        at: now,
        rollouts: rollouts.into_iter().map(Arc::new).collect(),
        releases: vec![Arc::new(release.clone())],
        ..Snapshot::default()
    };
    let mut app = App::new(snapshot, flightdeck::preview::shipped_look("default"), Actor::new("alice"));
    app.set_now(now);
    app.selected = Some(selected.to_string());
    let mut terminal = Terminal::new(TestBackend::new(140, 44)).unwrap();
    terminal.draw(|f| flightdeck::ui::view::render(f, &mut app)).unwrap();
    terminal.backend().to_string()
}

fn rollout(region: &str, phase: Phase, weight: u8) -> Rollout {
    let mut r = Rollout::new(format!("{region}/storefront"), plan(region));
    r.phase = phase;
    r.canary_weight = weight;
    r
}

#[test]
fn a_baking_release_shows_its_live_wave_and_the_time_to_the_next() {
    let r = Release::new(spec());
    let (r, _) = step(&r, ReleaseEvent::Start, t(0));
    let promoted = MemberState::Promoted;
    let (r, _) = step(&r, ReleaseEvent::Rollout { rollout: "us-east-1/storefront".into(), state: promoted }, t(20));
    let rollouts = vec![
        rollout("us-east-1", Phase::Promoted { at: t(20) }, 100),
        rollout("eu-west-1", Phase::Pending, 0),
        rollout("eu-central-1", Phase::Pending, 0),
        rollout("ap-southeast-1", Phase::Pending, 0),
    ];
    let s = screen(&r, rollouts, "us-east-1/storefront", t(22));
    for want in [
        "Releases 1",
        "▶ storefront-4.1 baking 1/3 8:00",
        "wave 1 of 3 (canary region)",
        "promoted: next wave in 8:00",
        "> 1 canary region  baking",
        "● us-east-1 100% · promoted",
        "2 europe  waits",
        "· eu-central-1   0% · pending",
    ] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
}

#[test]
fn a_halted_release_names_the_region_and_the_waves_that_never_start() {
    let r = Release::new(spec());
    let (r, _) = step(&r, ReleaseEvent::Start, t(0));
    let report = |r: &Release, id: &str, state: MemberState, at: u64| {
        step(r, ReleaseEvent::Rollout { rollout: id.into(), state }, t(at)).0
    };
    let r = report(&r, "us-east-1/storefront", MemberState::Promoted, 20);
    let (r, _) = step(&r, ReleaseEvent::Tick, t(30));
    let r = report(&r, "eu-central-1/storefront", MemberState::RolledBack { reason: "error rate 4 %".into() }, 33);
    let rollouts = vec![
        rollout("us-east-1", Phase::Promoted { at: t(20) }, 100),
        rollout("eu-west-1", Phase::RolledBack { by: Actor::new("release"), reason: "halted".into(), at: t(33) }, 0),
        rollout("eu-central-1", Phase::RolledBack { by: Actor::analysis(), reason: "x".into(), at: t(33) }, 0),
        rollout("ap-southeast-1", Phase::Pending, 0),
    ];
    let s = screen(&r, rollouts, "eu-central-1/storefront", t(34));
    for want in [
        "↺ storefront-4.1 halted 2/3",
        "halted at wave 2 of 3 (europe):",
        "eu-central-1/storefront in",
        "eu-central-1: rolled back: error",
        "1 canary region  promoted",
        "2 europe  halted",
        "↺ eu-west-1   0% · rolled back",
        "3 rest of world  never starts",
        "· ap-southeast-1  never starts",
    ] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
}

/// The palette sends a command to a release it names, for the wave the
/// cockpit shows live; a name that is a rollout's stays the rollout's.
#[test]
fn the_palette_sends_release_commands_for_the_live_wave() {
    let r = Release::new(spec());
    let (r, _) = step(&r, ReleaseEvent::Start, t(0));
    let (r, _) =
        step(&r, ReleaseEvent::Rollout { rollout: "us-east-1/storefront".into(), state: MemberState::Promoted }, t(20));
    let snapshot = Snapshot {
        at: t(22),
        rollouts: vec![Arc::new(rollout("us-east-1", Phase::Promoted { at: t(20) }, 100))],
        releases: vec![Arc::new(r)],
        ..Snapshot::default()
    };
    let mut app = App::new(snapshot, flightdeck::preview::shipped_look("default"), Actor::new("alice"));
    for line in ["promote release/storefront-4.1", "promote storefront-4.1"] {
        let sent = app.run_palette(line);
        assert_eq!(sent.len(), 1, "{line}");
        assert_eq!(sent[0].rollout, "release/storefront-4.1");
        assert_eq!(sent[0].command, flightdeck_core::rollout::Command::Promote);
        assert_eq!(sent[0].expected_stage, 0, "the live wave, 0-based");
    }
    // `storefront` is the rollout's plan name: the rollout's command, not the release's.
    let sent = app.run_palette("pause storefront");
    assert!(sent.iter().all(|s| s.rollout == "us-east-1/storefront"), "{sent:?}");
}
