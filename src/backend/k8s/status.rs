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
use super::tree::{rollout_tree, Owned};
use flightdeck_core::rollout::{NativeStatus, Observation};
use flightdeck_core::tree::NativeTree;
use serde_json::Value;
use std::sync::Arc;

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
    /// The current analysis run and its status ("Failed: metric…"), after
    /// what kind it is ("pre-promotion " for blue-green, else empty).
    pub analysis: Option<(&'static str, String)>,
    /// The Rollout's `rollout.argoproj.io/revision` (the plugin's "Revision").
    pub revision: Option<String>,
    /// `spec.paused`: a person paused it; Argo holds it until resumed.
    pub user_paused: bool,
    /// A timed pause step holds it: "pause 10m, resumes by itself at 10:42:00 UTC".
    pub timed_pause: Option<String>,
    /// `setWeight` beside the actual weight when they differ, as the plugin
    /// shows both ("set weight 40 %").
    pub set_weight: Option<u8>,
    /// The revisions → ReplicaSets → pods and AnalysisRuns tree, when the
    /// owned objects were asked for.
    pub tree: Option<Arc<NativeTree>>,
    /// The controller's `status.message` while it progresses ("more
    /// replicas need to be updated"), as the plugin's `Message:` line shows
    /// it; a Degraded or Aborted rollout carries its message in the status.
    pub message: Option<String>,
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
            native_tree: self.tree.clone(),
            ..Observation::default()
        }
    }

    /// Argo's step and analysis run in words, for the cockpit's header. The
    /// step reads `i/n` as `kubectl argo rollouts get` shows it (steps done
    /// of steps), and not at all for a canary without steps.
    fn detail(&self) -> Option<String> {
        let step = self.step_index.map(|i| format!("step {}/{}", i.min(self.steps), self.steps));
        let set_weight = self.set_weight.map(|w| format!("set weight {w} %, actual {} %", self.canary_weight));
        let analysis = self.analysis.as_ref().map(|(label, run)| format!("{label}analysis {run}"));
        let paused = self.user_paused.then(|| USER_PAUSED_WARNING.to_owned());
        let parts: Vec<String> = step
            .into_iter()
            .chain(self.timed_pause.clone())
            .chain(set_weight)
            .chain(analysis)
            .chain(self.message.clone())
            .chain(paused)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" · "))
    }
}

/// Reads a Rollout object (as JSON) alone.
pub fn view(rollout: &Value) -> RolloutView {
    view_with(rollout, None)
}

/// Reads a Rollout with the objects it owns: the tree, and the
/// replica-based weight of a canary without traffic routing.
pub fn view_with(rollout: &Value, owned: Option<&Owned>) -> RolloutView {
    let steps = canary_steps(rollout);
    // rollout_info.go shows a step only once the controller has set an index.
    let step_index = (is_canary(rollout) && !steps.is_empty())
        .then(|| at(rollout, &["status", "currentStepIndex"]).as_u64().map(|i| i as usize))
        .flatten();
    let listed = owned.and_then(|o| o.replica_sets.as_deref());
    let canary_weight = listed.and_then(|sets| replica_weight(rollout, sets)).unwrap_or_else(|| canary_weight(rollout));
    let set = set_weight(rollout);
    RolloutView {
        status: native_status(rollout),
        canary_weight,
        stage: weight_stage(rollout),
        step_index,
        steps: steps.len(),
        analysis: analysis(rollout),
        revision: at(rollout, &["metadata", "annotations", "rollout.argoproj.io/revision"]).as_str().map(str::to_owned),
        user_paused: flag(at(rollout, &["spec", "paused"])),
        timed_pause: timed_pause(rollout).map(|p| p.words()),
        set_weight: set.filter(|w| *w != canary_weight),
        tree: owned.map(|owned| Arc::new(rollout_tree(rollout, owned))),
        message: progress_message(rollout),
    }
}

/// `status.message` of a progressing Rollout (rollout_info.go's `Message`).
fn progress_message(ro: &Value) -> Option<String> {
    let message = text(at(ro, &["status", "message"])).trim();
    (native_status(ro) == NativeStatus::Progressing && !message.is_empty()).then(|| message.to_owned())
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
        // The controller moves on by itself: nobody is waited for (the
        // detail says when; a promote still skips it).
        "Paused" if timed_pause(ro).is_some() => NativeStatus::Progressing,
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

/// A timed pause step (`pause: {duration: 10m}`) that alone holds the
/// Rollout: the controller resumes it by itself once the duration has
/// passed since the `CanaryPauseStep` condition's `startTime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedPause {
    pub seconds: i64,
    /// When the controller resumes it, if the condition has a start time.
    pub until: Option<k8s_openapi::jiff::Timestamp>,
}

impl TimedPause {
    /// "pause 10m: resumes by itself at 10:42:00 UTC (promote skips it)".
    pub fn words(&self) -> String {
        let length = match self.seconds {
            s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
            s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        };
        let when =
            self.until.map_or("by itself".to_owned(), |t| format!("by itself at {} UTC", t.strftime("%H:%M:%S")));
        format!("pause {length}: resumes {when} (promote skips it)")
    }
}

/// The timed pause step holding the Rollout, if only that holds it: no
/// user pause, every pause condition a `CanaryPauseStep`, and the current
/// step's `pause.duration` set (types.go `DurationSeconds`: a number of
/// seconds, or a Go duration).
pub fn timed_pause(ro: &Value) -> Option<TimedPause> {
    if flag(at(ro, &["spec", "paused"])) || !is_canary(ro) {
        return None;
    }
    let conditions = at(ro, &["status", "pauseConditions"]).as_array()?;
    if conditions.is_empty() || conditions.iter().any(|c| text(&c["reason"]) != "CanaryPauseStep") {
        return None;
    }
    let step = canary_steps(ro).get(current_step_index(ro))?;
    let seconds = duration_seconds(&step["pause"]["duration"]).filter(|s| *s > 0)?;
    let start = text(&conditions[0]["startTime"]).parse::<k8s_openapi::jiff::Timestamp>().ok();
    let until = start.and_then(|t| t.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds)).ok());
    Some(TimedPause { seconds, until })
}

/// types.go `RolloutPause.DurationSeconds`: an integer, a string of digits
/// (seconds), or a Go duration ("1h30m", "90s").
fn duration_seconds(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let s = v.as_str()?;
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    go_duration(s)
}

/// Go's `time.ParseDuration`, whole seconds (h, m, s, ms, us, µs, ns).
fn go_duration(s: &str) -> Option<i64> {
    let (mut rest, mut total) = (s, 0f64);
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit..];
    }
    Some(total as i64)
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
    let held = at(ro, &["status", "pauseConditions"]).as_array().is_some_and(|p| !p.is_empty());
    if (paused || held) && timed_pause(ro).is_none() {
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
    let routed = at(ro, &["status", "canary", "weights", "canary", "weight"]).as_u64();
    if flag(at(ro, &["status", "abort"])) {
        // With dynamicStableScale the controller shifts traffic back step by
        // step as stable scales up (trafficrouting.go
        // `calculateDesiredWeightOnAbortOrStableRollback`): the router's
        // weight is where the traffic is until it reaches 0.
        return match routed {
            Some(w) if dynamic_stable_scale(ro) => percent(ro, w),
            _ => 0,
        };
    }
    if is_blue_green(ro) {
        let switched = !current_hash(ro).is_empty()
            && text(at(ro, &["status", "blueGreen", "activeSelector"])) == current_hash(ro);
        return if switched { 100 } else { 0 };
    }
    if fully_promoted(ro) {
        return rolling_back_to_stable(ro).unwrap_or(100);
    }
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

fn traffic_routed(ro: &Value) -> bool {
    at(ro, &["spec", "strategy", "canary", "trafficRouting"]).is_object()
}

/// `dynamicStableScale` with traffic routing (it needs it).
fn dynamic_stable_scale(ro: &Value) -> bool {
    traffic_routed(ro) && flag(at(ro, &["spec", "strategy", "canary", "dynamicStableScale"]))
}

/// rolloututil.go `IsDynamicallyRollingBackToStable`: the template is back
/// to the stable one (fully promoted) while the router still sends
/// traffic to the previous canary (`weights.canary.podTemplateHash` is not
/// the current one); the share on the current (stable) pods is the rest.
fn rolling_back_to_stable(ro: &Value) -> Option<u8> {
    let weights = at(ro, &["status", "canary", "weights"]);
    let previous = text(&weights["canary"]["podTemplateHash"]);
    let on_previous = weights["canary"]["weight"].as_u64().filter(|w| *w > 0)?;
    (dynamic_stable_scale(ro) && !previous.is_empty() && previous != current_hash(ro))
        .then(|| percent(ro, max_traffic_weight(ro).saturating_sub(on_previous)))
}

/// rollout_info.go `ActualWeight` for a canary with steps and no traffic
/// routing: the canary ReplicaSet's available replicas of the Rollout's
/// (0 while none is available); `None` where it does not apply.
pub fn replica_weight(ro: &Value, replica_sets: &[Value]) -> Option<u8> {
    let steps = canary_steps(ro);
    if !is_canary(ro) || traffic_routed(ro) || steps.is_empty() || flag(at(ro, &["status", "abort"])) {
        return None;
    }
    if current_step_index(ro) >= steps.len() || fully_promoted(ro) {
        return None;
    }
    let available = at(ro, &["status", "availableReplicas"]).as_u64().unwrap_or(0);
    if available == 0 {
        return Some(0);
    }
    let hash = current_hash(ro);
    let canary = replica_sets.iter().find(|rs| {
        let own = text(at(rs, &["metadata", "labels", "rollouts-pod-template-hash"]));
        !hash.is_empty() && own == hash && own != text(at(ro, &["status", "stableRS"]))
    });
    let canary_available = canary.map_or(0, |rs| at(rs, &["status", "availableReplicas"]).as_u64().unwrap_or(0));
    Some((canary_available * 100 / available).min(100) as u8)
}

/// replicaset/canary.go `GetCurrentSetWeight` in percent, for a canary with steps.
fn set_weight(ro: &Value) -> Option<u8> {
    let steps = canary_steps(ro);
    if !is_canary(ro) || steps.is_empty() {
        return None;
    }
    if flag(at(ro, &["status", "abort"])) {
        return Some(0);
    }
    let index = current_step_index(ro);
    if index >= steps.len() {
        return Some(100);
    }
    Some(steps[..=index].iter().rev().find_map(|s| s["setWeight"].as_u64()).map_or(0, |w| percent(ro, w)))
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
/// A blue-green Rollout's pre- or post-promotion analysis, named so.
fn analysis(ro: &Value) -> Option<(&'static str, String)> {
    let canary = at(ro, &["status", "canary"]);
    let blue_green = at(ro, &["status", "blueGreen"]);
    let (label, run) = [
        ("", &canary["currentStepAnalysisRunStatus"]),
        ("", &canary["currentBackgroundAnalysisRunStatus"]),
        ("post-promotion ", &blue_green["postPromotionAnalysisRunStatus"]),
        ("pre-promotion ", &blue_green["prePromotionAnalysisRunStatus"]),
    ]
    .into_iter()
    .find(|(_, r)| r.is_object())?;
    let name = text(&run["name"]);
    let phase = text(&run["status"]);
    let message = text(&run["message"]);
    let run = if message.is_empty() { format!("{name}: {phase}") } else { format!("{name}: {phase}: {message}") };
    Some((label, run))
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
