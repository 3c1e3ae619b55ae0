//! Feature flags as the traffic split: a stage's weight is the share of
//! users a flag's percentage rollout sends to its new side.
//!
//! - [`unleash`]: an Unleash flag's gradual rollout (flexibleRollout
//!   strategy) in one environment, through Unleash's Admin API.
//! - [`flagd`]: an OpenFeature flagd flag definition file, whose
//!   `fractional` targeting splits users between two variants.
//!
//! A flag has no capacity of its own: both sides are code paths of the same
//! deployment, so `Scale` changes nothing (an Unleash target may turn the
//! flag off on abort instead, see [`unleash`]). Neither reports metrics:
//! the application labels its requests with the variant it served and
//! Prometheus compares them (`[metrics] version_label`, the plan's
//! `stable` and `canary` naming the two variants' label values).

pub mod flagd;
pub mod unleash;

/// The canary's share of two weights, rounded to a percent; `None` when
/// both are 0 (nobody is split, there is no share).
fn share(stable: u64, canary: u64) -> Option<u8> {
    let total = stable + canary;
    (total > 0).then(|| ((canary * 100 + total / 2) / total) as u8)
}
