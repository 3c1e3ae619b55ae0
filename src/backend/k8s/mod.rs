//! Kubernetes backends (cargo feature `k8s`), on kube-rs.
//!
//! - [`argo::ArgoRollout`] (`backend = "argo-rollouts"`, observed): Argo
//!   Rollouts runs the rollout; flightdeck watches the `Rollout` object
//!   (watcher + reflector, [`watch`]), mirrors its status ([`status`]) and
//!   sends the same patches as `kubectl argo rollouts` for each native verb.
//! - [`deployment::DeploymentCanary`] (`backend = "deployment"`, driven):
//!   flightdeck is the controller. A canary is two Deployments behind a
//!   weighted route ([`router`]: Gateway API `HTTPRoute` or Istio
//!   `VirtualService`); a rolling update is one Deployment paused, resumed and
//!   undone like `kubectl rollout pause|resume|undo`.
//!
//! Every write is a patch with field manager `flightdeck`. A refusal (403
//! RBAC, 409 conflict, 422 invalid) becomes [`BackendError::Refused`] naming
//! the verb, the resource and the namespace; an API server that cannot be
//! reached becomes [`BackendError::Unreachable`]. Every call has a timeout
//! ([`CALL_TIMEOUT`]).
//!
//! # Target parameters
//!
//! [`PARAMS`] for every Kubernetes backend, then [`ARGO_PARAMS`],
//! [`FLAGGER_PARAMS`] or [`DEPLOYMENT_PARAMS`]: name, type, whether required, and what each is.
//! A `deployment` canary (not a rolling update) also needs `route`.

pub mod argo;
pub mod deployment;
pub mod events;
pub mod flagger;
pub mod followed;
pub mod revisions;
pub mod router;
pub mod status;
pub mod tree;
pub mod watch;

use crate::backend::{Backend, BackendError};
use flightdeck_core::plan::params::{
    Param,
    ParamKind::{OneOf, Text, Whole},
};
use flightdeck_core::plan::params::{ParamError, TargetError};
use flightdeck_core::plan::{BackendKind, Plan, Target};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for one API call. Longer than the proxies' 2 s: API servers
/// sit behind cloud load balancers and VPNs.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The field manager every write is recorded under.
pub const FIELD_MANAGER: &str = "flightdeck";

/// Builds the backend a Kubernetes plan asks for, with a client from the
/// target's kubeconfig `context`. For Argo Rollouts the watch starts here.
pub async fn setup(plan: &Plan) -> Result<Arc<dyn Backend>, TargetError> {
    let target = &plan.target;
    let client = client_for(target).await?;
    match target.backend {
        BackendKind::ArgoRollouts => {
            let rollout = argo::ArgoRollout::from_target(target, client)?;
            rollout.watch();
            Ok(Arc::new(rollout))
        }
        BackendKind::Deployment => {
            let kind = deployment::DeploymentCanary::from_target(target, &plan.strategy, client)?;
            Ok(Arc::new(kind))
        }
        BackendKind::Flagger => {
            let canary = flagger::FlaggerCanary::from_target(target, client)?;
            canary.watch();
            Ok(Arc::new(canary))
        }
        other => Err(TargetError::Target(format!("the `{}` backend is not a Kubernetes backend", other.name()))),
    }
}

/// A client for the target's `context` in its `kubeconfig` (both optional:
/// without them kube's inference applies: `$KUBECONFIG`, `~/.kube/config`,
/// then the in-cluster service account).
pub async fn client_for(target: &Target) -> Result<Client, TargetError> {
    let context = target.params.get("context").cloned();
    let file = target.params.get("kubeconfig");
    let config = match (file, &context) {
        (None, None) => {
            Config::infer().await.map_err(|e| TargetError::Target(format!("no Kubernetes configuration found: {e}")))?
        }
        (Some(path), _) => config_from_file(Path::new(path), context.as_deref()).await?,
        (None, Some(_)) => {
            let kubeconfig =
                Kubeconfig::read().map_err(|e| TargetError::Target(format!("cannot read the kubeconfig: {e}")))?;
            config_from(kubeconfig, context.as_deref()).await.map_err(|e| ParamError::new("context", e))?
        }
    };
    Client::try_from(config).map_err(|e| TargetError::Target(format!("cannot build a Kubernetes client: {e}")))
}

/// The client configuration for `context` (or the current context) of a
/// kubeconfig file; an error names the file and is about `kubeconfig`, or
/// `context` when the file has no such context.
pub async fn config_from_file(path: &Path, context: Option<&str>) -> Result<Config, ParamError> {
    let shown = path.display();
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| ParamError::new("kubeconfig", format!("{shown}: {e}")))?;
    let key = if context.is_some() { "context" } else { "kubeconfig" };
    config_from(kubeconfig, context).await.map_err(|e| ParamError::new(key, format!("{shown}: {e}")))
}

/// The context's configuration, or why not (kube's words, with the context).
async fn config_from(kubeconfig: Kubeconfig, context: Option<&str>) -> Result<Config, String> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    let shown = context.unwrap_or("the current context").to_owned();
    Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| format!("context {shown}: {e}"))
}

/// One kubeconfig context as the cockpit lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeContext {
    pub name: String,
    pub cluster: String,
    /// The context's namespace, "default" when it sets none.
    pub namespace: String,
    pub current: bool,
}

/// Every context of a kubeconfig, in file order, so one cockpit can watch
/// rollouts in many clusters.
pub fn contexts(kubeconfig: &Kubeconfig) -> Vec<KubeContext> {
    kubeconfig
        .contexts
        .iter()
        .map(|named| {
            let ctx = named.context.as_ref();
            KubeContext {
                name: named.name.clone(),
                cluster: ctx.map(|c| c.cluster.clone()).unwrap_or_default(),
                namespace: ctx.and_then(|c| c.namespace.clone()).unwrap_or_else(|| "default".to_owned()),
                current: kubeconfig.current_context.as_deref() == Some(named.name.as_str()),
            }
        })
        .collect()
}

/// What every Kubernetes target reads besides [`ARGO_PARAMS`] or
/// [`DEPLOYMENT_PARAMS`] (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("namespace", Text, "namespace of the objects"),
    Param::optional("context", Text, "kubeconfig context (default: the current context, or in-cluster)"),
    Param::optional("kubeconfig", Text, "kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`)"),
];

/// What an `argo-rollouts` target reads.
pub const ARGO_PARAMS: &[Param] = &[Param::required("rollout", Text, "the Rollout's name")];

/// What a `flagger` target reads.
pub const FLAGGER_PARAMS: &[Param] = &[Param::required("canary", Text, "the `flagger.app/v1beta1` Canary's name")];

/// What a `deployment` target reads.
pub const DEPLOYMENT_PARAMS: &[Param] = &[
    Param::required("stable_deployment", Text, "the stable Deployment (the same name for a rolling update)"),
    Param::required("canary_deployment", Text, "the canary Deployment (the same name for a rolling update)"),
    Param::optional("router", OneOf(&["gateway", "istio"]), "`gateway` (default) or `istio`"),
    Param::optional("route", Text, "for a canary: the `HTTPRoute` or `VirtualService` name"),
    Param::optional("stable_service", Text, "backendRef name / destination host (default: the Deployment's name)"),
    Param::optional("canary_service", Text, "backendRef name / destination host (default: the Deployment's name)"),
    Param::optional("stable_subset", Text, "Istio only: the stable destination's subset (with its host)"),
    Param::optional("canary_subset", Text, "Istio only: the canary destination's subset (with its host)"),
    Param::optional("stable_port", Whole, "the stable backendRef's `port` / destination's `port.number`"),
    Param::optional("canary_port", Whole, "the canary backendRef's `port` / destination's `port.number`"),
    Param::optional(
        "route_rules",
        Text,
        "comma-separated names of the rules to set weights in (default: the one rule routing to both)",
    ),
    Param::optional("cluster_domain", Text, "Istio short host names resolve in it (default `cluster.local`)"),
    Param::optional("replicas", Whole, "replicas per side for `Scale` (default: the stable Deployment's)"),
];

/// A required target parameter, or a message naming it.
pub(crate) fn param(target: &Target, key: &str) -> Result<String, ParamError> {
    match target.params.get(key) {
        Some(v) if !v.trim().is_empty() => Ok(v.clone()),
        _ => Err(ParamError::new(key, format!("required by the `{}` backend", target.backend.name()))),
    }
}

/// An API for one namespaced kind, untyped.
pub(crate) fn dynamic_api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// "rollouts.argoproj.io/checkout", the way kubectl names a resource.
pub(crate) fn resource_name(resource: &ApiResource, name: &str) -> String {
    if resource.group.is_empty() {
        format!("{}/{name}", resource.plural)
    } else {
        format!("{}.{}/{name}", resource.plural, resource.group)
    }
}

/// One write a verb sends, described before it is sent.
#[derive(Debug, Clone)]
pub struct PatchCall {
    /// `status` or `scale`, or `None` for the object itself.
    pub subresource: Option<&'static str>,
    pub patch: Patch<Value>,
}

impl PatchCall {
    pub(crate) fn merge(body: Value) -> PatchCall {
        PatchCall { subresource: None, patch: Patch::Merge(body) }
    }
    pub(crate) fn status(body: Value) -> PatchCall {
        PatchCall { subresource: Some("status"), patch: Patch::Merge(body) }
    }
}

/// Where a call goes and why, for error messages.
#[derive(Debug, Clone)]
pub struct CallSite<'a> {
    /// The backend as named in banners ("argo-rollouts prod/checkout").
    pub backend: &'a str,
    /// The flightdeck verb or effect ("promote", "set weight 10 %").
    pub verb: &'a str,
    pub namespace: &'a str,
}

impl CallSite<'_> {
    /// Turns a failed call into a message naming the verb and the resource.
    pub fn error(&self, method: &str, what: &str, e: CallError) -> BackendError {
        let action = format!("{} ({method} {what} in {})", self.verb, self.namespace);
        match e {
            CallError::Api { code, message } => {
                BackendError::Refused { backend: self.backend.to_owned(), action, detail: status_text(code, &message) }
            }
            CallError::Transport(detail) => {
                BackendError::Unreachable { backend: self.backend.to_owned(), detail: format!("{action}: {detail}") }
            }
        }
    }
}

/// A call that failed: the API server answered no, or did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    Api { code: u16, message: String },
    Transport(String),
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, CallError::Api { code: 404, .. })
    }

    /// "403 Forbidden: <message>", or the transport's own words.
    pub fn text(&self) -> String {
        match self {
            CallError::Api { code, message } => status_text(*code, message),
            CallError::Transport(detail) => detail.clone(),
        }
    }
}

impl From<kube::Error> for CallError {
    fn from(e: kube::Error) -> CallError {
        match e {
            kube::Error::Api(status) => CallError::Api { code: status.code, message: status.message },
            other => CallError::Transport(other.to_string()),
        }
    }
}

/// Runs one API call under [`CALL_TIMEOUT`].
pub(crate) async fn timed<T>(call: impl std::future::Future<Output = Result<T, kube::Error>>) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(CallError::from),
        Err(_) => Err(CallError::Transport(format!("no answer within {} s", CALL_TIMEOUT.as_secs()))),
    }
}

/// Sends one patch with field manager `flightdeck`.
pub(crate) async fn send_patch(api: &Api<DynamicObject>, name: &str, call: &PatchCall) -> Result<(), CallError> {
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match call.subresource {
        Some(sub) => timed(api.patch_subresource(sub, name, &params, &call.patch)).await.map(drop),
        None => timed(api.patch(name, &params, &call.patch)).await.map(drop),
    }
}

/// "403 Forbidden: <message>".
fn status_text(code: u16, message: &str) -> String {
    let phrase = match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    match (phrase, message.is_empty()) {
        ("", true) => format!("{code}"),
        ("", false) => format!("{code}: {message}"),
        (p, true) => format!("{code} {p}"),
        (p, false) => format!("{code} {p}: {message}"),
    }
}

/// A JSON field by path, `Value::Null` when any part is missing.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| v.get(key).unwrap_or(&Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_names_code_and_reason() {
        assert_eq!(status_text(403, "no"), "403 Forbidden: no");
        assert_eq!(status_text(409, ""), "409 Conflict");
        assert_eq!(status_text(418, "tea"), "418: tea");
    }

    #[test]
    fn resource_names_follow_kubectl() {
        let ar = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
        assert_eq!(resource_name(&ar, "web"), "deployments.apps/web");
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
        assert_eq!(resource_name(&ar, "web"), "services/web");
    }
}
