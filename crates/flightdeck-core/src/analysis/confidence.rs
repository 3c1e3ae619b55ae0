//! Anytime-valid confidence sequences for an error rate, and the
//! error-margin test that is their dual.
//!
//! A version's errors are a sequence of Bernoulli trials. For every rate
//! `p`, the mixture over alternatives `q` of the likelihood ratios
//! `(q/p)^x ((1-q)/(1-p))^(n-x)` is a nonnegative martingale when the rate
//! is `p`, for any fixed set of alternatives (Robbins' method of mixtures; Howard, Ramdas, McAuliffe & Sekhon,
//! "Time-uniform, nonparametric, nonasymptotic confidence sequences", 2021).
//! Keeping only the alternatives above `p` makes it a supermartingale for
//! *every* rate at or below `p`, window after window, even when the rate
//! changes over time; by Ville's inequality it ever reaches `1/α` with
//! probability at most `α`. The rates it has not reached form the lower
//! confidence sequence: `lower_bound` is the smallest rate the data have
//! not ruled out, valid at every window at once. The mirror image gives the
//! upper bound. Both depend on the counts only, so the state is four numbers
//! per version.
//!
//! The error-margin test is the interval's dual: canary minus stable is at
//! least `lower(canary) − upper(stable)` and at most `upper(canary) −
//! lower(stable)`, each bound at its share of the level (a union bound), and
//! the test *fails* exactly when that lower end is past the margin and
//! *passes* exactly when the upper end is inside it. What is printed is what
//! is decided.
//!
//! **Overdispersion.** Real errors come in bursts (a bad pod, a retry storm),
//! so a window's count varies more than a binomial's. The bounds use
//! effective counts, errors and requests divided by the design effect φ
//! (Rao & Scott, "The analysis of categorical data from complex sample
//! surveys", JASA 1981): φ is Pearson's χ² of the per-window counts over its
//! degrees of freedom, windows being the independent units, shrunk towards 1
//! by [`PRIOR_WINDOWS`] windows and never below 1; before [`MIN_WINDOWS`]
//! windows it is infinite (no window-level evidence yet). What stays out of
//! reach: a canary whose first few windows are all bursts looks like a
//! regression, as it would to anyone reading those windows. Binomial traffic keeps φ
//! near 1 and pays almost nothing; bursty traffic widens the bounds by √φ,
//! as a quasi-binomial model does.

use serde::{Deserialize, Serialize};

/// Alternatives of the mixture: the rate under test with its odds
/// multiplied (or divided) by `ODDS_STEP`, its square, … up to
/// `ODDS_STEP`^`ODDS_STEPS` (×1.3 to ×8.2), the j-th weighted ∝ 1/j. The
/// effects a margin must catch are small (+1 pp on 0.5 % is odds ×3, a
/// canary 1 pp past the margin ×1.6, stable's own bound ×1.1–1.5), so the
/// weight sits there. An equal-weight grid up to ×66 paid ln 16 = 2.8 nats
/// for alternatives no margin needs: on the expected counts of the
/// detection grid's error cells, windows to a rollback over the
/// information limit's went from 2.00× to 1.78× on average (1.46× to 1.36×
/// with stable's rate known). Any fixed weights summing to 1 keep the
/// mixture a supermartingale, so the level holds whatever they are.
const ODDS_STEP: f64 = 1.3;
const ODDS_STEPS: i32 = 8;
/// Windows of binomial dispersion the estimate of φ starts from.
pub const PRIOR_WINDOWS: f64 = 2.0;
/// Windows are the units: fewer than this cannot show how bursty errors
/// are (at 30,000 requests a window a burst is as precise as a regression),
/// so until then the bounds say nothing ([`YOUNG_PHI`] = ∞). The error
/// ceiling still runs from the first window.
pub const MIN_WINDOWS: u64 = 3;
pub const YOUNG_PHI: f64 = f64::INFINITY;

/// One version's error counts over some windows, with the sum Pearson's
/// dispersion statistic needs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Windows with requests.
    pub windows: u64,
    pub errors: f64,
    pub requests: f64,
    /// Σ errors² / requests over the windows.
    pub square_sum: f64,
}

impl Tally {
    pub fn add(&mut self, errors: u64, requests: u64) {
        self.add_counts(errors.min(requests) as f64, requests as f64);
    }

    /// One window's `x` hits in `n` trials, which may be fractional (the
    /// requests slower than a threshold, read from a histogram).
    pub fn add_counts(&mut self, x: f64, n: f64) {
        if n.is_nan() || n <= 0.0 || !x.is_finite() {
            return;
        }
        let x = x.clamp(0.0, n);
        self.windows += 1;
        self.errors += x;
        self.requests += n;
        self.square_sum += x * x / n;
    }

    /// The design effect φ ≥ 1: Pearson's χ² of the windows' counts against
    /// the pooled rate over its k − 1 degrees of freedom, shrunk towards 1
    /// by [`PRIOR_WINDOWS`]; [`YOUNG_PHI`] before [`MIN_WINDOWS`] windows.
    pub fn dispersion(&self) -> f64 {
        if self.windows < MIN_WINDOWS {
            return YOUNG_PHI;
        }
        if self.errors <= 0.0 || self.errors >= self.requests {
            return 1.0;
        }
        let p = self.errors / self.requests;
        // Σ (x − n p)² / (n p (1 − p)) = (Σ x²/n − p Σ x) / (p (1 − p)).
        let chi2 = ((self.square_sum - p * self.errors) / (p * (1.0 - p))).max(0.0);
        ((chi2 + PRIOR_WINDOWS) / (self.windows as f64 - 1.0 + PRIOR_WINDOWS)).max(1.0)
    }

    /// Effective (errors, requests) at design effect `phi`: none at all at φ = ∞.
    pub fn effective(&self, phi: f64) -> (f64, f64) {
        if phi.is_infinite() {
            return (0.0, 0.0);
        }
        let phi = phi.max(1.0);
        (self.errors / phi, self.requests / phi)
    }

    pub fn rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors / self.requests)
    }
}

/// ln of each alternative's odds ratio, `ODDS_STEP`^j for j = 1..=ODDS_STEPS,
/// with the ln of its weight (∝ 1/j, summing to 1).
fn log_odds_ratios() -> impl Iterator<Item = (f64, f64)> {
    let harmonic: f64 = (1..=ODDS_STEPS).map(|j| 1.0 / j as f64).sum();
    (1..=ODDS_STEPS).map(move |j| (j as f64 * ODDS_STEP.ln(), -(j as f64 * harmonic).ln()))
}

/// ln of the mixture e-value against rate `p` from `x` errors in `n`
/// requests: over the alternatives above `p` (`above`, evidence the rate
/// exceeds `p`) or below it. Alternative j has the odds of `p` times
/// r = `ODDS_STEP`^±j, so q = r p / (1 + p (r − 1)) stays in (0, 1) and its
/// likelihood ratio is r^x / (1 + p (r − 1))^n: falling in `p` for r > 1,
/// rising for r < 1 — the bounds are where one crossing lies.
pub fn log_evidence(above: bool, x: f64, n: f64, p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let sign = if above { 1.0 } else { -1.0 };
    let (mut top, mut sum) = (f64::NEG_INFINITY, 0.0);
    for (ln_r, ln_weight) in log_odds_ratios() {
        let ln_r = sign * ln_r;
        let t = ln_weight + x * ln_r - n * (p * ln_r.exp_m1()).ln_1p();
        if t > top {
            sum = sum * (top - t).exp() + 1.0;
            top = t;
        } else {
            sum += (t - top).exp();
        }
    }
    top + sum.ln()
}

/// The smallest rate not ruled out at level `alpha` by `x` errors in `n`
/// requests, valid at every window at once. The evidence against `p` falls
/// as `p` rises, so bisection finds it, to 0.1 % of its value.
pub fn lower_bound(x: f64, n: f64, alpha: f64) -> f64 {
    remembered(true, x, n, alpha, search_lower)
}

/// A verdict asks for the same few bounds several times (its rows, the
/// fail and pass tests, the interval): the last few answers are kept.
fn remembered(lower: bool, x: f64, n: f64, alpha: f64, search: fn(f64, f64, f64) -> f64) -> f64 {
    type Memo = Vec<((bool, u64, u64, u64), f64)>;
    thread_local! {
        static MEMO: std::cell::RefCell<Memo> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let key = (lower, x.to_bits(), n.to_bits(), alpha.to_bits());
    if let Some(hit) = MEMO.with(|m| m.borrow().iter().find(|(k, _)| *k == key).map(|(_, v)| *v)) {
        return hit;
    }
    let value = search(x, n, alpha);
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 16 {
            m.remove(0);
        }
        m.push((key, value));
    });
    value
}

fn search_lower(x: f64, n: f64, alpha: f64) -> f64 {
    if n <= 0.0 || x <= 0.0 {
        return 0.0;
    }
    let level = (1.0 / alpha.clamp(1e-12, 0.5)).ln();
    let (mut lo, mut hi) = (1e-12f64, (x / n).min(1.0 - 1e-12));
    if log_evidence(true, x, n, lo) < level {
        return 0.0;
    }
    while hi - lo > 1e-3 * hi {
        let mid = if hi / lo > 4.0 { (lo * hi).sqrt() } else { (lo + hi) / 2.0 };
        if log_evidence(true, x, n, mid) >= level {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The largest rate not ruled out at level `alpha`; the mirror image of
/// [`lower_bound`], with the alternatives below.
pub fn upper_bound(x: f64, n: f64, alpha: f64) -> f64 {
    remembered(false, x, n, alpha, search_upper)
}

fn search_upper(x: f64, n: f64, alpha: f64) -> f64 {
    if n <= 0.0 {
        return 1.0;
    }
    let level = (1.0 / alpha.clamp(1e-12, 0.5)).ln();
    let (mut lo, mut hi) = ((x / n).max(1e-12), 1.0 - 1e-12);
    if log_evidence(false, x, n, hi) < level {
        return 1.0;
    }
    while hi - lo > 1e-3 * lo {
        let mid = if hi / lo > 4.0 { (lo * hi).sqrt() } else { (lo + hi) / 2.0 };
        if log_evidence(false, x, n, mid) >= level {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    lo
}

/// The error-margin test's verdict and the interval it is dual to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// Canary minus stable is at least this (the fail test's side), and
    /// at most `high` (the pass test's side); proportions.
    pub low: f64,
    pub high: f64,
}

impl Difference {
    pub fn fails(&self, margin: f64) -> bool {
        self.low > margin
    }

    pub fn passes(&self, margin: f64) -> bool {
        self.high < margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_bracket_the_observed_rate_and_narrow_with_data() {
        let (lo, hi) = (lower_bound(50.0, 1_000.0, 0.01), upper_bound(50.0, 1_000.0, 0.01));
        assert!(lo < 0.05 && 0.05 < hi, "[{lo}, {hi}]");
        let (lo2, hi2) = (lower_bound(500.0, 10_000.0, 0.01), upper_bound(500.0, 10_000.0, 0.01));
        assert!(lo < lo2 && hi2 < hi, "[{lo2}, {hi2}] inside [{lo}, {hi}]");
        assert_eq!(lower_bound(0.0, 1_000.0, 0.01), 0.0);
        assert_eq!(upper_bound(0.0, 0.0, 0.01), 1.0);
        // The bound is where the evidence crosses the level.
        let level = (100f64).ln();
        assert!(log_evidence(true, 50.0, 1_000.0, lo * 0.99) >= level);
        assert!(log_evidence(true, 50.0, 1_000.0, lo * 1.01) < level);
        assert!(log_evidence(false, 50.0, 1_000.0, hi * 1.01) >= level);
        assert!(log_evidence(false, 50.0, 1_000.0, hi * 0.99) < level);
        eprintln!("[{lo}, {hi}] [{lo2}, {hi2}]");
    }

    #[test]
    fn the_bounds_hold_at_every_window_in_all_but_alpha_of_runs() {
        let mut state = 11u64;
        let mut uniform = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (runs, alpha, p) = (300, 0.05, 0.02);
        let mut missed = 0;
        for _ in 0..runs {
            let mut t = Tally::default();
            for _ in 0..100 {
                let hits = (0..50).filter(|_| uniform() < p).count() as u64;
                t.add(hits, 50);
                if lower_bound(t.errors, t.requests, alpha) > p || upper_bound(t.errors, t.requests, alpha) < p {
                    missed += 1;
                    break;
                }
            }
        }
        // Each side at α: at most 2α of runs ever miss, however often looked at.
        assert!((missed as f64) < runs as f64 * 2.0 * alpha, "{missed} of {runs}");
    }

    #[test]
    fn dispersion_is_one_for_even_windows_and_large_for_bursts() {
        let mut even = Tally::default();
        let mut bursty = Tally::default();
        for i in 0..40 {
            even.add(10, 1_000);
            bursty.add(if i % 4 == 0 { 40 } else { 0 }, 1_000);
        }
        assert_eq!(even.dispersion(), 1.0);
        let mut young = Tally::default();
        young.add(40, 1_000);
        young.add(0, 1_000);
        assert_eq!(young.dispersion(), YOUNG_PHI, "two windows cannot show a burst");
        assert_eq!(young.effective(young.dispersion()), (0.0, 0.0));
        assert_eq!((lower_bound(0.0, 0.0, 0.01), upper_bound(0.0, 0.0, 0.01)), (0.0, 1.0), "nothing known");
        // 10 per window on average, all in one window of four: χ² ≈ 30 per window.
        assert!(bursty.dispersion() > 15.0, "{}", bursty.dispersion());
        let (x, n) = bursty.effective(bursty.dispersion());
        assert!((x / n - 0.01).abs() < 1e-12, "the rate is kept");
    }
}
