//! The detection benchmark's simulation, shared by the example
//! (`examples/detection.rs`) and its test (`tests/detection.rs`).
#![allow(dead_code)]

pub mod flightdeck;
pub mod grid;
pub mod judges;
pub mod kayenta;
pub mod report;
pub mod run;
pub mod stats;
pub mod stress;
pub mod traffic;
