//! People's sessions on requests (SPEC 9): the `vexil_session` cookie, the CSRF header that
//! every write with it must carry, and the caller a live session becomes.
//!
//! A request with an API key is a key's request, whatever cookies it carries; only a request
//! without one is looked up by its session cookie, in the store on every request (see
//! [`crate::service::people`]), so a person disabled or given another role is refused or
//! limited at once, on every node. A cookie-authenticated `POST`, `PUT`, `PATCH` or `DELETE`
//! must echo the session's CSRF token in `X-CSRF-Token`: a page of another site can make the
//! browser send the cookie (were `SameSite=Strict` not enough), but cannot read the token.

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::service::people::SignedIn;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use cookie::{Cookie, SameSite};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use vexil_store::{KeyKind, User};

/// The name of the session cookie.
pub const COOKIE: &str = "vexil_session";

/// The header a cookie-authenticated write carries the session's CSRF token in.
pub static CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// The path of sign-in, sign-out and the current session: the edge records the client address
/// only for it ([`crate::http::edge`]).
pub const SESSION_PATH: &str = "/v1/session";

/// The session token a request's cookies carry, if any.
pub fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_owned())
}

/// Whether a request with this method changes something, and so needs the CSRF header.
pub fn writes(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// 403 `csrf_required` unless the request carries the session's CSRF token. Compared in
/// constant time, so the answer's timing tells nothing about the token.
pub fn check_csrf(headers: &HeaderMap, signed_in: &SignedIn) -> Result<(), ApiError> {
    let presented = headers.get(&CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    if bool::from(presented.ct_eq(signed_in.session.csrf_token.as_bytes())) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_required",
        "a request signed in with the session cookie must send the session's csrf_token in X-CSRF-Token to change anything",
    )
    .with_field("X-CSRF-Token"))
}

impl Caller {
    /// The caller a person's live session makes: an admin caller with the person's role and
    /// environments, whose changes the audit log records as `user:<username>`.
    pub fn person(user: &User) -> Caller {
        Caller {
            key_id: format!("user:{}", user.username).into(),
            kind: KeyKind::Admin,
            environment: None,
            role: Some(user.role),
            environments: user.environments.as_ref().map(|list| list.iter().map(|e| Arc::from(e.as_str())).collect()),
            person: true,
        }
    }
}

/// The session's answer body: `{"username", "role", "environments", "csrf_token"}`.
pub fn shown(signed_in: &SignedIn) -> serde_json::Value {
    let user = &signed_in.user;
    serde_json::json!({
        "username": user.username,
        "role": user.role,
        "environments": user.environments,
        "csrf_token": signed_in.session.csrf_token,
    })
}

/// Whether the request reached the service over TLS: always with `session_cookie_secure`,
/// else when a trusted proxy says `X-Forwarded-Proto: https`.
fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.session_cookie_secure
        || (state.config.trust_forwarded_headers
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")))
}

/// The `Set-Cookie` value that stores `token` in the browser, for the session's lifetime:
/// HttpOnly (no script reads it), `SameSite=Strict` (no other site's page sends it), `Secure`
/// over TLS.
pub fn set_cookie(state: &AppState, headers: &HeaderMap, token: String) -> HeaderValue {
    let lifetime = state.config.sessions.lifetime;
    let cookie = Cookie::build((COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(over_tls(state, headers))
        .max_age(cookie::time::Duration::seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)));
    HeaderValue::from_str(&cookie.to_string()).expect("a session cookie is header-safe")
}

/// The `Set-Cookie` value that removes the session cookie from the browser.
pub fn cleared_cookie(state: &AppState, headers: &HeaderMap) -> HeaderValue {
    let cookie = Cookie::build((COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(over_tls(state, headers))
        .max_age(cookie::time::Duration::ZERO);
    HeaderValue::from_str(&cookie.to_string()).expect("an empty cookie is header-safe")
}

/// The address sign-in failures count against: the first of `X-Forwarded-For` when a trusted
/// proxy sets it, else the connection's peer.
pub fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    let forwarded = state
        .config
        .trust_forwarded_headers
        .then(|| headers.get("x-forwarded-for")?.to_str().ok()?.split(',').next()?.trim().parse().ok())
        .flatten();
    forwarded.or(peer.map(|peer| peer.ip()))
}
