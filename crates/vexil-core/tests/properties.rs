//! Properties SPEC 2 guarantees: determinism, monotonic rollouts, accurate shares, independence.

mod common;
use common::{check_share, must, spec_bucket, spec_ranges, spec_variant, NOW};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;
use std::collections::BTreeMap;
use vexil_core::{Context, FlagSet, Format, Reason};

const USERS: usize = 100_000;

fn split_flag(key: &str, weights: &BTreeMap<String, u32>, rollout: f64) -> serde_json::Value {
    let variants: serde_json::Map<String, serde_json::Value> =
        weights.keys().map(|k| (k.clone(), json!(k))).chain([("off".to_string(), json!("off"))]).collect();
    json!({"key": key, "type": "string", "enabled": true, "variants": variants, "off_variant": "off",
           "default": {"split": weights, "rollout": rollout}})
}

fn served(set: &FlagSet, key: &str, user: &str) -> Option<String> {
    let r = set.evaluate(key, &Context::user(user), NOW).unwrap();
    (r.reason == Reason::Split).then(|| r.variant.to_string())
}

/// Weights with zeros and lopsided arms (a 1 next to hundreds), under random variant
/// names.
fn weights_strategy() -> impl Strategy<Value = BTreeMap<String, u32>> {
    let weight = prop_oneof![4 => 0u32..100, 1 => Just(0u32), 1 => 1u32..3, 1 => 200u32..1_000];
    proptest::collection::btree_map("[a-z][a-z0-9_]{0,5}", weight, 1..5)
        .prop_filter("positive sum and no clash with the off variant", |ws| {
            ws.values().sum::<u32>() > 0 && !ws.contains_key("off")
        })
}

fn weight_list(weights: &BTreeMap<String, u32>) -> Vec<u32> {
    // A BTreeMap iterates in ascending byte order of its keys: SPEC 2's split order.
    weights.values().copied().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every user gets the variant SPEC 2 computes from the murmur3 crate and the
    /// range formula, both from the compiled document and from its exported text
    /// compiled again (what an SDK receiving the document would do).
    #[test]
    fn evaluation_follows_the_spec_bucketing(
        weights in weights_strategy(),
        rollout_bp in 0u32..=10_000,
        salt in "[a-z0-9_:]{1,16}",
        prefix in "[a-z0-9_]{0,8}",
    ) {
        let mut flag = split_flag("f", &weights, f64::from(rollout_bp) / 100.0);
        flag["salt"] = json!(salt);
        let set = must(json!({"flags": [flag]}));
        let text = serde_json::to_string(&set.document()).unwrap();
        let reloaded = FlagSet::from_text(&text, Format::Json).unwrap();
        let names: Vec<&String> = weights.keys().collect();
        let ranges = spec_ranges(&weight_list(&weights), rollout_bp);
        for i in 0..300 {
            let user = format!("{prefix}{i}");
            let bucket = spec_bucket(&salt, &user);
            let expected = spec_variant(&ranges, bucket).map(|v| names[v].clone());
            prop_assert_eq!(&served(&set, "f", &user), &expected, "user {} in bucket {}, ranges {:?}", user, bucket, ranges);
            prop_assert_eq!(&served(&reloaded, "f", &user), &expected, "reloaded, user {}", user);
        }
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

/// Counts each variant served, and the users left out (`None`), over `USERS` users.
fn counts(set: &FlagSet, key: &str, prefix: &str) -> BTreeMap<Option<String>, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..USERS {
        *counts.entry(served(set, key, &format!("{prefix}{i}"))).or_default() += 1;
    }
    counts
}

/// Checks every variant's count, and the excluded users', against the share of the
/// buckets SPEC 2 gives it. The exact range lengths (rather than weight / total ×
/// rollout, which differs by the flooring to whole buckets) keep the binomial
/// tolerance of [`check_share`] exact for any weights.
fn check_shares(set: &FlagSet, weights: &BTreeMap<String, u32>, rollout_bp: u32, prefix: &str) -> Result<(), String> {
    let counts = counts(set, "f", prefix);
    let ranges = spec_ranges(&weight_list(weights), rollout_bp);
    let mut covered = 0;
    for (name, (start, end)) in weights.keys().zip(ranges) {
        covered += end - start;
        let observed = counts.get(&Some(name.clone())).copied().unwrap_or(0);
        let p = f64::from(end - start) / 10_000.0;
        check_share(&format!("{weights:?} at {rollout_bp} bp: {name}"), observed, USERS, p)?;
    }
    let excluded = counts.get(&None).copied().unwrap_or(0);
    let p = f64::from(10_000 - covered) / 10_000.0;
    check_share(&format!("{weights:?} at {rollout_bp} bp: excluded"), excluded, USERS, p)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn shares_match_the_weights_within_binomial_error_over_100k_users(
        weights in weights_strategy(),
        rollout in 0u32..=100,
        prefix in "[a-z]{1,6}",
    ) {
        let set = must(json!({"flags": [split_flag("f", &weights, f64::from(rollout))]}));
        check_shares(&set, &weights, rollout * 100, &prefix).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn small_arms_get_their_share() {
    // Arms under 1% are the ones a percentage-point tolerance cannot see.
    for (weights, rollout) in [
        (&[("a", 1), ("b", 99)][..], 100.0),
        (&[("a", 1), ("b", 199)], 100.0),
        (&[("a", 199), ("b", 1)], 100.0),
        (&[("a", 1), ("b", 199)], 50.0),
        (&[("a", 1), ("b", 1), ("c", 398)], 100.0),
    ] {
        let weights: BTreeMap<String, u32> = weights.iter().map(|&(k, w)| (k.to_string(), w)).collect();
        let set = must(json!({"flags": [split_flag("f", &weights, rollout)]}));
        check_shares(&set, &weights, (rollout * 100.0) as u32, "user_").unwrap_or_else(|e| panic!("{e}"));
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
        check_share(&format!("{pair:?}"), count, USERS, 0.25).unwrap_or_else(|e| panic!("{e}"));
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
