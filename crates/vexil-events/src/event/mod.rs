//! Events: the model of SPEC 1.4, its validation, and the log record an accepted event becomes.
//!
//! - `model`: the event as the pipeline reads it ([`Event`], [`EventType`]);
//! - `validate`: judging each field on its own, every failure with its code and field;
//! - `scan`: reading an event's fields from its text in one pass, for ingest's hot path;
//! - `record`: the log record, and writing a validated event straight into one.

mod model;
mod record;
mod scan;
mod validate;

pub use model::{Event, EventType};
pub(crate) use record::ReadRecord;
pub use record::{EvaluationCounts, LogRecord, Receipt, StoredEvent};
pub(crate) use scan::skip_whitespace;
pub(crate) use validate::validate_prefix;
pub use validate::{
    is_valid_event_name, validate_event, validate_text, EventError, ValidEvent, MAX_EVENT_BYTES, MAX_FUTURE,
    MAX_USER_ID_CHARS,
};
