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
//! | promote | the load tester's gate: `POST …/gate/open` with `{"name","namespace"}`, through the API server's service proxy, for the Canary's `confirm-promotion` webhook. Without such a webhook Flagger promotes by itself: shown unavailable |
//! | promote-full | `{"spec":{"skipAnalysis":true}}`: Flagger promotes at its next interval without analysis. It stays set for later revisions until someone sets it back |
//! | abort, rollback | the load tester's rollback gate: `POST …/rollback/open`, for the Canary's `rollback` webhook; without one, unavailable (Flagger rolls back on failed checks only) |
//! | retry | unavailable: Flagger starts again only when its target changes |
//! | restart, set image | strategic merge patch of the target Deployment, as `kubectl rollout restart` / `kubectl set image`: Flagger sees a new revision and analyses it |
//! | undo to a revision, terminate analysis | unavailable: Flagger keeps no numbered revisions and has no AnalysisRun object |
//!
//! A webhook URL `http://flagger-loadtester.test/gate/check` names the
//! Service `flagger-loadtester` in namespace `test` (port 80 unless given):
//! the call goes to
//! `/api/v1/namespaces/test/services/flagger-loadtester:80/proxy/gate/open`,
//! so it works from outside the cluster with the same credentials.
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

use super::followed::Followed;
use super::{at, dynamic_api, resource_name, send_patch, timed, CallError, CallSite, PatchCall};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
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
        }
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn phase(canary: &Value) -> &str {
    text(at(canary, &["status", "phase"]))
}

/// The analysis weights Flagger walks: `stepWeights`, or `stepWeight`
/// increments up to `maxWeight` (canary.go `GetAnalysis`); empty for A/B
/// testing and blue-green (`iterations` without weights).
pub fn analysis_weights(canary: &Value) -> Vec<u64> {
    let analysis = at(canary, &["spec", "analysis"]);
    if let Some(steps) = analysis["stepWeights"].as_array().filter(|s| !s.is_empty()) {
        return steps.iter().filter_map(Value::as_u64).collect();
    }
    let step = analysis["stepWeight"].as_u64().unwrap_or(0);
    let max = analysis["maxWeight"].as_u64().unwrap_or(100).min(100);
    if step == 0 {
        return Vec::new();
    }
    (1..).map(|i| (i * step).min(max)).take_while(|w| *w < max).chain([max]).collect()
}

/// Reads a Canary (as JSON).
pub fn view(canary: &Value) -> CanaryView {
    let weights = analysis_weights(canary);
    let status_weight = at(canary, &["status", "canaryWeight"]).as_u64().unwrap_or(0).min(100);
    let last = weights.last().copied().unwrap_or(0);
    let (status, weight) = match phase(canary) {
        "Succeeded" | "Initialized" => (NativeStatus::Healthy, 100),
        "Finalising" => (NativeStatus::Progressing, 100),
        "Promoting" => (NativeStatus::Progressing, last.max(status_weight)),
        "Failed" => (NativeStatus::Aborted { message: failure(canary) }, 0),
        "WaitingPromotion" => {
            (paused("waiting for promotion (confirm-promotion gate): promote to open it"), status_weight)
        }
        "Waiting" => (paused("waiting to start (confirm-rollout gate)"), status_weight),
        phase @ ("Terminating" | "Terminated") => {
            (NativeStatus::Degraded { message: format!("Canary {phase}: Flagger is removing it") }, status_weight)
        }
        _ if suspended(canary) => (paused("suspended (spec.suspend)"), status_weight),
        _ => (NativeStatus::Progressing, status_weight),
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

/// What one verb does on this Canary: a patch, a load tester gate, or
/// nothing with the reason.
#[derive(Debug, Clone, PartialEq)]
pub enum FlaggerCall {
    Patch(Value),
    /// A strategic merge patch of the target Deployment (`spec.targetRef`),
    /// as kubectl sends it: Flagger sees a new revision and runs a canary.
    PatchTarget {
        deployment: String,
        patch: Value,
    },
    /// POST to this API server path (a service proxy) with this body.
    Gate {
        path: String,
        body: Value,
    },
    Unavailable(String),
}

/// The call for `verb` on this Canary (see the module doc).
pub fn verb_call(verb: &NativeVerb, canary: &Value) -> FlaggerCall {
    let gate = |webhook: &str, endpoint: &str, missing: &str| match webhook_url(canary, webhook) {
        Some(url) => match gate_path(&url, endpoint, namespace(canary)) {
            Ok(path) => FlaggerCall::Gate { path, body: json!({"name": name(canary), "namespace": namespace(canary)}) },
            Err(e) => FlaggerCall::Unavailable(e),
        },
        None => FlaggerCall::Unavailable(missing.to_owned()),
    };
    match verb {
        NativeVerb::Pause => FlaggerCall::Patch(json!({"spec": {"suspend": true}})),
        NativeVerb::Resume if !suspended(canary) => FlaggerCall::Unavailable(
            "the Canary is not suspended: nothing to resume (a gate opens with promote)".to_owned(),
        ),
        NativeVerb::Resume => FlaggerCall::Patch(json!({"spec": {"suspend": false}})),
        NativeVerb::PromoteFull => FlaggerCall::Patch(json!({"spec": {"skipAnalysis": true}})),
        NativeVerb::Promote => gate(
            "confirm-promotion",
            "/gate/open",
            "Flagger advances and promotes by itself; the Canary has no confirm-promotion webhook to open \
             (promote-full sets skipAnalysis)",
        ),
        NativeVerb::Abort | NativeVerb::Undo => gate(
            "rollback",
            "/rollback/open",
            "Flagger rolls back on failed checks only; the Canary has no rollback webhook to open",
        ),
        NativeVerb::Retry => {
            FlaggerCall::Unavailable("Flagger starts a Canary again only when its target changes".to_owned())
        }
        // kubectl rollout restart (polymorphichelpers/objectrestarter.go).
        NativeVerb::Restart => target_patch(canary, || {
            let at = super::argo::restart_at();
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})
        }),
        // kubectl set image: the container's image in the target's template.
        NativeVerb::SetImage { container, image } => target_patch(
            canary,
            || json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}),
        ),
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

fn name(canary: &Value) -> &str {
    text(at(canary, &["metadata", "name"]))
}

fn namespace(canary: &Value) -> &str {
    match text(at(canary, &["metadata", "namespace"])) {
        "" => "default",
        ns => ns,
    }
}

/// The URL of the Canary's first webhook of this type.
fn webhook_url(canary: &Value, kind: &str) -> Option<String> {
    let hooks = at(canary, &["spec", "analysis", "webhooks"]).as_array()?;
    hooks.iter().find(|h| text(&h["type"]) == kind).map(|h| text(&h["url"]).to_owned())
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
}

impl FlaggerCanary {
    /// From the plan target: `namespace`, `canary` and optional `context`.
    pub fn from_target(target: &Target, client: Client) -> Result<FlaggerCanary, String> {
        Ok(FlaggerCanary { object: Followed::from_target(target, client, "flagger", "canary", canary_resource())? })
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

    async fn native(&self, verb: &NativeVerb) -> Result<(), BackendError> {
        let name = &super::argo::verb_name(verb);
        let canary = self.fetch(name).await?;
        match verb_call(verb, &canary) {
            FlaggerCall::Patch(body) => send_patch(&self.object.api, &self.object.name, &PatchCall::merge(body))
                .await
                .map_err(|e| self.site(name).error("patch", &self.what(), e)),
            FlaggerCall::PatchTarget { deployment, patch } => {
                let resource = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
                let api = dynamic_api(&self.object.client, &self.object.namespace, &resource);
                let call = PatchCall { subresource: None, patch: kube::api::Patch::Strategic(patch) };
                send_patch(&api, &deployment, &call)
                    .await
                    .map_err(|e| self.site(name).error("patch", &resource_name(&resource, &deployment), e))
            }
            FlaggerCall::Gate { path, body } => self.open_gate(name, &path, &body).await,
            FlaggerCall::Unavailable(reason) => Err(BackendError::Unsupported {
                backend: self.object.label.clone(),
                effect: format!("{name} ({reason})"),
            }),
        }
    }

    async fn open_gate(&self, verb: &str, path: &str, body: &Value) -> Result<(), BackendError> {
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| self.site(verb).error("post", path, CallError::Transport(e.to_string())))?;
        timed(self.object.client.request_text(request))
            .await
            .map(drop)
            .map_err(|e| self.site(verb).error("post", path, e))
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
        Ok(observe(&self.object.latest().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_walk_step_weight_up_to_max_weight_or_the_listed_steps() {
        let canary = |analysis: Value| json!({"spec": {"analysis": analysis}});
        assert_eq!(analysis_weights(&canary(json!({"stepWeight": 20, "maxWeight": 50}))), vec![20, 40, 50]);
        assert_eq!(analysis_weights(&canary(json!({"stepWeight": 10, "maxWeight": 30}))), vec![10, 20, 30]);
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
}
