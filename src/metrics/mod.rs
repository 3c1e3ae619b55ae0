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

/// Why one version's numbers for a window could not be read. The version
/// is missing from the window (inconclusive, never a pass) and this says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unread {
    /// Cumulative counters: the first reading only marks where the window starts.
    #[error("first stats reading, no window yet")]
    FirstReading,
    /// Cumulative counters went back: the source restarted, and the window starts over.
    #[error("stats counters went back ({0} restarted?), no window yet")]
    CountersWentBack(&'static str),
    /// The source does not know the version (no such server, cluster or series).
    #[error("{0}")]
    NotFound(String),
    /// The source answered something that is not the numbers asked for.
    #[error("{0}")]
    Malformed(String),
    /// The source said its answer is partial (CloudWatch's `PartialData`, `Forbidden`).
    #[error("{0}")]
    Partial(String),
    /// The source could not be asked, or refused.
    #[error("{0}")]
    Unreachable(String),
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
    stable: Result<VersionWindow, Unread>,
    canary: Result<VersionWindow, Unread>,
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
        let s = per_version(w, "haproxy", ok(), Err(Unread::NotFound("no server v2".into())));
        assert_eq!((s.stable.is_some(), s.canary.is_none()), (true, true));
        assert_eq!(s.missing.as_deref(), Some("haproxy: canary: no server v2"));
        let down = || Err(Unread::Unreachable("down".into()));
        let both = per_version(w, "envoy", down(), down());
        assert_eq!(both.missing.as_deref(), Some("envoy: down"));
    }
}
