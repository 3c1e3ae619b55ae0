//! The ECS backend against moto on loopback (task sets, listener weights,
//! CloudWatch numbers, rolling rollback) and against recorded responses
//! where moto is not faithful (service deployments, throttling, expired
//! credentials), with whole rollouts through the engine.
#![cfg(feature = "ecs")]

mod support;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController,
    DeploymentControllerType, LaunchType, LoadBalancer, NetworkConfiguration, NetworkMode, PortMapping, Scale,
    ScaleUnit, TaskSet,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, RuleCondition, TargetGroupTuple, TargetTypeEnum,
};
use flightdeck::backend::ecs::{driven::TaskSets, observed::ServiceDeployments, rolling::RollingService, EcsTarget};
use flightdeck::backend::Backend;
use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, RolloutSetup, StopWhen};
use flightdeck::metrics::cloudwatch::{Cloudwatch, Dimensions};
use flightdeck::metrics::MetricsSource;
use flightdeck::protocol::{CommandRequest, Reply};
use flightdeck_core::plan::MetricsConfig;
use flightdeck_core::rollout::{Effect, NativeStatus, NativeVerb, Phase};
use flightdeck_core::{Actor, Command, Plan, Rollout, Timestamp};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::aws::{Fake, Moto};
use support::engine::wait_for;
use support::engine::NoMetrics;
use support::eventually;

/// The resources of an EXTERNAL service on moto: cluster `prod`, service
/// `checkout` (4 tasks) whose stable task set runs `checkout:1` behind the
/// `blue` target group, and a listener rule forwarding blue 100 / green 0.
/// Backends talk to `front`, in front of moto, which answers
/// `DescribeTaskSets` as ECS does once tasks run (moto's task sets never
/// have any): the computed desired count of the task set's scale, all of
/// them running, steady since now.
struct Stack {
    moto: Moto,
    front: Fake,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    listener: String,
    rule: String,
    blue: String,
    green: String,
    rules: EcsRules,
}

/// ECS's task-set rules moto does not keep, enforced in front of it:
///
/// - `DeleteTaskSet` of a task set not scaled to 0 is refused unless
///   `force` is set (API reference, `DeleteTaskSet`: "If true, you can
///   delete a task set even if it hasn't been scaled down to zero"); moto
///   deletes any (its `delete_task_set` says force is not implemented).
/// - A deleted task set stays listed as `DRAINING` while its tasks stop
///   (API reference, `TaskSet.status`: "DRAINING: The tasks in the task
///   set are being stopped"); moto forgets it at once.
/// - `CreateTaskSet` with a `clientToken` already used answers the task
///   set created then and creates nothing (ECS API reference, "Ensuring
///   idempotency"); moto creates another.
///
/// `deny_delete` makes `DeleteTaskSet` answer `AccessDeniedException`.
#[derive(Clone, Default)]
struct EcsRules(Arc<std::sync::Mutex<RulesState>>);

#[derive(Default)]
struct RulesState {
    scale: std::collections::HashMap<String, f64>,
    draining: Vec<Value>,
    tokens: std::collections::HashMap<String, String>,
    pending_token: Option<String>,
    deny_delete: bool,
}

impl EcsRules {
    fn answer(&self, operation: &str, body: &str) -> Option<(u16, String)> {
        let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let mut state = self.0.lock().unwrap();
        match operation {
            "CreateTaskSet" => {
                let token = body["clientToken"].as_str().map(str::to_owned);
                if let Some(reply) = token.as_ref().and_then(|t| state.tokens.get(t)) {
                    return Some((200, reply.clone()));
                }
                state.pending_token = token;
                None
            }
            "UpdateTaskSet" => {
                // The SDK leaves out a value that is its default (0).
                let (arn, value) = (body["taskSet"].as_str()?, body["scale"]["value"].as_f64().unwrap_or(0.0));
                state.scale.insert(arn.to_owned(), value);
                None
            }
            "DeleteTaskSet" if state.deny_delete => Some(error(
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/deployer is not authorized to perform: ecs:DeleteTaskSet",
            )),
            "DeleteTaskSet" => {
                let arn = body["taskSet"].as_str()?;
                let scaled_down = state.scale.get(arn) == Some(&0.0);
                (!scaled_down && body["force"].as_bool() != Some(true)).then(|| {
                    error("InvalidParameterException", "The task set must be scaled down to 0 before it is deleted.")
                })
            }
            _ => None,
        }
    }

    fn rewrite(&self, operation: &str, reply: String) -> String {
        let mut state = self.0.lock().unwrap();
        match operation {
            "CreateTaskSet" => {
                let json: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
                if let (Some(arn), Some(value)) =
                    (json["taskSet"]["taskSetArn"].as_str(), json["taskSet"]["scale"]["value"].as_f64())
                {
                    state.scale.insert(arn.to_owned(), value);
                }
                if let Some(token) = state.pending_token.take() {
                    state.tokens.insert(token, reply.clone());
                }
                reply
            }
            "DeleteTaskSet" => {
                let json: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
                if json["taskSet"].is_object() {
                    let mut set = json["taskSet"].clone();
                    set["status"] = json!("DRAINING");
                    state.draining.push(set);
                }
                reply
            }
            "DescribeTaskSets" => {
                let Ok(mut json) = serde_json::from_str::<Value>(&reply) else { return reply };
                if let Some(sets) = json["taskSets"].as_array_mut() {
                    sets.extend(state.draining.iter().cloned());
                }
                json.to_string()
            }
            _ => reply,
        }
    }

    /// A front on `upstream` keeping these rules, whose task sets run as
    /// `running` says.
    async fn front(&self, upstream: &str, running: impl Fn(&str, String) -> String + Send + Sync + 'static) -> Fake {
        let (a, b) = (self.clone(), self.clone());
        Fake::around(upstream, move |op, body| a.answer(op, body), move |op, reply| b.rewrite(op, running(op, reply)))
            .await
    }
}

/// Moto's `DescribeTaskSets` answer with running tasks: `scale` % of the
/// service's 4, all running, `STEADY_STATE` since now.
fn running_task_sets(operation: &str, reply: String) -> String {
    if operation != "DescribeTaskSets" {
        return reply;
    }
    let Ok(mut json) = serde_json::from_str::<Value>(&reply) else { return reply };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    for set in json["taskSets"].as_array_mut().into_iter().flatten() {
        let scale = set["scale"]["value"].as_f64().unwrap_or(0.0);
        let count = (4.0 * scale / 100.0).ceil() as i64;
        set["computedDesiredCount"] = json!(count);
        set["runningCount"] = json!(count);
        set["stabilityStatus"] = json!("STEADY_STATE");
        set["stabilityStatusAt"] = json!(now);
    }
    json.to_string()
}

impl Stack {
    async fn start() -> Stack {
        let moto = Moto::start().await;
        let aws = moto.sdk();
        let (ecs, elb) = (aws_sdk_ecs::Client::new(&aws), aws_sdk_elasticloadbalancingv2::Client::new(&aws));
        let (vpc, subnets, security_group) = moto.default_network().await;
        let lb = elb.create_load_balancer().name("checkout").set_subnets(Some(subnets.clone())).send().await.unwrap();
        let lb = lb.load_balancers()[0].load_balancer_arn().unwrap().to_owned();
        let group = async |name: &str| {
            let call = elb.create_target_group().name(name).protocol(ProtocolEnum::Http).port(80).vpc_id(&vpc);
            let out = call.target_type(TargetTypeEnum::Ip).send().await.unwrap();
            out.target_groups()[0].target_group_arn().unwrap().to_owned()
        };
        let (blue, green) = (group("blue").await, group("green").await);
        let forward_blue = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&blue).build();
        let listener = elb.create_listener().load_balancer_arn(&lb).protocol(ProtocolEnum::Http).port(80);
        let listener = listener.default_actions(forward_blue).send().await.unwrap();
        let listener = listener.listeners()[0].listener_arn().unwrap().to_owned();
        let weighted = |arn: &str, w: i32| TargetGroupTuple::builder().target_group_arn(arn).weight(w).build();
        let forward =
            ForwardActionConfig::builder().target_groups(weighted(&blue, 100)).target_groups(weighted(&green, 0));
        let action = Action::builder().r#type(ActionTypeEnum::Forward).forward_config(forward.build()).build();
        let all = RuleCondition::builder().field("path-pattern").values("/*").build();
        let rule = elb.create_rule().listener_arn(&listener).priority(10).conditions(all).actions(action);
        let rule = rule.send().await.unwrap().rules()[0].rule_arn().unwrap().to_owned();

        ecs.create_cluster().cluster_name("prod").send().await.unwrap();
        for image in ["checkout:1", "checkout:2"] {
            let web = ContainerDefinition::builder().name("web").image(image).memory(512);
            let web = web.port_mappings(PortMapping::builder().container_port(80).build()).build();
            let task = ecs.register_task_definition().family("checkout").container_definitions(web);
            let task = task.requires_compatibilities(Compatibility::Fargate).network_mode(NetworkMode::Awsvpc);
            task.cpu("256").memory("512").send().await.unwrap();
        }
        let external = DeploymentController::builder().r#type(DeploymentControllerType::External).build().unwrap();
        let service = ecs.create_service().cluster("prod").service_name("checkout").desired_count(4);
        service.deployment_controller(external).send().await.unwrap();
        let vpc_config = AwsVpcConfiguration::builder().set_subnets(Some(subnets)).security_groups(security_group);
        let vpc_config = vpc_config.assign_public_ip(AssignPublicIp::Disabled);
        let network = NetworkConfiguration::builder().awsvpc_configuration(vpc_config.build().unwrap()).build();
        let balancer = LoadBalancer::builder().target_group_arn(&blue).container_name("web").container_port(80).build();
        let stable = ecs.create_task_set().cluster("prod").service("checkout").task_definition("checkout:1");
        let stable = stable.launch_type(LaunchType::Fargate).network_configuration(network).load_balancers(balancer);
        let scale = Scale::builder().unit(ScaleUnit::Percent).value(100.0).build();
        let stable = stable.scale(scale).send().await.unwrap().task_set().unwrap().task_set_arn().unwrap().to_owned();
        let primary = ecs.update_service_primary_task_set().cluster("prod").service("checkout");
        primary.primary_task_set(stable).send().await.unwrap();
        let rules = EcsRules::default();
        let front = rules.front(&moto.url, running_task_sets).await;
        Stack { moto, front, ecs, elb, listener, rule, blue, green, rules }
    }

    /// A driven canary plan: stages 10 % and 50 % (bakes `bake`), then 100 %;
    /// windows of 2 s, or 1 m on CloudWatch (which has whole minutes only).
    fn plan(&self, service: &str, rule: &str, bake: &str, metrics: &str) -> (Plan, String) {
        let interval = if metrics.contains("cloudwatch") { "1m" } else { "2s" };
        let text = format!(
            "[rollout]\nname = \"checkout\"\nstable = \"checkout:1\"\ncanary = \"checkout:2\"\n\n\
             [target]\nbackend = \"ecs\"\ncontroller = \"external\"\ncluster = \"prod\"\nservice = \"{service}\"\n\
             region = \"us-east-1\"\nlistener_rule = \"{rule}\"\nstable_target_group = \"{}\"\n\
             canary_target_group = \"{}\"\nready_timeout_s = 5\n\n\
             [strategy]\nkind = \"canary\"\nstages = [{{ weight = 10, bake = \"{bake}\" }}, \
             {{ weight = 50, bake = \"{bake}\" }}, {{ weight = 100, bake = \"0s\" }}]\n\n\
             [analysis]\ninterval = \"{interval}\"\nmin_requests = 20\ninconclusive_limit = 100\n\n{metrics}",
            self.blue, self.green
        );
        let plan = Plan::parse("ecs-test.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        (plan, text)
    }

    fn task_sets(&self, plan: &Plan) -> TaskSets {
        let target = EcsTarget::from_target(&plan.target).unwrap();
        TaskSets::new(&self.front_sdk(), target, plan).unwrap()
    }

    fn front_sdk(&self) -> aws_config::SdkConfig {
        support::aws::sdk(&self.front.url)
    }

    /// (blue, green) weights of the rule, read with DescribeRules.
    async fn weights(&self) -> (i32, i32) {
        let out = self.elb.describe_rules().rule_arns(&self.rule).send().await.unwrap();
        let forward = out.rules()[0].actions()[0].forward_config().unwrap().target_groups().to_vec();
        let weight = |arn: &str| forward.iter().find(|g| g.target_group_arn() == Some(arn)).and_then(|g| g.weight());
        (weight(&self.blue).unwrap(), weight(&self.green).unwrap())
    }

    async fn describe_task_sets(&self) -> Vec<TaskSet> {
        let out = self.ecs.describe_task_sets().cluster("prod").service("checkout").send().await.unwrap();
        out.task_sets().to_vec()
    }

    async fn canary_task_set(&self) -> Option<TaskSet> {
        let sets = self.describe_task_sets().await;
        sets.into_iter().find(|ts| ts.task_definition().is_some_and(|d| d.ends_with("/checkout:2")))
    }
}

fn engine(
    plan: Plan,
    text: String,
    backend: Arc<dyn Backend>,
    metrics: Arc<dyn MetricsSource>,
    stop: StopWhen,
) -> Engine {
    engine_on(Clock::Wall, plan, text, backend, metrics, stop)
}

fn engine_on(
    clock: Clock,
    plan: Plan,
    text: String,
    backend: Arc<dyn Backend>,
    metrics: Arc<dyn MetricsSource>,
    stop: StopWhen,
) -> Engine {
    let setup = RolloutSetup {
        id: "ecs/checkout".into(),
        plan,
        plan_file: "ecs-test.toml".into(),
        plan_text: text,
        backend,
        metrics,
    };
    support::engine::one_rollout(setup, clock, stop)
}

fn command(command: Command, stage: usize) -> CommandRequest {
    CommandRequest {
        rollout: "ecs/checkout".into(),
        actor: Actor::new("captain"),
        command,
        expected_stage: stage,
        expected_revision: "checkout:2".into(),
        expected_step: None,
    }
}

fn progressing(r: &Rollout) -> bool {
    matches!(r.phase, Phase::Progressing { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_walks_the_listener_weights_and_an_abort_takes_its_traffic_and_tasks() {
    let stack = Stack::start().await;
    let (plan, text) = stack.plan("checkout", &stack.rule, "1h", "");
    let backend = Arc::new(stack.task_sets(&plan));
    let engine = engine(plan, text, backend.clone(), Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    wait_for(&mut snapshots, Duration::from_secs(20), "stage 1", |r| progressing(r) && r.backend_error.is_none()).await;
    eventually(Duration::from_secs(10), "blue 90 / green 10", async || stack.weights().await == (90, 10)).await;
    let canary = stack.canary_task_set().await.expect("the canary task set was created");
    assert_eq!(canary.scale().map(|s| s.value()), Some(100.0), "scaled up before it got traffic");
    assert_eq!(canary.launch_type(), Some(&LaunchType::Fargate), "launched like the stable task set");
    assert_eq!(canary.load_balancers()[0].target_group_arn(), Some(stack.green.as_str()));
    assert_eq!(backend.observe().await.unwrap().canary_weight, Some(10));

    assert_eq!(engine.submit(command(Command::Promote, 0)).await, Reply::Ack);
    assert_eq!(stack.weights().await, (50, 50));
    let abort = command(Command::Abort { reason: Some("test".into()) }, 1);
    assert_eq!(engine.submit(abort).await, Reply::Ack);
    assert_eq!(stack.weights().await, (100, 0));
    assert!(stack.canary_task_set().await.is_none(), "an abort removes the canary's task set");
    let rollout = snapshots.borrow().rollouts[0].clone();
    assert!(matches!(rollout.phase, Phase::Aborted { .. }), "{:?}", rollout.phase);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_makes_the_canary_primary_and_removes_the_old_task_set() {
    let stack = Stack::start().await;
    let (plan, text) = stack.plan("checkout", &stack.rule, "1h", "");
    let engine = engine(plan.clone(), text, Arc::new(stack.task_sets(&plan)), Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    wait_for(&mut snapshots, Duration::from_secs(20), "stage 1", |r| progressing(r) && r.backend_error.is_none()).await;
    assert_eq!(engine.submit(command(Command::PromoteFull, 0)).await, Reply::Ack);
    let done = snapshots.borrow().rollouts[0].clone();
    assert!(matches!(done.phase, Phase::Promoted { .. }), "{:?}", done.phase);
    assert_eq!(done.backend_error, None);
    assert_eq!(stack.weights().await, (0, 100));
    let sets = stack.describe_task_sets().await;
    assert_eq!(sets.len(), 1, "the old task set is gone: {sets:?}");
    assert!(sets[0].task_definition().unwrap().ends_with("/checkout:2"));
    assert_eq!(sets[0].status(), Some("PRIMARY"));
    engine.shutdown().await;
}

const MINUTE_MS: u64 = 60_000;

/// Puts one datapoint per metric at the start of each whole minute from
/// `from` (ms) for `minutes`, as the load balancer publishes them: per
/// target group `(metric, value)` for stable and canary.
async fn publish(
    moto: &Moto,
    dims: &Dimensions,
    from: u64,
    minutes: u64,
    stable: &[(&str, f64)],
    canary: &[(&str, f64)],
) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk());
    for minute in 0..minutes {
        let at = aws_sdk_cloudwatch::primitives::DateTime::from_millis((from + minute * MINUTE_MS) as i64);
        let mut data = Vec::new();
        for (group, metrics) in [(&dims.stable, stable), (&dims.canary, canary)] {
            let dims = [("LoadBalancer", &dims.load_balancer), ("TargetGroup", group)]
                .map(|(n, v)| Dimension::builder().name(n).value(v.as_str()).build());
            for (name, value) in metrics {
                let datum = MetricDatum::builder().metric_name(*name).value(*value).timestamp(at);
                data.push(datum.set_dimensions(Some(dims.to_vec())).build());
            }
        }
        let put = cw.put_metric_data().namespace("AWS/ApplicationELB").set_metric_data(Some(data));
        put.send().await.unwrap();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_connections_fail_is_rolled_back_on_cloudwatchs_minute_numbers() {
    let stack = Stack::start().await;
    let metrics = "[metrics]\nsource = \"cloudwatch\"\nlag = \"1m\"\n";
    let (plan, text) = stack.plan("checkout", &stack.rule, "1h", metrics);
    let MetricsConfig::Cloudwatch(config) = &plan.metrics else { panic!("{:?}", plan.metrics) };
    let dims = Dimensions::resolve(config, &plan.target).unwrap();
    // A crashing canary: the load balancer cannot connect to it for 30 %
    // of its requests and answers 502 itself (no target 5XX at all).
    let stable = [("RequestCount", 1000.0)];
    let canary = [("RequestCount", 200.0), ("TargetConnectionErrorCount", 60.0), ("UnHealthyHostCount", 2.0)];
    // One minute a second: windows of whole minutes without waiting for
    // them. A fresh engine's simulated time starts at 0 (1970, which moto
    // keeps as any other time): the numbers are published there.
    publish(&stack.moto, &dims, 0, 60, &stable, &canary).await;
    let cloudwatch = Cloudwatch::new(&stack.moto.sdk(), dims.clone(), config.lag);
    let clock = Clock::scaled(Timestamp(0), 60.0);
    let backend = Arc::new(stack.task_sets(&plan));
    let engine = engine_on(clock, plan, text, backend, Arc::new(cloudwatch), StopWhen::Unattended);
    let mut snapshots = engine.subscribe();
    let done = wait_for(&mut snapshots, Duration::from_secs(60), "a rollback", |r| r.phase.is_finished()).await;
    support::engine::assert_rolled_back_by_analysis(&done);
    eventually(Duration::from_secs(5), "green weight 0", async || stack.weights().await == (100, 0)).await;
    eventually(Duration::from_secs(5), "the rolled-back canary's task set removed", async || {
        stack.canary_task_set().await.is_none()
    })
    .await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_windows_are_whole_settled_minutes_each_read_once() {
    let moto = Moto::start().await;
    let front = Fake::around(&moto.url, |_, _| None, |_, reply| reply).await;
    let dims = Dimensions {
        load_balancer: "app/checkout/50dc6c495c0c9188".into(),
        stable: "targetgroup/blue/1".into(),
        canary: "targetgroup/green/2".into(),
    };
    // Minute m has m × 10 canary requests: which minutes a window read is
    // plain from its count.
    let base = (now_ms() / MINUTE_MS - 30) * MINUTE_MS;
    for m in 0..10u64 {
        let requests = [("RequestCount", (m * 10) as f64)];
        publish(&moto, &dims, base + m * MINUTE_MS, 1, &requests, &requests).await;
    }
    let read = async |lag: u64, now: u64| {
        let source = Cloudwatch::new(&support::aws::sdk(&front.url), dims.clone(), Duration::from_secs(lag));
        let sample = source.sample(Duration::from_secs(60), Timestamp(now)).await;
        sample.canary.map(|w| w.requests)
    };
    let at = |m: u64, s: u64| base + m * MINUTE_MS + s * 1000;
    // 5:25 into the run, lag 0: minute 4 is read; minute 5 is still being written.
    assert_eq!(read(0, at(5, 25)).await, Some(40));
    // Lag 1m (the default): minute 3; the next window, minute 4: each once.
    assert_eq!(read(60, at(5, 0)).await, Some(30));
    assert_eq!(read(60, at(6, 0)).await, Some(40));
    assert_eq!(read(60, at(6, 59)).await, Some(40), "minute 5 ended less than the lag ago");
    // Every window asked for starts and ends on a whole minute, so that
    // CloudWatch's rounding of the start down to the minute (GetMetricData
    // API reference, StartTime) adds no minute twice. The SDK speaks Smithy
    // RPCv2 CBOR (the only protocol of aws-sdk-cloudwatch from 1.100 on),
    // and moto answered it: timestamps are epoch seconds (tag 1).
    let seen: Vec<_> = front.seen.lock().unwrap().iter().filter(|s| s.operation == "GetMetricData").cloned().collect();
    assert_eq!(seen.len(), 4);
    for request in seen {
        assert_eq!(request.protocol.as_deref(), Some("rpc-v2-cbor"), "{}", request.body);
        let body: Value = serde_json::from_str(&request.body).unwrap();
        for key in ["StartTime", "EndTime"] {
            let seconds = body[key].as_f64().unwrap_or_else(|| panic!("{key} in {body}"));
            assert_eq!(seconds % 60.0, 0.0, "{key} {seconds} is not a whole minute");
        }
        let queries = body["MetricDataQueries"].as_array().unwrap();
        assert_eq!(queries.len(), flightdeck::metrics::cloudwatch::METRICS_PER_WINDOW, "one call, every metric");
    }
}

/// Starts a rollout on `backend` and returns the reason it paused with.
async fn paused_reason(plan: Plan, text: String, backend: Arc<dyn Backend>) -> String {
    let engine = engine(plan, text, backend, Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let paused =
        wait_for(&mut snapshots, Duration::from_secs(30), "a pause", |r| matches!(r.phase, Phase::Paused { .. })).await;
    engine.shutdown().await;
    let Phase::Paused { by, reason, .. } = paused.phase else { unreachable!() };
    assert_eq!(by, Actor::backend());
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_refusals_pause_the_rollout_with_a_clear_message() {
    let stack = Stack::start().await;
    let (plan, text) = stack.plan("nope", &stack.rule, "1h", "");
    let reason = paused_reason(plan.clone(), text, Arc::new(stack.task_sets(&plan))).await;
    println!("missing service: {reason}");
    assert!(reason.contains("ServiceNotFoundException") && reason.contains("service nope in cluster prod"), "{reason}");

    let gone = format!("{}0", stack.rule);
    let (plan, text) = stack.plan("checkout", &gone, "1h", "");
    let reason = paused_reason(plan.clone(), text, Arc::new(stack.task_sets(&plan))).await;
    println!("missing listener rule: {reason}");
    assert!(reason.contains("DescribeRules") && reason.contains(&gone) && reason.contains("RuleNotFound"), "{reason}");

    for (code, message, expected) in [
        ("ThrottlingException", "Rate exceeded", "AWS is throttling calls (ThrottlingException: Rate exceeded)"),
        (
            "ExpiredTokenException",
            "The security token included in the request is expired",
            "AWS credentials expired or invalid",
        ),
    ] {
        let body = format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}");
        let fake = Fake::start(move |_, _| (400, body.clone())).await;
        let (plan, text) = stack.plan("checkout", &stack.rule, "1h", "");
        let target = EcsTarget::from_target(&plan.target).unwrap();
        let backend = Arc::new(TaskSets::new(&support::aws::sdk(&fake.url), target, &plan).unwrap());
        let reason = paused_reason(plan, text, backend).await;
        println!("{code}: {reason}");
        assert!(reason.contains(expected) && reason.contains("DescribeTaskSets"), "{reason}");
    }
}

fn scale(version: flightdeck_core::rollout::Version, percent: u8) -> Effect {
    Effect::Scale { version, percent }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_set_with_no_task_running_or_a_stale_steady_state_gets_no_traffic() {
    use flightdeck_core::rollout::Version;
    let stack = Stack::start().await;
    let (plan, _) = stack.plan("checkout", &stack.rule, "1h", "");
    // Moto as it is: `0/0 STEADY_STATE`, which is not ready.
    let target = EcsTarget::from_target(&plan.target).unwrap();
    let backend = TaskSets::new(&stack.moto.sdk(), target, &plan).unwrap();
    backend.apply(&scale(Version::Canary, 100)).await.unwrap();
    // Read once and answered at once (the core waits, not the backend).
    let asked = std::time::Instant::now();
    let e = backend.apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err();
    assert!(asked.elapsed() < Duration::from_secs(2), "the call waited {:?}", asked.elapsed());
    assert!(
        matches!(e, flightdeck::backend::BackendError::NotReady { timeout, .. } if timeout == Duration::from_secs(5))
    );
    let e = e.to_string();
    println!("0/0: {e}");
    assert!(e.contains("not ready") && e.contains("0 of 0 tasks running, STEADY_STATE"), "{e}");
    assert_eq!(stack.weights().await, (100, 0), "no traffic to a task set without tasks");

    // Every task running and steady, but since before flightdeck's last
    // scale change: stale.
    let stale = |operation: &str, reply: String| {
        let mut json: Value = serde_json::from_str(&running_task_sets(operation, reply.clone())).unwrap_or(json!(null));
        if operation != "DescribeTaskSets" {
            return reply;
        }
        for set in json["taskSets"].as_array_mut().into_iter().flatten() {
            let updated = set["updatedAt"].as_f64().unwrap_or(0.0);
            set["stabilityStatusAt"] = json!(updated - 60.0);
        }
        json.to_string()
    };
    let front = Fake::around(&stack.moto.url, |_, _| None, stale).await;
    let target = EcsTarget::from_target(&plan.target).unwrap();
    let backend = TaskSets::new(&support::aws::sdk(&front.url), target, &plan).unwrap();
    backend.apply(&scale(Version::Canary, 50)).await.unwrap();
    let e = backend.apply(&Effect::SetWeight { canary: 10 }).await.unwrap_err().to_string();
    println!("stale: {e}");
    assert!(e.contains("2 of 2 tasks running, STEADY_STATE from before the last scale change"), "{e}");
    assert_eq!(stack.weights().await, (100, 0));
    // Steady after the change: ready.
    let backend = stack.task_sets(&plan);
    backend.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
    assert_eq!(stack.weights().await, (90, 10));
}

/// ECS while the canary's tasks start, until `ready` is set: the canary
/// task set (`checkout:2`) wants its tasks but none runs yet and it is
/// `STABILIZING` (ECS API reference, `TaskSet`: `stabilityStatus` is
/// `STABILIZING` until `runningCount` reaches `computedDesiredCount` and
/// the tasks pass their health checks); every other task set as
/// [`running_task_sets`].
fn starting_canary(ready: Arc<AtomicBool>) -> impl Fn(&str, String) -> String + Send + Sync + 'static {
    move |operation: &str, reply: String| {
        let reply = running_task_sets(operation, reply);
        if operation != "DescribeTaskSets" || ready.load(Ordering::SeqCst) {
            return reply;
        }
        let Ok(mut json) = serde_json::from_str::<Value>(&reply) else { return reply };
        for set in json["taskSets"].as_array_mut().into_iter().flatten() {
            if set["taskDefinition"].as_str().is_some_and(|d| d.ends_with("/checkout:2")) {
                set["runningCount"] = json!(0);
                set["stabilityStatus"] = json!("STABILIZING");
            }
        }
        json.to_string()
    }
}

/// A driven plan on a front whose canary tasks start when `ready` is set,
/// with `ready_timeout_s = timeout`.
async fn starting(stack: &Stack, timeout: u32, ready: Arc<AtomicBool>) -> (Plan, String, Arc<TaskSets>, Fake) {
    let (_, text) = stack.plan("checkout", &stack.rule, "1h", "");
    let text = text.replace("ready_timeout_s = 5", &format!("ready_timeout_s = {timeout}"));
    let plan = Plan::parse("ecs-test.toml", &text).unwrap();
    let front = stack.rules.front(&stack.moto.url, starting_canary(ready)).await;
    let target = EcsTarget::from_target(&plan.target).unwrap();
    let backend = Arc::new(TaskSets::new(&support::aws::sdk(&front.url), target, &plan).unwrap());
    (plan, text, backend, front)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_while_the_canary_tasks_start_applies_at_once_and_the_wait_says_what_it_waits_for() {
    let stack = Stack::start().await;
    let (plan, text, backend, _front) = starting(&stack, 120, Arc::default()).await;
    let engine = engine(plan, text, backend, Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let r = wait_for(&mut snapshots, Duration::from_secs(20), "the wait", |r| r.waiting.is_some()).await;
    let next = r.next_step(r.waiting.as_ref().unwrap().since);
    println!("{next}");
    assert!(next.contains("Next: 10 % once ready: waiting for the canary task set (checkout:2)"), "{next}");
    assert!(next.contains("0 of 4 tasks running, STABILIZING (pauses in 2:00)"), "{next}");
    assert!(progressing(&r) && r.backend_error.is_none(), "{:?} {:?}", r.phase, r.backend_error);
    assert_eq!(stack.weights().await, (100, 0), "no traffic before the tasks run");
    // The rollout's loop is free: the abort is answered and applied at
    // once, not after `ready_timeout_s` (120 s).
    let asked = std::time::Instant::now();
    assert_eq!(engine.submit(command(Command::Abort { reason: None }, 0)).await, Reply::Ack);
    println!("abort answered in {:?}", asked.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(5), "the abort waited {:?}", asked.elapsed());
    let r = snapshots.borrow().rollouts[0].clone();
    assert!(matches!(r.phase, Phase::Aborted { .. }) && r.waiting.is_none(), "{:?}", r.phase);
    assert_eq!(stack.weights().await, (100, 0));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_tasks_start_during_the_wait_gets_its_weight_then_bakes() {
    let stack = Stack::start().await;
    let ready = Arc::new(AtomicBool::new(false));
    let (plan, text, backend, _front) = starting(&stack, 120, ready.clone()).await;
    let engine = engine(plan, text, backend, Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    wait_for(&mut snapshots, Duration::from_secs(20), "the wait", |r| r.waiting.is_some()).await;
    // Windows (every 2 s) pass while it waits: no drift, no pause.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = snapshots.borrow().rollouts[0].clone();
    assert!(progressing(&r) && r.waiting.is_some(), "{:?}", r.phase);
    assert_eq!(stack.weights().await, (100, 0));
    ready.store(true, Ordering::SeqCst);
    let r = wait_for(&mut snapshots, Duration::from_secs(20), "the weight", |r| r.waiting.is_none()).await;
    assert!(progressing(&r) && r.backend_error.is_none(), "{:?} {:?}", r.phase, r.backend_error);
    assert_eq!(stack.weights().await, (90, 10));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_tasks_do_not_start_within_ready_timeout_s_pauses_the_rollout_with_what_it_waited_for() {
    let stack = Stack::start().await;
    let (plan, text, backend, _front) = starting(&stack, 3, Arc::default()).await;
    let reason = paused_reason(plan, text, backend).await;
    println!("{reason}");
    assert!(reason.contains("set canary weight 10 % was not possible for"), "{reason}");
    assert!(reason.contains("0 of 4 tasks running, STABILIZING; it was not applied"), "{reason}");
    assert_eq!(stack.weights().await, (100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_canarys_task_set_is_removed_once_out_of_traffic_and_a_retry_creates_another() {
    use flightdeck_core::rollout::Version;
    let stack = Stack::start().await;
    let (plan, text) = stack.plan("checkout", &stack.rule, "1h", "");
    let backend = Arc::new(stack.task_sets(&plan));
    let engine = engine(plan, text, backend.clone(), Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    wait_for(&mut snapshots, Duration::from_secs(20), "stage 1", |r| progressing(r) && r.backend_error.is_none()).await;
    eventually(Duration::from_secs(10), "blue 90 / green 10", async || stack.weights().await == (90, 10)).await;
    let first = stack.canary_task_set().await.unwrap().task_set_arn().unwrap().to_owned();
    let before = stack.front.operations().len();
    assert_eq!(engine.submit(command(Command::Abort { reason: None }, 0)).await, Reply::Ack);
    assert_eq!(stack.weights().await, (100, 0));
    assert!(stack.canary_task_set().await.is_none(), "the aborted canary's task set is removed");
    // Traffic first, then the tasks, then the task set.
    let calls: Vec<String> = stack.front.operations()[before..]
        .iter()
        .filter(|o| ["ModifyRule", "UpdateTaskSet", "DeleteTaskSet"].contains(&o.as_str()))
        .cloned()
        .collect();
    assert_eq!(calls, ["ModifyRule", "UpdateTaskSet", "DeleteTaskSet"]);
    let r = snapshots.borrow().rollouts[0].clone();
    assert!(
        matches!(r.phase, Phase::Aborted { .. }) && r.backend_error.is_none(),
        "{:?} {:?}",
        r.phase,
        r.backend_error
    );
    // Said with the rollout.
    let detail = backend.observe().await.unwrap().native_detail.unwrap_or_default();
    assert!(detail.contains("the canary's task set (checkout:2") && detail.contains("was removed"), "{detail}");
    // Idempotent: gone (listed DRAINING while its tasks stop) is done.
    backend.apply(&scale(Version::Canary, 0)).await.unwrap();
    assert_eq!(stack.front.operations().iter().filter(|o| *o == "DeleteTaskSet").count(), 1);

    // A retry creates another task set: a new client token, as ECS would
    // answer the one used with the task set it made then.
    assert_eq!(engine.submit(command(Command::Retry, 0)).await, Reply::Ack);
    eventually(Duration::from_secs(10), "blue 90 / green 10 again", async || stack.weights().await == (90, 10)).await;
    let second = stack.canary_task_set().await.expect("a new canary task set").task_set_arn().unwrap().to_owned();
    assert_ne!(first, second);
    let tokens: Vec<String> =
        stack.front.bodies("CreateTaskSet").iter().map(|b| b["clientToken"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1]);

    // A removal that fails is not an abort done: the rollout says so.
    stack.rules.0.lock().unwrap().deny_delete = true;
    assert_eq!(engine.submit(command(Command::Abort { reason: None }, 0)).await, Reply::Ack);
    let r = snapshots.borrow().rollouts[0].clone();
    let Phase::Failed { reason, .. } = &r.phase else { panic!("{:?}", r.phase) };
    println!("{reason}");
    assert!(reason.contains("DeleteTaskSet") && reason.contains("AccessDeniedException"), "{reason}");
    assert_eq!(stack.weights().await, (100, 0), "its traffic is back on stable all the same");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_task_set_is_created_with_a_client_token_of_the_rollout_and_revision() {
    use flightdeck_core::rollout::Version;
    let stack = Stack::start().await;
    let (plan, _) = stack.plan("checkout", &stack.rule, "1h", "");
    let backend = stack.task_sets(&plan);
    backend.apply(&scale(Version::Canary, 100)).await.unwrap();
    let created = stack.front.bodies("CreateTaskSet");
    assert_eq!(created.len(), 1);
    let token = created[0]["clientToken"].as_str().expect("CreateTaskSet sends a clientToken").to_owned();
    assert_eq!(token, backend.client_token(), "the token of this rollout, revision and run");
    assert!(token.len() <= 36 && token.bytes().all(|b| (33..=126).contains(&b)), "{token}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_default_rule_is_refused_before_any_task_set_is_created() {
    use flightdeck_core::rollout::Version;
    let stack = Stack::start().await;
    let rules = stack.elb.describe_rules().listener_arn(&stack.listener).send().await.unwrap();
    let default = rules.rules().iter().find(|r| r.is_default() == Some(true)).expect("moto has a default rule");
    let default = default.rule_arn().unwrap().to_owned();
    let (plan, _) = stack.plan("checkout", &default, "1h", "");
    let backend = stack.task_sets(&plan);
    let e = backend.apply(&scale(Version::Canary, 100)).await.unwrap_err().to_string();
    println!("default rule: {e}");
    assert!(e.contains("default rule") && e.contains("ModifyRule cannot change"), "{e}");
    assert!(stack.canary_task_set().await.is_none(), "nothing created");
    let e = backend.observe().await.unwrap_err().to_string();
    assert!(e.contains("default rule"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_canary_keeps_its_tasks_for_the_stickiness_duration_after_its_weight_goes_to_0() {
    use aws_sdk_elasticloadbalancingv2::types::TargetGroupStickinessConfig;
    use flightdeck_core::rollout::Version;
    let stack = Stack::start().await;
    let weighted = |arn: &str, w: i32| TargetGroupTuple::builder().target_group_arn(arn).weight(w).build();
    let sticky = TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(3600).build();
    let forward = ForwardActionConfig::builder()
        .target_groups(weighted(&stack.blue, 100))
        .target_groups(weighted(&stack.green, 0))
        .target_group_stickiness_config(sticky);
    let action = Action::builder().r#type(ActionTypeEnum::Forward).forward_config(forward.build()).build();
    let all = RuleCondition::builder().field("path-pattern").values("/sticky/*").build();
    let rule = stack.elb.create_rule().listener_arn(&stack.listener).priority(20).conditions(all).actions(action);
    let rule = rule.send().await.unwrap().rules()[0].rule_arn().unwrap().to_owned();
    let (plan, _) = stack.plan("checkout", &rule, "1h", "");
    let backend = stack.task_sets(&plan);
    let seen = backend.observe().await.unwrap();
    let detail = seen.native_detail.unwrap_or_default();
    assert!(detail.contains("stickiness 3600 s"), "{detail}");
    backend.apply(&scale(Version::Canary, 100)).await.unwrap();
    backend.apply(&Effect::SetWeight { canary: 10 }).await.unwrap();
    backend.apply(&Effect::SetWeight { canary: 0 }).await.unwrap();
    let e = backend.apply(&scale(Version::Canary, 0)).await.unwrap_err().to_string();
    println!("sticky: {e}");
    assert!(e.contains("stickiness") && e.contains("3600 s"), "{e}");
    let canary = stack.canary_task_set().await.unwrap();
    assert_eq!(canary.scale().map(|s| s.value()), Some(100.0), "its tasks stay");
}

// aws-config's only path to its profile files (the new one is in aws-runtime, not a dependency).
#[allow(deprecated)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_credentials_that_cannot_be_loaded_say_which_profile_to_log_in_with() {
    use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
    use aws_config::profile::ProfileFileCredentialsProvider;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "[profile prod-admin]\nsso_start_url = https://flightdeck-test.awsapps.com/start\nsso_region = us-east-1\n\
         sso_account_id = 123456789012\nsso_role_name = Admin\nregion = us-east-1\n",
    )
    .unwrap();
    let files = ProfileFiles::builder().with_file(ProfileFileKind::Config, &config).build();
    // With the HTTP client and region flightdeck's own configuration gives it.
    let config = aws_config::provider_config::ProviderConfig::without_region()
        .with_region(Some(aws_config::Region::new(support::aws::REGION)))
        .with_http_client(flightdeck::backend::ecs::http_client());
    let provider = ProfileFileCredentialsProvider::builder()
        .configure(&config)
        .profile_files(files)
        .profile_name("prod-admin")
        .build();
    let fake = Fake::start(|_, _| (200, "{}".into())).await;
    let sdk = support::aws::sdk(&fake.url)
        .into_builder()
        .credentials_provider(aws_sdk_ecs::config::SharedCredentialsProvider::new(provider))
        .build();
    let text = "[rollout]\nname = \"checkout\"\nstable = \"checkout:1\"\ncanary = \"checkout:2\"\n\n\
         [target]\nbackend = \"ecs\"\ncontroller = \"external\"\ncluster = \"prod\"\nservice = \"checkout\"\n\
         profile = \"prod-admin\"\nlistener_rule = \"r\"\nstable_target_group = \"b\"\ncanary_target_group = \"g\"\n\n\
         [strategy]\nkind = \"canary\"\nstages = [{ weight = 10, bake = \"1m\" }]\n";
    let plan = Plan::parse("ecs-test.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let target = EcsTarget::from_target(&plan.target).unwrap();
    let backend = TaskSets::new(&sdk, target, &plan).unwrap();
    let e = backend.observe().await.unwrap_err();
    println!("expired sso: {e}");
    assert!(matches!(e, flightdeck::backend::BackendError::Refused { .. }), "not unreachable: {e}");
    let e = e.to_string();
    assert!(e.contains("aws sso login --profile prod-admin") && !e.contains("<profile>"), "{e}");
    assert!(fake.operations().is_empty(), "nothing was sent");
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("tests/fixtures/ecs/{name}.json")).unwrap()
}

fn observed_plan(strategy: &str) -> (Plan, String) {
    let text = format!(
        "[rollout]\nname = \"checkout\"\nstable = \"checkout:1\"\ncanary = \"checkout:2\"\n\n\
         [target]\nbackend = \"ecs\"\ncluster = \"prod\"\nservice = \"checkout\"\nregion = \"us-east-1\"\n\n\
         {strategy}\n[analysis]\ninterval = \"1s\"\ninconclusive_limit = 100\n"
    );
    (Plan::parse("ecs-observed.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}")), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observed_ecs_canary_shows_its_phase_and_traffic_and_r_stops_it_with_a_rollback() {
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stopped.clone();
    let fake = Fake::start(move |operation, _| match operation {
        "DescribeServices" => (200, fixture("describe-services-canary")),
        "DescribeServiceDeployments" if flag.load(std::sync::atomic::Ordering::SeqCst) => {
            (200, fixture("describe-service-deployments-rolling-back"))
        }
        "DescribeServiceDeployments" => (200, fixture("describe-service-deployments-canary")),
        "DescribeServiceRevisions" => (200, json!({ "serviceRevisions": [revision_json("8219047743001845514", "checkout:42")] }).to_string()),
        "StopServiceDeployment" => {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            (200, r#"{"serviceDeploymentArn":"arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/checkout/r3H8ZkEXAMPLE"}"#.into())
        }
        other => (400, format!(r#"{{"__type":"InvalidParameterException","message":"unexpected {other}"}}"#)),
    })
    .await;
    let (plan, text) = observed_plan(
        "[strategy]\nkind = \"canary\"\nstages = [{ weight = 10, bake = \"5m\" }, { weight = 100, bake = \"0s\" }]\n",
    );
    let target = EcsTarget::from_target(&plan.target).unwrap();
    let backend = Arc::new(ServiceDeployments::new(&support::aws::sdk(&fake.url), target, &plan));
    let engine = engine(plan, text, backend.clone(), Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let seen =
        wait_for(&mut snapshots, Duration::from_secs(20), "the mirrored canary", |r| r.native_detail.is_some()).await;
    let detail = seen.native_detail.clone().unwrap();
    println!("{detail}");
    assert!(progressing(&seen), "{:?}", seen.phase);
    assert_eq!((seen.canary_weight, seen.stage), (10, 0));
    for part in [
        "CANARY 10 % for 5 min, then all",
        "bake 10 min",
        "BAKE_TIME",
        "alarms checkout-5xx (MONITORING)",
        "circuit breaker 0/3",
    ] {
        assert!(detail.contains(part), "{part:?} not in {detail:?}");
    }

    // ECS has no pause: refused with the reason, and nothing is sent.
    assert_eq!(engine.submit(command(Command::Pause { reason: None }, 0)).await, Reply::Ack);
    let refused = wait_for(&mut snapshots, Duration::from_secs(5), "the refusal", |r| r.backend_error.is_some()).await;
    assert!(refused.backend_error.as_deref().unwrap().contains("ECS cannot pause a service deployment"), "{refused:?}");
    let err = backend.apply(&Effect::Native { verb: NativeVerb::Promote }).await.unwrap_err();
    assert!(err.to_string().contains("no call skips a step"), "{err}");

    assert_eq!(engine.submit(command(Command::Rollback { reason: None }, 0)).await, Reply::Ack);
    let stop = fake.seen.lock().unwrap().iter().find(|s| s.operation == "StopServiceDeployment").cloned();
    let stop = stop.expect("R sends StopServiceDeployment");
    let body: serde_json::Value = serde_json::from_str(&stop.body).unwrap();
    assert_eq!(body["stopType"], "ROLLBACK");
    assert!(body["serviceDeploymentArn"].as_str().unwrap().ends_with("/r3H8ZkEXAMPLE"));
    let back = wait_for(&mut snapshots, Duration::from_secs(10), "the rollback mirrored", |r| {
        matches!(r.phase, Phase::Aborted { .. })
    })
    .await;
    assert_eq!(back.canary_weight, 0);
    println!("{:?}", back.phase);
    engine.shutdown().await;
}

/// An ECS-controlled service on moto: `checkout:1`, then updated to `checkout:2`.
async fn rolling_service(moto: &Moto) -> aws_sdk_ecs::Client {
    let ecs = aws_sdk_ecs::Client::new(&moto.sdk());
    ecs.create_cluster().cluster_name("prod").send().await.unwrap();
    for image in ["checkout:1", "checkout:2"] {
        let web = ContainerDefinition::builder().name("web").image(image).memory(512).build();
        ecs.register_task_definition().family("checkout").container_definitions(web).send().await.unwrap();
    }
    let service = ecs.create_service().cluster("prod").service_name("checkout").task_definition("checkout:1");
    service.desired_count(2).send().await.unwrap();
    ecs.update_service().cluster("prod").service("checkout").task_definition("checkout:2").send().await.unwrap();
    ecs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_service_deployment_apis_the_service_is_read_as_a_rolling_update_and_rolls_back() {
    let moto = Moto::start().await;
    let ecs = rolling_service(&moto).await;
    // moto answers the service deployment APIs with HTTP 500: a server
    // error, which is an observe error, never a reason to guess.
    let (plan, _) = observed_plan("[strategy]\nkind = \"canary\"\n");
    let observed = ServiceDeployments::new(&moto.sdk(), EcsTarget::from_target(&plan.target).unwrap(), &plan);
    let err = observed.observe().await.unwrap_err().to_string();
    assert!(err.contains("HTTP 500"), "{err}");

    // In front of moto, answered as an endpoint without them answers
    // (UnknownOperationException): the service is read the old way.
    let apis = ["ListServiceDeployments", "DescribeServiceDeployments", "StopServiceDeployment"];
    let front =
        Fake::before(&moto.url, move |operation, _| apis.contains(&operation).then(support::aws::unknown_operation))
            .await;
    let observed =
        ServiceDeployments::new(&support::aws::sdk(&front.url), EcsTarget::from_target(&plan.target).unwrap(), &plan);
    let seen = observed.observe().await.unwrap();
    let detail = seen.native_detail.unwrap();
    println!("{detail}");
    assert!(detail.starts_with("rolling ") && detail.contains("service deployments unavailable"), "{detail}");

    let (plan, _) = observed_plan("[strategy]\nkind = \"rolling\"\n");
    let rolling =
        RollingService::new(&support::aws::sdk(&front.url), EcsTarget::from_target(&plan.target).unwrap(), &plan);
    assert_eq!(rolling.observe().await.unwrap().native_status, Some(NativeStatus::Progressing));
    let definition = async || {
        let out = ecs.describe_services().cluster("prod").services("checkout").send().await.unwrap();
        out.services()[0].task_definition().unwrap().rsplit('/').next().unwrap().to_owned()
    };
    assert_eq!(definition().await, "checkout:2");
    rolling.apply(&Effect::Native { verb: NativeVerb::Undo }).await.unwrap();
    assert_eq!(definition().await, "checkout:1", "redeployed the previous task definition");
    // Again, or an abort: the service no longer deploys the canary, nothing to send.
    rolling.apply(&Effect::Native { verb: NativeVerb::Abort }).await.unwrap();
    assert_eq!(definition().await, "checkout:1");
    assert_eq!(front.operations().iter().filter(|o| *o == "UpdateService").count(), 1);
    let seen = rolling.observe().await.unwrap();
    assert!(matches!(seen.native_status, Some(NativeStatus::Aborted { .. })), "{seen:?}");

    let missing =
        ServiceDeployments::new(&moto.sdk(), EcsTarget::from_target(&observed_plan_for("nope")).unwrap(), &plan);
    let err = missing.observe().await.unwrap_err().to_string();
    assert!(err.contains("service nope not found in cluster prod"), "{err}");
}

fn observed_plan_for(service: &str) -> flightdeck_core::plan::Target {
    let (mut plan, _) = observed_plan("[strategy]\nkind = \"canary\"\n");
    plan.target.params.insert("service".into(), service.into());
    plan.target
}

// ---------------------------------------------------------------------------
// ECS service deployments, which moto does not have: a fake that keeps the
// rules of the AWS docs it names, over a state each test changes.

const SERVICE_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:service/prod/checkout";
const CLUSTER_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/prod";

fn deployment_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/checkout/{id}")
}

fn revision_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:service-revision/prod/checkout/{id}")
}

fn task_definition(name: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{name}")
}

/// A service as DescribeServices shows it: its controller, its current
/// service deployment, and its `deployments` (status, task definition,
/// running of desired, rollout state).
fn service_json(controller: &str, current: Option<&str>, deployments: &[(&str, &str, i32, i32, &str)]) -> Value {
    let listed: Vec<Value> = deployments
        .iter()
        .enumerate()
        .map(|(i, (status, definition, running, desired, state))| {
            json!({
                "id": format!("ecs-svc/{i}"), "status": status, "taskDefinition": task_definition(definition),
                "desiredCount": desired, "runningCount": running, "pendingCount": 0, "failedTasks": 0,
                "rolloutState": state,
                "rolloutStateReason": if *state == "FAILED" {
                    "ECS deployment circuit breaker: tasks failed to start."
                } else {
                    "ECS deployment in progress."
                },
            })
        })
        .collect();
    let mut service = json!({
        "serviceArn": SERVICE_ARN, "serviceName": "checkout", "clusterArn": CLUSTER_ARN, "status": "ACTIVE",
        "desiredCount": 4, "runningCount": 4, "pendingCount": 0,
        "deploymentController": { "type": controller },
        "deploymentConfiguration": { "deploymentCircuitBreaker": { "enable": true, "rollback": true } },
        "deployments": listed,
    });
    if let Some(id) = current {
        service["currentServiceDeployment"] = json!(deployment_arn(id));
    }
    // The service's task definition is its PRIMARY deployment's.
    if let Some((_, definition, ..)) = deployments.iter().find(|d| d.0 == "PRIMARY") {
        service["taskDefinition"] = json!(task_definition(definition));
    }
    service
}

/// A service deployment (DescribeServiceDeployments) of `strategy` to
/// revision `target`, with that revision's production traffic weight.
fn deployment_json(id: &str, strategy: &str, status: &str, target: &str, traffic: Option<f64>) -> Value {
    let mut to =
        json!({ "arn": revision_arn(target), "requestedTaskCount": 4, "runningTaskCount": 4, "pendingTaskCount": 0 });
    if let Some(w) = traffic {
        to["requestedProductionTrafficWeight"] = json!(w);
    }
    json!({
        "serviceDeploymentArn": deployment_arn(id), "serviceArn": SERVICE_ARN, "clusterArn": CLUSTER_ARN,
        "createdAt": 1764561600.0 + id.len() as f64, "startedAt": 1764561605.0,
        "sourceServiceRevisions": [{ "arn": revision_arn("1"), "requestedTaskCount": 4, "runningTaskCount": 4, "pendingTaskCount": 0 }],
        "targetServiceRevision": to,
        "status": status,
        "deploymentConfiguration": { "strategy": strategy, "deploymentCircuitBreaker": { "enable": true, "rollback": true } },
    })
}

fn revision_json(id: &str, definition: &str) -> Value {
    json!({
        "serviceRevisionArn": revision_arn(id), "serviceArn": SERVICE_ARN, "clusterArn": CLUSTER_ARN,
        "taskDefinition": task_definition(definition),
        "containerImages": [{ "containerName": "web", "image": format!("repo/{definition}") }],
    })
}

#[derive(Default)]
struct EcsState {
    service: Value,
    /// Full service deployments, oldest first.
    deployments: Vec<Value>,
    revisions: Vec<Value>,
    /// ListServiceDeployments page size (AWS: maxResults, default 20).
    page: usize,
    /// An endpoint without the service deployment APIs.
    no_deployment_apis: bool,
}

/// The ECS service deployment APIs as documented:
/// - ListServiceDeployments (API reference): the given service's
///   deployments, filtered by `status`, in pages of `maxResults` with a
///   `nextToken` to the next;
/// - DescribeServiceDeployments / DescribeServiceRevisions: an ARN that is
///   not there is a `failures[]` entry (reason `MISSING`), not an error;
/// - StopServiceDeployment ("Stopping Amazon ECS service deployments",
///   developer guide): PENDING and IN_PROGRESS move to ROLLBACK_REQUESTED;
///   STOP_REQUESTED, ROLLBACK_REQUESTED and ROLLBACK_IN_PROGRESS go on as
///   they are; a finished deployment cannot be stopped (ConflictException);
/// - ContinueServiceDeployment (API reference): only a hook that is
///   AWAITING_ACTION, named by its hookId; CONTINUE (the default) moves the
///   deployment on, ROLLBACK rolls it back;
/// - an endpoint without them answers UnknownOperationException (AWS JSON
///   protocol).
#[derive(Clone, Default)]
struct Ecs(Arc<std::sync::Mutex<EcsState>>);

impl Ecs {
    fn new(service: Value, deployments: Vec<Value>, revisions: Vec<Value>) -> Ecs {
        Ecs(Arc::new(std::sync::Mutex::new(EcsState {
            service,
            deployments,
            revisions,
            page: 20,
            ..EcsState::default()
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut EcsState) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    async fn fake(&self) -> Fake {
        let ecs = self.clone();
        Fake::start(move |operation, body| {
            ecs.answer(operation, body)
                .unwrap_or_else(|| error("InvalidParameterException", &format!("unexpected {operation}")))
        })
        .await
    }

    fn answer(&self, operation: &str, body: &str) -> Option<(u16, String)> {
        let request: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let mut s = self.0.lock().unwrap();
        let apis = [
            "ListServiceDeployments",
            "DescribeServiceDeployments",
            "DescribeServiceRevisions",
            "StopServiceDeployment",
            "ContinueServiceDeployment",
        ];
        if s.no_deployment_apis && apis.contains(&operation) {
            return Some(support::aws::unknown_operation());
        }
        let ok = |v: Value| Some((200, v.to_string()));
        match operation {
            "DescribeServices" => ok(json!({ "services": [s.service.clone()], "failures": [] })),
            "UpdateService" => ok(json!({ "service": s.service.clone() })),
            "ListServiceDeployments" => {
                let service = request["service"].as_str().unwrap_or("");
                let statuses: Vec<&str> =
                    request["status"].as_array().map_or(vec![], |a| a.iter().filter_map(Value::as_str).collect());
                let ours: Vec<Value> = s
                    .deployments
                    .iter()
                    .filter(|d| {
                        let arn = d["serviceArn"].as_str().unwrap_or("");
                        arn == service || arn.ends_with(&format!("/{service}"))
                    })
                    .filter(|d| statuses.is_empty() || statuses.contains(&d["status"].as_str().unwrap_or("")))
                    .map(|d| {
                        json!({
                            "serviceDeploymentArn": d["serviceDeploymentArn"], "serviceArn": d["serviceArn"],
                            "clusterArn": d["clusterArn"], "createdAt": d["createdAt"], "startedAt": d["startedAt"],
                            "targetServiceRevisionArn": d["targetServiceRevision"]["arn"], "status": d["status"],
                        })
                    })
                    .collect();
                let size = request["maxResults"].as_u64().map_or(s.page, |m| (m as usize).min(s.page));
                let from: usize = request["nextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
                let page: Vec<Value> = ours.iter().skip(from).take(size).cloned().collect();
                let mut out = json!({ "serviceDeployments": page });
                if from + size < ours.len() {
                    out["nextToken"] = json!((from + size).to_string());
                }
                ok(out)
            }
            "DescribeServiceDeployments" | "DescribeServiceRevisions" => {
                let (asked, list, key, found) = if operation == "DescribeServiceDeployments" {
                    ("serviceDeploymentArns", &s.deployments, "serviceDeploymentArn", "serviceDeployments")
                } else {
                    ("serviceRevisionArns", &s.revisions, "serviceRevisionArn", "serviceRevisions")
                };
                let (mut there, mut failures) = (vec![], vec![]);
                for arn in request[asked].as_array().into_iter().flatten() {
                    match list.iter().find(|d| d[key] == *arn) {
                        Some(d) => there.push(d.clone()),
                        None => failures.push(json!({ "arn": arn, "reason": "MISSING" })),
                    }
                }
                ok(json!({ found: there, "failures": failures }))
            }
            "StopServiceDeployment" => {
                let arn = request["serviceDeploymentArn"].clone();
                let Some(d) = s.deployments.iter_mut().find(|d| d["serviceDeploymentArn"] == arn) else {
                    return Some(error("ServiceDeploymentNotFoundException", "no such service deployment"));
                };
                match d["status"].as_str().unwrap_or("") {
                    "PENDING" | "IN_PROGRESS" => {
                        d["status"] = json!("ROLLBACK_REQUESTED");
                        d["rollback"] = json!({ "reason": "StopServiceDeployment with stopType ROLLBACK" });
                    }
                    "STOP_REQUESTED" | "ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS" => {}
                    other => return Some(error("ConflictException", &format!("the service deployment is {other}"))),
                }
                ok(json!({ "serviceDeploymentArn": arn }))
            }
            "ContinueServiceDeployment" => {
                let arn = request["serviceDeploymentArn"].clone();
                let Some(d) = s.deployments.iter_mut().find(|d| d["serviceDeploymentArn"] == arn) else {
                    return Some(error("ServiceDeploymentNotFoundException", "no such service deployment"));
                };
                let hooks = d["lifecycleHookDetails"].as_array_mut();
                let hook = hooks.and_then(|h| h.iter_mut().find(|h| h["hookId"] == request["hookId"]));
                let Some(hook) = hook.filter(|h| h["status"] == "AWAITING_ACTION") else {
                    return Some(error("InvalidParameterException", "no lifecycle hook with that id awaits action"));
                };
                hook["status"] = json!("SUCCEEDED");
                if request["action"] == "ROLLBACK" {
                    d["status"] = json!("ROLLBACK_REQUESTED");
                    d["rollback"] = json!({ "reason": "ContinueServiceDeployment with action ROLLBACK" });
                }
                ok(json!({ "serviceDeploymentArn": arn }))
            }
            _ => None,
        }
    }
}

fn error(code: &str, message: &str) -> (u16, String) {
    (400, json!({ "__type": code, "message": message }).to_string())
}

fn request(command: Command, stage: usize, revision: &str) -> CommandRequest {
    CommandRequest { expected_revision: revision.into(), ..command_at(command, stage) }
}

fn command_at(command: Command, stage: usize) -> CommandRequest {
    self::command(command, stage)
}

fn observed_backend(fake: &Fake, strategy: &str) -> (Arc<ServiceDeployments>, Plan, String) {
    let (plan, text) = observed_plan(strategy);
    let target = EcsTarget::from_target(&plan.target).unwrap();
    (Arc::new(ServiceDeployments::new(&support::aws::sdk(&fake.url), target, &plan)), plan, text)
}

const ROLLING: &str = "[strategy]\nkind = \"rolling\"\n";
const CANARY: &str =
    "[strategy]\nkind = \"canary\"\nstages = [{ weight = 10, bake = \"5m\" }, { weight = 100, bake = \"0s\" }]\n";

/// The circuit breaker rolls checkout:2 back: checkout:1 is PRIMARY again
/// and the service deployment is ROLLBACK_IN_PROGRESS. That is a rollback,
/// and R must not redeploy checkout:2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_rollback_of_a_rolling_update_is_a_rollback_and_r_never_redeploys_the_failed_revision() {
    let tasks = [("PRIMARY", "checkout:1", 3, 4, "IN_PROGRESS"), ("ACTIVE", "checkout:2", 1, 0, "FAILED")];
    let mut rolling_back = deployment_json("sd2", "ROLLING", "ROLLBACK_IN_PROGRESS", "2", None);
    rolling_back["statusReason"] = json!("ECS deployment circuit breaker: tasks failed to start.");
    rolling_back["targetServiceRevision"]["runningTaskCount"] = json!(1);
    let ecs =
        Ecs::new(service_json("ECS", Some("sd2"), &tasks), vec![rolling_back], vec![revision_json("2", "checkout:2")]);
    let fake = ecs.fake().await;
    let (plan, text) = observed_plan(ROLLING);
    let target = EcsTarget::from_target(&plan.target).unwrap();
    let backend = Arc::new(RollingService::new(&support::aws::sdk(&fake.url), target, &plan));
    let engine = engine(plan, text, backend.clone(), Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let seen = wait_for(&mut snapshots, Duration::from_secs(20), "the rollback mirrored", |r| {
        matches!(r.phase, Phase::Aborted { .. })
    })
    .await;
    println!("{:?} · {:?}", seen.phase, seen.native_detail);
    let Phase::Aborted { reason, .. } = &seen.phase else { unreachable!() };
    assert!(reason.contains("rolling back: ECS deployment circuit breaker"), "{reason}");
    assert_eq!(seen.canary_weight, 25);
    assert_eq!(engine.submit(command(Command::Rollback { reason: None }, 0)).await, Reply::Ack);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = fake.operations();
    assert!(
        !sent.iter().any(|o| o == "UpdateService" || o == "StopServiceDeployment"),
        "ECS rolls back already: {sent:?}"
    );
    engine.shutdown().await;

    // Without the service deployment APIs: the service's deployments say the same.
    ecs.with(|s| s.no_deployment_apis = true);
    let seen = backend.observe().await.unwrap();
    let Some(NativeStatus::Aborted { message }) = &seen.native_status else { panic!("{seen:?}") };
    assert!(message.starts_with("rolling back to checkout:1"), "{message}");
    backend.apply(&Effect::Native { verb: NativeVerb::Undo }).await.unwrap();
    assert!(
        fake.bodies("UpdateService").is_empty(),
        "never redeploys the failed checkout:2: {:?}",
        fake.bodies("UpdateService")
    );

    // Back on checkout:1, and the failed deployment gone: still not a promotion.
    ecs.with(|s| s.service = service_json("ECS", None, &[("PRIMARY", "checkout:1", 4, 4, "COMPLETED")]));
    let seen = backend.observe().await.unwrap();
    assert!(matches!(seen.native_status, Some(NativeStatus::Aborted { .. })), "{seen:?}");
}

/// One throttled or refused read of a service deployment must not show
/// the rolling reading (here 100 %, the new task definition fully running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_service_deployment_read_is_an_observe_error_and_only_an_unknown_operation_falls_back() {
    for (status, code, falls_back) in [
        (400, "ThrottlingException", false),
        (400, "AccessDeniedException", false),
        (500, "ServerException", false),
        (400, "com.amazon.coral.service#UnknownOperationException", true),
    ] {
        let fake = Fake::start(move |operation, _| match operation {
            "DescribeServices" => (200, fixture("describe-services-canary")),
            _ => (status, json!({ "__type": code, "message": "no" }).to_string()),
        })
        .await;
        let (backend, _, _) = observed_backend(&fake, CANARY);
        match (backend.observe().await, falls_back) {
            (Ok(seen), true) => {
                assert!(seen.native_detail.unwrap().contains("service deployments unavailable"));
            }
            (Err(e), false) => assert!(e.to_string().contains(code) || e.to_string().contains("throttling"), "{e}"),
            (other, _) => panic!("{code}: {other:?}"),
        }
    }
    // Through the engine: the view is stale, not 100 % at the last stage.
    let fake = Fake::start(|operation, _| match operation {
        "DescribeServices" => (200, fixture("describe-services-canary")),
        _ => error("ThrottlingException", "Rate exceeded"),
    })
    .await;
    let (backend, plan, text) = observed_backend(&fake, CANARY);
    let engine = engine(plan, text, backend, Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let seen =
        wait_for(&mut snapshots, Duration::from_secs(20), "an observe error", |r| r.observe_error.is_some()).await;
    assert_eq!((seen.canary_weight, seen.stage), (0, 0), "{seen:?}");
    assert!(seen.observe_error.unwrap().contains("throttling"));
    engine.shutdown().await;
}

/// A deployment after the one flightdeck saw promoted is a new rollout of
/// the new revision; a command sent for the one before is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_service_deployment_is_a_new_rollout_and_commands_for_the_one_before_are_stale() {
    let done = deployment_json("sd2", "CANARY", "SUCCESSFUL", "2", Some(100.0));
    let tasks = [("PRIMARY", "checkout:2", 4, 4, "COMPLETED")];
    let revisions = vec![revision_json("2", "checkout:2"), revision_json("3", "checkout:3")];
    let ecs = Ecs::new(service_json("ECS", Some("sd2"), &tasks), vec![done], revisions);
    let fake = ecs.fake().await;
    let (backend, plan, text) = observed_backend(&fake, CANARY);
    let engine = engine(plan, text, backend, Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let first = "checkout:2 (service revision 2)";
    let seen = wait_for(&mut snapshots, Duration::from_secs(20), "checkout:2 promoted", |r| {
        matches!(r.phase, Phase::Promoted { .. }) && r.canary_revision == first
    })
    .await;
    assert!(seen.native_detail.unwrap().contains("checkout:2 (web=repo/checkout:2)"));

    ecs.with(|s| {
        s.deployments.push(deployment_json("sd3", "CANARY", "IN_PROGRESS", "3", Some(10.0)));
        s.service["currentServiceDeployment"] = json!(deployment_arn("sd3"));
    });
    let next = wait_for(&mut snapshots, Duration::from_secs(20), "checkout:3 as a new rollout", |r| {
        r.canary_revision == "checkout:3 (service revision 3)" && progressing(r)
    })
    .await;
    assert_eq!((next.canary_weight, next.stable_revision.as_str()), (10, first));
    let Reply::Rejected { reason } = engine.submit(request(Command::Promote, 0, first)).await else {
        panic!("a promote meant for checkout:2 went to checkout:3");
    };
    println!("{reason}");
    assert!(reason.contains("checkout:3"), "{reason}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_deployments_are_read_page_by_page_and_failures_and_codedeploy_are_errors() {
    // No current deployment named: the live one is on the second page.
    let deployments = vec![
        deployment_json("a", "CANARY", "SUCCESSFUL", "2", Some(100.0)),
        deployment_json("bb", "CANARY", "ROLLBACK_SUCCESSFUL", "2", Some(0.0)),
        deployment_json("ccc", "CANARY", "IN_PROGRESS", "3", Some(10.0)),
    ];
    let tasks = [("PRIMARY", "checkout:3", 4, 4, "IN_PROGRESS")];
    let ecs = Ecs::new(service_json("ECS", None, &tasks), deployments, vec![revision_json("3", "checkout:3")]);
    ecs.with(|s| s.page = 2);
    let fake = ecs.fake().await;
    let (backend, _, _) = observed_backend(&fake, CANARY);
    let seen = backend.observe().await.unwrap();
    assert_eq!(seen.native_revision.as_deref(), Some("checkout:3 (service revision 3)"), "{seen:?}");
    assert_eq!(fake.bodies("ListServiceDeployments").len(), 2, "both pages read");
    let asked = fake.bodies("DescribeServiceDeployments");
    assert_eq!(asked.last().unwrap()["serviceDeploymentArns"][0], json!(deployment_arn("ccc")));

    // A deployment DescribeServiceDeployments does not return: its failure, as an error.
    ecs.with(|s| s.service["currentServiceDeployment"] = json!(deployment_arn("gone")));
    let err = backend.observe().await.unwrap_err().to_string();
    assert!(err.contains("MISSING") && err.contains("gone"), "{err}");

    // CodeDeploy runs this service: refused, with the reason.
    ecs.with(|s| s.service = service_json("CODE_DEPLOY", None, &tasks));
    let err = backend.observe().await.unwrap_err().to_string();
    assert!(err.contains("CodeDeploy") && err.contains("CODE_DEPLOY"), "{err}");
    let err = backend.apply(&Effect::Native { verb: NativeVerb::Undo }).await.unwrap_err().to_string();
    assert!(err.contains("CODE_DEPLOY"), "{err}");
}

/// A PAUSE lifecycle hook (May 2026) holds the deployment until
/// ContinueServiceDeployment, or its timeout (24 h by default, then a
/// rollback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_at_a_pause_hook_shows_its_deadline_promote_continues_it_and_rollback_rolls_it_back() {
    let hook = |id: &str| {
        json!({ "hookId": id, "targetType": "PAUSE", "status": "AWAITING_ACTION",
                "expiresAt": 1777896000.0, "timeoutAction": "ROLLBACK" })
    };
    let mut waiting = deployment_json("sd3", "CANARY", "IN_PROGRESS", "3", Some(0.0));
    waiting["lifecycleStage"] = json!("POST_TEST_TRAFFIC_SHIFT");
    waiting["lifecycleHookDetails"] = json!([hook("h-1")]);
    let tasks = [("PRIMARY", "checkout:3", 4, 4, "IN_PROGRESS")];
    let ecs = Ecs::new(service_json("ECS", Some("sd3"), &tasks), vec![waiting], vec![revision_json("3", "checkout:3")]);
    let fake = ecs.fake().await;
    let (backend, plan, text) = observed_backend(&fake, CANARY);
    let engine = engine(plan, text, backend, Arc::new(NoMetrics), StopWhen::Never);
    let mut snapshots = engine.subscribe();
    let held = wait_for(&mut snapshots, Duration::from_secs(20), "the pause mirrored", |r| {
        matches!(r.phase, Phase::Paused { .. })
    })
    .await;
    let Phase::Paused { reason, .. } = &held.phase else { unreachable!() };
    println!("{reason}");
    assert!(reason.contains("PAUSE hook (POST_TEST_TRAFFIC_SHIFT)"), "{reason}");
    assert!(reason.contains("at 2026-05-04T12:00:00Z ECS rolls back"), "{reason}");
    let revision = held.canary_revision.clone();

    assert_eq!(engine.submit(request(Command::Promote, 0, &revision)).await, Reply::Ack);
    wait_for(&mut snapshots, Duration::from_secs(20), "going on", progressing).await;
    let sent = fake.bodies("ContinueServiceDeployment");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0]["hookId"].as_str(), sent[0]["action"].as_str()), (Some("h-1"), Some("CONTINUE")));

    // The next hook: R rolls back through it, not with a stop.
    ecs.with(|s| s.deployments[0]["lifecycleHookDetails"] = json!([hook("h-1"), hook("h-2")]));
    ecs.with(|s| s.deployments[0]["lifecycleHookDetails"][0]["status"] = json!("SUCCEEDED"));
    wait_for(&mut snapshots, Duration::from_secs(20), "the second pause", |r| matches!(r.phase, Phase::Paused { .. }))
        .await;
    assert_eq!(engine.submit(command(Command::Rollback { reason: None }, 0)).await, Reply::Ack);
    wait_for(&mut snapshots, Duration::from_secs(20), "the rollback", |r| matches!(r.phase, Phase::Aborted { .. }))
        .await;
    let sent = fake.bodies("ContinueServiceDeployment");
    assert_eq!((sent[1]["hookId"].as_str(), sent[1]["action"].as_str()), (Some("h-2"), Some("ROLLBACK")));
    assert!(fake.bodies("StopServiceDeployment").is_empty());
    engine.shutdown().await;
}
