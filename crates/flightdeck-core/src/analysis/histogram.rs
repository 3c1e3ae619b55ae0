//! Latency as a histogram of log-spaced buckets: the evidence the analysis
//! needs (quantiles, and how many requests were slower than a threshold) in
//! a few hundred counts per window instead of every raw sample.
//!
//! Bucket `i` holds latencies in `(γ^(i-1), γ^i]` ms with γ = 1.02, so any
//! quantile read back is within 1 % of the true value (the same relative
//! accuracy idea as DDSketch), and windows merge by adding counts.

use serde::{Deserialize, Serialize};

/// Bucket growth factor: 2 % wide buckets, values within ±1 %.
const GAMMA: f64 = 1.02;
/// Latencies below this (ms) share the lowest bucket; 1 µs is below any
/// network service's resolution.
const MIN_MS: f64 = 0.001;

/// Counts of requests per latency bucket, sorted by bucket index. Read from
/// JSON as `[[index, count], …]` in any order (sorted and merged on read).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "Vec<(i32, u64)>", into = "Vec<(i32, u64)>")]
pub struct LatencyHistogram {
    /// `(bucket index, requests)`, ascending index, no zero counts.
    buckets: Vec<(i32, u64)>,
}

impl From<Vec<(i32, u64)>> for LatencyHistogram {
    fn from(mut buckets: Vec<(i32, u64)>) -> Self {
        buckets.sort_unstable_by_key(|b| b.0);
        let mut h = LatencyHistogram::default();
        for (i, count) in buckets.into_iter().filter(|b| b.1 > 0) {
            match h.buckets.last_mut() {
                Some((last, sum)) if *last == i => *sum = sum.saturating_add(count),
                _ => h.buckets.push((i, count)),
            }
        }
        h
    }
}

impl From<LatencyHistogram> for Vec<(i32, u64)> {
    fn from(h: LatencyHistogram) -> Self {
        h.buckets
    }
}

/// The bucket a latency of `ms` falls in.
pub fn index_of(ms: f64) -> i32 {
    (ms.max(MIN_MS).ln() / GAMMA.ln()).ceil() as i32
}

/// The largest latency (ms) bucket `index` holds.
pub fn upper_edge(index: i32) -> f64 {
    GAMMA.powi(index)
}

impl LatencyHistogram {
    /// A histogram of raw samples; non-finite and negative samples are dropped.
    pub fn from_samples(samples: &[f64]) -> LatencyHistogram {
        let mut indices: Vec<i32> =
            samples.iter().filter(|v| v.is_finite() && **v >= 0.0).map(|&v| index_of(v)).collect();
        indices.sort_unstable();
        let mut h = LatencyHistogram::default();
        for i in indices {
            match h.buckets.last_mut() {
                Some((last, count)) if *last == i => *count += 1,
                _ => h.buckets.push((i, 1)),
            }
        }
        h
    }

    /// Adds `count` requests of latency `ms` (ignored when not finite or negative).
    pub fn record(&mut self, ms: f64, count: u64) {
        if !ms.is_finite() || ms < 0.0 || count == 0 {
            return;
        }
        let i = index_of(ms);
        match self.buckets.binary_search_by_key(&i, |b| b.0) {
            Ok(at) => self.buckets[at].1 = self.buckets[at].1.saturating_add(count),
            Err(at) => self.buckets.insert(at, (i, count)),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.buckets.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (a, b) = (&self.buckets, &other.buckets);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1.saturating_add(y.1)));
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    merged.push(*x);
                    i += 1;
                }
                (Some(x), None) => {
                    merged.push(*x);
                    i += 1;
                }
                (_, Some(y)) => {
                    merged.push(*y);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        // Room was made for both, but most buckets of a stage's windows
        // overlap: kept as it is, a stage histogram held twice the memory
        // its counts need (at 1,000 rollouts, megabytes of nothing).
        merged.shrink_to_fit();
        self.buckets = merged;
    }

    /// Memory the buckets hold, in buckets (their capacity): what a
    /// stage's evidence costs.
    pub fn held(&self) -> usize {
        self.buckets.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        self.buckets.iter().fold(0u64, |sum, b| sum.saturating_add(b.1))
    }

    /// The `q` quantile (0..=1), ms: the geometric middle of the bucket that
    /// holds rank `q · total`. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 || !q.is_finite() {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for &(i, count) in &self.buckets {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return Some(upper_edge(i) / GAMMA.sqrt());
            }
        }
        self.buckets.last().map(|&(i, _)| upper_edge(i) / GAMMA.sqrt())
    }

    /// Requests slower than `ms`: whole buckets above it, and the part of the
    /// bucket that holds `ms` above it (spread evenly within the bucket).
    pub fn count_above(&self, ms: f64) -> f64 {
        if ms.is_nan() {
            return 0.0;
        }
        let threshold = index_of(ms);
        self.buckets
            .iter()
            .filter(|b| b.0 >= threshold)
            .map(|&(i, count)| {
                if i > threshold {
                    return count as f64;
                }
                let (lo, hi) = (upper_edge(i - 1), upper_edge(i));
                count as f64 * ((hi - ms.max(lo)) / (hi - lo)).clamp(0.0, 1.0)
            })
            .sum()
    }
}

/// Latencies beyond a source's largest finite bucket (`le="+Inf"`) are
/// placed here when a bound must be high: about 2.8 hours, slower than any
/// request a canary analysis cares to tell apart.
const BEYOND_LAST_BUCKET_MS: f64 = 1e7;

/// A latency histogram as a metrics server keeps it (Prometheus classic
/// `_bucket` series, Envoy's histogram stats): for each bucket's upper edge
/// (`le`, ms, ascending) the requests at or below it, cumulative, and the
/// total (the `+Inf` bucket). Where in its bucket a request fell is not
/// known, so the analysis reads it as two histograms that bound the truth:
/// see [`BucketCounts::bounds`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BucketCounts {
    pub le_ms: Vec<f64>,
    pub at_or_below: Vec<u64>,
    pub total: u64,
}

impl BucketCounts {
    /// Requests counted (the `+Inf` bucket).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Two histograms that bound where the requests really were: `low`
    /// puts each bucket's requests at its lower edge, `high` just past its
    /// upper edge. For any threshold, `low.count_above` never counts more
    /// requests slower than it than there were (evidence of a regression
    /// may use it), and `high.count_above` never fewer (evidence of health
    /// may use it); quantiles read from them bound the true quantile the
    /// same way. Edges out of order, non-finite or negative, and counts that
    /// go down (a counter reset inside the window) give `None`: such
    /// buckets prove nothing.
    pub fn bounds(&self) -> Option<(LatencyHistogram, LatencyHistogram)> {
        if self.le_ms.len() != self.at_or_below.len() {
            return None;
        }
        let edges_sound =
            self.le_ms.iter().all(|e| e.is_finite() && *e >= 0.0) && self.le_ms.windows(2).all(|w| w[0] < w[1]);
        let counts_sound = self.at_or_below.windows(2).all(|w| w[0] <= w[1])
            && self.at_or_below.last().is_none_or(|c| *c <= self.total);
        if !edges_sound || !counts_sound {
            return None;
        }
        let (mut low, mut high) = (LatencyHistogram::default(), LatencyHistogram::default());
        let mut below = 0u64;
        let mut lower_edge = 0.0;
        for (&edge, &cumulative) in self.le_ms.iter().zip(&self.at_or_below) {
            let count = cumulative - below;
            low.record(lower_edge, count);
            // One fine bucket past the edge, so a threshold at the edge itself counts them.
            high.record(edge * GAMMA, count);
            below = cumulative;
            lower_edge = edge;
        }
        let beyond = self.total - below;
        low.record(lower_edge, beyond);
        high.record(BEYOND_LAST_BUCKET_MS.max(lower_edge * GAMMA), beyond);
        Some((low, high))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_of_many_windows_holds_no_more_than_its_buckets() {
        // A stage's histogram is every window's merged in: a day of minute
        // windows holds each bucket once, and no spare room.
        let mut stage = LatencyHistogram::default();
        for window in 0..1_440 {
            let samples: Vec<f64> = (0..200).map(|i| 20.0 + ((i * 37 + window * 11) % 400) as f64).collect();
            stage.merge(&LatencyHistogram::from_samples(&samples));
        }
        let occupied = stage.buckets.len();
        assert!(occupied < 200, "buckets 20–420 ms at 2 % apart: {occupied}");
        assert_eq!(stage.held(), occupied, "a merged histogram keeps no spare room");
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let samples: Vec<f64> = (1..=10_000).map(|i| i as f64 / 10.0).collect();
        let h = LatencyHistogram::from_samples(&samples);
        assert_eq!(h.total(), 10_000);
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).unwrap();
            assert!((got / want - 1.0).abs() < 0.011, "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn count_above_interpolates_within_a_bucket() {
        let samples: Vec<f64> = (1..=10_000).map(|i| i as f64 / 10.0).collect();
        let h = LatencyHistogram::from_samples(&samples);
        let above = h.count_above(900.0);
        assert!((above - 1_000.0).abs() < 15.0, "{above}");
        assert_eq!(h.count_above(2_000.0), 0.0);
        assert!((h.count_above(0.0) - 10_000.0).abs() < 1e-9);
    }

    #[test]
    fn merge_and_record_agree_with_from_samples() {
        let a = LatencyHistogram::from_samples(&[1.0, 5.0, 5.0, 300.0]);
        let b = LatencyHistogram::from_samples(&[5.0, 7.0, f64::NAN, -3.0]);
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, LatencyHistogram::from_samples(&[1.0, 5.0, 5.0, 300.0, 5.0, 7.0]));
        let mut recorded = LatencyHistogram::default();
        for (v, n) in [(300.0, 1), (5.0, 3), (1.0, 1), (7.0, 1), (f64::INFINITY, 4)] {
            recorded.record(v, n);
        }
        assert_eq!(recorded, merged);
        assert_eq!(merged.total(), 6);
    }

    #[test]
    fn json_in_any_order_reads_sorted_and_merged() {
        let h: LatencyHistogram = serde_json::from_str("[[5, 1], [2, 3], [5, 2], [9, 0]]").unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), "[[2,3],[5,3]]");
    }

    #[test]
    fn empty_histograms_answer_safely() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.99), None);
        assert_eq!(h.count_above(10.0), 0.0);
        assert!(LatencyHistogram::from_samples(&[0.0]).quantile(0.5).unwrap() <= 1.02 * MIN_MS);
    }

    #[test]
    fn bucket_bounds_never_miscount_requests_slower_than_a_threshold() {
        // 100 requests ≤ 100 ms, 50 more ≤ 250 ms, 10 beyond 250 ms.
        let buckets = BucketCounts { le_ms: vec![100.0, 250.0], at_or_below: vec![100, 150], total: 160 };
        let (low, high) = buckets.bounds().unwrap();
        assert_eq!((low.total(), high.total()), (160, 160));
        // Slower than 100 ms: truly 60. Low may say fewer, high never fewer.
        assert!(low.count_above(100.0) <= 60.0 + 1e-9, "{}", low.count_above(100.0));
        assert!(high.count_above(100.0) >= 60.0 - 1e-9, "{}", high.count_above(100.0));
        // Slower than 150 ms: truly between 10 and 60.
        assert!(low.count_above(150.0) <= 10.0 + 1e-9);
        assert!(high.count_above(150.0) >= 60.0 - 1e-9);
        // Slower than 250 ms: truly 10.
        assert!((low.count_above(251.0) - 0.0).abs() < 1e-9);
        assert!(high.count_above(250.0) >= 10.0 - 1e-9);
        // Quantiles bound the truth: the true p99 is above 250 ms.
        assert!(low.quantile(0.99).unwrap() <= 250.0 && high.quantile(0.99).unwrap() > 250.0);
    }

    #[test]
    fn unsound_buckets_prove_nothing() {
        let reset = BucketCounts { le_ms: vec![1.0, 2.0], at_or_below: vec![5, 3], total: 9 };
        assert_eq!(reset.bounds(), None);
        let unordered = BucketCounts { le_ms: vec![2.0, 1.0], at_or_below: vec![1, 2], total: 2 };
        assert_eq!(unordered.bounds(), None);
        let over = BucketCounts { le_ms: vec![1.0], at_or_below: vec![5], total: 4 };
        assert_eq!(over.bounds(), None);
    }
}
