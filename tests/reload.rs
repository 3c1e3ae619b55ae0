//! `serve --plans-dir` and SIGHUP: a new plan file starts its rollout; a
//! plan removed mid-way is refused and its rollout goes on; a reload with
//! a bad file (or a plan changed under a rollout mid-way) is refused with
//! `file:line` and nothing changes; a good one reloads in place (the same
//! process) and every rollout resumes from its journal.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
/// A canary on the simulator: 1 → 10 → 50 → 100 %, 15 min bakes (45 s at --speed 60).
const PLAN: &str = include_str!("../examples/plans/canary.toml");

struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    said: Arc<Mutex<String>>,
}

impl Serve {
    fn start(plans: &[&str]) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plans")).unwrap();
        for name in plans {
            write_plan(dir.path(), name);
        }
        let mut child = Process::new(BIN)
            .args(["serve", "--speed", "60", "--plans-dir"])
            .arg(dir.path().join("plans"))
            .arg("--socket")
            .arg(dir.path().join("serve.sock"))
            .env("FLIGHTDECK_DATA_DIR", dir.path().join("data"))
            .env("FLIGHTDECK_CONFIG_DIR", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let said = Arc::new(Mutex::new(String::new()));
        let (lines, into) = (BufReader::new(child.stderr.take().unwrap()).lines(), said.clone());
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = into.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Serve { child, dir, said }
    }

    fn said(&self) -> String {
        self.said.lock().unwrap().clone()
    }

    fn count(&self, what: &str) -> usize {
        self.said().matches(what).count()
    }

    fn plans(&self) -> PathBuf {
        self.dir.path().join("plans")
    }

    /// The records of rollout `name`'s journal (none before it exists).
    fn records(&self, name: &str) -> usize {
        self.journals(name).first().map_or(0, |p| std::fs::read_to_string(p).unwrap().lines().count() - 1)
    }

    /// The journals of rollout `name`, current and set aside.
    fn journals(&self, name: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("data/journal")) else { return Vec::new() };
        let prefix = format!("sim-eu-1_{name}-");
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".jsonl")
            })
            .collect();
        found.sort();
        found
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_plan(dir: &Path, name: &str) {
    let text = PLAN.replace("checkout-api", name);
    std::fs::write(dir.join("plans").join(format!("{name}.toml")), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plan_file_starts_its_rollout_and_one_removed_mid_way_goes_on() {
    let mut serve = Serve::start(&["svc-a"]);
    let pid = serve.child.id();
    support::eventually(Duration::from_secs(15), "svc-a to run", async || serve.records("svc-a") >= 2).await;
    write_plan(serve.dir.path(), "svc-b");
    support::eventually(Duration::from_secs(15), "svc-b to run", async || serve.records("svc-b") >= 1).await;
    assert!(serve.said().contains("flightdeck: the plans directory changed: reloading the config and 2 plans"));
    assert!(serve.running() && serve.child.id() == pid, "reloaded in place");
    // svc-a resumed from its journal: the same journal, sound, never set aside.
    assert_eq!(serve.journals("svc-a").len(), 1, "{:?}", serve.journals("svc-a"));
    flightdeck::engine::journal::verify(&serve.journals("svc-a")[0]).unwrap();

    let before = serve.records("svc-a");
    std::fs::remove_file(serve.plans().join("svc-a.toml")).unwrap();
    support::eventually(Duration::from_secs(15), "the removal to be refused", async || {
        serve.said().contains("svc-a.toml: removed while sim-eu-1/svc-a is mid-way (progressing at stage 1/4): refused")
    })
    .await;
    // It goes on, from its journal, beside svc-b.
    support::eventually(Duration::from_secs(15), "svc-a to go on", async || serve.records("svc-a") > before + 2).await;
    let verified = flightdeck::engine::journal::verify(&serve.journals("svc-a")[0]).unwrap();
    assert!(!verified.rollout.phase.is_finished());
    // Its viewers are told why.
    let (link, _) = flightdeck::share::client::attach(&serve.dir.path().join("serve.sock"), "oncall").await.unwrap();
    let told = format!("{:?}", link.history);
    assert!(told.contains("removed while sim-eu-1/svc-a is mid-way"), "{told}");
    assert!(serve.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_bad_file_or_a_plan_changed_mid_way_is_refused_and_changes_nothing() {
    let mut serve = Serve::start(&["svc-a"]);
    let pid = serve.child.id();
    support::eventually(Duration::from_secs(15), "svc-a to run", async || serve.records("svc-a") >= 2).await;
    // A bad plan appears: the watch refuses it with its file:line.
    let bad = serve.plans().join("svc-c.toml");
    std::fs::write(&bad, "[rollout]\nname = \"svc-c\"\nstable = 3\ncanary = \"v2\"\n").unwrap();
    support::eventually(Duration::from_secs(15), "the bad plan to be refused", async || {
        serve.said().contains("the plans directory changed: reload refused, nothing changed")
    })
    .await;
    let said = serve.said();
    assert!(said.contains(&format!("{}:3", bad.display())), "{said}");
    // SIGHUP reads it again, and refuses again.
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    support::eventually(Duration::from_secs(15), "SIGHUP's refusal", async || {
        serve.count("SIGHUP: reload refused, nothing changed") == 1
    })
    .await;
    assert!(serve.running() && serve.journals("svc-c").is_empty() && !serve.said().contains("reloading"));

    // A plan changed under a rollout that is mid-way: refused too.
    let a = serve.plans().join("svc-a.toml");
    let changed = std::fs::read_to_string(&a).unwrap().replace("v1.5.0", "v1.6.0");
    std::fs::remove_file(&bad).unwrap();
    std::fs::write(&a, changed).unwrap();
    support::eventually(Duration::from_secs(15), "the changed plan to be refused", async || {
        serve.said().contains("svc-a.toml: changed while sim-eu-1/svc-a is mid-way")
    })
    .await;
    assert!(serve.running() && !serve.said().contains("reloading"));

    // Put back, with a good new plan: one reload, in place.
    std::fs::write(&a, PLAN.replace("checkout-api", "svc-a")).unwrap();
    write_plan(serve.dir.path(), "svc-c");
    support::eventually(Duration::from_secs(15), "svc-c to run", async || serve.records("svc-c") >= 1).await;
    assert!(serve.running() && serve.child.id() == pid);
    assert_eq!(serve.journals("svc-a").len(), 1, "svc-a resumed, not started over");
}
