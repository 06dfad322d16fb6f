//! The SDK evaluates exactly as the server: generated flags (rules over every kind of
//! condition, segments, splits, rollouts, overrides, prerequisites, schedules, bucketing by
//! another attribute) and generated contexts, each evaluated by the SDK in-process and by
//! `POST /v1/evaluate`, must agree on value, variant, reason and rule for every case. Flags may
//! serve a running experiment: the SDK answers "arm unknown" until it has fetched the user's
//! arm, and from then on must agree too.

use crate::experiments::running;
use crate::harness::{eventually, Server};
use crate::sdk_client::sdk_options;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::{json, Map, Value};
use vexil_sdk::{Client, Context, Resolution};

const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["US", "CA", "FR", "us", "1.2.3", "30", "a@x.io"]).prop_map(Value::from),
        (-5i64..50).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::from(29.5)),
    ]
}

fn leaf(segment: String) -> impl Strategy<Value = Value> {
    let attr = prop::sample::select(vec!["country", "age", "plan", "version", "email", "user_id", "missing"]);
    let single = prop::sample::select(vec![
        "eq",
        "neq",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "starts_with",
        "ends_with",
        "semver_gt",
        "semver_lte",
    ]);
    prop_oneof![
        (attr.clone(), single, scalar(), any::<bool>()).prop_map(|(attr, op, value, ignore_case)| {
            let string_op = value.is_string() && matches!(op, "eq" | "contains" | "starts_with" | "ends_with");
            let semver = op.starts_with("semver");
            let value = if semver { json!("1.2.0") } else { value };
            let value = if !semver && !value.is_number() && matches!(op, "gt" | "gte" | "lt" | "lte") {
                json!(30)
            } else if !value.is_string() && matches!(op, "contains" | "starts_with" | "ends_with") {
                json!("u")
            } else {
                value
            };
            let mut condition = json!({"attr": attr, "op": op, "value": value});
            if string_op && ignore_case {
                condition["ignore_case"] = json!(true);
            }
            condition
        }),
        (attr.clone(), prop::sample::select(vec!["in", "not_in"]), prop::collection::vec(scalar(), 1..4))
            .prop_map(|(attr, op, values)| json!({"attr": attr, "op": op, "values": values})),
        (attr.clone(), prop::sample::select(vec!["exists", "not_exists"]))
            .prop_map(|(attr, op)| json!({"attr": attr, "op": op})),
        attr.prop_map(|attr| json!({"attr": attr, "op": "matches", "value": "^[uU]\\d"})),
        Just(json!({"segment": segment})),
    ]
}

fn condition(segment: String) -> impl Strategy<Value = Value> {
    leaf(segment).prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|all| json!({"all": all})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|any| json!({"any": any})),
            inner.prop_map(|not| json!({"not": not})),
        ]
    })
}

/// A `serve` over `variants`: one of them, a split with a rollout, or `experiment`.
fn serve(variants: Vec<&'static str>, experiment: String) -> impl Strategy<Value = Value> {
    let count = variants.len();
    prop_oneof![
        1 => Just(json!({"experiment": experiment})),
        2 => prop::sample::select(variants.clone()).prop_map(|v| json!({"variant": v})),
        2 => (prop::collection::vec(0u32..5, count), 0u32..=10000).prop_map(move |(mut weights, rollout)| {
            weights[0] += 1;
            let split: Map<String, Value> =
                variants.iter().zip(weights).map(|(v, w)| (v.to_string(), json!(w))).collect();
            json!({"split": split, "rollout": f64::from(rollout) / 100.0})
        }),
    ]
}

fn flag(key: String, gate: String, segment: String, case: usize) -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec!["boolean", "string", "number"]);
    kind.prop_flat_map(move |kind| {
        let experiment = experiment_key(case, kind);
        let (variants, values): (Vec<&'static str>, Value) = match kind {
            "boolean" => (vec!["on", "off"], json!({"on": true, "off": false})),
            "string" => (vec!["a", "b", "c"], json!({"a": "alpha", "b": "beta", "c": "gamma"})),
            _ => (vec!["low", "high"], json!({"low": 1.5, "high": 100})),
        };
        let rule = (condition(segment.clone()), serve(variants.clone(), experiment.clone()));
        (
            prop::collection::vec(rule, 0..3),
            serve(variants.clone(), experiment),
            prop::sample::subsequence(USERS.to_vec(), 0..2),
            prop::option::of((prop::sample::select(USERS.to_vec()), prop::sample::select(variants.clone()))),
            prop::sample::select(vec![0u8, 0, 0, 1, 2]),
            any::<bool>(),
            prop::sample::select(vec!["user_id", "user_id", "company"]),
            prop::bool::weighted(0.9),
        )
            .prop_map({
                let (key, gate) = (key.clone(), gate.clone());
                move |(rules, default, disabled_for, pinned, schedule, gated, bucket_by, enabled)| {
                    let rules: Vec<Value> = rules
                        .into_iter()
                        .enumerate()
                        .map(|(i, (when, serve))| json!({"id": format!("r{i}"), "when": when, "serve": serve}))
                        .collect();
                    let pinned: Map<String, Value> =
                        pinned.into_iter().map(|(u, v)| (u.to_string(), json!(v))).collect();
                    let schedule = match schedule {
                        1 => json!({"disable_at": "2020-01-01T00:00:00Z"}),
                        2 => json!({"enable_at": "2100-01-01T00:00:00Z"}),
                        _ => json!({}),
                    };
                    let mut flag = json!({
                        "key": key, "type": kind, "enabled": enabled, "variants": values,
                        "off_variant": variants[variants.len() - 1], "rules": rules, "default": default,
                        "overrides": {"disabled_for": disabled_for, "variants": pinned},
                        "bucket_by": bucket_by, "schedule": schedule,
                    });
                    if gated {
                        flag["prerequisites"] = json!([{"flag": gate, "variants": ["on"]}]);
                    }
                    flag
                }
            })
    })
}

fn experiment_key(case: usize, kind: &str) -> String {
    format!("c{case}_x_{kind}")
}

/// The running experiment flags of `kind` may serve in a case: 70 % of the traffic, split
/// unevenly, with values of the flag's type.
fn experiment(case: usize, kind: &str) -> Value {
    let values = match kind {
        "boolean" => [json!(false), json!(true)],
        "string" => [json!("alpha"), json!("beta")],
        _ => [json!(1.5), json!(100)],
    };
    json!({"key": experiment_key(case, kind), "traffic_allocation": 70, "variants": [
        {"key": "control", "weight": 40, "value": values[0]},
        {"key": "treatment", "weight": 60, "value": values[1]}]})
}

/// A flags file of one case: a gate flag others may require, a segment, and `count` flags.
fn document(case: usize, count: usize) -> impl Strategy<Value = Value> {
    let gate = format!("c{case}_gate");
    let segment = format!("c{case}_segment");
    let gate_flag = json!({"key": gate, "enabled": true, "default": {"split": {"on": 1, "off": 1}, "rollout": 100}});
    let flags: Vec<_> =
        (0..count).map(|i| flag(format!("c{case}_f{i}"), gate.clone(), segment.clone(), case)).collect();
    (flags, condition("none".into()).prop_filter("segments cannot nest", |c| !c.to_string().contains("segment")))
        .prop_map(move |(mut flags, segment_when)| {
            flags.push(gate_flag.clone());
            json!({"flags": flags, "segments": [{"key": segment, "when": segment_when}]})
        })
}

fn contexts() -> impl Strategy<Value = Vec<(String, Map<String, Value>)>> {
    let user = prop_oneof![prop::sample::select(USERS.to_vec()).prop_map(str::to_string), "[a-z]{1,6}"];
    let attributes = prop::collection::btree_map(
        prop::sample::select(vec!["country", "age", "plan", "version", "email", "company"]),
        scalar(),
        0..6,
    )
    .prop_map(|map| map.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>());
    prop::collection::vec((user, attributes), 25)
}

/// What the SDK answers for one flag, in the shape of the server's result; none while the
/// user's arm in the experiment the flag serves is being fetched.
fn sdk_result(client: &Client, flag: &Value, ctx: &Context<'_>) -> Option<Value> {
    let key = flag["key"].as_str().unwrap();
    let (value, variant, resolution, rule_id) = match flag["type"].as_str().unwrap_or("boolean") {
        "boolean" => {
            let d = client.bool_details(key, ctx, false);
            (json!(d.value), d.variant, d.resolution, d.rule_id)
        }
        "string" => {
            let d = client.string_details(key, ctx, "");
            (json!(d.value), d.variant, d.resolution, d.rule_id)
        }
        _ => {
            let d = client.number_details(key, ctx, 0.0);
            (json!(d.value), d.variant, d.resolution, d.rule_id)
        }
    };
    let reason = match resolution {
        Resolution::Evaluated(reason) => reason,
        Resolution::ArmUnknown => return None,
        Resolution::Error(e) => panic!("{key}: the SDK answered {e:?}"),
    };
    Some(json!({"value": value, "variant": variant, "reason": reason.name(), "rule_id": rule_id}))
}

fn server_result(result: &Value) -> Value {
    let value = match &result["value"] {
        Value::Number(n) => json!(n.as_f64()),
        other => other.clone(),
    };
    json!({"value": value, "variant": result["variant"], "reason": result["reason"], "rule_id": result["rule_id"]})
}

#[tokio::test]
async fn the_sdk_agrees_with_the_server_on_generated_flags_and_contexts() {
    let server = Server::start().await;
    let key = server.create_key("server").await;
    // A fixed seed: the same generated cases on every run, so the coverage of every reason
    // asserted below is a fact about these cases rather than a matter of luck.
    let mut runner = TestRunner::deterministic();
    let mut compared = 0;
    let mut reasons = std::collections::BTreeSet::new();
    let mut experiment_variants = std::collections::BTreeSet::new();
    for case in 0..24 {
        for kind in ["boolean", "string", "number"] {
            running(&server, experiment(case, kind)).await;
        }
        let document = document(case, 8).new_tree(&mut runner).unwrap().current();
        let (status, report) = server.call(Method::POST, "/v1/admin/import", Some(document.clone())).await;
        assert!(status.is_success(), "{report}\n{document:#}");
        let client = Client::start(sdk_options(&server.base, &key));
        let keys: Vec<String> =
            document["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap().into()).collect();
        eventually("the SDK holds the imported flags", || async {
            let held = client.flag_keys();
            keys.iter().all(|k| held.contains(k)).then_some(())
        })
        .await;
        for (user_id, attributes) in contexts().new_tree(&mut runner).unwrap().current() {
            let body = json!({"user_id": user_id, "context": attributes, "flag_keys": keys});
            let (status, answer) = Server::send(server.admin(Method::POST, "/v1/evaluate").json(&body)).await;
            assert!(status.is_success(), "{answer}");
            let ctx = Context::new(&user_id, &attributes);
            for flag in document["flags"].as_array().unwrap() {
                let key = flag["key"].as_str().unwrap();
                let expected = server_result(&answer["flags"][key]);
                let got =
                    eventually("the SDK knows the user's arm", || async { sdk_result(&client, flag, &ctx) }).await;
                if expected["reason"] == "SPLIT"
                    && ["control", "treatment"].contains(&expected["variant"].as_str().unwrap())
                {
                    experiment_variants.insert(expected["variant"].as_str().unwrap().to_string());
                }
                assert_eq!(
                    got, expected,
                    "flag {flag:#}\nuser {user_id} context {attributes:?}\nsegments {:#}",
                    document["segments"]
                );
                reasons.insert(expected["reason"].as_str().unwrap().to_string());
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 24 * 25 * 9);
    // The generator reaches every step of SPEC 3, so agreement covers all of them.
    let every: std::collections::BTreeSet<_> = vexil_sdk::Reason::ALL.iter().map(|r| r.name().to_string()).collect();
    assert_eq!(reasons, every);
    assert_eq!(experiment_variants.len(), 2, "users were served both arms of experiments");
}
