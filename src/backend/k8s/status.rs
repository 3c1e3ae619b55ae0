//! What an Argo Rollout's status means to flightdeck: the phase, the canary
//! weight and the stage, read the way `kubectl argo rollouts get` reads them
//! (Argo's `GetRolloutPhase` / `CalculateRolloutPhase`, `GetCurrentSetWeight`).
//!
//! Stages: the core walks the plan's weight stages (1, 10, 50, 100 %), while
//! Argo counts every step (`setWeight`, `pause`, `analysis`…). The stage
//! reported to the core is therefore the index of the current *weight*
//! stage (how many `setWeight` steps have been reached, minus one), so a plan
//! whose stages mirror the Rollout's `setWeight` steps shows the same stage;
//! the raw `status.currentStepIndex` is kept in [`RolloutView::step_index`].
//!
//! Weights: `setWeight` and the traffic router's `status.canary.weights` are
//! in units of `spec.strategy.canary.trafficRouting.maxTrafficWeight`
//! (default 100), as in Argo's rollout/trafficrouting.go; the cockpit shows
//! percent.

use super::at;
use flightdeck_core::rollout::{NativeStatus, Observation};
use serde_json::Value;

/// The parts of a Rollout the cockpit shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutView {
    pub status: NativeStatus,
    /// Canary traffic weight in percent.
    pub canary_weight: u8,
    /// Weight stage (see the module doc).
    pub stage: usize,
    /// Argo's `status.currentStepIndex` (canary with steps only).
    pub step_index: Option<usize>,
    pub steps: usize,
    /// The current background or step analysis run and its status ("Failed: metric…").
    pub analysis: Option<String>,
    /// The Rollout's `rollout.argoproj.io/revision` (the plugin's "Revision").
    pub revision: Option<String>,
    /// `spec.paused`: a person paused it; Argo holds it until resumed.
    pub user_paused: bool,
}

impl RolloutView {
    pub fn observation(&self) -> Observation {
        Observation {
            canary_weight: Some(self.canary_weight),
            native_stage: Some(self.stage),
            native_status: Some(self.status.clone()),
            native_detail: self.detail(),
            native_revision: self.revision.as_ref().map(|r| format!("revision {r}")),
            // Argo moves between steps of one weight (pause, pause,
            // analysis): commands carry the step their sender saw.
            native_step: self.step_index,
        }
    }

    /// Argo's step and analysis run in words, for the cockpit's header. The
    /// step reads `i/n` as `kubectl argo rollouts get` shows it (steps done
    /// of steps), and not at all for a canary without steps.
    fn detail(&self) -> Option<String> {
        let step = self.step_index.map(|i| format!("step {}/{}", i.min(self.steps), self.steps));
        let analysis = self.analysis.as_ref().map(|a| format!("analysis {a}"));
        let paused = self.user_paused.then(|| USER_PAUSED_WARNING.to_owned());
        let parts: Vec<String> = step.into_iter().chain(analysis).chain(paused).collect();
        (!parts.is_empty()).then(|| parts.join(" · "))
    }
}

/// Reads a Rollout object (as JSON).
pub fn view(rollout: &Value) -> RolloutView {
    let steps = canary_steps(rollout);
    let step_index = (is_canary(rollout) && !steps.is_empty()).then(|| current_step_index(rollout));
    RolloutView {
        status: native_status(rollout),
        canary_weight: canary_weight(rollout),
        stage: weight_stage(rollout),
        step_index,
        steps: steps.len(),
        analysis: analysis(rollout),
        revision: at(rollout, &["metadata", "annotations", "rollout.argoproj.io/revision"]).as_str().map(str::to_owned),
        user_paused: flag(at(rollout, &["spec", "paused"])),
    }
}

/// Shown with the Rollout whatever its phase while `spec.paused` is set.
pub const USER_PAUSED_WARNING: &str = "⚠ spec.paused: Argo holds it until resumed (promote or resume)";

/// The observation the core mirrors.
pub fn observe(rollout: &Value) -> Observation {
    view(rollout).observation()
}

fn is_canary(ro: &Value) -> bool {
    at(ro, &["spec", "strategy", "canary"]).is_object()
}

fn is_blue_green(ro: &Value) -> bool {
    at(ro, &["spec", "strategy", "blueGreen"]).is_object()
}

pub(crate) fn canary_steps(ro: &Value) -> &[Value] {
    at(ro, &["spec", "strategy", "canary", "steps"]).as_array().map_or(&[], Vec::as_slice)
}

/// `status.currentStepIndex`, 0 when unset (as Argo's `GetCurrentCanaryStep`).
pub(crate) fn current_step_index(ro: &Value) -> usize {
    at(ro, &["status", "currentStepIndex"]).as_u64().unwrap_or(0) as usize
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// Healthy / Progressing / Paused / Degraded / Aborted.
pub fn native_status(ro: &Value) -> NativeStatus {
    let status = at(ro, &["status"]);
    // An abort shows at once, even before the controller has set the phase.
    if flag(&status["abort"]) {
        return NativeStatus::Aborted { message: abort_message(ro) };
    }
    if !generation_observed(ro) {
        return NativeStatus::Progressing;
    }
    let pause_conditions = status["pauseConditions"].as_array().map_or(0, Vec::len);
    if flag(&status["controllerPause"]) && pause_conditions == 0 {
        // Someone cleared the pause conditions; the controller has not acted yet.
        return NativeStatus::Progressing;
    }
    match text(&status["phase"]) {
        "Healthy" => NativeStatus::Healthy,
        "Progressing" => NativeStatus::Progressing,
        "Paused" => {
            NativeStatus::Paused { reason: paused_reason(ro), step: pause_step(ro), before_switch: switch_pause(ro) }
        }
        "Degraded" => NativeStatus::Degraded { message: text(&status["message"]).to_owned() },
        _ => client_side_status(ro),
    }
}

/// Argo 1.0+ records `status.observedGeneration` as a number in a string;
/// older controllers wrote a hash, which counts as observed.
fn generation_observed(ro: &Value) -> bool {
    let observed = at(ro, &["status", "observedGeneration"]);
    let observed = observed.as_str().and_then(|s| s.parse::<i64>().ok()).or_else(|| observed.as_i64());
    let generation = at(ro, &["metadata", "generation"]).as_i64();
    match (observed, generation) {
        (Some(o), Some(g)) => o >= g,
        _ => true,
    }
}

fn paused_reason(ro: &Value) -> String {
    if flag(at(ro, &["spec", "paused"])) {
        return "manually paused".to_owned();
    }
    let first = at(ro, &["status", "pauseConditions"]).get(0).map(|c| text(&c["reason"]).to_owned());
    match first {
        Some(reason) if !reason.is_empty() => reason,
        _ => text(at(ro, &["status", "message"])).to_owned(),
    }
}

/// The canary step (1-based) that holds the rollout, when only that holds
/// it: `spec.paused` is not set (a resume would clear a user's pause) and a
/// `CanaryPauseStep` condition is there, or the step's analysis (or
/// experiment) ended Inconclusive (`InconclusiveAnalysisRun`,
/// `InconclusiveExperiment`, with `controllerPause`: `spec.paused: false`
/// changes nothing there). Only a promote moves it on (since v0.6 the
/// plugin has no resume verb: promote.go resumes).
fn pause_step(ro: &Value) -> Option<usize> {
    if flag(at(ro, &["spec", "paused"])) || !is_canary(ro) {
        return None;
    }
    let conditions = at(ro, &["status", "pauseConditions"]).as_array()?;
    let by_step = conditions.iter().any(|c| {
        matches!(text(&c["reason"]), "CanaryPauseStep" | "InconclusiveAnalysisRun" | "InconclusiveExperiment")
    });
    let index = current_step_index(ro);
    (by_step && index < canary_steps(ro).len()).then_some(index + 1)
}

/// Whether only the blue-green pause before the switch holds it
/// (`BlueGreenPause`, `spec.paused` not set): a promote clears it, a
/// resume changes nothing (promote.go, as for a pause step).
fn switch_pause(ro: &Value) -> bool {
    let conditions = at(ro, &["status", "pauseConditions"]).as_array().map_or(&[][..], Vec::as_slice);
    !flag(at(ro, &["spec", "paused"]))
        && is_blue_green(ro)
        && conditions.iter().any(|c| text(&c["reason"]) == "BlueGreenPause")
}

fn abort_message(ro: &Value) -> String {
    let message = text(at(ro, &["status", "message"]));
    if !message.is_empty() {
        return message.to_owned();
    }
    conditions(ro)
        .find(|c| text(&c["reason"]) == "RolloutAborted")
        .map(|c| format!("RolloutAborted: {}", text(&c["message"])))
        .unwrap_or_else(|| "aborted".to_owned())
}

fn conditions(ro: &Value) -> impl Iterator<Item = &Value> {
    at(ro, &["status", "conditions"]).as_array().into_iter().flatten()
}

/// Argo before 1.0 has no `status.phase`: computed as its `CalculateRolloutPhase`.
fn client_side_status(ro: &Value) -> NativeStatus {
    for c in conditions(ro) {
        if text(&c["type"]) == "InvalidSpec" {
            return NativeStatus::Degraded { message: format!("InvalidSpec: {}", text(&c["message"])) };
        }
        if let reason @ ("RolloutAborted" | "ProgressDeadlineExceeded") = text(&c["reason"]) {
            return NativeStatus::Degraded { message: format!("{reason}: {}", text(&c["message"])) };
        }
    }
    let paused = flag(at(ro, &["spec", "paused"]));
    if paused || at(ro, &["status", "pauseConditions"]).as_array().is_some_and(|p| !p.is_empty()) {
        return NativeStatus::Paused {
            reason: paused_reason(ro),
            step: pause_step(ro),
            before_switch: switch_pause(ro),
        };
    }
    let count = |key: &str| at(ro, &["status", key]).as_i64().unwrap_or(0);
    let desired = at(ro, &["spec", "replicas"]).as_i64().unwrap_or(1);
    if count("updatedReplicas") < desired || count("availableReplicas") < count("updatedReplicas") {
        return NativeStatus::Progressing;
    }
    if is_blue_green(ro) && text(at(ro, &["status", "blueGreen", "activeSelector"])) != current_hash(ro) {
        return NativeStatus::Progressing;
    }
    let traffic_routed = at(ro, &["spec", "strategy", "canary", "trafficRouting"]).is_object();
    if is_canary(ro) && !traffic_routed && count("replicas") > count("updatedReplicas") {
        return NativeStatus::Progressing;
    }
    if !fully_promoted(ro) {
        return NativeStatus::Progressing;
    }
    NativeStatus::Healthy
}

fn current_hash(ro: &Value) -> &str {
    text(at(ro, &["status", "currentPodHash"]))
}

/// The stable ReplicaSet runs the current template: nothing left to roll out.
pub(crate) fn fully_promoted(ro: &Value) -> bool {
    let stable = text(at(ro, &["status", "stableRS"]));
    !stable.is_empty() && stable == current_hash(ro)
}

/// Percent of traffic on the canary: the weight the traffic router reports
/// when there is one, otherwise the current step's `setWeight` (Argo's
/// `GetCurrentSetWeight`), both in units of `maxTrafficWeight`. A fully
/// promoted rollout is at 100 % whatever the router last wrote (Argo sets
/// `weights.canary.weight` to 0 once the canary has become stable).
pub fn canary_weight(ro: &Value) -> u8 {
    if flag(at(ro, &["status", "abort"])) {
        return 0;
    }
    if is_blue_green(ro) {
        let switched = !current_hash(ro).is_empty()
            && text(at(ro, &["status", "blueGreen", "activeSelector"])) == current_hash(ro);
        return if switched { 100 } else { 0 };
    }
    if fully_promoted(ro) {
        return 100;
    }
    let routed = at(ro, &["status", "canary", "weights", "canary", "weight"]).as_u64();
    if let Some(w) = routed {
        return percent(ro, w);
    }
    let steps = canary_steps(ro);
    if steps.is_empty() {
        return replica_share(ro);
    }
    let index = current_step_index(ro);
    if index >= steps.len() {
        return 100;
    }
    steps[..=index].iter().rev().find_map(|s| s["setWeight"].as_u64()).map_or(0, |w| percent(ro, w))
}

/// `spec.strategy.canary.trafficRouting.maxTrafficWeight`, 100 when unset.
pub fn max_traffic_weight(ro: &Value) -> u64 {
    let max = at(ro, &["spec", "strategy", "canary", "trafficRouting", "maxTrafficWeight"]).as_u64();
    max.filter(|m| *m > 0).unwrap_or(100)
}

/// A weight in units of `maxTrafficWeight` as whole percent (rounded).
fn percent(ro: &Value, weight: u64) -> u8 {
    let max = max_traffic_weight(ro);
    ((weight.min(max) * 100 + max / 2) / max) as u8
}

/// A canary without steps rolls like a Deployment: the true split is the
/// share of updated replicas.
fn replica_share(ro: &Value) -> u8 {
    let count = |key: &str| at(ro, &["status", key]).as_u64().unwrap_or(0);
    let desired = at(ro, &["spec", "replicas"]).as_u64().unwrap_or(1).max(1);
    ((count("updatedReplicas").min(desired) * 100 + desired / 2) / desired) as u8
}

/// Index of the current weight stage (see the module doc).
pub fn weight_stage(ro: &Value) -> usize {
    if is_blue_green(ro) {
        return usize::from(canary_weight(ro) == 100);
    }
    let steps = canary_steps(ro);
    let weights: Vec<u64> = steps.iter().filter_map(|s| s["setWeight"].as_u64()).collect();
    let index = current_step_index(ro);
    if index >= steps.len() || fully_promoted(ro) {
        // Past the last step: the final 100 % stage (the core adds one when the
        // last setWeight is below 100).
        let full = max_traffic_weight(ro);
        return if weights.last().is_some_and(|w| *w >= full) { weights.len() - 1 } else { weights.len() };
    }
    let reached = steps[..=index].iter().filter(|s| s["setWeight"].is_u64()).count();
    reached.saturating_sub(1)
}

/// The current analysis run and its status, as `kubectl argo rollouts get` shows it.
fn analysis(ro: &Value) -> Option<String> {
    let canary = at(ro, &["status", "canary"]);
    let run = ["currentStepAnalysisRunStatus", "currentBackgroundAnalysisRunStatus"]
        .iter()
        .map(|key| &canary[*key])
        .find(|r| r.is_object())?;
    let name = text(&run["name"]);
    let phase = text(&run["status"]);
    let message = text(&run["message"]);
    Some(if message.is_empty() { format!("{name}: {phase}") } else { format!("{name}: {phase}: {message}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary(status: Value) -> Value {
        json!({
            "metadata": {"name": "checkout", "generation": 3},
            "spec": {"strategy": {"canary": {"steps": [
                {"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "10m"}}
            ]}}},
            "status": status,
        })
    }

    #[test]
    fn a_blue_green_pause_before_the_switch_is_held_for_a_promote_unless_a_user_paused() {
        let blue_green = |paused: bool| {
            json!({
                "metadata": {"name": "checkout", "generation": 2},
                "spec": {"paused": paused, "strategy": {"blueGreen": {"activeService": "a", "previewService": "p", "autoPromotionEnabled": false}}},
                "status": {"phase": "Paused", "observedGeneration": "2", "controllerPause": true,
                           "pauseConditions": [{"reason": "BlueGreenPause", "startTime": "2026-12-01T10:00:00Z"}]},
            })
        };
        let held = NativeStatus::Paused { reason: "BlueGreenPause".into(), step: None, before_switch: true };
        assert_eq!(native_status(&blue_green(false)), held);
        // A user's pause on top: a resume clears that one, so it is not held for a promote only.
        let user = NativeStatus::Paused { reason: "manually paused".into(), step: None, before_switch: false };
        assert_eq!(native_status(&blue_green(true)), user);
    }

    #[test]
    fn weight_follows_the_last_set_weight_step() {
        let at_pause = canary(json!({"currentStepIndex": 1, "stableRS": "a", "currentPodHash": "b"}));
        assert_eq!((canary_weight(&at_pause), weight_stage(&at_pause)), (20, 0));
        let second = canary(json!({"currentStepIndex": 3, "stableRS": "a", "currentPodHash": "b"}));
        assert_eq!((canary_weight(&second), weight_stage(&second)), (50, 1));
        let done = canary(json!({"currentStepIndex": 4, "stableRS": "b", "currentPodHash": "b"}));
        assert_eq!((canary_weight(&done), weight_stage(&done)), (100, 2));
    }

    #[test]
    fn a_routed_weight_wins_and_an_abort_is_zero() {
        let routed = canary(json!({"currentStepIndex": 1, "canary": {"weights": {"canary": {"weight": 17}}}}));
        assert_eq!(canary_weight(&routed), 17);
        let aborted = canary(json!({"currentStepIndex": 1, "abort": true}));
        assert_eq!(canary_weight(&aborted), 0);
        assert_eq!(native_status(&aborted), NativeStatus::Aborted { message: "aborted".into() });
    }

    #[test]
    fn unobserved_generation_and_unpausing_are_progressing() {
        let stale = canary(json!({"observedGeneration": "2", "phase": "Paused", "pauseConditions": [{}]}));
        assert_eq!(native_status(&stale), NativeStatus::Progressing);
        let unpausing = canary(json!({"observedGeneration": "3", "phase": "Paused", "controllerPause": true}));
        assert_eq!(native_status(&unpausing), NativeStatus::Progressing);
    }
}
