//! Across environments (SPEC 9): a flag in every environment the caller may read, and the
//! promotion of flags and segments from one environment to another
//! ([`crate::service::promotion`]). These routes name their environments in the path or the
//! body, so they check the caller's rights on each one themselves ([`Caller::may`]).

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ChangeReason};
use crate::http::routes::change_requests::{holds, propose};
use crate::http::state::AppState;
use crate::service::environments::Environment;
use crate::service::promotion::{self, ExpectedVersions, Selection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use vexil_store::{EntityKind, Role};

/// `GET /v1/admin/flags/{key}/environments` → `{"flag": key, "environments": {env: flag or
/// null}}` for every environment the caller may read.
pub async fn flag_everywhere(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut environments = Map::new();
    for env in state.environments.all() {
        if caller.lacks(Role::Viewer, &env.key).is_some() {
            continue;
        }
        let doc = env.store.get(EntityKind::Flag, &key).await?;
        environments.insert(env.key.to_string(), doc.map_or(Value::Null, |d| d.into_json()));
    }
    Ok(Json(json!({"flag": key, "environments": environments})))
}

/// The body of a promotion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    from: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    segments: Vec<String>,
    #[serde(default)]
    dry_run: bool,
    expected_versions: Option<ExpectedVersions>,
}

fn environment(state: &AppState, key: &str, field: &str) -> Result<Arc<Environment>, ApiError> {
    state.environments.get(key).ok_or_else(|| {
        ApiError::not_found("environment_not_found", format!("environment \"{key}\" does not exist")).with_field(field)
    })
}

/// `POST /v1/admin/environments/{to}/promote` → `{"from", "to", "dry_run", "applied",
/// "changes": [...], "expected_versions"}`; for an editor in a protected target, `202
/// {"change_request"}`. Needs the viewer role in `from` and the editor role in `to`.
pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    Path(to): Path<String>,
    ApiJson(body): ApiJson<PromoteBody>,
) -> Result<Response, ApiError> {
    let target = environment(&state, &to, "to")?;
    let source = environment(&state, &body.from, "from")?;
    caller.may(Role::Viewer, &source.key)?;
    caller.may(Role::Editor, &target.key)?;
    let selection = Selection { flags: body.flags, segments: body.segments, expected_versions: body.expected_versions };
    let changes =
        promotion::plan(source.store.as_ref(), target.store.as_ref(), (&source.key, &target.key), &selection).await?;
    let meta = caller.change(reason);
    let apply = !body.dry_run && promotion::changes_anything(&changes);
    if apply && holds(&state, &caller, &target.key).await? {
        return Ok(propose(&target, changes, Some(source.key.to_string()), &meta).await?.into_response());
    }
    if apply {
        promotion::apply(target.store.as_ref(), &source.key, &changes, &meta).await?;
        target.snapshots.catch_up(target.store.as_ref()).await;
    }
    let answer = json!({
        "from": &*source.key,
        "to": &*target.key,
        "dry_run": body.dry_run,
        "applied": apply,
        "expected_versions": promotion::expected_versions(&changes),
        "changes": changes,
    });
    Ok((StatusCode::OK, Json(answer)).into_response())
}
