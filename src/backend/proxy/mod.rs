//! Proxies that split traffic between stable and canary servers:
//! HAProxy (runtime API), Envoy (admin API runtime), NGINX (upstream file + reload).

pub mod envoy;
pub mod haproxy;
pub mod nginx;

use flightdeck_core::plan::Target;
use std::time::Duration;

/// A required, non-blank target parameter of `proxy` ("haproxy target needs `socket`").
pub(crate) fn required(target: &Target, proxy: &str, key: &str) -> Result<String, String> {
    match target.params.get(key).map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("{proxy} target needs `{key}`")),
    }
}

/// The optional `timeout_ms` parameter, limit of one call to the proxy.
pub(crate) fn timeout(target: &Target, default: Duration) -> Result<Duration, String> {
    match target.params.get("timeout_ms") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(format!("target.timeout_ms: `{v}` is not a positive number of milliseconds")),
        },
    }
}
