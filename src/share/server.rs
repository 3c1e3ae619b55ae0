//! `flightdeck serve`: the engine's viewers on a Unix socket.
//!
//! Each connection says hello, gets a role from [`Roles`], the whole state
//! once, then only what changed. Its commands reach the engine with its
//! name, role and session, whatever the client claims. Anything the
//! server cannot read gets an error line and the connection is closed; a
//! connection that stops reading is dropped after [`WRITE_TIMEOUT`].

use super::hub::Hub;
use super::roles::Roles;
use crate::engine::EngineHandle;
use crate::protocol::wire::{self, ClientMessage, ServerMessage, MAX_LINE};
use crate::protocol::{Origin, Output, Peer, SessionKind, PROTOCOL_VERSION};
use flightdeck_core::rollout::Actor;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc};

/// A client has this long to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes no bytes for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "{0}: another flightdeck serve is running on this socket; attach to it with `flightdeck attach --socket {0}`"
    )]
    InUse(String),
    #[error("{0}: exists and is not a socket; not replacing it")]
    NotASocket(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The listening socket, removed when dropped.
pub struct Socket {
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `path`, created mode 0600 (its directory 0700 if it makes
/// it). A socket file no server answers on is stale and taken over; one a
/// live server answers on is refused.
pub async fn bind(path: &Path) -> Result<Socket, BindError> {
    let shown = path.display().to_string();
    let io = |source| BindError::Io { path: shown.clone(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(BindError::NotASocket(shown)),
        Ok(_) => match UnixStream::connect(path).await {
            Ok(_) => return Err(BindError::InUse(shown)),
            // Nobody listens: left by a server that died.
            Err(_) => std::fs::remove_file(path).map_err(io)?,
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    // Created 0600 (no moment with wider access), then said so explicitly.
    // SAFETY: umask has no preconditions; it is set back at once.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = bound.map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(Socket { listener, path: path.to_path_buf() })
}

/// Accepts connections until the task is dropped.
pub async fn serve(socket: &Socket, hub: Arc<Hub>, engine: EngineHandle, roles: Arc<Roles>) {
    loop {
        match socket.listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, hub.clone(), engine.clone(), roles.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One client, from hello to goodbye.
pub async fn connection(stream: UnixStream, hub: Arc<Hub>, engine: EngineHandle, roles: Arc<Roles>) {
    let pid = stream.peer_cred().ok().and_then(|c| c.pid());
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, wire::read_line(&mut read, MAX_LINE)).await {
        Err(_) => Err("no hello within 10 s".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(None)) => return,
        Ok(Ok(Some(line))) => wire::parse_hello(&line),
    };
    let name = match hello {
        Ok((name, _client)) => name,
        Err(message) => return refuse(&mut write, message).await,
    };
    let role = roles.role_of(&name);
    let id = hub.session_number();
    let session = SessionKind::Socket { pid, id };
    tracing::info!(%name, role = role.label(), %session, "attached");
    let origin = Origin { role, session: session.clone() };
    let welcome = ServerMessage::Welcome { version: PROTOCOL_VERSION, name: name.clone(), role, session };
    // Subscribed before the welcome: an event the client's first command
    // (or anyone's) causes must not fall between the two.
    let events = hub.events();
    let (full, since) = hub.full();
    if send(&mut write, &welcome).await.is_err() {
        return;
    }
    for message in &full {
        if send(&mut write, message).await.is_err() {
            return;
        }
    }
    let _presence = hub.attach(id, Peer { name: name.clone(), role, session: origin.session.clone() });
    let (to_client, from_reader) = mpsc::channel::<ServerMessage>(64);
    let reader = tokio::spawn(read_commands(read, Actor::new(name), origin, engine, to_client));
    write_updates(&mut write, &hub, since, events, from_reader).await;
    reader.abort();
}

/// The error line, then the connection is closed.
async fn refuse(write: &mut OwnedWriteHalf, message: String) {
    tracing::info!(%message, "connection refused");
    let _ = send(write, &ServerMessage::Error { message }).await;
    let _ = write.shutdown().await;
}

/// Commands from the client, each answered; the first unreadable line ends the connection.
async fn read_commands(
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    actor: Actor,
    origin: Origin,
    engine: EngineHandle,
    out: mpsc::Sender<ServerMessage>,
) {
    loop {
        let line = match wire::read_line(&mut read, MAX_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                let _ = out.send(ServerMessage::Error { message: e.to_string() }).await;
                return;
            }
        };
        match serde_json::from_slice::<ClientMessage>(&line) {
            Ok(ClientMessage::Command { id, mut request }) => {
                // The connection's own name, whatever the client wrote.
                request.actor = actor.clone();
                let (engine, origin, out) = (engine.clone(), origin.clone(), out.clone());
                tokio::spawn(async move {
                    let reply = engine.submit_from(request, origin).await;
                    let _ = out.send(ServerMessage::Reply { id, reply }).await;
                });
            }
            Ok(ClientMessage::Hello { .. }) => {
                let message = "hello again: a connection says hello once".to_string();
                let _ = out.send(ServerMessage::Error { message }).await;
                return;
            }
            Err(e) => {
                let _ = out.send(ServerMessage::Error { message: format!("not a protocol message: {e}") }).await;
                return;
            }
        }
    }
}

/// Sends what changed, events and replies until the client goes or the
/// reader gives up on it. Never more than the latest state is queued.
async fn write_updates(
    write: &mut OwnedWriteHalf,
    hub: &Hub,
    mut since: u64,
    mut events: broadcast::Receiver<Output>,
    mut from_reader: mpsc::Receiver<ServerMessage>,
) {
    let mut changes = hub.watch();
    // Changes between the full state and now (this connection's own
    // presence among them) are sent at once, not with the next change.
    changes.mark_changed();
    loop {
        let message = tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let (message, now) = hub.changes_since(since);
                since = now;
                match message {
                    Some(m) => m,
                    None => continue,
                }
            }
            event = events.recv() => match event {
                Ok(output) => ServerMessage::Output { output },
                Err(broadcast::error::RecvError::Lagged(n)) => ServerMessage::Skipped { events: n },
                Err(broadcast::error::RecvError::Closed) => return,
            },
            message = from_reader.recv() => match message {
                Some(ServerMessage::Error { message }) => return refuse(write, message).await,
                Some(m) => m,
                None => return,
            },
        };
        if send(write, &message).await.is_err() {
            return;
        }
    }
}

/// Writes one message; a client that does not take it in time is gone.
async fn send(write: &mut OwnedWriteHalf, message: &ServerMessage) -> std::io::Result<()> {
    let line = wire::encode(message);
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&line)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(ErrorKind::TimedOut, "client stopped reading")),
    }
}
