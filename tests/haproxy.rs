//! The HAProxy backend against a real HAProxy on loopback: weights through
//! the runtime API, read-back and drift after a restart, HAProxy's error
//! replies, `show stat` windows, and whole rollouts through the engine.

mod support;

use flightdeck::backend::proxy::haproxy::Haproxy;
use flightdeck::backend::{Backend, BackendError};
use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, EngineOptions, RolloutSetup, StopWhen};
use flightdeck::metrics::prometheus::Prometheus;
use flightdeck::metrics::MetricsSource;
use flightdeck::protocol::{CommandRequest, Output, Reply};
use flightdeck_core::plan::PromQueries;
use flightdeck_core::rollout::{Effect, Event, Observation, Phase};
use flightdeck_core::{step, Actor, Command, Plan, Rollout, Timestamp};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    assert_split, engine::wait_for_phase, eventually, free_port, program, send_requests, wall_now, Proc, Upstream,
};
use tokio::sync::mpsc;

/// A real HAProxy in a temp dir: frontend → `be_app` with servers v1 (weight
/// 100) and v2 (weight 0), an admin stats socket on a unix path and on TCP.
struct Lb {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    frontend: SocketAddr,
    stats_tcp: SocketAddr,
    proc: Option<Proc>,
    starts: usize,
}

impl Lb {
    async fn start(v1: &Upstream, v2: &Upstream) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stats_tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        let text = format!(
            "global\n\
             \x20   stats socket {sock} level admin\n\
             \x20   stats socket ipv4@{stats_tcp} level admin\n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 5s\n\
             \x20   timeout server 5s\n\
             frontend fe_app\n\
             \x20   bind {frontend}\n\
             \x20   default_backend be_app\n\
             backend be_app\n\
             \x20   balance roundrobin\n\
             \x20   server v1 {v1} weight 100\n\
             \x20   server v2 {v2} weight 0\n",
            sock = dir.path().join("admin.sock").display(),
            v1 = v1.addr,
            v2 = v2.addr,
        );
        std::fs::write(&cfg, text).unwrap();
        let mut lb = Lb { dir, cfg, frontend, stats_tcp, proc: None, starts: 0 };
        lb.run().await;
        lb
    }

    /// Starts HAProxy in the foreground and waits until its socket answers.
    async fn run(&mut self) {
        self.starts += 1;
        let haproxy = program("haproxy");
        let args = ["-f", self.cfg.to_str().unwrap(), "-db"];
        let name = format!("haproxy-{}", self.starts);
        self.proc = Some(Proc::spawn(&name, haproxy.to_str().unwrap(), &args, self.dir.path()));
        let probe = self.haproxy("v1", "v2");
        eventually(Duration::from_secs(10), "the HAProxy stats socket", async || probe.observe().await.is_ok()).await;
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Kill and start again with the same config: runtime weights are gone.
    async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    fn target(&self, socket: &str, stable: &str, canary: &str) -> flightdeck_core::plan::Target {
        let params = [("socket", socket), ("backend", "be_app"), ("stable_server", stable), ("canary_server", canary)];
        flightdeck_core::plan::Target {
            backend: flightdeck_core::plan::BackendKind::Haproxy,
            group: "edge".into(),
            production: false,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn haproxy(&self, stable: &str, canary: &str) -> Haproxy {
        Haproxy::from_target(&self.target(self.socket().to_str().unwrap(), stable, canary)).unwrap()
    }
}

async fn upstreams() -> (Upstream, Upstream) {
    (Upstream::start("v1").await, Upstream::start("v2").await)
}

async fn canary_weight(h: &Haproxy) -> Option<u8> {
    h.observe().await.unwrap().canary_weight
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_read_back() {
    let (v1, v2) = upstreams().await;
    let lb = Lb::start(&v1, &v2).await;
    let h = lb.haproxy("v1", "v2");
    assert_eq!(canary_weight(&h).await, Some(0), "haproxy.cfg gives v2 weight 0");

    for canary in [10u8, 50, 100] {
        h.apply(&Effect::SetWeight { canary }).await.unwrap();
        assert_eq!(canary_weight(&h).await, Some(canary), "read-back after setting {canary} %");
        let seen = send_requests(lb.frontend, 400).await;
        let share = f64::from(canary) / 100.0;
        assert_split(&seen, &[("v1", 1.0 - share), ("v2", share)], 0.05);
    }
    // Weight 0 on v1 is exact: not one request.
    let seen = send_requests(lb.frontend, 100).await;
    assert_eq!(seen.get("v1"), None, "{seen:?}");

    // Idempotent, and SwitchActive is the same as 0/100.
    h.apply(&Effect::SwitchActive { to: flightdeck_core::rollout::Version::Stable }).await.unwrap();
    h.apply(&Effect::SwitchActive { to: flightdeck_core::rollout::Version::Stable }).await.unwrap();
    assert_eq!(canary_weight(&h).await, Some(0));
    assert_split(&send_requests(lb.frontend, 100).await, &[("v1", 1.0)], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_canary_takes_no_traffic_and_ready_brings_it_back() {
    use flightdeck_core::rollout::Version;
    let (v1, v2) = upstreams().await;
    let lb = Lb::start(&v1, &v2).await;
    let h = lb.haproxy("v1", "v2");
    h.apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
    h.apply(&Effect::Scale { version: Version::Canary, percent: 0 }).await.unwrap();
    assert_split(&send_requests(lb.frontend, 100).await, &[("v1", 1.0)], 0.0);
    h.apply(&Effect::Scale { version: Version::Canary, percent: 100 }).await.unwrap();
    assert_split(&send_requests(lb.frontend, 200).await, &[("v1", 0.5), ("v2", 0.5)], 0.05);
    let undo = h.apply(&Effect::Undo { to_revision: "v1".into() }).await.unwrap_err();
    assert!(matches!(undo, BackendError::Unsupported { .. }), "{undo}");
}

/// A plan for the core/engine tests: haproxy target, canary stages. Latency
/// is not under test here (the error rate is), so the p99 limit is loose; a
/// high `inconclusive_limit` keeps a slow first scrape from pausing the run.
fn plan(socket: &str, stages: &[(u8, &str)], interval: &str, metrics: &str) -> (Plan, String) {
    let mut text = format!(
        "[rollout]\nname = \"app\"\nstable = \"v1\"\ncanary = \"v2\"\n\n\
         [target]\nbackend = \"haproxy\"\ngroup = \"edge\"\nsocket = \"{socket}\"\n\
         stable_server = \"v1\"\ncanary_server = \"v2\"\n\n[target.params]\nbackend = \"be_app\"\n\n\
         [strategy]\nkind = \"canary\"\n"
    );
    for (weight, bake) in stages {
        text += &format!("\n[[strategy.stages]]\nweight = {weight}\nbake = \"{bake}\"\n");
    }
    text += &format!(
        "\n[analysis]\ninterval = \"{interval}\"\nmin_requests = 20\n\
         inconclusive_limit = 10\nmax_p99_increase_pct = 200\n\n{metrics}"
    );
    let plan = Plan::parse("haproxy-test.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (plan, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_runtime_weights_and_the_core_pauses_on_drift() {
    let (v1, v2) = upstreams().await;
    let mut lb = Lb::start(&v1, &v2).await;
    let (plan, _) = plan(lb.socket().to_str().unwrap(), &[(10, "10m"), (100, "0s")], "1m", "");
    let h = Haproxy::from_target(&plan.target).unwrap();

    // The core starts the rollout; its effects go to the real HAProxy.
    let now = Timestamp(1_000);
    let (mut rollout, effects) = step(&Rollout::new("edge/app", plan), Event::Start, now);
    assert!(effects.contains(&Effect::SetWeight { canary: 10 }), "{effects:?}");
    for effect in effects.into_iter().filter(Effect::is_backend) {
        h.apply(&effect).await.unwrap();
        rollout = step(&rollout, Event::EffectDone { effect }, now).0;
    }
    let seen = h.observe().await.unwrap();
    assert_eq!(seen.canary_weight, Some(10));
    let (same, _) = step(&rollout, Event::Observation(seen), now);
    assert!(matches!(same.phase, Phase::Progressing { .. }), "{:?}", same.phase);

    lb.restart().await;
    let seen = h.observe().await.unwrap();
    assert_eq!(seen, Observation { canary_weight: Some(0), ..Observation::default() }, "haproxy.cfg's weights");
    let (paused, _) = step(&same, Event::Observation(seen), Timestamp(2_000));
    match &paused.phase {
        Phase::Paused { by, reason, .. } => {
            assert_eq!(*by, Actor::backend());
            assert!(reason.contains("drift"), "{reason}");
        }
        other => panic!("expected a pause on drift, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_refusals_and_a_missing_socket_are_errors_with_the_reason() {
    let (v1, v2) = upstreams().await;
    let lb = Lb::start(&v1, &v2).await;

    let wrong = lb.haproxy("v1", "v9");
    match wrong.apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err() {
        BackendError::Refused { detail, action, .. } => {
            assert_eq!(detail, "No such server.");
            assert!(action.contains("be_app/v9"), "{action}");
        }
        other => panic!("expected Refused, got {other}"),
    }
    let err = wrong.observe().await.unwrap_err();
    assert!(err.to_string().contains("No such server."), "{err}");

    let gone = lb.dir.path().join("nowhere.sock");
    let h = Haproxy::from_target(&lb.target(gone.to_str().unwrap(), "v1", "v2")).unwrap();
    match h.observe().await.unwrap_err() {
        e @ BackendError::Unreachable { .. } => assert!(e.to_string().contains("nowhere.sock"), "{e}"),
        other => panic!("expected Unreachable, got {other}"),
    }
    assert!(matches!(h.apply(&Effect::SetWeight { canary: 5 }).await, Err(BackendError::Unreachable { .. })));
    let sample = h.sample(Duration::from_secs(10), Timestamp(0)).await;
    assert_eq!((sample.stable, sample.canary), (None, None));
    assert!(sample.missing.as_deref().is_some_and(|m| m.starts_with("haproxy:") && m.contains("nowhere.sock")));

    // The same runtime API over a TCP stats socket.
    let tcp = Haproxy::from_target(&lb.target(&lb.stats_tcp.to_string(), "v1", "v2")).unwrap();
    tcp.apply(&Effect::SetWeight { canary: 25 }).await.unwrap();
    assert_eq!(canary_weight(&lb.haproxy("v1", "v2")).await, Some(25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stat_windows_are_deltas_per_version() {
    let (v1, v2) = upstreams().await;
    let lb = Lb::start(&v1, &v2).await;
    let h = lb.haproxy("v1", "v2");
    h.apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
    send_requests(lb.frontend, 40).await; // before the first reading: not in any window

    let first = h.sample(Duration::from_secs(10), Timestamp(0)).await;
    assert_eq!((first.stable.as_ref(), first.canary.as_ref()), (None, None));
    assert_eq!(first.missing.as_deref(), Some("haproxy: first stats reading, no window yet"));

    v2.set_error_rate(0.2);
    let seen = send_requests(lb.frontend, 400).await;
    let second = h.sample(Duration::from_secs(10), Timestamp(10_000)).await;
    assert_eq!(second.missing, None);
    let (stable, canary) = (second.stable.unwrap(), second.canary.unwrap());
    println!("show stat window: stable {stable:?}, canary {canary:?}");
    assert_eq!(stable.requests + canary.requests, 400, "every request counted once");
    assert!(stable.requests.abs_diff(seen["v1"] as u64) <= 2, "{stable:?} vs {seen:?}");
    assert_eq!(stable.errors, 0);
    let ratio = canary.errors as f64 / canary.requests as f64;
    assert!((ratio - 0.2).abs() <= 0.05, "canary error ratio {ratio:.3}");
    assert!(canary.p50_ms.is_some(), "rtime as p50");
    assert_eq!((canary.p95_ms, canary.p99_ms), (None, None), "show stat has no quantiles");
}

/// Drains the engine's event stream (a full channel would stall the rollout)
/// and keeps the lines for failure messages.
fn sink() -> (mpsc::Sender<Output>, tokio::task::JoinHandle<Vec<Output>>) {
    let (tx, mut rx) = mpsc::channel(256);
    let drain = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(out) = rx.recv().await {
            seen.push(out);
        }
        seen
    });
    (tx, drain)
}

fn options(stop_when: StopWhen) -> EngineOptions {
    EngineOptions { clock: Clock::Wall, journal_dir: None, fresh: false, stop_when }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_haproxy_mid_rollout_pauses_and_resume_reapplies_the_weight() {
    let (v1, v2) = upstreams().await;
    let mut lb = Lb::start(&v1, &v2).await;
    let socket = lb.socket().to_str().unwrap().to_string();
    let (plan, text) = plan(&socket, &[(10, "1h"), (100, "0s")], "1s", "");
    let haproxy = Arc::new(Haproxy::from_target(&plan.target).unwrap());
    let setup = RolloutSetup {
        id: "edge/app".into(),
        plan,
        plan_file: "haproxy-test.toml".into(),
        plan_text: text,
        backend: haproxy.clone(),
        metrics: haproxy.clone(),
    };
    let (tx, _drain) = sink();
    // Never: a backend pause waits for a human, and this test is that human.
    let engine = Engine::start(vec![setup], options(StopWhen::Never), tx).unwrap();
    let mut snapshots = engine.subscribe();
    wait_for_phase(&mut snapshots, Duration::from_secs(10), "stage 1", |p| matches!(p, Phase::Progressing { .. }))
        .await;
    let probe = lb.haproxy("v1", "v2");
    eventually(Duration::from_secs(5), "weight 10 on v2", async || canary_weight(&probe).await == Some(10)).await;

    lb.kill();
    let paused =
        wait_for_phase(&mut snapshots, Duration::from_secs(10), "a pause", |p| matches!(p, Phase::Paused { .. })).await;
    let Phase::Paused { by, reason, .. } = &paused.phase else { unreachable!() };
    println!("paused by {by}: {reason}");
    assert_eq!(*by, Actor::backend());
    assert!(reason.contains("haproxy be_app") && reason.contains(&socket), "{reason}");

    lb.run().await;
    assert_eq!(canary_weight(&probe).await, Some(0), "a fresh HAProxy has the config's weights");
    let resume = CommandRequest {
        rollout: "edge/app".into(),
        actor: Actor::new("captain"),
        command: Command::Resume,
        expected_stage: 0,
        expected_revision: "v2".into(),
        expected_step: None,
    };
    assert_eq!(engine.submit(resume).await, Reply::Ack);
    assert_eq!(canary_weight(&probe).await, Some(10), "resume re-applies the stage's weight");
    let resumed = snapshots.borrow().rollouts[0].clone();
    assert!(matches!(resumed.phase, Phase::Progressing { .. }), "{:?}", resumed.phase);
    engine.shutdown().await;
}

/// HAProxy in front of two upstreams (15 ms each, so both latency histograms
/// sit in the same bucket), Prometheus scraping the upstreams, and bounded
/// background load through HAProxy.
struct Stack {
    v2: Upstream,
    lb: Lb,
    _prometheus: Proc,
    _prometheus_dir: tempfile::TempDir,
    prometheus: String,
    load: tokio::task::JoinHandle<()>,
}

/// Requests per second through HAProxy: 10 % of it gives the canary about 30
/// requests per 2 s window, clear of `min_requests = 20`.
const LOAD_RPS: u32 = 500;

impl Stack {
    async fn start() -> Stack {
        let (v1, v2) = upstreams().await;
        for up in [&v1, &v2] {
            up.set_latency(Duration::from_millis(15));
        }
        let lb = Lb::start(&v1, &v2).await;
        let dir = tempfile::tempdir().unwrap();
        let (prometheus_proc, prometheus) = support::start_prometheus(dir.path(), &[v1.addr, v2.addr]).await;
        let load = support::background_load(lb.frontend, LOAD_RPS, LOAD_RPS as usize * 60);
        let stack = Stack { v2, lb, _prometheus: prometheus_proc, _prometheus_dir: dir, prometheus, load };
        // Start the rollout once Prometheus answers for both versions, so
        // the first windows are not missing for start-up reasons.
        let source = stack.metrics();
        eventually(Duration::from_secs(20), "Prometheus data for v1 and v2", async || {
            source.sample(Duration::from_secs(2), wall_now()).await.missing.is_none()
        })
        .await;
        stack
    }

    fn metrics(&self) -> Prometheus {
        Prometheus::new(&self.prometheus, &PromQueries::default(), "v1", "v2").unwrap()
    }

    /// Stages 10 → 50 (4 s bakes) → 100, a check every 2 s, Prometheus
    /// metrics. The last stage has no bake: at 100 % stable serves nothing,
    /// so no window there can compare the versions and pass (a bake at 100 %
    /// would wait forever, or pass only on stale pre-100 % data).
    fn engine(&self) -> Engine {
        let socket = self.lb.socket().to_str().unwrap().to_string();
        let metrics = format!("[metrics]\nsource = \"prometheus\"\naddress = \"{}\"\n", self.prometheus);
        let (plan, text) = plan(&socket, &[(10, "6s"), (50, "6s"), (100, "0s")], "2s", &metrics);
        let setup = RolloutSetup {
            id: "edge/app".into(),
            backend: Arc::new(Haproxy::from_target(&plan.target).unwrap()),
            metrics: Arc::new(self.metrics()),
            plan,
            plan_file: "haproxy-test.toml".into(),
            plan_text: text,
        };
        let (tx, _drain) = sink();
        Engine::start(vec![setup], options(StopWhen::Unattended), tx).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.load.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_haproxy_with_prometheus_analysis() {
    let stack = Stack::start().await;
    let engine = stack.engine();
    let started = Instant::now();
    let mut snapshots = engine.subscribe();
    let done = wait_for_phase(&mut snapshots, Duration::from_secs(60), "promotion", |p| p.is_finished()).await;
    assert!(
        matches!(done.phase, Phase::Promoted { .. }),
        "{:?}; last verdict {:?}",
        done.phase,
        done.last_verdict.map(|v| v.summary())
    );
    println!("promoted to 100 % in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(done.canary_weight, 100);
    // The snapshot shows a decision as soon as it is made; its effect lands just after.
    let probe = stack.lb.haproxy("v1", "v2");
    eventually(Duration::from_secs(5), "weight 100 on v2", async || canary_weight(&probe).await == Some(100)).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_by_analysis_and_haproxy_weight_goes_to_zero() {
    let stack = Stack::start().await;
    let engine = stack.engine();
    let mut snapshots = engine.subscribe();
    wait_for_phase(&mut snapshots, Duration::from_secs(10), "stage 1", |p| matches!(p, Phase::Progressing { .. }))
        .await;
    let probe = stack.lb.haproxy("v1", "v2");
    eventually(Duration::from_secs(5), "weight 10 on v2", async || canary_weight(&probe).await == Some(10)).await;

    stack.v2.set_error_rate(0.2);
    let broke = Instant::now();
    let mut polls = tokio::time::interval(Duration::from_millis(100));
    while canary_weight(&probe).await != Some(0) {
        assert!(broke.elapsed() < Duration::from_secs(60), "v2 still has weight after 60 s");
        polls.tick().await;
    }
    let detection = broke.elapsed();
    println!("20 % canary errors → HAProxy weight 0 on v2 in {:.2} s", detection.as_secs_f64());

    let done = wait_for_phase(&mut snapshots, Duration::from_secs(5), "rollback", |p| p.is_finished()).await;
    support::engine::assert_rolled_back_by_analysis(&done);
    assert_eq!(done.stage, 0, "rolled back from the first stage");
    assert_eq!(canary_weight(&probe).await, Some(0));
    // The rollback also drained v2: not one request reaches it.
    let seen = send_requests(stack.lb.frontend, 50).await;
    assert_eq!(seen.get("v2"), None, "{seen:?}");
    engine.shutdown().await;
}

/// Regression: a canary left drained by an earlier rollback (HAProxy state
/// `drain`) got weight but no traffic, and the stage waited forever. A new
/// run readies the canary before it sends it traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_drained_by_an_earlier_rollback_is_readied_before_it_gets_traffic() {
    use flightdeck_core::rollout::Version;
    let stack = Stack::start().await;
    let probe = stack.lb.haproxy("v1", "v2");
    probe.apply(&Effect::Scale { version: Version::Canary, percent: 0 }).await.unwrap();
    let engine = stack.engine();
    eventually(Duration::from_secs(10), "weight 10 on v2", async || canary_weight(&probe).await == Some(10)).await;
    let seen = send_requests(stack.lb.frontend, 300).await;
    let canary = seen.get("v2").copied().unwrap_or(0);
    assert!(canary >= 10, "the readied canary serves its 10 %: {seen:?}");
    engine.shutdown().await;
}

/// The lab's report: a canary with 5 % errors that paused in a headless run
/// (here: HAProxy's weight changed by hand, so the rollout pauses on drift)
/// was left at its weight with nobody analysing it. A paused rollout an
/// unattended engine drives is still analysed: the failing windows that
/// follow roll it back, and HAProxy's canary weight goes to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_paused_in_an_unattended_run_is_still_rolled_back_through_haproxy() {
    let stack = Stack::start().await;
    let engine = stack.engine();
    let mut snapshots = engine.subscribe();
    wait_for_phase(&mut snapshots, Duration::from_secs(10), "stage 1", |p| matches!(p, Phase::Progressing { .. }))
        .await;
    let probe = stack.lb.haproxy("v1", "v2");
    eventually(Duration::from_secs(5), "weight 10 on v2", async || canary_weight(&probe).await == Some(10)).await;

    // Someone changes the split by hand: the rollout pauses, waiting for a human.
    probe.apply(&Effect::SetWeight { canary: 20 }).await.unwrap();
    let paused =
        wait_for_phase(&mut snapshots, Duration::from_secs(10), "a pause", |p| matches!(p, Phase::Paused { .. })).await;
    let Phase::Paused { by, reason, .. } = &paused.phase else { unreachable!() };
    println!("paused by {by}: {reason}");
    assert!(reason.starts_with("drift"), "{reason}");

    stack.v2.set_error_rate(0.05);
    let done = wait_for_phase(&mut snapshots, Duration::from_secs(60), "a rollback", |p| p.is_finished()).await;
    support::engine::assert_rolled_back_by_analysis(&done);
    eventually(Duration::from_secs(5), "weight 0 on v2", async || canary_weight(&probe).await == Some(0)).await;
    let seen = send_requests(stack.lb.frontend, 50).await;
    assert_eq!(seen.get("v2"), None, "{seen:?}");
    engine.shutdown().await;
}
