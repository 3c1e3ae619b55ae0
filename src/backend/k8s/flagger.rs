//! Flagger (`flagger.app/v1beta1` Canary), observed: Flagger's controller
//! shifts the traffic and runs the analysis; flightdeck watches the Canary,
//! shows its phase, canary weight, iterations, failed checks and the
//! analysis metrics it checks, and maps the captain's verbs to what Flagger
//! itself offers (fields from Flagger's pkg/apis/flagger/v1beta1/canary.go
//! and status.go, gates from its load tester):
//!
//! | verb | request |
//! |---|---|
//! | pause | `{"spec":{"suspend":true}}` (merge patch): Flagger holds the analysis where it is |
//! | resume | `{"spec":{"suspend":false}}`; refused when the Canary is not suspended (nothing to resume) |
//! | promote | the load tester gate of the hook that holds the Canary now: in Waiting its `confirm-rollout` webhook, in WaitingPromotion its `confirm-promotion` webhook, in Progressing its `confirm-traffic-increase` webhook (which holds without a phase change): `POST …/gate/open` with `{"name","namespace"}` through the API server's service proxy. Only the load tester's `/gate/check` has a gate to open (`/gate/approve`, `/gate/halt` and other URLs are refused with the reason); where nothing holds it Flagger promotes by itself: shown unavailable |
//! | promote-full | `{"spec":{"skipAnalysis":true}}` in Progressing or WaitingPromotion: Flagger promotes at its next interval without analysis. flightdeck sets it back to false once Flagger has promoted (or a new revision appears); one set by someone else stays. Elsewhere refused: it would skip the next revision's analysis |
//! | abort, rollback | in Progressing and WaitingPromotion (where scheduler.go reads rollback hooks) the load tester's rollback gate: `POST …/rollback/open`, for the Canary's `rollback` webhook on `/rollback/check`; in Waiting (0 %) the confirm-rollout gate is closed (`…/gate/close`); in Promoting, Finalising, Failed and when nothing rolls out refused with the reason, because a rollback gate opened there would roll back the *next* revision at its first Progressing tick |
//! | retry | unavailable: Flagger starts again only when its target changes |
//! | restart, set image | strategic merge patch of the target Deployment, as `kubectl rollout restart` / `kubectl set image`: Flagger sees a new revision and analyses it. Set image reads the Deployment first and patches only the containers it names (`*`: all); a name it does not have is refused, as kubectl refuses it |
//! | undo to a revision, terminate analysis | unavailable: Flagger keeps no numbered revisions and has no AnalysisRun object |
//!
//! A webhook URL `http://flagger-loadtester.test/gate/check` names the
//! Service `flagger-loadtester` in namespace `test` (port 80 unless given):
//! the call goes to
//! `/api/v1/namespaces/test/services/flagger-loadtester:80/proxy/gate/open`,
//! so it works from outside the cluster with the same credentials.
//!
//! The load tester keeps one boolean per `name.namespace` (and one per
//! `rollback.name.namespace`), shared by every `/gate/check` hook of the
//! Canary, until someone posts `/gate/close` (server.go, gate.go). So every
//! gate flightdeck opens is closed again at the first reading that shows it
//! has done its job ([`gate_done`]: the phase it held left, a step passed,
//! or a new revision appeared), and the cockpit shows it open until then.
//! What flightdeck opened is remembered in memory only, so the first
//! reading of a run reads every gate of the Canary's webhooks back (their
//! `/gate/check` and `/rollback/check` answer 200 `Approved` when open, 403
//! `Forbidden` when shut): a confirm gate found open is shut (it would pass
//! a revision nobody approved; the cockpit says to promote again), a
//! rollback gate found open where Flagger reads it (Progressing,
//! WaitingPromotion) is an abort on its way and is kept until Flagger has
//! acted, anywhere else it is shut ([`keep_found_open`]). A load tester that
//! cannot be asked is said, and asked again at the next reading.
//!
//! Status (status.go `CanaryPhase`): Initializing and Progressing →
//! progressing (paused when `spec.suspend`); Waiting (confirm-rollout) and
//! WaitingPromotion (confirm-promotion) → paused, only a promote (the gate)
//! moves it; Promoting → progressing at the last analysis weight (the
//! primary is being updated, routes unchanged); Finalising → progressing at
//! 100 % (all traffic back on the primary, which now runs the new spec);
//! Initialized and Succeeded → healthy at 100 % (Flagger writes
//! `canaryWeight: 0` then: the primary is the new version, not 0 %); Failed
//! → aborted at 0 %; Terminating/Terminated → degraded.

use super::events;
use super::followed::Followed;
use super::{at, dynamic_api, resource_name, send_patch, timed, CallError, CallSite, PatchCall};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use flightdeck_core::plan::params::ParamError;
use flightdeck_core::plan::Target;
use flightdeck_core::rollout::{Effect, NativeStatus, NativeVerb, Observation};
use kube::api::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};

/// The Canary kind.
pub fn canary_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("flagger.app", "v1beta1", "Canary"), "canaries")
}

/// The parts of a Canary the cockpit shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryView {
    pub status: NativeStatus,
    /// Traffic on the new version, percent.
    pub weight: u8,
    /// Index of the weight stage reached (stepWeight increments up to maxWeight).
    pub stage: usize,
    /// Flagger's phase, iterations, failed checks and metrics, in words.
    pub detail: String,
    /// `status.lastAppliedSpec`: the hash of the target spec being rolled out.
    pub revision: Option<String>,
}

impl CanaryView {
    pub fn observation(&self) -> Observation {
        Observation {
            canary_weight: Some(self.weight),
            native_stage: Some(self.stage),
            native_status: Some(self.status.clone()),
            native_detail: Some(self.detail.clone()),
            native_revision: self.revision.as_ref().map(|r| format!("spec {r}")),
            ..Observation::default()
        }
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn phase(canary: &Value) -> &str {
    text(at(canary, &["status", "phase"]))
}

/// The analysis weights Flagger walks (scheduler.go `runCanary`,
/// `nextStepWeight`, `maxWeight`): `stepWeights` as listed (capped at the
/// total, 100), or `stepWeight` added while the weight is below `maxWeight`
/// (default 100), capped at the total only, so a step may overshoot
/// `maxWeight` (step 20, max 50: 20, 40, 60). Empty for A/B testing and
/// blue-green (`iterations` without weights).
pub fn analysis_weights(canary: &Value) -> Vec<u64> {
    let analysis = at(canary, &["spec", "analysis"]);
    if let Some(steps) = analysis["stepWeights"].as_array().filter(|s| !s.is_empty()) {
        return steps.iter().filter_map(Value::as_u64).map(|w| w.min(TOTAL_WEIGHT)).collect();
    }
    let step = analysis["stepWeight"].as_u64().unwrap_or(0);
    let max = analysis["maxWeight"].as_u64().filter(|m| *m > 0).unwrap_or(TOTAL_WEIGHT);
    if step == 0 {
        return Vec::new();
    }
    let mut weights = vec![step.min(TOTAL_WEIGHT)];
    while weights[weights.len() - 1] < max.min(TOTAL_WEIGHT) {
        weights.push((weights[weights.len() - 1] + step).min(TOTAL_WEIGHT));
    }
    weights
}

/// scheduler.go `totalWeight`.
const TOTAL_WEIGHT: u64 = 100;

/// Reads a Canary (as JSON).
pub fn view(canary: &Value) -> CanaryView {
    let weights = analysis_weights(canary);
    let status_weight = at(canary, &["status", "canaryWeight"]).as_u64().unwrap_or(0).min(100);
    let last = weights.last().copied().unwrap_or(0);
    let switched = switched_to_canary(canary);
    let (status, weight) = match phase(canary) {
        "Succeeded" | "Initialized" => (NativeStatus::Healthy, 100),
        "Finalising" => (NativeStatus::Progressing, 100),
        "Promoting" if iterations_only(canary) => (NativeStatus::Progressing, if routed(canary) { 100 } else { 0 }),
        "Promoting" => (NativeStatus::Progressing, last.max(status_weight)),
        // rollback() reports 0 with the routes back on the primary; handleFailedPromotion reports the total
        // with all traffic on the canary (the primary is not ready): the weight it reports is where traffic is.
        "Failed" if status_weight > 0 => {
            let message = format!("{}; {status_weight} % of traffic is on the canary", failure(canary));
            (NativeStatus::Aborted { message }, status_weight)
        }
        "Failed" => (NativeStatus::Aborted { message: failure(canary) }, 0),
        // setStatusPhase zeroes canaryWeight here while the routes stay at the last analysis weight.
        "WaitingPromotion" => (paused("waiting for promotion (confirm-promotion gate): promote to open it"), last),
        "Waiting" => (paused("waiting to start (confirm-rollout gate)"), status_weight),
        phase @ ("Terminating" | "Terminated") => {
            (NativeStatus::Degraded { message: format!("Canary {phase}: Flagger is removing it") }, status_weight)
        }
        _ if suspended(canary) => (paused("suspended (spec.suspend)"), if switched { 100 } else { status_weight }),
        _ => (NativeStatus::Progressing, if switched { 100 } else { status_weight }),
    };
    let reached = weights.iter().filter(|w| **w <= weight).count();
    let stage = match phase(canary) {
        // The final 100 % stage (the core adds one when maxWeight is below 100).
        "Succeeded" | "Initialized" | "Finalising" | "Promoting" if last >= 100 => weights.len() - 1,
        "Succeeded" | "Initialized" | "Finalising" | "Promoting" => weights.len(),
        _ => reached.saturating_sub(1),
    };
    let revision = at(canary, &["status", "lastAppliedSpec"]).as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    CanaryView { status, weight: weight as u8, stage, detail: detail(canary), revision }
}

/// Blue/green and A/B testing: `iterations` without weights (scheduler.go
/// `runBlueGreen`, `runAB`).
fn iterations_only(canary: &Value) -> bool {
    analysis_weights(canary).is_empty() && at(canary, &["spec", "analysis", "iterations"]).is_u64()
}

/// A mesh or ingress routes traffic (the `kubernetes` provider, blue/green
/// on plain Services, does not: its traffic never moves to the canary).
fn routed(canary: &Value) -> bool {
    text(at(canary, &["spec", "provider"])) != "kubernetes"
}

/// Blue/green or A/B past its iterations: `runBlueGreen` / `runAB` route
/// all traffic to the canary (`SetRoutes(canary, 0, total)`) and count one
/// more iteration, without writing `canaryWeight`; Promoting keeps it there
/// until Finalising routes it back to the primary.
fn switched_to_canary(canary: &Value) -> bool {
    let iterations = at(canary, &["status", "iterations"]).as_u64().unwrap_or(0);
    let total = at(canary, &["spec", "analysis", "iterations"]).as_u64().unwrap_or(u64::MAX);
    iterations_only(canary) && routed(canary) && iterations > total
}

/// Shown with the Canary whatever its phase while `spec.suspend` is set.
pub const SUSPENDED_WARNING: &str =
    "⚠ spec.suspend: Flagger skips this Canary, its automatic rollback on failed checks included";

fn paused(reason: &str) -> NativeStatus {
    NativeStatus::Paused { reason: reason.to_owned(), step: None, before_switch: false }
}

fn suspended(canary: &Value) -> bool {
    at(canary, &["spec", "suspend"]).as_bool().unwrap_or(false)
}

/// The `Promoted` condition's message ("Canary analysis failed, …").
fn failure(canary: &Value) -> String {
    let conditions = at(canary, &["status", "conditions"]).as_array().cloned().unwrap_or_default();
    let promoted = conditions.iter().find(|c| text(&c["type"]) == "Promoted");
    let message = promoted.map(|c| text(&c["message"]).to_owned()).unwrap_or_default();
    if message.is_empty() {
        "Canary analysis failed".to_owned()
    } else {
        message
    }
}

/// "Progressing · iteration 3 · failed checks 1/5 · request-success-rate ≥ 99,
/// request-duration ≤ 500 · skipAnalysis".
fn detail(canary: &Value) -> String {
    let analysis = at(canary, &["spec", "analysis"]);
    let mut parts = vec![match phase(canary) {
        "" => "Initializing".to_owned(),
        p => p.to_owned(),
    }];
    let iterations = at(canary, &["status", "iterations"]).as_u64().unwrap_or(0);
    if let Some(total) = analysis["iterations"].as_u64() {
        parts.push(format!("iteration {iterations}/{total}"));
    } else if iterations > 0 {
        parts.push(format!("iteration {iterations}"));
    }
    let failed = at(canary, &["status", "failedChecks"]).as_u64().unwrap_or(0);
    let threshold = analysis["threshold"].as_u64().map_or(String::new(), |t| format!("/{t}"));
    parts.push(format!("failed checks {failed}{threshold}"));
    let metrics: Vec<String> = analysis["metrics"].as_array().into_iter().flatten().map(metric).collect();
    if !metrics.is_empty() {
        parts.push(metrics.join(", "));
    }
    if at(canary, &["spec", "skipAnalysis"]).as_bool().unwrap_or(false) {
        parts.push("skipAnalysis".to_owned());
    }
    if suspended(canary) {
        // scheduler.go advanceCanary returns before anything else: no step, no promotion, no rollback.
        parts.push(SUSPENDED_WARNING.to_owned());
    }
    parts.join(" · ")
}

/// One analysis metric with its bounds: `thresholdRange` (v1beta1), or the
/// older single `threshold`.
fn metric(m: &Value) -> String {
    let name = text(&m["name"]);
    let range = &m["thresholdRange"];
    let number = |v: &Value| v.as_f64().map(|x| format!("{x}"));
    match (number(&range["min"]), number(&range["max"]), number(&m["threshold"])) {
        (Some(min), Some(max), _) => format!("{name} {min}..{max}"),
        (Some(min), None, _) => format!("{name} ≥ {min}"),
        (None, Some(max), _) => format!("{name} ≤ {max}"),
        (None, None, Some(t)) => format!("{name} {t}"),
        _ => name.to_owned(),
    }
}

/// The observation the core mirrors.
pub fn observe(canary: &Value) -> Observation {
    view(canary).observation()
}

/// What one verb does on this Canary: a patch, load tester gates to open
/// or close, or nothing with the reason.
#[derive(Debug, Clone, PartialEq)]
pub enum FlaggerCall {
    Patch(Value),
    /// `{"spec":{"skipAnalysis":true}}`, which flightdeck clears again once
    /// Flagger has promoted (or a new revision appears): left set, it would
    /// skip the analysis of every later revision.
    SkipAnalysis,
    /// A strategic merge patch of the target Deployment (`spec.targetRef`),
    /// as kubectl sends it: Flagger sees a new revision and runs a canary.
    PatchTarget {
        deployment: String,
        patch: Value,
    },
    /// `kubectl set image deployment/D container=image`: the target read
    /// first; containers it does not have are refused as kubectl refuses
    /// them (a blind patch would add a container named by the typo, or `*`).
    SetImage {
        deployment: String,
        container: String,
        image: String,
    },
    /// Open these load tester gates (`POST …/gate/open` or
    /// `…/rollback/open` with `{"name","namespace"}`); each is closed again
    /// once it has done its job (see [`gate_done`]).
    Open(Vec<GateCall>),
    /// Close these gates: an abort while Flagger waits to start keeps the
    /// canary at 0 % (its confirm-rollout gate shut).
    Close(Vec<GateCall>),
    Unavailable(String),
}

/// One load tester gate of a Canary webhook, as service-proxy paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateCall {
    /// The webhook type: `confirm-rollout`, `confirm-promotion`,
    /// `confirm-traffic-increase` or `rollback`.
    pub hook: &'static str,
    pub open: String,
    pub close: String,
    /// The webhook's own endpoint (`/gate/check`, `/rollback/check`): it
    /// answers whether the gate is open (200 `Approved`) or shut (403 `Forbidden`).
    pub check: String,
}

/// The webhook types that hold a Canary until a gate lets it pass.
const CONFIRM_ROLLOUT: &str = "confirm-rollout";
const CONFIRM_PROMOTION: &str = "confirm-promotion";
const CONFIRM_TRAFFIC: &str = "confirm-traffic-increase";
const ROLLBACK: &str = "rollback";

/// The call for `verb` on this Canary (see the module doc).
pub fn verb_call(verb: &NativeVerb, canary: &Value) -> FlaggerCall {
    let phase = phase(canary);
    match verb {
        NativeVerb::Pause => FlaggerCall::Patch(json!({"spec": {"suspend": true}})),
        NativeVerb::Resume if !suspended(canary) => FlaggerCall::Unavailable(
            "the Canary is not suspended: nothing to resume (a gate opens with promote)".to_owned(),
        ),
        NativeVerb::Resume => FlaggerCall::Patch(json!({"spec": {"suspend": false}})),
        NativeVerb::PromoteFull => match phase {
            "Progressing" | "WaitingPromotion" => FlaggerCall::SkipAnalysis,
            "Waiting" => FlaggerCall::Unavailable(
                "Flagger waits for its confirm-rollout gate before it reads skipAnalysis: promote to start it"
                    .to_owned(),
            ),
            "Promoting" | "Finalising" => FlaggerCall::Unavailable(format!("Flagger is already promoting ({phase})")),
            _ => FlaggerCall::Unavailable(format!(
                "nothing is rolling out (phase {}): skipAnalysis set now would skip the next revision's analysis",
                shown(phase)
            )),
        },
        NativeVerb::Promote => match phase {
            "Waiting" => {
                confirm_gates(canary, CONFIRM_ROLLOUT, "Flagger waits to start without a confirm-rollout webhook")
            }
            "WaitingPromotion" => confirm_gates(
                canary,
                CONFIRM_PROMOTION,
                "Flagger waits for promotion without a confirm-promotion webhook",
            ),
            "Progressing" if !hooks(canary, CONFIRM_TRAFFIC).is_empty() => confirm_gates(canary, CONFIRM_TRAFFIC, ""),
            "Progressing" => FlaggerCall::Unavailable(
                "Flagger advances and promotes by itself; nothing holds this Canary (no confirm-traffic-increase \
                 webhook, and it waits for no confirm-promotion gate yet); promote-full sets skipAnalysis"
                    .to_owned(),
            ),
            _ => FlaggerCall::Unavailable(format!("nothing waits for a promote in phase {}", shown(phase))),
        },
        NativeVerb::Abort | NativeVerb::Undo => abort(canary, phase),
        NativeVerb::Retry => {
            FlaggerCall::Unavailable("Flagger starts a Canary again only when its target changes".to_owned())
        }
        // kubectl rollout restart (polymorphichelpers/objectrestarter.go).
        NativeVerb::Restart => target_patch(canary, || {
            let at = super::argo::restart_at();
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})
        }),
        // kubectl set image: read first, the named containers (`*`: all) only.
        NativeVerb::SetImage { container, image } => match target_patch(canary, || Value::Null) {
            FlaggerCall::PatchTarget { deployment, .. } => {
                FlaggerCall::SetImage { deployment, container: container.clone(), image: image.clone() }
            }
            other => other,
        },
        NativeVerb::UndoTo { .. } => FlaggerCall::Unavailable(
            "Flagger keeps no numbered revisions: the primary runs the last promoted spec; change the target \
             to roll out an older one"
                .to_owned(),
        ),
        NativeVerb::TerminateAnalysis => FlaggerCall::Unavailable(
            "Flagger's analysis is its own loop, not an object to terminate; abort opens the rollback gate".to_owned(),
        ),
    }
}

fn shown(phase: &str) -> &str {
    if phase.is_empty() {
        "Initializing"
    } else {
        phase
    }
}

/// Abort and rollback: the rollback gate, where Flagger reads it
/// (scheduler.go runs the rollback hooks in Progressing and
/// WaitingPromotion only; an open gate there rolls back at the next tick).
/// Anywhere else an open rollback gate would do nothing now and roll back
/// the next revision at its first Progressing tick, so it is not opened.
fn abort(canary: &Value, phase: &str) -> FlaggerCall {
    match phase {
        "Progressing" | "WaitingPromotion" => {
            let hooks = hooks(canary, ROLLBACK);
            if hooks.is_empty() {
                return FlaggerCall::Unavailable(
                    "Flagger rolls back on failed checks only; the Canary has no rollback webhook to open".to_owned(),
                );
            }
            let mut reasons = Vec::new();
            for url in &hooks {
                match load_tester_gate(url, ROLLBACK, namespace(canary)) {
                    // Any one rollback hook that passes rolls back (runRollbackHooks).
                    Ok(gate) => return FlaggerCall::Open(vec![gate]),
                    Err(e) => reasons.push(e),
                }
            }
            FlaggerCall::Unavailable(reasons.join("; "))
        }
        // Held at 0 % by confirm-rollout: keep it shut, open nothing.
        "Waiting" => match gates(canary, CONFIRM_ROLLOUT) {
            Ok(gates) if !gates.is_empty() => FlaggerCall::Close(gates),
            Ok(_) => FlaggerCall::Unavailable("the Canary waits to start at 0 %: nothing to abort".to_owned()),
            Err(e) => FlaggerCall::Unavailable(format!("the Canary waits to start at 0 %: nothing to abort ({e})")),
        },
        "Promoting" | "Finalising" => FlaggerCall::Unavailable(format!(
            "Flagger is promoting ({phase}): past the analysis it reads no rollback webhook, and a gate opened now \
             would roll back the next revision; set the target back to the previous spec instead"
        )),
        "Failed" => FlaggerCall::Unavailable("the Canary already failed: Flagger has rolled it back".to_owned()),
        other => FlaggerCall::Unavailable(format!(
            "nothing is rolling out (phase {}); set the target back to the previous spec to roll back",
            shown(other)
        )),
    }
}

/// Every webhook of a confirm type, as gates to open, or why not.
fn confirm_gates(canary: &Value, hook: &'static str, missing: &str) -> FlaggerCall {
    match gates(canary, hook) {
        Ok(gates) if gates.is_empty() => FlaggerCall::Unavailable(missing.to_owned()),
        // Flagger passes a confirm hook type only when every hook of it passes.
        Ok(gates) => FlaggerCall::Open(gates),
        Err(e) => FlaggerCall::Unavailable(e),
    }
}

fn gates(canary: &Value, hook: &'static str) -> Result<Vec<GateCall>, String> {
    hooks(canary, hook).iter().map(|url| load_tester_gate(url, hook, namespace(canary))).collect()
}

/// The gate of one webhook: only the load tester's check endpoints
/// (server.go: `/gate/check` for the confirm hooks, `/rollback/check` for
/// rollback) have a gate to open; `/gate/approve` and `/gate/halt` are
/// static (always open, always shut) and anything else is not the load
/// tester's: opening a gate there would answer 202 and change nothing.
pub fn load_tester_gate(url: &str, hook: &'static str, default_namespace: &str) -> Result<GateCall, String> {
    let check = if hook == ROLLBACK { "/rollback/check" } else { "/gate/check" };
    let path = url_path(url);
    let Some(prefix) = path.strip_suffix(check) else {
        let why = match path {
            "/gate/halt" => "the load tester's static gate that is always shut".to_owned(),
            "/gate/approve" => "the load tester's static gate that is always open".to_owned(),
            _ => format!("not the load tester's {check}"),
        };
        return Err(format!("the {hook} webhook {url} is {why}: flightdeck can open only {check} gates"));
    };
    let base = &check[..check.len() - "/check".len()];
    Ok(GateCall {
        hook,
        open: gate_path(url, &format!("{prefix}{base}/open"), default_namespace)?,
        close: gate_path(url, &format!("{prefix}{base}/close"), default_namespace)?,
        check: gate_path(url, &format!("{prefix}{check}"), default_namespace)?,
    })
}

/// The path of a URL, without its query ("/" when it has none).
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Has this gate done its job, so it must be shut before it lets anything
/// else through? The load tester keeps one boolean per Canary (and one per
/// rollback) until someone closes it, and every `/gate/check` hook of the
/// Canary reads the same one (server.go, gate.go).
pub fn gate_done(hook: &str, opened: &Opened, canary: &Value) -> bool {
    if revision(canary) != opened.revision {
        return true;
    }
    let phase = phase(canary);
    match hook {
        CONFIRM_ROLLOUT => phase != "Waiting",
        CONFIRM_PROMOTION => phase != "WaitingPromotion",
        // Holds without a phase change: one step passed is its job.
        CONFIRM_TRAFFIC => phase != "Progressing" || weight(canary) != opened.weight,
        // Read in Progressing and WaitingPromotion only; Failed once it acted.
        ROLLBACK => !matches!(phase, "Progressing" | "WaitingPromotion"),
        // skipAnalysis: Flagger promoted (or rolled back) without analysis.
        _ => !matches!(phase, "Progressing" | "WaitingPromotion" | "Promoting" | "Finalising"),
    }
}

/// Where a Canary was when flightdeck opened a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub revision: String,
    pub weight: u64,
}

impl Opened {
    pub fn of(canary: &Value) -> Opened {
        Opened { revision: revision(canary).to_owned(), weight: weight(canary) }
    }
}

fn revision(canary: &Value) -> &str {
    text(at(canary, &["status", "lastAppliedSpec"]))
}

fn weight(canary: &Value) -> u64 {
    at(canary, &["status", "canaryWeight"]).as_u64().unwrap_or(0)
}
/// A patch of the Canary's target Deployment, or why there is none.
fn target_patch(canary: &Value, patch: impl FnOnce() -> Value) -> FlaggerCall {
    let target = at(canary, &["spec", "targetRef"]);
    match (text(&target["kind"]), text(&target["name"])) {
        ("Deployment", name) if !name.is_empty() => {
            FlaggerCall::PatchTarget { deployment: name.to_owned(), patch: patch() }
        }
        (kind, _) => FlaggerCall::Unavailable(format!("the Canary's target is a {kind:?}, not a Deployment")),
    }
}

/// The strategic merge patch `kubectl set image` sends for a Deployment's
/// pod template: each container (init, app) named `container`, or all for
/// `*`, with its new image; `None` when none is named so.
pub fn set_image_patch(deployment: &Value, container: &str, image: &str) -> Option<Value> {
    let mut spec = serde_json::Map::new();
    for list in ["initContainers", "containers"] {
        let present = at(deployment, &["spec", "template", "spec", list]).as_array().cloned().unwrap_or_default();
        let changed: Vec<Value> = present
            .iter()
            .filter(|c| container == "*" || text(&c["name"]) == container)
            .map(|c| json!({"name": c["name"], "image": image}))
            .collect();
        if !changed.is_empty() {
            spec.insert(list.to_owned(), Value::Array(changed));
        }
    }
    (!spec.is_empty()).then(|| json!({"spec": {"template": {"spec": spec}}}))
}

fn namespace(canary: &Value) -> &str {
    match text(at(canary, &["metadata", "namespace"])) {
        "" => "default",
        ns => ns,
    }
}

/// The URLs of the Canary's webhooks of this type, in order.
fn hooks(canary: &Value, kind: &str) -> Vec<String> {
    let hooks = at(canary, &["spec", "analysis", "webhooks"]).as_array().map_or(&[][..], Vec::as_slice);
    hooks.iter().filter(|h| text(&h["type"]) == kind).map(|h| text(&h["url"]).to_owned()).collect()
}

/// The service-proxy path of a load tester `endpoint` for a webhook URL
/// ("http://flagger-loadtester.test/gate/check" → "/api/v1/namespaces/test/
/// services/flagger-loadtester:80/proxy/gate/open").
pub fn gate_path(url: &str, endpoint: &str, default_namespace: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("webhook URL {url:?} has no scheme"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.to_owned()),
        None => (authority, if scheme == "https" { "443" } else { "80" }.to_owned()),
    };
    let mut labels = host.split('.');
    let service = labels.next().filter(|s| !s.is_empty()).ok_or_else(|| format!("webhook URL {url:?} has no host"))?;
    let namespace = labels.next().filter(|ns| *ns != "svc").unwrap_or(default_namespace);
    let proxied_scheme = if scheme == "https" { "https:" } else { "" };
    Ok(format!("/api/v1/namespaces/{namespace}/services/{proxied_scheme}{service}:{port}/proxy{endpoint}"))
}

/// A Flagger Canary flightdeck observes and commands.
pub struct FlaggerCanary {
    object: Followed,
    /// Gates flightdeck opened (and a skipAnalysis it set) that have not
    /// done their job yet: each is closed at the first reading that shows
    /// it has (see [`gate_done`]), and shown until then.
    pending: tokio::sync::Mutex<Gates>,
    /// Flagger's Events about the Canary already told in the event log.
    told: std::sync::Mutex<events::Told>,
}

/// What flightdeck holds open on the load tester, and whether the gates a
/// run before this one may have left open have been read back.
#[derive(Debug, Default)]
struct Gates {
    pending: Vec<Pending>,
    /// The load tester's gates were read back (see [`FlaggerCanary::read_back`]).
    read_back: bool,
    /// What the read-back found and did, shown with this revision
    /// (`lastAppliedSpec`) until a command is sent.
    found: Option<(String, Vec<String>)>,
    /// Why the read-back failed, shown until it succeeds.
    read_back_error: Option<String>,
}

/// What to do with a gate found open when nothing in this run opened it
/// (flightdeck restarted after opening it, or someone opened it by hand).
/// A confirm gate lets a revision pass without a person: shut at once (a
/// promote sent just before the restart is lost; the captain sends it
/// again). A rollback gate where Flagger reads it (Progressing,
/// WaitingPromotion) is an abort on its way: kept, and closed once Flagger
/// has acted; anywhere else it would only roll back the next revision, so
/// it is shut.
pub fn keep_found_open(hook: &str, canary: &Value) -> bool {
    hook == ROLLBACK && matches!(phase(canary), "Progressing" | "WaitingPromotion")
}

/// Every load tester gate of the Canary's webhooks, one per check
/// endpoint (hooks of other URLs have no gate to read).
pub fn all_gates(canary: &Value) -> Vec<GateCall> {
    let mut out: Vec<GateCall> = Vec::new();
    for hook in [CONFIRM_ROLLOUT, CONFIRM_TRAFFIC, CONFIRM_PROMOTION, ROLLBACK] {
        for url in hooks(canary, hook) {
            if let Ok(gate) = load_tester_gate(&url, hook, namespace(canary)) {
                if !out.iter().any(|g| g.check == gate.check) {
                    out.push(gate);
                }
            }
        }
    }
    out
}

/// Something flightdeck set on the Canary or its load tester that must be
/// taken back once it has done its job.
#[derive(Debug, Clone)]
struct Pending {
    /// `None`: the skipAnalysis flightdeck set.
    gate: Option<GateCall>,
    opened: Opened,
    /// Why the last attempt to take it back failed.
    error: Option<String>,
}

impl Pending {
    fn hook(&self) -> &str {
        self.gate.as_ref().map_or("skipAnalysis", |g| g.hook)
    }

    /// "confirm-promotion gate open" / "skipAnalysis set by flightdeck", and why it is still so.
    fn shown(&self) -> String {
        let what = match &self.gate {
            Some(g) => format!("{} gate open", g.hook),
            None => "skipAnalysis set by flightdeck".to_owned(),
        };
        match &self.error {
            Some(e) => format!("{what} (closing it failed: {e})"),
            None => what,
        }
    }
}

impl FlaggerCanary {
    /// From the plan target: `namespace`, `canary` and optional `context`.
    pub fn from_target(target: &Target, client: Client) -> Result<FlaggerCanary, ParamError> {
        Ok(FlaggerCanary {
            object: Followed::from_target(target, client, "flagger", "canary", canary_resource())?,
            pending: tokio::sync::Mutex::default(),
            told: std::sync::Mutex::default(),
        })
    }

    /// Starts the watch (idempotent).
    pub fn watch(&self) {
        self.object.watch();
    }

    fn what(&self) -> String {
        self.object.what()
    }

    fn site<'a>(&'a self, verb: &'a str) -> CallSite<'a> {
        self.object.site(verb)
    }

    async fn fetch(&self, verb: &str) -> Result<Value, BackendError> {
        self.object.fetch(verb).await
    }

    fn body(&self) -> Value {
        json!({"name": self.object.name, "namespace": self.object.namespace})
    }

    async fn native(&self, verb: &NativeVerb) -> Result<(), BackendError> {
        let name = &super::argo::verb_name(verb);
        // Commands and the closing of gates take turns: a gate is never
        // closed on a reading older than the command that opened it.
        let mut gates = self.pending.lock().await;
        // A command is the captain's answer to what the read-back found.
        gates.found = None;
        let pending = &mut gates.pending;
        let canary = self.fetch(name).await?;
        match verb_call(verb, &canary) {
            FlaggerCall::Patch(body) => self.patch(name, body).await,
            FlaggerCall::SkipAnalysis => {
                let already = at(&canary, &["spec", "skipAnalysis"]).as_bool().unwrap_or(false);
                self.patch(name, json!({"spec": {"skipAnalysis": true}})).await?;
                // One a person set is theirs to clear.
                if !already && !pending.iter().any(|p| p.gate.is_none()) {
                    pending.push(Pending { gate: None, opened: Opened::of(&canary), error: None });
                }
                Ok(())
            }
            FlaggerCall::PatchTarget { deployment, patch } => {
                let resource = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
                let api = dynamic_api(&self.object.client, &self.object.namespace, &resource);
                let call = PatchCall { subresource: None, patch: kube::api::Patch::Strategic(patch) };
                send_patch(&api, &deployment, &call)
                    .await
                    .map_err(|e| self.site(name).error("patch", &resource_name(&resource, &deployment), e))
            }
            FlaggerCall::SetImage { deployment, container, image } => {
                let resource = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
                let api = dynamic_api(&self.object.client, &self.object.namespace, &resource);
                let what = resource_name(&resource, &deployment);
                let current = timed(api.get(&deployment)).await.map_err(|e| self.site(name).error("get", &what, e))?;
                let current = serde_json::to_value(current).unwrap_or(Value::Null);
                let patch = set_image_patch(&current, &container, &image).ok_or_else(|| BackendError::Refused {
                    backend: self.object.label.clone(),
                    action: name.to_owned(),
                    detail: format!("unable to find container named \"{container}\" in {what}"),
                })?;
                let call = PatchCall { subresource: None, patch: kube::api::Patch::Strategic(patch) };
                send_patch(&api, &deployment, &call).await.map_err(|e| self.site(name).error("patch", &what, e))
            }
            FlaggerCall::Open(gates) => {
                for gate in gates {
                    self.post(name, &gate.open).await?;
                    pending.retain(|p| p.gate.as_ref() != Some(&gate));
                    pending.push(Pending { gate: Some(gate), opened: Opened::of(&canary), error: None });
                }
                Ok(())
            }
            FlaggerCall::Close(gates) => {
                for gate in gates {
                    self.post(name, &gate.close).await?;
                    pending.retain(|p| p.gate.as_ref().is_none_or(|g| g.close != gate.close));
                }
                Ok(())
            }
            FlaggerCall::Unavailable(reason) => Err(BackendError::Unsupported {
                backend: self.object.label.clone(),
                effect: format!("{name} ({reason})"),
            }),
        }
    }

    async fn patch(&self, verb: &str, body: Value) -> Result<(), BackendError> {
        send_patch(&self.object.api, &self.object.name, &PatchCall::merge(body))
            .await
            .map_err(|e| self.site(verb).error("patch", &self.what(), e))
    }

    /// POST `{"name","namespace"}` to a load tester path through the service proxy.
    async fn post(&self, verb: &str, path: &str) -> Result<(), BackendError> {
        self.post_checked(path).await.map_err(|e| self.site(verb).error("post", path, e))
    }

    /// Whether the load tester's gate is open now: its check endpoint
    /// answers 200 (`Approved`) or 403 with its own plain `Forbidden`
    /// (server.go `/gate/check`, `/rollback/check`); anything else (an API
    /// server's RBAC refusal is a JSON Status) is an error.
    async fn is_open(&self, gate: &GateCall) -> Result<bool, BackendError> {
        let verb = "read back gate";
        match self.post_checked(&gate.check).await {
            Ok(()) => Ok(true),
            Err(CallError::Api { code: 403, message }) if message == "Forbidden" => Ok(false),
            Err(e) => Err(self.site(verb).error("post", &gate.check, e)),
        }
    }

    async fn post_checked(&self, path: &str) -> Result<(), CallError> {
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(self.body().to_string().into_bytes())
            .map_err(|e| CallError::Transport(e.to_string()))?;
        timed(self.object.client.request_text(request)).await.map(drop)
    }

    /// The gates a run before this one may have left open: the load tester
    /// keeps them in memory until closed, and flightdeck's list of what it
    /// opened did not survive the restart. Each gate of the Canary's
    /// webhooks is asked (its check endpoint answers its state); what is
    /// open is shut, or kept to be closed once done ([`keep_found_open`]).
    /// Returns what it found, in words.
    async fn read_back(&self, pending: &mut Vec<Pending>, canary: &Value) -> Result<Vec<String>, BackendError> {
        let mut found = Vec::new();
        for gate in all_gates(canary) {
            if pending.iter().any(|p| p.gate.as_ref().is_some_and(|g| g.check == gate.check))
                || !self.is_open(&gate).await?
            {
                continue;
            }
            if keep_found_open(gate.hook, canary) {
                found.push(format!("{} gate found open (an abort on its way): kept until Flagger acts", gate.hook));
                pending.push(Pending { gate: Some(gate), opened: Opened::of(canary), error: None });
            } else {
                self.post("close gate", &gate.close).await?;
                found.push(format!("{} gate found open and closed (promote again if it was meant)", gate.hook));
            }
        }
        Ok(found)
    }

    /// Closes what has done its job on this reading of the Canary; returns
    /// what is still open, in words.
    async fn settle(&self, pending: &mut Vec<Pending>, canary: &Value) -> Vec<String> {
        let mut left = Vec::new();
        for mut p in std::mem::take(pending) {
            if gate_done(p.hook(), &p.opened, canary) {
                let closed = match &p.gate {
                    Some(gate) => self.post("close gate", &gate.close).await,
                    None => self.patch("clear skipAnalysis", json!({"spec": {"skipAnalysis": false}})).await,
                };
                match closed {
                    Ok(()) => continue,
                    Err(e) => p.error = Some(e.to_string()),
                }
            }
            left.push(p);
        }
        *pending = left;
        pending.iter().map(Pending::shown).collect()
    }
}

#[async_trait]
impl Backend for FlaggerCanary {
    fn name(&self) -> String {
        self.object.label.clone()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        match effect {
            Effect::Native { verb } => self.native(verb).await,
            Effect::Notify(_) => Ok(()),
            other => Err(self.object.unsupported(other)),
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let mut seen = self.observe_canary().await?;
        // Flagger's reasons (failed checks, halts, rollbacks) are in its
        // Events: told in the log; a refused listing is said beside the phase.
        let object = &self.object;
        match events::list(&object.client, &object.namespace, "Canary", &object.name).await {
            Ok(list) => seen.native_events = self.told.lock().unwrap_or_else(|e| e.into_inner()).news(list),
            Err(e) => {
                let detail = seen.native_detail.take().unwrap_or_default();
                seen.native_detail = Some(format!("{detail} · events not read: {}", e.text()));
            }
        }
        Ok(seen)
    }
}

impl FlaggerCanary {
    /// The Canary's phase, weight and checks, with the gates flightdeck holds open.
    async fn observe_canary(&self) -> Result<Observation, BackendError> {
        let mut gates = self.pending.lock().await;
        if gates.pending.is_empty() && gates.read_back && gates.found.is_none() {
            drop(gates);
            return Ok(observe(&self.object.latest().await?));
        }
        // Something to read back or take back: decide on the API server's
        // copy, never on a watch that may lag behind the command that opened it.
        let canary = self.fetch("observe").await?;
        let gates = &mut *gates;
        if !gates.read_back {
            match self.read_back(&mut gates.pending, &canary).await {
                Ok(found) => {
                    gates.read_back = true;
                    gates.read_back_error = None;
                    gates.found = (!found.is_empty()).then(|| (revision(&canary).to_owned(), found));
                }
                Err(e) => gates.read_back_error = Some(format!("gates left open not read back yet: {e}")),
            }
        }
        let mut open = self.settle(&mut gates.pending, &canary).await;
        if gates.found.as_ref().is_some_and(|(spec, _)| spec != revision(&canary)) {
            gates.found = None;
        }
        open.extend(gates.found.iter().flat_map(|(_, found)| found.iter().cloned()));
        open.extend(gates.read_back_error.clone());
        let mut seen = observe(&canary);
        if !open.is_empty() {
            let detail = seen.native_detail.take().unwrap_or_default();
            seen.native_detail = Some(format!("{detail} · {}", open.join(" · ")));
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_walk_step_weight_up_to_max_weight_or_the_listed_steps() {
        let canary = |analysis: Value| json!({"spec": {"analysis": analysis}});
        // scheduler.go runCanary: a step is added while below maxWeight, capped at the total only.
        assert_eq!(analysis_weights(&canary(json!({"stepWeight": 20, "maxWeight": 50}))), vec![20, 40, 60]);
        assert_eq!(analysis_weights(&canary(json!({"stepWeight": 10, "maxWeight": 30}))), vec![10, 20, 30]);
        assert_eq!(analysis_weights(&canary(json!({"stepWeight": 30}))), vec![30, 60, 90, 100]);
        assert_eq!(analysis_weights(&canary(json!({"stepWeights": [1, 5, 25, 75]}))), vec![1, 5, 25, 75]);
        assert!(analysis_weights(&canary(json!({"iterations": 10}))).is_empty());
    }

    #[test]
    fn load_tester_urls_become_service_proxy_paths() {
        let path = gate_path("http://flagger-loadtester.test/gate/check", "/gate/open", "prod").unwrap();
        assert_eq!(path, "/api/v1/namespaces/test/services/flagger-loadtester:80/proxy/gate/open");
        let short = gate_path("http://loadtester:8080/rollback/check", "/rollback/open", "prod").unwrap();
        assert_eq!(short, "/api/v1/namespaces/prod/services/loadtester:8080/proxy/rollback/open");
        let fqdn = gate_path("https://lt.tools.svc.cluster.local/gate/check", "/gate/open", "prod").unwrap();
        assert_eq!(fqdn, "/api/v1/namespaces/tools/services/https:lt:443/proxy/gate/open");
        assert!(gate_path("flagger-loadtester/gate", "/gate/open", "prod").is_err());
    }

    #[test]
    fn only_the_load_testers_check_endpoints_have_a_gate() {
        let proxy = "/api/v1/namespaces/test/services/flagger-loadtester:80/proxy";
        let gate = load_tester_gate("http://flagger-loadtester.test/gate/check", CONFIRM_PROMOTION, "prod").unwrap();
        assert_eq!((gate.open, gate.close), (format!("{proxy}/gate/open"), format!("{proxy}/gate/close")));
        let rollback = load_tester_gate("http://flagger-loadtester.test/rollback/check?x=1", ROLLBACK, "prod").unwrap();
        assert_eq!(rollback.close, format!("{proxy}/rollback/close"));
        for (url, hook, why) in [
            ("http://flagger-loadtester.test/gate/halt", CONFIRM_ROLLOUT, "always shut"),
            ("http://flagger-loadtester.test/gate/approve", CONFIRM_PROMOTION, "always open"),
            ("http://flagger-loadtester.test/gate/check", ROLLBACK, "not the load tester's /rollback/check"),
            ("http://flagger-loadtester.test/", CONFIRM_PROMOTION, "not the load tester's /gate/check"),
        ] {
            let err = load_tester_gate(url, hook, "prod").unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn a_gate_is_done_when_the_phase_it_held_is_left_or_a_new_revision_appears() {
        let canary = |phase: &str, weight: u64, spec: &str| json!({"status": {"phase": phase, "canaryWeight": weight, "lastAppliedSpec": spec}});
        let opened = Opened { revision: "a".into(), weight: 30 };
        let cases = [
            (CONFIRM_ROLLOUT, canary("Waiting", 0, "a"), false),
            (CONFIRM_ROLLOUT, canary("Progressing", 0, "a"), true),
            (CONFIRM_PROMOTION, canary("WaitingPromotion", 0, "a"), false),
            (CONFIRM_PROMOTION, canary("Promoting", 50, "a"), true),
            (CONFIRM_TRAFFIC, canary("Progressing", 30, "a"), false),
            (CONFIRM_TRAFFIC, canary("Progressing", 40, "a"), true),
            (ROLLBACK, canary("Progressing", 30, "a"), false),
            (ROLLBACK, canary("Failed", 0, "a"), true),
            (ROLLBACK, canary("Progressing", 0, "b"), true),
            ("skipAnalysis", canary("Progressing", 30, "a"), false),
            ("skipAnalysis", canary("Succeeded", 0, "a"), true),
        ];
        for (hook, canary, done) in cases {
            assert_eq!(gate_done(hook, &opened, &canary), done, "{hook} {canary}");
        }
    }
}
