//! The one error shape of the API (SPEC 4): `{"error": {"code", "message", "field"}}` with the
//! fitting status; the mapping of every service error and of axum's own rejections (bad JSON,
//! wrong content type, body too large, bad query) to it, so no answer is axum's plain text; and
//! the answers to unknown routes and methods. The extractors that use it are in
//! [`crate::http::extract`].

use crate::service::assignment::AssignError;
use crate::service::catalog::{DeleteError, ImportError};
use crate::service::changes::{ApplyError, RequestError};
use crate::service::experiments::ExperimentError;
use crate::service::keys::GrantError;
use crate::service::people::PeopleError;
use crate::service::promotion::PromoteError;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use vexil_core::{EvalError, ValidationErrors};
use vexil_store::StoreError;

/// An API error: status, machine-readable code, human sentence, and the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Every validation problem, when there were several (`errors` beside `error`).
    pub problems: Option<ValidationErrors>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None, problems: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid API key is required")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// A 400 `validation_failed` naming the first problem's field and listing all of them.
    pub fn validation(problems: ValidationErrors) -> Self {
        let first = problems.first().cloned();
        let message = first.as_ref().map_or_else(|| "the document is invalid".to_string(), ToString::to_string);
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            message,
            field: first.map(|p| p.path),
            problems: Some(problems),
        }
    }

    /// The body without the status, as batch evaluation embeds it per flag.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody { code: self.code, message: &self.message, field: self.field.as_deref() }
    }
}

/// The inner object of an error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = match &self.problems {
            Some(problems) => json!({"error": self.body(), "errors": problems}),
            None => json!({"error": self.body()}),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { kind, .. } => {
                let code = match kind.as_str() {
                    "flag" => "flag_not_found",
                    "segment" => "segment_not_found",
                    "key" => "key_not_found",
                    "experiment" => "experiment_not_found",
                    "environment" => "environment_not_found",
                    "user" => "user_not_found",
                    _ => "not_found",
                };
                ApiError::not_found(code, e.to_string())
            }
            StoreError::AlreadyExists { kind, .. } => {
                let field = if *kind == vexil_store::EntityKind::User { "username" } else { "key" };
                ApiError::conflict("already_exists", e.to_string()).with_field(field)
            }
            StoreError::VersionMismatch { .. } => ApiError::conflict("version_mismatch", e.to_string()),
            StoreError::LastAdminKey { .. } => ApiError::conflict("last_admin_key", e.to_string()),
            StoreError::Backend(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        let error = if e.unknown_environment {
            ApiError::not_found("environment_not_found", e.message)
        } else {
            ApiError::bad_request("invalid_request", e.message)
        };
        error.with_field(e.field)
    }
}

impl From<PeopleError> for ApiError {
    fn from(e: PeopleError) -> Self {
        match e {
            PeopleError::Invalid(e) => ApiError::from(e),
            PeopleError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", e.to_string())
            }
            PeopleError::TooManyAttempts { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", e.to_string())
            }
            PeopleError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Changed(_) => ApiError::conflict("version_mismatch", e.to_string()),
            ApplyError::Invalid(problems) => ApiError::validation(problems),
            ApplyError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<PromoteError> for ApiError {
    fn from(e: PromoteError) -> Self {
        match e {
            PromoteError::Invalid(field, _) => {
                ApiError::bad_request("invalid_request", e.to_string()).with_field(field)
            }
            PromoteError::NotInSource { entity, .. } => {
                let code =
                    if entity == vexil_store::EntityKind::Segment { "segment_not_found" } else { "flag_not_found" };
                ApiError::not_found(code, e.to_string())
            }
            PromoteError::MissingDependencies { .. } => ApiError::conflict("missing_dependencies", e.to_string()),
            PromoteError::Stale(_) => {
                ApiError::conflict("version_mismatch", e.to_string()).with_field("expected_versions")
            }
            PromoteError::Apply(e) => ApiError::from(e),
            PromoteError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotFound(_) => ApiError::not_found("change_request_not_found", e.to_string()),
            RequestError::Closed { .. } => ApiError::conflict("change_request_closed", e.to_string()),
            RequestError::OwnApproval(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            RequestError::Apply(e) => ApiError::from(e),
            RequestError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<AssignError> for ApiError {
    fn from(e: AssignError) -> Self {
        match e {
            AssignError::Draft(_) => ApiError::not_found("experiment_not_assignable", e.to_string()),
            AssignError::WriterStopped => ApiError::internal(e.to_string()),
            AssignError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<ExperimentError> for ApiError {
    fn from(e: ExperimentError) -> Self {
        match e {
            ExperimentError::Invalid(problems) => ApiError::validation(problems),
            ExperimentError::Conflict { code, field, message } => ApiError::conflict(code, message).with_field(field),
            ExperimentError::Corrupt(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Invalid(problems) => ApiError::validation(problems),
            ImportError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<DeleteError> for ApiError {
    fn from(e: DeleteError) -> Self {
        match e {
            DeleteError::Referenced { .. } => ApiError::conflict("referenced", e.to_string()),
            DeleteError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(problems: ValidationErrors) -> Self {
        ApiError::validation(problems)
    }
}

impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> Self {
        match &e {
            EvalError::InvalidUserId | EvalError::UserIdTooLong => {
                ApiError::bad_request(e.code(), e.to_string()).with_field("user_id")
            }
            EvalError::FlagNotFound(_) => ApiError::not_found(e.code(), e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                ApiError::bad_request("invalid_request", e.body_text()).with_field(data_error_field(&e.body_text()))
            }
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("invalid_json", e.body_text()),
            JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
            JsonRejection::BytesRejection(e) => from_bytes_rejection(e),
            other => ApiError::bad_request("invalid_request", other.body_text()),
        }
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the request body must be JSON, sent with Content-Type: application/json",
    )
}

/// A body that could not be read: 413 past the size limit, 400 otherwise.
pub fn from_bytes_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body exceeds the size limit")
    } else {
        ApiError::bad_request("invalid_request", e.body_text())
    }
}

/// serde's data errors read "Failed to deserialize the JSON body into the target type: field: message";
/// the path before the first ": " after the prefix is the field at fault.
fn data_error_field(text: &str) -> String {
    let detail = text.split_once("target type: ").map_or(text, |(_, rest)| rest);
    match detail.split_once(": ") {
        Some((path, _)) if !path.contains(' ') => path.to_string(),
        _ => String::new(),
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

/// The answer to a path that no route serves.
pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

/// The answer to a method that the route does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not accept that method")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_error_field_is_the_path_before_the_message() {
        assert_eq!(
            data_error_field("Failed to deserialize the JSON body into the target type: kind: unknown variant `x`"),
            "kind"
        );
        assert_eq!(
            data_error_field(
                "Failed to deserialize the JSON body into the target type: missing field `name` at line 1"
            ),
            ""
        );
    }
}
