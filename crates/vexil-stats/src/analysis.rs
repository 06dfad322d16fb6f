//! The entry points the server uses: analyse one metric across its variants
//! ([`analyze`]), then correct a whole experiment's family of tests
//! ([`apply_correction`]). The result types serialise to the per-variant objects of
//! SPEC 6's results document.

use serde::{Deserialize, Serialize};

use crate::bayesian::{posterior, Prior, Risk};
use crate::correction::Correction;
use crate::difference::{Difference, Scale};
use crate::frequentist::{t_critical, t_interval, t_test, welch_df, Inference};
use crate::sequential::{confidence_sequence, sequential_interval, DEFAULT_TUNING};
use crate::statistic::{arms, Arm, VariantStats};

/// Inference method (SPEC 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Frequentist,
    Sequential,
    Bayesian,
}

/// Which way is good for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Increase,
    Decrease,
}

/// Settings of one metric's analysis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    pub method: Method,
    pub alpha: f64,
    pub direction: Direction,
    /// η of the confidence sequence (sequential method only).
    pub sequential_tuning: f64,
    /// Prior on the effect (Bayesian method only).
    pub prior: Prior,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            method: Method::Frequentist,
            alpha: 0.05,
            direction: Direction::Increase,
            sequential_tuning: DEFAULT_TUNING,
            prior: Prior::default(),
        }
    }
}

/// An effect with its interval (confidence, always-valid, or credible) and, for the
/// frequentist and sequential methods, its p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Effect {
    pub effect: f64,
    pub ci: [f64; 2],
    pub p_value: Option<f64>,
    /// What is needed to recompute `ci` at another alpha after correction.
    #[serde(skip)]
    basis: Basis,
    /// `ci` at the metric's own alpha, restored when a correction leaves alpha as is.
    #[serde(skip)]
    uncorrected_ci: [f64; 2],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Basis {
    Welch { difference: Difference, df: f64 },
    Sequential { difference: Difference, total_n: f64, tuning: f64 },
    Posterior { chance_to_win: f64, risk: Risk },
}

impl Effect {
    fn new(effect: f64, ci: [f64; 2], p_value: Option<f64>, basis: Basis) -> Self {
        Self { effect, ci, p_value, basis, uncorrected_ci: ci }
    }

    fn frequentist(difference: Difference, basis: Basis, inference: Inference) -> Self {
        Self::new(difference.estimate, inference.ci, Some(inference.p_value), basis)
    }

    /// The interval at level `alpha`; posterior intervals are not adjusted.
    /// `critical` memoises t_{1−α/2, df}, which both scales of a comparison share.
    fn interval_at(&self, alpha: f64, critical: &mut Option<Option<f64>>) -> Option<[f64; 2]> {
        match self.basis {
            Basis::Welch { difference, df } => {
                t_interval(&difference, (*critical.get_or_insert_with(|| t_critical(df, alpha)))?)
            }
            Basis::Sequential { difference, total_n, tuning } => {
                sequential_interval(&difference, total_n, alpha, tuning)
            }
            Basis::Posterior { .. } => Some(self.ci),
        }
    }
}

/// A treatment's comparison against the control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub absolute: Option<Effect>,
    pub relative: Option<Effect>,
    /// The relative effect's p-value after correction across the experiment.
    pub p_value_adjusted: Option<f64>,
    pub significant: bool,
    pub chance_to_win: Option<f64>,
    pub risk: Option<Risk>,
}

/// One variant of one metric. The control (first) has no comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VariantResult {
    pub users: u64,
    /// Per-user mean (for ratio metrics the ratio of sums), unadjusted by CUPED.
    pub mean: Option<f64>,
    /// Per-user sample variance (p(1 − p) for proportions; delta method for ratios).
    pub variance: Option<f64>,
    #[serde(flatten)]
    pub comparison: Option<Comparison>,
}

/// All variants of one metric, with the settings they were analysed with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricAnalysis {
    pub method: Method,
    pub alpha: f64,
    pub direction: Direction,
    pub variants: Vec<VariantResult>,
}

/// Analyse one metric. `variants[0]` is the control; every other variant is compared
/// with it. Significance is set as if uncorrected; [`apply_correction`] revises it.
pub fn analyze(variants: &[VariantStats], config: &AnalysisConfig) -> MetricAnalysis {
    let results = variants
        .iter()
        .enumerate()
        .map(|(i, stats)| VariantResult {
            users: stats.users(),
            mean: stats.mean(),
            variance: stats.variance(),
            comparison: (i > 0).then(|| compare(&variants[0], stats, config)),
        })
        .collect();
    let mut metric =
        MetricAnalysis { method: config.method, alpha: config.alpha, direction: config.direction, variants: results };
    apply_correction(std::slice::from_mut(&mut metric), Correction::None);
    metric
}

fn compare(control: &VariantStats, treatment: &VariantStats, config: &AnalysisConfig) -> Comparison {
    let pair = arms(control, treatment);
    // Welch's df and critical value depend on the arms only, not on the scale.
    let welch = pair.filter(|_| config.method == Method::Frequentist).and_then(|(a, b)| {
        let df = welch_df(&a, &b)?;
        Some((df, t_critical(df, config.alpha)?))
    });
    let effect = |scale| pair.and_then(|(a, b)| effect(&a, &b, scale, welch, config));
    let absolute = effect(Scale::Absolute);
    let relative = effect(Scale::Relative);
    // Chance to win and risk come from the relative-scale posterior, gbstats' default.
    let (chance_to_win, risk) = match relative.map(|e| e.basis) {
        Some(Basis::Posterior { chance_to_win, risk }) => (Some(chance_to_win), Some(risk)),
        _ => (None, None),
    };
    Comparison { absolute, relative, p_value_adjusted: None, significant: false, chance_to_win, risk }
}

fn effect(a: &Arm, b: &Arm, scale: Scale, welch: Option<(f64, f64)>, config: &AnalysisConfig) -> Option<Effect> {
    let difference = Difference::between(a, b, scale)?;
    let alpha = config.alpha;
    match config.method {
        Method::Frequentist => {
            let (df, critical) = welch?;
            let inference = t_test(&difference, df, critical)?;
            Some(Effect::frequentist(difference, Basis::Welch { difference, df }, inference))
        }
        Method::Sequential => {
            let total_n = a.n + b.n;
            let tuning = config.sequential_tuning;
            let inference = confidence_sequence(&difference, total_n, alpha, tuning)?;
            Some(Effect::frequentist(difference, Basis::Sequential { difference, total_n, tuning }, inference))
        }
        Method::Bayesian => {
            let post = posterior(
                &difference,
                scale,
                a.unadjusted_mean,
                &config.prior,
                alpha,
                config.direction == Direction::Decrease,
            )?;
            let basis = Basis::Posterior { chance_to_win: post.chance_to_win, risk: post.risk };
            Some(Effect::new(post.mean, post.credible_interval, None, basis))
        }
    }
}

/// Correct the p-values of the relative effects across every metric × treatment of an
/// experiment, set `p_value_adjusted` and `significant`, and (for Holm) widen the
/// intervals to the Bonferroni level, see [`Correction::interval_alpha`].
///
/// Significance: frequentist and sequential, adjusted p < alpha; Bayesian, chance to
/// win > 1 − alpha or < alpha (a decisive result either way — chance to win already
/// accounts for the metric's direction, and whether a decisive result is a win is
/// the sign of the effect). Bayesian results are not part of the corrected family.
pub fn apply_correction(metrics: &mut [MetricAnalysis], correction: Correction) {
    let tested: Vec<(usize, usize, f64)> = metrics
        .iter()
        .enumerate()
        .flat_map(|(m, metric)| {
            metric.variants.iter().enumerate().filter_map(move |(v, r)| {
                let p = r.comparison?.relative?.p_value?;
                Some((m, v, p))
            })
        })
        .collect();
    let p_values: Vec<f64> = tested.iter().map(|t| t.2).collect();
    let adjusted = correction.adjust(&p_values);

    for metric in metrics.iter_mut() {
        let alpha = metric.alpha;
        for comparison in metric.variants.iter_mut().filter_map(|r| r.comparison.as_mut()) {
            comparison.p_value_adjusted = None;
            comparison.significant = comparison.chance_to_win.is_some_and(|ctw| ctw > 1.0 - alpha || ctw < alpha);
        }
    }
    for (&(m, v, _), p_adj) in tested.iter().zip(adjusted) {
        let metric = &mut metrics[m];
        let interval_alpha = correction.interval_alpha(metric.alpha, p_values.len());
        let alpha = metric.alpha;
        let Some(comparison) = metric.variants[v].comparison.as_mut() else {
            continue;
        };
        comparison.p_value_adjusted = Some(p_adj);
        comparison.significant = p_adj < alpha;
        let mut critical = None;
        for effect in [&mut comparison.absolute, &mut comparison.relative].into_iter().flatten() {
            effect.ci = if interval_alpha == alpha {
                effect.uncorrected_ci
            } else {
                effect.interval_at(interval_alpha, &mut critical).unwrap_or(effect.uncorrected_ci)
            };
        }
    }
}
