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
//!
//! Nobody can crash, flood or outstay it: a window is drawn at
//! [`term::MAX_COLS`]×[`term::MAX_ROWS`] at most; connections not signed
//! in are bounded and cut after a login grace time, the listener never
//! stops on a failed accept ([`gate`]); sessions per connection and
//! cockpits per key are bounded; X11, agent and port forwarding are
//! refused. The authorized-keys file is followed as it changes (checked
//! every [`KEYS_POLL`]; SIGHUP stops `serve`, as it always has), and a
//! session whose key went, changed or expired is signed out.

pub mod gate;
pub mod keys;
pub mod patterns;
pub mod term;

use super::hub::Hub;
use super::standby::Controls;
use crate::protocol::{CommandRequest, Link, Origin, Output, Peer, Reply, SessionKind, Submit};
use crate::ui::theme::ColorMode;
use crate::ui::CockpitSettings;
use flightdeck_core::rollout::Actor;
use gate::{Cuttable, Gate, Limits, Slot};
use keys::{Authorized, AuthorizedKeys};
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::crossterm::{cursor, QueueableCommand};
use russh::keys::{Algorithm, EcdsaCurve};
use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet, Preferred};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use term::{Decoder, Outbox, SessionBackend, SharedSize, Window, ESC_WAIT};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};

/// How long the last frame and the goodbye may take to reach a client.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the authorized-keys file is looked at for changes, and live
/// sessions checked against it (and against their keys' expiry times).
pub const KEYS_POLL: Duration = Duration::from_secs(1);

/// A changed file is read once it has stayed the same this long.
const KEYS_SETTLE: Duration = Duration::from_millis(250);

/// A failed accept (out of file descriptors, say) is retried after this,
/// doubling up to [`ACCEPT_BACKOFF_MAX`]: the listener never gives up.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Refused connections and failed accepts are logged at most this often (with a count).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The key types whose signatures the server checks (see [`keys`]): what
/// it tells clients in `server-sig-algs`.
const KEY_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
];

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
    keys_path: PathBuf,
    keys_stamp: Option<Stamp>,
    gate: Arc<Gate>,
    pub address: SocketAddr,
    /// The host key as `ssh-keygen -l` shows it: `256 SHA256:… (ED25519)`.
    pub host_fingerprint: String,
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

/// Reads the authorized keys (every line checked, the file held to
/// OpenSSH's `StrictModes`) and the host key (made on first run), then
/// listens. Anything wrong stops the server before it starts.
pub async fn bind(options: &SshOptions) -> Result<SshListener, String> {
    let limits = Limits::from_env()?;
    keys::check_modes(&options.authorized_keys)?;
    // Taken before the read: a change while starting is read again.
    let keys_stamp = file_stamp(&options.authorized_keys);
    let keys = AuthorizedKeys::load(&options.authorized_keys)?;
    if keys.is_empty() {
        return Err(format!("{}: no keys: nobody could sign in", options.authorized_keys.display()));
    }
    let host_path = host_key_path();
    keys::check_host_dir(&host_path)?;
    let host_key = keys::host_key(&host_path)?;
    let host_fingerprint = keys::host_fingerprint(&host_key);
    let listener = TcpListener::bind(&options.listen)
        .await
        .map_err(|e| format!("--ssh {}: cannot listen ({e})", options.listen))?;
    let address = listener.local_addr().map_err(|e| format!("--ssh {}: {e}", options.listen))?;
    let config = russh::server::Config {
        keys: vec![host_key],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        preferred: Preferred { key: Cow::Borrowed(KEY_ALGORITHMS), ..Preferred::default() },
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        // A dead client's session ends; a live idle one is kept.
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        ..Default::default()
    };
    let stopper = Stopper { stop: watch::channel(false).0, live: Arc::default() };
    Ok(SshListener {
        listener,
        config: Arc::new(config),
        keys: Arc::new(keys),
        keys_path: options.authorized_keys.clone(),
        keys_stamp,
        gate: Gate::new(limits),
        address,
        host_fingerprint,
        stopper,
    })
}

/// The server's host key: `<data dir>/ssh/host_ed25519`, mode 0600.
pub fn host_key_path() -> PathBuf {
    crate::paths::data_dir().join("ssh").join("host_ed25519")
}

/// Serves SSH sessions until the task is dropped: the listener never
/// stops by itself (a failed accept is retried), and the authorized-keys
/// file is followed as it changes.
pub async fn serve(ssh: SshListener, hub: Arc<Hub>, engine: impl Into<Controls>) {
    let engine = engine.into();
    eprintln!(
        "flightdeck: the SSH host key is {}; a client's first connection shows the same (or `ssh-keygen -lf` of its known_hosts line)",
        ssh.host_fingerprint
    );
    tracing::info!(host_key = %ssh.host_fingerprint, address = %ssh.address, "ssh listening");
    let shared = Arc::new(Shared {
        keys: watch::channel(ssh.keys.clone()).0,
        hub,
        engine,
        stopper: ssh.stopper.clone(),
        gate: ssh.gate.clone(),
        config: ssh.config.clone(),
        cockpits: Mutex::default(),
    });
    tokio::select! {
        () = accept_loop(&ssh.listener, &shared) => {}
        () = follow_keys(&ssh.keys_path, ssh.keys_stamp, &shared) => {}
    }
}

async fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut refusals = Tally::default();
    let mut failures = Tally::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                match shared.gate.admit(peer.ip()) {
                    Ok(slot) => {
                        tokio::spawn(connection(shared.clone(), stream, peer, slot));
                    }
                    Err(why) => {
                        // Closed at once, without a word: as sshd does.
                        drop(stream);
                        refusals.note(|n| {
                            let (pending, all) = shared.gate.counts();
                            tracing::warn!(%peer, refused = n, pending, all, "ssh connections refused: {why}");
                        });
                    }
                }
            }
            Err(error) => {
                failures.note(|n| tracing::warn!(%error, failures = n, "ssh accept failed; retrying"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// Counts something that may happen very often and logs it at most every
/// [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct Tally {
    since: Option<Instant>,
    count: u64,
}

impl Tally {
    fn note(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self.since.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            log(self.count);
            self.since = Some(Instant::now());
            self.count = 0;
        }
    }
}

/// One TCP connection: the SSH session over it, cut if it has not
/// signed in within the login grace time.
async fn connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, slot: Arc<Slot>) {
    let _ = stream.set_nodelay(true);
    let (stream, cutter) = Cuttable::new(stream);
    let handler = Connection::new(shared.clone(), peer, slot.clone());
    let grace = tokio::time::sleep(shared.gate.limits.login_grace);
    tokio::pin!(grace);
    let started = tokio::select! {
        started = russh::server::run_stream(shared.config.clone(), stream, handler) => started,
        () = &mut grace => {
            tracing::info!(%peer, "ssh connection did not sign in within the login grace time: closed");
            return;
        }
    };
    let session = match started {
        Ok(session) => session,
        Err(error) => {
            tracing::debug!(%peer, %error, "ssh connection ended before its session started");
            return;
        }
    };
    tokio::pin!(session);
    tokio::select! {
        ended = &mut session => {
            if let Err(error) = ended {
                tracing::info!(%peer, %error, "ssh connection ended");
            }
            return;
        }
        () = &mut grace, if !slot.is_signed_in() => {}
    }
    if !slot.is_signed_in() {
        tracing::info!(%peer, "ssh connection did not sign in within the login grace time: closed");
        cutter.cut();
    }
    let _ = session.await;
}

/// Reads the authorized-keys file again whenever it changes (its size,
/// times, owner or mode; checked every [`KEYS_POLL`]), held to the same
/// rules as at start. A bad line leaves out that line's key only; a file
/// that is gone, unreadable or writable by others lets nobody in until
/// it is put right. Live sessions whose key went follow on their own
/// ([`still_admitted`]).
async fn follow_keys(path: &Path, mut seen: Option<Stamp>, shared: &Arc<Shared>) {
    loop {
        tokio::time::sleep(KEYS_POLL).await;
        let stamp = file_stamp(path);
        if stamp == seen {
            continue;
        }
        // Read once the writing is over (a file being written in place
        // would read short, and sign out the keys it does not hold yet).
        tokio::time::sleep(KEYS_SETTLE).await;
        if file_stamp(path) != stamp {
            continue;
        }
        seen = stamp;
        let shown = path.display().to_string();
        let read = keys::check_modes(path)
            .and_then(|()| crate::files::read_text(path).map_err(|e| e.at(&shown, "authorized keys").to_string()));
        let fresh = match read {
            Ok(text) => {
                let (fresh, errors) = AuthorizedKeys::parse_lenient(&shown, &text);
                for error in &errors {
                    eprintln!("flightdeck: {error} (that line's key cannot sign in until it is fixed)");
                    tracing::error!(%error, "authorized keys: line left out");
                }
                fresh
            }
            Err(error) => {
                eprintln!("flightdeck: {error}: nobody can sign in over SSH until it is fixed");
                tracing::error!(%error, "authorized keys refused: nobody can sign in");
                AuthorizedKeys::default()
            }
        };
        eprintln!("flightdeck: {shown} changed: {} keys may sign in", fresh.len());
        tracing::info!(file = %shown, keys = fresh.len(), "authorized keys reloaded");
        shared.keys.send_replace(Arc::new(fresh));
    }
}

/// What tells a changed file from the one read: its identity, size,
/// times, owner and mode.
type Stamp = (u64, u64, u64, i64, i64, i64, i64, u32, u32);

/// The file's stamp; `None` when it is gone.
fn file_stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec(), m.uid(), m.mode()))
}

/// Whether a session signed in as `who` from `peer` may go on: its key is
/// still listed with the same name, role and limits, and not expired.
fn still_admitted(shared: &Shared, who: &Authorized, peer: Option<IpAddr>) -> Result<(), String> {
    let keys = shared.keys.borrow().clone();
    match keys.find(&who.key) {
        None => Err(format!("{}'s key is no longer in the authorized keys", who.name)),
        Some(now) if !now.same_as(who) => {
            Err(format!("{}'s entry in the authorized keys changed; sign in again", who.name))
        }
        Some(now) => now.admits(peer, SystemTime::now()),
    }
}

struct Shared {
    /// The authorized keys as last read.
    keys: watch::Sender<Arc<AuthorizedKeys>>,
    hub: Arc<Hub>,
    engine: Controls,
    stopper: Stopper,
    gate: Arc<Gate>,
    config: Arc<russh::server::Config>,
    /// Live cockpits by key fingerprint.
    cockpits: Mutex<HashMap<String, usize>>,
}

/// A cockpit counted against its key's limit until dropped.
struct CockpitSeat {
    shared: Arc<Shared>,
    fingerprint: String,
}

impl CockpitSeat {
    fn take(shared: &Arc<Shared>, fingerprint: &str) -> Option<CockpitSeat> {
        let mut cockpits = shared.cockpits.lock().expect("cockpits");
        let n = cockpits.entry(fingerprint.to_string()).or_default();
        if *n >= shared.gate.limits.cockpits_per_key {
            return None;
        }
        *n += 1;
        Some(CockpitSeat { shared: shared.clone(), fingerprint: fingerprint.to_string() })
    }
}

impl Drop for CockpitSeat {
    fn drop(&mut self) {
        let mut cockpits = self.shared.cockpits.lock().expect("cockpits");
        if let Some(n) = cockpits.get_mut(&self.fingerprint) {
            *n -= 1;
            if *n == 0 {
                cockpits.remove(&self.fingerprint);
            }
        }
    }
}

/// One SSH connection (it may open a few sessions, each a cockpit).
struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Its place at the gate: a startup until it signs in.
    slot: Arc<Slot>,
    /// The key it signed in with.
    who: Option<Authorized>,
    /// Session channels open on it (at most `sessions_per_connection`).
    open: HashSet<ChannelId>,
    /// Channels past the limit, accepted only to say why on their first request.
    over: HashSet<ChannelId>,
    /// Opened session channels, until their shell request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The window of each channel that asked for a pty.
    ptys: HashMap<ChannelId, Window>,
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
    fn new(shared: Arc<Shared>, peer: SocketAddr, slot: Arc<Slot>) -> Connection {
        Connection {
            shared,
            peer,
            slot,
            who: None,
            open: HashSet::new(),
            over: HashSet::new(),
            channels: HashMap::new(),
            ptys: HashMap::new(),
            colours: HashMap::new(),
            live: None,
        }
    }

    /// The entry of `key` if it is listed and may be used from here, now.
    fn authorize(&self, user: &str, key: &russh::keys::PublicKey) -> Option<Authorized> {
        let keys = self.shared.keys.borrow().clone();
        let Some(who) = keys.find(key) else {
            let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256);
            tracing::warn!(user, %fingerprint, peer = %self.peer, "ssh key not in the authorized keys: refused");
            return None;
        };
        if let Err(why) = who.admits(Some(self.peer.ip()), SystemTime::now()) {
            tracing::warn!(user, fingerprint = %who.fingerprint, peer = %self.peer, "ssh key refused: {why}");
            return None;
        }
        Some(who.clone())
    }

    /// Runs nothing: says why on the client's stderr and ends the channel
    /// with exit status 1. (A bare channel failure would leave OpenSSH
    /// saying only "exec request failed".)
    fn refuse_channel(&mut self, channel: ChannelId, why: &str, session: &mut Session) -> Result<(), russh::Error> {
        self.channels.remove(&channel);
        self.over.remove(&channel);
        session.channel_success(channel)?;
        session.extended_data(channel, 1, format!("flightdeck: {why}\r\n"))?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    /// A channel past the session limit is told so at its first request.
    fn refuse_if_over(&mut self, channel: ChannelId, session: &mut Session) -> Option<Result<(), russh::Error>> {
        if !self.over.contains(&channel) {
            return None;
        }
        let limit = self.shared.gate.limits.sessions_per_connection;
        let why = format!("this connection already has {limit} sessions, the most one connection may open");
        Some(self.refuse_channel(channel, &why, session))
    }

    /// The signed-in key, if it may still be used (the file may have changed since).
    fn current(&self) -> Result<Authorized, String> {
        let who = self.who.clone().ok_or("not signed in")?;
        still_admitted(&self.shared, &who, Some(self.peer.ip()))?;
        Ok(who)
    }
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        match self.authorize(user, offer.public_key) {
            Some(_) => Ok(Auth::Accept),
            None => Ok(Auth::reject()),
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let Some(who) = self.authorize(user, key.public_key) else { return Ok(Auth::reject()) };
        if !self.slot.sign_in(&who.fingerprint) {
            let limit = self.shared.gate.limits.connections_per_key;
            tracing::warn!(user, name = %who.name, peer = %self.peer, "ssh key refused: it already holds {limit} connections");
            return Ok(Auth::reject());
        }
        tracing::info!(user, name = %who.name, fingerprint = %who.fingerprint, peer = %self.peer, "ssh key accepted");
        self.who = Some(who);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Err(why) = self.current() {
            tracing::info!(peer = %self.peer, "ssh session refused: {why}");
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        let limit = self.shared.gate.limits.sessions_per_connection;
        if self.open.len() >= limit {
            tracing::warn!(peer = %self.peer, limit, "ssh session refused: too many on one connection");
            if self.over.len() < 2 {
                // Accepted to say why on its first request; more than that are refused outright.
                self.over.insert(channel.id());
                reply.accept().await;
            } else {
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
            }
            return Ok(());
        }
        self.open.insert(channel.id());
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.open.remove(&channel);
        self.over.remove(&channel);
        self.channels.remove(&channel);
        self.ptys.remove(&channel);
        self.colours.remove(&channel);
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
        if let Some(refused) = self.refuse_if_over(channel, session) {
            return refused;
        }
        let window = Window::requested(cols, rows);
        if window.is_clamped() {
            tracing::info!(peer = %self.peer, cols, rows, drawn = ?window.drawn(), "ssh window larger than the cockpit draws");
        }
        self.ptys.insert(channel, window);
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(refused) = self.refuse_if_over(channel, session) {
            return refused;
        }
        let who = match self.current() {
            Ok(who) => who,
            Err(why) => return self.refuse_channel(channel, &why, session),
        };
        let Some(window) = self.ptys.get(&channel).copied() else {
            return self.refuse_channel(channel, "the cockpit needs a terminal: connect with `ssh -t`", session);
        };
        let Some(seat) = CockpitSeat::take(&self.shared, &who.fingerprint) else {
            let limit = self.shared.gate.limits.cockpits_per_key;
            let why = format!("{} already has {limit} cockpits open, the most one key may", who.name);
            return self.refuse_channel(channel, &why, session);
        };
        let Some(open) = self.channels.remove(&channel) else { return session.channel_failure(channel) };
        session.channel_success(channel)?;
        let id = self.shared.hub.session_number();
        let mode = self.colours.remove(&channel).unwrap_or_default().mode();
        self.live.get_or_insert_with(|| Live::new(&self.shared.stopper.live));
        let peer = Some(self.peer.ip());
        tokio::spawn(cockpit_session(open, window, mode, (who, peer, seat), id, self.shared.clone()));
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

    /// No X11 forwarding (nor agent or port forwarding: those are
    /// refused by russh's defaults, which this server keeps).
    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, "ssh X11 forwarding refused");
        session.channel_failure(channel)
    }

    async fn agent_request(&mut self, channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, ?channel, "ssh agent forwarding refused");
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, address, port = *port, "ssh remote port forwarding refused");
        Ok(false)
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
        if !self.open.contains(&channel) {
            return session.channel_failure(channel);
        }
        let colours = self.colours.entry(channel).or_default();
        match name {
            "NO_COLOR" => colours.no_color = Some(value.chars().take(64).collect()),
            "COLORTERM" => colours.colorterm = Some(value.chars().take(64).collect()),
            _ => return session.channel_failure(channel),
        }
        session.channel_success(channel)
    }
}

/// One cockpit on one SSH channel, from the shell request to goodbye.
async fn cockpit_session(
    channel: Channel<Msg>,
    window: Window,
    mode: ColorMode,
    (who, peer, _seat): (Authorized, Option<IpAddr>, CockpitSeat),
    id: u64,
    shared: Arc<Shared>,
) {
    let _live = Live::new(&shared.stopper.live);
    let session = SessionKind::Ssh { fingerprint: who.fingerprint.clone(), id };
    tracing::info!(name = %who.name, role = who.role.label(), %session, "attached over ssh");
    let origin = Origin { role: who.role, session: session.clone() };
    let (mut read, write) = channel.split();
    let size: SharedSize = Arc::new(Mutex::new(window));
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
                    // A size of 0 changes nothing; a huge one is drawn at the largest.
                    let Some(new) = Window::changed(col_width, row_height) else { continue };
                    *reader_size.lock().expect("size") = new;
                    let drawn = new.drawn();
                    vec![Event::Resize(drawn.width, drawn.height)]
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
    let revoked: Arc<Mutex<Option<String>>> = Arc::default();
    let watch_key = {
        let (shared, who, revoked) = (shared.clone(), who.clone(), revoked.clone());
        async move {
            let mut keys = shared.keys.subscribe();
            loop {
                tokio::select! {
                    _ = keys.changed() => {}
                    () = tokio::time::sleep(KEYS_POLL) => {}
                }
                if let Err(why) = still_admitted(&shared, &who, peer) {
                    *revoked.lock().expect("revoked") = Some(why);
                    return;
                }
            }
        }
    };
    let result = run_cockpit(&who, &origin, &shared, (size, mode), outbox.clone(), input, watch_key).await;
    let revoked = revoked.lock().expect("revoked").take();
    if let Some(why) = &revoked {
        tracing::warn!(name = %who.name, %session, "ssh session ended: {why}");
    }
    // The client's `ssh` exits 0 when its user quit, 1 otherwise.
    let (goodbye, status) = match (&result, revoked) {
        (Ok(Some(_)), Some(why)) => (format!("flightdeck: signed out: {why}\r\n"), 1),
        (Ok(None), _) => (String::new(), 0),
        (Ok(Some(_)), None) => {
            ("flightdeck: the server stopped; the rollouts resume when it is served again\r\n".into(), 1)
        }
        (Err(e), _) => (format!("flightdeck: {e}\r\n"), 1),
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
    revoked: impl std::future::Future<Output = ()> + Send,
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
    // The server stops, or this session's key is no longer good.
    let stopped = async move {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => {}
            () = revoked => {}
        }
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
pub fn link_through(hub: &Arc<Hub>, engine: Controls, origin: Origin, actor: Actor) -> Link {
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
    engine: Controls,
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
