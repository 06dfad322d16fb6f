//! Planning: users per variant needed to detect a relative minimum detectable effect
//! (MDE) with a two-sided test, and the MDE reachable with a given number of users.
//!
//! The power function is the normal approximation used by statsmodels, with equal
//! allocation between two variants. For an effect δ = baseline · MDE,
//!
//! power(n) = Φ((δ√n − z σ₀) / σ₁) + Φ((−δ√n − z σ₀) / σ₁),  z = z_{1−α/2},
//!
//! where σ₀ and σ₁ are the standard deviations of one user's contribution to the
//! difference under the null and under the alternative:
//!
//! * proportions (`statsmodels.stats.proportion.power_proportions_2indep`): σ₀² =
//!   2 p̄(1 − p̄) with the pooled p̄ = (p₁ + p₂)/2, σ₁² = p₁(1 − p₁) + p₂(1 − p₂);
//! * means (`statsmodels.stats.power.NormalIndPower`): σ₀² = σ₁² = 2σ².
//!
//! Both directions are solved numerically (power is monotone in n and in δ), so the
//! far tail is included exactly rather than dropped as the textbook closed form
//! n = (z_{1−α/2} + z_{1−β})² σ² / δ² does.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::statistic::{finite, positive};

/// What the metric looks like before the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Baseline {
    /// Conversion rate p in (0, 1).
    Proportion { rate: f64 },
    /// Per-user mean and variance.
    Mean { mean: f64, variance: f64 },
}

/// Users needed in each variant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleSize {
    /// The exact solution of power(n) = target.
    pub exact: f64,
    /// Rounded up to whole users.
    pub users_per_variant: u64,
}

impl Baseline {
    /// (δ, σ₀, σ₁) for a relative effect `mde`; `None` when the treated proportion
    /// leaves (0, 1) or the baseline is degenerate.
    fn spread(&self, mde: f64) -> Option<(f64, f64, f64)> {
        match *self {
            Self::Proportion { rate: p1 } => {
                let p2 = p1 * (1.0 + mde);
                let inside = |p: f64| p > 0.0 && p < 1.0;
                if !inside(p1) || !inside(p2) {
                    return None;
                }
                let pooled = (p1 + p2) / 2.0;
                Some((p2 - p1, (2.0 * pooled * (1.0 - pooled)).sqrt(), (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt()))
            }
            Self::Mean { mean, variance } => {
                let sd = (2.0 * positive(variance)?).sqrt();
                Some((mean * mde, sd, sd))
            }
        }
    }

    /// Power of a two-sided level-`alpha` test with `n` users per variant.
    pub fn power(&self, mde: f64, n: f64, alpha: f64) -> Option<f64> {
        let (delta, s0, s1) = self.spread(mde)?;
        let std = Normal::new(0.0, 1.0).ok()?;
        let z = std.inverse_cdf(1.0 - alpha / 2.0);
        let shift = delta.abs() * n.sqrt() / s1;
        let crit = z * s0 / s1;
        finite(std.cdf(shift - crit) + std.cdf(-shift - crit))
    }
}

/// Users per variant so that a relative effect `mde` is detected with probability
/// `power` by a two-sided test at level `alpha`.
pub fn sample_size(baseline: &Baseline, mde: f64, alpha: f64, power: f64) -> Option<SampleSize> {
    if !valid_levels(alpha, power) || mde == 0.0 {
        return None;
    }
    let f = |n: f64| baseline.power(mde, n, alpha).map(|p| p - power);
    let exact = solve_increasing(f, 1e-9)?;
    Some(SampleSize { exact, users_per_variant: exact.ceil() as u64 })
}

/// Smallest positive relative effect detected with probability `power` by a two-sided
/// level-`alpha` test with `n` users per variant. `None` if no effect qualifies (for
/// proportions, when even lifting the rate to 1 is not enough).
pub fn minimum_detectable_effect(baseline: &Baseline, n: f64, alpha: f64, power: f64) -> Option<f64> {
    if !valid_levels(alpha, power) || n.is_nan() || n <= 0.0 {
        return None;
    }
    let upper = match *baseline {
        Baseline::Proportion { rate } => 1.0 / rate - 1.0,
        Baseline::Mean { .. } => f64::INFINITY,
    };
    let f = |mde: f64| {
        if mde >= upper {
            return Some(f64::INFINITY);
        }
        baseline.power(mde, n, alpha).map(|p| p - power)
    };
    let mde = solve_increasing(f, 1e-12)?;
    // The bisection may have stopped at the proportion's ceiling without reaching power.
    (baseline.power(mde, n, alpha)? >= power - 1e-9).then_some(mde)
}

fn valid_levels(alpha: f64, power: f64) -> bool {
    alpha > 0.0 && alpha < 1.0 && power > alpha / 2.0 && power < 1.0
}

/// Root of an increasing function on (0, ∞) with f(0⁺) < 0: bracket by doubling from
/// `start`, then bisect to full double precision.
fn solve_increasing(f: impl Fn(f64) -> Option<f64>, start: f64) -> Option<f64> {
    let (mut lo, mut hi) = (0.0, start);
    while f(hi)? < 0.0 {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return None;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid)? < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}
