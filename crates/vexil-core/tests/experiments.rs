//! Experiments: decoding and validation, lifecycle, and placement (targeting, traffic, weights).

mod common;
use common::{check_share, spec_bucket, spec_ranges, spec_variant};
use serde_json::{json, Value};
use vexil_core::experiment::{
    decode_experiment, CompiledExperiment, ExperimentStatus, LifecycleAction, MetricKind, Placement,
};
use vexil_core::{Context, FlagSet};

fn spec_example() -> Value {
    json!({
        "key": "checkout_redesign",
        "status": "draft",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "traffic_allocation": 100,
        "targeting": null,
        "bucket_by": "user_id", "salt": "checkout_redesign",
        "metrics": [
            {"key": "purchase_rate", "kind": "conversion", "event": "purchase", "role": "primary"},
            {"key": "revenue", "kind": "sum", "event": "purchase", "role": "secondary"},
            {"key": "orders", "kind": "count", "event": "purchase"},
            {"key": "page_load", "kind": "mean", "event": "page_load", "direction": "decrease"},
            {"key": "aov", "kind": "ratio",
             "numerator": {"event": "purchase", "agg": "sum"},
             "denominator": {"event": "purchase", "agg": "count"}},
            {"key": "llm_cost", "kind": "sum", "event": "llm_call", "direction": "decrease", "role": "guardrail"}
        ],
        "analysis": {"method": "frequentist", "alpha": 0.05, "correction": "holm",
                     "min_sample_per_variant": 100, "auto_conclude": false},
        "winner": null,
        "start_at": null, "end_at": null
    })
}

fn compiled(doc: Value) -> CompiledExperiment {
    let flags = FlagSet::from_value(
        &json!({"segments": [{"key": "beta", "when": {"attr": "beta", "op": "eq", "value": true}}]}),
    )
    .unwrap();
    CompiledExperiment::compile(decode_experiment(&doc).unwrap(), &flags).unwrap()
}

fn problems(doc: Value) -> Vec<String> {
    decode_experiment(&doc).unwrap_err().iter().map(ToString::to_string).collect()
}

#[test]
fn the_spec_example_decodes_and_round_trips() {
    let e = decode_experiment(&spec_example()).unwrap();
    assert_eq!(e.status, ExperimentStatus::Draft);
    assert_eq!(e.metrics.len(), 6);
    assert_eq!(e.metrics[4].kind, MetricKind::Ratio);
    let exported = serde_json::to_value(&e).unwrap();
    assert_eq!(decode_experiment(&exported).unwrap(), e);
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let mut doc = spec_example();
    doc["variants"] = json!([{"key": "a", "weight": 0}, {"key": "a", "weight": 0}]);
    doc["metrics"] = json!([
        {"key": "m", "kind": "ratio", "event": "x"},
        {"key": "m", "kind": "sum"},
        {"key": "bad event", "kind": "count", "event": "no spaces allowed"},
        {"key": "c", "kind": "conversion", "event": "e", "cap": -1, "role": "main"}
    ]);
    doc["analysis"] = json!({"alpha": 1.5, "method": "magic"});
    doc["winner"] = json!("nobody");
    doc["traffic_allocation"] = json!(120);
    let p = problems(doc);
    for expected in [
        "variants[1].key: duplicate variant key \"a\"",
        "variants: weights must not all be zero",
        "metrics[0].numerator: is required for ratio metrics",
        "metrics[0].event: ratio metrics take numerator and denominator instead",
        "metrics[1].event: is required",
        "metrics[2].key: \"bad event\" must match ^[a-z][a-z0-9_]*$ and be at most 128 characters",
        "metrics[2].event: \"no spaces allowed\" must match ^[A-Za-z0-9_.:-]{1,128}$",
        "metrics[3].cap: must be a positive number, found -1",
        "metrics[3].role: unknown value \"main\" (one of primary, secondary, guardrail)",
        "analysis.alpha: must be a number between 0 and 1, found 1.5",
        "analysis.method: unknown value \"magic\" (one of frequentist, sequential, bayesian)",
        "winner: unknown variant \"nobody\"",
        "traffic_allocation: must be a percentage from 0 to 100 with at most two decimals, found 120",
    ] {
        assert!(p.iter().any(|m| m == expected), "missing {expected:?} in {p:#?}");
    }
}

#[test]
fn shape_errors() {
    assert_eq!(
        problems(json!({"key": "e", "variants": [{"key": "only"}]})),
        ["variants: an experiment needs at least two variants"]
    );
    assert_eq!(problems(json!({"key": "e"})), ["variants: is required"]);
    assert_eq!(
        problems(json!({"key": "e", "variants": [{"key": "a"}, {"key": "b"}], "colour": 1})),
        ["colour: unknown field"]
    );
    assert_eq!(
        problems(json!({"key": "e", "variants": [{"key": "a", "value": 1}, {"key": "b"}]})),
        ["variants: either every variant carries a value or none does"]
    );
    assert_eq!(
        problems(json!({"key": "e", "variants": [{"key": "a"}, {"key": "b"}], "status": "live"})),
        ["status: unknown status \"live\" (draft, running, paused, completed or archived)"]
    );
}

#[test]
fn unknown_segment_in_targeting_is_reported() {
    let mut doc = spec_example();
    doc["targeting"] = json!({"segment": "ghosts"});
    let err = CompiledExperiment::compile(decode_experiment(&doc).unwrap(), &FlagSet::empty()).unwrap_err();
    assert_eq!(err.to_string(), "targeting.segment: unknown segment \"ghosts\"");
}

#[test]
fn lifecycle_transitions() {
    use ExperimentStatus::*;
    use LifecycleAction::*;
    assert_eq!(Draft.after(Start), Some(Running));
    assert_eq!(Running.after(Pause), Some(Paused));
    assert_eq!(Paused.after(Start), Some(Running));
    assert_eq!(Paused.after(Complete), Some(Completed));
    assert_eq!(Running.after(Complete), Some(Completed));
    assert_eq!(Completed.after(Archive), Some(Archived));
    for (from, action) in [
        (Draft, Pause),
        (Draft, Complete),
        (Draft, Archive),
        (Running, Start),
        (Completed, Start),
        (Completed, Pause),
        (Archived, Start),
        (Archived, Archive),
        (Running, Archive),
    ] {
        assert_eq!(from.after(action), None, "{from:?} {action:?}");
    }
}

#[test]
fn placement_follows_the_spec_vector() {
    // checkout_redesign:user_1 is bucket 8331: in the second half of a 50/50 split.
    let e = compiled(spec_example());
    assert_eq!(e.place(&Context::user("user_1")), Placement::Variant(1));
    let mut narrow = spec_example();
    narrow["traffic_allocation"] = json!(66.63);
    assert_eq!(compiled(narrow).place(&Context::user("user_1")), Placement::NotInTraffic);
    let mut wide = spec_example();
    wide["traffic_allocation"] = json!(66.64);
    assert_eq!(compiled(wide).place(&Context::user("user_1")), Placement::Variant(1));
}

#[test]
fn growing_traffic_keeps_every_placed_user_in_their_variant() {
    let at = |traffic: f64| {
        let mut doc = spec_example();
        doc["variants"] = json!([{"key": "a", "weight": 1}, {"key": "b", "weight": 2}, {"key": "c", "weight": 1}]);
        doc["traffic_allocation"] = json!(traffic);
        compiled(doc)
    };
    let (small, large) = (at(10.0), at(60.0));
    let mut placed = 0;
    for i in 0..20_000 {
        let user = format!("user_{i}");
        if let Placement::Variant(v) = small.place(&Context::user(&user)) {
            placed += 1;
            assert_eq!(large.place(&Context::user(&user)), Placement::Variant(v));
        }
    }
    assert!((1_800..2_200).contains(&placed), "{placed}");
}

#[test]
fn targeting_and_missing_bucketing_attribute() {
    let mut doc = spec_example();
    doc["targeting"] = json!({"segment": "beta"});
    doc["bucket_by"] = json!("account_id");
    let e = compiled(doc);
    let attrs = |v: Value| v.as_object().cloned().unwrap();
    let beta = attrs(json!({"beta": true, "account_id": "acme"}));
    assert!(matches!(e.place(&Context::new("u", &beta)), Placement::Variant(_)));
    let not_beta = attrs(json!({"beta": false, "account_id": "acme"}));
    assert_eq!(e.place(&Context::new("u", &not_beta)), Placement::NotTargeted);
    let no_account = attrs(json!({"beta": true}));
    assert_eq!(e.place(&Context::new("u", &no_account)), Placement::MissingBucketingAttribute);
    assert_eq!(e.unit(&Context::new("u", &beta)).as_deref(), Some("acme"));
    assert_eq!(e.unit(&Context::new("u", &attrs(json!({"account_id": 42})))).as_deref(), Some("42"));
    assert_eq!(e.unit(&Context::new("u", &no_account)), None);
}

#[test]
fn metric_filters_match_event_properties() {
    let mut doc = spec_example();
    doc["metrics"][1]["filter"] = json!({"attr": "currency", "op": "eq", "value": "EUR"});
    let e = compiled(doc);
    let props = |v: Value| v.as_object().cloned().unwrap();
    assert!(e.metric_accepts(1, "u", &props(json!({"currency": "EUR"}))));
    assert!(!e.metric_accepts(1, "u", &props(json!({"currency": "USD"}))));
    assert!(e.metric_accepts(0, "u", &props(json!({}))));
}

#[test]
fn shares_follow_the_weights() {
    // Lopsided weights too: an arm under 1% must get its share, within binomial error
    // of the exact sample (see `check_share`), not merely within a percentage point.
    const USERS: usize = 100_000;
    for (weights, traffic) in [
        (&[1, 3][..], 100u32),
        (&[1, 99], 100),
        (&[1, 199], 100),
        (&[199, 1], 100),
        (&[1, 199], 40),
        (&[2, 1, 397], 100),
    ] {
        let mut doc = spec_example();
        doc["variants"] =
            weights.iter().enumerate().map(|(i, w)| json!({"key": format!("v{i}"), "weight": w})).collect();
        doc["traffic_allocation"] = json!(traffic);
        let e = compiled(doc);
        let mut counts = vec![0; weights.len()];
        let mut outside = 0;
        for i in 0..USERS {
            match e.place(&Context::user(&format!("u{i}"))) {
                Placement::Variant(v) => counts[v] += 1,
                Placement::NotInTraffic => outside += 1,
                other => panic!("{other:?}"),
            }
        }
        // Expected shares are the exact bucket ranges of SPEC 2 (experiment variants in
        // list order), so flooring to whole buckets does not eat into the tolerance.
        let ranges = spec_ranges(weights, traffic * 100);
        let mut covered = 0;
        for (v, (start, end)) in ranges.into_iter().enumerate() {
            covered += end - start;
            let p = f64::from(end - start) / 10_000.0;
            check_share(&format!("{weights:?} at {traffic}%: v{v}"), counts[v], USERS, p)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let p = f64::from(10_000 - covered) / 10_000.0;
        check_share(&format!("{weights:?} at {traffic}%: outside"), outside, USERS, p)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn placement_follows_the_spec_bucketing() {
    // Each user's variant is the one SPEC 2 computes with an independent MurmurHash3
    // (the murmur3 crate) over the experiment's salt, not the core's hasher.
    for (weights, traffic, salt) in [
        (&[50, 50][..], 100.0, "checkout_redesign"),
        (&[1, 2, 1], 37.5, "exp_a"),
        (&[1, 199], 100.0, "tiny_arm"),
        (&[0, 7, 3], 99.99, "with:colon"),
    ] {
        let mut doc = spec_example();
        doc["variants"] =
            weights.iter().enumerate().map(|(i, w)| json!({"key": format!("v{i}"), "weight": w})).collect();
        doc["traffic_allocation"] = json!(traffic);
        doc["salt"] = json!(salt);
        let e = compiled(doc);
        let ranges = spec_ranges(weights, (traffic * 100.0_f64).round() as u32);
        for i in 0..20_000 {
            let user = format!("user_{i}");
            let bucket = spec_bucket(salt, &user);
            let expected = spec_variant(&ranges, bucket).map_or(Placement::NotInTraffic, Placement::Variant);
            assert_eq!(
                e.place(&Context::user(&user)),
                expected,
                "{salt}: {user} in bucket {bucket}, ranges {ranges:?}"
            );
        }
    }
}
