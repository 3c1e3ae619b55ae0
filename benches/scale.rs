//! The engine at scale, headless: N demo rollouts (default 1,000) for M
//! simulated minutes (default 10) with their journals on disk. Prints CPU
//! per simulated minute, journal bytes per rollout-hour, and whether the
//! engine kept up (windows sampled against windows due). Then the same
//! fleet with a Prometheus metrics source (a counting stand-in server on
//! its own thread, answering every query with healthy numbers): the
//! queries per analysis interval, per window boundary, the connections the
//! clients opened, the most open at once, and the engine's CPU
//! per query (the stand-in's own CPU taken out).
//!
//! The Prometheus source is the fleet's: one shared client per address (at
//! most 16 queries in flight) and the default, batched queries (one query
//! per metric for every rollout). `--prometheus-per-rollout` measures what
//! came before: each rollout its own client and one query per metric and
//! version (`PromQueries::per_version`).
//!
//! `cargo bench --bench scale -- [--rollouts N] [--minutes M] [--speed S]
//! [--prometheus-minutes M] [--prometheus-speed S] [--prometheus-per-rollout]`
//! (`--minutes 0` skips the simulated-metrics run);
//! `scripts/bench` runs it.

use flightdeck::clock::Clock;
use flightdeck::engine::{Engine, EngineOptions, StopWhen};
use flightdeck::metrics::prometheus::{Prometheus, PrometheusPool};
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
    /// Each rollout its own client, one query per metric and version.
    per_rollout: bool,
}

impl Options {
    fn from_args() -> Options {
        // --speed 6: 1,000 rollouts keep up on two shared cores (at 60 they fall behind).
        let args: Vec<String> = std::env::args().collect();
        let per_rollout = args.iter().any(|a| a == "--prometheus-per-rollout");
        let mut o = Options {
            rollouts: 1000,
            minutes: 10,
            speed: 6.0,
            prometheus_minutes: 3,
            prometheus_speed: 6.0,
            per_rollout,
        };
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

/// Where the rollouts' metrics come from.
#[derive(Clone, Copy)]
enum Source {
    /// The simulator's own.
    Simulated,
    /// One shared client, batched queries.
    Prometheus(SocketAddr),
    /// Each rollout its own client, one query per metric and version.
    PrometheusPerRollout(SocketAddr),
}

/// Runs `rollouts` demo rollouts for `minutes` simulated minutes at `speed`,
/// their metrics from `source`.
async fn run(rollouts: usize, minutes: u64, speed: f64, source: Source) -> Run {
    let mut setups = flightdeck::demo::setups(rollouts, 1).await.expect("the demo fleet is valid");
    let pool = PrometheusPool::new();
    for s in &mut setups {
        let (stable, canary) = (&s.plan.stable, &s.plan.canary);
        let p = match source {
            Source::Simulated => continue,
            Source::Prometheus(addr) => pool.source(&format!("http://{addr}"), &PromQueries::default(), stable, canary),
            Source::PrometheusPerRollout(addr) => {
                Prometheus::new(&format!("http://{addr}"), &PromQueries::per_version(), stable, canary)
            }
        };
        s.metrics = Arc::new(p.expect("a valid address"));
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

/// A stand-in Prometheus: answers `/api/v1/query` with healthy numbers
/// (requests 1,000, errors 0, latencies 100 ms): a scalar for a
/// per-version query, one series per version asked for a batched one. It
/// counts queries by their evaluation `time` (one window boundary),
/// connections, and the most connections open at once.
#[derive(Default)]
struct Stand {
    queries: AtomicU64,
    connections: AtomicU64,
    /// Connections open now, and the most at once.
    open: AtomicU64,
    most_open: AtomicU64,
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
                            let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
                            shared.most_open.fetch_max(open, Ordering::Relaxed);
                            let stand = shared.clone();
                            tokio::spawn(async move {
                                connection(socket, stand.clone()).await;
                                stand.open.fetch_sub(1, Ordering::Relaxed);
                            });
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
            let url = reqwest::Url::parse(&format!("http://stand-in{target}")).expect("a request target");
            let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
            let (query, time) = (param("query").unwrap_or_default(), param("time").unwrap_or_else(|| "?".into()));
            stand.queries.fetch_add(1, Ordering::Relaxed);
            *stand.by_time.lock().unwrap().entry(time).or_default() += 1;
            let body = answer(&query);
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

/// A healthy answer to `query`: `code=~"5.."` is the errors query, quantiles
/// say histogram_quantile; a batched query (`version=~"…"`) gets one series
/// per version it asks for.
fn answer(query: &str) -> String {
    let value = if query.contains("code=~") {
        "0"
    } else if query.contains("histogram_quantile") {
        "100"
    } else {
        "1000"
    };
    let Some(start) = query.find("version=~\"").map(|i| i + "version=~\"".len()) else {
        return format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[0,"{value}"]}}}}"#);
    };
    let asked = &query[start..start + query[start..].find('"').unwrap_or(0)];
    let series: Vec<String> = asked
        .split('|')
        .map(|v| format!(r#"{{"metric":{{"version":"{}"}},"value":[0,"{value}"]}}"#, v.replace('\\', "")))
        .collect();
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, series.join(","))
}

fn main() {
    let o = Options::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("engine at scale: {} rollouts, journals on disk, 2 worker threads", o.rollouts);

    if o.minutes > 0 {
        simulated(&rt, &o);
    }
    prometheus(&rt, &o);
}

/// The fleet on the simulator's own metrics.
fn simulated(rt: &tokio::runtime::Runtime, o: &Options) {
    let r = rt.block_on(run(o.rollouts, o.minutes, o.speed, Source::Simulated));
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
}

/// The fleet on a Prometheus source.
fn prometheus(rt: &tokio::runtime::Runtime, o: &Options) {
    let (addr, stand, stop) = stand_in();
    let source = if o.per_rollout { Source::PrometheusPerRollout(addr) } else { Source::Prometheus(addr) };
    let r = rt.block_on(run(o.rollouts, o.prometheus_minutes, o.prometheus_speed, source));
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
    let how = if o.per_rollout {
        "a client per rollout, a query per metric and version"
    } else {
        "one shared client, batched queries"
    };
    println!(
        "Prometheus metrics ({how}), {} simulated minutes at --speed {} ({:.1} s real):",
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
    println!("  most connections open at once     {:>10}", stand.most_open.load(Ordering::Relaxed));
    println!("  engine CPU per query              {:>10.1} µs", engine_cpu / queries.max(1) as f64 * 1e6);
    println!("  engine CPU per sample             {:>10.1} µs", engine_cpu / r.sampled.max(1) as f64 * 1e6);
    println!("  engine CPU per simulated minute   {:>10.3} s", engine_cpu / o.prometheus_minutes as f64);
    println!("  windows sampled / due             {:>10} / {}", r.sampled, r.windows_due);
    println!("  verdicts (inconclusive)           {:>10} ({})", r.verdicts, r.inconclusive);
}
