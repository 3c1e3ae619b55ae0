//! The Unleash backend against a real Unleash (unleash-server 8 from npm,
//! on a throwaway PostgreSQL; `tests/flags/start-unleash`, installed by
//! `scripts/setup`). One Unleash serves every test of this binary (it
//! takes a few seconds to migrate its database); each test makes its own
//! flag, so tests never see each other's changes.
//!
//! The application is pretend: [`FlagTraffic`] reads the percentage the
//! server holds (what Unleash's SDKs would serve) and splits its requests
//! by it, the canary side failing as the test says.
#![cfg(feature = "flags")]

mod support;

use async_trait::async_trait;
use flightdeck::backend::flag::unleash::Unleash;
use flightdeck::backend::Backend;
use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, RolloutSetup, StopWhen};
use flightdeck::metrics::MetricsSource;
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::rollout::{Effect, Phase};
use flightdeck_core::{Actor, Plan, Rollout, Timestamp};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::engine::wait_for_phase;
use tokio::sync::OnceCell;

const TOKEN: &str = "*:*.flightdeck-test-admin-token";

/// The one Unleash of this test binary.
struct Server {
    url: String,
    /// Holds the token; flightdeck reads it from here (`token_file`).
    token_file: PathBuf,
    dir: PathBuf,
    /// Exits, and stops Unleash, once this process is gone: never waited for.
    _launcher: std::process::Child,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

/// Starts Unleash on first use. The launcher stops PostgreSQL and Unleash
/// when this test binary's process is gone.
async fn server() -> &'static Server {
    SERVER
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap().keep();
            let (port, pg_port) = (support::free_port(), support::free_port());
            let pid = std::process::id().to_string();
            let log = std::fs::File::create(dir.join("start-unleash.log")).unwrap();
            let launcher = std::process::Command::new("tests/flags/start-unleash")
                .args([dir.to_str().unwrap(), &port.to_string(), TOKEN, &pid, &pg_port.to_string()])
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("tests/flags/start-unleash (run scripts/setup)");
            let token_file = dir.join("token");
            std::fs::write(&token_file, TOKEN).unwrap();
            let server = Server { url: format!("http://127.0.0.1:{port}"), token_file, dir, _launcher: launcher };
            let started = Instant::now();
            while admin(&server, "GET", "/api/admin/projects/default/features", None).await.0 != 200 {
                let logs = ["start-unleash.log", "unleash.log", "postgres.log"]
                    .map(|f| std::fs::read_to_string(server.dir.join(f)).unwrap_or_default());
                assert!(started.elapsed() < Duration::from_secs(90), "Unleash did not start in 90 s: {logs:#?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            println!("Unleash up in {:.1} s", started.elapsed().as_secs_f64());
            server
        })
        .await
}

/// One Admin API call as the test (Unleash's UI makes the same ones).
async fn admin(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.parse().unwrap(), format!("{}{path}", server.url))
        .header("Authorization", TOKEN)
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request.header("Content-Type", "application/json").body(body.to_string());
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

static FLAGS: AtomicUsize = AtomicUsize::new(0);

/// A new flag in `default` with a gradual rollout at 0 % in `development`,
/// sticky by userId, for the users of one app. Returns its name and the
/// strategy's id.
async fn new_flag(server: &Server, prefix: &str) -> (String, String) {
    let name = format!("{prefix}-{}", FLAGS.fetch_add(1, Ordering::Relaxed));
    let features = "/api/admin/projects/default/features";
    let (status, _) = admin(server, "POST", features, Some(json!({ "name": name, "type": "release" }))).await;
    assert_eq!(status, 201, "flag {name} created");
    let strategy = json!({
        "name": "flexibleRollout",
        "parameters": { "rollout": "0", "stickiness": "userId", "groupId": name },
        "constraints": [{ "contextName": "appName", "operator": "IN", "values": ["shop"] }],
    });
    let (status, created) = admin(server, "POST", &strategies(&name), Some(strategy)).await;
    assert_eq!(status, 200, "strategy on {name}: {created}");
    let (status, _) = admin(server, "POST", &format!("{}/on", environment(&name)), None).await;
    assert_eq!(status, 200);
    (name, created["id"].as_str().unwrap().to_string())
}

fn environment(flag: &str) -> String {
    format!("/api/admin/projects/default/features/{flag}/environments/development")
}

fn strategies(flag: &str) -> String {
    format!("{}/strategies", environment(flag))
}

/// The environment as Unleash holds it: enabled, and the one strategy.
async fn read_back(server: &Server, flag: &str) -> (bool, Value) {
    let (status, env) = admin(server, "GET", &environment(flag), None).await;
    assert_eq!(status, 200, "{env}");
    (env["enabled"].as_bool().unwrap(), env["strategies"][0].clone())
}

/// The plan text of a rollout of `flag`; `extra` goes into `[target]`.
fn plan_text(server: &Server, flag: &str, extra: &str, stages: &str) -> String {
    format!(
        "[rollout]\nname = \"{flag}\"\nstable = \"off\"\ncanary = \"on\"\n\n\
         [target]\nbackend = \"unleash\"\ngroup = \"flags\"\nserver = \"{}\"\nenvironment = \"development\"\n\
         flag = \"{flag}\"\ntoken_file = \"{}\"\n{extra}\n\
         [strategy]\nkind = \"canary\"\n{stages}\n\
         [analysis]\ninterval = \"1s\"\nmin_requests = 20\ninconclusive_limit = 30\nmax_p99_increase_pct = 200\n",
        server.url,
        server.token_file.display()
    )
}

fn plan(text: &str) -> Plan {
    Plan::parse("unleash-test.toml", text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn backend(text: &str) -> Unleash {
    Unleash::from_target(&plan(text).target).unwrap()
}

const STAGES: &str = "stages = [{ weight = 20, bake = \"1h\" }, { weight = 100, bake = \"0s\" }]\n";

/// The pretend application: 400 requests a window, split by the
/// percentage Unleash serves now; the canary side fails `canary_error_pct`.
struct FlagTraffic {
    unleash: Unleash,
    canary_error_pct: u64,
}

#[async_trait]
impl MetricsSource for FlagTraffic {
    async fn sample(&self, window: Duration, _now: Timestamp) -> MetricsSample {
        let served = self.unleash.observe().await.ok().and_then(|o| o.canary_weight).unwrap_or(0);
        let canary = 400 * u64::from(served) / 100;
        let side = |requests: u64, error_pct: u64| VersionWindow {
            requests,
            errors: requests * error_pct / 100,
            p50_ms: Some(40.0),
            p95_ms: Some(80.0),
            p99_ms: Some(120.0),
            ..VersionWindow::default()
        };
        MetricsSample {
            window,
            stable: Some(side(400 - canary, 0)),
            canary: Some(side(canary, self.canary_error_pct)),
            missing: None,
        }
    }

    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

fn engine(text: &str, canary_error_pct: u64) -> Engine {
    let plan = plan(text);
    let setup = RolloutSetup {
        id: format!("flags/{}", plan.name),
        backend: Arc::new(backend(text)),
        metrics: Arc::new(FlagTraffic { unleash: backend(text), canary_error_pct }),
        plan,
        plan_file: "unleash-test.toml".into(),
        plan_text: text.to_string(),
    };
    support::engine::one_rollout(setup, Clock::Wall, StopWhen::Never)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_flag_rollout_is_rolled_back_to_zero_by_the_analysis_read_back_from_unleash() {
    let server = server().await;
    let (flag, _) = new_flag(server, "bad-rollout").await;
    let text = plan_text(server, &flag, "", STAGES);
    let engine = engine(&text, 12);
    let mut snapshots = engine.subscribe();
    let started = Instant::now();
    // The first stage reaches Unleash before any window is judged.
    let reached = async || read_back(server, &flag).await.1["parameters"]["rollout"] == "20";
    support::eventually(Duration::from_secs(10), "rollout 20 % in Unleash", reached).await;
    let done = wait_for_phase(&mut snapshots, Duration::from_secs(60), "the rollback", |p| p.is_finished()).await;
    let Phase::RolledBack { by, reason, .. } = &done.phase else { panic!("not rolled back: {:?}", done.phase) };
    println!("rolled back by {by} after {:.1} s: {reason}", started.elapsed().as_secs_f64());
    assert_eq!(*by, Actor::analysis());
    // Read back from the server: 0 % once the rollback's effect is carried
    // out, and nothing else of the strategy changed.
    let zero = async || read_back(server, &flag).await.1["parameters"]["rollout"] == "0";
    support::eventually(Duration::from_secs(5), "rollout 0 % in Unleash", zero).await;
    let (enabled, strategy) = read_back(server, &flag).await;
    assert_eq!(strategy["parameters"]["stickiness"], "userId");
    assert_eq!(strategy["parameters"]["groupId"], flag.as_str());
    assert_eq!(strategy["constraints"][0]["values"], json!(["shop"]));
    assert!(enabled, "revert = \"zero\" leaves the flag on, at 0 %");
    assert_eq!(backend(&text).observe().await.unwrap().canary_weight, Some(0));
    let after = Rollout::clone(&snapshots.borrow().rollouts[0]);
    assert!(matches!(after.phase, Phase::RolledBack { .. }), "the rollback was carried out: {:?}", after.phase);
    assert_eq!(after.backend_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_set_only_the_percentage_and_revert_disable_turns_the_flag_off() {
    let server = server().await;
    let (flag, id) = new_flag(server, "stages").await;
    let unleash = backend(&plan_text(server, &flag, "revert = \"disable\"", STAGES));
    unleash.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
    let (enabled, strategy) = read_back(server, &flag).await;
    assert_eq!(
        (enabled, &strategy["parameters"]["rollout"], strategy["id"].as_str()),
        (true, &json!("10"), Some(&*id))
    );
    assert_eq!(unleash.observe().await.unwrap().canary_weight, Some(10));
    // A flag has no capacity: scaling changes nothing in Unleash.
    unleash.apply(&Effect::Scale { version: flightdeck_core::rollout::Version::Stable, percent: 0 }).await.unwrap();
    unleash.apply(&Effect::SetWeight { canary: 0 }).await.unwrap();
    let (enabled, strategy) = read_back(server, &flag).await;
    assert!(!enabled, "revert = \"disable\" turns the flag off");
    assert_eq!(strategy["parameters"]["rollout"], "0");
    assert_eq!(strategy["parameters"]["stickiness"], "userId");
    assert_eq!(unleash.observe().await.unwrap().canary_weight, Some(0));
    // A retry's first stage turns it back on, after its percentage is set.
    unleash.apply(&Effect::SetWeight { canary: 5 }).await.unwrap();
    let (enabled, strategy) = read_back(server, &flag).await;
    assert!(enabled);
    assert_eq!(strategy["parameters"]["rollout"], "5");
    unleash.apply(&Effect::SwitchActive { to: flightdeck_core::rollout::Version::Canary }).await.unwrap();
    assert_eq!(unleash.observe().await.unwrap().canary_weight, Some(100), "promoted to 100 %");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percentage_changed_in_unleash_meanwhile_pauses_the_rollout_with_both_numbers() {
    let server = server().await;
    let (flag, id) = new_flag(server, "drift").await;
    let text = plan_text(server, &flag, "", STAGES);
    let engine = engine(&text, 0);
    let mut snapshots = engine.subscribe();
    let reached = async || read_back(server, &flag).await.1["parameters"]["rollout"] == "20";
    support::eventually(Duration::from_secs(10), "rollout 20 % in Unleash", reached).await;
    // Someone drags the slider in Unleash's UI to 35 %.
    let patch = json!([{ "op": "replace", "path": "/parameters/rollout", "value": "35" }]);
    let (status, _) = admin(server, "PATCH", &format!("{}/{id}", strategies(&flag)), Some(patch)).await;
    assert_eq!(status, 200);
    let paused =
        wait_for_phase(&mut snapshots, Duration::from_secs(20), "a pause", |p| matches!(p, Phase::Paused { .. })).await;
    let Phase::Paused { by, reason, .. } = &paused.phase else { unreachable!() };
    println!("paused by {by}: {reason}; {:?}", paused.native_detail);
    assert_eq!(*by, Actor::backend());
    assert!(reason.contains("35 %") && reason.contains("20 %"), "{reason}");
    let detail = paused.native_detail.unwrap_or_default();
    assert!(detail.contains("changed in Unleash: flightdeck set 20 %"), "{detail}");
    assert_eq!(read_back(server, &flag).await.1["parameters"]["rollout"], "35", "paused, not overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stickiness_set_in_unleash_fails_the_read_back_and_a_forward_step_once() {
    let server = server().await;
    let (flag, id) = new_flag(server, "stickiness").await;
    let unleash = backend(&plan_text(server, &flag, "", STAGES));
    unleash.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
    let mut strategy = read_back(server, &flag).await.1;
    strategy["parameters"]["stickiness"] = json!("sessionId");
    let body = json!({ "name": "flexibleRollout", "parameters": strategy["parameters"], "constraints": strategy["constraints"] });
    let (status, answer) = admin(server, "PUT", &format!("{}/{id}", strategies(&flag)), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let e = unleash.observe().await.unwrap_err().to_string();
    assert!(e.contains("changed in Unleash") && e.contains("stickiness userId → sessionId"), "{e}");
    let e = unleash.apply(&Effect::SetWeight { canary: 50 }).await.unwrap_err().to_string();
    assert!(e.contains("not overwriting it"), "{e}");
    assert_eq!(read_back(server, &flag).await.1["parameters"]["rollout"], "10");
    // The captain resumes: the step goes through and the new stickiness stays.
    unleash.apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
    let strategy = read_back(server, &flag).await.1;
    assert_eq!(
        (&strategy["parameters"]["rollout"], &strategy["parameters"]["stickiness"]),
        (&json!("50"), &json!("sessionId"))
    );
    assert_eq!(unleash.observe().await.unwrap().canary_weight, Some(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_a_missing_flag_and_a_standard_strategy_are_refused_with_the_reason() {
    let server = server().await;
    let (flag, _) = new_flag(server, "refusals").await;
    let wrong = server.dir.join("wrong-token");
    std::fs::write(&wrong, "*:*.not-a-token").unwrap();
    let text =
        plan_text(server, &flag, "", STAGES).replace(server.token_file.to_str().unwrap(), wrong.to_str().unwrap());
    let e = backend(&text).apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err().to_string();
    assert!(e.contains("401 Unauthorized") && e.contains("wrong-token"), "{e}");
    let missing = plan_text(server, "no-such-flag", "", STAGES);
    let e = backend(&missing).observe().await.unwrap_err().to_string();
    assert!(e.contains("404 Not Found") && e.contains("no-such-flag"), "{e}");
    let (other, _) = new_flag(server, "standard").await;
    let (status, _) = admin(server, "POST", &strategies(&other), Some(json!({ "name": "default" }))).await;
    assert_eq!(status, 200);
    let two = backend(&plan_text(server, &other, "", STAGES));
    let e = two.apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err().to_string();
    assert!(e.contains("2 strategies in development") && e.contains("strategy_id"), "{e}");
    let (_, env) = admin(server, "GET", &environment(&other), None).await;
    let default_id =
        env["strategies"].as_array().unwrap().iter().find(|s| s["name"] == "default").unwrap()["id"].clone();
    let named = backend(&plan_text(server, &other, &format!("strategy_id = {default_id}"), STAGES));
    let e = named.apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err().to_string();
    assert!(e.contains("is `default`, not a gradual rollout"), "{e}");
    assert_eq!(read_back(server, &flag).await.1["parameters"]["rollout"], "0", "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_unleash_refuses_pauses_the_rollout_with_the_reason() {
    let server = server().await;
    let (flag, _) = new_flag(server, "unauthorized").await;
    let wrong = server.dir.join("expired-token");
    std::fs::write(&wrong, "*:*.expired").unwrap();
    let text =
        plan_text(server, &flag, "", STAGES).replace(server.token_file.to_str().unwrap(), wrong.to_str().unwrap());
    let engine = engine(&text, 0);
    let mut snapshots = engine.subscribe();
    let paused =
        wait_for_phase(&mut snapshots, Duration::from_secs(30), "a pause", |p| matches!(p, Phase::Paused { .. })).await;
    let Phase::Paused { by, reason, .. } = &paused.phase else { unreachable!() };
    println!("paused by {by}: {reason}");
    assert_eq!(*by, Actor::backend());
    assert!(reason.contains("401 Unauthorized") && reason.contains("expired-token"), "{reason}");
    assert_eq!(read_back(server, &flag).await.1["parameters"]["rollout"], "0", "nothing was written");
}
