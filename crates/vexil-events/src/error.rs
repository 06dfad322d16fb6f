//! The error of the pipeline's storage and processing (ingest has its own, [`crate::IngestError`],
//! because it maps onto HTTP answers).

use crate::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A state store other than SQLite failed (the distributed mode's PostgreSQL).
    #[error("state database error: {0}")]
    Store(String),
    /// The commit was refused: another node has taken the partition over.
    #[error("log partition {0} is now processed by another node")]
    Fenced(u32),
}
