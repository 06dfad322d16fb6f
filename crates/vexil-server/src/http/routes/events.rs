//! `POST /v1/events` and `POST /v1/events/kinesis` (SPEC 4 and 5): batches are validated event by
//! event (partial acceptance; invalid ones go to the DLQ) and answered only once every accepted
//! event is durable in the log. `POST /v1/events/evaluation-counts` takes the evaluation counts
//! an SDK made in-process, which join the server's own (SPEC 5's evaluation tracking).

use crate::http::error::{from_bytes_rejection, ApiError};
use crate::http::extract::{ApiJson, Env};
use crate::http::state::AppState;
use crate::service::events::Reported;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use vexil_events::environment::stored;
use vexil_events::{BodyFormat, IngestError};

/// Count entries one request may carry.
const MAX_COUNTS: usize = 10_000;

/// How the body of an event request is to be read, from its `Content-Type`.
fn body_format(headers: &HeaderMap, ndjson_allowed: bool) -> Result<BodyFormat, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyFormat::Auto),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" if ndjson_allowed => Ok(BodyFormat::Ndjson),
        _ => {
            let accepted = if ndjson_allowed { "application/json or application/x-ndjson" } else { "application/json" };
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the request body must be sent with Content-Type: {accepted}"),
            )
            .with_field("Content-Type"))
        }
    }
}

/// A batch refused as a whole, in the API's error shape; 429 carries `Retry-After`.
pub fn ingest_error(e: IngestError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = ApiError::new(status, e.code, e.message).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `POST /v1/events`: a JSON array, `{"events": [...]}`, or NDJSON (`application/x-ndjson`) →
/// `{"accepted", "duplicates", "rejected": [{"index", "error"}]}`.
pub async fn ingest(
    State(state): State<AppState>,
    Env(env): Env,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let format = match body_format(&headers, true) {
        Ok(format) => format,
        Err(e) => return e.into_response(),
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => return from_bytes_rejection(e).into_response(),
    };
    match state.events.ingestor.ingest_in(stored(&env.key), &raw, format).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ingest_error(e),
    }
}

/// `POST /v1/events/kinesis`: `{"Records": [{"kinesis": {"data": base64, "sequenceNumber"}}]}` →
/// `{"batchItemFailures": [{"itemIdentifier"}]}` (the records to send again; none means all
/// were taken).
pub async fn kinesis(
    State(state): State<AppState>,
    Env(env): Env,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = body_format(&headers, false) {
        return e.into_response();
    }
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => return from_bytes_rejection(e).into_response(),
    };
    match state.events.ingestor.ingest_kinesis_in(stored(&env.key), &raw).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ingest_error(e),
    }
}

/// `{"report_id", "counts": [{"flag", "variant", "count"}]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationCountsRequest {
    /// The sender's id of this report, the same when it sends the report again.
    report_id: Option<String>,
    counts: Vec<EvaluationCount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluationCount {
    flag: String,
    variant: String,
    count: u64,
}

/// `POST /v1/events/evaluation-counts` → `{"accepted": n, "duplicate": false}`. The whole
/// request is checked before any count is taken, so a refused request can be corrected and sent
/// again without doubling. A report whose `report_id` this node counted recently is answered
/// `{"accepted": 0, "duplicate": true}` and not counted again (its reply was lost); the same id
/// with other counts is 409 `report_id_reused`.
pub async fn evaluation_counts(
    State(state): State<AppState>,
    Env(env): Env,
    ApiJson(request): ApiJson<EvaluationCountsRequest>,
) -> Result<Response, ApiError> {
    if request.counts.len() > MAX_COUNTS {
        let message = format!("at most {MAX_COUNTS} counts per request");
        return Err(ApiError::bad_request("too_many_counts", message).with_field("counts"));
    }
    for (i, c) in request.counts.iter().enumerate() {
        let problem = if !vexil_core::decode::is_valid_key(&c.flag) {
            Some(("flag", vexil_core::decode::KEY_RULE.to_string()))
        } else if c.variant.is_empty() || c.variant.len() > 128 {
            Some(("variant", "must be a variant name of 1 to 128 bytes".to_string()))
        } else if c.count == 0 {
            Some(("count", "must be a positive integer".to_string()))
        } else {
            None
        };
        if let Some((field, rule)) = problem {
            let field = format!("counts[{i}].{field}");
            return Err(ApiError::bad_request("invalid_count", format!("{field} {rule}")).with_field(field));
        }
    }
    if let Some(id) = &request.report_id {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            let message = "report_id must be 1 to 128 visible ASCII characters (a UUID, say)";
            return Err(ApiError::bad_request("invalid_report_id", message).with_field("report_id"));
        }
    }
    let counts: Vec<_> = request.counts.iter().map(|c| (c.flag.as_str(), c.variant.as_str(), c.count)).collect();
    match state.events.add_reported_counts(&env.key, request.report_id.as_deref(), &counts) {
        Reported::Counted => Ok(Json(json!({"accepted": counts.len(), "duplicate": false})).into_response()),
        Reported::Duplicate => Ok(Json(json!({"accepted": 0, "duplicate": true})).into_response()),
        Reported::IdReused => Err(ApiError::conflict(
            "report_id_reused",
            "this report_id was counted with other counts; send a new report with a new id",
        )
        .with_field("report_id")),
    }
}
