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
    let flags = decode_each(flags.into_iter().map(Ok), 0, "flags", Reader::flag);
    let segments = decode_each(segments.into_iter().map(Ok), 0, "segments", Reader::segment);
    PartialDocument::joined(flags, segments)
}

/// [`decode_items_partially`] of documents given as JSON text, the flags parsed and decoded
/// in `threads` contiguous shares at once: parsing and decoding are most of a load, and each
/// document is decoded on its own. The shares are joined in document order, so the problems
/// and their paths are those of one pass.
pub(crate) fn decode_texts_partially(flags: &[&str], segments: &[&str], threads: usize) -> PartialDocument {
    let share = flags.len().div_ceil(threads.max(1)).max(1);
    let mut shares = flags.chunks(share);
    let first = shares.next().unwrap_or_default();
    let flags = std::thread::scope(|scope| {
        let others: Vec<_> = shares
            .enumerate()
            .map(|(n, texts)| scope.spawn(move || decode_each(parsed(texts), (n + 1) * share, "flags", Reader::flag)))
            .collect();
        let mut flags = decode_each(parsed(first), 0, "flags", Reader::flag);
        for other in others {
            flags.append(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        flags
    });
    let segments = decode_each(parsed(segments), 0, "segments", Reader::segment);
    PartialDocument::joined(flags, segments)
}

fn parsed<'a>(texts: &'a [&'a str]) -> impl Iterator<Item = Result<Value, serde_json::Error>> + 'a {
    texts.iter().map(|text| serde_json::from_str(text))
}

/// The items of one collection that decoded, the problems found, and the keys of the items
/// that did not decode.
struct Decoded<T> {
    items: Vec<T>,
    errors: ValidationErrors,
    broken_keys: Vec<String>,
}

impl<T> Decoded<T> {
    fn append(&mut self, later: Decoded<T>) {
        self.items.extend(later.items);
        self.errors.0.extend(later.errors.0);
        self.broken_keys.extend(later.broken_keys);
    }
}

impl PartialDocument {
    fn joined(flags: Decoded<Flag>, segments: Decoded<Segment>) -> PartialDocument {
        let mut errors = flags.errors;
        errors.0.extend(segments.errors.0);
        let mut broken_keys = flags.broken_keys;
        broken_keys.extend(segments.broken_keys);
        PartialDocument {
            document: FlagsDocument { flags: flags.items, segments: segments.items },
            errors,
            broken_keys,
        }
    }
}

/// Decodes the items of `collection` numbered from `first_index`, each as a stored item of a
/// document (addressed by its key once it has one).
fn decode_each<T>(
    values: impl Iterator<Item = Result<Value, serde_json::Error>>,
    first_index: usize,
    collection: &str,
    decode: fn(&mut Reader, &Value, &FieldPath<'_>, bool) -> Option<T>,
) -> Decoded<T> {
    let mut r = Reader::default();
    let (mut items, mut broken_keys) = (Vec::new(), Vec::new());
    let collection = FieldPath::Text(collection);
    for (i, value) in values.enumerate() {
        let path = collection.index(first_index + i);
        match value {
            Ok(v) => items.extend(remember_broken(decode(&mut r, &v, &path, true), &v, &mut broken_keys)),
            Err(e) => r.error(path, format!("is not JSON: {e}")),
        }
    }
    Decoded { items, errors: r.errors, broken_keys }
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
