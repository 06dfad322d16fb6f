//! Writes against the scale issue's target: a write recompiles only what it changes, so one
//! flag written in a set of 10,000 typical flags costs about what it costs in a set of 10 (the
//! end-to-end figure, a write visible to evaluation over HTTP, is `scripts/bench/scale.sh`). A
//! flag created and a segment written are measured beside it: they do more, by their nature.
//! The flags are those of `scripts/bench/scale.py generate`: overrides, a segment rule, two
//! targeting rules (one serving a split) and a split default, over 100 segments.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use vexil_core::FlagSet;

fn typical_flag(i: usize, segments: usize) -> Value {
    json!({
        "key": format!("flag_{i:05}"),
        "description": format!("Scale benchmark flag {i}, owned by team {}", i % 40),
        "tags": ["scale", format!("team_{}", i % 40)],
        "enabled": true,
        "overrides": {
            "disabled_for": [format!("blocked_{i}")],
            "enabled_for": ["qa_1", "qa_2"],
            "variants": {format!("beta_{i}"): "on"},
        },
        "rules": [
            {"id": "internal", "when": {"segment": format!("segment_{}", i % segments)}, "serve": {"variant": "on"}},
            {"id": "us_pro", "when": {"all": [
                {"attr": "country", "op": "in", "values": ["US", "CA", "GB"]},
                {"attr": "plan", "op": "eq", "value": "pro"},
            ]}, "serve": {"variant": "on"}},
            {"id": "new_app", "when": {"attr": "app_version", "op": "semver_gte", "value": format!("4.{}.0", i % 10)},
             "serve": {"split": {"on": 1, "off": 1}, "rollout": 50}},
        ],
        "default": {"split": {"on": 1, "off": 3}, "rollout": i % 100},
    })
}

fn segment(j: usize) -> Value {
    let staff: Vec<String> = (0..5).map(|n| format!("staff_{j}_{n}")).collect();
    json!({"key": format!("segment_{j}"), "when": {"any": [
        {"attr": "email", "op": "matches", "value": format!("^[a-z.]+@team{j}\\.example\\.com$")},
        {"attr": "user_id", "op": "in", "values": staff},
    ]}})
}

fn flag_set(flags: usize, segments: usize) -> FlagSet {
    let flags: Vec<Value> = (0..flags).map(|i| typical_flag(i, segments)).collect();
    let segments: Vec<Value> = (0..segments).map(segment).collect();
    FlagSet::from_value(&json!({"flags": flags, "segments": segments})).unwrap()
}

fn bench(c: &mut Criterion) {
    for (flags, segments) in [(10, 2), (10_000, 100)] {
        let set = flag_set(flags, segments);
        // The write `scale.py writes` makes: the middle flag's default, with its rules and
        // overrides cleared.
        let mut written = typical_flag(flags / 2, segments);
        written["rules"] = json!([]);
        written["overrides"] = json!({});
        written["default"] = json!({"variant": "on"});
        let key = written["key"].as_str().unwrap().to_owned();
        c.bench_function(&format!("one flag's default written, {flags} flags"), |b| {
            b.iter(|| black_box(set.with_changes([(key.clone(), Some(written.clone()))], []).unwrap()))
        });
        // A new key moves the positions of the flags after it: the set's index by key is built
        // again.
        let created = typical_flag(flags, segments);
        let new_key = created["key"].as_str().unwrap().to_owned();
        c.bench_function(&format!("one flag created, {flags} flags"), |b| {
            b.iter(|| black_box(set.with_changes([(new_key.clone(), Some(created.clone()))], []).unwrap()))
        });
        // A segment's flags (one in `segments` of them) are compiled again.
        let mut segment_written = segment(0);
        segment_written["when"]["any"][1]["values"] = json!(["staff_0_new"]);
        c.bench_function(&format!("one segment written, {flags} flags"), |b| {
            b.iter(|| {
                black_box(set.with_changes([], [("segment_0".to_owned(), Some(segment_written.clone()))]).unwrap())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
