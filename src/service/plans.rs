//! What `serve` runs, and reloading it: the plan files named on the
//! command line and every `*.toml` in `--plans-dir` (watched: a new file
//! starts a rollout, a changed directory reloads), re-read on SIGHUP.
//!
//! A reload is all or nothing. The config and every plan are read and
//! checked as a start checks them first; anything wrong is said with its
//! `file:line` and nothing changes. Only then does `serve` stop its
//! rollouts (their journals hold everything) and start again in place
//! (the same process, `exec`), resuming every rollout from its journal;
//! attached cockpits reconnect by themselves.
//!
//! A plan file removed while its rollout is mid-way is refused: the rollout
//! goes on from its journal (which holds its plan) until it finishes, and
//! its viewers are told why. A plan file changed while its rollout is
//! mid-way is refused too (the journal was written for the old plan): the
//! reload does not happen, and says so.

use crate::engine::journal::{self, Unfinished};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How often the plans directory is looked at.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a reload re-reads.
#[derive(Debug, Clone)]
pub struct Reload {
    /// Plan files named on the command line.
    pub files: Vec<PathBuf>,
    /// `--plans-dir`.
    pub dir: Option<PathBuf>,
    pub config_dir: PathBuf,
    pub journal_dir: PathBuf,
}

/// The `*.toml` files of a directory (names, sizes, modification times),
/// to tell that it changed. Hidden files are left out (a ConfigMap's
/// `..data` links, an editor's swap files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing(Vec<(PathBuf, u64, Option<SystemTime>)>);

/// The plan files in `dir`, sorted.
pub fn scan(dir: &Path) -> Result<Vec<PathBuf>, String> {
    Ok(listing(dir)?.0.into_iter().map(|(p, _, _)| p).collect())
}

/// [`Listing`] of `dir` (following links, as a ConfigMap mount needs).
pub fn listing(dir: &Path) -> Result<Listing, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_file() {
            files.push((path, meta.len(), meta.modified().ok()));
        }
    }
    files.sort();
    Ok(Listing(files))
}

impl Reload {
    /// Every plan file: those named, then the directory's; when neither is
    /// given, the config's `plans` (as `flightdeck` alone runs them).
    pub fn plan_files(&self) -> Result<Vec<PathBuf>, String> {
        if self.files.is_empty() && self.dir.is_none() {
            let config = crate::config::Config::load(&self.config_dir)?;
            if config.plans.is_empty() {
                let file = self.config_dir.join("config.toml");
                return Err(format!(
                    "no plans to serve: name plan files, give --plans-dir DIR, or list them as `plans = [...]` in {}",
                    file.display()
                ));
            }
            return Ok(config.plans);
        }
        let mut files = self.files.clone();
        if let Some(dir) = &self.dir {
            for path in scan(dir).map_err(|e| format!("--plans-dir: {e}"))? {
                if !files.iter().any(|f| same_file(f, &path)) {
                    files.push(path);
                }
            }
        }
        Ok(files)
    }

    /// The unfinished runs of plan files that were in the plans directory
    /// and are gone: they go on from their journals.
    pub fn removed_mid_way(&self, present: &[PathBuf]) -> Vec<Unfinished> {
        let Some(dir) = &self.dir else { return Vec::new() };
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        journal::unfinished(&self.journal_dir, |plan_file| {
            let path = Path::new(plan_file);
            let parent = path.parent().and_then(|p| std::fs::canonicalize(p).ok());
            parent.as_deref() == Some(dir.as_path()) && !path.exists() && !present.iter().any(|p| p == path)
        })
    }

    /// Reads the config and every plan as a start would, and checks that
    /// no plan changed under a rollout that is mid-way: `Ok` with how many
    /// plans, or every problem, one a line, each with its `file:line`.
    pub fn check(&self) -> Result<usize, String> {
        let mut problems = Vec::new();
        if let Err(e) = crate::config::Config::load(&self.config_dir) {
            problems.push(e);
        }
        let files = self.plan_files()?;
        let mut ids: Vec<(String, String)> = Vec::new();
        for path in &files {
            let shown = path.display().to_string();
            let plan = match crate::fleet::check(path, &self.config_dir) {
                Ok(plan) => plan,
                Err(e) => {
                    problems.push(e.0);
                    continue;
                }
            };
            let id = crate::fleet::rollout_id(&plan);
            if let Some((_, other)) = ids.iter().find(|(i, _)| *i == id) {
                problems.push(format!("{shown}: rollout.name: `{id}` is already run by {other}"));
            }
            ids.push((id, shown));
        }
        // A journal is resumed only for the plan it was written for.
        let mid_way = journal::unfinished(&self.journal_dir, |plan_file| {
            files.iter().any(|f| same_file(f, Path::new(plan_file)))
        });
        for run in mid_way {
            let Ok(text) = std::fs::read_to_string(&run.plan_file) else { continue };
            if text != run.plan_text {
                let r = &run.rollout;
                problems.push(format!(
                    "{}: changed while {} is mid-way ({} at stage {}/{}): refused; put the plan back, or \
                     finish or abort the rollout first",
                    run.plan_file,
                    r.id,
                    r.phase.label(),
                    r.stage.saturating_add(1),
                    r.stages().len()
                ));
            }
        }
        match problems.is_empty() {
            true => Ok(files.len()),
            false => Err(problems.join("\n")),
        }
    }
}

/// Why a removed plan's rollout goes on: for the log and its viewers.
pub fn removed_reason(run: &Unfinished) -> String {
    let r = &run.rollout;
    format!(
        "{}: removed while {} is mid-way ({} at stage {}/{}): refused; it goes on from its journal until it \
         finishes (abort or roll it back to end it sooner)",
        run.plan_file,
        r.id,
        r.phase.label(),
        r.stage.saturating_add(1),
        r.stages().len()
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_holds_plan_files_only_and_changes_with_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "x").unwrap();
        std::fs::write(dir.path().join(".a.toml.swp"), "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let before = listing(dir.path()).unwrap();
        assert_eq!(scan(dir.path()).unwrap(), [dir.path().join("a.toml")]);
        std::fs::write(dir.path().join("b.toml"), "y").unwrap();
        assert_ne!(listing(dir.path()).unwrap(), before);
        assert!(listing(&dir.path().join("missing")).unwrap_err().contains("missing"));
    }
}
