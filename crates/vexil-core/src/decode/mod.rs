//! Turns JSON values (parsed from JSON or YAML) into the [`crate::model`] types.
//!
//! Hand-written rather than derived with serde because a derived deserializer stops at the first
//! error, and users fixing a flags file need every problem with its path at once
//! (`rules[1].when.op: unknown operator "equal"`). Unknown fields are errors, never ignored.
//!
//! - `reader`: the `Reader` with its field readers, keys and meta fields shared by every kind;
//! - `flag`: flags, their rules and how they serve;
//! - `condition`: conditions and segments.

mod condition;
mod flag;
mod reader;

use crate::error::ValidationErrors;
use crate::model::{Condition, Flag, FlagsDocument, Segment};
use serde_json::Value;

pub use reader::{is_valid_key, KEY_RULE};
pub(crate) use reader::{kind_of, Reader};

/// Decodes a whole flags document `{"flags": [...], "segments": [...]}`.
pub fn decode_document(value: &Value) -> Result<FlagsDocument, ValidationErrors> {
    let partial = decode_document_partially(value);
    partial.errors.into_result(partial.document)
}

/// A document decoded as far as possible: the items that decoded, every problem found, and the
/// keys of items too broken to decode (so references to them are not reported as unknown).
pub(crate) struct PartialDocument {
    pub(crate) document: FlagsDocument,
    pub(crate) errors: ValidationErrors,
    pub(crate) broken_keys: Vec<String>,
}

pub(crate) fn decode_document_partially(value: &Value) -> PartialDocument {
    let mut r = Reader::default();
    let mut broken_keys = Vec::new();
    let mut document = FlagsDocument::default();
    if let Some(obj) = r.object(value, "", &["flags", "segments"]) {
        document.flags = r.list(obj.get("flags"), "flags", |r, v, path| {
            let flag = r.flag(v, path, true);
            if flag.is_none() {
                broken_keys.extend(v.get("key").and_then(Value::as_str).map(str::to_string));
            }
            flag
        });
        document.segments = r.list(obj.get("segments"), "segments", |r, v, path| {
            let segment = r.segment(v, path, true);
            if segment.is_none() {
                broken_keys.extend(v.get("key").and_then(Value::as_str).map(str::to_string));
            }
            segment
        });
    }
    PartialDocument { document, errors: r.errors, broken_keys }
}

/// Decodes one flag, with paths relative to the flag (`rules[0].serve`).
pub fn decode_flag(value: &Value) -> Result<Flag, ValidationErrors> {
    let mut r = Reader::default();
    let flag = r.flag(value, "", false);
    r.finish(flag)
}

/// Decodes one segment, with paths relative to the segment.
pub fn decode_segment(value: &Value) -> Result<Segment, ValidationErrors> {
    let mut r = Reader::default();
    let segment = r.segment(value, "", false);
    r.finish(segment)
}

/// Decodes one condition, with paths relative to it.
pub fn decode_condition(value: &Value) -> Result<Condition, ValidationErrors> {
    let mut r = Reader::default();
    let condition = r.condition(value, "");
    r.finish(condition)
}
