//! The tree `kubectl argo rollouts get rollout` draws, from the Rollout and
//! the objects it owns: revisions (newest first), each with its
//! ReplicaSets (stable / canary / active / preview, images, status as
//! `getReplicaSetHealth` words it), their pods (ready containers,
//! restarts, status as `newPodInfo` words it), its Experiments (with their
//! ReplicaSets, pods and runs) and its AnalysisRuns (phase, measurement
//! counts, last values, the Jobs they ran). Follows argo-rollouts'
//! pkg/kubectl-argo-rollouts/info/{rollout_info,replicaset_info,pod_info,analysisrun_info,experiment_info}.go
//! and cmd/get/get_rollout.go.

use super::at;
use flightdeck_core::tree::{NativeTree, TreeRow};
use serde_json::Value;
use std::collections::BTreeSet;

/// The objects the Rollout owns, as listed from the API server.
#[derive(Debug, Clone, Default)]
pub struct Owned {
    /// `None` when they could not be listed (the weight then comes from the Rollout alone).
    pub replica_sets: Option<Vec<Value>>,
    pub pods: Vec<Value>,
    pub analysis_runs: Vec<Value>,
    pub experiments: Vec<Value>,
    /// What could not be listed, and why ("pods: 403 Forbidden: …"): shown
    /// at the foot of the tree.
    pub trouble: Vec<String>,
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn uid(object: &Value) -> &str {
    text(at(object, &["metadata", "uid"]))
}

/// info.go `ownerRef`: an owner reference to one of `uids`.
fn owner_in<'a>(object: &Value, uids: &[&'a str]) -> Option<&'a str> {
    let refs = at(object, &["metadata", "ownerReferences"]).as_array()?;
    refs.iter().find_map(|r| uids.iter().find(|u| !u.is_empty() && text(&r["uid"]) == **u).copied())
}

/// info.go `parseRevision`: 0 when missing or not a number.
fn revision(object: &Value) -> i64 {
    text(at(object, &["metadata", "annotations", "rollout.argoproj.io/revision"])).parse().unwrap_or(0)
}

/// The tree of a Rollout and what it owns.
pub fn rollout_tree(rollout: &Value, owned: &Owned) -> NativeTree {
    let owner = [uid(rollout)];
    let sets: Vec<&Value> = owned.replica_sets.iter().flatten().filter(|rs| owner_in(rs, &owner).is_some()).collect();
    let runs: Vec<&Value> = owned.analysis_runs.iter().filter(|ar| owner_in(ar, &owner).is_some()).collect();
    let experiments: Vec<&Value> = owned.experiments.iter().filter(|e| owner_in(e, &owner).is_some()).collect();
    // info.go `Revisions`: every revision a ReplicaSet, experiment or run names, newest first.
    let revisions: BTreeSet<i64> = sets.iter().chain(&runs).chain(&experiments).map(|o| revision(o)).collect();
    let mut rows = Vec::new();
    for rev in revisions.into_iter().rev() {
        rows.push(TreeRow { depth: 0, kind: "revision".into(), name: format!("revision:{rev}"), ..TreeRow::default() });
        let of = |objects: &[&'_ Value]| -> Vec<Value> {
            objects.iter().filter(|o| revision(o) == rev).map(|o| (*o).clone()).collect()
        };
        replica_sets(&mut rows, 1, Some(rollout), &of(&sets), &owned.pods);
        let mut of_revision = of(&experiments);
        of_revision.sort_by(|a, b| created(a).cmp(created(b)));
        for experiment in &of_revision {
            rows.push(experiment_row(experiment));
            let mine = [uid(experiment)];
            let sets: Vec<Value> =
                owned.replica_sets.iter().flatten().filter(|rs| owner_in(rs, &mine).is_some()).cloned().collect();
            replica_sets(&mut rows, 2, None, &sets, &owned.pods);
            let runs: Vec<Value> =
                owned.analysis_runs.iter().filter(|ar| owner_in(ar, &mine).is_some()).cloned().collect();
            analysis_runs(&mut rows, 2, runs);
        }
        analysis_runs(&mut rows, 1, of(&runs));
    }
    rows.extend(owned.trouble.iter().map(|t| TreeRow {
        kind: "error".into(),
        name: "not listed".into(),
        status: t.clone(),
        ..TreeRow::default()
    }));
    NativeTree { rows }
}

/// ReplicaSets by name, each followed by its pods one level deeper.
fn replica_sets(rows: &mut Vec<TreeRow>, depth: u8, rollout: Option<&Value>, sets: &[Value], pods: &[Value]) {
    let mut sets: Vec<&Value> = sets.iter().collect();
    sets.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    for rs in sets {
        rows.push(TreeRow { depth, ..replica_set_row(rollout, rs) });
        rows.extend(pods_of(rs, pods).into_iter().map(|p| TreeRow { depth: depth + 1, ..pod_row(p) }));
    }
}

/// AnalysisRuns (analysisrun_info.go: by creation time, then name), each
/// followed by the Jobs its measurements ran.
fn analysis_runs(rows: &mut Vec<TreeRow>, depth: u8, mut runs: Vec<Value>) {
    runs.sort_by(|a, b| created(a).cmp(created(b)).then_with(|| name_of(b).cmp(name_of(a))));
    for run in &runs {
        rows.push(TreeRow { depth, ..analysis_run_row(run) });
        rows.extend(jobs_of(run).into_iter().map(|job| TreeRow { depth: depth + 1, ..job }));
    }
}

/// experiment_info.go: the Experiment's phase and message.
fn experiment_row(experiment: &Value) -> TreeRow {
    TreeRow {
        depth: 1,
        kind: "Experiment".into(),
        name: name_of(experiment).to_owned(),
        status: text(at(experiment, &["status", "phase"])).to_owned(),
        info: text(at(experiment, &["status", "message"])).to_owned(),
    }
}

/// analysisrun_info.go: a Job per measurement that names one (`job-name`).
fn jobs_of(run: &Value) -> Vec<TreeRow> {
    let results = at(run, &["status", "metricResults"]).as_array().cloned().unwrap_or_default();
    let measurements = results.iter().flat_map(|r| r["measurements"].as_array().cloned().unwrap_or_default());
    measurements
        .filter_map(|m| {
            let job = m["metadata"]["job-name"].as_str()?;
            let status = text(&m["phase"]).to_owned();
            Some(TreeRow { depth: 2, kind: "Job".into(), name: job.to_owned(), status, info: String::new() })
        })
        .collect()
}

fn name_of(object: &Value) -> &str {
    text(at(object, &["metadata", "name"]))
}

fn created(object: &Value) -> &str {
    text(at(object, &["metadata", "creationTimestamp"]))
}

/// replicaset_info.go: the tags, images and health of one ReplicaSet.
fn replica_set_row(rollout: Option<&Value>, rs: &Value) -> TreeRow {
    let hash = text(at(rs, &["metadata", "labels", "rollouts-pod-template-hash"]));
    let rollout = rollout.unwrap_or(&Value::Null);
    let status = at(rollout, &["status"]);
    let mut tags: Vec<String> = Vec::new();
    let is = |key: &[&str]| !hash.is_empty() && text(at(status, key)) == hash;
    if at(rollout, &["spec", "strategy", "canary"]).is_object() {
        if is(&["stableRS"]) {
            tags.push("stable".into());
        } else if is(&["currentPodHash"]) {
            tags.push("canary".into());
        }
    }
    if at(rollout, &["spec", "strategy", "blueGreen"]).is_object() {
        if is(&["stableRS"]) {
            tags.push("stable".into());
        }
        if is(&["blueGreen", "activeSelector"]) {
            tags.push("active".into());
        } else if is(&["blueGreen", "previewSelector"]) {
            tags.push("preview".into());
        }
    }
    let ready = format!(
        "{}/{} available",
        count(at(rs, &["status", "availableReplicas"])),
        count(at(rs, &["spec", "replicas"]))
    );
    tags.push(ready);
    let containers = at(rs, &["spec", "template", "spec", "containers"]).as_array().cloned().unwrap_or_default();
    tags.extend(containers.iter().map(|c| text(&c["image"]).to_owned()).filter(|i| !i.is_empty()));
    TreeRow {
        depth: 1,
        kind: "ReplicaSet".into(),
        name: name_of(rs).to_owned(),
        status: replica_set_health(rs).into(),
        info: tags.join(" · "),
    }
}

/// replicaset_info.go `getReplicaSetHealth`.
fn replica_set_health(rs: &Value) -> &'static str {
    let generation = count(at(rs, &["metadata", "generation"]));
    let observed = count(at(rs, &["status", "observedGeneration"]));
    let desired = at(rs, &["spec", "replicas"]).as_i64();
    if generation > observed {
        return "Progressing";
    }
    let conditions = at(rs, &["status", "conditions"]).as_array().cloned().unwrap_or_default();
    let failure = conditions.iter().any(|c| text(&c["type"]) == "ReplicaFailure" && text(&c["status"]) == "True");
    if failure {
        return "ReplicaFailure";
    }
    if desired.is_some_and(|d| count(at(rs, &["status", "availableReplicas"])) < d) {
        return "Progressing";
    }
    if desired == Some(0) {
        return "ScaledDown";
    }
    "Healthy"
}

/// pod_info.go `addPodInfos`: the pods this ReplicaSet owns, oldest first.
fn pods_of<'a>(rs: &Value, pods: &'a [Value]) -> Vec<&'a Value> {
    let owner = [uid(rs)];
    let mut mine: Vec<&Value> = pods.iter().filter(|p| owner_in(p, &owner).is_some()).collect();
    mine.sort_by(|a, b| created(a).cmp(created(b)).then_with(|| name_of(a).cmp(name_of(b))));
    mine
}

/// pod_info.go `newPodInfo` (init containers aside): the phase, or the
/// reason a container waits or ended with; ready containers of all; restarts.
fn pod_row(pod: &Value) -> TreeRow {
    let status = at(pod, &["status"]);
    let mut reason = text(&status["phase"]).to_owned();
    if !text(&status["reason"]).is_empty() {
        reason = text(&status["reason"]).to_owned();
    }
    let statuses = status["containerStatuses"].as_array().cloned().unwrap_or_default();
    let (mut ready, mut restarts, mut running) = (0, 0, false);
    for c in statuses.iter().rev() {
        restarts += count(&c["restartCount"]);
        let state = &c["state"];
        if !text(&state["waiting"]["reason"]).is_empty() {
            reason = text(&state["waiting"]["reason"]).to_owned();
        } else if !text(&state["terminated"]["reason"]).is_empty() {
            reason = text(&state["terminated"]["reason"]).to_owned();
        } else if state["terminated"].is_object() {
            reason = format!("ExitCode:{}", count(&state["terminated"]["exitCode"]));
        } else if c["ready"].as_bool() == Some(true) && state["running"].is_object() {
            running = true;
            ready += 1;
        }
    }
    if reason == "Completed" && running {
        reason = "Running".into();
    }
    if at(pod, &["metadata", "deletionTimestamp"]).is_string() {
        reason = "Terminating".into();
    }
    let total = at(pod, &["spec", "containers"]).as_array().map_or(0, Vec::len);
    let mut info = format!("ready:{ready}/{total}");
    if restarts > 0 {
        info.push_str(&format!(",restarts:{restarts}"));
    }
    TreeRow { depth: 2, kind: "Pod".into(), name: name_of(pod).to_owned(), status: reason, info }
}

/// analysisrun_info.go: the phase and the measurements' counts
/// (✔ successful, ✖ failed, ? inconclusive, ⚠ error), then each metric's
/// last measured value.
fn analysis_run_row(run: &Value) -> TreeRow {
    let results = at(run, &["status", "metricResults"]).as_array().cloned().unwrap_or_default();
    let sum = |key: &str| results.iter().map(|r| count(&r[key])).sum::<i64>();
    let mut info: Vec<String> = [("✔", "successful"), ("✖", "failed"), ("?", "inconclusive"), ("⚠", "error")]
        .iter()
        .filter_map(|(icon, key)| Some(sum(key)).filter(|n| *n > 0).map(|n| format!("{icon} {n}")))
        .collect();
    for r in &results {
        let last = r["measurements"].as_array().and_then(|m| m.last());
        if let Some(value) = last.map(|m| text(&m["value"])).filter(|v| !v.is_empty()) {
            info.push(format!("{}={value}", text(&r["name"])));
        }
    }
    let message = text(at(run, &["status", "message"]));
    if !message.is_empty() {
        info.push(message.to_owned());
    }
    TreeRow {
        depth: 1,
        kind: "AnalysisRun".into(),
        name: name_of(run).to_owned(),
        status: text(at(run, &["status", "phase"])).to_owned(),
        info: info.join(" · "),
    }
}
