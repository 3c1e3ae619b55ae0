//! Test support for the proxy integration tests: small upstream servers the
//! tests control (one per version, error rate and latency adjustable, with a
//! Prometheus `/metrics` endpoint), a load generator, and child processes
//! that die with the test. Everything listens on 127.0.0.1 only.
#![allow(dead_code)]

#[cfg(feature = "ecs")]
pub mod aws;
pub mod cli;
pub mod engine;
pub mod tmux;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Now on the wall clock, as the engine's real-time clock reads it.
pub fn wall_now() -> flightdeck_core::Timestamp {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    flightdeck_core::Timestamp(since_epoch.as_millis() as u64)
}

/// Latency histogram buckets, seconds (Prometheus convention): 1 ms to
/// about 4 s, each edge 2^(1/32) ≈ 2.2 % above the last (the resolution of
/// a Prometheus native histogram at schema 5), so a 10 % p99 limit can be
/// judged on them.
const BUCKETS: usize = 385;

fn bucket_edge(i: usize) -> f64 {
    0.001 * 2f64.powf(i as f64 / 32.0)
}

struct Counters {
    ok: u64,
    errors: u64,
    /// Cumulative bucket counts, then +Inf.
    buckets: Vec<u64>,
    sum_seconds: f64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters { ok: 0, errors: 0, buckets: vec![0; BUCKETS + 1], sum_seconds: 0.0 }
    }
}

/// One upstream version: answers `version=<v>` with 200, or 500 at the set
/// error rate, after the set latency.
#[derive(Clone)]
pub struct Upstream {
    pub version: String,
    pub addr: SocketAddr,
    /// Error rate in parts per million (atomics keep the server lock-free).
    error_ppm: Arc<AtomicU64>,
    latency_ms: Arc<AtomicU64>,
    counters: Arc<Mutex<Counters>>,
    served: Arc<AtomicU64>,
}

impl Upstream {
    pub async fn start(version: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream {
            version: version.to_string(),
            addr: listener.local_addr().unwrap(),
            error_ppm: Arc::default(),
            latency_ms: Arc::new(AtomicU64::new(2)),
            counters: Arc::default(),
            served: Arc::default(),
        };
        let server = up.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = server.clone();
                tokio::spawn(async move { s.serve(stream).await });
            }
        });
        up
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Fraction of requests answered with 500, 0.0..=1.0.
    pub fn set_error_rate(&self, rate: f64) {
        self.error_ppm.store((rate * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    async fn serve(&self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut keep_alive = true;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                    return;
                }
                if header.to_ascii_lowercase().starts_with("connection: close") {
                    keep_alive = false;
                }
                if header == "\r\n" || header == "\n" {
                    break;
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = if path == "/metrics" { (200, self.metrics()) } else { self.answer().await };
            let reason = if status == 200 { "OK" } else { "Internal Server Error" };
            let connection = if keep_alive { "keep-alive" } else { "close" };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
                body.len()
            );
            if write.write_all(response.as_bytes()).await.is_err() || !keep_alive {
                return;
            }
        }
    }

    async fn answer(&self) -> (u16, String) {
        let latency = Duration::from_millis(self.latency_ms.load(Ordering::Relaxed));
        tokio::time::sleep(latency).await;
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        // Deterministic spread of errors: request n fails when the running
        // error count falls behind the target rate.
        let ppm = self.error_ppm.load(Ordering::Relaxed);
        let failing = (n + 1) * ppm / 1_000_000 > n * ppm / 1_000_000;
        // The service time the version is set to, as its handler would
        // measure it: on a loaded test machine the scheduler's delays would
        // otherwise move stable's p99 as much as the regression under test.
        let seconds = latency.as_secs_f64();
        let mut c = self.counters.lock().unwrap();
        if failing {
            c.errors += 1;
        } else {
            c.ok += 1;
        }
        c.sum_seconds += seconds;
        for i in 0..BUCKETS {
            if seconds <= bucket_edge(i) {
                c.buckets[i] += 1;
            }
        }
        c.buckets[BUCKETS] += 1;
        let status = if failing { 500 } else { 200 };
        (status, format!("version={}\n", self.version))
    }

    /// Prometheus text format: requests by version and code, and a latency histogram.
    fn metrics(&self) -> String {
        let c = self.counters.lock().unwrap();
        let v = &self.version;
        let mut out = String::from("# TYPE http_requests_total counter\n");
        out += &format!("http_requests_total{{version=\"{v}\",code=\"200\"}} {}\n", c.ok);
        out += &format!("http_requests_total{{version=\"{v}\",code=\"500\"}} {}\n", c.errors);
        out += "# TYPE http_request_duration_seconds histogram\n";
        for i in 0..BUCKETS {
            let le = bucket_edge(i);
            out += &format!("http_request_duration_seconds_bucket{{version=\"{v}\",le=\"{le}\"}} {}\n", c.buckets[i]);
        }
        let total = c.buckets[BUCKETS];
        out += &format!("http_request_duration_seconds_bucket{{version=\"{v}\",le=\"+Inf\"}} {total}\n");
        out += &format!("http_request_duration_seconds_sum{{version=\"{v}\"}} {}\n", c.sum_seconds);
        out += &format!("http_request_duration_seconds_count{{version=\"{v}\"}} {total}\n");
        out
    }
}

/// Sends `n` GET requests to `addr` (one connection each, so the proxy
/// balances every request) and counts the answers by `version=` body.
pub async fn send_requests(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let version = get(addr, "/").await.map(|(_, body)| body).unwrap_or_else(|e| format!("error: {e}"));
        *seen.entry(version.trim().trim_start_matches("version=").to_string()).or_insert(0) += 1;
    }
    seen
}

/// One GET; returns the status code and body.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// Sends requests in the background until the returned guard drops, at
/// most `limit` of them (a bounded load: the test network is loopback only).
pub fn background_load(addr: SocketAddr, per_second: u32, limit: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
        for _ in 0..limit {
            tick.tick().await;
            tokio::spawn(async move {
                let _ = get(addr, "/").await;
            });
        }
    })
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, program: &str, args: &[&str], dir: &Path) -> Proc {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (run scripts/setup): {e}"));
        Proc { child, name: name.to_string() }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds a program on PATH or in the usual sbin directories.
pub fn program(name: &str) -> PathBuf {
    let candidates = ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin", "/sbin"];
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed; run scripts/setup"))
}

/// Polls `check` until it is true or `limit` passes.
pub async fn eventually(limit: Duration, what: &str, check: impl AsyncFnMut() -> bool) {
    assert!(within(limit, check).await, "timed out after {limit:?} waiting for {what}");
}

/// Whether `check` comes true within `limit` (asked every 50 ms), for
/// tests that assert on the answer themselves.
pub async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts within `tolerance` (absolute fraction) of the expected shares.
pub fn assert_split(seen: &HashMap<String, usize>, expected: &[(&str, f64)], tolerance: f64) {
    let total: usize = seen.values().sum();
    for (version, share) in expected {
        let got = *seen.get(*version).unwrap_or(&0) as f64 / total.max(1) as f64;
        assert!(
            (got - share).abs() <= tolerance,
            "{version}: {:.1} % of {total} requests, expected {:.1} % ± {:.1} pp ({seen:?})",
            got * 100.0,
            share * 100.0,
            tolerance * 100.0
        );
    }
}

/// How long Prometheus may take to start and scrape every target once. The
/// first scrape lands ~5–6 s after start on an idle machine; the rest is for
/// a machine busy compiling.
pub const PROMETHEUS_START_LIMIT: Duration = Duration::from_secs(30);

/// Starts Prometheus on a free port, scraping `http://<target>/metrics` of
/// every target each second (`prometheus.yml`, data and `prometheus.log` go
/// into `dir`), and waits until every target reports `up == 1`. Returns the
/// process (killed on drop) and the base URL (`http://127.0.0.1:PORT`).
/// Panics with the log path and its tail when Prometheus exits or does not
/// scrape every target within [`PROMETHEUS_START_LIMIT`].
pub async fn start_prometheus(dir: &Path, targets: &[SocketAddr]) -> (Proc, String) {
    std::fs::write(dir.join("prometheus.yml"), prometheus_config(targets)).unwrap();
    // The port is free when chosen but may be taken before Prometheus binds it.
    let mut attempt = 1;
    loop {
        let port = free_port();
        let mut prometheus = spawn_prometheus(dir, port, attempt);
        let base = format!("http://127.0.0.1:{port}");
        match wait_for_targets(&mut prometheus, &base, targets, dir).await {
            Ok(()) => return (prometheus, base),
            Err(log) if attempt < 3 && log.contains("address already in use") => attempt += 1,
            Err(log) => panic!("{log}"),
        }
    }
}

fn prometheus_config(targets: &[SocketAddr]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: upstreams\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

fn spawn_prometheus(dir: &Path, port: u16, attempt: u32) -> Proc {
    let program = program("prometheus");
    let config = format!("--config.file={}", dir.join("prometheus.yml").display());
    let data = format!("--storage.tsdb.path={}", dir.join(format!("prometheus-data-{attempt}")).display());
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    Proc::spawn("prometheus", program.to_str().unwrap(), &[&config, &data, &listen, "--log.level=info"], dir)
}

/// `Err` carries the whole panic message (with the log's tail).
async fn wait_for_targets(prometheus: &mut Proc, base: &str, targets: &[SocketAddr], dir: &Path) -> Result<(), String> {
    let log = dir.join("prometheus.log");
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < PROMETHEUS_START_LIMIT {
        if let Ok(Some(status)) = prometheus.child.try_wait() {
            return Err(format!("prometheus exited ({status}) before scraping; log {}:\n{}", log.display(), tail()));
        }
        match prometheus_query(base, "up").await {
            Ok(result) => {
                let down = targets_not_up(&result, targets);
                if down.is_empty() {
                    return Ok(());
                }
                last = format!("not up yet: {down:?}");
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "prometheus at {base} did not report up == 1 for every target of {targets:?} within \
         {PROMETHEUS_START_LIMIT:?} (last: {last}); log {}:\n{}",
        log.display(),
        tail()
    ))
}

/// Targets whose `up` series is missing or not 1 in an `up` query result.
fn targets_not_up(result: &[serde_json::Value], targets: &[SocketAddr]) -> Vec<SocketAddr> {
    let up = |t: &SocketAddr| {
        result.iter().any(|s| s["metric"]["instance"] == t.to_string().as_str() && s["value"][1] == "1")
    };
    targets.iter().filter(|t| !up(t)).copied().collect()
}

/// One instant query (at the server's now) against Prometheus at `base_url`
/// (`http://127.0.0.1:PORT`): the `data.result` of a successful answer, or
/// what went wrong. Plain HTTP/1.0, so the answer is never chunked.
pub async fn prometheus_query(base_url: &str, promql: &str) -> Result<Vec<serde_json::Value>, String> {
    let addr: SocketAddr = base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("{base_url} is not http://IP:PORT: {e}"))?;
    let path = format!("/api/v1/query?query={}", percent_encode(promql));
    let answer = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(2), answer)
        .await
        .map_err(|_| format!("no answer from {base_url} within 2s"))?
        .map_err(|e| format!("{base_url}: {e}"))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {response}"))?;
    match json["data"]["result"].as_array() {
        Some(result) if json["status"] == "success" => Ok(result.clone()),
        _ => Err(format!("query {promql:?} failed: {body}")),
    }
}

/// The value of a query answering exactly one series, if any.
pub async fn prometheus_value(base_url: &str, promql: &str) -> Option<f64> {
    let result = prometheus_query(base_url, promql).await.ok()?;
    let value = match result.as_slice() {
        [series] => &series["value"][1],
        _ => return None,
    };
    value.as_str()?.parse().ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
