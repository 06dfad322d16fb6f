//! A compiled document exports to a document that reloads to the same flags (what
//! `vexil flags export` followed by `vexil flags import` relies on).

use serde_json::Value;
use vexil_core::{Context, FlagSet, Format};

#[test]
fn the_example_file_round_trips_through_json_and_yaml() {
    let text = include_str!("../../../examples/flags.yaml");
    let set = FlagSet::from_text(text, Format::Yaml).unwrap();
    let exported = serde_json::to_value(set.document()).unwrap();
    let from_json = FlagSet::from_value(&exported).unwrap();
    let yaml = serde_yaml_ng::to_string(&set.document()).unwrap();
    let from_yaml = FlagSet::from_text(&yaml, Format::Yaml).unwrap();
    assert_eq!(serde_json::to_value(from_json.document()).unwrap(), exported);
    assert_eq!(serde_json::to_value(from_yaml.document()).unwrap(), exported);

    let attributes: serde_json::Map<String, Value> =
        serde_json::from_str(r#"{"country": "US", "plan": "pro", "device": {"os": "ios"}, "app_version": "3.0.1"}"#)
            .unwrap();
    for i in 0..500 {
        let user = format!("user_{i}");
        let ctx = Context::new(&user, &attributes);
        let summary = |s: &FlagSet| {
            s.evaluate_all(&ctx, 1_780_272_000_000)
                .unwrap()
                .iter()
                .map(|r| (r.variant.to_string(), r.reason))
                .collect::<Vec<_>>()
        };
        assert_eq!(summary(&set), summary(&from_json));
        assert_eq!(summary(&set), summary(&from_yaml));
    }
}

#[test]
fn fractional_rollouts_keep_their_value() {
    let set = FlagSet::from_text(
        r#"{"flags": [{"key": "f", "enabled": true, "default": {"split": {"on": 1}, "rollout": 12.34}}]}"#,
        Format::Json,
    )
    .unwrap();
    let exported = serde_json::to_value(set.document()).unwrap();
    assert_eq!(exported["flags"][0]["default"]["rollout"], serde_json::json!(12.34));
    assert_eq!(exported["flags"][0]["salt"], serde_json::json!("f"));
}
