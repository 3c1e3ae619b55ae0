//! One custom object a Kubernetes backend follows and commands (an Argo
//! Rollout, a Flagger Canary): where it is, the label its errors carry, and
//! the watch that keeps its latest copy.

use super::watch::ObjectWatch;
use super::{dynamic_api, param, resource_name, timed, CallError, CallSite};
use crate::backend::BackendError;
use flightdeck_core::plan::params::ParamError;
use flightdeck_core::plan::Target;
use flightdeck_core::rollout::Effect;
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::Value;
use std::sync::OnceLock;

pub struct Followed {
    pub client: Client,
    pub api: Api<DynamicObject>,
    resource: ApiResource,
    pub namespace: String,
    pub name: String,
    /// "argo-rollouts prod:shop/checkout": banners and errors.
    pub label: String,
    watch: OnceLock<ObjectWatch>,
}

impl Followed {
    /// From the plan target: `namespace`, the object's name under `key`,
    /// and the optional `context` (in the label).
    pub fn from_target(
        target: &Target,
        client: Client,
        backend: &str,
        key: &str,
        resource: ApiResource,
    ) -> Result<Followed, ParamError> {
        let namespace = param(target, "namespace")?;
        let name = param(target, key)?;
        let context = target.params.get("context").map(|c| format!("{c}:")).unwrap_or_default();
        let label = format!("{backend} {context}{namespace}/{name}");
        let api = dynamic_api(&client, &namespace, &resource);
        Ok(Followed { client, api, resource, namespace, name, label, watch: OnceLock::new() })
    }

    /// Starts the watch (idempotent); [`Followed::latest`] reads its store from then on.
    pub fn watch(&self) {
        self.watch.get_or_init(|| {
            let label = format!("{} in {}", self.what(), self.namespace);
            ObjectWatch::spawn(self.api.clone(), self.resource.clone(), &self.name, label)
        });
    }

    /// The running watch, if started.
    pub fn watcher(&self) -> Option<&ObjectWatch> {
        self.watch.get()
    }

    /// `rollouts.argoproj.io/checkout`, as kubectl names it.
    pub fn what(&self) -> String {
        resource_name(&self.resource, &self.name)
    }

    pub fn site<'a>(&'a self, verb: &'a str) -> CallSite<'a> {
        CallSite { backend: &self.label, verb, namespace: &self.namespace }
    }

    /// The object as the API server has it now.
    pub async fn fetch(&self, verb: &str) -> Result<Value, BackendError> {
        let object =
            timed(self.api.get(&self.name)).await.map_err(|e| self.site(verb).error("get", &self.what(), e))?;
        serde_json::to_value(object)
            .map_err(|e| self.site(verb).error("get", &self.what(), CallError::Transport(e.to_string())))
    }

    /// The latest copy: the watch's while it runs (its trouble is the
    /// error then, so the cockpit shows it), else one `get`.
    pub async fn latest(&self) -> Result<Value, BackendError> {
        if let Some(watch) = self.watch.get() {
            let health = watch.health();
            if let Some(trouble) = health.trouble {
                return Err(watch_error(&self.label, &self.what(), &self.namespace, &trouble, health.trouble_code));
            }
            if let Some(latest) = watch.latest() {
                return Ok(serde_json::to_value(&*latest).unwrap_or(Value::Null));
            }
        }
        self.fetch("observe").await
    }

    /// An effect the controller carries out itself, not on command.
    pub fn unsupported(&self, effect: &Effect) -> BackendError {
        BackendError::Unsupported { backend: self.label.clone(), effect: effect.to_string() }
    }
}

/// A watch that is failing: RBAC's 403 says which grant is missing (no
/// retry fixes it); anything else is being retried.
pub fn watch_error(backend: &str, what: &str, namespace: &str, trouble: &str, code: Option<u16>) -> BackendError {
    if code == Some(403) {
        let resource = what.split('/').next().unwrap_or(what);
        return BackendError::Refused {
            backend: backend.to_owned(),
            action: format!("watch ({what} in {namespace})"),
            detail: format!(
                "{trouble}; RBAC: grant this identity get, list and watch on {resource} in {namespace} \
                 (kubectl auth can-i watch {resource} -n {namespace})"
            ),
        };
    }
    let detail = format!("watch of {what} in {namespace} interrupted: {trouble}; retrying");
    BackendError::Unreachable { backend: backend.to_owned(), detail }
}
