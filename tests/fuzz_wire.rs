//! A fuzzer for the wire protocol as `flightdeck serve` reads it: byte
//! streams, from arbitrary bytes to hellos and commands with hostile
//! fields, mutated or cut short, go into the server's line reader and into
//! a real connection handler on an engine. Nothing may panic or hang; a
//! stream whose first line is no good hello gets one error line and
//! nothing else; after a good hello, every command is answered until the
//! first line that is not a protocol message, which gets an error line
//! that ends the connection. A few hundred cases here (seeded by
//! `PROPTEST_RNG_SEED`); `scripts/fuzz` runs many more by setting
//! `FLIGHTDECK_FUZZ_WIRE`.

use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, EngineHandle, EngineOptions, StopWhen};
use flightdeck::protocol::wire::{self, ClientMessage, LineError, ServerMessage, MAX_CLIENT_LINE};
use flightdeck::protocol::{CommandRequest, PROTOCOL_VERSION};
use flightdeck::share::hub::Hub;
use flightdeck::share::roles::{Identity, Roles};
use flightdeck::share::server;
use flightdeck_core::rollout::{Actor, Command};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROLLOUT: &str = "sim-eu-1/checkout-api";
const PLAN: &str = include_str!("fixtures/plans/held-canary.toml");

fn cases(default: u32) -> u32 {
    std::env::var("FLIGHTDECK_FUZZ_WIRE").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Texts that have broken readers and terminals before.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9]{1,12}",
        Just("\u{1b}]0;owned\u{7}\u{1b}[2J\r".to_string()),
        Just("carol\u{202e}\u{200b}".to_string()),
        Just("bob, dave (viewer)".to_string()),
        Just("y".repeat(501)),
        Just("line\nforged".to_string()),
        any::<String>(),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let reason = || proptest::option::of(text());
    prop_oneof![
        reason().prop_map(|reason| Command::Pause { reason }),
        Just(Command::Resume),
        Just(Command::Promote),
        Just(Command::PromoteFull),
        Just(Command::StepBack),
        reason().prop_map(|reason| Command::Abort { reason }),
        reason().prop_map(|reason| Command::Rollback { reason }),
        Just(Command::Retry),
        Just(Command::Approve),
        text().prop_map(|reason| Command::OverrideFreeze { reason }),
    ]
}

fn request() -> impl Strategy<Value = CommandRequest> {
    let rollout = prop_oneof![4 => Just(ROLLOUT.to_string()), 1 => text()];
    let revision = prop_oneof![4 => Just("v2".to_string()), 1 => text()];
    (rollout, text(), command(), 0usize..6, revision).prop_map(|(rollout, actor, command, stage, revision)| {
        CommandRequest {
            rollout,
            actor: Actor(actor),
            command,
            expected_stage: stage,
            expected_revision: revision,
            expected_step: None,
        }
    })
}

fn hello() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![6 => Just("alice".to_string()), 3 => "[A-Za-z0-9._@-]{1,32}", 1 => text()];
    let version = prop_oneof![12 => Just(PROTOCOL_VERSION), 1 => any::<u32>()];
    (version, name, text()).prop_map(|(version, name, client)| {
        let mut line = wire::encode(&ClientMessage::Hello { version, name, client });
        line.pop();
        line
    })
}

fn command_line() -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), request()).prop_map(|(id, request)| {
        let mut line = wire::encode(&ClientMessage::Command { id, request });
        line.pop();
        line
    })
}

/// A good line with some bytes changed, inserted or cut.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let good = prop_oneof![hello(), command_line()];
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6);
    (good, edits).prop_map(|(mut line, edits)| {
        for (at, byte, kind) in edits {
            if line.is_empty() {
                line.push(byte);
                continue;
            }
            let i = at.index(line.len());
            match kind {
                0 => line[i] = byte,
                1 => line.insert(i, byte),
                _ => line.truncate(i),
            }
        }
        line
    })
}

/// One line's bytes, and whether a newline ends it.
fn line() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let bytes = prop_oneof![
        60 => command_line(),
        6 => mutated(),
        1 => hello(),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => Just(Vec::new()),
        1 => Just(b"{\"type\":\"command\",\"id\":1,\"request\":{}}".to_vec()),
        1 => Just(vec![b'x'; MAX_CLIENT_LINE + 1]),
    ];
    (bytes, prop::bool::weighted(0.97))
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    let first = prop_oneof![8 => hello().prop_map(|h| (h, true)), 1 => line()];
    (first, prop::collection::vec(line(), 0..40)).prop_map(|(first, rest)| {
        let mut bytes = Vec::new();
        for (line, newline) in std::iter::once(first).chain(rest) {
            bytes.extend_from_slice(&line);
            if newline {
                bytes.push(b'\n');
            }
        }
        bytes
    })
}

/// The lines `read_line` gives for `bytes` with `max`: a line over `max`
/// is an error and the last thing read.
fn reference_lines(bytes: &[u8], max: usize) -> (Vec<Vec<u8>>, bool) {
    let mut lines = Vec::new();
    let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After a final newline there is no line; a last piece without one still counts.
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    for piece in pieces {
        if piece.len() > max {
            return (lines, true);
        }
        lines.push(piece.to_vec());
    }
    (lines, false)
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics anywhere in the process (the server's tasks' panics are
/// otherwise only printed), then reports them as usual.
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            report(info);
        }));
    });
}

/// Runs `body` on a thread with room for debug builds' deep strategies and futures.
fn big_stack(body: impl FnOnce() + Send + 'static) {
    let thread = std::thread::Builder::new().stack_size(64 << 20).spawn(body).unwrap();
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn mutated_streams_split_into_lines_like_a_reference() {
    big_stack(split_like_a_reference);
}

fn split_like_a_reference() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let config = Config { cases: cases(500), failure_persistence: None, ..Config::default() };
    let bytes = prop_oneof![stream(), prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..2000)];
    let strategy = (bytes, 1usize..64, 1usize..300);
    let result = TestRunner::new(config).run(&strategy, |(bytes, capacity, max)| {
        let (want, too_long) = reference_lines(&bytes, max);
        let mut reader = tokio::io::BufReader::with_capacity(capacity, &bytes[..]);
        let mut got = Vec::new();
        let ended = rt.block_on(async {
            loop {
                match wire::read_line(&mut reader, max).await {
                    Ok(Some(line)) => {
                        // Never more than `max` held.
                        prop_assert!(line.len() <= max);
                        got.push(line);
                    }
                    Ok(None) => return Ok(false),
                    Err(LineError::TooLong { max: m }) => {
                        prop_assert_eq!(m, max);
                        return Ok(true);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
            }
        })?;
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(ended, too_long);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// What a connection answered to one stream.
struct Answered {
    messages: Vec<ServerMessage>,
}

/// Runs a connection handler on `bytes` and collects its answer.
async fn exchange(hub: &Arc<Hub>, engine: &EngineHandle, bytes: Vec<u8>) -> Result<Answered, String> {
    let (client, server_end) = tokio::net::UnixStream::pair().map_err(|e| e.to_string())?;
    let handler = tokio::spawn(server::connection(server_end, hub.clone(), engine.clone(), Arc::new(Roles::default())));
    let (mut read, mut write) = client.into_split();
    let writer = tokio::spawn(async move {
        // The server may close first: then the write fails, which is fine.
        let _ = write.write_all(&bytes).await;
        let _ = write.shutdown().await;
        write
    });
    let mut out = Vec::new();
    let reading = async {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match read.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                // Closed with our bytes unread (after an error line): what came before stands.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), reading)
        .await
        .map_err(|_| "the connection never ended".to_string())??;
    tokio::time::timeout(Duration::from_secs(20), handler)
        .await
        .map_err(|_| "the handler never returned".to_string())?
        .map_err(|e| format!("the handler panicked: {e}"))?;
    drop(writer.await);
    let mut messages = Vec::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let message = serde_json::from_slice::<ServerMessage>(line).map_err(|e| {
            format!("the server sent a line that is no message ({e}): {}", String::from_utf8_lossy(line))
        })?;
        messages.push(message);
    }
    Ok(Answered { messages })
}

#[test]
fn mutated_wire_streams_into_a_connection_are_answered_or_refused() {
    big_stack(answered_or_refused);
}

fn answered_or_refused() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (hub, engine) = rt.block_on(async {
        let plan = flightdeck_core::Plan::parse("checkout.toml", PLAN).unwrap();
        let setup = flightdeck::fleet::setup(plan, "checkout.toml", PLAN.into(), None, 1).await.unwrap();
        let clock = Clock::scaled(flightdeck_core::time::Timestamp(0), 1.0);
        let options = EngineOptions { clock, journal_dir: None, fresh: false, stop_when: StopWhen::Never };
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let engine = Engine::start(vec![setup], options, tx).unwrap();
        let hub = Hub::start(engine.subscribe(), rx, Vec::new());
        // The engine lives as long as the runtime.
        let handle = engine.handle();
        std::mem::forget(engine);
        (hub, handle)
    });
    // SAFETY: geteuid has no preconditions.
    let me = Identity::of_uid(unsafe { libc::geteuid() }).name;
    let config = Config { cases: cases(300), failure_persistence: None, ..Config::default() };
    let (refused_at_hello, welcomed, replies, errors) = (Cell::new(0), Cell::new(0), Cell::new(0), Cell::new(0));
    let result = TestRunner::new(config).run(&stream(), |bytes| {
        let answered = rt.block_on(exchange(&hub, &engine, bytes.clone())).map_err(TestCaseError::fail)?;
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a task of the server panicked");
        let messages = answered.messages;
        let (lines, too_long) = reference_lines(&bytes, MAX_CLIENT_LINE);
        let Some(first) = lines.first() else {
            // Nothing but a line too long, or nothing at all.
            if too_long {
                prop_assert!(matches!(&messages[..], [ServerMessage::Error { .. }]), "{:?}", messages);
            } else {
                prop_assert!(messages.is_empty(), "{:?}", messages);
            }
            return Ok(());
        };
        if wire::parse_hello(first).is_err() {
            refused_at_hello.set(refused_at_hello.get() + 1);
            prop_assert!(matches!(&messages[..], [ServerMessage::Error { .. }]), "{:?}", messages);
            return Ok(());
        }
        welcomed.set(welcomed.get() + 1);
        match messages.first() {
            // Who it is comes from the kernel, never from the hello.
            Some(ServerMessage::Welcome { name, .. }) => prop_assert_eq!(name, &me),
            other => return Err(TestCaseError::fail(format!("no welcome but {other:?}"))),
        }
        // Commands up to the first line that is no command.
        let mut commands = 0;
        let mut bad = too_long;
        for line in &lines[1..] {
            match wire::parse_client(line) {
                Ok(ClientMessage::Command { .. }) => commands += 1,
                _ => {
                    bad = true;
                    break;
                }
            }
        }
        let answers = messages.iter().filter(|m| matches!(m, ServerMessage::Reply { .. })).count();
        let error_at = messages.iter().position(|m| matches!(m, ServerMessage::Error { .. }));
        replies.set(replies.get() + answers);
        if bad {
            errors.set(errors.get() + 1);
            // The error is the last line; commands in flight may go unanswered.
            prop_assert_eq!(error_at, Some(messages.len() - 1), "{:?}", messages);
            prop_assert!(answers <= commands, "{} answers to {} commands", answers, commands);
        } else {
            prop_assert_eq!(error_at, None, "{:?}", messages);
            prop_assert_eq!(answers, commands, "every command is answered");
        }
        Ok(())
    });
    println!(
        "fuzz wire: {} cases: {} refused at hello, {} welcomed ({} ended by an error line), {} commands \
         answered, {} panics",
        cases(300),
        refused_at_hello.get(),
        welcomed.get(),
        errors.get(),
        replies.get(),
        PANICS.load(Ordering::SeqCst)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
