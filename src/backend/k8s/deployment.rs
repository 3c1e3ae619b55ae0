//! Plain Deployments, driven by flightdeck.
//!
//! - Canary and blue-green: two Deployments (stable, canary) behind a
//!   weighted route ([`super::router`]). `SetWeight` and `SwitchActive` set
//!   the route's weights; `Scale` patches a Deployment's `/scale`
//!   subresource (`{"spec":{"replicas":N}}`, as `kubectl scale`).
//! - Rolling (strategy `rolling`, or the same Deployment named twice): the
//!   Deployment's own rolling update, held and released like `kubectl
//!   rollout pause|resume` (strategic merge patch of `spec.paused`): a batch
//!   (`Scale` canary > 0) resumes it, `Scale` canary 0 (abort) pauses it.
//!   `Undo` is `kubectl rollout undo`: the previous (or the numbered)
//!   revision's ReplicaSet template and annotations, as one JSON patch.
//!   kubectl refuses to undo a paused Deployment; flightdeck resumes it first
//!   because its own abort paused it. Start such a rollout with the
//!   Deployment paused and its new template already set (`kubectl rollout
//!   pause`, then `kubectl set image`): the first batch resumes it.

use super::revisions::{self, HistoryError};
use super::router::{RouterKind, Side};
use super::{at, dynamic_api, param, resource_name, send_patch, timed, CallSite, PatchCall};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use flightdeck_core::plan::{Strategy, Target};
use flightdeck_core::rollout::{Effect, Observation, Version};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ApiResource, DynamicObject, Patch};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::sync::Mutex;

/// Annotations `kubectl rollout undo` keeps from the Deployment instead of
/// copying them from the ReplicaSet.
const KEPT_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Stable and canary Deployments (or one rolling Deployment).
pub struct DeploymentCanary {
    client: Client,
    api: Api<DynamicObject>,
    namespace: String,
    stable: String,
    canary: String,
    router: Option<super::router::Router>,
    /// Replicas a side runs at 100 %: the `replicas` param, or learned from
    /// the stable Deployment the first time something is scaled.
    replicas: Mutex<Option<i64>>,
    label: String,
}

fn deployments() -> ApiResource {
    ApiResource::erase::<Deployment>(&())
}

impl DeploymentCanary {
    /// From the plan target (see the module doc of [`super`] for the params).
    pub fn from_target(target: &Target, strategy: &Strategy, client: Client) -> Result<DeploymentCanary, String> {
        let namespace = param(target, "namespace")?;
        let stable = param(target, "stable_deployment")?;
        let canary = param(target, "canary_deployment")?;
        let rolling = matches!(strategy, Strategy::Rolling { .. }) || stable == canary;
        let router = if rolling { None } else { Some(router_for(target, &client, &namespace, &stable, &canary)?) };
        let replicas = match target.params.get("replicas") {
            Some(n) => Some(n.parse::<i64>().map_err(|_| format!("target.replicas: `{n}` is not a whole number"))?),
            None => None,
        };
        let context = target.params.get("context").map(|c| format!("{c}:")).unwrap_or_default();
        let label = format!("deployment {context}{namespace}/{canary}");
        let api = dynamic_api(&client, &namespace, &deployments());
        Ok(DeploymentCanary { client, api, namespace, stable, canary, router, replicas: Mutex::new(replicas), label })
    }

    fn site<'a>(&'a self, verb: &'a str) -> CallSite<'a> {
        CallSite { backend: &self.label, verb, namespace: &self.namespace }
    }

    fn what(&self, name: &str) -> String {
        resource_name(&deployments(), name)
    }

    fn router(&self, effect: &Effect) -> Result<&super::router::Router, BackendError> {
        self.router.as_ref().ok_or_else(|| BackendError::Unsupported {
            backend: self.label.clone(),
            effect: format!("{effect} (a rolling update has no traffic split)"),
        })
    }

    async fn fetch(&self, verb: &str, name: &str) -> Result<Value, BackendError> {
        let object = timed(self.api.get(name)).await.map_err(|e| self.site(verb).error("get", &self.what(name), e))?;
        Ok(serde_json::to_value(object).unwrap_or(Value::Null))
    }

    async fn patch(&self, verb: &str, name: &str, call: PatchCall) -> Result<(), BackendError> {
        let what = call.subresource.map_or(self.what(name), |s| format!("{}/{s}", self.what(name)));
        send_patch(&self.api, name, &call).await.map_err(|e| self.site(verb).error("patch", &what, e))
    }

    async fn desired_replicas(&self, verb: &str) -> Result<i64, BackendError> {
        if let Some(n) = self.replicas.lock().ok().and_then(|r| *r) {
            return Ok(n);
        }
        let stable = self.fetch(verb, &self.stable).await?;
        let n = at(&stable, &["spec", "replicas"]).as_i64().unwrap_or(1);
        if let Ok(mut cached) = self.replicas.lock() {
            *cached = Some(n);
        }
        Ok(n)
    }

    async fn scale(&self, effect: &Effect, version: Version, percent: u8) -> Result<(), BackendError> {
        let verb = effect.to_string();
        if self.router.is_none() {
            // Rolling: a batch lets the Deployment controller go on; 0 holds it.
            return self.set_paused(&verb, &self.canary, percent == 0).await;
        }
        let desired = self.desired_replicas(&verb).await?;
        let replicas = (desired * i64::from(percent.min(100)) + 99) / 100;
        let name = match version {
            Version::Stable => &self.stable,
            Version::Canary => &self.canary,
        };
        let call =
            PatchCall { subresource: Some("scale"), patch: Patch::Merge(json!({"spec": {"replicas": replicas}})) };
        self.patch(&verb, name, call).await
    }

    /// `kubectl rollout pause|resume deployment/<name>`.
    async fn set_paused(&self, verb: &str, name: &str, paused: bool) -> Result<(), BackendError> {
        let call = PatchCall { subresource: None, patch: Patch::Strategic(json!({"spec": {"paused": paused}})) };
        self.patch(verb, name, call).await
    }

    /// `kubectl rollout undo deployment/<canary> [--to-revision=N]`.
    async fn undo(&self, to_revision: &str) -> Result<(), BackendError> {
        let verb = format!("undo to {to_revision}");
        let deployment = self.fetch(&verb, &self.canary).await?;
        let numbered = to_revision.trim_start_matches('r').parse::<i64>().ok();
        let history = revisions::DEPLOYMENT;
        let rs = history.find(&self.client, &deployment, numbered).await.map_err(|e| match e {
            HistoryError::Call(e) => self.site(&verb).error("list", "replicasets.apps", e),
            HistoryError::NoRevision(detail) => {
                BackendError::Refused { backend: self.label.clone(), action: verb.clone(), detail }
            }
        })?;
        if history.runs(&deployment, &rs) {
            return Ok(());
        }
        if at(&deployment, &["spec", "paused"]).as_bool().unwrap_or(false) {
            self.set_paused(&verb, &self.canary, false).await?;
        }
        let ops = json!([
            {"op": "replace", "path": "/spec/template", "value": history.template(&rs)},
            {"op": "replace", "path": "/metadata/annotations", "value": undo_annotations(&deployment, &rs)},
        ]);
        let patch = serde_json::from_value(ops).map_err(|e| BackendError::Refused {
            backend: self.label.clone(),
            action: verb.clone(),
            detail: e.to_string(),
        })?;
        self.patch(&verb, &self.canary, PatchCall { subresource: None, patch: Patch::Json(patch) }).await
    }
}

fn router_for(
    target: &Target,
    client: &Client,
    namespace: &str,
    stable: &str,
    canary: &str,
) -> Result<super::router::Router, String> {
    let kind = RouterKind::parse(target.params.get("router").map_or("gateway", String::as_str))?;
    let route = target.params.get("route").cloned().ok_or_else(|| {
        "target.route: a canary over two Deployments needs the HTTPRoute or VirtualService name".to_owned()
    })?;
    let side = |service: &str, default: &str, subset: &str| Side {
        service: target.params.get(service).cloned().unwrap_or_else(|| default.to_owned()),
        subset: target.params.get(subset).cloned(),
    };
    let stable = side("stable_service", stable, "stable_subset");
    let canary = side("canary_service", canary, "canary_subset");
    Ok(super::router::Router::new(client, namespace, kind, route, stable, canary))
}

/// The Deployment's own bookkeeping annotations plus the ReplicaSet's others.
fn undo_annotations(deployment: &Value, rs: &Value) -> Value {
    let mut out = serde_json::Map::new();
    let own = at(deployment, &["metadata", "annotations"]).as_object().cloned().unwrap_or_default();
    for (k, v) in own.iter().filter(|(k, _)| KEPT_ANNOTATIONS.contains(&k.as_str())) {
        out.insert(k.clone(), v.clone());
    }
    let from_rs = at(rs, &["metadata", "annotations"]).as_object().cloned().unwrap_or_default();
    for (k, v) in from_rs.into_iter().filter(|(k, _)| !KEPT_ANNOTATIONS.contains(&k.as_str())) {
        out.insert(k, v);
    }
    Value::Object(out)
}

#[async_trait]
impl Backend for DeploymentCanary {
    fn name(&self) -> String {
        self.label.clone()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        let verb = effect.to_string();
        match effect {
            Effect::SetWeight { canary } => self.router(effect)?.set_weight(&self.site(&verb), *canary).await,
            Effect::SwitchActive { to } => {
                let weight = if *to == Version::Canary { 100 } else { 0 };
                self.router(effect)?.set_weight(&self.site(&verb), weight).await
            }
            Effect::Scale { version, percent } => self.scale(effect, *version, *percent).await,
            Effect::Undo { to_revision } => self.undo(to_revision).await,
            Effect::Notify(_) => Ok(()),
            Effect::Native { .. } => Err(BackendError::Unsupported { backend: self.label.clone(), effect: verb }),
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        match &self.router {
            Some(router) => {
                let canary_weight = router.canary_weight(&self.site("observe")).await?;
                Ok(Observation { canary_weight, ..Default::default() })
            }
            // A rolling update has no traffic weight; reading the Deployment
            // still tells the cockpit whether the cluster answers.
            None => self.fetch("observe", &self.canary).await.map(|_| Observation::default()),
        }
    }
}
