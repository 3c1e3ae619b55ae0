//! The few statistics the verdict needs, written out (the core has no stats
//! crate). Tests return a one-sided confidence, `1 - p`, that the canary is
//! worse than the stated limit.

/// Standard normal CDF, Φ(x) = erfc(-x/√2) / 2.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function, Chebyshev fit from Numerical Recipes
/// (`erfcc`): fractional error below 1.2e-7 everywhere, so tail
/// probabilities stay accurate where 1 - erf(x) would cancel to 0.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let tail = t * poly.exp();
    if x >= 0.0 {
        tail
    } else {
        2.0 - tail
    }
}

/// The z with Φ(z) = p, by bisection on `normal_cdf` (|z| ≤ 10 covers
/// every confidence a plan can ask for; 64 halvings reach f64 precision).
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..64 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// Confidence that canary's error proportion exceeds stable's by more
/// than `margin` (a proportion, 0.01 = 1 pp): one-sided test of
/// H0: p_c − p_s ≤ margin. Agresti–Caffo adjusted Wald: one error and one
/// success added to each group, p̃ = (x+1)/(n+2), which keeps the
/// variance positive with zero errors and is well calibrated for small
/// counts. Arguments are `(errors, requests)` with errors ≤ requests.
pub fn agresti_caffo(stable: (u64, u64), canary: (u64, u64), margin: f64) -> f64 {
    let adjusted = |(x, n): (u64, u64)| {
        let (x, n) = (x as f64 + 1.0, n as f64 + 2.0);
        (x / n, (x / n) * (1.0 - x / n) / n)
    };
    let ((p_s, var_s), (p_c, var_c)) = (adjusted(stable), adjusted(canary));
    normal_cdf((p_c - p_s - margin) / (var_s + var_c).sqrt())
}

/// Confidence that a version's error proportion exceeds `rate`: one-sample
/// Agresti–Coull z with p̃ = (x+2)/(n+4).
pub fn rate_above((x, n): (u64, u64), rate: f64) -> f64 {
    let (x, n) = (x as f64 + 2.0, n as f64 + 4.0);
    let p = x / n;
    normal_cdf((p - rate) / (p * (1.0 - p) / n).sqrt())
}

/// One-sided lower bound of the error proportion at `confidence` (Wilson
/// score interval): a cautious rate that a handful of errors on a small
/// window cannot inflate. 0 without requests.
pub fn wilson_lower((x, n): (u64, u64), confidence: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (x, n, z) = (x as f64, n as f64, normal_quantile(confidence));
    let (p, z2) = (x / n, z * z);
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// One-sided upper bound of the error proportion at `confidence` (Wilson
/// score interval); 1 without requests (nothing is known).
pub fn wilson_upper((x, n): (u64, u64), confidence: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    1.0 - wilson_lower((n - x.min(n), n), confidence)
}

/// Kullback–Leibler divergence of Bernoulli(p) from Bernoulli(q), nats: the
/// expected log-likelihood ratio per request when the truth is `p`.
pub fn bernoulli_kl(p: f64, q: f64) -> f64 {
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    let (q, p) = (q.clamp(1e-12, 1.0 - 1e-12), p.clamp(0.0, 1.0));
    term(p, q) + term(1.0 - p, 1.0 - q)
}

/// Result of a Mann-Whitney U test of canary against stable.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // `u` and `z` are read by the tests; kept for diagnostics.
pub struct MannWhitney {
    /// U of the canary sample: pairs where canary is slower, ties count ½.
    pub u: f64,
    pub z: f64,
    /// Confidence that canary latencies are stochastically greater.
    pub confidence: f64,
}

/// One-sided Mann-Whitney U (Kayenta's comparison), normal approximation
/// with tie correction and continuity correction. One sort of the pooled
/// samples, then average ranks per run of ties: O(n log n), so 10,000-sample
/// windows are cheap. Non-finite samples are dropped; `None` when a side
/// has no samples or every value is tied (no ordering to test).
pub fn mann_whitney(stable: &[f64], canary: &[f64]) -> Option<MannWhitney> {
    let tagged = |xs: &[f64], is_canary: bool| {
        xs.iter().filter(|v| v.is_finite()).map(move |&v| (v, is_canary)).collect::<Vec<_>>()
    };
    let mut pooled = tagged(stable, false);
    pooled.extend(tagged(canary, true));
    let n_c = pooled.iter().filter(|(_, is_canary)| *is_canary).count() as f64;
    let n = pooled.len() as f64;
    let n_s = n - n_c;
    if n_c == 0.0 || n_s == 0.0 {
        return None;
    }
    pooled.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (mut canary_rank_sum, mut tie_sum) = (0.0, 0.0);
    let mut start = 0;
    while start < pooled.len() {
        let end = start + pooled[start..].iter().take_while(|(v, _)| *v == pooled[start].0).count();
        // Ranks start+1 ..= end share their average.
        let (ties, avg_rank) = ((end - start) as f64, (start + 1 + end) as f64 / 2.0);
        let canaries = pooled[start..end].iter().filter(|(_, is_canary)| *is_canary).count() as f64;
        canary_rank_sum += avg_rank * canaries;
        tie_sum += ties * ties * ties - ties;
        start = end;
    }
    let u = canary_rank_sum - n_c * (n_c + 1.0) / 2.0;
    let mean = n_s * n_c / 2.0;
    let variance = n_s * n_c / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0)));
    if variance.is_nan() || variance <= 0.0 {
        return None;
    }
    // −0.5: continuity correction towards the null (as scipy does).
    let z = (u - mean - 0.5) / variance.sqrt();
    Some(MannWhitney { u, z, confidence: normal_cdf(z) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_tables() {
        // Reference values: 0.5 * erfc(-x / sqrt 2) in double precision.
        for (x, want) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_543),
            (-1.0, 0.158_655_253_931_457),
            (1.96, 0.975_002_104_851_780),
            (3.0, 0.998_650_101_968_370),
            (-3.0, 0.001_349_898_031_630),
        ] {
            let got = normal_cdf(x);
            assert!((got - want).abs() < 1e-7, "Φ({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn agresti_caffo_hand_computed() {
        // Stable 8/98, canary 18/98, margin 5 pp. Adding one error and one
        // success per group: p̃s = 9/100 = 0.09, p̃c = 19/100 = 0.19.
        // SE = √(0.19·0.81/100 + 0.09·0.91/100) = √0.002358 = 0.0485592,
        // z = (0.19 − 0.09 − 0.05)/0.0485592 = 1.0296701, Φ(z) = 0.8484176.
        let confidence = agresti_caffo((8, 98), (18, 98), 0.05);
        assert!((confidence - 0.848_417_6).abs() < 1e-6, "{confidence}");
        // The same data against "canary is worse at all" (margin 0):
        // z = 0.10/0.0485592 = 2.0593402, Φ(z) = 0.9802692.
        assert!((agresti_caffo((8, 98), (18, 98), 0.0) - 0.980_269_2).abs() < 1e-6);
        // Zero errors on both sides: finite, and no evidence of an excess.
        let clean = agresti_caffo((0, 10_000), (0, 1_000), 0.01);
        assert!(clean < 1e-6, "{clean}");
        // No requests at all still gives a number, never NaN.
        assert!(agresti_caffo((0, 0), (0, 0), 0.01).is_finite());
    }

    #[test]
    fn ceiling_and_cautious_rate_known_values() {
        // 60/1000 against 5 %: p̃ = 62/1004 = 0.0617530, SE = √(p̃(1−p̃)/1004)
        // = 0.0075966, z = 1.5471327, Φ(z) = 0.9390844.
        assert!((rate_above((60, 1_000), 0.05) - 0.939_084_4).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.95) - 1.644_854).abs() < 1e-5);
        // Wilson lower bound, 30/1000 at 95 % one-sided: 0.0223168.
        assert!((wilson_lower((30, 1_000), 0.95) - 0.022_316_8).abs() < 1e-6);
        assert_eq!(wilson_lower((0, 1_000), 0.95), 0.0);
        assert_eq!(wilson_lower((0, 0), 0.95), 0.0);
    }

    #[test]
    fn mann_whitney_hand_computed() {
        // Stable [1,2,2,3], canary [2,3,4,5]. Canary-slower pairs: 2 beats 1
        // and ties two 2s (1 + ½ + ½ = 2), 3 beats 1,2,2 and ties 3 (3.5),
        // 4 and 5 beat all four (8): U = 13.5. Ties {2:3, 3:2} give
        // Σ(t³−t) = 30, variance 16/12·(9 − 30/56) = 11.2857,
        // z = (13.5 − 8 − 0.5)/√11.2857 = 1.48835.
        let t = mann_whitney(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(t.u, 13.5);
        assert!((t.z - 1.488_351_394).abs() < 1e-8, "{}", t.z);
        assert!((t.confidence - 0.931_670_876).abs() < 1e-6, "{}", t.confidence);
        // Fully separated, no ties: U = 9, z = 4/√5.25.
        let t = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.u, 9.0);
        assert!((t.confidence - 0.959_572_2).abs() < 1e-6);
    }

    #[test]
    fn mann_whitney_degenerate_inputs() {
        assert!(mann_whitney(&[], &[1.0]).is_none());
        assert!(mann_whitney(&[1.0], &[f64::NAN]).is_none());
        assert!(mann_whitney(&[5.0, 5.0], &[5.0, 5.0]).is_none(), "all tied");
    }
}
