//! `flightdeck serve`: the engine's viewers on a Unix socket.
//!
//! Who a connection is comes from the kernel: the user id in the socket's
//! peer credentials, named by the user database ([`Identity`]); the name a
//! client gives in its hello is a display hint, checked ([`wire::valid_name`])
//! and shown beside its session, never who acts. Each connection gets a
//! role from [`Roles`] by that user, the whole state once, then only what
//! changed. Its commands reach the engine with its user, role and session,
//! whatever the client claims, within per-session limits ([`Gate`]): at most
//! [`COMMANDS_PER_SECOND`] (bursts of [`COMMAND_BURST`]), texts of at most
//! [`MAX_TEXT`] characters, a viewer's first [`VIEWER_JOURNALED`] commands
//! journaled and the rest refused here, a refused command repeated on an
//! unchanged rollout answered here. What is refused here reaches neither
//! the engine nor the journal; every viewer hears of it once per
//! [`NOTICE_EVERY`], with counts. Anything the server cannot read gets an
//! error line and the connection is closed; a connection that stops
//! reading is dropped after [`WRITE_TIMEOUT`].

use super::hub::Hub;
use super::roles::{self, Identity, Roles};
use super::standby::Controls;
use crate::protocol::wire::{self, ClientMessage, ServerMessage, MAX_CLIENT_LINE};
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::{inert, needs_escape, CommandRequest, Origin, Output, Peer, Reply, Role, SessionKind};
use flightdeck_core::rollout::Actor;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::time::Instant;

/// A client has this long to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes no bytes for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands one session may send a second, on average…
pub const COMMANDS_PER_SECOND: f64 = 10.0;
/// …and at once after a quiet while.
pub const COMMAND_BURST: f64 = 20.0;
/// The longest text (a reason, a revision, an image) a command may carry, in characters.
pub const MAX_TEXT: usize = 500;
/// A viewer's commands the engine refuses (and journals) per session; the
/// rest are refused here.
pub const VIEWER_JOURNALED: u32 = 3;
/// A refused command sent again this soon, on a rollout viewers see
/// unchanged, gets the same answer without reaching the engine.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(1);
/// Commands of one session waiting for the engine's answer at once.
pub const IN_FLIGHT: usize = 8;
/// How often viewers hear how many commands a session had refused here.
pub const NOTICE_EVERY: Duration = Duration::from_secs(5);

/// Why the socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "{0}: another flightdeck serve is running on this socket; attach to it with `flightdeck attach --socket {0}`"
    )]
    InUse(String),
    #[error("{0}: exists and is not a socket; not replacing it")]
    NotASocket(String),
    #[error("--socket-group {0}: no such group on this host")]
    NoGroup(String),
    #[error(
        "{dir}: mode {mode:04o} lets no member of group {group} through to the socket; \
         put it (--socket) in a directory they can enter"
    )]
    Unreachable { dir: String, mode: u32, group: String },
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
    bind_shared(path, None).await
}

/// As [`bind`]; with a `group` (name or number) the socket is given to it,
/// mode 0660, so its members can attach (each as who the kernel says they
/// are), and a directory made for it is 0710 in that group. A directory on
/// the way that lets neither the group nor others through is refused.
pub async fn bind_shared(path: &Path, group: Option<&str>) -> Result<Socket, BindError> {
    let shown = path.display().to_string();
    let io = |source| BindError::Io { path: shown.clone(), source };
    let gid = match group {
        Some(name) => Some(roles::gid_of(name).ok_or_else(|| BindError::NoGroup(inert(name).into_owned()))?),
        None => None,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        // Every directory it makes 0700, whatever the umask.
        crate::paths::private_dir(dir).map_err(io)?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(dir, None, Some(gid)).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710)).map_err(io)?;
        }
    }
    if let (Some(gid), Some(group)) = (gid, group) {
        reachable_by(path, gid, group)?;
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
    let socket = Socket { listener, path: path.to_path_buf() };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    if let Some(gid) = gid {
        // Given to the group before the group may use it.
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    }
    Ok(socket)
}

/// Every directory above `path` lets group `gid` (or everyone) through.
fn reachable_by(path: &Path, gid: u32, group: &str) -> Result<(), BindError> {
    use std::os::unix::fs::MetadataExt;
    for dir in path.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        let mode = meta.mode() & 0o7777;
        let through = mode & 0o001 != 0 || (meta.gid() == gid && mode & 0o010 != 0);
        if !through {
            return Err(BindError::Unreachable { dir: dir.display().to_string(), mode, group: group.into() });
        }
    }
    Ok(())
}

/// Accepts connections until the task is dropped; their commands go to
/// `engine` (an engine's handle, or a standby's [`Controls`]).
pub async fn serve(socket: &Socket, hub: Arc<Hub>, engine: impl Into<Controls>, roles: Arc<Roles>) {
    let engine = engine.into();
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
pub async fn connection(stream: UnixStream, hub: Arc<Hub>, engine: impl Into<Controls>, roles: Arc<Roles>) {
    let engine = engine.into();
    let cred = stream.peer_cred();
    let (read, mut write) = stream.into_split();
    let Ok(cred) = cred else {
        let message = "cannot tell which user is connecting (no peer credentials); refused".to_string();
        return refuse(&mut write, message).await;
    };
    let mut read = BufReader::new(read);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, wire::read_line(&mut read, MAX_CLIENT_LINE)).await {
        Err(_) => Err("no hello within 10 s".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(None)) => return,
        Ok(Ok(Some(line))) => wire::parse_hello(&line).map_err(|e| e.to_string()),
    };
    let hint = match hello {
        Ok((hint, _client)) => hint,
        Err(message) => return refuse(&mut write, message).await,
    };
    // Who it is: the kernel's word, never the hello's.
    let who = Identity::of_uid(cred.uid());
    let role = roles.role_of(&who.name, who.is_own());
    let id = hub.session_number();
    let hint = (hint != who.name).then_some(hint);
    let session = SessionKind::Socket { pid: cred.pid(), id, uid: Some(who.uid), hint };
    tracing::info!(name = %who.name, uid = who.uid, role = role.label(), %session, "attached");
    let origin = Origin { role, session: session.clone() };
    let welcome = ServerMessage::Welcome { version: PROTOCOL_VERSION, name: who.name.clone(), role, session };
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
    let _presence = hub.attach(id, Peer { name: who.name.clone(), role, session: origin.session.clone() });
    let (to_client, from_reader) = mpsc::channel::<ServerMessage>(64);
    let session = Session {
        actor: Actor::new(who.name),
        origin,
        engine,
        hub: hub.clone(),
        out: to_client,
        gate: Arc::new(Mutex::new(Gate::new(Instant::now()))),
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
    };
    let reader = tokio::spawn(read_commands(read, session));
    write_updates(&mut write, &hub, since, events, from_reader).await;
    reader.abort();
}

/// The error line, then the connection is closed.
async fn refuse(write: &mut OwnedWriteHalf, message: String) {
    tracing::info!(message = %inert(&message), "connection refused");
    let _ = send(write, &ServerMessage::Error { message }).await;
    let _ = write.shutdown().await;
}

/// One connection's side of the engine: who it is and what it may still send.
struct Session {
    actor: Actor,
    origin: Origin,
    engine: Controls,
    hub: Arc<Hub>,
    out: mpsc::Sender<ServerMessage>,
    gate: Arc<Mutex<Gate>>,
    in_flight: Arc<Semaphore>,
}

impl Session {
    /// `alice (socket #3 (uid 1000, pid 42))`, for notices and the log.
    fn who(&self) -> String {
        format!("{} ({})", self.actor.0, self.origin.session)
    }

    /// Tells every viewer (and the log) what was refused here since the last notice.
    fn notice_held(&self) {
        let held = std::mem::take(&mut self.gate.lock().expect("session gate").held);
        if let Some(message) = held.notice(&self.who()) {
            tracing::warn!(message = %inert(&message), "commands refused at the session");
            self.hub.notice(message);
        }
    }
}

/// Notices what is still held when the session ends, however it ends.
struct NoticeOnDrop(Arc<Session>);

impl Drop for NoticeOnDrop {
    fn drop(&mut self) {
        self.0.notice_held();
    }
}

/// Commands from the client, each answered; the first unreadable line ends the connection.
async fn read_commands(mut read: BufReader<tokio::net::unix::OwnedReadHalf>, session: Session) {
    let session = Arc::new(session);
    let _last = NoticeOnDrop(session.clone());
    let ticker = {
        let session = Arc::downgrade(&session);
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(Instant::now() + NOTICE_EVERY, NOTICE_EVERY);
            loop {
                every.tick().await;
                match session.upgrade() {
                    Some(s) => s.notice_held(),
                    None => return,
                }
            }
        })
    };
    let _ticker = AbortOnDrop(ticker);
    let out = &session.out;
    loop {
        let line = match wire::read_line(&mut read, MAX_CLIENT_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                let _ = out.send(ServerMessage::Error { message: e.to_string() }).await;
                return;
            }
        };
        match wire::parse_client(&line) {
            Ok(ClientMessage::Command { id, mut request }) => {
                // The connection's own user, whatever the client wrote.
                request.actor = session.actor.clone();
                let change = session.hub.rollout_change(&request.rollout);
                let admitted = session.gate.lock().expect("session gate").admit(
                    &request,
                    &session.actor,
                    session.origin.role,
                    change,
                    Instant::now(),
                );
                let key = match admitted {
                    Ok(key) => key,
                    Err(reason) => {
                        let _ = out.send(ServerMessage::Reply { id, reply: Reply::Rejected { reason } }).await;
                        continue;
                    }
                };
                let Ok(permit) = session.in_flight.clone().try_acquire_owned() else {
                    session.gate.lock().expect("session gate").held.too_many += 1;
                    let reason = format!(
                        "too many commands: {IN_FLIGHT} of this session wait for the engine's answer; \
                         refused by the server, not sent"
                    );
                    let _ = out.send(ServerMessage::Reply { id, reply: Reply::Rejected { reason } }).await;
                    continue;
                };
                let s = session.clone();
                tokio::spawn(async move {
                    let reply = s.engine.submit_from(request, s.origin.clone()).await;
                    drop(permit);
                    s.gate.lock().expect("session gate").answered(key, change, &reply, Instant::now());
                    let _ = s.out.send(ServerMessage::Reply { id, reply }).await;
                });
            }
            Ok(ClientMessage::Hello { .. }) => {
                let message = "hello again: a connection says hello once".to_string();
                let _ = out.send(ServerMessage::Error { message }).await;
                return;
            }
            Err(refused) => {
                let _ = out.send(ServerMessage::Error { message: refused.to_string() }).await;
                return;
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one session may still send: its token bucket, how many of a
/// viewer's commands went to the engine, the last refusal, and the counts
/// of what was refused here since the last notice.
#[derive(Debug)]
pub struct Gate {
    tokens: f64,
    filled: Instant,
    viewer_sent: u32,
    refused: Option<Refused>,
    pub held: Held,
}

/// The engine's last refusal of this session's command.
#[derive(Debug)]
struct Refused {
    /// The command as sent (JSON), to recognise it sent again.
    key: String,
    reason: String,
    /// The rollout's change number (as viewers saw it) when it was sent.
    change: Option<u64>,
    at: Instant,
}

/// Commands refused by the server (not sent to the engine) since the last notice.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    pub too_many: u64,
    pub repeated: u64,
    pub viewer: u64,
    pub bad_text: u64,
}

impl Held {
    /// One line for every viewer's events, if anything was held.
    pub fn notice(&self, who: &str) -> Option<String> {
        let total = self.too_many + self.repeated + self.viewer + self.bad_text;
        if total == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if self.too_many > 0 {
            parts.push(format!("{} over the limit of {COMMANDS_PER_SECOND} a second", self.too_many));
        }
        if self.repeated > 0 {
            parts.push(format!("{} repeats of a refused command", self.repeated));
        }
        if self.viewer > 0 {
            parts.push(format!("{} from a viewer", self.viewer));
        }
        if self.bad_text > 0 {
            parts.push(format!("{} with text too long or with control characters", self.bad_text));
        }
        let s = if total == 1 { "" } else { "s" };
        Some(format!("{who}: {total} command{s} refused by the server, not journaled: {}", parts.join(", ")))
    }
}

impl Gate {
    pub fn new(now: Instant) -> Gate {
        Gate { tokens: COMMAND_BURST, filled: now, viewer_sent: 0, refused: None, held: Held::default() }
    }

    /// Whether `request` (from `actor`, with `role`; its rollout at change
    /// `change` as viewers see it) goes to the engine: `Ok` with its key,
    /// or why it is refused here.
    pub fn admit(
        &mut self,
        request: &CommandRequest,
        actor: &Actor,
        role: Role,
        change: Option<u64>,
        now: Instant,
    ) -> Result<String, String> {
        let ran = now.saturating_duration_since(self.filled).as_secs_f64();
        self.tokens = (self.tokens + ran * COMMANDS_PER_SECOND).min(COMMAND_BURST);
        self.filled = now;
        if self.tokens < 1.0 {
            self.held.too_many += 1;
            return Err(format!(
                "too many commands: at most {COMMANDS_PER_SECOND} a second from one session (bursts of \
                 {COMMAND_BURST}); refused by the server, not sent"
            ));
        }
        self.tokens -= 1.0;
        if let Err(why) = check_texts(request) {
            self.held.bad_text += 1;
            return Err(format!("{why}; refused by the server, not sent"));
        }
        if role == Role::Viewer {
            if self.viewer_sent >= VIEWER_JOURNALED {
                self.held.viewer += 1;
                return Err(format!(
                    "{} is a viewer: viewers see everything and send nothing (refused by the server; \
                     only the first {VIEWER_JOURNALED} of a session are journaled)",
                    actor.0
                ));
            }
            self.viewer_sent += 1;
        }
        let key = serde_json::to_string(request).unwrap_or_default();
        if let Some(last) = &self.refused {
            let recent = now.saturating_duration_since(last.at) < REPEAT_WINDOW;
            if recent && last.key == key && last.change == change && change.is_some() {
                self.held.repeated += 1;
                return Err(format!("{} (sent again on an unchanged rollout: refused by the server)", last.reason));
            }
        }
        Ok(key)
    }

    /// The engine answered the command `key` sent at rollout change `change`.
    pub fn answered(&mut self, key: String, change: Option<u64>, reply: &Reply, now: Instant) {
        self.refused = match reply {
            Reply::Rejected { reason } => Some(Refused { key, reason: reason.clone(), change, at: now }),
            Reply::Ack => None,
        };
    }
}

/// Every text of a command (rollout, revision, reasons, images) is at most
/// [`MAX_TEXT`] characters, with nothing a terminal or a log would act on:
/// the journal keeps them, and every viewer's events pane and `audit` show
/// them. `Err` says what is wrong.
pub fn check_texts(request: &CommandRequest) -> Result<(), String> {
    fn strings<'a>(value: &'a serde_json::Value, into: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::String(s) => into.push(s),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, into)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, into)),
            _ => {}
        }
    }
    let command = serde_json::to_value(&request.command).unwrap_or_default();
    let mut texts = vec![request.rollout.as_str(), request.expected_revision.as_str()];
    strings(&command, &mut texts);
    for text in texts {
        let n = text.chars().count();
        if n > MAX_TEXT {
            return Err(format!("a command's text is at most {MAX_TEXT} characters (one has {n})"));
        }
        if text.chars().any(needs_escape) {
            return Err("a command's text must not hold control, bidirectional or zero-width characters".into());
        }
    }
    Ok(())
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
