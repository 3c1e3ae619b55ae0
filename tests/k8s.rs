//! The Kubernetes backends against an in-process fake API server: a tower
//! service behind `kube::Client` that serves fixture objects (copied from
//! Argo Rollouts', Gateway API's, Istio's and Kubernetes' own examples, in
//! tests/fixtures/k8s/) and records every request, so each verb's method,
//! path, content type and body can be compared with what kubectl sends.

#![cfg(feature = "k8s")]

use bytes::Bytes;
use flightdeck::backend::k8s::argo::ArgoRollout;
use flightdeck::backend::k8s::deployment::DeploymentCanary;
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
}

type Responder = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// Records requests and answers them with a responder; `n` counts the
/// requests of the same method and path before this one.
#[derive(Clone)]
struct FakeApi {
    seen: Arc<Mutex<Vec<Seen>>>,
    responder: Responder,
}

type BoxBody = StreamBody<BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

impl FakeApi {
    fn new(responder: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> FakeApi {
        FakeApi { seen: Arc::default(), responder: Arc::new(responder) }
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
        ("PATCH", _) => Reply::Json(200, rollout.clone()),
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
                json!([{"op": "replace", "path": "/spec/template", "value": green}]),
            )],
        ),
    ];
    for (file, verb, expected) in table {
        let api = rollout_server(fixture(file));
        argo(&api).apply(&Effect::Native { verb }).await.unwrap_or_else(|e| panic!("{file} {verb:?}: {e}"));
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
        assert_eq!(reads, usize::from(k8s::argo::needs_object(verb)), "{file} {verb:?}: GETs");
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
        ("rollout-paused.json", NativeStatus::Paused { reason: "CanaryPauseStep".into() }, 20, 0, Some(1)),
        ("rollout-user-paused.json", NativeStatus::Paused { reason: "manually paused".into() }, 40, 1, Some(2)),
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
        aborted.analysis.as_deref(),
        Some("checkout-65fb5ffc84-2: Failed: metric \"web\" assessed Failed due to failed (1) > failureLimit (0)")
    );
    // The cockpit shows Argo's own step and analysis run beside our verdict.
    assert_eq!(
        status::observe(&fixture("rollout-aborted.json")).native_detail.as_deref(),
        Some(
            "step 1/8 · analysis checkout-65fb5ffc84-2: Failed: metric \"web\" assessed Failed due to failed (1) > \
             failureLimit (0)"
        )
    );
    assert_eq!(status::observe(&fixture("rollout-paused.json")).native_detail.as_deref(), Some("step 2/8"));
    // The routed weight comes from the traffic router, not the step.
    let mut routed = fixture("rollout-routed.json");
    routed["status"]["canary"]["weights"]["canary"]["weight"] = json!(37);
    assert_eq!(status::canary_weight(&routed), 37);
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
    let healthy_seen = eventually(Duration::from_secs(20), || async {
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
    // observe() reads the store; it asks the API itself only before the first list has arrived.
    let direct = requests.iter().filter(|s| s.path != collection).count();
    assert!(direct <= 1, "{requests:#?}");
}

#[tokio::test]
async fn a_watch_that_keeps_failing_is_shown_as_unreachable() {
    let api = FakeApi::new(|_, _| status_error(403, "Forbidden", "rollouts.argoproj.io is forbidden: cannot watch"));
    let rollout = argo(&api);
    rollout.watch();
    let shown = eventually(Duration::from_secs(5), || async { rollout.observe().await.is_err() }).await;
    assert!(shown);
    let err = rollout.observe().await.unwrap_err();
    let BackendError::Unreachable { detail, .. } = &err else { panic!("{err}") };
    assert!(detail.starts_with("watch of rollouts.argoproj.io/checkout in prod interrupted:"), "{detail}");
    assert!(detail.contains("forbidden: cannot watch"), "{detail}");
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
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
    assert_eq!(w.content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(w.params(), ["fieldManager=flightdeck"]);
    let mut rules = fixture("httproute.json")["spec"]["rules"].clone();
    rules[1]["backendRefs"][0]["weight"] = json!(75);
    rules[1]["backendRefs"][1]["weight"] = json!(25);
    // The header-matched rule (canary only) is left alone; the version read guards against lost updates.
    assert_eq!(w.json(), json!({"metadata": {"resourceVersion": "4711"}, "spec": {"rules": rules}}));
    // Read back from the fixture (90/10).
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(10));
    // Blue-green switch: all to one side.
    backend.apply(&Effect::SwitchActive { to: Version::Canary }).await.unwrap();
    assert_eq!(api.writes()[1].json()["spec"]["rules"][1]["backendRefs"][0]["weight"], 0);
    assert_eq!(api.writes()[1].json()["spec"]["rules"][1]["backendRefs"][1]["weight"], 100);
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
    assert_eq!((w.path.as_str(), w.content_type.as_deref()), (VIRTUALSERVICE, Some("application/merge-patch+json")));
    let expected = json!({"metadata": {"resourceVersion": "815"}, "spec": {"http": [{"route": [
        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 50},
        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 50}]}]}});
    assert_eq!(w.json(), expected);
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
async fn rolling_updates_pause_resume_and_undo_like_kubectl_rollout() {
    let api = cluster_server();
    let backend = rolling(&api);
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 0 }).await.unwrap();
    backend.apply(&Effect::Scale { version: Version::Canary, percent: 25 }).await.unwrap();
    backend.apply(&Effect::Undo { to_revision: "v1".into() }).await.unwrap();
    let err = backend.apply(&Effect::SetWeight { canary: 5 }).await.unwrap_err();
    assert!(matches!(err, BackendError::Unsupported { .. }), "{err}");

    let deployment = format!("{DEPLOYMENTS}/checkout");
    let strategic = "application/strategic-merge-patch+json";
    let old = &fixture("deployment-replicasets.json")["items"][1];
    let mut template = old["spec"]["template"].clone();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    let undo = json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {
            "deployment.kubernetes.io/revision": "2",
            "kubernetes.io/change-cause": "kubectl apply --filename=checkout.yaml"}},
    ]);
    let got: Vec<(String, Option<String>, Value)> =
        api.writes().iter().map(|w| (w.path.clone(), w.content_type.clone(), w.json())).collect();
    assert_eq!(
        got,
        vec![
            (deployment.clone(), Some(strategic.into()), json!({"spec": {"paused": true}})),
            (deployment.clone(), Some(strategic.into()), json!({"spec": {"paused": false}})),
            // The fixture Deployment is paused: resume first (kubectl would refuse), then undo.
            (deployment.clone(), Some(strategic.into()), json!({"spec": {"paused": false}})),
            (deployment, Some("application/json-patch+json".into()), undo),
        ]
    );
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
    assert!(missing.contains("context nope"), "{missing}");

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
