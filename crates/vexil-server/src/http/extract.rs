//! The extractors handlers take beyond axum's own: JSON bodies and queries whose rejections
//! answer in the API's error shape ([`crate::http::error`]), the conditional and audit headers
//! (`If-Match`, `If-None-Match`, `X-Vexil-Reason`), and [`Change`], what every write carries.

use crate::http::auth::{Admitted, Caller};
use crate::http::error::ApiError;
use crate::service::environments::Environment;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::Extension;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vexil_store::{ChangeMeta, EntityKind};

/// `axum::Json` with errors in the API's shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    /// Bodies sent as plain `application/json` are parsed with serde_json directly; only a body
    /// that fails goes through axum's `Json` again, whose path-tracking deserializer names the
    /// field at fault but costs a tenth of an evaluation request on every call. Anything else
    /// (other content types, `+json` types, missing headers) is axum's to accept or refuse.
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !plain_json(req.headers()) {
            let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
            return Ok(ApiJson(value));
        }
        let bytes = read_body(req).await?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(ApiJson(value)),
            Err(_) => {
                let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
                Ok(ApiJson(value))
            }
        }
    }
}

/// Whether the content type is exactly `application/json`, with or without parameters.
fn plain_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let essence = value.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
}

/// The request's body. The edge has read it whole within its limit already
/// ([`crate::http::middleware`]), so it is taken as it is, without axum's limit wrapper around
/// it again.
async fn read_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    let collected = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request("invalid_request", format!("reading the body failed: {e}")))?;
    Ok(collected.to_bytes())
}

/// An optional JSON body: empty bodies are `None`, with no content type needed (the query form
/// of evaluation); non-empty ones must be JSON.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| ApiError::bad_request("invalid_json", format!("the request body is not valid JSON: {e}")))
    }
}

/// `axum::extract::Query` with errors in the API's shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::from(rejection)),
        }
    }
}

/// Whether `If-None-Match` lists `etag` (or is `*`).
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Whether `Accept-Encoding` accepts gzip: `gzip`, `x-gzip` or `*` with a quality above 0.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            ["gzip", "x-gzip", "*"].iter().any(|c| coding.eq_ignore_ascii_case(c)) && quality > 0.0
        })
}

/// `If-Match: <version>` (quoted or not), or none.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(axum::http::header::IF_MATCH) else { return Ok(IfMatch(None)) };
        value
            .to_str()
            .ok()
            .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|version| IfMatch(Some(version)))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_header", "If-Match must be the document's version, e.g. If-Match: 3")
                    .with_field("If-Match")
            })
    }
}

/// The reason for a change, from `X-Vexil-Reason` or `?reason=`; recorded in the audit log,
/// so bounded like the text of documents.
pub struct ChangeReason(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ChangeReason {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let reason = Self::read(parts, state).await?;
        if let Some(problem) = reason.0.as_deref().and_then(vexil_core::bounds::reason_problem) {
            return Err(ApiError::bad_request("invalid_request", problem).with_field("reason"));
        }
        Ok(reason)
    }
}

impl ChangeReason {
    async fn read<S: Send + Sync>(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get("x-vexil-reason") {
            let text = value.to_str().map_err(|_| {
                ApiError::bad_request("invalid_header", "X-Vexil-Reason must be visible ASCII")
                    .with_field("X-Vexil-Reason")
            })?;
            return Ok(ChangeReason(Some(text.to_string())));
        }
        #[derive(serde::Deserialize)]
        struct ReasonQuery {
            reason: Option<String>,
        }
        let query = axum::extract::Query::<ReasonQuery>::try_from_uri(&parts.uri).map_err(ApiError::from)?;
        Ok(ChangeReason(query.0.reason))
    }
}

/// What every change request carries: the kind it is about, who makes it and why (for the
/// audit log), and the version it expects (`If-Match`).
pub struct Change {
    pub kind: EntityKind,
    pub meta: ChangeMeta,
    pub expected_version: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for Change {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Extension(kind) = Extension::<EntityKind>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let caller = Caller::from_request_parts(parts, state).await?;
        let ChangeReason(reason) = ChangeReason::from_request_parts(parts, state).await?;
        let IfMatch(expected_version) = IfMatch::from_request_parts(parts, state).await?;
        Ok(Change { kind, meta: caller.change(reason), expected_version })
    }
}

/// The request's environment, resolved from its key or `?env=` by the key layer
/// ([`crate::http::auth`]): its store and its live configuration.
pub struct Env(pub std::sync::Arc<Environment>);

impl<S: Send + Sync> FromRequestParts<S> for Env {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Admitted>()
            .map(|admitted| Env(admitted.environment.clone()))
            .ok_or_else(|| ApiError::internal("the route resolved no environment"))
    }
}

/// A replacement's body names the document of its path: a missing `key` is filled in from the
/// path; a different one is 400 `key_mismatch`.
pub fn path_key(body: &mut Value, key: &str) -> Result<(), ApiError> {
    let Some(object) = body.as_object_mut() else { return Ok(()) };
    match object.get("key") {
        None => {
            object.insert("key".into(), Value::String(key.to_owned()));
        }
        Some(k) if *k == key => {}
        Some(k) => {
            let message = format!("the body's key {k} is not the path's key \"{key}\"");
            return Err(ApiError::bad_request("key_mismatch", message).with_field("key"));
        }
    }
    Ok(())
}
