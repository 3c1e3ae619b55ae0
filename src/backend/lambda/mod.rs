//! AWS Lambda weighted aliases (cargo feature `lambda`), on aws-sdk-rust.
//!
//! An alias points at one published version and may send a share of its
//! invocations to one more: `RoutingConfig.AdditionalVersionWeights`
//! (AWS Lambda Developer Guide, "Implement Lambda canary deployments using
//! a weighted alias"; `UpdateAlias` in the Lambda API reference). The plan's
//! `stable` and `canary` are the two published versions (`"3"`, `"4"`);
//! flightdeck moves that one weight and nothing else.
//!
//! ```toml
//! [rollout]
//! stable = "3"
//! canary = "4"
//!
//! [target]
//! backend = "lambda"
//! function = "checkout"      # name or ARN
//! alias = "live"
//! region = "eu-west-1"
//! ```
//!
//! Effects: `SetWeight { canary: w }` is one `UpdateAlias`:
//! - 0 < w < 100: the alias at `stable`, `canary` weighted `w / 100`;
//! - 100 (promotion): the alias at `canary` with no routing configuration;
//! - 0 (abort, rollback): the alias at `stable` with no routing configuration.
//!
//! An empty `AdditionalVersionWeights` is how the API removes the extra
//! weight (an `UpdateAlias` without `RoutingConfig` keeps the old one).
//! `SwitchActive` is 100 or 0. `Scale` changes nothing: Lambda runs as many
//! instances of each version as its share of invocations needs. `Undo` and
//! `Native` have no Lambda meaning.
//!
//! Every change reads the alias first (`GetAlias`) and sends its
//! `RevisionId` with the update, so an alias changed between the two is
//! refused by Lambda (`PreconditionFailedException`) rather than
//! overwritten. A forward change finding the alias at neither version (or
//! weighting a third) is refused with what it found; going to 0 % always
//! applies, as it is the way back.
//!
//! Read-back: `observe` reads the alias and reports the canary's weight
//! (rounded to a whole percent; 0 at `stable` alone, 100 at `canary` alone).
//! A weight someone changed is drift: the core pauses with both numbers and
//! `resume` sets the stage's back. An alias pointed at another version, or
//! weighting another one, fails the read-back with what it shows, which
//! pauses the rollout too.
//!
//! Metrics: `[metrics] source = "cloudwatch"` reads `AWS/Lambda` per
//! executed version of the alias (see `crate::metrics::cloudwatch`).
//!
//! # Target parameters
//!
//! [`PARAMS`], and the AWS ones every AWS target has
//! ([`crate::backend::ecs::AWS_PARAMS`]: region, profile, endpoint_url,
//! max_attempts). Without a `group`, the rollout's group is
//! `<account>/<region>` (the account when `function` is an ARN) or the region.

use crate::backend::ecs::call::Site;
use crate::backend::ecs::{param, sdk_config, AwsAccess};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_lambda::types::AliasRoutingConfiguration;
use flightdeck_core::plan::params::{FieldError, ParamError, TargetError};
use flightdeck_core::plan::params::{Param, ParamKind::Text};
use flightdeck_core::plan::{Plan, Strategy};
use flightdeck_core::rollout::{Effect, Observation, Version};
use std::collections::HashMap;
use std::sync::Arc;

/// What a Lambda target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("function", Text, "the Lambda function (name or ARN)"),
    Param::required("alias", Text, "the alias whose routing moves between the plan's two versions"),
];

/// A Lambda target's parameters and the plan's two versions, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaTarget {
    pub function: String,
    pub alias: String,
    pub stable: String,
    pub canary: String,
    pub access: AwsAccess,
}

impl LambdaTarget {
    /// Reads and checks the target and versions without contacting AWS.
    /// Errors name the field (`target.alias: ...`, `rollout.canary: ...`).
    pub fn from_plan(plan: &Plan) -> Result<LambdaTarget, TargetError> {
        let target = &plan.target;
        let required =
            |key: &str| param(target, key).ok_or_else(|| ParamError::new(key, "required by the `lambda` backend"));
        // Routing weights only published versions, never $LATEST (UpdateAlias:
        // "you can't use $LATEST" in a routing configuration).
        let version = |field: &'static str, v: &str| {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                let message = format!("`{v}` is not a published Lambda version (a number such as \"4\")");
                return Err(FieldError::new(field, message));
            }
            Ok(v.to_owned())
        };
        let (stable, canary) = (version("rollout.stable", &plan.stable)?, version("rollout.canary", &plan.canary)?);
        if stable == canary {
            let message = format!("the same version as stable ({stable})");
            return Err(FieldError::new("rollout.canary", message).into());
        }
        // A rolling update scales replicas; an alias has none to scale.
        if matches!(plan.strategy, Strategy::Rolling { .. }) {
            let message = "`rolling` has no meaning for a Lambda alias; use `canary` or `blue-green`";
            return Err(FieldError::new("strategy.kind", message).into());
        }
        Ok(LambdaTarget {
            function: required("function")?,
            alias: required("alias")?,
            stable,
            canary,
            access: AwsAccess::from_target(target)?,
        })
    }

    /// "lambda checkout:live", as banners name the backend.
    pub fn label(&self) -> String {
        format!("lambda {}:{}", crate::metrics::cloudwatch::function_name(&self.function), self.alias)
    }
}

/// What `GetAlias` shows: the version, the weighted extra version, the revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub version: String,
    pub extra: HashMap<String, f64>,
    pub revision: Option<String>,
}

impl Alias {
    /// The canary's share in whole percent, or what the alias shows that
    /// belongs to neither version of the plan.
    pub fn canary_weight(&self, stable: &str, canary: &str) -> Result<u8, String> {
        let others: Vec<&String> = self.extra.keys().filter(|v| *v != canary).collect();
        let percent = |w: f64| (w.clamp(0.0, 1.0) * 100.0).round() as u8;
        match self.extra.get(canary) {
            _ if !others.is_empty() || (self.version != stable && self.version != canary) => Err(format!(
                "the alias shows {}, not the plan's versions {stable} → {canary} (changed outside flightdeck)",
                self.describe()
            )),
            Some(w) if self.version == stable => Ok(percent(*w)),
            Some(_) => Err(format!("the alias shows {}: the canary weighted beside itself", self.describe())),
            None if self.version == canary => Ok(100),
            None => Ok(0),
        }
    }

    /// "version 3 + 5 % to version 4", as messages show an alias.
    pub fn describe(&self) -> String {
        let mut extra: Vec<String> =
            self.extra.iter().map(|(v, w)| format!(" + {} % to version {v}", (w * 1000.0).round() / 10.0)).collect();
        extra.sort();
        format!("version {}{}", self.version, extra.concat())
    }
}

/// The alias a weight asks for: (version, additional version weights).
pub fn routing(weight: u8, stable: &str, canary: &str) -> (String, HashMap<String, f64>) {
    match weight {
        0 => (stable.to_owned(), HashMap::new()),
        100.. => (canary.to_owned(), HashMap::new()),
        w => (stable.to_owned(), HashMap::from([(canary.to_owned(), f64::from(w) / 100.0)])),
    }
}

/// A Lambda alias whose routing flightdeck drives.
pub struct WeightedAlias {
    client: aws_sdk_lambda::Client,
    target: LambdaTarget,
    site: Site,
}

impl WeightedAlias {
    pub fn new(aws: &SdkConfig, target: LambdaTarget) -> WeightedAlias {
        let site = Site { label: target.label(), profile: target.access.profile.clone() };
        WeightedAlias { client: aws_sdk_lambda::Client::new(aws), target, site }
    }

    /// `GetAlias`.
    pub async fn read(&self) -> Result<Alias, BackendError> {
        let call = self.client.get_alias().function_name(&self.target.function).name(&self.target.alias);
        let out = call.send().await.map_err(|e| self.site.error("read the alias (GetAlias)", e))?;
        let extra = out.routing_config().and_then(|r| r.additional_version_weights()).cloned().unwrap_or_default();
        Ok(Alias {
            version: out.function_version().unwrap_or_default().to_owned(),
            extra,
            revision: out.revision_id().map(str::to_owned),
        })
    }

    /// Points the alias where `weight` asks, if it was last seen at `seen`.
    async fn set_weight(&self, weight: u8, action: &str) -> Result<(), BackendError> {
        let t = &self.target;
        let seen = self.read().await?;
        if weight > 0 {
            if let Err(e) = seen.canary_weight(&t.stable, &t.canary) {
                return Err(self.site.refusal(action, format!("{e}; set it back by hand, then resume")));
            }
        }
        let (version, extra) = routing(weight, &t.stable, &t.canary);
        let config = AliasRoutingConfiguration::builder().set_additional_version_weights(Some(extra)).build();
        let call = self.client.update_alias().function_name(&t.function).name(&t.alias);
        let call = call.function_version(version).routing_config(config).set_revision_id(seen.revision);
        call.send().await.map_err(|e| self.site.error(&format!("{action} (UpdateAlias)"), e))?;
        Ok(())
    }
}

#[async_trait]
impl Backend for WeightedAlias {
    fn name(&self) -> String {
        self.target.label()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        let action = effect.to_string();
        match effect {
            Effect::SetWeight { canary } => self.set_weight(*canary, &action).await,
            Effect::SwitchActive { to } => self.set_weight(if *to == Version::Canary { 100 } else { 0 }, &action).await,
            // Lambda scales each version with its share of invocations.
            Effect::Scale { .. } | Effect::Notify(_) => Ok(()),
            Effect::Undo { .. } | Effect::Native { .. } => {
                Err(BackendError::Unsupported { backend: self.name(), effect: action })
            }
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let alias = self.read().await?;
        let weight = alias
            .canary_weight(&self.target.stable, &self.target.canary)
            .map_err(|e| self.site.refusal("read the alias (GetAlias)", e))?;
        Ok(Observation { canary_weight: Some(weight), ..Observation::default() })
    }
}

/// A Lambda backend ready to run, with the AWS configuration it uses (the
/// CloudWatch metrics source shares it) and the group to show it under.
pub struct LambdaSetup {
    pub backend: Arc<dyn Backend>,
    pub aws: SdkConfig,
    pub group: String,
}

/// Builds the backend of the plan's target. Nothing is called yet: a
/// missing function or alias shows at the first observation.
pub async fn setup(plan: &Plan) -> Result<LambdaSetup, TargetError> {
    let target = LambdaTarget::from_plan(plan)?;
    let aws = sdk_config(&target.access).await?;
    let region = aws.region().map(|r| r.to_string()).unwrap_or_default();
    let group = AwsAccess::group(&target.function, &region);
    Ok(LambdaSetup { backend: Arc::new(WeightedAlias::new(&aws, target)), aws, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(version: &str, extra: &[(&str, f64)]) -> Alias {
        let extra = extra.iter().map(|(v, w)| (v.to_string(), *w)).collect();
        Alias { version: version.into(), extra, revision: None }
    }

    #[test]
    fn the_canary_weight_is_its_share_of_the_alias_and_anything_else_is_named() {
        assert_eq!(alias("3", &[]).canary_weight("3", "4"), Ok(0));
        assert_eq!(alias("3", &[("4", 0.05)]).canary_weight("3", "4"), Ok(5));
        assert_eq!(alias("3", &[("4", 0.333)]).canary_weight("3", "4"), Ok(33));
        assert_eq!(alias("4", &[]).canary_weight("3", "4"), Ok(100));
        let e = alias("7", &[]).canary_weight("3", "4").unwrap_err();
        assert_eq!(e, "the alias shows version 7, not the plan's versions 3 → 4 (changed outside flightdeck)");
        let e = alias("3", &[("5", 0.1)]).canary_weight("3", "4").unwrap_err();
        assert!(e.starts_with("the alias shows version 3 + 10 % to version 5, not"), "{e}");
    }

    #[test]
    fn a_weight_is_one_routing_configuration() {
        assert_eq!(routing(0, "3", "4"), ("3".into(), HashMap::new()));
        assert_eq!(routing(100, "3", "4"), ("4".into(), HashMap::new()));
        assert_eq!(routing(25, "3", "4"), ("3".into(), HashMap::from([("4".into(), 0.25)])));
    }
}
