//! `FlagSet::with_changes` (the incremental recompile a write makes) against a full compile:
//! random sequences of flag and segment writes and deletes, applied one batch at a time to the
//! previous incremental set, must be accepted or refused exactly as a compile of the whole
//! resulting configuration is, with the same problems, evaluate the same for every flag and list
//! the same flags as serving experiments and as using each segment.

mod common;
use common::NOW;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use vexil_core::{Context, FlagSet};

const FLAGS: &[&str] = &["a", "b", "c", "d", "e"];
const SEGMENTS: &[&str] = &["s1", "s2", "s3"];

#[derive(Clone, Debug)]
enum Op {
    PutFlag(usize, Value),
    DeleteFlag(usize),
    PutSegment(usize, Value),
    DeleteSegment(usize),
}

fn condition() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        (0..SEGMENTS.len()).prop_map(|s| json!({"segment": SEGMENTS[s]})),
        prop::sample::select(vec!["de", "fr", "us"]).prop_map(|c| json!({"attr": "country", "op": "eq", "value": c})),
        (0u32..100).prop_map(|n| json!({"attr": "age", "op": "gt", "value": n})),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|cs| json!({"all": cs})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|cs| json!({"any": cs})),
            inner.prop_map(|c| json!({"not": c})),
        ]
    })
}

/// What a flag's default serves, or whether its first rule (if it has one) serves an experiment.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Serving {
    Variant,
    Split,
    ExperimentByDefault,
    ExperimentByRule,
}

fn flag(key: &'static str) -> impl Strategy<Value = Value> {
    let variants = prop_oneof![Just(vec!["x", "y"]), Just(vec!["x", "y", "z"]), Just(vec!["x", "z"])];
    (
        variants,
        any::<bool>(),
        prop::collection::vec(condition(), 0..3),
        prop::collection::vec((0..FLAGS.len(), prop::sample::select(vec!["x", "y", "z"])), 0..2),
        prop::sample::select(vec![
            Serving::Variant,
            Serving::Split,
            Serving::ExperimentByDefault,
            Serving::ExperimentByRule,
        ]),
    )
        .prop_map(move |(variants, enabled, rules, prerequisites, serving)| {
            let names: Map<String, Value> = variants.iter().map(|v| (v.to_string(), json!(v))).collect();
            let last = variants[variants.len() - 1];
            let rules: Vec<Value> = rules
                .into_iter()
                .enumerate()
                .map(|(i, when)| {
                    let serve = if i == 0 && serving == Serving::ExperimentByRule {
                        json!({"experiment": "exp"})
                    } else {
                        json!({"variant": last})
                    };
                    json!({"id": format!("r{i}"), "when": when, "serve": serve})
                })
                .collect();
            let prerequisites: Vec<Value> =
                prerequisites.into_iter().map(|(f, v)| json!({"flag": FLAGS[f], "variants": [v]})).collect();
            let default = match serving {
                Serving::Split => json!({"split": {"x": 50, last: 50}}),
                Serving::ExperimentByDefault => json!({"experiment": "exp"}),
                Serving::Variant | Serving::ExperimentByRule => json!({"variant": "x"}),
            };
            json!({"key": key, "type": "string", "enabled": enabled, "variants": names, "off_variant": "x",
                   "rules": rules, "prerequisites": prerequisites, "default": default})
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..FLAGS.len()).prop_flat_map(|i| flag(FLAGS[i]).prop_map(move |f| Op::PutFlag(i, f))),
        1 => (0..FLAGS.len()).prop_map(Op::DeleteFlag),
        2 => (0..SEGMENTS.len(), condition())
            .prop_map(|(i, when)| Op::PutSegment(i, json!({"key": SEGMENTS[i], "when": when}))),
        1 => (0..SEGMENTS.len()).prop_map(Op::DeleteSegment),
    ]
}

type Docs = BTreeMap<String, Value>;

fn full(flags: &Docs, segments: &Docs) -> Result<FlagSet, vexil_core::ValidationErrors> {
    FlagSet::from_items(flags.values().cloned(), segments.values().cloned())
}

/// Every flag's answer for a few contexts, as `flag user: variant reason rule`.
fn answers(set: &FlagSet) -> Vec<String> {
    let contexts: Vec<(String, Map<String, Value>)> = ["de", "fr", "us"]
        .iter()
        .enumerate()
        .flat_map(|(i, country)| {
            (0..4).map(move |n| {
                let attrs = json!({"country": country, "age": n * 30 + i}).as_object().cloned().unwrap();
                (format!("user-{i}-{n}"), attrs)
            })
        })
        .collect();
    let mut out = Vec::new();
    for flag in set.flags() {
        for (user, attrs) in &contexts {
            let e = set.evaluate(&flag.key, &Context::new(user, attrs), NOW).unwrap();
            out.push(format!("{} {user}: {} {:?} {:?}", flag.key, e.variant, e.reason, e.rule_id));
        }
    }
    out
}

/// The keys of the flags that serve an experiment, as the set lists them.
fn serving_experiments(set: &FlagSet) -> Vec<&str> {
    set.serving_experiments().map(|flag| flag.key.as_str()).collect()
}

/// For each segment key, the flags listed as using it.
fn segment_users(set: &FlagSet) -> Vec<Vec<&str>> {
    SEGMENTS.iter().map(|segment| set.using_segment(segment).map(|flag| flag.key.as_str()).collect()).collect()
}

fn sorted_problems(e: &vexil_core::ValidationErrors) -> Vec<String> {
    let mut problems: Vec<String> = e.iter().map(ToString::to_string).collect();
    problems.sort();
    problems
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn incremental_writes_match_a_full_compile(batches in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..24)) {
        let (mut flags, mut segments) = (Docs::new(), Docs::new());
        let mut live = FlagSet::empty();
        for batch in batches {
            let (mut next_flags, mut next_segments) = (flags.clone(), segments.clone());
            let mut flag_changes = BTreeMap::new();
            let mut segment_changes = BTreeMap::new();
            for op in batch {
                match op {
                    Op::PutFlag(i, body) => {
                        next_flags.insert(FLAGS[i].to_string(), body.clone());
                        flag_changes.insert(FLAGS[i].to_string(), Some(body));
                    }
                    Op::DeleteFlag(i) => {
                        next_flags.remove(FLAGS[i]);
                        flag_changes.insert(FLAGS[i].to_string(), None);
                    }
                    Op::PutSegment(i, body) => {
                        next_segments.insert(SEGMENTS[i].to_string(), body.clone());
                        segment_changes.insert(SEGMENTS[i].to_string(), Some(body));
                    }
                    Op::DeleteSegment(i) => {
                        next_segments.remove(SEGMENTS[i]);
                        segment_changes.insert(SEGMENTS[i].to_string(), None);
                    }
                }
            }
            let expected = full(&next_flags, &next_segments);
            let incremental = live.with_changes(flag_changes, segment_changes);
            match (&expected, &incremental) {
                (Ok(expected), Ok(incremental)) => {
                    prop_assert_eq!(answers(expected), answers(incremental));
                    prop_assert_eq!(expected.document(), incremental.document());
                    prop_assert_eq!(serving_experiments(expected), serving_experiments(incremental));
                    prop_assert_eq!(segment_users(expected), segment_users(incremental));
                }
                (Err(expected), Err(incremental)) => {
                    prop_assert_eq!(sorted_problems(expected), sorted_problems(incremental));
                }
                _ => prop_assert!(false, "full compile {:?}, incremental {:?}", expected.as_ref().err(), incremental.as_ref().err()),
            }
            // A refused write is not stored: the next batch starts from the last valid state.
            if let Ok(set) = incremental {
                (flags, segments, live) = (next_flags, next_segments, set);
            }
        }
        // The chain of incremental sets ends where a full compile of the final state does.
        let final_set = full(&flags, &segments).expect("only valid states were kept");
        prop_assert_eq!(answers(&final_set), answers(&live));
        prop_assert_eq!(serving_experiments(&final_set), serving_experiments(&live));
        prop_assert_eq!(segment_users(&final_set), segment_users(&live));
    }
}

#[test]
fn a_write_shares_the_flags_it_does_not_affect_and_reports_document_paths() {
    let set = FlagSet::from_value(&json!({
        "flags": [
            {"key": "a", "enabled": true, "rules": [{"id": "r", "when": {"segment": "s"}, "serve": {"variant": "on"}}]},
            {"key": "b", "enabled": true, "prerequisites": [{"flag": "a", "variants": ["on"]}], "default": {"variant": "on"}},
            {"key": "c", "enabled": true}
        ],
        "segments": [{"key": "s", "when": {"attr": "beta", "op": "eq", "value": true}}]
    }))
    .unwrap();
    let changed = set
        .with_changes(
            [],
            [("s".to_string(), Some(json!({"key": "s", "when": {"attr": "beta", "op": "eq", "value": false}})))],
        )
        .unwrap();
    let attrs = json!({"beta": false}).as_object().cloned().unwrap();
    assert_eq!(changed.evaluate("a", &Context::new("u", &attrs), NOW).unwrap().variant, "on");
    assert_eq!(changed.evaluate("b", &Context::new("u", &attrs), NOW).unwrap().variant, "on");

    let refused = set.with_changes([("a".to_string(), None)], []).unwrap_err();
    assert_eq!(sorted_problems(&refused), ["flags.b.prerequisites[0].flag: unknown flag \"a\""]);
    let refused = set.with_changes([], [("s".to_string(), None)]).unwrap_err();
    assert_eq!(sorted_problems(&refused), ["flags.a.rules[0].when.segment: unknown segment \"s\""]);
    let refused = set.with_changes([("c".to_string(), Some(json!({"key": "d", "enabled": true})))], []).unwrap_err();
    assert_eq!(sorted_problems(&refused), ["flags.c: the document's key is \"d\""]);
}
