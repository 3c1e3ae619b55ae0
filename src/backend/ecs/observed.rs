//! ECS's own deployments (deployment controller `ECS`): flightdeck reads
//! the service and its current service deployment (`DescribeServices`,
//! then `ListServiceDeployments` / `DescribeServiceDeployments`, and the
//! target revision with `DescribeServiceRevisions`) and mirrors it: the
//! strategy, the traffic shifted to the new revision, the bake time, the
//! lifecycle stage and its hooks, the CloudWatch alarms and the circuit
//! breaker that guard it. ECS decides; flightdeck's analysis is advice.
//! The same reading serves a rolling update ([`super::rolling`]): its
//! service deployment is where a circuit-breaker rollback shows.
//!
//! | status | flightdeck phase |
//! |---|---|
//! | `PENDING`, `IN_PROGRESS` | progressing |
//! | `IN_PROGRESS` at a `PAUSE` hook `AWAITING_ACTION` | paused (until when, and what ECS does then) |
//! | `SUCCESSFUL` | promoted |
//! | `STOP_REQUESTED`, `STOPPED`, `ROLLBACK_REQUESTED`, `ROLLBACK_IN_PROGRESS`, `ROLLBACK_SUCCESSFUL` | aborted (with the reason) |
//! | `ROLLBACK_FAILED` | failed |
//!
//! The revision is the deployment's target service revision: its task
//! definition (and ARN id), so a later deployment is a new rollout and a
//! command sent for the one before is stale. The weight is the production
//! traffic ECS gives the target revision (without one, as in a rolling
//! update, its share of running tasks); the detail shows it to 0.1 %.
//!
//! | verb | call |
//! |---|---|
//! | abort, rollback | at a `PAUSE` hook: `ContinueServiceDeployment` `ROLLBACK`; otherwise `StopServiceDeployment` `ROLLBACK` (also for a rolling update); nothing while ECS rolls back already |
//! | promote, promote-full, resume | at a `PAUSE` hook: `ContinueServiceDeployment` `CONTINUE`; otherwise refused: ECS shifts and bakes on its own schedule |
//! | pause, retry, … | refused with the reason, never faked |
//!
//! Only an endpoint without the service deployment APIs (an answer of
//! `UnknownOperationException`, or HTTP 501 from an emulator) is read the
//! old way, from the service's `deployments` ([`super::rolling`]), and the
//! detail says so. Any other failure of these calls (throttling,
//! AccessDenied, a server error) is an observe error: a guess from task
//! counts would show a canary's tasks as its traffic. Services deployed
//! by CodeDeploy (controller `CODE_DEPLOY`) are refused with the reason.

use super::call::{self, Site};
use super::rolling::{self, describe_service, stage_for};
use super::{short, EcsTarget};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ecs::types::{
    DeploymentConfiguration, DeploymentControllerType, DeploymentLifecycleHookAction as HookAction,
    DeploymentLifecycleHookDetail, DeploymentLifecycleHookStatus as HookStatus,
    DeploymentLifecycleHookTargetType as HookType, DeploymentStrategy, Failure, Service, ServiceDeployment,
    ServiceDeploymentBrief, ServiceDeploymentStatus as Status, StopServiceDeploymentStopType,
};
use flightdeck_core::plan::{Plan, Strategy};
use flightdeck_core::rollout::{Effect, NativeStatus, NativeVerb, Observation};
use std::sync::Mutex;

/// Pages of `ListServiceDeployments` read at most (100 deployments each;
/// ECS keeps 90 days of them).
const MAX_PAGES: usize = 20;
/// What ECS takes when a setting is not given (API reference,
/// `CanaryConfiguration` and `LinearConfiguration`).
const CANARY_PERCENT: f64 = 5.0;
const CANARY_BAKE_MIN: i32 = 10;
const LINEAR_STEP_PERCENT: f64 = 10.0;
const LINEAR_BAKE_MIN: i32 = 6;

/// What `DescribeServiceRevisions` says of a revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revision {
    /// The task definition (ARN or `family:revision`).
    pub task_definition: Option<String>,
    /// `container=image` of each container.
    pub images: Vec<String>,
}

/// A failed service deployment call: the endpoint has no such API, or it
/// refused this call.
enum ApiError {
    Missing(BackendError),
    Failed(BackendError),
}

impl ApiError {
    fn error(self) -> BackendError {
        match self {
            ApiError::Missing(e) | ApiError::Failed(e) => e,
        }
    }
}

/// The service deployments of one ECS-controlled service (and its rolling
/// updates, see [`super::rolling::RollingService`]).
pub struct ServiceDeployments {
    ecs: aws_sdk_ecs::Client,
    target: EcsTarget,
    stage_weights: Vec<u8>,
    site: Site,
    /// The plan's task definitions, for the reading without service deployments.
    stable: String,
    canary: String,
    rolling: bool,
    /// Service revisions never change: the last one read, by ARN.
    revision: Mutex<Option<(String, Revision)>>,
}

impl ServiceDeployments {
    pub fn new(aws: &SdkConfig, target: EcsTarget, plan: &Plan) -> ServiceDeployments {
        let site = Site { label: target.label(), profile: target.profile.clone() };
        let stage_weights = plan.stages().iter().map(|s| s.weight).collect();
        ServiceDeployments {
            ecs: aws_sdk_ecs::Client::new(aws),
            target,
            stage_weights,
            site,
            stable: plan.stable.clone(),
            canary: plan.canary.clone(),
            rolling: matches!(plan.strategy, Strategy::Rolling { .. }),
            revision: Mutex::new(None),
        }
    }

    fn api<E>(&self, action: &str, e: SdkError<E, HttpResponse>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if call::is_unknown_operation(&e) {
            ApiError::Missing(self.site.error(action, e))
        } else {
            ApiError::Failed(self.site.error(action, e))
        }
    }

    fn failed(&self, action: &str, failures: &[Failure]) -> ApiError {
        let said: Vec<String> = failures
            .iter()
            .map(|f| {
                let what = [f.reason(), f.detail()].into_iter().flatten().collect::<Vec<_>>().join(": ");
                format!("{} ({})", if what.is_empty() { "no reason given" } else { &what }, f.arn().unwrap_or("?"))
            })
            .collect();
        let detail = if said.is_empty() { "the answer holds nothing".to_owned() } else { said.join("; ") };
        ApiError::Failed(self.site.refusal(action, detail))
    }

    /// The service, refused when another controller deploys it.
    async fn service(&self) -> Result<Service, BackendError> {
        let service = describe_service(&self.ecs, &self.target, &self.site).await?;
        let what = format!("DescribeServices {}", short(&self.target.service));
        match service.deployment_controller().map(|c| c.r#type()) {
            Some(DeploymentControllerType::CodeDeploy) => Err(self.site.refusal(
                &what,
                "the service is deployed by CodeDeploy (deployment controller CODE_DEPLOY): its traffic shifts and \
                 verbs are CodeDeploy's, not ECS service deployments; flightdeck does not watch CodeDeploy \
                 deployments (follow it in CodeDeploy, or move the service to the ECS controller)"
                    .into(),
            )),
            Some(DeploymentControllerType::External) => Err(self.site.refusal(
                &what,
                "the service has the EXTERNAL deployment controller: set target.controller = \"external\" \
                 (task sets and listener weights)"
                    .into(),
            )),
            _ => Ok(service),
        }
    }

    /// The ARN of the service's live (else latest) service deployment, from
    /// every page of `ListServiceDeployments`, this service's only.
    async fn latest(&self) -> Result<Option<String>, ApiError> {
        let t = &self.target;
        let key = |d: &ServiceDeploymentBrief| {
            let live = matches!(
                d.status(),
                Some(
                    Status::Pending
                        | Status::InProgress
                        | Status::StopRequested
                        | Status::RollbackRequested
                        | Status::RollbackInProgress
                )
            );
            (live, d.created_at().or(d.started_at()).map(|t| (t.secs(), t.subsec_nanos())))
        };
        let mut best: Option<ServiceDeploymentBrief> = None;
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let call = self.ecs.list_service_deployments().cluster(&t.cluster).service(&t.service);
            let out = call.set_next_token(token.take()).send().await.map_err(|e| {
                self.api(&format!("ListServiceDeployments {} in cluster {}", short(&t.service), short(&t.cluster)), e)
            })?;
            let ours = out.service_deployments().iter().filter(|d| d.service_arn().is_none_or(|a| self.is_service(a)));
            for d in ours {
                if best.as_ref().is_none_or(|b| key(d) > key(b)) {
                    best = Some(d.clone());
                }
            }
            token = out.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(best.and_then(|d| d.service_deployment_arn().map(str::to_owned)))
    }

    fn is_service(&self, arn: &str) -> bool {
        arn == self.target.service || short(arn) == short(&self.target.service)
    }

    /// The service's current (or latest) service deployment, if it has one,
    /// and what its target revision deploys.
    async fn current(&self, service: &Service) -> Result<Option<(ServiceDeployment, Option<Revision>)>, ApiError> {
        let arn = match service.current_service_deployment() {
            Some(arn) => arn.to_owned(),
            None => match self.latest().await? {
                Some(arn) => arn,
                None => return Ok(None),
            },
        };
        let what = format!("DescribeServiceDeployments {arn}");
        let call = self.ecs.describe_service_deployments().service_deployment_arns(&arn);
        let out = call.send().await.map_err(|e| self.api(&what, e))?;
        let Some(deployment) = out.service_deployments().first().cloned() else {
            return Err(self.failed(&what, out.failures()));
        };
        let revision = match deployment.target_service_revision().and_then(|r| r.arn()) {
            Some(arn) => self.revision(arn).await?,
            None => None,
        };
        Ok(Some((deployment, revision)))
    }

    /// `DescribeServiceRevisions` of one revision, read once.
    async fn revision(&self, arn: &str) -> Result<Option<Revision>, ApiError> {
        if let Some((seen, revision)) = self.revision.lock().unwrap().as_ref() {
            if seen == arn {
                return Ok(Some(revision.clone()));
            }
        }
        let what = format!("DescribeServiceRevisions {arn}");
        let out = match self.ecs.describe_service_revisions().service_revision_arns(arn).send().await {
            Ok(out) => out,
            Err(e) => {
                return match self.api(&what, e) {
                    // The deployment still names its revision by ARN.
                    ApiError::Missing(_) => Ok(None),
                    failed => Err(failed),
                };
            }
        };
        let Some(r) = out.service_revisions().first() else {
            return Err(self.failed(&what, out.failures()));
        };
        let images = r.container_images().iter().map(|c| {
            let image = c.image().or(c.image_digest()).unwrap_or("?");
            match c.container_name() {
                Some(name) => format!("{name}={image}"),
                None => image.to_owned(),
            }
        });
        let revision = Revision { task_definition: r.task_definition().map(str::to_owned), images: images.collect() };
        *self.revision.lock().unwrap() = Some((arn.to_owned(), revision.clone()));
        Ok(Some(revision))
    }

    /// Abort and rollback alike: the service deployment rolled back.
    async fn roll_back(&self, verb: &str) -> Result<(), BackendError> {
        let service = self.service().await?;
        let (deployment, _) = match self.current(&service).await {
            Ok(Some(current)) => current,
            Ok(None) if self.rolling => return self.redeploy_previous(verb, &service).await,
            Ok(None) => return Err(self.site.refusal(verb, "the service has no service deployment to stop".into())),
            Err(ApiError::Missing(e)) if self.rolling => {
                tracing::info!("{e}; rolling back by redeploying the previous task definition");
                return self.redeploy_previous(verb, &service).await;
            }
            Err(e) => return Err(e.error()),
        };
        let arn = deployment.service_deployment_arn().unwrap_or_default();
        if let Some(hook) = awaiting_pause(&deployment) {
            return self.continue_hook(arn, hook, HookAction::Rollback).await;
        }
        match deployment.status() {
            Some(Status::Pending | Status::InProgress) => {
                let call = self.ecs.stop_service_deployment().service_deployment_arn(arn);
                call.stop_type(StopServiceDeploymentStopType::Rollback)
                    .send()
                    .await
                    .map_err(|e| self.site.error(&format!("StopServiceDeployment {arn} (ROLLBACK)"), e))?;
                Ok(())
            }
            // ECS rolls back already (its own rollback, or ours sent before).
            Some(Status::RollbackRequested | Status::RollbackInProgress) => Ok(()),
            Some(Status::StopRequested) => Err(self.site.refusal(
                verb,
                format!(
                    "ECS is stopping service deployment {arn} (STOP_REQUESTED); a stop under way goes on as a stop"
                ),
            )),
            other => {
                let status = other.map_or("unknown", Status::as_str);
                Err(self.site.refusal(
                    verb,
                    format!("service deployment {arn} is {status}; only one in progress can be rolled back"),
                ))
            }
        }
    }

    /// Promote and resume: a deployment waiting at a PAUSE hook goes on.
    async fn go_on(&self, verb: &str, native: &NativeVerb) -> Result<(), BackendError> {
        let service = self.service().await?;
        let current = self.current(&service).await.map_err(ApiError::error)?;
        let waiting = current.as_ref().and_then(|(d, _)| Some((d.service_deployment_arn()?, awaiting_pause(d)?)));
        match waiting {
            Some((arn, hook)) => self.continue_hook(arn, hook, HookAction::Continue).await,
            None => Err(self.site.unsupported(verb, lacks(native, self.rolling))),
        }
    }

    async fn continue_hook(
        &self,
        arn: &str,
        hook: &DeploymentLifecycleHookDetail,
        action: HookAction,
    ) -> Result<(), BackendError> {
        let id = hook.hook_id().unwrap_or_default();
        let what = format!("ContinueServiceDeployment {arn} hook {id} ({})", action.as_str());
        let call = self.ecs.continue_service_deployment().service_deployment_arn(arn).hook_id(id);
        call.action(action).send().await.map_err(|e| self.site.error(&what, e))?;
        Ok(())
    }

    /// A rolling update's rollback where the service deployment APIs are
    /// missing: `UpdateService` back to the task definition before the
    /// canary, never to the canary's (a failed one included).
    async fn redeploy_previous(&self, verb: &str, service: &Service) -> Result<(), BackendError> {
        let Some(primary) = rolling::deploying(service).filter(|d| rolling::runs(d, &self.canary)) else {
            // The canary is not what the service deploys: ECS rolls back
            // already (its circuit breaker), or it is back.
            return Ok(());
        };
        let previous = rolling::previous(service, &self.canary).unwrap_or(&self.stable).to_owned();
        if rolling::runs(primary, &previous) || rolling::runs(&previous, &self.canary) {
            let detail = format!("no task definition before the canary {} to go back to", self.canary);
            return Err(self.site.refusal(verb, detail));
        }
        let t = &self.target;
        let call = self.ecs.update_service().cluster(&t.cluster).service(&t.service).task_definition(&previous);
        call.send()
            .await
            .map_err(|e| self.site.error(&format!("UpdateService {} to {previous}", short(&t.service)), e))?;
        Ok(())
    }
}

/// The PAUSE hook a deployment waits at, if any.
fn awaiting_pause(d: &ServiceDeployment) -> Option<&DeploymentLifecycleHookDetail> {
    if !matches!(d.status(), Some(Status::InProgress | Status::Pending)) {
        return None;
    }
    d.lifecycle_hook_details()
        .iter()
        .find(|h| h.target_type() == Some(&HookType::Pause) && h.status() == Some(&HookStatus::AwaitingAction))
}

/// An instant as `2026-05-04T12:00:00Z`.
fn when(t: &DateTime) -> String {
    t.fmt(DateTimeFormat::DateTime).unwrap_or_else(|_| format!("{} s after 1970", t.secs()))
}

/// The weight the core gets for an exact share: rounded, but never 0 while
/// some traffic goes to the revision nor 100 while some stays away.
fn whole(percent: f64) -> u8 {
    match percent {
        p if p <= 0.0 => 0,
        p if p >= 100.0 => 100,
        p => p.round().clamp(1.0, 99.0) as u8,
    }
}

/// `2.5`, `10`: a share to 0.1 %.
fn tenths(percent: f64) -> String {
    format!("{}", (percent * 10.0).round() / 10.0)
}

/// What an ECS service deployment means to the core, with its target
/// revision as `DescribeServiceRevisions` gave it.
pub fn observe(d: &ServiceDeployment, revision: Option<&Revision>, stage_weights: &[u8]) -> Observation {
    let target = d.target_service_revision();
    let traffic = target.and_then(|r| r.requested_production_traffic_weight()).map(|w| w.clamp(0.0, 100.0));
    // Without traffic weights (ROLLING): the share of the new revision's tasks.
    let tasks = target
        .filter(|r| r.requested_task_count() > 0)
        .map(|r| (f64::from(r.running_task_count().max(0)) * 100.0 / f64::from(r.requested_task_count())).min(100.0));
    let percent = match d.status() {
        Some(Status::Successful) => 100.0,
        Some(Status::RollbackSuccessful) => 0.0,
        // Stopped (or stopping) leaves traffic where it is: read it.
        _ => traffic.or(tasks).unwrap_or(0.0),
    };
    Observation {
        canary_weight: Some(whole(percent)),
        native_stage: Some(stage_for(stage_weights, percent)),
        native_status: Some(status(d)),
        native_detail: Some(detail(d, revision, percent)),
        native_revision: identity(d, revision),
        native_step: None,
        ..Default::default()
    }
}

/// "checkout:42 (service revision 8219047743001845514)": the target revision.
fn identity(d: &ServiceDeployment, revision: Option<&Revision>) -> Option<String> {
    let id = short(d.target_service_revision()?.arn()?);
    Some(match revision.and_then(|r| r.task_definition.as_deref()) {
        Some(definition) => format!("{} (service revision {id})", short(definition)),
        None => format!("service revision {id}"),
    })
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
        Some(Status::StopRequested) => NativeStatus::Aborted { message: reason("stopping") },
        Some(Status::Stopped) => NativeStatus::Aborted { message: reason("stopped") },
        Some(Status::RollbackRequested | Status::RollbackInProgress) => {
            NativeStatus::Aborted { message: reason("rolling back") }
        }
        Some(Status::RollbackSuccessful) => NativeStatus::Aborted { message: reason("rolled back") },
        Some(Status::RollbackFailed) => NativeStatus::Degraded { message: reason("rollback failed") },
        _ => match awaiting_pause(d) {
            Some(hook) => NativeStatus::Paused { reason: held(d, hook), step: None, before_switch: false },
            None => NativeStatus::Progressing,
        },
    }
}

/// "ECS waits at a PAUSE hook (POST_TEST_TRAFFIC_SHIFT) for continue or roll back; at 2026-05-04T12:00:00Z it rolls back".
fn held(d: &ServiceDeployment, hook: &DeploymentLifecycleHookDetail) -> String {
    let stage = d.lifecycle_stage().map_or(String::new(), |s| format!(" ({})", s.as_str()));
    let then = match hook.timeout_action() {
        Some(HookAction::Continue) => "goes on",
        _ => "rolls back",
    };
    let deadline = match hook.expires_at() {
        Some(at) => format!("at {} ECS {then}", when(at)),
        // ContinueServiceDeployment: a PAUSE hook times out after 24 h by default, then rolls back.
        None => format!("24 h after the hook began ECS {then} (the default)"),
    };
    format!("ECS waits at a PAUSE hook{stage} for promote (CONTINUE) or rollback (ROLLBACK); {deadline}")
}

/// "CANARY 10 % for 5 min, then all · bake 15 min · BAKE_TIME · 10 % of traffic · checkout:42 (web=…) · alarms checkout-5xx (MONITORING) · circuit breaker 0/3".
fn detail(d: &ServiceDeployment, revision: Option<&Revision>, percent: f64) -> String {
    let config = d.deployment_configuration();
    let mut parts = vec![strategy(config)];
    if let Some(bake) = config.and_then(DeploymentConfiguration::bake_time_in_minutes) {
        parts.push(format!("bake {bake} min"));
    }
    if let Some(stage) = d.lifecycle_stage() {
        parts.push(stage.as_str().to_owned());
    }
    parts.push(format!("{} % of traffic", tenths(percent)));
    if let Some(r) = revision {
        let definition = r.task_definition.as_deref().map_or("?", short);
        if r.images.is_empty() {
            parts.push(definition.to_owned());
        } else {
            parts.push(format!("{definition} ({})", r.images.join(", ")));
        }
    }
    for hook in d.lifecycle_hook_details() {
        let live = matches!(hook.status(), Some(HookStatus::InProgress | HookStatus::AwaitingAction));
        if live {
            let kind = hook.target_type().map_or("hook", |t| t.as_str());
            let status = hook.status().map_or("", |s| s.as_str());
            let until = hook.expires_at().map_or(String::new(), |t| format!(" until {}", when(t)));
            parts.push(format!("{kind} hook {status}{until}"));
        }
    }
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

/// The strategy, with ECS's defaults where a setting is not given.
fn strategy(config: Option<&DeploymentConfiguration>) -> String {
    let kind = config.and_then(DeploymentConfiguration::strategy);
    match kind {
        Some(DeploymentStrategy::Canary) => {
            let c = config.and_then(|c| c.canary_configuration());
            let percent = c.and_then(|c| c.canary_percent()).unwrap_or(CANARY_PERCENT);
            let bake = c.and_then(|c| c.canary_bake_time_in_minutes()).unwrap_or(CANARY_BAKE_MIN);
            format!("CANARY {} % for {bake} min, then all", tenths(percent))
        }
        Some(DeploymentStrategy::Linear) => {
            let l = config.and_then(|c| c.linear_configuration());
            let step = l.and_then(|l| l.step_percent()).unwrap_or(LINEAR_STEP_PERCENT);
            let bake = l.and_then(|l| l.step_bake_time_in_minutes()).unwrap_or(LINEAR_BAKE_MIN);
            format!("LINEAR {} % every {bake} min", tenths(step))
        }
        Some(other) => other.as_str().to_owned(),
        None => "ROLLING".to_owned(),
    }
}

/// Why ECS has no such verb.
fn lacks(verb: &NativeVerb, rolling: bool) -> &'static str {
    match verb {
        NativeVerb::Pause | NativeVerb::Resume | NativeVerb::Promote | NativeVerb::PromoteFull if rolling => {
            "ECS runs a rolling update at its own pace (minimum healthy and maximum percent); only a rollback is possible"
        }
        NativeVerb::Pause | NativeVerb::Resume => {
            "ECS cannot pause a service deployment (a PAUSE lifecycle hook can hold it, and resume continues it there); \
             abort or roll back instead"
        }
        NativeVerb::Promote | NativeVerb::PromoteFull => {
            "ECS shifts traffic and bakes on its own schedule; no call skips a step or the bake (only a deployment \
             waiting at a PAUSE lifecycle hook can be continued)"
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
            Effect::Native { verb: NativeVerb::Abort | NativeVerb::Undo } => self.roll_back(&verb).await,
            Effect::Native { verb: native @ (NativeVerb::Promote | NativeVerb::PromoteFull | NativeVerb::Resume) } => {
                self.go_on(&verb, native).await
            }
            Effect::Native { verb: other } => Err(self.site.unsupported(&verb, lacks(other, self.rolling))),
            Effect::Notify(_) => Ok(()),
            _ => Err(self.site.unsupported(&verb, "ECS runs this deployment; flightdeck only sends its verbs")),
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let service = self.service().await?;
        match self.current(&service).await {
            Ok(Some((deployment, revision))) => Ok(observe(&deployment, revision.as_ref(), &self.stage_weights)),
            Ok(None) => Ok(rolling::observe(&service, &self.stage_weights, &self.canary)),
            // The service is there; only the deployment APIs are not.
            Err(ApiError::Missing(e)) => {
                let mut seen = rolling::observe(&service, &self.stage_weights, &self.canary);
                let detail = seen.native_detail.take().unwrap_or_default();
                seen.native_detail = Some(format!("{detail} · service deployments unavailable ({e})"));
                Ok(seen)
            }
            Err(ApiError::Failed(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{CanaryConfiguration, ServiceRevisionSummary};

    fn deployment(status: Status, weight: Option<f64>) -> ServiceDeployment {
        let target = ServiceRevisionSummary::builder()
            .arn("arn:aws:ecs:us-east-1:1:service-revision/prod/checkout/8219047743001845514")
            .requested_task_count(4)
            .running_task_count(4)
            .set_requested_production_traffic_weight(weight)
            .build();
        ServiceDeployment::builder().status(status).target_service_revision(target).build()
    }

    #[test]
    fn traffic_keeps_its_tenths_and_stages_follow_the_exact_share() {
        let o = observe(&deployment(Status::InProgress, Some(0.4)), None, &[1, 5, 100]);
        assert_eq!((o.canary_weight, o.native_stage), (Some(1), Some(0)), "0.4 % of traffic is not 0 %");
        assert!(o.native_detail.unwrap().contains("0.4 % of traffic"));
        let o = observe(&deployment(Status::InProgress, Some(4.6)), None, &[1, 5, 100]);
        assert_eq!((o.canary_weight, o.native_stage), (Some(5), Some(0)), "4.6 % has not reached the 5 % stage");
        let o = observe(&deployment(Status::InProgress, Some(99.7)), None, &[10, 100]);
        assert_eq!((o.canary_weight, o.native_stage), (Some(99), Some(0)));
    }

    #[test]
    fn stopping_is_not_progressing_and_a_stop_leaves_traffic_where_it_is() {
        let o = observe(&deployment(Status::StopRequested, Some(10.0)), None, &[10, 100]);
        assert!(matches!(o.native_status, Some(NativeStatus::Aborted { .. })), "{:?}", o.native_status);
        let o = observe(&deployment(Status::Stopped, Some(10.0)), None, &[10, 100]);
        assert!(matches!(o.native_status, Some(NativeStatus::Aborted { .. })));
        assert_eq!(o.canary_weight, Some(10), "ECS left 10 % on the target revision");
        let o = observe(&deployment(Status::RollbackSuccessful, Some(10.0)), None, &[10, 100]);
        assert_eq!(o.canary_weight, Some(0));
    }

    #[test]
    fn missing_canary_and_linear_settings_are_ecs_defaults() {
        let canary = DeploymentConfiguration::builder().strategy(DeploymentStrategy::Canary).build();
        assert_eq!(strategy(Some(&canary)), "CANARY 5 % for 10 min, then all");
        let half = CanaryConfiguration::builder().canary_percent(2.5).build();
        let canary =
            DeploymentConfiguration::builder().strategy(DeploymentStrategy::Canary).canary_configuration(half).build();
        assert_eq!(strategy(Some(&canary)), "CANARY 2.5 % for 10 min, then all");
        let linear = DeploymentConfiguration::builder().strategy(DeploymentStrategy::Linear).build();
        assert_eq!(strategy(Some(&linear)), "LINEAR 10 % every 6 min");
    }

    #[test]
    fn the_revision_is_the_target_service_revision() {
        let d = deployment(Status::InProgress, Some(10.0));
        assert_eq!(
            observe(&d, None, &[10, 100]).native_revision.as_deref(),
            Some("service revision 8219047743001845514")
        );
        let r = Revision {
            task_definition: Some("arn:aws:ecs:us-east-1:1:task-definition/checkout:42".into()),
            images: vec!["web=repo/checkout:2.3.0".into()],
        };
        let o = observe(&d, Some(&r), &[10, 100]);
        assert_eq!(o.native_revision.as_deref(), Some("checkout:42 (service revision 8219047743001845514)"));
        assert!(o.native_detail.unwrap().contains("checkout:42 (web=repo/checkout:2.3.0)"));
    }

    #[test]
    fn a_pause_hook_holds_the_deployment_until_its_deadline() {
        let hook = DeploymentLifecycleHookDetail::builder()
            .hook_id("hook-1")
            .target_type(HookType::Pause)
            .status(HookStatus::AwaitingAction)
            .expires_at(DateTime::from_secs(1_777_896_000))
            .build();
        let d = ServiceDeployment::builder().status(Status::InProgress).lifecycle_hook_details(hook.clone()).build();
        let Some(NativeStatus::Paused { reason, step: None, before_switch: false }) =
            observe(&d, None, &[100]).native_status
        else {
            panic!("not paused")
        };
        assert!(reason.contains("at 2026-05-04T12:00:00Z ECS rolls back"), "{reason}");
        let no_deadline = DeploymentLifecycleHookDetail::builder()
            .target_type(HookType::Pause)
            .status(HookStatus::AwaitingAction)
            .build();
        let d = ServiceDeployment::builder().status(Status::InProgress).lifecycle_hook_details(no_deadline).build();
        let Some(NativeStatus::Paused { reason, .. }) = observe(&d, None, &[100]).native_status else { panic!() };
        assert!(reason.contains("24 h after the hook began ECS rolls back"), "{reason}");
        let done = DeploymentLifecycleHookDetail::builder().target_type(HookType::Pause).status(HookStatus::Succeeded);
        let d = ServiceDeployment::builder().status(Status::InProgress).lifecycle_hook_details(done.build()).build();
        assert_eq!(observe(&d, None, &[100]).native_status, Some(NativeStatus::Progressing));
    }
}
