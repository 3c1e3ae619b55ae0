//! The NGINX backend against a real NGINX on loopback: weights through the
//! upstream file and a reload, read-back, a refused reload that puts the old
//! file back, per-version numbers from the access log, and a hand edit that
//! the core turns into a drift pause.

mod support;

use flightdeck::backend::proxy::nginx::Nginx;
use flightdeck::backend::{Backend, BackendError};
use flightdeck::metrics::MetricsSource;
use flightdeck_core::rollout::{Effect, Event, Observation, Phase, Version};
use flightdeck_core::{step, Actor, Plan, Rollout, Timestamp};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{assert_split, eventually, free_port, program, send_requests, Proc, Upstream};

const WINDOW: Duration = Duration::from_secs(60);

/// A real NGINX in a temp dir proxying `/` to `upstream app` in upstream.conf,
/// with the flightdeck access-log format. One worker, so round robin is exact.
struct Lb {
    dir: tempfile::TempDir,
    conf: PathBuf,
    frontend: SocketAddr,
    v1: Upstream,
    v2: Upstream,
    /// NGINX's master; stopped gracefully on drop.
    master: Proc,
    /// Successful reloads so far (each retires one old worker).
    reloads: usize,
}

impl Lb {
    async fn start() -> Lb {
        let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
        let dir = tempfile::tempdir().unwrap();
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir.path(), frontend)).unwrap();
        // Hand-written first file: NGINX will not start without the include.
        let upstream =
            format!("upstream app {{\n    server {} weight=100;\n    server {} down;\n}}\n", v1.addr, v2.addr);
        std::fs::write(dir.path().join("upstream.conf"), upstream).unwrap();
        let args = ["-p", dir.path().to_str().unwrap(), "-c", conf.to_str().unwrap()];
        let proc = Proc::spawn("nginx", program("nginx").to_str().unwrap(), &args, dir.path());
        // Built first, so a failed start still stops NGINX gracefully on drop.
        let lb = Lb { dir, conf, frontend, v1, v2, master: proc, reloads: 0 };
        eventually(Duration::from_secs(10), "nginx to serve", async || {
            support::get(lb.frontend, "/").await.is_ok_and(|(status, _)| status == 200)
        })
        .await;
        lb
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("upstream_file", self.path("upstream.conf").display().to_string()),
            ("upstream", "app".to_string()),
            ("stable_server", self.v1.addr.to_string()),
            ("canary_server", self.v2.addr.to_string()),
            ("nginx", program("nginx").display().to_string()),
            ("prefix", self.dir.path().display().to_string()),
            ("conf", self.conf.display().to_string()),
            ("access_log", self.path("access.log").display().to_string()),
        ]
    }

    fn nginx_with(&self, params: Vec<(&'static str, String)>) -> Nginx {
        let params: BTreeMap<String, String> = params.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let target = flightdeck_core::plan::Target {
            backend: flightdeck_core::plan::BackendKind::Nginx,
            group: "edge".into(),
            production: false,
            params,
        };
        Nginx::from_target(&target).unwrap()
    }

    fn nginx(&self) -> Nginx {
        self.nginx_with(self.params())
    }

    /// Applies `effect` and waits until the reload has retired the old worker,
    /// so every request afterwards meets the new weights.
    async fn apply(&mut self, nginx: &Nginx, effect: Effect) {
        nginx.apply(&effect).await.unwrap_or_else(|e| panic!("{effect}: {e}"));
        self.reloads += 1;
        let (log, want) = (self.path("error.log"), self.reloads);
        eventually(Duration::from_secs(10), "the old nginx worker to exit", async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.matches("exited with code").count() >= want
        })
        .await;
    }

    fn upstream_file(&self) -> String {
        std::fs::read_to_string(self.path("upstream.conf")).unwrap()
    }
}

impl Drop for Lb {
    /// Killing the master with SIGKILL (what `Proc` does) orphans its workers,
    /// which keep the port; SIGTERM makes the master take them down first.
    fn drop(&mut self) {
        let master = self.master.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &master]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.master.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn nginx_conf(dir: &Path, frontend: SocketAddr) -> String {
    let d = dir.display();
    // As root, workers would run as `nobody`; the temp dir is root's.
    let running_as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let user = if running_as_root { "user root;\n" } else { "" };
    format!(
        "{user}daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\n\
         events {{}}\n\
         http {{\n\
         \x20   log_format flightdeck '$upstream_addr $status $request_time';\n\
         \x20   access_log {d}/access.log flightdeck;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/upstream.conf;\n\
         \x20   server {{\n\
         \x20       listen {frontend};\n\
         \x20       location / {{ proxy_pass http://app; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

async fn canary_weight(nginx: &Nginx) -> Option<u8> {
    nginx.observe().await.unwrap().canary_weight
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_read_back() {
    let mut lb = Lb::start().await;
    let nginx = lb.nginx();
    assert_eq!(canary_weight(&nginx).await, Some(0), "the hand-written file: v2 down");

    lb.apply(&nginx, Effect::SetWeight { canary: 10 }).await;
    assert_eq!(canary_weight(&nginx).await, Some(10));
    let seen = send_requests(lb.frontend, 400).await;
    eprintln!("90/10: {seen:?}");
    assert_split(&seen, &[("v1", 0.9), ("v2", 0.1)], 0.05);

    lb.apply(&nginx, Effect::SetWeight { canary: 50 }).await;
    assert_eq!(canary_weight(&nginx).await, Some(50));
    let seen = send_requests(lb.frontend, 400).await;
    eprintln!("50/50: {seen:?}");
    assert_split(&seen, &[("v1", 0.5), ("v2", 0.5)], 0.05);

    // Scale composes with the weights: canary out, then back at 50 %.
    lb.apply(&nginx, Effect::Scale { version: Version::Canary, percent: 0 }).await;
    assert!(lb.upstream_file().contains(&format!("server {} weight=50 down;", lb.v2.addr)));
    assert_eq!(canary_weight(&nginx).await, Some(0));
    assert_eq!(send_requests(lb.frontend, 40).await.get("v1"), Some(&40));
    lb.apply(&nginx, Effect::Scale { version: Version::Canary, percent: 100 }).await;
    assert_eq!(canary_weight(&nginx).await, Some(50));

    lb.apply(&nginx, Effect::SetWeight { canary: 100 }).await;
    assert!(lb.upstream_file().contains(&format!("server {} down;", lb.v1.addr)), "0 % is `down`");
    assert_eq!(canary_weight(&nginx).await, Some(100));
    let seen = send_requests(lb.frontend, 400).await;
    eprintln!("0/100: {seen:?}");
    assert_eq!(seen.get("v2"), Some(&400), "exactly all on v2: {seen:?}");

    // Idempotent, and SwitchActive is 100/0.
    lb.apply(&nginx, Effect::SetWeight { canary: 100 }).await;
    assert_eq!(canary_weight(&nginx).await, Some(100));
    lb.apply(&nginx, Effect::SwitchActive { to: Version::Stable }).await;
    assert_eq!(canary_weight(&nginx).await, Some(0));
    assert_eq!(send_requests(lb.frontend, 40).await.get("v1"), Some(&40));

    for effect in [
        Effect::Undo { to_revision: "v1".into() },
        Effect::Native { verb: flightdeck_core::rollout::NativeVerb::Promote },
    ] {
        let err = nginx.apply(&effect).await.unwrap_err();
        assert!(matches!(err, BackendError::Unsupported { .. }), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_puts_the_previous_file_back() {
    let mut lb = Lb::start().await;
    let nginx = lb.nginx();
    lb.apply(&nginx, Effect::SetWeight { canary: 10 }).await;
    let before = lb.upstream_file();

    // The same upstream file, reloaded against a config with a syntax error.
    let broken = lb.path("broken.conf");
    let text = std::fs::read_to_string(&lb.conf).unwrap().replacen("events {}", "events {", 1);
    std::fs::write(&broken, text).unwrap();
    let mut params = lb.params();
    params.retain(|(k, _)| *k != "conf");
    params.push(("conf", broken.display().to_string()));
    let failing = lb.nginx_with(params);

    let err = failing.apply(&Effect::SetWeight { canary: 50 }).await.unwrap_err();
    eprintln!("refused reload: {err}");
    match &err {
        BackendError::Refused { action, detail, .. } => {
            assert_eq!(action, "reload");
            assert!(detail.contains("[emerg]") && detail.contains("broken.conf"), "{detail}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(err.to_string().starts_with("nginx upstream app in "), "{err}");
    assert_eq!(lb.upstream_file(), before, "the previous upstream file is back");
    assert!(!lb.path("upstream.conf.tmp").exists());
    assert_eq!(canary_weight(&nginx).await, Some(10));
    assert_split(&send_requests(lb.frontend, 100).await, &[("v1", 0.9), ("v2", 0.1)], 0.05);

    // A bad server line is NGINX's to judge, and is rolled back the same way.
    let mut params = lb.params();
    params.push(("upstream_options", "no_such_directive 1;".to_string()));
    let err = lb.nginx_with(params).apply(&Effect::SetWeight { canary: 50 }).await.unwrap_err();
    assert!(err.to_string().contains("unknown directive \"no_such_directive\""), "{err}");
    assert_eq!(lb.upstream_file(), before);

    // The remembered split survived the failures: the next change composes with it.
    lb.apply(&nginx, Effect::Scale { version: Version::Stable, percent: 0 }).await;
    assert!(lb.upstream_file().contains(&format!("server {} weight=90 down;", lb.v1.addr)));
    assert_eq!(canary_weight(&nginx).await, Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_gives_per_version_windows() {
    let mut lb = Lb::start().await;
    let nginx = lb.nginx();
    lb.apply(&nginx, Effect::SetWeight { canary: 50 }).await;
    lb.v2.set_error_rate(0.2);
    lb.v2.set_latency(Duration::from_millis(20));

    let first = nginx.sample(WINDOW, Timestamp(0)).await;
    assert!(first.missing.as_deref().is_some_and(|m| m.contains("first access log reading")), "{first:?}");

    send_requests(lb.frontend, 400).await;
    let sample = nginx.sample(WINDOW, Timestamp(60_000)).await;
    let (stable, canary) = (sample.stable.clone().unwrap(), sample.canary.clone().unwrap());
    let ratio = |w: &flightdeck_core::VersionWindow| w.errors as f64 / w.requests as f64;
    eprintln!(
        "stable: {} req, {} err, p50 {:?} p95 {:?} p99 {:?} ms; canary: {} req, {} err ({:.1} %), p50 {:?} p95 {:?} p99 {:?} ms",
        stable.requests,
        stable.errors,
        stable.p50_ms,
        stable.p95_ms,
        stable.p99_ms,
        canary.requests,
        canary.errors,
        ratio(&canary) * 100.0,
        canary.p50_ms,
        canary.p95_ms,
        canary.p99_ms
    );
    assert_eq!(sample.missing, None);
    assert_eq!(stable.requests + canary.requests, 400);
    assert!((ratio(&canary) - 0.2).abs() <= 0.05, "canary error ratio {}", ratio(&canary));
    assert_eq!(stable.errors, 0);
    assert_eq!(canary.latency.total(), canary.requests);
    assert_eq!(stable.latency.total(), stable.requests);
    // v2 sleeps 20 ms per request, v1 2 ms: the log's request times show it.
    assert!(canary.p50_ms.unwrap() >= 15.0 && stable.p50_ms.unwrap() < canary.p50_ms.unwrap(), "{sample:?}");

    // Nothing new: both versions read, zero requests (too few, never a pass).
    let quiet = nginx.sample(WINDOW, Timestamp(120_000)).await;
    assert_eq!((quiet.stable.unwrap().requests, quiet.canary.unwrap().requests), (0, 0));

    // copytruncate-style rotation: the log starts over and so does the cursor.
    std::fs::File::options().write(true).open(lb.path("access.log")).unwrap().set_len(0).unwrap();
    send_requests(lb.frontend, 40).await;
    let after = nginx.sample(WINDOW, Timestamp(180_000)).await;
    let (s, c) = (after.stable.unwrap(), after.canary.unwrap());
    eprintln!("after truncation: stable {} req, canary {} req", s.requests, c.requests);
    assert_eq!(s.requests + c.requests, 40);

    // No access log configured: missing, never zeros.
    let mut params = lb.params();
    params.retain(|(k, _)| *k != "access_log");
    let no_log = lb.nginx_with(params).sample(WINDOW, Timestamp(0)).await;
    assert_eq!((no_log.stable, no_log.canary), (None, None));
    assert_eq!(no_log.missing.as_deref(), Some("nginx: no access_log parameter"));
    assert_eq!(nginx.slo(Timestamp(0)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_is_drift_and_the_core_pauses() {
    let mut lb = Lb::start().await;
    let nginx = lb.nginx();
    let text = format!(
        "[rollout]\nname = \"app\"\nstable = \"v1\"\ncanary = \"v2\"\n\n\
         [target]\nbackend = \"nginx\"\ngroup = \"edge\"\nupstream_file = \"{}\"\nupstream = \"app\"\n\
         stable_server = \"{}\"\ncanary_server = \"{}\"\n\n\
         [strategy]\nkind = \"canary\"\n\n\
         [[strategy.stages]]\nweight = 10\nbake = \"10m\"\n\n\
         [[strategy.stages]]\nweight = 100\nbake = \"0s\"\n",
        lb.path("upstream.conf").display(),
        lb.v1.addr,
        lb.v2.addr
    );
    let plan = Plan::parse("nginx-test.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let now = Timestamp(1_000);
    let (mut rollout, effects) = step(&Rollout::new("edge/app", plan), Event::Start, now);
    // The canary is made ready (in service) before it takes traffic.
    assert_eq!(effects, [Effect::Scale { version: Version::Canary, percent: 100 }, Effect::SetWeight { canary: 10 }]);
    for effect in effects {
        lb.apply(&nginx, effect.clone()).await;
        rollout = step(&rollout, Event::EffectDone { effect }, now).0;
    }
    let seen = nginx.observe().await.unwrap();
    let (same, _) = step(&rollout, Event::Observation(seen), now);
    assert!(matches!(same.phase, Phase::Progressing { .. }), "no drift yet: {:?}", same.phase);

    // Someone edits the file by hand (and reloads, or not: the file is the truth).
    let edited =
        format!("upstream app {{\n    server {} weight=70;\n    server {} weight=30;\n}}\n", lb.v1.addr, lb.v2.addr);
    std::fs::write(lb.path("upstream.conf"), edited).unwrap();
    let seen = nginx.observe().await.unwrap();
    assert_eq!(seen, Observation { canary_weight: Some(30), ..Observation::default() });
    let (paused, _) = step(&same, Event::Observation(seen), Timestamp(2_000));
    match &paused.phase {
        Phase::Paused { by, reason, .. } => {
            assert_eq!(by, &Actor::backend());
            assert!(reason.contains("drift") && reason.contains("30 %"), "{reason}");
        }
        other => panic!("expected a pause on drift, got {other:?}"),
    }

    // A missing file is an error naming it.
    std::fs::remove_file(lb.path("upstream.conf")).unwrap();
    let err = nginx.observe().await.unwrap_err().to_string();
    assert!(err.contains("upstream.conf"), "{err}");
}
