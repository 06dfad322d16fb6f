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

use crate::error::{FieldPath, ValidationErrors};
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
#[derive(Default)]
pub(crate) struct PartialDocument {
    pub(crate) document: FlagsDocument,
    pub(crate) errors: ValidationErrors,
    pub(crate) broken_keys: Vec<String>,
}

pub(crate) fn decode_document_partially(value: &Value) -> PartialDocument {
    let mut partial = PartialDocument::default();
    let mut r = Reader::default();
    if let Some(obj) = r.object(value, &FieldPath::ROOT, &["flags", "segments"]) {
        let broken_keys = &mut partial.broken_keys;
        partial.document.flags = r.list(obj.get("flags"), &FieldPath::Text("flags"), |r, v, path| {
            remember_broken(r.flag(v, path, true), v, broken_keys)
        });
        partial.document.segments = r.list(obj.get("segments"), &FieldPath::Text("segments"), |r, v, path| {
            remember_broken(r.segment(v, path, true), v, broken_keys)
        });
    }
    partial.errors = r.errors;
    partial
}

/// Decodes flags and segments given one by one (stored documents), with the paths of
/// [`decode_document_partially`]; each item is dropped as soon as it is decoded, so a large
/// configuration is never held as JSON values all at once.
pub(crate) fn decode_items_partially(
    flags: impl IntoIterator<Item = Value>,
    segments: impl IntoIterator<Item = Value>,
) -> PartialDocument {
    let mut partial = PartialDocument::default();
    let mut r = Reader::default();
    let (flags_path, segments_path) = (FieldPath::Text("flags"), FieldPath::Text("segments"));
    for (i, v) in flags.into_iter().enumerate() {
        let flag = r.flag(&v, &flags_path.index(i), true);
        partial.document.flags.extend(remember_broken(flag, &v, &mut partial.broken_keys));
    }
    for (i, v) in segments.into_iter().enumerate() {
        let segment = r.segment(&v, &segments_path.index(i), true);
        partial.document.segments.extend(remember_broken(segment, &v, &mut partial.broken_keys));
    }
    partial.errors = r.errors;
    partial
}

/// An item that did not decode leaves its key, so references to it are not reported as unknown.
fn remember_broken<T>(decoded: Option<T>, v: &Value, broken_keys: &mut Vec<String>) -> Option<T> {
    if decoded.is_none() {
        broken_keys.extend(v.get("key").and_then(Value::as_str).map(str::to_string));
    }
    decoded
}

/// Decodes one flag, with paths relative to the flag (`rules[0].serve`).
pub fn decode_flag(value: &Value) -> Result<Flag, ValidationErrors> {
    let mut r = Reader::default();
    let flag = r.flag(value, &FieldPath::ROOT, false);
    r.finish(flag)
}

/// Decodes one stored flag of a set, with the paths of a whole document (`flags.KEY.rules[0]`).
pub(crate) fn decode_stored_flag(value: &Value) -> Result<Flag, ValidationErrors> {
    let mut r = Reader::default();
    let flag = r.flag(value, &FieldPath::Text("flags"), true);
    r.finish(flag)
}

/// Decodes one stored segment of a set, with the paths of a whole document.
pub(crate) fn decode_stored_segment(value: &Value) -> Result<Segment, ValidationErrors> {
    let mut r = Reader::default();
    let segment = r.segment(value, &FieldPath::Text("segments"), true);
    r.finish(segment)
}

/// Decodes one segment, with paths relative to the segment.
pub fn decode_segment(value: &Value) -> Result<Segment, ValidationErrors> {
    let mut r = Reader::default();
    let segment = r.segment(value, &FieldPath::ROOT, false);
    r.finish(segment)
}

/// Decodes one condition, with paths relative to it.
pub fn decode_condition(value: &Value) -> Result<Condition, ValidationErrors> {
    let mut r = Reader::default();
    let condition = r.condition(value, &FieldPath::ROOT);
    r.finish(condition)
}
