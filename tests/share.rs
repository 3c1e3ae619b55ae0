//! One engine, many cockpits: `flightdeck serve` run for real, clients on
//! its socket (the library's own `attach` client, raw bytes for what a
//! broken or hostile client sends, and this test binary run as another
//! user for what someone else on the host can do).

mod support;

use flightdeck::protocol::wire::{self, ClientMessage, ServerMessage, MAX_CLIENT_LINE};
use flightdeck::protocol::{CommandRequest, Link, Output, Reply, Role, SessionKind, PROTOCOL_VERSION};
use flightdeck::share::client::attach;
use flightdeck::share::hub::SNAPSHOT_INTERVAL;
use flightdeck_core::rollout::{Actor, Command};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use support::cli::BIN;
use support::tmux::Tmux;
const ROLLOUT: &str = "sim-eu-1/checkout-api";

/// Four stages that bake for an hour: nothing moves unless someone acts.
const PLAN: &str = include_str!("fixtures/plans/held-canary.toml");

struct Server {
    child: Child,
    socket: PathBuf,
    plan: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::with_plan(PLAN, extra)
    }

    fn with_plan(text: &str, extra: &[&str]) -> Server {
        Server::in_dir(tempfile::tempdir().unwrap(), text, extra)
    }

    /// A server whose socket the user `nobody` may reach (its group, in a
    /// directory others may enter): for this test only.
    fn shared(text: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let gid = Nobody::ids().1.to_string();
        let mut args = vec!["--socket-group", gid.as_str()];
        args.extend_from_slice(extra);
        Server::in_dir(dir, text, &args)
    }

    fn in_dir(dir: tempfile::TempDir, text: &str, extra: &[&str]) -> Server {
        let plan = dir.path().join("checkout.toml");
        std::fs::write(&plan, text).unwrap();
        let socket = dir.path().join("run/serve.sock");
        let mut server = Server { child: spawn(dir.path(), &socket, &plan, extra), socket, plan, dir };
        server.wait_listening();
        server
    }

    /// Until the socket answers (or the server died: its stderr says why).
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("serve exited with {status}: {err}");
            }
            assert!(Instant::now() < deadline, "serve did not listen on {}", self.socket.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn restart(&mut self, extra: &[&str]) {
        self.stop();
        self.child = spawn(self.dir.path(), &self.socket, &self.plan, extra);
        self.wait_listening();
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        Process::new("kill").args(["-s", "TERM", &pid]).status().unwrap();
        self.child.wait().unwrap();
    }

    /// The journal the server keeps for the rollout.
    fn journal(&self) -> PathBuf {
        let dir = self.dir.path().join("data/journal");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found.pop().unwrap()
    }

    /// What the server wrote to its log file so far.
    fn log(&self) -> String {
        let dir = self.dir.path().join("data/logs");
        let mut text = String::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()));
        }
        text
    }

    fn flightdeck(&self, args: &[&str]) -> std::process::Output {
        support::cli::flightdeck(&self.dir.path().join("data"), args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, socket: &Path, plan: &Path, extra: &[&str]) -> Child {
    Process::new(BIN)
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .arg(plan)
        .env("FLIGHTDECK_DATA_DIR", dir.join("data"))
        .env("FLIGHTDECK_CONFIG_DIR", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn promote(link: &Link, stage: usize) -> CommandRequest {
    let snapshot = link.snapshots.borrow();
    let r = snapshot.rollouts.iter().find(|r| r.id == ROLLOUT).expect("the rollout is shared");
    CommandRequest {
        rollout: ROLLOUT.into(),
        actor: Actor::new("whoever the client claims"),
        command: Command::Promote,
        expected_stage: stage,
        expected_revision: r.canary_revision.clone(),
        expected_step: None,
    }
}

/// The display name a session gave, when it is not its login name.
fn hint(session: &SessionKind) -> Option<&str> {
    match session {
        SessionKind::Socket { hint, .. } => hint.as_deref(),
        _ => None,
    }
}

/// Whether a session that called itself `name` is on `link`'s presence line.
fn here(link: &Link, name: &str) -> bool {
    link.snapshots.borrow().attached.iter().any(|p| hint(&p.session) == Some(name))
}

fn stage_of(link: &Link) -> usize {
    link.snapshots.borrow().rollouts.iter().find(|r| r.id == ROLLOUT).unwrap().stage
}

/// Waits for an event matching `want` on `link`.
async fn event(link: &mut Link, limit: Duration, want: impl Fn(&Output) -> bool) -> Output {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, link.outputs.recv()).await {
            Ok(Some(o)) if want(&o) => return o,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the link closed"),
            Err(_) => panic!("no such event within {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_from_one_cockpit_is_on_the_others_within_a_snapshot_interval_attributed() {
    let server = Server::start(&[]);
    let (alice, welcome) = attach(&server.socket, "alice").await.unwrap();
    // The user the kernel says (these tests run as root), not the name given.
    assert_eq!((welcome.name.as_str(), welcome.role), ("root", Role::Captain));
    let (mut bob, _) = attach(&server.socket, "bob").await.unwrap();
    // Bob sees alice on the presence line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !here(&bob, "alice") {
        assert!(Instant::now() < deadline, "alice never showed as attached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut snapshots = bob.snapshots.clone();
    snapshots.borrow_and_update();
    let sent = Instant::now();
    let reply = alice.commands.submit(promote(&alice, 0)).await;
    assert_eq!(reply, Reply::Ack);
    while stage_of(&bob) != 1 {
        tokio::time::timeout(Duration::from_secs(5), snapshots.changed()).await.unwrap().unwrap();
    }
    let took = sent.elapsed();
    // One interval, plus room for a loaded test machine to schedule the tasks.
    assert!(took <= SNAPSHOT_INTERVAL + Duration::from_millis(500), "bob saw the promote after {took:?}");
    let action = event(&mut bob, Duration::from_secs(5), |o| matches!(o, Output::Action { .. })).await;
    let Output::Action { actor, accepted, session, command, .. } = action else { unreachable!() };
    // Attributed to the connection's user, not what the client wrote.
    assert_eq!((actor.0.as_str(), accepted, command.as_str()), ("root", true, "promote"));
    let session = session.unwrap();
    assert!(session.starts_with("socket #") && session.contains("(uid 0, pid "), "{session}");
    assert!(session.ends_with(", calls itself alice)"), "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_command_is_refused_and_audited() {
    let server = Server::start(&["--viewers", "root"]);
    let (carol, welcome) = attach(&server.socket, "carol").await.unwrap();
    assert_eq!(welcome.role, Role::Viewer);
    let reply = carol.commands.submit(promote(&carol, 0)).await;
    let Reply::Rejected { reason } = reply else { panic!("a viewer's promote was applied") };
    assert!(reason.contains("root is a viewer"), "{reason}");
    assert_eq!(stage_of(&carol), 0);
    // In the journal: `flightdeck audit` shows who, from where, what they saw, and why it was refused.
    let out = server.flightdeck(&["audit", server.plan.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.contains("by root")).unwrap_or_else(|| panic!("not audited:\n{text}"));
    assert!(line.contains("promote") && line.contains("via socket #") && line.contains("(uid 0, "), "{line}");
    assert!(line.contains("saw stage 1 of v2") && line.contains("REFUSED: root is a viewer"), "{line}");
}

#[test]
fn the_socket_is_the_users_alone_and_a_live_server_keeps_it() {
    let server = Server::start(&[]);
    let mode = std::fs::metadata(&server.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // A second server on the same socket stops at once and says why.
    let other = server.dir.path().join("other.toml");
    std::fs::write(&other, PLAN.replace("checkout-api", "other")).unwrap();
    let out = Process::new(BIN)
        .args(["serve", "--socket", server.socket.to_str().unwrap(), other.to_str().unwrap()])
        .env("FLIGHTDECK_DATA_DIR", server.dir.path().join("data2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another flightdeck serve is running on this socket"), "{err}");
    // The first one still answers.
    assert!(UnixStream::connect(&server.socket).is_ok());
}

#[test]
fn a_stale_socket_left_by_a_killed_server_is_taken_over() {
    let mut server = Server::start(&[]);
    server.child.kill().unwrap(); // SIGKILL: no clean-up, the socket file stays
    server.child.wait().unwrap();
    assert!(server.socket.exists());
    server.child = spawn(server.dir.path(), &server.socket, &server.plan, &[]);
    server.wait_listening();
}

/// Sends `bytes` as a client would and returns what the server answers
/// before it closes the connection.
fn raw_exchange(socket: &Path, bytes: &[u8]) -> Vec<String> {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let bytes = bytes.to_vec();
    // The server may close before it has read everything: the write then fails, which is the point.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    let mut lines = Vec::new();
    for line in BufReader::new(stream).lines() {
        match line {
            Ok(l) => lines.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the server's answer: {e}"),
        }
    }
    sender.join().unwrap();
    lines
}

fn error_of(lines: &[String]) -> String {
    let last = lines.last().expect("the server answered before closing");
    match serde_json::from_str::<ServerMessage>(last).expect("the answer is a protocol message") {
        ServerMessage::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_a_huge_line_and_another_version_are_refused_and_the_engine_goes_on() {
    let server = Server::start(&[]);
    let (watcher, _) = attach(&server.socket, "watcher").await.unwrap();

    let garbage = error_of(&raw_exchange(&server.socket, b"\x00\xff\xfe not json at all\n"));
    assert!(garbage.starts_with("not a protocol message"), "{garbage}");

    // 100 MB without a newline: refused after the first 16 KiB, never held whole.
    let huge = vec![b'x'; 100 << 20];
    let too_long = error_of(&raw_exchange(&server.socket, &huge));
    assert_eq!(too_long, format!("line longer than {MAX_CLIENT_LINE} bytes"));

    let hello = ClientMessage::Hello { version: PROTOCOL_VERSION + 1, name: "eve".into(), client: "test".into() };
    let version = error_of(&raw_exchange(&server.socket, &wire::encode(&hello)));
    assert!(version.contains(&format!("protocol version {}", PROTOCOL_VERSION + 1)), "{version}");

    // After a good hello, garbage still ends the connection with an error.
    let good = ClientMessage::Hello { version: PROTOCOL_VERSION, name: "eve".into(), client: "test".into() };
    let mut bytes = wire::encode(&good);
    bytes.extend_from_slice(b"{\"type\":\"command\",\"id\":\"x\"}\n");
    let lines = raw_exchange(&server.socket, &bytes);
    assert!(error_of(&lines).starts_with("not a protocol message"), "{lines:?}");

    // The engine goes on: the watcher is still served and a command still applies.
    let reply = watcher.commands.submit(promote(&watcher, 0)).await;
    assert_eq!(reply, Reply::Ack);
    // A client that joins now sees the promote, at the latest with the
    // hub's next sample (every 250 ms).
    let (late, _) = attach(&server.socket, "late").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stage_of(&late) != 1 {
        assert!(Instant::now() < deadline, "a late client never saw the promote: stage {}", stage_of(&late));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reconnects_to_a_restarted_server_which_resumes_from_its_journal() {
    let mut server = Server::start(&[]);
    let (mut alice, _) = attach(&server.socket, "alice").await.unwrap();
    assert_eq!(alice.commands.submit(promote(&alice, 0)).await, Reply::Ack);
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.status.borrow().is_none() {
        assert!(Instant::now() < deadline, "the lost connection was not reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let said = alice.status.borrow().clone().unwrap();
    assert!(said.contains("reconnecting"), "{said}");
    let socket = server.socket.clone();
    let restarted = tokio::task::spawn_blocking(move || {
        server.restart(&[]);
        server
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while alice.status.borrow_and_update().is_some() {
            alice.status.changed().await.unwrap();
        }
    })
    .await
    .expect("attach reconnected");
    // Resumed at the stage the journal holds, and commands work again.
    assert_eq!(stage_of(&alice), 1);
    assert_eq!(alice.commands.submit(promote(&alice, 1)).await, Reply::Ack);
    assert!(socket.exists());
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_captains_promoting_the_same_stage_at_once_one_applies_and_the_other_is_stale() {
    use flightdeck::clock::Clock;
    use flightdeck::engine::{Engine, EngineOptions, StopWhen};
    use flightdeck::protocol::Origin;
    let plan = flightdeck_core::Plan::parse("checkout.toml", PLAN).unwrap();
    let setup = flightdeck::fleet::setup(plan, "checkout.toml", PLAN.into(), None, 1).await.unwrap();
    let clock = Clock::scaled(flightdeck_core::time::Timestamp(0), 1.0);
    let options = EngineOptions { clock, journal_dir: None, fresh: false, stop_when: StopWhen::Never };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let engine = Engine::start(vec![setup], options, tx).unwrap();
    let engine = engine.handle();
    let captain =
        |n| Origin { role: Role::Captain, session: SessionKind::Socket { pid: None, id: n, uid: None, hint: None } };
    let request = |who: &str, command: Command, stage: usize| CommandRequest {
        rollout: ROLLOUT.into(),
        actor: Actor::new(who),
        command,
        expected_stage: stage,
        expected_revision: "v2".into(),
        expected_step: None,
    };
    for round in 0..1000 {
        let alice = engine.submit_from(request("alice", Command::Promote, 0), captain(1));
        let bob = engine.submit_from(request("bob", Command::Promote, 0), captain(2));
        let (a, b) = tokio::join!(alice, bob);
        let refused: Vec<&String> = [&a, &b]
            .into_iter()
            .filter_map(|r| match r {
                Reply::Rejected { reason } => Some(reason),
                Reply::Ack => None,
            })
            .collect();
        assert_eq!(refused.len(), 1, "round {round}: {a:?} / {b:?}");
        assert!(refused[0].starts_with("stale: sent for stage 1 but the rollout is at stage 2"), "{}", refused[0]);
        // Back to stage 1 (paused) for the next round.
        let back = engine.submit_from(request("alice", Command::StepBack, 1), captain(1)).await;
        assert_eq!(back, Reply::Ack, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_shows_the_cockpit_with_who_else_is_here_and_says_when_the_server_is_gone() {
    let Some(nobody) = Nobody::available() else { return };
    let mut server = Server::shared(PLAN, &["--captains", "root"]);
    // Another user: a viewer, whatever name it gives.
    let mut bob = nobody.connect(&server.socket, "root");
    assert_eq!(bob.welcome(), ("nobody".to_string(), Role::Viewer));
    let data = server.dir.path().join("data");
    let config = server.dir.path().join("config");
    let cmd = format!(
        "env FLIGHTDECK_DATA_DIR={} FLIGHTDECK_CONFIG_DIR={} {BIN} attach --socket {} --as alice",
        data.display(),
        config.display(),
        server.socket.display()
    );
    let tmux = Tmux::start(&cmd);
    // The top bar names this user as the server knows it.
    tmux.wait_for(&["checkout-api", "root", "also here: nobody (viewer)"]);
    tokio::task::spawn_blocking(move || {
        server.stop();
        tmux.wait_for(&["reconnecting"]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_named_approvers_from_two_users_let_the_stage_in_and_one_user_counts_once() {
    let Some(nobody) = Nobody::available() else { return };
    let plan = PLAN.replacen(
        "weight = 10\nbake = \"1h\"",
        "weight = 10\nbake = \"1h\"\napprovers = [\"root\", \"nobody\", \"daemon\"]\nrequired = 2",
        1,
    );
    let server = Server::shared(&plan, &["--captains", "root,nobody"]);
    let (alice, _) = attach(&server.socket, "alice").await.unwrap();
    let (mut bob, _) = attach(&server.socket, "bob").await.unwrap();
    assert_eq!(alice.commands.submit(promote(&alice, 0)).await, Reply::Ack);
    // Every cockpit is told as it happens.
    let told = event(&mut bob, Duration::from_secs(5), |o| matches!(o, Output::Notice { .. })).await;
    let Output::Notice { message, .. } = told else { unreachable!() };
    assert_eq!(message, "root approved stage 2 (1 of 2); waiting for 1 more of nobody, daemon");
    // The same user under another name is the same approver.
    let Reply::Rejected { reason } = bob.commands.submit(promote(&bob, 0)).await else {
        panic!("one user approved twice under two names")
    };
    assert!(reason.starts_with("root already approved stage 2"), "{reason}");
    // Another user, even one calling itself root, is a second approver.
    let mut other = nobody.connect(&server.socket, "root");
    assert_eq!(other.welcome(), ("nobody".to_string(), Role::Captain));
    assert_eq!(other.command(1, &Command::Promote, 0), Reply::Ack);
    let deadline = Instant::now() + Duration::from_secs(5);
    while stage_of(&alice) != 1 {
        assert!(Instant::now() < deadline, "the second approval did not let stage 2 in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_the_others_keep_up() {
    // Ten analysis windows a second, for a week: plenty to fill a socket.
    let busy = PLAN.replace("bake = \"1h\"", "bake = \"7d\"");
    let server = Server::with_plan(&busy, &["--speed", "600"]);
    let (alice, _) = attach(&server.socket, "alice").await.unwrap();
    let stuck = UnixStream::connect(&server.socket).unwrap();
    let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: "stuck".into(), client: "test".into() };
    (&stuck).write_all(&wire::encode(&hello)).unwrap();
    let here = |name: &str| here(&alice, name);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !here("stuck") {
        assert!(Instant::now() < deadline, "the stuck client never attached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It never reads: once its socket is full for WRITE_TIMEOUT, it is gone.
    // Meanwhile the engine goes on for the others: commands are answered
    // while it is still attached (were the engine waiting on it, the first
    // answer would come only after it was dropped).
    let deadline = Instant::now() + flightdeck::share::server::WRITE_TIMEOUT + Duration::from_secs(60);
    let mut answered_while_stuck = 0;
    while here("stuck") {
        assert!(Instant::now() < deadline, "a client that stopped reading was never dropped");
        let reply = alice.commands.submit(promote(&alice, 7)).await;
        assert!(matches!(reply, Reply::Rejected { .. }), "{reply:?}");
        if here("stuck") {
            answered_while_stuck += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered_while_stuck > 0, "no command was answered while the stuck client was attached");
    drop(stuck);
}

/// The user `nobody`, to run a client as someone else: these tests run as
/// root, and a client of another user must be that user, whatever it says.
struct Nobody {
    uid: u32,
    gid: u32,
}

impl Nobody {
    fn ids() -> (u32, u32) {
        let id = |flag: &str| {
            let out = Process::new("id").args([flag, "nobody"]).output().expect("id(1)");
            String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().expect("a user named nobody")
        };
        (id("-u"), id("-g"))
    }

    /// `None` (and a note) when the tests do not run as root.
    fn available() -> Option<Nobody> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: running a client as another user needs root");
            return None;
        }
        let (uid, gid) = Nobody::ids();
        Some(Nobody { uid, gid })
    }

    /// This test binary, run as `nobody`, piping its stdin and stdout to
    /// `socket` ([`socket_pipe_as_another_user`]), after a hello giving `name`.
    fn connect(&self, socket: &Path, name: &str) -> Pipe {
        use std::os::unix::process::CommandExt;
        let mut child = Process::new(std::env::current_exe().unwrap())
            .args(["socket_pipe_as_another_user", "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env("FLIGHTDECK_TEST_PIPE", socket)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // The test harness's own lines are not the server's.
                if let Some(at) = line.find('{') {
                    if tx.send(line[at..].to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut pipe = Pipe { child, lines };
        pipe.send(&ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), client: "test".into() });
        pipe
    }
}

/// A client running as another user.
struct Pipe {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Pipe {
    fn send(&mut self, message: &ClientMessage) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(&wire::encode(message)).unwrap();
        stdin.flush().unwrap();
    }

    fn next(&mut self) -> ServerMessage {
        let Ok(line) = self.lines.recv_timeout(Duration::from_secs(20)) else {
            panic!("no answer from the server; the client as nobody: {:?}", self.child.try_wait());
        };
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// The name and role of the welcome.
    fn welcome(&mut self) -> (String, Role) {
        match self.next() {
            ServerMessage::Welcome { name, role, .. } => (name, role),
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// Sends `command` for stage `stage` (0-based) of v2, claiming to be root, and waits for its reply.
    fn command(&mut self, id: u64, command: &Command, stage: usize) -> Reply {
        let request = CommandRequest {
            rollout: ROLLOUT.into(),
            actor: Actor::new("root"),
            command: command.clone(),
            expected_stage: stage,
            expected_revision: "v2".into(),
            expected_step: None,
        };
        self.send(&ClientMessage::Command { id, request });
        loop {
            match self.next() {
                ServerMessage::Reply { id: got, reply } if got == id => return reply,
                ServerMessage::Error { message } => panic!("the server closed the connection: {message}"),
                _ => {}
            }
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Not a test of its own: when `FLIGHTDECK_TEST_PIPE` names a socket (run
/// by [`Nobody::connect`] as another user), pipes stdin to it and its
/// answers to stdout, then exits.
#[test]
fn socket_pipe_as_another_user() {
    let Some(socket) = std::env::var_os("FLIGHTDECK_TEST_PIPE") else { return };
    let stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(e) => {
            let error = ServerMessage::Error { message: format!("cannot connect: {e}") };
            std::io::stdout().write_all(&wire::encode(&error)).unwrap();
            std::process::exit(3);
        }
    };
    let mut to_server = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut chunk = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = stdin.read(&mut chunk) {
            if to_server.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
        let _ = to_server.shutdown(std::net::Shutdown::Write);
    });
    let (mut from_server, mut stdout) = (&stream, std::io::stdout());
    let mut chunk = vec![0u8; 64 << 10];
    while let Ok(n @ 1..) = from_server.read(&mut chunk) {
        if stdout.write_all(&chunk[..n]).and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
    std::process::exit(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_user_is_that_user_whatever_its_hello_says() {
    let Some(nobody) = Nobody::available() else { return };
    let server = Server::shared(PLAN, &["--captains", "root"]);
    let mode = std::fs::metadata(&server.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "a socket shared with a group: mode {mode:o}");
    // Calls itself root, the only captain: it is nobody, a viewer.
    let mut mallory = nobody.connect(&server.socket, "root");
    assert_eq!(mallory.welcome(), ("nobody".to_string(), Role::Viewer));
    let Reply::Rejected { reason } = mallory.command(1, &Command::Promote, 0) else {
        panic!("another user acted as a captain by its hello")
    };
    assert!(reason.starts_with("nobody is a viewer"), "{reason}");
    let (root, _) = attach(&server.socket, "watcher").await.unwrap();
    assert_eq!(stage_of(&root), 0);
    // The journal has it as nobody's, with the user id the kernel gave.
    let out = server.flightdeck(&["audit", server.plan.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("promote")).unwrap_or_else(|| panic!("not audited:\n{text}"));
    let uid = nobody.uid;
    assert!(line.contains("by nobody via socket #"), "{line}");
    assert!(line.contains(&format!("(uid {uid}, pid ")) && line.contains("calls itself root)"), "{line}");
    assert!(line.contains("REFUSED: nobody is a viewer"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_made_with_no_captains_lets_only_its_own_user_act() {
    let Some(nobody) = Nobody::available() else { return };
    let server = Server::shared(PLAN, &[]);
    let mut other = nobody.connect(&server.socket, "root");
    assert_eq!(other.welcome(), ("nobody".to_string(), Role::Viewer));
    let (own, welcome) = attach(&server.socket, "whoever").await.unwrap();
    assert_eq!((welcome.name.as_str(), welcome.role), ("root", Role::Captain));
    assert_eq!(own.commands.submit(promote(&own, 0)).await, Reply::Ack);
}

#[test]
fn roles_and_groups_that_name_nobody_on_this_host_stop_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("checkout.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let socket = dir.path().join("serve.sock");
    for (args, want) in [
        (["--captains", "alcie"], "--captains: no user named \"alcie\" on this host"),
        (["--socket-group", "no-such-group-here"], "--socket-group no-such-group-here: no such group"),
    ] {
        let out = Process::new(BIN)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .arg(&plan)
            .env("FLIGHTDECK_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_would_fake_or_hide_text_are_refused_at_hello_and_nothing_raw_is_logged() {
    let server = Server::start(&[]);
    for name in
        ["carol\u{202e}", "bob, dave (viewer)", "zero\u{200b}width", "eve\nforged log line", "x".repeat(33).as_str()]
    {
        let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), client: "test".into() };
        let message = error_of(&raw_exchange(&server.socket, &wire::encode(&hello)));
        assert!(message.starts_with("hello: `name` must be 1 to 32 of the characters"), "{message}");
    }
    // What a client sends is echoed in the refusal; the log file holds it escaped.
    let hostile = b"{\"type\":\"\\u001b]0;owned\\u0007\\u001b[2J\\u202e\\nINFO forged\"}\n";
    let message = error_of(&raw_exchange(&server.socket, hostile));
    assert!(message.starts_with("not a protocol message"), "{message}");
    let (_watcher, _) = attach(&server.socket, "watcher").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if log.contains("owned") {
            assert!(!log.contains('\u{1b}') && !log.contains('\u{7}') && !log.contains('\u{202e}'), "{log:?}");
            assert!(!log.lines().any(|l| l.starts_with("INFO forged")), "{log}");
            assert!(log.contains("\\x1b]0;owned\\x07"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "the refusal was never logged:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Journal lines and bytes.
fn size_of(journal: &Path) -> (usize, u64) {
    let text = std::fs::read(journal).unwrap();
    (text.iter().filter(|&&b| b == b'\n').count(), text.len() as u64)
}

/// Writes `count` copies of `command` on a raw connection as fast as the
/// socket takes them, and counts the replies: (acks, refusals, the first
/// refusal of each kind).
fn flood(socket: &Path, command: Command, count: u64) -> (u64, u64, Vec<String>) {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: "flood".into(), client: "test".into() };
        let mut bytes = wire::encode(&hello);
        for id in 0..count {
            let request = CommandRequest {
                rollout: ROLLOUT.into(),
                actor: Actor::new("flood"),
                command: command.clone(),
                expected_stage: 0,
                expected_revision: "v2".into(),
                expected_step: None,
            };
            bytes.extend(wire::encode(&ClientMessage::Command { id, request }));
        }
        writer.write_all(&bytes).unwrap();
    });
    let (mut acks, mut refusals, mut kinds) = (0, 0, Vec::<String>::new());
    for line in BufReader::new(stream).lines() {
        match serde_json::from_str::<ServerMessage>(&line.unwrap()).unwrap() {
            ServerMessage::Reply { reply: Reply::Ack, .. } => acks += 1,
            ServerMessage::Reply { reply: Reply::Rejected { reason }, .. } => {
                refusals += 1;
                let kind: String = reason.chars().take(20).collect();
                if !kinds.iter().any(|k| k.starts_with(&kind)) {
                    kinds.push(reason);
                }
            }
            ServerMessage::Error { message } => panic!("the flood was cut off: {message}"),
            _ => {}
        }
        if acks + refusals == count {
            break;
        }
    }
    sender.join().unwrap();
    (acks, refusals, kinds)
}

/// 5,000 commands from one session in a burst: the journal grows by a
/// bounded amount, the other cockpits hear of it once with the count, and
/// the engine keeps answering them meanwhile.
async fn a_flood_is_bounded(server: Server, command: Command, want: &str) {
    let (mut other, _) = attach(&server.socket, "other").await.unwrap();
    let journal = server.journal();
    let before = size_of(&journal);
    let socket = server.socket.clone();
    let flooding = tokio::task::spawn_blocking(move || flood(&socket, command, 5_000));
    // The engine answers another session while the flood goes on.
    let mut slowest = Duration::ZERO;
    while !flooding.is_finished() {
        let sent = Instant::now();
        let request = CommandRequest { command: Command::Resume, ..promote(&other, 7) };
        let reply = tokio::time::timeout(Duration::from_secs(5), other.commands.submit(request)).await;
        assert!(reply.is_ok(), "the engine stopped answering another client during the flood");
        slowest = slowest.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (acks, refusals, kinds) = flooding.await.unwrap();
    assert_eq!(acks + refusals, 5_000);
    assert!(kinds.iter().any(|k| k.starts_with("too many commands: at most 10 a second")), "{kinds:#?}");
    assert!(kinds.iter().any(|k| k.starts_with(want)), "{kinds:#?}");
    let after = size_of(&journal);
    let (lines, bytes) = (after.0 - before.0, after.1 - before.1);
    println!("flood: {acks} applied, {refusals} refused, journal +{lines} lines +{bytes} bytes; slowest other reply {slowest:?}");
    assert!(lines <= 60 && bytes <= 128 << 10, "the journal grew by {lines} lines, {bytes} bytes");
    // Everyone hears of it once, with the count, not once per command.
    let told = event(
        &mut other,
        flightdeck::share::server::NOTICE_EVERY * 2,
        |o| matches!(o, Output::Notice { message, .. } if message.contains("refused by the server, not journaled")),
    )
    .await;
    let Output::Notice { message, .. } = told else { unreachable!() };
    assert!(message.starts_with("root (socket #") && message.contains("commands refused by the server"), "{message}");
    let mut actions = 0;
    while let Ok(o) = other.outputs.try_recv() {
        actions += usize::from(matches!(o, Output::Action { .. }));
    }
    assert!(actions <= 60, "{actions} events of the flood reached the other cockpits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captains_flood_of_commands_is_rate_limited_and_its_repeats_coalesced() {
    let server = Server::start(&[]);
    a_flood_is_bounded(server, Command::Pause { reason: None }, "pause is not possible while paused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_flood_of_commands_is_refused_at_the_session_after_the_first_few() {
    let server = Server::start(&["--viewers", "root"]);
    a_flood_is_bounded(server, Command::Pause { reason: None }, "root is a viewer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_texts_and_control_characters_in_a_command_never_reach_the_journal() {
    let server = Server::start(&[]);
    let (alice, _) = attach(&server.socket, "alice").await.unwrap();
    let journal = server.journal();
    let before = size_of(&journal);
    let (long, longer) = ("y".repeat(501), "y".repeat(20_000));
    let hostile = [long.as_str(), longer.as_str(), "\u{1b}]0;owned\u{7}", "carol\u{202e}", "line\nbreak"];
    // `attach` does not send them (a 20,000-character line would end the connection)…
    for reason in hostile {
        let request = CommandRequest { command: Command::Pause { reason: Some(reason.into()) }, ..promote(&alice, 0) };
        let Reply::Rejected { reason } = alice.commands.submit(request).await else { panic!("sent on") };
        assert!(reason.starts_with("a command's text") && reason.ends_with("; not sent"), "{reason}");
    }
    // …and the server refuses them from any client.
    let mut bytes =
        wire::encode(&ClientMessage::Hello { version: PROTOCOL_VERSION, name: "raw".into(), client: "test".into() });
    for (id, reason) in hostile[..1].iter().chain(&hostile[2..]).enumerate() {
        let request =
            CommandRequest { command: Command::Pause { reason: Some(reason.to_string()) }, ..promote(&alice, 0) };
        bytes.extend(wire::encode(&ClientMessage::Command { id: id as u64, request }));
    }
    let stream = UnixStream::connect(&server.socket).unwrap();
    (&stream).write_all(&bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut refused = 0;
    for line in BufReader::new(&stream).lines() {
        if let ServerMessage::Reply { reply: Reply::Rejected { reason }, .. } =
            serde_json::from_str(&line.unwrap()).unwrap()
        {
            assert!(
                reason.starts_with("a command's text") && reason.ends_with("refused by the server, not sent"),
                "{reason}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 4);
    assert_eq!(size_of(&journal), before);
    // 500 characters are fine.
    let request = CommandRequest { command: Command::Pause { reason: Some("y".repeat(500)) }, ..promote(&alice, 0) };
    assert_eq!(alice.commands.submit(request).await, Reply::Ack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_prints_what_someone_typed_inert() {
    use flightdeck::clock::Clock;
    use flightdeck::engine::{Engine, EngineOptions, StopWhen};
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("checkout.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let data = dir.path().join("data");
    // In this process, as the local captain: what a journal may hold whatever the socket lets through.
    let setups = flightdeck::fleet::from_files(std::slice::from_ref(&plan), None, 1).await.unwrap();
    let clock = Clock::scaled(flightdeck_core::time::Timestamp(0), 1.0);
    let journal_dir = Some(data.join("journal"));
    let options = EngineOptions { clock, journal_dir, fresh: false, stop_when: StopWhen::Never };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let engine = Engine::start(setups, options, tx).unwrap();
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\rcarol\u{202e}\u{9b}1m";
    let request = |command| CommandRequest {
        rollout: ROLLOUT.into(),
        actor: Actor::new(hostile),
        command,
        expected_stage: 0,
        expected_revision: "v2".into(),
        expected_step: None,
    };
    let handle = engine.handle();
    // Refused (no freeze to override), with the typed reason kept.
    let refused = handle.submit(request(Command::OverrideFreeze { reason: hostile.into() })).await;
    assert!(matches!(refused, Reply::Rejected { .. }), "{refused:?}");
    assert_eq!(handle.submit(request(Command::Pause { reason: Some(hostile.into()) })).await, Reply::Ack);
    engine.shutdown().await;
    let out =
        Process::new(BIN).args(["audit", plan.to_str().unwrap()]).env("FLIGHTDECK_DATA_DIR", &data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().count() >= 2, "{text}");
    let bad = |c: char| (c < ' ' && c != '\n') || ('\u{7f}'..='\u{9f}').contains(&c) || c == '\u{202e}';
    assert!(!text.chars().any(bad), "{text:?}");
    assert!(text.contains("\\x1b]0;owned\\x07\\x1b[2J\\rcarol\\u{202e}\\u{9b}1m"), "{text}");
    // --json was inert already: JSON escapes control characters.
    let json = Process::new(BIN)
        .args(["audit", "--json", plan.to_str().unwrap()])
        .env("FLIGHTDECK_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!String::from_utf8(json.stdout).unwrap().contains('\u{1b}'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_attach_takes_the_role_of_the_new_welcome() {
    let mut server = Server::start(&[]);
    let (mut alice, _) = attach(&server.socket, "alice").await.unwrap();
    assert_eq!(*alice.role.borrow(), Some(Role::Captain));
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.status.borrow().is_none() {
        assert!(Instant::now() < deadline, "the lost connection was not reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = tokio::task::spawn_blocking(move || {
        server.restart(&["--viewers", "root"]);
        server
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while alice.status.borrow_and_update().is_some() {
            alice.status.changed().await.unwrap();
        }
    })
    .await
    .expect("attach reconnected");
    assert_eq!(*alice.role.borrow(), Some(Role::Viewer));
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cockpits_attaching_to_an_idle_fleet_at_different_times_show_one_clock() {
    use flightdeck::protocol::link::ViewClock;
    // Real time, analysis every minute: nothing changes for a while after the start.
    let server = Server::start(&[]);
    let (first, _) = attach(&server.socket, "first").await.unwrap();
    let early = ViewClock::new(&first.snapshots.borrow());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (second, _) = attach(&server.socket, "second").await.unwrap();
    let late = ViewClock::new(&second.snapshots.borrow());
    let (a, b) = (early.now().0, late.now().0);
    // 3 s apart when the late one starts its clock at the last change.
    assert!(a.abs_diff(b) <= 1_000, "the clocks are {} ms apart", a.abs_diff(b));
}

#[test]
fn serve_whose_stderr_is_gone_still_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("checkout.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let socket = dir.path().join("serve.sock");
    let mut child = spawn(dir.path(), &socket, &plan, &[]);
    // Read the first line, then close the pipe: the server's later writes to stderr fail.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("serving"), "{first}");
    drop(stderr);
    Process::new("kill").args(["-s", "INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");

    // A pipe nobody reads from the start: the first lines cannot be written either.
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just made and are owned here alone.
    let (read, write) = unsafe {
        use std::os::fd::FromRawFd;
        (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    };
    drop(read);
    let socket = dir.path().join("again.sock");
    let mut child = Process::new(BIN)
        .args(["serve", "--socket", socket.to_str().unwrap(), plan.to_str().unwrap()])
        .env("FLIGHTDECK_DATA_DIR", dir.path().join("data2"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(write))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "serve stopped when its stderr was gone");
        assert!(Instant::now() < deadline, "serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    Process::new("kill").args(["-s", "INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
}
