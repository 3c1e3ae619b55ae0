//! The Prometheus metrics source against a real Prometheus scraping two
//! upstream versions: v1 healthy, v2 failing 20 % of requests. Queries one
//! version at a time and batched (one query for several rollouts).
#![cfg(feature = "prometheus")]

mod support;

use flightdeck::metrics::prometheus::{Prometheus, PrometheusPool};
use flightdeck::metrics::MetricsSource;
use flightdeck_core::plan::PromQueries;
use flightdeck_core::time::Timestamp;
use std::time::{Duration, Instant};
use support::{eventually, free_port, get, prometheus_value, start_prometheus, wall_now, Upstream};

/// Requests per upstream: enough for a stable 20 % ratio, bounded.
const BURSTS: usize = 3;
const PER_BURST: usize = 100;

/// `BURSTS` bursts, one second apart, so several scrapes see the counters move.
async fn send_traffic(upstreams: &[&Upstream]) {
    for burst in 0..BURSTS {
        for up in upstreams {
            for _ in 0..PER_BURST {
                get(up.addr, "/").await.unwrap();
            }
        }
        if burst + 1 < BURSTS {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn error_ratio(errors: u64, requests: u64) -> f64 {
    errors as f64 / requests.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_version_windows_come_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    v2.set_error_rate(0.2);
    let started = Instant::now();
    let (_prometheus, base) = start_prometheus(dir.path(), &[v1.addr, v2.addr]).await;
    println!("time to first scrape of both targets: {:?}", started.elapsed());

    send_traffic(&[&v1, &v2]).await;
    let total = (2 * BURSTS * PER_BURST) as f64;
    eventually(Duration::from_secs(10), "Prometheus to scrape the final counts", async || {
        prometheus_value(&base, "sum(http_requests_total)").await == Some(total)
    })
    .await;

    let source = Prometheus::new(&base, &PromQueries::per_version(), "v1", "v2").unwrap();
    let m = source.sample(Duration::from_secs(10), wall_now()).await;
    println!("{m:#?}");
    assert_eq!(m.missing, None);
    let (stable, canary) = (m.stable.unwrap(), m.canary.unwrap());
    for w in [&stable, &canary] {
        assert!(w.requests > 0, "{w:?}");
        let p99 = w.p99_ms.expect("p99 present");
        assert!(p99 > 0.0 && p99 < 1000.0, "p99 {p99} ms");
    }
    assert_eq!(stable.errors, 0, "{stable:?}");
    let canary_ratio = error_ratio(canary.errors, canary.requests);
    assert!((canary_ratio - 0.2).abs() <= 0.05, "v2 error ratio {canary_ratio:.3} ({canary:?})");

    // A version nobody has served: its requests selector matches nothing.
    let unknown = Prometheus::new(&base, &PromQueries::per_version(), "v1", "v3").unwrap();
    let m = unknown.sample(Duration::from_secs(10), wall_now()).await;
    assert!(m.stable.is_some());
    assert_eq!(m.canary, None);
    assert_eq!(m.missing.as_deref(), Some("prometheus: requests for v3: empty result (no series matched)"));

    // A query Prometheus rejects: its own error text reaches the captain.
    let broken = PromQueries {
        p99: r#"histogram_quantile(0.99, m{version="{{version}}"}"#.into(),
        ..PromQueries::per_version()
    };
    let m = Prometheus::new(&base, &broken, "v1", "v2").unwrap().sample(Duration::from_secs(10), wall_now()).await;
    assert_eq!((m.stable, m.canary), (None, None));
    let missing = m.missing.unwrap();
    assert!(missing.starts_with("prometheus: p99 for v1: HTTP 400: bad_data: "), "{missing}");

    batched_queries_read_the_same_numbers(&base).await;
}

/// Two rollouts on one pool, (v1, v2) and (v2, v3), with the default
/// batched queries: 5 queries in all, and each version's numbers are the
/// ones its per-version queries read at the same evaluation time.
async fn batched_queries_read_the_same_numbers(base: &str) {
    // Far enough back that every scrape up to it is stored.
    let now = Timestamp(wall_now().0 - 3_000);
    let window = Duration::from_secs(30);
    let per_version = Prometheus::new(base, &PromQueries::per_version(), "v1", "v2").unwrap();
    let expected = per_version.sample(window, now).await;
    assert_eq!(expected.missing, None);

    let pool = PrometheusPool::new();
    let a = pool.source(base, &PromQueries::default(), "v1", "v2").unwrap();
    let b = pool.source(base, &PromQueries::default(), "v2", "v3").unwrap();
    let queries_before = queries_answered(base).await;
    let (a, b) = tokio::join!(a.sample(window, now), b.sample(window, now));
    // Prometheus counts a query once it has answered it: wait for the count to settle.
    eventually(Duration::from_secs(5), "Prometheus to count the batched queries", async || {
        queries_answered(base).await - queries_before >= 6.0
    })
    .await;
    assert_eq!(queries_answered(base).await - queries_before, 6.0, "one query per metric for both rollouts");

    println!("batched: {a:#?}\n{b:#?}");
    assert_eq!(a, expected);
    assert_eq!(b.stable, expected.canary);
    assert_eq!(b.canary, None);
    assert_eq!(b.missing.as_deref(), Some("prometheus: requests for v3: empty result (no series matched)"));
}

/// Queries Prometheus has answered (its own `prometheus_http_requests_total`).
async fn queries_answered(base: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    let lines = text
        .lines()
        .filter(|l| l.starts_with("prometheus_http_requests_total{") && l.contains(r#"handler="/api/v1/query""#));
    lines.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn an_unreachable_prometheus_leaves_both_versions_missing() {
    let address = format!("http://127.0.0.1:{}", free_port());
    let source = Prometheus::new(&address, &PromQueries::default(), "v1", "v2").unwrap();
    let m = source.sample(Duration::from_secs(60), wall_now()).await;
    assert_eq!((m.stable, m.canary), (None, None));
    let missing = m.missing.unwrap();
    for version in ["v1", "v2"] {
        let expected = format!("prometheus: requests for {version}: cannot connect to {address}");
        assert!(missing.contains(&expected), "{missing}");
    }
}

/// `n` requests to `upstream`, 16 at a time.
async fn concurrent_traffic(upstream: &Upstream, n: usize) {
    let per_task = n.div_ceil(16);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let addr = upstream.addr;
            tokio::spawn(async move {
                for _ in 0..per_task {
                    get(addr, "/").await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The acceptance test of "latency from real histograms": a real
/// Prometheus scraping real `_bucket` series (buckets 2.2 % apart), read
/// with the default queries and judged by the core's evidence. A canary
/// 50 % slower than stable is failed on its p99; a canary as fast as
/// stable passes. Before, latency came from `histogram_quantile` only and
/// passed "on the other rows" whatever it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p99_fifty_percent_slower_canary_fails_and_a_healthy_one_passes_on_real_buckets() {
    use flightdeck_core::analysis::{CheckOutcome, Evidence, Metric};
    use flightdeck_core::plan::AnalysisConfig;
    let dir = tempfile::tempdir().unwrap();
    let (v1, slow, same) = (Upstream::start("v1").await, Upstream::start("v2").await, Upstream::start("v3").await);
    v1.set_latency(Duration::from_millis(40));
    slow.set_latency(Duration::from_millis(60));
    same.set_latency(Duration::from_millis(40));
    let (_prometheus, base) = start_prometheus(dir.path(), &[v1.addr, slow.addr, same.addr]).await;
    let started = wall_now();
    tokio::join!(concurrent_traffic(&v1, 2_400), concurrent_traffic(&slow, 800), concurrent_traffic(&same, 800));
    eventually(Duration::from_secs(15), "Prometheus to scrape the final counts", async || {
        prometheus_value(&base, "sum(http_requests_total)").await == Some(4_000.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = wall_now();
    let window = Duration::from_millis(now.0 - started.0 + 5_000);
    let config = AnalysisConfig::default();
    for (canary, expected) in [("v2", "fail"), ("v3", "pass")] {
        let source = Prometheus::new(&base, &PromQueries::default(), "v1", canary).unwrap();
        let m = source.sample(window, now).await;
        assert_eq!(m.missing, None, "{m:?}");
        let (stable, canary_window) = (m.stable.as_ref().unwrap(), m.canary.as_ref().unwrap());
        assert!(stable.buckets.is_some() && canary_window.buckets.is_some(), "buckets read: {m:?}");
        // Windows are the margins' units (bursts show only across
        // windows): a verdict either way needs three; here three windows of
        // the same counts.
        let mut evidence = Evidence::default();
        let rounds = 3;
        let verdict = (0..rounds).map(|_| evidence.observe(&config, &m)).last().unwrap();
        for check in verdict.checks() {
            println!("{canary}: {}", check.reason);
        }
        assert_eq!(verdict.label(), expected, "{canary}: {}", verdict.summary());
        let p99 = verdict.checks().iter().find(|c| c.metric == Metric::LatencyP99).unwrap();
        let judged = if expected == "fail" { CheckOutcome::Fail } else { CheckOutcome::Pass };
        assert_eq!(p99.outcome, judged, "{canary}: {}", p99.reason);
    }
}
