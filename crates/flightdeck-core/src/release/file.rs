//! Release files: waves of rollouts, read with the one TOML reader
//! ([`crate::toml_file`]), every error at `file:line:column: field: message`.
//!
//! ```toml
//! [release]
//! name = "checkout-2.4"
//! on_failure = "rollback-wave"   # or "halt" (the default)
//!
//! [[waves]]
//! name = "canary region"
//! bake = "30m"                   # promoted everywhere this long before the next wave
//!
//! [[waves.rollouts]]
//! plan = "plans/checkout.toml"   # relative to the release file
//! regions = ["us-east-1"]        # the plan once per region (its target group)
//!
//! [[waves]]
//! name = "europe"
//! approval = true                # a captain promotes before it starts
//! [[waves.rollouts]]
//! plan = "plans/checkout.toml"
//! regions = ["eu-west-1", "eu-central-1"]
//! ```
//!
//! Reading the plans a release names is the caller's (the core does no
//! I/O): [`ReleaseFile::spec`] takes the rollouts each entry became and
//! refuses one named twice, at the line of the second.

use super::{Member, ReleaseSpec, Wave};
use crate::toml_file::{TomlError, TomlFile};
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// At most a week between waves: a longer bake is a unit typo.
const MAX_BAKE: Duration = Duration::from_secs(7 * 24 * 3600);
const DURATION_HINT: &str = r#"write a duration with a unit, e.g. "0s", "30m" or "4h""#;

mod raw {
    use super::Spanned;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub release: Option<Spanned<Release>>,
        pub waves: Option<Spanned<Vec<Spanned<Wave>>>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Release {
        pub name: Option<Spanned<String>>,
        pub on_failure: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Wave {
        pub name: Option<Spanned<String>>,
        pub bake: Option<Spanned<String>>,
        pub approval: Option<Spanned<bool>>,
        pub rollouts: Option<Spanned<Vec<Spanned<Rollout>>>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rollout {
        pub plan: Option<Spanned<String>>,
        pub regions: Option<Spanned<Vec<Spanned<String>>>>,
    }
}

/// A release file, checked; plans not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    pub file: String,
    pub name: String,
    pub rollback_siblings: bool,
    pub waves: Vec<WaveFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveFile {
    pub name: String,
    pub bake: Duration,
    pub approval: bool,
    pub rollouts: Vec<RolloutRef>,
}

/// One `[[waves.rollouts]]` entry: a plan, once or once per region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRef {
    /// The plan's path as written (relative to the release file).
    pub plan: String,
    /// Target groups to run the plan in; empty: the plan's own.
    pub regions: Vec<String>,
    /// Where the entry's `plan` is written, and its field path, for errors
    /// about the plan it names.
    pub line: usize,
    pub column: usize,
    pub field: String,
}

impl RolloutRef {
    /// An error about this entry (its plan cannot be read, a rollout twice).
    pub fn error(&self, file: &str, message: impl Into<String>) -> TomlError {
        TomlError {
            file: file.to_owned(),
            line: self.line,
            column: self.column,
            field: self.field.clone(),
            message: message.into(),
        }
    }
}

impl ReleaseFile {
    /// Parses and checks a release file. `file` is only used in messages.
    pub fn parse(file: &str, text: &str) -> Result<ReleaseFile, TomlError> {
        let toml = TomlFile::parse(file, text, "release")?;
        let raw: raw::File = toml.deserialize()?;
        let at = |span: Range<usize>, field: &str, message: String| toml.error(Some(&span), field, message);
        let Some(release) = raw.release else {
            return Err(toml.error(None, "release", "missing [release] with a name"));
        };
        let release_span = release.span();
        let release = release.into_inner();
        let name = match release.name {
            Some(n) if !n.get_ref().trim().is_empty() => n.into_inner().trim().to_owned(),
            Some(n) => return Err(at(n.span(), "release.name", "must not be empty".into())),
            None => return Err(at(release_span, "release.name", "missing: the release's name".into())),
        };
        let rollback_siblings = match release.on_failure {
            None => false,
            Some(p) => match p.get_ref().as_str() {
                "halt" => false,
                "rollback-wave" => true,
                other => {
                    return Err(at(
                        p.span(),
                        "release.on_failure",
                        format!("unknown policy {other:?}; allowed: \"halt\", \"rollback-wave\""),
                    ))
                }
            },
        };
        let Some(raw_waves) = raw.waves else {
            return Err(toml.error(None, "waves", "no [[waves]]: a release needs at least one wave of rollouts"));
        };
        let waves_span = raw_waves.span();
        let raw_waves = raw_waves.into_inner();
        if raw_waves.is_empty() {
            return Err(at(waves_span, "waves", "no waves: a release needs at least one".into()));
        }
        let mut waves = Vec::new();
        for (i, wave) in raw_waves.into_iter().enumerate() {
            let field = |f: &str| format!("waves[{i}].{f}");
            let wave_span = wave.span();
            let wave = wave.into_inner();
            let name = match wave.name {
                Some(n) if n.get_ref().trim().is_empty() => {
                    return Err(at(n.span(), &field("name"), "must not be empty".into()))
                }
                Some(n) => n.into_inner().trim().to_owned(),
                None => format!("wave {}", i + 1),
            };
            let bake = match wave.bake {
                None => Duration::ZERO,
                Some(b) => {
                    let text = b.get_ref().trim();
                    if text.starts_with('-') {
                        return Err(at(b.span(), &field("bake"), format!("{text:?} is negative; {DURATION_HINT}")));
                    }
                    let d = humantime::parse_duration(text).map_err(|e| {
                        at(
                            b.span(),
                            &field("bake"),
                            format!("cannot read {text:?} as a duration ({e}); {DURATION_HINT}"),
                        )
                    })?;
                    if d > MAX_BAKE {
                        return Err(at(b.span(), &field("bake"), format!("{text:?} is too long; allowed: at most 7d")));
                    }
                    d
                }
            };
            let approval = wave.approval.map(Spanned::into_inner).unwrap_or(false);
            let Some(raw_rollouts) = wave.rollouts else {
                return Err(at(
                    wave_span,
                    &field("rollouts"),
                    "missing: a wave needs at least one [[waves.rollouts]]".into(),
                ));
            };
            let rollouts_span = raw_rollouts.span();
            let raw_rollouts = raw_rollouts.into_inner();
            if raw_rollouts.is_empty() {
                return Err(at(rollouts_span, &field("rollouts"), "empty: a wave needs at least one rollout".into()));
            }
            let mut rollouts = Vec::new();
            for (j, r) in raw_rollouts.into_iter().enumerate() {
                let rfield = |f: &str| format!("waves[{i}].rollouts[{j}].{f}");
                let r_span = r.span();
                let r = r.into_inner();
                let Some(plan) = r.plan else {
                    return Err(at(r_span, &rfield("plan"), "missing: the plan file this rollout runs".into()));
                };
                if plan.get_ref().trim().is_empty() {
                    return Err(at(plan.span(), &rfield("plan"), "must not be empty".into()));
                }
                let mut regions: Vec<String> = Vec::new();
                if let Some(list) = r.regions {
                    let list_span = list.span();
                    let list = list.into_inner();
                    if list.is_empty() {
                        return Err(at(
                            list_span,
                            &rfield("regions"),
                            "empty: leave it out to use the plan's own target group".into(),
                        ));
                    }
                    for (k, region) in list.into_iter().enumerate() {
                        let name = region.get_ref().trim();
                        let ok = !name.is_empty()
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                        if !ok {
                            return Err(at(
                                region.span(),
                                &format!("waves[{i}].rollouts[{j}].regions[{k}]"),
                                format!("{name:?} is not a region name: use letters, digits, '-', '_' or '.'"),
                            ));
                        }
                        if regions.iter().any(|r| r == name) {
                            return Err(at(
                                region.span(),
                                &format!("waves[{i}].rollouts[{j}].regions[{k}]"),
                                format!("{name:?} is named twice"),
                            ));
                        }
                        regions.push(name.to_owned());
                    }
                }
                let (line, column) = crate::toml_file::line_col(text, plan.span().start);
                rollouts.push(RolloutRef {
                    plan: plan.into_inner().trim().to_owned(),
                    regions,
                    line,
                    column,
                    field: rfield("plan"),
                });
            }
            waves.push(WaveFile { name, bake, approval, rollouts });
        }
        Ok(ReleaseFile { file: file.to_owned(), name, rollback_siblings, waves })
    }

    /// The release, once each entry's plan has become its rollouts:
    /// `members[w][r]` are the (rollout id, region) pairs of entry `r` of
    /// wave `w`. A rollout named twice is refused at the second entry.
    pub fn spec(&self, members: Vec<Vec<Vec<Member>>>) -> Result<ReleaseSpec, TomlError> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut waves = Vec::new();
        for (wave, entries) in self.waves.iter().zip(members) {
            let mut list = Vec::new();
            for (entry, found) in wave.rollouts.iter().zip(entries) {
                for m in found {
                    if let Some((_, line)) = seen.iter().find(|(id, _)| *id == m.rollout) {
                        return Err(entry.error(
                            &self.file,
                            format!(
                                "rollout {} is already in this release (line {line}): a rollout runs once per release",
                                m.rollout
                            ),
                        ));
                    }
                    seen.push((m.rollout.clone(), entry.line));
                    list.push(m);
                }
            }
            waves.push(Wave { name: wave.name.clone(), members: list, bake: wave.bake, approval: wave.approval });
        }
        Ok(ReleaseSpec { name: self.name.clone(), waves, rollback_siblings: self.rollback_siblings })
    }

    /// True when `text` looks like a release file (a `[release]` table),
    /// so `check` can tell releases from plans.
    pub fn is_release(text: &str) -> bool {
        TomlFile::parse("", text, "release").is_ok_and(|t| t.span_of(&["release"]).is_some())
            || text.lines().any(|l| l.trim() == "[release]")
    }
}
