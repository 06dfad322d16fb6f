//! Per-variant sufficient statistics and the per-user moments derived from them.
//!
//! The event pipeline never hands raw observations to the analysis: it keeps, per
//! experiment × variant × metric, the count of users and running sums. Everything the
//! tests need (mean, per-user variance, CUPED-adjusted mean and variance) is derived
//! here from those sums, following the definitions of GrowthBook's gbstats
//! (`ProportionStatistic`, `SampleMeanStatistic`, `RatioStatistic`,
//! `RegressionAdjustedStatistic`) so that results agree with it number for number.

use serde::{Deserialize, Serialize};

/// Sum and sum of squares of one per-user quantity.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Moments {
    /// Σv over users.
    pub sum: f64,
    /// Σv² over users.
    pub sum_squares: f64,
}

/// Pre-exposure covariate sums for CUPED: c is the user's value of the same metric
/// before exposure (0 for users without history), x the post-exposure value.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Covariate {
    /// Σc.
    pub sum: f64,
    /// Σc².
    pub sum_squares: f64,
    /// Σx·c.
    pub sum_products: f64,
}

/// Sufficient statistics of one metric in one variant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VariantStats {
    /// A 0/1 per-user outcome (SPEC kind `conversion`); Σx² = Σx, so only Σx is kept.
    /// A covariate, if any, is taken to be 0/1 as well (pre-exposure conversion).
    Proportion { n: u64, sum: f64, covariate: Option<Covariate> },
    /// An unbounded per-user value (SPEC kinds `count` and `sum`).
    Mean { n: u64, sum: f64, sum_squares: f64, covariate: Option<Covariate> },
    /// Ratio of per-user sums Σx / Σy (SPEC kinds `ratio`, and `mean` with y = per-user
    /// event count), analysed with the delta method.
    Ratio {
        n: u64,
        numerator: Moments,
        denominator: Moments,
        /// Σx·y over users.
        sum_products: f64,
    },
}

impl VariantStats {
    /// Number of users.
    pub fn users(&self) -> u64 {
        match *self {
            Self::Proportion { n, .. } | Self::Mean { n, .. } | Self::Ratio { n, .. } => n,
        }
    }

    /// Per-user mean (for ratios the ratio of sums), `None` when undefined.
    pub fn mean(&self) -> Option<f64> {
        match *self {
            Self::Proportion { n, sum, .. } | Self::Mean { n, sum, .. } => finite(sum / n as f64),
            Self::Ratio { numerator, denominator, .. } => finite(numerator.sum / denominator.sum),
        }
    }

    /// Per-user variance: p(1 − p) for proportions, the unbiased sample variance for
    /// means, and the delta-method variance of the ratio (scaled by n) for ratios.
    pub fn variance(&self) -> Option<f64> {
        match *self {
            Self::Proportion { n, sum, .. } => proportion_variance(n, sum),
            Self::Mean { n, sum, sum_squares, .. } => sample_variance(n, sum, sum_squares),
            Self::Ratio { n, numerator, denominator, sum_products } => {
                let mx = numerator.sum / n as f64;
                let my = denominator.sum / n as f64;
                let vx = sample_variance(n, numerator.sum, numerator.sum_squares)?;
                let vy = sample_variance(n, denominator.sum, denominator.sum_squares)?;
                let cxy = sample_covariance(n, numerator.sum, denominator.sum, sum_products)?;
                finite(vx / my.powi(2) - 2.0 * cxy * mx / my.powi(3) + mx.powi(2) * vy / my.powi(4))
            }
        }
    }

    fn covariate(&self) -> Option<(Moments, Covariate)> {
        match *self {
            Self::Proportion { sum, covariate: Some(c), .. } => Some((Moments { sum, sum_squares: sum }, c)),
            Self::Mean { sum, sum_squares, covariate: Some(c), .. } => Some((Moments { sum, sum_squares }, c)),
            _ => None,
        }
    }

    fn is_proportion(&self) -> bool {
        matches!(self, Self::Proportion { .. })
    }
}

/// What a two-arm test needs from one arm: the (possibly CUPED-adjusted) mean and
/// per-user variance, plus the unadjusted mean that relative effects divide by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    pub n: f64,
    pub mean: f64,
    pub unadjusted_mean: f64,
    pub variance: f64,
}

impl Arm {
    /// An arm without regression adjustment; `None` when the mean or variance is
    /// undefined or the variance is not positive (no test can be run on it).
    pub fn from_stats(stats: &VariantStats) -> Option<Self> {
        let mean = stats.mean()?;
        let variance = positive(stats.variance()?)?;
        Some(Self { n: stats.users() as f64, mean, unadjusted_mean: mean, variance })
    }
}

/// The two arms of a control-vs-treatment comparison. With CUPED covariates on both
/// sides the arms are regression-adjusted with one θ pooled over both variants, as
/// gbstats does; when the pooled covariate (or metric) has no variance θ is 0 and the
/// comparison falls back to the unadjusted statistics.
pub fn arms(control: &VariantStats, treatment: &VariantStats) -> Option<(Arm, Arm)> {
    if let (Some(a), Some(b)) = (control.covariate(), treatment.covariate()) {
        let theta = pooled_theta(control, a, treatment, b);
        if theta != 0.0 {
            return Some((adjusted_arm(control, a, theta)?, adjusted_arm(treatment, b, theta)?));
        }
    }
    Some((Arm::from_stats(control)?, Arm::from_stats(treatment)?))
}

/// θ = Cov(x, c) / Var(c) over the union of both variants.
fn pooled_theta(
    control: &VariantStats,
    (xa, ca): (Moments, Covariate),
    treatment: &VariantStats,
    (xb, cb): (Moments, Covariate),
) -> f64 {
    let n = control.users() + treatment.users();
    let binary = control.is_proportion();
    let x = Moments { sum: xa.sum + xb.sum, sum_squares: xa.sum_squares + xb.sum_squares };
    let c = Covariate {
        sum: ca.sum + cb.sum,
        sum_squares: ca.sum_squares + cb.sum_squares,
        sum_products: ca.sum_products + cb.sum_products,
    };
    let vx = moment_variance(n, x, binary).unwrap_or(0.0);
    let vc = covariate_variance(n, c, binary).unwrap_or(0.0);
    if vx == 0.0 || vc == 0.0 {
        return 0.0;
    }
    sample_covariance(n, x.sum, c.sum, c.sum_products).map_or(0.0, |cov| cov / vc)
}

/// Mean x̄ − θ·c̄ and variance Var(x) + θ²·Var(c) − 2θ·Cov(x, c) (Deng et al. 2013).
fn adjusted_arm(stats: &VariantStats, (x, c): (Moments, Covariate), theta: f64) -> Option<Arm> {
    let n = stats.users();
    let binary = stats.is_proportion();
    let nf = n as f64;
    let vx = moment_variance(n, x, binary)?;
    let vc = covariate_variance(n, c, binary)?;
    let cov = sample_covariance(n, x.sum, c.sum, c.sum_products)?;
    let unadjusted_mean = finite(x.sum / nf)?;
    Some(Arm {
        n: nf,
        mean: finite(unadjusted_mean - theta * c.sum / nf)?,
        unadjusted_mean,
        variance: positive(vx + theta * theta * vc - 2.0 * theta * cov)?,
    })
}

fn moment_variance(n: u64, m: Moments, binary: bool) -> Option<f64> {
    if binary {
        proportion_variance(n, m.sum)
    } else {
        sample_variance(n, m.sum, m.sum_squares)
    }
}

fn covariate_variance(n: u64, c: Covariate, binary: bool) -> Option<f64> {
    moment_variance(n, Moments { sum: c.sum, sum_squares: c.sum_squares }, binary)
}

fn proportion_variance(n: u64, sum: f64) -> Option<f64> {
    let p = finite(sum / n as f64)?;
    finite(p * (1.0 - p))
}

/// Unbiased sample variance from Σv and Σv²; undefined below two users.
pub(crate) fn sample_variance(n: u64, sum: f64, sum_squares: f64) -> Option<f64> {
    sample_covariance(n, sum, sum, sum_squares)
}

fn sample_covariance(n: u64, sum_a: f64, sum_b: f64, sum_products: f64) -> Option<f64> {
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    finite((sum_products - sum_a * sum_b / nf) / (nf - 1.0))
}

pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

pub(crate) fn positive(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}
