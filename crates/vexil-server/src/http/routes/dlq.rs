//! `/v1/admin/dlq`: the dead-letter queue of the request's environment — list, replay
//! (validate again and re-ingest what now passes, in that environment) and purge. All three
//! select entries with the same query parameters.

use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, Env};
use crate::http::routes::events::ingest_error;
use crate::http::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use vexil_events::{DlqFilter, DlqStage};

/// Entries listed when `limit` is not given, and the most one answer lists.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

/// `?code=&stage=ingest|processing&since=<RFC 3339>&after_id=&ids=1,2,3&limit=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqQuery {
    code: Option<String>,
    stage: Option<DlqStage>,
    since: Option<DateTime<Utc>>,
    after_id: Option<i64>,
    ids: Option<String>,
    limit: Option<usize>,
}

impl DlqQuery {
    /// The entries of environment `env` the query selects.
    fn filter(self, env: &str) -> Result<DlqFilter, ApiError> {
        let ids = self
            .ids
            .map(|list| {
                list.split(',').map(|id| id.trim().parse::<i64>()).collect::<Result<Vec<_>, _>>().map_err(|_| {
                    ApiError::bad_request("invalid_query", "ids must be entry ids separated by commas")
                        .with_field("ids")
                })
            })
            .transpose()?;
        Ok(DlqFilter {
            env: vexil_events::environment::stored(env).map(str::to_owned),
            code: self.code,
            stage: self.stage,
            since: self.since,
            after_id: self.after_id,
            ids,
            limit: self.limit,
        })
    }
}

fn unavailable(e: vexil_events::Error) -> ApiError {
    ApiError::internal(format!("the dead-letter queue cannot be read: {e}"))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, vexil_events::Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(unavailable)
}

/// `GET /v1/admin/dlq` → `{"entries": [...], "total", "next_after_id"}`, oldest first; page with
/// `after_id=<next_after_id>`.
pub async fn list(
    State(state): State<AppState>,
    Env(env): Env,
    ApiQuery(q): ApiQuery<DlqQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut filter = q.filter(&env.key)?;
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    filter.limit = Some(limit);
    let dlq = state.events.dlq.clone();
    let (entries, total) = blocking(move || Ok((dlq.list(&filter)?, dlq.count(filter.env.as_deref())?))).await?;
    let next_after_id = if entries.len() == limit { entries.last().map(|e| e.id) } else { None };
    Ok(Json(json!({"entries": entries, "total": total, "next_after_id": next_after_id})))
}

/// `POST /v1/admin/dlq/replay` → `{"replayed", "duplicates", "failed"}`. Entries that pass
/// validation now are appended to the log and leave the queue; the others stay with their new
/// error and one more attempt.
pub async fn replay(State(state): State<AppState>, Env(env): Env, ApiQuery(q): ApiQuery<DlqQuery>) -> Response {
    let filter = match q.filter(&env.key) {
        Ok(filter) => filter,
        Err(e) => return e.into_response(),
    };
    match state.events.ingestor.replay_dlq(&filter).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => ingest_error(e),
    }
}

/// `DELETE /v1/admin/dlq` → `{"purged": n}`; without parameters the environment's whole queue
/// is emptied.
pub async fn purge(
    State(state): State<AppState>,
    Env(env): Env,
    ApiQuery(q): ApiQuery<DlqQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = q.filter(&env.key)?;
    let dlq = state.events.dlq.clone();
    let purged = blocking(move || dlq.purge(&filter)).await?;
    Ok(Json(json!({ "purged": purged })))
}
