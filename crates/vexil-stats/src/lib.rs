//! Experiment statistics for vexil: pure functions from per-variant sufficient
//! statistics (n, Σx, Σx², and for ratios Σy, Σy², Σxy; for CUPED Σc, Σc², Σxc) to
//! effects, intervals, p-values, Bayesian summaries, SRM checks, corrected p-values and
//! power calculations.
//!
//! Formulas follow GrowthBook's gbstats and statsmodels and are checked against them
//! by golden vectors; `docs/statistics.md` states every formula with references.

pub mod analysis;
pub mod bayesian;
pub mod correction;
pub mod difference;
pub mod frequentist;
pub mod power;
pub mod report;
pub mod sequential;
pub mod srm;
pub mod statistic;

pub use analysis::{
    analyze, apply_correction, AnalysisConfig, Comparison, Direction, Effect, Method, MetricAnalysis, VariantResult,
};
pub use bayesian::{Prior, Risk};
pub use correction::Correction;
pub use difference::Scale;
pub use power::{minimum_detectable_effect, sample_size, Baseline, SampleSize};
pub use report::{report, ExperimentInput, ExperimentReport, MetricInput, Recommendation, Role, VariantInput};
pub use srm::{srm, SrmCheck, SRM_THRESHOLD};
pub use statistic::{Covariate, Moments, VariantStats};
