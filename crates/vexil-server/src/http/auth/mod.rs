//! API keys on requests (SPEC 4): `Authorization: Bearer <key>` or `X-API-Key: <key>`, and
//! which kinds may call what.
//!
//! Every authenticated request would otherwise cost a store read, so authenticated keys are
//! cached in memory by their secret ([`KeyCache`] says why not by a digest) for
//! `auth_cache_ttl_secs` (10 s by default). A key revoked through this node leaves the cache
//! at once; one revoked through another node or the CLI stops working here within the TTL.
//! Failed authentications are not cached, so a key created anywhere works immediately.
//!
//! The same layer resolves the request's environment (SPEC 9): a server or client key's own
//! (carried in the cached entry, so the hot path stays a map lookup in memory), or for an admin
//! key the one named by `?env=` or `X-Vexil-Env` (the default one otherwise). The
//! [`Environment`] goes into the request's extensions and its key into the `X-Vexil-Env`
//! response header; `?env=` is taken off the query so handlers see only their own parameters.
//!
//! A request that presents no key may carry a person's session cookie instead
//! ([`crate::http::session`]): it is looked up in the store and admitted as an admin caller with
//! the person's role and environments, through the same checks.
//!
//! Here: the layer, the callers and the route's access. Beside it: `secret` reads the key a
//! request presents, `key_cache` keeps authenticated keys, `scope` resolves the environment
//! and what an admin caller's role allows in it.

mod key_cache;
mod scope;
mod secret;

pub use key_cache::KeyCache;
use scope::{acting_environment, env_header};
use secret::query_secret;
pub use secret::{percent_encode, presented_secret};

use crate::http::error::ApiError;
use crate::http::session;
use crate::http::state::AppState;
use crate::service::environments::Environment;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tower::{Layer, Service, ServiceExt};
use vexil_store::{Backend, ChangeMeta, KeyKind, Role, StoreError};

/// The request and response header naming an environment.
/// A `HeaderName` made once: looking a header up or inserting it by `&str` parses the name on
/// every request.
pub static ENV_HEADER: HeaderName = HeaderName::from_static("x-vexil-env");

/// The least a route requires: `Admin` only admin keys, `Server` admin and server keys,
/// `Client` any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
    Server,
    Client,
}

impl Access {
    pub fn allows(self, kind: KeyKind) -> bool {
        match self {
            Access::Admin => kind == KeyKind::Admin,
            Access::Server => matches!(kind, KeyKind::Admin | KeyKind::Server),
            Access::Client => true,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Access::Admin => "admin",
            Access::Server => "server",
            Access::Client => "client",
        }
    }
}

/// Who is calling: a key, or a person signed in to the web console (an admin caller with the
/// person's role and environments). Put into the request's extensions by [`RequireKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Shared, as every request clones its caller out of the cache.
    pub key_id: Arc<str>,
    pub kind: KeyKind,
    /// The environment a server or client key acts in; `None`: the default one.
    pub environment: Option<Arc<str>>,
    /// An admin key's role; `None` for server and client keys.
    pub role: Option<Role>,
    /// The environments an admin key may act in; `None`: every one.
    pub environments: Option<Arc<[Arc<str>]>>,
    /// A person signed in with the session cookie rather than a key ([`crate::http::session`]);
    /// `key_id` is then `user:<username>`.
    pub person: bool,
}

impl Caller {
    /// The audit metadata of a change made by this caller.
    pub fn change(&self, reason: Option<String>) -> ChangeMeta {
        ChangeMeta { actor: self.key_id.to_string(), reason }
    }
}

/// The layer the route table puts on each route that needs a key: 401 without a valid key,
/// 403 when its kind is not enough for the route, 429 when the key is over its rate limit; the
/// [`Caller`] in the request's extensions otherwise. With `key_in_query`, a request without a
/// key in its headers may give a client key as `?key=` (a server or admin key there is 403:
/// URLs end up in logs and histories, and only client keys are meant to be public).
#[derive(Clone)]
pub struct RequireKeyLayer {
    pub state: AppState,
    pub access: Access,
    pub key_in_query: bool,
}

impl<S> Layer<S> for RequireKeyLayer {
    type Service = RequireKey<S>;

    fn layer(&self, inner: S) -> RequireKey<S> {
        RequireKey { inner, state: self.state.clone(), access: self.access, key_in_query: self.key_in_query }
    }
}

/// See [`RequireKeyLayer`]. A key found in the cache is checked without leaving the call (the
/// common case, and the hot path of evaluation); only a miss awaits the store.
#[derive(Clone)]
pub struct RequireKey<S> {
    inner: S,
    state: AppState,
    access: Access,
    key_in_query: bool,
}

impl<S> Service<Request> for RequireKey<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = KeyChecked<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let (secret, in_query) = match presented_secret(request.headers()) {
            Some(secret) => (Cow::Borrowed(secret), false),
            None => match self.key_in_query.then(|| query_secret(request.uri().query())).flatten() {
                Some(secret) => (Cow::Owned(secret), true),
                None => return self.signed_in(request),
            },
        };
        let caller = match self.state.keys.cached(&secret) {
            Some(caller) => caller,
            None => {
                let secret = secret.into_owned();
                let (state, access, inner) = (self.state.clone(), self.access, self.inner.clone());
                let future = async move {
                    let caller = match state.keys.authenticate(state.environments.backend().as_ref(), &secret).await {
                        Ok(Some(caller)) => caller,
                        Ok(None) => return Ok(ApiError::unauthorized().into_response()),
                        Err(e) => return Ok(ApiError::from(e).into_response()),
                    };
                    call_admitted(state, access, caller, in_query, request, inner).await
                };
                return KeyChecked::Authenticating { future: Box::pin(future) };
            }
        };
        match admit(&self.state, self.access, caller, in_query, &mut request) {
            Ok(named) => KeyChecked::Admitted { future: self.inner.call(request), environment: Some(named) },
            Err(refused) => KeyChecked::Answered { response: Some(*refused) },
        }
    }
}

impl<S> RequireKey<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    /// A request without a key: a person's, if it carries a live session cookie (and, to
    /// write, the session's CSRF token); 401 otherwise.
    fn signed_in(&mut self, request: Request) -> KeyChecked<S::Future> {
        let Some(token) = session::token(request.headers()) else {
            return KeyChecked::Answered { response: Some(ApiError::unauthorized().into_response()) };
        };
        let (state, access, inner) = (self.state.clone(), self.access, self.inner.clone());
        let future = async move {
            let signed_in = match state.people.session(&token).await {
                Ok(Some(signed_in)) => signed_in,
                Ok(None) => return Ok(ApiError::unauthorized().into_response()),
                Err(e) => return Ok(ApiError::from(e).into_response()),
            };
            if session::writes(request.method()) {
                if let Err(refused) = session::check_csrf(request.headers(), &signed_in) {
                    return Ok(refused.into_response());
                }
            }
            call_admitted(state, access, Caller::person(&signed_in.user), false, request, inner).await
        };
        KeyChecked::Authenticating { future: Box::pin(future) }
    }
}

/// The request of a caller the store just authenticated (a key missing from the cache, or a
/// session), through [`admit`] to the route, with the `X-Vexil-Env` of its answer.
async fn call_admitted<S>(
    state: AppState,
    access: Access,
    caller: Caller,
    in_query: bool,
    mut request: Request,
    inner: S,
) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let named = match admit(&state, access, caller, in_query, &mut request) {
        Ok(named) => named,
        Err(refused) => return Ok(*refused),
    };
    let mut response = inner.oneshot(request).await?;
    response.headers_mut().insert(ENV_HEADER.clone(), named);
    Ok(response)
}

/// What follows a key's authentication, for a cached key and a looked-up one alike: the
/// refusals (a server or admin key in the URL, a kind or rate limit, the environment), then the
/// caller and its environment in the request's extensions. Answers the environment's name for
/// the response's `X-Vexil-Env`.
fn admit(
    state: &AppState,
    access: Access,
    caller: Caller,
    in_query: bool,
    request: &mut Request,
) -> Result<HeaderValue, Box<Response>> {
    if let Some(refused) = in_query.then(|| query_refusal(&caller)).flatten() {
        return Err(Box::new(refused));
    }
    if let Some(refused) = refusal(state, access, &caller) {
        return Err(Box::new(refused));
    }
    let environment = acting_environment(state, &caller, request)?;
    let named = env_header(&environment);
    request.extensions_mut().insert(Admitted { caller, environment });
    Ok(named)
}

/// What the key check leaves in the request's extensions: who is calling and the environment
/// the request acts in. One extension rather than two, as each costs an allocation and the
/// second grew the table, on every request. Handlers take them with the [`Caller`] and
/// [`crate::http::extract::Env`] extractors.
#[derive(Clone)]
pub struct Admitted {
    pub caller: Caller,
    pub environment: Arc<Environment>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// The caller the key check admitted; 401 on a route without a key check.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Admitted>().map(|admitted| admitted.caller.clone()).ok_or_else(ApiError::unauthorized)
    }
}

/// 403 for a server or admin key given in the URL: such keys go in a header.
fn query_refusal(caller: &Caller) -> Option<Response> {
    (caller.kind != KeyKind::Client).then(|| {
        let message = format!(
            "a {} key may not be given in the URL (?key=); send it in the Authorization or X-API-Key header",
            caller.kind
        );
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).with_field("key").into_response()
    })
}

/// Why `caller` may not call a route that needs `access` now, if it may not: 403 when its key's
/// kind is not enough, 429 when the key is over its rate limit.
fn refusal(state: &AppState, access: Access, caller: &Caller) -> Option<Response> {
    if !access.allows(caller.kind) {
        let message = format!("a {} key may not call this route; it needs a {} key", caller.kind, access.name());
        return Some(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response());
    }
    state.rate_limits.refuse(caller)
}

pin_project! {
    /// The answer of [`RequireKey`].
    #[project = KeyCheckedProjection]
    pub enum KeyChecked<F> {
        Admitted { #[pin] future: F, environment: Option<HeaderValue> },
        Authenticating { future: Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> },
        Answered { response: Option<Response> },
    }
}

impl<F> Future for KeyChecked<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            KeyCheckedProjection::Admitted { future, environment } => {
                let Ok(mut response) = std::task::ready!(future.poll(cx));
                if let Some(named) = environment.take() {
                    response.headers_mut().insert(ENV_HEADER.clone(), named);
                }
                Poll::Ready(Ok(response))
            }
            KeyCheckedProjection::Authenticating { future } => future.as_mut().poll(cx),
            KeyCheckedProjection::Answered { response } => {
                Poll::Ready(Ok(response.take().expect("an answered request is not polled again")))
            }
        }
    }
}

/// On a store that never had a key, creates the admin key: the configured secret
/// (`VEXIL_ADMIN_KEY`) if any, else a generated one, which is returned to be printed once.
pub async fn bootstrap_admin_key(store: &dyn Backend, configured: Option<&str>) -> Result<Option<String>, StoreError> {
    if store.has_keys().await? {
        return Ok(None);
    }
    let meta = ChangeMeta::new("system:bootstrap").with_reason("first start with an empty store");
    match configured {
        Some(secret) => {
            let grant = vexil_store::KeyGrant::default();
            match store.import_key(KeyKind::Admin, "bootstrap admin", &grant, secret, &meta).await {
                Ok(_) => tracing::info!("created the admin key from VEXIL_ADMIN_KEY"),
                // Another node of the distributed mode, started on the same empty database at
                // the same moment, imported it first.
                Err(StoreError::AlreadyExists { .. }) if store.has_keys().await? => {}
                Err(e) => return Err(e),
            }
            Ok(None)
        }
        None => {
            let (key, secret) =
                store.create_key(KeyKind::Admin, "bootstrap admin", &vexil_store::KeyGrant::default(), &meta).await?;
            tracing::info!(key_id = %key.id, "created an admin key");
            Ok(Some(secret))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_matrix_follows_the_spec() {
        use KeyKind::*;
        let allowed = |access: Access| KeyKind::ALL.iter().copied().filter(|k| access.allows(*k)).collect::<Vec<_>>();
        assert_eq!(allowed(Access::Admin), vec![Admin]);
        assert_eq!(allowed(Access::Server), vec![Admin, Server]);
        assert_eq!(allowed(Access::Client), vec![Admin, Server, Client]);
    }
}
