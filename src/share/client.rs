//! `flightdeck attach`: a [`Link`] over the socket. The connection is kept
//! by a task that rebuilds the snapshot from the server's changes, passes
//! events and replies on, and when the server goes, says so and connects
//! again (a restarted server resumes from its journals).

use crate::protocol::wire::{self, ClientMessage, Fields, ServerMessage, MAX_LINE};
use crate::protocol::{CommandRequest, Link, Output, Reply, Role, SessionKind, Snapshot, Submit, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Between attempts to reach a server that went away.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

type Pending = (CommandRequest, oneshot::Sender<Reply>);

/// Who the server took us for.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub name: String,
    pub role: Role,
    pub session: SessionKind,
}

/// A connection that said hello and got the whole state.
struct Connected {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    welcome: Welcome,
    snapshot: Snapshot,
    history: Vec<Output>,
    /// The rollouts as the server sent them, for its changes to apply to.
    fields: Fields,
}

/// Connects to the server on `socket`, giving `name` as the display name
/// (the server decides who this is, from the user id). The first connection
/// must work (its error says why); later losses reconnect by themselves.
pub async fn attach(socket: &Path, name: &str) -> Result<(Link, Welcome), String> {
    let first = connect(socket, name).await?;
    let welcome = first.welcome.clone();
    let (snap_tx, snapshots) = watch::channel(first.snapshot.clone());
    let (out_tx, outputs) = mpsc::channel(1024);
    let (status_tx, status) = watch::channel(None);
    let (role_tx, role) = watch::channel(Some(welcome.role));
    let (cmd_tx, cmd_rx) = mpsc::channel::<Pending>(16);
    let history = first.history.clone();
    let keeper = Keeper {
        socket: socket.to_path_buf(),
        name: name.into(),
        snapshots: snap_tx,
        outputs: out_tx,
        status: status_tx,
        role: role_tx,
    };
    tokio::spawn(keeper.run(first, cmd_rx));
    let link = Link { snapshots, outputs, commands: Arc::new(SocketCommands(cmd_tx)), history, status, role };
    Ok((link, welcome))
}

struct SocketCommands(mpsc::Sender<Pending>);

#[async_trait::async_trait]
impl Submit for SocketCommands {
    async fn submit(&self, request: CommandRequest) -> Reply {
        // What the server would refuse (a pasted 20,000-character reason
        // would even end the connection: lines are bounded) is refused here.
        if let Err(reason) = crate::share::server::check_texts(&request) {
            return Reply::Rejected { reason: format!("{reason}; not sent") };
        }
        let (tx, rx) = oneshot::channel();
        if self.0.send((request, tx)).await.is_err() {
            return Reply::Rejected { reason: "not connected to the server".into() };
        }
        rx.await.unwrap_or(Reply::Rejected { reason: "the connection was lost before the answer came".into() })
    }
}

async fn connect(socket: &Path, name: &str) -> Result<Connected, String> {
    let shown = socket.display();
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("{shown}: cannot attach ({e}); is `flightdeck serve` running there?"))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let client = format!("flightdeck attach {}", env!("CARGO_PKG_VERSION"));
    let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), client };
    write.write_all(&wire::encode(&hello)).await.map_err(|e| format!("{shown}: {e}"))?;
    let welcome = match next(&mut read).await? {
        ServerMessage::Welcome { name, role, session, .. } => Welcome { name, role, session },
        ServerMessage::Error { message } => return Err(format!("{shown}: the server refused: {message}")),
        other => return Err(format!("{shown}: expected a welcome, got {other:?}")),
    };
    let (mut snapshot, history, follow) = match next(&mut read).await? {
        ServerMessage::Full { snapshot, history, follow } => (snapshot, history, follow),
        other => return Err(format!("{shown}: expected the state, got {other:?}")),
    };
    let mut fields = Fields::default();
    while snapshot.rollouts.len() < follow {
        match next(&mut read).await? {
            ServerMessage::Changed { rollouts, .. } => {
                for patch in rollouts {
                    snapshot.rollouts.push(Arc::new(fields.apply(patch).map_err(|e| format!("{shown}: {e}"))?));
                }
            }
            other => return Err(format!("{shown}: expected the rollouts, got {other:?}")),
        }
    }
    Ok(Connected { read, write, welcome, snapshot, history, fields })
}

async fn next(read: &mut BufReader<OwnedReadHalf>) -> Result<ServerMessage, String> {
    match wire::read_line(read, MAX_LINE).await {
        Ok(Some(line)) => serde_json::from_slice(&line).map_err(|e| format!("unreadable message from the server: {e}")),
        Ok(None) => Err("the server closed the connection".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Keeps the link up.
struct Keeper {
    socket: PathBuf,
    name: String,
    snapshots: watch::Sender<Snapshot>,
    outputs: mpsc::Sender<Output>,
    status: watch::Sender<Option<String>>,
    /// The role of the latest welcome: a restarted server may give another.
    role: watch::Sender<Option<Role>>,
}

impl Keeper {
    async fn run(self, first: Connected, mut commands: mpsc::Receiver<Pending>) {
        let mut connected = Some(first);
        loop {
            let conn = match connected.take() {
                Some(c) => c,
                None => match connect(&self.socket, &self.name).await {
                    Ok(c) => {
                        self.role.send_replace(Some(c.welcome.role));
                        self.snapshots.send_replace(c.snapshot.clone());
                        self.status.send_replace(None);
                        c
                    }
                    Err(_) => {
                        if self.snapshots.is_closed() {
                            return;
                        }
                        tokio::time::sleep(RECONNECT_EVERY).await;
                        continue;
                    }
                },
            };
            let why = self.follow(conn, &mut commands).await;
            if self.snapshots.is_closed() {
                return; // the cockpit is gone
            }
            tracing::warn!(%why, "lost the server");
            self.status.send_replace(Some(format!("{why}; reconnecting…")));
        }
    }

    /// Follows one connection until it ends, and says why it ended.
    async fn follow(&self, conn: Connected, commands: &mut mpsc::Receiver<Pending>) -> String {
        let Connected { mut read, mut write, mut fields, .. } = conn;
        // Lines are read on their own task: a read cut off by `select!`
        // would lose half a line.
        let (lines, mut messages) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            loop {
                let message = next(&mut read).await;
                let end = message.is_err();
                if lines.send(message).await.is_err() || end {
                    return;
                }
            }
        });
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        let mut next_id = 0u64;
        let lost = loop {
            tokio::select! {
                message = messages.recv() => match message {
                    Some(Ok(message)) => {
                        if let Err(why) = self.take(message, &mut fields, &mut pending) {
                            break why;
                        }
                    }
                    Some(Err(e)) => break format!("connection to the server lost ({e})"),
                    None => break "connection to the server lost".into(),
                },
                command = commands.recv() => {
                    let Some((request, reply)) = command else { break "the cockpit is gone".into() };
                    next_id += 1;
                    let line = wire::encode(&ClientMessage::Command { id: next_id, request: request.clone() });
                    pending.insert(next_id, (request, reply));
                    if let Err(e) = write.write_all(&line).await {
                        break format!("connection to the server lost ({e})");
                    }
                }
                _ = self.snapshots.closed() => break "the cockpit is gone".into(),
            }
        };
        reader.abort();
        // Unanswered commands: the sender must not think they applied.
        for (_, (_, reply)) in pending {
            let reason = "the connection was lost before the answer came; look at the rollout before sending again";
            let _ = reply.send(Reply::Rejected { reason: reason.into() });
        }
        lost
    }

    fn take(
        &self,
        message: ServerMessage,
        fields: &mut Fields,
        pending: &mut HashMap<u64, Pending>,
    ) -> Result<(), String> {
        match message {
            ServerMessage::Changed { at, rollouts, attached, releases } => {
                let mut changed = Vec::new();
                for patch in rollouts {
                    changed.push(Arc::new(fields.apply(patch).map_err(|e| e.to_string())?));
                }
                self.snapshots.send_modify(|s| {
                    s.at = at;
                    for r in changed {
                        match s.rollouts.iter_mut().find(|o| o.id == r.id) {
                            Some(slot) => *slot = r,
                            None => s.rollouts.push(r),
                        }
                    }
                    if let Some(attached) = attached {
                        s.attached = attached;
                    }
                    if let Some(releases) = releases {
                        s.releases = releases;
                    }
                });
            }
            ServerMessage::Output { output } => self.tell(output),
            ServerMessage::Skipped { events } => self.tell(Output::Notice {
                rollout: "flightdeck".into(),
                at: self.snapshots.borrow().at,
                level: "warning".into(),
                message: format!("{events} events skipped: this cockpit fell behind (the state shown is current)"),
            }),
            ServerMessage::Reply { id, reply } => {
                if let Some((_, tx)) = pending.remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            ServerMessage::Error { message } => return Err(format!("the server closed the connection: {message}")),
            ServerMessage::Welcome { .. } | ServerMessage::Full { .. } => {
                return Err("the server sent a second welcome".into());
            }
        }
        Ok(())
    }

    fn tell(&self, output: Output) {
        // A cockpit that is behind loses events, never the state.
        let _ = self.outputs.try_send(output);
    }
}
