//! JSON answers for the hot routes (evaluation, OFREP, assignment).
//!
//! axum's `Json` serialises through a `BytesMut` writer, which checks capacity and copies once
//! per token; an evaluation answer is some forty tokens, and that writing cost about as much
//! as the rest of the handler. This `Json` writes into a `Vec` sized for a typical answer and
//! hands it to the body as it is.

use crate::http::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vexil_core::EvaluationRecord;

/// A typical evaluation answer is 150–250 bytes: one allocation for most.
const FIRST_CAPACITY: usize = 256;

/// A `200 application/json` answer of the value.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(FIRST_CAPACITY);
        if let Err(e) = serde_json::to_writer(&mut body, &self.0) {
            return ApiError::internal(format!("the answer could not be written as JSON: {e}")).into_response();
        }
        written(body)
    }
}

/// A `200 application/json` answer of one evaluation result, written without serde's generic
/// path ([`EvaluationRecord::write_json`]).
pub fn evaluation(record: &EvaluationRecord<'_>) -> Response {
    let mut body = Vec::with_capacity(FIRST_CAPACITY);
    record.write_json(&mut body);
    written(body)
}

/// A `200 application/json` answer of JSON text.
fn written(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn answers_the_value_as_json_with_its_content_type() {
        let response = Json(serde_json::json!({"flag_key": "a", "value": [1, "two"]})).into_response();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"flag_key":"a","value":[1,"two"]}"#);
    }
}
