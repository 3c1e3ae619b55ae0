//! ECS's own deployments (deployment controller `ECS`): flightdeck reads
//! the service and its current service deployment (`DescribeServices`,
//! then `ListServiceDeployments` / `DescribeServiceDeployments`) and
//! mirrors it: the strategy, the traffic shifted to the new revision, the
//! bake time, the lifecycle stage, the CloudWatch alarms and the circuit
//! breaker that guard it. ECS decides; flightdeck's analysis is advice.
//!
//! | status | flightdeck phase |
//! |---|---|
//! | `PENDING`, `IN_PROGRESS` | progressing |
//! | `SUCCESSFUL` | promoted |
//! | `STOPPED`, `ROLLBACK_REQUESTED`, `ROLLBACK_IN_PROGRESS`, `ROLLBACK_SUCCESSFUL` | aborted (with the reason) |
//! | `ROLLBACK_FAILED` | failed |
//!
//! Abort and rollback are `StopServiceDeployment` with stop type
//! `ROLLBACK`. ECS has no pause, resume, promote or retry for a service
//! deployment: those are refused with the reason, never faked. Where the
//! service deployment APIs do not answer (an older endpoint, a local fake),
//! the service's `deployments` are read as for a rolling update
//! ([`super::rolling`]) and the detail says why.

use super::call::Site;
use super::rolling::{self, describe_service, stage_for};
use super::EcsTarget;
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{
    DeploymentConfiguration, DeploymentStrategy, Service, ServiceDeployment, ServiceDeploymentStatus as Status,
    StopServiceDeploymentStopType,
};
use flightdeck_core::plan::Plan;
use flightdeck_core::rollout::{Effect, NativeStatus, NativeVerb, Observation};

/// The service deployments of one ECS-controlled service.
pub struct ServiceDeployments {
    ecs: aws_sdk_ecs::Client,
    target: EcsTarget,
    stage_weights: Vec<u8>,
    site: Site,
}

impl ServiceDeployments {
    pub fn new(aws: &SdkConfig, target: EcsTarget, plan: &Plan) -> ServiceDeployments {
        let site = Site { label: target.label(), profile: target.profile.clone() };
        let stage_weights = plan.stages().iter().map(|s| s.weight).collect();
        ServiceDeployments { ecs: aws_sdk_ecs::Client::new(aws), target, stage_weights, site }
    }

    /// The service's current (or latest) service deployment, if it has one.
    async fn current(&self, service: &Service) -> Result<Option<ServiceDeployment>, BackendError> {
        let arn = match service.current_service_deployment() {
            Some(arn) => arn.to_owned(),
            None => {
                let t = &self.target;
                let call = self.ecs.list_service_deployments().cluster(&t.cluster).service(&t.service);
                let out = call.send().await.map_err(|e| self.site.error("ListServiceDeployments", e))?;
                // In progress first, then the latest started.
                let latest = out.service_deployments().iter().max_by_key(|d| {
                    let live =
                        matches!(d.status(), Some(Status::InProgress | Status::Pending | Status::RollbackInProgress));
                    (live, d.started_at().or(d.created_at()).map(|t| t.as_nanos()))
                });
                match latest.and_then(|d| d.service_deployment_arn()) {
                    Some(arn) => arn.to_owned(),
                    None => return Ok(None),
                }
            }
        };
        let call = self.ecs.describe_service_deployments().service_deployment_arns(&arn);
        let out = call.send().await.map_err(|e| self.site.error(&format!("DescribeServiceDeployments {arn}"), e))?;
        Ok(out.service_deployments().first().cloned())
    }

    /// `StopServiceDeployment` with a rollback, for abort and rollback alike.
    async fn stop(&self, verb: &str) -> Result<(), BackendError> {
        let service = describe_service(&self.ecs, &self.target, &self.site).await?;
        let Some(deployment) = self.current(&service).await? else {
            return Err(self.site.refusal(verb, "the service has no service deployment to stop".into()));
        };
        let arn = deployment.service_deployment_arn().unwrap_or_default();
        if !matches!(deployment.status(), Some(Status::InProgress | Status::Pending)) {
            let status = deployment.status().map_or("unknown", Status::as_str);
            return Err(self
                .site
                .refusal(verb, format!("service deployment {arn} is {status}; only one in progress can be stopped")));
        }
        let call = self.ecs.stop_service_deployment().service_deployment_arn(arn);
        call.stop_type(StopServiceDeploymentStopType::Rollback)
            .send()
            .await
            .map_err(|e| self.site.error(&format!("StopServiceDeployment {arn} (ROLLBACK)"), e))?;
        Ok(())
    }
}

/// What an ECS service deployment means to the core.
pub fn observe(d: &ServiceDeployment, stage_weights: &[u8]) -> Observation {
    let target = d.target_service_revision();
    let traffic =
        target.and_then(|r| r.requested_production_traffic_weight()).map(|w| w.clamp(0.0, 100.0).round() as u8);
    // Without traffic weights (ROLLING): the share of the new revision's tasks.
    let tasks = target
        .filter(|r| r.requested_task_count() > 0)
        .map(|r| (r.running_task_count().max(0) * 100 / r.requested_task_count()).clamp(0, 100) as u8);
    let weight = match d.status() {
        Some(Status::Successful) => 100,
        Some(Status::RollbackSuccessful | Status::Stopped) => 0,
        _ => traffic.or(tasks).unwrap_or(0),
    };
    Observation {
        canary_weight: Some(weight),
        native_stage: Some(stage_for(stage_weights, weight)),
        native_status: Some(status(d)),
        native_detail: Some(detail(d, weight)),
        native_revision: None,
    }
}

fn status(d: &ServiceDeployment) -> NativeStatus {
    let reason = |fallback: &str| {
        let why = d.rollback().and_then(|r| r.reason()).or(d.status_reason()).unwrap_or("");
        if why.is_empty() {
            fallback.to_owned()
        } else {
            format!("{fallback}: {why}")
        }
    };
    match d.status() {
        Some(Status::Successful) => NativeStatus::Healthy,
        Some(Status::Stopped) => NativeStatus::Aborted { message: reason("stopped") },
        Some(Status::RollbackRequested | Status::RollbackInProgress) => {
            NativeStatus::Aborted { message: reason("rolling back") }
        }
        Some(Status::RollbackSuccessful) => NativeStatus::Aborted { message: reason("rolled back") },
        Some(Status::RollbackFailed) => NativeStatus::Degraded { message: reason("rollback failed") },
        _ => NativeStatus::Progressing,
    }
}

/// "CANARY 10 % then all · bake 15 min · BAKE_TIME · 10 % of traffic · alarms checkout-5xx (MONITORING) · circuit breaker 0/3".
fn detail(d: &ServiceDeployment, weight: u8) -> String {
    let config = d.deployment_configuration();
    let mut parts = vec![strategy(config)];
    if let Some(bake) = config.and_then(DeploymentConfiguration::bake_time_in_minutes) {
        parts.push(format!("bake {bake} min"));
    }
    if let Some(stage) = d.lifecycle_stage() {
        parts.push(stage.as_str().to_owned());
    }
    parts.push(format!("{weight} % of traffic"));
    if let Some(alarms) = d.alarms().filter(|a| !a.alarm_names().is_empty()) {
        let status = alarms.status().map_or("", |s| s.as_str());
        let mut text = format!("alarms {} ({status})", alarms.alarm_names().join(", "));
        if !alarms.triggered_alarm_names().is_empty() {
            text += &format!(" triggered: {}", alarms.triggered_alarm_names().join(", "));
        }
        parts.push(text);
    }
    if let Some(breaker) = d.deployment_circuit_breaker() {
        let status = breaker.status().map_or("", |s| s.as_str());
        parts.push(format!("circuit breaker {}/{} ({status})", breaker.failure_count(), breaker.threshold()));
    }
    parts.join(" · ")
}

fn strategy(config: Option<&DeploymentConfiguration>) -> String {
    let kind = config.and_then(DeploymentConfiguration::strategy);
    match kind {
        Some(DeploymentStrategy::Canary) => {
            let c = config.and_then(|c| c.canary_configuration());
            let percent = c.and_then(|c| c.canary_percent()).unwrap_or(0.0);
            let bake = c.and_then(|c| c.canary_bake_time_in_minutes()).unwrap_or(0);
            format!("CANARY {percent} % for {bake} min, then all")
        }
        Some(DeploymentStrategy::Linear) => {
            let l = config.and_then(|c| c.linear_configuration());
            let step = l.and_then(|l| l.step_percent()).unwrap_or(0.0);
            let bake = l.and_then(|l| l.step_bake_time_in_minutes()).unwrap_or(0);
            format!("LINEAR {step} % every {bake} min")
        }
        Some(other) => other.as_str().to_owned(),
        None => "ROLLING".to_owned(),
    }
}

/// Why ECS has no such verb.
fn lacks(verb: &NativeVerb) -> &'static str {
    match verb {
        NativeVerb::Pause | NativeVerb::Resume => {
            "ECS cannot pause a service deployment (a lifecycle hook can hold it); abort or roll back instead"
        }
        NativeVerb::Promote | NativeVerb::PromoteFull => {
            "ECS shifts traffic and bakes on its own schedule; no call skips a step or the bake"
        }
        NativeVerb::Retry => "ECS has no retry; deploy the revision again with UpdateService",
        NativeVerb::Restart | NativeVerb::SetImage { .. } | NativeVerb::UndoTo { .. } => {
            "a new ECS deployment is a new task definition given to UpdateService; flightdeck does not register one"
        }
        NativeVerb::TerminateAnalysis => "ECS runs no analysis of its own to stop; its alarms roll back by themselves",
        NativeVerb::Abort | NativeVerb::Undo => "",
    }
}

#[async_trait]
impl Backend for ServiceDeployments {
    fn name(&self) -> String {
        self.site.label.clone()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        let verb = effect.to_string();
        match effect {
            Effect::Native { verb: NativeVerb::Abort | NativeVerb::Undo } => self.stop(&verb).await,
            Effect::Native { verb: other } => Err(self.site.unsupported(&verb, lacks(other))),
            Effect::Notify(_) => Ok(()),
            _ => Err(self.site.unsupported(&verb, "ECS runs this deployment; flightdeck only sends its verbs")),
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let service = describe_service(&self.ecs, &self.target, &self.site).await?;
        match self.current(&service).await {
            Ok(Some(deployment)) => Ok(observe(&deployment, &self.stage_weights)),
            Ok(None) => Ok(rolling::observe(&service, &self.stage_weights)),
            // The service is there; only the deployment APIs are not.
            Err(e) => {
                let mut seen = rolling::observe(&service, &self.stage_weights);
                let detail = seen.native_detail.take().unwrap_or_default();
                seen.native_detail = Some(format!("{detail} · service deployments unavailable ({e})"));
                Ok(seen)
            }
        }
    }
}
