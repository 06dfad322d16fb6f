//! The `Reader` that every decoder is built on: it turns JSON values into typed fields, records
//! each problem with its path and carries on, so one pass reports everything wrong with a file.
//!
//! Also the shared rules of stored objects: their keys and meta fields.

use crate::error::{FieldPath, ValidationErrors};
use crate::model::{Meta, Percent};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt;

/// Keys of flags, segments, experiments and metrics: `^[a-z][a-z0-9_]*$`, at most 128 chars.
pub fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && key.len() <= 128
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

pub const KEY_RULE: &str = "must match ^[a-z][a-z0-9_]*$ and be at most 128 characters";

/// Fields every stored object has (SPEC 1): its key and the meta fields.
const STORED_FIELDS: &[&str] = &["key", "id", "version", "created_at", "updated_at", "description", "tags"];

/// Reads JSON values into model types, collecting every problem instead of stopping at one.
#[derive(Default)]
pub(crate) struct Reader {
    pub(crate) errors: ValidationErrors,
}

pub(crate) type Obj<'a> = &'a Map<String, Value>;

impl Reader {
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ValidationErrors> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(self.errors),
        }
    }

    pub(crate) fn error(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.errors.push(path, message);
    }

    pub(crate) fn object<'a>(&mut self, v: &'a Value, path: &FieldPath<'_>, allowed: &[&str]) -> Option<Obj<'a>> {
        self.object_with(v, path, |field| allowed.contains(&field))
    }

    /// An object of a stored kind: the fields every stored object has, plus `own`.
    pub(crate) fn stored_object<'a>(&mut self, v: &'a Value, path: &FieldPath<'_>, own: &[&str]) -> Option<Obj<'a>> {
        self.object_with(v, path, |field| STORED_FIELDS.contains(&field) || own.contains(&field))
    }

    fn object_with<'a>(
        &mut self,
        v: &'a Value,
        path: &FieldPath<'_>,
        allowed: impl Fn(&str) -> bool,
    ) -> Option<Obj<'a>> {
        let Some(map) = v.as_object() else {
            self.error(path, format!("must be an object, found {}", kind_of(v)));
            return None;
        };
        for field in map.keys() {
            if !allowed(field) {
                self.error(path.field(field), "unknown field");
            }
        }
        Some(map)
    }

    /// Decodes an optional array field; each element by `item`, keeping the ones that decode.
    pub(crate) fn list<T>(
        &mut self,
        v: Option<&Value>,
        path: &FieldPath<'_>,
        mut item: impl FnMut(&mut Self, &Value, &FieldPath<'_>) -> Option<T>,
    ) -> Vec<T> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                items.iter().enumerate().filter_map(|(i, v)| item(self, v, &path.index(i))).collect()
            }
            Some(other) => {
                self.error(path, format!("must be an array, found {}", kind_of(other)));
                Vec::new()
            }
        }
    }

    pub(crate) fn string(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> Option<String> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.error(path, format!("must be a string, found {}", kind_of(other)));
                None
            }
        }
    }

    /// A field that must be present: absent or null is an error, anything else is read by `read`.
    pub(crate) fn required<T>(
        &mut self,
        v: Option<&Value>,
        path: &FieldPath<'_>,
        read: impl FnOnce(&mut Self, &Value, &FieldPath<'_>) -> Option<T>,
    ) -> Option<T> {
        match v {
            None | Some(Value::Null) => {
                self.error(path, "is required");
                None
            }
            Some(v) => read(self, v, path),
        }
    }

    /// A field that may be left out: `Some(None)` when absent or null, `None` when it is present
    /// but does not decode (so the enclosing item fails too).
    pub(crate) fn optional<T>(
        &mut self,
        v: Option<&Value>,
        path: &FieldPath<'_>,
        read: impl FnOnce(&mut Self, &Value, &FieldPath<'_>) -> Option<T>,
    ) -> Option<Option<T>> {
        match v {
            None | Some(Value::Null) => Some(None),
            Some(v) => read(self, v, path).map(Some),
        }
    }

    pub(crate) fn required_string(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> Option<String> {
        self.required(v, path, |r, v, path| r.string(Some(v), path))
    }

    pub(crate) fn key(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> Option<String> {
        let key = self.required_string(v, path)?;
        self.matching(key, path, is_valid_key, KEY_RULE)
    }

    /// `name` when `is_valid` accepts it; otherwise an error quoting it with `rule`.
    pub(crate) fn matching(
        &mut self,
        name: String,
        path: &FieldPath<'_>,
        is_valid: fn(&str) -> bool,
        rule: &str,
    ) -> Option<String> {
        if is_valid(&name) {
            Some(name)
        } else {
            self.error(path, format!("\"{name}\" {rule}"));
            None
        }
    }

    pub(crate) fn bool(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> Option<bool> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.error(path, format!("must be true or false, found {}", kind_of(other)));
                None
            }
        }
    }

    /// The context attribute users are bucketed by (SPEC 2), for flags and experiments alike.
    pub(crate) fn bucket_by(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> String {
        let bucket_by = self.string(v, path).unwrap_or_else(|| "user_id".into());
        if bucket_by.trim().is_empty() {
            self.error(path, "must name a context attribute");
        }
        bucket_by
    }

    pub(crate) fn strings(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> Vec<String> {
        self.list(v, path, |r, v, p| r.required_string(Some(v), p))
    }

    pub(crate) fn timestamp(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> Option<DateTime<Utc>> {
        let s = self.string(v, path)?;
        match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                self.error(path, format!("\"{s}\" is not an RFC 3339 date-time ({e})"));
                None
            }
        }
    }

    pub(crate) fn meta(&mut self, obj: Obj<'_>, path: &FieldPath<'_>) -> Meta {
        let version = match obj.get("version") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) => Some(n),
                None => {
                    self.error(path.field("version"), "must be a non-negative integer");
                    None
                }
            },
        };
        Meta {
            id: self.string(obj.get("id"), &path.field("id")),
            version,
            created_at: self.timestamp(obj.get("created_at"), &path.field("created_at")),
            updated_at: self.timestamp(obj.get("updated_at"), &path.field("updated_at")),
            description: self.string(obj.get("description"), &path.field("description")).unwrap_or_default(),
            tags: self.strings(obj.get("tags"), &path.field("tags")),
        }
    }

    /// In a document, an item is addressed by its key once it has one (`flags.new_checkout`
    /// rather than `flags[3]`).
    pub(super) fn item_path<'a>(v: &'a Value, path: &'a FieldPath<'a>, in_document: bool) -> FieldPath<'a> {
        match v.get("key").and_then(Value::as_str) {
            Some(key) if in_document && is_valid_key(key) => match path {
                FieldPath::Index(collection, _) => collection.field(key),
                _ => path.field(key),
            },
            _ => *path,
        }
    }

    /// A percentage 0–100 with at most two decimals; 100 when absent.
    pub(crate) fn percent(&mut self, v: Option<&Value>, path: &FieldPath<'_>) -> Option<Percent> {
        match v {
            None | Some(Value::Null) => Some(Percent::ALL),
            Some(r) => {
                let percent = r.as_f64().and_then(Percent::from_percent);
                if percent.is_none() {
                    self.error(
                        path,
                        format!("must be a percentage from 0 to 100 with at most two decimals, found {r}"),
                    );
                }
                percent
            }
        }
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
