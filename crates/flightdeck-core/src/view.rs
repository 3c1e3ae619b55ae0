//! What the cockpit says about a rollout, in words: its state, the next
//! gate, what happens next and when it reaches 100 %. These read the same
//! rules the state machine acts on (its gates, its bake), so the cockpit
//! renders them and keeps no copy of a rule.

use crate::budget::DeployPolicy;
use crate::plan::BackendKind;
use crate::rollout::{Gate, PausedFrom, Phase, Rollout};
use crate::time::{countdown, Timestamp};
use std::time::Duration;

/// The state in words: a gate the frozen budget put up is a budget freeze,
/// not a wait for approval.
pub fn state_label(r: &Rollout) -> String {
    match &r.phase {
        Phase::AwaitingApproval { gate: Gate::Freeze, .. } => "budget freeze".into(),
        other => other.label().into(),
    }
}

/// The error budget's numbers: "10.0 % of the error budget left (259 s)".
pub fn budget_numbers(r: &Rollout) -> String {
    match r.budget {
        Some(b) if b.unknown => "error budget unknown (no valid availability reading)".into(),
        Some(b) => format!("{:.1} % of the error budget left ({:.0} s)", b.remaining_pct, b.remaining_s),
        None => "no error budget reading".into(),
    }
}

/// The next gate a human must pass: its stage and how long until the
/// rollout gets there (`None` when it waits there now). The same gates as
/// the state machine's `gate_for`: a frozen budget (not overridden) and a
/// budget needing approval gate every promotion; otherwise the plan's.
pub fn next_gate(r: &Rollout, now: Timestamp) -> Option<(usize, Option<Duration>)> {
    match r.phase {
        Phase::AwaitingApproval { next, .. } | Phase::Paused { from: PausedFrom::Gate { next, .. }, .. } => {
            return Some((next, None))
        }
        _ if r.phase.is_finished() => return None,
        _ => {}
    }
    let every = match r.budget.map(|b| b.policy) {
        Some(DeployPolicy::Freeze) => r.freeze_override.is_none(),
        Some(DeployPolicy::ApprovalRequired) => true,
        _ => false,
    };
    let (first, mut wait) = match r.phase {
        Phase::Pending => (0, Duration::ZERO),
        _ => (r.stage + 1, r.bake_remaining(now).unwrap_or_default()),
    };
    for (i, stage) in r.stages().iter().enumerate().skip(first) {
        if every || stage.approval {
            return Some((i, Some(wait)));
        }
        wait = wait.saturating_add(stage.bake);
    }
    None
}

/// When the rollout reaches 100 %: a time only when nothing ahead waits
/// for a human or a resume.
pub fn eta_text(r: &Rollout, now: Timestamp) -> Option<String> {
    if r.phase.is_finished() {
        return None;
    }
    if let Some((stage, wait)) = next_gate(r, now) {
        return Some(match wait {
            // A gate at the next stage is in "Next:" already.
            Some(d) if stage > r.stage + 1 => format!("ETA 100%: waits for approval (gate in {})", countdown(d)),
            _ => "ETA 100%: waits for approval".into(),
        });
    }
    if matches!(r.phase, Phase::Paused { .. }) {
        return Some("ETA 100%: paused".into());
    }
    r.eta(now).map(|eta| format!("ETA 100% in {}", countdown(eta)))
}

/// What happens next, in words: the state machine's, unless a gate stops
/// the rollout before the next stage ("Next: approval for 10 % in 12:00").
pub fn next_text(r: &Rollout, now: Timestamp) -> String {
    if let Phase::AwaitingApproval { gate: Gate::Freeze, .. } = r.phase {
        return "Next: an override with a typed reason".into();
    }
    match next_gate(r, now) {
        Some((stage, Some(wait))) if stage == r.stage + 1 && matches!(r.phase, Phase::Progressing { .. }) => {
            let weight = r.stages().get(stage).map_or(100, |s| s.weight);
            format!("Next: approval for {weight} % in {}", countdown(wait))
        }
        _ => r.next_step(now),
    }
}

/// Where traffic is shifted, in the words of the rollout's backend.
pub fn target_label(r: &Rollout) -> String {
    let t = &r.plan().target;
    let p = |k: &str| t.params.get(k).cloned().unwrap_or_default();
    match t.backend {
        BackendKind::Haproxy => format!("haproxy {}", p("backend")),
        BackendKind::Envoy => format!("envoy {}", p("canary_cluster")),
        BackendKind::Nginx => format!("nginx upstream {}", p("upstream")),
        // Kubernetes targets always show their context: which cluster matters most.
        BackendKind::ArgoRollouts => format!("argo {}{}/{}", context(&p("context")), p("namespace"), p("rollout")),
        BackendKind::Deployment => {
            format!("deployment {}{}/{}", context(&p("context")), p("namespace"), p("canary_deployment"))
        }
        BackendKind::Flagger => format!("flagger {}{}/{}", context(&p("context")), p("namespace"), p("canary")),
        BackendKind::Unleash => format!("unleash {}/{}", p("environment"), p("flag")),
        BackendKind::Flagd => format!("flagd {}", p("flag")),
        BackendKind::Lambda => format!("lambda {}:{}", p("function").rsplit(':').next().unwrap_or(""), p("alias")),
        // A group named after the backend ("sim") says nothing more.
        other if t.group == other.name() || t.group.is_empty() => other.name().to_string(),
        other => format!("{} {}", other.name(), t.group),
    }
}

fn context(name: &str) -> String {
    if name.is_empty() {
        "current-context:".into()
    } else {
        format!("{name}:")
    }
}

/// The verb that moves a rollout on from where it waits for a person, if
/// it waits: the cockpit's footer offers it first.
pub fn way_on(r: &Rollout) -> Option<&'static str> {
    Some(match r.phase {
        Phase::AwaitingApproval { gate: Gate::Freeze, .. } => "override-freeze",
        Phase::AwaitingApproval { .. } => "approve",
        Phase::Paused { from: PausedFrom::Step { .. } | PausedFrom::BeforeSwitch, .. } => "promote",
        Phase::Paused { .. } => "resume",
        Phase::RolledBack { .. } | Phase::Aborted { .. } if r.acknowledged.is_none() => "acknowledge",
        Phase::Aborted { .. } | Phase::Failed { .. } => "retry",
        _ => return None,
    })
}

/// Why this rollout wants a person's eyes, if it does: what it waits for
/// (`Rollout::needs_human`), or a rollback or abort nobody has
/// acknowledged yet. The cockpit keeps these on top and counts them.
pub fn attention(r: &Rollout) -> Option<String> {
    if let Some(why) = r.needs_human() {
        return Some(why);
    }
    match &r.phase {
        Phase::RolledBack { by, reason, .. } | Phase::Aborted { by, reason, .. } if r.acknowledged.is_none() => {
            Some(format!("{} by {by}: {reason}; acknowledge once seen", r.phase.label()))
        }
        _ => None,
    }
}
