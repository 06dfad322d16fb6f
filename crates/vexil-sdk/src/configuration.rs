//! The configuration the SDK evaluates against: the flags and segments of `GET /v1/sdk/flags`
//! (or of a local file), compiled by `vexil-core`, and the stream's changes applied to it.
//!
//! Each change produces a new, immutable [`Configuration`]; the client swaps it in whole, so an
//! evaluation always sees one consistent revision. The documents are kept beside the compiled
//! set because a `patch` replaces one document and the set is recompiled from all of them
//! (segments and prerequisites are resolved across documents at compile time).

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use vexil_core::{FlagSet, ValidationErrors};

/// The local file served while the server has not answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The last-known-good copy the SDK wrote on disk when it was last in touch with the server.
    Cache,
    /// The bootstrap flags file the application ships.
    Bootstrap,
}

/// What a document describes, as the stream names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Flag,
    Segment,
}

/// One change of the stream: a `patch` (created or updated) carries the object, a `delete` none.
#[derive(Debug, Deserialize)]
pub(crate) struct Change {
    kind: Kind,
    key: String,
    #[serde(default)]
    object: Option<Value>,
}

/// Why a document or a change could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    /// Not JSON, or not shaped like a flags document or a change.
    #[error("malformed configuration: {0}")]
    Malformed(String),
    /// It decoded but does not compile (an unknown segment, a cycle, ...).
    #[error("invalid configuration:\n{0}")]
    Invalid(ValidationErrors),
}

/// One flag's evaluation counts, by variant name.
type VariantCounts = Box<[(String, AtomicU64)]>;

/// One compiled revision of the flags and segments.
pub(crate) struct Configuration {
    pub flags: FlagSet,
    /// Whether any flag has a schedule: only schedules read the time, and reading the clock
    /// would be a third of a plain flag's evaluation.
    pub scheduled: bool,
    documents: BTreeMap<(Kind, String), Value>,
    /// Evaluations since the last report, by flag position and variant: one relaxed atomic
    /// increment per evaluation, no lookup beyond the flag's few variant names.
    counts: Box<[VariantCounts]>,
    /// Evaluations that served an experiment's arm, whose names are not the flag's variants.
    arm_counts: Mutex<HashMap<(usize, String), u64>>,
}

impl Configuration {
    /// Reads `{"flags": [...], "segments": [...]}` (the SDK document, or a flags file).
    pub fn from_document(document: &Value) -> Result<Configuration, ConfigurationError> {
        let mut documents = BTreeMap::new();
        for (kind, field) in [(Kind::Flag, "flags"), (Kind::Segment, "segments")] {
            let items = match document.get(field) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) => items,
                Some(_) => return Err(ConfigurationError::Malformed(format!("{field} must be an array"))),
            };
            for (i, item) in items.iter().enumerate() {
                let key = item
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ConfigurationError::Malformed(format!("{field}[{i}].key must be a string")))?;
                documents.insert((kind, key.to_string()), item.clone());
            }
        }
        Configuration::compile(documents)
    }

    /// This configuration with one stream change (`patch` or `delete`) applied.
    pub fn changed(&self, change: Change) -> Result<Configuration, ConfigurationError> {
        let mut documents = self.documents.clone();
        match change.object {
            Some(object) => documents.insert((change.kind, change.key), object),
            None => documents.remove(&(change.kind, change.key)),
        };
        Configuration::compile(documents)
    }

    fn compile(documents: BTreeMap<(Kind, String), Value>) -> Result<Configuration, ConfigurationError> {
        let flags = FlagSet::from_value(&document_of(&documents)).map_err(ConfigurationError::Invalid)?;
        let scheduled = flags.flags().any(|f| f.schedule.enable_at.is_some() || f.schedule.disable_at.is_some());
        let counts = flags
            .flags()
            .map(|flag| flag.variants.keys().map(|name| (name.clone(), AtomicU64::new(0))).collect())
            .collect();
        Ok(Configuration { flags, scheduled, documents, counts, arm_counts: Mutex::default() })
    }

    /// Counts one evaluation of the flag at `position` that served `variant`.
    pub fn count(&self, position: usize, variant: &str) {
        let Some(variants) = self.counts.get(position) else { return };
        match variants.iter().find(|(name, _)| name == variant) {
            Some((_, count)) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut arms = self.arm_counts.lock().expect("arm counts poisoned");
                *arms.entry((position, variant.to_string())).or_default() += 1;
            }
        }
    }

    /// The counts since the last call, as (flag, variant, evaluations), reset to zero.
    pub fn take_counts(&self) -> Vec<(String, String, u64)> {
        let keys: Vec<&str> = self.flags.flags().map(|flag| flag.key.as_str()).collect();
        let mut taken = Vec::new();
        for (position, variants) in self.counts.iter().enumerate() {
            for (variant, count) in variants.iter() {
                let n = count.swap(0, Ordering::Relaxed);
                if n > 0 {
                    taken.push((keys[position].to_string(), variant.clone(), n));
                }
            }
        }
        let arms = std::mem::take(&mut *self.arm_counts.lock().expect("arm counts poisoned"));
        taken.extend(arms.into_iter().map(|((position, variant), n)| (keys[position].to_string(), variant, n)));
        taken
    }

    /// The flags document of this configuration, as the server sends it (for the disk cache).
    pub fn document(&self) -> Value {
        document_of(&self.documents)
    }
}

fn document_of(documents: &BTreeMap<(Kind, String), Value>) -> Value {
    let of_kind = |kind: Kind| documents.iter().filter(move |((k, _), _)| *k == kind).map(|(_, v)| v);
    json!({
        "flags": of_kind(Kind::Flag).collect::<Vec<_>>(),
        "segments": of_kind(Kind::Segment).collect::<Vec<_>>(),
    })
}

/// Parses the data of a `patch` event (`{"kind", "key", "object"}`).
pub(crate) fn parse_patch(data: &str) -> Result<Change, ConfigurationError> {
    let change: Change = serde_json::from_str(data).map_err(|e| ConfigurationError::Malformed(e.to_string()))?;
    if change.object.is_none() {
        return Err(ConfigurationError::Malformed("a patch needs an object".into()));
    }
    Ok(change)
}

/// Parses the data of a `delete` event (`{"kind", "key"}`).
pub(crate) fn parse_delete(data: &str) -> Result<Change, ConfigurationError> {
    let change: Change = serde_json::from_str(data).map_err(|e| ConfigurationError::Malformed(e.to_string()))?;
    Ok(Change { object: None, ..change })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexil_core::Context;

    const AT: i64 = 1_767_225_600_000;

    fn served(configuration: &Configuration, key: &str) -> Option<String> {
        let result = configuration.flags.evaluate(key, &Context::user("u"), AT).ok()?;
        Some(result.variant.to_string())
    }

    #[test]
    fn patches_and_deletes_replace_single_documents() {
        let document = json!({"flags": [{"key": "a", "enabled": true, "default": {"variant": "off"}}], "segments": []});
        let first = Configuration::from_document(&document).unwrap();
        assert_eq!(served(&first, "a").as_deref(), Some("off"));

        let patch =
            r#"{"kind": "flag", "key": "a", "object": {"key": "a", "enabled": true, "default": {"variant": "on"}}}"#;
        let patched = first.changed(parse_patch(patch).unwrap()).unwrap();
        assert_eq!(served(&patched, "a").as_deref(), Some("on"));
        assert_eq!(served(&first, "a").as_deref(), Some("off"), "the previous revision is untouched");

        let deleted = patched.changed(parse_delete(r#"{"kind": "flag", "key": "a"}"#).unwrap()).unwrap();
        assert_eq!(served(&deleted, "a"), None);
        assert_eq!(deleted.document(), json!({"flags": [], "segments": []}));
    }

    #[test]
    fn a_change_that_breaks_the_set_is_refused() {
        let document = json!({"flags": [], "segments": [{"key": "beta", "when": {"attr": "b", "op": "exists"}}]});
        let first = Configuration::from_document(&document).unwrap();
        let patch = r#"{"kind": "flag", "key": "a", "object": {"key": "a", "rules": [
            {"id": "r", "when": {"segment": "nope"}, "serve": {"variant": "on"}}]}}"#;
        assert!(matches!(first.changed(parse_patch(patch).unwrap()), Err(ConfigurationError::Invalid(_))));
        assert!(matches!(parse_patch(r#"{"kind": "flag", "key": "a"}"#), Err(ConfigurationError::Malformed(_))));
        assert!(matches!(Configuration::from_document(&json!({"flags": {}})), Err(ConfigurationError::Malformed(_))));
    }
}
