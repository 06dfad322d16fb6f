//! Properties SPEC 2 guarantees: determinism, monotonic rollouts, accurate shares, independence.

mod common;
use common::must;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use vexil_core::{Context, FlagSet, Reason};

const USERS: usize = 100_000;

fn split_flag(key: &str, weights: &BTreeMap<String, u32>, rollout: f64) -> serde_json::Value {
    let variants: serde_json::Map<String, serde_json::Value> =
        weights.keys().map(|k| (k.clone(), json!(k))).chain([("off".to_string(), json!("off"))]).collect();
    json!({"key": key, "type": "string", "enabled": true, "variants": variants, "off_variant": "off",
           "default": {"split": weights, "rollout": rollout}})
}

fn served(set: &FlagSet, key: &str, user: &str) -> Option<String> {
    let r = set.evaluate(key, &Context::user(user)).unwrap();
    (r.reason == Reason::Split).then(|| r.variant.to_string())
}

fn weights_strategy() -> impl Strategy<Value = BTreeMap<String, u32>> {
    proptest::collection::vec(0u32..100, 1..5).prop_filter_map("positive sum", |ws| {
        (ws.iter().sum::<u32>() > 0).then(|| ws.into_iter().enumerate().map(|(i, w)| (format!("v{i}"), w)).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn evaluation_is_deterministic(weights in weights_strategy(), rollout in 0u32..=10_000, user in "[a-z0-9_]{1,24}") {
        let flag = split_flag("f", &weights, f64::from(rollout) / 100.0);
        let a = must(json!({"flags": [flag.clone()]}));
        let b = must(json!({"flags": [flag]}));
        prop_assert_eq!(served(&a, "f", &user), served(&a, "f", &user));
        prop_assert_eq!(served(&a, "f", &user), served(&b, "f", &user));
    }

    #[test]
    fn raising_a_rollout_only_adds_users(weights in weights_strategy(), p in 0u32..=10_000, q in 0u32..=10_000, seed in any::<u32>()) {
        let (low, high) = (p.min(q), p.max(q));
        let before = must(json!({"flags": [split_flag("f", &weights, f64::from(low) / 100.0)]}));
        let after = must(json!({"flags": [split_flag("f", &weights, f64::from(high) / 100.0)]}));
        for i in 0..2_000 {
            let user = format!("{seed}_{i}");
            if let Some(variant) = served(&before, "f", &user) {
                prop_assert_eq!(Some(variant), served(&after, "f", &user), "user {} moved", user);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn shares_are_within_one_point_over_100k_users(weights in weights_strategy(), rollout in 0u32..=100, prefix in "[a-z]{1,6}") {
        let set = must(json!({"flags": [split_flag("f", &weights, f64::from(rollout))]}));
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..USERS {
            if let Some(v) = served(&set, "f", &format!("{prefix}{i}")) {
                *counts.entry(v).or_default() += 1;
            }
        }
        let total: u32 = weights.values().sum();
        for (name, weight) in &weights {
            let target = f64::from(*weight) / f64::from(total) * f64::from(rollout);
            let observed = *counts.get(name).unwrap_or(&0) as f64 / USERS as f64 * 100.0;
            prop_assert!((observed - target).abs() <= 1.0, "{}: observed {:.3}% vs target {:.3}%", name, observed, target);
        }
    }
}

#[test]
fn rollout_zero_serves_nobody_and_hundred_serves_everyone() {
    let weights = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 3)]);
    let set = must(json!({"flags": [split_flag("none", &weights, 0.0), split_flag("all", &weights, 100.0)]}));
    for i in 0..USERS {
        let user = format!("user_{i}");
        assert_eq!(served(&set, "none", &user), None);
        assert!(served(&set, "all", &user).is_some());
    }
}

#[test]
fn flags_with_different_salts_are_independent() {
    let weights = BTreeMap::from([("a".to_string(), 50), ("b".to_string(), 50)]);
    let set = must(json!({"flags": [split_flag("first", &weights, 100.0), split_flag("second", &weights, 100.0)]}));
    let mut joint: BTreeMap<(String, String), usize> = BTreeMap::new();
    for i in 0..USERS {
        let user = format!("user_{i}");
        let pair = (served(&set, "first", &user).unwrap(), served(&set, "second", &user).unwrap());
        *joint.entry(pair).or_default() += 1;
    }
    assert_eq!(joint.len(), 4);
    for (pair, count) in joint {
        let share = count as f64 / USERS as f64 * 100.0;
        assert!((share - 25.0).abs() <= 1.0, "{pair:?}: {share:.3}%");
    }
}

#[test]
fn split_order_does_not_depend_on_how_the_document_orders_keys() {
    let a = must(
        serde_json::from_str(
            r#"{"flags": [{"key": "f", "type": "string", "enabled": true, "off_variant": "x",
        "variants": {"x": "x", "y": "y", "z": "z"}, "default": {"split": {"z": 1, "x": 2, "y": 3}}}]}"#,
        )
        .unwrap(),
    );
    let b = must(
        serde_json::from_str(
            r#"{"flags": [{"key": "f", "type": "string", "enabled": true, "off_variant": "x",
        "variants": {"z": "z", "y": "y", "x": "x"}, "default": {"split": {"y": 3, "x": 2, "z": 1}}}]}"#,
        )
        .unwrap(),
    );
    for i in 0..5_000 {
        let user = format!("u{i}");
        assert_eq!(served(&a, "f", &user), served(&b, "f", &user));
    }
}
