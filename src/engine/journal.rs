//! The journal: every event a rollout saw, as JSON lines, so a run that
//! crashed resumes where it was. `core::step` is pure, so replaying the
//! events from the plan's initial state rebuilds the exact state.
//!
//! Layout: `<data dir>/journal/<rollout id>-<plan key>.jsonl`, the key a
//! short hash of the plan file's canonical path, so two plan files that
//! name the same rollout (the proxy examples) keep apart journals. Line 1
//! is a header with the plan text and, for the simulator, the scenario and
//! seed; every further line a [`Record`].
//!
//! Latency histograms are written compactly (see [`pack`]): a metrics
//! record at 100 req/s takes about 700 bytes instead of 2.6 KB with the
//! histograms as JSON pairs, so a rollout-day of 1 m windows stays under a
//! megabyte. Lines written before are read as they are.
//!
//! A journal is resumed only by the run it was written for: the same plan
//! text and, on the simulator, the same scenario and seed (speed does not
//! change what happens, only how fast). Anything else is refused with a
//! message that names `--fresh`, never replayed as if it were the same run.

use super::report::{effect_output, step_outputs};
use crate::protocol::Output;
use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::{step, Event, Rollout};
use flightdeck_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// 2: latency histograms packed (see [`pack`]); lines of format 1 read the same.
const FORMAT: u32 = 2;
/// Events of a resumed run kept for the cockpit's event log.
const HISTORY_KEPT: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Corrupt { path: String, line: usize, message: String },
    #[error("{path}: written for a different plan than {plan_file}; run with --fresh to start over (the old journal is kept)")]
    PlanChanged { path: String, plan_file: String },
    #[error("journal {path} was written with {was}; this run asks for {now}: pass --fresh to start over (the old journal is kept aside)")]
    RunChanged { path: String, was: String, now: String },
}

impl JournalError {
    /// The journal belongs to another run: the user's to settle (`--fresh`),
    /// not a failure of flightdeck.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, JournalError::PlanChanged { .. } | JournalError::RunChanged { .. })
    }
}

/// What decides a simulated run besides the plan: the same plan with
/// another scenario or seed is another run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRun {
    pub scenario: String,
    pub seed: u64,
}

impl SimRun {
    /// As the command line says it.
    fn flags(run: Option<&SimRun>) -> String {
        match run {
            Some(r) => format!("--scenario {} --seed {}", r.scenario, r.seed),
            None => "no recorded scenario and seed".into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    journal: u32,
    rollout: String,
    plan_file: String,
    plan: String,
    /// Simulator runs only (absent in journals of other backends and in
    /// those written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sim: Option<SimRun>,
}

/// One journaled event with the state it led to (the state is for readers
/// and a replay cross-check; replay recomputes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: Timestamp,
    /// Wall-clock milliseconds when it was written.
    pub wall: u64,
    pub event: Event,
    pub phase: String,
    pub stage: usize,
    pub weight: u8,
}

/// An open journal, appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    seq: u64,
}

/// What opening a journal found.
pub struct Opened {
    pub journal: Journal,
    pub rollout: Rollout,
    /// Time of the last journaled event when resuming.
    pub resumed_at: Option<Timestamp>,
    /// What happened before, told as it was live (the last events of a
    /// resumed run, oldest first), so the event log survives a restart.
    pub history: Vec<Output>,
}

impl Journal {
    /// Opens the journal of rollout `id` of the plan in `plan_file`,
    /// resuming the run it holds (of the same plan and, on the simulator,
    /// the same `sim` scenario and seed), finished or not: a rolled-back
    /// canary must stay rolled back across restarts. With `fresh` the old
    /// journal is set aside under a new name and a new run begins.
    pub fn open(
        dir: &Path,
        id: &str,
        plan: &Plan,
        plan_file: &str,
        plan_text: &str,
        sim: Option<&SimRun>,
        fresh: bool,
    ) -> Result<Opened, JournalError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let key = plan_key(plan_file);
        let path = dir.join(file_name(id, &key));
        adopt_legacy(dir, id, &key, &path)?;
        if path.exists() && !fresh {
            let replayed = replay(&path, id, plan, plan_file, plan_text, sim)?;
            if replayed.last.is_some() {
                let file = OpenOptions::new().append(true).open(&path).map_err(|e| io(&path, e))?;
                // Cut a partial last line, or the next record would be glued to it.
                file.set_len(replayed.valid_len).map_err(|e| io(&path, e))?;
                let journal = Journal { path, file, seq: replayed.records };
                let history = replayed.history.into();
                return Ok(Opened { journal, rollout: replayed.rollout, resumed_at: replayed.last, history });
            }
        }
        if path.exists() {
            let aside = path.with_extension(format!("{}.jsonl", crate::engine::clock::wall_ms()));
            fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
        }
        let mut file = File::create(&path).map_err(|e| io(&path, e))?;
        let header = Header {
            journal: FORMAT,
            rollout: id.into(),
            plan_file: plan_file.into(),
            plan: plan_text.into(),
            sim: sim.cloned(),
        };
        writeln!(file, "{}", serde_json::to_string(&header).expect("header serializes")).map_err(|e| io(&path, e))?;
        let rollout = Rollout::new(id, plan.clone());
        Ok(Opened { journal: Journal { path, file, seq: 0 }, rollout, resumed_at: None, history: Vec::new() })
    }

    /// Appends one event and the state it led to.
    pub fn append(&mut self, at: Timestamp, event: &Event, state: &Rollout) -> Result<(), JournalError> {
        self.seq += 1;
        let record = Record {
            seq: self.seq,
            at,
            wall: crate::engine::clock::wall_ms(),
            event: event.clone(),
            phase: state.phase.label().to_string(),
            stage: state.stage,
            weight: state.canary_weight,
        };
        let mut value = serde_json::to_value(&record).expect("records serialize");
        compact_histograms(&mut value);
        let mut line = serde_json::to_string(&value).expect("records serialize");
        line.push('\n');
        // One write per record: a crash leaves at most one partial last line.
        self.file.write_all(line.as_bytes()).map_err(|e| io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Deletes every journal of rollout `id` of the plan in `plan_file`: the
/// current one, those `--fresh` set aside, and one from before journals
/// were keyed by plan file when its header names this plan file. Journals
/// of other plan files are left alone. Returns how many were deleted.
pub fn remove_runs(dir: &Path, id: &str, plan_file: &str) -> Result<usize, JournalError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(0) };
    let current = file_name(id, &plan_key(plan_file));
    let keyed = current.trim_end_matches(".jsonl").to_string();
    let legacy = file_stem(id);
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".jsonl") else { continue };
        // `<stem>` or `<stem>.<wall ms>` (set aside): the run and its old runs.
        let run_of = |base: &str| {
            stem == base
                || stem
                    .strip_prefix(base)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|ms| ms.bytes().all(|b| b.is_ascii_digit()))
        };
        let ours = run_of(&keyed) || (run_of(&legacy) && header_names(&entry.path(), plan_file));
        if ours {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The journal's header was written for `plan_file` (only the first line is read).
fn header_names(path: &Path, plan_file: &str) -> bool {
    use std::io::BufRead;
    let Ok(file) = File::open(path) else { return false };
    let mut first = String::new();
    if std::io::BufReader::new(file).read_line(&mut first).is_err() {
        return false;
    }
    serde_json::from_str::<Header>(&first).is_ok_and(|h| plan_key(&h.plan_file) == plan_key(plan_file))
}

fn io(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io { path: path.display().to_string(), source }
}

/// What identifies a plan file: its canonical path (the path as given when
/// it has none, e.g. the demo's built-in plans).
fn plan_key(plan_file: &str) -> String {
    fs::canonicalize(plan_file).map_or_else(|_| plan_file.to_owned(), |p| p.to_string_lossy().into_owned())
}

/// `<rollout id>-<8 hex digits of the plan key's FNV-1a hash>.jsonl`: stable
/// across builds and platforms (unlike std's hasher), short enough to read.
fn file_name(id: &str, key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{}-{:08x}.jsonl", file_stem(id), hash >> 32)
}

/// A rollout id as a file name ("prod-eu-1/checkout" → "prod-eu-1_checkout").
fn file_stem(id: &str) -> String {
    id.replace(['/', '\\', ' '], "_")
}

/// Journals were once named by rollout id alone (`<id>.jsonl`). One written
/// for this plan file takes the new name, so an upgrade resumes it rather
/// than starting the rollout over; one of another plan file stays as it is.
fn adopt_legacy(dir: &Path, id: &str, key: &str, path: &Path) -> Result<(), JournalError> {
    let legacy = dir.join(format!("{}.jsonl", file_stem(id)));
    if path.exists() || !legacy.is_file() {
        return Ok(());
    }
    let text = fs::read_to_string(&legacy).map_err(|e| io(&legacy, e))?;
    let header = text.lines().next().and_then(|first| serde_json::from_str::<Header>(first).ok());
    if header.is_some_and(|h| plan_key(&h.plan_file) == key) {
        fs::rename(&legacy, path).map_err(|e| io(&legacy, e))?;
    }
    Ok(())
}

/// One journal line as its [`Record`] (compact histograms read back).
pub fn parse_record(line: &str) -> Result<Record, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(line)?;
    if let Some(latency) = histograms(&mut value) {
        for h in latency {
            if let Some(buckets) = h.as_str().and_then(unpack) {
                *h = serde_json::to_value(buckets).expect("pairs serialize");
            }
        }
    }
    serde_json::from_value(value)
}

/// The latency histograms of a metrics record (stable's and canary's).
fn histograms(record: &mut serde_json::Value) -> Option<Vec<&mut serde_json::Value>> {
    let event = record.get_mut("event")?.as_object_mut()?;
    if event.get("event")?.as_str()? != "metrics" {
        return None;
    }
    let mut found = Vec::new();
    for (side, window) in event.iter_mut() {
        if side == "stable" || side == "canary" {
            if let Some(latency) = window.get_mut("latency") {
                found.push(latency);
            }
        }
    }
    Some(found)
}

/// Writes a metrics record's histograms with [`pack`].
fn compact_histograms(record: &mut serde_json::Value) {
    for h in histograms(record).unwrap_or_default() {
        if let Ok(buckets) = serde_json::from_value::<Vec<(i64, u64)>>(h.clone()) {
            *h = serde_json::Value::String(pack(&buckets));
        }
    }
}

/// The digits of [`pack`]: URL-safe base64, no JSON escaping needed.
const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A histogram's `(bucket, count)` pairs (ascending, counts > 0) as
/// `"<first bucket>:<digits>"`: each bucket's count as its difference from
/// the bucket before (neighbours of a latency distribution hold similar
/// counts), zigzag-folded so small differences either way are small
/// numbers; `.` and a number skip that many empty buckets. Numbers are
/// base-32, lowest digit first, a digit of 32 or more saying another
/// follows: a difference within ±15 takes one character.
pub fn pack(buckets: &[(i64, u64)]) -> String {
    let Some(&(first, _)) = buckets.first() else { return String::new() };
    let mut out = format!("{first}:");
    let (mut next, mut previous) = (first, 0u64);
    for &(index, count) in buckets {
        if index > next {
            out.push('.');
            push_number(&mut out, (index - next) as u128);
        }
        push_number(&mut out, zigzag(count as i128 - previous as i128));
        (next, previous) = (index + 1, count);
    }
    out
}

/// 0, -1, 1, -2, 2 … as 0, 1, 2, 3, 4 …
fn zigzag(d: i128) -> u128 {
    (if d < 0 { (-d) * 2 - 1 } else { d * 2 }) as u128
}

fn unzigzag(n: u128) -> i128 {
    if n % 2 == 1 {
        -((n as i128 + 1) / 2)
    } else {
        n as i128 / 2
    }
}

fn push_number(out: &mut String, mut n: u128) {
    loop {
        let low = (n & 31) as usize;
        n >>= 5;
        out.push(DIGITS[low | if n > 0 { 32 } else { 0 }] as char);
        if n == 0 {
            return;
        }
    }
}

/// The pairs [`pack`] wrote; `None` if `text` is not one of its strings.
pub fn unpack(text: &str) -> Option<Vec<(i64, u64)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let (first, digits) = text.split_once(':')?;
    let mut index: i64 = first.parse().ok()?;
    let mut chars = digits.bytes().peekable();
    let read = |chars: &mut std::iter::Peekable<std::str::Bytes<'_>>| -> Option<u128> {
        let mut n = 0u128;
        for shift in (0..130).step_by(5) {
            let c = chars.next()?;
            let d = DIGITS.iter().position(|d| *d == c)? as u128;
            n |= (d & 31).checked_shl(shift)?;
            if d < 32 {
                return Some(n);
            }
        }
        None
    };
    let (mut buckets, mut previous) = (Vec::new(), 0i128);
    while let Some(&c) = chars.peek() {
        if c == b'.' {
            chars.next();
            index = index.checked_add(read(&mut chars)?.try_into().ok()?)?;
            continue;
        }
        let count = previous + unzigzag(read(&mut chars)?);
        if count <= 0 {
            return None;
        }
        buckets.push((index, u64::try_from(count).ok()?));
        (index, previous) = (index + 1, count);
    }
    Some(buckets)
}

/// What replaying a journal found.
struct Replayed {
    rollout: Rollout,
    /// Time of the last event.
    last: Option<Timestamp>,
    records: u64,
    /// Bytes up to the end of the last complete line.
    valid_len: u64,
    /// The last events, as viewers saw them live.
    history: std::collections::VecDeque<Output>,
}

/// Rebuilds the rollout from its journal.
fn replay(
    path: &Path,
    id: &str,
    plan: &Plan,
    plan_file: &str,
    plan_text: &str,
    sim: Option<&SimRun>,
) -> Result<Replayed, JournalError> {
    let text = fs::read_to_string(path).map_err(|e| io(path, e))?;
    let shown = path.display().to_string();
    let corrupt = |line: usize, message: String| JournalError::Corrupt { path: shown.clone(), line, message };
    let mut lines = text.lines().enumerate().peekable();
    let valid_len = text.rfind('\n').map_or(0, |i| i as u64 + 1);
    let Some((_, first)) = lines.next() else {
        let rollout = Rollout::new(id, plan.clone());
        return Ok(Replayed { rollout, last: None, records: 0, valid_len, history: Default::default() });
    };
    let header: Header = serde_json::from_str(first).map_err(|e| corrupt(1, format!("bad header: {e}")))?;
    if header.plan != plan_text {
        return Err(JournalError::PlanChanged { path: shown.clone(), plan_file: plan_file.into() });
    }
    if header.sim.as_ref() != sim {
        let (was, now) = (SimRun::flags(header.sim.as_ref()), SimRun::flags(sim));
        return Err(JournalError::RunChanged { path: shown.clone(), was, now });
    }
    let mut rollout = Rollout::new(id, plan.clone());
    let mut last = None;
    let mut records = 0;
    let mut history = std::collections::VecDeque::new();
    while let Some((n, line)) = lines.next() {
        match parse_record(line) {
            Ok(record) => {
                let (next, effects) = step(&rollout, record.event.clone(), record.at);
                let told = effect_output(id, &record.event, record.at).into_iter();
                history.extend(told.chain(step_outputs(&rollout, &record.event, &effects, &next, record.at).0));
                while history.len() > HISTORY_KEPT {
                    history.pop_front();
                }
                rollout = next;
                last = Some(record.at);
                records = record.seq;
            }
            // The process died mid-write: the last line may be cut short.
            Err(_) if lines.peek().is_none() && !text.ends_with('\n') => {
                tracing::warn!(path = %shown, line = n + 1, "dropping a partial last journal line");
            }
            Err(e) => return Err(corrupt(n + 1, e.to_string())),
        }
    }
    Ok(Replayed { rollout, last, records, valid_len, history })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::rollout::{Actor, Command, CommandRequest};

    const PLAN: &str = "[rollout]\nname = \"checkout\"\nstable = \"v1\"\ncanary = \"v2\"\n";

    fn plan() -> Plan {
        Plan::parse("p.toml", PLAN).expect("plan parses")
    }

    fn drive(j: &mut Journal, r: Rollout, events: Vec<(u64, Event)>) -> Rollout {
        events.into_iter().fold(r, |r, (at, e)| {
            let next = step(&r, e.clone(), Timestamp(at)).0;
            j.append(Timestamp(at), &e, &next).unwrap();
            next
        })
    }

    #[test]
    fn resumes_an_unfinished_run_at_the_same_stage() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        let mut j = opened.journal;
        let promote = Event::Command(CommandRequest {
            actor: Actor::new("alice"),
            command: Command::Promote,
            expected_stage: 0,
            expected_revision: "v2".into(),
        });
        let live = drive(&mut j, opened.rollout, vec![(0, Event::Start), (5_000, promote)]);
        assert_eq!(live.stage, 1);
        drop(j);

        let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        assert_eq!(again.resumed_at, Some(Timestamp(5_000)));
        assert_eq!(again.rollout, live);
    }

    #[test]
    fn a_changed_plan_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        let mut j = opened.journal;
        drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
        let changed = PLAN.replace("v2", "v3");
        let err = Journal::open(
            dir.path(),
            "checkout",
            &Plan::parse("p.toml", &changed).unwrap(),
            "p.toml",
            &changed,
            None,
            false,
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains("written for a different plan than p.toml"), "{err}");
    }

    #[test]
    fn a_corrupt_middle_line_names_the_line_and_a_cut_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        let mut j = opened.journal;
        drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
        let path = j.path().to_path_buf();
        drop(j);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":2,\"at\":");
        fs::write(&path, &text).unwrap();
        let ok = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        assert_eq!(ok.rollout.stage, 0);
        // The cut line is gone: the next record starts on a line of its own.
        let mut j = ok.journal;
        drive(&mut j, ok.rollout, vec![(1_000, Event::Tick)]);
        drop(j);
        let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        assert_eq!(again.resumed_at, Some(Timestamp(1_000)));
        drop(again);
        let text = fs::read_to_string(&path).unwrap();

        let lines: Vec<&str> = text.lines().collect();
        fs::write(&path, format!("{}\nnot json\n{}\n", lines[0], lines[1])).unwrap();
        let err = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).err().expect("corrupt");
        assert!(err.to_string().contains(&format!("{}:2:", path.display())), "{err}");
    }

    #[test]
    fn removing_a_plans_runs_keeps_other_plans_journals() {
        let dir = tempfile::tempdir().unwrap();
        for fresh in [false, true, true] {
            // Set-aside journals are named by the millisecond.
            std::thread::sleep(std::time::Duration::from_millis(3));
            let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, fresh).unwrap();
            let mut j = opened.journal;
            drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
        }
        let other = Journal::open(dir.path(), "checkout", &plan(), "q.toml", PLAN, None, false).unwrap();
        drive(&mut { other.journal }, other.rollout, vec![(0, Event::Start)]);
        // From before journals were keyed by plan file: this plan's, and another's.
        let header =
            |file: &str| format!("{{\"journal\":1,\"rollout\":\"checkout\",\"plan_file\":\"{file}\",\"plan\":\"\"}}\n");
        fs::write(dir.path().join("checkout.1700000000000.jsonl"), header("p.toml")).unwrap();
        fs::write(dir.path().join("checkout.jsonl"), header("elsewhere.toml")).unwrap();
        let count = || fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(count(), 6);
        assert_eq!(remove_runs(dir.path(), "checkout", "p.toml").unwrap(), 4, "the run, two set aside, the legacy one");
        assert_eq!(count(), 2, "q.toml's journal and the other plan's legacy one stay");
        assert!(Journal::open(dir.path(), "checkout", &plan(), "q.toml", PLAN, None, false)
            .unwrap()
            .resumed_at
            .is_some());
        assert_eq!(remove_runs(&dir.path().join("missing"), "checkout", "p.toml").unwrap(), 0);
    }

    #[test]
    fn histograms_pack_small_and_read_back_exactly() {
        let buckets = vec![(-3, 1), (122, 1), (123, 31), (124, 32), (125, 1500), (400, u64::MAX)];
        let packed = pack(&buckets);
        assert_eq!(unpack(&packed), Some(buckets));
        // One character a small difference; a gap is `.` and its length.
        assert_eq!(pack(&[(7, 1), (8, 2), (10, 3), (11, 2)]), "7:CC.BCB");
        assert_eq!(unpack(""), Some(vec![]));
        assert_eq!(unpack("7:B!"), None);
        assert_eq!(unpack("x:B"), None);
    }

    #[test]
    fn a_metrics_record_is_written_compactly_and_replays_the_same() {
        use flightdeck_core::analysis::{LatencyHistogram, MetricsSample, VersionWindow};
        let mut latency = LatencyHistogram::default();
        for ms in [12.0, 80.0, 80.5, 250.0, 3000.0] {
            latency.record(ms, 3);
        }
        let window = VersionWindow { requests: 15, errors: 1, latency, ..VersionWindow::default() };
        let sample = MetricsSample {
            window: std::time::Duration::from_secs(60),
            stable: Some(window.clone()),
            canary: Some(window),
            missing: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        let mut j = opened.journal;
        let live = drive(&mut j, opened.rollout, vec![(0, Event::Start), (60_000, Event::Metrics(sample.clone()))]);
        let text = fs::read_to_string(j.path()).unwrap();
        let line = text.lines().last().unwrap();
        assert!(line.contains(r#""latency":""#), "{line}");
        assert!(matches!(parse_record(line).unwrap().event, Event::Metrics(s) if s == sample));
        drop(j);
        let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        assert_eq!(again.rollout, live);
    }

    fn sim_run(scenario: &str, seed: u64) -> SimRun {
        SimRun { scenario: scenario.into(), seed }
    }

    #[test]
    fn another_scenario_or_seed_is_refused_naming_both_and_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let healthy = sim_run("healthy", 1);
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&healthy), false).unwrap();
        let mut j = opened.journal;
        drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
        drop(j);

        for other in [sim_run("bad-canary", 1), sim_run("healthy", 7)] {
            let err = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&other), false)
                .err()
                .expect("refused");
            assert!(err.is_mismatch());
            let message = err.to_string();
            assert!(message.contains("was written with --scenario healthy --seed 1"), "{message}");
            let asks = format!("this run asks for --scenario {} --seed {}", other.scenario, other.seed);
            assert!(message.contains(&asks), "{message}");
            assert!(message.contains("pass --fresh"), "{message}");
        }
        // The same scenario and seed resume; --fresh starts the other run over.
        let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&healthy), false).unwrap();
        assert!(again.resumed_at.is_some());
        drop(again);
        let bad = sim_run("bad-canary", 7);
        let fresh = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&bad), true).unwrap();
        assert_eq!(fresh.resumed_at, None);
        drop(fresh);
        // The fresh run's journal now records its own scenario and seed.
        let err = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, Some(&healthy), false).err();
        assert!(err.is_some_and(|e| e.to_string().contains("written with --scenario bad-canary --seed 7")));
    }

    #[test]
    fn plan_files_naming_the_same_rollout_keep_apart_journals() {
        let dir = tempfile::tempdir().unwrap();
        let plans = tempfile::tempdir().unwrap();
        let (a, b) = (plans.path().join("haproxy.toml"), plans.path().join("envoy.toml"));
        let other = PLAN.replace("v2", "v3");
        fs::write(&a, PLAN).unwrap();
        fs::write(&b, &other).unwrap();
        let (a, b) = (a.display().to_string(), b.display().to_string());
        let first = Journal::open(dir.path(), "edge/checkout", &plan(), &a, PLAN, None, false).unwrap();
        let mut j = first.journal;
        drive(&mut j, first.rollout, vec![(0, Event::Start)]);
        let first_path = j.path().to_path_buf();
        drop(j);

        let other_plan = Plan::parse(&b, &other).unwrap();
        let second = Journal::open(dir.path(), "edge/checkout", &other_plan, &b, &other, None, false).unwrap();
        assert_eq!(second.resumed_at, None, "a new rollout, not the other file's");
        assert_ne!(second.journal.path(), first_path);
        let name = second.journal.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("edge_checkout-") && name.ends_with(".jsonl"), "{name}");
        drop(second);
        // The first file's run is still there to resume.
        let again = Journal::open(dir.path(), "edge/checkout", &plan(), &a, PLAN, None, false).unwrap();
        assert_eq!(again.resumed_at, Some(Timestamp(0)));
    }

    #[test]
    fn a_journal_named_by_rollout_id_alone_is_resumed_by_its_plan_file() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        let mut j = opened.journal;
        drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
        let path = j.path().to_path_buf();
        drop(j);
        fs::rename(&path, dir.path().join("checkout.jsonl")).unwrap();

        // Another plan file leaves it alone; its own plan file adopts it.
        let elsewhere = Journal::open(dir.path(), "checkout", &plan(), "q.toml", PLAN, None, false).unwrap();
        assert_eq!(elsewhere.resumed_at, None);
        assert!(dir.path().join("checkout.jsonl").exists());
        drop(elsewhere);
        let adopted = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, None, false).unwrap();
        assert_eq!(adopted.resumed_at, Some(Timestamp(0)));
        assert_eq!(adopted.journal.path(), path);
        assert!(!dir.path().join("checkout.jsonl").exists());
    }
}
