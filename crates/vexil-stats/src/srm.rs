//! Sample-ratio mismatch: Pearson's chi-square goodness-of-fit test of the observed
//! users per variant against the configured weights (as gbstats' `check_srm`, which is
//! `scipy.stats.chisquare` with df = k − 1).
//!
//! A mismatch means assignment or logging is broken, which invalidates every metric
//! of the experiment, hence the strict default threshold.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// p-value below which the split is flagged as mismatched.
pub const SRM_THRESHOLD: f64 = 0.001;

/// Result of the SRM check, shaped like SPEC 6's `srm` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SrmCheck {
    pub p_value: f64,
    pub ok: bool,
    /// Configured weights normalised to sum to 1.
    pub expected: Vec<f64>,
    pub observed: Vec<u64>,
}

/// χ² = Σ (o_i − e_i)² / e_i with e_i = w_i / Σw · Σo, against χ²(k − 1).
///
/// Variants with a non-positive weight are left out of the sum (they cannot receive
/// users by design) but still count towards k, matching gbstats. No users, fewer than
/// two variants or no positive weight give p = 1: there is nothing to test yet.
pub fn srm(observed: &[u64], weights: &[f64]) -> SrmCheck {
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let total_weight: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    let expected = weights.iter().map(|w| if total_weight > 0.0 { w.max(0.0) / total_weight } else { 0.0 }).collect();
    let p_value = p_value(observed, weights, total, total_weight).unwrap_or(1.0);
    SrmCheck { p_value, ok: p_value >= SRM_THRESHOLD, expected, observed: observed.to_vec() }
}

fn p_value(observed: &[u64], weights: &[f64], total: f64, total_weight: f64) -> Option<f64> {
    if total == 0.0 || total_weight <= 0.0 || observed.len() != weights.len() {
        return None;
    }
    let x: f64 = observed
        .iter()
        .zip(weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|(&o, &w)| {
            let e = w / total_weight * total;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let dist = ChiSquared::new(observed.len().checked_sub(1)? as f64).ok()?;
    Some(dist.sf(x))
}
