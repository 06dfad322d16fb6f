//! Experiment results (SPEC 6): the pipeline's committed sufficient statistics mapped onto the
//! statistics library's report, plus what only the service knows — keys, status, the time of
//! computation and the per-day series of exposed users.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use vexil_core::experiment::{
    AnalysisMethod, Correction as ConfiguredCorrection, Direction as ConfiguredDirection, Experiment, ExperimentStatus,
    MetricKind, MetricRole,
};
use vexil_events::aggregate::{AggregateRow, Sums};
use vexil_events::counters::CounterRow;
use vexil_stats::{
    report, Correction, Direction, ExperimentInput, ExperimentReport, Method, MetricInput, Moments, Role, VariantInput,
    VariantStats,
};

/// The event name of exposures (emitted by assignment); its daily unique users per variant make
/// the series.
pub const EXPOSURE_EVENT: &str = "exposure";

/// One day of the series: users first exposed per variant.
#[derive(Debug, Serialize)]
pub struct SeriesDay {
    pub date: String,
    pub variants: BTreeMap<String, SeriesUsers>,
}

#[derive(Debug, Serialize)]
pub struct SeriesUsers {
    pub users: u64,
}

/// The results document.
#[derive(Debug, Serialize)]
pub struct Results {
    pub experiment_key: String,
    pub status: ExperimentStatus,
    pub computed_at: DateTime<Utc>,
    pub correction: Correction,
    #[serde(flatten)]
    pub report: ExperimentReport,
    pub series: Vec<SeriesDay>,
}

/// `?method=` and `?correction=` override the experiment's configuration for one answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Overrides {
    pub method: Option<Method>,
    pub correction: Option<Correction>,
}

pub fn method_of(configured: AnalysisMethod) -> Method {
    match configured {
        AnalysisMethod::Frequentist => Method::Frequentist,
        AnalysisMethod::Sequential => Method::Sequential,
        AnalysisMethod::Bayesian => Method::Bayesian,
    }
}

fn correction_of(configured: ConfiguredCorrection) -> Correction {
    match configured {
        ConfiguredCorrection::Holm => Correction::Holm,
        ConfiguredCorrection::Bh => Correction::BenjaminiHochberg,
        ConfiguredCorrection::None => Correction::None,
    }
}

/// The library's view of one metric's sums in one variant.
fn variant_stats(kind: MetricKind, s: &Sums) -> VariantStats {
    match kind {
        MetricKind::Conversion => VariantStats::Proportion { n: s.n, sum: s.sum_x, covariate: None },
        MetricKind::Count | MetricKind::Sum => {
            VariantStats::Mean { n: s.n, sum: s.sum_x, sum_squares: s.sum_x2, covariate: None }
        }
        MetricKind::Mean | MetricKind::Ratio => VariantStats::Ratio {
            n: s.n,
            numerator: Moments { sum: s.sum_x, sum_squares: s.sum_x2 },
            denominator: Moments { sum: s.sum_y, sum_squares: s.sum_y2 },
            sum_products: s.sum_xy,
        },
    }
}

/// Analyses `experiment` from its aggregate rows and exposure counters.
pub fn compute(
    experiment: &Experiment,
    rows: &[AggregateRow],
    exposures: &[CounterRow],
    overrides: Overrides,
    now: DateTime<Utc>,
) -> Results {
    let sums = |variant: &str, metric: &str| {
        rows.iter().find(|r| r.variant == variant && r.metric == metric).map(|r| r.sums).unwrap_or_default()
    };
    // Every exposed user enters every metric (with 0 when they have no events), so any metric's
    // n is the variant's user count; with no metrics, the exposure counters tell.
    let users = |variant: &str| {
        let from_metrics = experiment.metrics.iter().map(|m| sums(variant, &m.key).n).max();
        from_metrics
            .unwrap_or_else(|| exposures.iter().filter(|c| c.variant == variant).map(|c| c.counter.unique_users).sum())
    };
    let analysis = &experiment.analysis;
    let correction = overrides.correction.unwrap_or_else(|| correction_of(analysis.correction));
    let input = ExperimentInput {
        variants: experiment
            .variants
            .iter()
            .map(|v| VariantInput { key: v.key.clone(), weight: f64::from(v.weight), users: users(&v.key) })
            .collect(),
        metrics: experiment
            .metrics
            .iter()
            .map(|m| MetricInput {
                key: m.key.clone(),
                kind: serde_json::to_value(m.kind)
                    .ok()
                    .and_then(|k| k.as_str().map(str::to_string))
                    .unwrap_or_default(),
                role: match m.role {
                    MetricRole::Primary => Role::Primary,
                    MetricRole::Secondary => Role::Secondary,
                    MetricRole::Guardrail => Role::Guardrail,
                },
                direction: match m.direction {
                    ConfiguredDirection::Increase => Direction::Increase,
                    ConfiguredDirection::Decrease => Direction::Decrease,
                },
                stats: experiment.variants.iter().map(|v| variant_stats(m.kind, &sums(&v.key, &m.key))).collect(),
            })
            .collect(),
        method: overrides.method.unwrap_or_else(|| method_of(analysis.method)),
        alpha: analysis.alpha,
        correction,
        min_sample_per_variant: analysis.min_sample_per_variant,
        ended: experiment.status == ExperimentStatus::Completed
            || experiment.status == ExperimentStatus::Archived
            || experiment.end_at.is_some_and(|end| end <= now),
    };
    let mut series: BTreeMap<String, SeriesDay> = BTreeMap::new();
    for c in exposures {
        let date = c.start.format("%Y-%m-%d").to_string();
        let day = series.entry(date.clone()).or_insert_with(|| SeriesDay { date, variants: BTreeMap::new() });
        day.variants.entry(c.variant.clone()).or_insert(SeriesUsers { users: 0 }).users += c.counter.unique_users;
    }
    Results {
        experiment_key: experiment.key.clone(),
        status: experiment.status,
        computed_at: now,
        correction,
        report: report(&input),
        series: series.into_values().collect(),
    }
}
