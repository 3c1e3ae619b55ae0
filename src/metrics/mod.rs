//! Metrics sources: per-version request counts, errors and latency for a
//! window, and the service's SLO measurement. A source that cannot answer
//! returns a sample with the version missing and a reason; the core turns
//! that into an inconclusive verdict, never a pass.

#[cfg(feature = "ecs")]
pub mod cloudwatch;
#[cfg(feature = "prometheus")]
pub mod prometheus;

use async_trait::async_trait;
use flightdeck_core::analysis::{MetricsSample, VersionWindow};
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::time::Timestamp;
use std::time::Duration;

#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Stable and canary over the `window` ending at `now`.
    async fn sample(&self, window: Duration, now: Timestamp) -> MetricsSample;
    /// The service's availability and error ratios for the error budget.
    async fn slo(&self, now: Timestamp) -> Option<SloMeasurement>;
}

/// A window in which neither version could be read, with the reason.
pub fn missing(window: Duration, reason: String) -> MetricsSample {
    MetricsSample { window, stable: None, canary: None, missing: Some(reason) }
}

/// A window from per-version readings; a version that failed is `None` and
/// the reason names which one, prefixed by the `source` ("haproxy: …").
pub fn per_version(
    window: Duration,
    source: &str,
    stable: Result<VersionWindow, String>,
    canary: Result<VersionWindow, String>,
) -> MetricsSample {
    let reason = match (&stable, &canary) {
        (Ok(_), Ok(_)) => None,
        (Err(s), Err(c)) if s == c => Some(format!("{source}: {s}")),
        (Err(s), Err(c)) => Some(format!("{source}: stable: {s}; canary: {c}")),
        (Err(s), Ok(_)) => Some(format!("{source}: stable: {s}")),
        (Ok(_), Err(c)) => Some(format!("{source}: canary: {c}")),
    };
    MetricsSample { window, stable: stable.ok(), canary: canary.ok(), missing: reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_version_names_the_version_that_could_not_be_read() {
        let ok = || Ok(VersionWindow { requests: 10, ..Default::default() });
        let w = Duration::from_secs(60);
        assert_eq!(per_version(w, "haproxy", ok(), ok()).missing, None);
        let s = per_version(w, "haproxy", ok(), Err("no server v2".into()));
        assert_eq!((s.stable.is_some(), s.canary.is_none()), (true, true));
        assert_eq!(s.missing.as_deref(), Some("haproxy: canary: no server v2"));
        let both = per_version(w, "envoy", Err("down".into()), Err("down".into()));
        assert_eq!(both.missing.as_deref(), Some("envoy: down"));
    }
}
