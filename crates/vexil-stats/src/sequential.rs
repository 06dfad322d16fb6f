//! Always-valid inference for continuous monitoring: the asymptotic confidence sequence
//! of Waudby-Smith et al. (2023), as used by gbstats' `SequentialTwoSidedTTest`.
//!
//! A fixed-horizon interval is only valid if looked at once; peeking every day and
//! stopping at the first significant result inflates the false-positive rate far above
//! alpha. The confidence sequence below covers the true effect simultaneously at every
//! sample size with probability ≥ 1 − alpha (asymptotically), so the experiment can be
//! stopped whenever it excludes zero.

use crate::difference::Difference;
use crate::frequentist::Inference;
use crate::statistic::finite;

/// Default tuning parameter η: the total sample size at which the sequence is tightest.
pub const DEFAULT_TUNING: f64 = 5_000.0;

/// The mixing parameter ρ chosen so the boundary is tightest at N = `tuning`
/// (eq. 161 of arXiv:2103.06476v7): ρ² = (−2 ln α + ln(−2 ln α + 1)) / η.
fn rho_squared(alpha: f64, tuning: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    (l + (l + 1.0).ln()) / tuning
}

/// Confidence sequence and always-valid p-value for a difference estimated from
/// `total_n` users in both arms.
///
/// With s² = N·Var(estimate) and ρ from [`rho_squared`], the half-width is
/// s · √( 2(Nρ² + 1) / (N²ρ²) · ln(√(Nρ² + 1) / α) )  (eq. 9), and the p-value is the
/// inverse of the mixture e-value, min(1, √(Nρ² + 1) · exp(−ρ² N θ̂² / (2 s² (Nρ² + 1))))
/// (eq. 155, with the standardised statistic N θ̂² / s²).
pub fn confidence_sequence(d: &Difference, total_n: f64, alpha: f64, tuning: f64) -> Option<Inference> {
    let p_value = sequential_p_value(d, total_n, alpha, tuning)?;
    Some(Inference { ci: sequential_interval(d, total_n, alpha, tuning)?, p_value })
}

/// The (1 − alpha) confidence sequence at the current sample size.
pub fn sequential_interval(d: &Difference, total_n: f64, alpha: f64, tuning: f64) -> Option<[f64; 2]> {
    let r2 = rho_squared(alpha, tuning);
    let nr2 = total_n * r2;
    let s2 = d.variance * total_n;
    let width = finite((s2 * 2.0 * (nr2 + 1.0) * ((nr2 + 1.0).sqrt() / alpha).ln() / (total_n * total_n * r2)).sqrt())?;
    Some([d.estimate - width, d.estimate + width])
}

fn sequential_p_value(d: &Difference, total_n: f64, alpha: f64, tuning: f64) -> Option<f64> {
    let r2 = rho_squared(alpha, tuning);
    let st2 = d.estimate * d.estimate * total_n / d.variance;
    let tr2p1 = total_n * r2 + 1.0;
    // Work in logs: the e-value overflows for very strong effects.
    let log_e = r2 * st2 / (2.0 * tr2p1) - 0.5 * tr2p1.ln();
    finite((-log_e).exp().min(1.0))
}
