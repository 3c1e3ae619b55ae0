//! The journal: every event a rollout saw, as JSON lines, so a run that
//! crashed resumes where it was. `core::step` is pure, so replaying the
//! events from the plan's initial state rebuilds the exact state.
//!
//! Layout: `<data dir>/journal/<rollout id>.jsonl`; line 1 is a header with
//! the plan text, every further line a [`Record`].

use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::{step, Event, Rollout};
use flightdeck_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Corrupt { path: String, line: usize, message: String },
    #[error("{path}: written for a different plan than {plan_file}; run with --fresh to start over (the old journal is kept)")]
    PlanChanged { path: String, plan_file: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    journal: u32,
    rollout: String,
    plan_file: String,
    plan: String,
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
}

impl Journal {
    /// Opens the journal of rollout `id`, resuming the run it holds (of the
    /// same plan), finished or not: a rolled-back canary must stay rolled
    /// back across restarts. With `fresh` the old journal is set aside under
    /// a new name and a new run begins.
    pub fn open(
        dir: &Path,
        id: &str,
        plan: &Plan,
        plan_file: &str,
        plan_text: &str,
        fresh: bool,
    ) -> Result<Opened, JournalError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join(format!("{}.jsonl", id.replace(['/', '\\', ' '], "_")));
        if path.exists() && !fresh {
            let replayed = replay(&path, id, plan, plan_file, plan_text)?;
            if replayed.last.is_some() {
                let file = OpenOptions::new().append(true).open(&path).map_err(|e| io(&path, e))?;
                // Cut a partial last line, or the next record would be glued to it.
                file.set_len(replayed.valid_len).map_err(|e| io(&path, e))?;
                let journal = Journal { path, file, seq: replayed.records };
                return Ok(Opened { journal, rollout: replayed.rollout, resumed_at: replayed.last });
            }
        }
        if path.exists() {
            let aside = path.with_extension(format!("{}.jsonl", crate::engine::clock::wall_ms()));
            fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
        }
        let mut file = File::create(&path).map_err(|e| io(&path, e))?;
        let header =
            Header { journal: FORMAT, rollout: id.into(), plan_file: plan_file.into(), plan: plan_text.into() };
        writeln!(file, "{}", serde_json::to_string(&header).expect("header serializes")).map_err(|e| io(&path, e))?;
        let rollout = Rollout::new(id, plan.clone());
        Ok(Opened { journal: Journal { path, file, seq: 0 }, rollout, resumed_at: None })
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
        let mut line = serde_json::to_string(&record).expect("records serialize");
        line.push('\n');
        // One write per record: a crash leaves at most one partial last line.
        self.file.write_all(line.as_bytes()).map_err(|e| io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io { path: path.display().to_string(), source }
}

/// What replaying a journal found.
struct Replayed {
    rollout: Rollout,
    /// Time of the last event.
    last: Option<Timestamp>,
    records: u64,
    /// Bytes up to the end of the last complete line.
    valid_len: u64,
}

/// Rebuilds the rollout from its journal.
fn replay(path: &Path, id: &str, plan: &Plan, plan_file: &str, plan_text: &str) -> Result<Replayed, JournalError> {
    let text = fs::read_to_string(path).map_err(|e| io(path, e))?;
    let shown = path.display().to_string();
    let corrupt = |line: usize, message: String| JournalError::Corrupt { path: shown.clone(), line, message };
    let mut lines = text.lines().enumerate().peekable();
    let valid_len = text.rfind('\n').map_or(0, |i| i as u64 + 1);
    let Some((_, first)) = lines.next() else {
        return Ok(Replayed { rollout: Rollout::new(id, plan.clone()), last: None, records: 0, valid_len });
    };
    let header: Header = serde_json::from_str(first).map_err(|e| corrupt(1, format!("bad header: {e}")))?;
    if header.plan != plan_text {
        return Err(JournalError::PlanChanged { path: shown.clone(), plan_file: plan_file.into() });
    }
    let mut rollout = Rollout::new(id, plan.clone());
    let mut last = None;
    let mut records = 0;
    while let Some((n, line)) = lines.next() {
        match serde_json::from_str::<Record>(line) {
            Ok(record) => {
                rollout = step(&rollout, record.event, record.at).0;
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
    Ok(Replayed { rollout, last, records, valid_len })
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
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, false).unwrap();
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

        let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, false).unwrap();
        assert_eq!(again.resumed_at, Some(Timestamp(5_000)));
        assert_eq!(again.rollout, live);
    }

    #[test]
    fn a_changed_plan_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, false).unwrap();
        let mut j = opened.journal;
        drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
        let changed = PLAN.replace("v2", "v3");
        let err =
            Journal::open(dir.path(), "checkout", &Plan::parse("p.toml", &changed).unwrap(), "p.toml", &changed, false)
                .err()
                .expect("refused");
        assert!(err.to_string().contains("written for a different plan than p.toml"), "{err}");
    }

    #[test]
    fn a_corrupt_middle_line_names_the_line_and_a_cut_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, false).unwrap();
        let mut j = opened.journal;
        drive(&mut j, opened.rollout, vec![(0, Event::Start)]);
        let path = j.path().to_path_buf();
        drop(j);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":2,\"at\":");
        fs::write(&path, &text).unwrap();
        let ok = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, false).unwrap();
        assert_eq!(ok.rollout.stage, 0);
        // The cut line is gone: the next record starts on a line of its own.
        let mut j = ok.journal;
        drive(&mut j, ok.rollout, vec![(1_000, Event::Tick)]);
        drop(j);
        let again = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, false).unwrap();
        assert_eq!(again.resumed_at, Some(Timestamp(1_000)));
        drop(again);
        let text = fs::read_to_string(&path).unwrap();

        let lines: Vec<&str> = text.lines().collect();
        fs::write(&path, format!("{}\nnot json\n{}\n", lines[0], lines[1])).unwrap();
        let err = Journal::open(dir.path(), "checkout", &plan(), "p.toml", PLAN, false).err().expect("corrupt");
        assert!(err.to_string().contains("checkout.jsonl:2:"), "{err}");
    }
}
