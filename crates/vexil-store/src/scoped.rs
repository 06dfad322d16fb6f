//! [`Scoped`]: one environment of a backend, as a [`Store`](crate::Store).
//!
//! The service's features (the catalog, the safety rails, experiment results, …) are written
//! against one environment's documents; handing them a `Scoped` store is what keeps each
//! environment's flags, segments, experiments, plans, budgets, stops and audit records apart,
//! without every call site naming its environment. Keys and assignments are not per
//! environment in storage (keys carry their environment, assignments hang off an experiment's
//! id, which is unique across environments), so those calls pass through.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::{
    ApiKey, Assignment, AssignmentStore, AuditLog, AuditQuery, AuditRecord, Backend, ChangeMeta, ConfigStore,
    DocumentChanges, EntityKind, Flush, KeyGrant, KeyKind, KeyStore, NewAuditRecord, ShownDocument, StoreError,
    StoredDocument, Timestamp, Write,
};

/// One environment of a backend.
#[derive(Clone)]
pub struct Scoped {
    backend: Arc<dyn Backend>,
    environment: Arc<str>,
}

impl Scoped {
    pub fn new(backend: Arc<dyn Backend>, environment: impl Into<Arc<str>>) -> Scoped {
        Scoped { backend, environment: environment.into() }
    }

    /// The environment this store sees.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The backend, for what belongs to no environment (keys, the environments themselves).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}

#[async_trait::async_trait]
impl ConfigStore for Scoped {
    fn environment(&self) -> &str {
        &self.environment
    }

    async fn get(&self, kind: EntityKind, key: &str) -> Result<Option<StoredDocument>, StoreError> {
        self.backend.get_in(&self.environment, kind, key).await
    }

    async fn list(&self, kind: EntityKind) -> Result<Vec<StoredDocument>, StoreError> {
        self.backend.list_in(&self.environment, kind).await
    }

    async fn list_shown(&self, kind: EntityKind) -> Result<Vec<ShownDocument>, StoreError> {
        self.backend.list_shown_in(&self.environment, kind).await
    }

    async fn list_bodies(&self, kind: EntityKind) -> Result<Vec<Box<RawValue>>, StoreError> {
        self.backend.list_bodies_in(&self.environment, kind).await
    }

    async fn apply(&self, writes: Vec<Write>, meta: &ChangeMeta) -> Result<Vec<Option<StoredDocument>>, StoreError> {
        self.backend.apply_in(&self.environment, writes, meta).await
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        self.backend.revision().await
    }

    async fn changes_since(&self, revision: u64) -> Result<Option<DocumentChanges>, StoreError> {
        self.backend.changes_since_in(&self.environment, revision).await
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.backend.watch()
    }
}

#[async_trait::async_trait]
impl AuditLog for Scoped {
    /// Records the action in this environment unless the entry names another.
    async fn record(&self, mut entry: NewAuditRecord) -> Result<AuditRecord, StoreError> {
        entry.environment.get_or_insert_with(|| self.environment.to_string());
        self.backend.record(entry).await
    }

    /// This environment's records and those of no environment.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let query = AuditQuery { environment: Some(self.environment.to_string()), ..query.clone() };
        self.backend.query(&query).await
    }
}

#[async_trait::async_trait]
impl KeyStore for Scoped {
    async fn import_key(
        &self,
        kind: KeyKind,
        name: &str,
        grant: &KeyGrant,
        secret: &str,
        meta: &ChangeMeta,
    ) -> Result<ApiKey, StoreError> {
        self.backend.import_key(kind, name, grant, secret, meta).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.backend.list_keys().await
    }

    async fn revoke_key(&self, id: &str, meta: &ChangeMeta) -> Result<ApiKey, StoreError> {
        self.backend.revoke_key(id, meta).await
    }

    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, StoreError> {
        self.backend.authenticate(secret).await
    }

    async fn has_keys(&self) -> Result<bool, StoreError> {
        self.backend.has_keys().await
    }
}

#[async_trait::async_trait]
impl AssignmentStore for Scoped {
    async fn get_assignment(
        &self,
        experiment_id: &str,
        unit: &str,
        now: Timestamp,
    ) -> Result<Option<Assignment>, StoreError> {
        self.backend.get_assignment(experiment_id, unit, now).await
    }

    async fn assign_if_absent(&self, a: Assignment) -> Result<Assignment, StoreError> {
        self.backend.assign_if_absent(a).await
    }

    async fn assign_many_if_absent(&self, batch: Vec<Assignment>, flush: Flush) -> Result<Vec<Assignment>, StoreError> {
        self.backend.assign_many_if_absent(batch, flush).await
    }

    async fn purge_expired_assignments(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.backend.purge_expired_assignments(now).await
    }
}
