//! Sharing one engine: `flightdeck serve` puts it on a Unix socket,
//! `flightdeck attach` opens a cockpit on it, each with its own size,
//! theme and keymap. Everyone sees the same state; every command goes
//! through the engine with the sender's name, role and session, so the
//! journal keeps who did what. Roles decide who may act; on the socket the
//! sender is the user the kernel says it is ([`roles`]).

pub mod client;
pub mod hub;
pub mod roles;
pub mod server;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod standby;

use crate::engine::{Engine, EngineOptions, RolloutSetup};
use crate::protocol::Output;
use crate::signals::Signals;
use std::path::Path;
use std::sync::Arc;

/// Listeners beside the socket.
#[derive(Debug, Default)]
pub struct Listeners {
    /// `--ssh ADDR --authorized-keys FILE`.
    #[cfg(feature = "ssh")]
    pub ssh: Option<ssh::SshOptions>,
    /// `--http ADDR` and `[[notify]]` ([`crate::service`]).
    pub service: crate::service::ServiceOptions,
}

/// Runs the engine headless and shares it on `socket` (given to
/// `socket_group` if set: see [`server::bind_shared`]) and the other
/// `listeners` until a signal
/// stops it (its number is returned). The socket is taken before any
/// journal, so a second server on it stops before touching anything.
pub async fn serve(
    mut setups: Vec<RolloutSetup>,
    options: EngineOptions,
    socket: &Path,
    socket_group: Option<&str>,
    roles: roles::Roles,
    mut listeners: Listeners,
) -> color_eyre::Result<i32> {
    let mut signals = Signals::catch()?;
    let listening = server::bind_shared(socket, socket_group).await?;
    // Before any journal: a taken port stops serve before it touches anything.
    let service_options = std::mem::take(&mut listeners.service);
    let mut service = crate::service::Service::bind(service_options).await.map_err(color_eyre::eyre::Report::msg)?;
    #[cfg(feature = "ssh")]
    let ssh = match &listeners.ssh {
        Some(options) => Some(ssh::bind(options).await.map_err(color_eyre::eyre::Report::msg)?),
        None => None,
    };
    #[cfg(not(feature = "ssh"))]
    let _ = listeners;
    service.time_backends(&mut setups);
    let roles = Arc::new(roles);
    let (tx, rx) = tokio::sync::mpsc::channel::<Output>(1024);
    let mut rx = Some(rx);
    // `--leader-elect`: a standby waits here for the Lease (health and
    // metrics answer meanwhile) and shows viewers the journals, read-only.
    let standby = match service.elects_leader() {
        true => {
            Some(standby::Standby::start(&setups, &options, rx.take().expect("unused"), standby::refusal("starting")))
        }
        false => None,
    };
    let mut leadership = match &standby {
        None => service.lead(None).await.map_err(color_eyre::eyre::Report::msg)?,
        Some(view) => tokio::select! {
            signo = signals.next() => return Ok(signo),
            led = service.lead(Some(&view.controls)) => led.map_err(color_eyre::eyre::Report::msg)?,
            () = server::serve(&listening, view.hub.clone(), view.controls.clone(), roles.clone()) => {
                return Err(color_eyre::eyre::eyre!("{}: the socket stopped accepting connections", socket.display()));
            }
        },
    };
    let engine = Engine::start(setups, options, tx)?;
    let (hub, controls) = match standby {
        Some(view) => view.drive(&engine, "this replica holds the lease now and drives the rollouts".into()),
        None => {
            let rx = rx.take().expect("the engine's events");
            (
                hub::Hub::start(engine.subscribe(), rx, engine.history().to_vec()),
                standby::Controls::from(engine.handle()),
            )
        }
    };
    service.follow(engine.subscribe(), hub.clone()).map_err(color_eyre::eyre::Report::msg)?;
    let count = engine.subscribe().borrow().rollouts.len();
    say(format_args!(
        "flightdeck: serving {count} rollouts on {}; attach with `flightdeck attach --socket {0}`",
        socket.display()
    ));
    if let Some(addr) = service.http_addr {
        say(format_args!("flightdeck: health and metrics on http://{addr}/healthz, /readyz and /metrics"));
    }
    #[cfg(feature = "ssh")]
    if let Some(ssh) = &ssh {
        say(format_args!("flightdeck: and over SSH on {}: `ssh -t -p {} NAME@HOST`", ssh.address, ssh.address.port()));
    }
    #[cfg(feature = "ssh")]
    let ssh_stop = ssh.as_ref().map(ssh::SshListener::stopper);
    let others = {
        let (hub, engine) = (hub.clone(), controls.clone());
        async move {
            #[cfg(feature = "ssh")]
            if let Some(ssh) = ssh {
                return ssh::serve(ssh, hub, engine).await;
            }
            let _ = (hub, engine);
            std::future::pending::<()>().await
        }
    };
    let stopping = async {
        let signo = service.next_stop(&mut signals).await;
        // While the listeners still run: SSH clients get their terminals back.
        #[cfg(feature = "ssh")]
        if let Some(stop) = &ssh_stop {
            stop.stop().await;
        }
        signo
    };
    let signo = tokio::select! {
        signo = stopping => signo,
        () = server::serve(&listening, hub, controls, roles) => {
            engine.shutdown().await;
            return Err(color_eyre::eyre::eyre!("{}: the socket stopped accepting connections", socket.display()));
        }
        () = others => {
            engine.shutdown().await;
            return Err(color_eyre::eyre::eyre!("the SSH listener stopped"));
        }
        why = leadership.lost() => {
            engine.shutdown().await;
            return Err(color_eyre::eyre::eyre!("lost the lease ({why}): stopped driving; start again to stand by"));
        }
    };
    engine.shutdown().await;
    // What the last steps called for still goes out (for a few seconds at most).
    service.stop().await;
    drop(listening);
    Ok(signo)
}

/// A line on stderr if it can be written: a server whose stderr is gone (a
/// closed pipe, a full disk) goes on serving, and stops cleanly on a signal.
fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
