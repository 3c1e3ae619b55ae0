//! Simulator scenarios: how the canary behaves and how the sim itself fails.

use std::fmt;
use std::str::FromStr;

/// A named behaviour of the simulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The canary behaves like stable.
    Healthy,
    /// From 10 % traffic on, the canary returns 12 % errors; a blue-green
    /// preview (probe traffic only) returns them from its first request, so
    /// the preview checks can catch it before the switch.
    BadCanary,
    /// The canary's p99 is 60 % above stable's.
    SlowCanary,
    /// A fifth of the metric windows are missing, plus a three-window outage.
    FlakyMetrics,
    /// Backend calls time out for a while after the first stage.
    StuckBackend,
    /// A feature flag's new code path fails for the users it reaches: 3 %
    /// of the canary's requests error from the first user on (a flag has
    /// no preview and no warm-up; its first stage is its first users).
    BadFlag,
}

impl Scenario {
    pub const NAMES: &'static [&'static str] =
        &["healthy", "bad-canary", "slow-canary", "flaky-metrics", "stuck-backend", "bad-flag"];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::BadCanary => "bad-canary",
            Scenario::SlowCanary => "slow-canary",
            Scenario::FlakyMetrics => "flaky-metrics",
            Scenario::StuckBackend => "stuck-backend",
            Scenario::BadFlag => "bad-flag",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "healthy" => Scenario::Healthy,
            "bad-canary" => Scenario::BadCanary,
            "slow-canary" => Scenario::SlowCanary,
            "flaky-metrics" => Scenario::FlakyMetrics,
            "stuck-backend" => Scenario::StuckBackend,
            "bad-flag" => Scenario::BadFlag,
            other => {
                return Err(format!("unknown scenario `{other}`; expected one of: {}", Scenario::NAMES.join(", ")))
            }
        })
    }
}

/// Latency and error profile of one version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub const STABLE: Profile = Profile { error_rate: 0.002, p50_ms: 80.0, p99_ms: 250.0 };

impl Scenario {
    /// How the canary behaves when it takes `share` % of traffic; `preview`
    /// when it is a blue-green preview, which takes no user traffic at all.
    pub fn canary_profile(self, share: u8, preview: bool) -> Profile {
        match self {
            Scenario::BadCanary if share >= 10 || preview => Profile { error_rate: 0.12, ..STABLE },
            Scenario::SlowCanary => Profile { p99_ms: STABLE.p99_ms * 1.6, p50_ms: STABLE.p50_ms * 1.2, ..STABLE },
            Scenario::BadFlag => Profile { error_rate: 0.03, ..STABLE },
            _ => Profile { error_rate: 0.0022, p50_ms: 81.0, p99_ms: 252.0 },
        }
    }

    /// Whether the metrics of window number `index` are lost; `roll` is a
    /// uniform draw in 0..1 for that window.
    pub fn metrics_gap(self, index: u64, roll: f64) -> bool {
        self == Scenario::FlakyMetrics && (roll < 0.2 || (18..21).contains(&index))
    }

    /// Whether backend calls fail at simulated minute `minute`.
    pub fn backend_stuck(self, minute: u64) -> bool {
        self == Scenario::StuckBackend && (15..30).contains(&minute)
    }
}
