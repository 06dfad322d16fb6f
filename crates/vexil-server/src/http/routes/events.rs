//! `POST /v1/events` and `POST /v1/events/kinesis` (SPEC 4 and 5): batches are validated event by
//! event (partial acceptance; invalid ones go to the DLQ) and answered only once every accepted
//! event is durable in the log.

use crate::http::error::{from_bytes_rejection, ApiError};
use crate::http::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vexil_events::{BodyFormat, IngestError};

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
pub async fn ingest(State(state): State<AppState>, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> Response {
    let format = match body_format(&headers, true) {
        Ok(format) => format,
        Err(e) => return e.into_response(),
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => return from_bytes_rejection(e).into_response(),
    };
    match state.events.ingestor.ingest(&raw, format).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ingest_error(e),
    }
}

/// `POST /v1/events/kinesis`: `{"Records": [{"kinesis": {"data": base64, "sequenceNumber"}}]}` →
/// `{"batchItemFailures": [{"itemIdentifier"}]}` (the records to send again; none means all
/// were taken).
pub async fn kinesis(
    State(state): State<AppState>,
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
    match state.events.ingestor.ingest_kinesis(&raw).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ingest_error(e),
    }
}
