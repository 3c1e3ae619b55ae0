//! `flightdeck analyze FILE`: the verdict after each window, with its
//! evidence, decided exactly as the engine decides. For "why did it roll
//! back?": feed it a rollout's journal (every event is replayed through the
//! state machine, so the verdicts are the engine's own), or a file of
//! windows exported from a metrics source.
//!
//! A windows file is JSON lines (or one JSON array) of objects shaped like
//! the journal's metrics windows:
//!
//! ```json
//! {"window": "1m", "stage": 0,
//!  "stable": {"requests": 9000, "errors": 45, "p50_ms": 80, "p95_ms": 180, "p99_ms": 250},
//!  "canary": {"requests": 500, "errors": 30, "p99_ms": 262}}
//! ```
//!
//! `stage` is optional: when it changes, the canary's stage evidence starts
//! over, as it does when a rollout enters a new stage. A version may also
//! carry `latency` (our histogram, `[[bucket, count], …]`),
//! `latency_samples_ms`, or `buckets` (a metrics server's own:
//! `{"le_ms": [...], "at_or_below": [...], "total": N}`). Every field is
//! checked: an unknown one (`p99` for `p99_ms`), more errors than
//! requests, or a window of `0s` is refused with its line.

use crate::files::{TextError, NOT_UTF8};
use crate::fleet::BadInput;
use flightdeck_core::analysis::{Evidence, MetricsSample, Verdict, VersionWindow};
use flightdeck_core::plan::AnalysisConfig;
use flightdeck_core::rollout::{step, Event, Rollout};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::Path;

/// One window of a windows file, as written: every key known.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowText {
    #[serde(default)]
    stage: Option<usize>,
    #[serde(with = "flightdeck_core::time::humane")]
    window: std::time::Duration,
    #[serde(default)]
    stable: Option<VersionText>,
    #[serde(default)]
    canary: Option<VersionText>,
    #[serde(default)]
    missing: Option<String>,
}

/// One version's window as written; the same fields as the journal's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionText {
    requests: u64,
    errors: u64,
    #[serde(default)]
    p50_ms: Option<f64>,
    #[serde(default)]
    p95_ms: Option<f64>,
    #[serde(default)]
    p99_ms: Option<f64>,
    #[serde(default)]
    latency_samples_ms: Vec<f64>,
    #[serde(default)]
    latency: flightdeck_core::analysis::LatencyHistogram,
    #[serde(default)]
    buckets: Option<flightdeck_core::analysis::BucketCounts>,
}

impl VersionText {
    /// The window, or why its numbers cannot be one (`side`: "stable"/"canary").
    fn checked(self, side: &str) -> Result<VersionWindow, String> {
        if self.errors > self.requests {
            return Err(format!("{side}.errors: {} errors out of {} requests", self.errors, self.requests));
        }
        Ok(VersionWindow {
            requests: self.requests,
            errors: self.errors,
            p50_ms: self.p50_ms,
            p95_ms: self.p95_ms,
            p99_ms: self.p99_ms,
            latency_samples_ms: self.latency_samples_ms,
            latency: self.latency,
            buckets: self.buckets.map(Box::new),
        })
    }
}

impl WindowText {
    fn checked(self) -> Result<WindowLine, String> {
        if self.window.is_zero() {
            return Err("window: must be longer than 0s (e.g. \"1m\")".into());
        }
        let stable = self.stable.map(|v| v.checked("stable")).transpose()?;
        let canary = self.canary.map(|v| v.checked("canary")).transpose()?;
        let sample = MetricsSample { window: self.window, stable, canary, missing: self.missing };
        Ok(WindowLine { stage: self.stage, sample })
    }
}

/// One window of a windows file, checked.
#[derive(Debug)]
struct WindowLine {
    stage: Option<usize>,
    sample: MetricsSample,
}

/// One analysed window: where it was and what the evidence then said.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Analysed {
    pub window: usize,
    pub stage: usize,
    pub verdict: Verdict,
    /// What the rollout did because of it, for journals ("rolled back").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// Reads `path` (a journal or a windows file) and decides every window.
/// `config` applies to windows files; a journal carries its plan.
pub fn analyze(path: &Path, config: &AnalysisConfig) -> Result<Vec<Analysed>, BadInput> {
    let shown = path.display().to_string();
    // Bounded, regular files only (a link to /dev/zero is refused, not read):
    // as large as a journal may grow, whichever of the two it is.
    let text = crate::files::read_text_within(path, crate::engine::journal::JOURNAL_LIMIT).map_err(|e| match e {
        TextError::Io(e) => BadInput(format!("{shown}: cannot read: {e}")),
        TextError::NotUtf8 { line, column } => BadInput(format!("{shown}:{line}:{column}: {NOT_UTF8}")),
    })?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.contains("\"journal\"") && first.contains("\"plan\"") {
        return from_journal(&shown, &text);
    }
    Ok(from_windows(&read_windows(&shown, &text)?, config))
}

fn read_windows(shown: &str, text: &str) -> Result<Vec<WindowLine>, BadInput> {
    let at = |line: usize, column: usize, e: &serde_json::Error| {
        let message = e.to_string();
        // serde_json appends "at line L column C"; the position is ours to give.
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        BadInput(format!("{shown}:{line}:{column}: {message}"))
    };
    if text.trim_start().starts_with('[') {
        let written: Vec<WindowText> = serde_json::from_str(text).map_err(|e| at(e.line(), e.column(), &e))?;
        return written
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.checked().map_err(|why| BadInput(format!("{shown}: window {}: {why}", i + 1))))
            .collect();
    }
    let mut windows = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let written: WindowText = serde_json::from_str(line).map_err(|e| at(n + 1, e.column(), &e))?;
        windows.push(written.checked().map_err(|why| BadInput(format!("{shown}:{}: {why}", n + 1)))?);
    }
    if windows.is_empty() {
        return Err(BadInput(format!("{shown}: no windows (one JSON object per line, or a JSON array)")));
    }
    Ok(windows)
}

fn from_windows(windows: &[WindowLine], config: &AnalysisConfig) -> Vec<Analysed> {
    let mut evidence = Evidence::default();
    let mut stage = windows.first().and_then(|w| w.stage).unwrap_or(0);
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if let Some(next) = w.stage.filter(|s| *s != stage) {
                evidence.new_stage();
                stage = next;
            }
            let verdict = evidence.observe(config, &w.sample);
            Analysed { window: i + 1, stage, verdict, outcome: None }
        })
        .collect()
}

/// Replays a journal through the state machine: the verdicts are the ones
/// the engine reached, and what the rollout did after each is shown.
fn from_journal(shown: &str, text: &str) -> Result<Vec<Analysed>, BadInput> {
    #[derive(Deserialize)]
    struct Header {
        rollout: String,
        plan_file: String,
        plan: String,
    }
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or_else(|| BadInput(format!("{shown}: empty journal")))?;
    let header: Header =
        serde_json::from_str(first).map_err(|e| BadInput(format!("{shown}:1: bad journal header: {e}")))?;
    let plan = flightdeck_core::plan::Plan::parse(&header.plan_file, &header.plan)
        .map_err(|e| BadInput(format!("{shown}:1: the journal's plan: {e}")))?;
    let mut rollout = Rollout::new(header.rollout, plan);
    let mut out = Vec::new();
    for (n, line) in lines {
        let record = match crate::engine::journal::parse_record(line) {
            Ok(r) => r,
            // A cut last line (the process died mid-write) is skipped, as on resume.
            Err(_) if !text.ends_with('\n') && text.trim_end().ends_with(line.trim_end()) => break,
            Err(e) => return Err(BadInput(format!("{shown}:{}: {e}", n + 1))),
        };
        let is_window = matches!(record.event, Event::Metrics(_));
        let stage = rollout.stage;
        let before = rollout.phase.label();
        rollout = step(&rollout, record.event, record.at).0;
        if let (true, Some(verdict)) = (is_window, rollout.last_verdict.clone()) {
            let after = rollout.phase.label();
            let outcome = (after != before).then(|| after.to_string());
            out.push(Analysed { window: out.len() + 1, stage, verdict, outcome });
        }
    }
    Ok(out)
}

/// The report in words: one block per window.
pub fn render(analysed: &[Analysed]) -> String {
    let mut out = String::new();
    for a in analysed {
        let v = &a.verdict;
        let _ = write!(out, "window {} (stage {}): {}", a.window, a.stage + 1, v.label());
        if let Some(outcome) = &a.outcome {
            let _ = write!(out, " → {outcome}");
        }
        out.push('\n');
        for c in v.checks().iter().filter(|c| !c.is_informational()) {
            let evidence = match (c.toward_pass, c.toward_fail) {
                (_, Some(f)) if f >= 1.0 => " [evidence: shown worse than the limit]".to_string(),
                (Some(p), _) if p >= 1.0 => " [evidence: shown within the limit]".to_string(),
                (Some(p), Some(f)) => format!(
                    " [evidence so far: {:.0} % of what a pass needs, {:.0} % of what a fail needs]",
                    (p * 100.0).min(99.0),
                    (f * 100.0).min(99.0)
                ),
                _ => String::new(),
            };
            let _ = writeln!(out, "  {:<10} {:?}{evidence}: {}", c.metric.label(), c.outcome, c.reason);
        }
        if let Some(c) = v.checks().iter().find(|c| c.interval.is_some()) {
            let (lo, hi) = c.interval.unwrap_or_default();
            let _ = write!(out, "  error-rate difference in [{lo:+.2}, {hi:+.2}] pp");
            if let Some(limit) = c.threshold {
                // The interval is the test: say what each end must do.
                let _ = write!(out, " (a fail needs the low end above {limit:+.2}, a pass the high end below it)");
            }
            out.push('\n');
        }
        if let Some(estimate) = v.estimate_text() {
            let _ = writeln!(out, "  {estimate}");
        }
        if v.is_missing_metrics() || matches!(v, Verdict::Inconclusive { .. }) && v.checks().is_empty() {
            let _ = writeln!(out, "  {}", v.summary());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::analysis::Metric;

    /// The printed interval is the test: a failing window's interval lies
    /// entirely past the margin, and the words say what each end must do.
    #[test]
    fn a_fail_is_printed_with_an_interval_past_the_margin_and_what_each_end_must_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("windows.jsonl");
        let stable = r#"{"requests": 9500, "errors": 47}"#;
        let canary = r#"{"requests": 500, "errors": 40}"#;
        let line = format!(r#"{{"window": "1m", "stage": 0, "stable": {stable}, "canary": {canary}}}"#);
        std::fs::write(&file, format!("{line}\n{line}\n{line}\n")).unwrap();
        let analysed = analyze(&file, &AnalysisConfig::default()).unwrap();
        // Windows are the error margin's units: it decides from the third.
        assert_eq!(analysed[1].verdict.label(), "inconclusive");
        let verdict = &analysed[2].verdict;
        assert_eq!(verdict.label(), "fail", "8 % against 0.5 % on 500 requests");
        let row = verdict.checks().iter().find(|c| c.metric == Metric::ErrorRate).unwrap();
        let (lo, _) = row.interval.unwrap();
        assert!(lo > 1.0, "a fail beside an interval reaching {lo:+.2} pp");
        let text = render(&analysed);
        assert!(
            text.contains(&format!("error-rate difference in [{lo:+.2}, "))
                && text.contains("(a fail needs the low end above +1.00, a pass the high end below it)"),
            "{text}"
        );
    }
}
