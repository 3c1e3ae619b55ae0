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
use flightdeck::engine::{Engine, EngineOptions, RolloutSetup, StopWhen};
use flightdeck::metrics::cloudwatch::{Cloudwatch, Dimensions};
use flightdeck::metrics::MetricsSource;
use flightdeck::protocol::{CommandRequest, Output, Reply, Snapshot};
use flightdeck_core::analysis::MetricsSample;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::MetricsConfig;
use flightdeck_core::rollout::{Effect, NativeVerb, Phase};
use flightdeck_core::{Actor, Command, Plan, Rollout, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use support::aws::{Fake, Moto};
use support::eventually;
use tokio::sync::{mpsc, watch};

/// The resources of an EXTERNAL service on moto: cluster `prod`, service
/// `checkout` (4 tasks) whose stable task set runs `checkout:1` behind the
/// `blue` target group, and a listener rule forwarding blue 100 / green 0.
struct Stack {
    moto: Moto,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    rule: String,
    blue: String,
    green: String,
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
        Stack { moto, ecs, elb, rule, blue, green }
    }

    /// A driven canary plan: stages 10 % and 50 % (bakes `bake`), then 100 %.
    fn plan(&self, service: &str, rule: &str, bake: &str, metrics: &str) -> (Plan, String) {
        let text = format!(
            "[rollout]\nname = \"checkout\"\nstable = \"checkout:1\"\ncanary = \"checkout:2\"\n\n\
             [target]\nbackend = \"ecs\"\ncontroller = \"external\"\ncluster = \"prod\"\nservice = \"{service}\"\n\
             region = \"us-east-1\"\nlistener_rule = \"{rule}\"\nstable_target_group = \"{}\"\n\
             canary_target_group = \"{}\"\nready_timeout_s = 5\n\n\
             [strategy]\nkind = \"canary\"\nstages = [{{ weight = 10, bake = \"{bake}\" }}, \
             {{ weight = 50, bake = \"{bake}\" }}, {{ weight = 100, bake = \"0s\" }}]\n\n\
             [analysis]\ninterval = \"2s\"\nmin_requests = 20\ninconclusive_limit = 100\n\n{metrics}",
            self.blue, self.green
        );
        let plan = Plan::parse("ecs-test.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        (plan, text)
    }

    fn task_sets(&self, plan: &Plan) -> TaskSets {
        let target = EcsTarget::from_target(&plan.target).unwrap();
        TaskSets::new(&self.moto.sdk(), target, plan).unwrap()
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

/// Metrics that never answer: these tests are about traffic, not analysis.
struct NoMetrics;

#[async_trait::async_trait]
impl MetricsSource for NoMetrics {
    async fn sample(&self, window: Duration, _now: Timestamp) -> MetricsSample {
        flightdeck::metrics::missing(window, "no metrics in this test".into())
    }
    async fn slo(&self, _now: Timestamp) -> Option<SloMeasurement> {
        None
    }
}

fn engine(
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
    let (tx, mut rx) = mpsc::channel::<Output>(256);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    Engine::start(
        vec![setup],
        EngineOptions { clock: Clock::Wall, journal_dir: None, fresh: false, stop_when: stop },
        tx,
    )
    .unwrap()
}

async fn wait_for(
    snapshots: &mut watch::Receiver<Snapshot>,
    limit: Duration,
    what: &str,
    done: impl Fn(&Rollout) -> bool,
) -> Rollout {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let rollout = Rollout::clone(&snapshots.borrow_and_update().rollouts[0]);
        if done(&rollout) {
            return rollout;
        }
        let changed = tokio::time::timeout_at(deadline, snapshots.changed()).await;
        assert!(
            matches!(changed, Ok(Ok(()))),
            "timed out after {limit:?} waiting for {what}; phase {:?} at stage {}, backend error {:?}, verdict {:?}",
            rollout.phase,
            rollout.stage,
            rollout.backend_error,
            rollout.last_verdict.map(|v| v.summary())
        );
    }
}

fn command(command: Command, stage: usize) -> CommandRequest {
    CommandRequest {
        rollout: "ecs/checkout".into(),
        actor: Actor::new("captain"),
        command,
        expected_stage: stage,
        expected_revision: "checkout:2".into(),
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
    let canary = stack.canary_task_set().await.expect("an abort keeps the task set");
    assert_eq!(canary.scale().map(|s| s.value()), Some(0.0), "and scales it to 0");
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

/// Sends one window's worth of load balancer numbers every 500 ms until dropped.
fn seed(moto: &Moto, dims: Dimensions) -> tokio::task::JoinHandle<()> {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk());
    tokio::spawn(async move {
        for _ in 0..240 {
            let now = aws_sdk_cloudwatch::primitives::DateTime::from(std::time::SystemTime::now());
            let mut data = Vec::new();
            for (group, requests, errors) in [(&dims.stable, 100.0, 0.0), (&dims.canary, 20.0, 6.0)] {
                let dims = [("LoadBalancer", &dims.load_balancer), ("TargetGroup", group)]
                    .map(|(n, v)| Dimension::builder().name(n).value(v.as_str()).build());
                for (name, value) in [("RequestCount", requests), ("HTTPCode_Target_5XX_Count", errors)] {
                    let datum = MetricDatum::builder().metric_name(name).value(value).timestamp(now);
                    data.push(datum.set_dimensions(Some(dims.to_vec())).build());
                }
            }
            let put = cw.put_metric_data().namespace("AWS/ApplicationELB").set_metric_data(Some(data));
            put.send().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cloudwatch_numbers_for_the_canary_roll_it_back() {
    let stack = Stack::start().await;
    let metrics = "[metrics]\nsource = \"cloudwatch\"\nlag = \"0s\"\n";
    let (plan, text) = stack.plan("checkout", &stack.rule, "1h", metrics);
    let MetricsConfig::Cloudwatch(config) = &plan.metrics else { panic!("{:?}", plan.metrics) };
    let dims = Dimensions::resolve(config, &plan.target).unwrap();
    let cloudwatch = Cloudwatch::new(&stack.moto.sdk(), dims.clone(), config.lag);
    let seeding = seed(&stack.moto, dims);
    let engine =
        engine(plan.clone(), text, Arc::new(stack.task_sets(&plan)), Arc::new(cloudwatch), StopWhen::Unattended);
    let mut snapshots = engine.subscribe();
    let done = wait_for(&mut snapshots, Duration::from_secs(60), "a rollback", |r| r.phase.is_finished()).await;
    match &done.phase {
        Phase::RolledBack { by, reason, .. } => {
            println!("rolled back by {by}: {reason}");
            assert_eq!(*by, Actor::analysis());
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    eventually(Duration::from_secs(5), "green weight 0", async || stack.weights().await == (100, 0)).await;
    let canary = stack.canary_task_set().await.unwrap();
    assert_eq!(canary.scale().map(|s| s.value()), Some(0.0));
    seeding.abort();
    engine.shutdown().await;
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
    // moto answers ListServiceDeployments with HTTP 500: the observation says so and goes on.
    let (plan, _) = observed_plan("[strategy]\nkind = \"canary\"\n");
    let observed = ServiceDeployments::new(&moto.sdk(), EcsTarget::from_target(&plan.target).unwrap(), &plan);
    let seen = observed.observe().await.unwrap();
    let detail = seen.native_detail.unwrap();
    println!("{detail}");
    assert!(detail.starts_with("rolling ") && detail.contains("service deployments unavailable"), "{detail}");

    let (plan, _) = observed_plan("[strategy]\nkind = \"rolling\"\n");
    let rolling = RollingService::new(&moto.sdk(), EcsTarget::from_target(&plan.target).unwrap(), &plan);
    assert!(rolling.observe().await.unwrap().native_status.is_some());
    let abort = rolling.apply(&Effect::Native { verb: NativeVerb::Abort }).await.unwrap_err();
    assert!(abort.to_string().contains("cannot hold a rolling update"), "{abort}");
    let definition = async || {
        let out = ecs.describe_services().cluster("prod").services("checkout").send().await.unwrap();
        out.services()[0].task_definition().unwrap().rsplit('/').next().unwrap().to_owned()
    };
    assert_eq!(definition().await, "checkout:2");
    rolling.apply(&Effect::Native { verb: NativeVerb::Undo }).await.unwrap();
    assert_eq!(definition().await, "checkout:1", "redeployed the previous task definition");

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
