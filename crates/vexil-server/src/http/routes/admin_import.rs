//! Flags files over the API: `POST /v1/admin/import[?dry_run=true]` applies one atomically
//! (see [`crate::service::catalog::import`]), `GET /v1/admin/export` returns the stored configuration as
//! one (without server-managed fields, so it diffs cleanly under version control).

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiQuery, ChangeReason, Env};
use crate::service::catalog::{import, Catalog, ImportReport};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

pub async fn import_file(
    Env(env): Env,
    Extension(caller): Extension<Caller>,
    ChangeReason(reason): ChangeReason,
    ApiQuery(query): ApiQuery<ImportQuery>,
    ApiJson(file): ApiJson<Value>,
) -> Result<Json<ImportReport>, ApiError> {
    let meta = caller.change(reason.or_else(|| Some("import".into())));
    let report = import(env.store.as_ref(), &file, query.dry_run, &meta).await?;
    env.snapshots.catch_up(env.store.as_ref()).await;
    Ok(Json(report))
}

pub async fn export(Env(env): Env) -> Result<Json<Value>, ApiError> {
    Ok(Json(Catalog::load(env.store.as_ref()).await?.document()))
}
