//! The OpenFeature Remote Evaluation Protocol (OFREP v1), so any OpenFeature SDK with the OFREP
//! provider evaluates vexil flags unchanged.
//!
//! `context.targetingKey` is the user id; the rest of the context are the attributes. Reasons
//! are mapped as SPEC 3 says, with the native reason in `metadata.reason`. Errors use OFREP's
//! own body, `{"key", "errorCode", "errorDetails"}`, not the API's error shape. The bulk call
//! answers `ETag` and honours `If-None-Match`: the tag covers the configuration revision and
//! the request's context, so a changed context never gets a stale 304.

use crate::http::extract::{if_none_match, Env};
use crate::http::state::AppState;
use crate::service::evaluation::{Outcome, Selection};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::hash::{DefaultHasher, Hash, Hasher};
use vexil_core::{Context, EvalError, Evaluation};

/// An OFREP failure: its status, `errorCode` and `errorDetails`.
struct Failure {
    status: StatusCode,
    code: &'static str,
    details: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, details: impl Into<String>) -> Failure {
        Failure { status, code, details: details.into() }
    }

    /// The single-flag body, which names the flag.
    fn for_flag(&self, key: &str) -> Value {
        json!({"key": key, "errorCode": self.code, "errorDetails": self.details})
    }

    fn response(&self, key: Option<&str>) -> Response {
        let body = match key {
            Some(key) => self.for_flag(key),
            None => json!({"errorCode": self.code, "errorDetails": self.details}),
        };
        (self.status, Json(body)).into_response()
    }
}

/// The attributes of an OFREP request body and its targeting key.
struct Request {
    body: Value,
}

impl Request {
    fn parse(bytes: &[u8]) -> Result<Request, Failure> {
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice::<Value>(bytes).map_err(|e| {
                Failure::new(StatusCode::BAD_REQUEST, "PARSE_ERROR", format!("the body is not valid JSON: {e}"))
            })?
        };
        match body.get("context") {
            Some(Value::Object(context)) if body.is_object() => match vexil_core::context_bounds_problem(context) {
                None => Ok(Request { body }),
                Some((field, message)) => {
                    Err(Failure::new(StatusCode::BAD_REQUEST, "INVALID_CONTEXT", format!("{field}: {message}")))
                }
            },
            None | Some(Value::Null) if body.is_object() => Ok(Request { body }),
            _ => Err(Failure::new(StatusCode::BAD_REQUEST, "INVALID_CONTEXT", "context must be a JSON object")),
        }
    }

    fn attributes(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.body.get("context").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    fn context(&self) -> Result<Context<'_>, Failure> {
        let attributes = self.attributes();
        match attributes.get("targetingKey") {
            Some(Value::String(key)) if !key.trim().is_empty() => Ok(Context::new(key, attributes)),
            _ => Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "TARGETING_KEY_MISSING",
                "context.targetingKey must be a non-empty string (it is the user id)",
            )),
        }
    }
}

/// A successful OFREP evaluation, serialised straight from the borrowed result.
#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    value: &'a Value,
    reason: &'static str,
    variant: &'a str,
    metadata: Metadata<'a>,
}

/// `metadata`: the native reason and where the answer came from.
#[derive(Serialize)]
struct Metadata<'a> {
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_id: Option<&'a str>,
}

fn success<'a>(result: &Evaluation<'a>) -> Success<'a> {
    Success {
        key: &result.flag.key,
        value: result.value,
        reason: result.reason.ofrep(),
        variant: result.variant,
        metadata: Metadata {
            reason: result.reason.name(),
            flag_id: result.flag.meta.id.as_deref(),
            flag_version: result.flag.meta.version,
            rule_id: result.rule_id,
        },
    }
}

/// One entry of a bulk answer.
#[derive(Serialize)]
#[serde(untagged)]
enum BulkEntry<'a> {
    Success(Success<'a>),
    Failure(Value),
}

/// `POST /ofrep/v1/evaluate/flags/{key}`
pub async fn flag(State(state): State<AppState>, Env(env): Env, Path(key): Path<String>, body: Bytes) -> Response {
    let request = match Request::parse(&body) {
        Ok(r) => r,
        Err(failure) => return failure.response(Some(&key)),
    };
    let ctx = match request.context() {
        Ok(ctx) => ctx,
        Err(failure) => return failure.response(Some(&key)),
    };
    let snapshot = env.snapshots.read();
    state
        .evaluator(&env, &snapshot)
        .evaluate(&ctx, Selection::One(&key), |mut outcomes| {
            match outcomes.pop().expect("one flag asked, one answered") {
                (_, Ok(result)) => Json(success(&result)).into_response(),
                (_, Err(e)) => eval_failure(&e).response(Some(&key)),
            }
        })
        .await
}

fn eval_failure(e: &EvalError) -> Failure {
    match e {
        EvalError::FlagNotFound(_) => Failure::new(StatusCode::NOT_FOUND, "FLAG_NOT_FOUND", e.to_string()),
        EvalError::InvalidUserId => Failure::new(StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING", e.to_string()),
        EvalError::UserIdTooLong => Failure::new(StatusCode::BAD_REQUEST, "INVALID_CONTEXT", e.to_string()),
    }
}

/// `POST /ofrep/v1/evaluate/flags`: every flag for the context.
pub async fn bulk(State(state): State<AppState>, Env(env): Env, headers: HeaderMap, body: Bytes) -> Response {
    let request = match Request::parse(&body) {
        Ok(r) => r,
        Err(failure) => return failure.response(None),
    };
    let ctx = match request.context() {
        Ok(ctx) => ctx,
        Err(failure) => return failure.response(None),
    };
    let snapshot = env.snapshots.read();
    let etag = bulk_etag(&request, snapshot.revision);
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let flags = state.evaluator(&env, &snapshot).evaluate(&ctx, Selection::All, bulk_entries).await;
    ([(header::ETAG, etag)], flags).into_response()
}

/// The bulk answer's tag: the configuration revision and the request's context.
fn bulk_etag(request: &Request, revision: u64) -> String {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(request.attributes()).expect("JSON values serialise").hash(&mut hasher);
    format!("\"{revision}-{:016x}\"", hasher.finish())
}

fn bulk_entries(outcomes: Vec<Outcome<'_>>) -> Json<Value> {
    let flags: Vec<BulkEntry> = outcomes
        .into_iter()
        .map(|(key, outcome)| match outcome {
            Ok(result) => BulkEntry::Success(success(&result)),
            Err(e) => BulkEntry::Failure(eval_failure(&e).for_flag(key)),
        })
        .collect();
    Json(json!({ "flags": flags }))
}
