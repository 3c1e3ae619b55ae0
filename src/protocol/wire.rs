//! The protocol on the wire: one JSON object per line, each way.
//!
//! A client opens with [`ClientMessage::Hello`] (protocol version and who
//! it is); the server answers [`ServerMessage::Welcome`] (the role it
//! gives), then the whole state once ([`ServerMessage::Full`]) and from
//! then on only what changed: the top-level fields of the rollouts that
//! changed ([`ServerMessage::Changed`]), events, replies to commands. An
//! idle fleet sends nothing. Anything the server cannot read (not JSON,
//! a line over [`MAX_LINE`], another version) gets [`ServerMessage::Error`]
//! and the connection is closed.

use super::{CommandRequest, Output, Peer, Reply, Role, SessionKind, Snapshot, PROTOCOL_VERSION};
use flightdeck_core::rollout::Rollout;
use flightdeck_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest line either side reads (1 MiB): the full state is sent in
/// batches of [`BATCH`] rollouts, well under it.
pub const MAX_LINE: usize = 1 << 20;

/// The longest line a server reads from a client (16 KiB): a hello or a
/// command is a few hundred bytes, and the texts a command carries are
/// bounded well under it.
pub const MAX_CLIENT_LINE: usize = 16 << 10;

/// The longest display name a hello may give.
pub const MAX_NAME: usize = 32;

/// Rollouts per message of the full state.
pub const BATCH: usize = 50;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ClientMessage {
    /// The first line: the protocol version the client speaks, a display
    /// name ([`valid_name`]) and what it is (`flightdeck attach 0.1.0`).
    /// The name is a hint: on the socket the server knows the client's user
    /// from the kernel, and that user is who acts.
    Hello { version: u32, name: String, client: String },
    /// A command; the reply carries the same `id`. The server sets the
    /// actor and session to the connection's own, whatever the client says.
    Command { id: u64, request: CommandRequest },
}

/// What the server sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ServerMessage {
    /// The answer to a good hello: who the server takes the client for.
    Welcome {
        version: u32,
        name: String,
        role: Role,
        session: SessionKind,
    },
    /// The whole state, once after the welcome, with the events so far.
    /// Its rollouts follow in `Changed` messages of at most [`BATCH`]
    /// each (`follow` of them), so no line grows with the fleet.
    Full {
        snapshot: Snapshot,
        history: Vec<Output>,
        follow: usize,
    },
    /// What changed since the last message: per rollout (by id) the
    /// top-level fields that changed, and who is attached if that changed.
    Changed {
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rollouts: Vec<RolloutPatch>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attached: Option<Vec<Peer>>,
        /// Every release, whole, when one changed (`crate::release`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        releases: Option<Vec<std::sync::Arc<flightdeck_core::release::Release>>>,
    },
    /// An event.
    Output {
        output: Output,
    },
    /// Events the client was too slow to take; the state it gets is still the latest.
    Skipped {
        events: u64,
    },
    Reply {
        id: u64,
        reply: Reply,
    },
    /// Why the server closes the connection.
    Error {
        message: String,
    },
}

/// The fields of one rollout that changed, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPatch {
    pub id: String,
    pub fields: Map<String, Value>,
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {max} bytes")]
    TooLong { max: usize },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one line (without its newline), never holding more than `max`
/// bytes of it: a longer line is an error as soon as it passes `max`, so a
/// 100 MB line costs 1 MiB. `None` at the end of the stream.
pub async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            // A last line without a newline still counts.
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong { max });
        }
        line.extend_from_slice(&chunk[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(line));
        }
    }
}

/// One message as a line.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("protocol messages serialize");
    line.push(b'\n');
    line
}

/// Why a client's line is refused (the server sends it and closes the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "protocol version {version} is not spoken here; this server speaks version {PROTOCOL_VERSION} \
         (run the same flightdeck version on both ends)"
    )]
    Version { version: u32 },
    /// The name is shown to the others as written: only the safe set passes ([`valid_name`]).
    #[error("hello: `name` must be 1 to {MAX_NAME} of the characters A-Z a-z 0-9 . _ - @ (got {got:?})")]
    Name { got: String },
    #[error("the first message must be a hello")]
    NotHello,
    #[error("not a protocol message: {0}")]
    NotAMessage(String),
}

/// Reads a client's hello: the version must be this one.
pub fn parse_hello(line: &[u8]) -> Result<(String, String), WireError> {
    match serde_json::from_slice::<ClientMessage>(line) {
        Ok(ClientMessage::Hello { version, name, client }) if version == PROTOCOL_VERSION => {
            if !valid_name(&name) {
                let shown: String = name.chars().take(MAX_NAME + 8).collect();
                return Err(WireError::Name { got: super::inert(&shown).into_owned() });
            }
            Ok((name, client))
        }
        Ok(ClientMessage::Hello { version, .. }) => Err(WireError::Version { version }),
        Ok(_) => Err(WireError::NotHello),
        Err(e) => Err(WireError::NotAMessage(e.to_string())),
    }
}

/// Reads a client's line after its hello: anything but a protocol message
/// is an error (the server sends it and closes the connection).
pub fn parse_client(line: &[u8]) -> Result<ClientMessage, WireError> {
    serde_json::from_slice::<ClientMessage>(line).map_err(|e| WireError::NotAMessage(e.to_string()))
}

/// A display name: 1 to [`MAX_NAME`] ASCII letters, digits and `._-@`.
/// Nothing else: no spaces, commas or brackets (a name like `bob, dave
/// (viewer)` would fake entries on the presence line), no control,
/// bidirectional or zero-width characters (`carol\u{202e}` looks like
/// `carol`), no look-alike letters from other scripts.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// Fields of a rollout that stay on the server: the accumulated evidence
/// (latency histograms, several KB, changing every window) decides, but
/// viewers draw the verdicts, which carry its summary. A viewer's rollout
/// has empty evidence.
pub const NOT_SENT: &[&str] = &["evidence"];

/// A rollout as a viewer gets it: without [`NOT_SENT`].
pub fn for_viewers(rollout: &Rollout) -> Rollout {
    Rollout { evidence: Default::default(), ..rollout.clone() }
}

/// A server's patch that does not make a rollout (a server of another
/// version, or a damaged stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rollout {rollout}: {reason}")]
pub struct PatchError {
    pub rollout: String,
    pub reason: String,
}

/// Rollouts as JSON objects, to send only the fields that changed.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    /// Per rollout id, each top-level field's JSON.
    pub rollouts: HashMap<String, Map<String, Value>>,
}

impl Fields {
    /// The fields of `rollout` that differ from what is held, and holds them.
    pub fn diff(&mut self, rollout: &Rollout) -> Option<RolloutPatch> {
        let Ok(Value::Object(mut now)) = serde_json::to_value(rollout) else { return None };
        now.retain(|key, _| !NOT_SENT.contains(&key.as_str()));
        let held = self.rollouts.entry(rollout.id.clone()).or_default();
        let mut fields = Map::new();
        for (key, value) in &now {
            if held.get(key) != Some(value) {
                fields.insert(key.clone(), value.clone());
            }
        }
        *held = now;
        (!fields.is_empty()).then(|| RolloutPatch { id: rollout.id.clone(), fields })
    }

    /// Applies a patch, giving the rollout it makes.
    pub fn apply(&mut self, patch: RolloutPatch) -> Result<Rollout, PatchError> {
        let held = self.rollouts.entry(patch.id.clone()).or_default();
        held.extend(patch.fields);
        serde_json::from_value(Value::Object(held.clone()))
            .map_err(|e| PatchError { rollout: patch.id, reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_over_the_limit_is_refused_without_reading_it_whole() {
        let mut big = vec![b'x'; 10_000];
        big.push(b'\n');
        let mut reader = tokio::io::BufReader::with_capacity(64, &big[..]);
        let err = read_line(&mut reader, 100).await.unwrap_err();
        assert!(matches!(err, LineError::TooLong { max: 100 }), "{err}");
        // It stopped right after the limit, not at the end of the line.
        assert!(reader.buffer().len() <= 64);
    }

    #[tokio::test]
    async fn lines_come_one_at_a_time() {
        let mut reader = tokio::io::BufReader::with_capacity(4, &b"one\ntwo\nlast"[..]);
        assert_eq!(read_line(&mut reader, 10).await.unwrap().unwrap(), b"one");
        assert_eq!(read_line(&mut reader, 10).await.unwrap().unwrap(), b"two");
        assert_eq!(read_line(&mut reader, 10).await.unwrap().unwrap(), b"last");
        assert!(read_line(&mut reader, 10).await.unwrap().is_none());
    }

    #[test]
    fn a_hello_of_another_version_is_refused_with_both_versions() {
        let hello = ClientMessage::Hello { version: 99, name: "alice".into(), client: "x".into() };
        let err = parse_hello(&encode(&hello)).unwrap_err();
        assert_eq!(err, WireError::Version { version: 99 });
        let said = err.to_string();
        assert!(said.contains("99") && said.contains(&format!("speaks version {PROTOCOL_VERSION}")), "{said}");
        assert!(matches!(parse_hello(b"\x00\xffgarbage"), Err(WireError::NotAMessage(_))));
        let request = CommandRequest {
            rollout: "checkout".into(),
            actor: flightdeck_core::rollout::Actor::new("alice"),
            command: flightdeck_core::rollout::Command::Pause { reason: None },
            expected_stage: 0,
            expected_revision: "v2".into(),
            expected_step: None,
        };
        let command = ClientMessage::Command { id: 1, request };
        assert_eq!(parse_hello(&encode(&command)), Err(WireError::NotHello));
        let ok = ClientMessage::Hello { version: PROTOCOL_VERSION, name: "alice".into(), client: "x".into() };
        assert_eq!(parse_hello(&encode(&ok)).unwrap().0, "alice");
    }

    #[test]
    fn a_hello_name_outside_the_safe_set_is_refused() {
        for good in ["alice", "a", "bob.smith", "carol_2", "dave-ops", "eve@example.org", &"x".repeat(MAX_NAME)] {
            assert!(valid_name(good), "{good}");
        }
        let bad = [
            "",
            "carol\u{202e}",
            "bob\u{200b}",
            "bob, dave (viewer)",
            "line\nforged",
            "\u{1b}[2J",
            "аlice", // Cyrillic а
            "with space",
            &"x".repeat(MAX_NAME + 1),
        ];
        for name in bad {
            assert!(!valid_name(name), "{name:?}");
            let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), client: "x".into() };
            let err = parse_hello(&encode(&hello)).unwrap_err();
            assert!(matches!(err, WireError::Name { .. }), "{err}");
            let said = err.to_string();
            assert!(said.starts_with("hello: `name` must be"), "{said}");
            assert!(!said.chars().any(crate::protocol::needs_escape), "{said:?}");
        }
    }
}
