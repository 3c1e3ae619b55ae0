//! The detection benchmark: how fast, and how surely, flightdeck's core
//! catches a bad canary, against the information limit, Flagger,
//! Kayenta-style judging and fixed per-window rules, on the same seeded
//! traffic. A simulation study; writes `benchmarks/detection.md`.
//!
//! ```sh
//! cargo run --release -p flightdeck-core --example detection -- [--seeds N] [--out PATH] [--quick]
//!     [--stress-only | --no-stress]   # the stress study alone (printed), or the grid alone
//! ```

#[path = "detection/mod.rs"]
mod detection;

use detection::grid::{cells, held_out_cells, only_cells};
use detection::report::{markdown, CellResult, Study};
use detection::run::{run_cell, run_cell_from};
use detection::stats::Summary;
use detection::stress;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Args {
    seeds: u64,
    out: Option<PathBuf>,
    quick: bool,
    /// Which parts run: the main grid, the stress study (both by default).
    grid: bool,
    stress: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args { seeds: 0, out: None, quick: false, grid: true, stress: true };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seeds" => {
                let n = it.next().ok_or("--seeds needs a number")?;
                a.seeds = n.parse().map_err(|_| format!("--seeds: not a number: {n}"))?;
            }
            "--out" => a.out = Some(it.next().ok_or("--out needs a path")?.into()),
            "--quick" => a.quick = true,
            "--stress-only" => a.grid = false,
            "--no-stress" => a.stress = false,
            "-h" | "--help" => {
                return Err("usage: detection [--seeds N] [--out PATH] [--quick] [--stress-only | --no-stress]".into())
            }
            other => {
                return Err(format!("unknown argument {other}; usage: detection [--seeds N] [--out PATH] [--quick]"))
            }
        }
    }
    if a.seeds == 0 {
        a.seeds = if a.quick { 20 } else { 200 };
    }
    if a.out.is_none() && !a.quick && a.grid {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("crates/flightdeck-core");
        a.out = Some(repo.join("benchmarks/detection.md"));
    }
    Ok(a)
}

/// "2 cores (nproc), <CPU model>, 2026-05-01 (UTC)".
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{cores} cores (nproc), {cpu}, one thread, {year}-{month:02}-{day:02} (UTC)")
}

/// "core at 1a2b3c4" (plus "with uncommitted changes" when the core's
/// sources differ from that commit), or nothing outside a git checkout.
fn revision() -> String {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--", "src"]).is_some_and(|s| !s.is_empty());
            format!(", core at {head}{}", if dirty { " with uncommitted changes" } else { "" })
        }
        None => String::new(),
    }
}

fn main() {
    let a = args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    // The revision the binary was just built from, before anyone edits the sources during the run.
    let machine = machine() + &revision();
    let start = Instant::now();
    let grid = if a.grid { cells(a.quick) } else { vec![] };
    let mut results = Vec::new();
    for (i, cell) in grid.iter().enumerate() {
        let outcomes = run_cell(cell, a.seeds);
        let summaries = outcomes.iter().map(|o| (!o.is_empty()).then(|| Summary::of(o))).collect();
        eprintln!("[{:>3}/{}] {:>6.1} s  {}", i + 1, grid.len(), start.elapsed().as_secs_f64(), cell.label());
        results.push(CellResult { cell: *cell, summaries });
    }
    let mut held_out = Vec::new();
    if a.grid && !a.quick && only_cells().is_none() {
        let cells = held_out_cells();
        for (i, cell) in cells.iter().enumerate() {
            let outcomes = run_cell_from(cell, stress::HELD_OUT_SEED, a.seeds / 2);
            let summaries = outcomes.iter().map(|o| (!o.is_empty()).then(|| Summary::of(o))).collect();
            eprintln!(
                "[{:>3}/{}] {:>6.1} s  held out {}",
                i + 1,
                cells.len(),
                start.elapsed().as_secs_f64(),
                cell.label()
            );
            held_out.push(CellResult { cell: *cell, summaries });
        }
    }
    let study = Study { seeds: a.seeds, quick: a.quick, results, held_out, elapsed: start.elapsed(), machine };
    let mut text = if a.grid { markdown(&study) } else { String::new() };
    if a.stress {
        let begin = Instant::now();
        let cells = stress::cells(a.quick);
        let mut results = Vec::new();
        for (i, (cell, seeds)) in cells.iter().enumerate() {
            results.push(stress::run_cell(cell, *seeds));
            eprintln!(
                "[{:>3}/{}] {:>6.1} s  stress {:?} {} for {:?}",
                i + 1,
                cells.len(),
                begin.elapsed().as_secs_f64(),
                cell.study,
                cell.label(),
                cell.run_for
            );
        }
        text += &stress::markdown(&results, begin.elapsed());
    }
    match &a.out {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("create the report's directory");
            }
            std::fs::write(path, &text).expect("write the report");
            eprintln!("wrote {} in {:.1} min", path.display(), study.elapsed.as_secs_f64() / 60.0);
        }
        None => print!("{text}"),
    }
}
