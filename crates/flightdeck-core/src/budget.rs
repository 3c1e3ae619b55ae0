//! Error budget and the deploy policy it implies.
//!
//! Budget = 1 − SLO over the SLO window (99.9 % over 30 days = 2,592 s).
//! Burn rate over a window = that window's error ratio ÷ (1 − SLO), read as
//! the Google SRE workbook's multi-window alerts: fast burn 14.4× over 1 h
//! and 5 min, slow burn 6× over 6 h and 30 min.

use crate::plan::Slo;
use serde::{Deserialize, Serialize};

/// Burn rate at which both fast-burn windows page.
pub const FAST_BURN: f64 = 14.4;
/// Burn rate at which both slow-burn windows page.
pub const SLOW_BURN: f64 = 6.0;

/// What the metrics source measured for the service as a whole. A value
/// the source could not compute is NaN (JSON writes it as `null`, which
/// reads back as NaN, so a journaled unknown replays as unknown).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SloMeasurement {
    /// Fraction of good requests over the whole SLO window (0.9985).
    #[serde(deserialize_with = "nan_if_null")]
    pub availability: f64,
    /// Error ratio (bad / total) over the last 5 min, 30 min, 1 h and 6 h.
    #[serde(deserialize_with = "nan_if_null")]
    pub error_ratio_5m: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub error_ratio_30m: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub error_ratio_1h: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub error_ratio_6h: f64,
}

/// serde_json writes NaN as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What the remaining budget allows a deploy to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployPolicy {
    /// More than 50 % left: stages advance on passing analysis.
    Auto,
    /// 25–50 % left: every promotion needs a human's approval.
    ApprovalRequired,
    /// 25 % or less left: nothing advances without a typed override reason.
    Freeze,
}

impl DeployPolicy {
    pub fn label(self) -> &'static str {
        match self {
            DeployPolicy::Auto => "auto",
            DeployPolicy::ApprovalRequired => "approval required",
            DeployPolicy::Freeze => "freeze",
        }
    }
}

/// The error budget as the cockpit shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// Allowed failure over the window, seconds.
    pub allowed_s: f64,
    pub spent_s: f64,
    /// May be negative when the budget is overspent.
    pub remaining_s: f64,
    /// Remaining as percent of allowed (may be negative).
    pub remaining_pct: f64,
    pub burn_5m: f64,
    pub burn_30m: f64,
    pub burn_1h: f64,
    pub burn_6h: f64,
    pub policy: DeployPolicy,
    /// The availability could not be read (NaN, or outside 0–1): spent and
    /// remaining read 0 and mean nothing, and the policy asks for approval
    /// rather than guessing either way. (Not NaN: a NaN would make the
    /// state unequal to itself and does not survive JSON.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

impl BudgetStatus {
    /// Computes the budget for `slo` from a measurement.
    pub fn compute(slo: &Slo, m: &SloMeasurement) -> BudgetStatus {
        let allowed_ratio = (1.0 - slo.objective_pct / 100.0).max(f64::MIN_POSITIVE);
        let window_s = slo.window.as_secs_f64();
        let allowed_s = allowed_ratio * window_s;
        // `f64::max` drops NaN: a NaN availability would read as nothing
        // spent. Unknown stays unknown.
        let unknown = !(0.0..=1.0).contains(&m.availability);
        let spent_s = (1.0 - m.availability) * window_s;
        let (spent_s, remaining_s) = if unknown { (0.0, 0.0) } else { (spent_s, allowed_s - spent_s) };
        let remaining_pct = 100.0 * remaining_s / allowed_s;
        let burn = |ratio: f64| ratio.max(0.0) / allowed_ratio;
        let policy = if unknown { DeployPolicy::ApprovalRequired } else { policy_for(remaining_pct) };
        BudgetStatus {
            allowed_s,
            spent_s,
            remaining_s,
            remaining_pct,
            burn_5m: burn(m.error_ratio_5m),
            burn_30m: burn(m.error_ratio_30m),
            burn_1h: burn(m.error_ratio_1h),
            burn_6h: burn(m.error_ratio_6h),
            policy,
            unknown,
        }
    }

    /// Both fast-burn windows above 14.4×: the budget goes within ~2 days.
    pub fn fast_burn(&self) -> bool {
        self.burn_1h >= FAST_BURN && self.burn_5m >= FAST_BURN
    }

    /// Both slow-burn windows above 6×.
    pub fn slow_burn(&self) -> bool {
        self.burn_6h >= SLOW_BURN && self.burn_30m >= SLOW_BURN
    }
}

/// > 50 % auto, 25–50 % approval required, ≤ 25 % freeze.
pub fn policy_for(remaining_pct: f64) -> DeployPolicy {
    if remaining_pct > 50.0 {
        DeployPolicy::Auto
    } else if remaining_pct > 25.0 {
        DeployPolicy::ApprovalRequired
    } else {
        DeployPolicy::Freeze
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slo() -> Slo {
        Slo { objective_pct: 99.9, window: Duration::from_secs(30 * 86_400) }
    }

    #[test]
    fn three_nines_over_thirty_days_allows_2592_seconds() {
        let b = BudgetStatus::compute(&slo(), &SloMeasurement { availability: 1.0, ..Default::default() });
        assert!((b.allowed_s - 2592.0).abs() < 1e-6, "{}", b.allowed_s);
        assert!((b.remaining_pct - 100.0).abs() < 1e-9);
        assert_eq!(b.policy, DeployPolicy::Auto);
    }

    #[test]
    fn measured_99_95_leaves_half_the_budget_and_needs_approval() {
        // The domain text's example says 99.85 %, but 1,296 s left (50 %) is
        // what 99.95 % gives: 0.05 % of 30 d is 1,296 s spent of 2,592 s.
        let b = BudgetStatus::compute(&slo(), &SloMeasurement { availability: 0.9995, ..Default::default() });
        assert!((b.remaining_s - 1296.0).abs() < 1e-3, "{}", b.remaining_s);
        assert!((b.remaining_pct - 50.0).abs() < 1e-6);
        // Exactly 50 % is not "more than 50 %".
        assert_eq!(b.policy, DeployPolicy::ApprovalRequired);
    }

    #[test]
    fn an_unreadable_availability_is_unknown_and_needs_approval() {
        for availability in [f64::NAN, -0.1, 1.1, f64::INFINITY, f64::NEG_INFINITY] {
            let b = BudgetStatus::compute(&slo(), &SloMeasurement { availability, ..Default::default() });
            assert!(b.unknown, "{availability}");
            assert_eq!((b.spent_s, b.remaining_s, b.remaining_pct), (0.0, 0.0, 0.0));
            assert_eq!(b, b, "an unknown status still equals itself");
            assert_eq!(b.policy, DeployPolicy::ApprovalRequired, "{availability}");
        }
        let b = BudgetStatus::compute(&slo(), &SloMeasurement { availability: 0.0, ..Default::default() });
        assert!(!b.unknown);
        assert_eq!(b.policy, DeployPolicy::Freeze);
    }

    #[test]
    fn a_nan_measurement_survives_json() {
        let m = SloMeasurement { availability: f64::NAN, error_ratio_5m: 0.5, ..Default::default() };
        let back: SloMeasurement = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert!(back.availability.is_nan());
        assert_eq!(back.error_ratio_5m, 0.5);
    }

    #[test]
    fn policy_thresholds() {
        assert_eq!(policy_for(50.1), DeployPolicy::Auto);
        assert_eq!(policy_for(25.1), DeployPolicy::ApprovalRequired);
        assert_eq!(policy_for(25.0), DeployPolicy::Freeze);
        assert_eq!(policy_for(-10.0), DeployPolicy::Freeze);
    }

    #[test]
    fn burn_rates_and_multiwindow_alerts() {
        let m = SloMeasurement {
            availability: 0.9995,
            error_ratio_5m: 0.0150,
            error_ratio_1h: 0.0144,
            error_ratio_30m: 0.0061,
            error_ratio_6h: 0.0059,
        };
        let b = BudgetStatus::compute(&slo(), &m);
        assert!((b.burn_1h - 14.4).abs() < 1e-6);
        assert!(b.fast_burn());
        // 6 h burns at 5.9×: the slow alert needs both windows.
        assert!(!b.slow_burn());
    }
}
