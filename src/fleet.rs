//! Turns plan files (or the demo fleet) into running rollouts: parses,
//! picks each target's backend, and fails with exit code 2 on bad input.

#[cfg(feature = "flags")]
use crate::backend::flag::{flagd::Flagd, unleash::Unleash};
#[cfg(feature = "proxy")]
use crate::backend::proxy::{envoy::Envoy, haproxy::Haproxy, nginx::Nginx};
use crate::backend::sim::{Scenario, SimParams, Simulator};
use crate::backend::Backend;
use crate::engine::RolloutSetup;
use crate::files::TextError;
use crate::metrics::MetricsSource;
use crate::ui::theme::{ColorMode, Theme};
use flightdeck_core::plan::params::{FieldError, TargetError};
use flightdeck_core::plan::{line_col, BackendKind, MetricsConfig, Plan};
use flightdeck_core::TomlFile;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Input that cannot run: the message names the file, line and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The plan files of the built-in demo fleet, as (name, text).
pub const DEMO_FLEET: &[(&str, &str)] = &[
    ("demo/checkout-api.toml", include_str!("demo/checkout-api.toml")),
    ("demo/payments.toml", include_str!("demo/payments.toml")),
    ("demo/search.toml", include_str!("demo/search.toml")),
    ("demo/recommendations.toml", include_str!("demo/recommendations.toml")),
    ("demo/user-profile.toml", include_str!("demo/user-profile.toml")),
    ("demo/notifications.toml", include_str!("demo/notifications.toml")),
];

/// Reads and validates a plan file.
pub fn read_plan(path: &Path) -> Result<(Plan, String), BadInput> {
    let shown = path.display().to_string();
    let text = crate::files::read_text(path).map_err(|e| match e {
        TextError::Io(e) => BadInput(format!("{shown}: cannot read: {e}")),
        e @ TextError::NotUtf8 { .. } => BadInput(e.at(&shown, "plan").to_string()),
    })?;
    let plan = Plan::parse(&shown, &text).map_err(|e| BadInput(e.to_string()))?;
    Ok((plan, text))
}

/// A rollout's id: its target group and name ("prod-eu-1/checkout-api").
pub fn rollout_id(plan: &Plan) -> String {
    format!("{}/{}", plan.target.group, plan.name)
}

/// A backend and the metrics it can report itself.
type Parts = (Arc<dyn Backend>, Option<Arc<dyn MetricsSource>>);

/// The AWS configuration an ECS target (or CloudWatch metrics) runs with.
#[cfg(feature = "ecs")]
type Aws = aws_config::SdkConfig;
#[cfg(not(feature = "ecs"))]
type Aws = ();

/// Checks a plan file as `run` does before it starts, without contacting
/// anything: the plan, the theme it names, the simulator's or the proxy's
/// parameters and the metrics source. Kubernetes targets are checked as
/// far as the plan goes (their client connects as it is built).
pub fn check(path: &Path, config_dir: &Path) -> Result<Plan, BadInput> {
    let (plan, text) = read_plan(path)?;
    let file = path.display().to_string();
    check_theme(&plan, &file, &text, config_dir)?;
    let own_metrics = local_parts(&plan, &file, &text, None, 1)?.and_then(|(_, own)| own);
    match &plan.metrics {
        MetricsConfig::Cloudwatch(_) => check_cloudwatch(&plan, &file, &text)?,
        _ => drop(metrics_for(&Shared::default(), &plan, &file, &text, own_metrics, None)?),
    }
    Ok(plan)
}

/// CloudWatch metrics, as far as they can be checked without an AWS
/// configuration: the dimensions the plan or its target name.
fn check_cloudwatch(plan: &Plan, file: &str, text: &str) -> Result<(), BadInput> {
    match &plan.metrics {
        #[cfg(feature = "ecs")]
        MetricsConfig::Cloudwatch(config) => {
            crate::metrics::cloudwatch::Scope::resolve(config, plan).map_err(|e| target_error(file, text, e))?;
            Ok(())
        }
        #[cfg(not(feature = "ecs"))]
        MetricsConfig::Cloudwatch(_) => Err(field_error(file, text, cloudwatch_not_built())),
        _ => Ok(()),
    }
}

#[cfg(not(feature = "ecs"))]
fn cloudwatch_not_built() -> FieldError {
    FieldError::new("metrics.source", "CloudWatch is not part of this build (cargo feature `ecs`)")
}

/// The plan's theme must be one the cockpit can load: shipped, or a user
/// theme in `<config dir>/themes/`. Errors point at the `theme` value.
pub fn check_theme(plan: &Plan, file: &str, text: &str, config_dir: &Path) -> Result<(), BadInput> {
    let Some(name) = &plan.theme else { return Ok(()) };
    let (line, column) = locate(text, &["rollout", "theme"]).map_or((1, 1), |span| line_col(text, span.start));
    let at = format!("{file}:{line}:{column}: rollout.theme");
    if !Theme::exists(name, config_dir) {
        return Err(BadInput(format!(
            "{at}: unknown theme {name:?}; shipped themes are {}; user themes go in {}/<name>.toml",
            Theme::shipped().join(", "),
            config_dir.join("themes").display()
        )));
    }
    // Colours are checked the same in every mode; the terminal's does not matter here.
    Theme::load(name, config_dir, ColorMode::TrueColor)
        .map_err(|e| BadInput(format!("{at}: theme {name:?} does not load: {e}")))?;
    Ok(())
}

/// What the rollouts of one fleet share: one HTTP client per Prometheus
/// address, with its bound on queries in flight and its batches.
#[derive(Clone, Default)]
pub struct Shared {
    #[cfg(feature = "prometheus")]
    pub prometheus: crate::metrics::prometheus::PrometheusPool,
}

/// Builds the backend and metrics source for one plan, sharing nothing
/// with other rollouts (see [`setup_in`]).
pub async fn setup(
    plan: Plan,
    file: &str,
    text: String,
    scenario: Option<Scenario>,
    seed: u64,
) -> Result<RolloutSetup, BadInput> {
    setup_in(&Shared::default(), plan, file, text, scenario, seed).await
}

/// Builds the backend and metrics source for one plan of a fleet whose
/// rollouts share `shared`.
pub async fn setup_in(
    shared: &Shared,
    mut plan: Plan,
    file: &str,
    text: String,
    scenario: Option<Scenario>,
    seed: u64,
) -> Result<RolloutSetup, BadInput> {
    let mut aws: Option<Aws> = None;
    // Everything the plan alone decides is checked before anything is contacted.
    check_cloudwatch(&plan, file, &text)?;
    let (backend, own_metrics): Parts = match local_parts(&plan, file, &text, scenario, seed)? {
        Some(parts) => parts,
        None => connected_parts(&mut plan, file, &text, &mut aws).await?,
    };
    #[cfg(feature = "ecs")]
    if matches!(plan.metrics, MetricsConfig::Cloudwatch(_)) && aws.is_none() {
        // Not an ECS target: the environment's AWS configuration.
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        aws = Some(loader.http_client(crate::backend::ecs::http_client()).load().await);
    }
    let metrics = metrics_for(shared, &plan, file, &text, own_metrics, aws.as_ref())?;
    Ok(RolloutSetup { id: rollout_id(&plan), plan, plan_file: file.into(), plan_text: text, backend, metrics })
}

/// The backend of a target, its parameters checked, built without
/// contacting anything (so `check` runs it too); `None` for the
/// Kubernetes backends.
fn local_parts(
    plan: &Plan,
    file: &str,
    text: &str,
    scenario: Option<Scenario>,
    seed: u64,
) -> Result<Option<Parts>, BadInput> {
    target_params(plan, file, text)?;
    let parts: Parts = match plan.target.backend {
        BackendKind::Sim => {
            let params = SimParams::from_plan(plan, scenario, seed).map_err(|e| target_error(file, text, e.into()))?;
            let sim = Simulator::new(plan, params);
            (Arc::new(sim.clone()), Some(Arc::new(sim)))
        }
        #[cfg(feature = "proxy")]
        BackendKind::Haproxy => proxied(Haproxy::from_target(&plan.target).map_err(|e| target_error(file, text, e))?),
        #[cfg(feature = "proxy")]
        BackendKind::Envoy => proxied(Envoy::from_target(&plan.target).map_err(|e| target_error(file, text, e))?),
        #[cfg(feature = "proxy")]
        BackendKind::Nginx => proxied(Nginx::from_target(&plan.target).map_err(|e| target_error(file, text, e))?),
        #[cfg(feature = "k8s")]
        BackendKind::ArgoRollouts | BackendKind::Deployment | BackendKind::Flagger => return Ok(None),
        // Flags report no metrics of their own (Prometheus, by variant).
        #[cfg(feature = "flags")]
        BackendKind::Unleash => {
            (Arc::new(Unleash::from_target(&plan.target).map_err(|e| target_error(file, text, e))?), None)
        }
        #[cfg(feature = "flags")]
        BackendKind::Flagd => {
            (Arc::new(Flagd::from_target(&plan.target).map_err(|e| target_error(file, text, e))?), None)
        }
        // Checked here; built (region and credentials resolved) when it runs.
        #[cfg(feature = "ecs")]
        BackendKind::Ecs => {
            crate::backend::ecs::EcsTarget::from_target(&plan.target)
                .map_err(|e| target_error(file, text, e.into()))?;
            return Ok(None);
        }
        #[cfg(feature = "lambda")]
        BackendKind::Lambda => {
            crate::backend::lambda::LambdaTarget::from_plan(plan).map_err(|e| target_error(file, text, e))?;
            return Ok(None);
        }
        #[allow(unreachable_patterns)] // every backend built
        other => return Err(not_built(file, text, other)),
    };
    Ok(Some(parts))
}

/// The target's parameters against what its backend declares: each one
/// known and of its type, every required one there.
fn target_params(plan: &Plan, file: &str, text: &str) -> Result<(), BadInput> {
    let toml = TomlFile::parse(file, text, "plan").map_err(|e| BadInput(e.to_string()))?;
    // A backend not in this build is refused as such by the caller.
    let Some(declared) = crate::backend::params(plan.target.backend) else { return Ok(()) };
    flightdeck_core::plan::params::check(&plan.target, declared, &toml).map_err(|e| BadInput(e.to_string()))
}

/// The backends that connect (or load their configuration) as they are
/// built. An ECS target without a `group` is shown under its account and
/// region, and hands its AWS configuration on to CloudWatch metrics.
#[cfg_attr(not(feature = "ecs"), allow(unused_variables))]
async fn connected_parts(plan: &mut Plan, file: &str, text: &str, aws: &mut Option<Aws>) -> Result<Parts, BadInput> {
    match plan.target.backend {
        #[cfg(feature = "ecs")]
        BackendKind::Ecs => {
            let ecs = crate::backend::ecs::setup(plan).await.map_err(|e| target_error(file, text, e))?;
            if plan.target.group == BackendKind::Ecs.name() {
                plan.target.group = ecs.group;
            }
            *aws = Some(ecs.aws);
            Ok((ecs.backend, None))
        }
        #[cfg(feature = "lambda")]
        BackendKind::Lambda => {
            let lambda = crate::backend::lambda::setup(plan).await.map_err(|e| target_error(file, text, e))?;
            if plan.target.group == BackendKind::Lambda.name() {
                plan.target.group = lambda.group;
            }
            *aws = Some(lambda.aws);
            Ok((lambda.backend, None))
        }
        #[cfg(feature = "k8s")]
        BackendKind::ArgoRollouts | BackendKind::Deployment | BackendKind::Flagger => {
            let backend = crate::backend::k8s::setup(plan).await.map_err(|e| target_error(file, text, e))?;
            Ok((backend, None))
        }
        other => Err(not_built(file, text, other)),
    }
}

fn not_built(file: &str, text: &str, backend: BackendKind) -> BadInput {
    let message = format!("the `{}` backend is not part of this build (cargo features)", backend.name());
    BadInput(format!("{}: target.backend: {message}", spot(file, text, &["target", "backend"])))
}

/// `file:line:column` of the value at `path`, else of the nearest table
/// that holds it, else of the file's start: every message points somewhere.
fn spot(file: &str, text: &str, path: &[&str]) -> String {
    let span = (1..=path.len()).rev().find_map(|n| locate(text, &path[..n]));
    let (line, column) = span.map_or((1, 1), |span| line_col(text, span.start));
    format!("{file}:{line}:{column}")
}

/// A backend's complaint about its target: at the parameter it names, else
/// at `[target]`.
fn target_error(file: &str, text: &str, e: TargetError) -> BadInput {
    match e {
        TargetError::Param(p) => param_error(file, text, &p.key, &p.message),
        TargetError::Field(e) => field_error(file, text, e),
        other => BadInput(format!("{}: target: {other}", spot(file, text, &["target"]))),
    }
}

/// An error about a field of the plan, at that field (or the nearest table
/// the plan has of its path).
fn field_error(file: &str, text: &str, e: FieldError) -> BadInput {
    let path: Vec<&str> = e.field.split('.').collect();
    BadInput(format!("{}: {e}", spot(file, text, &path)))
}

/// An error about a target parameter, at its value in `[target]` or
/// `[target.params]`.
fn param_error(file: &str, text: &str, key: &str, message: &str) -> BadInput {
    let inline = locate(text, &["target", key]).map(|span| (format!("target.{key}"), span));
    let found =
        inline.or_else(|| locate(text, &["target", "params", key]).map(|s| (format!("target.params.{key}"), s)));
    match found {
        Some((field, span)) => {
            let (line, column) = line_col(text, span.start);
            BadInput(format!("{file}:{line}:{column}: {field}: {message}"))
        }
        None => BadInput(format!("{}: target.{key}: {message}", spot(file, text, &["target"]))),
    }
}

/// Where the value at a path of keys is in a plan's text (`None` when it
/// is not there).
fn locate(text: &str, path: &[&str]) -> Option<Range<usize>> {
    TomlFile::parse("", text, "plan").ok()?.span_of(path)
}

/// A proxy is both the backend and, by default, the metrics source.
#[cfg(feature = "proxy")]
fn proxied<P: Backend + MetricsSource + 'static>(proxy: P) -> Parts {
    let proxy = Arc::new(proxy);
    (proxy.clone(), Some(proxy))
}

/// The plan's `[metrics]` source: the backend's own numbers, Prometheus
/// (on the fleet's `shared` client for its address) or CloudWatch (with the
/// AWS configuration `aws`).
#[cfg_attr(not(feature = "ecs"), allow(unused_variables))]
#[cfg_attr(not(feature = "prometheus"), allow(unused_variables))]
fn metrics_for(
    shared: &Shared,
    plan: &Plan,
    file: &str,
    text: &str,
    own: Option<Arc<dyn MetricsSource>>,
    aws: Option<&Aws>,
) -> Result<Arc<dyn MetricsSource>, BadInput> {
    match &plan.metrics {
        MetricsConfig::Backend => own.ok_or_else(|| {
            let backend = plan.target.backend.name();
            BadInput(format!(
                "{}: metrics.source: `{backend}` has no metrics of its own; use source = \"prometheus\"",
                spot(file, text, &["metrics", "source"])
            ))
        }),
        #[cfg(feature = "prometheus")]
        MetricsConfig::Prometheus { address, queries } => {
            let prometheus = shared
                .prometheus
                .source(address, queries, &plan.stable, &plan.canary)
                .map_err(|e| BadInput(format!("{}: metrics: {e}", spot(file, text, &["metrics"]))))?;
            Ok(Arc::new(prometheus))
        }
        #[cfg(not(feature = "prometheus"))]
        MetricsConfig::Prometheus { .. } => {
            let at = spot(file, text, &["metrics", "source"]);
            Err(BadInput(format!("{at}: metrics.source: Prometheus is not part of this build (cargo features)")))
        }
        #[cfg(feature = "ecs")]
        MetricsConfig::Cloudwatch(config) => {
            use crate::metrics::cloudwatch::{Cloudwatch, Scope};
            let scope = Scope::resolve(config, plan).map_err(|e| target_error(file, text, e))?;
            let no_aws = || FieldError::new("metrics.source", "no AWS configuration for CloudWatch");
            let aws = aws.ok_or_else(|| field_error(file, text, no_aws()))?;
            Ok(Arc::new(Cloudwatch::new(aws, scope, config.lag)))
        }
        #[cfg(not(feature = "ecs"))]
        MetricsConfig::Cloudwatch(_) => Err(field_error(file, text, cloudwatch_not_built())),
    }
}

/// Marks rollouts whose kube context the user config calls production.
pub fn mark_production(setups: &mut [RolloutSetup], contexts: &[String]) {
    for s in setups {
        let context = s.plan.target.params.get("context");
        if context.is_some_and(|c| contexts.contains(c)) {
            s.plan.target.production = true;
        }
    }
}

/// The demo fleet, ready to run (`crate::demo` builds it at any size).
pub async fn demo(seed: u64) -> Result<Vec<RolloutSetup>, BadInput> {
    crate::demo::setups(crate::demo::SHAPES, seed).await
}

/// The rollouts the plan files describe; ids must be unique.
pub async fn from_files(
    paths: &[std::path::PathBuf],
    scenario: Option<&str>,
    seed: u64,
) -> Result<Vec<RolloutSetup>, BadInput> {
    let scenario =
        scenario.map(|s| s.parse::<Scenario>().map_err(|e| BadInput(format!("--scenario: {e}")))).transpose()?;
    let config_dir = crate::paths::config_dir();
    let shared = Shared::default();
    let mut setups: Vec<RolloutSetup> = Vec::new();
    for path in paths {
        let (plan, text) = read_plan(path)?;
        let file = path.display().to_string();
        check_theme(&plan, &file, &text, &config_dir)?;
        if let (Some(scenario), false) = (scenario, plan.target.backend == BackendKind::Sim) {
            // Said, not silently ignored: a captain may think they are rehearsing.
            let backend = plan.target.backend.name();
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!(
                    "warning: --scenario {scenario} applies to simulated plans only; {file} runs on {backend}\n"
                ),
            );
        }
        let s = setup_in(&shared, plan, &file, text, scenario, seed).await?;
        if let Some(other) = setups.iter().find(|o| o.id == s.id) {
            let at = spot(&file, &s.plan_text, &["rollout", "name"]);
            return Err(BadInput(format!("{at}: rollout.name: `{}` is already run by {}", s.id, other.plan_file)));
        }
        setups.push(s);
    }
    Ok(setups)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn production_contexts_from_the_config_mark_their_rollouts() {
        let mut fleet = super::demo(1).await.unwrap();
        fleet[0].plan.target.params.insert("context".into(), "prod-eu-1".into());
        fleet[0].plan.target.production = false;
        super::mark_production(&mut fleet, &["prod-eu-1".to_string()]);
        assert!(fleet[0].plan.target.production);
        assert!(!fleet[5].plan.target.params.contains_key("context"));
    }

    #[cfg(feature = "prometheus")]
    #[tokio::test]
    async fn rollouts_of_one_fleet_share_a_client_per_prometheus_address() {
        let plan = |name: &str, address: &str| {
            format!(
                "[rollout]\nname = \"{name}\"\nstable = \"v1\"\ncanary = \"v2\"\n\n\
                 [metrics]\nsource = \"prometheus\"\naddress = \"{address}\"\n"
            )
        };
        let shared = super::Shared::default();
        for (name, address) in [("a", "http://prom:9090"), ("b", "http://prom:9090/"), ("c", "http://other:9090")] {
            let text = plan(name, address);
            let parsed = flightdeck_core::Plan::parse("p.toml", &text).unwrap();
            super::setup_in(&shared, parsed, "p.toml", text, None, 1).await.unwrap();
        }
        assert_eq!(shared.prometheus.len(), 2, "one client for prom:9090, one for other:9090");
    }

    #[tokio::test]
    async fn the_demo_fleet_parses_and_has_six_rollouts_with_one_bad_canary() {
        let fleet = super::demo(1).await.expect("demo plans are valid");
        assert_eq!(fleet.len(), 6);
        let bad: Vec<_> = fleet
            .iter()
            .filter(|s| s.plan.target.params.get("scenario").map(String::as_str) == Some("bad-canary"))
            .collect();
        assert_eq!(bad.len(), 1);
        let groups: std::collections::BTreeSet<_> = fleet.iter().map(|s| s.plan.target.group.clone()).collect();
        assert!(groups.len() >= 3, "{groups:?}");
    }
}
