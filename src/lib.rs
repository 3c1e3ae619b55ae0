//! flightdeck: a terminal cockpit for progressive delivery.
//!
//! Layers, in the direction of the arrows: `flightdeck_core` decides,
//! `backend` and `metrics` talk to real systems, `engine` ties them together
//! per rollout, viewers (`headless`, the cockpit) only subscribe and submit
//! through `protocol`; `share` puts one engine before many cockpits.

pub mod analyze;
pub mod backend;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod engine;
pub mod files;
pub mod fleet;
pub mod headless;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod preview;
pub mod protocol;
pub mod release;
pub mod service;
pub mod share;
pub mod signals;
pub mod ui;

pub use flightdeck_core as core;
