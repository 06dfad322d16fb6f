//! API keys on requests (SPEC 4): `Authorization: Bearer <key>` or `X-API-Key: <key>`, and
//! which kinds may call what.
//!
//! Every authenticated request would otherwise cost a store read, so authenticated keys are
//! cached in memory by the SHA-256 of their secret (the secret itself is not kept) for
//! `auth_cache_ttl_secs` (10 s by default). A key revoked through this node leaves the cache
//! at once; one revoked through another node or the CLI stops working here within the TTL.
//! Failed authentications are not cached, so a key created anywhere works immediately.

use crate::http::error::ApiError;
use crate::http::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};
use vexil_store::{ChangeMeta, KeyKind, Store, StoreError};

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

/// Who is calling: put into the request's extensions by [`require`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub kind: KeyKind,
}

impl Caller {
    /// The audit metadata of a change made by this caller.
    pub fn change(&self, reason: Option<String>) -> ChangeMeta {
        ChangeMeta { actor: self.key_id.clone(), reason }
    }
}

/// Authenticated keys by the hash of their secret, each trusted until its expiry.
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache { ttl, entries: RwLock::new(HashMap::new()) }
    }

    /// The caller holding `secret`, from the cache or else the store.
    pub async fn authenticate(&self, store: &dyn Store, secret: &str) -> Result<Option<Caller>, StoreError> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let now = Instant::now();
        if let Some((caller, expires)) = self.entries.read().expect("key cache lock").get(&digest) {
            if *expires > now {
                return Ok(Some(caller.clone()));
            }
        }
        let Some(key) = store.authenticate(secret).await? else {
            self.entries.write().expect("key cache lock").remove(&digest);
            return Ok(None);
        };
        let caller = Caller { key_id: key.id, kind: key.kind };
        if !self.ttl.is_zero() {
            let mut entries = self.entries.write().expect("key cache lock");
            entries.retain(|_, (_, expires)| *expires > now);
            entries.insert(digest, (caller.clone(), now + self.ttl));
        }
        Ok(Some(caller))
    }

    /// Forgets a revoked key at once.
    pub fn invalidate(&self, key_id: &str) {
        self.entries.write().expect("key cache lock").retain(|_, (caller, _)| caller.key_id != key_id);
    }
}

/// The secret a request presents, if any.
fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, secret) = text.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim()).filter(|s| !s.is_empty());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim).filter(|s| !s.is_empty())
}

/// Middleware: 401 without a valid key, 403 when its kind is not enough for the route, 429
/// when the key is over its rate limit.
pub async fn require(
    State((state, access)): State<(AppState, Access)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let secret = presented_secret(request.headers()).ok_or_else(ApiError::unauthorized)?;
    let caller = state.keys.authenticate(state.store.as_ref(), secret).await?.ok_or_else(ApiError::unauthorized)?;
    if !access.allows(caller.kind) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a {} key may not call this route; it needs a {} key", caller.kind, access.name()),
        ));
    }
    if let Some(refusal) = state.rate_limits.refuse(&caller) {
        return Ok(refusal);
    }
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// On a store that never had a key, creates the admin key: the configured secret
/// (`VEXIL_ADMIN_KEY`) if any, else a generated one, which is returned to be printed once.
pub async fn bootstrap_admin_key(store: &dyn Store, configured: Option<&str>) -> Result<Option<String>, StoreError> {
    if store.has_keys().await? {
        return Ok(None);
    }
    let meta = ChangeMeta::new("system:bootstrap").with_reason("first start with an empty store");
    match configured {
        Some(secret) => {
            store.import_key(KeyKind::Admin, "bootstrap admin", secret, &meta).await?;
            tracing::info!("created the admin key from VEXIL_ADMIN_KEY");
            Ok(None)
        }
        None => {
            let (key, secret) = store.create_key(KeyKind::Admin, "bootstrap admin", &meta).await?;
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

    #[test]
    fn secrets_come_from_bearer_or_api_key_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_secret(&headers), None);
        headers.insert("x-api-key", "vx_cli_abc".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_cli_abc"));
        headers.insert("authorization", "Bearer vx_adm_xyz".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_adm_xyz"));
        headers.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(presented_secret(&headers), None);
    }
}
