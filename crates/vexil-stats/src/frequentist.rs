//! Fixed-horizon frequentist inference: Welch's unequal-variance t-test, two-sided.
//!
//! Both the absolute and the relative difference use Student's t with the
//! Welch–Satterthwaite degrees of freedom computed from the per-arm variances, which is
//! what gbstats' `TwoSidedTTest` does (even though the relative estimate's variance is
//! a delta-method variance, not a plain two-sample one).

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::difference::Difference;
use crate::statistic::{finite, Arm};

/// A confidence interval and p-value at a given alpha.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inference {
    pub ci: [f64; 2],
    pub p_value: f64,
}

/// Welch–Satterthwaite degrees of freedom:
/// (s_a²/n_a + s_b²/n_b)² / (s_a⁴/(n_a²(n_a−1)) + s_b⁴/(n_b²(n_b−1))).
pub fn welch_df(a: &Arm, b: &Arm) -> Option<f64> {
    let va = a.variance / a.n;
    let vb = b.variance / b.n;
    let df = (va + vb).powi(2) / (va * va / (a.n - 1.0) + vb * vb / (b.n - 1.0));
    finite(df).filter(|df| *df > 0.0)
}

/// The two-sided critical value t_{1−α/2, df}. It is the expensive part of a t-test
/// (an inverse incomplete beta function), and the absolute and relative effects of one
/// comparison share it, so callers compute it once.
pub fn t_critical(df: f64, alpha: f64) -> Option<f64> {
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    finite(t.inverse_cdf(1.0 - alpha / 2.0))
}

/// Two-sided t-test of H₀: effect = 0 with the interval estimate ± `critical` · se.
pub fn t_test(d: &Difference, df: f64, critical: f64) -> Option<Inference> {
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    // 2·F(−|t|) rather than 2·(1 − F(|t|)) keeps precision for tiny p-values.
    let p_value = 2.0 * t.cdf(-(d.estimate / d.std_error()).abs());
    Some(Inference { ci: t_interval(d, critical)?, p_value: finite(p_value)? })
}

/// estimate ± critical · se.
pub fn t_interval(d: &Difference, critical: f64) -> Option<[f64; 2]> {
    let width = finite(critical * d.std_error())?;
    Some([d.estimate - width, d.estimate + width])
}
