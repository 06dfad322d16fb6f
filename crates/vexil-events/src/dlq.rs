//! The dead-letter queue: events that could not be accepted or processed, kept with their cause
//! and their raw payload so that nothing sent to vexil is ever silently lost.
//!
//! Two stages write to it: ingest (an event failed validation; its neighbours were still
//! accepted) and processing (a record kept failing after every retry). Operators list entries,
//! replay them (they are validated again and re-ingested, see
//! [`crate::Ingestor::replay_dlq`]) or purge them. The queue is a small SQLite database of its
//! own, so writing to it never contends with the processor's transactions.
//!
//! Invalid events can be sent by anyone holding a key, and client keys ship inside web pages,
//! so what ingest dead-letters is bounded ([`DlqLimits`]): payloads are cut to a size, and
//! once the ingest entries reach a count or a byte total, further invalid events are refused
//! (each still reported as rejected to its sender, and counted). Records that failed
//! processing are valid events and are always kept.

use crate::error::Error;
use crate::event::EventError;
use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Where an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqStage {
    /// Failed validation at ingest.
    Ingest,
    /// Accepted, then failed processing after every attempt.
    Processing,
}

impl DlqStage {
    fn name(self) -> &'static str {
        match self {
            DlqStage::Ingest => "ingest",
            DlqStage::Processing => "processing",
        }
    }

    fn parse(name: &str) -> DlqStage {
        if name == "processing" {
            DlqStage::Processing
        } else {
            DlqStage::Ingest
        }
    }
}

/// One dead letter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub stage: DlqStage,
    pub error: EventError,
    /// The payload exactly as it was received (or as it was stored in the log).
    pub payload: String,
    /// The log offset of a record that failed processing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_offset: Option<u64>,
    /// How often processing (or replay) was tried.
    pub attempts: u32,
    /// The environment the event was sent to; `None` is production, which also holds the
    /// records that failed processing (an undecodable record names no environment).
    #[serde(skip)]
    pub env: Option<String>,
}

/// Which entries a list, replay or purge applies to. The default selects every entry of
/// production.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqFilter {
    /// Only entries of this environment (`None`: production, see [`crate::environment`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Only entries with this error code.
    pub code: Option<String>,
    pub stage: Option<DlqStage>,
    /// Only entries created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries with an id greater than this (for paging).
    pub after_id: Option<i64>,
    /// Only these entries.
    pub ids: Option<Vec<i64>>,
    /// At most this many entries, oldest first; `None` means all.
    pub limit: Option<usize>,
}

/// Bounds on what ingest dead-letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DlqLimits {
    /// Ingest entries kept at most.
    pub max_entries: u64,
    /// Total payload bytes of ingest entries kept at most.
    pub max_bytes: u64,
    /// Longer payloads are kept cut to this many bytes, with [`TRUNCATED_MARK`].
    pub max_payload_bytes: usize,
}

impl Default for DlqLimits {
    fn default() -> DlqLimits {
        DlqLimits { max_entries: 100_000, max_bytes: 64 * 1024 * 1024, max_payload_bytes: 8 * 1024 }
    }
}

/// Ends a payload that was cut to [`DlqLimits::max_payload_bytes`].
pub const TRUNCATED_MARK: &str = "…[truncated]";

/// The dead-letter queue.
pub struct Dlq {
    conn: Mutex<Ingested>,
    metrics: Arc<Metrics>,
    limits: DlqLimits,
}

/// The connection, and the ingest entries it holds (kept in step under the same lock).
struct Ingested {
    conn: Connection,
    entries: u64,
    bytes: u64,
}

impl std::ops::Deref for Ingested {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Ingested {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// `payload`, cut on a character boundary to at most `max` bytes plus the mark.
fn truncated(payload: &str, max: usize) -> Option<String> {
    if payload.len() <= max {
        return None;
    }
    let end = (0..=max).rev().find(|&i| payload.is_char_boundary(i)).unwrap_or(0);
    Some(format!("{}{TRUNCATED_MARK}", &payload[..end]))
}

impl Dlq {
    /// Opens (or creates) the queue's database at `path`.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<Dlq, Error> {
        Dlq::open_with(path, metrics, DlqLimits::default())
    }

    /// Opens (or creates) the queue's database at `path`, with `limits` on ingest entries.
    pub fn open_with(path: &Path, metrics: Arc<Metrics>, limits: DlqLimits) -> Result<Dlq, Error> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS dlq (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 created_at TEXT NOT NULL,
                 stage TEXT NOT NULL,
                 code TEXT NOT NULL,
                 message TEXT NOT NULL,
                 field TEXT,
                 payload TEXT NOT NULL,
                 source_offset INTEGER UNIQUE,
                 attempts INTEGER NOT NULL
             );",
        )?;
        // Queues written before environments have no environment column: their entries are
        // production's (NULL).
        let has_env: bool =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_info('dlq') WHERE name = 'env'", [], |r| r.get(0))?;
        if !has_env {
            conn.execute_batch("ALTER TABLE dlq ADD COLUMN env TEXT")?;
        }
        let dlq = Dlq { conn: Mutex::new(Ingested { conn, entries: 0, bytes: 0 }), metrics, limits };
        dlq.refresh_size()?;
        Ok(dlq)
    }

    /// Stores events rejected at ingest, each with its error and raw payload (cut past
    /// `max_payload_bytes`), in one transaction, as long as the queue's ingest entries stay
    /// within their limits; the rest are counted as refused. Returns how many were stored.
    /// `env` is their environment (`None`: production).
    pub fn push_rejected(&self, env: Option<&str>, rejected: &[(EventError, String)]) -> Result<usize, Error> {
        if rejected.is_empty() {
            return Ok(0);
        }
        let mut guard = self.conn.lock().expect("dlq connection poisoned");
        let (mut entries, mut bytes) = (guard.entries, guard.bytes);
        let (mut stored, mut cut) = (0u64, 0u64);
        let tx = guard.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO dlq (created_at, stage, code, message, field, payload, attempts, env)
                 VALUES (?1, 'ingest', ?2, ?3, ?4, ?5, 0, ?6)",
            )?;
            let now = Utc::now().to_rfc3339();
            for (error, payload) in rejected {
                let shortened = truncated(payload, self.limits.max_payload_bytes);
                let kept = shortened.as_deref().unwrap_or(payload);
                if entries >= self.limits.max_entries || bytes + kept.len() as u64 > self.limits.max_bytes {
                    break;
                }
                insert.execute(params![now, error.code, error.message, error.field, kept, env])?;
                (entries, bytes, stored) = (entries + 1, bytes + kept.len() as u64, stored + 1);
                cut += u64::from(shortened.is_some());
            }
        }
        tx.commit()?;
        (guard.entries, guard.bytes) = (entries, bytes);
        Metrics::add(&self.metrics.dlq_size, stored);
        Metrics::add(&self.metrics.dlq_truncated_total, cut);
        Metrics::add(&self.metrics.dlq_refused_total, rejected.len() as u64 - stored);
        Ok(stored as usize)
    }

    /// Stores a log record that failed processing `attempts` times. Storing the same offset
    /// again (after a crash made the processor see it once more) keeps one entry.
    pub fn push_poison(&self, offset: u64, error: &EventError, payload: &str, attempts: u32) -> Result<(), Error> {
        let conn = self.conn.lock().expect("dlq connection poisoned");
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO dlq (created_at, stage, code, message, field, payload, source_offset, attempts)
             VALUES (?1, 'processing', ?2, ?3, ?4, ?5, ?6, ?7)",
            params![Utc::now().to_rfc3339(), error.code, error.message, error.field, payload, offset as i64, attempts],
        )?;
        Metrics::add(&self.metrics.dlq_size, inserted as u64);
        Ok(())
    }

    /// The entries the filter selects, oldest first.
    pub fn list(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>, Error> {
        let (clause, args) = where_clause(filter);
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let sql = format!(
            "SELECT id, created_at, stage, code, message, field, payload, source_offset, attempts, env
             FROM dlq {clause} ORDER BY id LIMIT {limit}"
        );
        let conn = self.conn.lock().expect("dlq connection poisoned");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), entry_of_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the entries the filter selects (with `limit`, the oldest ones); returns how many.
    pub fn purge(&self, filter: &DlqFilter) -> Result<usize, Error> {
        let (clause, args) = where_clause(filter);
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let sql = format!("DELETE FROM dlq WHERE id IN (SELECT id FROM dlq {clause} ORDER BY id LIMIT {limit})");
        let removed = {
            let conn = self.conn.lock().expect("dlq connection poisoned");
            conn.execute(&sql, rusqlite::params_from_iter(args.iter()))?
        };
        self.refresh_size()?;
        Ok(removed)
    }

    /// Records that replaying entry `id` failed again, with the new error.
    pub(crate) fn record_failed_replay(&self, id: i64, error: &EventError) -> Result<(), Error> {
        let conn = self.conn.lock().expect("dlq connection poisoned");
        conn.execute(
            "UPDATE dlq SET code = ?2, message = ?3, field = ?4, attempts = attempts + 1 WHERE id = ?1",
            params![id, error.code, error.message, error.field],
        )?;
        Ok(())
    }

    /// The number of entries.
    pub fn len(&self) -> Result<u64, Error> {
        let conn = self.conn.lock().expect("dlq connection poisoned");
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM dlq", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The number of entries of environment `env` (`None`: production).
    pub fn count(&self, env: Option<&str>) -> Result<u64, Error> {
        let conn = self.conn.lock().expect("dlq connection poisoned");
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM dlq WHERE env IS ?1", [env], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> Result<bool, Error> {
        let conn = self.conn.lock().expect("dlq connection poisoned");
        Ok(conn.query_row("SELECT 1 FROM dlq LIMIT 1", [], |_| Ok(())).optional()?.is_none())
    }

    /// Recounts the entries, and the ingest entries the limits apply to.
    fn refresh_size(&self) -> Result<(), Error> {
        let mut guard = self.conn.lock().expect("dlq connection poisoned");
        let (entries, bytes): (i64, i64) = guard.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(payload AS BLOB))), 0) FROM dlq WHERE stage = 'ingest'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        (guard.entries, guard.bytes) = (entries as u64, bytes as u64);
        let all: i64 = guard.query_row("SELECT COUNT(*) FROM dlq", [], |r| r.get(0))?;
        Metrics::set(&self.metrics.dlq_size, all as u64);
        Ok(())
    }
}

fn where_clause(filter: &DlqFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as Sql;
    let mut conditions = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    match &filter.env {
        None => conditions.push("env IS NULL".to_owned()),
        Some(env) => {
            args.push(Sql::Text(env.clone()));
            conditions.push(format!("env = ?{}", args.len()));
        }
    }
    if let Some(code) = &filter.code {
        args.push(Sql::Text(code.clone()));
        conditions.push(format!("code = ?{}", args.len()));
    }
    if let Some(stage) = filter.stage {
        args.push(Sql::Text(stage.name().to_owned()));
        conditions.push(format!("stage = ?{}", args.len()));
    }
    if let Some(since) = filter.since {
        args.push(Sql::Text(since.to_rfc3339()));
        conditions.push(format!("created_at >= ?{}", args.len()));
    }
    if let Some(after) = filter.after_id {
        args.push(Sql::Integer(after));
        conditions.push(format!("id > ?{}", args.len()));
    }
    if let Some(ids) = &filter.ids {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        conditions.push(format!("id IN ({})", list.join(",")));
    }
    let clause = format!("WHERE {}", conditions.join(" AND "));
    (clause, args)
}

fn entry_of_row(row: &Row<'_>) -> rusqlite::Result<DlqEntry> {
    let created: String = row.get(1)?;
    let stage: String = row.get(2)?;
    Ok(DlqEntry {
        id: row.get(0)?,
        created_at: DateTime::parse_from_rfc3339(&created).map(|t| t.with_timezone(&Utc)).unwrap_or_default(),
        stage: DlqStage::parse(&stage),
        error: EventError { code: row.get(3)?, message: row.get(4)?, field: row.get(5)? },
        payload: row.get(6)?,
        source_offset: row.get::<_, Option<i64>>(7)?.map(|o| o as u64),
        attempts: row.get(8)?,
        env: row.get(9)?,
    })
}
