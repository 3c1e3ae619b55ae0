//! The engine protocol: what viewers receive and what they may send.
//! The in-process cockpit, headless output and remote viewers use these
//! same serde types (newline-delimited JSON on the wire).

use flightdeck_core::analysis::Verdict;
use flightdeck_core::rollout::{Actor, Command, Effect, Rollout};
use flightdeck_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Wire version of these types; bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 2;

/// A command addressed to one rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub rollout: String,
    pub actor: Actor,
    pub command: Command,
    /// 0-based stage the actor saw.
    pub expected_stage: usize,
    /// Canary revision the actor saw: a forward command for another
    /// revision is stale.
    pub expected_revision: String,
}

/// The engine's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "reply")]
pub enum Reply {
    Ack,
    Rejected { reason: String },
}

/// One thing that happened, for the event log and headless output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Output {
    /// A rollout task started (or resumed from its journal).
    Started { rollout: String, at: Timestamp, strategy: String, stages: Vec<u8>, resumed: bool, stage: usize },
    /// The phase or stage changed.
    Transition {
        rollout: String,
        at: Timestamp,
        from: String,
        to: String,
        stage: usize,
        stages: usize,
        weight: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An analysis window's verdict with its numbers.
    Verdict {
        rollout: String,
        at: Timestamp,
        stage: usize,
        #[serde(flatten)]
        verdict: Verdict,
    },
    /// An effect the backend carried out, or failed to.
    Effect {
        rollout: String,
        at: Timestamp,
        #[serde(flatten)]
        effect: Effect,
        ok: bool,
        attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An operator command, accepted or refused.
    Action {
        rollout: String,
        at: Timestamp,
        actor: Actor,
        command: String,
        stage: usize,
        accepted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// What the actor typed with the command (a freeze override's
        /// reason), kept for the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A warning or note from the core.
    Notice { rollout: String, at: Timestamp, level: String, message: String },
}

impl Output {
    pub fn rollout(&self) -> &str {
        match self {
            Output::Started { rollout, .. }
            | Output::Transition { rollout, .. }
            | Output::Verdict { rollout, .. }
            | Output::Effect { rollout, .. }
            | Output::Action { rollout, .. }
            | Output::Notice { rollout, .. } => rollout,
        }
    }

    /// When it happened.
    pub fn at(&self) -> Timestamp {
        match self {
            Output::Started { at, .. }
            | Output::Transition { at, .. }
            | Output::Verdict { at, .. }
            | Output::Effect { at, .. }
            | Output::Action { at, .. }
            | Output::Notice { at, .. } => *at,
        }
    }
}

/// Everything a viewer draws: every rollout's state at one instant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub at: Timestamp,
    pub rollouts: Vec<Rollout>,
}
