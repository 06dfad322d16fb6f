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

/// Two-sided t-test of H₀: effect = 0 and the (1 − alpha) confidence interval
/// estimate ± t_{1−α/2, df} · se.
pub fn t_test(d: &Difference, df: f64, alpha: f64) -> Option<Inference> {
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let se = d.std_error();
    let stat = d.estimate / se;
    // sf(|t|) rather than 1 − cdf(|t|) keeps precision for tiny p-values.
    let p_value = 2.0 * t.cdf(-stat.abs());
    Some(Inference { ci: t_interval(d, df, alpha)?, p_value: finite(p_value)? })
}

/// estimate ± t_{1−α/2, df} · se.
pub fn t_interval(d: &Difference, df: f64, alpha: f64) -> Option<[f64; 2]> {
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let width = finite(t.inverse_cdf(1.0 - alpha / 2.0) * d.std_error())?;
    Some([d.estimate - width, d.estimate + width])
}
