//! The EXTERNAL deployment controller: flightdeck runs one task set per
//! revision and moves traffic with the weights of an ELBv2 listener rule's
//! forward action, the way it drives a proxy.
//!
//! | effect | calls |
//! |---|---|
//! | `Scale` canary to p % | `CreateTaskSet` (the stable task set's launch type, network and container, the canary target group) or `UpdateTaskSet` scale p % |
//! | `SetWeight` w % | w > 0: `DescribeTaskSets` until the canary task set is `STEADY_STATE` with its tasks running (at most `ready_timeout_s`); then `DescribeRules` + `ModifyRule`: stable 100 − w, canary w |
//! | `SwitchActive` | the same with 0 or 100 |
//! | `Scale` stable to 0 | the promotion: `UpdateServicePrimaryTaskSet` (canary), then `DeleteTaskSet` (stable) |
//! | `Scale` stable to p > 0 | `UpdateTaskSet` scale p % |
//!
//! `observe` reads the rule back: the canary's share of the two weights,
//! which the core compares with what it set (drift). Every other action
//! and condition of the rule is kept as it is.

use super::call::Site;
use super::{short, EcsTarget};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{LoadBalancer, Scale, ScaleUnit, StabilityStatus, TaskSet};
use aws_sdk_elasticloadbalancingv2::types::{Action, ForwardActionConfig, TargetGroupTuple};
use flightdeck_core::plan::{Plan, Strategy};
use flightdeck_core::rollout::{Effect, Observation, Version};
use std::time::{Duration, Instant};

/// How often a task set's readiness is read while waiting.
const READY_POLL: Duration = Duration::from_secs(2);

/// Task sets and listener weights of one EXTERNAL service.
pub struct TaskSets {
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    target: EcsTarget,
    /// Task definitions of the two revisions.
    stable: String,
    canary: String,
    site: Site,
}

impl TaskSets {
    pub fn new(aws: &SdkConfig, target: EcsTarget, plan: &Plan) -> Result<TaskSets, String> {
        if matches!(plan.strategy, Strategy::Rolling { .. }) {
            return Err(
                "strategy.kind: a rolling update needs controller = \"ecs\"; task sets are for canary and blue-green"
                    .into(),
            );
        }
        let site = Site { label: target.label(), profile: target.profile.clone() };
        Ok(TaskSets {
            ecs: aws_sdk_ecs::Client::new(aws),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(aws),
            stable: plan.stable.clone(),
            canary: plan.canary.clone(),
            target,
            site,
        })
    }

    async fn task_sets(&self) -> Result<Vec<TaskSet>, BackendError> {
        let t = &self.target;
        let out = self.ecs.describe_task_sets().cluster(&t.cluster).service(&t.service).send().await;
        let out = out.map_err(|e| self.site.error(&format!("DescribeTaskSets {}", self.service()), e))?;
        Ok(out.task_sets().to_vec())
    }

    fn service(&self) -> String {
        format!("service {} in cluster {}", short(&self.target.service), short(&self.target.cluster))
    }

    /// The task set that runs `revision`, if any.
    fn find<'a>(sets: &'a [TaskSet], revision: &str) -> Option<&'a TaskSet> {
        sets.iter().find(|ts| {
            let definition = ts.task_definition().unwrap_or("");
            ts.external_id() == Some(revision)
                || definition == revision
                || definition.ends_with(&format!("/{revision}"))
        })
    }

    fn scale(percent: u8) -> Scale {
        Scale::builder().unit(ScaleUnit::Percent).value(f64::from(percent.min(100))).build()
    }

    async fn scale_canary(&self, action: &str, percent: u8) -> Result<(), BackendError> {
        let sets = self.task_sets().await?;
        if let Some(canary) = Self::find(&sets, &self.canary) {
            return self.update_scale(canary, percent).await;
        }
        if percent == 0 {
            return Ok(());
        }
        let Some(stable) = Self::find(&sets, &self.stable) else {
            let detail = format!("no task set runs the stable revision {} to copy the canary's from", self.stable);
            return Err(self.site.refusal(action, detail));
        };
        // The canary runs like stable: same launch, network and container,
        // behind the canary target group.
        let container = stable.load_balancers().first();
        let balancer = LoadBalancer::builder()
            .target_group_arn(&self.target.canary_target_group)
            .set_container_name(container.and_then(|l| l.container_name().map(str::to_owned)))
            .set_container_port(container.and_then(|l| l.container_port()))
            .build();
        let t = &self.target;
        let create = self
            .ecs
            .create_task_set()
            .cluster(&t.cluster)
            .service(&t.service)
            .task_definition(&self.canary)
            .external_id(&self.canary)
            .set_launch_type(stable.launch_type().cloned())
            .set_capacity_provider_strategy(
                Some(stable.capacity_provider_strategy().to_vec()).filter(|c| !c.is_empty()),
            )
            .set_platform_version(stable.platform_version().map(str::to_owned))
            .set_network_configuration(stable.network_configuration().cloned())
            .load_balancers(balancer)
            .scale(Self::scale(percent));
        create.send().await.map_err(|e| self.site.error(&format!("CreateTaskSet {}", self.canary), e))?;
        Ok(())
    }

    async fn update_scale(&self, set: &TaskSet, percent: u8) -> Result<(), BackendError> {
        let arn = set.task_set_arn().unwrap_or_default();
        let t = &self.target;
        let call = self.ecs.update_task_set().cluster(&t.cluster).service(&t.service).task_set(arn);
        call.scale(Self::scale(percent))
            .send()
            .await
            .map_err(|e| self.site.error(&format!("UpdateTaskSet {arn}"), e))?;
        Ok(())
    }

    /// Stable to 0 is the promotion: the canary becomes primary and the old task set goes.
    async fn scale_stable(&self, action: &str, percent: u8) -> Result<(), BackendError> {
        let sets = self.task_sets().await?;
        let stable = Self::find(&sets, &self.stable);
        if percent > 0 {
            let Some(stable) = stable else {
                return Err(self.site.refusal(action, format!("no task set runs {}", self.stable)));
            };
            return self.update_scale(stable, percent).await;
        }
        let Some(canary) = Self::find(&sets, &self.canary) else {
            let detail = format!(
                "no task set runs {}: the stable task set stays, or the service would serve nothing",
                self.canary
            );
            return Err(self.site.refusal(action, detail));
        };
        let t = &self.target;
        let canary_arn = canary.task_set_arn().unwrap_or_default();
        if canary.status() != Some("PRIMARY") {
            let call = self.ecs.update_service_primary_task_set().cluster(&t.cluster).service(&t.service);
            call.primary_task_set(canary_arn)
                .send()
                .await
                .map_err(|e| self.site.error(&format!("UpdateServicePrimaryTaskSet {canary_arn}"), e))?;
        }
        let Some(old) = stable.and_then(TaskSet::task_set_arn).filter(|arn| *arn != canary_arn) else { return Ok(()) };
        let delete = self.ecs.delete_task_set().cluster(&t.cluster).service(&t.service).task_set(old);
        delete.send().await.map_err(|e| self.site.error(&format!("DeleteTaskSet {old}"), e))?;
        Ok(())
    }

    /// Waits until the canary task set is steady with its tasks running.
    async fn canary_ready(&self, action: &str) -> Result<(), BackendError> {
        let start = Instant::now();
        loop {
            let sets = self.task_sets().await?;
            let state = match Self::find(&sets, &self.canary) {
                Some(ts) if ready(ts) => return Ok(()),
                Some(ts) => format!(
                    "{} of {} tasks running, {}",
                    ts.running_count(),
                    ts.computed_desired_count(),
                    ts.stability_status().map_or("stability unknown", StabilityStatus::as_str)
                ),
                None => "no task set yet".to_owned(),
            };
            if start.elapsed() >= self.target.ready_timeout {
                let detail = format!(
                    "the canary task set ({}) is not ready after {} s ({state}); it gets no traffic until it is",
                    self.canary,
                    self.target.ready_timeout.as_secs()
                );
                return Err(self.site.refusal(action, detail));
            }
            tokio::time::sleep(READY_POLL.min(self.target.ready_timeout)).await;
        }
    }

    /// The rule's actions, and the index of the forward action holding both target groups.
    async fn rule(&self) -> Result<(Vec<Action>, usize), BackendError> {
        let arn = &self.target.listener_rule;
        let what = format!("DescribeRules {arn}");
        let out = self.elb.describe_rules().rule_arns(arn).send().await.map_err(|e| self.site.error(&what, e))?;
        let Some(rule) = out.rules().first() else {
            return Err(self.site.refusal(&what, "RuleNotFound: the listener rule does not exist".into()));
        };
        let actions = rule.actions().to_vec();
        let index = actions.iter().position(|a| self.groups(a).is_some()).ok_or_else(|| {
            let detail = format!(
                "the rule forwards to no weighted pair of {} and {}; give it a forward action with both target groups",
                self.target.stable_target_group, self.target.canary_target_group
            );
            self.site.refusal(&what, detail)
        })?;
        Ok((actions, index))
    }

    /// The (stable, canary) weights of a forward action with both target groups.
    fn groups(&self, action: &Action) -> Option<(i32, i32)> {
        let groups = action.forward_config()?.target_groups();
        let weight =
            |arn: &str| groups.iter().find(|g| g.target_group_arn() == Some(arn)).map(|g| g.weight().unwrap_or(1));
        Some((weight(&self.target.stable_target_group)?, weight(&self.target.canary_target_group)?))
    }

    async fn set_weight(&self, action: &str, canary: u8) -> Result<(), BackendError> {
        if canary > 0 {
            self.canary_ready(action).await?;
        }
        let (mut actions, index) = self.rule().await?;
        let tuple =
            |arn: &str, weight: u8| TargetGroupTuple::builder().target_group_arn(arn).weight(i32::from(weight)).build();
        let forward =
            actions[index].forward_config().cloned().unwrap_or_else(|| ForwardActionConfig::builder().build());
        let others = forward.target_groups().iter().filter(|g| {
            let arn = g.target_group_arn().unwrap_or("");
            arn != self.target.stable_target_group && arn != self.target.canary_target_group
        });
        let mut groups: Vec<TargetGroupTuple> = others.cloned().collect();
        groups.push(tuple(&self.target.stable_target_group, 100 - canary.min(100)));
        groups.push(tuple(&self.target.canary_target_group, canary.min(100)));
        let forward = ForwardActionConfig::builder()
            .set_target_groups(Some(groups))
            .set_target_group_stickiness_config(forward.target_group_stickiness_config().cloned())
            .build();
        // The forward action keeps its place; the single-target shorthand goes.
        let old = &actions[index];
        actions[index] =
            Action::builder().set_type(old.r#type().cloned()).set_order(old.order()).forward_config(forward).build();
        let arn = &self.target.listener_rule;
        let call = self.elb.modify_rule().rule_arn(arn).set_actions(Some(actions));
        call.send().await.map_err(|e| self.site.error(&format!("ModifyRule {arn}"), e))?;
        Ok(())
    }
}

/// Steady, scaled above 0, and every task it wants running.
fn ready(ts: &TaskSet) -> bool {
    let scaled = ts.scale().is_some_and(|s| s.value() > 0.0);
    scaled
        && ts.stability_status() == Some(&StabilityStatus::SteadyState)
        && ts.running_count() >= ts.computed_desired_count()
}

#[async_trait]
impl Backend for TaskSets {
    fn name(&self) -> String {
        self.site.label.clone()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        let action = effect.to_string();
        match effect {
            Effect::SetWeight { canary } => self.set_weight(&action, *canary).await,
            Effect::SwitchActive { to } => self.set_weight(&action, if *to == Version::Canary { 100 } else { 0 }).await,
            Effect::Scale { version: Version::Canary, percent } => self.scale_canary(&action, *percent).await,
            Effect::Scale { version: Version::Stable, percent } => self.scale_stable(&action, *percent).await,
            Effect::Notify(_) => Ok(()),
            Effect::Undo { .. } | Effect::Native { .. } => {
                Err(self.site.unsupported(&action, "task sets are rolled back by weight and scale, not by undo"))
            }
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let (actions, index) = self.rule().await?;
        let (stable, canary) = self.groups(&actions[index]).unwrap_or((1, 0));
        let total = (stable + canary).max(0);
        // Both at 0: the rule forwards nothing to either; say so as 0 %.
        let weight = if total == 0 { 0 } else { ((canary.max(0) * 100 + total / 2) / total).min(100) as u8 };
        Ok(Observation { canary_weight: Some(weight), ..Observation::default() })
    }
}
