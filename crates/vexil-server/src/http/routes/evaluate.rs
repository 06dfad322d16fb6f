//! Flag evaluation over HTTP (SPEC 3 and 4): one flag by path, the query form, and batches.
//! Each handler extracts the context and hands it to the evaluation service
//! ([`crate::service::evaluation`]), which evaluates, assigns, counts and tracks.

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, Env, OptionalJson};
use crate::http::json::Json;
use crate::http::state::AppState;
use crate::service::evaluation::{Outcome, Selection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use vexil_core::{Context, EvaluationRecord};

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

/// The context attributes: absent or `null` is empty; anything but an object, or one past the
/// context bounds, is refused.
pub fn attributes(value: Option<&Value>) -> Result<&Map<String, Value>, ApiError> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    match value {
        None | Some(Value::Null) => Ok(EMPTY.get_or_init(Map::new)),
        Some(Value::Object(map)) => match vexil_core::context_bounds_problem(map) {
            None => Ok(map),
            Some((field, message)) => Err(ApiError::bad_request("invalid_context", message).with_field(field)),
        },
        Some(_) => Err(ApiError::bad_request("invalid_context", "context must be a JSON object").with_field("context")),
    }
}

impl EvaluateRequest {
    fn context(&self) -> Result<Context<'_>, ApiError> {
        Ok(Context::new(user_id(self.user_id.as_ref())?, attributes(self.context.as_ref())?))
    }
}

/// The answer for one flag: its result document, or the error it failed with.
fn one_record(ctx: &Context<'_>, mut outcomes: Vec<Outcome<'_>>) -> Result<Response, ApiError> {
    let (_, outcome) = outcomes.pop().expect("one flag asked, one answered");
    Ok(crate::http::json::evaluation(&outcome?.record(ctx.user_id())))
}

/// `POST /v1/flags/{key}/evaluate`
pub async fn flag(
    State(state): State<AppState>,
    Env(env): Env,
    Path(key): Path<String>,
    ApiJson(request): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let ctx = request.context()?;
    let snapshot = env.snapshots.read();
    state.evaluator(&env, &snapshot).evaluate(&ctx, Selection::One(&key), |outcomes| one_record(&ctx, outcomes)).await
}

#[derive(Debug, Deserialize)]
pub struct EvaluateQuery {
    flag_key: Option<String>,
    user_id: Option<String>,
}

/// `GET /v1/evaluate?flag_key=&user_id=` with an optional body `{"context"}`.
pub async fn query(
    State(state): State<AppState>,
    Env(env): Env,
    ApiQuery(query): ApiQuery<EvaluateQuery>,
    OptionalJson(body): OptionalJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let key = query
        .flag_key
        .ok_or_else(|| ApiError::bad_request("invalid_query", "flag_key is required").with_field("flag_key"))?;
    let user = query.user_id.map(Value::String);
    let body = body.unwrap_or_default();
    let ctx = Context::new(user_id(user.as_ref())?, attributes(body.context.as_ref())?);
    let snapshot = env.snapshots.read();
    state.evaluator(&env, &snapshot).evaluate(&ctx, Selection::One(&key), |outcomes| one_record(&ctx, outcomes)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    user_id: Option<String>,
    /// The context as JSON text (a query string has no other way to carry an object).
    context: Option<String>,
}

/// `GET /v1/admin/flags/{key}/evaluation?user_id=&context=`: what the flag gives that user and
/// context now, as the evaluation routes answer it, without counting, tracking or assigning
/// ([`crate::service::evaluation::preview`]).
pub async fn preview(
    Env(env): Env,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
) -> Result<Response, ApiError> {
    let context: Option<Value> = match query.context.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        None => None,
        Some(text) => Some(serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request("invalid_context", format!("context must be a JSON object: {e}"))
                .with_field("context")
        })?),
    };
    let user = query.user_id.map(Value::String);
    let ctx = Context::new(user_id(user.as_ref())?, attributes(context.as_ref())?);
    let snapshot = env.snapshots.read();
    let evaluation = crate::service::evaluation::preview(&snapshot, &key, &ctx)?;
    Ok(crate::http::json::evaluation(&evaluation.record(ctx.user_id())))
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
    Env(env): Env,
    ApiJson(request): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    let ctx = request.context()?;
    vexil_core::validate_user_id(ctx.user_id())?;
    let selection = request.flag_keys.as_deref().map_or(Selection::All, Selection::Listed);
    let snapshot = env.snapshots.read();
    Ok(state.evaluator(&env, &snapshot).evaluate(&ctx, selection, |outcomes| batch_response(&ctx, outcomes)).await)
}

/// Each flag's result document, or its error in `errors`.
fn batch_response(ctx: &Context<'_>, outcomes: Vec<Outcome<'_>>) -> Response {
    let mut response = BatchResponse { flags: BTreeMap::new(), errors: BTreeMap::new() };
    for (key, outcome) in outcomes {
        match outcome {
            Ok(evaluation) => {
                response.flags.insert(key, evaluation.record(ctx.user_id()));
            }
            Err(e) => {
                response.errors.insert(key, error_value(&ApiError::from(e).body()));
            }
        }
    }
    Json(response).into_response()
}

fn error_value(body: &ErrorBody<'_>) -> Value {
    serde_json::to_value(body).expect("error bodies serialise")
}
