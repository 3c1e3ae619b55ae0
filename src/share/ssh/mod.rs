//! `flightdeck serve --ssh ADDR --authorized-keys FILE`: an SSH server
//! whose only program is the cockpit.
//!
//! Keys listed in the authorized-keys file (see [`keys`]) sign in, and
//! nothing else does: public keys only, no passwords. Each session with a
//! pty and a shell request gets its own cockpit on the shared engine,
//! through the hub like a socket client, at its own size; exec and
//! subsystem requests are refused, so the host runs nothing for a client.
//! Commands carry the key's name and role, and the session kind
//! [`SessionKind::Ssh`] with the key's SHA256 fingerprint goes into the
//! audit.

pub mod keys;
pub mod term;

use super::hub::Hub;
use crate::engine::EngineHandle;
use crate::protocol::{CommandRequest, Link, Origin, Output, Peer, Reply, SessionKind, Submit};
use crate::ui::theme::ColorMode;
use crate::ui::CockpitSettings;
use flightdeck_core::rollout::Actor;
use keys::{Authorized, AuthorizedKeys};
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::crossterm::{cursor, QueueableCommand};
use ratatui::layout::Size;
use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Server, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use term::{Decoder, Outbox, SessionBackend, SharedSize, ESC_WAIT};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

/// How long the last frame and the goodbye may take to reach a client.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `serve --ssh` was given.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub listen: String,
    pub authorized_keys: PathBuf,
}

/// A bound SSH listener with its keys, ready to serve.
pub struct SshListener {
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    keys: Arc<AuthorizedKeys>,
    pub address: SocketAddr,
    stopper: Stopper,
}

impl SshListener {
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }
}

/// Ends every SSH session with the client's terminal given back.
#[derive(Clone)]
pub struct Stopper {
    stop: watch::Sender<bool>,
    live: Arc<AtomicUsize>,
}

impl Stopper {
    /// Tells every cockpit to end and waits (a moment at most) until their
    /// goodbyes are out and their clients have hung up.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + GOODBYE_TIMEOUT;
        while self.live.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Counts a live session until dropped.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::SeqCst);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads the authorized keys (every line checked) and the host key (made
/// on first run), then listens. Anything wrong stops the server before it starts.
pub async fn bind(options: &SshOptions) -> Result<SshListener, String> {
    let keys = AuthorizedKeys::load(&options.authorized_keys)?;
    if keys.is_empty() {
        return Err(format!("{}: no keys: nobody could sign in", options.authorized_keys.display()));
    }
    let host_key = keys::host_key(&host_key_path())?;
    let listener = TcpListener::bind(&options.listen)
        .await
        .map_err(|e| format!("--ssh {}: cannot listen ({e})", options.listen))?;
    let address = listener.local_addr().map_err(|e| format!("--ssh {}: {e}", options.listen))?;
    let config = russh::server::Config {
        keys: vec![host_key],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // A dead client's session ends; a live idle one is kept.
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        ..Default::default()
    };
    let stopper = Stopper { stop: watch::channel(false).0, live: Arc::default() };
    Ok(SshListener { listener, config: Arc::new(config), keys: Arc::new(keys), address, stopper })
}

/// The server's host key: `<data dir>/ssh/host_ed25519`, mode 0600.
pub fn host_key_path() -> PathBuf {
    crate::paths::data_dir().join("ssh").join("host_ed25519")
}

/// Serves SSH sessions until the task is dropped.
pub async fn serve(ssh: SshListener, hub: Arc<Hub>, engine: EngineHandle) {
    let shared = Arc::new(Shared { keys: ssh.keys.clone(), hub, engine, stopper: ssh.stopper.clone() });
    let mut server = SshServer(shared);
    if let Err(e) = server.run_on_socket(ssh.config.clone(), &ssh.listener).await {
        tracing::error!(error = %e, "the SSH listener stopped");
    }
}

struct Shared {
    keys: Arc<AuthorizedKeys>,
    hub: Arc<Hub>,
    engine: EngineHandle,
    stopper: Stopper,
}

struct SshServer(Arc<Shared>);

impl Server for SshServer {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            shared: self.0.clone(),
            peer,
            who: None,
            channels: HashMap::new(),
            ptys: HashMap::new(),
            colours: HashMap::new(),
            live: None,
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::info!(%error, "ssh connection ended");
    }
}

/// One SSH connection (it may open several sessions, each a cockpit).
struct Connection {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    /// The key it signed in with.
    who: Option<Authorized>,
    /// Opened session channels, until their shell request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The terminal size of each channel that asked for a pty.
    ptys: HashMap<ChannelId, Size>,
    /// The colour variables each channel's client sent.
    colours: HashMap<ChannelId, Colours>,
    /// Held from the first cockpit until the client hangs up. A goodbye
    /// (exit status, close) is queued in the connection and on the wire
    /// only once russh wrote it: a server that stopped when the cockpit
    /// ended could lose it (OpenSSH then says "closed by remote host").
    live: Option<Live>,
}

/// `NO_COLOR` and `COLORTERM` as a session's client sent them.
#[derive(Debug, Clone, Default)]
struct Colours {
    no_color: Option<String>,
    colorterm: Option<String>,
}

impl Colours {
    fn mode(&self) -> ColorMode {
        ColorMode::from_env(self.no_color.as_deref(), self.colorterm.as_deref())
    }
}

impl Connection {
    fn refuse_key(&self, user: &str, key: &russh::keys::PublicKey) -> Auth {
        let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256);
        tracing::warn!(user, %fingerprint, peer = ?self.peer, "ssh key not in the authorized keys: refused");
        Auth::reject()
    }

    /// Runs nothing: says why on the client's stderr and ends the channel
    /// with exit status 1. (A bare channel failure would leave OpenSSH
    /// saying only "exec request failed".)
    fn refuse_channel(&mut self, channel: ChannelId, why: &str, session: &mut Session) -> Result<(), russh::Error> {
        self.channels.remove(&channel);
        session.channel_success(channel)?;
        session.extended_data(channel, 1, format!("flightdeck: {why}\r\n"))?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

fn size_of(cols: u32, rows: u32) -> Size {
    let clamp = |n: u32| n.clamp(1, u16::MAX as u32) as u16;
    Size::new(clamp(cols), clamp(rows))
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        match self.shared.keys.find(offer.public_key) {
            Some(_) => Ok(Auth::Accept),
            None => Ok(self.refuse_key(user, offer.public_key)),
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        match self.shared.keys.find(key.public_key) {
            Some(who) => {
                tracing::info!(user, name = %who.name, fingerprint = %who.fingerprint, peer = ?self.peer, "ssh key accepted");
                self.who = Some(who.clone());
                Ok(Auth::Accept)
            }
            None => Ok(self.refuse_key(user, key.public_key)),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.who.is_some() {
            self.channels.insert(channel.id(), channel);
            reply.accept().await;
        }
        // Dropping `reply` refuses the channel.
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.ptys.insert(channel, size_of(cols, rows));
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let (Some(size), Some(who)) = (self.ptys.get(&channel).copied(), self.who.clone()) else {
            return self.refuse_channel(channel, "the cockpit needs a terminal: connect with `ssh -t`", session);
        };
        let Some(open) = self.channels.remove(&channel) else { return session.channel_failure(channel) };
        session.channel_success(channel)?;
        let id = self.shared.hub.session_number();
        let mode = self.colours.remove(&channel).unwrap_or_default().mode();
        self.live.get_or_insert_with(|| Live::new(&self.shared.stopper.live));
        tokio::spawn(cockpit_session(open, size, mode, who, id, self.shared.clone()));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(channel, "this server runs only the cockpit; no commands", session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(subsystem = name, "ssh subsystem refused");
        self.refuse_channel(channel, "this server runs only the cockpit; no subsystems", session)
    }

    /// Only the colour variables are taken (`ssh -o SendEnv=COLORTERM`):
    /// the session's colours are its client's, not the server's.
    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let colours = self.colours.entry(channel).or_default();
        match name {
            "NO_COLOR" => colours.no_color = Some(value.to_string()),
            "COLORTERM" => colours.colorterm = Some(value.to_string()),
            _ => return session.channel_failure(channel),
        }
        session.channel_success(channel)
    }
}

/// One cockpit on one SSH channel, from the shell request to goodbye.
async fn cockpit_session(
    channel: Channel<Msg>,
    size: Size,
    mode: ColorMode,
    who: Authorized,
    id: u64,
    shared: Arc<Shared>,
) {
    let _live = Live::new(&shared.stopper.live);
    let session = SessionKind::Ssh { fingerprint: who.fingerprint.clone(), id };
    tracing::info!(name = %who.name, role = who.role.label(), %session, "attached over ssh");
    let origin = Origin { role: who.role, session: session.clone() };
    let (mut read, write) = channel.split();
    let size: SharedSize = Arc::new(Mutex::new(size));
    let outbox = Arc::new(Outbox::default());
    let (input_tx, input) = mpsc::channel::<Event>(256);
    let writer = tokio::spawn(write_out(outbox.clone(), write, input_tx.downgrade()));
    // Keys and window changes; the input ends (and the cockpit with it) when the client goes.
    let reader_size = size.clone();
    tokio::spawn(async move {
        let mut decoder = Decoder::default();
        loop {
            let message = tokio::select! {
                m = read.wait() => m,
                () = tokio::time::sleep(ESC_WAIT), if decoder.is_pending() => {
                    for ev in decoder.timeout() {
                        let _ = input_tx.send(ev).await;
                    }
                    continue;
                }
            };
            let events = match message {
                Some(ChannelMsg::Data { data }) => decoder.feed(&data),
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    let new = size_of(col_width, row_height);
                    *reader_size.lock().expect("size") = new;
                    vec![Event::Resize(new.width, new.height)]
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return,
                Some(_) => continue,
            };
            for ev in events {
                if input_tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
    });
    let result = run_cockpit(&who, &origin, &shared, (size, mode), outbox.clone(), input).await;
    // The client's `ssh` exits 0 when its user quit, 1 otherwise.
    let (goodbye, status) = match &result {
        Ok(None) => (String::new(), 0),
        Ok(Some(_)) => ("flightdeck: the server stopped; the rollouts resume when it is served again\r\n".into(), 1),
        Err(e) => (format!("flightdeck: {e}\r\n"), 1),
    };
    let mut end = terminal_teardown();
    end.extend_from_slice(goodbye.as_bytes());
    outbox.push(&end);
    outbox.close(status);
    if tokio::time::timeout(GOODBYE_TIMEOUT, writer).await.is_err() {
        tracing::info!(%session, "ssh client did not take its last frame");
    }
    tracing::info!(name = %who.name, %session, bytes = outbox.sent(), "detached");
}

/// The cockpit itself: a link through the hub, the session's look (the
/// server's defaults), the session's terminal.
async fn run_cockpit(
    who: &Authorized,
    origin: &Origin,
    shared: &Arc<Shared>,
    (size, mode): (SharedSize, ColorMode),
    outbox: Arc<Outbox>,
    input: mpsc::Receiver<Event>,
) -> Result<Option<i32>, String> {
    let settings = CockpitSettings {
        theme: "default".into(),
        pin_theme: false,
        keymap: "default".into(),
        actor: who.name.clone(),
        mouse: true,
        driver: crate::ui::app::Driver::Server,
    };
    let link = link_through(&shared.hub, shared.engine.clone(), origin.clone(), Actor::new(who.name.clone()));
    let plan_themes: Vec<String> =
        link.snapshots.borrow().rollouts.iter().filter_map(|r| r.plan().theme.clone()).collect();
    let look = crate::ui::load_look_in(mode, &settings, &crate::paths::config_dir(), &plan_themes)?;
    let app = crate::ui::app_for(&link, look, &settings, who.role);
    let peer = Peer { name: who.name.clone(), role: who.role, session: origin.session.clone() };
    let _presence = shared.hub.attach(id_of(&origin.session), peer);
    outbox.push(&terminal_setup(settings.mouse));
    let mut terminal = ratatui::Terminal::new(SessionBackend::new(size, outbox)).map_err(|e| e.to_string())?;
    let mut stop = shared.stopper.stop.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
        libc::SIGTERM
    };
    let (_, signal) = crate::ui::run::run(app, &mut terminal, link, input, stopped).await.map_err(|e| e.to_string())?;
    Ok(signal)
}

fn id_of(session: &SessionKind) -> u64 {
    match session {
        SessionKind::Ssh { id, .. } | SessionKind::Socket { id, .. } => *id,
        SessionKind::Local => 0,
    }
}

/// The alternate screen, no cursor, the mouse.
fn terminal_setup(mouse: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = out.queue(EnterAlternateScreen).and_then(|o| o.queue(cursor::Hide));
    if mouse {
        let _ = out.queue(EnableMouseCapture);
    }
    out
}

/// The client's terminal as it was.
fn terminal_teardown() -> Vec<u8> {
    let mut out = Vec::new();
    let _ =
        out.queue(DisableMouseCapture).and_then(|o| o.queue(LeaveAlternateScreen)).and_then(|o| o.queue(cursor::Show));
    out
}

/// Empties the outbox into the channel; asks the cockpit for a whole
/// frame when the client caught up after frames were dropped. On close,
/// the client is told the session is over.
async fn write_out(outbox: Arc<Outbox>, write: russh::ChannelWriteHalf<Msg>, wake: mpsc::WeakSender<Event>) {
    loop {
        let taken = outbox.take().await;
        if taken.wants_repaint {
            // Any event makes the cockpit draw; focus means nothing to it.
            if let Some(wake) = wake.upgrade() {
                let _ = wake.try_send(Event::FocusGained);
            }
            continue;
        }
        if !taken.bytes.is_empty() {
            if write.data_bytes(taken.bytes).await.is_err() {
                return;
            }
            outbox.sent_out();
        }
        if let Some(status) = taken.closed {
            let _ = write.exit_status(status).await;
            let _ = write.eof().await;
            let _ = write.close().await;
            return;
        }
    }
}

/// A [`Link`] for an in-process viewer, fed by the hub as socket clients
/// are: the state at most once per hub interval, events as they come, a
/// viewer that falls behind skips events, never the state.
pub fn link_through(hub: &Arc<Hub>, engine: EngineHandle, origin: Origin, actor: Actor) -> Link {
    let (snap_tx, snapshots) = watch::channel(hub.snapshot());
    let history = hub.history();
    let follower = hub.clone();
    tokio::spawn(async move {
        let mut changes = follower.watch();
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    snap_tx.send_replace(follower.snapshot());
                }
                () = snap_tx.closed() => return,
            }
        }
    });
    let (out_tx, outputs) = mpsc::channel::<Output>(1024);
    let mut events = hub.events();
    tokio::spawn(async move {
        loop {
            let output = tokio::select! {
                event = events.recv() => match event {
                    Ok(output) => output,
                    Err(broadcast::error::RecvError::Lagged(n)) => Output::Notice {
                        rollout: "flightdeck".into(),
                        at: flightdeck_core::time::Timestamp::default(),
                        level: "warning".into(),
                        message: format!("{n} events skipped: this cockpit fell behind (the state shown is current)"),
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = out_tx.closed() => return,
            };
            // A cockpit that is behind loses events, never the state.
            let _ = out_tx.try_send(output);
        }
    });
    Link::new(snapshots, outputs, Arc::new(SessionCommands { engine, origin, actor }), history)
}

/// Commands from one session: its key's name and role, whatever the cockpit put in.
struct SessionCommands {
    engine: EngineHandle,
    origin: Origin,
    actor: Actor,
}

#[async_trait::async_trait]
impl Submit for SessionCommands {
    async fn submit(&self, mut request: CommandRequest) -> Reply {
        request.actor = self.actor.clone();
        self.engine.submit_from(request, self.origin.clone()).await
    }
}
