//! `/metrics`: the engine's state in the Prometheus text exposition format
//! (version 0.0.4), written by hand: a handful of gauges read from the
//! latest snapshot at scrape time, and counters kept from the engine's
//! events as they pass ([`Counters`]).
//!
//! Counters start at zero when the process starts (as every Prometheus
//! counter does; `rate` and `increase` handle the reset): the events of
//! resumed runs, restored from their journals, are not counted again.

use crate::protocol::Output;
use flightdeck_core::rollout::{Phase, Rollout};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every phase, as the `phase` label writes it: each is exposed, zero or not,
/// so a query for one that is empty finds 0 rather than nothing.
pub const PHASES: [&str; 8] =
    ["pending", "progressing", "paused", "awaiting_approval", "promoted", "aborted", "rolled_back", "failed"];

/// The `phase` label of a phase (`rolled_back`, `awaiting_approval`).
pub fn phase_label(phase: &Phase) -> &'static str {
    match phase {
        Phase::Pending => PHASES[0],
        Phase::Progressing { .. } => PHASES[1],
        Phase::Paused { .. } => PHASES[2],
        Phase::AwaitingApproval { .. } => PHASES[3],
        Phase::Promoted { .. } => PHASES[4],
        Phase::Aborted { .. } => PHASES[5],
        Phase::RolledBack { .. } => PHASES[6],
        Phase::Failed { .. } => PHASES[7],
    }
}

/// What the events have said since the process started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Per (rollout, verdict): `pass`, `fail`, `inconclusive`.
    pub verdicts: BTreeMap<(String, String), u64>,
    /// Per (rollout, who): `analysis`, `backend`, or the operator's name.
    pub rollbacks: BTreeMap<(String, String), u64>,
    /// Per rollout: effects that failed after every attempt.
    pub effect_failures: BTreeMap<String, u64>,
    /// Events this follower fell too far behind to see (it never slows the engine).
    pub skipped_events: u64,
    /// Per (sink, result): `sent`, `failed`, `dropped` (its queue was full).
    pub notifications: BTreeMap<(String, String), u64>,
}

impl Counters {
    /// Counts what `out` says (a rollback is counted by [`Counters::rollback`],
    /// whose caller knows who did it).
    pub fn observe(&mut self, out: &Output) {
        match out {
            Output::Verdict { rollout, verdict, .. } => {
                *self.verdicts.entry((rollout.clone(), verdict.label().to_string())).or_default() += 1;
            }
            Output::Effect { rollout, ok: false, .. } => {
                *self.effect_failures.entry(rollout.clone()).or_default() += 1;
            }
            _ => {}
        }
    }

    pub fn rollback(&mut self, rollout: &str, by: &str) {
        *self.rollbacks.entry((rollout.to_string(), by.to_string())).or_default() += 1;
    }

    pub fn notification(&mut self, sink: &str, result: &str) {
        *self.notifications.entry((sink.to_string(), result.to_string())).or_default() += 1;
    }
}

/// A label value as the exposition format writes it inside quotes:
/// backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition: gauges from `rollouts` (the latest snapshot) and
/// `attached`, counters from `counters`.
pub fn render(counters: &Counters, rollouts: &[Arc<Rollout>], attached: usize) -> String {
    let mut out = String::new();
    let e = escape_label;

    family(&mut out, "flightdeck_rollouts", "gauge", "Rollouts by phase.");
    for phase in PHASES {
        let n = rollouts.iter().filter(|r| phase_label(&r.phase) == phase).count();
        let _ = writeln!(out, "flightdeck_rollouts{{phase=\"{phase}\"}} {n}");
    }

    family(
        &mut out,
        "flightdeck_rollout_stage",
        "gauge",
        "The stage a rollout is at, 1-based, as the cockpit shows it.",
    );
    for r in rollouts {
        let _ = writeln!(out, "flightdeck_rollout_stage{{rollout=\"{}\"}} {}", e(&r.id), r.stage + 1);
    }
    family(&mut out, "flightdeck_rollout_stages", "gauge", "How many stages a rollout has.");
    for r in rollouts {
        let _ = writeln!(out, "flightdeck_rollout_stages{{rollout=\"{}\"}} {}", e(&r.id), r.stages().len());
    }
    family(
        &mut out,
        "flightdeck_rollout_canary_weight_percent",
        "gauge",
        "The canary weight flightdeck has asked for, percent.",
    );
    for r in rollouts {
        let _ =
            writeln!(out, "flightdeck_rollout_canary_weight_percent{{rollout=\"{}\"}} {}", e(&r.id), r.canary_weight);
    }

    family(&mut out, "flightdeck_verdicts_total", "counter", "Analysis verdicts since the process started.");
    for ((rollout, verdict), n) in &counters.verdicts {
        let _ = writeln!(out, "flightdeck_verdicts_total{{rollout=\"{}\",verdict=\"{}\"}} {n}", e(rollout), e(verdict));
    }
    family(&mut out, "flightdeck_rollbacks_total", "counter", "Rollbacks since the process started, by who did them.");
    for ((rollout, by), n) in &counters.rollbacks {
        let _ = writeln!(out, "flightdeck_rollbacks_total{{rollout=\"{}\",by=\"{}\"}} {n}", e(rollout), e(by));
    }
    family(
        &mut out,
        "flightdeck_effect_failures_total",
        "counter",
        "Effects the backend failed to apply after every attempt.",
    );
    for r in rollouts {
        let n = counters.effect_failures.get(&r.id).copied().unwrap_or(0);
        let _ = writeln!(out, "flightdeck_effect_failures_total{{rollout=\"{}\"}} {n}", e(&r.id));
    }

    family(&mut out, "flightdeck_attached_clients", "gauge", "Cockpits attached (socket and SSH).");
    let _ = writeln!(out, "flightdeck_attached_clients {attached}");

    family(
        &mut out,
        "flightdeck_events_skipped_total",
        "counter",
        "Engine events the metrics and notifications fell too far behind to see.",
    );
    let _ = writeln!(out, "flightdeck_events_skipped_total {}", counters.skipped_events);

    family(&mut out, "flightdeck_notifications_total", "counter", "Notifications by sink and result.");
    for ((sink, result), n) in &counters.notifications {
        let _ = writeln!(out, "flightdeck_notifications_total{{sink=\"{}\",result=\"{}\"}} {n}", e(sink), e(result));
    }
    out
}

/// `serve --leader-elect`: the Lease `lease` as this replica last read or
/// wrote it (`seen`), and whether this replica leads (its term holds now).
#[cfg(feature = "k8s")]
pub fn render_lease(out: &mut String, lease: &str, seen: &super::lease::Seen, leading: bool) {
    let lease = escape_label(lease);
    family(out, "flightdeck_lease_holder", "gauge", "The Lease's holder as this replica last saw it (1).");
    if !seen.holder.is_empty() {
        let holder = escape_label(&seen.holder);
        let _ = writeln!(out, "flightdeck_lease_holder{{lease=\"{lease}\",holder=\"{holder}\"}} 1");
    }
    family(out, "flightdeck_lease_transitions", "gauge", "The Lease's leaseTransitions as this replica last saw it.");
    let _ = writeln!(out, "flightdeck_lease_transitions{{lease=\"{lease}\"}} {}", seen.transitions);
    family(out, "flightdeck_lease_is_leader", "gauge", "1 while this replica holds the Lease and may act, else 0.");
    let _ = writeln!(out, "flightdeck_lease_is_leader{{lease=\"{lease}\"}} {}", u8::from(leading));
    family(
        out,
        "flightdeck_lease_renew_age_seconds",
        "gauge",
        "Seconds since the Lease record last changed as this replica saw it (the holder's last renewal).",
    );
    if let Some(renewed) = seen.renewed {
        let age = renewed.elapsed().as_secs_f64();
        let _ = writeln!(out, "flightdeck_lease_renew_age_seconds{{lease=\"{lease}\"}} {age:.3}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("one\ntwo"), "one\\ntwo");
        assert_eq!(escape_label("sim-eu-1/checkout-api"), "sim-eu-1/checkout-api");
    }

    #[test]
    fn every_phase_is_exposed_and_counters_carry_their_labels() {
        let mut c = Counters::default();
        c.rollback("a\"b", "alice");
        c.notification("slack", "sent");
        let text = render(&c, &[], 2);
        for phase in PHASES {
            assert!(text.contains(&format!("flightdeck_rollouts{{phase=\"{phase}\"}} 0\n")), "{text}");
        }
        assert!(text.contains("flightdeck_rollbacks_total{rollout=\"a\\\"b\",by=\"alice\"} 1\n"), "{text}");
        assert!(text.contains("flightdeck_attached_clients 2\n"), "{text}");
        assert!(text.contains("flightdeck_notifications_total{sink=\"slack\",result=\"sent\"} 1\n"), "{text}");
        // Every sample line belongs to a family announced before it.
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.iter().any(|t| t == name), "{name} has no # TYPE before it");
            }
        }
    }
}
