//! `flightdeck serve --ssh`: a real OpenSSH client (`ssh -tt`) in tmux
//! signs in with a key the test makes, reads the cockpit off the screen,
//! resizes its window, promotes; a viewer's key is refused at the engine
//! and audited; an unknown key and commands are refused.
//! `scripts/setup` installs tmux and openssh-client.
#![cfg(feature = "ssh")]

use flightdeck::share::client::attach;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

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
}

impl Server {
    /// alice is a captain (named by option); bob is a viewer named by his key's comment.
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("checkout.toml");
        std::fs::write(&plan, PLAN).unwrap();
        let (alice, bob) = (keygen(dir.path(), "alice"), keygen(dir.path(), "bob"));
        let keys = dir.path().join("authorized_keys");
        let text = format!("# the team\nrole=captain,name=alice {}\nrole=viewer {}\n", public(&alice), public(&bob));
        std::fs::write(&keys, text).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--socket")
            .arg(dir.path().join("run/serve.sock"))
            .args(["--ssh", &format!("127.0.0.1:{port}"), "--authorized-keys"])
            .arg(&keys)
            .arg(&plan)
            .env("FLIGHTDECK_DATA_DIR", dir.path().join("data"))
            .env("FLIGHTDECK_CONFIG_DIR", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("serve exited with {status}: {err}");
            }
            assert!(Instant::now() < deadline, "serve did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, dir, port, plan, alice, bob }
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

/// A tmux server of its own running `cmd` in a `width`×`height` window.
struct Tmux(String);

impl Tmux {
    fn start(cmd: &str, width: u16, height: u16) -> Tmux {
        static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("flightdeck-ssh-{}-{n}", std::process::id());
        let (w, h) = (width.to_string(), height.to_string());
        let args = ["-L", &socket, "new-session", "-d", "-s", "fd", "-x", &w, "-y", &h, cmd];
        let status = Command::new("tmux").args(args).status().expect("tmux is installed (scripts/setup)");
        assert!(status.success());
        Tmux(socket)
    }

    fn tmux(&self, args: &[&str]) {
        let ok = Command::new("tmux").args(["-L", &self.0]).args(args).status().unwrap();
        assert!(ok.success(), "tmux {args:?}");
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "fd", k]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn resize(&self, width: u16, height: u16) {
        self.tmux(&["resize-window", "-t", "fd", "-x", &width.to_string(), "-y", &height.to_string()]);
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.0, "capture-pane", "-p", "-t", "fd"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen with its colours as escape sequences.
    fn coloured(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.0, "capture-pane", "-p", "-e", "-t", "fd"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "waited for {needles:?}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.0, "kill-server"]).status();
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
    let t = Tmux::start(&in_tmux(&server.ssh(&server.alice, "whoever")), 120, 40);
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
    let t = Tmux::start(&in_tmux(&ssh), 100, 30);
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
    let out = Command::new("tmux").args(["-L", &t.0, "display", "-p", "-t", "fd", format]).output().unwrap();
    let flags = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(flags, "0 0", "alternate screen and mouse tracking are off");
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
    let (link, _) = attach(&server.socket(), "observer").await.unwrap();
    let names = || link.snapshots.borrow().attached.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !names().contains(&"observer".to_string()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names(), vec!["observer".to_string()], "only the socket client is attached");
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
