//! The Kubernetes backends against an in-process fake API server: a tower
//! service behind `kube::Client` that serves fixture objects (copied from
//! Argo Rollouts', Gateway API's, Istio's and Kubernetes' own examples, in
//! tests/fixtures/k8s/) and records every request, so each verb's method,
//! path, content type and body can be compared with what kubectl sends.

#![cfg(feature = "k8s")]

mod support;

use bytes::Bytes;
use flightdeck::backend::k8s::argo::ArgoRollout;
use flightdeck::backend::k8s::deployment::DeploymentCanary;
use flightdeck::backend::k8s::flagger::FlaggerCanary;
use flightdeck::backend::k8s::{self, status};
use flightdeck::backend::{Backend, BackendError};
use flightdeck_core::plan::{Plan, Target};
use flightdeck_core::rollout::{
    step, Actor, Command, CommandRequest, Effect, Event, NativeStatus, NativeVerb, Observation, Phase, Rollout, Version,
};
use flightdeck_core::Timestamp;
use futures::stream::{self, BoxStream, StreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::within;

// ---------------------------------------------------------------- fake API server

/// One request as the API server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    /// Path without the query.
    path: String,
    query: String,
    content_type: Option<String>,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// The query parameters (kube-rs writes a leading `&`).
    fn params(&self) -> Vec<&str> {
        self.query.split('&').filter(|p| !p.is_empty()).collect()
    }
    fn is_watch(&self) -> bool {
        self.query.contains("watch=true")
    }
}

/// A piece of a streamed response.
#[derive(Clone)]
enum Chunk {
    /// One JSON line (a watch event).
    Line(Value),
    /// The connection breaks (an I/O error mid-body).
    Break,
    /// The response stays open with nothing more to say.
    Hang,
}

/// What the fake server answers.
#[derive(Clone)]
enum Reply {
    Json(u16, Value),
    Stream(Vec<Chunk>),
    /// A plain-text body (Flagger's load tester writes `Approved`, `Forbidden`).
    Text(u16, &'static str),
}

type Responder = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// Records requests and answers them with a responder; `n` counts the
/// requests of the same method and path before this one.
#[derive(Clone)]
struct FakeApi {
    seen: Arc<Mutex<Vec<Seen>>>,
    responder: Responder,
    /// Requests the server acts on only after this long, whether or not
    /// the client still waits (a write already on the wire).
    late: Option<Late>,
}

/// When the server acts on a request, if late.
type Late = Arc<dyn Fn(&Seen) -> Option<Duration> + Send + Sync>;

type BoxBody = StreamBody<BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

impl FakeApi {
    fn new(responder: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> FakeApi {
        FakeApi { seen: Arc::default(), responder: Arc::new(responder), late: None }
    }

    /// The same server, acting on some requests late (see [`FakeApi::late`]).
    fn delivering_late(mut self, late: impl Fn(&Seen) -> Option<Duration> + Send + Sync + 'static) -> FakeApi {
        self.late = Some(Arc::new(late));
        self
    }

    fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn handle(&self, req: http::Request<kube::client::Body>) -> http::Response<BoxBody> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let seen = Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            content_type: parts.headers.get("content-type").map(|v| v.to_str().unwrap_or("?").to_owned()),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let n = {
            let mut log = self.seen.lock().unwrap();
            let n = log
                .iter()
                .filter(|s| s.method == seen.method && s.path == seen.path && s.is_watch() == seen.is_watch())
                .count();
            log.push(seen.clone());
            n
        };
        if let Some(delay) = self.late.as_ref().and_then(|late| late(&seen)) {
            let responder = self.responder.clone();
            let acted = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                responder(&seen, n)
            });
            return respond(acted.await.unwrap());
        }
        respond((self.responder)(&seen, n))
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Everything but reads, the way a verb changes the cluster.
    fn writes(&self) -> Vec<Seen> {
        self.requests().into_iter().filter(|s| s.method != "GET").collect()
    }
}

fn respond(reply: Reply) -> http::Response<BoxBody> {
    let (code, chunks) = match reply {
        Reply::Json(code, body) => (code, vec![Chunk::Line(body)]),
        Reply::Stream(chunks) => (200, chunks),
        Reply::Text(code, text) => {
            let body: BoxStream<'static, _> = stream::iter([Ok(Frame::data(Bytes::from(text)))]).boxed();
            return http::Response::builder()
                .status(code)
                .header("content-type", "text/plain; charset=utf-8")
                .body(StreamBody::new(body))
                .unwrap();
        }
    };
    let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> = Vec::new();
    let mut hang = false;
    for chunk in chunks {
        match chunk {
            Chunk::Line(v) => frames.push(Ok(Frame::data(Bytes::from(format!("{v}\n"))))),
            Chunk::Break => {
                frames.push(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer")));
                break;
            }
            Chunk::Hang => {
                hang = true;
                break;
            }
        }
    }
    let head = stream::iter(frames);
    let body: BoxStream<'static, _> = if hang { head.chain(stream::pending()).boxed() } else { head.boxed() };
    http::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(StreamBody::new(body))
        .unwrap()
}

/// A Kubernetes `Status` error body.
fn status_error(code: u16, reason: &str, message: &str) -> Reply {
    Reply::Json(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn fixture(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s")
}

fn target(backend: &str, params: &[(&str, &str)]) -> Target {
    let text = format!(
        "[rollout]\nname = \"checkout\"\nstable = \"v1\"\ncanary = \"v2\"\n[target]\nbackend = \"{backend}\"\n{}",
        params.iter().map(|(k, v)| format!("{k} = \"{v}\"\n")).collect::<String>()
    );
    Plan::parse("test.toml", &text).unwrap_or_else(|e| panic!("{e}")).target
}

const ROLLOUT: &str = "/apis/argoproj.io/v1alpha1/namespaces/prod/rollouts/checkout";

fn argo(api: &FakeApi) -> ArgoRollout {
    let target = target("argo-rollouts", &[("namespace", "prod"), ("rollout", "checkout"), ("context", "prod-eu-1")]);
    ArgoRollout::from_target(&target, api.client()).unwrap()
}

/// A server with one Rollout (and its ReplicaSets) that accepts every patch.
fn rollout_server(rollout: Value) -> FakeApi {
    FakeApi::new(move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", ROLLOUT) => Reply::Json(200, rollout.clone()),
        ("GET", "/apis/apps/v1/namespaces/prod/replicasets") => Reply::Json(200, fixture("rollout-replicasets.json")),
        ("PATCH", _) | ("PUT", _) => Reply::Json(200, rollout.clone()),
        _ => status_error(404, "NotFound", "not found"),
    })
}

// ---------------------------------------------------------------- Argo verbs

/// (method, path, content type, body) as kubectl-argo-rollouts sends them.
type Expected = (&'static str, String, &'static str, Value);

fn merge(path: String, body: Value) -> Expected {
    ("PATCH", path, "application/merge-patch+json", body)
}

fn on_status() -> String {
    format!("{ROLLOUT}/status")
}

#[tokio::test]
async fn each_verb_sends_the_patch_kubectl_argo_rollouts_sends() {
    let yellow_template = fixture("rollout-replicasets.json")["items"][0]["spec"]["template"].clone();
    let mut green = yellow_template.clone();
    green["metadata"]["labels"].as_object_mut().unwrap().remove("rollouts-pod-template-hash");
    // (fixture, verb, the writes kubectl sends for that situation)
    let table: Vec<(&str, NativeVerb, Vec<Expected>)> = vec![
        // Paused by a canary pause step: clear the pause conditions only.
        (
            "rollout-paused.json",
            NativeVerb::Promote,
            vec![merge(on_status(), json!({"status": {"pauseConditions": null}}))],
        ),
        // Not paused, mid-step (e.g. a running analysis): skip to the next step.
        (
            "rollout-progressing.json",
            NativeVerb::Promote,
            vec![merge(on_status(), json!({"status": {"pauseConditions": null, "currentStepIndex": 3}}))],
        ),
        // Paused by a user: the step index moves on and spec.paused is cleared.
        (
            "rollout-user-paused.json",
            NativeVerb::Promote,
            vec![
                merge(on_status(), json!({"status": {"pauseConditions": null, "currentStepIndex": 3}})),
                merge(ROLLOUT.into(), json!({"spec": {"paused": false}})),
            ],
        ),
        (
            "rollout-paused.json",
            NativeVerb::PromoteFull,
            vec![merge(on_status(), json!({"status": {"promoteFull": true}}))],
        ),
        // Already fully promoted: kubectl sends nothing.
        ("rollout-healthy.json", NativeVerb::PromoteFull, vec![]),
        ("rollout-paused.json", NativeVerb::Abort, vec![merge(on_status(), json!({"status": {"abort": true}}))]),
        ("rollout-aborted.json", NativeVerb::Retry, vec![merge(on_status(), json!({"status": {"abort": false}}))]),
        ("rollout-progressing.json", NativeVerb::Pause, vec![merge(ROLLOUT.into(), json!({"spec": {"paused": true}}))]),
        (
            "rollout-user-paused.json",
            NativeVerb::Resume,
            vec![merge(ROLLOUT.into(), json!({"spec": {"paused": false}}))],
        ),
        // Undo: the previous revision's template (revision 1, green), hash label removed.
        (
            "rollout-paused.json",
            NativeVerb::Undo,
            vec![(
                "PATCH",
                ROLLOUT.into(),
                "application/json-patch+json",
                json!([{"op": "replace", "path": "/spec/template", "value": green.clone()}]),
            )],
        ),
        // Regression: promote --full of a user-paused Rollout also lifts the pause (upstream #4412).
        (
            "rollout-user-paused.json",
            NativeVerb::PromoteFull,
            vec![
                merge(on_status(), json!({"status": {"promoteFull": true}})),
                merge(ROLLOUT.into(), json!({"spec": {"paused": false}})),
            ],
        ),
        // Regression: after an Inconclusive step analysis the controller's pause is cleared and the step moves on.
        (
            "rollout-inconclusive.json",
            NativeVerb::Promote,
            vec![merge(
                on_status(),
                json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": 2}}),
            )],
        ),
        // Regression: undo of a workloadRef Rollout patches the referenced Deployment (undo.go undoWorkloadRef).
        (
            "rollout-workloadref.json",
            NativeVerb::Undo,
            vec![(
                "PATCH",
                format!("{DEPLOYMENTS}/checkout-template"),
                "application/json-patch+json",
                json!([{"op": "replace", "path": "/spec/template", "value": green}]),
            )],
        ),
        // A canary without steps, not paused: promote has no step to move (GetCurrentCanaryStep is nil).
        ("rollout-no-steps.json", NativeVerb::Promote, vec![]),
        // maxTrafficWeight changes units, not steps.
        (
            "rollout-max-weight.json",
            NativeVerb::Promote,
            vec![merge(on_status(), json!({"status": {"pauseConditions": null, "currentStepIndex": 3}}))],
        ),
        ("rollout-max-weight.json", NativeVerb::Abort, vec![merge(on_status(), json!({"status": {"abort": true}}))]),
        ("rollout-routed-promoted.json", NativeVerb::PromoteFull, vec![]),
    ];
    for (file, verb, expected) in table {
        let api = rollout_server(fixture(file));
        argo(&api)
            .apply(&Effect::Native { verb: verb.clone() })
            .await
            .unwrap_or_else(|e| panic!("{file} {verb:?}: {e}"));
        let writes = api.writes();
        let got: Vec<(String, String, String, Value)> = writes
            .iter()
            .map(|s| (s.method.clone(), s.path.clone(), s.content_type.clone().unwrap_or_default(), s.json()))
            .collect();
        let expected: Vec<(String, String, String, Value)> =
            expected.into_iter().map(|(m, p, c, b)| (m.to_owned(), p, c.to_owned(), b)).collect();
        assert_eq!(got, expected, "{file} {verb:?}");
        for w in &writes {
            assert_eq!(w.params(), ["fieldManager=flightdeck"], "{file} {verb:?}: field manager");
        }
        // kubectl reads the Rollout first exactly when the patch depends on it.
        let reads = api.requests().iter().filter(|s| s.method == "GET" && s.path == ROLLOUT).count();
        assert_eq!(reads, usize::from(k8s::argo::needs_object(&verb)), "{file} {verb:?}: GETs");
    }
}

/// The writes one verb sends, in order.
type Writes = Vec<Expected>;

/// Every Rollout fixture × every verb: the requests worked out by hand from
/// the plugin's promote.go (`getPatches`), undo.go and abort/retry/pause.
#[tokio::test]
async fn every_verb_on_every_rollout_fixture_sends_the_plugins_exact_requests() {
    let green = {
        let mut t = fixture("rollout-replicasets.json")["items"][0]["spec"]["template"].clone();
        t["metadata"]["labels"].as_object_mut().unwrap().remove("rollouts-pod-template-hash");
        t
    };
    let status = |body: Value| vec![merge(on_status(), json!({ "status": body }))];
    let step = |n: u64| status(json!({"pauseConditions": null, "currentStepIndex": n}));
    let full = || status(json!({"promoteFull": true}));
    let unpause = || merge(ROLLOUT.into(), json!({"spec": {"paused": false}}));
    let undo = |path: String| {
        vec![(
            "PATCH",
            path,
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/spec/template", "value": green.clone()}]),
        )]
    };
    // (fixture, promote, promote --full, undo)
    let table: Vec<(&str, Writes, Writes, Writes)> = vec![
        // Not paused, canary with steps: the next step (the plugin promotes even an aborted rollout).
        ("rollout-aborted.json", step(1), full(), undo(ROLLOUT.into())),
        ("rollout-degraded.json", step(1), full(), undo(ROLLOUT.into())),
        ("rollout-legacy.json", step(1), full(), undo(ROLLOUT.into())),
        ("rollout-progressing.json", step(3), full(), undo(ROLLOUT.into())),
        ("rollout-routed.json", step(3), full(), undo(ROLLOUT.into())),
        ("rollout-max-weight.json", step(3), full(), undo(ROLLOUT.into())),
        // Past the last step the index stays (it only grows while below the step count); fully promoted: no --full.
        ("rollout-healthy.json", step(8), vec![], undo(ROLLOUT.into())),
        ("rollout-routed-promoted.json", step(8), vec![], undo(ROLLOUT.into())),
        // No steps: GetCurrentCanaryStep has no index, promote has nothing to send.
        ("rollout-no-steps.json", vec![], full(), undo(ROLLOUT.into())),
        // Paused by a step: clear the pause conditions only.
        ("rollout-paused.json", status(json!({"pauseConditions": null})), full(), undo(ROLLOUT.into())),
        (
            "rollout-inconclusive.json",
            status(json!({"pauseConditions": null, "controllerPause": false, "currentStepIndex": 2})),
            full(),
            undo(ROLLOUT.into()),
        ),
        (
            "rollout-user-paused.json",
            [step(3), vec![unpause()]].concat(),
            [full(), vec![unpause()]].concat(),
            undo(ROLLOUT.into()),
        ),
        (
            "rollout-workloadref.json",
            status(json!({"pauseConditions": null})),
            full(),
            undo(format!("{DEPLOYMENTS}/checkout-template")),
        ),
    ];
    for (file, promote, promote_full, undo) in table {
        let constant = [
            (NativeVerb::Abort, status(json!({"abort": true}))),
            (NativeVerb::Retry, status(json!({"abort": false}))),
            (NativeVerb::Pause, vec![merge(ROLLOUT.into(), json!({"spec": {"paused": true}}))]),
            (NativeVerb::Resume, vec![unpause()]),
        ];
        let per_fixture =
            [(NativeVerb::Promote, promote), (NativeVerb::PromoteFull, promote_full), (NativeVerb::Undo, undo)];
        for (verb, expected) in per_fixture.into_iter().chain(constant) {
            let api = rollout_server(fixture(file));
            argo(&api)
                .apply(&Effect::Native { verb: verb.clone() })
                .await
                .unwrap_or_else(|e| panic!("{file} {verb:?}: {e}"));
            let got: Vec<(String, String, String, Value)> = api
                .writes()
                .iter()
                .map(|s| (s.method.clone(), s.path.clone(), s.content_type.clone().unwrap_or_default(), s.json()))
                .collect();
            let expected: Vec<(String, String, String, Value)> =
                expected.into_iter().map(|(m, p, c, b)| (m.to_owned(), p, c.to_owned(), b)).collect();
            assert_eq!(got, expected, "{file} {verb:?}");
        }
    }
}

#[tokio::test]
async fn the_plugin_verbs_restart_set_image_undo_to_and_terminate_send_the_plugins_requests() {
    let green = {
        let mut t = fixture("rollout-replicasets.json")["items"][0]["spec"]["template"].clone();
        t["metadata"]["labels"].as_object_mut().unwrap().remove("rollouts-pod-template-hash");
        t
    };
    let mut running = fixture("rollout-progressing.json");
    running["status"]["canary"]["currentStepAnalysisRunStatus"] =
        json!({"name": "checkout-65fb5ffc84-2-2", "status": "Running"});
    let mut new_image = fixture("rollout-paused.json");
    new_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("argoproj/rollouts-demo:blue");
    let analysis_run = "/apis/argoproj.io/v1alpha1/namespaces/prod/analysisruns/checkout-65fb5ffc84-2-2";
    // (Rollout, verb, the writes: method, path, content type, body)
    let table: Vec<(Value, NativeVerb, Vec<Expected>)> = vec![
        (
            fixture("rollout-paused.json"),
            NativeVerb::UndoTo { revision: 1 },
            vec![(
                "PATCH",
                ROLLOUT.into(),
                "application/json-patch+json",
                json!([{"op": "replace", "path": "/spec/template", "value": green}]),
            )],
        ),
        // Revision 2 is what the Rollout runs: the plugin skips the rollback, nothing is sent.
        (fixture("rollout-paused.json"), NativeVerb::UndoTo { revision: 2 }, vec![]),
        (
            fixture("rollout-paused.json"),
            NativeVerb::SetImage { container: "checkout".into(), image: "argoproj/rollouts-demo:blue".into() },
            vec![("PUT", ROLLOUT.into(), "application/json", new_image)],
        ),
        (
            running,
            NativeVerb::TerminateAnalysis,
            vec![merge(analysis_run.into(), json!({"spec": {"terminate": true}}))],
        ),
    ];
    for (rollout, verb, expected) in table {
        let api = rollout_server(rollout);
        argo(&api).apply(&Effect::Native { verb: verb.clone() }).await.unwrap_or_else(|e| panic!("{verb:?}: {e}"));
        let got: Vec<(String, String, String, Value)> = api
            .writes()
            .iter()
            .map(|s| (s.method.clone(), s.path.clone(), s.content_type.clone().unwrap_or_default(), s.json()))
            .collect();
        let expected: Vec<(String, String, String, Value)> =
            expected.into_iter().map(|(m, p, c, b)| (m.to_owned(), p, c.to_owned(), b)).collect();
        assert_eq!(got, expected, "{verb:?}");
    }
    // restart.go: spec.restartAt, now, in RFC 3339 (whole seconds, UTC).
    let api = rollout_server(fixture("rollout-healthy.json"));
    argo(&api).apply(&Effect::Native { verb: NativeVerb::Restart }).await.unwrap();
    let writes = api.writes();
    assert_eq!((writes.len(), writes[0].path.as_str()), (1, ROLLOUT));
    let at = writes[0].json()["spec"]["restartAt"].as_str().unwrap().to_owned();
    let parsed: k8s_openapi::jiff::Timestamp = at.parse().unwrap();
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(parsed);
    assert!(at.ends_with('Z') && !at.contains('.') && age.as_secs() < 5, "{at}");
    assert!(api.requests().iter().all(|s| s.method != "GET"), "restart reads nothing first");
    // Refusals name what is missing and send nothing.
    for (verb, why) in [
        (NativeVerb::UndoTo { revision: 7 }, "unable to find specified revision 7 in history"),
        (
            NativeVerb::SetImage { container: "sidecar".into(), image: "x".into() },
            "unable to find container named \"sidecar\"",
        ),
        (NativeVerb::TerminateAnalysis, "no AnalysisRun of this Rollout is running"),
    ] {
        let api = rollout_server(fixture("rollout-paused.json"));
        let err = argo(&api).apply(&Effect::Native { verb: verb.clone() }).await.unwrap_err();
        assert!(err.to_string().contains(why), "{verb:?}: {err}");
        assert!(api.writes().is_empty(), "{verb:?}");
    }
}

#[tokio::test]
async fn set_image_of_a_workload_ref_rollout_updates_the_referenced_deployment() {
    let mut deployment = fixture("deployment.json");
    deployment["metadata"]["name"] = json!("checkout-template");
    let served = deployment.clone();
    let rollout = fixture("rollout-workloadref.json");
    let conflicts = Arc::new(Mutex::new(1));
    let left = conflicts.clone();
    let api = FakeApi::new(move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", ROLLOUT) => Reply::Json(200, rollout.clone()),
        ("GET", p) if p.ends_with("/deployments/checkout-template") => Reply::Json(200, served.clone()),
        // The first write loses a race (409): the plugin reads again and writes again.
        ("PUT", p) if p.ends_with("/deployments/checkout-template") => {
            let mut n = left.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                return status_error(409, "Conflict", "the object has been modified");
            }
            Reply::Json(200, served.clone())
        }
        _ => status_error(404, "NotFound", "not found"),
    });
    let verb = NativeVerb::SetImage { container: "*".into(), image: "nginx:1.27".into() };
    argo(&api).apply(&Effect::Native { verb }).await.unwrap();
    let writes = api.writes();
    assert_eq!(writes.len(), 2, "one conflict, one success");
    let mut expected = deployment;
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    for w in &writes {
        assert_eq!((w.method.as_str(), w.path.as_str()), ("PUT", format!("{DEPLOYMENTS}/checkout-template").as_str()));
        assert_eq!(w.json(), expected);
    }
}

#[tokio::test]
async fn undo_lists_only_the_rollouts_own_replica_sets_by_its_selector() {
    let api = rollout_server(fixture("rollout-paused.json"));
    argo(&api).apply(&Effect::Native { verb: NativeVerb::Undo }).await.unwrap();
    let list = api.requests().into_iter().find(|s| s.path.ends_with("/replicasets")).expect("a ReplicaSet list");
    assert_eq!(list.params(), ["labelSelector=app%3Dcheckout"]);
    // The ReplicaSet of another owner (revision 9, red) was ignored.
    assert!(!api.writes()[0].body.contains("red"));
}

#[tokio::test]
async fn status_is_patched_whole_on_controllers_without_a_status_subresource() {
    // Argo Rollouts before 0.10: /status answers 404 and kubectl sends its
    // unified patch instead, which replaces the spec patch too.
    for file in ["rollout-progressing.json", "rollout-user-paused.json"] {
        let rollout = fixture(file);
        let api = FakeApi::new(move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", ROLLOUT) | ("PATCH", ROLLOUT) => Reply::Json(200, rollout.clone()),
            _ => status_error(404, "NotFound", "the server could not find the requested resource"),
        });
        argo(&api).apply(&Effect::Native { verb: NativeVerb::Promote }).await.unwrap();
        let writes: Vec<(String, Value)> = api.writes().iter().map(|w| (w.path.clone(), w.json())).collect();
        let unified = json!({"spec": {"paused": false}, "status": {"pauseConditions": null, "currentStepIndex": 3}});
        let status = json!({"status": {"pauseConditions": null, "currentStepIndex": 3}});
        assert_eq!(writes, vec![(on_status(), status), (ROLLOUT.to_owned(), unified)], "{file}");
    }
}

#[tokio::test]
async fn promote_full_of_a_paused_rollout_without_a_status_subresource_is_one_combined_patch() {
    let rollout = fixture("rollout-user-paused.json");
    let api = FakeApi::new(move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", ROLLOUT) | ("PATCH", ROLLOUT) => Reply::Json(200, rollout.clone()),
        _ => status_error(404, "NotFound", "the server could not find the requested resource"),
    });
    argo(&api).apply(&Effect::Native { verb: NativeVerb::PromoteFull }).await.unwrap();
    let writes: Vec<(String, Value)> = api.writes().iter().map(|w| (w.path.clone(), w.json())).collect();
    let unified = json!({"spec": {"paused": false}, "status": {"promoteFull": true}});
    assert_eq!(writes, vec![(on_status(), json!({"status": {"promoteFull": true}})), (ROLLOUT.to_owned(), unified)]);
}

#[tokio::test]
async fn undo_of_a_workload_ref_rollout_never_touches_the_rollouts_template() {
    let api = rollout_server(fixture("rollout-workloadref.json"));
    argo(&api).apply(&Effect::Native { verb: NativeVerb::Undo }).await.unwrap();
    let writes = api.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].path, format!("{DEPLOYMENTS}/checkout-template"));
    assert!(api.requests().iter().all(|s| s.method == "GET" || s.path != ROLLOUT));
    // The other kinds it may reference, and one it may not.
    let mut rollout = fixture("rollout-workloadref.json");
    rollout["spec"]["workloadRef"]["kind"] = json!("ReplicaSet");
    assert_eq!(k8s::argo::undo_target(&rollout).unwrap().resource.plural, "replicasets");
    rollout["spec"]["workloadRef"]["kind"] = json!("PodTemplate");
    let pod_template = k8s::argo::undo_target(&rollout).unwrap();
    assert_eq!((pod_template.resource.plural.as_str(), pod_template.path), ("podtemplates", "/template"));
    rollout["spec"]["workloadRef"]["kind"] = json!("StatefulSet");
    assert_eq!(k8s::argo::undo_target(&rollout).unwrap_err(), "workload of type StatefulSet is not supported");
}

#[tokio::test]
async fn undo_selects_replica_sets_by_match_expressions_too() {
    let mut rollout = fixture("rollout-paused.json");
    rollout["spec"]["selector"]["matchExpressions"] =
        json!([{"key": "track", "operator": "NotIn", "values": ["preview", "debug"]}]);
    let api = rollout_server(rollout);
    argo(&api).apply(&Effect::Native { verb: NativeVerb::Undo }).await.unwrap();
    let list = api.requests().into_iter().find(|s| s.path.ends_with("/replicasets")).expect("a ReplicaSet list");
    assert_eq!(list.params(), ["labelSelector=app%3Dcheckout%2Ctrack+notin+%28debug%2Cpreview%29"]);
}

#[tokio::test]
async fn driven_effects_are_not_for_argo() {
    let api = rollout_server(fixture("rollout-paused.json"));
    let err = argo(&api).apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err();
    assert_eq!(err.to_string(), "argo-rollouts prod-eu-1:prod/checkout does not support set canary weight 10 %");
    assert!(api.requests().is_empty());
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn refusals_name_the_verb_and_the_resource() {
    let forbidden = "rollouts.argoproj.io \"checkout\" is forbidden: User \"system:serviceaccount:ci:flightdeck\" \
                     cannot patch resource \"rollouts/status\" in API group \"argoproj.io\" in the namespace \"prod\"";
    let conflict = "Operation cannot be fulfilled on rollouts.argoproj.io \"checkout\": the object has been modified; \
                    please apply your changes to the latest version and try again";
    let cases = [
        (403, "Forbidden", forbidden, NativeVerb::Abort, "abort (patch rollouts.argoproj.io/checkout/status in prod)"),
        (409, "Conflict", conflict, NativeVerb::Pause, "pause (patch rollouts.argoproj.io/checkout in prod)"),
    ];
    for (code, reason, message, verb, action) in cases {
        let api = FakeApi::new(move |seen, _| match seen.method.as_str() {
            "PATCH" => status_error(code, reason, message),
            _ => Reply::Json(200, fixture("rollout-paused.json")),
        });
        let err = argo(&api).apply(&Effect::Native { verb }).await.unwrap_err();
        assert_eq!(
            err,
            BackendError::Refused {
                backend: "argo-rollouts prod-eu-1:prod/checkout".into(),
                action: action.into(),
                detail: format!("{code} {reason}: {message}"),
            }
        );
        assert_eq!(
            err.to_string(),
            format!("argo-rollouts prod-eu-1:prod/checkout refused {action}: {code} {reason}: {message}")
        );
    }
}

#[tokio::test]
async fn an_api_server_that_does_not_answer_is_unreachable_not_a_hang() {
    let api = FakeApi::new(|_, _| Reply::Stream(vec![Chunk::Hang]));
    let started = std::time::Instant::now();
    let err = argo(&api).apply(&Effect::Native { verb: NativeVerb::Abort }).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let BackendError::Unreachable { detail, .. } = &err else { panic!("{err}") };
    assert!(detail.starts_with("abort (patch rollouts.argoproj.io/checkout/status in prod):"), "{detail}");
}

// ---------------------------------------------------------------- status mapping

#[test]
fn rollout_status_maps_to_what_the_core_mirrors() {
    // (fixture, status, canary weight, weight stage, raw step index)
    let table: Vec<(&str, NativeStatus, u8, usize, Option<usize>)> = vec![
        ("rollout-healthy.json", NativeStatus::Healthy, 100, 4, Some(8)),
        (
            "rollout-paused.json",
            NativeStatus::Paused { reason: "CanaryPauseStep".into(), step: Some(2), before_switch: false },
            20,
            0,
            Some(1),
        ),
        (
            "rollout-user-paused.json",
            NativeStatus::Paused { reason: "manually paused".into(), step: None, before_switch: false },
            40,
            1,
            Some(2),
        ),
        ("rollout-progressing.json", NativeStatus::Progressing, 40, 1, Some(2)),
        ("rollout-routed.json", NativeStatus::Progressing, 40, 1, Some(2)),
        (
            "rollout-degraded.json",
            NativeStatus::Degraded {
                message: "ProgressDeadlineExceeded: ReplicaSet \"checkout-65fb5ffc84\" has timed out progressing."
                    .into(),
            },
            20,
            0,
            Some(0),
        ),
        (
            "rollout-aborted.json",
            NativeStatus::Aborted {
                message: "RolloutAborted: metric \"web\" assessed Failed due to failed (1) > failureLimit (0)".into(),
            },
            0,
            0,
            Some(0),
        ),
        // Pre-1.0 controller, no status.phase: computed like Argo's CalculateRolloutPhase.
        (
            "rollout-legacy.json",
            NativeStatus::Degraded {
                message: "ProgressDeadlineExceeded: ReplicaSet \"checkout-65fb5ffc84\" has timed out progressing."
                    .into(),
            },
            20,
            0,
            Some(0),
        ),
    ];
    for (file, native, weight, stage, step_index) in table {
        let view = status::view(&fixture(file));
        assert_eq!(view.status, native, "{file}");
        assert_eq!(
            (view.canary_weight, view.stage, view.step_index, view.steps),
            (weight, stage, step_index, 8),
            "{file}"
        );
    }
    let aborted = status::view(&fixture("rollout-aborted.json"));
    assert_eq!(
        aborted.analysis.as_ref().map(|(_, run)| run.as_str()),
        Some("checkout-65fb5ffc84-2: Failed: metric \"web\" assessed Failed due to failed (1) > failureLimit (0)")
    );
    // The cockpit shows Argo's own step and analysis run beside our verdict.
    assert_eq!(
        status::observe(&fixture("rollout-aborted.json")).native_detail.as_deref(),
        Some(
            "step 0/8 · analysis checkout-65fb5ffc84-2: Failed: metric \"web\" assessed Failed due to failed (1) > \
             failureLimit (0)"
        )
    );
    // Argo's `i/n` (steps done of steps), not i+1.
    assert_eq!(status::observe(&fixture("rollout-paused.json")).native_detail.as_deref(), Some("step 1/8"));
    // The routed weight comes from the traffic router, not the step.
    let mut routed = fixture("rollout-routed.json");
    routed["status"]["canary"]["weights"]["canary"]["weight"] = json!(37);
    assert_eq!(status::canary_weight(&routed), 37);
}

#[test]
fn weights_steps_and_pauses_read_as_argo_shows_them() {
    // (fixture, status, canary weight %, weight stage, step shown)
    let table: Vec<(&str, NativeStatus, u8, usize, Option<&str>)> = vec![
        // Regression: a routed rollout after full promotion is at 100 %, not "Promoted at 0 %".
        ("rollout-routed-promoted.json", NativeStatus::Healthy, 100, 4, Some("step 8/8")),
        // Regression: weights in units of maxTrafficWeight (400 of 1000 = 40 %).
        ("rollout-max-weight.json", NativeStatus::Progressing, 40, 1, Some("step 2/9")),
        // Regression: a canary without steps shows no step ("step 1/0" before), and its replica split.
        ("rollout-no-steps.json", NativeStatus::Progressing, 40, 0, None),
        (
            "rollout-inconclusive.json",
            // Held at its analysis step (2) by pauseConditions + controllerPause: only a promote moves it.
            NativeStatus::Paused { reason: "InconclusiveAnalysisRun".into(), step: Some(2), before_switch: false },
            20,
            0,
            Some("step 1/8"),
        ),
    ];
    for (file, native, weight, stage, step) in table {
        let rollout = fixture(file);
        let view = status::view(&rollout);
        assert_eq!((&view.status, view.canary_weight, view.stage), (&native, weight, stage), "{file}");
        let detail = status::observe(&rollout).native_detail.unwrap_or_default();
        match step {
            Some(step) => assert!(detail.starts_with(step), "{file}: {detail}"),
            None => assert!(!detail.contains("step"), "{file}: {detail}"),
        }
    }
    // setWeight without a router is in the same units: 200 of 1000 at the first step.
    let mut unrouted = fixture("rollout-max-weight.json");
    unrouted["status"]["canary"] = json!({});
    unrouted["status"]["currentStepIndex"] = json!(1);
    assert_eq!(status::canary_weight(&unrouted), 20);
}

// ---------------------------------------------------------------- Argo as `kubectl argo rollouts get` shows it

/// A server with one Rollout at `path` and what it owns: ReplicaSets, pods,
/// AnalysisRuns and Experiments listed (then watched, with nothing more to say) from
/// `namespace`.
fn owner_server(path: &'static str, namespace: &'static str, world: Value) -> FakeApi {
    FakeApi::new(move |seen, _| {
        let listed = |key: &str| {
            if seen.is_watch() {
                Reply::Stream(vec![Chunk::Hang])
            } else {
                Reply::Json(200, list_of(world[key].as_array().cloned().unwrap_or_default(), "1"))
            }
        };
        match seen.path.strip_prefix("/apis/apps/v1/namespaces/").or(seen.path.strip_prefix("/api/v1/namespaces/")) {
            _ if seen.path == path => Reply::Json(200, world["rollout"].clone()),
            Some(rest) if rest == format!("{namespace}/replicasets") => listed("replicasets"),
            Some(rest) if rest == format!("{namespace}/pods") => listed("pods"),
            _ if seen.path == format!("/apis/argoproj.io/v1alpha1/namespaces/{namespace}/analysisruns") => {
                listed("analysisruns")
            }
            _ if seen.path == format!("/apis/argoproj.io/v1alpha1/namespaces/{namespace}/experiments") => {
                listed("experiments")
            }
            _ => status_error(404, "NotFound", "not found"),
        }
    })
}

/// The observation once the watches of what the Rollout owns have listed it.
async fn observed_with_tree(rollout: &ArgoRollout) -> Observation {
    let arrived = within(Duration::from_secs(10), || async {
        let seen = rollout.observe().await.unwrap();
        seen.native_tree.is_some_and(|t| t.rows.iter().any(|r| r.kind == "Pod"))
    })
    .await;
    assert!(arrived, "the ReplicaSets and pods never arrived");
    rollout.observe().await.unwrap()
}

/// "name kind status first-tag", indented by depth, as the plugin's tree reads.
fn tree_lines(seen: &Observation) -> Vec<String> {
    let tree = seen.native_tree.as_ref().expect("a tree");
    tree.rows
        .iter()
        .map(|r| {
            let tag = r.info.split(" · ").next().unwrap_or("");
            format!("{}{} {} {} {tag}", "  ".repeat(r.depth as usize), r.name, r.kind, r.status).trim_end().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_full_screen_tree_and_actual_weight_are_what_kubectl_argo_rollouts_get_shows() {
    // info/testdata/canary: a canary without traffic routing at step 0 (setWeight 20) whose
    // canary pod cannot pull its image. TestGetCanaryRollout (cmd/get/get_test.go) prints
    // "Step: 0/8, SetWeight: 20, ActualWeight: 0" and the tree below.
    let mut world = fixture("argo-info-canary.json");
    // testdata.go `discoverObjects` gives every object the same age (a week): pods of one
    // ReplicaSet then sort by name (pod_info.go sorts by creation time first).
    for pod in world["pods"].as_array_mut().unwrap() {
        pod["metadata"]["creationTimestamp"] = json!("2026-11-30T00:00:00Z");
    }
    let api =
        owner_server("/apis/argoproj.io/v1alpha1/namespaces/jesse-test/rollouts/canary-demo", "jesse-test", world);
    let target = target("argo-rollouts", &[("namespace", "jesse-test"), ("rollout", "canary-demo")]);
    let rollout = ArgoRollout::from_target(&target, api.client()).unwrap();
    let seen = observed_with_tree(&rollout).await;
    assert_eq!(
        tree_lines(&seen),
        [
            "revision:31 revision",
            "  canary-demo-65fb5ffc84 ReplicaSet Progressing canary",
            "    canary-demo-65fb5ffc84-9wf5r Pod ImagePullBackOff ready:0/1",
            "revision:30 revision",
            "  canary-demo-877894d5b ReplicaSet Healthy stable",
            "    canary-demo-877894d5b-6jfpt Pod Running ready:1/1",
            "    canary-demo-877894d5b-7jmqw Pod Running ready:1/1",
            "    canary-demo-877894d5b-j8g2b Pod Running ready:1/1",
            "    canary-demo-877894d5b-jw5qm Pod Running ready:1/1",
            "    canary-demo-877894d5b-kh7x4 Pod Running ready:1/1",
            "revision:29 revision",
            "  canary-demo-859c99b45c ReplicaSet ScaledDown 0/0 available",
        ]
    );
    let canary_rs = &seen.native_tree.as_ref().unwrap().rows[1];
    assert_eq!(canary_rs.info, "canary · 0/1 available · argoproj/rollouts-demo:does-not-exist");
    // Replica-based without traffic routing: no canary pod is available, so no traffic (setWeight said 20).
    assert_eq!(seen.canary_weight, Some(0));
    assert_eq!(seen.native_detail.as_deref(), Some("step 0/8 · set weight 20 %, actual 0 %"));
    // The tree is display only: the journal never holds it.
    let journaled = serde_json::to_value(Event::Observation(seen.clone())).unwrap();
    assert!(
        journaled.get("native_tree").is_none() && !journaled.to_string().contains("ImagePullBackOff"),
        "{journaled}"
    );
    // The core puts it on the rollout the cockpit draws.
    let plan = example_plan("argo-rollouts.toml");
    let (r, _) = step(&Rollout::new("checkout", plan), Event::Observation(seen), Timestamp(0));
    assert_eq!(r.native_tree.as_ref().map(|t| t.rows.len()), Some(12));
}

#[tokio::test]
async fn owned_objects_the_api_refuses_are_said_in_the_tree_and_the_weight_falls_back_to_the_rollout() {
    let world = fixture("argo-info-canary.json");
    let rollout_path = "/apis/argoproj.io/v1alpha1/namespaces/jesse-test/rollouts/canary-demo";
    let api = FakeApi::new(move |seen, _| match seen.path.as_str() {
        p if p == rollout_path => Reply::Json(200, world["rollout"].clone()),
        _ => status_error(403, "Forbidden", "pods is forbidden: User \"captain\" cannot list resource"),
    });
    let target = target("argo-rollouts", &[("namespace", "jesse-test"), ("rollout", "canary-demo")]);
    let rollout = ArgoRollout::from_target(&target, api.client()).unwrap();
    let refused = within(Duration::from_secs(10), || async {
        let seen = rollout.observe().await.unwrap();
        seen.native_tree.is_some_and(|t| t.rows.iter().filter(|r| r.kind == "error").count() == 4)
    })
    .await;
    assert!(refused, "the refusals were never said");
    let seen = rollout.observe().await.unwrap();
    let rows = &seen.native_tree.as_ref().unwrap().rows;
    assert!(rows[0].status.starts_with("replicasets:") && rows[0].status.contains("403"), "{rows:?}");
    // Without ReplicaSets the Rollout's own setWeight is what is left to show.
    assert_eq!(seen.canary_weight, Some(20));
}

#[test]
fn argo_displays_follow_the_plugin_and_the_controller() {
    // The controller's message while it progresses, as `get rollout` prints `Message:`.
    let progressing = fixture("rollout-progressing.json");
    let detail = status::observe(&progressing).native_detail.unwrap_or_default();
    assert!(detail.contains("more replicas need to be updated"), "{detail}");
    let canary = fixture("argo-info-canary.json")["rollout"].clone();
    // "step 0/n" only once the controller has set an index (rollout_info.go: `CurrentStepIndex != nil`).
    let mut fresh = canary.clone();
    fresh["status"].as_object_mut().unwrap().remove("currentStepIndex");
    let detail = status::observe(&fresh).native_detail.unwrap_or_default();
    assert!(!detail.contains("step"), "{detail}");
    assert_eq!(status::observe(&fresh).native_step, None);
    // A timed pause (step 3: `pause: {duration: 10s}`) resumes by itself: not "promote to continue".
    let mut timed = canary.clone();
    timed["status"]["currentStepIndex"] = json!(3);
    timed["status"]["phase"] = json!("Paused");
    timed["status"]["controllerPause"] = json!(true);
    timed["status"]["pauseConditions"] = json!([{"reason": "CanaryPauseStep", "startTime": "2019-10-28T04:52:26Z"}]);
    let seen = status::observe(&timed);
    assert_eq!(seen.native_status, Some(NativeStatus::Progressing));
    assert!(
        seen.native_detail
            .as_deref()
            .unwrap()
            .contains("pause 10s: resumes by itself at 04:52:36 UTC (promote skips it)"),
        "{:?}",
        seen.native_detail
    );
    let plan = example_plan("argo-rollouts.toml");
    let (r, _) = step(&Rollout::new("checkout", plan.clone()), Event::Observation(seen), Timestamp(0));
    assert!(!r.next_step(Timestamp(0)).contains("promote to continue"), "{}", r.next_step(Timestamp(0)));
    // The untimed pause at step 1 still waits for a promote.
    let mut held = timed.clone();
    held["status"]["currentStepIndex"] = json!(1);
    let seen = status::observe(&held);
    assert!(matches!(seen.native_status, Some(NativeStatus::Paused { step: Some(2), .. })), "{seen:?}");

    // Blue-green: the pre-promotion analysis shows (types.go `prePromotionAnalysisRunStatus`).
    let mut blue_green = fixture("argo-info-bluegreen.json")["rollout"].clone();
    blue_green["status"]["blueGreen"]["prePromotionAnalysisRunStatus"] =
        json!({"name": "bluegreen-demo-74b948fccb-11-pre", "status": "Running"});
    let detail = status::observe(&blue_green).native_detail.unwrap_or_default();
    assert_eq!(detail, "pre-promotion analysis bluegreen-demo-74b948fccb-11-pre: Running");
    blue_green["status"]["blueGreen"]["postPromotionAnalysisRunStatus"] =
        json!({"name": "bluegreen-demo-74b948fccb-11-post", "status": "Failed", "message": "metric \"web\" failed"});
    let detail = status::observe(&blue_green).native_detail.unwrap_or_default();
    assert_eq!(detail, "post-promotion analysis bluegreen-demo-74b948fccb-11-post: Failed: metric \"web\" failed");
}

#[test]
fn dynamic_stable_scale_shows_the_traffic_still_on_the_canary_after_an_abort_or_a_rollback_to_stable() {
    // test/e2e/functional/canary-dynamic-stable-scale.yaml (4 replicas, setWeight 25, 75, ALB),
    // in the states TestCanaryDynamicStableScale* (test/e2e/canary_test.go) assert.
    let base = fixture("argo-dynamic-stable-scale.json")["rollout"].clone();
    let with = |status: Value| {
        let mut ro = base.clone();
        ro["status"] = status;
        ro
    };
    let weights = |canary: (&str, u64), stable: (&str, u64)| {
        json!({"canary": {"podTemplateHash": canary.0, "weight": canary.1},
               "stable": {"podTemplateHash": stable.0, "weight": stable.1}})
    };
    // Aborted at step 3 while stable scales back up: 75 still on the canary, then 0.
    let aborted = |on_canary| {
        with(json!({"abort": true, "phase": "Degraded", "stableRS": "rev1", "currentPodHash": "rev2",
                    "currentStepIndex": 3, "canary": {"weights": weights(("rev2", on_canary), ("rev1", 100 - on_canary))}}))
    };
    assert_eq!(status::canary_weight(&aborted(75)), 75);
    assert_eq!(status::canary_weight(&aborted(0)), 0);
    // Without dynamicStableScale an abort moves all traffic at once: 0 whatever the router last said.
    let mut sudden = aborted(75);
    sudden["spec"]["strategy"]["canary"]["dynamicStableScale"] = json!(false);
    assert_eq!(status::canary_weight(&sudden), 0);
    // Undo to revision 1 (now 3, the stable template): "fully promoted", yet 25 stays on
    // revision 2 until revision 3's pods are ready; the share on the rollout's pods is 75.
    let rolling_back = |prev: &str, on_prev| {
        with(json!({"phase": "Progressing", "stableRS": "rev3", "currentPodHash": "rev3", "currentStepIndex": 4,
                    "canary": {"weights": weights((prev, on_prev), ("rev3", 100 - on_prev))}}))
    };
    assert_eq!(status::canary_weight(&rolling_back("rev2", 25)), 75);
    assert_eq!(status::canary_weight(&rolling_back("rev3", 0)), 100);
}

fn example_plan(name: &str) -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    Plan::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn promote_by(actor: &str, r: &Rollout) -> Event {
    Event::Command(CommandRequest {
        actor: Actor::new(actor),
        command: Command::Promote,
        expected_stage: r.stage,
        expected_revision: r.canary_revision.clone(),
        expected_step: r.native_step,
        role: Default::default(),
        session: None,
    })
}

#[tokio::test]
async fn the_core_follows_the_rollout_and_its_promote_becomes_argos_patch() {
    let plan = example_plan("argo-rollouts.toml");
    let now = Timestamp(1_000);
    let (mut r, _) = step(&Rollout::new("prod-eu-1/checkout", plan), Event::Start, now);
    // Paused at the first pause step: the core shows stage 1 of 5 at 20 %, paused by the controller.
    let observe = |file: &str| Event::Observation(status::observe(&fixture(file)));
    r = step(&r, observe("rollout-paused.json"), now).0;
    assert!(
        matches!(&r.phase, Phase::Paused { by, reason, .. } if by.0 == "controller" && reason == "CanaryPauseStep")
    );
    assert_eq!((r.stage, r.canary_weight), (0, 20));

    // The captain promotes: the core asks for Argo's promote, which the backend sends as kubectl does.
    let (next, effects) = step(&r, promote_by("alice", &r), now);
    assert_eq!(effects, vec![Effect::Native { verb: NativeVerb::Promote }]);
    let api = rollout_server(fixture("rollout-paused.json"));
    argo(&api).apply(&effects[0]).await.unwrap();
    assert_eq!(api.writes()[0].json(), json!({"status": {"pauseConditions": null}}));
    r = next;

    r = step(&r, observe("rollout-progressing.json"), now).0;
    assert!(matches!(r.phase, Phase::Progressing { .. }), "{:?}", r.phase);
    assert_eq!((r.stage, r.canary_weight), (1, 40));
    let degraded = step(&r, observe("rollout-degraded.json"), now).0;
    assert!(matches!(&degraded.phase, Phase::Failed { reason, .. } if reason.starts_with("ProgressDeadlineExceeded")));
    let aborted = step(&r, observe("rollout-aborted.json"), now).0;
    assert!(matches!(&aborted.phase, Phase::Aborted { reason, .. } if reason.starts_with("RolloutAborted")));
    assert_eq!(aborted.canary_weight, 0);
    let healthy = step(&r, observe("rollout-healthy.json"), now).0;
    assert!(matches!(healthy.phase, Phase::Promoted { .. }), "{:?}", healthy.phase);
    assert_eq!((healthy.stage, healthy.canary_weight), (4, 100));
}

fn command_by(actor: &str, command: Command, r: &Rollout) -> Event {
    let Event::Command(mut request) = promote_by(actor, r) else { unreachable!() };
    request.command = command;
    Event::Command(request)
}

#[tokio::test]
async fn a_resume_of_an_inconclusive_pause_is_refused_and_promote_continues() {
    // rollout-inconclusive.json: the step analysis ended Inconclusive; Argo holds it with pauseConditions and
    // controllerPause (rollout/analysis.go), which spec.paused: false does not clear.
    let plan = example_plan("argo-rollouts.toml");
    let now = Timestamp(1_000);
    let (r, _) = step(&Rollout::new("prod-eu-1/checkout", plan), Event::Start, now);
    let r = step(&r, Event::Observation(status::observe(&fixture("rollout-inconclusive.json"))), now).0;
    let (_, effects) = step(&r, command_by("alice", Command::Resume, &r), now);
    let Some(Effect::Notify(refused)) = effects.first() else { panic!("{effects:?}") };
    assert!(refused.to_string().contains("paused by step 2: promote to continue"), "{refused}");
    assert!(!effects.iter().any(|e| matches!(e, Effect::Native { .. })), "{effects:?}");
    let (_, effects) = step(&r, promote_by("alice", &r), now);
    assert_eq!(effects, vec![Effect::Native { verb: NativeVerb::Promote }]);
}

/// rollout-paused.json with an analysis step right after its pause step
/// (the analysis step of Argo's examples/rollout-analysis-step.yaml).
fn pause_then_analysis() -> Value {
    let mut rollout = fixture("rollout-paused.json");
    let steps = rollout["spec"]["strategy"]["canary"]["steps"].as_array_mut().unwrap();
    steps.insert(2, json!({"analysis": {"templates": [{"templateName": "random-fail"}]}}));
    rollout
}

#[tokio::test]
async fn a_second_promote_of_the_same_pause_does_not_skip_the_analysis_step_the_first_one_reached() {
    let plan = example_plan("argo-rollouts.toml");
    let now = Timestamp(1_000);
    let (r, _) = step(&Rollout::new("prod-eu-1/checkout", plan), Event::Start, now);
    let paused = pause_then_analysis();
    let r = step(&r, Event::Observation(status::observe(&paused)), now).0;
    // Alice and Bob both see the pause at step 2 and both promote.
    let (seen_by_both, alice, bob) = (r.clone(), promote_by("alice", &r), promote_by("bob", &r));
    let (r, effects) = step(&seen_by_both, alice, now);
    let api = rollout_server(paused.clone());
    argo(&api).apply(&effects[0]).await.unwrap();
    // Argo moves to the analysis step (index 2): same weight, same weight stage.
    let mut analysing = paused;
    analysing["status"]["currentStepIndex"] = json!(2);
    analysing["status"]["phase"] = json!("Progressing");
    analysing["status"]["pauseConditions"] = json!(null);
    analysing["status"]["controllerPause"] = json!(false);
    analysing["status"]["canary"]["currentStepAnalysisRunStatus"] =
        json!({"name": "checkout-65fb5ffc84-2-2", "status": "Running"});
    let r = step(&r, Event::Observation(status::observe(&analysing)), now).0;
    assert_eq!((r.stage, r.canary_weight), (seen_by_both.stage, 20));
    // The core refuses Bob's promote: it was sent for step 2, Argo is at step 3.
    let (_, effects) = step(&r, bob, now);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Native { .. })), "{effects:?}");
    // A promote that reaches the backend anyway (sent without a step) is refused there too.
    let api = rollout_server(analysing);
    let err = argo(&api).apply(&Effect::Native { verb: NativeVerb::Promote }).await.unwrap_err().to_string();
    assert!(err.contains("step 3/9 is an analysis step and it runs: a promote would skip it"), "{err}");
    assert!(api.writes().is_empty(), "Bob's promote skipped the analysis: {:?}", api.writes());
}

/// rollout-paused.json with a second `pause: {}` right after its pause step:
/// Argo's rollout/canary.go holds each pause step with its own
/// `CanaryPauseStep` condition, and `currentStepIndex` moves from one to
/// the next at the same `setWeight` (same weight stage for the core).
fn two_pauses(index: u64) -> Value {
    let mut rollout = fixture("rollout-paused.json");
    let steps = rollout["spec"]["strategy"]["canary"]["steps"].as_array_mut().unwrap();
    steps.insert(2, json!({"pause": {}}));
    rollout["status"]["currentStepIndex"] = json!(index);
    rollout
}

#[tokio::test]
async fn a_second_captains_promote_of_a_pause_that_moved_on_cannot_skip_the_next_pause_at_the_same_weight() {
    let plan = example_plan("argo-rollouts.toml");
    let now = Timestamp(1_000);
    let (r, _) = step(&Rollout::new("prod-eu-1/checkout", plan), Event::Start, now);
    let first = step(&r, Event::Observation(status::observe(&two_pauses(1))), now).0;
    assert_eq!(first.native_step, Some(1));
    // Alice and Bob both see the first pause (step 2 of 9) and both promote.
    let (alice, bob) = (promote_by("alice", &first), promote_by("bob", &first));
    let (r, effects) = step(&first, alice, now);
    let api = rollout_server(two_pauses(1));
    argo(&api).apply(&effects[0]).await.unwrap();
    // Argo holds the second pause: same weight (20 %), same weight stage, step index 2.
    let r = step(&r, Event::Observation(status::observe(&two_pauses(2))), now).0;
    assert!(matches!(r.phase, Phase::Paused { .. }) && (r.stage, r.canary_weight) == (first.stage, 20));
    assert_eq!(r.native_step, Some(2));

    // Bob's promote arrives: refused as stale, with the reason, and nothing reaches Argo.
    let (after, effects) = step(&r, bob, now);
    let Some(Effect::Notify(refused)) = effects.first() else { panic!("{effects:?}") };
    assert!(
        refused.to_string().contains("stale: sent for the controller's step 2 but it has moved on to step 3"),
        "{refused}"
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::Native { .. })), "{effects:?}");
    assert_eq!(after.phase, r.phase, "a refused promote changes nothing");
    let api = rollout_server(two_pauses(2));
    for effect in effects.iter().filter(|e| e.is_backend()) {
        argo(&api).apply(effect).await.unwrap();
    }
    assert!(api.writes().is_empty(), "Bob's promote skipped the second pause: {:?}", api.writes());

    // Safety verbs apply whatever step their sender saw: Bob's abort from the first pause goes through.
    let (_, effects) = step(&r, command_by("bob", Command::Abort { reason: None }, &first), now);
    assert_eq!(effects, vec![Effect::Native { verb: NativeVerb::Abort }]);
    // A promote sent for the second pause moves it on.
    let (_, effects) = step(&r, promote_by("bob", &r), now);
    assert_eq!(effects, vec![Effect::Native { verb: NativeVerb::Promote }]);
}

#[test]
fn a_new_argo_revision_is_a_new_rollout_not_the_old_one_progressing_again() {
    let plan = example_plan("argo-rollouts.toml");
    let now = Timestamp(1_000);
    let (mut r, _) = step(&Rollout::new("prod-eu-1/checkout", plan), Event::Start, now);
    let observe = |rollout: &Value| Event::Observation(status::observe(rollout));
    r = step(&r, observe(&fixture("rollout-paused.json")), now).0;
    assert_eq!(r.canary_revision, "revision 2", "the first reading names the revision rolling out");
    r = step(&r, observe(&fixture("rollout-healthy.json")), now).0;
    assert!(matches!(r.phase, Phase::Promoted { .. }));
    let seen_by_alice = r.clone();
    // Someone sets a new image: Argo starts revision 3 from its first step.
    let mut next = fixture("rollout-paused.json");
    next["metadata"]["annotations"]["rollout.argoproj.io/revision"] = json!("3");
    next["status"]["stableRS"] = json!("65fb5ffc84");
    next["status"]["currentPodHash"] = json!("7d9f8c6b5");
    let later = Timestamp(2_000);
    let (r, effects) = step(&r, observe(&next), later);
    assert_eq!((r.canary_revision.as_str(), r.stable_revision.as_str()), ("revision 3", "revision 2"));
    assert_eq!((r.stage, r.canary_weight), (0, 20));
    assert!(matches!(&r.phase, Phase::Paused { since, .. } if *since == later), "{:?}", r.phase);
    let Some(Effect::Notify(notice)) = effects.first() else { panic!("{effects:?}") };
    assert_eq!(notice.to_string(), "new rollout: the controller started revision 3; revision 2 ended promoted");
    // A promote meant for revision 2 does not act on revision 3.
    let (_, effects) = step(&r, promote_by("alice", &seen_by_alice), later);
    let Some(Effect::Notify(refused)) = effects.first() else { panic!("{effects:?}") };
    assert!(refused.to_string().contains("stale: sent for revision revision 2"), "{refused}");
    // The same revision again is no news.
    let (_, effects) = step(&r, observe(&next), later);
    assert!(effects.is_empty(), "{effects:?}");
}

#[test]
fn a_new_flagger_spec_is_a_new_rollout() {
    let plan = example_plan("flagger.toml");
    let now = Timestamp(1_000);
    let (mut r, _) = step(&Rollout::new("staging/podinfo", plan), Event::Start, now);
    let observe = |canary: &Value| Event::Observation(k8s::flagger::observe(canary));
    r = step(&r, observe(&fixture("flagger-succeeded.json")), now).0;
    assert_eq!(r.canary_revision, "spec 5978589476");
    let mut next = fixture("flagger-progressing.json");
    next["status"]["lastAppliedSpec"] = json!("7b9c5d6f84");
    let (r, effects) = step(&r, observe(&next), now);
    assert_eq!((r.canary_revision.as_str(), r.stable_revision.as_str()), ("spec 7b9c5d6f84", "spec 5978589476"));
    assert!(matches!(r.phase, Phase::Progressing { .. }));
    assert_eq!((r.stage, r.canary_weight), (2, 30));
    assert!(matches!(effects.first(), Some(Effect::Notify(_))), "{effects:?}");
}

// ---------------------------------------------------------------- watch

fn list_of(items: Vec<Value>, version: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "RolloutList",
           "metadata": {"resourceVersion": version}, "items": items})
}

fn with_version(mut rollout: Value, version: &str) -> Value {
    rollout["metadata"]["resourceVersion"] = json!(version);
    rollout
}

#[tokio::test]
async fn the_watch_recovers_from_410_gone_and_a_dropped_connection_by_itself() {
    let paused = fixture("rollout-paused.json");
    let progressing = fixture("rollout-progressing.json");
    let healthy = fixture("rollout-healthy.json");
    let collection = "/apis/argoproj.io/v1alpha1/namespaces/prod/rollouts";
    let api = FakeApi::new(move |seen, n| {
        if seen.path != collection {
            return status_error(404, "NotFound", "not found");
        }
        match (seen.is_watch(), n) {
            // First list: paused. After the 410 the watcher lists again: progressing.
            (false, 0) => Reply::Json(200, list_of(vec![with_version(paused.clone(), "100")], "100")),
            (false, _) => Reply::Json(200, list_of(vec![with_version(progressing.clone(), "300")], "300")),
            // First watch: the resource version has expired.
            (true, 0) => Reply::Stream(vec![Chunk::Line(json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 100 (250)", "reason": "Expired", "code": 410}}))]),
            // Second watch: one event, then the connection drops.
            (true, 1) => Reply::Stream(vec![
                Chunk::Line(json!({"type": "MODIFIED", "object": with_version(progressing.clone(), "301")})),
                Chunk::Break,
            ]),
            // Third watch (resumed from 301, no relist): the rollout completes.
            (true, _) => Reply::Stream(vec![
                Chunk::Line(json!({"type": "MODIFIED", "object": with_version(healthy.clone(), "302")})),
                Chunk::Hang,
            ]),
        }
    });
    let rollout = argo(&api);
    rollout.watch();
    let healthy_seen = within(Duration::from_secs(20), || async {
        matches!(rollout.observe().await, Ok(Observation { native_status: Some(NativeStatus::Healthy), .. }))
    })
    .await;
    let requests = api.requests();
    let lists: Vec<&Seen> = requests.iter().filter(|s| s.path == collection && !s.is_watch()).collect();
    let watches: Vec<&Seen> = requests.iter().filter(|s| s.is_watch()).collect();
    assert!(healthy_seen, "the watch never delivered the healthy rollout; requests: {requests:#?}");
    // 410 → a new list; the dropped connection → a new watch from the last version seen.
    assert_eq!(lists.len(), 2, "{lists:#?}");
    assert!(lists.iter().all(|l| l.query.contains("fieldSelector=metadata.name%3Dcheckout")), "{lists:#?}");
    assert_eq!(watches.len(), 3, "{watches:#?}");
    assert!(watches[0].query.contains("resourceVersion=100"), "{}", watches[0].query);
    assert!(watches[2].query.contains("resourceVersion=301"), "{}", watches[2].query);
    let health = rollout.watcher().unwrap().health();
    assert_eq!((health.errors, health.trouble), (2, None));
    // observe() reads the store; it asks the API itself only before the first list has arrived
    // (what the Rollout owns is watched too, on its own collections).
    let direct = requests.iter().filter(|s| s.path == ROLLOUT).count();
    assert!(direct <= 1, "{requests:#?}");
}

#[tokio::test]
async fn a_watch_that_keeps_failing_is_shown_as_unreachable() {
    let api = FakeApi::new(|_, _| status_error(503, "ServiceUnavailable", "etcdserver: leader changed"));
    let rollout = argo(&api);
    rollout.watch();
    let shown = within(Duration::from_secs(5), || async { rollout.observe().await.is_err() }).await;
    assert!(shown);
    let err = rollout.observe().await.unwrap_err();
    let BackendError::Unreachable { detail, .. } = &err else { panic!("{err}") };
    assert!(detail.starts_with("watch of rollouts.argoproj.io/checkout in prod interrupted:"), "{detail}");
    assert!(detail.contains("leader changed"), "{detail}");
}

#[tokio::test]
async fn a_forbidden_watch_is_shown_as_forbidden_with_the_rbac_to_grant() {
    // Regression: a 403 used to read "Unreachable", as if retrying could help.
    let api = FakeApi::new(|_, _| status_error(403, "Forbidden", "rollouts.argoproj.io is forbidden: cannot watch"));
    let rollout = argo(&api);
    rollout.watch();
    let shown = within(Duration::from_secs(5), || async { rollout.observe().await.is_err() }).await;
    assert!(shown);
    let err = rollout.observe().await.unwrap_err();
    let BackendError::Refused { action, detail, .. } = &err else { panic!("{err}") };
    assert_eq!(action, "watch (rollouts.argoproj.io/checkout in prod)");
    assert!(detail.contains("forbidden: cannot watch"), "{detail}");
    assert!(detail.contains("grant this identity get, list and watch on rollouts.argoproj.io in prod"), "{detail}");
}

// ---------------------------------------------------------------- Deployments and routers

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/prod/deployments";
const HTTPROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/prod/httproutes/checkout";
const VIRTUALSERVICE: &str = "/apis/networking.istio.io/v1/namespaces/prod/virtualservices/checkout";

fn cluster_server() -> FakeApi {
    FakeApi::new(|seen, _| {
        let stable = json!({"metadata": {"name": "checkout-stable"}, "spec": {"replicas": 4}});
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", HTTPROUTE) => Reply::Json(200, fixture("httproute.json")),
            ("GET", VIRTUALSERVICE) => Reply::Json(200, fixture("virtualservice.json")),
            ("GET", "/apis/networking.istio.io") => Reply::Json(200, istio_group(&["v1", "v1beta1", "v1alpha3"])),
            ("GET", "/apis/apps/v1/namespaces/prod/deployments/checkout") => {
                Reply::Json(200, fixture("deployment.json"))
            }
            ("GET", "/apis/apps/v1/namespaces/prod/deployments/checkout-stable") => Reply::Json(200, stable),
            ("GET", "/apis/apps/v1/namespaces/prod/replicasets") => {
                Reply::Json(200, fixture("deployment-replicasets.json"))
            }
            ("PATCH", p) if p.ends_with("/scale") => {
                Reply::Json(200, json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {}}))
            }
            ("PATCH", _) => Reply::Json(200, fixture("deployment.json")),
            _ => status_error(404, "NotFound", "not found"),
        }
    })
}

fn two_deployments(api: &FakeApi, extra: &[(&str, &str)]) -> DeploymentCanary {
    let mut params = vec![
        ("namespace", "prod"),
        ("stable_deployment", "checkout-stable"),
        ("canary_deployment", "checkout-canary"),
        ("route", "checkout"),
    ];
    params.extend_from_slice(extra);
    let plan_target = target("deployment", &params);
    let canary = flightdeck_core::plan::Strategy::Canary { stages: vec![] };
    DeploymentCanary::from_target(&plan_target, &canary, api.client()).unwrap()
}

fn rolling(api: &FakeApi) -> DeploymentCanary {
    let params = [("namespace", "prod"), ("stable_deployment", "checkout"), ("canary_deployment", "checkout")];
    let strategy = flightdeck_core::plan::Strategy::Rolling { batch_percent: 25, bake: Duration::from_secs(60) };
    DeploymentCanary::from_target(&target("deployment", &params), &strategy, api.client()).unwrap()
}

#[tokio::test]
async fn set_weight_patches_the_httproute_backend_weights() {
    let api = cluster_server();
    let backend = two_deployments(&api, &[]);
    backend.apply(&Effect::SetWeight { canary: 25 }).await.unwrap();
    let writes = api.writes();
    assert_eq!(writes.len(), 1);
    let w = &writes[0];
    assert_eq!((w.method.as_str(), w.path.as_str()), ("PATCH", HTTPROUTE));
    assert_eq!(w.content_type.as_deref(), Some("application/json-patch+json"));
    assert_eq!(w.params(), ["fieldManager=flightdeck"]);
    // Only the two weights of the rule with both sides; the header-matched rule (canary only) is not in the
    // patch at all, and the version read is tested first so nothing changed since is overwritten.
    let expected = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "4711"},
        {"op": "add", "path": "/spec/rules/1/backendRefs/0/weight", "value": 75},
        {"op": "add", "path": "/spec/rules/1/backendRefs/1/weight", "value": 25},
    ]);
    assert_eq!(w.json(), expected);
    // Read back from the fixture (90/10).
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(10));
    // Blue-green switch: all to one side.
    backend.apply(&Effect::SwitchActive { to: Version::Canary }).await.unwrap();
    assert_eq!(api.writes()[1].json()[1]["value"], 0);
    assert_eq!(api.writes()[1].json()[2]["value"], 100);
}

#[tokio::test]
async fn istio_virtualservice_route_weights_by_subset() {
    let api = cluster_server();
    let extra = [
        ("router", "istio"),
        ("stable_service", "checkout"),
        ("canary_service", "checkout"),
        ("stable_subset", "stable"),
        ("canary_subset", "canary"),
    ];
    let backend = two_deployments(&api, &extra);
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(25));
    backend.apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
    let w = &api.writes()[0];
    assert_eq!((w.path.as_str(), w.content_type.as_deref()), (VIRTUALSERVICE, Some("application/json-patch+json")));
    let expected = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "815"},
        {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 50},
        {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 50},
    ]);
    assert_eq!(w.json(), expected);
}

/// RFC 6902 as the API server applies it (apiserver endpoints/handlers/patch.go, evanphx/json-patch): the ops
/// flightdeck sends (`test`, `add`, `replace`); a failed test is a 422.
fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let mut patched = doc.clone();
    for op in ops.as_array().ok_or("not a JSON patch")? {
        let path = op["path"].as_str().ok_or("no path")?;
        let (parent, key) = path.rsplit_once('/').ok_or("bad path")?;
        match op["op"].as_str() {
            Some("test") if patched.pointer(path) == Some(&op["value"]) => {}
            Some("test") => return Err(format!("testing value {path} failed: test failed")),
            Some("add" | "replace") => {
                let target = patched.pointer_mut(parent).ok_or(format!("missing {parent}"))?;
                match target {
                    Value::Object(map) => {
                        map.insert(key.to_owned(), op["value"].clone());
                    }
                    Value::Array(list) => {
                        let i: usize = key.parse().map_err(|_| format!("bad index {key}"))?;
                        *list.get_mut(i).ok_or(format!("no index {i} in {parent}"))? = op["value"].clone();
                    }
                    _ => return Err(format!("{parent} is not a container")),
                }
            }
            other => return Err(format!("op {other:?} not modelled")),
        }
    }
    *doc = patched;
    Ok(())
}

/// An API server holding one route that applies JSON patches, and another writer who edits the route (a
/// filter on the header-matched rule, a new resourceVersion) right after flightdeck's first read.
fn route_server(route: Value, path: &'static str) -> (Arc<Mutex<Value>>, FakeApi) {
    let state = Arc::new(Mutex::new(route));
    let s = state.clone();
    let api = FakeApi::new(move |seen, n| {
        let mut route = s.lock().unwrap();
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/apis/networking.istio.io") => Reply::Json(200, istio_group(&["v1"])),
            ("GET", p) if p == path => {
                let answer = route.clone();
                if n == 0 {
                    // Someone else's edit lands between flightdeck's read and its patch.
                    let (rules, _) = if route["spec"]["rules"].is_array() { ("rules", 0) } else { ("http", 0) };
                    route["spec"][rules][0]["filters"] = json!([{"type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x-tester", "value": "yes"}]}}]);
                    route["metadata"]["resourceVersion"] = json!("9001");
                }
                Reply::Json(200, answer)
            }
            ("PATCH", p) if p == path => match json_patch(&mut route, &seen.json()) {
                Ok(()) => {
                    let next = route["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() + 1;
                    route["metadata"]["resourceVersion"] = json!(next.to_string());
                    Reply::Json(200, route.clone())
                }
                Err(message) => status_error(422, "Invalid", &message),
            },
            _ => status_error(404, "NotFound", "not found"),
        }
    });
    (state, api)
}

#[tokio::test]
async fn a_weight_change_edits_only_its_two_weights_and_never_overwrites_an_edit_made_meanwhile() {
    // httproute.json: a header-matched rule pinned to the canary (testers), then the weighted rule.
    let (route, api) = route_server(fixture("httproute.json"), HTTPROUTE);
    let backend = two_deployments(&api, &[]);
    backend.apply(&Effect::SetWeight { canary: 25 }).await.unwrap();
    let patches: Vec<Value> = api.writes().iter().map(Seen::json).collect();
    assert_eq!(patches.len(), 2, "the first patch's test fails (the route moved), the second lands: {patches:#?}");
    assert_eq!(patches[0][0]["value"], "4711");
    assert_eq!(patches[1][0]["value"], "9001");
    let route = route.lock().unwrap().clone();
    let mut expected = fixture("httproute.json");
    expected["spec"]["rules"][0]["filters"] = route["spec"]["rules"][0]["filters"].clone();
    expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(75);
    expected["spec"]["rules"][1]["backendRefs"][1]["weight"] = json!(25);
    assert!(route["spec"]["rules"][0]["filters"].is_array(), "the other writer's filter was overwritten");
    assert_eq!(route["spec"], expected["spec"], "anything but the two weights changed");

    // The same on an Istio VirtualService with a header-matched route before the weighted one.
    let mut vs = fixture("virtualservice.json");
    let weighted = vs["spec"]["http"][0].clone();
    vs["spec"]["http"] = json!([
        {"name": "testers", "match": [{"headers": {"x-tester": {"exact": "yes"}}}],
         "route": [{"destination": {"host": "checkout", "subset": "canary"}}]},
        weighted,
    ]);
    let (route, api) = route_server(vs.clone(), VIRTUALSERVICE);
    let extra = [
        ("router", "istio"),
        ("stable_service", "checkout"),
        ("canary_service", "checkout"),
        ("stable_subset", "stable"),
        ("canary_subset", "canary"),
    ];
    two_deployments(&api, &extra).apply(&Effect::SetWeight { canary: 40 }).await.unwrap();
    let route = route.lock().unwrap().clone();
    assert_eq!(route["spec"]["http"][0]["match"], vs["spec"]["http"][0]["match"]);
    assert!(route["spec"]["http"][0]["route"][0].get("weight").is_none(), "the testers' route was given a weight");
    assert!(route["spec"]["http"][0]["filters"].is_array(), "the other writer's edit was overwritten");
    let weights: Vec<&Value> = (0..2).map(|i| &route["spec"]["http"][1]["route"][i]["weight"]).collect();
    assert_eq!(weights, [&json!(60), &json!(40)]);
}

#[tokio::test]
async fn an_ambiguous_route_is_refused_with_the_reason_and_left_untouched() {
    // Two rules route to both sides (testers pinned by a header, and the default): flightdeck will not guess.
    let mut two = fixture("httproute.json");
    two["spec"]["rules"][0]["name"] = json!("testers");
    two["spec"]["rules"][0]["backendRefs"] = two["spec"]["rules"][1]["backendRefs"].clone();
    let (_, api) = route_server(two.clone(), HTTPROUTE);
    let err = two_deployments(&api, &[]).apply(&Effect::SetWeight { canary: 25 }).await.unwrap_err().to_string();
    assert!(err.contains("httproutes.gateway.networking.k8s.io/checkout in prod"), "{err}");
    assert!(err.contains("rule 1 \"testers\", rule 2 all route to both checkout-stable and checkout-canary"), "{err}");
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    // Named with route_rules, only that rule changes.
    two["spec"]["rules"][1]["name"] = json!("primary");
    let (route, api) = route_server(two.clone(), HTTPROUTE);
    two_deployments(&api, &[("route_rules", "primary")]).apply(&Effect::SetWeight { canary: 25 }).await.unwrap();
    let route = route.lock().unwrap().clone();
    assert_eq!(route["spec"]["rules"][0]["backendRefs"], two["spec"]["rules"][0]["backendRefs"]);
    assert_eq!(route["spec"]["rules"][1]["backendRefs"][1]["weight"], 25);
    // A backendRef of another kind with the same name is not the Service (Gateway API defaults).
    let mut import = fixture("httproute.json");
    import["spec"]["rules"][1]["backendRefs"][1]["kind"] = json!("ServiceImport");
    import["spec"]["rules"][1]["backendRefs"][1]["group"] = json!("multicluster.x-k8s.io");
    let (_, api) = route_server(import, HTTPROUTE);
    let err = two_deployments(&api, &[]).observe().await.unwrap_err().to_string();
    assert!(err.contains("no rule routes to both checkout-stable and checkout-canary"), "{err}");
}

/// The APIGroup an API server answers for Istio's networking group.
fn istio_group(served: &[&str]) -> Value {
    let versions: Vec<Value> =
        served.iter().map(|v| json!({"groupVersion": format!("networking.istio.io/{v}"), "version": v})).collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": "networking.istio.io", "versions": versions,
           "preferredVersion": versions[0].clone()})
}

#[tokio::test]
async fn istio_virtualservices_are_used_at_the_version_the_cluster_serves() {
    // Regression: v1 was hard-coded, and Istio before 1.22 serves no v1.
    for (served, version) in [
        (vec!["v1alpha3"], "v1alpha3"),
        (vec!["v1beta1", "v1alpha3"], "v1beta1"),
        (vec!["v1", "v1beta1", "v1alpha3"], "v1"),
    ] {
        let path = format!("/apis/networking.istio.io/{version}/namespaces/prod/virtualservices/checkout");
        let group = istio_group(&served);
        let route_path = path.clone();
        let api = FakeApi::new(move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/apis/networking.istio.io") => Reply::Json(200, group.clone()),
            ("GET", p) | ("PATCH", p) if p == route_path => {
                let mut vs = fixture("virtualservice.json");
                vs["apiVersion"] = json!(format!("networking.istio.io/{version}"));
                Reply::Json(200, vs)
            }
            _ => status_error(404, "NotFound", "not found"),
        });
        let extra = [
            ("router", "istio"),
            ("stable_service", "checkout.prod.svc.cluster.local"),
            ("canary_service", "checkout"),
            ("stable_subset", "stable"),
            ("canary_subset", "canary"),
        ];
        let backend = two_deployments(&api, &extra);
        assert_eq!(backend.observe().await.unwrap().canary_weight, Some(25), "{version}");
        backend.apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
        let requests = api.requests();
        let discovery = requests.iter().filter(|s| s.path == "/apis/networking.istio.io").count();
        assert_eq!(discovery, 1, "discovered once: {requests:#?}");
        assert_eq!(api.writes().len(), 1);
        assert_eq!(api.writes()[0].path, path, "{version}");
    }
    // No Istio in the cluster: a clear refusal naming the group, not a panic.
    let api = FakeApi::new(|_, _| status_error(404, "NotFound", "the server could not find the requested resource"));
    let err = two_deployments(&api, &[("router", "istio")]).observe().await.unwrap_err();
    assert!(err.to_string().contains("/apis/networking.istio.io (is Istio installed?)"), "{err}");
}

#[tokio::test]
async fn scale_patches_the_scale_subresource_like_kubectl_scale() {
    let api = cluster_server();
    let backend = two_deployments(&api, &[]);
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 50 }).await.unwrap();
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 0 }).await.unwrap();
    let writes = api.writes();
    let scale = format!("{DEPLOYMENTS}/checkout-canary/scale");
    assert_eq!(
        writes.iter().map(|w| (w.path.clone(), w.json())).collect::<Vec<_>>(),
        vec![(scale.clone(), json!({"spec": {"replicas": 2}})), (scale, json!({"spec": {"replicas": 0}})),]
    );
    assert!(writes.iter().all(|w| w.content_type.as_deref() == Some("application/merge-patch+json")));
    // The desired count (4) was read once from the stable Deployment, then remembered.
    let reads = api.requests().iter().filter(|s| s.path.ends_with("/checkout-stable")).count();
    assert_eq!(reads, 1);
}

#[tokio::test]
async fn rolling_updates_pause_and_undo_like_kubectl_rollout() {
    let api = cluster_server();
    let backend = rolling(&api);
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 0 }).await.unwrap();
    // Regression: the stable version label "2" looks like a revision number; it is not one. Undo goes to the
    // previous revision (1), never to "--to-revision=2".
    backend.apply(&Effect::Undo { to_revision: "2".into() }).await.unwrap();
    let err = backend.apply(&Effect::SetWeight { canary: 5 }).await.unwrap_err();
    assert!(matches!(err, BackendError::Unsupported { .. }), "{err}");

    let deployment = format!("{DEPLOYMENTS}/checkout");
    let strategic = "application/strategic-merge-patch+json";
    let old = &fixture("deployment-replicasets.json")["items"][1];
    let mut template = old["spec"]["template"].clone();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    // Regression: one write. The template, the annotations and the release of the (paused) Deployment
    // go together, so a refused patch leaves the bad template held, not rolling.
    let undo = json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {
            "deployment.kubernetes.io/revision": "2",
            "kubernetes.io/change-cause": "kubectl apply --filename=checkout.yaml"}},
        {"op": "replace", "path": "/spec/paused", "value": false},
    ]);
    let got: Vec<(String, Option<String>, Value)> =
        api.writes().iter().map(|w| (w.path.clone(), w.content_type.clone(), w.json())).collect();
    assert_eq!(
        got,
        vec![
            (deployment.clone(), Some(strategic.into()), json!({"spec": {"paused": true}})),
            (deployment, Some("application/json-patch+json".into()), undo),
        ]
    );
}

#[tokio::test]
async fn a_refused_deployment_undo_changes_nothing() {
    let api = FakeApi::new(|seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/apis/apps/v1/namespaces/prod/deployments/checkout") => Reply::Json(200, fixture("deployment.json")),
        ("GET", "/apis/apps/v1/namespaces/prod/replicasets") => {
            Reply::Json(200, fixture("deployment-replicasets.json"))
        }
        ("PATCH", _) => status_error(422, "Invalid", "spec.template: Invalid value"),
        _ => status_error(404, "NotFound", "not found"),
    });
    let err = rolling(&api).apply(&Effect::Undo { to_revision: "v1".into() }).await.unwrap_err();
    assert!(matches!(err, BackendError::Refused { .. }), "{err}");
    // Exactly one write was tried: no resume went out ahead of the undo.
    assert_eq!(api.writes().len(), 1);
    assert!(api.writes()[0].body.contains("/spec/template"));
}

/// A Deployment controller in miniature: while the Deployment is not
/// paused, every read finds one more surge rolled (one new pod ready, one
/// old pod gone, as maxSurge 1 / maxUnavailable 0 does); a pause stops it.
/// The ReplicaSets are listed with the replicas that surge left them.
#[derive(Default)]
struct FakeController {
    paused: bool,
    updated: i64,
    /// `metadata.resourceVersion`: every change moves it, and a patch that
    /// names another one is refused with 409 Conflict (as the API server does).
    version: u64,
    /// Pods that never become ready: no surge completes.
    stuck: bool,
    /// `spec.progressDeadlineSeconds`, when set.
    deadline: Option<u64>,
}

const ROLLING_REPLICAS: i64 = 8;

impl FakeController {
    fn deployment(&self) -> Value {
        let mut d = fixture("deployment.json");
        d["spec"]["replicas"] = json!(ROLLING_REPLICAS);
        d["spec"]["paused"] = json!(self.paused);
        d["metadata"]["resourceVersion"] = json!(self.version.to_string());
        if let Some(seconds) = self.deadline {
            d["spec"]["progressDeadlineSeconds"] = json!(seconds);
        }
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 1, "maxUnavailable": 0});
        d["status"] = json!({"replicas": ROLLING_REPLICAS, "updatedReplicas": self.updated,
                             "readyReplicas": ROLLING_REPLICAS, "availableReplicas": ROLLING_REPLICAS});
        d
    }

    fn replica_sets(&self) -> Value {
        let mut list = fixture("deployment-replicasets.json");
        let counts = [self.updated, ROLLING_REPLICAS - self.updated];
        for (rs, n) in list["items"].as_array_mut().unwrap().iter_mut().zip(counts) {
            rs["spec"]["replicas"] = json!(n);
            rs["status"] = json!({"replicas": n, "readyReplicas": n, "availableReplicas": n});
        }
        list
    }
}

fn controller_server(state: Arc<Mutex<FakeController>>) -> FakeApi {
    FakeApi::new(move |seen, _| controller_reply(&mut state.lock().unwrap(), seen))
}

fn controller_reply(c: &mut FakeController, seen: &Seen) -> Reply {
    {
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/apis/apps/v1/namespaces/prod/deployments/checkout") => {
                if !c.paused && !c.stuck && c.updated < ROLLING_REPLICAS {
                    c.updated += 1;
                    c.version += 1;
                }
                Reply::Json(200, c.deployment())
            }
            ("GET", "/apis/apps/v1/namespaces/prod/replicasets") => Reply::Json(200, c.replica_sets()),
            ("PATCH", "/apis/apps/v1/namespaces/prod/deployments/checkout") => {
                let patch = seen.json();
                if let Some(version) = patch["metadata"]["resourceVersion"].as_str() {
                    if version != c.version.to_string() {
                        return status_error(409, "Conflict", "the object has been modified");
                    }
                }
                // `{"spec":{"paused":null}}` (kubectl's resume) clears it, as a strategic merge patch does.
                if let Some(p) = patch["spec"].get("paused") {
                    c.paused = p.as_bool().unwrap_or(false);
                    c.version += 1;
                }
                Reply::Json(200, c.deployment())
            }
            _ => status_error(404, "NotFound", "not found"),
        }
    }
}

#[tokio::test]
async fn a_hold_the_api_refuses_is_shown_and_tried_again_until_it_holds() {
    let state = Arc::new(Mutex::new(FakeController { paused: true, ..Default::default() }));
    let refusals = Arc::new(Mutex::new(5));
    let (s, left) = (state.clone(), refusals.clone());
    let api = FakeApi::new(move |seen, _| {
        let pausing = seen.method == "PATCH" && seen.json()["spec"]["paused"] == json!(true);
        let mut n = left.lock().unwrap();
        if pausing && *n > 0 {
            *n -= 1;
            return status_error(403, "Forbidden", "cannot patch resource \"deployments\"");
        }
        controller_reply(&mut s.lock().unwrap(), seen)
    });
    let backend = rolling(&api);
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 25 }).await.unwrap();
    // While the pause is refused the rollout does not hold: the cockpit says so, it is not "baking".
    let shown = within(Duration::from_secs(10), || async { backend.observe().await.is_err() }).await;
    assert!(shown);
    let err = backend.observe().await.unwrap_err().to_string();
    assert!(
        err.contains("scale canary to 25 % of its replicas (hold deployments.apps/checkout in prod): 403 Forbidden"),
        "{err}"
    );
    // Once the API allows it, the hold happens and the error goes.
    let held = within(Duration::from_secs(10), || async { state.lock().unwrap().paused }).await;
    assert!(held);
    let clear = within(Duration::from_secs(5), || async { backend.observe().await.is_ok() }).await;
    assert!(clear);
    assert_eq!(*refusals.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_late_pause_of_the_previous_batch_does_not_stop_the_next_one() {
    let state = Arc::new(Mutex::new(FakeController { paused: true, ..Default::default() }));
    // The first batch's pause reaches the API server 400 ms after it was sent.
    let pauses = Arc::new(Mutex::new(0));
    let api = controller_server(state.clone()).delivering_late(move |seen| {
        let pausing = seen.method == "PATCH" && seen.json()["spec"]["paused"] == json!(true);
        let mut n = pauses.lock().unwrap();
        *n += usize::from(pausing);
        (pausing && *n == 1).then_some(Duration::from_millis(400))
    });
    let backend = rolling(&api);
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 25 }).await.unwrap();
    let sent = within(Duration::from_secs(5), || async {
        api.requests().iter().any(|s| s.method == "PATCH" && s.json()["spec"]["paused"] == json!(true))
    })
    .await;
    assert!(sent);
    // The captain promotes while that pause is on the wire: the next batch resumes before it lands.
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 75 }).await.unwrap();
    let held = within(Duration::from_secs(10), || async {
        let c = state.lock().unwrap();
        c.paused && c.updated >= 6
    })
    .await;
    let (paused, updated) = {
        let c = state.lock().unwrap();
        (c.paused, c.updated)
    };
    assert!(held, "the late pause stopped the 75 % batch at {updated} of 6 (paused: {paused})");
    assert!(backend.observe().await.is_ok());
    // The late pause named the version it read: refused, it changed nothing.
    let conflicts = api.requests().iter().filter(|s| s.json()["metadata"]["resourceVersion"].is_string()).count();
    assert!(conflicts >= 2, "every hold pause carries its resourceVersion");
}

#[tokio::test]
async fn a_batch_that_makes_no_progress_is_paused_at_the_deployments_deadline_and_says_so() {
    let state =
        Arc::new(Mutex::new(FakeController { paused: true, stuck: true, deadline: Some(1), ..Default::default() }));
    let api = controller_server(state.clone());
    let backend = rolling(&api);
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 25 }).await.unwrap();
    let shown = within(Duration::from_secs(5), || async { backend.observe().await.is_err() }).await;
    assert!(shown, "the hold polls forever without a word");
    let err = backend.observe().await.unwrap_err().to_string();
    assert!(
        err.contains(
            "scale canary to 25 % of its replicas (hold deployments.apps/checkout in prod): no progress for 1 s"
        ),
        "{err}"
    );
    assert!(err.contains("at 0 of 2 updated replicas; paused where it is"), "{err}");
    assert!(state.lock().unwrap().paused);
    // It has stopped polling.
    let reads = api.requests().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let more = api.requests().iter().skip(reads).filter(|s| s.path.ends_with("/deployments/checkout")).count();
    assert_eq!(more, 0);
}

#[tokio::test]
async fn a_rolling_update_holds_at_each_of_four_batches_and_shows_the_replica_sets_split() {
    let state = Arc::new(Mutex::new(FakeController { paused: true, ..Default::default() }));
    let api = controller_server(state.clone());
    let backend = rolling(&api);
    // The core walks the plan's four batches (25, 50, 75, 100 %); each promote enters the next.
    let mut plan = example_plan("argo-rollouts.toml");
    plan.strategy = flightdeck_core::plan::Strategy::Rolling { batch_percent: 25, bake: Duration::from_secs(60) };
    plan.target = target(
        "deployment",
        &[("namespace", "prod"), ("stable_deployment", "checkout"), ("canary_deployment", "checkout")],
    );
    let now = Timestamp(1_000);
    let (mut r, mut effects) = step(&Rollout::new("prod/checkout", plan), Event::Start, now);
    for (batch, boundary) in [(25u8, 2i64), (50, 4), (75, 6)] {
        assert_eq!(effects, vec![Effect::Scale { version: Version::Canary, percent: batch }]);
        backend.apply(&effects[0]).await.unwrap();
        let held = within(Duration::from_secs(10), || async { state.lock().unwrap().paused }).await;
        assert!(held, "batch {batch} % never held");
        // Held: more reads do not move it (the controller is paused), for as long as nobody promotes.
        for _ in 0..5 {
            backend.observe().await.unwrap();
        }
        assert_eq!(state.lock().unwrap().updated, boundary, "batch {batch} %");
        // The cockpit's split is the ReplicaSets' ready pods: boundary of 8.
        let split = backend.observe().await.unwrap().canary_weight;
        assert_eq!(split, Some((boundary * 100 / ROLLING_REPLICAS) as u8), "batch {batch} %");
        let observed = step(&r, Event::Observation(backend.observe().await.unwrap()), now).0;
        assert!(matches!(observed.phase, Phase::Progressing { .. }), "no drift pause: {:?}", observed.phase);
        assert_eq!(observed.observed_weight, Some(batch));
        (r, effects) = step(&observed, promote_by("alice", &observed), now);
    }
    // The last batch lets the controller finish.
    assert_eq!(effects[0], Effect::Scale { version: Version::Canary, percent: 100 });
    backend.apply(&effects[0]).await.unwrap();
    let done = within(Duration::from_secs(10), || async {
        backend.observe().await.is_ok() && state.lock().unwrap().updated == ROLLING_REPLICAS
    })
    .await;
    assert!(done);
    assert!(!state.lock().unwrap().paused);
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(100));
    assert_eq!((r.stage, r.canary_weight), (3, 100));
}

// ---------------------------------------------------------------- Flagger

const CANARY: &str = "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo";
const GATE: &str = "/api/v1/namespaces/test/services/flagger-loadtester:80/proxy";
const EVENTS: &str = "/api/v1/namespaces/test/events";

fn flagger(api: &FakeApi) -> FlaggerCanary {
    FlaggerCanary::from_target(&target("flagger", &[("namespace", "test"), ("canary", "podinfo")]), api.client())
        .unwrap()
}

/// A server with one Canary; the load tester answers through the service proxy.
fn canary_server(canary: Value) -> FakeApi {
    FakeApi::new(move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", CANARY) | ("PATCH", CANARY) => Reply::Json(200, canary.clone()),
        ("PATCH", "/apis/apps/v1/namespaces/test/deployments/podinfo") => Reply::Json(200, json!({})),
        ("GET", "/apis/apps/v1/namespaces/test/deployments/podinfo") => {
            Reply::Json(200, fixture("flagger-podinfo-deployment.json"))
        }
        ("POST", p) if p.starts_with(GATE) => Reply::Json(200, json!("Gate opened")),
        ("GET", EVENTS) => Reply::Json(200, list_of(vec![], "1")),
        _ => status_error(404, "NotFound", "not found"),
    })
}

#[test]
fn flagger_canaries_show_their_phase_weight_and_checks() {
    let metrics = "request-success-rate ≥ 99, request-duration ≤ 500";
    // (fixture, status, weight %, weight stage of 10/20/30/40/50 (+100), detail)
    let table: Vec<(&str, NativeStatus, u8, usize, String)> = vec![
        (
            "flagger-progressing.json",
            NativeStatus::Progressing,
            30,
            2,
            format!("Progressing · failed checks 1/5 · {metrics}"),
        ),
        (
            "flagger-waiting-promotion.json",
            NativeStatus::Paused {
                reason: "waiting for promotion (confirm-promotion gate): promote to open it".into(),
                step: None,
                before_switch: false,
            },
            50,
            4,
            format!("WaitingPromotion · failed checks 0/5 · {metrics}"),
        ),
        // The primary is being updated; the routes still hold the last analysis weight.
        (
            "flagger-promoting.json",
            NativeStatus::Progressing,
            50,
            5,
            format!("Promoting · failed checks 0/5 · {metrics}"),
        ),
        // canaryWeight 0 after promotion means "all on the primary, which is the new version": 100 %.
        ("flagger-succeeded.json", NativeStatus::Healthy, 100, 5, format!("Succeeded · failed checks 0/5 · {metrics}")),
        (
            "flagger-failed.json",
            NativeStatus::Aborted { message: "Canary analysis failed, Deployment scaled to zero.".into() },
            0,
            0,
            format!("Failed · failed checks 0/5 · {metrics}"),
        ),
    ];
    for (file, native, weight, stage, detail) in table {
        let view = k8s::flagger::view(&fixture(file));
        assert_eq!(
            (&view.status, view.weight, view.stage, view.detail.as_str()),
            (&native, weight, stage, detail.as_str()),
            "{file}"
        );
    }
    // Suspended mid-analysis: paused; iterations (A/B testing) are counted against the plan's.
    let mut suspended = fixture("flagger-progressing.json");
    suspended["spec"]["suspend"] = json!(true);
    suspended["spec"]["analysis"]["iterations"] = json!(10);
    suspended["status"]["iterations"] = json!(3);
    let view = k8s::flagger::view(&suspended);
    assert_eq!(
        view.status,
        NativeStatus::Paused { reason: "suspended (spec.suspend)".into(), step: None, before_switch: false }
    );
    assert!(view.detail.starts_with("Progressing · iteration 3/10 · failed checks 1/5"), "{}", view.detail);
}

/// A write as compared: method, path, content type, body.
type Request = (String, String, String, Value);

#[tokio::test]
async fn flagger_verbs_become_flaggers_own_means_or_are_refused_with_the_reason() {
    let gate = |endpoint: &str| {
        (
            "POST".to_owned(),
            format!("{GATE}{endpoint}"),
            "application/json".to_owned(),
            json!({"name": "podinfo", "namespace": "test"}),
        )
    };
    let patch = |body: Value| ("PATCH".to_owned(), CANARY.to_owned(), "application/merge-patch+json".to_owned(), body);
    let mut suspended = fixture("flagger-progressing.json");
    suspended["spec"]["suspend"] = json!(true);
    let mut no_gates = fixture("flagger-progressing.json");
    no_gates["spec"]["analysis"]["webhooks"] = json!([]);
    // (fixture, verb, the request, or the reason it is unavailable)
    let table: Vec<(Value, NativeVerb, Result<Request, &str>)> = vec![
        (fixture("flagger-waiting-promotion.json"), NativeVerb::Promote, Ok(gate("/gate/open"))),
        (fixture("flagger-progressing.json"), NativeVerb::Pause, Ok(patch(json!({"spec": {"suspend": true}})))),
        (suspended, NativeVerb::Resume, Ok(patch(json!({"spec": {"suspend": false}})))),
        (
            fixture("flagger-progressing.json"),
            NativeVerb::PromoteFull,
            Ok(patch(json!({"spec": {"skipAnalysis": true}}))),
        ),
        (fixture("flagger-progressing.json"), NativeVerb::Abort, Ok(gate("/rollback/open"))),
        (fixture("flagger-waiting-promotion.json"), NativeVerb::Undo, Ok(gate("/rollback/open"))),
        (
            fixture("flagger-progressing.json"),
            NativeVerb::Resume,
            Err("the Canary is not suspended: nothing to resume"),
        ),
        (
            fixture("flagger-failed.json"),
            NativeVerb::Retry,
            Err("Flagger starts a Canary again only when its target changes"),
        ),
        (no_gates.clone(), NativeVerb::Promote, Err("advances and promotes by itself")),
        (no_gates, NativeVerb::Abort, Err("no rollback webhook to open")),
        // kubectl set image on the target: Flagger sees a new revision and analyses it.
        (
            fixture("flagger-succeeded.json"),
            NativeVerb::SetImage { container: "podinfod".into(), image: "ghcr.io/stefanprodan/podinfo:6.0.1".into() },
            Ok((
                "PATCH".to_owned(),
                "/apis/apps/v1/namespaces/test/deployments/podinfo".to_owned(),
                "application/strategic-merge-patch+json".to_owned(),
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}}}}),
            )),
        ),
        (fixture("flagger-succeeded.json"), NativeVerb::UndoTo { revision: 3 }, Err("keeps no numbered revisions")),
        (fixture("flagger-progressing.json"), NativeVerb::TerminateAnalysis, Err("not an object to terminate")),
    ];
    for (canary, verb, expected) in table {
        let phase = canary["status"]["phase"].clone();
        let api = canary_server(canary);
        let result = flagger(&api).apply(&Effect::Native { verb: verb.clone() }).await;
        let writes: Vec<(String, String, String, Value)> = api
            .writes()
            .iter()
            .map(|s| (s.method.clone(), s.path.clone(), s.content_type.clone().unwrap_or_default(), s.json()))
            .collect();
        match expected {
            Ok(request) => {
                result.unwrap_or_else(|e| panic!("{phase} {verb:?}: {e}"));
                assert_eq!(writes, vec![request], "{phase} {verb:?}");
            }
            Err(reason) => {
                let err = result.unwrap_err();
                assert!(matches!(err, BackendError::Unsupported { .. }), "{phase} {verb:?}: {err}");
                assert!(err.to_string().contains(reason), "{phase} {verb:?}: {err}");
                assert!(writes.is_empty(), "{phase} {verb:?}: nothing is sent: {writes:?}");
            }
        }
    }
}

#[tokio::test]
async fn the_core_mirrors_a_flagger_canary_through_its_phases() {
    let plan = example_plan("flagger.toml");
    let now = Timestamp(1_000);
    let (mut r, _) = step(&Rollout::new("staging/podinfo", plan), Event::Start, now);
    let observe = |file: &str| Event::Observation(k8s::flagger::observe(&fixture(file)));
    r = step(&r, observe("flagger-progressing.json"), now).0;
    assert!(matches!(r.phase, Phase::Progressing { .. }));
    assert_eq!((r.stage, r.canary_weight), (2, 30));
    r = step(&r, observe("flagger-waiting-promotion.json"), now).0;
    assert!(matches!(&r.phase, Phase::Paused { by, .. } if by.0 == "controller"));
    let (_, effects) = step(&r, promote_by("alice", &r), now);
    assert_eq!(effects, vec![Effect::Native { verb: NativeVerb::Promote }]);
    let promoted = step(&r, observe("flagger-succeeded.json"), now).0;
    assert!(matches!(promoted.phase, Phase::Promoted { .. }));
    assert_eq!((promoted.stage, promoted.canary_weight), (5, 100));
    let failed = step(&r, observe("flagger-failed.json"), now).0;
    assert!(matches!(failed.phase, Phase::Aborted { .. }));
    assert_eq!(failed.canary_weight, 0);
}

// ---------------------------------------------------------------- Flagger's load tester and scheduler in miniature

/// A Flagger controller and its load tester in miniature. The load tester
/// is pkg/loadtester/server.go with gate.go's `GateStorage`: one boolean
/// per `name.namespace` (and per `rollback.name.namespace`), shared by
/// every `/gate/check` hook, that stays open until `/gate/close`;
/// `/gate/approve` and `/gate/halt` are static. [`FlaggerWorld::tick`] is
/// one pass of pkg/controller/scheduler.go `advanceCanary` with the hooks
/// of scheduler_hooks.go, and phases are set as pkg/canary/status.go
/// `setStatusPhase` sets them (`canaryWeight: 0` outside Progressing,
/// Waiting and Promoting).
struct FlaggerWorld {
    canary: Value,
    /// The target's spec hash now: another than `lastAppliedSpec` is a new revision.
    target: String,
    gates: std::collections::HashMap<String, bool>,
    /// The core/v1 Events Flagger recorded about the Canary.
    events: Vec<Value>,
}

impl FlaggerWorld {
    fn new(canary: Value) -> FlaggerWorld {
        let target = canary["status"]["lastAppliedSpec"].as_str().unwrap().to_owned();
        FlaggerWorld { canary, target, gates: Default::default(), events: Vec::new() }
    }

    fn phase(&self) -> String {
        self.canary["status"]["phase"].as_str().unwrap_or_default().to_owned()
    }

    fn weight(&self) -> u64 {
        self.canary["status"]["canaryWeight"].as_u64().unwrap_or(0)
    }

    fn gate(&self, key: &str) -> bool {
        self.gates.get(key).copied().unwrap_or(false)
    }

    /// The load tester's answer to one webhook call (server.go): 200 passes.
    fn call(&mut self, url: &str) -> bool {
        let path = url.split_once("://").map_or(url, |(_, r)| r);
        let path = path.find('/').map_or("/", |i| &path[i..]);
        let key = "podinfo.test";
        match path {
            "/gate/approve" => true,
            "/gate/halt" => false,
            "/gate/check" => *self.gates.entry(key.to_owned()).or_insert(false),
            "/rollback/check" => *self.gates.entry(format!("rollback.{key}")).or_insert(false),
            _ => false,
        }
    }

    fn hooks(&self, kind: &str) -> Vec<String> {
        let hooks = self.canary["spec"]["analysis"]["webhooks"].as_array().cloned().unwrap_or_default();
        hooks.iter().filter(|h| h["type"] == kind).map(|h| h["url"].as_str().unwrap().to_owned()).collect()
    }

    /// runConfirm*Hooks: every hook of the type passes.
    fn confirmed(&mut self, kind: &str) -> bool {
        self.hooks(kind).iter().all(|url| self.call(url))
    }

    /// runRollbackHooks: any rollback hook passes.
    fn rollback_signalled(&mut self) -> bool {
        self.hooks("rollback").iter().any(|url| self.call(url))
    }

    /// status.go setStatusPhase.
    fn set_phase(&mut self, phase: &str) {
        let status = &mut self.canary["status"];
        status["phase"] = json!(phase);
        if !matches!(phase, "Progressing" | "Waiting" | "Promoting") {
            status["canaryWeight"] = json!(0);
        }
        if matches!(phase, "Succeeded" | "Initialized") {
            status["lastPromotedSpec"] = status["lastAppliedSpec"].clone();
        }
    }

    /// checkCanaryStatus for a new revision: SyncStatus to Progressing at 0 %.
    fn start(&mut self) {
        self.canary["status"]["lastAppliedSpec"] = json!(self.target);
        self.canary["status"]["canaryWeight"] = json!(0);
        self.canary["status"]["failedChecks"] = json!(0);
        self.set_phase("Progressing");
    }

    /// One scheduler interval (scheduler.go advanceCanary, in its order).
    fn tick(&mut self) {
        let phase = self.phase();
        let new_revision = self.canary["status"]["lastAppliedSpec"] != json!(self.target);
        match phase.as_str() {
            // shouldAdvance: only a new revision moves a finished Canary; checkCanaryStatus runs confirm-rollout.
            "Succeeded" | "Failed" | "Initialized" | "Waiting" => {
                if phase != "Waiting" && !new_revision {
                    return;
                }
                if self.confirmed("confirm-rollout") {
                    self.start();
                } else {
                    self.set_phase("Waiting");
                }
            }
            _ => {
                // shouldSkipAnalysis: promote at once.
                if self.canary["spec"]["skipAnalysis"] == json!(true) {
                    self.set_phase("Succeeded");
                    return;
                }
                if matches!(phase.as_str(), "Progressing" | "WaitingPromotion") && self.rollback_signalled() {
                    self.set_phase("Failed");
                    return;
                }
                match phase.as_str() {
                    "Promoting" => self.set_phase("Finalising"),
                    "Finalising" => self.set_phase("Succeeded"),
                    "WaitingPromotion" => {
                        if self.confirmed("confirm-promotion") {
                            self.set_phase("Promoting");
                        }
                    }
                    _ => {
                        let (step, max) = (10, 50);
                        if self.weight() < max {
                            if self.confirmed("confirm-traffic-increase") {
                                self.canary["status"]["canaryWeight"] = json!(self.weight() + step);
                            }
                        } else if self.confirmed("confirm-promotion") {
                            self.set_phase("Promoting");
                        } else {
                            self.set_phase("WaitingPromotion");
                        }
                    }
                }
            }
        }
    }

    /// The API server: the Canary (merge patches of its spec applied) and
    /// the load tester behind the service proxy.
    fn reply(&mut self, seen: &Seen) -> Reply {
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", CANARY) => Reply::Json(200, self.canary.clone()),
            ("PATCH", CANARY) => {
                for (k, v) in seen.json()["spec"].as_object().cloned().unwrap_or_default() {
                    self.canary["spec"][k] = v;
                }
                Reply::Json(200, self.canary.clone())
            }
            ("POST", p) if p.starts_with(GATE) => {
                let body = seen.json();
                let key = format!("{}.{}", body["name"].as_str().unwrap(), body["namespace"].as_str().unwrap());
                // server.go: check answers 200 "Approved" or 403 "Forbidden" (plain text, GateStorage.isOpen
                // stores false for a name it has not seen); open and close answer 202.
                let check =
                    |open: bool| if open { Reply::Text(200, "Approved") } else { Reply::Text(403, "Forbidden") };
                let (key, open) = match &p[GATE.len()..] {
                    "/gate/open" => (key, true),
                    "/gate/close" => (key, false),
                    "/rollback/open" => (format!("rollback.{key}"), true),
                    "/rollback/close" => (format!("rollback.{key}"), false),
                    "/gate/check" => return check(*self.gates.entry(key).or_insert(false)),
                    "/rollback/check" => return check(*self.gates.entry(format!("rollback.{key}")).or_insert(false)),
                    "/gate/approve" => return Reply::Text(200, "Approved"),
                    _ => return Reply::Text(403, "Forbidden"),
                };
                self.gates.insert(key, open);
                Reply::Text(202, "")
            }
            ("GET", EVENTS) => Reply::Json(200, list_of(self.events.clone(), "1")),
            _ => status_error(404, "NotFound", "not found"),
        }
    }
}

fn flagger_world(canary: Value) -> (Arc<Mutex<FlaggerWorld>>, FakeApi) {
    let world = Arc::new(Mutex::new(FlaggerWorld::new(canary)));
    let w = world.clone();
    (world, FakeApi::new(move |seen, _| w.lock().unwrap().reply(seen)))
}

#[tokio::test]
async fn an_aborted_flagger_revision_does_not_roll_back_the_next_one() {
    // flagger-progressing.json at 30 %: the captain aborts.
    let (world, api) = flagger_world(fixture("flagger-progressing.json"));
    let backend = flagger(&api);
    backend.apply(&Effect::Native { verb: NativeVerb::Abort }).await.unwrap();
    assert!(world.lock().unwrap().gate("rollback.podinfo.test"));
    // Until Flagger acts, the open gate is shown.
    let detail = backend.observe().await.unwrap().native_detail.unwrap();
    assert!(detail.ends_with("· rollback gate open"), "{detail}");
    world.lock().unwrap().tick();
    assert_eq!(world.lock().unwrap().phase(), "Failed");
    // Its job done, the gate is closed at the next reading.
    let seen = backend.observe().await.unwrap();
    assert!(!world.lock().unwrap().gate("rollback.podinfo.test"), "the rollback gate stayed open");
    assert!(!seen.native_detail.unwrap().contains("gate open"));
    // The next revision runs its analysis instead of being rolled back at its first Progressing tick.
    world.lock().unwrap().target = "7b9c5d6f84".into();
    for _ in 0..3 {
        world.lock().unwrap().tick();
        backend.observe().await.unwrap();
    }
    let w = world.lock().unwrap();
    assert_eq!((w.phase().as_str(), w.weight()), ("Progressing", 20), "the new revision was rolled back");
    let closes: Vec<String> = api.writes().iter().map(|s| s.path.clone()).filter(|p| p.ends_with("/close")).collect();
    assert_eq!(closes, [format!("{GATE}/rollback/close")], "closed once");
}

#[tokio::test]
async fn a_flagger_promote_does_not_pre_approve_the_next_revision() {
    let (world, api) = flagger_world(fixture("flagger-waiting-promotion.json"));
    let backend = flagger(&api);
    backend.apply(&Effect::Native { verb: NativeVerb::Promote }).await.unwrap();
    let detail = backend.observe().await.unwrap().native_detail.unwrap();
    assert!(detail.ends_with("· confirm-promotion gate open"), "{detail}");
    for _ in 0..3 {
        world.lock().unwrap().tick();
        backend.observe().await.unwrap();
    }
    assert_eq!(world.lock().unwrap().phase(), "Succeeded");
    assert!(!world.lock().unwrap().gate("podinfo.test"), "the promotion gate stayed open");
    // The next revision walks its weights and waits for its own promote.
    world.lock().unwrap().target = "7b9c5d6f84".into();
    for _ in 0..8 {
        world.lock().unwrap().tick();
        backend.observe().await.unwrap();
    }
    assert_eq!(world.lock().unwrap().phase(), "WaitingPromotion", "the next revision promoted by itself");
}

/// The gates a run left open are read back by the next one (flightdeck's
/// list of what it opened is in memory only; the load tester's
/// `/gate/check` and `/rollback/check` answer the state, server.go).
#[tokio::test]
async fn after_a_restart_the_gates_a_run_left_open_are_read_back_and_closed() {
    // A rollback gate left open by a run that stopped after Flagger failed the revision (flagger-failed.json):
    // the next run closes it at its first reading, so the next revision is not rolled back.
    let (world, api) = flagger_world(fixture("flagger-failed.json"));
    world.lock().unwrap().gates.insert("rollback.podinfo.test".into(), true);
    let restarted = flagger(&api);
    let detail = restarted.observe().await.unwrap().native_detail.unwrap();
    assert!(!world.lock().unwrap().gate("rollback.podinfo.test"), "the rollback gate stayed open after the restart");
    assert!(detail.contains("rollback gate found open and closed"), "{detail}");
    world.lock().unwrap().target = "7b9c5d6f84".into();
    for _ in 0..3 {
        world.lock().unwrap().tick();
        restarted.observe().await.unwrap();
    }
    let (phase, weight) = {
        let w = world.lock().unwrap();
        (w.phase(), w.weight())
    };
    assert_eq!((phase.as_str(), weight), ("Progressing", 20), "the new revision was rolled back");

    // A promote sent just before a restart (flagger-waiting-promotion.json): its confirm-promotion gate is shut
    // (it would let any later revision pass unseen too) and the captain is told to promote again.
    let (world, api) = flagger_world(fixture("flagger-waiting-promotion.json"));
    flagger(&api).apply(&Effect::Native { verb: NativeVerb::Promote }).await.unwrap();
    assert!(world.lock().unwrap().gate("podinfo.test"));
    let restarted = flagger(&api);
    let detail = restarted.observe().await.unwrap().native_detail.unwrap();
    assert!(detail.contains("confirm-promotion gate found open and closed (promote again"), "{detail}");
    world.lock().unwrap().tick();
    assert_eq!(world.lock().unwrap().phase(), "WaitingPromotion", "promoted through a gate nobody holds");
    // Said until the captain answers: the next command clears it.
    assert!(restarted.observe().await.unwrap().native_detail.unwrap().contains("found open and closed"));
    restarted.apply(&Effect::Native { verb: NativeVerb::Promote }).await.unwrap();
    assert!(!restarted.observe().await.unwrap().native_detail.unwrap().contains("found open"));

    // An abort sent just before a restart (flagger-progressing.json): the rollback gate is kept where Flagger
    // reads it, and closed once Flagger has rolled back.
    let (world, api) = flagger_world(fixture("flagger-progressing.json"));
    flagger(&api).apply(&Effect::Native { verb: NativeVerb::Abort }).await.unwrap();
    let restarted = flagger(&api);
    let detail = restarted.observe().await.unwrap().native_detail.unwrap();
    assert!(detail.contains("rollback gate found open (an abort on its way)"), "{detail}");
    assert!(world.lock().unwrap().gate("rollback.podinfo.test"));
    world.lock().unwrap().tick();
    assert_eq!(world.lock().unwrap().phase(), "Failed");
    restarted.observe().await.unwrap();
    assert!(!world.lock().unwrap().gate("rollback.podinfo.test"), "the rollback gate stayed open");

    // A load tester that cannot be asked: said, and asked again at the next reading.
    let (world, api) = flagger_world(fixture("flagger-failed.json"));
    world.lock().unwrap().gates.insert("rollback.podinfo.test".into(), true);
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (d, inner) = (down.clone(), api.clone());
    let flaky = FakeApi::new(move |seen, n| {
        if d.load(std::sync::atomic::Ordering::SeqCst) && seen.path.ends_with("/check") {
            return status_error(
                503,
                "ServiceUnavailable",
                "no endpoints available for service \"flagger-loadtester\"",
            );
        }
        (inner.responder)(seen, n)
    });
    let restarted = flagger(&flaky);
    let detail = restarted.observe().await.unwrap().native_detail.unwrap();
    assert!(detail.contains("gates left open not read back yet") && detail.contains("503"), "{detail}");
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let detail = restarted.observe().await.unwrap().native_detail.unwrap();
    assert!(!detail.contains("not read back"), "{detail}");
    assert!(!world.lock().unwrap().gate("rollback.podinfo.test"));
}

/// Weights as Flagger's routes hold them, not as its status field reads (pkg/canary/status.go
/// `setStatusPhase` zeroes `canaryWeight` outside Progressing, Waiting and Promoting; pkg/controller/scheduler.go
/// `handleFailedPromotion` reports the total with all traffic on the canary; `runCanary` adds `stepWeight` while
/// below `maxWeight`, capped at the total only), and `spec.suspend` warned about in every phase.
#[test]
fn flagger_weights_follow_its_routes_and_a_suspended_canary_is_warned_about_in_every_phase() {
    // WaitingPromotion as Flagger writes it (canaryWeight 0): the routes stay at maxWeight 50.
    let waiting = fixture("flagger-waiting-promotion.json");
    assert_eq!(waiting["status"]["canaryWeight"], 0);
    let view = k8s::flagger::view(&waiting);
    assert_eq!((view.weight, view.stage), (50, 4));
    // A failed promotion: Flagger routes everything to the canary and says so; a rollback reports 0.
    let mut failed_promotion = fixture("flagger-failed.json");
    failed_promotion["status"]["canaryWeight"] = json!(100);
    let view = k8s::flagger::view(&failed_promotion);
    assert_eq!(view.weight, 100);
    let NativeStatus::Aborted { message } = &view.status else { panic!("{:?}", view.status) };
    assert!(message.ends_with("100 % of traffic is on the canary"), "{message}");
    assert_eq!(k8s::flagger::view(&fixture("flagger-failed.json")).weight, 0);
    // stepWeight 20 up to maxWeight 50 walks 20, 40, 60 and waits for promotion at 60.
    let mut overshoot = fixture("flagger-waiting-promotion.json");
    overshoot["spec"]["analysis"]["stepWeight"] = json!(20);
    assert_eq!(k8s::flagger::analysis_weights(&overshoot), [20, 40, 60]);
    assert_eq!(k8s::flagger::view(&overshoot).weight, 60);
    // Suspended: said in every phase, with what it stops.
    for file in
        ["flagger-progressing.json", "flagger-waiting-promotion.json", "flagger-promoting.json", "flagger-failed.json"]
    {
        let mut canary = fixture(file);
        assert!(!k8s::flagger::view(&canary).detail.contains("spec.suspend"), "{file}");
        canary["spec"]["suspend"] = json!(true);
        let detail = k8s::flagger::view(&canary).detail;
        assert!(detail.ends_with(k8s::flagger::SUSPENDED_WARNING), "{file}: {detail}");
        assert!(detail.contains("automatic rollback"), "{detail}");
    }
    // Argo's spec.paused likewise, shown with the rollout through the core.
    let plan = example_plan("argo-rollouts.toml");
    let (r, _) = step(&Rollout::new("prod-eu-1/checkout", plan), Event::Start, Timestamp(1_000));
    let r = step(&r, Event::Observation(status::observe(&fixture("rollout-user-paused.json"))), Timestamp(1_000)).0;
    assert!(
        r.native_detail.as_deref().unwrap_or_default().ends_with(status::USER_PAUSED_WARNING),
        "{:?}",
        r.native_detail
    );
}

/// A Canary of Flagger's docs (docs/gitbook/usage/webhooks.md, "Manual
/// gating") in `phase`, with these webhooks (type, URL path on the load tester).
fn gated_canary(phase: &str, hooks: &[(&str, &str)]) -> Value {
    let mut canary = fixture("flagger-progressing.json");
    canary["status"]["phase"] = json!(phase);
    canary["spec"]["analysis"]["webhooks"] = hooks
        .iter()
        .map(|(kind, path)| json!({"name": kind, "type": kind, "url": format!("http://flagger-loadtester.test{path}")}))
        .collect();
    canary
}

#[tokio::test]
async fn flagger_gates_are_chosen_by_phase_and_only_the_load_testers_check_endpoints_open() {
    let all =
        [("confirm-rollout", "/gate/check"), ("confirm-promotion", "/gate/check"), ("rollback", "/rollback/check")];
    // (phase, hooks, verb, the load tester paths posted, or the reason nothing is)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, NativeVerb, Result<Vec<&'a str>, &'a str>);
    let table: Vec<Case> = vec![
        // Waiting is held by confirm-rollout, WaitingPromotion by confirm-promotion.
        ("Waiting", all.to_vec(), NativeVerb::Promote, Ok(vec!["/gate/open"])),
        ("WaitingPromotion", all.to_vec(), NativeVerb::Promote, Ok(vec!["/gate/open"])),
        // A static gate answers 202 to /gate/open and nothing happens: refused.
        (
            "Waiting",
            vec![("confirm-rollout", "/gate/halt")],
            NativeVerb::Promote,
            Err("static gate that is always shut"),
        ),
        (
            "WaitingPromotion",
            vec![("confirm-promotion", "/gate/approve")],
            NativeVerb::Promote,
            Err("static gate that is always open"),
        ),
        (
            "WaitingPromotion",
            vec![("confirm-promotion", "/approve")],
            NativeVerb::Promote,
            Err("not the load tester's"),
        ),
        ("Progressing", all.to_vec(), NativeVerb::Promote, Err("advances and promotes by itself")),
        // confirm-traffic-increase holds without a phase change.
        ("Progressing", vec![("confirm-traffic-increase", "/gate/check")], NativeVerb::Promote, Ok(vec!["/gate/open"])),
        ("Promoting", all.to_vec(), NativeVerb::Promote, Err("nothing waits for a promote")),
        // Abort opens the rollback gate only where Flagger reads it.
        ("Progressing", all.to_vec(), NativeVerb::Abort, Ok(vec!["/rollback/open"])),
        ("WaitingPromotion", all.to_vec(), NativeVerb::Undo, Ok(vec!["/rollback/open"])),
        (
            "Progressing",
            vec![("rollback", "/gate/check")],
            NativeVerb::Abort,
            Err("not the load tester's /rollback/check"),
        ),
        // Waiting at 0 %: the confirm-rollout gate is shut, no rollback gate is left for the next run.
        ("Waiting", all.to_vec(), NativeVerb::Abort, Ok(vec!["/gate/close"])),
        ("Promoting", all.to_vec(), NativeVerb::Abort, Err("Flagger is promoting (Promoting)")),
        ("Finalising", all.to_vec(), NativeVerb::Abort, Err("Flagger is promoting (Finalising)")),
        ("Failed", all.to_vec(), NativeVerb::Abort, Err("already failed")),
        ("Succeeded", all.to_vec(), NativeVerb::Undo, Err("nothing is rolling out")),
        ("Succeeded", all.to_vec(), NativeVerb::PromoteFull, Err("would skip the next revision's analysis")),
    ];
    for (phase, hooks, verb, expected) in table {
        let (world, api) = flagger_world(gated_canary(phase, &hooks));
        let result = flagger(&api).apply(&Effect::Native { verb: verb.clone() }).await;
        let posted: Vec<String> = api.writes().iter().map(|s| s.path.trim_start_matches(GATE).to_owned()).collect();
        match expected {
            Ok(paths) => {
                result.unwrap_or_else(|e| panic!("{phase} {verb:?}: {e}"));
                assert_eq!(posted, paths, "{phase} {verb:?}");
            }
            Err(reason) => {
                let err = result.unwrap_err().to_string();
                assert!(err.contains(reason), "{phase} {verb:?}: {err}");
                assert!(posted.is_empty(), "{phase} {verb:?}: {posted:?}");
            }
        }
        assert!(!world.lock().unwrap().gate("rollback.podinfo.test") || posted_rollback(&api), "{phase} {verb:?}");
    }
}

fn posted_rollback(api: &FakeApi) -> bool {
    api.writes().iter().any(|s| s.path.ends_with("/rollback/open"))
}

#[tokio::test]
async fn a_traffic_increase_gate_passes_one_step_and_skip_analysis_is_cleared_after_the_promotion() {
    // confirm-traffic-increase: one promote, one step.
    let canary = gated_canary("Progressing", &[("confirm-traffic-increase", "/gate/check")]);
    let (world, api) = flagger_world(canary);
    let backend = flagger(&api);
    backend.apply(&Effect::Native { verb: NativeVerb::Promote }).await.unwrap();
    for _ in 0..3 {
        world.lock().unwrap().tick();
        backend.observe().await.unwrap();
    }
    assert_eq!(world.lock().unwrap().weight(), 40, "one step (30 → 40), not one per tick");
    // promote-full: skipAnalysis for this revision only.
    backend.apply(&Effect::Native { verb: NativeVerb::PromoteFull }).await.unwrap();
    let detail = backend.observe().await.unwrap().native_detail.unwrap();
    assert!(detail.ends_with("skipAnalysis · skipAnalysis set by flightdeck"), "{detail}");
    world.lock().unwrap().tick();
    assert_eq!(world.lock().unwrap().phase(), "Succeeded");
    backend.observe().await.unwrap();
    assert_eq!(world.lock().unwrap().canary["spec"]["skipAnalysis"], json!(false), "skipAnalysis left set");
    world.lock().unwrap().target = "7b9c5d6f84".into();
    world.lock().unwrap().tick();
    world.lock().unwrap().tick();
    assert_eq!(world.lock().unwrap().phase(), "Progressing", "the next revision skipped its analysis");
    // A skipAnalysis someone else set is theirs: flightdeck does not clear it.
    let mut theirs = gated_canary("Progressing", &[]);
    theirs["spec"]["skipAnalysis"] = json!(true);
    let (world, api) = flagger_world(theirs);
    let backend = flagger(&api);
    backend.apply(&Effect::Native { verb: NativeVerb::PromoteFull }).await.unwrap();
    world.lock().unwrap().tick();
    backend.observe().await.unwrap();
    assert_eq!(world.lock().unwrap().canary["spec"]["skipAnalysis"], json!(true));
}

// ---------------------------------------------------------------- kubectl as the oracle

impl FakeApi {
    /// Serves the same responder over HTTP/1.1 on loopback (one request per
    /// connection), for a real client such as kubectl. Returns the port.
    async fn serve_tcp(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let api = self.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let api = api.clone();
                tokio::spawn(async move { api.answer(socket).await });
            }
        });
        port
    }

    async fn answer(&self, mut socket: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
                .map(str::to_owned)
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let seen = Seen {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            content_type: header("content-type"),
            body: String::from_utf8_lossy(&buf[head_end..]).into_owned(),
        };
        let n = {
            let mut log = self.seen.lock().unwrap();
            let n = log.iter().filter(|s| s.method == seen.method && s.path == seen.path).count();
            log.push(seen.clone());
            n
        };
        let (code, body) = match (self.responder)(&seen, n) {
            Reply::Json(code, body) => (code, body.to_string()),
            Reply::Text(code, text) => (code, text.to_owned()),
            Reply::Stream(_) => (500, "{}".to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
    }
}

/// An API server with the discovery kubectl needs, one Deployment (paused
/// or not) and its ReplicaSets; every write accepted.
fn deployment_server(paused: bool) -> FakeApi {
    FakeApi::new(move |seen, _| {
        let mut deployment = fixture("deployment.json");
        deployment["spec"]["paused"] = json!(paused);
        let resources = |group_version: &str, list: Value| json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list});
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/api") => Reply::Json(
                200,
                json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            ),
            ("GET", "/apis") => Reply::Json(
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}),
            ),
            ("GET", "/api/v1") => Reply::Json(200, resources("v1", json!([]))),
            ("GET", "/apis/apps/v1") => Reply::Json(
                200,
                resources(
                    "apps/v1",
                    json!([
                {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["deploy"]},
                {"name": "replicasets", "singularName": "replicaset", "namespaced": true, "kind": "ReplicaSet",
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["rs"]}]),
                ),
            ),
            ("GET", "/apis/apps/v1/namespaces/prod/deployments/checkout") | ("PATCH", _) => {
                Reply::Json(200, deployment)
            }
            ("GET", "/apis/apps/v1/namespaces/prod/replicasets") => {
                Reply::Json(200, fixture("deployment-replicasets.json"))
            }
            _ => status_error(404, "NotFound", "not found"),
        }
    })
}

/// kubectl from PATH (Debian's kubernetes-client, see scripts/setup).
fn kubectl_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("kubectl")).find(|p| p.is_file())
}

/// The writes kubectl sends for `args` against a server like `deployment_server(paused)`.
async fn kubectl_writes(kubectl: &Path, paused: bool, args: &[&str]) -> Vec<Seen> {
    let api = deployment_server(paused);
    let port = api.serve_tcp().await;
    let mut command = std::process::Command::new(kubectl);
    command
        .args(["--kubeconfig=/dev/null", &format!("--server=http://127.0.0.1:{port}"), "--namespace=prod"])
        .args(args)
        .env("HOME", std::env::temp_dir());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    api.writes()
}

#[tokio::test]
async fn kubectl_is_the_oracle_for_deployment_pause_resume_and_undo() {
    let Some(kubectl) = kubectl_binary() else {
        println!("skipped: no kubectl on PATH (scripts/setup installs Debian's kubernetes-client)");
        return;
    };
    // (kubectl's command and the Deployment it finds, flightdeck's effect on the same Deployment)
    let cases: [(&[&str], bool, Effect); 3] = [
        (&["rollout", "pause", "deployment/checkout"], false, Effect::Scale { version: Version::Canary, percent: 0 }),
        (&["rollout", "resume", "deployment/checkout"], true, Effect::Scale { version: Version::Canary, percent: 100 }),
        (&["rollout", "undo", "deployment/checkout"], false, Effect::Undo { to_revision: "v1".into() }),
    ];
    for (args, paused, effect) in cases {
        let theirs = kubectl_writes(&kubectl, paused, args).await;
        let api = deployment_server(paused);
        rolling(&api).apply(&effect).await.unwrap();
        let ours = api.writes();
        assert_eq!(theirs.len(), 1, "kubectl {args:?}: {theirs:#?}");
        assert_eq!(ours.len(), 1, "{effect}: {ours:#?}");
        let (k, f) = (&theirs[0], &ours[0]);
        assert_eq!((&k.method, &k.path, &k.content_type), (&f.method, &f.path, &f.content_type), "{args:?}");
        if args[1] == "undo" {
            // Go writes the template's fields in its struct order, serde_json in key order: same JSON.
            assert_eq!(k.json(), f.json(), "{args:?}");
        } else {
            assert_eq!(k.body, f.body, "{args:?}: byte for byte");
        }
    }
}

// ---------------------------------------------------------------- kubeconfig

#[tokio::test]
async fn targets_come_from_kubeconfig_contexts() {
    let path = fixtures().join("kubeconfig.yaml");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let contexts = k8s::contexts(&kubeconfig);
    let shown: Vec<(&str, &str, &str, bool)> =
        contexts.iter().map(|c| (c.name.as_str(), c.cluster.as_str(), c.namespace.as_str(), c.current)).collect();
    assert_eq!(
        shown,
        [("staging", "staging-cluster", "checkout-staging", true), ("prod-eu-1", "prod-eu-1", "prod", false)]
    );

    let staging = k8s::config_from_file(&path, None).await.unwrap();
    assert_eq!(
        (staging.cluster_url.to_string(), staging.default_namespace),
        ("https://staging.k8s.example.com:6443/".into(), "checkout-staging".into())
    );
    let prod = k8s::config_from_file(&path, Some("prod-eu-1")).await.unwrap();
    assert_eq!(
        (prod.cluster_url.to_string(), prod.default_namespace),
        ("https://prod-eu-1.k8s.example.com/".into(), "prod".into())
    );
    let missing = k8s::config_from_file(&path, Some("nope")).await.unwrap_err();
    assert_eq!(missing.key, "context");
    assert!(missing.message.contains("context nope"), "{missing}");

    // A plan target picks its context: the backend is built without touching the network.
    let mut plan = example_plan("argo-rollouts.toml");
    plan.target.params.insert("kubeconfig".into(), path.display().to_string());
    let backend = k8s::setup(&plan).await.unwrap();
    assert_eq!(backend.name(), "argo-rollouts prod-eu-1:prod/checkout");
    let plan = example_plan("deployment-httproute.toml");
    let mut target = plan.target.clone();
    target.params.insert("kubeconfig".into(), path.display().to_string());
    let client = k8s::client_for(&target).await.unwrap();
    assert_eq!(client.default_namespace(), "checkout-staging");
}

/// Runs against a real cluster when FLIGHTDECK_TEST_KUBECONFIG names a
/// kubeconfig (context: FLIGHTDECK_TEST_CONTEXT; optional Rollout to read:
/// FLIGHTDECK_TEST_ROLLOUT as namespace/name).
#[tokio::test]
async fn real_cluster_when_configured() {
    let Ok(file) = std::env::var("FLIGHTDECK_TEST_KUBECONFIG") else {
        println!("skipped: set FLIGHTDECK_TEST_KUBECONFIG to a kubeconfig to run against a real cluster");
        return;
    };
    let context = std::env::var("FLIGHTDECK_TEST_CONTEXT").ok();
    let mut params = vec![("kubeconfig".to_owned(), file.clone())];
    params.extend(context.clone().map(|c| ("context".to_owned(), c)));
    let (namespace, name) = std::env::var("FLIGHTDECK_TEST_ROLLOUT")
        .ok()
        .and_then(|s| s.split_once('/').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .unwrap_or_else(|| ("default".into(), "flightdeck-test".into()));
    params.push(("namespace".into(), namespace));
    params.push(("rollout".into(), name));
    let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let target = target("argo-rollouts", &refs);
    let client = k8s::client_for(&target).await.unwrap_or_else(|e| panic!("{file}: {e}"));
    let version = client.apiserver_version().await.unwrap_or_else(|e| panic!("{file}: cannot reach the cluster: {e}"));
    println!("cluster answers: Kubernetes {}.{}", version.major, version.minor);
    if std::env::var("FLIGHTDECK_TEST_ROLLOUT").is_ok() {
        let rollout = ArgoRollout::from_target(&target, client).unwrap();
        let seen = rollout.observe().await.unwrap_or_else(|e| panic!("{e}"));
        println!("{}: {seen:?}", rollout.name());
    }
}

/// A core/v1 Event as client-go's recorder writes Flagger's (events.go: reason `Synced`,
/// type Normal or Warning, on the Canary, from component `flagger`).
fn flagger_event(n: usize, kind: &str, message: &str) -> Value {
    json!({"metadata": {"name": format!("podinfo.17f{n:05x}"), "namespace": "test", "uid": format!("uid-{n}")},
           "involvedObject": {"kind": "Canary", "namespace": "test", "name": "podinfo",
                              "apiVersion": "flagger.app/v1beta1"},
           "reason": "Synced", "message": message, "type": kind, "count": 1,
           "source": {"component": "flagger"},
           "firstTimestamp": format!("2026-12-01T10:{n:02}:00Z"), "lastTimestamp": format!("2026-12-01T10:{n:02}:00Z")})
}

#[tokio::test]
async fn flaggers_events_about_the_canary_are_told_once_in_the_event_log_with_its_failure_reasons() {
    // `kubectl -n test describe canary/podinfo` after a failed analysis, as Flagger's
    // docs/gitbook/tutorials/gatewayapi-progressive-delivery.md shows it.
    let described = [
        ("Normal", "Starting canary deployment for podinfo.test"),
        ("Normal", "Advance podinfo.test canary weight 5"),
        ("Normal", "Advance podinfo.test canary weight 10"),
        ("Normal", "Advance podinfo.test canary weight 15"),
        ("Normal", "Halt podinfo.test advancement error rate 69.17% > 1%"),
        ("Normal", "Halt podinfo.test advancement error rate 61.39% > 1%"),
        ("Normal", "Halt podinfo.test advancement error rate 55.06% > 1%"),
        ("Normal", "Halt podinfo.test advancement error rate 47.00% > 1%"),
        ("Normal", "(combined from similar events): Halt podinfo.test advancement error rate 38.08% > 1%"),
        ("Warning", "Rolling back podinfo.test failed checks threshold reached 10"),
        ("Warning", "Canary failed! Scaling down podinfo.test"),
    ];
    let events: Vec<Value> = described.iter().enumerate().map(|(n, (k, m))| flagger_event(n, k, m)).collect();
    let (world, api) = flagger_world(fixture("flagger-progressing.json"));
    // The first reading (events 0–8 there) tells the newest few, oldest first.
    world.lock().unwrap().events = events[..9].to_vec();
    let backend = flagger(&api);
    let first = backend.observe().await.unwrap();
    let texts = |o: &Observation| o.native_events.iter().map(|e| e.text.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&first).len(), k8s::events::FIRST_READING);
    assert_eq!(texts(&first)[0], "flagger: Halt podinfo.test advancement error rate 69.17% > 1%");
    let asked = api.requests().into_iter().find(|s| s.path == EVENTS).expect("the events were listed");
    assert!(
        asked.query.contains("fieldSelector=involvedObject.kind%3DCanary%2CinvolvedObject.name%3Dpodinfo"),
        "{}",
        asked.query
    );
    // Nothing new: nothing told again.
    assert!(backend.observe().await.unwrap().native_events.is_empty());
    // Flagger rolls back: the reasons arrive as warnings, once.
    world.lock().unwrap().events = events.clone();
    let failed = backend.observe().await.unwrap();
    assert_eq!(
        failed.native_events.iter().map(|e| (e.warning, e.text.as_str())).collect::<Vec<_>>(),
        [
            (true, "flagger: Rolling back podinfo.test failed checks threshold reached 10"),
            (true, "flagger: Canary failed! Scaling down podinfo.test"),
        ]
    );
    // The core tells them in the event log (and journals them with the reading).
    let plan = example_plan("flagger.toml");
    let (_, effects) = step(&Rollout::new("podinfo", plan), Event::Observation(failed), Timestamp(0));
    let told: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        told.contains(&"warning: flagger: Rolling back podinfo.test failed checks threshold reached 10".to_owned()),
        "{told:?}"
    );
    assert!(backend.observe().await.unwrap().native_events.is_empty());
}

#[tokio::test]
async fn flagger_events_that_cannot_be_read_are_said_beside_the_phase() {
    let canary = fixture("flagger-progressing.json");
    let api = FakeApi::new(move |seen, _| match seen.path.as_str() {
        CANARY => Reply::Json(200, canary.clone()),
        EVENTS => status_error(403, "Forbidden", "events is forbidden"),
        _ => status_error(404, "NotFound", "not found"),
    });
    let detail = flagger(&api).observe().await.unwrap().native_detail.unwrap_or_default();
    assert!(detail.ends_with("· events not read: 403 Forbidden: events is forbidden"), "{detail}");
}

#[tokio::test]
async fn istio_subsets_without_the_shared_host_are_refused_with_the_settings_to_set() {
    // virtualservice.json: host `checkout`, subsets `stable` and `canary`, as
    // examples/plans/deployment-httproute.toml tells for Istio.
    let api = cluster_server();
    let subsets_only = [("router", "istio"), ("stable_subset", "stable"), ("canary_subset", "canary")];
    let error = two_deployments(&api, &subsets_only).apply(&Effect::SetWeight { canary: 50 }).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("set target.stable_service and target.canary_service to the host the subsets are of"),
        "{text}"
    );
    assert!(api.writes().is_empty(), "nothing written: {:?}", api.writes());
    // What the example says to write works.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans/deployment-httproute.toml"))
            .unwrap();
    // The settings its comment shows, indented as code (`#     router = "istio"`).
    let said: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#     ")?.split_once(" = "))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    assert_eq!(said.len(), 5, "{said:?}");
    two_deployments(&api, &said).apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
    assert_eq!(api.writes().len(), 1);
}

#[tokio::test]
async fn flagger_set_image_reads_the_target_first_and_refuses_a_container_it_does_not_have() {
    // kustomize/podinfo/deployment.yaml: one container, `podinfod`.
    let set_image = |container: &str| Effect::Native {
        verb: NativeVerb::SetImage { container: container.into(), image: "ghcr.io/stefanprodan/podinfo:6.0.1".into() },
    };
    // A typo would have added a second container named `podinfo` to the pod template.
    let api = canary_server(fixture("flagger-succeeded.json"));
    let err = flagger(&api).apply(&set_image("podinfo")).await.unwrap_err();
    assert!(matches!(err, BackendError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("unable to find container named \"podinfo\""), "{err}");
    assert!(api.writes().is_empty(), "nothing sent: {:?}", api.writes());
    // `*` is every container, never one named `*`.
    let api = canary_server(fixture("flagger-succeeded.json"));
    flagger(&api).apply(&set_image("*")).await.unwrap();
    let written = api.writes();
    assert_eq!(written.len(), 1);
    assert_eq!(
        written[0].json(),
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}}}})
    );
}

#[test]
fn flagger_blue_green_shows_its_traffic_on_the_canary_once_its_iterations_are_done() {
    // scheduler.go `runBlueGreen`: iterations 10, no weights; after the 10th, all traffic to
    // the canary (and one more iteration), kept there while Promoting; canaryWeight stays 0.
    let mut canary = fixture("flagger-progressing.json");
    let analysis = canary["spec"]["analysis"].as_object_mut().unwrap();
    for key in ["stepWeight", "maxWeight", "stepWeights"] {
        analysis.remove(key);
    }
    analysis.insert("iterations".into(), json!(10));
    canary["status"]["canaryWeight"] = json!(0);
    let at = |canary: &Value, iterations: u64, phase: &str| {
        let mut c = canary.clone();
        c["status"]["iterations"] = json!(iterations);
        c["status"]["phase"] = json!(phase);
        k8s::flagger::view(&c).weight
    };
    assert_eq!(at(&canary, 4, "Progressing"), 0, "tests run against the canary; users stay on the primary");
    assert_eq!(at(&canary, 11, "Progressing"), 100, "routed to the canary");
    assert_eq!(at(&canary, 11, "Promoting"), 100, "still on the canary while the primary is updated");
    // Without a mesh (provider kubernetes) traffic never moves to the canary.
    canary["spec"]["provider"] = json!("kubernetes");
    assert_eq!(at(&canary, 11, "Promoting"), 0);
}

#[tokio::test]
async fn experiments_and_the_jobs_of_analysis_runs_are_in_the_tree_as_the_plugin_shows_them() {
    // info/testdata/experiment-analysis, printed by TestExperimentRollout (cmd/get/get_test.go):
    // "Step: 1/2, SetWeight: 25, ActualWeight: 25" and the tree below.
    let mut world = fixture("argo-info-experiment.json");
    for kind in ["pods", "replicasets", "analysisruns", "experiments"] {
        for o in world[kind].as_array_mut().unwrap() {
            // testdata.go `discoverObjects`: every object a week old.
            o["metadata"]["creationTimestamp"] = json!("2026-11-30T00:00:00Z");
        }
    }
    let path = "/apis/argoproj.io/v1alpha1/namespaces/jesse-test/rollouts/rollout-experiment-analysis";
    let api = owner_server(path, "jesse-test", world);
    let target = target("argo-rollouts", &[("namespace", "jesse-test"), ("rollout", "rollout-experiment-analysis")]);
    let rollout = ArgoRollout::from_target(&target, api.client()).unwrap();
    let arrived = within(Duration::from_secs(10), || async {
        let seen = rollout.observe().await.unwrap();
        seen.native_tree.is_some_and(|t| t.rows.iter().any(|r| r.kind == "Experiment"))
    })
    .await;
    assert!(arrived, "the experiment never arrived");
    let seen = rollout.observe().await.unwrap();
    let prefix = "rollout-experiment-analysis";
    let job = |suffix: &str, status: &str| format!("    {prefix}-random-fail-6f646bf7b7-skqcr-{suffix} Job {status}");
    let expected: Vec<String> = [
        "revision:2 revision".to_owned(),
        format!("  {prefix}-6f646bf7b7 ReplicaSet Healthy canary"),
        format!("    {prefix}-6f646bf7b7-wn5w8 Pod Running ready:1/1"),
        format!("  {prefix}-6f646bf7b7-1-vcv27 Experiment Running"),
        format!("    {prefix}-6f646bf7b7-1-vcv27-baseline-7d768b8b5f ReplicaSet Healthy 1/1 available"),
        format!("      {prefix}-6f646bf7b7-1-vcv27-baseline-7dczdst Pod Running ready:1/1"),
        format!("    {prefix}-6f646bf7b7-1-vcv27-canary-7699dcf5d ReplicaSet Healthy 1/1 available"),
        format!("      {prefix}-6f646bf7b7-1-vcv27-canary-7699vgr24 Pod Running ready:1/1"),
        format!("  {prefix}-random-fail-6f646bf7b7-skqcr AnalysisRun Inconclusive ✔ 4"),
        job("rzl6lt", "Failed"),
        job("r8lqpd", "Successful"),
        job("rjjsgg", "Successful"),
        job("rrnfj5", "Failed"),
        job("rx5kqk", "Failed"),
        job("rp894b", "Successful"),
        job("rmngtj", "Failed"),
        job("rsxm69", "Successful"),
        "revision:1 revision".to_owned(),
        format!("  {prefix}-f6db98dff ReplicaSet Healthy stable"),
        format!("    {prefix}-f6db98dff-8dmnz Pod Running ready:1/1"),
        format!("    {prefix}-f6db98dff-bb6v6 Pod Running ready:1/1"),
        format!("    {prefix}-f6db98dff-bq55x Pod Running ready:1/1"),
    ]
    .into_iter()
    .collect();
    assert_eq!(tree_lines(&seen), expected);
    let run = seen.native_tree.as_ref().unwrap().rows.iter().find(|r| r.kind == "AnalysisRun").unwrap();
    assert!(run.info.starts_with("✔ 4 · ✖ 4 · ? 1 · ⚠ 1"), "the plugin's counts: {}", run.info);
    // Step 1/2 and setWeight 25: with a canary pod available of 4, the actual weight is 25 too.
    assert_eq!(seen.canary_weight, Some(25));
    assert_eq!(seen.native_detail.as_deref(), Some("step 1/2"));
}
