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

use crate::http::error::ApiError;
use crate::http::session;
use crate::http::state::AppState;
use crate::service::environments::Environment;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};
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

/// Authenticated keys by their secret, each trusted until its expiry.
///
/// Keyed by the secret itself rather than a digest of it: a lookup on every request then costs
/// a fast hash and one comparison instead of a SHA-256, and the secret is in this process's
/// memory during every request that presents it anyway. Only keys the store authenticated are
/// inserted, so a client cannot choose what the table holds and a fast hasher is safe.
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<Box<str>, (Caller, Instant), foldhash::fast::RandomState>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache { ttl, entries: RwLock::new(HashMap::default()) }
    }

    /// The caller holding `secret`, if the cache holds it and it has not expired.
    pub fn cached(&self, secret: &str) -> Option<Caller> {
        let entries = self.entries.read().expect("key cache lock");
        let (caller, expires) = entries.get(secret)?;
        (*expires > Instant::now()).then(|| caller.clone())
    }

    /// The caller holding `secret` according to the store, remembered for the TTL; for a
    /// secret [`KeyCache::cached`] did not know (the cache is not looked up again).
    pub async fn authenticate(&self, store: &dyn Backend, secret: &str) -> Result<Option<Caller>, StoreError> {
        let now = Instant::now();
        let Some(key) = store.authenticate(secret).await? else {
            self.entries.write().expect("key cache lock").remove(secret);
            return Ok(None);
        };
        let caller = Caller {
            key_id: key.id.into(),
            kind: key.kind,
            environment: key.environment.map(Arc::from),
            role: key.role,
            environments: key.environments.map(|list| list.into_iter().map(Arc::from).collect()),
            person: false,
        };
        if !self.ttl.is_zero() {
            let mut entries = self.entries.write().expect("key cache lock");
            entries.retain(|_, (_, expires)| *expires > now);
            entries.insert(secret.into(), (caller.clone(), now + self.ttl));
        }
        Ok(Some(caller))
    }

    /// Forgets a revoked key at once.
    pub fn invalidate(&self, key_id: &str) {
        self.entries.write().expect("key cache lock").retain(|_, (caller, _)| &*caller.key_id != key_id);
    }
}

/// The secret a request presents, if any: `Authorization: Bearer <secret>` (the scheme in any
/// case) or `X-API-Key: <secret>`, blanks around it ignored. Read as bytes, as this runs on
/// every request.
pub fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    let secret = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(value) => {
            let text = value.as_bytes();
            let (scheme, rest) = text.split_at_checked(7)?;
            if !scheme.eq_ignore_ascii_case(b"bearer ") {
                return None;
            }
            rest
        }
        None => headers.get("x-api-key")?.as_bytes(),
    };
    // Anything else in it (blanks inside, other bytes) matches no key: the lookup refuses it.
    let secret = secret.trim_ascii();
    if secret.is_empty() {
        return None;
    }
    std::str::from_utf8(secret).ok()
}

/// A client key in the query string, `?key=<secret>` (percent-encoded), if any: for the one
/// route a browser's `EventSource` calls, which cannot send headers.
fn query_secret(query: Option<&str>) -> Option<String> {
    let value = query?.split('&').find_map(|pair| pair.strip_prefix("key="))?;
    percent_decode(value).filter(|s| !s.trim().is_empty())
}

/// `%XX` sequences decoded (and `+` as a space, as forms encode it); `None` if malformed.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        match first {
            b'%' => {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            b'+' => {
                bytes.push(b' ');
                rest = tail;
            }
            byte => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// `secret` percent-encoded for a query string: every byte but the unreserved ones.
pub fn percent_encode(secret: &str) -> String {
    secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    let environment = scope(state, &caller, request)?;
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

fn env_header(environment: &Environment) -> HeaderValue {
    HeaderValue::from_str(&environment.key).expect("environment keys are header-safe")
}

/// The environment `caller` acts in on this request, or the refusal: 403 when a server or
/// client key names another environment than its own, 404 `environment_not_found` when the
/// environment does not exist (any more).
fn scope(state: &AppState, caller: &Caller, request: &mut Request) -> Result<Arc<Environment>, Box<Response>> {
    let named = named_environment(request);
    let environments = &state.environments;
    let wanted = match (caller.kind, named) {
        (KeyKind::Admin, Some(named)) => Some(Arc::<str>::from(named)),
        (KeyKind::Admin, None) => None,
        (_, named) => {
            let own = caller.environment.as_deref().unwrap_or(&environments.default().key);
            if let Some(named) = named.filter(|named| named != own) {
                let message =
                    format!("a {} key acts only in its environment \"{own}\", not in \"{named}\"", caller.kind);
                return Err(Box::new(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()));
            }
            caller.environment.clone()
        }
    };
    let environment = match wanted {
        None => environments.default().clone(),
        Some(key) => environments.get(&key).ok_or_else(|| {
            let message = format!("environment \"{key}\" does not exist");
            Box::new(ApiError::not_found("environment_not_found", message).with_field("env").into_response())
        })?,
    };
    if caller.kind == KeyKind::Admin {
        if let Some(missing) = admin_lacks(caller, request, &environment.key) {
            return Err(Box::new(ApiError::new(StatusCode::FORBIDDEN, "forbidden", missing).into_response()));
        }
    }
    Ok(environment)
}

/// What an admin key lacks for this request, if anything (SPEC 9): `viewer` may read every
/// admin route, `editor` also write configuration, `owner` also keys and environments; a key
/// scoped to some environments acts only in them and never changes keys or environments.
/// Routes outside `/v1/admin/` (evaluation, results, …) need only the scope.
fn admin_lacks(caller: &Caller, request: &Request, environment: &str) -> Option<String> {
    let path = request.uri().path();
    if across_environments(path) {
        return None;
    }
    // People are an owner's to see and manage, as they hold roles like keys do.
    let people = path.starts_with("/v1/admin/users");
    let global = people || path.starts_with("/v1/admin/keys") || path.starts_with("/v1/admin/environments");
    let reads = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD) && !people;
    let needed = match () {
        _ if !path.starts_with("/v1/admin/") || reads => Role::Viewer,
        _ if global => Role::Owner,
        _ => Role::Editor,
    };
    let role = caller.role.unwrap_or(Role::Owner);
    if !role.includes(needed) {
        return Some(format!("this needs the {needed} role; {} the {role} role", caller.has()));
    }
    let scope = caller.environments.as_deref()?;
    let names = || scope.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    if global && !reads {
        return Some(format!(
            "changing keys, environments or people needs the rights in every environment; {}'s environments are {}",
            caller.subject(),
            names()
        ));
    }
    if !global && !scope.iter().any(|e| &**e == environment) {
        return Some(format!(
            "{} may not act in environment \"{environment}\"; its environments are {}",
            caller.subject(),
            names()
        ));
    }
    None
}

/// Whether the route acts on environments named in its path or on every environment
/// (`/v1/admin/flags/{key}/environments`, `/v1/admin/environments/{to}/promote`): its handler
/// checks the caller's rights on each environment it reads or writes ([`Caller::lacks`]).
fn across_environments(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["v1", "admin", "flags", _, "environments"] | ["v1", "admin", "environments", _, "promote"]
    )
}

impl Caller {
    /// Who is refused, in a message: the key or the person.
    fn subject(&self) -> &'static str {
        if self.person {
            "this person"
        } else {
            "the key"
        }
    }

    /// What the caller has, in a message: `the key is an admin key with` / `this person has`.
    fn has(&self) -> &'static str {
        if self.person {
            "this person has"
        } else {
            "the key is an admin key with"
        }
    }

    /// What this admin caller lacks to act with the `needed` role in `environment`, if anything.
    pub fn lacks(&self, needed: Role, environment: &str) -> Option<String> {
        let role = self.role.unwrap_or(Role::Owner);
        if !role.includes(needed) {
            return Some(format!("this needs the {needed} role; {} the {role} role", self.has()));
        }
        let scope = self.environments.as_deref()?;
        if scope.iter().any(|e| &**e == environment) {
            return None;
        }
        let names = scope.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
        Some(format!("{} may not act in environment \"{environment}\"; its environments are {names}", self.subject()))
    }

    /// [`Caller::lacks`] as the API's 403.
    pub fn may(&self, needed: Role, environment: &str) -> Result<(), ApiError> {
        match self.lacks(needed, environment) {
            Some(missing) => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", missing)),
            None => Ok(()),
        }
    }
}

/// The environment a request names with `X-Vexil-Env` or `?env=` (taken off the query), if any.
fn named_environment(request: &mut Request) -> Option<String> {
    let from_query = match request.uri().query() {
        Some(query) if query.split('&').any(|pair| pair.starts_with("env=")) => {
            let mut named = None;
            let rest: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .filter_map(|(name, value)| {
                    if name == "env" {
                        named = Some(value.into_owned());
                        None
                    } else {
                        Some((name.into_owned(), value.into_owned()))
                    }
                })
                .collect();
            let rest = form_urlencoded::Serializer::new(String::new()).extend_pairs(rest).finish();
            let path = request.uri().path();
            let path_and_query = if rest.is_empty() { path.to_owned() } else { format!("{path}?{rest}") };
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = path_and_query.parse().ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
            named
        }
        _ => None,
    };
    let from_header = request.headers().get(&ENV_HEADER).map(|v| v.to_str().unwrap_or_default().trim().to_owned());
    from_query.or(from_header)
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
            store
                .import_key(KeyKind::Admin, "bootstrap admin", &vexil_store::KeyGrant::default(), secret, &meta)
                .await?;
            tracing::info!("created the admin key from VEXIL_ADMIN_KEY");
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
    fn a_key_in_the_query_string_is_percent_decoded() {
        assert_eq!(query_secret(Some("key=vx_cli_abc")).as_deref(), Some("vx_cli_abc"));
        assert_eq!(query_secret(Some("a=1&key=k%2Fe%20y&b=2")).as_deref(), Some("k/e y"));
        assert_eq!(query_secret(Some(&format!("key={}", percent_encode("k/e y+é")))).as_deref(), Some("k/e y+é"));
        for none in [None, Some(""), Some("key="), Some("key=%2"), Some("key=%zz"), Some("keys=x"), Some("key=%FF")] {
            assert_eq!(query_secret(none), None, "{none:?}");
        }
    }

    #[test]
    fn access_matrix_follows_the_spec() {
        use KeyKind::*;
        let allowed = |access: Access| KeyKind::ALL.iter().copied().filter(|k| access.allows(*k)).collect::<Vec<_>>();
        assert_eq!(allowed(Access::Admin), vec![Admin]);
        assert_eq!(allowed(Access::Server), vec![Admin, Server]);
        assert_eq!(allowed(Access::Client), vec![Admin, Server, Client]);
    }

    #[test]
    fn secrets_come_from_bearer_or_api_key_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_secret(&headers), None);
        headers.insert("x-api-key", "vx_cli_abc".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_cli_abc"));
        headers.insert("authorization", "Bearer vx_adm_xyz".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_adm_xyz"));
        headers.insert("authorization", "bEaReR   vx_adm_xyz ".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_adm_xyz"));
        headers.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(presented_secret(&headers), None);
        headers.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(presented_secret(&headers), None);
    }
}
