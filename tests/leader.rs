//! `serve --leader-elect`: two replicas of `flightdeck serve` on one
//! journal directory, one Lease on a fake Kubernetes API server (plain
//! HTTP/1.1, a kubeconfig pointing at it), a canary on the simulator.
//!
//! The fake keeps the Lease as the API server's generic registry does
//! (k8s.io/apiserver/pkg/registry/generic/registry/store.go): a create of
//! a name that exists is 409 AlreadyExists, an update whose
//! `metadata.resourceVersion` is not the stored one is 409 Conflict, and
//! every write stores a new resourceVersion.
//!
//! - the leader is killed (SIGKILL) mid-stage: the standby takes the Lease
//!   once it expires, resumes from the journal and finishes the rollout;
//!   every record carries its term, the terms never interleave, and no
//!   stage's weight was applied twice;
//! - the leader is paused (SIGSTOP) past its lease, the standby takes
//!   over, the old leader is resumed (SIGCONT): it writes nothing more,
//!   applies nothing, and exits saying it lost the lease;
//! - a viewer attached to the standby sees the rollout as the leader's
//!   journal holds it, has every command refused with who holds the
//!   lease, and, once the standby takes over, is live on the same
//!   connection;
//! - `/metrics` of each replica says who holds the lease, its transitions,
//!   whether this replica leads, and how long ago the lease was renewed.

#![cfg(feature = "k8s")]

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
/// A canary on the simulator: 1 → 10 → 50 → 100 %, 15 min bakes.
const PLAN: &str = include_str!("../examples/plans/canary.toml");
const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/flightdeck/leases";

// ---------------------------------------------------------------- fake API server

#[derive(Default)]
struct Store {
    lease: Option<Value>,
    version: u64,
    /// Every accepted write: (holder, leaseTransitions).
    writes: Vec<(String, u64)>,
    conflicts: usize,
}

#[derive(Clone)]
struct FakeApi {
    store: Arc<Mutex<Store>>,
    port: u16,
}

impl FakeApi {
    async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let api = FakeApi { store: Arc::default(), port };
        let store = api.store.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(connection(stream, store.clone()));
            }
        });
        api
    }

    fn holder(&self) -> Option<(String, u64)> {
        let s = self.store.lock().unwrap();
        let spec = &s.lease.as_ref()?["spec"];
        Some((spec["holderIdentity"].as_str()?.to_owned(), spec["leaseTransitions"].as_u64().unwrap_or(0)))
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: flightdeck\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake\n",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// HTTP/1.1 with keep-alive, one request at a time.
async fn connection(stream: tokio::net::TcpStream, store: Arc<Mutex<Store>>) {
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
        let mut length = 0;
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let path = target.split('?').next().unwrap_or("").to_owned();
        let (code, answer) = respond(&store, &method, &path, &body);
        let text = answer.to_string();
        let reason = match code {
            200 => "OK",
            201 => "Created",
            404 => "Not Found",
            409 => "Conflict",
            _ => "Bad Request",
        };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            text.len()
        );
        if write.write_all(head.as_bytes()).await.is_err() || write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": message, "reason": reason, "code": code});
    (code, status)
}

fn respond(store: &Mutex<Store>, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut s = store.lock().unwrap();
    let named = format!("{LEASE_PATH}/flightdeck");
    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, path) {
        ("GET", p) if p == named => match &s.lease {
            Some(lease) => (200, lease.clone()),
            None => status(404, "NotFound", "leases.coordination.k8s.io \"flightdeck\" not found"),
        },
        ("POST", p) if p == LEASE_PATH => {
            if s.lease.is_some() {
                return status(409, "AlreadyExists", "leases.coordination.k8s.io \"flightdeck\" already exists");
            }
            s.version += 1;
            let lease = stored(sent, s.version);
            note(&mut s, &lease);
            (201, lease)
        }
        ("PUT", p) if p == named => {
            let Some(current) = &s.lease else {
                return status(404, "NotFound", "leases.coordination.k8s.io \"flightdeck\" not found");
            };
            if sent["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                s.conflicts += 1;
                let message = "Operation cannot be fulfilled on leases.coordination.k8s.io \"flightdeck\": the object \
                               has been modified; please apply your changes to the latest version and try again";
                return status(409, "Conflict", message);
            }
            s.version += 1;
            let lease = stored(sent, s.version);
            note(&mut s, &lease);
            (200, lease)
        }
        _ => status(404, "NotFound", &format!("{method} {path}: not served by this fake")),
    }
}

fn stored(mut lease: Value, version: u64) -> Value {
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    lease["metadata"]["resourceVersion"] = json!(version.to_string());
    lease["metadata"]["namespace"] = json!("flightdeck");
    lease
}

fn note(s: &mut Store, lease: &Value) {
    let spec = &lease["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap_or("").to_owned();
    s.writes.push((holder, spec["leaseTransitions"].as_u64().unwrap_or(0)));
    s.lease = Some(lease.clone());
}

// ---------------------------------------------------------------- replicas

struct Replica {
    child: Child,
    said: Arc<Mutex<String>>,
    socket: PathBuf,
    /// `--http`: health and metrics.
    http: SocketAddr,
}

impl Replica {
    fn start(name: &str, dir: &Path, kubeconfig: &Path) -> Replica {
        let socket = dir.join(format!("{name}.sock"));
        let http = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
        let mut child = Process::new(BIN)
            .args(["serve", "--leader-elect", "--lease-namespace", "flightdeck"])
            .args(["--lease-duration", "4s", "--lease-renew-deadline", "3s", "--lease-retry-period", "500ms"])
            .args(["--speed", "300", "--http", &http.to_string(), "--socket"])
            .arg(&socket)
            .arg(dir.join("canary.toml"))
            .env("FLIGHTDECK_DATA_DIR", dir.join("data"))
            .env("FLIGHTDECK_CONFIG_DIR", dir.join("config"))
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let said = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let into = said.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = into.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Replica { child, said, socket, http }
    }

    /// A sample of its `/metrics`: the value of the series `series` (name and labels as written).
    async fn metric(&self, series: &str) -> Option<f64> {
        let (code, text) = support::get(self.http, "/metrics").await.ok()?;
        assert_eq!(code, 200, "{text}");
        let line = text.lines().find(|l| l.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))?;
        line[series.len()..].trim().parse().ok()
    }

    fn said(&self) -> String {
        self.said.lock().unwrap().clone()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child (gone already, if it was waited for).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The journal's records (not the header), as JSON.
fn records(dir: &Path) -> Vec<Value> {
    let journals = dir.join("data/journal");
    let Ok(entries) = std::fs::read_dir(&journals) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(text.lines().skip(1).filter_map(|l| serde_json::from_str::<Value>(l).ok()));
        }
    }
    out
}

fn journal_path(dir: &Path) -> PathBuf {
    let journals = dir.join("data/journal");
    std::fs::read_dir(&journals)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a journal")
}

fn holder(record: &Value) -> String {
    record["lease"]["holder"].as_str().unwrap_or("none").to_owned()
}

/// Each term's records are together: once a newer holder wrote, no older one does.
fn assert_terms_never_interleave(records: &[Value]) {
    let mut newest = 0;
    for (i, r) in records.iter().enumerate() {
        let t = r["lease"]["transitions"].as_u64().unwrap_or_else(|| panic!("record {i} has no lease term: {r}"));
        assert!(t >= newest, "record {i} of {} (transition {t}) after a record of transition {newest}", holder(r));
        newest = t;
    }
}

/// The canary weights the journal's records move through, each change once:
/// the steps whose effects set the weight (effect results that change
/// nothing are not journaled).
fn weight_changes(records: &[Value]) -> Vec<u64> {
    let mut weights: Vec<u64> = Vec::new();
    for r in records {
        let w = r["weight"].as_u64().unwrap();
        if weights.last() != Some(&w) {
            weights.push(w);
        }
    }
    weights
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("canary.toml"), PLAN).unwrap();
    dir
}

fn phase(records: &[Value]) -> String {
    records.last().map(|r| r["phase"].as_str().unwrap_or("").to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_finishes_the_rollout_of_a_killed_leader_with_no_effect_applied_twice() {
    let dir = setup();
    let api = FakeApi::start().await;
    let kubeconfig = api.kubeconfig(dir.path());
    let mut a = Replica::start("replica-a", dir.path(), &kubeconfig);
    support::eventually(Duration::from_secs(15), "replica-a to hold the lease", async || {
        api.holder().is_some_and(|(h, _)| h == "replica-a")
    })
    .await;
    let b = Replica::start("replica-b", dir.path(), &kubeconfig);
    support::eventually(Duration::from_secs(15), "replica-b to stand by", async || {
        b.said().contains("standing by: the lease flightdeck/flightdeck is held by replica-a")
    })
    .await;
    // The Lease as each replica sees it, scraped: a holds it and leads, b knows a holds it.
    for (replica, leads) in [(&a, 1.0), (&b, 0.0)] {
        assert_eq!(replica.metric(r#"flightdeck_lease_is_leader{lease="flightdeck/flightdeck"}"#).await, Some(leads));
        let held_by = r#"flightdeck_lease_holder{lease="flightdeck/flightdeck",holder="replica-a"}"#;
        assert_eq!(replica.metric(held_by).await, Some(1.0));
        assert_eq!(replica.metric(r#"flightdeck_lease_transitions{lease="flightdeck/flightdeck"}"#).await, Some(0.0));
        // Renewed every 500 ms; a standby sees each renewal within its own retry period.
        let age = replica.metric(r#"flightdeck_lease_renew_age_seconds{lease="flightdeck/flightdeck"}"#).await;
        assert!(age.is_some_and(|age| (0.0..4.0).contains(&age)), "{age:?}");
    }
    // Mid-stage: the canary at 10 % (stage 2 of 4).
    support::eventually(Duration::from_secs(30), "the canary at stage 2", async || {
        records(dir.path()).last().is_some_and(|r| r["stage"] == 1)
    })
    .await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed_at = records(dir.path()).len();
    support::eventually(Duration::from_secs(60), "replica-b to finish the rollout", async || {
        phase(&records(dir.path())) == "promoted"
    })
    .await;
    let (holder_now, transitions) = api.holder().unwrap();
    assert_eq!((holder_now.as_str(), transitions), ("replica-b", 1), "one transition: a took it new, b took it over");
    assert_eq!(b.metric(r#"flightdeck_lease_is_leader{lease="flightdeck/flightdeck"}"#).await, Some(1.0));
    let held_by = r#"flightdeck_lease_holder{lease="flightdeck/flightdeck",holder="replica-b"}"#;
    assert_eq!(b.metric(held_by).await, Some(1.0));
    assert_eq!(b.metric(r#"flightdeck_lease_transitions{lease="flightdeck/flightdeck"}"#).await, Some(1.0));
    assert!(
        b.said().contains("holding the lease flightdeck/flightdeck as replica-b (lease transition 1)"),
        "{}",
        b.said()
    );
    // Not on a terminal, serve logs to stderr too: one plain line per event, level and target.
    let logged = b.said();
    let line = logged.lines().find(|l| l.contains("took the lease")).unwrap_or_else(|| panic!("{logged}"));
    assert!(line.contains(" INFO flightdeck::service::lease: took the lease"), "{line}");
    assert!(!line.contains('\u{1b}'), "no colours: {line}");

    let all = records(dir.path());
    assert_terms_never_interleave(&all);
    let by: Vec<String> = all.iter().map(holder).collect();
    assert!(by[..killed_at].iter().all(|h| h == "replica-a"), "{by:?}");
    assert!(by[killed_at..].iter().all(|h| h == "replica-b"), "{by:?}");
    assert!(killed_at < all.len(), "replica-b wrote the rest");
    // Every stage's weight was set once, in order, across both terms: the
    // standby resumed after what the leader had done, never before it.
    assert_eq!(weight_changes(&all), [1, 10, 50, 100], "an effect applied twice or out of order");
    // The journal is sound as a resume reads it.
    let verified = flightdeck::engine::journal::verify(&journal_path(dir.path())).unwrap();
    assert_eq!(verified.rollout.phase.label(), "promoted");
    drop(b);
}

/// replica-a holding the lease and driving (its journal written), then
/// replica-b standing by.
async fn driver_and_standby(api: &FakeApi, dir: &Path, kubeconfig: &Path) -> (Replica, Replica) {
    let a = Replica::start("replica-a", dir, kubeconfig);
    support::eventually(Duration::from_secs(15), "replica-a to drive", async || {
        api.holder().is_some_and(|(h, _)| h == "replica-a") && !records(dir).is_empty()
    })
    .await;
    let b = Replica::start("replica-b", dir, kubeconfig);
    support::eventually(Duration::from_secs(15), "replica-b to stand by", async || b.said().contains("standing by"))
        .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_applies_nothing_when_it_resumes() {
    let dir = setup();
    let api = FakeApi::start().await;
    let kubeconfig = api.kubeconfig(dir.path());
    let (mut a, b) = driver_and_standby(&api, dir.path(), &kubeconfig).await;
    a.signal(libc::SIGSTOP);
    let paused_at = records(dir.path()).len();
    // b takes over once a's lease has not changed for its duration, and drives.
    support::eventually(Duration::from_secs(20), "replica-b to take over and write", async || {
        records(dir.path()).iter().any(|r| holder(r) == "replica-b")
    })
    .await;
    let before = records(dir.path()).len();
    a.signal(libc::SIGCONT);
    // a wakes with windows overdue (it was stopped for simulated minutes):
    // without the fence it would journal and act on them at once.
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = a.child.try_wait().unwrap() {
                return (status, a);
            }
            assert!(std::time::Instant::now() < deadline, "replica-a went on after losing its lease");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (exit, a) = status;
    assert_eq!(exit.code(), Some(1), "{}", a.said());
    let said = a.said();
    assert!(said.contains("lost the lease"), "{said}");
    // Nothing of a's after b's first record; b goes on writing.
    support::eventually(Duration::from_secs(20), "replica-b to go on", async || records(dir.path()).len() > before + 2)
        .await;
    let all = records(dir.path());
    assert_terms_never_interleave(&all);
    let first_b = all.iter().position(|r| holder(r) == "replica-b").unwrap();
    assert!(first_b >= paused_at, "b wrote after what a had written");
    assert!(all[first_b..].iter().all(|r| holder(r) == "replica-b"), "a wrote after b took over");
    let writes = api.store.lock().unwrap().writes.clone();
    let after_b = writes.iter().position(|(h, _)| h == "replica-b").unwrap();
    assert!(writes[after_b..].iter().all(|(h, _)| h == "replica-b"), "a renewed a lease b holds: {writes:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_shows_viewers_the_journal_refuses_their_commands_and_they_go_live_when_it_takes_over() {
    use flightdeck::protocol::{CommandRequest, Reply};
    use flightdeck_core::rollout::{Actor, Command};
    let dir = setup();
    let api = FakeApi::start().await;
    let kubeconfig = api.kubeconfig(dir.path());
    let (mut a, b) = driver_and_standby(&api, dir.path(), &kubeconfig).await;
    let (link, _) = flightdeck::share::client::attach(&b.socket, "oncall").await.expect("the standby takes viewers");
    let told = |what: &str| {
        link.history
            .iter()
            .any(|o| matches!(o, flightdeck::protocol::Output::Notice { message, .. } if message.contains(what)))
    };
    assert!(told("this replica is a standby: it shows the journals"), "{:?}", link.history);
    // What the viewer sees is what a's journal holds, followed as a writes it.
    let seen = || {
        let snapshot = link.snapshots.borrow();
        let r = snapshot.rollouts.first().expect("the plan's rollout").clone();
        (r.phase.label().to_owned(), r.stage, r.canary_weight, r.canary_revision.clone())
    };
    support::eventually(Duration::from_secs(20), "the standby's viewer to see the canary past stage 1", async || {
        let last = records(dir.path()).last().cloned().unwrap();
        let (phase, stage, weight, _) = seen();
        stage >= 1
            && (phase.as_str(), stage as u64, u64::from(weight))
                == (last["phase"].as_str().unwrap(), last["stage"].as_u64().unwrap(), last["weight"].as_u64().unwrap())
    })
    .await;
    let id = link.snapshots.borrow().rollouts[0].id.clone();
    let pause = |stage: usize, revision: String| CommandRequest {
        rollout: id.clone(),
        actor: Actor::new("oncall"),
        command: Command::Pause { reason: Some("checking a dashboard".into()) },
        expected_stage: stage,
        expected_revision: revision,
        expected_step: None,
    };
    let (_, stage, _, revision) = seen();
    let reply = link.commands.submit(pause(stage, revision)).await;
    let Reply::Rejected { reason } = reply else { panic!("the standby took a command: {reply:?}") };
    assert!(
        reason.contains(
            "this replica is a standby and drives nothing (the lease flightdeck/flightdeck is held by \
                         replica-a"
        ),
        "{reason}"
    );
    let commands = |who: &str| {
        let records = records(dir.path());
        records.iter().filter(|r| r["event"]["event"] == "command" && holder(r) == who).count()
    };
    assert_eq!(commands("replica-a") + commands("replica-b"), 0, "a standby's refusal is journaled nowhere");

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // The same connection, never re-made: once b drives, its commands reach b's engine.
    support::eventually(Duration::from_secs(30), "the viewer's pause to reach replica-b's engine", async || {
        let (_, stage, _, revision) = seen();
        matches!(link.commands.submit(pause(stage, revision)).await, Reply::Ack)
    })
    .await;
    assert_eq!(commands("replica-b"), 1, "the pause is journaled by the leader it went to");
    support::eventually(Duration::from_secs(10), "the viewer to see the rollout paused", async || seen().0 == "paused")
        .await;
    let attached = b.said().lines().filter(|l| l.contains("flightdeck::share::server: attached")).count();
    assert_eq!(attached, 1, "one connection from start to end: {}", b.said());
    drop(b);
}

/// In this process (a fence is installed once per process, as `serve`
/// installs it on taking the Lease): an effect whose first attempt fails,
/// with the lease lost during the backoff, is not attempted again, and the
/// rollout stops, paused with why. Without the check before each attempt
/// (and the fenced backend's, before each call) the retry would go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_retry_after_the_lease_was_lost_is_not_sent() {
    use flightdeck::backend::{Backend, BackendError};
    use flightdeck::engine::journal::fence::{self, Fence, Term};
    use flightdeck::engine::{Engine, EngineOptions, RolloutSetup, StopWhen};
    use flightdeck_core::rollout::{Effect, Observation, Phase};

    /// Fails its first call, and the lease is lost meanwhile (a stalled node).
    struct Stalling {
        fence: Fence,
        calls: Mutex<Vec<Effect>>,
    }

    #[async_trait::async_trait]
    impl Backend for Stalling {
        fn name(&self) -> String {
            "stalling".into()
        }
        async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
            self.calls.lock().unwrap().push(effect.clone());
            self.fence.lose("the lease flightdeck/flightdeck is held by replica-b (lease transition 2)".into());
            Err(BackendError::Unreachable { backend: self.name(), detail: "connection timed out".into() })
        }
        async fn observe(&self) -> Result<Observation, BackendError> {
            Ok(Observation::default())
        }
    }

    struct NoMetrics;

    #[async_trait::async_trait]
    impl flightdeck::metrics::MetricsSource for NoMetrics {
        async fn sample(
            &self,
            window: Duration,
            _now: flightdeck_core::Timestamp,
        ) -> flightdeck_core::analysis::MetricsSample {
            flightdeck::metrics::missing(window, "no metrics in this test".into())
        }
        async fn slo(&self, _now: flightdeck_core::Timestamp) -> Option<flightdeck_core::budget::SloMeasurement> {
            None
        }
    }

    let term = Term { holder: "replica-a".into(), transitions: 1 };
    let lease = Fence::new(term, std::time::Instant::now() + Duration::from_secs(600));
    fence::install(lease.clone()).unwrap();
    let backend = Arc::new(Stalling { fence: lease, calls: Mutex::default() });
    let dir = tempfile::tempdir().unwrap();
    let plan_text = PLAN.to_string();
    let plan = flightdeck_core::Plan::parse("canary.toml", &plan_text).unwrap();
    let setup = RolloutSetup {
        id: "checkout-api".into(),
        plan,
        plan_file: "canary.toml".into(),
        plan_text,
        backend: backend.clone(),
        metrics: Arc::new(NoMetrics),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let options = EngineOptions {
        clock: flightdeck::clock::Clock::Wall,
        journal_dir: Some(dir.path().to_path_buf()),
        fresh: false,
        stop_when: StopWhen::Never,
    };
    let engine = Engine::start(vec![setup], options, tx).unwrap();
    let mut snapshots = engine.subscribe();
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let r = snapshots.borrow_and_update().rollouts[0].clone();
            if let Phase::Paused { reason, .. } = &r.phase {
                return reason.clone();
            }
            snapshots.changed().await.unwrap();
        }
    })
    .await
    .expect("the rollout to stop");
    assert!(
        stopped.starts_with("lost the lease (replica-a (lease transition 1) no longer holds the lease"),
        "{stopped}"
    );
    // Well past the first backoff (50 ms): one call, never a retry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(backend.calls.lock().unwrap().len(), 1, "{:?}", backend.calls.lock().unwrap());
    engine.shutdown().await;
}

/// deploy/kubernetes/deployment-ha.yaml (schema-validated in tests/service.rs):
/// two replicas electing a driver, with the Lease rights and a shared journal volume.
#[test]
fn the_two_replica_manifests_elect_a_driver_with_least_lease_rights() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let script = "import json, sys, yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let out = Process::new("python3")
        .args(["-c", script])
        .args(["deployment-ha.yaml", "lease-rbac.yaml", "pvc-ha.yaml"].map(|f| root.join(f)))
        .output()
        .unwrap_or_else(|e| panic!("python3 (with PyYAML) is needed: run scripts/setup: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objects: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
    let deployment = find("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    let env = container["env"].as_array().unwrap();
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let var = env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    let claim =
        pod["volumes"].as_array().unwrap().iter().find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str());
    let pvc = find("PersistentVolumeClaim");
    assert_eq!(Some(pvc["metadata"]["name"].as_str().unwrap()), claim);
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteMany"]), "both replicas mount the journals");
    // The Lease lock's verbs (client-go's LeaseLock: get, create, update), nothing more.
    let role = find("Role");
    let mut verbs: Vec<&str> = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(rule["apiGroups"], json!(["coordination.k8s.io"]));
        assert_eq!(rule["resources"], json!(["leases"]));
        verbs.extend(rule["verbs"].as_array().unwrap().iter().filter_map(|v| v.as_str()));
    }
    verbs.sort();
    assert_eq!(verbs, ["create", "get", "update"]);
    let binding = find("RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
}
