//! `flightdeck serve --ssh`: a real OpenSSH client (`ssh -tt`) in tmux
//! signs in with a key the test makes, reads the cockpit off the screen,
//! resizes its window, promotes; a viewer's key is refused at the engine
//! and audited; an unknown key and commands are refused.
//! `scripts/setup` installs tmux and openssh-client.
#![cfg(feature = "ssh")]

mod support;

use flightdeck::share::client::attach;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::cli::BIN;
use support::tmux::Tmux;

/// Four stages that bake for an hour: nothing moves unless someone acts.
const PLAN: &str = include_str!("fixtures/plans/held-canary.toml");

/// A key pair made with ssh-keygen; the comment is `name@test`.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let comment = format!("{name}@test");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen is installed (scripts/setup installs openssh-client)");
    assert!(ok.success());
    key
}

fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string()
}

/// `SHA256:…` as ssh-keygen prints it.
fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen").arg("-lf").arg(key.with_extension("pub")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
}

struct Server {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    plan: PathBuf,
    alice: PathBuf,
    bob: PathBuf,
    /// What serve wrote on stderr so far.
    stderr: Arc<Mutex<String>>,
}

/// How a test's server is started.
#[derive(Default)]
struct Setup {
    /// Options in front of alice's and bob's keys (after role=…).
    alice_options: String,
    bob_options: String,
    /// `FLIGHTDECK_SSH_LOGIN_GRACE`.
    login_grace: Option<u64>,
    /// The server's own limit on open files (its soft RLIMIT_NOFILE).
    open_files: Option<u64>,
}

impl Server {
    /// alice is a captain (named by option); bob is a viewer named by his key's comment.
    fn start() -> Server {
        Server::with(Setup::default())
    }

    fn with(setup: Setup) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("checkout.toml");
        std::fs::write(&plan, PLAN).unwrap();
        let (alice, bob) = (keygen(dir.path(), "alice"), keygen(dir.path(), "bob"));
        let keys = dir.path().join("authorized_keys");
        let text = format!(
            "# the team\nrole=captain,name=alice{} {}\nrole=viewer{} {}\n",
            setup.alice_options,
            public(&alice),
            setup.bob_options,
            public(&bob)
        );
        std::fs::write(&keys, text).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--socket")
            .arg(dir.path().join("run/serve.sock"))
            .args(["--ssh", &format!("127.0.0.1:{port}"), "--authorized-keys"])
            .arg(&keys)
            .arg(&plan)
            .env("FLIGHTDECK_DATA_DIR", dir.path().join("data"))
            .env("FLIGHTDECK_CONFIG_DIR", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(grace) = setup.login_grace {
            command.env("FLIGHTDECK_SSH_LOGIN_GRACE", grace.to_string());
        }
        if let Some(files) = setup.open_files {
            // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                    limit.rlim_cur = files.min(limit.rlim_max);
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("serve exited with {status}: {}", stderr.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "serve did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, dir, port, plan, alice, bob, stderr }
    }

    /// Still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn keys_file(&self) -> PathBuf {
        self.dir.path().join("authorized_keys")
    }

    /// The most memory the server has held, in MB.
    fn peak_mb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
        line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).unwrap_or(0) / 1024
    }

    /// The OpenSSH client command line for `key` as `user`.
    fn ssh(&self, key: &Path, user: &str) -> Vec<String> {
        let mut args: Vec<String> = ["ssh", "-i"].map(String::from).to_vec();
        args.push(key.display().to_string());
        for option in ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR", "BatchMode=yes"] {
            args.extend(["-o".to_string(), option.to_string()]);
        }
        args.extend(["-p".to_string(), self.port.to_string(), format!("{user}@127.0.0.1")]);
        args
    }

    fn audit(&self) -> String {
        let out = Command::new(BIN)
            .args(["audit", self.plan.to_str().unwrap()])
            .env("FLIGHTDECK_DATA_DIR", self.dir.path().join("data"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/serve.sock")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line tmux runs: the client, then a marker with its exit code.
fn in_tmux(args: &[String]) -> String {
    format!("{} -tt; echo ssh-exited-$?; sleep 60", args.join(" "))
}

#[test]
fn a_captain_over_ssh_sees_the_cockpit_at_their_size_and_promotes_as_themselves() {
    let server = Server::start();
    // The user name typed does not matter: the key says who this is.
    let t = Tmux::sized(&in_tmux(&server.ssh(&server.alice, "whoever")), 120, 40);
    t.wait_for(&["checkout-api", "Stage 1/4", "Events"]);
    assert!(!t.coloured().contains("38;2;"), "true colour sent to a client that did not ask for it");

    // The window shrinks below the cockpit's minimum: this session's layout follows, and comes back.
    t.resize(58, 15);
    t.wait_for(&["terminal too small", "have 58×15"]);
    t.resize(100, 30);
    t.wait_for(&["checkout-api", "Stage 1/4"]);
    assert!(!t.screen().contains("too small"));

    t.keys(&["n"]);
    // The stage moves, and the events pane says who moved it.
    t.wait_for(&["Stage 2/4", "promote sent", "alice via ssh #1 (SHA256:"]);
    let audit = server.audit();
    let line = audit.lines().find(|l| l.contains("promote")).unwrap_or_else(|| panic!("not audited:\n{audit}"));
    assert!(line.contains("by alice"), "{line}");
    let via = format!("via ssh #1 ({})", fingerprint(&server.alice));
    assert!(line.contains(&via), "wanted {via}: {line}");
    assert!(!line.contains("REFUSED"), "{line}");

    // q quits (and asks first mid-rollout): the client's terminal is given back and ssh ends with 0.
    t.keys(&["q"]);
    if t.screen().contains("Quit") {
        t.keys(&["y"]);
    }
    t.wait_for(&["ssh-exited-0"]);
}

#[test]
fn a_viewers_key_watches_read_only_and_its_keys_move_nothing() {
    let server = Server::start();
    // bob's client says it shows true colour; the session draws in it (alice's, which says nothing, in 16).
    let mut ssh = server.ssh(&server.bob, "bob");
    ssh.insert(1, "-o SetEnv=COLORTERM=truecolor".into());
    let t = Tmux::sized(&in_tmux(&ssh), 100, 30);
    t.wait_for(&["checkout-api", "read-only"]);
    assert!(t.coloured().contains("38;2;"), "no true colour on bob's screen");
    // The viewer's cockpit refuses at once and sends nothing: the stage stays, nothing is journaled for bob.
    t.keys(&["n"]);
    t.wait_for(&["read-only: viewers cannot act"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(t.screen().contains("Stage 1/4"), "the stage moved");
    assert!(!server.audit().contains("by bob"), "a viewer's key reached the engine");

    // The server stops: the client's terminal is given back (no alternate
    // screen, no mouse tracking) with a word on why.
    let ok = Command::new("kill").args(["-s", "TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    t.wait_for(&["the server stopped", "ssh-exited-1"]);
    let format = "#{alternate_on} #{mouse_any_flag}";
    assert_eq!(t.pane(format), "0 0", "alternate screen and mouse tracking are off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_and_commands_are_refused_and_nothing_attaches() {
    let server = Server::start();
    let mallory = keygen(server.dir.path(), "mallory");
    let mut ssh = server.ssh(&mallory, "alice");
    ssh.push("-tt".into());
    let out = Command::new(&ssh[0]).args(&ssh[1..]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown key signed in");
    assert!(err.contains("Permission denied (publickey)"), "{err}");

    // A known key may not run anything on the host.
    let mut exec = server.ssh(&server.alice, "alice");
    exec.push("id".into());
    let out = Command::new(&exec[0]).args(&exec[1..]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "a command ran");
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs only the cockpit"));

    // Who is attached, as a socket client sees it once it is on the list itself.
    // (A socket client is named by its user on this host, whatever name it gives.)
    let (link, welcome) = attach(&server.socket(), "observer").await.unwrap();
    let names = || link.snapshots.borrow().attached.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !names().contains(&welcome.name) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names(), vec![welcome.name.clone()], "only the socket client is attached");
    assert!(!server.audit().contains("mallory"));
}

#[test]
fn a_bad_authorized_keys_line_stops_the_server_before_it_starts_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("checkout.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let alice = keygen(dir.path(), "alice");
    let keys = dir.path().join("team.keys");
    std::fs::write(&keys, format!("# ok\nrole=captain {}\nrole=admiral {}\n", public(&alice), public(&alice))).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--ssh", "127.0.0.1:0", "--authorized-keys"])
        .arg(&keys)
        .arg("--socket")
        .arg(dir.path().join("serve.sock"))
        .arg(&plan)
        .env("FLIGHTDECK_DATA_DIR", dir.path().join("data"))
        .env("FLIGHTDECK_CONFIG_DIR", dir.path().join("config"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!("{}:3: role: `admiral` is not a role (captain or viewer)", keys.display());
    assert!(err.contains(&want), "wanted {want}: {err}");
    // Nothing started: no journal, no host key.
    let data = dir.path().join("data");
    assert!(!data.join("journal").exists() && !data.join("ssh").exists(), "the server started");
}

// ---------------------------------------------------------------------
// A shared cockpit nobody can crash, flood or impersonate: an SSH client
// of the test's own (russh) asks for what OpenSSH would not send.

/// Trusts any host key; records the one it saw.
struct Probe(Arc<Mutex<Option<String>>>);

impl russh::client::Handler for Probe {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key {
            *self.0.lock().unwrap() = Some(key.fingerprint(russh::keys::HashAlg::Sha256).to_string());
        }
        Ok(true)
    }
}

type Client = russh::client::Handle<Probe>;
type Session = russh::Channel<russh::client::Msg>;

/// A TCP connection to the server from the loopback address `from` (any of 127.0.0.0/8).
async fn tcp_from(port: u16, from: &str) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(([127, 0, 0, 1], port).into()).await
}

/// Signs in with `key` from `from`: the client, or why not.
async fn sign_in(port: u16, key: &Path, from: &str) -> Result<Client, String> {
    let stream = tokio::time::timeout(Duration::from_secs(10), tcp_from(port, from))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let config = Arc::new(russh::client::Config::default());
    let mut client = tokio::time::timeout(
        Duration::from_secs(10),
        russh::client::connect_stream(config, stream, Probe(Arc::default())),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    let secret = russh::keys::load_secret_key(key, None).unwrap();
    let key = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(secret), None);
    let auth = client.authenticate_publickey("test", key).await.map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("Permission denied (publickey)".into());
    }
    Ok(client)
}

/// A session with a pty of `cols`×`rows` and a shell: a cockpit, unless refused.
async fn open_cockpit(client: &Client, cols: u32, rows: u32) -> Result<Session, String> {
    let channel = client.channel_open_session().await.map_err(|e| format!("open: {e}"))?;
    channel.request_pty(false, "xterm-256color", cols, rows, 0, 0, &[]).await.map_err(|e| e.to_string())?;
    channel.request_shell(false).await.map_err(|e| e.to_string())?;
    Ok(channel)
}

/// What the session shows (stdout and stderr) until `needle` appears,
/// the session ends or `wait` passes.
async fn read_until(channel: &mut Session, needle: &str, wait: Duration) -> (String, bool) {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = match tokio::time::timeout_at(deadline, channel.wait()).await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return (seen, false),
        };
        match message {
            russh::ChannelMsg::Data { data } | russh::ChannelMsg::ExtendedData { data, .. } => {
                seen.push_str(&String::from_utf8_lossy(&data));
                if seen.contains(needle) {
                    return (seen, true);
                }
            }
            russh::ChannelMsg::Close => return (seen, false),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_window_is_drawn_at_the_largest_size_and_the_server_lives_on() {
    let mut server = Server::start();
    // pty-req of 65535×65535 (about 4 billion cells).
    let huge = sign_in(server.port, &server.bob, "127.0.0.1").await.unwrap();
    let mut first = open_cockpit(&huge, 65535, 65535).await.unwrap();
    let (seen, ok) = read_until(&mut first, "the cockpit is drawn at 500×200", Duration::from_secs(20)).await;
    assert!(ok, "no note of the clamped size; server alive: {}; saw {} bytes", server.alive(), seen.len());
    assert!(seen.contains("this window is 65535×65535"));

    // A window change to the same: an ordinary window first, then huge.
    let mut second = open_cockpit(&huge, 100, 30).await.unwrap();
    let (_, ok) = read_until(&mut second, "checkout-api", Duration::from_secs(20)).await;
    assert!(ok, "no cockpit at 100×30");
    second.window_change(0, 0, 0, 0).await.unwrap();
    second.window_change(65535, 65535, 0, 0).await.unwrap();
    let (_, ok) = read_until(&mut second, "this window is 65535×65535", Duration::from_secs(20)).await;
    assert!(ok, "no note after the window change; server alive: {}", server.alive());

    // The server lives, stayed small, and answers someone else.
    let other = sign_in(server.port, &server.alice, "127.0.0.1").await.unwrap();
    let mut third = open_cockpit(&other, 120, 40).await.unwrap();
    let (_, ok) = read_until(&mut third, "checkout-api", Duration::from_secs(20)).await;
    assert!(ok && server.alive(), "no cockpit for the next client");
    let peak = server.peak_mb();
    assert!(peak < 400, "the server peaked at {peak} MB");
}

/// Raises this process's soft limit on open files toward `want`; what it is now.
fn raise_open_files(want: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if limit.rlim_cur < want {
        limit.rlim_cur = want.min(limit.rlim_max);
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_that_never_sign_in_leave_the_port_to_a_captain() {
    // The server with the usual 1,024 open files (the flood alone would take them all), 3 s to sign in.
    let mut server = Server::with(Setup { login_grace: Some(3), open_files: Some(1024), ..Setup::default() });
    // The flood is held open at once, as far as this process may (some file descriptors stay spare).
    let budget = raise_open_files(2300).saturating_sub(100).min(2000) as usize;
    let mut held: std::collections::VecDeque<tokio::net::TcpStream> = Default::default();
    let (mut opened, mut failed) = (0, 0);
    for _batch in 0..10 {
        let tries = (0..200).map(|_| tokio::time::timeout(Duration::from_secs(3), tcp_from(server.port, "127.0.0.1")));
        for attempt in futures::future::join_all(tries).await {
            match attempt {
                Ok(Ok(stream)) => {
                    opened += 1;
                    held.push_back(stream);
                    if held.len() > budget {
                        held.pop_front();
                    }
                }
                _ => failed += 1,
            }
        }
    }
    assert!(opened >= 1500, "only {opened} connections opened ({failed} failed); server alive: {}", server.alive());
    assert!(server.alive(), "serve stopped under {opened} connections: {}", server.stderr.lock().unwrap());

    // Meanwhile a captain from another address signs in and gets the cockpit.
    let captain = sign_in(server.port, &server.alice, "127.0.0.2").await.unwrap();
    let mut cockpit = open_cockpit(&captain, 120, 40).await.unwrap();
    let (_, ok) = read_until(&mut cockpit, "checkout-api", Duration::from_secs(20)).await;
    assert!(ok, "no cockpit for the captain during the flood");

    // A connection that never signs in is closed after the login grace time.
    let mut idle = tcp_from(server.port, "127.0.0.3").await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => continue, // the server's banner
            Err(_) => panic!("a connection that never signed in was kept past 10 s"),
        }
    }
    assert!(start.elapsed() >= Duration::from_secs(2), "closed before its grace time: {:?}", start.elapsed());

    // The flood gone, its own address may sign in again.
    drop(held);
    let again = sign_in(server.port, &server.alice, "127.0.0.1").await.unwrap();
    let mut cockpit = open_cockpit(&again, 100, 30).await.unwrap();
    assert!(read_until(&mut cockpit, "checkout-api", Duration::from_secs(20)).await.1);
    assert!(server.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_gets_a_few_sessions_and_the_rest_are_refused_with_a_reason() {
    let server = Server::start();
    let bob = sign_in(server.port, &server.bob, "127.0.0.1").await.unwrap();
    let (mut cockpits, mut told, mut refused) = (0, 0, 0);
    let mut sessions = Vec::new();
    for _ in 0..60 {
        match open_cockpit(&bob, 80, 24).await {
            Ok(session) => sessions.push(session),
            Err(_) => refused += 1,
        }
    }
    for session in &mut sessions {
        let (seen, _) = read_until(session, "checkout-api", Duration::from_secs(10)).await;
        if seen.contains("checkout-api") {
            cockpits += 1;
        } else if seen.contains("already has 4 sessions") {
            told += 1;
        }
    }
    assert_eq!(cockpits, 4, "cockpits on one connection (told {told}, refused {refused})");
    assert!(told >= 1, "no session was told why it was refused");
    assert_eq!(cockpits + told + refused, 60);

    // Everyone's presence line holds bob's four, not sixty.
    let (link, _) = attach(&server.socket(), "observer").await.unwrap();
    let bobs = || link.snapshots.borrow().attached.iter().filter(|p| p.name == "bob").count();
    let deadline = Instant::now() + Duration::from_secs(5);
    while bobs() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bobs(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x11_agent_and_port_forwarding_are_refused() {
    let server = Server::start();
    let alice = sign_in(server.port, &server.alice, "127.0.0.1").await.unwrap();
    let mut session = alice.channel_open_session().await.unwrap();
    session.request_x11(true, false, "MIT-MAGIC-COOKIE-1", "0123456789abcdef", 0).await.unwrap();
    session.agent_forward(true).await.unwrap();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), session.wait()).await {
            Ok(Some(russh::ChannelMsg::Success)) => answers.push("success"),
            Ok(Some(russh::ChannelMsg::Failure)) => answers.push("failure"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(answers, ["failure", "failure"], "x11-req, then auth-agent-req");
    assert!(alice.channel_open_direct_tcpip("127.0.0.1", 22, "127.0.0.1", 5000).await.is_err());
    assert!(alice.tcpip_forward("127.0.0.1", 0).await.is_err());
}

/// `serve` with `keys` as the authorized keys, run until it exits (at most 20 s): its stderr and status.
fn serve_briefly(dir: &Path, keys: &Path) -> (String, Option<i32>) {
    let plan = dir.join("checkout.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--ssh", "127.0.0.1:0", "--authorized-keys"])
        .arg(keys)
        .arg("--socket")
        .arg(dir.join("serve.sock"))
        .arg(&plan)
        .env("FLIGHTDECK_DATA_DIR", dir.join("data"))
        .env("FLIGHTDECK_CONFIG_DIR", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (err, status)
}

#[test]
fn an_rsa_key_is_refused_at_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let alice = keygen(dir.path(), "alice");
    let rsa = dir.path().join("rsa");
    let mut keygen_rsa = Command::new("ssh-keygen");
    keygen_rsa.args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "r@x", "-f"]).arg(&rsa);
    assert!(keygen_rsa.status().unwrap().success());
    let keys = dir.path().join("team.keys");
    std::fs::write(&keys, format!("role=captain {}\nrole=viewer {}\n", public(&alice), public(&rsa))).unwrap();
    let (err, status) = serve_briefly(dir.path(), &keys);
    assert_eq!(status, Some(2), "{err}");
    let want = format!("{}:2: ssh-rsa keys cannot sign in", keys.display());
    assert!(err.contains(&want) && err.contains("ssh-keygen -t ed25519"), "wanted {want}: {err}");
}

#[test]
fn an_authorized_keys_file_others_could_write_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let alice = keygen(dir.path(), "alice");
    let keys = dir.path().join("team.keys");
    std::fs::write(&keys, format!("role=captain {}\n", public(&alice))).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (err, status) = serve_briefly(dir.path(), &keys);
    assert!(status.is_some_and(|c| c != 0), "serve did not stop: {status:?} {err}");
    assert!(err.contains("writable by group or others (mode 666)"), "{err}");
    assert!(!dir.path().join("data/journal").exists(), "the engine started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_the_file_ends_its_live_sessions_and_signs_in_no_more() {
    let server = Server::start();
    let bob = sign_in(server.port, &server.bob, "127.0.0.1").await.unwrap();
    let mut watching = open_cockpit(&bob, 100, 30).await.unwrap();
    assert!(read_until(&mut watching, "checkout-api", Duration::from_secs(20)).await.1);
    let alice = sign_in(server.port, &server.alice, "127.0.0.1").await.unwrap();
    let mut acting = open_cockpit(&alice, 100, 30).await.unwrap();
    assert!(read_until(&mut acting, "checkout-api", Duration::from_secs(20)).await.1);

    // bob's line goes (the file edited in place, its mode kept).
    let text = std::fs::read_to_string(server.keys_file()).unwrap();
    let kept: String = text.lines().filter(|l| !l.contains("bob@test")).map(|l| format!("{l}\n")).collect();
    std::fs::write(server.keys_file(), kept).unwrap();
    let (seen, ok) = read_until(&mut watching, "signed out", Duration::from_secs(10)).await;
    assert!(ok, "bob's session went on: {}", &seen[seen.len().saturating_sub(300)..]);
    assert!(seen.contains("bob's key is no longer in the authorized keys"));
    let err = sign_in(server.port, &server.bob, "127.0.0.1").await.err();
    assert_eq!(err.as_deref(), Some("Permission denied (publickey)"));
    // alice's session is untouched.
    acting.data(&b"j"[..]).await.unwrap();
    let (seen, _) = read_until(&mut acting, "signed out", Duration::from_secs(2)).await;
    assert!(!seen.contains("signed out"));
    assert!(server.stderr.lock().unwrap().contains("1 keys may sign in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_and_expiry_time_limit_where_and_until_when_a_key_signs_in() {
    let server = Server::with(Setup {
        alice_options: ",from=\"127.0.0.2,10.0.0.0/8,!127.0.0.3\"".into(),
        bob_options: ",expiry-time=\"20200101\"".into(),
        ..Setup::default()
    });
    assert!(sign_in(server.port, &server.alice, "127.0.0.1").await.is_err(), "alice from 127.0.0.1");
    assert!(sign_in(server.port, &server.alice, "127.0.0.3").await.is_err(), "alice from 127.0.0.3");
    let alice = sign_in(server.port, &server.alice, "127.0.0.2").await.unwrap();
    let mut cockpit = open_cockpit(&alice, 100, 30).await.unwrap();
    assert!(read_until(&mut cockpit, "checkout-api", Duration::from_secs(20)).await.1);
    assert!(sign_in(server.port, &server.bob, "127.0.0.1").await.is_err(), "bob's key expired in 2020");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_key_fingerprint_is_shown_at_start_and_its_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let stream = tcp_from(server.port, "127.0.0.1").await.unwrap();
    let config = Arc::new(russh::client::Config::default());
    let _client = russh::client::connect_stream(config, stream, Probe(seen.clone())).await.unwrap();
    let fingerprint = seen.lock().unwrap().clone().expect("a host key");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr.lock().unwrap().contains("SHA256:") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = server.stderr.lock().unwrap().clone();
    assert!(err.contains(&format!("the SSH host key is 256 {fingerprint} (ED25519)")), "{fingerprint}: {err}");
    let ssh_dir = server.dir.path().join("data/ssh");
    assert_eq!(std::fs::metadata(&ssh_dir).unwrap().permissions().mode() & 0o777, 0o700);
    // As ssh-keygen prints it.
    let out = Command::new("ssh-keygen").arg("-lf").arg(ssh_dir.join("host_ed25519")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&fingerprint));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecdsa_key_added_while_serving_signs_in() {
    let server = Server::start();
    let carol = server.dir.path().join("carol");
    let mut keygen_ecdsa = Command::new("ssh-keygen");
    keygen_ecdsa.args(["-q", "-t", "ecdsa", "-N", "", "-C", "carol@test", "-f"]).arg(&carol);
    assert!(keygen_ecdsa.status().unwrap().success());
    assert!(sign_in(server.port, &carol, "127.0.0.1").await.is_err(), "carol is not listed yet");
    let mut text = std::fs::read_to_string(server.keys_file()).unwrap();
    text.push_str(&format!("{}\n", public(&carol)));
    std::fs::write(server.keys_file(), text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr.lock().unwrap().contains("3 keys may sign in") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = sign_in(server.port, &carol, "127.0.0.1").await.unwrap();
    let mut cockpit = open_cockpit(&client, 100, 30).await.unwrap();
    assert!(read_until(&mut cockpit, "read-only", Duration::from_secs(20)).await.1);
}
