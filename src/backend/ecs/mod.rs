//! AWS ECS (cargo feature `ecs`), on aws-sdk-rust. One `backend = "ecs"`
//! target, three ways a service's rollout can run:
//!
//! - [`observed::ServiceDeployments`] (`controller = "ecs"`, the default;
//!   strategy `canary` or `blue-green` in the plan): ECS's own deployment
//!   controller runs a `CANARY`, `LINEAR`, `BLUE_GREEN` or `ROLLING`
//!   deployment; flightdeck mirrors the service deployment (its target
//!   revision is the rollout's revision), stops it with a rollback, and
//!   continues or rolls back one waiting at a `PAUSE` lifecycle hook.
//!   Like Argo Rollouts: ECS decides. A service deployed by CodeDeploy is
//!   refused with the reason.
//! - [`rolling::RollingService`] (`controller = "ecs"`, strategy `rolling`):
//!   the same service deployments; where the endpoint has none, the
//!   service's `deployments` compared with the plan's canary task
//!   definition (a circuit-breaker rollback is a rollback), and a rollback
//!   redeploys the task definition before the canary, never the canary's.
//! - [`driven::TaskSets`] (`controller = "external"`): flightdeck is the
//!   controller. One task set per revision and the weights of an ELBv2
//!   listener rule's forward action, like a proxy.
//!
//! The plan's `stable` and `canary` are task definitions (`family:revision`
//! or ARNs). Every call has a timeout; a refusal (throttling, expired
//! credentials, a missing service or rule) becomes a [`BackendError`] that
//! says which call failed and what to do ([`call`]), which the engine shows
//! and, for a driven rollout, turns into a pause.
//!
//! # Target parameters
//!
//! [`PARAMS`]: name, type, whether required, and what each is. The
//! `external` ones are required with `controller = "external"`. Where AWS
//! is and how to sign in: [`AWS_PARAMS`], shared with the Lambda backend.
//!
//! Without a `group`, the rollout's group is `<account>/<region>` (the
//! account when `cluster` is an ARN) or the region.

pub mod call;
pub mod driven;
pub mod observed;
pub mod rolling;

use crate::backend::Backend;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use flightdeck_core::plan::params::{
    Param, ParamError,
    ParamKind::{Count, OneOf, Text},
    TargetError,
};
use flightdeck_core::plan::{Plan, Strategy, Target};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for one attempt of a call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// An ECS target's parameters, checked (see the module doc).
/// What an ECS target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("cluster", Text, "the ECS cluster (name or ARN)"),
    Param::required("service", Text, "the ECS service (name or ARN)"),
    Param::optional(
        "controller",
        OneOf(&["ecs", "external"]),
        "who runs the deployment: `ecs` (default) or `external`",
    ),
    Param::optional("listener_rule", Text, "external: ARN of the listener rule that forwards to both target groups"),
    Param::optional("stable_target_group", Text, "external: the stable target group's ARN"),
    Param::optional("canary_target_group", Text, "external: the canary target group's ARN"),
    Param::optional(
        "ready_timeout_s",
        Count,
        "external: seconds a canary task set may take to be steady (default 300)",
    ),
];

/// Where AWS is and how to sign in: every AWS target reads these.
pub const AWS_PARAMS: &[Param] = &[
    Param::optional("region", Text, "AWS region (default: `AWS_REGION`, then the profile's region)"),
    Param::optional("profile", Text, "profile of `~/.aws/config` (default: `AWS_PROFILE`, then `default`)"),
    Param::optional("endpoint_url", Text, "another endpoint for every service (moto, LocalStack; default: AWS)"),
    Param::optional("max_attempts", Count, "attempts per call, including the SDK's retries (default 3)"),
];

/// An AWS target's [`AWS_PARAMS`], checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsAccess {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub max_attempts: Option<u32>,
}

impl AwsAccess {
    pub fn from_target(target: &Target) -> Result<AwsAccess, ParamError> {
        Ok(AwsAccess {
            region: param(target, "region"),
            profile: param(target, "profile"),
            endpoint_url: param(target, "endpoint_url"),
            max_attempts: count(target, "max_attempts")?,
        })
    }

    /// The rollout group when the plan sets none: `<account>/<region>`
    /// when `arn` is an ARN, else the region.
    pub fn group(arn: &str, region: &str) -> String {
        match arn.split(':').nth(4).filter(|a| arn.starts_with("arn:") && !a.is_empty()) {
            Some(account) => format!("{account}/{region}"),
            None => region.to_owned(),
        }
    }
}

/// A target parameter that is set and not blank.
pub(crate) fn param(target: &Target, key: &str) -> Option<String> {
    target.params.get(key).filter(|v| !v.trim().is_empty()).cloned()
}

/// A whole-number parameter ≥ 1, when set.
fn count(target: &Target, key: &str) -> Result<Option<u32>, ParamError> {
    param(target, key)
        .map(|v| {
            let n = v.parse::<u32>().ok().filter(|n| *n > 0);
            n.ok_or_else(|| ParamError::new(key, format!("`{v}` is not a whole number ≥ 1")))
        })
        .transpose()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsTarget {
    pub cluster: String,
    pub service: String,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub max_attempts: Option<u32>,
    pub external: bool,
    /// External only: the listener rule and the two target groups.
    pub listener_rule: String,
    pub stable_target_group: String,
    pub canary_target_group: String,
    pub ready_timeout: Duration,
}

impl EcsTarget {
    /// Reads and checks the parameters without contacting AWS. Errors name
    /// the parameter (`target.listener_rule: ...`).
    pub fn from_target(target: &Target) -> Result<EcsTarget, ParamError> {
        let get = |key: &str| param(target, key);
        let required = |key: &str| get(key).ok_or_else(|| ParamError::new(key, "required by the `ecs` backend"));
        let external = get("controller").as_deref() == Some("external");
        let for_external = |key: &str| match get(key) {
            Some(v) => Ok(v),
            None if external => Err(ParamError::new(key, "required with controller = \"external\"")),
            None => Ok(String::new()),
        };
        let access = AwsAccess::from_target(target)?;
        Ok(EcsTarget {
            cluster: required("cluster")?,
            service: required("service")?,
            region: access.region,
            profile: access.profile,
            endpoint_url: access.endpoint_url,
            max_attempts: access.max_attempts,
            external,
            listener_rule: for_external("listener_rule")?,
            stable_target_group: for_external("stable_target_group")?,
            canary_target_group: for_external("canary_target_group")?,
            ready_timeout: count(target, "ready_timeout_s")?
                .map_or(DEFAULT_READY_TIMEOUT, |s| Duration::from_secs(s.into())),
        })
    }

    /// Where AWS is and how to sign in, as the target says.
    pub fn access(&self) -> AwsAccess {
        AwsAccess {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
            max_attempts: self.max_attempts,
        }
    }

    /// "ecs prod/checkout", as banners name the backend.
    pub fn label(&self) -> String {
        format!("ecs {}/{}", short(&self.cluster), short(&self.service))
    }

    /// The rollout group when the plan sets none: `<account>/<region>`.
    pub fn group(&self, region: &str) -> String {
        AwsAccess::group(&self.cluster, region)
    }
}

/// The last path segment of an ARN ("…:service/prod/checkout" → "checkout").
pub(crate) fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// An ECS backend ready to run, with the AWS configuration it uses (the
/// CloudWatch metrics source shares it) and the group to show it under.
pub struct EcsSetup {
    pub backend: Arc<dyn Backend>,
    pub aws: SdkConfig,
    pub group: String,
}

/// Builds the backend the plan's target and strategy ask for. Nothing is
/// called yet: a service that is missing shows at the first observation.
pub async fn setup(plan: &Plan) -> Result<EcsSetup, TargetError> {
    let target = EcsTarget::from_target(&plan.target)?;
    let aws = sdk_config(&target.access()).await?;
    let region = aws.region().map(|r| r.to_string()).unwrap_or_default();
    let group = target.group(&region);
    let backend: Arc<dyn Backend> = match &plan.strategy {
        _ if target.external => Arc::new(driven::TaskSets::new(&aws, target, plan)?),
        Strategy::Rolling { .. } => Arc::new(rolling::RollingService::new(&aws, target, plan)),
        _ => Arc::new(observed::ServiceDeployments::new(&aws, target, plan)),
    };
    Ok(EcsSetup { backend, aws, group })
}

/// The SDK configuration of a target: its region and profile, the shared
/// HTTP client, timeouts, and `endpoint_url` / `max_attempts` when set.
/// The region comes from the target, the environment or the profile only:
/// never from the instance metadata service, which would stall a laptop.
pub async fn sdk_config(t: &AwsAccess) -> Result<SdkConfig, ParamError> {
    let region = match &t.region {
        Some(r) => Region::new(r.clone()),
        None => region_chain(t.profile.as_deref()).region().await.ok_or_else(|| {
            ParamError::new("region", "no AWS region; set `region`, AWS_REGION, or a region in the profile")
        })?,
    };
    let timeouts =
        TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).operation_attempt_timeout(CALL_TIMEOUT).build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .http_client(http_client())
        .timeout_config(timeouts);
    if let Some(profile) = &t.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &t.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(n) = t.max_attempts {
        loader = loader.retry_config(RetryConfig::standard().with_max_attempts(n));
    }
    Ok(loader.load().await)
}

fn region_chain(profile: Option<&str>) -> RegionProviderChain {
    let mut file = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(p) = profile {
        file = file.profile_name(p);
    }
    RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
        .or_else(file.build())
}

/// The SDK's hyper 1 client on rustls with ring: the TLS stack reqwest and
/// kube already use, so no second one (aws-lc) is built.
pub fn http_client() -> aws_sdk_ecs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(params: &[(&str, &str)]) -> Target {
        Target {
            backend: flightdeck_core::plan::BackendKind::Ecs,
            group: "ecs".into(),
            production: false,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn external_needs_a_listener_rule_and_two_target_groups() {
        let base = [("cluster", "prod"), ("service", "checkout")];
        let observed = EcsTarget::from_target(&target(&base)).unwrap();
        assert!(!observed.external);
        assert_eq!(observed.label(), "ecs prod/checkout");
        let e = EcsTarget::from_target(&target(&[base[0], base[1], ("controller", "external")])).unwrap_err();
        assert_eq!(e, ParamError::new("listener_rule", "required with controller = \"external\""));
        let e = EcsTarget::from_target(&target(&[base[0], base[1], ("max_attempts", "0")])).unwrap_err();
        assert_eq!(e, ParamError::new("max_attempts", "`0` is not a whole number ≥ 1"));
    }

    #[test]
    fn the_group_names_the_account_when_the_cluster_is_an_arn() {
        let arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/prod";
        let t = EcsTarget::from_target(&target(&[("cluster", arn), ("service", "checkout")])).unwrap();
        assert_eq!(t.group("eu-west-1"), "123456789012/eu-west-1");
        assert_eq!(t.label(), "ecs prod/checkout");
        let t = EcsTarget::from_target(&target(&[("cluster", "prod"), ("service", "checkout")])).unwrap();
        assert_eq!(t.group("eu-west-1"), "eu-west-1");
    }
}
