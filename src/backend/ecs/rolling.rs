//! ECS rolling updates (deployment controller `ECS`, strategy `ROLLING`):
//! the service's `deployments` say how far the new task definition got
//! (running, desired and pending tasks per deployment) and its rollout
//! state; the deployment circuit breaker, when on, rolls back by itself.
//!
//! ECS cannot hold a rolling update where it is, so flightdeck only offers
//! the rollback: `UpdateService` with the previous task definition (the
//! older deployment's, or the plan's `stable`). The same reading of the
//! service is what [`super::observed`] falls back to where the service
//! deployment APIs are missing.

use super::call::Site;
use super::{short, EcsTarget};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::{Effect, NativeStatus, NativeVerb, Observation};

/// Reads the service; a missing one is an error naming it.
pub(crate) async fn describe_service(
    ecs: &aws_sdk_ecs::Client,
    t: &EcsTarget,
    site: &Site,
) -> Result<Service, BackendError> {
    let what = format!("DescribeServices {} in cluster {}", short(&t.service), short(&t.cluster));
    let out = ecs.describe_services().cluster(&t.cluster).services(&t.service).send().await;
    let out = out.map_err(|e| site.error(&what, e))?;
    if let Some(service) = out.services().first().filter(|s| s.status() != Some("INACTIVE")) {
        return Ok(service.clone());
    }
    let reason = out.failures().first().and_then(|f| f.reason()).unwrap_or("INACTIVE");
    let detail = format!(
        "service {} not found in cluster {} ({reason}); check target.cluster and target.service",
        short(&t.service),
        short(&t.cluster)
    );
    Err(site.refusal(&what, detail))
}

/// The plan stage a traffic (or task) share has reached: the last stage
/// whose weight it meets, the first stage before that.
pub(crate) fn stage_for(stage_weights: &[u8], percent: u8) -> usize {
    stage_weights.iter().filter(|w| **w <= percent).count().saturating_sub(1)
}

fn deployments<'a>(service: &'a Service, status: &'a str) -> impl Iterator<Item = &'a Deployment> {
    service.deployments().iter().filter(move |d| d.status() == Some(status))
}

/// The observation of a service in a rolling update.
pub fn observe(service: &Service, stage_weights: &[u8]) -> Observation {
    let primary = deployments(service, "PRIMARY").next();
    let older: Vec<&Deployment> = deployments(service, "ACTIVE").collect();
    let desired = primary.map_or(service.desired_count(), Deployment::desired_count).max(0);
    let running = primary.map_or(service.running_count(), Deployment::running_count).max(0);
    let share = if older.is_empty() && desired == running {
        100
    } else if desired > 0 {
        (running * 100 / desired).clamp(0, 100) as u8
    } else {
        0
    };
    let status = match primary.and_then(Deployment::rollout_state) {
        Some(DeploymentRolloutState::Failed) => {
            let reason = primary.and_then(Deployment::rollout_state_reason).unwrap_or("rollout failed");
            NativeStatus::Degraded { message: reason.to_owned() }
        }
        Some(DeploymentRolloutState::Completed) => NativeStatus::Healthy,
        Some(DeploymentRolloutState::InProgress) => NativeStatus::Progressing,
        // No rollout state (no circuit breaker): done when nothing older runs.
        _ if older.is_empty() && share == 100 => NativeStatus::Healthy,
        _ => NativeStatus::Progressing,
    };
    Observation {
        canary_weight: Some(share),
        native_stage: Some(stage_for(stage_weights, share)),
        native_status: Some(status),
        native_detail: Some(detail(service, primary, &older)),
        native_revision: None,
    }
}

/// "rolling checkout:42 3/4 running, 1 pending · checkout:41 2 running · circuit breaker rolls back".
fn detail(service: &Service, primary: Option<&Deployment>, older: &[&Deployment]) -> String {
    let definition = |d: &Deployment| short(d.task_definition().unwrap_or("?")).to_owned();
    let mut parts = Vec::new();
    if let Some(p) = primary {
        let pending = if p.pending_count() > 0 { format!(", {} pending", p.pending_count()) } else { String::new() };
        parts.push(format!("rolling {} {}/{} running{pending}", definition(p), p.running_count(), p.desired_count()));
    }
    parts.extend(older.iter().map(|d| format!("{} {} running", definition(d), d.running_count())));
    let breaker = service.deployment_configuration().and_then(|c| c.deployment_circuit_breaker());
    match breaker {
        Some(b) if b.enable() && b.rollback() => parts.push("circuit breaker rolls back".into()),
        Some(b) if b.enable() => parts.push("circuit breaker stops".into()),
        _ => {}
    }
    parts.join(" · ")
}

/// An ECS rolling update flightdeck watches and can roll back.
pub struct RollingService {
    ecs: aws_sdk_ecs::Client,
    target: EcsTarget,
    stable: String,
    stage_weights: Vec<u8>,
    site: Site,
}

impl RollingService {
    pub fn new(aws: &SdkConfig, target: EcsTarget, plan: &Plan) -> RollingService {
        let site = Site { label: target.label(), profile: target.profile.clone() };
        let stage_weights = plan.stages().iter().map(|s| s.weight).collect();
        RollingService { ecs: aws_sdk_ecs::Client::new(aws), stable: plan.stable.clone(), stage_weights, target, site }
    }

    /// Redeploys the previous task definition.
    async fn roll_back(&self) -> Result<(), BackendError> {
        let service = describe_service(&self.ecs, &self.target, &self.site).await?;
        let primary = deployments(&service, "PRIMARY").filter_map(Deployment::task_definition).next();
        let current = service.task_definition().or(primary).unwrap_or("");
        let runs = |definition: &str| current == definition || current.ends_with(&format!("/{definition}"));
        let older = deployments(&service, "ACTIVE").filter_map(Deployment::task_definition).find(|d| !runs(d));
        let previous = older.unwrap_or(&self.stable).to_owned();
        if runs(&previous) {
            return Ok(());
        }
        let t = &self.target;
        let call = self.ecs.update_service().cluster(&t.cluster).service(&t.service).task_definition(&previous);
        call.send()
            .await
            .map_err(|e| self.site.error(&format!("UpdateService {} to {previous}", short(&t.service)), e))?;
        Ok(())
    }
}

#[async_trait]
impl Backend for RollingService {
    fn name(&self) -> String {
        self.site.label.clone()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        let verb = effect.to_string();
        match effect {
            Effect::Native { verb: NativeVerb::Undo } => self.roll_back().await,
            Effect::Native { verb: NativeVerb::Abort } => Err(self.site.unsupported(
                &verb,
                "ECS cannot hold a rolling update where it is; roll back to redeploy the previous task definition",
            )),
            Effect::Native { .. } => Err(self.site.unsupported(
                &verb,
                "ECS runs a rolling update at its own pace (minimum healthy and maximum percent); only a rollback is possible",
            )),
            Effect::Notify(_) => Ok(()),
            _ => Err(self.site.unsupported(&verb, "ECS runs this rolling update; flightdeck only observes it")),
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let service = describe_service(&self.ecs, &self.target, &self.site).await?;
        Ok(observe(&service, &self.stage_weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};

    fn deployment(status: &str, definition: &str, running: i32, desired: i32) -> Deployment {
        let d = Deployment::builder().status(status).task_definition(definition);
        d.running_count(running).desired_count(desired).pending_count(desired - running).build()
    }

    #[test]
    fn a_rolling_update_shows_its_share_state_and_circuit_breaker() {
        let breaker = DeploymentCircuitBreaker::builder().enable(true).rollback(true).build();
        let service = Service::builder()
            .desired_count(4)
            .deployment_configuration(DeploymentConfiguration::builder().deployment_circuit_breaker(breaker).build())
            .deployments(
                Deployment::builder()
                    .status("PRIMARY")
                    .task_definition("arn:aws:ecs:eu-west-1:1:task-definition/checkout:42")
                    .running_count(2)
                    .desired_count(4)
                    .pending_count(1)
                    .rollout_state(DeploymentRolloutState::InProgress)
                    .build(),
            )
            .deployments(deployment("ACTIVE", "checkout:41", 2, 2))
            .build();
        let o = observe(&service, &[25, 50, 75, 100]);
        assert_eq!((o.canary_weight, o.native_stage), (Some(50), Some(1)));
        assert_eq!(o.native_status, Some(NativeStatus::Progressing));
        assert_eq!(
            o.native_detail.as_deref(),
            Some("rolling checkout:42 2/4 running, 1 pending · checkout:41 2 running · circuit breaker rolls back")
        );
        let done = Service::builder().desired_count(4).deployments(deployment("PRIMARY", "checkout:42", 4, 4)).build();
        assert_eq!(observe(&done, &[25, 50, 75, 100]).native_status, Some(NativeStatus::Healthy));
    }

    #[test]
    fn stages_follow_the_share() {
        assert_eq!(stage_for(&[10, 100], 0), 0);
        assert_eq!(stage_for(&[10, 100], 10), 0);
        assert_eq!(stage_for(&[10, 100], 99), 0);
        assert_eq!(stage_for(&[10, 100], 100), 1);
    }
}
