//! The Lambda backend against moto on loopback: a function with published
//! versions and an alias whose routing configuration flightdeck moves,
//! CloudWatch `AWS/Lambda` numbers per executed version seeded with
//! `PutMetricData`, and whole rollouts through the engine. Where moto is
//! not faithful (it keeps an alias's `RevisionId` forever), a fake in front
//! of it keeps the rule.
#![cfg(feature = "lambda")]

mod support;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionCode, Runtime};
use flightdeck::backend::lambda::{LambdaTarget, WeightedAlias};
use flightdeck::backend::{Backend, BackendError};
use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, RolloutSetup, StopWhen};
use flightdeck::metrics::cloudwatch::{Cloudwatch, Scope};
use flightdeck::metrics::MetricsSource;
use flightdeck::protocol::{CommandRequest, Reply};
use flightdeck_core::plan::MetricsConfig;
use flightdeck_core::rollout::{Effect, Phase};
use flightdeck_core::{Actor, Command, Plan, Rollout, Timestamp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::aws::{Fake, Moto};
use support::engine::wait_for;
use support::engine::NoMetrics;
use support::eventually;

const FUNCTION: &str = "checkout";
const ALIAS: &str = "live";

/// moto with function `checkout`, versions 1, 2 and 3 published from a zip
/// (moto needs no docker to create one, only to invoke it), and alias
/// `live` at version 1 with no routing configuration.
struct Stack {
    moto: Moto,
    lambda: aws_sdk_lambda::Client,
}

impl Stack {
    async fn start() -> Stack {
        let moto = Moto::start().await;
        let role = moto.lambda_role("checkout-role").await;
        let lambda = aws_sdk_lambda::Client::new(&moto.sdk());
        // The smallest zip: an empty archive (its end-of-central-directory record).
        let mut zip = b"PK\x05\x06".to_vec();
        zip.extend([0u8; 18]);
        let code = FunctionCode::builder().zip_file(Blob::new(zip)).build();
        let create = lambda.create_function().function_name(FUNCTION).runtime(Runtime::Python312).role(role);
        create.handler("app.handler").code(code).send().await.unwrap();
        for version in 1..=3 {
            // moto publishes a new version only after a change, as Lambda does.
            let describe = format!("build {version}");
            lambda.update_function_configuration().function_name(FUNCTION).description(describe).send().await.unwrap();
            let published = lambda.publish_version().function_name(FUNCTION).send().await.unwrap();
            assert_eq!(published.version(), Some(version.to_string().as_str()));
        }
        lambda.create_alias().function_name(FUNCTION).name(ALIAS).function_version("1").send().await.unwrap();
        Stack { moto, lambda }
    }

    /// (version, additional version weights) of the alias, read with GetAlias.
    async fn alias(&self) -> (String, HashMap<String, f64>) {
        let out = self.lambda.get_alias().function_name(FUNCTION).name(ALIAS).send().await.unwrap();
        let weights = out.routing_config().and_then(|r| r.additional_version_weights()).cloned().unwrap_or_default();
        (out.function_version().unwrap().to_owned(), weights)
    }

    async fn set_alias(&self, version: &str, weights: &[(&str, f64)]) {
        let weights = weights.iter().map(|(v, w)| (v.to_string(), *w)).collect();
        let config = AliasRoutingConfiguration::builder().set_additional_version_weights(Some(weights)).build();
        let update = self.lambda.update_alias().function_name(FUNCTION).name(ALIAS).function_version(version);
        update.routing_config(config).send().await.unwrap();
    }

    fn backend(&self, plan: &Plan) -> WeightedAlias {
        WeightedAlias::new(&self.moto.sdk(), LambdaTarget::from_plan(plan).unwrap())
    }
}

/// A canary of version 2 over version 1: stages 10 % and 50 % (bakes
/// `bake`), then 100 %; windows of 2 s, or 1 m on CloudWatch.
fn plan(bake: &str, metrics: &str) -> (Plan, String) {
    let interval = if metrics.contains("cloudwatch") { "1m" } else { "2s" };
    let text = format!(
        "[rollout]\nname = \"checkout\"\nstable = \"1\"\ncanary = \"2\"\n\n\
         [target]\nbackend = \"lambda\"\nfunction = \"{FUNCTION}\"\nalias = \"{ALIAS}\"\nregion = \"us-east-1\"\n\n\
         [strategy]\nkind = \"canary\"\nstages = [{{ weight = 10, bake = \"{bake}\" }}, \
         {{ weight = 50, bake = \"{bake}\" }}, {{ weight = 100, bake = \"0s\" }}]\n\n\
         [analysis]\ninterval = \"{interval}\"\nmin_requests = 20\ninconclusive_limit = 100\n\n{metrics}"
    );
    let plan = Plan::parse("lambda-test.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (plan, text)
}

fn engine(
    clock: Clock,
    plan: Plan,
    text: String,
    backend: Arc<dyn Backend>,
    metrics: Arc<dyn MetricsSource>,
) -> Engine {
    let setup = RolloutSetup {
        id: "lambda/checkout".into(),
        plan,
        plan_file: "lambda-test.toml".into(),
        plan_text: text,
        backend,
        metrics,
    };
    support::engine::one_rollout(setup, clock, StopWhen::Never)
}

fn command(command: Command, stage: usize) -> CommandRequest {
    CommandRequest {
        rollout: "lambda/checkout".into(),
        actor: Actor::new("captain"),
        command,
        expected_stage: stage,
        expected_revision: "2".into(),
        expected_step: None,
    }
}

fn at_stage(stage: usize) -> impl Fn(&Rollout) -> bool {
    move |r| matches!(r.phase, Phase::Progressing { .. }) && r.stage == stage && r.backend_error.is_none()
}

fn paused(r: &Rollout) -> Option<&str> {
    match &r.phase {
        Phase::Paused { reason, .. } => Some(reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_walks_the_alias_weights_and_a_promotion_points_it_at_the_new_version_with_no_routing() {
    let stack = Stack::start().await;
    let (plan, text) = plan("1h", "");
    let backend = Arc::new(stack.backend(&plan));
    let engine = engine(Clock::Wall, plan, text, backend.clone(), Arc::new(NoMetrics));
    let mut snapshots = engine.subscribe();
    wait_for(&mut snapshots, Duration::from_secs(20), "stage 1", at_stage(0)).await;
    eventually(Duration::from_secs(10), "version 2 at 10 %", async || {
        stack.alias().await == ("1".into(), HashMap::from([("2".into(), 0.1)]))
    })
    .await;
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(10));

    assert_eq!(engine.submit(command(Command::Promote, 0)).await, Reply::Ack);
    assert_eq!(stack.alias().await, ("1".into(), HashMap::from([("2".into(), 0.5)])));
    assert_eq!(engine.submit(command(Command::PromoteFull, 1)).await, Reply::Ack);
    let done = snapshots.borrow().rollouts[0].clone();
    assert!(matches!(done.phase, Phase::Promoted { .. }), "{:?}", done.phase);
    assert_eq!(done.backend_error, None);
    assert_eq!(stack.alias().await, ("2".into(), HashMap::new()), "the new version alone, no routing config");
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(100));
    engine.shutdown().await;
}

const MINUTE_MS: u64 = 60_000;

/// One datapoint per metric at the start of each whole minute from `from`
/// (ms) for `minutes`, as Lambda publishes an alias's metrics: dimensions
/// `FunctionName`, `Resource` (`name:alias`) and `ExecutedVersion`.
async fn publish(moto: &Moto, from: u64, minutes: u64, per_version: &[(&str, &[(&str, f64)])]) {
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk());
    for minute in 0..minutes {
        let at = aws_sdk_cloudwatch::primitives::DateTime::from_millis((from + minute * MINUTE_MS) as i64);
        let mut data = Vec::new();
        for (version, metrics) in per_version {
            let resource = format!("{FUNCTION}:{ALIAS}");
            let dims = [("FunctionName", FUNCTION), ("Resource", &resource), ("ExecutedVersion", version)]
                .map(|(n, v)| Dimension::builder().name(n).value(v).build());
            for (name, value) in *metrics {
                let datum = MetricDatum::builder().metric_name(*name).value(*value).timestamp(at);
                data.push(datum.set_dimensions(Some(dims.to_vec())).build());
            }
        }
        cw.put_metric_data().namespace("AWS/Lambda").set_metric_data(Some(data)).send().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_invocations_fail_is_rolled_back_by_analysis_and_the_alias_reads_back_at_the_old_version() {
    let stack = Stack::start().await;
    let (plan, text) = plan("1h", "[metrics]\nsource = \"cloudwatch\"\nlag = \"1m\"\n");
    let MetricsConfig::Cloudwatch(config) = &plan.metrics else { panic!("{:?}", plan.metrics) };
    let scope = Scope::resolve(config, &plan).unwrap();
    assert_eq!(scope.metrics_per_window(), 10, "Invocations, Errors, Duration p50/p95/p99 per version");
    // Version 2 fails 30 % of its invocations; version 1 fails 0.5 %. A
    // fresh engine's simulated time starts at 0 (1970, which moto keeps as
    // any other time): the numbers are published there, a minute a second.
    // No Duration: moto 5.2.6 answers GetMetricData with a 500 for a
    // percentile (p50 …) of a metric that has data (its statistics know no
    // extended statistic); the milliseconds are unit-tested instead.
    let stable: &[(&str, f64)] = &[("Invocations", 1000.0), ("Errors", 5.0)];
    let canary: &[(&str, f64)] = &[("Invocations", 200.0), ("Errors", 60.0)];
    publish(&stack.moto, 0, 60, &[("1", stable), ("2", canary)]).await;
    let cloudwatch = Cloudwatch::new(&stack.moto.sdk(), scope.clone(), config.lag);
    // Each version's own numbers, read back through the alias's dimensions,
    // in one GetMetricData call (CBOR) of 10 metrics.
    let front = Fake::around(&stack.moto.url, |_, _| None, |_, reply| reply).await;
    let read = Cloudwatch::new(&support::aws::sdk(&front.url), scope.clone(), config.lag);
    let sample = read.sample(Duration::from_secs(60), Timestamp(5 * MINUTE_MS)).await;
    let calls = front.bodies("GetMetricData");
    assert_eq!(calls.len(), 1);
    let queries = calls[0]["MetricDataQueries"].as_array().unwrap();
    assert_eq!(queries.len(), 10);
    let canary_p99 = queries.iter().find(|q| q["Id"] == "canary_p99").unwrap();
    let metric = &canary_p99["MetricStat"]["Metric"];
    assert_eq!((&metric["Namespace"], &metric["MetricName"]), (&"AWS/Lambda".into(), &"Duration".into()));
    assert_eq!(metric["Dimensions"][2], serde_json::json!({"Name": "ExecutedVersion", "Value": "2"}));
    let counts = |w: Option<flightdeck_core::analysis::VersionWindow>| w.map(|w| (w.requests, w.errors));
    assert_eq!(
        (counts(sample.stable), counts(sample.canary)),
        (Some((1000, 5)), Some((200, 60))),
        "{:?}",
        sample.missing
    );
    let backend = Arc::new(stack.backend(&plan));
    let engine = engine(Clock::scaled(Timestamp(0), 60.0), plan, text, backend.clone(), Arc::new(cloudwatch));
    let mut snapshots = engine.subscribe();
    let done = wait_for(&mut snapshots, Duration::from_secs(60), "a rollback", |r| r.phase.is_finished()).await;
    support::engine::assert_rolled_back_by_analysis(&done);
    let verdict = done.last_verdict.expect("the analysis judged windows");
    println!("{}", verdict.summary());
    eventually(Duration::from_secs(5), "the alias at version 1 alone", async || {
        stack.alias().await == ("1".into(), HashMap::new())
    })
    .await;
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(0));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_changed_outside_flightdeck_pauses_the_rollout_with_what_it_shows() {
    let stack = Stack::start().await;
    let (plan, text) = plan("1h", "");
    let engine = engine(Clock::Wall, plan.clone(), text, Arc::new(stack.backend(&plan)), Arc::new(NoMetrics));
    let mut snapshots = engine.subscribe();
    wait_for(&mut snapshots, Duration::from_secs(20), "stage 1", at_stage(0)).await;
    eventually(Duration::from_secs(10), "version 2 at 10 %", async || {
        stack.alias().await == ("1".into(), HashMap::from([("2".into(), 0.1)]))
    })
    .await;

    // Someone sends 30 % to the canary: drift, paused with both numbers.
    stack.set_alias("1", &[("2", 0.3)]).await;
    let r = wait_for(&mut snapshots, Duration::from_secs(20), "a pause on drift", |r| paused(r).is_some()).await;
    let reason = paused(&r).unwrap();
    assert!(reason.contains("drift: the backend shows canary weight 30 % but flightdeck set 10 %"), "{reason}");
    // Resume sets the stage's weight back.
    assert_eq!(engine.submit(command(Command::Resume, 0)).await, Reply::Ack);
    assert_eq!(stack.alias().await, ("1".into(), HashMap::from([("2".into(), 0.1)])));
    wait_for(&mut snapshots, Duration::from_secs(20), "stage 1 again", at_stage(0)).await;

    // Someone points the alias at version 3: neither of the plan's versions.
    stack.set_alias("3", &[]).await;
    let r =
        wait_for(&mut snapshots, Duration::from_secs(20), "a pause on another version", |r| paused(r).is_some()).await;
    let reason = paused(&r).unwrap();
    assert!(reason.contains("the alias shows version 3, not the plan's versions 1 → 2"), "{reason}");
    // A resume does not write over it: the forward change is refused with what it found.
    let _ = engine.submit(command(Command::Resume, 0)).await;
    assert_eq!(stack.alias().await, ("3".into(), HashMap::new()), "never overwritten going forward");
    engine.shutdown().await;
}

/// Lambda's `RevisionId` rule, which moto does not keep (its alias keeps
/// the id it was created with): every update gives the alias a new
/// revision, and an `UpdateAlias` with a `RevisionId` that is not the
/// current one is refused with 412 `PreconditionFailedException` (Lambda
/// API reference, UpdateAlias: "Only update the alias if the revision ID
/// matches the ID that's specified. Use this option to avoid modifying an
/// alias that has changed since you last read it."). `race` makes someone
/// else's update land right after the next read.
#[derive(Default)]
struct Revisions {
    /// The alias's revision: `rev-<n>`.
    current: AtomicU64,
    race: AtomicBool,
}

/// Lambda's answer to a stale `RevisionId` (its error shape, rest-json).
const PRECONDITION_FAILED: &str = r#"{"__type":"PreconditionFailedException","Type":"User","message":"The Revision Id provided does not match the latest Revision Id. Call the GetAlias API to retrieve the latest Revision Id"}"#;

impl Revisions {
    async fn front(self: &Arc<Self>, upstream: &str) -> Fake {
        let (answer, rewrite) = (self.clone(), self.clone());
        let is_alias = |op: &str, method: &str| op.starts_with(method) && op.contains("/aliases/");
        Fake::around(
            upstream,
            move |op, body| {
                if !is_alias(op, "PUT ") {
                    return None;
                }
                let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                let current = format!("rev-{}", answer.current.load(Ordering::SeqCst));
                match body["RevisionId"].as_str() {
                    Some(sent) if sent != current => Some((412, PRECONDITION_FAILED.to_owned())),
                    _ => {
                        answer.current.fetch_add(1, Ordering::SeqCst);
                        None
                    }
                }
            },
            move |op, reply| {
                if !is_alias(op, "GET ") {
                    return reply;
                }
                let mut alias: serde_json::Value = serde_json::from_str(&reply).unwrap();
                alias["RevisionId"] = format!("rev-{}", rewrite.current.load(Ordering::SeqCst)).into();
                if rewrite.race.swap(false, Ordering::SeqCst) {
                    rewrite.current.fetch_add(1, Ordering::SeqCst);
                }
                alias.to_string()
            },
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_changed_between_its_read_and_the_update_is_refused_not_overwritten() {
    let stack = Stack::start().await;
    let revisions = Arc::new(Revisions::default());
    let front = revisions.front(&stack.moto.url).await;
    let (plan, _) = plan("1h", "");
    let backend = WeightedAlias::new(&support::aws::sdk(&front.url), LambdaTarget::from_plan(&plan).unwrap());

    backend.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
    assert_eq!(stack.alias().await, ("1".into(), HashMap::from([("2".into(), 0.1)])));
    let sent: Vec<String> =
        front.bodies_where(|op| op.starts_with("PUT ")).iter().map(|b| b["RevisionId"].to_string()).collect();
    assert_eq!(sent, ["\"rev-0\""], "the update names the revision it read");

    revisions.race.store(true, Ordering::SeqCst);
    let e = backend.apply(&Effect::SetWeight { canary: 50 }).await.unwrap_err();
    assert!(matches!(e, BackendError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("PreconditionFailedException"), "{e}");
    assert_eq!(stack.alias().await, ("1".into(), HashMap::from([("2".into(), 0.1)])), "nothing written");
    // Read again, the next try applies.
    backend.apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
    assert_eq!(stack.alias().await, ("1".into(), HashMap::from([("2".into(), 0.5)])));
}

/// `flightdeck check` on a plan file: the plan it read, or the error.
fn check(text: &str) -> Result<Plan, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lambda.toml");
    std::fs::write(&path, text).unwrap();
    flightdeck::fleet::check(&path, dir.path()).map_err(|e| e.0.replace(&path.display().to_string(), "lambda.toml"))
}

#[test]
fn check_knows_the_lambda_parameters_and_names_what_is_wrong_at_its_line() {
    let example = std::fs::read_to_string("examples/plans/lambda.toml").unwrap();
    let plan = check(&example).unwrap();
    assert_eq!(plan.target.params["alias"], "live");
    let bad = |from: &str, to: &str| {
        assert!(example.contains(from), "{from}");
        check(&example.replacen(from, to, 1)).unwrap_err()
    };
    let e = bad("alias = \"live\"\n", "");
    assert!(e.starts_with("lambda.toml:19:1: target.alias: backend \"lambda\" needs parameter `alias`"), "{e}");
    let e = bad("canary = \"42\"", "canary = \"$LATEST\"");
    assert!(e.starts_with("lambda.toml:17:"), "{e}");
    assert!(e.contains("rollout.canary: `$LATEST` is not a published Lambda version"), "{e}");
    let e = bad("alias = \"live\"", "alias = \"live\"\nlistener_rule = \"x\"");
    assert!(e.contains("listener_rule"), "an ECS parameter is unknown to lambda: {e}");
    let strategy = &example[example.find("[strategy]").unwrap()..example.find("[analysis]").unwrap()];
    let e = bad(strategy, "[strategy]\nkind = \"rolling\"\nbatch_percent = 25\nbake = \"5m\"\n\n");
    assert!(e.starts_with("lambda.toml:27:8: strategy.kind: `rolling` has no meaning for a Lambda alias"), "{e}");
    let e = bad("lag = \"1m\"", "lag = \"1m\"\nload_balancer = \"app/checkout/1\"");
    assert!(e.contains("metrics.load_balancer: a load balancer's dimension"), "{e}");
}

#[tokio::test]
async fn a_lambda_plan_is_built_on_its_alias_under_the_functions_account_and_region() {
    let path = "examples/plans/lambda.toml";
    let text = std::fs::read_to_string(path).unwrap();
    let plan = Plan::parse(path, &text).unwrap();
    // Nothing is called yet: AWS is contacted at the first observation.
    let setup = flightdeck::fleet::setup(plan, path, text, None, 1).await.unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(setup.backend.name(), "lambda checkout:live");
    assert_eq!(setup.id, "123456789012/eu-west-1/checkout-fn", "the group is the function ARN's account and region");
}
