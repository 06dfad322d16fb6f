//! Authenticated keys kept in memory for `auth_cache_ttl_secs`, so that a request costs no store
//! read.

use super::Caller;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use vexil_store::{Backend, StoreError};

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
