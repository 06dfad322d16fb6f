//! The evaluate path allocates nothing on the heap: a counting global allocator proves it.

use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use vexil_core::{Context, FlagSet};

struct Counting;

thread_local! {
    // Per thread, so allocations of tests running in parallel are not counted.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    ALLOCATIONS.with(|n| n.set(n.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl Fn()) -> usize {
    f(); // warm up lazily initialised state (regex caches) first
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        f();
    }
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_allocations() {
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 8]))) > 0);
}

#[test]
fn boolean_evaluations_do_not_allocate() {
    let countries: Vec<String> = (0..100).map(|i| format!("C{i}")).collect();
    let set = FlagSet::from_value(&json!({"flags": [
        {"key": "plain", "enabled": true, "default": {"variant": "on"}},
        {"key": "rollout", "enabled": true, "default": {"split": {"on": 1}, "rollout": 50}},
        {"key": "numeric_unit", "enabled": true, "bucket_by": "account", "default": {"split": {"on": 1, "off": 1}}},
        {"key": "prereq", "enabled": true, "prerequisites": [{"flag": "plain", "variants": ["on"]}],
         "overrides": {"disabled_for": ["x"], "enabled_for": ["y"]},
         "schedule": {"enable_at": "2020-01-01T00:00:00Z"},
         "rules": [
            {"id": "in", "when": {"attr": "country", "op": "in", "values": countries}, "serve": {"variant": "on"}},
            {"id": "re", "when": {"attr": "email", "op": "matches", "value": "@acme\\.com$"}, "serve": {"variant": "on"}},
            {"id": "sv", "when": {"attr": "app.version", "op": "semver_gte", "value": "2.1.0"}, "serve": {"variant": "on"}},
            {"id": "ip", "when": {"attr": "ip", "op": "in_cidr", "value": "10.0.0.0/8"}, "serve": {"variant": "on"}},
            {"id": "dt", "when": {"attr": "signup", "op": "after", "value": "2024-01-01T00:00:00Z"}, "serve": {"variant": "on"}}
         ],
         "default": {"split": {"on": 1, "off": 1}, "rollout": 50}}
    ]}))
    .unwrap();
    let attrs = json!({"country": "ZZ", "email": "bob@example.com", "app": {"version": "2.0.9"}, "ip": "192.168.0.1",
                       "signup": "2023-05-01T00:00:00Z", "account": 12345})
    .as_object()
    .cloned()
    .unwrap();
    for key in ["plain", "rollout", "numeric_unit", "prereq"] {
        let n = allocations_during(|| {
            for i in 0..8 {
                let user = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"][i];
                let r = set.evaluate(key, &Context::new(user, &attrs), 1_780_272_000_000).unwrap();
                std::hint::black_box(r);
            }
        });
        assert_eq!(n, 0, "evaluating {key} allocated {n} times");
    }
}
