//! What a native controller's objects look like beside its status, for the
//! cockpit's full-screen view: the tree `kubectl argo rollouts get rollout`
//! draws (revisions, ReplicaSets, pods, AnalysisRuns), and the controller's
//! own Kubernetes Events (Flagger writes its failure reasons there).
//!
//! Shown, never decided on: the core copies the tree onto the rollout and
//! turns new events into notices, nothing more.

use serde::{Deserialize, Serialize};

/// The controller's objects, parents before their children.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NativeTree {
    pub rows: Vec<TreeRow>,
}

/// One object of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TreeRow {
    /// 0 for a revision, 1 for what it owns, 2 for what those own (pods).
    pub depth: u8,
    /// "revision", "ReplicaSet", "Pod", "AnalysisRun".
    pub kind: String,
    pub name: String,
    /// The object's status as the plugin words it ("Healthy", "Running").
    pub status: String,
    /// What the plugin shows after it: tags, ready counts, images, measurements.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub info: String,
}

/// One of the controller's Kubernetes Events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeEvent {
    /// `type: Warning` (else Normal).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
    /// "flagger Synced: Rolling back podinfo.test failed checks threshold reached 10".
    pub text: String,
}
