//! `flightdeck serve` as a service: `--http` health and metrics scraped by
//! the real Prometheus, `[[notify]]` notifications to a local receiver
//! that checks them as Slack and PagerDuty document them (and the
//! webhook's HMAC), and the deployment files under deploy/.

mod support;

use flightdeck::config::Config;
use flightdeck::protocol::{CommandRequest, Reply};
use flightdeck::share::client::attach;
use flightdeck_core::rollout::{Actor, Command};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const ROLLOUT: &str = "sim-eu-1/checkout-api";
/// A canary on the simulator (1 → 10 → 50 → 100 %, a window a minute).
const PLAN: &str = include_str!("../examples/plans/canary.toml");

/// `flightdeck serve --http 127.0.0.1:0` on the bad canary, fast.
struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    http: SocketAddr,
}

impl Serve {
    fn start(dir: tempfile::TempDir, env: &[(&str, String)]) -> Serve {
        let plan = dir.path().join("canary.toml");
        std::fs::write(&plan, PLAN).unwrap();
        let mut child = Process::new(BIN)
            .args(["serve", "--http", "127.0.0.1:0", "--scenario", "bad-canary", "--speed", "300", "--socket"])
            .arg(dir.path().join("serve.sock"))
            .arg(&plan)
            .env("FLIGHTDECK_DATA_DIR", dir.path().join("data"))
            .env("FLIGHTDECK_CONFIG_DIR", dir.path().join("config"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The address it says it listens on (port 0: the kernel chose).
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = String::new();
        let http = loop {
            let Some(Ok(line)) = lines.next() else { panic!("serve stopped before listening: {said}") };
            said.push_str(&line);
            said.push('\n');
            if let Some(rest) = line.strip_prefix("flightdeck: health and metrics on http://") {
                break rest.split('/').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Serve { child, dir, http }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("serve.sock")
    }

    fn log(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.path().join("data/logs")).unwrap() {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()));
        }
        text
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw request; the status line and the whole answer.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_bad_canarys_rollback_and_the_health_endpoints_answer() {
    let serve = Serve::start(tempfile::tempdir().unwrap(), &[]);
    let (status, body) = support::get(serve.http, "/healthz").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    support::eventually(Duration::from_secs(10), "/readyz 200", async || {
        support::get(serve.http, "/readyz").await.is_ok_and(|(s, _)| s == 200)
    })
    .await;
    // What is not an endpoint, or not a GET, is refused plainly.
    assert!(raw(serve.http, "GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
    assert!(raw(serve.http, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await.starts_with("HTTP/1.1 405 "));
    assert!(raw(serve.http, "garbage\r\n\r\n").await.starts_with("HTTP/1.1 400 "));
    let head = raw(serve.http, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a HEAD answer has no body: {head}");

    let prom_dir = tempfile::tempdir().unwrap();
    // Waits until Prometheus has scraped it (up == 1: it parsed the exposition).
    let (_prometheus, base) = support::start_prometheus(prom_dir.path(), &[serve.http]).await;
    let mut rollbacks = None;
    support::eventually(Duration::from_secs(60), "a rollback in Prometheus", async || {
        rollbacks = support::prometheus_value(&base, "sum(flightdeck_rollbacks_total)").await;
        rollbacks.is_some_and(|n| n >= 1.0)
    })
    .await;
    let by = support::prometheus_query(&base, "flightdeck_rollbacks_total").await.unwrap();
    assert_eq!(by[0]["metric"]["rollout"], ROLLOUT, "{by:?}");
    assert_eq!(by[0]["metric"]["by"], "analysis", "{by:?}");
    let q = format!("flightdeck_verdicts_total{{rollout=\"{ROLLOUT}\",verdict=\"fail\"}}");
    assert!(support::prometheus_value(&base, &q).await.is_some_and(|n| n >= 1.0));
    support::eventually(Duration::from_secs(10), "the phase gauge", async || {
        let q = "flightdeck_rollouts{phase=\"rolled_back\"}";
        support::prometheus_value(&base, q).await == Some(1.0)
    })
    .await;
    let q = format!("flightdeck_rollout_canary_weight_percent{{rollout=\"{ROLLOUT}\"}}");
    assert_eq!(support::prometheus_value(&base, &q).await, Some(0.0));
    assert_eq!(support::prometheus_value(&base, "flightdeck_attached_clients").await, Some(0.0));
    // Backend calls are timed (the simulator is read every window), and no effect needed a retry.
    let q = format!("flightdeck_backend_call_duration_seconds_count{{rollout=\"{ROLLOUT}\",call=\"observe\"}}");
    assert!(support::prometheus_value(&base, &q).await.is_some_and(|n| n >= 1.0), "{q}");
    let q =
        format!("flightdeck_backend_call_duration_seconds_bucket{{rollout=\"{ROLLOUT}\",call=\"apply\",le=\"+Inf\"}}");
    assert!(support::prometheus_value(&base, &q).await.is_some_and(|n| n >= 1.0), "{q}");
    let q = format!("flightdeck_effect_retries_total{{rollout=\"{ROLLOUT}\"}}");
    assert_eq!(support::prometheus_value(&base, &q).await, Some(0.0));
}

/// What the receiver got: path, headers (lower case) and body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{}: not JSON ({e})", self.path))
    }
}

/// A local HTTP receiver: records every POST; the first request to
/// `/webhook` is answered 503 (to be retried), the rest 200 (PagerDuty's 202).
async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let record = record.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (end + 4, length);
                    }
                    assert!(data.len() < 64 * 1024);
                };
                while data.len() < head_end + length {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&data[..head_end]).to_string();
                let mut lines = head.lines();
                let request_line = lines.next().unwrap_or_default().to_string();
                let path = request_line.split(' ').nth(1).unwrap_or_default().to_string();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                    .collect();
                assert!(request_line.starts_with("POST "), "{request_line}");
                let got = Received { path: path.clone(), headers, body: data[head_end..head_end + length].to_vec() };
                let status = {
                    let mut seen = record.lock().unwrap();
                    let first_webhook = path == "/webhook" && !seen.iter().any(|r: &Received| r.path == "/webhook");
                    seen.push(got);
                    match path.as_str() {
                        "/webhook" if first_webhook => "503 Service Unavailable",
                        "/pagerduty" => "202 Accepted",
                        _ => "200 OK",
                    }
                };
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn received(seen: &Arc<Mutex<Vec<Received>>>, path: &str) -> Vec<Received> {
    seen.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_reaches_slack_pagerduty_and_a_signed_webhook_and_an_acknowledge_resolves() {
    let (addr, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let key_file = dir.path().join("pagerduty.key");
    std::fs::write(&key_file, "R0UTINGKEY0123456789abcdef012345\n").unwrap();
    let config = format!(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"FD_TEST_SLACK_URL\"\n\n\
         [[notify]]\nkind = \"pagerduty\"\nurl = \"http://{addr}/pagerduty\"\nrouting_key_file = \"{}\"\n\n\
         [[notify]]\nkind = \"webhook\"\nname = \"deploys\"\nurl = \"http://{addr}/webhook\"\n\
         secret_env = \"FD_TEST_WEBHOOK_SECRET\"\nevents = [\"rollback\"]\n",
        key_file.display()
    );
    std::fs::write(dir.path().join("config/config.toml"), config).unwrap();
    let secret = "s3cret-for-the-hmac";
    let env = [("FD_TEST_SLACK_URL", format!("http://{addr}/slack")), ("FD_TEST_WEBHOOK_SECRET", secret.to_string())];
    let serve = Serve::start(dir, &env);

    // The webhook's first try is answered 503: the retry is the second.
    support::eventually(Duration::from_secs(40), "the rollback everywhere", async || {
        let s = seen.lock().unwrap();
        ["/slack", "/pagerduty"].iter().all(|p| s.iter().any(|r| r.path == *p))
            && s.iter().filter(|r| r.path == "/webhook").count() >= 2
    })
    .await;

    // Slack: an incoming webhook takes `{"text": …}`.
    let slack = received(&seen, "/slack");
    let text = slack[0].json();
    assert_eq!(slack[0].headers["content-type"], "application/json");
    assert_eq!(text.as_object().unwrap().len(), 1, "{text}");
    let text = text["text"].as_str().unwrap();
    assert!(text.contains(ROLLOUT) && text.contains("rolled back") && text.contains("by analysis"), "{text}");

    // PagerDuty Events API v2: a trigger with the routing key, a dedup key per
    // rollout and a payload with summary, source and severity.
    let pd = received(&seen, "/pagerduty")[0].json();
    assert_eq!(pd["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["dedup_key"], format!("flightdeck/{ROLLOUT}"));
    assert_eq!(pd["payload"]["severity"], "critical");
    let summary = pd["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains("rolled back") && summary.len() <= 1024, "{summary}");
    assert!(!pd["payload"]["source"].as_str().unwrap().is_empty());
    assert!(["critical", "error", "warning", "info"].contains(&pd["payload"]["severity"].as_str().unwrap()));

    // The webhook: JSON, signed with HMAC-SHA256 of the body, the same body retried.
    let hooks = received(&seen, "/webhook");
    assert_eq!(hooks[0].body, hooks[1].body, "a retry sends the same body");
    let hook = &hooks[1];
    let signature = hook.headers["x-flightdeck-signature"].strip_prefix("sha256=").expect("sha256=<hex>");
    let tag: Vec<u8> =
        (0..signature.len() / 2).map(|i| u8::from_str_radix(&signature[2 * i..2 * i + 2], 16).unwrap()).collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, &hook.body, &tag).expect("the signature is the HMAC of the body");
    let body = hook.json();
    assert_eq!((body["event"].as_str(), body["rollout"].as_str()), (Some("rollback"), Some(ROLLOUT)));
    assert_eq!(body["by"], "analysis");
    assert_eq!(hook.headers["x-flightdeck-event"], "rollback");

    // An acknowledge resolves the PagerDuty incident (same dedup key) and
    // says so on Slack; the webhook wants only rollbacks.
    let (link, _) = attach(&serve.socket(), "oncall").await.unwrap();
    let revision = link.snapshots.borrow().rollouts[0].canary_revision.clone();
    let stage = link.snapshots.borrow().rollouts[0].stage;
    let request = CommandRequest {
        rollout: ROLLOUT.into(),
        actor: Actor::new("oncall"),
        command: Command::Acknowledge,
        expected_stage: stage,
        expected_revision: revision,
        expected_step: None,
    };
    assert_eq!(link.commands.submit(request).await, Reply::Ack);
    support::eventually(Duration::from_secs(20), "the resolve", async || received(&seen, "/pagerduty").len() >= 2)
        .await;
    let resolve = received(&seen, "/pagerduty")[1].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], format!("flightdeck/{ROLLOUT}"));
    assert_eq!(resolve["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    support::eventually(Duration::from_secs(10), "the acknowledge on Slack", async || {
        received(&seen, "/slack").iter().any(|r| r.json()["text"].as_str().unwrap().contains("acknowledged"))
    })
    .await;
    assert_eq!(received(&seen, "/webhook").len(), 2);

    // Every send is logged (never with the Slack URL, a secret); the 503 too.
    support::eventually(Duration::from_secs(10), "the log", async || serve.log().contains("notification sent")).await;
    let log = serve.log();
    assert!(log.contains("notification not sent; trying again"), "{log}");
    assert!(!log.contains("/slack"), "the Slack URL is a secret: {log}");
    // Every notification's end is journaled, one line each: the webhook's after its retry.
    let path = serve.dir.path().join("data/notifications.jsonl");
    support::eventually(Duration::from_secs(10), "the acknowledge journaled", async || {
        std::fs::read_to_string(&path).is_ok_and(|j| j.contains(r#""kind":"pagerduty","event":"acknowledged""#))
    })
    .await;
    let journal = std::fs::read_to_string(&path).unwrap();
    let sent: Vec<serde_json::Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rollback = |kind: &str| {
        sent.iter().find(|r| r["kind"] == kind && r["event"] == "rollback").unwrap_or_else(|| panic!("{journal}"))
    };
    for kind in ["slack", "pagerduty", "webhook"] {
        let r = rollback(kind);
        assert_eq!((r["rollout"].as_str(), r["result"].as_str()), (Some(ROLLOUT), Some("sent")), "{r}");
        assert!(r["status"].as_u64().is_some_and(|s| (200..300).contains(&s)), "{r}");
    }
    assert_eq!(rollback("webhook")["attempts"], 2, "the 503, then the send: {journal}");
    assert!(sent.iter().any(|r| r["kind"] == "pagerduty" && r["event"] == "acknowledged"), "{journal}");
    assert!(!journal.contains("/slack"), "the Slack URL is a secret: {journal}");
}

#[test]
fn a_notify_entry_is_checked_where_it_is_written() {
    let inline = "theme = \"mono\"\n\n[[notify]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\n";
    let err = Config::parse("config.toml", inline).unwrap_err();
    assert!(err.starts_with("config.toml:3:") && err.contains("notify[0]"), "{err}");
    assert!(err.contains("never inline"), "{err}");
    let err = Config::parse("config.toml", "[[notify]]\nkind = \"webhook\"\nurl = \"https://x\"\n").unwrap_err();
    assert!(err.starts_with("config.toml:1:") && err.contains("secret_env or secret_file"), "{err}");
    let err = Config::parse("config.toml", "[[notify]]\nkind = \"sms\"\n").unwrap_err();
    assert!(err.starts_with("config.toml:2:"), "{err}");
    let err = Config::parse("config.toml", "[[notify]]\nkind = \"slack\"\nurl_env = \"A\"\nevents = [\"boom\"]\n")
        .unwrap_err();
    assert!(err.starts_with("config.toml:4:"), "{err}");
}

#[test]
fn serve_stops_before_anything_when_a_secret_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let config =
        "actor = \"ops\"\n\n[[notify]]\nkind = \"pagerduty\"\nrouting_key_env = \"FD_TEST_NOT_SET_ANYWHERE\"\n";
    std::fs::write(dir.path().join("config/config.toml"), config).unwrap();
    let plan = dir.path().join("canary.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let out = Process::new(BIN)
        .args(["serve", "--socket"])
        .arg(dir.path().join("serve.sock"))
        .arg(&plan)
        .env("FLIGHTDECK_DATA_DIR", dir.path().join("data"))
        .env("FLIGHTDECK_CONFIG_DIR", dir.path().join("config"))
        .env_remove("FD_TEST_NOT_SET_ANYWHERE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "{}:3: notify[0]: secret: environment variable FD_TEST_NOT_SET_ANYWHERE is not set",
        dir.path().join("config/config.toml").display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!dir.path().join("data/journal").exists(), "no journal was touched");
}

/// The deploy/ files: the Kubernetes manifests parse as YAML (PyYAML, a
/// real parser, which scripts/setup installs with moto) with the fields
/// every object needs and the ones this deployment relies on; the unit and
/// the Containerfile say what they must.
/// The Kubernetes manifests against the Kubernetes API's own schemas, by a
/// packaged validator (PyPI's kubernetes-validate, which scripts/setup
/// installs), strict: an unknown or misspelled field fails too.
#[test]
fn the_kubernetes_manifests_pass_the_kubernetes_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let files: Vec<_> =
        ["deployment", "serviceaccount", "rbac", "service", "pvc", "deployment-ha", "pvc-ha", "lease-rbac"]
            .iter()
            .map(|f| root.join(format!("{f}.yaml")))
            .collect();
    let out = Process::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("kubernetes-validate is needed: run scripts/setup: {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    for kind in [
        "deployment/",
        "serviceaccount/",
        "clusterrole/",
        "rolebinding/",
        "service/",
        "persistentvolumeclaim/",
        "role/flightdeck-lease",
        "persistentvolumeclaim/flightdeck-state-shared",
    ] {
        assert!(said.contains(&format!("passed for resource {kind}")), "{kind} not validated: {said}");
    }
}

#[test]
fn the_deployment_files_hold_what_a_cluster_and_a_host_need() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let script = "import json, sys, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))";
    let mut objects: Vec<serde_json::Value> = Vec::new();
    for file in ["deployment", "serviceaccount", "rbac", "service", "pvc"] {
        let path = root.join(format!("kubernetes/{file}.yaml"));
        let out = Process::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("python3 (with PyYAML) is needed: run scripts/setup: {e}"));
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!docs.is_empty(), "{}: no object", path.display());
        for doc in docs {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].as_str().is_some_and(|s| !s.is_empty()), "{}: no {field}: {doc}", path.display());
            }
            assert!(
                doc["metadata"]["name"].as_str().is_some_and(|s| !s.is_empty()),
                "{}: no metadata.name",
                path.display()
            );
            objects.push(doc);
        }
    }
    let find = |kind: &str| -> Vec<&serde_json::Value> { objects.iter().filter(|o| o["kind"] == kind).collect() };

    let deployment = find("Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 1, "one engine per journal: no second replica");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "the old pod lets go of the journals first");
    let account = pod["serviceAccountName"].as_str().unwrap();
    assert!(find("ServiceAccount").iter().any(|s| s["metadata"]["name"] == account));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(args.contains(&"serve") && args.iter().any(|a| a.starts_with("--http")), "{args:?}");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let claim =
        pod["volumes"].as_array().unwrap().iter().find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str());
    assert!(find("PersistentVolumeClaim").iter().any(|p| Some(p["metadata"]["name"].as_str().unwrap()) == claim));
    let service = find("Service")[0];
    assert_eq!(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]);

    // Least rights: read and patch what flightdeck drives; no wildcard, no secrets, no delete.
    let rules: Vec<&serde_json::Value> = find("Role")
        .into_iter()
        .chain(find("ClusterRole"))
        .flat_map(|r| r["rules"].as_array().unwrap().iter())
        .collect();
    let allows = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            let has = |k: &str, v: &str| r[k].as_array().unwrap().iter().any(|x| x == v);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for (group, resource) in
        [("argoproj.io", "rollouts"), ("apps", "deployments"), ("gateway.networking.k8s.io", "httproutes")]
    {
        for verb in ["get", "list", "watch", "patch"] {
            assert!(allows(group, resource, verb), "{verb} {group}/{resource}");
        }
    }
    // What the full-screen tree of a Rollout watches.
    for (group, resource) in
        [("apps", "replicasets"), ("", "pods"), ("argoproj.io", "analysisruns"), ("argoproj.io", "experiments")]
    {
        assert!(allows(group, resource, "list") && allows(group, resource, "watch"), "list, watch {group}/{resource}");
    }
    for rule in &rules {
        let text = rule.to_string();
        assert!(!text.contains("\"*\""), "no wildcard: {text}");
        for verb in ["delete", "deletecollection", "escalate", "bind", "impersonate"] {
            assert!(!rule["verbs"].as_array().unwrap().iter().any(|v| v == verb), "{verb}: {text}");
        }
        assert!(!rule["resources"].as_array().unwrap().iter().any(|r| r == "secrets"), "{text}");
    }
    let binding = find("RoleBinding").into_iter().chain(find("ClusterRoleBinding")).next().expect("a binding");
    assert_eq!(binding["subjects"][0]["name"], account);

    let unit = std::fs::read_to_string(root.join("systemd/flightdeck.service")).unwrap();
    for line in [
        "Type=simple",
        "Restart=on-failure",
        "User=flightdeck",
        "StateDirectory=flightdeck",
        "ExecStart=",
        "ExecReload=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit has no {line}");
    }
    let containerfile = std::fs::read_to_string(root.join("container/Containerfile")).unwrap();
    assert!(
        containerfile.matches("\nFROM ").count() + usize::from(containerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    assert!(containerfile.contains("cargo build --release"));
    let user = containerfile.lines().rfind(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.contains("root") && user.trim() != "USER 0", "{user}");
}
