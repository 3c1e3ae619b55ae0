//! Anytime-valid sequential tests of a rate against a limit.
//!
//! Every claim the analysis makes reduces to one question about a rate: is
//! the canary's error rate above stable's plus the margin? Is the share of
//! canary requests slower than 1.1 × stable's p99 above 1 %? Each claim is a
//! test supermartingale: Wald's likelihood ratio of the window's counts, with
//! the alternative estimated from the windows *before* it (a predictable
//! plug-in; Wald 1947, and Ramdas et al., "Game-theoretic statistics and
//! safe anytime-valid inference", 2023). Under the null (rate on the other
//! side of the limit) the product of the factors has expectation ≤ 1 at every
//! window, so by Ville's inequality the chance it *ever* reaches 1/α is at
//! most α — however often it is looked at. That is what lets the engine look
//! every window without inflating false rollbacks.
//!
//! Counts are conditioned on the requests each window saw, so traffic that
//! rises and falls over the day does not bias the test (the time-inhomogeneous
//! setting of Lindon & Malek, "Anytime-valid inference for multinomial count
//! data", 2022). Latency regressions become rates too: the share of canary
//! requests above a threshold drawn from stable's quantile (a test of
//! stochastic order, as in Lindon, Sanden & Shirikian, "Rapid regression
//! detection in software deployments through sequential testing", 2022).

use serde::{Deserialize, Serialize};

/// Which side of the limit the test tries to prove the rate is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The rate is above the limit (evidence of a regression).
    Above,
    /// The rate is below the limit (evidence of health).
    Below,
}

/// One sequential test's running state.
///
/// The evidence is a mix of two test supermartingales (a mix of e-processes
/// is one): 90 % the plug-in bet, which learns the canary's rate and is
/// close to the best possible when the rate is steady, and 10 % a *shock*
/// bet that risks a fifth of its stake each window on the prior guess, so a
/// canary that turns bad all at once is caught in that very window instead
/// of the next (a plug-in bet only learns from windows already seen).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SequentialTest {
    /// ln of the plug-in e-value.
    pub log_plugin: f64,
    /// ln of the shock e-value.
    pub log_shock: f64,
    /// ln of the mixed e-value: the evidence for the claim. 0 at the start;
    /// the claim is proven when it reaches ln(1/α).
    pub log_e: f64,
    /// Hits and trials the plug-in alternative is estimated from.
    pub hits: f64,
    pub trials: f64,
}

/// Pseudo-hits the prior guess of the rate is worth: about one request in
/// error, so a window of real data outweighs it at once.
const PRIOR_HITS: f64 = 0.5;
/// Rates are kept this far from 0 and 1 so logarithms stay finite.
const EDGE: f64 = 1e-9;
/// Weight of the shock bet in the mix, and the share of its stake it risks per window.
const SHOCK_WEIGHT: f64 = 0.1;
const SHOCK_STAKE: f64 = 0.2;

/// ln(e^a + e^b) without overflow.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// ln of the likelihood ratio of `hits` in `trials` at rate `p1` against `p0`.
fn log_ratio(hits: f64, trials: f64, p1: f64, p0: f64) -> f64 {
    hits * (p1 / p0).ln() + (trials - hits) * ((1.0 - p1) / (1.0 - p0)).ln()
}

impl SequentialTest {
    /// Folds in one window: `hits` of `trials` (hits may be fractional when
    /// estimated from a histogram), against `limit`. `prior` is the rate
    /// guessed before any data (it only shapes how hard the first window bets).
    pub fn observe(&mut self, claim: Claim, hits: f64, trials: f64, limit: f64, prior: f64) {
        if trials.is_nan() || trials <= 0.0 || !hits.is_finite() || !limit.is_finite() {
            return;
        }
        let hits = hits.clamp(0.0, trials);
        let p0 = limit.clamp(EDGE, 1.0 - EDGE);
        let p1 = self.alternative(claim, p0, prior);
        if p1 != p0 {
            let factor = log_ratio(hits, trials, p1, p0);
            if factor.is_finite() {
                self.log_plugin += factor;
            }
        }
        let shock = prior.clamp(EDGE, 1.0 - EDGE);
        let on_claim_side = match claim {
            Claim::Above => shock > p0,
            Claim::Below => shock < p0,
        };
        if on_claim_side {
            let ratio = log_ratio(hits, trials, shock, p0);
            let factor = log_add((1.0 - SHOCK_STAKE).ln(), SHOCK_STAKE.ln() + ratio);
            if factor.is_finite() {
                self.log_shock += factor;
            }
        }
        self.log_e = log_add((1.0 - SHOCK_WEIGHT).ln() + self.log_plugin, SHOCK_WEIGHT.ln() + self.log_shock);
        self.hits += hits;
        self.trials += trials;
    }

    /// The alternative this window bets on, from earlier windows only: the
    /// estimated rate, moved to the limit when it sits on the null's side
    /// (then the window is not bet on at all: factor 1).
    fn alternative(&self, claim: Claim, p0: f64, prior: f64) -> f64 {
        let prior = prior.clamp(1e-6, 1.0 - 1e-6);
        let pseudo_trials = PRIOR_HITS / prior.min(1.0 - prior);
        let estimate = ((self.hits + prior * pseudo_trials) / (self.trials + pseudo_trials)).clamp(EDGE, 1.0 - EDGE);
        match claim {
            Claim::Above => estimate.max(p0),
            Claim::Below => estimate.min(p0),
        }
    }

    /// Forgets the data the alternative is estimated from (the canary may
    /// behave differently at a new weight) but keeps the evidence.
    pub fn new_estimate(&mut self) {
        self.hits *= 0.5;
        self.trials *= 0.5;
    }

    /// Share of the way to proof at level `alpha`: ln E / ln(1/α), 0 when
    /// the evidence points the other way.
    pub fn progress(&self, alpha: f64) -> f64 {
        (self.log_e / (1.0 / alpha.clamp(1e-12, 0.5)).ln()).max(0.0)
    }

    /// Whether the claim is proven at level `alpha`.
    pub fn proven(&self, alpha: f64) -> bool {
        self.progress(alpha) >= 1.0
    }

    /// Observed rate so far, if any trials.
    pub fn rate(&self) -> Option<f64> {
        (self.trials > 0.0).then(|| self.hits / self.trials)
    }

    /// Trials still needed to prove the claim at `alpha` if the rate stays
    /// where it is: the evidence gained per trial is the KL divergence of
    /// the observed rate from the limit. `None` when the data do not point
    /// towards the claim.
    pub fn trials_to_proof(&self, claim: Claim, limit: f64, alpha: f64) -> Option<f64> {
        let rate = self.rate()?;
        let towards = match claim {
            Claim::Above => rate > limit,
            Claim::Below => rate < limit,
        };
        let per_trial = super::stats::bernoulli_kl(rate, limit);
        if !towards || per_trial <= 1e-12 {
            return None;
        }
        let missing = (1.0 / alpha.clamp(1e-12, 0.5)).ln() - self.log_e;
        Some((missing / per_trial).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_window_factor_is_the_likelihood_ratio() {
        let mut t = SequentialTest::default();
        // First window bets on the prior (2.5 % vs limit 1.5 %; half a hit
        // of pseudo count = 20 trials): 3 hits in 50.
        t.observe(Claim::Above, 3.0, 50.0, 0.015, 0.025);
        let ratio = 3.0 * (0.025f64 / 0.015).ln() + 47.0 * (0.975f64 / 0.985).ln();
        assert!((t.log_plugin - ratio).abs() < 1e-12, "{} vs {ratio}", t.log_plugin);
        // The shock bet risked a fifth of its stake on the same prior.
        let shock = (0.8 + 0.2 * ratio.exp()).ln();
        assert!((t.log_shock - shock).abs() < 1e-12);
        let mixed = (0.9 * ratio.exp() + 0.1 * shock.exp()).ln();
        assert!((t.log_e - mixed).abs() < 1e-12);
        // The next window's plug-in bets on (3 + 0.5) / (50 + 20).
        let before = t.log_plugin;
        t.observe(Claim::Above, 0.0, 10.0, 0.015, 0.025);
        let p1 = 3.5 / 70.0;
        let want = 10.0 * ((1.0 - p1) / 0.985f64).ln();
        assert!((t.log_plugin - before - want).abs() < 1e-12);
    }

    #[test]
    fn no_bet_while_the_estimate_is_on_the_null_side() {
        let mut t = SequentialTest::default();
        t.observe(Claim::Above, 0.0, 1_000.0, 0.015, 0.001);
        assert_eq!(t.log_plugin, 0.0);
        t.observe(Claim::Above, 0.0, 1_000.0, 0.015, 0.001);
        assert_eq!(t.log_plugin, 0.0);
        assert!(t.log_e <= 1e-12);
    }

    #[test]
    fn proves_a_clear_excess_and_health() {
        let mut bad = SequentialTest::default();
        for _ in 0..10 {
            bad.observe(Claim::Above, 6.0, 100.0, 0.015, 0.03);
        }
        assert!(bad.proven(0.01), "{}", bad.log_e);
        let mut good = SequentialTest::default();
        for _ in 0..10 {
            good.observe(Claim::Below, 1.0, 500.0, 0.015, 0.005);
        }
        assert!(good.proven(0.05), "{}", good.log_e);
        assert!(good.log_e.is_finite());
    }

    /// Ville's inequality in practice: at the limit itself (the hardest null)
    /// the test crosses 1/α in at most about α of runs, however many windows.
    #[test]
    fn false_claims_stay_below_alpha_over_many_looks() {
        let mut state = 7u64;
        let mut uniform = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (runs, alpha, p) = (400, 0.05, 0.02);
        let mut crossed = 0;
        for _ in 0..runs {
            let mut t = SequentialTest::default();
            for _ in 0..100 {
                let hits = (0..50).filter(|_| uniform() < p).count() as f64;
                t.observe(Claim::Above, hits, 50.0, p, 0.04);
                if t.proven(alpha) {
                    crossed += 1;
                    break;
                }
            }
        }
        assert!((crossed as f64) < runs as f64 * alpha, "{crossed} of {runs}");
    }

    #[test]
    fn a_sudden_regression_is_caught_in_its_own_window() {
        let mut t = SequentialTest::default();
        for _ in 0..45 {
            t.observe(Claim::Above, 1.0, 1_000.0, 0.0117, 0.0217);
        }
        assert!(!t.proven(0.006));
        t.observe(Claim::Above, 200.0, 1_000.0, 0.0117, 0.0217);
        assert!(t.proven(0.006), "{}", t.log_e);
    }

    #[test]
    fn degenerate_windows_change_nothing() {
        let mut t = SequentialTest::default();
        t.observe(Claim::Above, 5.0, 0.0, 0.01, 0.02);
        t.observe(Claim::Above, f64::NAN, 10.0, 0.01, 0.02);
        t.observe(Claim::Above, 1.0, 10.0, f64::NAN, 0.02);
        assert_eq!(t, SequentialTest::default());
        t.observe(Claim::Above, 60.0, 60.0, 0.05, 0.1);
        assert!(t.log_e.is_finite() && t.proven(0.001), "60 of 60 above 5 %: {}", t.log_e);
    }

    #[test]
    fn time_to_proof_follows_the_divergence() {
        let mut t = SequentialTest::default();
        t.observe(Claim::Below, 1.0, 200.0, 0.015, 0.005);
        let need = t.trials_to_proof(Claim::Below, 0.015, 0.05).unwrap();
        let per = crate::analysis::stats::bernoulli_kl(0.005, 0.015);
        assert!(t.log_e < (20f64).ln());
        assert!((need - ((20f64).ln() - t.log_e) / per).abs() < 1e-6);
        assert_eq!(t.trials_to_proof(Claim::Above, 0.015, 0.05), None);
    }
}
