//! Plain Deployments, driven by flightdeck.
//!
//! - Canary and blue-green: two Deployments (stable, canary) behind a
//!   weighted route ([`super::router`]). `SetWeight` and `SwitchActive` set
//!   the route's weights; `Scale` patches a Deployment's `/scale`
//!   subresource (`{"spec":{"replicas":N}}`, as `kubectl scale`).
//! - Rolling (strategy `rolling`, or the same Deployment named twice): the
//!   Deployment's own rolling update, held at each batch boundary. A batch
//!   (`Scale` canary to p %) resumes the Deployment (`kubectl rollout
//!   resume`, strategic merge patch of `spec.paused`) and a hold task reads
//!   it until `status.updatedReplicas` reaches ⌈replicas × p / 100⌉, then
//!   pauses it again (`kubectl rollout pause`); p = 100 resumes it for good,
//!   p = 0 (abort) pauses it where it is. How exact a boundary is: the
//!   controller adds new pods a surge at a time (`maxSurge`, and old ones go
//!   `maxUnavailable` at a time), and a pause stops the *next* surge, not one
//!   in flight; so a batch may end up to one surge past its boundary (never
//!   when `maxSurge` divides the batch size and the hold reads the
//!   Deployment between surges, which it does every [`HOLD_POLL`]). The
//!   split shown is the ReplicaSets' own: ready pods of the newest revision
//!   over all ready pods. The hold's pause carries the resourceVersion it
//!   read (a stale one gets 409 and the hold reads again), and the next
//!   batch or an undo first stops the previous hold and waits for it: a
//!   pause of the last batch cannot land after the next one's resume and
//!   hold the Deployment for good. A batch that makes no progress for the
//!   Deployment's `progressDeadlineSeconds` (600 by default) is paused where
//!   it is and the reason shown as the backend's error.
//!
//!   `Undo` is `kubectl rollout undo` (polymorphichelpers/rollback.go): the
//!   previous revision's ReplicaSet template and annotations, as one JSON
//!   patch. kubectl refuses a paused Deployment; flightdeck does not,
//!   because it holds the Deployment paused itself between batches and a
//!   rollback must always apply. Instead the same patch also sets
//!   `spec.paused` to false, so the undo and the release are one write: if
//!   it fails, nothing changed and the bad template stays held. The plan's
//!   version labels are never taken for revision numbers (`stable = "42"` is
//!   a label): undo goes to the previous revision.

use super::revisions::{self, HistoryError};
use super::router::{RouterKind, Side, Split};
use super::{at, dynamic_api, param, resource_name, send_patch, timed, CallError, CallSite, PatchCall};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use flightdeck_core::plan::params::ParamError;
use flightdeck_core::plan::{Strategy, Target};
use flightdeck_core::rollout::{Effect, Observation, Version};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ApiResource, DynamicObject, Patch};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a batch hold reads the Deployment while it rolls.
pub const HOLD_POLL: Duration = Duration::from_millis(200);

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
    /// Rolling: the task holding the current batch, replaced by the next.
    hold: Mutex<Option<JoinHandle<()>>>,
    /// Rolling: why the last hold failed, shown until the next batch.
    hold_error: Arc<Mutex<Option<String>>>,
}

fn deployments() -> ApiResource {
    ApiResource::erase::<Deployment>(&())
}

impl DeploymentCanary {
    /// From the plan target (see the module doc of [`super`] for the params).
    pub fn from_target(target: &Target, strategy: &Strategy, client: Client) -> Result<DeploymentCanary, ParamError> {
        let namespace = param(target, "namespace")?;
        let stable = param(target, "stable_deployment")?;
        let canary = param(target, "canary_deployment")?;
        let rolling = matches!(strategy, Strategy::Rolling { .. }) || stable == canary;
        let router = if rolling { None } else { Some(router_for(target, &client, &namespace, &stable, &canary)?) };
        let replicas = match target.params.get("replicas") {
            Some(n) => Some(
                n.parse::<i64>().map_err(|_| ParamError::new("replicas", format!("`{n}` is not a whole number")))?,
            ),
            None => None,
        };
        let context = target.params.get("context").map(|c| format!("{c}:")).unwrap_or_default();
        let label = format!("deployment {context}{namespace}/{canary}");
        let api = dynamic_api(&client, &namespace, &deployments());
        Ok(DeploymentCanary {
            client,
            api,
            namespace,
            stable,
            canary,
            router,
            replicas: Mutex::new(replicas),
            label,
            hold: Mutex::new(None),
            hold_error: Arc::default(),
        })
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
            return self.batch(&verb, percent).await;
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
    /// `kubectl rollout pause|resume deployment/<name>` byte for byte:
    /// objectpauser.go's patch sets `paused: true`; objectresumer.go's is the
    /// strategic merge diff of a Deployment whose `paused` went to false (and
    /// so out of the JSON), which is `{"spec":{"paused":null}}`.
    async fn set_paused(&self, verb: &str, name: &str, paused: bool) -> Result<(), BackendError> {
        let value = if paused { json!(true) } else { Value::Null };
        let call = PatchCall { subresource: None, patch: Patch::Strategic(json!({"spec": {"paused": value}})) };
        self.patch(verb, name, call).await
    }

    /// Stops the hold of the previous batch and waits until it has: a
    /// pause it sends after this would land after the next resume. (One
    /// already on the wire carries the resourceVersion it read, so the API
    /// server refuses it once the resume has changed the Deployment.)
    async fn stop_hold(&self) {
        let previous = self.hold.lock().ok().and_then(|mut h| h.take());
        if let Some(previous) = previous {
            previous.abort();
            let _ = previous.await;
        }
    }

    /// Rolling: let the controller roll to `percent` % of the replicas and
    /// hold it there (see the module doc).
    async fn batch(&self, verb: &str, percent: u8) -> Result<(), BackendError> {
        self.stop_hold().await;
        if let Ok(mut e) = self.hold_error.lock() {
            *e = None;
        }
        if percent == 0 || percent >= 100 {
            return self.set_paused(verb, &self.canary, percent == 0).await;
        }
        let deployment = self.fetch(verb, &self.canary).await?;
        let boundary = batch_boundary(&deployment, percent);
        if updated_replicas(&deployment) >= boundary {
            // Already there (a resumed run, a batch re-applied): just hold.
            return self.set_paused(verb, &self.canary, true).await;
        }
        self.set_paused(verb, &self.canary, false).await?;
        let hold = BatchHold {
            api: self.api.clone(),
            name: self.canary.clone(),
            boundary,
            site: format!("{verb} (hold deployments.apps/{} in {})", self.canary, self.namespace),
            error: self.hold_error.clone(),
        };
        if let Ok(mut h) = self.hold.lock() {
            *h = Some(tokio::spawn(hold.run()));
        }
        Ok(())
    }

    /// `kubectl rollout undo deployment/<canary>`: the previous revision.
    async fn undo(&self, to_revision: Option<i64>) -> Result<(), BackendError> {
        let verb = to_revision.map_or("undo".to_owned(), |n| format!("undo --to-revision={n}"));
        self.stop_hold().await;
        let deployment = self.fetch(&verb, &self.canary).await?;
        let history = revisions::DEPLOYMENT;
        let rs = history.find(&self.client, &deployment, to_revision).await.map_err(|e| match e {
            HistoryError::Call(e) => self.site(&verb).error("list", "replicasets.apps", e),
            HistoryError::NoRevision(detail) => {
                BackendError::Refused { backend: self.label.clone(), action: verb.clone(), detail }
            }
        })?;
        let paused = at(&deployment, &["spec", "paused"]).as_bool().unwrap_or(false);
        if history.runs(&deployment, &rs) && !paused {
            return Ok(());
        }
        let patch = serde_json::from_value(undo_ops(&deployment, &rs)).map_err(|e| BackendError::Refused {
            backend: self.label.clone(),
            action: verb.clone(),
            detail: e.to_string(),
        })?;
        self.patch(&verb, &self.canary, PatchCall { subresource: None, patch: Patch::Json(patch) }).await
    }

    /// Rolling: the split the ReplicaSets show (newest revision's ready pods
    /// over all ready pods), or `None` before any pod is ready.
    async fn rolling_split(&self, site: &CallSite<'_>) -> Result<Option<u8>, BackendError> {
        let deployment = self.fetch("observe", &self.canary).await?;
        let owned = revisions::DEPLOYMENT
            .owned(&self.client, &deployment)
            .await
            .map_err(|e| site.error("list", "replicasets.apps", e))?;
        Ok(split(&owned))
    }
}

/// kubectl rollback.go's JSON patch (template, then annotations), plus the
/// release of a paused Deployment in the same write.
pub fn undo_ops(deployment: &Value, rs: &Value) -> Value {
    let mut ops = vec![
        json!({"op": "replace", "path": "/spec/template", "value": revisions::DEPLOYMENT.template(rs)}),
        json!({"op": "replace", "path": "/metadata/annotations", "value": undo_annotations(deployment, rs)}),
    ];
    if at(deployment, &["spec", "paused"]).as_bool().unwrap_or(false) {
        ops.push(json!({"op": "replace", "path": "/spec/paused", "value": false}));
    }
    Value::Array(ops)
}

/// ⌈replicas × percent / 100⌉ new pods: the batch's boundary.
pub fn batch_boundary(deployment: &Value, percent: u8) -> i64 {
    let desired = at(deployment, &["spec", "replicas"]).as_i64().unwrap_or(1);
    (desired * i64::from(percent.min(100)) + 99) / 100
}

fn updated_replicas(deployment: &Value) -> i64 {
    at(deployment, &["status", "updatedReplicas"]).as_i64().unwrap_or(0)
}

/// Ready pods of the newest ReplicaSet over all ready pods, in percent.
pub fn split(replica_sets: &[Value]) -> Option<u8> {
    let ready = |rs: &Value| at(rs, &["status", "readyReplicas"]).as_u64().unwrap_or(0);
    let newest = replica_sets.iter().max_by_key(|rs| revisions::DEPLOYMENT.revision(rs).unwrap_or(-1))?;
    let total: u64 = replica_sets.iter().map(ready).sum();
    (total > 0).then(|| ((ready(newest) * 100 + total / 2) / total) as u8)
}

/// The Deployment's `spec.progressDeadlineSeconds` (600 when unset): how
/// long a batch may make no progress before its hold gives up.
pub fn progress_deadline(deployment: &Value) -> Duration {
    let seconds = at(deployment, &["spec", "progressDeadlineSeconds"]).as_u64().unwrap_or(600);
    Duration::from_secs(seconds)
}

/// Reads the Deployment until the batch boundary is reached, then pauses it.
struct BatchHold {
    api: Api<DynamicObject>,
    name: String,
    boundary: i64,
    site: String,
    error: Arc<Mutex<Option<String>>>,
}

impl BatchHold {
    fn show(&self, trouble: Option<String>) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = trouble;
        }
    }

    /// Polls every [`HOLD_POLL`] until the boundary, then pauses the
    /// Deployment with the resourceVersion just read: a pause that would
    /// land after someone else's write (the next batch's resume) is refused
    /// with 409 instead of pausing that batch for good; the hold reads
    /// again and decides again. A batch that makes no progress for the
    /// Deployment's progress deadline is paused where it is, and says so.
    async fn run(self) {
        let mut progress = (-1, tokio::time::Instant::now());
        loop {
            let read = timed(self.api.get(&self.name)).await.map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
            let deployment = match read {
                Ok(d) => d,
                Err(e) => {
                    // Keep trying: a rollout that does not hold must be seen, and
                    // the hold must still happen once the API answers.
                    self.show(Some(format!("{}: {}", self.site, e.text())));
                    tokio::time::sleep(HOLD_POLL).await;
                    continue;
                }
            };
            let updated = updated_replicas(&deployment);
            if updated > progress.0 {
                progress = (updated, tokio::time::Instant::now());
            }
            let deadline = progress_deadline(&deployment);
            let stuck = progress.1.elapsed() >= deadline;
            if updated < self.boundary && !stuck {
                tokio::time::sleep(HOLD_POLL).await;
                continue;
            }
            // objectpauser.go's patch, with the version read as a precondition.
            let version = at(&deployment, &["metadata", "resourceVersion"]).clone();
            let body = json!({"metadata": {"resourceVersion": version}, "spec": {"paused": true}});
            let pause = PatchCall { subresource: None, patch: Patch::Strategic(body) };
            match send_patch(&self.api, &self.name, &pause).await {
                Ok(()) if stuck => {
                    let trouble = format!(
                        "{}: no progress for {} s (the Deployment's progressDeadlineSeconds) at {updated} of {} \
                         updated replicas; paused where it is",
                        self.site,
                        deadline.as_secs(),
                        self.boundary
                    );
                    self.show(Some(trouble));
                    return;
                }
                Ok(()) => {
                    self.show(None);
                    return;
                }
                // Changed since the read (the controller's status, a person): read again.
                Err(CallError::Api { code: 409, .. }) => continue,
                Err(e) => {
                    self.show(Some(format!("{}: {}", self.site, e.text())));
                    tokio::time::sleep(HOLD_POLL).await;
                }
            }
        }
    }
}

impl Drop for DeploymentCanary {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.lock().ok().and_then(|mut h| h.take()) {
            hold.abort();
        }
    }
}

fn router_for(
    target: &Target,
    client: &Client,
    namespace: &str,
    stable: &str,
    canary: &str,
) -> Result<super::router::Router, ParamError> {
    let kind = RouterKind::parse(target.params.get("router").map_or("gateway", String::as_str))?;
    let route = target.params.get("route").cloned().ok_or_else(|| {
        ParamError::new("route", "a canary over two Deployments needs the HTTPRoute or VirtualService name")
    })?;
    let side = |which: &str, default: &str| -> Result<Side, ParamError> {
        let key = format!("{which}_port");
        let port = match target.params.get(&key) {
            Some(p) => {
                Some(p.trim().parse::<u64>().map_err(|_| ParamError::new(&key, format!("{p:?} is not a port")))?)
            }
            None => None,
        };
        Ok(Side {
            service: target.params.get(&format!("{which}_service")).cloned().unwrap_or_else(|| default.to_owned()),
            subset: target.params.get(&format!("{which}_subset")).cloned(),
            port,
        })
    };
    let rules = target.params.get("route_rules").map_or_else(Vec::new, |names| {
        names.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect()
    });
    let domain = target.params.get("cluster_domain").cloned().unwrap_or_else(|| "cluster.local".to_owned());
    let split = Split { stable: side("stable", stable)?, canary: side("canary", canary)?, rules, domain };
    Ok(super::router::Router::new(client, namespace, kind, route, split))
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
            // `to_revision` is the plan's stable version label, not a
            // revision number: undo goes to the previous revision.
            Effect::Undo { .. } => self.undo(None).await,
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
            None => {
                if let Some(trouble) = self.hold_error.lock().ok().and_then(|e| e.clone()) {
                    return Err(BackendError::Unreachable { backend: self.label.clone(), detail: trouble });
                }
                let canary_weight = self.rolling_split(&self.site("observe")).await?;
                Ok(Observation { canary_weight, ..Default::default() })
            }
        }
    }
}
