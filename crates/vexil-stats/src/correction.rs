//! Multiple-testing correction of a family of p-values (all metrics × variants of an
//! experiment).
//!
//! * Holm (1979) controls the family-wise error rate: sort ascending, p̃₍ᵢ₎ =
//!   max_{j≤i} min(1, (m − j + 1) p₍ⱼ₎).
//! * Benjamini–Hochberg (1995) controls the false discovery rate: p̃₍ᵢ₎ =
//!   min_{j≥i} min(1, m p₍ⱼ₎ / j).
//!
//! Both equal `statsmodels.stats.multitest.multipletests` ("holm", "fdr_bh").

use serde::{Deserialize, Serialize};

/// Correction across the p-values of one experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    #[default]
    Holm,
    #[serde(rename = "bh")]
    BenjaminiHochberg,
    None,
}

impl Correction {
    /// Adjusted p-values, in the order given.
    pub fn adjust(self, p_values: &[f64]) -> Vec<f64> {
        let m = p_values.len();
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
        let mut adjusted = p_values.to_vec();
        let mf = m as f64;
        match self {
            Self::None => {}
            Self::Holm => {
                let mut running = 0.0_f64;
                for (rank, &i) in order.iter().enumerate() {
                    running = running.max(((mf - rank as f64) * p_values[i]).min(1.0));
                    adjusted[i] = running;
                }
            }
            Self::BenjaminiHochberg => {
                let mut running = 1.0_f64;
                for (rank, &i) in order.iter().enumerate().rev() {
                    running = running.min(mf * p_values[i] / (rank as f64 + 1.0));
                    adjusted[i] = running;
                }
            }
        }
        adjusted
    }

    /// Alpha at which to recompute intervals for `m` tests. Holm's step-down procedure
    /// has no per-comparison intervals of its own, so, as GrowthBook does, its intervals
    /// use the Bonferroni level α/m, which cover all m effects simultaneously with
    /// probability ≥ 1 − α. FDR control has no per-interval analogue that does not
    /// depend on which results were selected, so BH (and no correction) leave the
    /// intervals at α.
    pub fn interval_alpha(self, alpha: f64, m: usize) -> f64 {
        match self {
            Self::Holm if m > 0 => alpha / m as f64,
            _ => alpha,
        }
    }
}
