//! What every backend does the same around a change: the `If-Match` check of a document
//! write, the document it stores, the audit record a document or key write produces, and the
//! raise-only publication of a new revision.

use serde_json::Value;
use tokio::sync::watch;

use crate::secret::new_id;
use crate::{ApiKey, ChangeMeta, EntityKind, NewAuditRecord, StoreError, StoredDocument, Timestamp, User, UserUpdate};

/// The document an update or delete of `kind`/`key` applies to, given the `current` one the
/// backend read in the write's transaction, checked against `If-Match` (`expected`).
pub(crate) fn if_match(
    current: Option<StoredDocument>,
    kind: EntityKind,
    key: String,
    expected: Option<u64>,
) -> Result<StoredDocument, StoreError> {
    let Some(current) = current else {
        return Err(StoreError::NotFound { kind, key });
    };
    match expected {
        Some(expected) if expected != current.version => {
            Err(StoreError::VersionMismatch { kind, key, expected, actual: current.version })
        }
        _ => Ok(current),
    }
}

/// A document created at `now`: version 1, with a new id.
pub(crate) fn created(kind: EntityKind, key: String, body: Value, now: Timestamp) -> StoredDocument {
    StoredDocument { kind, key, id: new_id(), version: 1, created_at: now, updated_at: now, body }
}

/// `current` with a new body at `now`: the next version, same id and creation time.
pub(crate) fn replaced(current: &StoredDocument, body: Value, now: Timestamp) -> StoredDocument {
    StoredDocument { version: current.version + 1, updated_at: now, body, ..current.clone() }
}

/// A document write, as the audit log describes it.
pub(crate) enum DocumentChange<'a> {
    Created(&'a StoredDocument),
    Updated(&'a StoredDocument, &'a StoredDocument),
    Deleted(&'a StoredDocument),
}

impl DocumentChange<'_> {
    /// The audit record of this write in `env`, showing the documents as the API does.
    pub(crate) fn audit_record(&self, env: &str, meta: &ChangeMeta) -> NewAuditRecord {
        let (action, doc, before, after) = match *self {
            DocumentChange::Created(doc) => ("create", doc, None, Some(doc)),
            DocumentChange::Updated(before, after) => ("update", after, Some(before), Some(after)),
            DocumentChange::Deleted(doc) => ("delete", doc, Some(doc), None),
        };
        NewAuditRecord {
            meta: meta.clone(),
            environment: (env != crate::GLOBAL).then(|| env.to_owned()),
            action: action.to_owned(),
            entity: doc.kind,
            key: doc.key.clone(),
            before: before.map(StoredDocument::to_json),
            after: after.map(StoredDocument::to_json),
        }
    }
}

/// The audit record of a key's creation (`before` is `None`) or revocation.
pub(crate) fn key_audit_record(
    meta: &ChangeMeta,
    action: &str,
    before: Option<&ApiKey>,
    after: &ApiKey,
) -> NewAuditRecord {
    let json = |key: &ApiKey| serde_json::to_value(key).expect("an API key serialises to JSON");
    NewAuditRecord {
        meta: meta.clone(),
        environment: None,
        action: action.to_owned(),
        entity: EntityKind::Key,
        key: after.id.clone(),
        before: before.map(json),
        after: Some(json(after)),
    }
}

/// The audit record of a user's creation (`before` is `None`) or change. The password never
/// appears; a change of it shows as `"password_changed": true` in `after`.
pub(crate) fn user_audit_record(
    meta: &ChangeMeta,
    before: Option<&User>,
    after: &User,
    password_changed: bool,
) -> NewAuditRecord {
    let json = |user: &User| serde_json::to_value(user).expect("a user serialises to JSON");
    let mut shown = json(after);
    if password_changed {
        shown["password_changed"] = Value::Bool(true);
    }
    NewAuditRecord {
        meta: meta.clone(),
        environment: None,
        action: if before.is_some() { "update" } else { "create" }.to_owned(),
        entity: EntityKind::User,
        key: after.username.clone(),
        before: before.map(json),
        after: Some(shown),
    }
}

/// A user with `update` applied.
pub(crate) fn updated_user(current: &User, update: &UserUpdate) -> User {
    User {
        role: update.role.unwrap_or(current.role),
        environments: update.environments.clone().unwrap_or_else(|| current.environments.clone()),
        disabled: update.disabled.unwrap_or(current.disabled),
        ..current.clone()
    }
}

/// The stored record of an appended entry, once the store has given it an id and a time.
pub(crate) fn appended(id: u64, at: crate::Timestamp, entry: &NewAuditRecord) -> crate::AuditRecord {
    crate::AuditRecord {
        id,
        at,
        environment: entry.environment.clone(),
        actor: entry.meta.actor.clone(),
        action: entry.action.clone(),
        entity: entry.entity,
        key: entry.key.clone(),
        before: entry.before.clone(),
        after: entry.after.clone(),
        reason: entry.meta.reason.clone(),
    }
}

/// Raises the published revision, never lowers it: a store's own commits, its poller and its
/// listener race, and an older value seen by one must not undo a newer one from another.
pub(crate) fn publish_revision(sender: &watch::Sender<u64>, revision: u64) {
    sender.send_if_modified(|current| {
        let newer = revision > *current;
        if newer {
            *current = revision;
        }
        newer
    });
}
