//! The traffic model: what stable and canary serve in one analysis window.
//!
//! Latency is log-normal (stable p50 80 ms, p99 250 ms). A window's latency
//! histogram is an exact multinomial draw over the analysis's own log
//! buckets (γ = 1.02): sequential binomials over the buckets for large
//! counts, one inverse-CDF draw per request for small ones. Errors are a
//! binomial draw, independent of latency. The bucket that holds the SPRT's
//! latency threshold is split there, so "requests slower than the
//! threshold" is an exact count too.

use flightdeck_core::analysis::stats::normal_cdf;
use flightdeck_core::analysis::LatencyHistogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};

/// The analysis's bucket growth factor (histogram.rs).
const GAMMA: f64 = 1.02;
/// Standard normal 99 % quantile.
pub const Z99: f64 = 2.326_347_874_040_841;
pub const STABLE_ERROR_RATE: f64 = 0.005;
pub const STABLE_P50_MS: f64 = 80.0;
pub const STABLE_P99_MS: f64 = 250.0;
/// The latency margin: canary requests slower than 1.1 × stable's true p99.
pub const SLOW_MS: f64 = 1.1 * STABLE_P99_MS;
/// Probability mass left out at either end of the bucket table (lumped in
/// the end buckets): keeps the tables to ~300 buckets.
const TRIM: f64 = 1e-9;
/// Below this many requests, draw each request's bucket by inverse CDF.
const PER_REQUEST_BELOW: u64 = 64;

/// A latency distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// ln(latency) ~ N(ln p50, σ²).
    LogNormal { sigma: f64 },
    /// Log-normal, with `share` of requests `factor` × slower.
    SlowTail { sigma: f64, share: f64, factor: f64 },
}

impl Latency {
    /// Stable's σ: p99 / p50 = e^(σ z99).
    pub fn stable() -> Latency {
        Latency::LogNormal { sigma: (STABLE_P99_MS / STABLE_P50_MS).ln() / Z99 }
    }

    /// p99 × `factor`, p50 unchanged: the log-normal's σ widens.
    pub fn p99_times(factor: f64) -> Latency {
        Latency::LogNormal { sigma: (factor * STABLE_P99_MS / STABLE_P50_MS).ln() / Z99 }
    }

    pub fn cdf(&self, ms: f64) -> f64 {
        let ln = |ms: f64, sigma: f64| normal_cdf((ms.max(1e-12).ln() - STABLE_P50_MS.ln()) / sigma);
        match *self {
            Latency::LogNormal { sigma } => ln(ms, sigma),
            Latency::SlowTail { sigma, share, factor } => {
                (1.0 - share) * ln(ms, sigma) + share * ln(ms / factor, sigma)
            }
        }
    }

    /// The true share of requests slower than `ms`.
    pub fn share_above(&self, ms: f64) -> f64 {
        1.0 - self.cdf(ms)
    }
}

/// One version's behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    pub error_rate: f64,
    pub latency: Latency,
}

impl Behaviour {
    pub fn stable() -> Behaviour {
        Behaviour { error_rate: STABLE_ERROR_RATE, latency: Latency::stable() }
    }
}

/// The latency buckets a cell draws into: the analysis's own log buckets
/// over the range either version can reach, with the bucket that holds
/// `SLOW_MS` split there. Both versions draw into the same buckets, so
/// their counts line up (the Mann-Whitney test walks them side by side).
#[derive(Debug, Clone)]
pub struct Buckets {
    /// Representative latency of each part: its analysis bucket's geometric
    /// middle, so it lands in that bucket (the two parts of the split
    /// bucket share it, as they share the bucket).
    pub ms: Vec<f64>,
    /// Whether the part is slower than `SLOW_MS`.
    pub slow: Vec<bool>,
    /// Upper edge of each part, ms.
    upper: Vec<f64>,
}

impl Buckets {
    pub fn covering(latencies: &[Latency]) -> Buckets {
        let index = |ms: f64| (ms.ln() / GAMMA.ln()).ceil() as i32;
        let (mut lo, mut hi) = (index(STABLE_P50_MS), index(STABLE_P50_MS));
        while latencies.iter().any(|l| l.cdf(GAMMA.powi(lo - 1)) > TRIM) {
            lo -= 1;
        }
        while latencies.iter().any(|l| l.share_above(GAMMA.powi(hi)) > TRIM) {
            hi += 1;
        }
        let mut b = Buckets { ms: vec![], slow: vec![], upper: vec![] };
        for i in lo..=hi {
            let (lower, upper) = (GAMMA.powi(i - 1), GAMMA.powi(i));
            let middle = GAMMA.powf(i as f64 - 0.5);
            let split = lower < SLOW_MS && SLOW_MS < upper;
            if split {
                b.push(middle, false, SLOW_MS);
            }
            b.push(middle, split || lower >= SLOW_MS, upper);
        }
        b
    }

    fn push(&mut self, ms: f64, slow: bool, upper: f64) {
        self.ms.push(ms);
        self.slow.push(slow);
        self.upper.push(upper);
    }

    pub fn len(&self) -> usize {
        self.ms.len()
    }
}

/// One latency distribution over a cell's buckets, ready to draw from.
#[derive(Debug, Clone)]
struct Draws {
    /// P(part i | not in the parts before it): the sequential binomials.
    conditional: Vec<f64>,
    /// P(part ≤ i): inverse-CDF draws.
    cumulative: Vec<f64>,
}

impl Draws {
    fn new(latency: Latency, buckets: &Buckets) -> Draws {
        // The first part takes the mass below the range, the last the mass above.
        let last = buckets.len() - 1;
        let mut below = 0.0;
        let mut probability = Vec::with_capacity(buckets.len());
        for (k, upper) in buckets.upper.iter().enumerate() {
            let up_to = if k == last { 1.0 } else { latency.cdf(*upper).max(below) };
            probability.push(up_to - below);
            below = up_to;
        }
        // Tail masses summed from the end, so the conditionals do not cancel.
        let mut tail = vec![0.0; probability.len() + 1];
        for k in (0..probability.len()).rev() {
            tail[k] = tail[k + 1] + probability[k];
        }
        let conditional =
            probability.iter().zip(&tail).map(|(p, t)| if *t > 0.0 { (p / t).min(1.0) } else { 1.0 }).collect();
        let mut running = 0.0;
        let cumulative = probability
            .iter()
            .map(|p| {
                running += p / tail[0];
                running
            })
            .collect();
        Draws { conditional, cumulative }
    }

    /// Requests per part of `n` requests: an exact multinomial draw.
    fn draw(&self, rng: &mut ChaCha8Rng, n: u64) -> Vec<u64> {
        let mut counts = vec![0u64; self.conditional.len()];
        if n < PER_REQUEST_BELOW {
            for _ in 0..n {
                let u: f64 = rng.gen();
                let k = self.cumulative.partition_point(|c| *c < u).min(counts.len() - 1);
                counts[k] += 1;
            }
            return counts;
        }
        let mut left = n;
        for (k, p) in self.conditional.iter().enumerate() {
            if left == 0 {
                break;
            }
            let hits = if *p >= 1.0 { left } else { binomial(rng, left, *p) };
            counts[k] = hits;
            left -= hits;
        }
        counts
    }
}

/// What one version served in one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Served {
    pub requests: u64,
    pub errors: u64,
    /// Requests per part of the cell's `Buckets`.
    pub counts: Vec<u64>,
    /// The same, as the analysis's histogram.
    pub latency: LatencyHistogram,
    /// Requests slower than `SLOW_MS` (exact).
    pub slow: u64,
}

impl Served {
    fn draw(rng: &mut ChaCha8Rng, requests: u64, error_rate: f64, draws: &Draws, buckets: &Buckets) -> Served {
        let errors = binomial(rng, requests, error_rate);
        let counts = draws.draw(rng, requests);
        let mut latency = LatencyHistogram::default();
        let mut slow = 0;
        for (k, count) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            latency.record(buckets.ms[k], *count);
            if buckets.slow[k] {
                slow += count;
            }
        }
        Served { requests, errors, counts, latency, slow }
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

pub fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    Binomial::new(n, p).expect("0 < p < 1").sample(rng)
}

/// Stable and canary in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub stable: Served,
    pub canary: Served,
}

/// The two versions of one cell, ready to draw windows from.
#[derive(Debug, Clone)]
pub struct Service {
    pub stable: Behaviour,
    pub canary: Behaviour,
    pub buckets: Buckets,
    stable_draws: Draws,
    canary_draws: Draws,
    /// Requests per window, both versions together.
    pub requests_per_window: u64,
}

impl Service {
    pub fn new(canary: Behaviour, requests_per_window: u64) -> Service {
        let stable = Behaviour::stable();
        let buckets = Buckets::covering(&[stable.latency, canary.latency]);
        Service {
            stable_draws: Draws::new(stable.latency, &buckets),
            canary_draws: Draws::new(canary.latency, &buckets),
            buckets,
            stable,
            canary,
            requests_per_window,
        }
    }

    /// Window `index` at canary weight `weight` % for `seed`: every request
    /// goes to the canary with probability weight/100. The draws depend on
    /// (seed, window, weight) only, so every policy that has the canary at
    /// the same weight in the same window sees the very same requests.
    /// A window of the stress study (stress.rs): `requests` in total this
    /// window (time-varying load), each version's error rate for this window
    /// given by the caller (bursty errors), latency as `window`'s.
    pub fn window_with(&self, rng: &mut ChaCha8Rng, requests: u64, weight: u8, rates: (f64, f64)) -> Window {
        let canary = binomial(rng, requests, f64::from(weight) / 100.0);
        let b = &self.buckets;
        Window {
            stable: Served::draw(rng, requests - canary, rates.0, &self.stable_draws, b),
            canary: Served::draw(rng, canary, rates.1, &self.canary_draws, b),
        }
    }

    pub fn window(&self, seed: u64, index: u32, weight: u8) -> Window {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream((u64::from(index) << 8) | u64::from(weight));
        let canary = binomial(&mut rng, self.requests_per_window, f64::from(weight) / 100.0);
        let stable = self.requests_per_window - canary;
        let b = &self.buckets;
        Window {
            stable: Served::draw(&mut rng, stable, self.stable.error_rate, &self.stable_draws, b),
            canary: Served::draw(&mut rng, canary, self.canary.error_rate, &self.canary_draws, b),
        }
    }
}
