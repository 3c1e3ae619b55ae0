//! Argo Rollouts (`argoproj.io/v1alpha1` Rollout): flightdeck observes the
//! controller and commands it with the patches `kubectl argo rollouts` sends
//! (pkg/kubectl-argo-rollouts/cmd/{promote,abort,retry,pause,undo}):
//!
//! | verb | request |
//! |---|---|
//! | promote | GET, then on `/status`: `{"status":{"pauseConditions":null,"controllerPause":false,"currentStepIndex":N+1}}` after an Inconclusive step analysis paused it, `{"status":{"pauseConditions":null}}` when paused by a step, `{"status":{"pauseConditions":null,"currentStepIndex":N+1}}` when not paused at all (canary with steps); and `{"spec":{"paused":false}}` when paused by a user. Refused (nothing sent) while an analysis step runs unpaused: the plugin would skip it, and a second captain's promote of the same pause lands there ([`promote_refusal`]) |
//! | promote-full | GET, then `{"status":{"promoteFull":true}}` on `/status` (nothing when already fully promoted), and `{"spec":{"paused":false}}` when paused by a user (upstream #4412) |
//! | abort | `{"status":{"abort":true}}` on `/status` |
//! | retry | `{"status":{"abort":false}}` on `/status` |
//! | pause | `{"spec":{"paused":true}}` |
//! | resume | `{"spec":{"paused":false}}`: the unpause half of promote. The plugin has had no `resume` verb since v0.6 (promote resumes); the core refuses a resume of a rollout held by a pause step ("paused by step N: promote to continue") |
//! | restart | `{"spec":{"restartAt":"<now, RFC 3339>"}}` (restart.go) |
//! | set image | GET, then PUT of the Rollout (or its `workloadRef` Deployment) with the container's image changed (set_image.go), again on 409 up to 5 times |
//! | undo --to-revision=N | as undo, with revision N's template |
//! | terminate analysisrun | `{"spec":{"terminate":true}}` on the running AnalysisRun (terminate.go): the current step's, else the background one |
//! | undo | GET, list the Rollout's ReplicaSets, JSON patch `replace /spec/template` with the previous revision's template, on the Rollout or on its `workloadRef` (Deployment, ReplicaSet, PodTemplate) as undo.go |
//!
//! All merge patches (`application/merge-patch+json`) except undo
//! (`application/json-patch+json`). Like the plugin, a `/status` patch that
//! answers 404 (Argo before 0.10 had no status subresource) is replaced by
//! one patch of the whole object that carries the spec change too.

use super::followed::Followed;
use super::revisions::{self, HistoryError};
use super::status::{self, canary_steps, current_step_index, fully_promoted};
use super::tree::Owned;
use super::watch::ObjectWatch;
use super::{at, dynamic_api, resource_name, send_patch, timed, CallError, CallSite, PatchCall};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use flightdeck_core::plan::params::ParamError;
use flightdeck_core::plan::Target;
use flightdeck_core::rollout::{Effect, NativeVerb, Observation};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PostParams};
use kube::Client;
use serde_json::{json, Value};

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
pub fn needs_object(verb: &NativeVerb) -> bool {
    !matches!(
        verb,
        NativeVerb::Abort | NativeVerb::Retry | NativeVerb::Pause | NativeVerb::Resume | NativeVerb::Restart
    )
}

/// The patches `kubectl argo rollouts <verb>` sends for this Rollout, in
/// order. Undo is not here: it needs the ReplicaSets ([`ArgoRollout`] does it).
pub fn verb_patches(verb: &NativeVerb, rollout: &Value) -> Vec<VerbPatch> {
    let status = |body: Value| VerbPatch { fallback: Some(body.clone()), call: PatchCall::status(body) };
    let spec = |body: Value| VerbPatch { fallback: None, call: PatchCall::merge(body) };
    match verb {
        NativeVerb::Promote => promote(rollout),
        NativeVerb::PromoteFull => promote_full(rollout),
        NativeVerb::Abort => vec![status(json!({"status": {"abort": true}}))],
        NativeVerb::Retry => vec![status(json!({"status": {"abort": false}}))],
        NativeVerb::Pause => vec![spec(json!({"spec": {"paused": true}}))],
        NativeVerb::Resume => vec![spec(json!({"spec": {"paused": false}}))],
        // restart.go: `{"spec":{"restartAt":"<RFC 3339>"}}`, now (no --in).
        NativeVerb::Restart => vec![spec(json!({"spec": {"restartAt": restart_at()}}))],
        // These need more than one object ([`ArgoRollout`] does them).
        NativeVerb::Undo | NativeVerb::UndoTo { .. } | NativeVerb::SetImage { .. } | NativeVerb::TerminateAnalysis => {
            Vec::new()
        }
    }
}

/// Now in Go's `time.RFC3339` (UTC, whole seconds), as restart.go writes it.
pub fn restart_at() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status patch, then the spec patch, as promote.go's `PromoteRollout`:
/// when `/status` answers 404 the unified patch goes instead of both.
fn status_then_spec(status: Option<Value>, spec: Option<Value>, unified: Value) -> Vec<VerbPatch> {
    let mut out: Vec<VerbPatch> = status
        .into_iter()
        .map(|body| VerbPatch { call: PatchCall::status(body), fallback: Some(unified.clone()) })
        .collect();
    out.extend(spec.map(|body| VerbPatch { call: PatchCall::merge(body), fallback: None }));
    out
}

fn user_paused(ro: &Value) -> bool {
    at(ro, &["spec", "paused"]).as_bool().unwrap_or(false)
}

/// promote.go `getPatches`, default case: clear the pause conditions, or
/// (canary, not paused by a step) skip to the next step; unpause a user's
/// pause. After an Inconclusive step analysis the controller also holds
/// `controllerPause`: it is cleared and the step moves on, or the rollout
/// "will be stuck" (the plugin's words) when the next step is a pause.
fn promote(ro: &Value) -> Vec<VerbPatch> {
    let spec = user_paused(ro).then(|| json!({"spec": {"paused": false}}));
    let step_paused = at(ro, &["status", "pauseConditions"]).as_array().is_some_and(|c| !c.is_empty());
    let steps = canary_steps(ro).len();
    let next = (current_step_index(ro) + 1).min(steps);
    let with_steps = at(ro, &["spec", "strategy", "canary"]).is_object() && steps > 0;
    let mut unified = json!({"spec": {"paused": false}, "status": {"pauseConditions": null}});
    let status = if inconclusive(ro) && step_paused && controller_paused(ro) {
        // GetCurrentCanaryStep gives no index without steps: nothing to move.
        with_steps
            .then(|| json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": next}}))
    } else if step_paused {
        Some(json!({"status": {"pauseConditions": null}}))
    } else if with_steps {
        unified["status"]["currentStepIndex"] = json!(next);
        Some(json!({"status": {"pauseConditions": null, "currentStepIndex": next}}))
    } else {
        None
    };
    status_then_spec(status, spec, unified)
}

/// Why a promote is not sent: the Rollout runs an analysis step, not
/// paused. promote.go would skip that step (`currentStepIndex` + 1), and
/// `currentStepIndex` moves from a pause step to an analysis step without
/// the weight changing, so a second captain's promote of the same pause
/// (not stale to the core: same revision, same weight stage) would skip
/// the analysis the first one started. The analysis passes or fails by
/// itself; terminate-analysis or promote-full skip it on purpose.
pub fn promote_refusal(ro: &Value) -> Option<String> {
    let steps = canary_steps(ro);
    let index = current_step_index(ro);
    let paused = user_paused(ro) || at(ro, &["status", "pauseConditions"]).as_array().is_some_and(|c| !c.is_empty());
    let aborted = at(ro, &["status", "abort"]).as_bool().unwrap_or(false);
    let analysis = steps.get(index).is_some_and(|s| s["analysis"].is_object());
    (analysis && !paused && !aborted).then(|| {
        format!(
            "step {}/{} is an analysis step and it runs: a promote would skip it; it passes or fails by itself \
             (terminate-analysis or promote-full skip it on purpose)",
            index + 1,
            steps.len()
        )
    })
}

/// promote.go, `--full`: `promoteFull` on `/status` unless the stable
/// ReplicaSet already runs the current template, and a user's pause lifted
/// too (upstream #4412: otherwise the rollout stays paused).
fn promote_full(ro: &Value) -> Vec<VerbPatch> {
    let status = (!fully_promoted(ro)).then(|| json!({"status": {"promoteFull": true}}));
    let spec = user_paused(ro).then(|| json!({"spec": {"paused": false}}));
    let mut unified = json!({"status": {"promoteFull": true}});
    if spec.is_some() {
        unified["spec"] = json!({"paused": false});
    }
    status_then_spec(status, spec, unified)
}

/// promote.go `isInconclusive`: the current step analysis ended Inconclusive.
fn inconclusive(ro: &Value) -> bool {
    let run = at(ro, &["status", "canary", "currentStepAnalysisRunStatus", "status"]);
    at(ro, &["spec", "strategy", "canary"]).is_object() && run.as_str() == Some("Inconclusive")
}

fn controller_paused(ro: &Value) -> bool {
    at(ro, &["status", "controllerPause"]).as_bool().unwrap_or(false)
}

/// An Argo Rollout flightdeck observes and commands.
pub struct ArgoRollout {
    object: Followed,
    /// Watches of its ReplicaSets, pods, AnalysisRuns and Experiments, from its first reading.
    owned: std::sync::OnceLock<OwnedWatches>,
}

impl ArgoRollout {
    /// From the plan target: `namespace`, `rollout` and optional `context`.
    pub fn from_target(target: &Target, client: Client) -> Result<ArgoRollout, ParamError> {
        Ok(ArgoRollout {
            object: Followed::from_target(target, client, "argo-rollouts", "rollout", rollout_resource())?,
            owned: std::sync::OnceLock::new(),
        })
    }

    /// Starts the watch (idempotent); `observe` reads its store from then on.
    pub fn watch(&self) {
        self.object.watch();
    }

    /// The running watch, if started.
    pub fn watcher(&self) -> Option<&ObjectWatch> {
        self.object.watcher()
    }

    fn site<'a>(&'a self, verb: &'a str) -> CallSite<'a> {
        self.object.site(verb)
    }

    fn what(&self, subresource: Option<&str>) -> String {
        let name = self.object.what();
        subresource.map_or(name.clone(), |s| format!("{name}/{s}"))
    }

    async fn fetch(&self, verb: &str) -> Result<Value, BackendError> {
        self.object.fetch(verb).await
    }

    /// Sends one patch; `Ok(true)` when the `/status` subresource was missing
    /// and the whole-object patch went instead (it covers the spec patch too).
    async fn send(&self, verb: &str, patch: &VerbPatch) -> Result<bool, BackendError> {
        let site = self.site(verb);
        let first = send_patch(&self.object.api, &self.object.name, &patch.call).await;
        match (first, &patch.fallback) {
            (Ok(()), _) => Ok(false),
            (Err(e), Some(unified)) if e.is_not_found() && patch.call.subresource.is_some() => {
                let call = PatchCall::merge(unified.clone());
                send_patch(&self.object.api, &self.object.name, &call)
                    .await
                    .map_err(|e| site.error("patch", &self.what(None), e))?;
                Ok(true)
            }
            (Err(e), _) => Err(site.error("patch", &self.what(patch.call.subresource), e)),
        }
    }

    async fn native(&self, verb: &NativeVerb) -> Result<(), BackendError> {
        let name = verb_name(verb);
        let object = if needs_object(verb) { self.fetch(&name).await? } else { Value::Null };
        match verb {
            NativeVerb::Undo => return self.undo(&object, None).await,
            NativeVerb::UndoTo { revision } => return self.undo(&object, Some(*revision as i64)).await,
            NativeVerb::SetImage { container, image } => return self.set_image(&object, container, image).await,
            NativeVerb::TerminateAnalysis => return self.terminate_analysis(&object).await,
            _ => {}
        }
        if let (NativeVerb::Promote, Some(reason)) = (verb, promote_refusal(&object)) {
            return Err(BackendError::Unsupported {
                backend: self.object.label.clone(),
                effect: format!("{name} ({reason})"),
            });
        }
        for patch in &verb_patches(verb, &object) {
            if self.send(&name, patch).await? {
                break;
            }
        }
        Ok(())
    }

    /// `kubectl argo rollouts set image ROLLOUT container=image` (set_image.go):
    /// the Rollout, or the Deployment its `workloadRef` names, read, its
    /// containers (init, app, ephemeral; `*` for all) given the image, and
    /// written back whole (PUT), again on a 409 Conflict up to 5 times.
    async fn set_image(&self, rollout: &Value, container: &str, image: &str) -> Result<(), BackendError> {
        let verb = format!("set image {container}={image}");
        let workload = at(rollout, &["spec", "workloadRef", "name"]).as_str();
        let (api, name, resource) = match workload {
            Some(name) => {
                let resource = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
                (dynamic_api(&self.object.client, &self.object.namespace, &resource), name.to_owned(), resource)
            }
            None => (self.object.api.clone(), self.object.name.clone(), rollout_resource()),
        };
        let what = resource_name(&resource, &name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = timed(api.get(&name)).await.map_err(|e| self.site(&verb).error("get", &what, e))?;
            let mut object = serde_json::to_value(current).unwrap_or(Value::Null);
            if !with_image(&mut object, container, image) {
                let detail = format!("unable to find container named \"{container}\"");
                return Err(BackendError::Refused { backend: self.object.label.clone(), action: verb, detail });
            }
            let object: DynamicObject = serde_json::from_value(object).map_err(|e| BackendError::Refused {
                backend: self.object.label.clone(),
                action: verb.clone(),
                detail: e.to_string(),
            })?;
            let params = PostParams { field_manager: Some(super::FIELD_MANAGER.to_owned()), ..Default::default() };
            match timed(api.replace(&name, &params, &object)).await {
                Ok(_) => return Ok(()),
                Err(CallError::Api { code: 409, .. }) if attempt < SET_IMAGE_ATTEMPTS => continue,
                Err(e) => return Err(self.site(&verb).error("update", &what, e)),
            }
        }
    }

    /// `kubectl argo rollouts terminate analysisrun NAME` for the Rollout's
    /// running analysis: the step analysis if one runs, else the background one.
    async fn terminate_analysis(&self, rollout: &Value) -> Result<(), BackendError> {
        let verb = "terminate analysisrun";
        let Some(run) = running_analysis(rollout) else {
            let detail = "no AnalysisRun of this Rollout is running".to_owned();
            return Err(BackendError::Refused { backend: self.object.label.clone(), action: verb.into(), detail });
        };
        let api = dynamic_api(&self.object.client, &self.object.namespace, &analysis_run_resource());
        send_patch(&api, &run, &PatchCall::merge(json!({"spec": {"terminate": true}})))
            .await
            .map_err(|e| self.site(verb).error("patch", &resource_name(&analysis_run_resource(), &run), e))
    }

    /// `kubectl argo rollouts undo [--to-revision=N]` (undo.go): the chosen
    /// revision's pod template, patched into the Rollout or, for a Rollout
    /// with a `workloadRef`, into the Deployment, ReplicaSet or PodTemplate
    /// it references. Nothing is sent when the template already matches.
    async fn undo(&self, rollout: &Value, to_revision: Option<i64>) -> Result<(), BackendError> {
        let verb = to_revision.map_or("undo".to_owned(), |n| format!("undo --to-revision={n}"));
        let refused =
            |detail: String| BackendError::Refused { backend: self.object.label.clone(), action: verb.clone(), detail };
        let history = revisions::ROLLOUT;
        let rs = history.find(&self.object.client, rollout, to_revision).await.map_err(|e| match e {
            HistoryError::Call(e) => self.site(&verb).error("list", "replicasets.apps", e),
            HistoryError::NoRevision(detail) => refused(detail),
        })?;
        if history.runs(rollout, &rs) {
            return Ok(());
        }
        let target = undo_target(rollout).map_err(&refused)?;
        let ops = json!([{"op": "replace", "path": target.path, "value": history.template(&rs)}]);
        let patch = serde_json::from_value(ops).map_err(|e| refused(e.to_string()))?;
        let call = PatchCall { subresource: None, patch: Patch::Json(patch) };
        let api = dynamic_api(&self.object.client, &self.object.namespace, &target.resource);
        send_patch(&api, &target.name, &call)
            .await
            .map_err(|e| self.site(&verb).error("patch", &resource_name(&target.resource, &target.name), e))
    }
}

impl ArgoRollout {
    /// What the Rollout owns, from watches started at its first reading
    /// (the plugin's `get rollout --watch` informers): its ReplicaSets and
    /// pods by its selector, the namespace's AnalysisRuns and Experiments;
    /// info.go keeps those owned by the Rollout (by uid). A watch in trouble is said in
    /// the tree; what the others hold is still shown.
    fn owned(&self, rollout: &Value) -> Owned {
        let watches = self.owned.get_or_init(|| OwnedWatches::spawn(&self.object, rollout));
        let mut owned = Owned::default();
        let read = |watch: &ObjectWatch, what: &str, trouble: &mut Vec<String>| {
            if let Some(t) = watch.trouble() {
                trouble.push(format!("{what}: {t}"));
            }
            watch.all().map(|all| all.iter().filter_map(|o| serde_json::to_value(&**o).ok()).collect::<Vec<_>>())
        };
        owned.replica_sets = read(&watches.replica_sets, "replicasets", &mut owned.trouble);
        owned.pods = read(&watches.pods, "pods", &mut owned.trouble).unwrap_or_default();
        owned.analysis_runs = read(&watches.analysis_runs, "analysisruns", &mut owned.trouble).unwrap_or_default();
        owned.experiments = read(&watches.experiments, "experiments", &mut owned.trouble).unwrap_or_default();
        owned
    }
}

/// The watches of what a Rollout owns.
struct OwnedWatches {
    replica_sets: ObjectWatch,
    pods: ObjectWatch,
    analysis_runs: ObjectWatch,
    experiments: ObjectWatch,
}

impl OwnedWatches {
    fn spawn(object: &Followed, rollout: &Value) -> OwnedWatches {
        let selector = revisions::label_selector(rollout).unwrap_or_default();
        let by_selector = || kube::runtime::watcher::Config::default().labels(&selector);
        let watch = |resource: ApiResource, config, what: &str| {
            let api = dynamic_api(&object.client, &object.namespace, &resource);
            ObjectWatch::spawn_set(
                api,
                resource,
                config,
                format!("{what} of {} in {}", object.what(), object.namespace),
            )
        };
        OwnedWatches {
            replica_sets: watch(
                ApiResource::erase::<k8s_openapi::api::apps::v1::ReplicaSet>(&()),
                by_selector(),
                "replicasets",
            ),
            pods: watch(ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()), by_selector(), "pods"),
            analysis_runs: watch(analysis_run_resource(), Default::default(), "analysisruns"),
            experiments: watch(experiment_resource(), Default::default(), "experiments"),
        }
    }
}

/// How often set image tries again after a 409 Conflict (set_image.go `maxAttempts`).
const SET_IMAGE_ATTEMPTS: u32 = 5;

/// The AnalysisRun kind.
pub fn analysis_run_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisRun"), "analysisruns")
}

/// The Experiment kind.
pub fn experiment_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Experiment"), "experiments")
}

/// The name of the Rollout's running (or pending) AnalysisRun: the current
/// step's first, then the background one.
pub fn running_analysis(rollout: &Value) -> Option<String> {
    let canary = at(rollout, &["status", "canary"]);
    let blue_green = at(rollout, &["status", "blueGreen"]);
    [
        &canary["currentStepAnalysisRunStatus"],
        &canary["currentBackgroundAnalysisRunStatus"],
        &blue_green["prePromotionAnalysisRunStatus"],
        &blue_green["postPromotionAnalysisRunStatus"],
    ]
    .into_iter()
    .find(|run| matches!(run["status"].as_str(), Some("Running" | "Pending" | "")) && run["name"].is_string())
    .and_then(|run| run["name"].as_str().map(str::to_owned))
}

/// set_image.go `newRolloutSetImage`: the image of every container named
/// `container` (or all for `*`) in the pod template; false when none is.
pub fn with_image(object: &mut Value, container: &str, image: &str) -> bool {
    let mut found = false;
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(containers) = object.pointer_mut(&format!("/spec/template/spec/{list}")).and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers.iter_mut().filter(|c| container == "*" || c["name"].as_str() == Some(container)) {
            c["image"] = json!(image);
            found = true;
        }
    }
    found
}

/// Where undo writes the template back.
#[derive(Debug, Clone)]
pub struct UndoTarget {
    pub resource: ApiResource,
    pub name: String,
    /// The JSON pointer of the pod template in that object.
    pub path: &'static str,
}

/// The Rollout itself, or its `workloadRef` (undo.go `undoWorkloadRef`).
/// One deviation: a PodTemplate keeps its template at `/template`, not
/// `/spec/template` (the plugin's patch there is refused by the API server).
pub fn undo_target(rollout: &Value) -> Result<UndoTarget, String> {
    let reference = at(rollout, &["spec", "workloadRef"]);
    if !reference.is_object() {
        let name = at(rollout, &["metadata", "name"]).as_str().unwrap_or_default().to_owned();
        return Ok(UndoTarget { resource: rollout_resource(), name, path: "/spec/template" });
    }
    let name = reference["name"].as_str().unwrap_or_default().to_owned();
    let kind = reference["kind"].as_str().unwrap_or_default();
    let (resource, path) = match kind {
        "Deployment" => (ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()), "/spec/template"),
        "ReplicaSet" => (ApiResource::erase::<k8s_openapi::api::apps::v1::ReplicaSet>(&()), "/spec/template"),
        "PodTemplate" => (ApiResource::erase::<k8s_openapi::api::core::v1::PodTemplate>(&()), "/template"),
        other => return Err(format!("workload of type {other} is not supported")),
    };
    Ok(UndoTarget { resource, name, path })
}

/// The verb as `kubectl argo rollouts` spells it.
pub fn verb_name(verb: &NativeVerb) -> String {
    match verb {
        NativeVerb::Promote => "promote".into(),
        NativeVerb::PromoteFull => "promote --full".into(),
        NativeVerb::Abort => "abort".into(),
        NativeVerb::Retry => "retry".into(),
        NativeVerb::Pause => "pause".into(),
        NativeVerb::Resume => "resume".into(),
        NativeVerb::Undo => "undo".into(),
        NativeVerb::Restart => "restart".into(),
        NativeVerb::SetImage { container, image } => format!("set image {container}={image}"),
        NativeVerb::UndoTo { revision } => format!("undo --to-revision={revision}"),
        NativeVerb::TerminateAnalysis => "terminate analysisrun".into(),
    }
}

#[async_trait]
impl Backend for ArgoRollout {
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
        let rollout = self.object.latest().await?;
        let owned = self.owned(&rollout);
        Ok(status::view_with(&rollout, Some(&owned)).observation())
    }
}
