//! How values are laid out in SQLite columns.
//!
//! Timestamps are RFC 3339 UTC text with exactly nine fractional digits: readable with the
//! `sqlite3` shell, exact to the nanosecond, and — being fixed-width — ordered as text the way
//! they are in time, which the expiry comparisons in SQL rely on. JSON is stored as its text.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde_json::Value;

use crate::{EntityKind, KeyKind, Role, StoreError, Timestamp};

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Backend(format!("SQLite: {err}"))
    }
}

/// A timestamp column.
pub(super) struct Time(pub(super) Timestamp);

impl ToSql for Time {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.0.to_rfc3339_opts(SecondsFormat::Nanos, true).into())
    }
}

impl FromSql for Time {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        DateTime::parse_from_rfc3339(value.as_str()?)
            .map(|t| Time(t.with_timezone(&Utc)))
            .map_err(|e| FromSqlError::Other(e.into()))
    }
}

/// A JSON column. Unlike rusqlite's own mapping, JSON `null` stays distinct from SQL NULL, so
/// `Option<Json>` round-trips `Some(Value::Null)`.
pub(super) struct Json(pub(super) Value);

impl ToSql for Json {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.0.to_string().into())
    }
}

impl FromSql for Json {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?).map(Json).map_err(|e| FromSqlError::Other(e.into()))
    }
}

macro_rules! named_column {
    ($ty:ty) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e: crate::UnknownName| FromSqlError::Other(e.into()))
            }
        }
    };
}

named_column!(EntityKind);
named_column!(KeyKind);
named_column!(Role);
