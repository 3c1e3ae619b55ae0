//! The demo fleet at any size: `flightdeck demo --rollouts N` runs N
//! rollouts of the six demo shapes (`src/demo/*.toml`: canaries, one going
//! bad, one with a flaky metrics source, an approval gate, blue-green and
//! rolling), spread over many clusters, for scale demos and for the cost
//! figures in `benchmarks/cost.md`.

use crate::engine::RolloutSetup;
use crate::fleet::{setup_in, BadInput, Shared, DEMO_FLEET};
use flightdeck_core::Plan;

/// The demo's own size: each shape once, in its own cluster.
pub const SHAPES: usize = DEMO_FLEET.len();

/// How many copies of one shape share a cluster before the next cluster.
const COPIES_PER_CLUSTER: usize = 10;

/// One plan of a demo fleet: the shape's file and its (renamed) text.
#[derive(Debug, Clone)]
pub struct DemoPlan {
    pub file: &'static str,
    pub text: String,
}

/// The plans of a demo fleet of `rollouts`: rollout `i` has shape `i % 6`.
/// The first copy of each shape is the demo plan as shipped; copy `k` (from
/// 0) is named `<name>-<k+1>` and runs in cluster `<group>-<k/10+1>` from
/// the tenth copy on, so 1,000 rollouts fill 68 clusters of 10 to 20. Each
/// name seeds its own simulated traffic, so no two copies run alike.
pub fn plans(rollouts: usize) -> Vec<DemoPlan> {
    (0..rollouts)
        .map(|i| {
            let (file, text) = DEMO_FLEET[i % SHAPES];
            let copy = i / SHAPES;
            DemoPlan { file, text: if copy == 0 { text.to_string() } else { renamed(file, text, copy) } }
        })
        .collect()
}

/// The shape's text with its name and group changed on their own lines, so
/// the journaled plan text is the plan that runs.
fn renamed(file: &str, text: &str, copy: usize) -> String {
    let plan = Plan::parse(file, text).expect("the shipped demo plans are valid");
    let (name, group) = (&plan.name, &plan.target.group);
    let cluster =
        if copy < COPIES_PER_CLUSTER { group.clone() } else { format!("{group}-{}", copy / COPIES_PER_CLUSTER + 1) };
    text.replacen(&format!("name = \"{name}\""), &format!("name = \"{name}-{}\"", copy + 1), 1).replacen(
        &format!("group = \"{group}\""),
        &format!("group = \"{cluster}\""),
        1,
    )
}

/// The demo's feature flag (`demo --flags`), run beside the six shapes: a
/// gradual rollout of a flag whose new code path goes bad at its first stage.
pub const FLAG_PLAN: (&str, &str) = ("demo/flags/new-checkout.toml", include_str!("demo/flags/new-checkout.toml"));

/// The demo's feature-flag rollout on the simulator, ready to run.
pub async fn flag_setup(seed: u64) -> Result<RolloutSetup, BadInput> {
    let (file, text) = FLAG_PLAN;
    let plan = Plan::parse(file, text).map_err(|e| BadInput(e.to_string()))?;
    setup_in(&Shared::default(), plan, file, text.to_string(), None, seed).await
}

/// A demo fleet of `rollouts` on the simulator, ready to run.
pub async fn setups(rollouts: usize, seed: u64) -> Result<Vec<RolloutSetup>, BadInput> {
    let mut fleet = Vec::with_capacity(rollouts);
    let shared = Shared::default();
    for DemoPlan { file, text } in plans(rollouts) {
        let plan = Plan::parse(file, &text).map_err(|e| BadInput(e.to_string()))?;
        fleet.push(setup_in(&shared, plan, file, text, None, seed).await?);
    }
    Ok(fleet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// The shape a rollout was copied from: its plan name without the copy number.
    fn shape(name: &str) -> &str {
        name.rsplit_once('-').filter(|(_, n)| n.parse::<usize>().is_ok()).map_or(name, |(base, _)| base)
    }

    #[tokio::test]
    async fn fifty_rollouts_are_the_six_shapes_over_many_clusters() {
        let fleet = setups(50, 1).await.expect("demo plans are valid");
        assert_eq!(fleet.len(), 50);
        let ids: BTreeSet<_> = fleet.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids.len(), 50, "every rollout has its own id");
        let mut per_shape: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &fleet {
            *per_shape.entry(shape(&s.plan.name)).or_default() += 1;
            // The journaled text is the plan that runs.
            assert_eq!(Plan::parse(&s.plan_file, &s.plan_text).unwrap(), s.plan);
            assert!(s.backend.simulation().is_some(), "{} runs on the simulator", s.id);
        }
        let shipped: BTreeSet<String> = DEMO_FLEET.iter().map(|(f, t)| Plan::parse(f, t).unwrap().name).collect();
        assert_eq!(per_shape.keys().map(|s| s.to_string()).collect::<BTreeSet<_>>(), shipped);
        // 50 = 6 × 8 + 2: every shape 8 or 9 times.
        assert!(per_shape.values().all(|&n| n == 8 || n == 9), "{per_shape:?}");
        let strategies: BTreeSet<_> = fleet.iter().map(|s| s.plan.strategy_name()).collect();
        assert_eq!(strategies, BTreeSet::from(["blue-green", "canary", "rolling"]));
        let bad = fleet.iter().filter(|s| s.plan.target.params.get("scenario").is_some_and(|s| s == "bad-canary"));
        assert_eq!(bad.count(), 9, "every payments copy goes bad");
    }

    #[test]
    fn the_first_six_are_the_shipped_demo_and_copies_spread_over_clusters() {
        let six = plans(SHAPES);
        assert!(six.iter().zip(DEMO_FLEET).all(|(p, (_, text))| p.text == *text));
        let groups: BTreeSet<String> =
            plans(1000).iter().map(|p| Plan::parse(p.file, &p.text).unwrap().target.group).collect();
        assert_eq!(groups.len(), 68, "{groups:?}");
        assert!(groups.contains("prod-eu-1") && groups.contains("staging-17"), "{groups:?}");
    }
}
