//! The stress study: α where it is tested hardest, and traffic that is not
//! binomial. flightdeck alone (the other policies have no α to keep), on
//! seeds from [`HELD_OUT_SEED`] on, which no constant was ever tuned on.
//!
//! - **At the margin**: the canary's error rate exactly stable's + 1 pp (the
//!   hardest null: any rollback is a false one), held for 6 h and 24 h, in
//!   every traffic cell (10/100/1000 req/s × 1/5/10/50 % × 1 m/10 s). The
//!   canary never passes its first stage, so it pauses there and the
//!   analysis goes on at that weight until the end (as the engine does).
//! - **Shared incident at t = 0**: both versions 0.5 % → 3 % for the first
//!   5 minutes, then 0.5 %: stable's baseline is young when it hits.
//! - **Overdispersed**: each window's error rate per version is drawn from a
//!   Beta (beta-binomial counts): stable κ = 2000 (many pods average out:
//!   the window's rate varies ±32 % around 0.5 %), the canary κ = 200 (few
//!   pods: a bad pod or a retry storm moves the whole window, ±100 %); and
//!   the load follows a diurnal curve from its steepest point (1 + ½ sin(2π
//!   t / 24 h): +50 % in 6 h).
//! - **Overdispersed latency** ("Overdispersed slow"): as above, and the
//!   canary's latency swings from window to window (a slow dependency, a
//!   slow pod): each window's share of requests slower than 1.1 × stable's
//!   p99 is drawn from a Beta of mean 1 % (exactly on the latency margin)
//!   and the canary's κ = 200 (±70 % per window), the log-normal with that
//!   share drawn from (to the nearest 0.1 %).

use super::flightdeck::plan;
use super::grid::{Cell, Scenario, MINUTE};
use super::stats::{clock, pct};
use super::traffic::{Behaviour, Latency, Service, SLOW_MS, STABLE_ERROR_RATE};
use flightdeck_core::analysis::{CheckOutcome, Metric, MetricsSample, VersionWindow};
use flightdeck_core::rollout::{step, Effect, Event, Phase, Rollout};
use flightdeck_core::time::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use std::fmt::Write;
use std::time::Duration;

/// The first seed of the held-out sets (this study and the held-out cells
/// of the main report); the main grid uses 0..seeds.
pub const HELD_OUT_SEED: u64 = 1_000_000;
pub const HOUR: Duration = Duration::from_secs(3600);
const INCIDENT: Duration = Duration::from_secs(300);
const INCIDENT_RATE: f64 = 0.03;
/// Beta concentrations of the overdispersed model.
const STABLE_KAPPA: f64 = 2000.0;
const CANARY_KAPPA: f64 = 200.0;
/// Each test's share of α (evidence.rs `alpha_share`), for the report.
pub const ALPHA: f64 = 0.01;
pub const SHARES: [(Test, f64); 5] = [
    (Test::ErrorMargin, 0.55),
    (Test::P99Margin, 0.4),
    (Test::P95Margin, 0.03),
    (Test::ErrorCeiling, 0.01),
    (Test::P99Ceiling, 0.01),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Study {
    Margin,
    Incident,
    Overdispersed,
}

/// The test that rolled a canary back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    ErrorMargin,
    ErrorCeiling,
    P95Margin,
    P99Margin,
    P99Ceiling,
}

impl Test {
    pub fn name(self) -> &'static str {
        match self {
            Test::ErrorMargin => "error margin",
            Test::ErrorCeiling => "error ceiling",
            Test::P95Margin => "p95 margin",
            Test::P99Margin => "p99 margin",
            Test::P99Ceiling => "p99 ceiling",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StressCell {
    pub study: Study,
    pub rate: u32,
    pub share: u8,
    pub interval: Duration,
    /// How long the run goes on (the plan's stages are the default ones).
    pub run_for: Duration,
    /// Canary's error rate minus stable's, a proportion.
    pub excess: f64,
    /// The canary's p99 is 1.1 × stable's (exactly on the latency margin).
    pub slow: bool,
}

impl StressCell {
    pub fn label(&self) -> String {
        let interval = if self.interval >= MINUTE { "1 m" } else { "10 s" };
        format!("{interval} · {} req/s · {} %", self.rate, self.share)
    }

    fn grid_cell(&self) -> Cell {
        let aa = Scenario::all().into_iter().next().expect("A/A first");
        Cell { scenario: aa, rate: self.rate, share: self.share, interval: self.interval }
    }
}

/// How one stress run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    RolledBack(Duration, Test),
    Promoted(Duration),
    /// Still paused or analysing at the end of the run.
    Open,
}

/// Every stress cell, with its seed count; `quick` keeps a few for the tests.
pub fn cells(quick: bool) -> Vec<(StressCell, u64)> {
    let mut out = Vec::new();
    let intervals = [MINUTE, Duration::from_secs(10)];
    for interval in intervals {
        for rate in [10, 100, 1000] {
            for share in [1u8, 5, 10, 50] {
                if quick && (rate != 100 || share != 5) {
                    continue;
                }
                let cell =
                    |study, run_for, excess| StressCell { study, rate, share, interval, run_for, excess, slow: false };
                let (margin_6h, margin_24h, short) = if quick { (4, 0, 20) } else { (32, 12, 100) };
                out.push((cell(Study::Margin, 6 * HOUR, 0.01), margin_6h));
                out.push((cell(Study::Margin, 24 * HOUR, 0.01), margin_24h));
                out.push((StressCell { slow: true, ..cell(Study::Margin, 6 * HOUR, 0.0) }, margin_6h / 2));
                let horizon = 2 * cell(Study::Incident, Duration::ZERO, 0.0).grid_cell().horizon();
                out.push((cell(Study::Incident, horizon, 0.0), short));
                out.push((cell(Study::Overdispersed, horizon, 0.0), short));
                out.push((cell(Study::Overdispersed, 6 * HOUR, 0.01), margin_6h / 2));
                for excess in [0.02, 0.05] {
                    out.push((cell(Study::Overdispersed, horizon, excess), short));
                }
                out.push((StressCell { slow: true, ..cell(Study::Overdispersed, 6 * HOUR, 0.0) }, margin_6h / 2));
            }
        }
    }
    out.retain(|(_, seeds)| *seeds > 0);
    // DETECTION_STRESS=<words>: only the cells whose kind contains them
    // ("Margin slow", "Overdispersed 6 h"), to rerun one part.
    if let Ok(only) = std::env::var("DETECTION_STRESS") {
        out.retain(|(c, _)| c.kind().contains(&only));
    }
    out
}

impl StressCell {
    /// "Margin 6 h", "Margin slow 6 h", "Overdispersed +2 pp 1 h 30 m".
    pub fn kind(&self) -> String {
        let minutes = self.run_for.as_secs() / 60;
        let time = if minutes.is_multiple_of(60) {
            format!("{} h", minutes / 60)
        } else {
            format!("{} h {} m", minutes / 60, minutes % 60)
        };
        let slow = if self.slow { " slow" } else { "" };
        let excess = if self.excess > 0.0 { format!(" +{:.0} pp", self.excess * 100.0) } else { String::new() };
        format!("{:?}{slow}{excess} {time}", self.study)
    }
}

/// The error rates of one window: (stable, canary) means, then a Beta draw
/// around each for the overdispersed model.
fn rates(cell: &StressCell, rng: &mut ChaCha8Rng, at: Duration) -> (f64, f64) {
    let stable = if cell.study == Study::Incident && at < INCIDENT { INCIDENT_RATE } else { STABLE_ERROR_RATE };
    let canary = stable + cell.excess;
    if cell.study != Study::Overdispersed {
        return (stable, canary);
    }
    let draw = |rng: &mut ChaCha8Rng, mean: f64, kappa: f64| {
        Beta::new(mean * kappa, (1.0 - mean) * kappa).expect("0 < mean < 1").sample(rng)
    };
    (draw(rng, stable, STABLE_KAPPA), draw(rng, canary, CANARY_KAPPA))
}

/// The overdispersed latency model's grid of slow shares: 0.05 %, 0.15 %, … 7.95 %.
const SLOW_SHARE_STEP: f64 = 0.001;
const SLOW_SHARE_STEPS: usize = 80;

/// A log-normal latency (stable's p50) with `share` of its requests slower
/// than the latency margin (1.1 × stable's p99), by bisection on its p99.
fn slower_than_margin(share: f64) -> Latency {
    let (mut lo, mut hi) = (0.5, 3.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if Latency::p99_times(mid).share_above(SLOW_MS) < share {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Latency::p99_times((lo + hi) / 2.0)
}

/// Requests in the window ending at `at`: flat, or diurnal for the overdispersed model.
fn requests(cell: &StressCell, at: Duration) -> u64 {
    let base = f64::from(cell.rate) * cell.interval.as_secs_f64();
    let load = if cell.study == Study::Overdispersed {
        1.0 + 0.5 * (std::f64::consts::TAU * at.as_secs_f64() / (24.0 * 3600.0)).sin()
    } else {
        1.0
    };
    (base * load).round() as u64
}

fn version_window(s: &super::traffic::Served) -> VersionWindow {
    VersionWindow {
        requests: s.requests,
        errors: s.errors,
        p50_ms: s.latency.quantile(0.50),
        p95_ms: s.latency.quantile(0.95),
        p99_ms: s.latency.quantile(0.99),
        latency: s.latency.clone(),
        ..VersionWindow::default()
    }
}

/// The failing test of a rollback, from the verdict's failing rows.
fn failing_test(r: &Rollout) -> Test {
    let Some(verdict) = &r.last_verdict else { return Test::ErrorMargin };
    let failed = verdict.checks().iter().find(|c| c.outcome == CheckOutcome::Fail);
    match failed.map(|c| (c.metric, c.reason.contains("ceiling"))) {
        Some((Metric::ErrorRate, true)) => Test::ErrorCeiling,
        Some((Metric::LatencyP95, _)) => Test::P95Margin,
        Some((Metric::LatencyP99, true)) => Test::P99Ceiling,
        Some((Metric::LatencyP99, false)) => Test::P99Margin,
        _ => Test::ErrorMargin,
    }
}

/// One run, and the time the SPRT information limit would have rolled the
/// canary back on the same canary counts (past the margin only).
pub fn run(cell: &StressCell, seed: u64) -> (End, Option<Duration>) {
    let latency = if cell.slow { Latency::p99_times(1.10) } else { Latency::stable() };
    let service = Service::new(Behaviour { latency, ..Behaviour::stable() }, 0);
    // Overdispersed latency: one service per 0.1 % of slow share.
    let bursty: Option<Vec<Service>> = (cell.slow && cell.study == Study::Overdispersed).then(|| {
        (0..SLOW_SHARE_STEPS)
            .map(|k| {
                let share = (k as f64 + 0.5) * SLOW_SHARE_STEP;
                Service::new(Behaviour { latency: slower_than_margin(share), ..Behaviour::stable() }, 0)
            })
            .collect()
    });
    let (mut rollout, effects) = step(&Rollout::new("stress", plan(&cell.grid_cell())), Event::Start, Timestamp(0));
    let mut weight = 0u8;
    for e in &effects {
        if let Effect::SetWeight { canary } = e {
            weight = *canary;
        }
    }
    let (p0, p1) = (STABLE_ERROR_RATE + 0.01, STABLE_ERROR_RATE + cell.excess);
    let (mut llr, mut oracle) = (0.0, None);
    let windows = (cell.run_for.as_millis() / cell.interval.as_millis()) as u32;
    for index in 0..windows {
        let end = cell.interval * (index + 1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream((1 << 60) | (u64::from(index) << 8) | u64::from(weight));
        let rates = rates(cell, &mut rng, end - cell.interval);
        let service = match &bursty {
            Some(services) => {
                let share = Beta::new(0.01 * CANARY_KAPPA, 0.99 * CANARY_KAPPA).expect("0 < mean < 1").sample(&mut rng);
                &services[((share / SLOW_SHARE_STEP) as usize).min(SLOW_SHARE_STEPS - 1)]
            }
            None => &service,
        };
        let w = service.window_with(&mut rng, requests(cell, end), weight, rates);
        if p1 > p0 + 1e-9 && oracle.is_none() {
            let (x, n) = (w.canary.errors as f64, w.canary.requests as f64);
            llr += x * (p1 / p0).ln() + (n - x) * ((1.0 - p1) / (1.0 - p0)).ln();
            if llr >= (100f64).ln() {
                oracle = Some(end);
            }
        }
        let sample = MetricsSample {
            window: cell.interval,
            stable: Some(version_window(&w.stable)),
            canary: Some(version_window(&w.canary)),
            missing: None,
        };
        for event in [Event::Metrics(sample), Event::Tick] {
            let (next, effects) = step(&rollout, event, Timestamp(end.as_millis() as u64));
            rollout = next;
            for e in &effects {
                if let Effect::SetWeight { canary } = e {
                    weight = *canary;
                }
            }
            match rollout.phase {
                Phase::RolledBack { .. } => return (End::RolledBack(end, failing_test(&rollout)), oracle),
                Phase::Promoted { .. } => return (End::Promoted(end), oracle),
                _ => {}
            }
        }
    }
    (End::Open, oracle)
}

/// A cell's runs.
pub struct StressResult {
    pub cell: StressCell,
    pub ends: Vec<End>,
    pub oracle: Vec<Option<Duration>>,
}

pub fn run_cell(cell: &StressCell, seeds: u64) -> StressResult {
    let (ends, oracle) = (HELD_OUT_SEED..HELD_OUT_SEED + seeds).map(|seed| run(cell, seed)).unzip();
    StressResult { cell: *cell, ends, oracle }
}

/// One-sided 95 % upper bound of a rate from `k` events in `n` trials
/// (Clopper–Pearson, by bisection on the binomial tail).
pub fn upper_95(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let tail = |p: f64| {
        // P(X ≤ k) for X ~ Binomial(n, p), summed in logs.
        let mut total = 0.0;
        let mut log_term = n as f64 * (1.0 - p).ln();
        for i in 0..=k {
            if i > 0 {
                log_term += ((n - i + 1) as f64 / i as f64).ln() + (p / (1.0 - p)).ln();
            }
            total += log_term.exp();
        }
        total
    };
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if tail(mid) > 0.05 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

fn median(mut times: Vec<Option<Duration>>) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    times.sort_by_key(|t| (t.is_none(), *t));
    times[times.len().div_ceil(2) - 1]
}

fn rollback_times(r: &StressResult) -> Vec<Option<Duration>> {
    r.ends.iter().map(|e| if let End::RolledBack(t, _) = e { Some(*t) } else { None }).collect()
}

/// α per test, pooled over `results`: "k of n (rate, ≤ upper 95 %)" per test
/// against its share, and whether every test holds its share.
fn alpha_rows(out: &mut String, title: &str, results: &[&StressResult]) -> bool {
    let n: usize = results.iter().map(|r| r.ends.len()).sum();
    if n == 0 {
        return true;
    }
    let mut holds = true;
    let _ = writeln!(out, "\n{title}: {n} rollouts.\n");
    let _ = writeln!(out, "| test | share of α | rolled back | rate | upper 95 % bound | within its share |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    for (test, share) in SHARES {
        let k =
            results.iter().flat_map(|r| &r.ends).filter(|e| matches!(e, End::RolledBack(_, t) if *t == test)).count();
        let (bound, limit) = (upper_95(k, n), ALPHA * share);
        let verdict = if bound <= limit {
            "yes"
        } else if (k as f64) / (n as f64) <= limit {
            holds &= k == 0 || (k as f64) / (n as f64) <= limit;
            "rate within; too few runs to bound"
        } else {
            holds = false;
            "**no**"
        };
        let rate = if n > 0 { k as f64 / n as f64 } else { 0.0 };
        let _ = writeln!(
            out,
            "| {} | {} | {k} of {n} | {} | {} | {verdict} |",
            test.name(),
            pct(limit),
            pct(rate),
            pct(bound)
        );
    }
    holds
}

/// The stress study's section of the report.
pub fn markdown(results: &[StressResult], elapsed: Duration) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "\n## Stress study: α at the margin, shared incidents, overdispersed traffic (held-out seeds)\n");
    let _ = writeln!(
        out,
        "Generated by the same example (`stress.rs`), flightdeck only, seeds from {HELD_OUT_SEED} on (never used \
         for tuning). α = 1 % split between the tests as in `evidence.rs`; each test's false rollbacks are \
         pooled over the traffic cells with a one-sided 95 % Clopper–Pearson upper bound. This part took {:.1} min.",
        elapsed.as_secs_f64() / 60.0
    );
    let pick = |study: Study, run_for: Option<Duration>, excess: f64| -> Vec<&StressResult> {
        results
            .iter()
            .filter(|r| r.cell.study == study && (r.cell.excess - excess).abs() < 1e-9 && !r.cell.slow)
            .filter(|r| run_for.is_none_or(|d| r.cell.run_for == d))
            .collect()
    };
    let _ = writeln!(out, "\n### At the margin (canary = stable + 1 pp exactly: every rollback is false)");
    for horizon in [6 * HOUR, 24 * HOUR] {
        let set = pick(Study::Margin, Some(horizon), 0.01);
        if set.is_empty() {
            continue;
        }
        let holds = alpha_rows(&mut out, &format!("Held for {} h, every traffic cell", horizon.as_secs() / 3600), &set);
        let _ = writeln!(out, "\nEvery test within its share (bound, or rate where runs are too few): {}.", yes(holds));
        per_cell(&mut out, &set);
    }
    let slow: Vec<&StressResult> = results.iter().filter(|r| r.cell.slow && r.cell.study == Study::Margin).collect();
    if !slow.is_empty() {
        let holds = alpha_rows(
            &mut out,
            "The canary's p99 exactly 1.1 × stable's (on the latency margin: 1 % of its requests slower than 1.1 × \
             stable's p99), errors as stable's, held for 6 h, every traffic cell",
            &slow,
        );
        let _ = writeln!(out, "\nEvery test within its share: {}.", yes(holds));
        per_cell(&mut out, &slow);
    }
    let _ = writeln!(out, "\n### Shared incident at t = 0 (both 0.5 % → 3 % for 5 minutes, A/A otherwise)");
    let set = pick(Study::Incident, None, 0.0);
    let holds = alpha_rows(&mut out, "Until promoted or twice the plan's horizon, every traffic cell", &set);
    let _ = writeln!(out, "\nEvery test within its share: {}.", yes(holds));
    per_cell(&mut out, &set);
    let _ = writeln!(out, "\n### Overdispersed traffic (beta-binomial errors, diurnal load)");
    let set = pick(Study::Overdispersed, None, 0.0);
    let holds = alpha_rows(&mut out, "A/A, until promoted or twice the plan's horizon", &set);
    let _ = writeln!(out, "\nEvery test within its share: {}.", yes(holds));
    per_cell(&mut out, &set);
    let set = pick(Study::Overdispersed, Some(6 * HOUR), 0.01);
    if !set.is_empty() {
        let holds = alpha_rows(&mut out, "At the margin, held for 6 h", &set);
        let _ = writeln!(out, "\nEvery test within its share: {}.", yes(holds));
        per_cell(&mut out, &set);
    }
    let set: Vec<&StressResult> =
        results.iter().filter(|r| r.cell.slow && r.cell.study == Study::Overdispersed).collect();
    if !set.is_empty() {
        let holds = alpha_rows(
            &mut out,
            "Overdispersed latency on the margin (each window's share of canary requests slower than 1.1 × \
             stable's p99 drawn from a Beta of mean 1 %, κ = 200), errors bursty around stable's rate, held for 6 h",
            &set,
        );
        let _ = writeln!(out, "\nEvery test within its share: {}.", yes(holds));
        per_cell(&mut out, &set);
    }
    for excess in [0.02, 0.05] {
        let set = pick(Study::Overdispersed, None, excess);
        let _ = writeln!(
            out,
            "\n**+{:.0} pp, overdispersed**: median / p95 time to rollback · share rolled back, beside the binomial \
             SPRT limit on the same canary counts (a reference: it assumes independent requests, which this \
             traffic breaks) and the ratio of the medians.\n",
            excess * 100.0
        );
        let _ = writeln!(out, "| interval | req/s | share | flightdeck | SPRT limit (binomial) | ratio |");
        let _ = writeln!(out, "|---|---:|---:|---|---|---:|");
        for r in set {
            let times = rollback_times(r);
            let rolled = times.iter().filter(|t| t.is_some()).count();
            let (fd, limit) = (median(times.clone()), median(r.oracle.clone()));
            let mut sorted = times;
            sorted.sort_by_key(|t| (t.is_none(), *t));
            let p95 = sorted.get(((sorted.len() as f64 * 0.95).ceil() as usize).max(1) - 1).copied().flatten();
            let ratio = match (fd, limit) {
                (Some(a), Some(b)) if b > Duration::ZERO => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
                _ => "—".into(),
            };
            let c = &r.cell;
            let interval = if c.interval >= MINUTE { "1 m" } else { "10 s" };
            let _ = writeln!(
                out,
                "| {interval} | {} | {} % | {} / {} · {} | {} | {ratio} |",
                c.rate,
                c.share,
                clock(fd),
                clock(p95),
                pct(rolled as f64 / r.ends.len().max(1) as f64),
                clock(limit)
            );
        }
    }
    out
}

fn yes(holds: bool) -> &'static str {
    if holds {
        "holds"
    } else {
        "DOES NOT HOLD"
    }
}

/// Rollbacks per traffic cell, for the record.
fn per_cell(out: &mut String, set: &[&StressResult]) {
    if set.is_empty() {
        return;
    }
    let cells: Vec<String> = set
        .iter()
        .map(|r| {
            let k = r.ends.iter().filter(|e| matches!(e, End::RolledBack(..))).count();
            format!("{} {k}/{}", r.cell.label(), r.ends.len())
        })
        .collect();
    let _ = writeln!(out, "\nRolled back per cell: {}.", cells.join("; "));
}
