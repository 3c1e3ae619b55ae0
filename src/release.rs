//! Releases across regions: a release file (waves of plans, see
//! `flightdeck_core::release::file`) becomes the rollouts it names, held
//! until their wave starts, and one driver beside them in the engine that
//! feeds their states to the core's release state machine, journals every
//! event it feeds (write-ahead, as rollouts are), and carries out its
//! decisions through the engine's handle: start a rollout, roll one back,
//! tell one it never starts.
//!
//! `flightdeck run RELEASE.toml` runs one (a file with a `[release]` table
//! is a release; plans are plans), in the cockpit or headless;
//! `flightdeck check RELEASE.toml` checks it and every plan it names.

use crate::engine::journal::JournalLock;
use crate::engine::{Driver, DriverParts, Hold, RolloutSetup};
use crate::fleet::{self, BadInput};
use crate::protocol::{CommandRequest, Output, Reply, Snapshot};
use flightdeck_core::release::{
    step, Member, MemberState, Release, ReleaseCommand, ReleaseEffect, ReleaseEvent, ReleaseFile, ReleaseNotice,
    ReleasePhase, ReleaseRequest, ReleaseSpec,
};
use flightdeck_core::rollout::{Actor, Command, Phase};
use flightdeck_core::time::Timestamp;
use flightdeck_core::Plan;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A release file read, its plans resolved into rollouts ready to run.
pub struct ReleaseRun {
    pub file: String,
    pub text: String,
    pub spec: ReleaseSpec,
    pub setups: Vec<RolloutSetup>,
}

impl ReleaseRun {
    /// The id the release goes by in events and commands (`release/<name>`).
    pub fn id(&self) -> String {
        id_of(&self.spec.name)
    }
}

/// `release/<name>`: commands sent to this name go to the release.
pub fn id_of(name: &str) -> String {
    format!("release/{name}")
}

/// True when the file at `path` is a release file (it has a `[release]`
/// table); unreadable files are left to the plan reader to report.
pub fn is_release(path: &Path) -> bool {
    crate::files::read_text(path).is_ok_and(|text| ReleaseFile::is_release(&text))
}

fn read_file(path: &Path) -> Result<(ReleaseFile, String), BadInput> {
    let shown = path.display().to_string();
    let text = crate::files::read_text(path).map_err(|e| match e {
        crate::files::TextError::Io(e) => BadInput(format!("{shown}: cannot read: {e}")),
        e => BadInput(e.at(&shown, "release").to_string()),
    })?;
    let file = ReleaseFile::parse(&shown, &text).map_err(|e| BadInput(e.to_string()))?;
    Ok((file, text))
}

/// The plan an entry names, once per region: (plan, file shown, text).
/// A plan as one region runs it: (plan, file shown, text).
type Found = (Plan, String, String);
/// Wave by wave, entry by entry, the plans an entry became.
type Waves = Vec<Vec<Vec<Found>>>;

fn plans_of(release: &ReleaseFile, path: &Path) -> Result<Waves, BadInput> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut waves = Vec::new();
    for wave in &release.waves {
        let mut entries = Vec::new();
        for entry in &wave.rollouts {
            let plan_path = dir.join(&entry.plan);
            let shown = plan_path.display().to_string();
            let text = crate::files::read_text(&plan_path).map_err(|e| {
                let why = match e {
                    crate::files::TextError::Io(e) => format!("cannot read plan {shown}: {e}"),
                    e => e.at(&shown, "plan").to_string(),
                };
                BadInput(entry.error(&release.file, why).to_string())
            })?;
            let plan = Plan::parse(&shown, &text).map_err(|e| BadInput(e.to_string()))?;
            let mut found = Vec::new();
            if entry.regions.is_empty() {
                found.push((plan, shown.clone(), text));
            } else {
                for region in &entry.regions {
                    let text = in_region(&text, region);
                    let plan = Plan::parse(&shown, &text).map_err(|e| {
                        BadInput(
                            entry.error(&release.file, format!("plan {shown} in region {region}: {e}")).to_string(),
                        )
                    })?;
                    found.push((plan, shown.clone(), text));
                }
            }
            entries.push(found);
        }
        waves.push(entries);
    }
    Ok(waves)
}

/// A plan's text with its target group set to `region`, so the journaled
/// text is the plan that runs.
pub fn in_region(text: &str, region: &str) -> String {
    let line = format!("group = \"{region}\"");
    let mut out = Vec::new();
    let (mut in_target, mut done) = (false, false);
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            if in_target && !done {
                out.push(line.clone());
                done = true;
            }
            in_target = t == "[target]";
        } else if in_target && !done && t.split('=').next().is_some_and(|k| k.trim() == "group") {
            out.push(line.clone());
            done = true;
            continue;
        }
        out.push(l.to_string());
    }
    if in_target && !done {
        out.push(line.clone());
        done = true;
    }
    if !done {
        out.push(String::new());
        out.push("[target]".into());
        out.push(line);
    }
    out.join("\n") + "\n"
}

/// The release and its members, from the plans it names.
fn spec_of(release: &ReleaseFile, plans: &[Vec<Vec<Found>>]) -> Result<ReleaseSpec, BadInput> {
    let members = plans
        .iter()
        .map(|wave| {
            wave.iter()
                .map(|entry| {
                    entry
                        .iter()
                        .map(|(plan, _, _)| Member {
                            rollout: fleet::rollout_id(plan),
                            region: plan.target.group.clone(),
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    release.spec(members).map_err(|e| BadInput(e.to_string()))
}

/// `flightdeck check RELEASE.toml`: the release file and every plan it
/// names, as `check` checks plans. Returns the release.
pub fn check(path: &Path, config_dir: &Path) -> Result<ReleaseSpec, BadInput> {
    let (release, _) = read_file(path)?;
    let plans = plans_of(&release, path)?;
    for wave in &plans {
        for entry in wave {
            for (plan, file, text) in entry {
                fleet::check_theme(plan, file, text, config_dir)?;
            }
        }
    }
    // Parameters and metrics are checked as for plans (each plan file once).
    let dir = path.parent().unwrap_or(Path::new("."));
    for wave in &release.waves {
        for entry in &wave.rollouts {
            fleet::check(&dir.join(&entry.plan), config_dir)?;
        }
    }
    spec_of(&release, &plans)
}

/// "release checkout-2: 3 waves, 4 rollouts in us-east-1, eu-west-1, …".
pub fn describe(spec: &ReleaseSpec) -> String {
    let regions: Vec<&str> = spec.waves.iter().flat_map(|w| w.members.iter().map(|m| m.region.as_str())).collect();
    let mut seen: Vec<&str> = Vec::new();
    for r in regions {
        if !seen.contains(&r) {
            seen.push(r);
        }
    }
    let n = spec.rollouts().count();
    format!("release {}: {} waves, {n} rollouts in {}", spec.name, spec.waves.len(), seen.join(", "))
}

/// Reads a release file and builds every rollout it names.
pub async fn read(path: &Path, scenario: Option<&str>, seed: u64) -> Result<ReleaseRun, BadInput> {
    let (release, text) = read_file(path)?;
    let plans = plans_of(&release, path)?;
    let spec = spec_of(&release, &plans)?;
    let scenario = scenario
        .map(|s| s.parse::<crate::backend::sim::Scenario>().map_err(|e| BadInput(format!("--scenario: {e}"))))
        .transpose()?;
    let shared = fleet::Shared::default();
    let mut setups = Vec::new();
    for (plan, file, text) in plans.into_iter().flatten().flatten() {
        setups.push(fleet::setup_in(&shared, plan, &file, text, scenario, seed).await?);
    }
    Ok(ReleaseRun { file: release.file, text, spec, setups })
}

/// A release from text already in hand (the demo's), its plans given as
/// (file, text) by the path the release names them with.
pub async fn from_texts(file: &str, text: &str, plans: &[(&str, String)], seed: u64) -> Result<ReleaseRun, BadInput> {
    let release = ReleaseFile::parse(file, text).map_err(|e| BadInput(e.to_string()))?;
    let mut found = Vec::new();
    for wave in &release.waves {
        let mut entries = Vec::new();
        for entry in &wave.rollouts {
            let Some((_, plan_text)) = plans.iter().find(|(f, _)| *f == entry.plan) else {
                return Err(BadInput(entry.error(file, format!("no plan {}", entry.plan)).to_string()));
            };
            let regions: Vec<Option<&String>> =
                if entry.regions.is_empty() { vec![None] } else { entry.regions.iter().map(Some).collect() };
            let mut list = Vec::new();
            for region in regions {
                let text = region.map_or_else(|| plan_text.clone(), |r| in_region(plan_text, r));
                let plan = Plan::parse(&entry.plan, &text).map_err(|e| BadInput(e.to_string()))?;
                list.push((plan, entry.plan.clone(), text));
            }
            entries.push(list);
        }
        found.push(entries);
    }
    let spec = spec_of(&release, &found)?;
    let shared = fleet::Shared::default();
    let mut setups = Vec::new();
    for (plan, file, text) in found.into_iter().flatten().flatten() {
        setups.push(fleet::setup_in(&shared, plan, &file, text, None, seed).await?);
    }
    Ok(ReleaseRun { file: file.to_owned(), text: text.to_owned(), spec, setups })
}

/// The demo's release (`flightdeck demo --release`): five pretend regions
/// in three waves on the simulator; one region's canary goes bad in wave
/// 2, so the halt shows (src/demo/release/).
pub const DEMO_RELEASE: (&str, &str) = ("demo/release/release.toml", include_str!("demo/release/release.toml"));

/// The demo release's plans, by the names its file gives them.
pub const DEMO_RELEASE_PLANS: &[(&str, &str)] = &[
    ("storefront.toml", include_str!("demo/release/storefront.toml")),
    ("storefront-bad.toml", include_str!("demo/release/storefront-bad.toml")),
];

/// The demo's release, ready to run.
pub async fn demo(seed: u64) -> Result<ReleaseRun, BadInput> {
    let plans: Vec<(&str, String)> = DEMO_RELEASE_PLANS.iter().map(|(f, t)| (*f, t.to_string())).collect();
    from_texts(DEMO_RELEASE.0, DEMO_RELEASE.1, &plans, seed).await
}

// ---- the journal -----------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Header {
    release: String,
    file: String,
    text: String,
    /// The waves with their rollouts as the plans made them: the same text
    /// naming plans that now make other rollouts is another release.
    spec: ReleaseSpec,
}

#[derive(Serialize, Deserialize)]
struct Record {
    at: Timestamp,
    event: ReleaseEvent,
}

/// A release's journal: a header with the release file's text, then one
/// line per event fed to the core, on disk before its effects are carried
/// out. Replaying the events rebuilds the state; one run at a time (a lock
/// beside it, as rollout journals have).
pub struct ReleaseJournal {
    file: File,
    path: PathBuf,
    _lock: JournalLock,
}

/// What opening a journal found.
pub struct Opened {
    pub journal: Option<ReleaseJournal>,
    pub release: Release,
    /// Time of the last event, when an unfinished release resumes.
    pub resumed_at: Option<Timestamp>,
}

fn journal_path(dir: &Path, name: &str, file: &str) -> PathBuf {
    let key = std::fs::canonicalize(file).map_or_else(|_| file.to_owned(), |p| p.display().to_string());
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let stem: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    dir.join(format!("release-{stem}-{:08x}.jsonl", hash >> 32))
}

/// Deletes the journal of `run`'s release (the demo keeps only its
/// latest run), with its lock held: a run still going keeps it.
pub fn remove_journal(dir: &Path, run: &ReleaseRun) -> Result<(), BadInput> {
    let path = journal_path(dir, &run.spec.name, &run.file);
    if !path.exists() {
        return Ok(());
    }
    let _lock = JournalLock::take(&path.with_extension("lock"), &path).map_err(|e| BadInput(e.to_string()))?;
    std::fs::remove_file(&path).map_err(|e| BadInput(format!("{}: {e}", path.display())))
}

impl ReleaseJournal {
    /// Opens (resuming an unfinished release) or starts the journal of
    /// `run`. A journal of another release file's text, or a damaged one,
    /// is refused with file:line and nothing runs; `fresh` (or a finished
    /// release) keeps the old journal aside and starts over.
    pub fn open(dir: &Path, run: &ReleaseRun, fresh: bool) -> Result<Opened, BadInput> {
        let io = |p: &Path, e: std::io::Error| BadInput(format!("{}: {e}", p.display()));
        crate::paths::private_dir(dir).map_err(|e| io(dir, e))?;
        let path = journal_path(dir, &run.spec.name, &run.file);
        let lock = JournalLock::take(&path.with_extension("lock"), &path).map_err(|e| BadInput(e.to_string()))?;
        let mut release = Release::new(run.spec.clone());
        let mut resumed_at = None;
        if path.exists() && !fresh {
            let shown = path.display().to_string();
            let replayed = replay(&path)?;
            if replayed.header.text != run.text || replayed.header.spec != run.spec {
                return Err(BadInput(format!(
                    "{shown}:1: written for a different release than {} makes now (its text, or the rollouts its plans make); run with --fresh to start over (the old journal is kept)",
                    run.file
                )));
            }
            if replayed.release.phase.is_finished() || replayed.last.is_none() {
                // A finished release: this run is a new one.
            } else {
                if replayed.cut.is_some() {
                    // A record cut short by a crash mid-write: its effects never
                    // ran (they follow the sync); the next record goes where it began.
                    let file = crate::paths::private_file().write(true).open(&path).map_err(|e| io(&path, e))?;
                    file.set_len(replayed.sound_len).and_then(|_| file.sync_all()).map_err(|e| io(&path, e))?;
                }
                release = replayed.release;
                resumed_at = replayed.last;
            }
        }
        if resumed_at.is_none() {
            if path.exists() {
                let aside = path.with_extension(format!("jsonl.{}", crate::clock::wall_ms()));
                std::fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
            }
            let mut file = crate::paths::private_file()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            let header = Header {
                release: run.spec.name.clone(),
                file: run.file.clone(),
                text: run.text.clone(),
                spec: run.spec.clone(),
            };
            writeln!(file, "{}", serde_json::to_string(&header).expect("a header serializes"))
                .and_then(|_| file.sync_all())
                .map_err(|e| io(&path, e))?;
        }
        let file = crate::paths::private_file().append(true).open(&path).map_err(|e| io(&path, e))?;
        Ok(Opened { journal: Some(ReleaseJournal { file, path, _lock: lock }), release, resumed_at })
    }

    /// Appends one event and syncs it: on disk before its effects run.
    fn append(&mut self, at: Timestamp, event: &ReleaseEvent) -> std::io::Result<()> {
        let line = serde_json::to_string(&Record { at, event: event.clone() }).expect("a record serializes");
        writeln!(self.file, "{line}")?;
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a release journal holds, replayed.
pub struct Replayed {
    header: Header,
    pub release: Release,
    /// Time of the last record, if any.
    pub last: Option<Timestamp>,
    pub records: usize,
    /// The line of a last record cut short by a crash mid-write (dropped).
    pub cut: Option<usize>,
    /// Bytes up to the end of the last whole record.
    sound_len: u64,
}

/// The most a release journal may be: far above any release's records.
const RELEASE_JOURNAL_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads and replays a release journal, checking every line: a line that
/// cannot be read is refused at `file:line`, except a last line cut short
/// (no newline), which a crash mid-write leaves and a resume drops.
pub fn replay(path: &Path) -> Result<Replayed, BadInput> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| BadInput(format!("{shown}: {e}")))?;
    if !meta.is_file() || meta.len() > RELEASE_JOURNAL_LIMIT {
        return Err(BadInput(format!("{shown}: not a release journal (not a regular file, or over 64 MiB)")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| BadInput(format!("{shown}: {e}")))?;
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    let mut lines = text[..whole].lines();
    let header: Header =
        lines.next().ok_or_else(|| BadInput(format!("{shown}:1: empty: not a release journal"))).and_then(|l| {
            serde_json::from_str(l).map_err(|e| BadInput(format!("{shown}:1: not a release journal ({e})")))
        })?;
    let mut release = Release::new(header.spec.clone());
    let (mut last, mut records) = (None, 0);
    for (i, line) in lines.enumerate() {
        let record: Record = serde_json::from_str(line).map_err(|e| {
            BadInput(format!(
                "{shown}:{}: cannot read this record ({e}); nothing was done: repair it, or run again with --fresh",
                i + 2
            ))
        })?;
        if last.is_some_and(|l| record.at < l) {
            return Err(BadInput(format!(
                "{shown}:{}: time goes back ({} after {})",
                i + 2,
                record.at.0,
                last.unwrap_or_default().0
            )));
        }
        release = step(&release, record.event, record.at).0;
        last = Some(record.at);
        records += 1;
    }
    let cut = (whole < text.len()).then(|| text[..whole].lines().count() + 1);
    Ok(Replayed { header, release, last, records, cut, sound_len: whole as u64 })
}

/// `flightdeck journal verify` of a release journal: exit 0 with `ok (N
/// records; release NAME: phase at wave w/n)`, or the first problem at
/// `file:line`.
pub fn verify_journal(path: &Path) -> Result<(), BadInput> {
    let shown = path.display();
    let r = replay(path)?;
    if let Some(line) = r.cut {
        let note = "note: the last line was cut short by a crash mid-write; a resume drops it";
        let _ = writeln!(std::io::stderr(), "{shown}:{line}: {note}");
    }
    let (rel, waves) = (&r.release, r.release.spec.waves.len());
    let wave = (rel.wave + 1).min(waves);
    println!(
        "{shown}: ok ({} records; release {}: {} at wave {wave}/{waves})",
        r.records,
        rel.name(),
        rel.phase.label()
    );
    Ok(())
}

/// One command sent to a release, as `flightdeck audit` shows it.
#[derive(Debug, Serialize)]
pub struct Audited {
    pub at: Timestamp,
    pub release: String,
    pub actor: String,
    pub command: String,
    /// The wave (1-based) the sender saw live.
    pub wave: usize,
    pub accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl std::fmt::Display for Audited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answer = match &self.reason {
            Some(r) if !self.accepted => format!("REFUSED: {r}"),
            _ => "applied".into(),
        };
        let at = flightdeck_core::time::stamp(self.at);
        write!(f, "[{at:>7}] {}: {} by {}, saw wave {}: {answer}", self.release, self.command, self.actor, self.wave)
    }
}

/// `flightdeck audit RELEASE.toml`: every command its release's journal
/// holds, applied or refused (`None`: no journal yet).
pub fn audit(dir: &Path, path: &Path) -> Result<Option<Vec<Audited>>, BadInput> {
    let (release, _) = read_file(path)?;
    let journal = journal_path(dir, &release.name, &release.file);
    if !journal.exists() {
        return Ok(None);
    }
    let r = replay(&journal)?;
    let shown = journal.display().to_string();
    let text = std::fs::read_to_string(&journal).map_err(|e| BadInput(format!("{shown}: {e}")))?;
    let mut state = Release::new(r.header.spec.clone());
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let Ok(record) = serde_json::from_str::<Record>(line) else { break };
        let (next, effects) = step(&state, record.event.clone(), record.at);
        if let ReleaseEvent::Command(req) = &record.event {
            let reason = effects.iter().find_map(|e| match e {
                ReleaseEffect::Notify(ReleaseNotice::Rejected { refusal, .. }) => Some(refusal.to_string()),
                _ => None,
            });
            out.push(Audited {
                at: record.at,
                release: id_of(state.name()),
                actor: req.actor.to_string(),
                command: req.command.verb().into(),
                wave: req.expected_wave + 1,
                accepted: reason.is_none(),
                reason,
            });
        }
        state = next;
    }
    Ok(Some(out))
}

/// True when the first line of `path` is a release journal's header.
pub fn is_release_journal(path: &Path) -> bool {
    let Ok(file) = File::open(path) else { return false };
    let mut first = String::new();
    BufReader::new(file).take(RELEASE_JOURNAL_LIMIT).read_line(&mut first).is_ok()
        && serde_json::from_str::<Header>(&first).is_ok()
}

// ---- the driver --------------------------------------------------------------

/// Where the driver leaves the release for whoever reports on the run.
pub type Outcome = Arc<Mutex<Option<Release>>>;

/// The engine driver that runs `run`'s release; `outcome` holds its latest state.
pub fn driver(run: &ReleaseRun, opened: Opened, outcome: Outcome) -> Driver {
    let id = run.id();
    let held: Vec<String> = run.spec.rollouts().map(str::to_owned).collect();
    *outcome.lock().expect("outcome lock") = Some(opened.release.clone());
    let task = ReleaseTask {
        id: id.clone(),
        release: opened.release,
        journal: opened.journal,
        resumed_at: opened.resumed_at,
        outcome,
        last_at: opened.resumed_at.unwrap_or_default(),
        halted: None,
    };
    Driver { id, held, run: Box::new(move |parts| Box::pin(task.run(parts))) }
}

struct ReleaseTask {
    id: String,
    release: Release,
    journal: Option<ReleaseJournal>,
    resumed_at: Option<Timestamp>,
    outcome: Outcome,
    last_at: Timestamp,
    /// The journal cannot be written: the release acts no more.
    halted: Option<String>,
}

impl ReleaseTask {
    async fn run(mut self, mut p: DriverParts) {
        self.publish(&p);
        let now = p.clock.now();
        if self.resumed_at.is_some() {
            let waves = self.release.spec.waves.len();
            let message = format!(
                "resumed: {} (wave {} of {waves})",
                self.release.phase.label(),
                (self.release.wave + 1).min(waves)
            );
            self.say(&p, "info", message, now).await;
            let effects = self.release.reconcile();
            self.carry_out(&p, effects, now).await;
        } else {
            self.feed(&p, ReleaseEvent::Start, now).await;
        }
        loop {
            // What the rollouts did since the last look.
            let rollouts: Vec<(String, MemberState)> = p
                .snapshots
                .borrow_and_update()
                .rollouts
                .iter()
                .filter(|r| self.release.states.contains_key(&r.id))
                .map(|r| (r.id.clone(), MemberState::of(&r.phase)))
                .collect();
            for (rollout, state) in rollouts {
                if *self.release.state(&rollout) != state {
                    let now = p.clock.now();
                    self.feed(&p, ReleaseEvent::Rollout { rollout, state }, now).await;
                }
            }
            if self.release.phase.is_finished() && p.stop_when.unattended().is_some() || self.halted.is_some() {
                break;
            }
            let nobody_came = self.unattended_deadline(&p, now);
            if nobody_came.is_some_and(|at| at <= p.clock.now()) {
                self.let_go(&p).await;
                break;
            }
            let due = match (self.release.next_tick_at(), nobody_came) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                changed = p.snapshots.changed() => if changed.is_err() { break },
                _ = sleep_until(p.clock, due) => {
                    let now = p.clock.now();
                    self.feed(&p, ReleaseEvent::Tick, now).await;
                }
                order = p.commands.recv() => match order {
                    Some(order) => {
                        let (request, origin, reply) = *order;
                        let answer = self.command(&p, request, origin.role).await;
                        let _ = reply.send(answer);
                    }
                    None => std::future::pending::<()>().await,
                },
            }
        }
        // Nothing drives the release from here on (finished, given up on, or
        // its journal cannot be written): a rollout it never started must
        // not wait for it for ever.
        for id in self.release.spec.rollouts() {
            if !self.release.started.contains(id) {
                p.handle.hold(id, Hold::Never);
            }
        }
    }

    /// Headless: when the unattended policy gives up on a release that
    /// waits for a human (an approval, a pause): the wait after it began,
    /// counted from this run's start at the earliest.
    fn unattended_deadline(&self, p: &DriverParts, started: Timestamp) -> Option<Timestamp> {
        let policy = p.stop_when.unattended()?;
        let since = match self.release.phase {
            ReleasePhase::AwaitingApproval { since } | ReleasePhase::Paused { since, .. } => since,
            _ => return None,
        };
        Some(since.max(started).plus(policy.wait))
    }

    /// Nobody came: this run stops driving the release. No later wave
    /// starts (the loop's end tells its rollouts they never will); the
    /// release's journal keeps where it is, so a run of the same file resumes it.
    async fn let_go(&mut self, p: &DriverParts) {
        let now = p.clock.now();
        let wait = p.stop_when.unattended().map_or(String::new(), |u| crate::engine::wait_text(u.wait));
        let message = format!(
            "nobody acted within {wait} while the release is {} ({}): unattended, no later wave starts; \
             run the same release again to resume it",
            self.release.phase.label(),
            self.release.waits_for(now)
        );
        self.say(p, "warning", message, now).await;
    }

    async fn command(&mut self, p: &DriverParts, request: CommandRequest, role: crate::protocol::Role) -> Reply {
        let command = match request.command {
            Command::Pause { reason } => ReleaseCommand::Pause { reason },
            Command::Resume => ReleaseCommand::Resume,
            Command::Promote | Command::PromoteFull | Command::Approve => ReleaseCommand::Promote,
            Command::Abort { reason } | Command::Rollback { reason } => ReleaseCommand::Abort { reason },
            other => {
                return Reply::Rejected {
                    reason: format!("a release takes pause, resume, promote and abort, not {}", other.verb()),
                }
            }
        };
        let request = ReleaseRequest { actor: request.actor, command, expected_wave: request.expected_stage, role };
        let now = p.clock.now();
        match self.feed(p, ReleaseEvent::Command(request), now).await {
            Some(reason) => Reply::Rejected { reason },
            None => Reply::Ack,
        }
    }

    /// Steps the core with `event`, journals it, and carries out what it
    /// decides. Returns why a command was refused.
    async fn feed(&mut self, p: &DriverParts, event: ReleaseEvent, at: Timestamp) -> Option<String> {
        if let Some(why) = &self.halted {
            return Some(why.clone());
        }
        let at = at.max(self.last_at);
        self.last_at = at;
        let (next, effects) = step(&self.release, event.clone(), at);
        let refused = effects.iter().find_map(|e| match e {
            ReleaseEffect::Notify(ReleaseNotice::Rejected { refusal, .. }) => Some(refusal.to_string()),
            _ => None,
        });
        if next == self.release && effects.is_empty() {
            return None;
        }
        // Write-ahead: what the journal does not hold did not happen. A
        // refused command is kept too, for the audit trail (it changes nothing).
        if let Some(journal) = &mut self.journal {
            if let Err(e) = journal.append(at, &event) {
                let why = format!(
                    "release journal {} cannot be written ({e}); the release stopped: no wave starts until a run resumes it",
                    journal.path().display()
                );
                self.say(p, "warning", why.clone(), at).await;
                self.halted = Some(why.clone());
                return Some(why);
            }
        }
        let before = self.release.phase.label();
        self.release = next;
        *self.outcome.lock().expect("outcome lock") = Some(self.release.clone());
        self.publish(p);
        if before != self.release.phase.label() {
            let message =
                format!("release {} → {}: {}", before, self.release.phase.label(), self.release.waits_for(at));
            self.say(p, "info", message, at).await;
        }
        self.carry_out(p, effects, at).await;
        refused
    }

    async fn carry_out(&mut self, p: &DriverParts, effects: Vec<ReleaseEffect>, at: Timestamp) {
        for effect in effects {
            match effect {
                ReleaseEffect::Start { rollout } => {
                    p.handle.hold(&rollout, Hold::Go);
                }
                ReleaseEffect::Cancel { rollout } => {
                    if p.handle.hold(&rollout, Hold::Never) {
                        let message = format!("{rollout} never starts: {}", self.release.waits_for(at));
                        self.say(p, "warning", message, at).await;
                    }
                }
                ReleaseEffect::Rollback { rollout, reason } => {
                    let seen = p.snapshots.borrow().rollouts.iter().find(|r| r.id == rollout).cloned();
                    let Some(seen) = seen else { continue };
                    let request = CommandRequest {
                        rollout: rollout.clone(),
                        actor: Actor::new("release"),
                        command: Command::Rollback { reason: Some(reason) },
                        expected_stage: seen.stage,
                        expected_revision: seen.canary_revision.clone(),
                        expected_step: None,
                    };
                    if let Reply::Rejected { reason } = p.handle.submit(request).await {
                        self.say(p, "warning", format!("rollback of {rollout} refused: {reason}"), at).await;
                    }
                }
                ReleaseEffect::Notify(notice) => {
                    let level = if matches!(notice, ReleaseNotice::Info { .. }) { "info" } else { "warning" };
                    self.say(p, level, notice.to_string(), at).await;
                }
            }
        }
    }

    /// The release's state in the snapshot viewers draw (replacing its last).
    fn publish(&self, p: &DriverParts) {
        let release = Arc::new(self.release.clone());
        p.publish.send_modify(|s| match s.releases.iter_mut().find(|r| r.spec.name == release.spec.name) {
            Some(slot) => *slot = release,
            None => s.releases.push(release),
        });
    }

    async fn say(&self, p: &DriverParts, level: &str, message: String, at: Timestamp) {
        let out = Output::Notice { rollout: self.id.clone(), at, level: level.into(), message };
        let _ = p.sink.send(out).await;
    }
}

async fn sleep_until(clock: crate::clock::Clock, due: Option<Timestamp>) {
    match due {
        Some(due) => tokio::time::sleep(clock.real_time_until(due)).await,
        None => std::future::pending().await,
    }
}

/// The drivers a run needs (none without a release) and where the
/// release's state is left for the run's last words. The release journal
/// is opened here, before anything starts: a refusal stops the run first.
pub fn drivers(
    release: Option<&ReleaseRun>,
    options: &crate::engine::EngineOptions,
) -> Result<(Vec<Driver>, Outcome), BadInput> {
    let outcome = Outcome::default();
    let Some(run) = release else { return Ok((Vec::new(), outcome)) };
    let opened = match &options.journal_dir {
        Some(dir) => ReleaseJournal::open(dir, run, options.fresh)?,
        None => Opened { journal: None, release: Release::new(run.spec.clone()), resumed_at: None },
    };
    Ok((vec![driver(run, opened, outcome.clone())], outcome))
}

/// The one release among the files `run` was given, if one is: a release
/// runs alone (its plans are named in it).
pub fn only_release(paths: &[PathBuf]) -> Result<Option<&Path>, BadInput> {
    let releases: Vec<&PathBuf> = paths.iter().filter(|p| is_release(p)).collect();
    match (releases.as_slice(), paths.len()) {
        ([], _) => Ok(None),
        ([one], 1) => Ok(Some(one.as_path())),
        _ => Err(BadInput(format!(
            "{}: a release runs alone: name its plans in its [[waves.rollouts]], not beside it on the command line",
            releases[0].display()
        ))),
    }
}

// ---- how a run ends ------------------------------------------------------------

/// The exit code of a headless release run, and its last words on stderr:
/// the release's end (halted: which rollout, in which region, why; which
/// rollouts never started), then each started rollout as `summarise` says.
pub fn summarise(release: Option<&Release>, snapshot: &Snapshot) -> u8 {
    use crate::headless::{EXIT_OTHER, EXIT_PROMOTED, EXIT_ROLLED_BACK};
    let Some(release) = release else { return crate::headless::summarise(snapshot) };
    let started = Snapshot {
        rollouts: snapshot.rollouts.iter().filter(|r| r.phase != Phase::Pending).cloned().collect(),
        ..snapshot.clone()
    };
    let rollouts = crate::headless::summarise(&started);
    let never: Vec<&str> = release.spec.rollouts().filter(|id| !release.started.contains(*id)).collect();
    let name = release.name();
    let code = match &release.phase {
        ReleasePhase::Promoted { .. } => {
            let _ = writeln!(std::io::stderr(), "release {name}: promoted, every wave, every region");
            EXIT_PROMOTED
        }
        ReleasePhase::Halted { rollout, region, reason, .. } => {
            let wave = &release.spec.waves[release.wave.min(release.spec.waves.len() - 1)];
            let _ = writeln!(
                std::io::stderr(),
                "release {name}: halted at wave {} ({}): {rollout} in region {region} {reason}",
                release.wave + 1,
                wave.name
            );
            EXIT_ROLLED_BACK
        }
        ReleasePhase::Aborted { by, reason, .. } => {
            let _ = writeln!(std::io::stderr(), "release {name}: aborted by {by}: {reason}");
            EXIT_ROLLED_BACK
        }
        other => {
            let _ =
                writeln!(std::io::stderr(), "release {name}: {} — {}", other.label(), release.waits_for(snapshot.at));
            EXIT_OTHER
        }
    };
    if !never.is_empty() {
        let _ = writeln!(std::io::stderr(), "  never started: {}", never.join(", "));
    }
    code.max(rollouts)
}

#[cfg(test)]
mod tests {
    use super::in_region;
    use flightdeck_core::Plan;

    const PLAN: &str = "[rollout]\nname = \"checkout\"\nstable = \"v1\"\ncanary = \"v2\"\n";

    #[test]
    fn a_region_sets_the_plans_target_group_and_nothing_else() {
        let with_group = format!("{PLAN}\n[target]\nbackend = \"sim\"\ngroup = \"us-east-1\"\nscenario = \"healthy\"\n\n[strategy]\nkind = \"canary\"\n");
        let eu = in_region(&with_group, "eu-west-1");
        let plan = Plan::parse("p.toml", &eu).unwrap();
        assert_eq!(plan.target.group, "eu-west-1");
        assert_eq!(plan.target.params.get("scenario").map(String::as_str), Some("healthy"));
        assert_eq!(eu.matches("group =").count(), 1, "{eu}");
        // No group line: one is added to [target], before the next table.
        let without = with_group.replace("group = \"us-east-1\"\n", "");
        let plan = Plan::parse("p.toml", &in_region(&without, "ap-southeast-1")).unwrap();
        assert_eq!(plan.target.group, "ap-southeast-1");
        assert_eq!(plan.strategy_name(), "canary");
        // No [target] at all: one is added.
        let plan = Plan::parse("p.toml", &in_region(PLAN, "us-west-2")).unwrap();
        assert_eq!(plan.target.group, "us-west-2");
        // A `stage_group`-like key or a group in another table is left alone.
        let other = format!("{PLAN}\n[metrics]\ngroup_by = \"x\"\n");
        assert!(in_region(&other, "eu").contains("group_by = \"x\""));
    }
}
