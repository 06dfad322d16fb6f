//! Evaluation speed against the targets of the evaluation-engine issue:
//! a boolean flag with no rules ≤ 50 ns; three rules (`in` over 100 values, `matches`,
//! `semver_gte`) plus a 3-way split ≤ 250 ns; `evaluate_all` over 100 such flags ≤ 25 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};
use vexil_core::{Context, FlagSet};

fn rules_flag(key: &str) -> Value {
    let countries: Vec<String> = (0..100).map(|i| format!("C{i:03}")).collect();
    json!({"key": key, "type": "string", "enabled": true,
           "variants": {"a": "A", "b": "B", "c": "C", "off": "OFF"}, "off_variant": "off",
           "rules": [
               {"id": "countries", "when": {"attr": "country", "op": "in", "values": countries}, "serve": {"variant": "a"}},
               {"id": "staff", "when": {"attr": "email", "op": "matches", "value": "^[a-z.]+@acme\\.com$"}, "serve": {"variant": "b"}},
               {"id": "new_app", "when": {"attr": "app_version", "op": "semver_gte", "value": "3.2.0"}, "serve": {"variant": "c"}}
           ],
           "default": {"split": {"a": 1, "b": 1, "c": 1}, "rollout": 100}})
}

fn context() -> Map<String, Value> {
    // Matches no rule, so every rule is tried and the split decides: the slowest path.
    json!({"country": "ZZ", "email": "someone@example.com", "app_version": "3.1.9", "plan": "pro"})
        .as_object()
        .cloned()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let boolean =
        FlagSet::from_value(&json!({"flags": [{"key": "dark_mode", "enabled": true, "default": {"variant": "on"}}]}))
            .unwrap();
    let one = FlagSet::from_value(&json!({"flags": [rules_flag("checkout")]})).unwrap();
    let hundred = FlagSet::from_value(
        &json!({"flags": (0..100).map(|i| rules_flag(&format!("flag_{i:03}"))).collect::<Vec<_>>()}),
    )
    .unwrap();
    let attrs = context();
    let users: Vec<String> = (0..1024).map(|i| format!("user_{i}")).collect();

    // Evaluation takes the time as an input; these flags have no schedule.
    let now = 1_780_272_000_000;
    let mut i = 0usize;
    c.bench_function("boolean flag, no rules", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(boolean.evaluate(black_box("dark_mode"), &Context::new(&users[i], &attrs), now).unwrap());
        })
    });
    c.bench_function("3 rules (in 100, matches, semver_gte) + 3-way split", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(one.evaluate(black_box("checkout"), &Context::new(&users[i], &attrs), now).unwrap());
        })
    });
    c.bench_function("evaluate_all over 100 such flags", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(hundred.evaluate_all(&Context::new(&users[i], &attrs), now).unwrap());
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
