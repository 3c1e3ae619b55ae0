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
///
/// A stage's histogram is most of what a live rollout holds, so it is kept
/// in whichever of two forms is smaller (see [`Buckets`]); every reading
/// goes through the same `(index, count)` pairs, so the form never changes
/// a verdict.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<(i32, u64)>", into = "Vec<(i32, u64)>")]
pub struct LatencyHistogram {
    buckets: Buckets,
}

/// How a histogram holds its counts.
#[derive(Debug, Clone)]
enum Buckets {
    /// Every bucket from `first` to the last occupied one, a `u32` count
    /// each (zeros in the gaps): 4 bytes a bucket. A latency distribution
    /// fills a run of neighbouring buckets, so this is the usual form.
    /// The first and last counts are never zero.
    Dense { first: i32, counts: Vec<u32> },
    /// `(bucket index, requests)` of the occupied buckets only, ascending,
    /// no zero counts: 16 bytes a bucket. For histograms with wide gaps
    /// (a source's coarse buckets read as bounds) or a count beyond `u32`.
    Sparse(Vec<(i32, u64)>),
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Sparse(Vec::new())
    }
}

/// Bytes a bucket costs in each form: dense is chosen while it spans at
/// most `SPARSE_BYTES / DENSE_BYTES` buckets per occupied one.
const DENSE_BYTES: usize = std::mem::size_of::<u32>();
const SPARSE_BYTES: usize = std::mem::size_of::<(i32, u64)>();

impl Buckets {
    /// The smaller form of `pairs` (ascending index, no zero counts).
    fn from_sorted(mut pairs: Vec<(i32, u64)>) -> Buckets {
        let (Some(&(first, _)), Some(&(last, _))) = (pairs.first(), pairs.last()) else {
            return Buckets::default();
        };
        let span = (last as i64 - first as i64 + 1) as usize;
        let narrow = pairs.iter().all(|b| b.1 <= u32::MAX as u64);
        if narrow && span * DENSE_BYTES <= pairs.len() * SPARSE_BYTES {
            let mut counts = vec![0u32; span];
            for (i, count) in pairs {
                counts[(i - first) as usize] = count as u32;
            }
            return Buckets::Dense { first, counts };
        }
        pairs.shrink_to_fit();
        Buckets::Sparse(pairs)
    }

    /// Occupied buckets, ascending.
    fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let (dense, sparse) = match self {
            Buckets::Dense { first, counts } => (Some((*first, counts)), None),
            Buckets::Sparse(pairs) => (None, Some(pairs)),
        };
        let dense = dense.into_iter().flat_map(|(first, counts)| {
            counts.iter().enumerate().filter(|c| *c.1 > 0).map(move |(k, &c)| (first + k as i32, c as u64))
        });
        dense.chain(sparse.into_iter().flatten().copied())
    }

    /// Adds `count` in place when that keeps the form (an occupied
    /// bucket's neighbourhood, counts within `u32`); false otherwise.
    fn add_in_place(&mut self, i: i32, count: u64) -> bool {
        let Buckets::Dense { first, counts } = self else { return false };
        let at = i as i64 - *first as i64;
        // Past the end by at most 4 buckets: 3 zeros and the new count
        // keep the dense form within its size rule.
        let room = (SPARSE_BYTES / DENSE_BYTES) as i64;
        if at < 0 || at >= counts.len() as i64 + room {
            return false;
        }
        let at = at as usize;
        if at >= counts.len() {
            counts.resize(at + 1, 0);
        }
        match u32::try_from(counts[at] as u64 + count) {
            Ok(sum) => counts[at] = sum,
            Err(_) => return false,
        }
        true
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Buckets::Dense { counts, .. } => counts.capacity() * DENSE_BYTES,
            Buckets::Sparse(pairs) => pairs.capacity() * SPARSE_BYTES,
        }
    }
}

impl PartialEq for LatencyHistogram {
    /// The same counts in the same buckets, whatever the form.
    fn eq(&self, other: &Self) -> bool {
        self.buckets.iter().eq(other.buckets.iter())
    }
}

impl From<Vec<(i32, u64)>> for LatencyHistogram {
    fn from(mut buckets: Vec<(i32, u64)>) -> Self {
        buckets.sort_unstable_by_key(|b| b.0);
        let mut pairs: Vec<(i32, u64)> = Vec::with_capacity(buckets.len());
        for (i, count) in buckets.into_iter().filter(|b| b.1 > 0) {
            match pairs.last_mut() {
                Some((last, sum)) if *last == i => *sum = sum.saturating_add(count),
                _ => pairs.push((i, count)),
            }
        }
        LatencyHistogram { buckets: Buckets::from_sorted(pairs) }
    }
}

impl From<LatencyHistogram> for Vec<(i32, u64)> {
    fn from(h: LatencyHistogram) -> Self {
        match h.buckets {
            Buckets::Sparse(pairs) => pairs,
            dense => dense.iter().collect(),
        }
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
        let mut pairs: Vec<(i32, u64)> = Vec::new();
        for i in indices {
            match pairs.last_mut() {
                Some((last, count)) if *last == i => *count += 1,
                _ => pairs.push((i, 1)),
            }
        }
        LatencyHistogram { buckets: Buckets::from_sorted(pairs) }
    }

    /// Adds `count` requests of latency `ms` (ignored when not finite or negative).
    pub fn record(&mut self, ms: f64, count: u64) {
        if !ms.is_finite() || ms < 0.0 || count == 0 {
            return;
        }
        let i = index_of(ms);
        if !self.buckets.add_in_place(i, count) {
            self.merge_pairs(std::iter::once((i, count)));
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if !other.is_empty() {
            self.merge_pairs(other.buckets.iter());
        }
    }

    /// Adds `other`'s counts (ascending index, no zeros), then keeps the
    /// smaller form with no spare room: a stage's histogram is every
    /// window's merged in, for as long as the stage lasts.
    fn merge_pairs(&mut self, other: impl Iterator<Item = (i32, u64)>) {
        let merged = {
            let (mut a, mut b) = (self.buckets.iter().peekable(), other.peekable());
            let mut merged = Vec::new();
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x.0 == y.0 => {
                        let sum = (x.0, x.1.saturating_add(y.1));
                        b.next();
                        a.next();
                        sum
                    }
                    (Some(x), Some(y)) if x.0 > y.0 => b.next().expect("peeked"),
                    (Some(_), _) => a.next().expect("peeked"),
                    (None, Some(_)) => b.next().expect("peeked"),
                    (None, None) => break,
                };
                merged.push(next);
            }
            merged
        };
        self.buckets = Buckets::from_sorted(merged);
    }

    /// Heap bytes the counts hold: what a stage's evidence costs.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.iter().next().is_none()
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
        let mut last = None;
        for (i, count) in self.buckets.iter() {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return Some(upper_edge(i) / GAMMA.sqrt());
            }
            last = Some(i);
        }
        last.map(|i| upper_edge(i) / GAMMA.sqrt())
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
            .map(|(i, count)| {
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

    /// A stage's worth of lognormal windows, as the simulator draws them
    /// (p50 40 ms, p99 120 ms), without its randomness: each window the
    /// same shape shifted a little.
    fn lognormal_window(window: u64) -> LatencyHistogram {
        let sigma = 3f64.ln() / 2.326;
        let samples: Vec<f64> = (1..500u64)
            .map(|k| {
                let z = crate::analysis::stats::normal_quantile((k as f64 + (window % 7) as f64 / 7.0) / 500.0);
                (40f64.ln() + sigma * z).exp()
            })
            .collect();
        LatencyHistogram::from_samples(&samples)
    }

    #[test]
    fn a_stage_of_many_windows_holds_no_more_than_its_buckets() {
        // A stage's histogram is every window's merged in: a day of minute
        // windows holds each bucket once, 4 bytes each, and no spare room.
        let mut stage = LatencyHistogram::default();
        for window in 0..1_440 {
            stage.merge(&lognormal_window(window));
        }
        let occupied = stage.buckets.iter().count();
        let span = (stage.buckets.iter().last().unwrap().0 - stage.buckets.iter().next().unwrap().0 + 1) as usize;
        assert!(occupied <= span && span < 400, "p50 40 ms, σ 0.47: {occupied} of {span} buckets");
        assert!(matches!(stage.buckets, Buckets::Dense { .. }), "a latency distribution is a run of buckets");
        assert_eq!(stage.heap_bytes(), span * 4, "a merged histogram keeps no spare room");
        assert_eq!(stage.total(), 1_440 * 499);
    }

    #[test]
    fn the_form_never_changes_a_reading() {
        // The same counts held dense and sparse read the same quantiles and
        // the same slow requests, to the bit: the form cannot change a verdict.
        let dense = lognormal_window(3);
        assert!(matches!(dense.buckets, Buckets::Dense { .. }));
        let pairs: Vec<(i32, u64)> = dense.clone().into();
        let sparse = LatencyHistogram { buckets: Buckets::Sparse(pairs) };
        for q in [0.0, 0.01, 0.5, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(dense.quantile(q).map(f64::to_bits), sparse.quantile(q).map(f64::to_bits), "q{q}");
        }
        for ms in [1.0, 20.0, 39.9, 40.0, 80.0, 120.0, 121.3, 500.0] {
            assert_eq!(dense.count_above(ms).to_bits(), sparse.count_above(ms).to_bits(), "above {ms} ms");
        }
        assert_eq!(dense.total(), sparse.total());
        assert_eq!(dense, sparse);
        assert_eq!(serde_json::to_string(&dense).unwrap(), serde_json::to_string(&sparse).unwrap());
    }

    #[test]
    fn wide_gaps_are_held_sparse() {
        // A source's coarse buckets read as bounds: a few buckets hundreds apart.
        let buckets = BucketCounts { le_ms: vec![10.0, 100.0, 1_000.0], at_or_below: vec![50, 90, 99], total: 100 };
        let (low, high) = buckets.bounds().unwrap();
        for h in [&low, &high] {
            assert!(matches!(h.buckets, Buckets::Sparse(_)), "{h:?}");
            assert_eq!(h.heap_bytes(), 16 * h.buckets.iter().count());
        }
    }

    #[test]
    fn counts_beyond_u32_stay_exact() {
        // A busy service's baseline: one bucket past 4.3 billion requests.
        let mut h = LatencyHistogram::default();
        h.record(40.0, u32::MAX as u64);
        h.record(41.0, 10);
        assert!(matches!(h.buckets, Buckets::Dense { .. }));
        h.record(40.0, 5);
        assert!(matches!(h.buckets, Buckets::Sparse(_)), "a count beyond u32 is held as u64");
        assert_eq!(h.total(), u32::MAX as u64 + 15);
        let mut merged = LatencyHistogram::from(vec![(index_of(40.0), 3_000_000_000)]);
        merged.merge(&LatencyHistogram::from(vec![(index_of(40.0), 3_000_000_000)]));
        assert_eq!(merged.total(), 6_000_000_000);
    }

    #[test]
    fn recording_in_order_is_the_same_histogram_as_building_it_whole() {
        // The detection study records bucket by bucket, ascending; the
        // result is the one `from` builds, form included.
        let whole = lognormal_window(5);
        let mut recorded = LatencyHistogram::default();
        for (i, count) in whole.buckets.iter() {
            recorded.record(upper_edge(i) / GAMMA.sqrt(), count);
        }
        assert_eq!(recorded, whole);
        assert!(matches!(recorded.buckets, Buckets::Dense { .. }));
    }

    proptest::proptest! {
        #[test]
        fn any_order_of_records_and_merges_holds_the_counts_in_the_smaller_form(
            ops in proptest::collection::vec((-348i32..900, 1u64..5_000_000_000, proptest::bool::ANY), 0..60)
        ) {
            // Against a plain map of bucket → count: the same counts, and
            // the form `from` would choose for them (so equal histograms
            // hold the same bytes, however they were built).
            let mut h = LatencyHistogram::default();
            let mut model = std::collections::BTreeMap::<i32, u64>::new();
            for (i, count, merge) in ops {
                let ms = upper_edge(i) / GAMMA.sqrt();
                if merge {
                    h.merge(&LatencyHistogram::from(vec![(i, count)]));
                } else {
                    h.record(ms, count);
                }
                *model.entry(i).or_default() += count;
            }
            let pairs: Vec<(i32, u64)> = model.into_iter().collect();
            proptest::prop_assert_eq!(h.buckets.iter().collect::<Vec<_>>(), pairs.clone());
            let canonical = Buckets::from_sorted(pairs);
            proptest::prop_assert_eq!(
                std::mem::discriminant(&h.buckets),
                std::mem::discriminant(&canonical),
                "{:?}", h.buckets
            );
        }
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
