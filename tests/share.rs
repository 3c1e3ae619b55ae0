//! One engine, many cockpits: `flightdeck serve` run for real, clients on
//! its socket (the library's own `attach` client, and raw bytes for what a
//! broken or hostile client sends).

use flightdeck::protocol::wire::{self, ClientMessage, ServerMessage, MAX_LINE};
use flightdeck::protocol::{CommandRequest, Link, Output, Reply, Role, PROTOCOL_VERSION};
use flightdeck::share::client::attach;
use flightdeck::share::hub::SNAPSHOT_INTERVAL;
use flightdeck_core::rollout::{Actor, Command};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
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
        let dir = tempfile::tempdir().unwrap();
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

    fn flightdeck(&self, args: &[&str]) -> std::process::Output {
        Process::new(BIN).args(args).env("FLIGHTDECK_DATA_DIR", self.dir.path().join("data")).output().unwrap()
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
    }
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
    assert_eq!(welcome.role, Role::Captain);
    let (mut bob, _) = attach(&server.socket, "bob").await.unwrap();
    // Bob sees alice on the presence line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bob.snapshots.borrow().attached.iter().any(|p| p.name == "alice") {
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
    // Attributed to the connection's name, not what the client wrote.
    assert_eq!((actor.0.as_str(), accepted, command.as_str()), ("alice", true, "promote"));
    assert!(session.as_deref().is_some_and(|s| s.starts_with("socket #")), "{session:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_command_is_refused_and_audited() {
    let server = Server::start(&["--viewers", "carol"]);
    let (carol, welcome) = attach(&server.socket, "carol").await.unwrap();
    assert_eq!(welcome.role, Role::Viewer);
    let reply = carol.commands.submit(promote(&carol, 0)).await;
    let Reply::Rejected { reason } = reply else { panic!("a viewer's promote was applied") };
    assert!(reason.contains("carol is a viewer"), "{reason}");
    assert_eq!(stage_of(&carol), 0);
    // In the journal: `flightdeck audit` shows who, from where, what they saw, and why it was refused.
    let out = server.flightdeck(&["audit", server.plan.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.contains("by carol")).unwrap_or_else(|| panic!("not audited:\n{text}"));
    assert!(line.contains("promote") && line.contains("via socket #"), "{line}");
    assert!(line.contains("saw stage 1 of v2") && line.contains("REFUSED: carol is a viewer"), "{line}");
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

    // 100 MB without a newline: refused after the first MiB, never held whole.
    let huge = vec![b'x'; 100 << 20];
    let too_long = error_of(&raw_exchange(&server.socket, &huge));
    assert_eq!(too_long, format!("line longer than {MAX_LINE} bytes"));

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
    use flightdeck::protocol::{Origin, SessionKind};
    let plan = flightdeck_core::Plan::parse("checkout.toml", PLAN).unwrap();
    let setup = flightdeck::fleet::setup(plan, "checkout.toml", PLAN.into(), None, 1).await.unwrap();
    let clock = Clock::scaled(flightdeck_core::time::Timestamp(0), 1.0);
    let options = EngineOptions { clock, journal_dir: None, fresh: false, stop_when: StopWhen::Never };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let engine = Engine::start(vec![setup], options, tx).unwrap();
    let engine = engine.handle();
    let captain = |n| Origin { role: Role::Captain, session: SessionKind::Socket { pid: None, id: n } };
    let request = |who: &str, command: Command, stage: usize| CommandRequest {
        rollout: ROLLOUT.into(),
        actor: Actor::new(who),
        command,
        expected_stage: stage,
        expected_revision: "v2".into(),
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

/// A tmux session of its own, running `cmd` at 120×40.
struct Tmux(String);

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let socket = format!("flightdeck-share-{}", std::process::id());
        let args = ["-L", &socket, "new-session", "-d", "-s", "fd", "-x", "120", "-y", "40", cmd];
        let status = Process::new("tmux").args(args).status().expect("tmux is installed (scripts/setup)");
        assert!(status.success());
        Tmux(socket)
    }

    fn screen(&self) -> String {
        let out = Process::new("tmux").args(["-L", &self.0, "capture-pane", "-p", "-t", "fd"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, needles: &[&str]) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "waited for {needles:?}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Process::new("tmux").args(["-L", &self.0, "kill-server"]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_shows_the_cockpit_with_who_else_is_here_and_says_when_the_server_is_gone() {
    let mut server = Server::start(&["--viewers", "bob"]);
    let (_bob, _) = attach(&server.socket, "bob").await.unwrap();
    let data = server.dir.path().join("data");
    let config = server.dir.path().join("config");
    let cmd = format!(
        "env FLIGHTDECK_DATA_DIR={} FLIGHTDECK_CONFIG_DIR={} {BIN} attach --socket {} --as alice",
        data.display(),
        config.display(),
        server.socket.display()
    );
    let tmux = Tmux::start(&cmd);
    tmux.wait_for(&["checkout-api", "alice", "also here: bob (viewer)"]);
    tokio::task::spawn_blocking(move || {
        server.stop();
        tmux.wait_for(&["reconnecting"]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_named_approvers_from_two_sessions_let_the_stage_in() {
    let plan = PLAN.replacen(
        "weight = 10\nbake = \"1h\"",
        "weight = 10\nbake = \"1h\"\napprovers = [\"alice\", \"bob\", \"carol\"]\nrequired = 2",
        1,
    );
    let server = Server::with_plan(&plan, &[]);
    let (alice, _) = attach(&server.socket, "alice").await.unwrap();
    let (mut bob, _) = attach(&server.socket, "bob").await.unwrap();
    assert_eq!(alice.commands.submit(promote(&alice, 0)).await, Reply::Ack);
    // Bob's cockpit is told as it happens.
    let told = event(&mut bob, Duration::from_secs(5), |o| matches!(o, Output::Notice { .. })).await;
    let Output::Notice { message, .. } = told else { unreachable!() };
    assert_eq!(message, "alice approved stage 2 (1 of 2); waiting for 1 more of bob, carol");
    let Reply::Rejected { reason } = alice.commands.submit(promote(&alice, 0)).await else {
        panic!("alice approved twice")
    };
    assert!(reason.starts_with("alice already approved stage 2"), "{reason}");
    assert_eq!(bob.commands.submit(promote(&bob, 0)).await, Reply::Ack);
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
    let here = |name: &str| alice.snapshots.borrow().attached.iter().any(|p| p.name == name);
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
