//! The engine protocol: what viewers receive and what they may send.
//! The in-process cockpit, headless output and remote viewers use these
//! same serde types (newline-delimited JSON on the wire, see [`wire`]),
//! and a viewer holds only a [`Link`]: snapshots, events and a way to
//! submit commands.

pub mod link;
pub mod wire;

pub use link::{Link, Submit};

use flightdeck_core::analysis::Verdict;
pub use flightdeck_core::rollout::Role;
use flightdeck_core::rollout::{Actor, Command, Effect, Rollout};
use flightdeck_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Wire version of these types; bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 3;

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
    /// Observed rollouts: the native controller's step the actor saw
    /// (`Rollout::native_step`); a forward command for a step that has
    /// moved on is stale. Absent: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_step: Option<usize>,
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
        /// The weight traffic is still at when `weight` could not be
        /// applied (the backend failed): the run must not claim a weight
        /// that never was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        still_at: Option<u8>,
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
        /// The canary revision the actor saw.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        revision: String,
        /// Where the command came from (local, socket, SSH key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The engine's clock when this was taken.
    pub at: Timestamp,
    /// How fast the engine's clock runs against real time (1 on the wall
    /// clock, more in simulations): with `at`, a viewer draws timers
    /// between snapshots without the engine's clock.
    #[serde(default = "real_time")]
    pub speed: f64,
    /// Shared, not copied: a viewer's copy of a snapshot of 1,000 rollouts
    /// is 1,000 pointers, and a rollout that changed is replaced whole.
    pub rollouts: Vec<Arc<Rollout>>,
    /// Who is attached (a shared engine fills it in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<Peer>,
    /// Releases across regions running beside the rollouts (`crate::release`);
    /// absent for older engines and clients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<Arc<flightdeck_core::release::Release>>,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            at: Timestamp::default(),
            speed: real_time(),
            rollouts: Vec::new(),
            attached: Vec::new(),
            releases: Vec::new(),
        }
    }
}

fn real_time() -> f64 {
    1.0
}

/// Someone attached to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub role: Role,
    /// How they are connected.
    pub session: SessionKind,
}

/// How a session reaches the engine, recorded with every command it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SessionKind {
    /// The cockpit in the engine's own process.
    Local,
    /// A client on the Unix socket: its user and process ids (from the
    /// socket's peer credentials, which the kernel sets and the client
    /// cannot), a number the server gave the connection, and the display
    /// name the client gave in its hello when it is not its login name (a
    /// hint, never who it is).
    Socket {
        pid: Option<i32>,
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    /// An SSH session, by the fingerprint of the key it signed in with.
    Ssh { fingerprint: String, id: u64 },
}

/// Who sends a command: what they may do and how they are connected.
/// Set by whoever accepted the connection, never by the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub role: Role,
    pub session: SessionKind,
}

impl Origin {
    /// The cockpit in the engine's own process: its captain.
    pub fn local() -> Origin {
        Origin { role: Role::Captain, session: SessionKind::Local }
    }
}

impl std::fmt::Display for SessionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionKind::Local => f.write_str("local"),
            SessionKind::Socket { pid, id, uid, hint } => {
                write!(f, "socket #{id}")?;
                let mut about = Vec::new();
                if let Some(uid) = uid {
                    about.push(format!("uid {uid}"));
                }
                if let Some(pid) = pid {
                    about.push(format!("pid {pid}"));
                }
                if let Some(hint) = hint {
                    // Checked at hello (a safe set of characters); escaped all the same.
                    about.push(format!("calls itself {}", inert(hint)));
                }
                if !about.is_empty() {
                    write!(f, " ({})", about.join(", "))?;
                }
                Ok(())
            }
            SessionKind::Ssh { fingerprint, id } => write!(f, "ssh #{id} ({fingerprint})"),
        }
    }
}

/// `text` made inert for a terminal or a log line: control characters (C0,
/// DEL, C1), bidirectional overrides and isolates, zero-width characters and
/// line separators are written as escapes (`\n`, `\x1b`, `\u{202e}`), so
/// text someone typed (a reason, a name) cannot move the cursor, retitle or
/// clear a terminal, forge a line, or look like other text.
pub fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write;
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether [`inert`] escapes `c`.
pub fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Bidirectional marks, embeddings, overrides and isolates.
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Zero-width and invisible joiners, line and paragraph separators, the BOM.
        | '\u{200b}'..='\u{200d}' | '\u{2028}' | '\u{2029}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inert_text_escapes_what_a_terminal_would_act_on() {
        assert_eq!(inert("plain, “quoted” é"), "plain, “quoted” é");
        let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\rcarol\u{202e}\u{200b}\u{9b}31m\n";
        let shown = inert(hostile);
        assert_eq!(shown, "\\x1b]0;owned\\x07\\x1b[2J\\rcarol\\u{202e}\\u{200b}\\u{9b}31m\\n");
        assert!(!shown.chars().any(needs_escape));
    }

    #[test]
    fn a_socket_session_names_its_uid_pid_and_any_hint() {
        let s = SessionKind::Socket { pid: Some(42), id: 3, uid: Some(1000), hint: None };
        assert_eq!(s.to_string(), "socket #3 (uid 1000, pid 42)");
        let s = SessionKind::Socket { pid: None, id: 3, uid: Some(0), hint: Some("alice".into()) };
        assert_eq!(s.to_string(), "socket #3 (uid 0, calls itself alice)");
    }
}
