//! Argo Rollouts (`argoproj.io/v1alpha1` Rollout): flightdeck observes the
//! controller and commands it with the patches `kubectl argo rollouts` sends
//! (pkg/kubectl-argo-rollouts/cmd/{promote,abort,retry,pause,resume,undo}):
//!
//! | verb | request |
//! |---|---|
//! | promote | GET, then `{"status":{"pauseConditions":null}}` on `/status` when paused by a step, or `{"status":{"pauseConditions":null,"currentStepIndex":N+1}}` when not paused at all (canary), and `{"spec":{"paused":false}}` when paused by a user |
//! | promote-full | GET, then `{"status":{"promoteFull":true}}` on `/status` (nothing when already fully promoted) |
//! | abort | `{"status":{"abort":true}}` on `/status` |
//! | retry | `{"status":{"abort":false}}` on `/status` |
//! | pause | `{"spec":{"paused":true}}` |
//! | resume | `{"spec":{"paused":false}}` |
//! | undo | GET, list the Rollout's ReplicaSets, JSON patch `replace /spec/template` with the previous revision's template |
//!
//! All merge patches (`application/merge-patch+json`) except undo
//! (`application/json-patch+json`). Like kubectl, a `/status` patch that
//! answers 404 (Argo before 0.10 had no status subresource) is sent again
//! as one patch of the whole object.

use super::revisions::{self, HistoryError};
use super::status::{self, canary_steps, current_step_index, fully_promoted};
use super::watch::ObjectWatch;
use super::{at, dynamic_api, param, resource_name, send_patch, timed, CallSite, PatchCall};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use flightdeck_core::plan::Target;
use flightdeck_core::rollout::{Effect, NativeVerb, Observation};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The Rollout kind.
pub fn rollout_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"), "rollouts")
}

/// One patch of a verb, with the whole-object patch kubectl falls back to
/// when the `/status` subresource does not exist.
#[derive(Debug, Clone)]
pub struct VerbPatch {
    pub call: PatchCall,
    pub fallback: Option<Value>,
}

/// Does this verb need the current object first (as kubectl GETs it)?
pub fn needs_object(verb: NativeVerb) -> bool {
    matches!(verb, NativeVerb::Promote | NativeVerb::PromoteFull | NativeVerb::Undo)
}

/// The patches `kubectl argo rollouts <verb>` sends for this Rollout, in
/// order. Undo is not here: it needs the ReplicaSets ([`ArgoRollout`] does it).
pub fn verb_patches(verb: NativeVerb, rollout: &Value) -> Vec<VerbPatch> {
    let status = |body: Value| VerbPatch { fallback: Some(body.clone()), call: PatchCall::status(body) };
    let spec = |body: Value| VerbPatch { fallback: None, call: PatchCall::merge(body) };
    match verb {
        NativeVerb::Promote => promote(rollout),
        NativeVerb::PromoteFull if fully_promoted(rollout) => Vec::new(),
        NativeVerb::PromoteFull => {
            vec![VerbPatch { call: PatchCall::status(json!({"status": {"promoteFull": true}})), fallback: None }]
        }
        NativeVerb::Abort => vec![status(json!({"status": {"abort": true}}))],
        NativeVerb::Retry => vec![status(json!({"status": {"abort": false}}))],
        NativeVerb::Pause => vec![spec(json!({"spec": {"paused": true}}))],
        NativeVerb::Resume => vec![spec(json!({"spec": {"paused": false}}))],
        NativeVerb::Undo => Vec::new(),
    }
}

/// kubectl's promote: clear the pause conditions, or (canary, not paused by
/// a step) skip to the next step; unpause a user's pause. Status first.
fn promote(ro: &Value) -> Vec<VerbPatch> {
    let user_paused = at(ro, &["spec", "paused"]).as_bool().unwrap_or(false);
    let step_paused = at(ro, &["status", "pauseConditions"]).as_array().is_some_and(|c| !c.is_empty());
    let mut unified = json!({"spec": {"paused": false}, "status": {"pauseConditions": null}});
    let mut status = None;
    if step_paused {
        status = Some(json!({"status": {"pauseConditions": null}}));
    } else if at(ro, &["spec", "strategy", "canary"]).is_object() && !canary_steps(ro).is_empty() {
        let next = (current_step_index(ro) + 1).min(canary_steps(ro).len());
        status = Some(json!({"status": {"pauseConditions": null, "currentStepIndex": next}}));
        unified["status"]["currentStepIndex"] = json!(next);
    }
    let mut out = Vec::new();
    if let Some(body) = status {
        out.push(VerbPatch { call: PatchCall::status(body), fallback: Some(unified) });
    }
    if user_paused {
        out.push(VerbPatch { call: PatchCall::merge(json!({"spec": {"paused": false}})), fallback: None });
    }
    out
}

/// An Argo Rollout flightdeck observes and commands.
pub struct ArgoRollout {
    client: Client,
    api: Api<DynamicObject>,
    namespace: String,
    rollout: String,
    label: String,
    watch: OnceLock<ObjectWatch>,
}

impl ArgoRollout {
    /// From the plan target: `namespace`, `rollout` and optional `context`.
    pub fn from_target(target: &Target, client: Client) -> Result<ArgoRollout, String> {
        let namespace = param(target, "namespace")?;
        let rollout = param(target, "rollout")?;
        let context = target.params.get("context").map(|c| format!("{c}:")).unwrap_or_default();
        let label = format!("argo-rollouts {context}{namespace}/{rollout}");
        let api = dynamic_api(&client, &namespace, &rollout_resource());
        Ok(ArgoRollout { client, api, namespace, rollout, label, watch: OnceLock::new() })
    }

    /// Starts the watch (idempotent); `observe` reads its store from then on.
    pub fn watch(&self) {
        self.watch.get_or_init(|| {
            let what = resource_name(&rollout_resource(), &self.rollout);
            ObjectWatch::spawn(
                self.api.clone(),
                rollout_resource(),
                &self.rollout,
                format!("{what} in {}", self.namespace),
            )
        });
    }

    /// The running watch, if started.
    pub fn watcher(&self) -> Option<&ObjectWatch> {
        self.watch.get()
    }

    fn site<'a>(&'a self, verb: &'a str) -> CallSite<'a> {
        CallSite { backend: &self.label, verb, namespace: &self.namespace }
    }

    fn what(&self, subresource: Option<&str>) -> String {
        let name = resource_name(&rollout_resource(), &self.rollout);
        subresource.map_or(name.clone(), |s| format!("{name}/{s}"))
    }

    async fn fetch(&self, verb: &str) -> Result<Value, BackendError> {
        let object =
            timed(self.api.get(&self.rollout)).await.map_err(|e| self.site(verb).error("get", &self.what(None), e))?;
        serde_json::to_value(object)
            .map_err(|e| self.site(verb).error("get", &self.what(None), super::CallError::Transport(e.to_string())))
    }

    /// Sends one patch; `Ok(true)` when the `/status` subresource was missing
    /// and the whole-object patch went instead (it covers the spec patch too).
    async fn send(&self, verb: &str, patch: &VerbPatch) -> Result<bool, BackendError> {
        let site = self.site(verb);
        let first = send_patch(&self.api, &self.rollout, &patch.call).await;
        match (first, &patch.fallback) {
            (Ok(()), _) => Ok(false),
            (Err(e), Some(unified)) if e.is_not_found() && patch.call.subresource.is_some() => {
                let call = PatchCall::merge(unified.clone());
                send_patch(&self.api, &self.rollout, &call)
                    .await
                    .map_err(|e| site.error("patch", &self.what(None), e))?;
                Ok(true)
            }
            (Err(e), _) => Err(site.error("patch", &self.what(patch.call.subresource), e)),
        }
    }

    async fn native(&self, verb: NativeVerb) -> Result<(), BackendError> {
        let name = verb_name(verb);
        let object = if needs_object(verb) { self.fetch(name).await? } else { Value::Null };
        let patches = match verb {
            NativeVerb::Undo => self.undo_patch(&object).await?.into_iter().collect(),
            _ => verb_patches(verb, &object),
        };
        for patch in &patches {
            if self.send(name, patch).await? {
                break;
            }
        }
        Ok(())
    }

    /// `kubectl argo rollouts undo`: the previous revision's pod template.
    async fn undo_patch(&self, rollout: &Value) -> Result<Option<VerbPatch>, BackendError> {
        let history = revisions::ROLLOUT;
        let rs = history.find(&self.client, rollout, None).await.map_err(|e| match e {
            HistoryError::Call(e) => self.site("undo").error("list", "replicasets.apps", e),
            HistoryError::NoRevision(detail) => {
                BackendError::Refused { backend: self.label.clone(), action: "undo".into(), detail }
            }
        })?;
        if history.runs(rollout, &rs) {
            return Ok(None);
        }
        let ops = json!([{"op": "replace", "path": "/spec/template", "value": history.template(&rs)}]);
        let patch = serde_json::from_value(ops).map_err(|e| BackendError::Refused {
            backend: self.label.clone(),
            action: "undo".into(),
            detail: e.to_string(),
        })?;
        Ok(Some(VerbPatch { call: PatchCall { subresource: None, patch: Patch::Json(patch) }, fallback: None }))
    }
}

/// The verb as `kubectl argo rollouts` spells it.
pub fn verb_name(verb: NativeVerb) -> &'static str {
    match verb {
        NativeVerb::Promote => "promote",
        NativeVerb::PromoteFull => "promote --full",
        NativeVerb::Abort => "abort",
        NativeVerb::Retry => "retry",
        NativeVerb::Pause => "pause",
        NativeVerb::Resume => "resume",
        NativeVerb::Undo => "undo",
    }
}

#[async_trait]
impl Backend for ArgoRollout {
    fn name(&self) -> String {
        self.label.clone()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        match effect {
            Effect::Native { verb } => self.native(*verb).await,
            Effect::Notify(_) => Ok(()),
            other => Err(BackendError::Unsupported { backend: self.label.clone(), effect: other.to_string() }),
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        if let Some(watch) = self.watch.get() {
            if let Some(trouble) = watch.trouble() {
                let detail =
                    format!("watch of {} in {} interrupted: {trouble}; retrying", self.what(None), self.namespace);
                return Err(BackendError::Unreachable { backend: self.label.clone(), detail });
            }
            if let Some(latest) = watch.latest() {
                let object = serde_json::to_value(&*latest).unwrap_or(Value::Null);
                return Ok(status::observe(&object));
            }
        }
        Ok(status::observe(&self.fetch("observe").await?))
    }
}
