//! The engine at scale, headless: N demo rollouts (default 1,000) for M
//! simulated minutes (default 10) with their journals on disk. Prints CPU
//! per simulated minute, journal bytes per rollout-hour, and whether the
//! engine kept up (windows sampled against windows due). Then the same
//! fleet with a Prometheus metrics source (a counting stand-in server on
//! its own thread, answering every query with one healthy number): the
//! queries per analysis interval, per window boundary, the connections the
//! clients opened, and the engine's CPU per query (the stand-in's own CPU
//! taken out).
//!
//! `cargo bench --bench scale -- [--rollouts N] [--minutes M] [--speed S]
//! [--prometheus-minutes M] [--prometheus-speed S]`; `scripts/bench` runs it.

use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, EngineOptions, StopWhen};
use flightdeck::metrics::prometheus::Prometheus;
use flightdeck::metrics::MetricsSource;
use flightdeck::protocol::Output;
use flightdeck_core::analysis::MetricsSample;
use flightdeck_core::budget::SloMeasurement;
use flightdeck_core::plan::PromQueries;
use flightdeck_core::time::Timestamp;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

struct Options {
    rollouts: usize,
    minutes: u64,
    speed: f64,
    prometheus_minutes: u64,
    prometheus_speed: f64,
}

impl Options {
    fn from_args() -> Options {
        // --speed 6: 1,000 rollouts keep up on two shared cores (at 60 they fall behind).
        let mut o = Options { rollouts: 1000, minutes: 10, speed: 6.0, prometheus_minutes: 3, prometheus_speed: 6.0 };
        let args: Vec<String> = std::env::args().collect();
        for pair in args.windows(2) {
            let value = &pair[1];
            match pair[0].as_str() {
                "--rollouts" => o.rollouts = value.parse().expect("--rollouts N"),
                "--minutes" => o.minutes = value.parse().expect("--minutes M"),
                "--speed" => o.speed = value.parse().expect("--speed S"),
                "--prometheus-minutes" => o.prometheus_minutes = value.parse().expect("--prometheus-minutes M"),
                "--prometheus-speed" => o.prometheus_speed = value.parse().expect("--prometheus-speed S"),
                _ => {}
            }
        }
        o
    }
}

/// CPU seconds (user + system) of the whole process, or of the calling thread.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// What one run did.
struct Run {
    cpu: f64,
    wall: Duration,
    windows_due: u64,
    /// Samples the engine asked its metrics sources for: one per rollout
    /// per window, all of them when the engine keeps up.
    sampled: u64,
    verdicts: u64,
    inconclusive: u64,
    /// Journal bytes once every rollout's journal is open (headers, with the plan).
    journal_opened: u64,
    journal_bytes: u64,
}

fn bytes_in(dir: &std::path::Path) -> u64 {
    let files = std::fs::read_dir(dir).expect("the journal directory").flatten();
    files.filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// Counts the samples asked of a metrics source.
struct Counted(Arc<dyn MetricsSource>, Arc<AtomicU64>);

#[async_trait::async_trait]
impl MetricsSource for Counted {
    async fn sample(&self, window: Duration, now: Timestamp) -> MetricsSample {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.sample(window, now).await
    }

    async fn slo(&self, now: Timestamp) -> Option<SloMeasurement> {
        self.0.slo(now).await
    }
}

/// Runs `rollouts` demo rollouts for `minutes` simulated minutes at `speed`,
/// their metrics from the Prometheus at `prometheus` when given.
async fn run(rollouts: usize, minutes: u64, speed: f64, prometheus: Option<SocketAddr>) -> Run {
    let mut setups = flightdeck::demo::setups(rollouts, 1).await.expect("the demo fleet is valid");
    if let Some(addr) = prometheus {
        for s in &mut setups {
            let p = Prometheus::new(&format!("http://{addr}"), &PromQueries::default(), &s.plan.stable, &s.plan.canary);
            s.metrics = Arc::new(p.expect("a valid address"));
        }
    }
    let sampled = Arc::new(AtomicU64::new(0));
    for s in &mut setups {
        s.metrics = Arc::new(Counted(s.metrics.clone(), sampled.clone()));
    }
    let interval = setups[0].plan.analysis.interval;
    let journals = tempfile::tempdir().expect("a temporary directory");
    let (tx, mut rx) = mpsc::channel::<Output>(1024);
    let outputs = tokio::spawn(async move {
        let (mut verdicts, mut inconclusive) = (0u64, 0u64);
        while let Some(out) = rx.recv().await {
            if let Output::Verdict { verdict, .. } = out {
                verdicts += 1;
                inconclusive += (verdict.label() == "inconclusive") as u64;
            }
        }
        (verdicts, inconclusive)
    });
    let (cpu0, wall0) = (cpu_seconds(libc::RUSAGE_SELF), Instant::now());
    let options = EngineOptions {
        clock: Clock::scaled(Timestamp(0), speed),
        journal_dir: Some(journals.path().to_path_buf()),
        fresh: true,
        stop_when: StopWhen::Never,
    };
    let engine = Engine::start(setups, options, tx).expect("the engine starts");
    let journal_opened = bytes_in(journals.path());
    let end = Timestamp(minutes * 60_000);
    let clock = engine.clock();
    while clock.now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.shutdown().await;
    let (cpu, wall) = (cpu_seconds(libc::RUSAGE_SELF) - cpu0, wall0.elapsed());
    let (verdicts, inconclusive) = outputs.await.expect("the output counter ends");
    let journal_bytes = bytes_in(journals.path());
    // Windows that ended before the last instant (the one ending at it may not have been read yet).
    let windows_due = rollouts as u64 * ((minutes * 60_000 - 1) / interval.as_millis() as u64);
    let sampled = sampled.load(Ordering::Relaxed);
    Run { cpu, wall, windows_due, sampled, verdicts, inconclusive, journal_opened, journal_bytes }
}

/// A stand-in Prometheus: answers `/api/v1/query` with one number per
/// query (requests 1,000, errors 0, latencies 100 ms) and counts queries
/// by their evaluation `time` (one window boundary) and connections.
#[derive(Default)]
struct Stand {
    queries: AtomicU64,
    connections: AtomicU64,
    /// Connections the server could not accept (no file descriptor left).
    refused: AtomicU64,
    by_time: Mutex<BTreeMap<String, u64>>,
    /// CPU seconds of the server's own thread, when it stops.
    cpu: Mutex<f64>,
}

fn stand_in() -> (SocketAddr, Arc<Stand>, tokio::sync::oneshot::Sender<()>) {
    let stand = Arc::new(Stand::default());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shared = stand.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let serve = async {
                loop {
                    match listener.accept().await {
                        Ok((socket, _)) => {
                            shared.connections.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(connection(socket, shared.clone()));
                        }
                        // Out of file descriptors: the clients' sockets count too.
                        Err(_) => {
                            shared.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = stop_rx => {}
            }
            *shared.cpu.lock().unwrap() = cpu_seconds(libc::RUSAGE_THREAD);
        });
    });
    (addr_rx.recv().unwrap(), stand, stop_tx)
}

/// HTTP/1.1 keep-alive: one GET after another on the same connection.
async fn connection(mut socket: tokio::net::TcpStream, stand: Arc<Stand>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let request = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            let target = request.split_whitespace().nth(1).unwrap_or_default();
            let query = target.split_once('?').map_or("", |(_, q)| q);
            let time = query.split('&').find_map(|kv| kv.strip_prefix("time=")).unwrap_or("?").to_string();
            stand.queries.fetch_add(1, Ordering::Relaxed);
            *stand.by_time.lock().unwrap().entry(time).or_default() += 1;
            // `code=~"5.."` (URL-encoded) is the errors query; quantiles say histogram_quantile.
            let value = if query.contains("code%3D~") || query.contains("code=~") {
                "0"
            } else if query.contains("histogram_quantile") {
                "100"
            } else {
                "1000"
            };
            let body = format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[0,"{value}"]}}}}"#);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if socket.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn main() {
    let o = Options::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("engine at scale: {} rollouts, journals on disk, 2 worker threads", o.rollouts);

    let r = rt.block_on(run(o.rollouts, o.minutes, o.speed, None));
    let rollout_hours = o.rollouts as f64 * o.minutes as f64 / 60.0;
    println!(
        "simulated metrics, {} simulated minutes at --speed {} ({:.1} s real):",
        o.minutes,
        o.speed,
        r.wall.as_secs_f64()
    );
    println!("  CPU per simulated minute          {:>10.3} s", r.cpu / o.minutes as f64);
    println!("  CPU, share of one core            {:>10.1} %", r.cpu / r.wall.as_secs_f64() * 100.0);
    println!("  journal header bytes per rollout  {:>10.0}", r.journal_opened as f64 / o.rollouts as f64);
    let grown = r.journal_bytes.saturating_sub(r.journal_opened);
    println!("  journal bytes per rollout-hour    {:>10.0} (after the header)", grown as f64 / rollout_hours);
    println!("  windows sampled / due             {:>10} / {}", r.sampled, r.windows_due);
    println!("  verdicts                          {:>10}", r.verdicts);

    let (addr, stand, stop) = stand_in();
    let r = rt.block_on(run(o.rollouts, o.prometheus_minutes, o.prometheus_speed, Some(addr)));
    let _ = stop.send(());
    while stand.cpu.lock().unwrap().eq(&0.0) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let queries = stand.queries.load(Ordering::Relaxed);
    let engine_cpu = r.cpu - *stand.cpu.lock().unwrap();
    let by_time = stand.by_time.lock().unwrap();
    let mut per_boundary: Vec<u64> = by_time.values().copied().collect();
    per_boundary.sort_unstable();
    let median = per_boundary.get(per_boundary.len() / 2).copied().unwrap_or(0);
    let intervals = o.prometheus_minutes; // the demo's analysis interval is one minute
    println!(
        "Prometheus metrics, {} simulated minutes at --speed {} ({:.1} s real):",
        o.prometheus_minutes,
        o.prometheus_speed,
        r.wall.as_secs_f64()
    );
    println!("  queries                           {:>10}", queries);
    println!("  queries per interval              {:>10.0}", queries as f64 / intervals as f64);
    println!("  queries per sample                {:>10.2}", queries as f64 / r.sampled.max(1) as f64);
    println!(
        "  queries at one window boundary    {:>10} (median of {} boundaries; max {})",
        median,
        per_boundary.len(),
        per_boundary.last().unwrap_or(&0)
    );
    println!("  connections opened                {:>10}", stand.connections.load(Ordering::Relaxed));
    println!("  accept failures (no fd left)      {:>10}", stand.refused.load(Ordering::Relaxed));
    println!("  engine CPU per query              {:>10.1} µs", engine_cpu / queries.max(1) as f64 * 1e6);
    println!("  engine CPU per simulated minute   {:>10.3} s", engine_cpu / o.prometheus_minutes as f64);
    println!("  windows sampled / due             {:>10} / {}", r.sampled, r.windows_due);
    println!("  verdicts (inconclusive)           {:>10} ({})", r.verdicts, r.inconclusive);
}
