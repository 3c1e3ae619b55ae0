//! Sharing one engine: `flightdeck serve` puts it on a Unix socket,
//! `flightdeck attach` opens a cockpit on it, each with its own size,
//! theme and keymap. Everyone sees the same state; every command goes
//! through the engine with the sender's name, role and session, so the
//! journal keeps who did what. Roles decide who may act.

pub mod client;
pub mod hub;
pub mod roles;
pub mod server;

use crate::engine::{Engine, EngineOptions, RolloutSetup};
use crate::protocol::Output;
use crate::signals::Signals;
use std::path::Path;
use std::sync::Arc;

/// Runs the engine headless and shares it on `socket` until a signal
/// stops it (its number is returned). The socket is taken before any
/// journal, so a second server on it stops before touching anything.
pub async fn serve(
    setups: Vec<RolloutSetup>,
    options: EngineOptions,
    socket: &Path,
    roles: roles::Roles,
) -> color_eyre::Result<i32> {
    let mut signals = Signals::catch()?;
    let listening = server::bind(socket).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Output>(1024);
    let engine = Engine::start(setups, options, tx)?;
    let hub = hub::Hub::start(engine.subscribe(), rx, engine.history().to_vec());
    let count = engine.subscribe().borrow().rollouts.len();
    eprintln!(
        "flightdeck: serving {count} rollouts on {}; attach with `flightdeck attach --socket {0}`",
        socket.display()
    );
    let signo = tokio::select! {
        signo = signals.next() => signo,
        () = server::serve(&listening, hub, engine.handle(), Arc::new(roles)) => {
            engine.shutdown().await;
            return Err(color_eyre::eyre::eyre!("{}: the socket stopped accepting connections", socket.display()));
        }
    };
    engine.shutdown().await;
    drop(listening);
    Ok(signo)
}
