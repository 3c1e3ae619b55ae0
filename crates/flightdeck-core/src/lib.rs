//! The pure decision core of flightdeck.
//!
//! Everything here is a function of its inputs: no I/O, no clock reads, no
//! tasks. Time comes in as a [`Timestamp`] argument, text comes in as a
//! `&str`. The engine feeds events to [`step`] and carries out the effects it
//! returns; backends translate effects, they never invent them.

pub mod analysis;
pub mod budget;
pub mod plan;
pub mod release;
pub mod rollout;
pub mod time;
pub mod toml_file;
pub mod tree;
pub mod verbs;
pub mod view;

pub use analysis::{evaluate, Check, CheckOutcome, Metric, MetricsSample, Severity, Verdict, VersionWindow};
pub use budget::{BudgetStatus, DeployPolicy, SloMeasurement};
pub use plan::{Plan, PlanError, Stage, StageAction, Strategy};
pub use rollout::{step, Actor, Command, CommandRequest, Effect, Event, Notice, Phase, Rollout};
pub use time::Timestamp;
pub use toml_file::{line_col, TomlError, TomlFile};
pub use verbs::{Ask, Confirmation, Refusal};
