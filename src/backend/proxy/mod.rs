//! Proxies that split traffic between stable and canary servers:
//! HAProxy (runtime API), Envoy (admin API runtime), NGINX (upstream file + reload).

pub mod envoy;
pub mod haproxy;
pub mod nginx;

use crate::metrics::Unread;
use flightdeck_core::plan::params::{Param, ParamKind};
use flightdeck_core::rollout::Version;
use flightdeck_core::VersionWindow;
use std::collections::HashMap;
use std::sync::Mutex;

/// What every proxy target reads besides its own [`haproxy::PARAMS`],
/// [`envoy::PARAMS`] or [`nginx::PARAMS`].
pub const PARAMS: &[Param] = &[Param::optional(
    "timeout_ms",
    ParamKind::Millis,
    "limit for one call to the proxy, in milliseconds (default 2000)",
)];

/// Cumulative counters as a proxy reports them (requests, errors, latency
/// buckets since it started).
pub(crate) trait Counters {
    /// The window since `before`; `None` if any counter went back.
    fn since(&self, before: &Self) -> Option<VersionWindow>;
}

/// The previous reading per version: the start of the next window. A proxy
/// gives totals since it started, so each window is a reading minus the one
/// before it.
#[derive(Debug)]
pub(crate) struct Baseline<C> {
    /// Who restarts when counters go back, for the message ("HAProxy").
    proxy: &'static str,
    last: Mutex<HashMap<Version, C>>,
}

impl<C: Counters + Clone> Baseline<C> {
    pub(crate) fn new(proxy: &'static str) -> Self {
        Baseline { proxy, last: Mutex::default() }
    }

    /// Turns one reading of `version` into a window against the stored
    /// baseline, and makes the reading the next baseline.
    pub(crate) fn window(&self, version: Version, reading: Result<C, Unread>) -> Result<VersionWindow, Unread> {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = match reading {
            Ok(now) => now,
            Err(reason) => {
                // A gap breaks the window: start over rather than report two windows as one.
                last.remove(&version);
                return Err(reason);
            }
        };
        match last.insert(version, now.clone()) {
            None => Err(Unread::FirstReading),
            Some(before) => now.since(&before).ok_or(Unread::CountersWentBack(self.proxy)),
        }
    }

    /// Forgets every reading: the next one starts over.
    pub(crate) fn clear(&self) {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}
