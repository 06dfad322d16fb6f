//! Every operator of SPEC 1.2 with its coercion and missing-attribute behaviour.

mod common;
use common::{condition_matches as m, condition_matches_for};
use serde_json::json;

#[test]
fn eq_and_alias_with_coercion_by_the_operand_type() {
    assert!(m(json!({"attr": "plan", "op": "eq", "value": "pro"}), json!({"plan": "pro"})));
    assert!(m(json!({"attr": "plan", "op": "equals", "value": "pro"}), json!({"plan": "pro"})));
    assert!(!m(json!({"attr": "plan", "op": "eq", "value": "pro"}), json!({"plan": "free"})));
    // A number operand accepts a numeric string attribute...
    assert!(m(json!({"attr": "age", "op": "eq", "value": 30}), json!({"age": "30"})));
    assert!(m(json!({"attr": "age", "op": "eq", "value": 30}), json!({"age": 30.0})));
    // ...but a string operand accepts only strings.
    assert!(!m(json!({"attr": "age", "op": "eq", "value": "30"}), json!({"age": 30})));
    // A bool operand accepts "true"/"false" strings.
    assert!(m(json!({"attr": "beta", "op": "eq", "value": true}), json!({"beta": "true"})));
    assert!(m(json!({"attr": "beta", "op": "eq", "value": false}), json!({"beta": false})));
    assert!(!m(json!({"attr": "beta", "op": "eq", "value": true}), json!({"beta": "yes"})));
}

#[test]
fn neq_is_false_for_missing_and_uncoercible_attributes() {
    assert!(m(json!({"attr": "plan", "op": "neq", "value": "pro"}), json!({"plan": "free"})));
    assert!(m(json!({"attr": "plan", "op": "not_equals", "value": "pro"}), json!({"plan": "free"})));
    assert!(!m(json!({"attr": "plan", "op": "neq", "value": "pro"}), json!({"plan": "pro"})));
    assert!(!m(json!({"attr": "plan", "op": "neq", "value": "pro"}), json!({})));
    assert!(!m(json!({"attr": "age", "op": "neq", "value": 30}), json!({"age": "thirty"})));
    assert!(!m(json!({"attr": "plan", "op": "neq", "value": "pro"}), json!({"plan": null})));
}

#[test]
fn in_and_not_in_coerce_each_listed_value_alone() {
    let cond = json!({"attr": "country", "op": "in", "values": ["US", "CA", 30]});
    assert!(m(cond.clone(), json!({"country": "CA"})));
    assert!(m(cond.clone(), json!({"country": "30"})));
    assert!(m(cond.clone(), json!({"country": 30})));
    assert!(!m(cond.clone(), json!({"country": "FR"})));
    assert!(!m(cond, json!({})));
    let not_in = json!({"attr": "country", "op": "not_in", "values": ["US", "CA"]});
    assert!(m(not_in.clone(), json!({"country": "FR"})));
    assert!(!m(not_in.clone(), json!({"country": "US"})));
    assert!(!m(not_in.clone(), json!({})));
    // A number cannot be compared with string-only values: false, even for not_in.
    assert!(!m(not_in, json!({"country": 7})));
}

#[test]
fn in_over_many_values_and_ignore_case() {
    let values: Vec<String> = (0..100).map(|i| format!("Country{i}")).collect();
    let cond = json!({"attr": "c", "op": "in", "values": values});
    assert!(m(cond.clone(), json!({"c": "Country57"})));
    assert!(!m(cond, json!({"c": "country57"})));
    let ci = json!({"attr": "c", "op": "in", "values": values, "ignore_case": true});
    assert!(m(ci, json!({"c": "COUNTRY57"})));
    assert!(m(json!({"attr": "c", "op": "eq", "value": "Ünïcödé", "ignore_case": true}), json!({"c": "üNÏCÖDÉ"})));
}

#[test]
fn string_operators_with_any_of_values_and_ignore_case() {
    assert!(m(json!({"attr": "email", "op": "contains", "value": "@acme"}), json!({"email": "a@acme.com"})));
    assert!(!m(json!({"attr": "email", "op": "contains", "value": "@ACME"}), json!({"email": "a@acme.com"})));
    assert!(m(
        json!({"attr": "email", "op": "contains", "value": "@ACME", "ignore_case": true}),
        json!({"email": "a@acme.com"})
    ));
    assert!(m(json!({"attr": "email", "op": "not_contains", "value": "@acme"}), json!({"email": "a@other.com"})));
    assert!(!m(json!({"attr": "email", "op": "not_contains", "value": "@acme"}), json!({"email": "a@acme.com"})));
    assert!(!m(json!({"attr": "email", "op": "not_contains", "value": "@acme"}), json!({})));
    assert!(!m(json!({"attr": "email", "op": "not_contains", "value": "@acme"}), json!({"email": 5})));
    assert!(m(json!({"attr": "path", "op": "starts_with", "values": ["/a", "/b"]}), json!({"path": "/b/c"})));
    assert!(!m(json!({"attr": "path", "op": "starts_with", "value": "/a"}), json!({"path": "/b/c"})));
    assert!(m(
        json!({"attr": "path", "op": "ends_with", "value": ".PNG", "ignore_case": true}),
        json!({"path": "x.png"})
    ));
    assert!(!m(json!({"attr": "path", "op": "ends_with", "value": ".png"}), json!({"path": 12})));
}

#[test]
fn matches_uses_rust_regex_syntax() {
    assert!(m(
        json!({"attr": "email", "op": "matches", "value": r"^[a-z]+@acme\.com$"}),
        json!({"email": "bob@acme.com"})
    ));
    assert!(!m(
        json!({"attr": "email", "op": "matches", "value": r"^[a-z]+@acme\.com$"}),
        json!({"email": "Bob@acme.com"})
    ));
    assert!(m(
        json!({"attr": "email", "op": "matches", "value": r"^[a-z]+@acme\.com$", "ignore_case": true}),
        json!({"email": "Bob@ACME.com"})
    ));
    assert!(!m(json!({"attr": "email", "op": "matches", "value": "."}), json!({"email": 1})));
}

#[test]
fn numeric_comparisons_and_aliases() {
    let cases = [
        ("gt", 30, "31", true),
        ("gt", 30, "30", false),
        ("greater_than", 30, "31", true),
        ("gte", 30, "30", true),
        ("lt", 30, "29.5", true),
        ("less_than", 30, "30", false),
        ("lte", 30, "30", true),
    ];
    for (op, value, attr, expected) in cases {
        assert_eq!(
            m(json!({"attr": "age", "op": op, "value": value}), json!({"age": attr})),
            expected,
            "{op} {value} vs {attr}"
        );
        let as_number: f64 = attr.parse().unwrap();
        assert_eq!(m(json!({"attr": "age", "op": op, "value": value}), json!({"age": as_number})), expected);
    }
    assert!(!m(json!({"attr": "age", "op": "gt", "value": 1}), json!({"age": "old"})));
    assert!(!m(json!({"attr": "age", "op": "gt", "value": 1}), json!({"age": "NaN"})));
    assert!(!m(json!({"attr": "age", "op": "gt", "value": 1}), json!({})));
}

#[test]
fn dates_before_and_after() {
    let cond = json!({"attr": "signup", "op": "before", "value": "2026-01-01T00:00:00Z"});
    assert!(m(cond.clone(), json!({"signup": "2025-12-31T23:59:59Z"})));
    assert!(m(cond.clone(), json!({"signup": "2026-01-01T01:00:00+02:00"})));
    assert!(!m(cond.clone(), json!({"signup": "2026-01-01T00:00:00Z"})));
    assert!(!m(cond.clone(), json!({"signup": "yesterday"})));
    assert!(m(cond, json!({"signup": 1_700_000_000_000_i64})));
    let after = json!({"attr": "signup", "op": "after", "value": 1_700_000_000_000_i64});
    assert!(m(after.clone(), json!({"signup": "2026-01-01T00:00:00Z"})));
    assert!(!m(after, json!({})));
}

#[test]
fn semantic_versions() {
    let cases = [
        ("semver_eq", "2.0.0", "2.0.0", true),
        ("semver_eq", "2.0.0", "v2.0", true),
        ("semver_eq", "2.0.0", "2.0.0-beta.1", false),
        ("semver_gt", "2.0.0", "2.0.1", true),
        ("semver_gt", "2.0.0", "2.0.0-rc.1", false),
        ("semver_gte", "2.0.0", "2.0.0", true),
        ("semver_gte", "2.0.0", "10.0.0", true),
        ("semver_lt", "2.0.0", "1.99.99", true),
        ("semver_lt", "2.0.0", "2.0.0", false),
        ("semver_lte", "2.0.0", "2.0.0+build.5", true),
    ];
    for (op, value, attr, expected) in cases {
        assert_eq!(
            m(json!({"attr": "v", "op": op, "value": value}), json!({"v": attr})),
            expected,
            "{attr} {op} {value}"
        );
    }
    assert!(!m(json!({"attr": "v", "op": "semver_gte", "value": "1.0.0"}), json!({"v": "latest"})));
    assert!(!m(json!({"attr": "v", "op": "semver_gte", "value": "1.0.0"}), json!({"v": 2})));
}

#[test]
fn ip_in_cidr() {
    let cond = json!({"attr": "ip", "op": "in_cidr", "values": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]});
    assert!(m(cond.clone(), json!({"ip": "10.20.30.40"})));
    assert!(m(cond.clone(), json!({"ip": "2001:db8::1"})));
    assert!(m(cond.clone(), json!({"ip": "192.168.1.7"})));
    assert!(!m(cond.clone(), json!({"ip": "192.168.1.8"})));
    assert!(!m(cond.clone(), json!({"ip": "not an ip"})));
    assert!(!m(cond, json!({})));
}

#[test]
fn exists_and_not_exists() {
    assert!(m(json!({"attr": "plan", "op": "exists"}), json!({"plan": "x"})));
    assert!(!m(json!({"attr": "plan", "op": "exists"}), json!({})));
    assert!(!m(json!({"attr": "plan", "op": "exists"}), json!({"plan": null})));
    assert!(m(json!({"attr": "plan", "op": "not_exists"}), json!({})));
    assert!(m(json!({"attr": "plan", "op": "not_exists"}), json!({"plan": null})));
    assert!(!m(json!({"attr": "plan", "op": "not_exists"}), json!({"plan": false})));
}

#[test]
fn nested_paths_and_user_id() {
    assert!(m(json!({"attr": "device.os", "op": "eq", "value": "ios"}), json!({"device": {"os": "ios"}})));
    assert!(!m(json!({"attr": "device.os", "op": "eq", "value": "ios"}), json!({"device": "ios"})));
    assert!(m(json!({"attr": "device.os", "op": "not_exists"}), json!({"device": {}})));
    assert!(condition_matches_for("user_42", json!({"attr": "user_id", "op": "ends_with", "value": "_42"}), json!({})));
    // The request's user id wins over a user_id attribute in the context.
    assert!(!condition_matches_for(
        "user_42",
        json!({"attr": "user_id", "op": "eq", "value": "x"}),
        json!({"user_id": "x"})
    ));
}

#[test]
fn array_attributes_match_any_element() {
    assert!(m(json!({"attr": "groups", "op": "eq", "value": "admin"}), json!({"groups": ["dev", "admin"]})));
    assert!(!m(json!({"attr": "groups", "op": "eq", "value": "admin"}), json!({"groups": ["dev"]})));
    assert!(m(json!({"attr": "groups", "op": "not_in", "values": ["admin"]}), json!({"groups": ["dev"]})));
    assert!(!m(json!({"attr": "groups", "op": "not_in", "values": ["admin"]}), json!({"groups": ["dev", "admin"]})));
    assert!(!m(json!({"attr": "groups", "op": "not_in", "values": ["admin"]}), json!({"groups": [1, 2]})));
}

#[test]
fn combinators_and_segments() {
    assert!(m(json!({"all": []}), json!({})));
    assert!(!m(json!({"any": []}), json!({})));
    let both = json!({"all": [{"attr": "a", "op": "eq", "value": 1}, {"attr": "b", "op": "eq", "value": 2}]});
    assert!(m(both.clone(), json!({"a": 1, "b": 2})));
    assert!(!m(both, json!({"a": 1, "b": 3})));
    let either = json!({"any": [{"attr": "a", "op": "eq", "value": 1}, {"attr": "b", "op": "eq", "value": 2}]});
    assert!(m(either.clone(), json!({"a": 0, "b": 2})));
    assert!(!m(either, json!({})));
    // `not` inverts a missing attribute's false into true: the documented way to negate.
    assert!(m(json!({"not": {"attr": "plan", "op": "eq", "value": "pro"}}), json!({})));
    assert!(m(json!({"segment": "beta"}), json!({"beta": true})));
    assert!(!m(json!({"segment": "beta"}), json!({"beta": false})));
}
