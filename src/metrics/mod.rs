//! Metrics sources: per-version request counts, errors and latency for a
//! window, and the service's SLO measurement. A source that cannot answer
//! returns a sample with the version missing and a reason; the core turns
//! that into an inconclusive verdict, never a pass.

#[cfg(feature = "prometheus")]
pub mod prometheus;

use async_trait::async_trait;
use flightdeck_core::analysis::MetricsSample;
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
