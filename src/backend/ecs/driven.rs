//! The EXTERNAL deployment controller: flightdeck runs one task set per
//! revision and moves traffic with the weights of an ELBv2 listener rule's
//! forward action, the way it drives a proxy.
//!
//! | effect | calls |
//! |---|---|
//! | `Scale` canary to p % | `CreateTaskSet` (the stable task set's launch type, network and container, the canary target group; a `clientToken` of the rollout, service, revision and this run, so a retried call creates no second task set; another after the canary's task set was removed, as ECS answers a token it has seen with the task set it made then) or `UpdateTaskSet` scale p % |
//! | `Scale` canary to 0 | (abort, rollback; the engine has read the canary's weight 0 back) `UpdateTaskSet` scale 0, then `DeleteTaskSet`: the canary's task set is removed, which the rollout's detail says until another is created (a service has room for only a few task sets). Refused while the rule's target-group stickiness may still hold clients on the canary (its duration since the canary's weight went to 0). A task set already gone, or `DRAINING`, is done; a retry creates a new one with a new `clientToken` |
//! | `SetWeight` w % | w > 0: `DescribeTaskSets`: is the canary task set ready (tasks wanted, i.e. computed desired count > 0, all of them running, and `STEADY_STATE` reached after flightdeck's last scale change)? If not, the effect is not ready ([`BackendError::NotReady`]): the core shows "waiting for the canary task set (1 of 4 tasks running…)", reads again every 2 s on its ticks and pauses after `ready_timeout_s`, while commands apply at once. Ready: `DescribeRules` + `ModifyRule`: stable 100 − w, canary w |
//! | `SwitchActive` | the same with 0 or 100 |
//! | `Scale` stable to 0 | the promotion: `UpdateServicePrimaryTaskSet` (canary), then `UpdateTaskSet` scale 0 and `DeleteTaskSet` (stable; ECS deletes only a task set scaled to 0 unless forced) |
//! | `Scale` stable to p > 0 | `UpdateTaskSet` scale p % |
//!
//! `observe` reads the rule back: the canary's share of the two weights,
//! which the core compares with what it set (drift). Every other action
//! and condition of the rule is kept as it is.
//!
//! A listener's default rule cannot be changed with `ModifyRule` (only
//! `ModifyListener` changes its default actions): a `listener_rule` that is
//! one is refused with the reason at the first call that reads it, before
//! any task set is created. Give the weights to a rule of their own
//! (a `path-pattern` `/*` condition at any priority matches everything).
//!
//! Target-group stickiness on the forward action (`TargetGroupStickinessConfig`)
//! takes precedence over the weights: a client that reached the canary keeps
//! reaching it for the stickiness duration, even at weight 0. flightdeck
//! warns (log and the observation's detail) and keeps the canary's tasks until
//! that duration has passed since its weight went to 0.

use super::call::Site;
use super::{short, EcsTarget};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::primitives::DateTime;
use aws_sdk_ecs::types::{LoadBalancer, Scale, ScaleUnit, StabilityStatus, TaskSet};
use aws_sdk_elasticloadbalancingv2::types::{Action, ForwardActionConfig, TargetGroupTuple};
use flightdeck_core::plan::params::{FieldError, TargetError};
use flightdeck_core::plan::{Plan, Strategy};
use flightdeck_core::rollout::{Effect, Observation, Version};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
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
    /// What the canary's `CreateTaskSet` `clientToken` is made of: the
    /// rollout, service and revision, and this backend's start.
    token_parts: Vec<String>,
    /// Canary task sets this backend removed: the next one is another
    /// task set, so its `clientToken` must be another (ECS answers a token
    /// it has seen with the task set it made then, and creates nothing).
    removed: AtomicU64,
    /// What was said about the last canary task set removed, shown with
    /// the rollout until another is created.
    removal: Mutex<Option<String>>,
    /// Server time (`updatedAt`) of the last scale change flightdeck made
    /// to the canary task set: a `STEADY_STATE` from before it is stale.
    changed_at: Mutex<Option<DateTime>>,
    /// When the canary's weight was seen going to 0 (stickiness wait).
    weight_zero_at: Mutex<Option<Instant>>,
    /// The stickiness warning was logged.
    warned: AtomicBool,
}

/// An idempotency token for `CreateTaskSet` (≤ 36 ASCII characters): the
/// same for every retry of the canary of one rollout and revision on one
/// service, another for any other. Two FNV-1a hashes, UUID-shaped.
pub fn client_token(parts: &[&str]) -> String {
    let hash = |seed: u64| {
        let mut h = seed;
        for part in parts {
            for b in part.bytes().chain([0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x6c62_272e_07bb_0142));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

impl TaskSets {
    pub fn new(aws: &SdkConfig, target: EcsTarget, plan: &Plan) -> Result<TaskSets, TargetError> {
        if matches!(plan.strategy, Strategy::Rolling { .. }) {
            let message = "a rolling update needs controller = \"ecs\"; task sets are for canary and blue-green";
            return Err(FieldError::new("strategy.kind", message).into());
        }
        let site = Site { label: target.label(), profile: target.profile.clone() };
        // Nanoseconds of this start: a later process, which cannot know
        // how many canaries an earlier one removed, uses other tokens.
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let token_parts = [&plan.name, &target.cluster, &target.service, &plan.canary, &started.as_nanos().to_string()]
            .map(|p| p.to_string())
            .to_vec();
        Ok(TaskSets {
            token_parts,
            removed: AtomicU64::new(0),
            removal: Mutex::new(None),
            changed_at: Mutex::new(None),
            weight_zero_at: Mutex::new(None),
            warned: AtomicBool::new(false),
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

    /// The `clientToken` of the next canary `CreateTaskSet`: the same for
    /// every attempt at one canary, another after one was removed.
    pub fn client_token(&self) -> String {
        let generation = self.removed.load(Ordering::SeqCst).to_string();
        let parts: Vec<&str> = self.token_parts.iter().map(String::as_str).chain([generation.as_str()]).collect();
        client_token(&parts)
    }

    /// The task set that runs `revision`, if any. One being deleted
    /// (`DRAINING`, listed until its tasks have stopped) runs nothing more.
    fn find<'a>(sets: &'a [TaskSet], revision: &str) -> Option<&'a TaskSet> {
        sets.iter().filter(|ts| ts.status() != Some("DRAINING")).find(|ts| {
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
            if percent == 0 && canary.scale().is_some_and(|s| s.value() > 0.0) {
                self.sticky_clients_gone(action).await?;
            }
            let updated = self.update_scale(canary, percent).await?;
            if percent == 0 {
                // Out of traffic (the engine read its weight 0 back) and
                // without tasks: nothing needs it, and a service has room
                // for only a few task sets.
                return self.remove_canary(canary).await;
            }
            if let Some(at) = updated {
                *self.changed_at.lock().unwrap() = Some(at);
            }
            return Ok(());
        }
        if percent == 0 {
            return Ok(());
        }
        // The rule is checked (not a default rule) before anything is created.
        self.rule().await?;
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
            .scale(Self::scale(percent))
            .client_token(self.client_token());
        let out = create.send().await.map_err(|e| self.site.error(&format!("CreateTaskSet {}", self.canary), e))?;
        *self.removal.lock().unwrap() = None;
        let at = out.task_set().and_then(|ts| ts.updated_at().or(ts.created_at())).copied();
        *self.changed_at.lock().unwrap() = at;
        Ok(())
    }

    /// Scales `set` to `percent` unless it is there already (a call that
    /// changes nothing would only make its stability look stale); the
    /// server time of the change, when there was one.
    async fn update_scale(&self, set: &TaskSet, percent: u8) -> Result<Option<DateTime>, BackendError> {
        if set.scale().is_some_and(|s| s.value() == f64::from(percent.min(100))) {
            return Ok(None);
        }
        let arn = set.task_set_arn().unwrap_or_default();
        let t = &self.target;
        let call = self.ecs.update_task_set().cluster(&t.cluster).service(&t.service).task_set(arn);
        let out = call
            .scale(Self::scale(percent))
            .send()
            .await
            .map_err(|e| self.site.error(&format!("UpdateTaskSet {arn}"), e))?;
        let at = out.task_set().and_then(TaskSet::updated_at).copied();
        Ok(Some(at.unwrap_or_else(|| DateTime::from(std::time::SystemTime::now()))))
    }

    /// Deletes the canary's task set, scaled to 0 already (ECS refuses to
    /// delete one that is not, without `force`). Gone already: done.
    async fn remove_canary(&self, canary: &TaskSet) -> Result<(), BackendError> {
        let t = &self.target;
        let arn = canary.task_set_arn().unwrap_or_default();
        let delete = self.ecs.delete_task_set().cluster(&t.cluster).service(&t.service).task_set(arn);
        match delete.send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_task_set_not_found_exception()) => {}
            Err(e) => return Err(self.site.error(&format!("DeleteTaskSet {arn} (the canary's, at scale 0)"), e)),
        }
        self.removed.fetch_add(1, Ordering::SeqCst);
        let said = format!("the canary's task set ({}, {}) was removed: DeleteTaskSet", self.canary, short(arn));
        tracing::info!(backend = %self.site.label, task_set = %arn, "{said}");
        *self.removal.lock().unwrap() = Some(said);
        Ok(())
    }

    /// Refuses to take the canary's tasks while the rule's target-group
    /// stickiness may still send clients to it: its duration must have
    /// passed since the canary's weight went to 0.
    async fn sticky_clients_gone(&self, action: &str) -> Result<(), BackendError> {
        let (actions, index) = self.rule().await?;
        let Some(duration) = sticky(&actions[index]) else { return Ok(()) };
        let since = *self.weight_zero_at.lock().unwrap().get_or_insert_with(Instant::now);
        let elapsed = since.elapsed();
        if elapsed >= duration {
            return Ok(());
        }
        let detail = format!(
            "target-group stickiness on the rule keeps clients that reached the canary on it for {} s, even at weight 0; \
             its weight went to 0 {} s ago: its tasks stay for {} s more, then scale it to 0 again",
            duration.as_secs(),
            elapsed.as_secs(),
            (duration - elapsed).as_secs().max(1)
        );
        Err(self.site.refusal(action, detail))
    }

    /// Stable to 0 is the promotion: the canary becomes primary and the old task set goes.
    async fn scale_stable(&self, action: &str, percent: u8) -> Result<(), BackendError> {
        let sets = self.task_sets().await?;
        let stable = Self::find(&sets, &self.stable);
        if percent > 0 {
            let Some(stable) = stable else {
                return Err(self.site.refusal(action, format!("no task set runs {}", self.stable)));
            };
            self.update_scale(stable, percent).await?;
            return Ok(());
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
        let Some(stable) = stable.filter(|s| s.task_set_arn() != Some(canary_arn)) else { return Ok(()) };
        // ECS deletes only a task set scaled to 0 (unless forced).
        self.update_scale(stable, 0).await?;
        let old = stable.task_set_arn().unwrap_or_default();
        let delete = self.ecs.delete_task_set().cluster(&t.cluster).service(&t.service).task_set(old);
        delete.send().await.map_err(|e| self.site.error(&format!("DeleteTaskSet {old}"), e))?;
        Ok(())
    }

    /// Whether the canary task set is steady with its tasks running, read
    /// once. Not yet: a [`BackendError::NotReady`] saying what it waits
    /// for, which the core tries again on its ticks (every [`READY_POLL`],
    /// up to `ready_timeout_s` from the first answer, then it pauses): the
    /// rollout's loop never waits here, so an abort applies at once.
    async fn canary_ready(&self, action: &str) -> Result<(), BackendError> {
        let sets = self.task_sets().await?;
        let changed_at = *self.changed_at.lock().unwrap();
        let detail = match Self::find(&sets, &self.canary) {
            Some(ts) if ready(ts, changed_at) => return Ok(()),
            Some(ts) => {
                let stale =
                    ts.stability_status() == Some(&StabilityStatus::SteadyState) && !stable_since(ts, changed_at);
                format!(
                    "the canary task set ({}): {} of {} tasks running, {}{}",
                    self.canary,
                    ts.running_count(),
                    ts.computed_desired_count(),
                    ts.stability_status().map_or("stability unknown", StabilityStatus::as_str),
                    if stale { " from before the last scale change" } else { "" }
                )
            }
            None => format!("the canary task set ({}): none yet", self.canary),
        };
        Err(BackendError::NotReady {
            backend: self.site.label.clone(),
            action: action.to_owned(),
            detail,
            timeout: self.target.ready_timeout,
            retry: READY_POLL,
        })
    }

    /// The rule's actions, and the index of the forward action holding both target groups.
    async fn rule(&self) -> Result<(Vec<Action>, usize), BackendError> {
        let arn = &self.target.listener_rule;
        let what = format!("DescribeRules {arn}");
        let out = self.elb.describe_rules().rule_arns(arn).send().await.map_err(|e| self.site.error(&what, e))?;
        let Some(rule) = out.rules().first() else {
            return Err(self.site.refusal(&what, "RuleNotFound: the listener rule does not exist".into()));
        };
        if rule.is_default() == Some(true) {
            let detail = "the listener rule is the listener's default rule, whose actions ModifyRule cannot change \
                 (only ModifyListener can); give the weights to a rule of their own (a path-pattern `/*` \
                 condition matches every request) and name it in `listener_rule`"
                .to_owned();
            return Err(self.site.refusal(&what, detail));
        }
        let actions = rule.actions().to_vec();
        let index = actions.iter().position(|a| self.groups(a).is_some()).ok_or_else(|| {
            let detail = format!(
                "the rule forwards to no weighted pair of {} and {}; give it a forward action with both target groups",
                self.target.stable_target_group, self.target.canary_target_group
            );
            self.site.refusal(&what, detail)
        })?;
        if let Some(duration) = sticky(&actions[index]) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    backend = %self.site.label,
                    rule = %arn,
                    seconds = duration.as_secs(),
                    "target-group stickiness is on: sticky clients keep reaching a target group whose weight is 0"
                );
            }
        }
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
        let before = self.groups(&actions[index]).map_or(0, |(_, c)| c);
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
        let mut zero_at = self.weight_zero_at.lock().unwrap();
        match (canary, before) {
            (0, b) if b > 0 => *zero_at = Some(Instant::now()),
            (0, _) => {
                zero_at.get_or_insert_with(Instant::now);
            }
            _ => *zero_at = None,
        }
        Ok(())
    }
}

/// The stickiness duration of a forward action, when stickiness is on.
fn sticky(action: &Action) -> Option<Duration> {
    let config = action.forward_config()?.target_group_stickiness_config()?;
    if config.enabled() != Some(true) {
        return None;
    }
    Some(Duration::from_secs(config.duration_seconds().unwrap_or(0).max(0) as u64))
}

/// Its stability was last set at or after `changed_at` (the last scale
/// change flightdeck made; `None`: none seen by this process).
fn stable_since(ts: &TaskSet, changed_at: Option<DateTime>) -> bool {
    match (changed_at, ts.stability_status_at()) {
        (None, _) => true,
        (Some(changed), Some(at)) => at.as_secs_f64() >= changed.as_secs_f64(),
        (Some(_), None) => false,
    }
}

/// Scaled above 0 with tasks wanted, every one of them running, and
/// steady since the last scale change (`changed_at`): `0/0 STEADY_STATE`
/// right after a change, or with a desired count of 0, is not ready.
pub fn ready(ts: &TaskSet, changed_at: Option<DateTime>) -> bool {
    let scaled = ts.scale().is_some_and(|s| s.value() > 0.0);
    scaled
        && ts.computed_desired_count() > 0
        && ts.running_count() == ts.computed_desired_count()
        && ts.stability_status() == Some(&StabilityStatus::SteadyState)
        && stable_since(ts, changed_at)
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
        let sticky = sticky(&actions[index]).map(|d| {
            format!(
                "target-group stickiness {} s: sticky clients keep reaching a weight-0 side; canary tasks are kept that long",
                d.as_secs()
            )
        });
        let removal = self.removal.lock().unwrap().clone();
        let native_detail = match (sticky, removal) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        Ok(Observation { canary_weight: Some(weight), native_detail, ..Observation::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_set(scale: f64, desired: i32, running: i32, steady: bool, at: i64) -> TaskSet {
        let status = if steady { StabilityStatus::SteadyState } else { StabilityStatus::Stabilizing };
        TaskSet::builder()
            .scale(Scale::builder().unit(ScaleUnit::Percent).value(scale).build())
            .computed_desired_count(desired)
            .running_count(running)
            .stability_status(status)
            .stability_status_at(DateTime::from_secs(at))
            .build()
    }

    #[test]
    fn ready_needs_tasks_wanted_all_running_and_steady_after_the_last_change() {
        assert!(ready(&task_set(100.0, 4, 4, true, 100), None));
        assert!(ready(&task_set(100.0, 4, 4, true, 100), Some(DateTime::from_secs(100))));
        // 0/0 STEADY_STATE: right after a scale change, or a desired count of 0.
        assert!(!ready(&task_set(100.0, 0, 0, true, 100), None));
        assert!(!ready(&task_set(0.0, 4, 4, true, 100), None));
        assert!(!ready(&task_set(100.0, 4, 3, true, 100), None));
        // More running than wanted: the old ones are still draining.
        assert!(!ready(&task_set(100.0, 2, 4, true, 100), None));
        assert!(!ready(&task_set(100.0, 4, 4, false, 100), None));
        // A STEADY_STATE from before flightdeck's last change is stale.
        assert!(!ready(&task_set(100.0, 4, 4, true, 99), Some(DateTime::from_secs(100))));
    }

    #[test]
    fn the_client_token_is_one_per_rollout_service_and_revision() {
        let token = client_token(&["checkout", "prod", "checkout", "checkout:2"]);
        assert_eq!(token, client_token(&["checkout", "prod", "checkout", "checkout:2"]));
        assert_ne!(token, client_token(&["checkout", "prod", "checkout", "checkout:3"]));
        assert_ne!(token, client_token(&["checkout", "prod", "checkoutc", "heckout:2"]));
        assert_eq!(token.len(), 36);
        assert!(token.bytes().all(|b| (33..=126).contains(&b)), "{token}");
    }
}
