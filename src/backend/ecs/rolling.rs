//! ECS rolling updates (deployment controller `ECS`, strategy `ROLLING`).
//! [`RollingService`] is [`super::observed::ServiceDeployments`]: the
//! rolling update's service deployment says how far it got and whether
//! the circuit breaker rolled it back, and a rollback is
//! `StopServiceDeployment` `ROLLBACK` (which ECS takes for rolling updates
//! too).
//!
//! Where the service deployment APIs are missing, the service's
//! `deployments` are read instead ([`observe`]): running, desired and
//! pending tasks per deployment and its rollout state, compared with the
//! plan's canary task definition. A circuit-breaker rollback makes the
//! *old* task definition PRIMARY (and the failed one ACTIVE, `FAILED`):
//! that is a rollback, never a promotion. The rollback there is
//! `UpdateService` with the task definition before the canary (an older
//! deployment that did not fail, or the plan's `stable`), and nothing when
//! the service no longer deploys the canary: ECS rolls back already.

use super::call::Site;
use super::{short, EcsTarget};
use crate::backend::BackendError;
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
use flightdeck_core::rollout::{NativeStatus, Observation};

/// An ECS rolling update flightdeck watches and can roll back.
pub type RollingService = super::observed::ServiceDeployments;

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
pub(crate) fn stage_for(stage_weights: &[u8], percent: f64) -> usize {
    stage_weights.iter().filter(|w| f64::from(**w) <= percent).count().saturating_sub(1)
}

/// Whether task definition `definition` (ARN or `family:revision`) is `revision`.
pub(crate) fn runs(definition: &str, revision: &str) -> bool {
    definition == revision || short(definition) == short(revision)
}

/// The service's PRIMARY deployment: the task definition it deploys now.
pub(crate) fn primary(service: &Service) -> Option<&Deployment> {
    deployments(service, "PRIMARY").next()
}

/// The task definition the service deploys now: the service's own (which
/// ECS sets back on a circuit-breaker rollback), else its PRIMARY
/// deployment's.
pub(crate) fn deploying(service: &Service) -> Option<&str> {
    service.task_definition().or_else(|| primary(service).and_then(Deployment::task_definition))
}

/// The task definition before `canary`: an older deployment that is not
/// the canary's and did not fail.
pub(crate) fn previous<'a>(service: &'a Service, canary: &str) -> Option<&'a str> {
    deployments(service, "ACTIVE")
        .filter(|d| d.rollout_state() != Some(&DeploymentRolloutState::Failed))
        .filter_map(Deployment::task_definition)
        .find(|d| !runs(d, canary))
}

fn percent(part: i32, whole: i32) -> u8 {
    if whole > 0 {
        (part.max(0) * 100 / whole).clamp(0, 100) as u8
    } else {
        0
    }
}

fn deployments<'a>(service: &'a Service, status: &'a str) -> impl Iterator<Item = &'a Deployment> {
    service.deployments().iter().filter(move |d| d.status() == Some(status))
}

/// The observation of a service in a rolling update of `canary`.
pub fn observe(service: &Service, stage_weights: &[u8], canary: &str) -> Observation {
    let primary = primary(service);
    let older: Vec<&Deployment> = deployments(service, "ACTIVE").collect();
    let detail = detail(service, primary, &older);
    if let Some(now) = deploying(service).filter(|d| !runs(d, canary)) {
        // The service deploys another task definition: the circuit breaker
        // (or a person) rolled the canary back, or it is not deployed yet.
        let now = short(now);
        let failed = older.iter().find(|d| d.task_definition().is_some_and(|t| runs(t, canary)));
        let share = failed.map_or(0, |d| percent(d.running_count(), service.desired_count()));
        let message = match failed {
            Some(d) => {
                let why = d.rollout_state_reason().unwrap_or("the canary's deployment failed");
                format!("rolling back to {now}: {why}")
            }
            None => {
                format!("the service runs {now}, not the canary {}: rolled back, or not deployed yet", short(canary))
            }
        };
        return Observation {
            canary_weight: Some(share),
            native_stage: Some(stage_for(stage_weights, f64::from(share))),
            native_status: Some(NativeStatus::Aborted { message }),
            native_detail: Some(detail),
            native_revision: None,
            native_step: None,
            ..Default::default()
        };
    }
    let desired = primary.map_or(service.desired_count(), Deployment::desired_count).max(0);
    let running = primary.map_or(service.running_count(), Deployment::running_count).max(0);
    let share = if older.is_empty() && desired == running { 100 } else { percent(running, desired) };
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
        native_stage: Some(stage_for(stage_weights, f64::from(share))),
        native_status: Some(status),
        native_detail: Some(detail),
        native_revision: None,
        native_step: None,
        ..Default::default()
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
        let o = observe(&service, &[25, 50, 75, 100], "checkout:42");
        assert_eq!((o.canary_weight, o.native_stage), (Some(50), Some(1)));
        assert_eq!(o.native_status, Some(NativeStatus::Progressing));
        assert_eq!(
            o.native_detail.as_deref(),
            Some("rolling checkout:42 2/4 running, 1 pending · checkout:41 2 running · circuit breaker rolls back")
        );
        let done = Service::builder().desired_count(4).deployments(deployment("PRIMARY", "checkout:42", 4, 4)).build();
        assert_eq!(observe(&done, &[25, 50, 75, 100], "checkout:42").native_status, Some(NativeStatus::Healthy));
    }

    /// The circuit breaker rolled checkout:42 back: checkout:41 is PRIMARY
    /// again, the failed deployment ACTIVE (then gone).
    #[test]
    fn a_circuit_breaker_rollback_is_a_rollback_not_a_promotion() {
        let breaker = Deployment::builder()
            .status("PRIMARY")
            .task_definition("arn:aws:ecs:eu-west-1:1:task-definition/checkout:41")
            .running_count(3)
            .desired_count(4)
            .rollout_state(DeploymentRolloutState::InProgress)
            .build();
        let failed = Deployment::builder()
            .status("ACTIVE")
            .task_definition("arn:aws:ecs:eu-west-1:1:task-definition/checkout:42")
            .running_count(1)
            .desired_count(0)
            .rollout_state(DeploymentRolloutState::Failed)
            .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
            .build();
        let service = Service::builder().desired_count(4).deployments(breaker).deployments(failed.clone()).build();
        let o = observe(&service, &[25, 100], "checkout:42");
        let Some(NativeStatus::Aborted { message }) = &o.native_status else { panic!("{:?}", o.native_status) };
        assert!(message.contains("rolling back to checkout:41: ECS deployment circuit breaker"), "{message}");
        assert_eq!(o.canary_weight, Some(25));
        assert_eq!(previous(&service, "checkout:42"), None, "the failed deployment is never the one to go back to");

        let back = Service::builder().desired_count(4).deployments(deployment("PRIMARY", "checkout:41", 4, 4)).build();
        let o = observe(&back, &[25, 100], "checkout:42");
        assert!(matches!(o.native_status, Some(NativeStatus::Aborted { .. })), "not promoted: {:?}", o.native_status);
        assert_eq!(o.canary_weight, Some(0));
    }

    #[test]
    fn stages_follow_the_share() {
        assert_eq!(stage_for(&[10, 100], 0.0), 0);
        assert_eq!(stage_for(&[10, 100], 10.0), 0);
        assert_eq!(stage_for(&[10, 100], 99.9), 0);
        assert_eq!(stage_for(&[10, 100], 100.0), 1);
    }
}
