//! Reading a backend's parameters from a plan's `[target]`, with errors
//! that name the parameter (the plan error is placed at its value).

use flightdeck_core::plan::params::{ParamError, TargetError};
use flightdeck_core::plan::{BackendKind, Target};
use std::time::Duration;

/// The target is for `backend`, else the caller picked the wrong one.
pub(crate) fn expect_backend(target: &Target, backend: BackendKind) -> Result<(), TargetError> {
    if target.backend == backend {
        return Ok(());
    }
    Err(TargetError::OtherBackend { found: target.backend.name(), expected: backend.name() })
}

/// A required, non-blank parameter of `backend`'s target ("haproxy target needs `socket`").
pub(crate) fn required(target: &Target, backend: &'static str, key: &'static str) -> Result<String, TargetError> {
    optional(target, key).ok_or(TargetError::Missing { backend, key })
}

/// An optional parameter, `None` when absent or blank.
pub(crate) fn optional(target: &Target, key: &str) -> Option<String> {
    target.params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_string)
}

/// The optional `timeout_ms` parameter: the limit of one call.
pub(crate) fn timeout(target: &Target, default: Duration) -> Result<Duration, ParamError> {
    match target.params.get("timeout_ms") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(ParamError::new("timeout_ms", format!("`{v}` is not a positive number of milliseconds"))),
        },
    }
}
