//! Experiment results (SPEC 6): the pipeline's committed sufficient statistics mapped onto the
//! statistics library's report, plus what only the service knows — keys, status, the time of
//! computation and the per-day series of exposed users — and `auto_conclude`, which completes
//! an experiment with its winner once the analysis may decide (at any time for the sequential
//! method, whose intervals are valid under continuous monitoring; at `end_at` for the others).

use crate::service::environments::Environment;
use crate::service::experiments::{self, LiveExperiment};
use crate::service::snapshot::Snapshots;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use vexil_core::experiment::{
    AnalysisMethod, Correction as ConfiguredCorrection, Direction as ConfiguredDirection, Experiment, ExperimentStatus,
    LifecycleAction, MetricKind, MetricRole,
};
use vexil_events::aggregate::{AggregateRow, Sums};
use vexil_events::counters::{CounterRow, Window};
use vexil_events::pipeline::Pipeline;
use vexil_events::store::Stats;
use vexil_stats::{
    report, Correction, Direction, ExperimentInput, ExperimentReport, Method, MetricInput, Moments, Role, VariantInput,
    VariantStats,
};
use vexil_store::{ChangeMeta, EntityKind, Store, Write};

/// How far back the per-day series reaches when the experiment has no `start_at`.
const SERIES_DAYS: i64 = 90;

/// The actor of the audit records `auto_conclude` writes.
pub const AUTO_CONCLUDE_ACTOR: &str = "system:auto_conclude";

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
pub fn variant_stats(kind: MetricKind, s: &Sums) -> VariantStats {
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

/// What results read and write: the pipeline's committed aggregates, the configuration, and the
/// store (auto-conclusion completes experiments).
#[derive(Clone)]
pub struct ResultsSources {
    pub pipeline: Arc<Pipeline>,
    /// The environment as the pipeline's state names it (`None`: production): results read
    /// only its events.
    pub env: Option<String>,
    pub snapshots: Arc<Snapshots>,
    pub store: Arc<dyn Store>,
}

impl ResultsSources {
    /// What results of `environment` read and write: its events' aggregates in `pipeline`, its
    /// configuration and its store.
    pub fn of(environment: &Environment, pipeline: &Arc<Pipeline>) -> ResultsSources {
        ResultsSources {
            pipeline: pipeline.clone(),
            env: vexil_events::environment::stored(&environment.key).map(str::to_owned),
            snapshots: environment.snapshots.clone(),
            store: environment.store.clone(),
        }
    }

    /// An experiment key or event name of this environment as the pipeline's state names it.
    pub fn qualified(&self, key: &str) -> String {
        vexil_events::environment::qualify(self.env.as_deref(), key).into_owned()
    }
}

/// Runs `read` on the pipeline's committed state, off the async runtime.
pub async fn read_stats<T: Send + 'static>(
    state: &ResultsSources,
    read: impl FnOnce(&dyn Stats) -> Result<T, vexil_events::Error> + Send + 'static,
) -> Result<T, String> {
    let pipeline = state.pipeline.clone();
    tokio::task::spawn_blocking(move || read(pipeline.stats()?.as_ref()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read the aggregates: {e}"))
}

/// The current results of `live`, from what the pipeline has committed.
pub async fn current(state: &ResultsSources, live: &LiveExperiment, overrides: Overrides) -> Result<Results, String> {
    let now = Utc::now();
    let key = live.experiment().key.clone();
    let qualified = state.qualified(&key);
    let exposure_event = state.qualified(EXPOSURE_EVENT);
    let from = live.experiment().start_at.unwrap_or(now - Duration::days(SERIES_DAYS));
    let (rows, exposures) = read_stats(state, move |stats| {
        let rows = stats.aggregates(&qualified)?;
        let to = now + Duration::days(1);
        let exposures = stats.variant_counters(&exposure_event, &key, Window::Day, from, to)?;
        Ok((rows, exposures))
    })
    .await?;
    Ok(compute(live.experiment(), &rows, &exposures, overrides, now))
}

/// Completes running experiments with `auto_conclude` whose analysis recommends shipping a
/// variant and may decide now; run by the safety scheduler every `safety_check_interval`.
pub async fn conclude_decided(state: &ResultsSources) {
    let snapshot = state.snapshots.current();
    for live in snapshot.experiments.iter() {
        if let Err(e) = conclude_if_decided(state, live).await {
            tracing::error!(experiment = %live.experiment().key, error = %e, "auto-conclude failed; retrying");
        }
    }
}

async fn conclude_if_decided(state: &ResultsSources, live: &LiveExperiment) -> Result<(), String> {
    let experiment = live.experiment();
    let may_decide = method_of(experiment.analysis.method) == Method::Sequential
        || experiment.end_at.is_some_and(|end| end <= Utc::now());
    if experiment.status != ExperimentStatus::Running || !experiment.analysis.auto_conclude || !may_decide {
        return Ok(());
    }
    let results = current(state, live, Overrides::default()).await?;
    let recommendation = &results.report.recommendation;
    let Some(winner) = recommendation.variant.clone().filter(|_| recommendation.decision == "ship") else {
        return Ok(());
    };
    let kind = EntityKind::Experiment;
    let stored = state.store.get(kind, &experiment.key).await.map_err(|e| e.to_string())?;
    let Some(stored) = stored else { return Ok(()) };
    let body = experiments::transition(&stored.body, LifecycleAction::Complete, Some(winner.clone()))
        .map_err(|e| e.to_string())?;
    let meta = ChangeMeta::new(AUTO_CONCLUDE_ACTOR)
        .with_reason(format!("auto-concluded: {}", recommendation.reasons.join("; ")));
    let write = Write::Update { kind, key: experiment.key.clone(), body, expected_version: Some(stored.version) };
    state.store.apply(vec![write], &meta).await.map_err(|e| e.to_string())?;
    tracing::info!(experiment = %experiment.key, winner = %winner, "experiment auto-concluded");
    state.snapshots.catch_up(state.store.as_ref()).await;
    Ok(())
}
