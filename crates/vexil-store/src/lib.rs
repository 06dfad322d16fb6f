//! Storage of vexil: the traits the service talks to, and the backends that implement them.
//!
//! The service never touches a database directly. A backend is an `Arc<dyn Backend>` holding
//! every environment (SPEC 9); the service works on one environment at a time through
//! [`Scoped`], an `Arc<dyn Store>` that sees only that environment's documents and audit
//! records. Four capabilities:
//!
//! - [`ConfigStore`] (on a backend: [`DocumentStore`], which names the environment of each
//!   call): versioned configuration documents (flags, segments, experiments, …) with
//!   optimistic concurrency, atomic multi-document writes and change notification;
//! - [`AuditLog`]: the append-only record of every change;
//! - [`KeyStore`]: API keys, stored as hashes;
//! - [`AssignmentStore`]: sticky experiment assignments, written insert-if-absent;
//! - [`UserStore`]: the people who sign in to the web console, and their sessions.
//!
//! Every backend must behave identically, so none of the traits assumes it is the only process
//! on the data: versions and revisions live in the database, conflicts are detected by the
//! database, and [`ConfigStore::watch`] reports changes committed by any process.
//!
//! Backends: [`sqlite::SqliteStore`] for the embedded mode, [`postgres::PostgresStore`] for
//! the distributed one. The `testkit` feature exposes the
//! conformance suite (the `testkit` module) that every backend runs unchanged.

mod change;
mod error;
mod model;
pub mod postgres;
mod scoped;
mod secret;
pub mod sqlite;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use error::StoreError;
pub use model::{is_environment_key, now, DEFAULT_ENVIRONMENT, GLOBAL};
pub use model::{
    ApiKey, Assignment, AuditQuery, AuditRecord, ChangeMeta, DocumentChanges, EntityKind, Flush, KeyGrant, KeyKind,
    NewAuditRecord, Role, Session, ShownDocument, StoredDocument, Timestamp, UnknownName, User, UserUpdate, Write,
    DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT,
};
pub use scoped::Scoped;

use serde_json::value::RawValue;
use tokio::sync::watch;

/// Versioned configuration documents of every environment: each environment (and [`GLOBAL`],
/// where the environments themselves are kept) has one namespace of keys per [`EntityKind`].
/// The methods are [`ConfigStore`]'s with the environment named; see there.
#[async_trait::async_trait]
pub trait DocumentStore: Send + Sync {
    async fn get_in(&self, env: &str, kind: EntityKind, key: &str) -> Result<Option<StoredDocument>, StoreError>;

    async fn list_in(&self, env: &str, kind: EntityKind) -> Result<Vec<StoredDocument>, StoreError>;

    async fn list_shown_in(&self, env: &str, kind: EntityKind) -> Result<Vec<ShownDocument>, StoreError> {
        Ok(self.list_in(env, kind).await?.into_iter().map(ShownDocument::from).collect())
    }

    async fn list_bodies_in(&self, env: &str, kind: EntityKind) -> Result<Vec<Box<RawValue>>, StoreError> {
        self.list_in(env, kind).await?.iter().map(|d| raw_body(&d.body)).collect()
    }

    /// Applies the writes to documents of `env` atomically, audited in `env`. Deleting an
    /// environment (kind [`EntityKind::Environment`] in [`GLOBAL`]) deletes every document of
    /// that environment and the assignments of its experiments in the same transaction.
    async fn apply_in(
        &self,
        env: &str,
        writes: Vec<Write>,
        meta: &ChangeMeta,
    ) -> Result<Vec<Option<StoredDocument>>, StoreError>;

    /// One revision for all environments.
    async fn revision(&self) -> Result<u64, StoreError>;

    /// [`ConfigStore::changes_since`] in `env`; `None` where the backend cannot tell.
    async fn changes_since_in(&self, env: &str, revision: u64) -> Result<Option<DocumentChanges>, StoreError> {
        let _ = (env, revision);
        Ok(None)
    }

    fn watch(&self) -> watch::Receiver<u64>;
}

/// Versioned configuration documents of one environment, one namespace of keys per
/// [`EntityKind`]. Implemented by [`Scoped`] over a backend's [`DocumentStore`].
#[async_trait::async_trait]
pub trait ConfigStore: Send + Sync {
    /// The environment whose documents these are.
    fn environment(&self) -> &str;

    /// The current document, if there is one.
    async fn get(&self, kind: EntityKind, key: &str) -> Result<Option<StoredDocument>, StoreError>;

    /// All documents of one kind, ordered by key (bytewise).
    async fn list(&self, kind: EntityKind) -> Result<Vec<StoredDocument>, StoreError>;

    /// All documents of one kind as the API shows them, as JSON text, ordered by key: for a
    /// reader that keeps every document's text (the configuration snapshot). A backend that
    /// stores the text can answer without parsing every body into JSON values at once, which
    /// for 10,000 flags is about 120 MB. Fields may come in any order.
    async fn list_shown(&self, kind: EntityKind) -> Result<Vec<ShownDocument>, StoreError>;

    /// The bodies of all documents of one kind as JSON text, without the server-managed
    /// fields, ordered by key: what a flags file export writes, without parsing them all.
    async fn list_bodies(&self, kind: EntityKind) -> Result<Vec<Box<RawValue>>, StoreError>;

    /// Applies all writes atomically — all or nothing, which flag import relies on — and appends
    /// one audit record per write in the same transaction, so the log can never disagree with
    /// the data. Later writes see the effect of earlier ones in the same batch.
    ///
    /// Returns, for each write in order, the stored document afterwards (`None` for deletes).
    async fn apply(&self, writes: Vec<Write>, meta: &ChangeMeta) -> Result<Vec<Option<StoredDocument>>, StoreError>;

    /// The documents of this environment written or deleted after `revision`, consistent with
    /// the revision they bring the reader to: a reader that holds the configuration at
    /// `revision` patches it instead of reading everything again. `None` when the backend
    /// cannot tell (the reader then reads everything). A change of another environment moves
    /// the revision and lists nothing here.
    async fn changes_since(&self, revision: u64) -> Result<Option<DocumentChanges>, StoreError> {
        let _ = revision;
        Ok(None)
    }

    /// A global revision that grows with every committed change of documents, whichever
    /// process committed it. Nodes compare it to know whether their cached configuration is
    /// current.
    async fn revision(&self) -> Result<u64, StoreError>;

    /// Carries the latest known [`revision`](Self::revision). It has moved by the time
    /// [`apply`](Self::apply) returns for changes made through this handle, and within about a
    /// second for changes committed by other processes on the same data.
    fn watch(&self) -> watch::Receiver<u64>;
}

/// The append-only audit log. Document writes are audited by [`ConfigStore::apply`] itself;
/// this trait records the other actions and answers queries. Nothing updates or deletes a
/// record.
#[async_trait::async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends a record for an action that is not a document write (a rollout step, an
    /// emergency stop, …) and returns it with its id and time.
    async fn record(&self, entry: NewAuditRecord) -> Result<AuditRecord, StoreError>;

    /// Records matching the query, newest first.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
}

/// API keys. Only a hash of each secret is stored; creation and revocation are audited.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Creates a key with a fresh random secret. The secret is returned here and never again.
    /// Every backend stores it as it stores an imported one.
    /// `grant` is a server or client key's environment, or an admin key's role and
    /// environments; what does not apply to the kind is left out.
    async fn create_key(
        &self,
        kind: KeyKind,
        name: &str,
        grant: &KeyGrant,
        meta: &ChangeMeta,
    ) -> Result<(ApiKey, String), StoreError> {
        let secret = secret::new_secret(kind);
        let key = self.import_key(kind, name, grant, &secret, meta).await?;
        Ok((key, secret))
    }

    /// Stores a key whose secret the operator chose (`VEXIL_ADMIN_KEY` on a fresh store).
    /// Fails with [`StoreError::AlreadyExists`] if a key with that secret exists.
    async fn import_key(
        &self,
        kind: KeyKind,
        name: &str,
        grant: &KeyGrant,
        secret: &str,
        meta: &ChangeMeta,
    ) -> Result<ApiKey, StoreError>;

    /// All keys, revoked ones included, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes a key. Revoking a revoked key changes nothing and returns it as it is.
    async fn revoke_key(&self, id: &str, meta: &ChangeMeta) -> Result<ApiKey, StoreError>;

    /// The active (unrevoked) key with this secret, if any.
    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Whether any key was ever created, revoked ones included: a store is "fresh" (and gets a
    /// generated admin key) only once, so revoking every key cannot be undone by a restart.
    async fn has_keys(&self) -> Result<bool, StoreError>;
}

/// People who sign in to the web console (SPEC 9) and their sessions. Passwords arrive already
/// hashed (the service hashes them with Argon2id); session tokens are generated here and stored
/// only as hashes, like key secrets. Changes to users are audited; sessions are not.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user with the hash of their password, audited in the same transaction.
    /// Fails with [`StoreError::AlreadyExists`] if the username is taken.
    async fn create_user(&self, user: &User, password_hash: &str, meta: &ChangeMeta) -> Result<User, StoreError>;

    /// Every user, disabled ones included, ordered by username (bytewise).
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;

    /// A user and the hash of their password, if the username exists.
    async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError>;

    /// Changes a user, audited in the same transaction. Disabling a user or changing their
    /// password ends every session of theirs in that transaction too. [`StoreError::NotFound`]
    /// for an unknown username.
    async fn update_user(&self, username: &str, update: &UserUpdate, meta: &ChangeMeta) -> Result<User, StoreError>;

    /// Starts a session of `username` that ends at `expires_at` at the latest, and returns it
    /// with its token, which is shown here and never again.
    async fn create_session(&self, username: &str, expires_at: Timestamp) -> Result<(Session, String), StoreError>;

    /// The session with this token and its user, whatever its expiry (the service decides what
    /// has expired, as the idle timeout is its setting).
    async fn session(&self, token: &str) -> Result<Option<(Session, User)>, StoreError>;

    /// Records that the session was used at `at`.
    async fn touch_session(&self, token: &str, at: Timestamp) -> Result<(), StoreError>;

    /// Ends a session; whether it existed.
    async fn end_session(&self, token: &str) -> Result<bool, StoreError>;

    /// Deletes the sessions whose absolute expiry is at or before `now` or that were last used
    /// at or before `idle_before`; returns how many.
    async fn purge_sessions(&self, now: Timestamp, idle_before: Timestamp) -> Result<u64, StoreError>;
}

/// Sticky experiment assignments, keyed by (experiment id, unit).
#[async_trait::async_trait]
pub trait AssignmentStore: Send + Sync {
    /// The unexpired assignment of `unit` in the experiment, if any.
    async fn get_assignment(
        &self,
        experiment_id: &str,
        unit: &str,
        now: Timestamp,
    ) -> Result<Option<Assignment>, StoreError>;

    /// Stores `a` unless an unexpired assignment for its (experiment, unit) exists, atomically
    /// in the database (never read-then-write, which would race across nodes), and returns the
    /// record stored afterwards: `a` if it was first, the existing one otherwise. An assignment
    /// that expired at or before `a.assigned_at` is replaced.
    async fn assign_if_absent(&self, a: Assignment) -> Result<Assignment, StoreError>;

    /// [`assign_if_absent`](Self::assign_if_absent) for many assignments in one transaction,
    /// so the service can group-commit first assignments, flushed to disk as `flush` says.
    /// Results are in input order.
    async fn assign_many_if_absent(&self, batch: Vec<Assignment>, flush: Flush) -> Result<Vec<Assignment>, StoreError>;

    /// Deletes assignments that expired at or before `now`; returns how many.
    async fn purge_expired_assignments(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// Everything the service needs from storage about one environment, as one object
/// ([`Scoped`]).
pub trait Store: ConfigStore + AuditLog + KeyStore + AssignmentStore {}

impl<T: ConfigStore + AuditLog + KeyStore + AssignmentStore> Store for T {}

/// A storage backend holding every environment, and the people who use them.
pub trait Backend: DocumentStore + AuditLog + KeyStore + AssignmentStore + UserStore {}

impl<T: DocumentStore + AuditLog + KeyStore + AssignmentStore + UserStore> Backend for T {}

/// A body as JSON text.
fn raw_body(body: &serde_json::Value) -> Result<Box<RawValue>, StoreError> {
    serde_json::value::to_raw_value(body).map_err(|e| StoreError::Backend(format!("documents: {e}")))
}
