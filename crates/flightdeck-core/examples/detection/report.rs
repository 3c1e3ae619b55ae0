//! The markdown report: how to rerun, the model, the policies, the tables
//! and the goals, computed from the numbers.

use super::grid::{Cell, Metric, Scenario, Standing};
use super::run::Policy;
use super::stats::{amount, clock, pct, Summary};
use super::traffic::{Latency, SLOW_MS, STABLE_ERROR_RATE};
use std::fmt::Write;
use std::time::Duration;

/// One cell's summaries by policy (`None`: the policy does not apply).
pub struct CellResult {
    pub cell: Cell,
    pub summaries: Vec<Option<Summary>>,
}

impl CellResult {
    pub fn of(&self, policy: Policy) -> Option<&Summary> {
        self.summaries[Policy::ALL.iter().position(|p| *p == policy)?].as_ref()
    }
}

pub struct Study {
    pub seeds: u64,
    pub quick: bool,
    pub results: Vec<CellResult>,
    /// The held-out cells, on held-out seeds (never used for tuning).
    pub held_out: Vec<CellResult>,
    pub elapsed: Duration,
    pub machine: String,
}

/// One goal, whether it holds, and the cells that miss it.
pub struct Goal {
    pub name: &'static str,
    pub holds: bool,
    pub detail: String,
    pub misses: Vec<String>,
}

fn median(r: &CellResult, p: Policy) -> Option<Duration> {
    r.of(p).and_then(|s| s.rollback_median)
}

/// What one canary request costs in exposure, and the unit: a bad canary's
/// excess error rate for an error regression (exposure = failed requests
/// beyond what stable would have served), 1 for a latency regression
/// (exposure = canary requests served).
pub fn exposure_unit(scenario: &Scenario) -> (f64, &'static str) {
    match scenario.regressed {
        Some(Metric::Errors) => (scenario.canary.error_rate - STABLE_ERROR_RATE, "failed requests beyond stable's"),
        _ => (1.0, "canary requests served"),
    }
}

/// Median and p95 exposure before rollback (`None`: infinite, that share
/// of rollouts was never rolled back).
pub fn exposure(r: &CellResult, p: Policy) -> Option<(Option<f64>, Option<f64>)> {
    let (per_request, _) = exposure_unit(&r.cell.scenario);
    let scale = |n: Option<u64>| n.map(|n| n as f64 * per_request);
    r.of(p).map(|s| (scale(s.served_median), scale(s.served_p95)))
}

fn exposure_median(r: &CellResult, p: Policy) -> Option<f64> {
    exposure(r, p).and_then(|e| e.0)
}

/// The share of A/A rollouts a policy rolled back, pooled over `keep`'s cells.
fn aa_rolled_back(results: &[CellResult], p: Policy, keep: impl Fn(&Cell) -> bool) -> Option<f64> {
    let (n, runs) = results
        .iter()
        .filter(|r| r.cell.scenario.name == "A/A" && keep(&r.cell))
        .filter_map(|r| r.of(p))
        .fold((0, 0), |(n, runs), s| (n + s.rolled_back, runs + s.runs));
    (runs > 0).then(|| n as f64 / runs as f64)
}

/// " (12 % paused, still analysing)" when some of flightdeck's rollouts in
/// the cell were still paused for a human, never rolled back, at the end.
fn paused(r: &CellResult) -> String {
    r.of(Policy::Flightdeck).map(|s| paused_note(Policy::Flightdeck, s)).unwrap_or_default()
}

fn secs(t: Option<Duration>) -> f64 {
    t.map_or(f64::INFINITY, |t| t.as_secs_f64())
}

/// Goals (a)–(e) of the issue, from the numbers.
pub fn goals(results: &[CellResult]) -> Vec<Goal> {
    let beyond: Vec<&CellResult> = results.iter().filter(|r| r.cell.scenario.standing == Standing::Beyond).collect();
    let mut out = Vec::new();

    let (mut misses, mut undecided) = (Vec::new(), 0);
    for r in &beyond {
        let (fd, limit) = (median(r, Policy::Flightdeck), median(r, Policy::Oracle));
        if limit.is_none() {
            undecided += 1;
        } else if secs(fd) > 1.5 * secs(limit) {
            misses.push(format!("{}: flightdeck {}{} vs limit {}", r.cell.label(), clock(fd), paused(r), clock(limit)));
        }
    }
    let decided = beyond.len() - undecided;
    out.push(Goal {
        name: "(a) median time to rollback within 1.5× the information limit, every cell beyond the margin",
        holds: misses.is_empty(),
        detail: format!(
            "met in {} of {decided} cells where the limit decides within the horizon \
             ({undecided} cells: the SPRT limit itself does not roll back the median rollout)",
            decided - misses.len()
        ),
        misses,
    });

    let target = results.iter().find(|r| {
        let c = &r.cell;
        c.scenario.name == "errors +5 pp" && c.share == 5 && c.rate == 100 && c.interval == Duration::from_secs(10)
    });
    let fd = target.and_then(|r| median(r, Policy::Flightdeck));
    out.push(Goal {
        name: "(b) +5 pp at 5 % of 100 req/s, 10 s interval: median < 60 s",
        holds: secs(fd) < 60.0,
        detail: match target {
            Some(r) => format!(
                "flightdeck median {} (p95 {}), SPRT limit {}",
                clock(fd),
                clock(r.of(Policy::Flightdeck).and_then(|s| s.rollback_p95)),
                clock(median(r, Policy::Oracle))
            ),
            None => "cell not in this run".into(),
        },
        misses: vec![],
    });

    let mut parts = Vec::new();
    let mut misses = Vec::new();
    let mut holds = true;
    for name in ["A/A", "errors +0.5 pp"] {
        let cells: Vec<&CellResult> = results.iter().filter(|r| r.cell.scenario.name == name).collect();
        let (rb, runs) = cells
            .iter()
            .filter_map(|r| r.of(Policy::Flightdeck))
            .fold((0, 0), |(rb, runs), s| (rb + s.rolled_back, runs + s.runs));
        let share = if runs > 0 { rb as f64 / runs as f64 } else { 0.0 };
        holds &= share < 0.01;
        parts.push(format!("{name}: {rb} of {runs} rollouts rolled back ({})", pct(share)));
        for r in cells {
            if let Some(s) = r.of(Policy::Flightdeck).filter(|s| s.share(s.rolled_back) >= 0.01) {
                misses.push(format!("{}: {} rolled back", r.cell.label(), pct(s.share(s.rolled_back))));
            }
        }
    }
    out.push(Goal {
        name: "(c) < 1 % of A/A and < 1 % of +0.5 pp rollouts rolled back (pooled over their cells)",
        holds,
        detail: parts.join("; "),
        misses,
    });

    let mut misses = Vec::new();
    for r in &beyond {
        let flagger = results.iter().find(|f| {
            let (a, b) = (&f.cell, &r.cell);
            a.scenario.name == b.scenario.name && a.rate == b.rate && a.share == b.share && a.interval == MINUTE
        });
        let fl = flagger.and_then(|f| median(f, Policy::Flagger5));
        let fd = median(r, Policy::Flightdeck);
        if secs(fd) >= secs(fl) {
            let label = r.cell.label();
            misses.push(format!("{label}: flightdeck {}{} vs Flagger t=5 at 1 m {}", clock(fd), paused(r), clock(fl)));
        }
    }
    out.push(Goal {
        name: "(d) flightdeck faster than Flagger (threshold 5, 1 m interval), every cell beyond the margin",
        holds: misses.is_empty(),
        detail: format!(
            "met in {} of {} cells (a tie, ∞ against ∞, is not faster)",
            beyond.len() - misses.len(),
            beyond.len()
        ),
        misses,
    });

    let (mut misses, mut flagger_fails_c) = (Vec::new(), 0);
    for r in &beyond {
        let at_1m = |name: &str| {
            results.iter().find(|f| {
                let (a, b) = (&f.cell, &r.cell);
                a.scenario.name == name && a.rate == b.rate && a.share == b.share && a.interval == MINUTE
            })
        };
        let fl = at_1m(r.cell.scenario.name).and_then(|f| exposure_median(f, Policy::Flagger5));
        let fd = exposure_median(r, Policy::Flightdeck);
        if fd.unwrap_or(f64::INFINITY) >= fl.unwrap_or(f64::INFINITY) {
            let (label, unit) = (r.cell.label(), exposure_unit(&r.cell.scenario).1);
            // What Flagger's speed costs on the same traffic: healthy canaries rolled back.
            let aa = at_1m("A/A").and_then(|f| f.of(Policy::Flagger5));
            if aa.is_some_and(|s| s.share(s.rolled_back) >= 0.01) {
                flagger_fails_c += 1;
            }
            let false_rollbacks = aa
                .map(|s| format!(" (there it rolls back {} of A/A rollouts)", pct(s.share(s.rolled_back))))
                .unwrap_or_default();
            misses.push(format!(
                "{label}: flightdeck {}{} vs Flagger t=5 at 1 m {} {unit}{false_rollbacks}",
                amount(fd),
                paused(r),
                amount(fl)
            ));
        }
    }
    let aa = |p: Policy, keep: fn(&Cell) -> bool| aa_rolled_back(results, p, keep).map_or("—".into(), pct);
    out.push(Goal {
        name: "(e) flightdeck's bad canary exposes fewer users before its rollback than Flagger's \
               (threshold 5, 1 m interval): median exposure, every cell beyond the margin",
        holds: misses.is_empty(),
        detail: format!(
            "flightdeck exposes fewer in {} of {} cells (a tie, ∞ against ∞, is not fewer){}. What Flagger's \
             schedule costs elsewhere: A/A rollouts rolled back, pooled over the grid, flightdeck {}, \
             Flagger t=5 {} ({} in its 1 m cells)",
            beyond.len() - misses.len(),
            beyond.len(),
            if misses.is_empty() {
                String::new()
            } else {
                format!(
                    "; in {flagger_fails_c} of the other {} Flagger t=5 at 1 m fails goal (c) on the same traffic \
                     (it rolls back ≥ 1 % of A/A rollouts there)",
                    misses.len()
                )
            },
            aa(Policy::Flightdeck, |_| true),
            aa(Policy::Flagger5, |_| true),
            aa(Policy::Flagger5, |c| c.interval == MINUTE),
        ),
        misses,
    });

    // (f) Against every Flagger setting at its real 1 m interval, every
    // policy on the same horizon (flightdeck's later rollbacks count as
    // never), where that setting's own A/A rollback rate in the same
    // traffic cell is under 5 %.
    let (mut misses, mut compared) = (Vec::new(), 0);
    for r in &beyond {
        let aa = results.iter().find(|f| {
            let (a, b) = (&f.cell, &r.cell);
            a.scenario.name == "A/A" && a.rate == b.rate && a.share == b.share && a.interval == b.interval
        });
        let fd = r.of(Policy::Flightdeck).and_then(|s| s.median_within(r.cell.horizon()));
        for p in [Policy::Flagger5, Policy::Flagger1, Policy::FlaggerDiff] {
            if aa.and_then(|a| a.of(p)).is_none_or(|s| s.share(s.rolled_back) >= 0.05) {
                continue;
            }
            compared += 1;
            let fl = median(r, p);
            if secs(fd) >= secs(fl) {
                misses.push(format!("{}: flightdeck {} vs {} {}", r.cell.label(), clock(fd), p.name(), clock(fl)));
            }
        }
    }
    out.push(Goal {
        name: "(f) flightdeck faster than Flagger at 1 m (each setting), within the plan's horizon, in every cell \
               where that setting rolls back under 5 % of A/A rollouts",
        holds: misses.is_empty(),
        detail: format!(
            "met in {} of {compared} comparisons (cell × Flagger setting; a tie, ∞ against ∞, is not faster)",
            compared - misses.len()
        ),
        misses,
    });
    out
}

/// Median time to rollback over the information limit's, every cell past a
/// margin where the limit decides: the speed ratio, with flightdeck's
/// median over all its runs and within the plan's horizon.
fn speed_table(out: &mut String, results: &[CellResult]) {
    let _ = writeln!(
        out,
        "| scenario | interval | req/s | share | flightdeck | within the horizon | SPRT limit | ratio | SPRT on flightdeck's windows | ratio |\n|---|---|---:|---:|---|---|---|---:|---|---:|"
    );
    let (mut within, mut decided, mut within_path, mut decided_path) = (0, 0, 0, 0);
    // Cells the 3-window floor alone keeps past 1.5× (the limit decides in
    // one window), and cells where flightdeck held the canary at its first
    // weight while the limit, on the fixed schedule, went on to 10 and 50 %.
    let (mut one_window, mut held) = (0, 0);
    for r in results.iter().filter(|r| r.cell.scenario.standing == Standing::Beyond) {
        let (fd, limit) = (median(r, Policy::Flightdeck), median(r, Policy::Oracle));
        let inside = r.of(Policy::Flightdeck).and_then(|s| s.median_within(r.cell.horizon()));
        let path = r.of(Policy::Flightdeck).and_then(|s| s.limit_on_path_median);
        one_window += usize::from(limit == Some(r.cell.interval));
        held += usize::from(limit.is_some_and(|l| l > super::grid::BAKE && fd.is_none_or(|f| f > 2 * l)));
        let path_ratio = match (fd, path) {
            (_, None) => "—".to_string(),
            (None, Some(_)) => {
                decided_path += 1;
                "∞".to_string()
            }
            (Some(a), Some(b)) => {
                decided_path += 1;
                let x = a.as_secs_f64() / b.as_secs_f64().max(1e-9);
                within_path += usize::from(x <= 1.5);
                format!("{x:.2}")
            }
        };
        let ratio = match (fd, limit) {
            (_, None) => "—".to_string(),
            (None, Some(_)) => {
                decided += 1;
                "∞".to_string()
            }
            (Some(a), Some(b)) => {
                decided += 1;
                let x = a.as_secs_f64() / b.as_secs_f64().max(1e-9);
                within += usize::from(x <= 1.5);
                format!("{x:.2}")
            }
        };
        let _ = writeln!(
            out,
            "| {} {} {} | {} | {} | {ratio} | {} | {path_ratio} |",
            r.cell.scenario.name,
            row_head(&r.cell),
            clock(fd),
            clock(inside),
            clock(limit),
            clock(path)
        );
    }
    let _ = writeln!(
        out,
        "\nWithin 1.5× of the limit: {within} of {decided} cells where the limit decides; of the limit on \
         flightdeck's own windows: {within_path} of {decided_path} cells where it decides. In {one_window} \
         cells the limit decides in one window, where a margin needs three (windows are the units for \
         bursts); in {held} the limit decides only after the first stage's bake, at the weights the fixed \
         schedule raises whatever the evidence, while flightdeck holds an unproven canary at its first weight \
         and takes over twice as long.\n"
    );
}

const MINUTE: Duration = Duration::from_secs(60);

fn row_head(c: &Cell) -> String {
    format!("| {} | {} | {} % |", c.interval_label(), c.rate, c.share)
}

fn header(out: &mut String, first: &str) {
    let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
    let _ = writeln!(out, "| interval | req/s | {first} | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|---:|---:|{}", "---|".repeat(names.len()));
}

fn paused_note(p: Policy, s: &Summary) -> String {
    if p == Policy::Flightdeck && s.paused > 0 {
        format!(" ({} paused, still analysing)", pct(s.share(s.paused)))
    } else {
        String::new()
    }
}

/// Median / p95 time to rollback and share caught, per policy.
fn detection_table(out: &mut String, rows: &[&CellResult]) {
    header(out, "share");
    for r in rows {
        let cols: Vec<String> = Policy::ALL
            .iter()
            .map(|p| match r.of(*p) {
                Some(s) => format!(
                    "{} / {} · {}{}",
                    clock(s.rollback_median),
                    clock(s.rollback_p95),
                    pct(s.share(s.rolled_back)),
                    paused_note(*p, s)
                ),
                None => "—".into(),
            })
            .collect();
        let _ = writeln!(out, "{} {} |", row_head(&r.cell), cols.join(" | "));
    }
}

/// Median / p95 exposure before rollback, per policy, with each policy's
/// pooled A/A false rollbacks underneath: exposure bought with false
/// rollbacks is not free.
fn exposure_table(out: &mut String, rows: &[&CellResult], results: &[CellResult]) {
    let Some(first) = rows.first() else { return };
    let (per_request, unit) = exposure_unit(&first.cell.scenario);
    let what = if first.cell.scenario.regressed == Some(Metric::Errors) {
        format!(
            "failed requests the canary served beyond what stable would have: canary requests until the \
             rollback effect × {:.0} pp",
            100.0 * per_request
        )
    } else {
        "canary requests served until the rollback effect".to_string()
    };
    let _ = writeln!(out, "#### {}: exposure before rollback ({unit})\n", first.cell.scenario.name);
    let _ = writeln!(out, "Median / p95 of the {what}; ∞ as above.\n");
    header(out, "share");
    for r in rows {
        let cols: Vec<String> = Policy::ALL
            .iter()
            .map(|p| match exposure(r, *p) {
                Some((median, p95)) => format!("{} / {}", amount(median), amount(p95)),
                None => "—".into(),
            })
            .collect();
        let _ = writeln!(out, "{} {} |", row_head(&r.cell), cols.join(" | "));
    }
    let cols: Vec<String> =
        Policy::ALL.iter().map(|p| aa_rolled_back(results, *p, |_| true).map_or("—".into(), pct)).collect();
    let _ = writeln!(out, "| *A/A rolled back, pooled* | | | {} |", cols.join(" | "));
}

/// Share rolled back (and, with `promote`, the median time to 100 %).
fn healthy_table(out: &mut String, rows: &[&CellResult], promote: bool) {
    header(out, "share");
    for r in rows {
        let cols: Vec<String> = Policy::ALL
            .iter()
            .map(|p| match r.of(*p) {
                Some(s) if promote => {
                    format!("{} · {}{}", pct(s.share(s.rolled_back)), clock(s.promote_median), paused_note(*p, s))
                }
                Some(s) => format!("{}{}", pct(s.share(s.rolled_back)), paused_note(*p, s)),
                None => "—".into(),
            })
            .collect();
        let _ = writeln!(out, "{} {} |", row_head(&r.cell), cols.join(" | "));
    }
}

/// Each policy pooled over the grid: how often it rolls back healthy
/// canaries, how often it catches bad ones.
fn policy_table(out: &mut String, results: &[CellResult]) {
    let pooled = |p: Policy, keep: &dyn Fn(&CellResult) -> bool, count: fn(&Summary) -> usize| {
        let (n, runs) = results
            .iter()
            .filter(|r| keep(r))
            .filter_map(|r| r.of(p))
            .fold((0, 0), |(n, runs), s| (n + count(s), runs + s.runs));
        if runs == 0 {
            "—".to_string()
        } else {
            pct(n as f64 / runs as f64)
        }
    };
    let named = |name: &'static str| move |r: &CellResult| r.cell.scenario.name == name;
    let beyond = |r: &CellResult| r.cell.scenario.standing == Standing::Beyond;
    let _ = writeln!(out, "\n## Pooled over the grid\n");
    let _ = writeln!(
        out,
        "| policy | A/A rolled back | +0.5 pp rolled back | p99 +10 % rolled back | past a margin: caught | \
         A/A promoted | paused for a human (all cells) | still paused, still analysing, at the end |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in Policy::ALL {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            p.name(),
            pooled(p, &named("A/A"), |s| s.rolled_back),
            pooled(p, &named("errors +0.5 pp"), |s| s.rolled_back),
            pooled(p, &named("p99 +10 %"), |s| s.rolled_back),
            pooled(p, &beyond, |s| s.rolled_back),
            pooled(p, &named("A/A"), |s| s.promoted),
            pooled(p, &|_| true, |s| s.asked),
            pooled(p, &|_| true, |s| s.paused),
        );
    }
}

/// The scenarios' true values, as the oracle knows them.
fn scenario_table(out: &mut String, results: &[CellResult]) {
    let _ = writeln!(out, "## The scenarios (true values)\n");
    let _ = writeln!(out, "| canary | error rate | p99 | slower than {SLOW_MS:.0} ms | standing |");
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    let mut seen: Vec<&str> = Vec::new();
    for r in results {
        let s = r.cell.scenario;
        if seen.contains(&s.name) {
            continue;
        }
        seen.push(s.name);
        let standing = match s.standing {
            Standing::Inside => "inside the margins",
            Standing::OnMargin => "on the p99 margin",
            Standing::Beyond => "past a margin",
        };
        let _ = writeln!(
            out,
            "| {} | {:.2} % | {:.0} ms | {:.2} % | {standing} |",
            s.name,
            100.0 * s.canary.error_rate,
            p99(s.canary.latency),
            100.0 * s.canary.latency.share_above(SLOW_MS)
        );
    }
    let _ = writeln!(out);
}

/// The true p99 of a latency distribution, by bisection.
fn p99(latency: Latency) -> f64 {
    let (mut lo, mut hi) = (1.0f64, 100_000.0f64);
    for _ in 0..100 {
        let mid = (lo * hi).sqrt();
        if latency.cdf(mid) < 0.99 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

pub fn markdown(study: &Study) -> String {
    let mut out = String::new();
    let _ = write!(out, "{}", include_str!("report_intro.md"));
    let _ = writeln!(
        out,
        "\nThis run: {} seeds per cell, {} cells{}, {} policies; the whole grid took {:.1} min on {}.\n",
        study.seeds,
        study.results.len(),
        if study.quick { " (the `--quick` subset)" } else { "" },
        Policy::ALL.len(),
        study.elapsed.as_secs_f64() / 60.0,
        study.machine
    );
    scenario_table(&mut out, &study.results);
    let _ = writeln!(out, "## Goals\n");
    for g in goals(&study.results) {
        let _ = writeln!(out, "- **{}** — {}. {}.", g.name, if g.holds { "holds" } else { "DOES NOT HOLD" }, g.detail);
        for m in &g.misses {
            let _ = writeln!(out, "  - {m}");
        }
    }
    policy_table(&mut out, &study.results);
    let _ = writeln!(out, "\n## Speed ratio per cell\n");
    let _ = writeln!(
        out,
        "flightdeck's median time to rollback over the SPRT limit's (the limit is told stable's true rate and \
         the canary's; flightdeck must learn both, and its bound on stable's rate is part of the price).\n"
    );
    speed_table(&mut out, &study.results);
    decomposition(&mut out, &study.results);
    if !study.held_out.is_empty() {
        let _ = writeln!(out, "\n## Held-out cells (fixed before these numbers were seen; seeds from 1000000)\n");
        let _ = writeln!(
            out,
            "Traffic the grid above does not have (30 and 300 req/s, 2 and 20 % first stages), on seeds the grid \
             never uses; nothing was tuned on them. A/A and +0.5 pp show the share rolled back; the rest, as in \
             the speed table.\n"
        );
        for name in ["A/A", "errors +0.5 pp"] {
            let rows: Vec<String> = study
                .held_out
                .iter()
                .filter(|r| r.cell.scenario.name == name)
                .filter_map(|r| {
                    r.of(Policy::Flightdeck).map(|s| {
                        format!(
                            "{} · {} req/s · {} %: {}",
                            r.cell.interval_label(),
                            r.cell.rate,
                            r.cell.share,
                            pct(s.share(s.rolled_back))
                        )
                    })
                })
                .collect();
            let _ = writeln!(out, "- {name}, flightdeck rolled back: {}.", rows.join("; "));
        }
        let _ = writeln!(out);
        speed_table(&mut out, &study.held_out);
        let _ = writeln!(out, "### Held-out goals\n");
        for g in goals(&study.held_out) {
            let _ =
                writeln!(out, "- **{}** — {}. {}.", g.name, if g.holds { "holds" } else { "DOES NOT HOLD" }, g.detail);
            for m in &g.misses {
                let _ = writeln!(out, "  - {m}");
            }
        }
    }
    let _ = writeln!(out, "\n## Results\n");
    let _ = writeln!(
        out,
        "Times are m:ss from the rollout's start (the canary is bad from the start) to the rollback effect. \
         Cells past a margin show *median / p95 · share rolled back*; ∞ means that share of rollouts was \
         never rolled back (promoted, still paused or out of time). Cells within the margin show the share \
         rolled back (A/A also the median time to 100 %). flightdeck's column adds the share of rollouts \
         *paused, still analysing*: paused to ask a human and, with nobody answering, still at the paused \
         weight and never rolled back at twice the horizon (a paused rollout the analysis rolled back later \
         counts as rolled back, at that time). A policy can roll back sooner than the SPRT limit only by \
         accepting more false rollbacks than α = 1 %: read its times together with its A/A and +0.5 pp \
         rows.\n\n\
         Time to rollback alone penalises a policy that holds a small canary share until it has evidence: \
         the fixed-schedule policies advance to 10 % and 50 % on time whether or not they have seen enough. \
         Each scenario past a margin therefore also has an *exposure before rollback* table: for an error \
         regression, the failed requests the canary served beyond what stable would have (canary requests \
         until the rollback effect × the true excess error rate); for a latency regression, the canary \
         requests served until the rollback effect. A rollout never rolled back (promoted, still paused or \
         out of time) has exposure ∞, as its time. Under each exposure table, each policy's share of A/A \
         rollouts rolled back, pooled over the grid: exposure saved by rolling back healthy canaries too is \
         not free.\n"
    );
    let mut names: Vec<&str> = study.results.iter().map(|r| r.cell.scenario.name).collect();
    names.dedup();
    for name in names.iter().copied() {
        let rows: Vec<&CellResult> = study.results.iter().filter(|r| r.cell.scenario.name == name).collect();
        let scenario = rows[0].cell.scenario;
        let standing = match scenario.standing {
            Standing::Inside => "inside the margin: must pass",
            Standing::OnMargin => "exactly on the margin: either verdict is right",
            Standing::Beyond => "past the margin: must roll back",
        };
        let _ = writeln!(out, "### {name} ({standing})\n");
        match scenario.standing {
            Standing::Beyond => {
                detection_table(&mut out, &rows);
                let _ = writeln!(out);
                exposure_table(&mut out, &rows, &study.results);
            }
            _ => healthy_table(&mut out, &rows, name == "A/A"),
        }
        let _ = writeln!(out);
    }
    pause_table(&mut out, &study.results, &names);
    out
}

/// flightdeck's pauses for a human: how often, after how long, why, and
/// how many of the paused rollouts the analysis rolled back later.
fn pause_table(out: &mut String, results: &[CellResult], names: &[&str]) {
    let (mut asked, mut no_traffic, mut rolled_back) = (0, 0, 0);
    for s in results.iter().filter_map(|r| r.of(Policy::Flightdeck)) {
        asked += s.asked;
        no_traffic += s.asked_no_traffic;
        rolled_back += s.asked_then_rolled_back;
    }
    let _ = writeln!(out, "### flightdeck: rollouts paused to ask a human\n");
    let _ = writeln!(
        out,
        "A pause does not end the analysis: nobody answers here, so windows keep coming at the paused \
         weight (paused, still analysing), and a canary that proves bad is rolled back from the pause. \
         Each cell: the share of rollouts that paused, the median time of the first pause among them, and \
         (after ↩) the share of all the cell's rollouts rolled back later from the pause. Of all {asked} \
         pauses, {no_traffic} were for windows without a single canary request, the rest for no decision \
         {} windows after a stage's bake; {rolled_back} of the paused rollouts were rolled back later.\n",
        flightdeck_core::plan::AnalysisConfig::default().inconclusive_limit
    );
    let _ = writeln!(out, "| interval | req/s | share | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|---:|---:|{}", "---|".repeat(names.len()));
    let first = names.first().copied().unwrap_or_default();
    for r in results.iter().filter(|r| r.cell.scenario.name == first) {
        let cols: Vec<String> = names
            .iter()
            .map(|name| {
                let same = |o: &&CellResult| {
                    let (a, b) = (&o.cell, &r.cell);
                    a.scenario.name == *name && a.interval == b.interval && a.rate == b.rate && a.share == b.share
                };
                match results.iter().find(same).and_then(|o| o.of(Policy::Flightdeck)) {
                    Some(s) if s.asked > 0 => {
                        let later = if s.asked_then_rolled_back > 0 {
                            format!(" ↩ {}", pct(s.share(s.asked_then_rolled_back)))
                        } else {
                            String::new()
                        };
                        format!("{} at {}{later}", pct(s.share(s.asked)), clock(s.pause_median))
                    }
                    Some(_) => "0 %".into(),
                    None => "—".into(),
                }
            })
            .collect();
        let _ = writeln!(out, "{} {} |", row_head(&r.cell), cols.join(" | "));
    }
}

/// Where the time goes, for the error cells: windows to a rollback on the
/// *expected* counts of the first stage (no noise), for the SPRT limit at
/// α = 1 % (told both rates), for the error test's own canary bound with
/// stable's rate known (its α share and the mixture over alternatives it
/// cannot know), and for the test as shipped (stable's bound as well).
fn decomposition(out: &mut String, results: &[CellResult]) {
    use flightdeck_core::analysis::confidence::{lower_bound, upper_bound, MIN_WINDOWS};
    // evidence.rs: the error margin's share of α, and the canary's part of it.
    let (alpha, share, canary_side): (f64, f64, f64) = (0.01, 0.55, 0.8);
    let _ = writeln!(
        out,
        "Where the time goes (error cells, first stage, on expected counts — a calculation, not a run): \
         windows until the SPRT limit at α = 1 % rolls back (it is told both rates); until the canary's \
         anytime-valid lower bound at the whole α = 1 % passes stable's *true* rate + 1 pp (the best this \
         mixture test can do: what not knowing the alternative costs); the same at the error test's share of \
         α ({:.2} %: what sharing α costs too); until it passes stable's anytime-valid upper bound + 1 pp \
         (what not knowing stable's rate costs too); and that with the {MIN_WINDOWS}-window floor (bursts can \
         be seen only across windows: the test as shipped). The last row counts the cells within 1.5× of the \
         SPRT limit.\n",
        100.0 * alpha * share * canary_side
    );
    let _ = writeln!(
        out,
        "| scenario | interval | req/s | share | SPRT limit | best, stable known | stable known | stable's bound | \
         as shipped |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut within = [0usize; 4];
    let mut cells = 0;
    for r in results.iter().filter(|r| r.cell.scenario.regressed == Some(Metric::Errors)) {
        let c = &r.cell;
        if c.scenario.standing != Standing::Beyond {
            continue;
        }
        let per_window = f64::from(c.rate) * c.interval.as_secs_f64();
        let (nc, ns) = (per_window * f64::from(c.share) / 100.0, per_window * (1.0 - f64::from(c.share) / 100.0));
        let (p0, p1) = (STABLE_ERROR_RATE + 0.01, c.scenario.canary.error_rate);
        let per = nc * (p1 * (p1 / p0).ln() + (1.0 - p1) * ((1.0 - p1) / (1.0 - p0)).ln());
        let sprt = ((1.0 / alpha).ln() / per).ceil();
        let first = |level: f64, limit: &dyn Fn(f64) -> f64| {
            (1..=5_000).map(f64::from).find(|t| lower_bound(p1 * nc * t, nc * t, level) > limit(*t) + 0.01)
        };
        let best = first(alpha, &|_| STABLE_ERROR_RATE);
        let known = first(alpha * share * canary_side, &|_| STABLE_ERROR_RATE);
        let bound = first(alpha * share * canary_side, &|t| {
            upper_bound(STABLE_ERROR_RATE * ns * t, ns * t, alpha * share * (1.0 - canary_side))
        });
        let shipped = bound.map(|w| w.max(MIN_WINDOWS as f64));
        cells += 1;
        for (i, w) in [best, known, bound, shipped].into_iter().enumerate() {
            within[i] += usize::from(w.is_some_and(|w| w <= 1.5 * sprt));
        }
        let show = |w: Option<f64>| w.map_or("—".to_string(), |w| format!("{w:.0}"));
        let _ = writeln!(
            out,
            "| {} {} {sprt:.0} | {} | {} | {} | {} |",
            c.scenario.name,
            row_head(c),
            show(best),
            show(known),
            show(bound),
            show(shipped)
        );
    }
    let _ = writeln!(
        out,
        "| within 1.5× of the SPRT limit | | | | {cells} of {cells} | {} | {} | {} | {} |",
        within[0], within[1], within[2], within[3]
    );
    let _ = writeln!(out);
}
