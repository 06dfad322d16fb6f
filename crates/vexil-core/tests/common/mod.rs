//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use serde_json::{json, Value};
use vexil_core::{Context, FlagSet, ValidationErrors};

/// Compiles a `{"flags": [...], "segments": [...]}` document given as JSON.
pub fn flag_set(doc: Value) -> Result<FlagSet, ValidationErrors> {
    FlagSet::from_value(&doc)
}

pub fn must(doc: Value) -> FlagSet {
    flag_set(doc).unwrap_or_else(|e| panic!("document should be valid:\n{e}"))
}

/// Whether `condition` matches a context with `attributes` (user id `user_1`).
pub fn condition_matches(condition: Value, attributes: Value) -> bool {
    condition_matches_for("user_1", condition, attributes)
}

pub fn condition_matches_for(user: &str, condition: Value, attributes: Value) -> bool {
    let set = must(json!({
        "flags": [{"key": "f", "enabled": true,
                   "rules": [{"id": "r", "when": condition, "serve": {"variant": "on"}}]}],
        "segments": [{"key": "beta", "when": {"attr": "beta", "op": "eq", "value": true}}]
    }));
    let attrs = attributes.as_object().cloned().unwrap_or_default();
    let result = set.evaluate("f", &Context::new(user, &attrs)).unwrap();
    result.variant == "on"
}

/// The problems of an invalid document, as `path: message` lines.
pub fn problems(doc: Value) -> Vec<String> {
    match flag_set(doc) {
        Ok(_) => panic!("document should be invalid"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}
