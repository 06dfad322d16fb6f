//! `GET /v1/experiments/{key}/results` (SPEC 6) and `GET /v1/experiments/{key}/power`
//! (planning from the experiment's own control data).

use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, Env};
use crate::http::state::AppState;
use crate::service::environments::Environment;
use crate::service::results::{current, read_stats, variant_stats, Overrides};
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use vexil_stats::{minimum_detectable_effect, sample_size, Baseline, Correction, Method, VariantStats};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    method: Option<Method>,
    correction: Option<Correction>,
}

fn experiment(env: &Environment, key: &str) -> Result<Arc<crate::service::experiments::LiveExperiment>, ApiError> {
    env.snapshots
        .read()
        .experiments
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found("experiment_not_found", format!("experiment \"{key}\" does not exist")))
}

/// The results document, computed from what the pipeline has committed. `?method=` and
/// `?correction=` override the configured analysis for this answer.
pub async fn results(
    State(state): State<AppState>,
    Env(env): Env,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<ResultsQuery>,
) -> Result<Json<Value>, ApiError> {
    let live = experiment(&env, &key)?;
    let overrides = Overrides { method: q.method, correction: q.correction };
    let results = current(&state.results(&env), &live, overrides).await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::to_value(results).map_err(|e| ApiError::internal(e.to_string()))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerQuery {
    /// The metric to plan for; the first primary metric (or the first metric) by default.
    metric: Option<String>,
    /// Relative minimum detectable effect: answers the users needed per variant.
    mde: Option<f64>,
    /// Users per variant: answers the minimum detectable effect (default: the current users).
    users: Option<u64>,
    alpha: Option<f64>,
    power: Option<f64>,
}

/// Planning from the control variant's current data: users per variant for `mde`, and the
/// effect detectable with `users` (or with the users the experiment has now).
pub async fn power(
    State(state): State<AppState>,
    Env(env): Env,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<PowerQuery>,
) -> Result<Json<Value>, ApiError> {
    let live = experiment(&env, &key)?;
    let exp = live.experiment();
    let metric = match &q.metric {
        Some(name) => exp.metrics.iter().find(|m| &m.key == name).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("the experiment has no metric \"{name}\""))
                .with_field("metric")
        })?,
        None => exp
            .metrics
            .iter()
            .find(|m| m.role == vexil_core::experiment::MetricRole::Primary)
            .or(exp.metrics.first())
            .ok_or_else(|| ApiError::bad_request("invalid_query", "the experiment has no metrics to plan for"))?,
    };
    let alpha = q.alpha.unwrap_or(exp.analysis.alpha);
    let power = q.power.unwrap_or(0.8);
    for (name, value) in [("alpha", alpha), ("power", power)] {
        if !(value > 0.0 && value < 1.0) {
            return Err(
                ApiError::bad_request("invalid_query", format!("{name} must be between 0 and 1")).with_field(name)
            );
        }
    }
    let sources = state.results(&env);
    let (key_for_read, metric_key, control) =
        (sources.qualified(&key), metric.key.clone(), exp.variants[0].key.clone());
    let rows = read_stats(&sources, move |stats| stats.aggregates(&key_for_read)).await.map_err(ApiError::internal)?;
    let sums = rows.iter().find(|r| r.variant == control && r.metric == metric_key).map(|r| r.sums).unwrap_or_default();
    let stats = variant_stats(metric.kind, &sums);
    let baseline = match (stats, stats.mean(), stats.variance()) {
        (VariantStats::Ratio { .. }, _, _) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "planning supports conversion, count and sum metrics; use `vexil power` with a mean and variance",
            )
            .with_field("metric"))
        }
        (VariantStats::Proportion { .. }, Some(rate), _) => Baseline::Proportion { rate },
        (VariantStats::Mean { .. }, Some(mean), Some(variance)) => Baseline::Mean { mean, variance },
        _ => {
            return Err(ApiError::conflict(
                "not_enough_data",
                format!("the control variant has no data for \"{metric_key}\" yet; use `vexil power` with a baseline"),
            ))
        }
    };
    let users = q.users.unwrap_or(sums.n);
    Ok(Json(json!({
        "experiment_key": key,
        "metric": metric_key,
        "baseline": baseline,
        "alpha": alpha,
        "power": power,
        "users_per_variant": users,
        "mde": minimum_detectable_effect(&baseline, users as f64, alpha, power),
        "sample_size": q.mde.and_then(|mde| sample_size(&baseline, mde, alpha, power)).map(|n| json!({
            "mde": q.mde, "users_per_variant": n.users_per_variant
        })),
    })))
}
