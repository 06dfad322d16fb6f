//! `/v1/session`: people sign in to the web console with a username and password and get a
//! session cookie, the console restores its session on load, and people sign out (SPEC 9).
//! The cookie and CSRF rules are [`crate::http::session`]'s; the service is
//! [`crate::service::people`].

use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::session::{check_csrf, cleared_cookie, client_address, set_cookie, shown, token};
use crate::http::state::AppState;
use crate::service::people::{PeopleError, SignedIn};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::net::SocketAddr;

pub use crate::http::session::SESSION_PATH as PATH;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

fn unauthenticated() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "no live session: sign in with POST /v1/session")
}

/// The live session the request's cookie names; 401 `unauthenticated` without one.
async fn current(state: &AppState, headers: &HeaderMap) -> Result<(SignedIn, String), ApiError> {
    let token = token(headers).ok_or_else(unauthenticated)?;
    let signed_in = state.people.session(&token).await?.ok_or_else(unauthenticated)?;
    Ok((signed_in, token))
}

/// `POST /v1/session` `{"username", "password"}` → 200 `{"username", "role", "environments",
/// "csrf_token"}` with the session cookie; 401 `invalid_credentials` for a wrong username or
/// password alike; 429 `too_many_attempts` with `Retry-After` after repeated failures.
pub async fn sign_in(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer);
    let client = client_address(&state, &headers, peer);
    match state.people.sign_in(&credentials.username, &credentials.password, client).await {
        Ok((signed_in, token)) => {
            tracing::info!(username = %signed_in.user.username, "signed in");
            let cookie = set_cookie(&state, &headers, token);
            Ok(([(header::SET_COOKIE, cookie)], Json(shown(&signed_in))).into_response())
        }
        Err(PeopleError::TooManyAttempts { retry_after_secs }) => {
            tracing::warn!(username = %credentials.username, client = ?client, "sign-in throttled");
            let mut response = ApiError::from(PeopleError::TooManyAttempts { retry_after_secs }).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(response)
        }
        Err(PeopleError::InvalidCredentials) => {
            tracing::info!(username = %credentials.username, client = ?client, "sign-in refused");
            Err(ApiError::from(PeopleError::InvalidCredentials))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/session` → the session as sign-in answered it; 401 `unauthenticated` without a
/// live session cookie.
pub async fn get(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    let (signed_in, _) = current(&state, &headers).await?;
    Ok(Json(shown(&signed_in)))
}

/// `DELETE /v1/session` (with `X-CSRF-Token`) → 204: the session ends on the server and the
/// cookie is cleared.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (signed_in, token) = current(&state, &headers).await?;
    check_csrf(&headers, &signed_in)?;
    state.people.sign_out(&token).await?;
    tracing::info!(username = %signed_in.user.username, "signed out");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared_cookie(&state, &headers))]).into_response())
}
