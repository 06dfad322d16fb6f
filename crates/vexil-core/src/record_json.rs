//! The JSON text of an evaluation result, written directly.
//!
//! Every evaluation answer over HTTP is one of these documents, and serde's generic path
//! (escaping each constant key, one write per token) cost more than the evaluation itself. The
//! keys are written as constant fragments, and strings that need no escaping (ids, keys, variant
//! names, nearly every user id) are copied as they are; anything else goes to serde_json, so the
//! output is byte for byte what `serde_json::to_vec(&record)` gives (a property test holds it
//! to that).

use crate::evaluate::EvaluationRecord;
use serde_json::Value;

impl EvaluationRecord<'_> {
    /// Appends the record's JSON text to `out`, exactly as serde_json would write it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"flag_key\":");
        string(out, self.flag_key);
        out.extend_from_slice(b",\"flag_id\":");
        match self.flag_id {
            Some(id) => string(out, id),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"flag_version\":");
        match self.flag_version {
            Some(version) => out.extend_from_slice(itoa::Buffer::new().format(version).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"user_id\":");
        string(out, self.user_id);
        out.extend_from_slice(b",\"value\":");
        value(out, self.value);
        out.extend_from_slice(b",\"variant\":");
        string(out, self.variant);
        out.extend_from_slice(b",\"reason\":\"");
        out.extend_from_slice(self.reason.name().as_bytes());
        out.push(b'"');
        if let Some(rule) = self.rule_id {
            out.extend_from_slice(b",\"rule_id\":");
            string(out, rule);
        }
        out.extend_from_slice(if self.enabled { b",\"enabled\":true}" } else { b",\"enabled\":false}" });
    }
}

/// A JSON string: copied between quotes when no byte needs an escape, else serde_json's.
fn string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_to(out, text);
    }
}

fn value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::String(text) => string(out, text),
        other => serde_to(out, other),
    }
}

fn serde_to<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing into a Vec cannot fail, and strings and JSON values always serialise.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Reason;
    use proptest::prelude::*;

    fn written(record: &EvaluationRecord<'_>) -> String {
        let mut out = Vec::new();
        record.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_typical_record_is_written_in_field_order() {
        let value = Value::Bool(true);
        let record = EvaluationRecord {
            flag_key: "checkout",
            flag_id: Some("URjXLJQHNklT9kqzJX7vxV"),
            flag_version: Some(3),
            user_id: "u1",
            value: &value,
            variant: "on",
            reason: Reason::TargetingMatch,
            rule_id: Some("us"),
            enabled: true,
        };
        assert_eq!(
            written(&record),
            r#"{"flag_key":"checkout","flag_id":"URjXLJQHNklT9kqzJX7vxV","flag_version":3,"user_id":"u1","value":true,"variant":"on","reason":"TARGETING_MATCH","rule_id":"us","enabled":true}"#
        );
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_text_is_what_serde_json_writes(
            flag_key in any::<String>(),
            flag_id in any::<Option<String>>(),
            flag_version in any::<Option<u64>>(),
            user_id in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}])*",
            value in any_value(),
            variant in any::<String>(),
            reason in prop::sample::select(Reason::ALL.to_vec()),
            rule_id in any::<Option<String>>(),
            enabled in any::<bool>(),
        ) {
            let record = EvaluationRecord {
                flag_key: &flag_key,
                flag_id: flag_id.as_deref(),
                flag_version,
                user_id: &user_id,
                value: &value,
                variant: &variant,
                reason,
                rule_id: rule_id.as_deref(),
                enabled,
            };
            prop_assert_eq!(written(&record), serde_json::to_string(&record).unwrap());
        }
    }
}
