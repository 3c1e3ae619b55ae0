//! Backends carry out effects on real systems and report what they see.
//! They decide nothing: every decision comes from `flightdeck_core::step`.
//!
//! One module per engine: `sim` (the embedded simulator, always built),
//! `proxy` (HAProxy, Envoy, NGINX; cargo feature `proxy`), `k8s` (Argo
//! Rollouts, Deployments; cargo feature `k8s`), `ecs` (AWS ECS; cargo
//! feature `ecs`).

#[cfg(feature = "ecs")]
pub mod ecs;
#[cfg(feature = "k8s")]
pub mod k8s;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod sim;

use async_trait::async_trait;
use flightdeck_core::rollout::{Effect, Observation};

/// A backend call that did not work, in words the cockpit can show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} unreachable: {detail}")]
    Unreachable { backend: String, detail: String },
    #[error("{backend} refused {action}: {detail}")]
    Refused { backend: String, action: String, detail: String },
    #[error("{backend} does not support {effect}")]
    Unsupported { backend: String, effect: String },
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
}
