//! Backends carry out effects on real systems and report what they see.
//! They decide nothing: every decision comes from `flightdeck_core::step`.
//!
//! Each family is one folder; a plan picks one with `[target] backend`.
//!
//! | family | plan `backend` | feature | who moves traffic | metrics of its own |
//! |---|---|---|---|---|
//! | [`sim`]: the embedded simulator | `sim` | always built | flightdeck (simulated split) | simulated, per `scenario` |
//! | `proxy::haproxy`: HAProxy runtime API | `haproxy` | `proxy` | flightdeck (`set weight`) | `show stat` counters |
//! | `proxy::envoy`: Envoy admin runtime | `envoy` | `proxy` | flightdeck (runtime key) | `/stats` counters and histograms |
//! | `proxy::nginx`: NGINX upstream file + reload | `nginx` | `proxy` | flightdeck (weights in the file) | its access log |
//! | `k8s::argo`: Argo Rollouts | `argo-rollouts` | `k8s` | Argo; flightdeck observes and sends native verbs | none (Prometheus) |
//! | `k8s::flagger`: Flagger Canaries | `flagger` | `k8s` | Flagger; flightdeck observes, gates and suspends | none (Prometheus) |
//! | `k8s::deployment`: two Deployments and a route | `deployment` | `k8s` | flightdeck (Gateway API or Istio weights) | none (Prometheus) |
//! | `ecs`: AWS ECS services | `ecs` | `ecs` | ECS (observed), or flightdeck with `controller = "external"` (task sets, ALB weights) | none (CloudWatch) |
//! | `lambda`: an AWS Lambda alias | `lambda` | `lambda` | flightdeck (the alias's version weights) | none (CloudWatch `AWS/Lambda`) |
//! | `flag::unleash`: an Unleash flag's gradual rollout | `unleash` | `flags` | flightdeck (the rollout percentage, Admin API) | none (Prometheus, by variant) |
//! | `flag::flagd`: an OpenFeature flagd flag file | `flagd` | `flags` | flightdeck (`fractional` weights in the file) | none (Prometheus, by variant) |
//!
//! Proxies share their parameter helpers and the counter `proxy::Baseline`
//! (per-version totals turned into windows). Kubernetes backends share one
//! client, watcher and router code; ECS shares the AWS call wrapper.
//! Every backend's failure becomes a [`BackendError`] the cockpit shows.

#[cfg(feature = "ecs")]
pub mod ecs;
#[cfg(feature = "flags")]
pub mod flag;
#[cfg(feature = "k8s")]
pub mod k8s;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod sim;
#[cfg(any(feature = "proxy", feature = "flags"))]
pub(crate) mod target;

use crate::clock::Clock;
use async_trait::async_trait;
use flightdeck_core::plan::params::Param;
use flightdeck_core::plan::{BackendKind, Strategy};
use flightdeck_core::rollout::{Effect, Observation, Version};
use flightdeck_core::time::Timestamp;

/// A backend call that did not work, in words the cockpit can show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} unreachable: {detail}")]
    Unreachable { backend: String, detail: String },
    #[error("{backend} refused {action}: {detail}")]
    Refused { backend: String, action: String, detail: String },
    #[error("{backend} does not support {effect}")]
    Unsupported { backend: String, effect: String },
    /// Not possible yet: what the effect needs is still starting (an ECS
    /// canary's tasks). The engine does not retry it; the core tries it
    /// again on its ticks every `retry`, for up to `timeout` (see
    /// `flightdeck_core::rollout::Waiting`).
    #[error("{backend}: {action} not ready: {detail}")]
    NotReady {
        backend: String,
        action: String,
        detail: String,
        timeout: std::time::Duration,
        retry: std::time::Duration,
    },
}

/// What every backend offers the engine.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Short name for logs and banners ("sim prod-eu-1").
    fn name(&self) -> String;
    /// Carries out one effect. Must be idempotent.
    async fn apply(&self, effect: &Effect) -> Result<(), BackendError>;
    /// Reads the current state of the system (weights, native status).
    async fn observe(&self) -> Result<Observation, BackendError>;
    /// Carries out one effect as [`Backend::apply`] does, but never scales
    /// down or removes a side that may still take traffic: before such an
    /// effect the canary weight is read back, and unless it shows the side
    /// out of traffic (see [`weight_before`]) the effect is refused with
    /// what was read. The engine sends every effect through here; a
    /// backend overrides it only to make the check stronger.
    async fn apply_guarded(&self, effect: &Effect, strategy: &Strategy) -> Result<(), BackendError> {
        if let Some(wanted) = weight_before(effect, strategy) {
            let refuse = |detail: String| BackendError::Refused {
                backend: self.name(),
                action: effect.to_string(),
                detail: format!("{detail}; not scaling down a side that may still take traffic"),
            };
            let seen =
                self.observe().await.map_err(|e| refuse(format!("the canary weight cannot be read back ({e})")))?;
            match seen.canary_weight {
                Some(w) if w == wanted => {}
                Some(w) => return Err(refuse(format!("the canary weight reads {w} %, not {wanted} %"))),
                None => return Err(refuse("the backend shows no canary weight".to_string())),
            }
        }
        self.apply(effect).await
    }
    /// The clock the engine runs on, handed over once it is decided (a
    /// resumed simulation continues from its journaled time). Real systems
    /// keep their own time; the simulator lives on this one.
    fn run_on(&self, _clock: Clock) {}
    /// The run's time the next effects are carried out at. A simulator's
    /// outage is a time of the run, so it reads this rather than a clock
    /// that races ahead of the run at high speed; real systems ignore it.
    fn effects_at(&self, _at: Timestamp) {}
    /// What decides a simulated run besides its plan; the journal keeps it
    /// so that a resume under another scenario or seed is refused. `None`
    /// for real systems.
    fn simulation(&self) -> Option<sim::SimRun> {
        None
    }
}

/// The canary weight a backend must read back before `effect` may run
/// under `strategy`, when `effect` takes a traffic side away: 0 before the
/// canary is scaled to 0, 100 before stable is. `None` for everything else,
/// and for a rolling update, whose `Scale` is its batch size (canary 0 stops
/// the update; the old replicas keep serving), not a side leaving traffic.
pub fn weight_before(effect: &Effect, strategy: &Strategy) -> Option<u8> {
    match (effect, strategy) {
        (_, Strategy::Rolling { .. }) => None,
        (Effect::Scale { version: Version::Canary, percent: 0 }, _) => Some(0),
        (Effect::Scale { version: Version::Stable, percent: 0 }, _) => Some(100),
        _ => None,
    }
}

/// The parameters `backend` reads: its own, then those it shares with its
/// family. `None` when the backend is not part of this build.
pub fn params(backend: BackendKind) -> Option<&'static [&'static [Param]]> {
    match backend {
        BackendKind::Sim => Some(&[sim::PARAMS]),
        #[cfg(feature = "proxy")]
        BackendKind::Haproxy => Some(&[proxy::haproxy::PARAMS, proxy::PARAMS]),
        #[cfg(feature = "proxy")]
        BackendKind::Envoy => Some(&[proxy::envoy::PARAMS, proxy::PARAMS]),
        #[cfg(feature = "proxy")]
        BackendKind::Nginx => Some(&[proxy::nginx::PARAMS, proxy::PARAMS]),
        #[cfg(feature = "k8s")]
        BackendKind::ArgoRollouts => Some(&[k8s::ARGO_PARAMS, k8s::PARAMS]),
        #[cfg(feature = "k8s")]
        BackendKind::Flagger => Some(&[k8s::FLAGGER_PARAMS, k8s::PARAMS]),
        #[cfg(feature = "k8s")]
        BackendKind::Deployment => Some(&[k8s::DEPLOYMENT_PARAMS, k8s::PARAMS]),
        #[cfg(feature = "ecs")]
        BackendKind::Ecs => Some(&[ecs::PARAMS, ecs::AWS_PARAMS]),
        #[cfg(feature = "lambda")]
        BackendKind::Lambda => Some(&[lambda::PARAMS, ecs::AWS_PARAMS]),
        #[cfg(feature = "flags")]
        BackendKind::Unleash => Some(&[flag::unleash::PARAMS]),
        #[cfg(feature = "flags")]
        BackendKind::Flagd => Some(&[flag::flagd::PARAMS]),
        #[allow(unreachable_patterns)] // every backend built
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_side_leaving_traffic_needs_its_weight_read_back_first() {
        let canary = Strategy::Canary { stages: Vec::new() };
        let rolling = Strategy::Rolling { batch_percent: 25, bake: std::time::Duration::ZERO };
        let scale = |version, percent| Effect::Scale { version, percent };
        assert_eq!(weight_before(&scale(Version::Canary, 0), &canary), Some(0));
        assert_eq!(weight_before(&scale(Version::Stable, 0), &canary), Some(100));
        assert_eq!(weight_before(&scale(Version::Canary, 100), &canary), None);
        assert_eq!(weight_before(&Effect::SetWeight { canary: 0 }, &canary), None);
        // A rolling update's scale is its batch: canary 0 stops the update.
        assert_eq!(weight_before(&scale(Version::Canary, 0), &rolling), None);
    }

    #[test]
    fn every_built_backend_declares_helpful_unique_parameters() {
        let mut built = 0;
        for name in BackendKind::NAMES {
            let Some(declared) = params(BackendKind::parse(name).unwrap()) else { continue };
            let all: Vec<&Param> = declared.iter().flat_map(|group| group.iter()).collect();
            for (i, p) in all.iter().enumerate() {
                assert!(!p.help.trim().is_empty(), "{name}.{} has no help", p.name);
                assert!(all[..i].iter().all(|q| q.name != p.name), "{name}.{} declared twice", p.name);
            }
            built += 1;
        }
        assert!(built >= 1, "the simulator is always built");
    }
}
