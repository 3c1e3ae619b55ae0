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
//! One run at a time: opening a journal takes an exclusive advisory lock
//! on `<journal>.lock` (released by the OS if the process dies), so a
//! second run of the same plan is refused, naming the holder, instead of
//! driving the same backend twice and interleaving records.
//!
//! Write-ahead: a record is on disk before any effect it leads to is
//! applied (see the engine task), so a resume never undoes what a backend
//! was told. A record that cannot be written stops the rollout.
//!
//! A journal is resumed only by the run it was written for: the same plan
//! text and, on the simulator, the same scenario and seed (speed does not
//! change what happens, only how fast). Anything else is refused with a
//! message that names `--fresh`, never replayed as if it were the same run.
//!
//! Verified before it is acted on: a resume makes every check `journal
//! verify` makes (see [`read`] for what is read and what a crash may have
//! cut) and replays each record to the state it holds; the first problem
//! refuses the run with `file:line` before any effect, never a replay that
//! moves traffic somewhere no run took it.
//!
//! Nothing removes or truncates a journal without holding its lock.

use super::report::{effect_output, step_outputs};
use crate::backend::sim::SimRun;
use crate::protocol::Output;
use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::{step, Event, Rollout};
use flightdeck_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod fence;
mod lock;
pub mod pack;
pub use pack::parse_record;
mod read;
#[cfg(test)]
mod tests;

pub use fence::{Fence, Term};
pub use lock::{hostname, JournalLock};
pub use read::JOURNAL_LIMIT;

/// 2: latency histograms packed (see [`pack::pack`]); format 1 reads the same.
const FORMAT: u32 = 2;
/// Events of a resumed run kept for the cockpit's event log.
const HISTORY_KEPT: usize = 500;

/// What to do about a damaged journal at `path` (one that [`JournalError::way_out`] names).
fn repair_or_start_over(path: &str) -> String {
    format!(
        "nothing was done. Check it with `flightdeck journal verify {path}` and repair or restore it, \
         or run again with --fresh to start the rollout over from its first stage (the damaged journal is kept aside)"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Corrupt { path: String, line: usize, message: String },
    #[error("{path}:1: written for a different plan than {plan_file}; run with --fresh to start over (the old journal is kept)")]
    PlanChanged { path: String, plan_file: String },
    #[error("{path}:1: journal was written with {was}; this run asks for {now}: pass --fresh to start over (the old journal is kept aside)")]
    RunChanged { path: String, was: String, now: String },
    #[error("{path}: in use by {holder}; one run per plan: wait for it to finish or stop it")]
    InUse { path: String, holder: String },
    /// Not a regular file, or larger than any journal a run writes.
    #[error("{path}: {reason}")]
    NotAJournal { path: String, reason: String },
    /// `serve --leader-elect`: this process no longer holds the Lease, so
    /// it neither writes nor acts (see [`fence`]).
    #[error("{path}: not written: {reason}")]
    Fenced { path: String, reason: fence::Expired },
}

impl JournalError {
    /// The journal cannot be resumed as asked: the user's to settle (another
    /// run, `--fresh`), not a failure of flightdeck. Nothing has run.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, JournalError::Io { .. } | JournalError::Fenced { .. })
    }

    /// What the user can do about a journal that is damaged (its own
    /// message says what to do about the other refusals).
    pub fn way_out(&self) -> Option<String> {
        match self {
            JournalError::Corrupt { path, .. } | JournalError::NotAJournal { path, .. } => {
                Some(repair_or_start_over(path))
            }
            _ => None,
        }
    }
}

/// A simulated run's scenario and seed as the command line says them.
fn sim_flags(run: Option<&SimRun>) -> String {
    match run {
        Some(r) => format!("--scenario {} --seed {}", r.scenario, r.seed),
        None => "no recorded scenario and seed".into(),
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
    /// `serve --leader-elect`: the Lease term it was written in (see [`fence`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Term>,
}

/// An open journal, appending; it holds the journal's lock while open.
pub struct Journal {
    path: PathBuf,
    file: File,
    seq: u64,
    /// `None` when a [`Fence`] keeps one writer instead.
    _lock: Option<JournalLock>,
    fence: Option<Fence>,
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
        Journal::open_fenced(dir, id, plan, plan_file, plan_text, sim, fresh, fence::installed())
    }

    /// [`Journal::open`] under `fence` (the Lease's term) rather than the
    /// advisory lock, when there is one: nothing is read or renamed
    /// unless the term holds, and every record carries it.
    #[allow(clippy::too_many_arguments)]
    pub fn open_fenced(
        dir: &Path,
        id: &str,
        plan: &Plan,
        plan_file: &str,
        plan_text: &str,
        sim: Option<&SimRun>,
        fresh: bool,
        fence: Option<Fence>,
    ) -> Result<Opened, JournalError> {
        // The user's alone whatever the umask: journals hold every command and reason.
        crate::paths::private_dir(dir).map_err(|e| io(dir, e))?;
        let key = plan_key(plan_file);
        let path = dir.join(file_name(id, &key));
        // Before anything is read or renamed: another run may be writing.
        let lock = match &fence {
            Some(f) => {
                f.check().map_err(|reason| fenced(&path, reason))?;
                None
            }
            None => Some(JournalLock::take(&path.with_extension("lock"), &path)?),
        };
        adopt_legacy(dir, id, &key, &path)?;
        // A dangling symlink is there too: refused by the replay, not replaced.
        let there = fs::symlink_metadata(&path).is_ok();
        if there && !fresh {
            if let Some(replayed) = replay(&path, id, plan, plan_file, plan_text, sim)? {
                let file = OpenOptions::new().append(true).open(&path).map_err(|e| io(&path, e))?;
                // Back to the end of the last whole record: a cut last line
                // (and blanks after it) goes, or the next record would be glued to it.
                file.set_len(replayed.valid_len).map_err(|e| io(&path, e))?;
                let journal = Journal { path, file, seq: replayed.records, _lock: lock, fence };
                let history = replayed.history.into();
                return Ok(Opened { journal, rollout: replayed.rollout, resumed_at: Some(replayed.last), history });
            }
        }
        if there {
            let aside = path.with_extension(format!("{}.jsonl", crate::clock::wall_ms()));
            fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
        }
        let header = Header {
            journal: FORMAT,
            rollout: id.into(),
            plan_file: plan_file.into(),
            plan: plan_text.into(),
            sim: sim.cloned(),
        };
        let file = create_whole(&path, &header)?;
        let rollout = Rollout::new(id, plan.clone());
        Ok(Opened {
            journal: Journal { path, file, seq: 0, _lock: lock, fence },
            rollout,
            resumed_at: None,
            history: Vec::new(),
        })
    }

    /// Appends one event and the state it led to. On error the record may
    /// be cut short on disk; the next open drops it, so stop appending.
    pub fn append(&mut self, at: Timestamp, event: &Event, state: &Rollout) -> Result<(), JournalError> {
        let lease = self.fence_check()?;
        let record = Record {
            seq: self.seq + 1,
            at,
            wall: crate::clock::wall_ms(),
            event: event.clone(),
            phase: state.phase.label().to_string(),
            stage: state.stage,
            weight: state.canary_weight,
            lease,
        };
        let mut value = serde_json::to_value(&record).expect("records serialize");
        pack::compact_histograms(&mut value);
        let mut line = serde_json::to_string(&value).expect("records serialize");
        line.push('\n');
        // One write per record: a crash leaves at most one partial last line.
        self.file.write_all(line.as_bytes()).map_err(|e| io(&self.path, e))?;
        self.seq += 1;
        Ok(())
    }

    /// Makes what was appended durable: called before a backend is told to
    /// act on it (a full disk may only say so here).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Under a fence: its term while it holds, else [`JournalError::Fenced`]
    /// (the engine asks before every effect). `Ok(None)` without a fence.
    pub fn fence_check(&self) -> Result<Option<Term>, JournalError> {
        match &self.fence {
            Some(f) => f.check().map(Some).map_err(|reason| fenced(&self.path, reason)),
            None => Ok(None),
        }
    }
}

fn fenced(path: &Path, reason: fence::Expired) -> JournalError {
    JournalError::Fenced { path: path.display().to_string(), reason }
}

/// A new journal holding only `header`, at `path`, never seen half
/// written: the header goes to a temporary file beside it, is synced and
/// renamed into place (then the directory is synced), so a crash leaves
/// either no journal or a whole header. The file is left open for appends.
fn create_whole(path: &Path, header: &Header) -> Result<File, JournalError> {
    let partial = path.with_extension("partial");
    let mut file = crate::paths::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&partial)
        .map_err(|e| io(&partial, e))?;
    let line = serde_json::to_string(header).expect("header serializes") + "\n";
    file.write_all(line.as_bytes()).and_then(|_| file.sync_all()).map_err(|e| io(&partial, e))?;
    fs::rename(&partial, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
    }
    drop(file);
    // Appending (O_APPEND), as a resumed journal is: a deposed leader's
    // late write lands after the new leader's records, never over them.
    OpenOptions::new().append(true).open(path).map_err(|e| io(path, e))
}

/// Deletes every journal of the `runs` (rollout id, plan file): for each,
/// the current one, those `--fresh` set aside, and one from before journals
/// were keyed by plan file when its header names this plan file. Journals
/// of other plan files are left alone. Returns how many were deleted.
///
/// Every run's lock is taken first, and held while its files go: if a run
/// is using any of them, nothing is deleted and the error names the holder.
/// Lock files stay (removing one another process has open would let two
/// runs each hold "the" lock).
pub fn remove_runs(dir: &Path, runs: &[(&str, &str)]) -> Result<usize, JournalError> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(0);
    }
    let mut locks = Vec::with_capacity(runs.len());
    for (id, plan_file) in runs {
        let path = dir.join(file_name(id, &plan_key(plan_file)));
        locks.push(JournalLock::take(&path.with_extension("lock"), &path)?);
    }
    let mut removed = 0;
    for (id, plan_file) in runs {
        removed += remove_run(dir, id, plan_file)?;
    }
    drop(locks);
    Ok(removed)
}

/// [`remove_runs`] of one run whose lock the caller holds.
fn remove_run(dir: &Path, id: &str, plan_file: &str) -> Result<usize, JournalError> {
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

/// The journal's header was written for `plan_file` (a journal's bounded read).
fn header_names(path: &Path, plan_file: &str) -> bool {
    header_of(path).is_some_and(|h| plan_key(&h.plan_file) == plan_key(plan_file))
}

/// The header of the journal at `path`, if it is a readable journal (a
/// regular file within the journal limit) with a header.
fn header_of(path: &Path) -> Option<Header> {
    let text = crate::files::read_text_within(path, read::JOURNAL_LIMIT).ok()?;
    text.lines().next().and_then(|first| serde_json::from_str::<Header>(first).ok())
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
    if fs::symlink_metadata(path).is_ok() || !legacy.is_file() {
        return Ok(());
    }
    if header_of(&legacy).is_some_and(|h| plan_key(&h.plan_file) == key) {
        fs::rename(&legacy, path).map_err(|e| io(&legacy, e))?;
    }
    Ok(())
}

/// What replaying a journal found.
struct Replayed {
    rollout: Rollout,
    /// Time of the last event.
    last: Timestamp,
    records: u64,
    /// Bytes up to the end of the last complete line.
    valid_len: u64,
    /// The last events, as viewers saw them live.
    history: std::collections::VecDeque<Output>,
}

/// Rebuilds the rollout from its journal, checking it as `journal verify`
/// does first; `None` when it holds no event yet.
fn replay(
    path: &Path,
    id: &str,
    plan: &Plan,
    plan_file: &str,
    plan_text: &str,
    sim: Option<&SimRun>,
) -> Result<Option<Replayed>, JournalError> {
    let parsed = read::read(path)?;
    let shown = path.display().to_string();
    if parsed.header.rollout != id {
        let message = format!("written for rollout {}, not {id}", parsed.header.rollout);
        return Err(JournalError::Corrupt { path: shown, line: 1, message });
    }
    if parsed.header.plan != plan_text {
        return Err(JournalError::PlanChanged { path: shown, plan_file: plan_file.into() });
    }
    if parsed.header.sim.as_ref() != sim {
        let (was, now) = (sim_flags(parsed.header.sim.as_ref()), sim_flags(sim));
        return Err(JournalError::RunChanged { path: shown, was, now });
    }
    if let Some(line) = parsed.cut {
        tracing::warn!(path = %shown, line, "dropping a partial last journal line");
    }
    for (line, why) in &parsed.fenced_out {
        tracing::warn!("{shown}:{line}: {why}");
    }
    let Some((_, last)) = parsed.records.last() else { return Ok(None) };
    let (last, records) = (last.at, last.seq);
    let mut history = std::collections::VecDeque::new();
    let rollout =
        replay_checked(&shown, Rollout::new(id, plan.clone()), parsed.records, |before, event, at, after| {
            let (effects, next) = after;
            let told = effect_output(id, event, at).into_iter();
            history.extend(told.chain(step_outputs(before, event, effects, next, at).0));
            while history.len() > HISTORY_KEPT {
                history.pop_front();
            }
        })?;
    Ok(Some(Replayed { rollout, last, records, valid_len: parsed.valid_len, history }))
}

/// Replays `records` from `rollout`, each through `core::step`, and checks
/// that each reaches the state (phase, stage, weight) it records: the
/// first that does not is refused with its line. `each` sees every step
/// (the state before, the event, its time, the effects and the state after).
fn replay_checked(
    shown: &str,
    mut rollout: Rollout,
    records: Vec<(usize, Record)>,
    mut each: impl FnMut(&Rollout, &Event, Timestamp, (&[flightdeck_core::rollout::Effect], &Rollout)),
) -> Result<Rollout, JournalError> {
    for (line, record) in records {
        let (next, effects) = step(&rollout, record.event.clone(), record.at);
        let replayed = (next.phase.label(), next.stage, next.canary_weight);
        if replayed != (record.phase.as_str(), record.stage, record.weight) {
            let message = format!(
                "records {} at stage {} and {} %, but replaying reaches {} at stage {} and {} %",
                record.phase,
                record.stage.saturating_add(1),
                record.weight,
                replayed.0,
                replayed.1.saturating_add(1),
                replayed.2
            );
            return Err(JournalError::Corrupt { path: shown.to_owned(), line, message });
        }
        each(&rollout, &record.event, record.at, (&effects, &next));
        rollout = next;
    }
    Ok(rollout)
}

/// A run a journal holds that has not finished, and the plan it was written for.
#[derive(Debug)]
pub struct Unfinished {
    pub plan_file: String,
    pub plan_text: String,
    /// The simulator's scenario and seed, for a simulated run.
    pub sim: Option<SimRun>,
    pub rollout: Rollout,
}

/// The unfinished runs of the journals in `dir` whose plan file `keep`
/// says to look at (set-aside journals, finished runs, and journals that
/// do not verify are left out: a resume says what is wrong with those).
pub fn unfinished(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<Unfinished> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".jsonl") else { continue };
        // `<stem>.<wall ms>.jsonl` was set aside by --fresh.
        if stem.rsplit_once('.').is_some_and(|(_, ms)| ms.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Some(header) = header_of(&path).filter(|h| keep(&h.plan_file)) else { continue };
        match verify(&path) {
            Ok(v) if !v.rollout.phase.is_finished() => found.push(Unfinished {
                plan_file: header.plan_file,
                plan_text: header.plan,
                sim: header.sim,
                rollout: v.rollout,
            }),
            _ => {}
        }
    }
    found.sort_by(|a, b| a.plan_file.cmp(&b.plan_file));
    found
}

/// What `flightdeck journal verify` found in a sound journal.
#[derive(Debug)]
pub struct Verified {
    pub rollout: Rollout,
    pub records: usize,
    /// A cut last line that a resume drops.
    pub cut: Option<usize>,
}

/// Checks a journal as a resume reads it, and more: the plan in its header
/// parses, and replaying every record reaches the state the record holds.
/// The first problem comes back with its line.
pub fn verify(path: &Path) -> Result<Verified, JournalError> {
    let shown = path.display().to_string();
    let corrupt = |line: usize, message: String| JournalError::Corrupt { path: shown.clone(), line, message };
    let parsed = read::read(path)?;
    let header = &parsed.header;
    let plan = Plan::parse(&header.plan_file, &header.plan)
        .map_err(|e| corrupt(1, format!("the plan in the header does not parse: {e}")))?;
    let rollout = Rollout::new(header.rollout.clone(), plan);
    let records = parsed.records.len();
    let rollout = replay_checked(&shown, rollout, parsed.records, |_, _, _, _| {})?;
    Ok(Verified { rollout, records, cut: parsed.cut })
}

/// Where the journal of rollout `id` of the plan in `plan_file` is.
pub fn path_of(dir: &Path, id: &str, plan_file: &str) -> PathBuf {
    dir.join(file_name(id, &plan_key(plan_file)))
}

/// What a standby reads of a journal the replica holding the Lease writes.
#[derive(Debug)]
pub struct Followed {
    pub rollout: Rollout,
    /// Time of its last event.
    pub last: Timestamp,
    /// Its last events, as viewers saw them live (oldest first).
    pub history: Vec<Output>,
}

/// The run the journal of rollout `id` of this plan holds, read and checked
/// as a resume reads it, but without its lock and without writing anything
/// (a standby follows the leader's journals so; a cut last line, one being
/// written, is left out). `None` when there is no journal yet, or it holds
/// no event.
pub fn follow(
    dir: &Path,
    id: &str,
    plan: &Plan,
    plan_file: &str,
    plan_text: &str,
    sim: Option<&SimRun>,
) -> Result<Option<Followed>, JournalError> {
    let path = path_of(dir, id, plan_file);
    if fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let replayed = replay(&path, id, plan, plan_file, plan_text, sim)?;
    Ok(replayed.map(|r| Followed { rollout: r.rollout, last: r.last, history: r.history.into() }))
}

/// Every command the journal of rollout `id` of the plan in `plan_file`
/// holds, applied or refused, as viewers were told it (who, from which
/// session, the stage and revision they saw, why a refusal). `None` when
/// the plan has no journal yet.
pub fn audit(dir: &Path, id: &str, plan_file: &str) -> Result<Option<Vec<Output>>, JournalError> {
    let path = dir.join(file_name(id, &plan_key(plan_file)));
    if !path.exists() {
        return Ok(None);
    }
    // Read without the lock: a running server may be appending (a cut
    // last line is left out).
    let parsed = read::read(&path)?;
    let plan = Plan::parse(&parsed.header.plan_file, &parsed.header.plan).map_err(|e| JournalError::Corrupt {
        path: path.display().to_string(),
        line: 1,
        message: format!("the plan in the header does not parse: {e}"),
    })?;
    let mut rollout = Rollout::new(id, plan);
    let mut actions = Vec::new();
    for (_, record) in parsed.records {
        let (next, effects) = step(&rollout, record.event.clone(), record.at);
        if matches!(record.event, Event::Command(_)) {
            let told = step_outputs(&rollout, &record.event, &effects, &next, record.at).0;
            actions.extend(told.into_iter().filter(|o| matches!(o, Output::Action { .. })));
        }
        rollout = next;
    }
    Ok(Some(actions))
}
