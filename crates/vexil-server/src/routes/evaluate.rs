//! Flag evaluation (SPEC 3 and 4): one flag by path, the query form, and batches. All of it
//! reads the in-memory snapshot; only flags that serve an experiment reach the store, through
//! sticky assignment ([`FlagExperiments`]).

use crate::assignment::FlagExperiments;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody, OptionalJson};
use crate::events::Events;
use crate::snapshot::Snapshot;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use vexil_core::{Context, EvalEnv, EvaluationRecord};

/// `{"user_id", "context"}`. Other fields are ignored, as evaluation clients of other services
/// send extras; a `user_id` that is missing or not a string is `invalid_user_id`.
#[derive(Debug, Default, Deserialize)]
pub struct EvaluateRequest {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    flag_keys: Option<Vec<String>>,
}

/// The user id of a request, or `invalid_user_id`; blank ids are refused by the evaluator.
pub fn user_id(value: Option<&Value>) -> Result<&str, ApiError> {
    match value {
        Some(Value::String(s)) => Ok(s),
        _ => Err(ApiError::from(vexil_core::EvalError::InvalidUserId)),
    }
}

/// The context attributes: absent or `null` is empty; anything but an object is refused.
pub fn attributes(value: Option<&Value>) -> Result<&Map<String, Value>, ApiError> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    match value {
        None | Some(Value::Null) => Ok(EMPTY.get_or_init(Map::new)),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(ApiError::bad_request("invalid_context", "context must be a JSON object").with_field("context")),
    }
}

/// Evaluates one flag in `env` and counts it.
fn evaluate_one<'a>(
    events: &Events,
    snapshot: &'a Snapshot,
    key: &str,
    ctx: &Context<'a>,
    env: &EvalEnv<'a>,
) -> Result<EvaluationRecord<'a>, ApiError> {
    let evaluation = snapshot.flags.evaluate_in(key, ctx, env)?;
    snapshot.count(key, evaluation.reason);
    events.track(&evaluation, ctx.user_id());
    Ok(evaluation.record(ctx.user_id()))
}

/// `POST /v1/flags/{key}/evaluate`
pub async fn flag(
    State(state): State<AppState>,
    Path(key): Path<String>,
    ApiJson(request): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let ctx = Context::new(user_id(request.user_id.as_ref())?, attributes(request.context.as_ref())?);
    let snapshot = state.snapshots.read();
    let experiments = FlagExperiments::resolve(&state, &snapshot, &ctx, |env| {
        let _ = snapshot.flags.evaluate_in(&key, &ctx, env);
    })
    .await;
    Ok(Json(evaluate_one(&state.events, &snapshot, &key, &ctx, &experiments.env())?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct EvaluateQuery {
    flag_key: Option<String>,
    user_id: Option<String>,
}

/// `GET /v1/evaluate?flag_key=&user_id=` with an optional body `{"context"}`.
pub async fn query(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EvaluateQuery>,
    OptionalJson(body): OptionalJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let key = query
        .flag_key
        .ok_or_else(|| ApiError::bad_request("invalid_query", "flag_key is required").with_field("flag_key"))?;
    let user = query.user_id.map(Value::String);
    let body = body.unwrap_or_default();
    let ctx = Context::new(user_id(user.as_ref())?, attributes(body.context.as_ref())?);
    let snapshot = state.snapshots.read();
    let experiments = FlagExperiments::resolve(&state, &snapshot, &ctx, |env| {
        let _ = snapshot.flags.evaluate_in(&key, &ctx, env);
    })
    .await;
    Ok(Json(evaluate_one(&state.events, &snapshot, &key, &ctx, &experiments.env())?).into_response())
}

#[derive(Serialize)]
struct BatchResponse<'a> {
    flags: BTreeMap<&'a str, EvaluationRecord<'a>>,
    errors: BTreeMap<&'a str, Value>,
}

/// `POST /v1/evaluate`: the listed flags, or every flag. An unknown flag is reported in
/// `errors` without failing the others; an invalid user id fails the whole request.
pub async fn batch(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let user = user_id(request.user_id.as_ref())?;
    vexil_core::validate_user_id(user)?;
    let ctx = Context::new(user, attributes(request.context.as_ref())?);
    let snapshot = state.snapshots.read();
    let experiments = FlagExperiments::resolve(&state, &snapshot, &ctx, |env| match &request.flag_keys {
        Some(keys) => {
            for key in keys {
                let _ = snapshot.flags.evaluate_in(key, &ctx, env);
            }
        }
        None => {
            let _ = snapshot.flags.evaluate_all_in(&ctx, env);
        }
    })
    .await;
    let env = experiments.env();
    let mut response = BatchResponse { flags: BTreeMap::new(), errors: BTreeMap::new() };
    match &request.flag_keys {
        Some(keys) => {
            for key in keys {
                match evaluate_one(&state.events, &snapshot, key, &ctx, &env) {
                    Ok(record) => {
                        response.flags.insert(key, record);
                    }
                    Err(e) => {
                        response.errors.insert(key, error_value(&e.body()));
                    }
                }
            }
        }
        None => {
            for flag in snapshot.flags.flags() {
                let record = evaluate_one(&state.events, &snapshot, &flag.key, &ctx, &env)?;
                response.flags.insert(&flag.key, record);
            }
        }
    }
    Ok(Json(response).into_response())
}

fn error_value(body: &ErrorBody<'_>) -> Value {
    serde_json::to_value(body).expect("error bodies serialise")
}
