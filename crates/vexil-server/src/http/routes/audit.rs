//! `GET /v1/admin/audit`: the change log, newest first, filtered by entity and key.

use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, Env};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vexil_store::{AuditQuery, EntityKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    entity: Option<String>,
    key: Option<String>,
    limit: Option<u32>,
    before: Option<u64>,
}

/// The environment's records and those of no environment (keys, environments), newest first.
pub async fn list(Env(env): Env, ApiQuery(query): ApiQuery<Query>) -> Result<Json<Value>, ApiError> {
    let entity = match query.entity.as_deref() {
        None => None,
        Some(name) => Some(name.parse::<EntityKind>().map_err(|e| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "{e}; one of flag, segment, experiment, key, emergency_stop, budget, rollout_plan, environment"
                ),
            )
            .with_field("entity")
        })?),
    };
    let query = AuditQuery { entity, key: query.key, limit: query.limit, before: query.before, environment: None };
    let records = env.store.query(&query).await?;
    Ok(Json(json!({ "environment": &*env.key, "records": records })))
}
