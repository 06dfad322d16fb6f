//! The OpenFeature Remote Evaluation Protocol (OFREP v1), so any OpenFeature SDK with the OFREP
//! provider evaluates vexil flags unchanged.
//!
//! `context.targetingKey` is the user id; the rest of the context are the attributes. Reasons
//! are mapped as SPEC 3 says, with the native reason in `metadata.reason`. Errors use OFREP's
//! own body, `{"key", "errorCode", "errorDetails"}`, not the API's error shape. The bulk call
//! answers `ETag` and honours `If-None-Match`: the tag covers the configuration revision and
//! the request's context, so a changed context never gets a stale 304.
//!
//! Live updates follow OFREP's event streams (the protocol's ADR 8): the bulk answer carries
//! `eventStreams` naming `GET /ofrep/v1/event-stream` (with `?key=` for a client key, which is
//! how a browser's `EventSource` authenticates), an SSE stream sending
//! `{"type": "refetchEvaluation", "etag": "\"<revision>\""}` (envelope `event: message`,
//! `id: <revision>`) once per configuration change. The provider then re-fetches the bulk
//! evaluation with `?flagConfigEtag=<etag>`; a node that has not loaded that revision yet (another
//! node made the change) catches up with the store before answering, so the re-fetch never gets
//! the configuration the event announced the end of.

use crate::http::auth::{percent_encode, presented_secret, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{if_none_match, Env};
use crate::http::json::Json;
use crate::http::state::AppState;
use crate::service::evaluation::{Outcome, Selection};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::hash::{DefaultHasher, Hash, Hasher};
use vexil_core::{Context, EvalError, Evaluation};
use vexil_store::KeyKind;

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

/// The path of the OFREP event stream, which `eventStreams` names.
pub const EVENT_STREAM_PATH: &str = "/ofrep/v1/event-stream";

/// The bulk call's query: the SSE metadata of a re-fetch an event triggered.
#[derive(serde::Deserialize)]
pub struct BulkQuery {
    /// The `etag` of the `refetchEvaluation` event: the configuration revision it announced.
    #[serde(rename = "flagConfigEtag")]
    flag_config_etag: Option<String>,
    // `flagConfigLastModified` goes with an event's `lastModified`; vexil's events carry none,
    // so it is accepted and ignored, like any other parameter.
}

/// The revision a `flagConfigEtag` names: `"42"` as the events send it (also `42`, `W/"42"`).
fn announced_revision(etag: &str) -> Result<u64, Failure> {
    let tag = etag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let tag = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag);
    tag.parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "GENERAL",
            format!(
                "flagConfigEtag must be the etag of a refetchEvaluation event, a quoted revision like \"42\"; got {etag:?}"
            ),
        )
    })
}

/// `POST /ofrep/v1/evaluate/flags`: every flag for the context.
pub async fn bulk(
    State(state): State<AppState>,
    Env(env): Env,
    caller: Caller,
    query: Result<Query<BulkQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let announced = match query {
        Ok(Query(BulkQuery { flag_config_etag: Some(etag), .. })) => match announced_revision(&etag) {
            Ok(revision) => Some(revision),
            Err(failure) => return failure.response(None),
        },
        Ok(_) => None,
        Err(rejection) => {
            let details = format!("the query string is invalid: {}", rejection.body_text());
            return Failure::new(StatusCode::BAD_REQUEST, "GENERAL", details).response(None);
        }
    };
    let request = match Request::parse(&body) {
        Ok(r) => r,
        Err(failure) => return failure.response(None),
    };
    let ctx = match request.context() {
        Ok(ctx) => ctx,
        Err(failure) => return failure.response(None),
    };
    // An event from a node ahead of this one: load what it announced before answering.
    if announced.is_some_and(|revision| revision > env.snapshots.current().revision) {
        env.snapshots.catch_up(env.store.as_ref()).await;
    }
    let snapshot = env.snapshots.read();
    let etag = bulk_etag(&request, &env.key, snapshot.revision);
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let stream = event_stream(&caller, &headers);
    let flags = state
        .evaluator(&env, &snapshot)
        .evaluate(&ctx, Selection::All, |outcomes| bulk_entries(outcomes, stream))
        .await;
    ([(header::ETAG, etag)], flags).into_response()
}

/// The bulk answer's tag: the environment, the configuration revision (shared by all
/// environments) and the request's context.
fn bulk_etag(request: &Request, environment: &str, revision: u64) -> String {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(request.attributes()).expect("JSON values serialise").hash(&mut hasher);
    format!("\"{environment}-{revision}-{:016x}\"", hasher.finish())
}

fn bulk_entries(outcomes: Vec<Outcome<'_>>, event_stream: Value) -> Json<Value> {
    let flags: Vec<BulkEntry> = outcomes
        .into_iter()
        .map(|(key, outcome)| match outcome {
            Ok(result) => BulkEntry::Success(success(&result)),
            Err(e) => BulkEntry::Failure(eval_failure(&e).for_flag(key)),
        })
        .collect();
    Json(json!({ "flags": flags, "eventStreams": [event_stream] }))
}

/// The `eventStreams` entry: a request URI on the provider's own OFREP origin, so the answer
/// holds no host name a proxy in front of vexil would have to rewrite. For a client key the URI
/// carries the key (`?key=`), as a browser's `EventSource` cannot send headers and client keys
/// are public anyway; server and admin keys stay out of URLs and go in a header.
fn event_stream(caller: &Caller, headers: &HeaderMap) -> Value {
    let request_uri = match presented_secret(headers) {
        Some(secret) if caller.kind == KeyKind::Client => format!("{EVENT_STREAM_PATH}?key={}", percent_encode(secret)),
        _ => EVENT_STREAM_PATH.to_string(),
    };
    json!({"type": "sse", "endpoint": {"requestUri": request_uri}})
}

/// `GET /ofrep/v1/event-stream`: `refetchEvaluation` messages, one per configuration change.
/// `Last-Event-ID` (sent by reconnecting SSE clients) is the revision last announced to the
/// client; without it, or when it is older than the configuration, the stream starts with a
/// message for the current revision.
pub async fn event_stream_route(
    State(state): State<AppState>,
    Env(env): Env,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_seen = crate::http::sdk_stream::last_event_id(&headers)?;
    Ok(state.sdk_streams.of(&env.key, &env.snapshots, &state.supervisor, &state.shutdown).open_ofrep(
        env.snapshots.clone(),
        last_seen,
        state.config.sse_heartbeat,
        state.shutdown.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::sdk_stream::config_etag;

    #[test]
    fn flag_config_etags_name_a_revision() {
        assert_eq!(announced_revision(&config_etag(42)).ok(), Some(42));
        assert_eq!(announced_revision("42").ok(), Some(42));
        assert_eq!(announced_revision("W/\"7\"").ok(), Some(7));
        for bad in ["", "\"\"", "\"abc\"", "-1", "\"42", "99999999999999999999999"] {
            let failure = announced_revision(bad).expect_err(bad);
            assert_eq!((failure.status, failure.code), (StatusCode::BAD_REQUEST, "GENERAL"));
            assert!(failure.details.contains("flagConfigEtag"), "{}", failure.details);
        }
    }
}
