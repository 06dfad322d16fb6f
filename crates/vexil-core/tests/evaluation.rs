//! Evaluation semantics of SPEC 3: every step and every reason, plus the result document.

mod common;
use common::{must, NOW};
use serde_json::{json, Map, Value};
use vexil_core::{Context, EvalEnv, EvalError, ExperimentResolver, ExperimentVariant, FlagSet, Reason};

fn eval(set: &FlagSet, key: &str, user: &str, attrs: Value) -> (String, Value, Reason, Option<String>, bool) {
    let attrs: Map<String, Value> = attrs.as_object().cloned().unwrap_or_default();
    let r = set.evaluate(key, &Context::new(user, &attrs), NOW).unwrap();
    (r.variant.to_string(), r.value.clone(), r.reason, r.rule_id.map(str::to_string), r.enabled)
}

fn checkout() -> FlagSet {
    must(json!({
        "flags": [{
            "key": "new_checkout", "enabled": true,
            "overrides": {"disabled_for": ["user_9", "user_1"], "enabled_for": ["user_1", "user_2"], "variants": {"user_3": "on"}},
            "rules": [
                {"id": "us_pro", "when": {"all": [{"attr": "country", "op": "in", "values": ["US", "CA"]},
                                                    {"attr": "plan", "op": "eq", "value": "pro"}]},
                 "serve": {"variant": "on"}},
                {"id": "beta", "when": {"segment": "beta_testers"}, "serve": {"split": {"on": 50, "off": 50}, "rollout": 100}},
                {"id": "nobody", "when": {"attr": "plan", "op": "eq", "value": "free"}, "serve": {"split": {"on": 1}, "rollout": 0}}
            ],
            "default": {"split": {"on": 1}, "rollout": 25}
        }],
        "segments": [{"key": "beta_testers", "when": {"attr": "beta", "op": "eq", "value": true}}]
    }))
}

#[test]
fn disabled_flag_serves_off_variant() {
    let set = must(json!({"flags": [{"key": "f", "enabled": false, "default": {"variant": "on"}}]}));
    assert_eq!(eval(&set, "f", "u", json!({})), ("off".into(), json!(false), Reason::Disabled, None, false));
}

#[test]
fn emergency_stop_disables() {
    let mut set =
        must(json!({"flags": [{"key": "f", "enabled": true, "default": {"variant": "on"}, "tags": ["payments"]}]}));
    set.set_stopped(|f| f.meta.tags.iter().any(|t| t == "payments"));
    assert_eq!(eval(&set, "f", "u", json!({})).2, Reason::Disabled);
    set.set_stopped(|_| false);
    assert_eq!(eval(&set, "f", "u", json!({})).2, Reason::Static);
}

#[test]
fn schedule_bounds_are_inclusive_start_exclusive_end() {
    let set = must(json!({"flags": [{"key": "f", "enabled": true, "default": {"variant": "on"},
        "schedule": {"enable_at": "2026-01-01T00:00:00Z", "disable_at": "2026-02-01T00:00:00Z"}}]}));
    let at = |iso: &str| {
        let now = chrono::DateTime::parse_from_rfc3339(iso).unwrap().timestamp_millis();
        let env = EvalEnv::at(now);
        set.evaluate_in("f", &Context::user("u"), &env).unwrap().reason
    };
    assert_eq!(at("2025-12-31T23:59:59Z"), Reason::ScheduledOff);
    assert_eq!(at("2026-01-01T00:00:00Z"), Reason::Static);
    assert_eq!(at("2026-01-31T23:59:59Z"), Reason::Static);
    assert_eq!(at("2026-02-01T00:00:00Z"), Reason::ScheduledOff);
}

#[test]
fn prerequisites_gate_the_flag() {
    let set = must(json!({"flags": [
        {"key": "payments_v2", "enabled": true, "rules": [{"id": "pro", "when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": {"variant": "on"}}]},
        {"key": "checkout", "enabled": true, "default": {"variant": "on"}, "prerequisites": [{"flag": "payments_v2", "variants": ["on"]}]},
        {"key": "chained", "enabled": true, "default": {"variant": "on"}, "prerequisites": [{"flag": "checkout", "variants": ["on"]}]}
    ]}));
    assert_eq!(eval(&set, "checkout", "u", json!({"plan": "pro"})).2, Reason::Static);
    assert_eq!(
        eval(&set, "checkout", "u", json!({"plan": "free"})),
        ("off".into(), json!(false), Reason::PrerequisiteFailed, None, false)
    );
    assert_eq!(eval(&set, "chained", "u", json!({"plan": "free"})).2, Reason::PrerequisiteFailed);
    assert_eq!(eval(&set, "chained", "u", json!({"plan": "pro"})).0, "on");
}

#[test]
fn overrides_disabled_for_wins_over_enabled_for() {
    let set = checkout();
    assert_eq!(
        eval(&set, "new_checkout", "user_1", json!({})),
        ("off".into(), json!(false), Reason::Override, None, false)
    );
    assert_eq!(eval(&set, "new_checkout", "user_9", json!({"plan": "pro", "country": "US"})).2, Reason::Override);
    assert_eq!(
        eval(&set, "new_checkout", "user_2", json!({})),
        ("on".into(), json!(true), Reason::Override, None, true)
    );
    assert_eq!(eval(&set, "new_checkout", "user_3", json!({})).0, "on");
}

#[test]
fn first_matching_rule_wins_with_its_rule_id() {
    let set = checkout();
    let r = eval(&set, "new_checkout", "someone", json!({"country": "CA", "plan": "pro", "beta": true}));
    assert_eq!(r, ("on".into(), json!(true), Reason::TargetingMatch, Some("us_pro".into()), true));
    let r = eval(&set, "new_checkout", "someone", json!({"beta": true}));
    assert_eq!((r.2, r.3.as_deref()), (Reason::Split, Some("beta")));
    let r = eval(&set, "new_checkout", "someone", json!({"plan": "free"}));
    assert_eq!((r.0.as_str(), r.2, r.3.as_deref()), ("off", Reason::RolloutExcluded, Some("nobody")));
}

#[test]
fn default_split_serves_split_or_rollout_excluded() {
    let set = checkout();
    let reasons: Vec<Reason> = (0..200).map(|i| eval(&set, "new_checkout", &format!("u{i}"), json!({})).2).collect();
    assert!(reasons.contains(&Reason::Split));
    assert!(reasons.contains(&Reason::RolloutExcluded));
    assert!(reasons.iter().all(|r| matches!(r, Reason::Split | Reason::RolloutExcluded)));
}

#[test]
fn split_follows_the_spec_bucket_of_the_reference_vector() {
    // new_checkout:user_123 hashes to bucket 758, inside a 25 % rollout of a one-variant split.
    let set = checkout();
    assert_eq!(eval(&set, "new_checkout", "user_123", json!({})).2, Reason::Split);
    let narrow = must(
        json!({"flags": [{"key": "new_checkout", "enabled": true, "default": {"split": {"on": 1}, "rollout": 7.58}}]}),
    );
    assert_eq!(eval(&narrow, "new_checkout", "user_123", json!({})).2, Reason::RolloutExcluded);
    let wide = must(
        json!({"flags": [{"key": "new_checkout", "enabled": true, "default": {"split": {"on": 1}, "rollout": 7.59}}]}),
    );
    assert_eq!(eval(&wide, "new_checkout", "user_123", json!({})).2, Reason::Split);
}

#[test]
fn default_and_static_reasons() {
    let with_rules = must(json!({"flags": [{"key": "f", "enabled": true, "default": {"variant": "on"},
        "rules": [{"id": "r", "when": {"attr": "x", "op": "exists"}, "serve": {"variant": "off"}}]}]}));
    assert_eq!(eval(&with_rules, "f", "u", json!({})).2, Reason::Default);
    let with_overrides = must(json!({"flags": [{"key": "f", "enabled": true, "default": {"variant": "on"},
        "overrides": {"disabled_for": ["x"]}}]}));
    assert_eq!(eval(&with_overrides, "f", "u", json!({})).2, Reason::Default);
    // Schedule and prerequisites do not make a flag non-static.
    let plain = must(json!({"flags": [
        {"key": "f", "enabled": true, "default": {"variant": "on"}, "schedule": {"enable_at": "2020-01-01T00:00:00Z"},
         "prerequisites": [{"flag": "g", "variants": ["off"]}]},
        {"key": "g"}]}));
    assert_eq!(eval(&plain, "f", "u", json!({})).2, Reason::Static);
}

#[test]
fn missing_bucketing_attribute_is_rollout_excluded() {
    let set = must(
        json!({"flags": [{"key": "f", "enabled": true, "bucket_by": "account.id", "default": {"split": {"on": 1}}}]}),
    );
    assert_eq!(eval(&set, "f", "u", json!({})).2, Reason::RolloutExcluded);
    assert_eq!(eval(&set, "f", "u", json!({"account": {"id": [1]}})).2, Reason::RolloutExcluded);
    assert_eq!(eval(&set, "f", "u", json!({"account": {"id": 42}})).2, Reason::Split);
}

#[test]
fn numeric_bucketing_units_hash_as_their_json_text() {
    let set = must(
        json!({"flags": [{"key": "f", "enabled": true, "bucket_by": "account", "default": {"split": {"a": 1, "b": 1}},
        "type": "string", "variants": {"a": "A", "b": "B", "off": "O"}, "off_variant": "off"}]}),
    );
    for n in 0..50 {
        let as_number = eval(&set, "f", "u", json!({ "account": n }));
        let as_string = eval(&set, "f", "u", json!({ "account": n.to_string() }));
        assert_eq!(as_number.0, as_string.0);
    }
}

#[test]
fn enabled_for_non_boolean_flags_means_not_the_off_variant() {
    let set = must(json!({"flags": [{"key": "theme", "type": "string", "enabled": true,
        "variants": {"dark": "dark", "light": "light"}, "off_variant": "light",
        "rules": [{"id": "r", "when": {"attr": "pref", "op": "eq", "value": "dark"}, "serve": {"variant": "dark"}}],
        "default": {"variant": "light"}}]}));
    assert_eq!(
        eval(&set, "theme", "u", json!({"pref": "dark"})),
        ("dark".into(), json!("dark"), Reason::TargetingMatch, Some("r".into()), true)
    );
    assert_eq!(eval(&set, "theme", "u", json!({})), ("light".into(), json!("light"), Reason::Default, None, false));
}

#[test]
fn number_and_json_flags_serve_their_values() {
    let set = must(json!({"flags": [
        {"key": "limit", "type": "number", "enabled": true, "variants": {"low": 10, "high": 100.5}, "off_variant": "low", "default": {"variant": "high"}},
        {"key": "layout", "type": "json", "enabled": true, "variants": {"a": {"cols": 2}, "none": null}, "off_variant": "none", "default": {"variant": "a"}}
    ]}));
    assert_eq!(eval(&set, "limit", "u", json!({})).1, json!(100.5));
    assert_eq!(eval(&set, "layout", "u", json!({})).1, json!({"cols": 2}));
}

#[test]
fn user_id_and_unknown_flag_errors() {
    let set = checkout();
    for bad in ["", "   ", "\t\n"] {
        assert_eq!(set.evaluate("new_checkout", &Context::user(bad), NOW).unwrap_err(), EvalError::InvalidUserId);
        assert_eq!(set.evaluate_all(&Context::user(bad), NOW).unwrap_err().code(), "invalid_user_id");
    }
    let err = set.evaluate("nope", &Context::user("u"), NOW).unwrap_err();
    assert_eq!(err, EvalError::FlagNotFound("nope".into()));
    assert_eq!(err.code(), "flag_not_found");
}

#[test]
fn bad_context_values_never_fail_evaluation() {
    let set = checkout();
    let weird = json!({"country": {"nested": [1, 2]}, "plan": [null, {}], "beta": 1e300});
    let r = eval(&set, "new_checkout", "someone", weird);
    assert!(matches!(r.2, Reason::Split | Reason::RolloutExcluded));
}

struct Fixed(Value);
impl ExperimentResolver for Fixed {
    fn resolve(&self, key: &str, ctx: &Context<'_>) -> Option<ExperimentVariant<'_>> {
        (key == "checkout_redesign" && ctx.user_id() != "outsider")
            .then_some(ExperimentVariant { variant: "treatment", value: &self.0 })
    }
}

#[test]
fn experiment_serve_uses_the_resolver() {
    let set = must(json!({"flags": [{"key": "f", "enabled": true, "default": {"experiment": "checkout_redesign"}}]}));
    let resolver = Fixed(json!(true));
    let env = EvalEnv { now_millis: NOW, experiments: &resolver };
    let r = set.evaluate_in("f", &Context::user("u"), &env).unwrap();
    assert_eq!((r.variant, r.value, r.reason, r.enabled), ("treatment", &json!(true), Reason::Split, true));
    let r = set.evaluate_in("f", &Context::user("outsider"), &env).unwrap();
    assert_eq!((r.variant, r.reason), ("off", Reason::RolloutExcluded));
    assert_eq!(set.evaluate("f", &Context::user("u"), NOW).unwrap().reason, Reason::RolloutExcluded);
}

#[test]
fn evaluate_all_covers_every_flag_in_key_order() {
    let set = must(
        json!({"flags": [{"key": "b", "enabled": true}, {"key": "a", "enabled": true, "default": {"variant": "on"}}]}),
    );
    let all = set.evaluate_all(&Context::user("u"), NOW).unwrap();
    let keys: Vec<&str> = all.iter().map(|e| e.flag.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn result_document_has_the_spec_fields() {
    let set = must(json!({"flags": [{"key": "f", "id": "flag_1", "version": 3, "enabled": true,
        "rules": [{"id": "r", "when": {"all": []}, "serve": {"variant": "on"}}]}]}));
    let r = set.evaluate("f", &Context::user("user_7"), NOW).unwrap();
    assert_eq!(
        serde_json::to_value(r.record("user_7")).unwrap(),
        json!({"flag_key": "f", "flag_id": "flag_1", "flag_version": 3, "user_id": "user_7", "value": true,
               "variant": "on", "reason": "TARGETING_MATCH", "rule_id": "r", "enabled": true})
    );
}

#[test]
fn ofrep_reason_mapping() {
    let expected = [
        (Reason::Override, "TARGETING_MATCH"),
        (Reason::TargetingMatch, "TARGETING_MATCH"),
        (Reason::Split, "SPLIT"),
        (Reason::RolloutExcluded, "SPLIT"),
        (Reason::Default, "DEFAULT"),
        (Reason::Static, "STATIC"),
        (Reason::Disabled, "DISABLED"),
        (Reason::ScheduledOff, "DISABLED"),
        (Reason::PrerequisiteFailed, "DISABLED"),
    ];
    assert_eq!(expected.len(), Reason::ALL.len());
    for (reason, ofrep) in expected {
        assert_eq!(reason.ofrep(), ofrep, "{reason:?}");
        assert_eq!(serde_json::to_value(reason).unwrap(), json!(reason.name()));
    }
}

#[test]
fn the_five_classic_strategies() {
    let set = must(json!({"flags": [
        {"key": "all", "enabled": true, "default": {"variant": "on"}},
        {"key": "none", "enabled": true, "default": {"variant": "off"}},
        {"key": "percentage", "enabled": true, "default": {"split": {"on": 1}, "rollout": 30}},
        {"key": "users", "enabled": true, "overrides": {"enabled_for": ["alice"]}, "default": {"variant": "off"}},
        {"key": "conditional", "enabled": true, "default": {"variant": "off"},
         "rules": [{"id": "staff", "when": {"attr": "email", "op": "ends_with", "value": "@acme.com"}, "serve": {"variant": "on"}}]}
    ]}));
    assert!(eval(&set, "all", "bob", json!({})).4);
    assert!(!eval(&set, "none", "bob", json!({})).4);
    let on = (0..10_000).filter(|i| eval(&set, "percentage", &format!("user_{i}"), json!({})).4).count();
    assert!((2_800..3_200).contains(&on), "{on}");
    assert!(eval(&set, "users", "alice", json!({})).4);
    assert!(!eval(&set, "users", "bob", json!({})).4);
    assert!(eval(&set, "conditional", "bob", json!({"email": "bob@acme.com"})).4);
    assert!(!eval(&set, "conditional", "bob", json!({"email": "bob@example.com"})).4);
}
