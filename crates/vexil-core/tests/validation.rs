//! Every validation error of SPEC 1.1/1.2, each reported with the path of the field at fault.

mod common;
use common::{flag_set, problems};
use serde_json::json;
use vexil_core::{FlagSet, Format};

fn flag_problems(flag: serde_json::Value) -> Vec<String> {
    problems(json!({ "flags": [flag] }))
}

fn assert_problem(problems: &[String], expected: &str) {
    assert!(problems.iter().any(|p| p == expected), "expected {expected:?} in {problems:#?}");
}

#[test]
fn unknown_operator_names_the_path_of_the_document() {
    let p = flag_problems(json!({"key": "new_checkout", "rules": [
        {"id": "a", "when": {"all": []}, "serve": {"variant": "on"}},
        {"id": "b", "when": {"attr": "x", "op": "equal", "value": 1}, "serve": {"variant": "on"}}]}));
    assert_eq!(p, ["flags.new_checkout.rules[1].when.op: unknown operator \"equal\""]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(json!({"flags": [
        {"key": "Bad Key"},
        {"key": "a", "type": "colour", "rollout": 5},
        {"key": "b", "rules": [{"id": "r", "when": {"attr": "x", "op": "matches", "value": "("}, "serve": {"variant": "maybe"}}]}
    ]}));
    assert_problem(&p, "flags[0].key: \"Bad Key\" must match ^[a-z][a-z0-9_]*$ and be at most 128 characters");
    assert_problem(&p, "flags.a.rollout: unknown field");
    assert_problem(&p, "flags.a.type: unknown type \"colour\" (boolean, string, number or json)");
    assert!(p.iter().any(|m| m.starts_with("flags.b.rules[0].when.value: invalid regex")), "{p:#?}");
    assert_problem(&p, "flags.b.rules[0].serve.variant: unknown variant \"maybe\"");
}

#[test]
fn items_given_one_by_one_get_the_problems_and_paths_of_the_whole_document() {
    let flags = vec![
        json!({"key": "Bad Key"}),
        json!({"key": "a", "rules": [{"id": "r", "when": {"segment": "gone"}, "serve": {"variant": "on"}}]}),
        json!({"key": "b", "prerequisites": [{"flag": "broken", "variants": ["on"]}]}),
        json!({"key": "c"}),
    ];
    let segments = vec![json!({"key": "broken", "when": {"attr": "x", "op": "equal", "value": 1}})];
    let whole = problems(json!({"flags": flags.clone(), "segments": segments.clone()}));
    let Err(items) = FlagSet::from_items(flags, segments) else { panic!("the items are invalid") };
    let items: Vec<String> = items.0.iter().map(ToString::to_string).collect();
    assert_eq!(items, whole);
    assert_problem(&items, "flags[0].key: \"Bad Key\" must match ^[a-z][a-z0-9_]*$ and be at most 128 characters");
    assert_problem(&items, "flags.a.rules[0].when.segment: unknown segment \"gone\"");
    assert_problem(&items, "flags.b.prerequisites[0].flag: flag \"broken\" is invalid");
    assert_problem(&items, "segments.broken.when.op: unknown operator \"equal\"");

    let valid = FlagSet::from_items([json!({"key": "c", "enabled": true})], []).unwrap();
    assert_eq!(valid.get("c").map(|f| f.enabled), Some(true));
}

#[test]
fn unknown_variant_references() {
    let p = flag_problems(json!({"key": "f", "off_variant": "nope", "default": {"split": {"on": 1, "maybe": 1}},
        "overrides": {"variants": {"u1": "gone"}}}));
    assert_problem(&p, "flags.f.off_variant: unknown variant \"nope\"");
    assert_problem(&p, "flags.f.default.split.maybe: unknown variant \"maybe\"");
    assert_problem(&p, "flags.f.overrides.variants.u1: unknown variant \"gone\"");
}

#[test]
fn values_of_the_wrong_type() {
    let p = flag_problems(json!({"key": "f", "type": "string", "variants": {"a": "x", "b": 2}, "off_variant": "a"}));
    assert_eq!(p, ["flags.f.variants.b: value 2 is not of the flag's type string"]);
    let p = flag_problems(json!({"key": "f", "variants": {"on": "yes", "off": false}}));
    assert_eq!(p, ["flags.f.variants: a boolean flag has exactly the variants on (true) and off (false)"]);
    let p = flag_problems(json!({"key": "f", "type": "number", "off_variant": "a"}));
    assert_eq!(p, ["flags.f.variants: is required for non-boolean flags"]);
}

#[test]
fn weights_and_rollouts() {
    assert_problem(
        &flag_problems(json!({"key": "f", "default": {"split": {"on": 0, "off": 0}}})),
        "flags.f.default.split: weights must not all be zero",
    );
    assert_problem(
        &flag_problems(json!({"key": "f", "default": {"split": {"on": -1}}})),
        "flags.f.default.split.on: weight must be a non-negative integer",
    );
    assert_problem(
        &flag_problems(json!({"key": "f", "default": {"split": {"on": 1.5}}})),
        "flags.f.default.split.on: weight must be a non-negative integer",
    );
    for bad in [json!(101), json!(-1), json!(12.345), json!("50")] {
        let p = flag_problems(json!({"key": "f", "default": {"split": {"on": 1}, "rollout": bad}}));
        assert!(p[0].starts_with("flags.f.default.rollout: must be a percentage from 0 to 100"), "{p:?}");
    }
    assert!(flag_set(json!({"flags": [{"key": "f", "default": {"split": {"on": 1}, "rollout": 12.34}}]})).is_ok());
    assert_problem(
        &flag_problems(json!({"key": "f", "default": {"variant": "on", "split": {"on": 1}}})),
        "flags.f.default: must have exactly one of variant, split or experiment",
    );
}

#[test]
fn invalid_regex_semver_cidr_and_dates() {
    let rule =
        |cond: serde_json::Value| json!({"key": "f", "rules": [{"id": "r", "when": cond, "serve": {"variant": "on"}}]});
    let p = flag_problems(rule(json!({"attr": "e", "op": "matches", "value": "a(b"})));
    assert!(p[0].starts_with("flags.f.rules[0].when.value: invalid regex"), "{p:?}");
    assert_eq!(
        flag_problems(rule(json!({"attr": "v", "op": "semver_gt", "value": "one"}))),
        ["flags.f.rules[0].when.value: \"one\" is not a semantic version"]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "ip", "op": "in_cidr", "values": ["10.0.0.0/8", "10.0.0.0/99"]}))),
        ["flags.f.rules[0].when.values[1]: \"10.0.0.0/99\" is not a CIDR block or IP address"]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "t", "op": "before", "value": "tomorrow"}))),
        ["flags.f.rules[0].when.value: \"tomorrow\" is not an RFC 3339 date-time or Unix milliseconds"]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "n", "op": "gt", "value": "5"}))),
        ["flags.f.rules[0].when.value: \"gt\" needs a number, found a string"]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "n", "op": "exists", "value": 1}))),
        ["flags.f.rules[0].when: \"exists\" takes no value"]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "n", "op": "in", "value": 1}))),
        ["flags.f.rules[0].when.values: \"in\" takes a list in values"]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "n", "op": "eq"}))),
        ["flags.f.rules[0].when.value: is required for \"eq\""]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "n", "op": "in", "values": []}))),
        ["flags.f.rules[0].when.values: must not be empty"]
    );
    assert_eq!(
        flag_problems(rule(json!({"all": [{"attr": "a..b", "op": "exists"}]}))),
        ["flags.f.rules[0].when.all[0].attr: must be an attribute name, with dots between nested names"]
    );
    assert_eq!(
        flag_problems(rule(json!({"attr": "a", "op": "exists", "colour": 1}))),
        ["flags.f.rules[0].when.colour: unknown field"]
    );
    assert_eq!(
        flag_problems(rule(json!("always"))),
        ["flags.f.rules[0].when: must be a condition object, found a string"]
    );
}

#[test]
fn unknown_segment_and_segment_cycles() {
    let p = flag_problems(
        json!({"key": "f", "rules": [{"id": "r", "when": {"segment": "ghosts"}, "serve": {"variant": "on"}}]}),
    );
    assert_eq!(p, ["flags.f.rules[0].when.segment: unknown segment \"ghosts\""]);
    let p = problems(json!({"segments": [
        {"key": "a", "when": {"segment": "b"}},
        {"key": "b", "when": {"any": [{"segment": "a"}]}}]}));
    assert_eq!(p, ["segments.b.when.any[0].segment: segment cycle: a -> b -> a"]);
}

#[test]
fn prerequisite_cycles_depth_and_references() {
    let p = problems(json!({"flags": [
        {"key": "a", "prerequisites": [{"flag": "b", "variants": ["on"]}]},
        {"key": "b", "prerequisites": [{"flag": "a", "variants": ["on"]}]}]}));
    assert_eq!(p, ["flags.b.prerequisites: prerequisite cycle: a -> b -> a"]);
    let p = flag_problems(json!({"key": "a", "prerequisites": [{"flag": "a", "variants": ["on"]}]}));
    assert_eq!(
        p,
        [
            "flags.a.prerequisites[0].flag: a flag cannot be its own prerequisite",
            "flags.a.prerequisites: prerequisite cycle: a -> a"
        ]
        .map(String::from)
        .iter()
        .rev()
        .cloned()
        .collect::<Vec<_>>()
    );
    let p = problems(
        json!({"flags": [{"key": "a", "prerequisites": [{"flag": "zz", "variants": ["on"]}, {"flag": "b", "variants": ["maybe"]}]}, {"key": "b"}]}),
    );
    assert_eq!(
        p,
        [
            "flags.a.prerequisites[0].flag: unknown flag \"zz\"",
            "flags.a.prerequisites[1].variants[0]: flag \"b\" has no variant \"maybe\""
        ]
    );
    // A chain of 9 hops is one too deep.
    let chain: Vec<_> = (0..10)
        .map(|i| {
            let mut f = json!({"key": format!("f{i}")});
            if i < 9 {
                f["prerequisites"] = json!([{"flag": format!("f{}", i + 1), "variants": ["on"]}]);
            }
            f
        })
        .collect();
    let p = problems(json!({ "flags": chain }));
    assert_eq!(p, ["flags.f0.prerequisites: prerequisite chain is 9 deep; at most 8 is allowed"]);
}

#[test]
fn key_patterns_duplicates_and_rule_ids() {
    for bad in ["1abc", "Abc", "a-b", "", &"a".repeat(129)] {
        let p = flag_problems(json!({ "key": bad }));
        assert!(p[0].contains("must match ^[a-z][a-z0-9_]*$"), "{bad}: {p:?}");
    }
    assert!(flag_set(json!({"flags": [{"key": "a".repeat(128)}]})).is_ok());
    assert_eq!(problems(json!({"flags": [{"key": "a"}, {"key": "a"}]})), ["flags.a: duplicate flag key \"a\""]);
    let p = flag_problems(json!({"key": "f", "rules": [
        {"id": "r", "when": {"all": []}, "serve": {"variant": "on"}},
        {"id": "r", "when": {"all": []}, "serve": {"variant": "off"}}]}));
    assert_eq!(p, ["flags.f.rules[1].id: duplicate rule id \"r\""]);
}

#[test]
fn overrides_and_schedule_rules() {
    let p = flag_problems(
        json!({"key": "f", "type": "string", "variants": {"a": "a"}, "off_variant": "a", "overrides": {"enabled_for": ["u"]}}),
    );
    assert_eq!(p, ["flags.f.overrides.enabled_for: is only for boolean flags; pin users with overrides.variants"]);
    let p = flag_problems(
        json!({"key": "f", "schedule": {"enable_at": "2026-02-01T00:00:00Z", "disable_at": "2026-01-01T00:00:00Z"}}),
    );
    assert_eq!(p, ["flags.f.schedule.disable_at: must be after schedule.enable_at"]);
    let p = flag_problems(json!({"key": "f", "schedule": {"enable_at": "soon"}}));
    assert!(p[0].starts_with("flags.f.schedule.enable_at: \"soon\" is not an RFC 3339 date-time"), "{p:?}");
}

#[test]
fn unknown_fields_and_wrong_shapes_are_rejected() {
    assert_eq!(flag_problems(json!({"key": "f", "colour": "red"})), ["flags.f.colour: unknown field"]);
    assert_eq!(problems(json!({"flags": {}})), ["flags: must be an array, found an object"]);
    assert_eq!(problems(json!({"flags": [], "extra": 1})), ["extra: unknown field"]);
    assert_eq!(
        problems(json!([1])),
        [": must be an object, found an array"].map(|s| s.trim_start_matches(": ").to_string())
    );
    assert_eq!(
        flag_problems(json!({"key": "f", "enabled": "yes"})),
        ["flags.f.enabled: must be true or false, found a string"]
    );
}

#[test]
fn syntax_errors_in_files() {
    let err = FlagSet::from_text("{\"flags\": [", Format::Json).unwrap_err();
    assert!(err.to_string().starts_with("invalid JSON"), "{err}");
    let err = FlagSet::from_text("flags: [\n  - key: a\n   bad", Format::Yaml).unwrap_err();
    assert!(err.to_string().starts_with("invalid YAML"), "{err}");
    let ok =
        FlagSet::from_text("flags:\n  - key: dark_mode\n    enabled: true\n    default: {variant: on}\n", Format::Yaml)
            .unwrap();
    assert_eq!(ok.len(), 1);
}
