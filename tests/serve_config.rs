//! `flightdeck serve` with no plan named and no `--plans-dir` serves the
//! plans the config lists (`plans = [...]`, as `flightdeck` alone runs
//! them); with none listed it stops at once, saying where to list them.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
/// A canary on the simulator: 1 → 10 → 50 → 100 %.
const PLAN: &str = include_str!("../examples/plans/canary.toml");

fn serve(dir: &Path) -> Process {
    let mut serve = Process::new(BIN);
    serve
        .args(["serve", "--speed", "60", "--socket"])
        .arg(dir.join("serve.sock"))
        .env("FLIGHTDECK_DATA_DIR", dir.join("data"))
        .env("FLIGHTDECK_CONFIG_DIR", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    serve
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_plans_the_config_lists() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("canary.toml");
    std::fs::write(&plan, PLAN).unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let config = format!("plans = [\"{}\"]\n", plan.display());
    std::fs::write(dir.path().join("config/config.toml"), config).unwrap();
    let mut child = serve(dir.path()).spawn().unwrap();
    let said = Arc::new(Mutex::new(String::new()));
    let (lines, into) = (BufReader::new(child.stderr.take().unwrap()).lines(), said.clone());
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            into.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    support::eventually(Duration::from_secs(20), "serve to run the config's plan", async || {
        said.lock().unwrap().contains("flightdeck: serving 1 rollouts")
    })
    .await;
    let (link, _) = flightdeck::share::client::attach(&dir.path().join("serve.sock"), "oncall").await.unwrap();
    let rollouts = link.snapshots.borrow().rollouts.clone();
    assert_eq!(rollouts.len(), 1);
    assert!(rollouts[0].id.ends_with("checkout-api"), "{}", rollouts[0].id);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn serve_with_no_plans_anywhere_says_where_to_list_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage problem, before anything starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no plans to serve: name plan files, give --plans-dir DIR, or list them as"), "{stderr}");
    assert!(stderr.contains("config/config.toml"), "{stderr}");
    assert!(!dir.path().join("data/journal").exists(), "nothing was started");
}
