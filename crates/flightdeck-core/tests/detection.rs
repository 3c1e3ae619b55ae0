//! The detection benchmark's `--quick` subset (5 % of 100 req/s, 20 seeds),
//! with the properties it must show, and checks of the simulation itself.

#[path = "../examples/detection/mod.rs"]
mod detection;

use detection::grid::{cells, Cell, Scenario, Standing};
use detection::kayenta::mann_whitney_p;
use detection::report::{exposure, CellResult};
use detection::run::{run_cell, run_seed, Outcome, Policy};
use detection::stats::Summary;
use detection::traffic::{Behaviour, Service, SLOW_MS};
use std::sync::OnceLock;
use std::time::Duration;

const SEEDS: u64 = 20;

/// The quick grid, run once for every test here.
fn quick() -> &'static [CellResult] {
    static RESULTS: OnceLock<Vec<CellResult>> = OnceLock::new();
    RESULTS.get_or_init(|| {
        cells(true)
            .into_iter()
            .map(|cell| {
                let outcomes = run_cell(&cell, SEEDS);
                let summaries = outcomes.iter().map(|o| (!o.is_empty()).then(|| Summary::of(o))).collect();
                CellResult { cell, summaries }
            })
            .collect()
    })
}

fn cell(name: &str, interval_s: u64) -> &'static CellResult {
    quick()
        .iter()
        .find(|r| r.cell.scenario.name == name && r.cell.interval == Duration::from_secs(interval_s))
        .unwrap_or_else(|| panic!("{name} at {interval_s} s is in the quick grid"))
}

fn summary(r: &CellResult, p: Policy) -> &Summary {
    r.of(p).unwrap_or_else(|| panic!("{} has {}", r.cell.label(), p.name()))
}

#[test]
fn flightdeck_rolls_back_a_5pp_canary_at_5_percent_of_100_rps() {
    for interval in [60, 10] {
        let s = summary(cell("errors +5 pp", interval), Policy::Flightdeck);
        assert_eq!(s.rolled_back, s.runs, "every +5 pp rollout rolled back at {interval} s");
        let median = s.rollback_median.expect("rolled back");
        assert!(median <= Duration::from_secs(3 * 60), "median {median:?} at {interval} s");
    }
}

/// Median exposure before rollback; `f64::INFINITY` when not rolled back.
fn exposure_median(r: &CellResult, p: Policy) -> f64 {
    exposure(r, p).and_then(|e| e.0).unwrap_or(f64::INFINITY)
}

#[test]
fn exposure_counts_what_the_bad_canary_served_until_the_rollback() {
    let per_minute = 100.0 * 60.0 * 0.05;
    for interval in [60, 10] {
        let r = cell("errors +5 pp", interval);
        let (fd, flagger) = (summary(r, Policy::Flightdeck), summary(r, Policy::Flagger5));
        // Excess failed requests: canary requests until the rollback × 5 pp.
        let served = fd.served_median.expect("every +5 pp rollout rolled back") as f64;
        assert!(served > 0.0);
        assert!((exposure_median(r, Policy::Flightdeck) - 0.05 * served).abs() < 1e-9);
        // Flagger t=5 judges 5 minutes at 5 % and serves one more until its rollback lands.
        let flagger_served = flagger.served_median.expect("rolled back") as f64;
        assert!((flagger_served / (6.0 * per_minute) - 1.0).abs() < 0.1, "Flagger served {flagger_served}");
        // Against Flagger at its real interval (1 m), whatever flightdeck's window.
        let flagger_1m = exposure_median(cell("errors +5 pp", 60), Policy::Flagger5);
        assert!(
            exposure_median(r, Policy::Flightdeck) <= flagger_1m,
            "{}: flightdeck {} vs Flagger t=5 at 1 m {flagger_1m}",
            r.cell.label(),
            exposure_median(r, Policy::Flightdeck),
        );
    }
    // Goal (e) on the quick grid: fewer exposed than Flagger t=5 at 1 m, every cell past a margin.
    for r in quick().iter().filter(|r| r.cell.scenario.standing == Standing::Beyond) {
        let flagger = cell(r.cell.scenario.name, 60);
        let (fd, fl) = (exposure_median(r, Policy::Flightdeck), exposure_median(flagger, Policy::Flagger5));
        assert!(0.0 < fd && fd < fl, "{}: flightdeck {fd} vs Flagger t=5 at 1 m {fl}", r.cell.label());
    }
}

#[test]
fn a_paused_rollout_is_still_analysed_and_can_be_rolled_back() {
    // Errors +2 pp on 5 % of 10 req/s: too little traffic to decide within the
    // first bake, so flightdeck pauses; the windows at the paused weight go on.
    let scenario = Scenario::all().into_iter().find(|s| s.name == "errors +2 pp").expect("in the grid");
    let c = Cell { scenario, rate: 10, share: 5, interval: Duration::from_secs(60) };
    let service = c.service();
    let runs: Vec<_> = (0..SEEDS).filter_map(|seed| run_seed(&c, &service, seed)[0]).collect();
    let asked = runs.iter().filter(|r| r.asked.is_some()).count();
    let later = runs.iter().filter(|r| r.asked.is_some() && matches!(r.outcome, Outcome::RolledBack(_))).count();
    for r in &runs {
        match (r.asked, r.outcome) {
            (Some((asked, _)), Outcome::RolledBack(at)) => assert!(at > asked),
            (Some(first), Outcome::Paused(at, why)) => assert_eq!(first, (at, why)),
            (None, Outcome::Paused(..)) => panic!("a paused outcome without its pause"),
            _ => {}
        }
    }
    assert!(asked > 0 && later > 0, "asked {asked}, rolled back later {later}");
}

#[test]
fn flightdeck_keeps_healthy_canaries() {
    for name in ["A/A", "errors +0.5 pp"] {
        for interval in [60, 10] {
            let s = summary(cell(name, interval), Policy::Flightdeck);
            assert!(s.rolled_back <= 1, "{name} at {interval} s: {} of {} rolled back", s.rolled_back, s.runs);
        }
    }
}

#[test]
fn the_information_limit_is_never_slower_than_flightdeck() {
    for r in quick().iter().filter(|r| r.cell.scenario.standing == Standing::Beyond) {
        let limit = summary(r, Policy::Oracle);
        let flightdeck = summary(r, Policy::Flightdeck);
        assert_eq!(limit.rolled_back, limit.runs, "{}", r.cell.label());
        let (l, f) = (limit.rollback_median.unwrap(), flightdeck.rollback_median.unwrap_or(Duration::MAX));
        assert!(l <= f, "{}: limit {l:?} vs flightdeck {f:?}", r.cell.label());
    }
    // Within the margins the limit has nothing to test.
    assert!(cell("A/A", 60).of(Policy::Oracle).is_none());
}

#[test]
fn flagger_rolls_back_one_interval_after_its_threshold() {
    for r in quick() {
        let (five, one) = (summary(r, Policy::Flagger5), summary(r, Policy::Flagger1));
        assert!(one.rolled_back >= five.rolled_back, "{}", r.cell.label());
        // Flagger runs at its real interval, 1 m, in every cell.
        let earliest = |t: u32| Duration::from_secs(60) * (t + 1);
        assert!(five.rollback_median.is_none_or(|m| m >= earliest(5)), "{}", r.cell.label());
        assert!(one.rollback_median.is_none_or(|m| m >= earliest(1)), "{}", r.cell.label());
    }
}

#[test]
fn a_seed_gives_the_same_rollouts_every_time() {
    let c: Cell = cell("p99 +50 %", 10).cell;
    let service = c.service();
    for seed in [0, 7] {
        assert_eq!(run_seed(&c, &service, seed), run_seed(&c, &service, seed));
    }
    let a = run_seed(&c, &service, 1);
    let b = run_seed(&c, &service, 2);
    assert_ne!(a, b, "different seeds, different traffic");
    assert!(matches!(a[0].map(|r| r.outcome), Some(Outcome::RolledBack(_))));
}

#[test]
fn windows_follow_the_model() {
    let service = Service::new(Behaviour::stable(), 60_000);
    let (mut requests, mut errors, mut slow, mut canary) = (0u64, 0u64, 0u64, 0u64);
    for index in 0..40 {
        let w = service.window(3, index, 10);
        assert_eq!(w.stable.counts.iter().sum::<u64>(), w.stable.requests);
        assert_eq!(w.stable.latency.total(), w.stable.requests);
        assert_eq!(w.stable.requests + w.canary.requests, 60_000);
        requests += w.stable.requests;
        errors += w.stable.errors;
        slow += w.stable.slow;
        canary += w.canary.requests;
        let p99 = w.stable.latency.quantile(0.99).unwrap();
        assert!((p99 / 250.0 - 1.0).abs() < 0.04, "stable p99 {p99}");
    }
    let share = |x: u64| x as f64 / requests as f64;
    assert!((share(errors) - 0.005).abs() < 0.0005, "error rate {}", share(errors));
    let want_slow = Behaviour::stable().latency.share_above(SLOW_MS);
    assert!((share(slow) / want_slow - 1.0).abs() < 0.05, "slow {} vs {want_slow}", share(slow));
    assert!((canary as f64 / (40.0 * 60_000.0) - 0.10).abs() < 0.002);
    // Small windows draw request by request, and still add up.
    let w = Service::new(Behaviour::stable(), 30).window(1, 0, 50);
    assert_eq!(w.canary.counts.iter().sum::<u64>(), w.canary.requests);
}

#[test]
fn mann_whitney_from_counts_matches_the_core_on_samples() {
    let groups = [(3u64, 1u64), (2, 4), (0, 2), (5, 0), (1, 3)];
    let (mut stable, mut canary) = (Vec::new(), Vec::new());
    for (value, (s, c)) in groups.iter().enumerate() {
        stable.extend(std::iter::repeat_n(value as f64, *s as usize));
        canary.extend(std::iter::repeat_n(value as f64, *c as usize));
    }
    let core = flightdeck_core::analysis::stats::mann_whitney(&stable, &canary).unwrap();
    let p = mann_whitney_p(groups).unwrap();
    assert!((p - (1.0 - core.confidence)).abs() < 1e-12, "{p} vs {}", 1.0 - core.confidence);
    assert!(mann_whitney_p([(5, 0)]).is_none());
}

/// The stress study's short cells on held-out seeds (5 % of 100 req/s): a
/// shared incident at t = 0 and overdispersed A/A roll back no healthy
/// canary; an overdispersed +5 pp canary is rolled back every time.
#[test]
fn stress_cells_keep_healthy_canaries_and_catch_bursty_regressions() {
    use detection::stress::{self, End, Study};
    let mut checked = 0;
    for (cell, _) in stress::cells(true).into_iter().filter(|(c, _)| c.run_for < 6 * stress::HOUR) {
        checked += 1;
        let result = stress::run_cell(&cell, 8);
        let rolled_back = result.ends.iter().filter(|e| matches!(e, End::RolledBack(..))).count();
        match (cell.study, cell.excess) {
            (Study::Incident, _) | (Study::Overdispersed, 0.0) => {
                assert_eq!(rolled_back, 0, "{:?} {}: {:?}", cell.study, cell.label(), result.ends)
            }
            (Study::Overdispersed, e) if e >= 0.05 => {
                assert_eq!(rolled_back, result.ends.len(), "{:?} {}: {:?}", cell.study, cell.label(), result.ends)
            }
            _ => {}
        }
    }
    assert_eq!(checked, 8, "incident, overdispersed A/A, +2 pp, +5 pp at 1 m and 10 s");
}
