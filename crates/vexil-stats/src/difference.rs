//! Point estimate and sampling variance of the treatment-vs-control difference, on the
//! absolute scale (μ_b − μ_a) or the relative scale (μ_b / μ_a − 1).
//!
//! All three methods (frequentist, sequential, Bayesian) start from this same
//! approximately normal estimate; they differ only in how they turn it into intervals
//! and evidence.

use serde::{Deserialize, Serialize};

use crate::statistic::{positive, Arm};

/// Scale on which an effect is expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// μ_b − μ_a.
    Absolute,
    /// (μ_b − μ_a) / μ_a.
    Relative,
}

/// An effect estimate with the variance of its sampling distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    pub estimate: f64,
    pub variance: f64,
}

impl Difference {
    /// Absolute: variance σ_b²/n_b + σ_a²/n_a. Relative: the delta method applied to
    /// μ_b/μ_a with independent arms, σ_b²/(μ_a² n_b) + σ_a² μ_b²/(μ_a⁴ n_a).
    ///
    /// Relative effects divide by the *unadjusted* control mean while the numerator
    /// uses the CUPED-adjusted means, exactly as gbstats does, so that CUPED shrinks
    /// the variance without changing what "relative" means. `None` when the control
    /// mean is 0 (relative) or the variance is not positive.
    pub fn between(a: &Arm, b: &Arm, scale: Scale) -> Option<Self> {
        let (estimate, variance) = match scale {
            Scale::Absolute => (b.mean - a.mean, b.variance / b.n + a.variance / a.n),
            Scale::Relative => {
                let ma = a.unadjusted_mean;
                if ma == 0.0 {
                    return None;
                }
                let mb = b.unadjusted_mean;
                ((b.mean - a.mean) / ma, b.variance / (ma * ma * b.n) + a.variance * mb * mb / (ma.powi(4) * a.n))
            }
        };
        estimate.is_finite().then_some(())?;
        Some(Self { estimate, variance: positive(variance)? })
    }

    pub fn std_error(&self) -> f64 {
        self.variance.sqrt()
    }
}
