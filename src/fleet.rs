//! Turns plan files (or the demo fleet) into running rollouts: parses,
//! picks each target's backend, and fails with exit code 2 on bad input.

use crate::backend::sim::{Scenario, SimParams, Simulator};
use crate::engine::RolloutSetup;
use flightdeck_core::plan::{BackendKind, Plan};
use std::path::Path;
use std::sync::Arc;

/// Input that cannot run: the message names the file, line and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The plan files of the built-in demo fleet, as (name, text).
pub const DEMO_FLEET: &[(&str, &str)] = &[
    ("demo/checkout-api.toml", include_str!("demo/checkout-api.toml")),
    ("demo/payments.toml", include_str!("demo/payments.toml")),
    ("demo/search.toml", include_str!("demo/search.toml")),
    ("demo/recommendations.toml", include_str!("demo/recommendations.toml")),
    ("demo/user-profile.toml", include_str!("demo/user-profile.toml")),
    ("demo/notifications.toml", include_str!("demo/notifications.toml")),
];

/// Reads and validates a plan file.
pub fn read_plan(path: &Path) -> Result<(Plan, String), BadInput> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| BadInput(format!("{shown}: cannot read: {e}")))?;
    let plan = Plan::parse(&shown, &text).map_err(|e| BadInput(e.to_string()))?;
    Ok((plan, text))
}

/// A rollout's id: its target group and name ("prod-eu-1/checkout-api").
pub fn rollout_id(plan: &Plan) -> String {
    format!("{}/{}", plan.target.group, plan.name)
}

/// Builds the backend and metrics source for one plan.
pub fn setup(
    plan: Plan,
    file: &str,
    text: String,
    scenario: Option<Scenario>,
    seed: u64,
) -> Result<RolloutSetup, BadInput> {
    match plan.target.backend {
        BackendKind::Sim => {
            let params = SimParams::from_plan(&plan, scenario, seed).map_err(|e| BadInput(format!("{file}: {e}")))?;
            let sim = Simulator::new(&plan, params);
            Ok(RolloutSetup {
                id: rollout_id(&plan),
                plan,
                plan_file: file.into(),
                plan_text: text,
                backend: Arc::new(sim.clone()),
                metrics: Arc::new(sim.clone()),
                sim: Some(sim),
            })
        }
        other => Err(BadInput(format!(
            "{file}: target.backend: the `{}` backend is not part of this build yet; `sim` is",
            other.name()
        ))),
    }
}

/// The demo fleet, ready to run.
pub fn demo(seed: u64) -> Result<Vec<RolloutSetup>, BadInput> {
    DEMO_FLEET
        .iter()
        .map(|(file, text)| {
            let plan = Plan::parse(file, text).map_err(|e| BadInput(e.to_string()))?;
            setup(plan, file, text.to_string(), None, seed)
        })
        .collect()
}

/// The rollouts the plan files describe; ids must be unique.
pub fn from_files(
    paths: &[std::path::PathBuf],
    scenario: Option<&str>,
    seed: u64,
) -> Result<Vec<RolloutSetup>, BadInput> {
    let scenario =
        scenario.map(|s| s.parse::<Scenario>().map_err(|e| BadInput(format!("--scenario: {e}")))).transpose()?;
    let mut setups: Vec<RolloutSetup> = Vec::new();
    for path in paths {
        let (plan, text) = read_plan(path)?;
        let file = path.display().to_string();
        let s = setup(plan, &file, text, scenario, seed)?;
        if let Some(other) = setups.iter().find(|o| o.id == s.id) {
            return Err(BadInput(format!("{file}: rollout.name: `{}` is already run by {}", s.id, other.plan_file)));
        }
        setups.push(s);
    }
    Ok(setups)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_fleet_parses_and_has_six_rollouts_with_one_bad_canary() {
        let fleet = super::demo(1).expect("demo plans are valid");
        assert_eq!(fleet.len(), 6);
        let bad: Vec<_> = fleet
            .iter()
            .filter(|s| s.plan.target.params.get("scenario").map(String::as_str) == Some("bad-canary"))
            .collect();
        assert_eq!(bad.len(), 1);
        let groups: std::collections::BTreeSet<_> = fleet.iter().map(|s| s.plan.target.group.clone()).collect();
        assert!(groups.len() >= 3, "{groups:?}");
    }
}
