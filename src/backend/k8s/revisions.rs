//! Revision history through ReplicaSets, for `undo` the way kubectl does it
//! (`kubectl rollout undo` for Deployments, `kubectl argo rollouts undo`):
//! the ReplicaSets the object controls, numbered by a revision annotation;
//! undo copies the chosen one's pod template back (without its hash label).

use super::{at, dynamic_api, timed, CallError};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{ApiResource, ListParams};
use kube::Client;
use serde_json::{json, Value};

/// How one owner kind numbers and labels its ReplicaSets.
#[derive(Debug, Clone, Copy)]
pub struct History {
    /// "deployment.kubernetes.io/revision" or "rollout.argoproj.io/revision".
    pub revision_annotation: &'static str,
    /// "pod-template-hash" or "rollouts-pod-template-hash".
    pub hash_label: &'static str,
}

pub const DEPLOYMENT: History =
    History { revision_annotation: "deployment.kubernetes.io/revision", hash_label: "pod-template-hash" };
pub const ROLLOUT: History =
    History { revision_annotation: "rollout.argoproj.io/revision", hash_label: "rollouts-pod-template-hash" };

/// Why there is nothing to undo to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    Call(CallError),
    /// No such revision, or no earlier one.
    NoRevision(String),
}

impl From<CallError> for HistoryError {
    fn from(e: CallError) -> Self {
        HistoryError::Call(e)
    }
}

impl History {
    /// The ReplicaSet of `to_revision`, or the one before the newest when `None`.
    pub async fn find(&self, client: &Client, owner: &Value, to_revision: Option<i64>) -> Result<Value, HistoryError> {
        let namespace = at(owner, &["metadata", "namespace"]).as_str().unwrap_or("default");
        let selector = match_labels(owner);
        let api = dynamic_api(client, namespace, &ApiResource::erase::<ReplicaSet>(&()));
        let list = timed(api.list(&ListParams::default().labels(&selector))).await?;
        let owned: Vec<Value> = list
            .items
            .into_iter()
            .filter_map(|rs| serde_json::to_value(rs).ok())
            .filter(|rs| controlled_by(rs, owner))
            .collect();
        self.pick(owned, to_revision, name_of(owner))
    }

    fn pick(&self, owned: Vec<Value>, to_revision: Option<i64>, owner: &str) -> Result<Value, HistoryError> {
        let mut numbered: Vec<(i64, Value)> = owned.into_iter().map(|rs| (self.revision(&rs), rs)).collect();
        numbered.sort_by_key(|(rev, _)| std::cmp::Reverse(*rev));
        match to_revision {
            Some(wanted) => {
                numbered.into_iter().find(|(rev, _)| *rev == wanted).map(|(_, rs)| rs).ok_or_else(|| {
                    HistoryError::NoRevision(format!("revision {wanted} of {owner} not found in history"))
                })
            }
            None => numbered
                .into_iter()
                .nth(1)
                .map(|(_, rs)| rs)
                .ok_or_else(|| HistoryError::NoRevision(format!("no earlier revision of {owner} to undo to"))),
        }
    }

    /// The ReplicaSet's revision number (0 when unannotated, as kubectl).
    pub fn revision(&self, rs: &Value) -> i64 {
        at(rs, &["metadata", "annotations", self.revision_annotation])
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The ReplicaSet's pod template without the hash label, ready to patch back.
    pub fn template(&self, rs: &Value) -> Value {
        let mut template = at(rs, &["spec", "template"]).clone();
        if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
            labels.remove(self.hash_label);
        }
        template
    }

    /// True when the owner already runs this template (undo would change nothing).
    pub fn runs(&self, owner: &Value, rs: &Value) -> bool {
        let mut current = at(owner, &["spec", "template"]).clone();
        if let Some(labels) = current.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
            labels.remove(self.hash_label);
        }
        current == self.template(rs)
    }
}

fn name_of(owner: &Value) -> &str {
    at(owner, &["metadata", "name"]).as_str().unwrap_or("?")
}

/// `spec.selector.matchLabels` as a label selector ("app=checkout").
fn match_labels(owner: &Value) -> String {
    let labels = at(owner, &["spec", "selector", "matchLabels"]).as_object().cloned().unwrap_or_default();
    labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
}

/// The ReplicaSet's controller is this owner (same uid), as `metav1.IsControlledBy`.
fn controlled_by(rs: &Value, owner: &Value) -> bool {
    let uid = at(owner, &["metadata", "uid"]);
    let refs = at(rs, &["metadata", "ownerReferences"]).as_array().cloned().unwrap_or_default();
    refs.iter().any(|r| r["controller"] == json!(true) && &r["uid"] == uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(rev: &str, image: &str) -> Value {
        json!({
            "metadata": {"annotations": {"deployment.kubernetes.io/revision": rev}},
            "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "h"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}
        })
    }

    #[test]
    fn picks_the_revision_before_the_newest_or_the_one_asked_for() {
        let all = vec![rs("3", "web:3"), rs("1", "web:1"), rs("2", "web:2")];
        let previous = DEPLOYMENT.pick(all.clone(), None, "web").unwrap();
        assert_eq!(DEPLOYMENT.revision(&previous), 2);
        let first = DEPLOYMENT.pick(all.clone(), Some(1), "web").unwrap();
        assert_eq!(DEPLOYMENT.revision(&first), 1);
        let missing = DEPLOYMENT.pick(all, Some(7), "web").unwrap_err();
        assert_eq!(missing, HistoryError::NoRevision("revision 7 of web not found in history".into()));
        assert!(DEPLOYMENT.pick(vec![rs("1", "web:1")], None, "web").is_err());
    }

    #[test]
    fn the_template_loses_its_hash_label() {
        let t = DEPLOYMENT.template(&rs("1", "web:1"));
        assert_eq!(t["metadata"]["labels"], json!({"app": "web"}));
    }
}
