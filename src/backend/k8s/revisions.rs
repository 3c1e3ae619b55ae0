//! Revision history through ReplicaSets, for `undo` the way kubectl does it
//! (`kubectl rollout undo` for Deployments, `kubectl argo rollouts undo`):
//! the ReplicaSets the object controls, numbered by a revision annotation;
//! undo copies the chosen one's pod template back (without its hash label).
//! Selection and comparison follow argo-rollouts' cmd/undo/undo.go and
//! kubectl's polymorphichelpers/rollback.go: the selector with its
//! `matchExpressions`, ReplicaSets whose revision does not parse skipped, and
//! "already runs this template" decided like `apiequality.Semantic.DeepDerivative`
//! (fields the owner leaves unset do not count).

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
        let selector = label_selector(owner).map_err(HistoryError::NoRevision)?;
        let owned = self.list(client, owner, &selector).await?;
        self.pick(owned, to_revision, name_of(owner))
    }

    /// The ReplicaSets the owner controls (for the split they show).
    pub async fn owned(&self, client: &Client, owner: &Value) -> Result<Vec<Value>, CallError> {
        let selector = label_selector(owner).map_err(CallError::Transport)?;
        self.list(client, owner, &selector).await
    }

    async fn list(&self, client: &Client, owner: &Value, selector: &str) -> Result<Vec<Value>, CallError> {
        let namespace = at(owner, &["metadata", "namespace"]).as_str().unwrap_or("default");
        let api = dynamic_api(client, namespace, &ApiResource::erase::<ReplicaSet>(&()));
        let list = timed(api.list(&ListParams::default().labels(selector))).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|rs| serde_json::to_value(rs).ok())
            .filter(|rs| controlled_by(rs, owner))
            .collect())
    }

    fn pick(&self, owned: Vec<Value>, to_revision: Option<i64>, owner: &str) -> Result<Value, HistoryError> {
        // A revision that does not parse is skipped (undo.go `revision`).
        let mut numbered: Vec<(i64, Value)> =
            owned.into_iter().filter_map(|rs| self.revision(&rs).map(|rev| (rev, rs))).collect();
        if let Some(wanted) = to_revision {
            return numbered.into_iter().find(|(rev, _)| *rev == wanted).map(|(_, rs)| rs).ok_or_else(|| {
                HistoryError::NoRevision(format!("unable to find specified revision {wanted} in history"))
            });
        }
        numbered.sort_by_key(|(rev, _)| std::cmp::Reverse(*rev));
        numbered
            .into_iter()
            .nth(1)
            .map(|(_, rs)| rs)
            .ok_or_else(|| HistoryError::NoRevision(format!("no revision found for rollout \"{owner}\"")))
    }

    /// The ReplicaSet's revision number: 0 when unannotated (as kubectl),
    /// `None` when the annotation is not a number.
    pub fn revision(&self, rs: &Value) -> Option<i64> {
        match at(rs, &["metadata", "annotations", self.revision_annotation]) {
            Value::Null => Some(0),
            v => v.as_str().and_then(|s| s.parse().ok()),
        }
    }

    /// The ReplicaSet's pod template without the hash label, ready to patch back.
    pub fn template(&self, rs: &Value) -> Value {
        let mut template = at(rs, &["spec", "template"]).clone();
        if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
            labels.remove(self.hash_label);
        }
        template
    }

    /// True when the owner already runs this template (undo would change
    /// nothing): undo.go `equalIgnoreHash`, a semantic derivative of the
    /// ReplicaSet's template, both without the hash label. An owner without
    /// a template (a `workloadRef` Rollout) never matches.
    pub fn runs(&self, owner: &Value, rs: &Value) -> bool {
        let mut current = at(owner, &["spec", "template"]).clone();
        if !current.is_object() {
            return false;
        }
        if let Some(labels) = current.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
            labels.remove(self.hash_label);
        }
        derivative(&current, &self.template(rs))
    }
}

/// `apiequality.Semantic.DeepDerivative(a, b)` on JSON: every field `a`
/// sets is in `b` with the same value; empty strings, lists and maps and
/// nulls in `a` count as unset.
pub fn derivative(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, _) => true,
        (Value::String(x), _) if x.is_empty() => true,
        (Value::Array(x), _) if x.is_empty() => true,
        (Value::Object(x), _) if x.is_empty() => true,
        (Value::Array(x), Value::Array(y)) => x.len() <= y.len() && x.iter().zip(y).all(|(p, q)| derivative(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() <= y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| derivative(v, w)))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn name_of(owner: &Value) -> &str {
    at(owner, &["metadata", "name"]).as_str().unwrap_or("?")
}

/// `spec.selector` as the label selector string client-go writes
/// (`metav1.LabelSelectorAsSelector(...).String()`): `matchLabels` and
/// `matchExpressions` as requirements sorted by key, values sorted.
pub fn label_selector(owner: &Value) -> Result<String, String> {
    let selector = at(owner, &["spec", "selector"]);
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (k, v) in selector["matchLabels"].as_object().into_iter().flatten() {
        requirements.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    for e in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        values.sort_unstable();
        let text = match e["operator"].as_str().unwrap_or_default() {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            op => return Err(format!("spec.selector.matchExpressions: {op:?} for {key:?} is not a valid selector")),
        };
        requirements.push((key.to_owned(), text));
    }
    // A stable sort: client-go sorts requirements by key only.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
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
        assert_eq!(DEPLOYMENT.revision(&previous), Some(2));
        let first = DEPLOYMENT.pick(all.clone(), Some(1), "web").unwrap();
        assert_eq!(DEPLOYMENT.revision(&first), Some(1));
        let missing = DEPLOYMENT.pick(all, Some(7), "web").unwrap_err();
        assert_eq!(missing, HistoryError::NoRevision("unable to find specified revision 7 in history".into()));
        assert!(DEPLOYMENT.pick(vec![rs("1", "web:1")], None, "web").is_err());
    }

    #[test]
    fn unparsable_revisions_are_skipped_not_taken_as_zero() {
        // "3a" used to read as 0 and could be chosen; undo.go skips it.
        let all = vec![rs("3", "web:3"), rs("3a", "web:bad"), rs("1", "web:1")];
        let previous = DEPLOYMENT.pick(all, None, "web").unwrap();
        assert_eq!(previous["spec"]["template"]["spec"]["containers"][0]["image"], "web:1");
    }

    #[test]
    fn selectors_carry_match_expressions_sorted_by_key() {
        let owner = json!({"spec": {"selector": {
        "matchLabels": {"app": "web", "tier": "front"},
        "matchExpressions": [
            {"key": "track", "operator": "In", "values": ["stable", "canary"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "owner", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ]}}});
        assert_eq!(
            label_selector(&owner).unwrap(),
            "app=web,env notin (dev),!legacy,owner,tier=front,track in (canary,stable)"
        );
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}});
        assert!(label_selector(&bad).is_err());
    }

    #[test]
    fn a_template_matches_when_every_field_it_sets_is_the_same() {
        let rs = rs("2", "web:2");
        // The owner leaves fields unset that the ReplicaSet's copy has (defaults): still the same template.
        let owner = json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                                  "spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
        assert!(DEPLOYMENT.runs(&owner, &rs));
        let other = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:3"}]}}}});
        assert!(!DEPLOYMENT.runs(&other, &rs));
        // No template of its own (workloadRef): never "already runs".
        assert!(!DEPLOYMENT.runs(&json!({"spec": {"workloadRef": {"kind": "Deployment"}}}), &rs));
    }

    #[test]
    fn the_template_loses_its_hash_label() {
        let t = DEPLOYMENT.template(&rs("1", "web:1"));
        assert_eq!(t["metadata"]["labels"], json!({"app": "web"}));
    }
}
