//! The one error type of every storage operation, whatever the backend.

use crate::EntityKind;

/// Why a storage operation failed. The first three are the caller's conflicts (the API answers
/// 404 and 409); `Backend` is a fault of the database or of the data in it (500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {key:?} does not exist")]
    NotFound { kind: EntityKind, key: String },

    #[error("{kind} {key:?} already exists")]
    AlreadyExists { kind: EntityKind, key: String },

    #[error("{kind} {key:?} is at version {actual}, not {expected}: it was changed meanwhile")]
    VersionMismatch { kind: EntityKind, key: String, expected: u64, actual: u64 },

    /// Revoking the last active admin key would leave no one able to use the admin API (and
    /// `VEXIL_ADMIN_KEY` only bootstraps a store that never had a key).
    #[error("key {id:?} is the last active admin key; create another admin key before revoking it")]
    LastAdminKey { id: String },

    #[error("storage failure: {0}")]
    Backend(String),
}
