//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use serde_json::{json, Value};
use vexil_core::{Context, FlagSet, ValidationErrors};

/// Compiles a `{"flags": [...], "segments": [...]}` document given as JSON.
pub fn flag_set(doc: Value) -> Result<FlagSet, ValidationErrors> {
    FlagSet::from_value(&doc)
}

/// The time the tests evaluate at (2026-06-01T00:00:00Z), for flags without a schedule.
pub const NOW: i64 = 1_780_272_000_000;

pub fn must(doc: Value) -> FlagSet {
    flag_set(doc).unwrap_or_else(|e| panic!("document should be valid:\n{e}"))
}

/// Whether `condition` matches a context with `attributes` (user id `user_1`).
pub fn condition_matches(condition: Value, attributes: Value) -> bool {
    condition_matches_for("user_1", condition, attributes)
}

pub fn condition_matches_for(user: &str, condition: Value, attributes: Value) -> bool {
    let set = must(json!({
        "flags": [{"key": "f", "enabled": true,
                   "rules": [{"id": "r", "when": condition, "serve": {"variant": "on"}}]}],
        "segments": [{"key": "beta", "when": {"attr": "beta", "op": "eq", "value": true}}]
    }));
    let attrs = attributes.as_object().cloned().unwrap_or_default();
    let result = set.evaluate("f", &Context::new(user, &attrs), NOW).unwrap();
    result.variant == "on"
}

/// The problems of an invalid document, as `path: message` lines.
pub fn problems(doc: Value) -> Vec<String> {
    match flag_set(doc) {
        Ok(_) => panic!("document should be invalid"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// SPEC 2's bucket of `unit` under `salt`, hashed with the `murmur3` crate rather than
/// the core's own MurmurHash3 and salted-prefix state, so a test comparing the two
/// checks the core against the specification, not against itself.
pub fn spec_bucket(salt: &str, unit: &str) -> u32 {
    let text = format!("{salt}:{unit}");
    let h = murmur3::murmur3_32(&mut std::io::Cursor::new(text.as_bytes()), 0).unwrap();
    ((u64::from(h) * 10_000) >> 32) as u32
}

/// SPEC 2's served bucket range `[start, start + len)` of each variant, in allocation
/// order, for integer `weights` and a coverage in basis points.
pub fn spec_ranges(weights: &[u32], coverage_bp: u32) -> Vec<(u32, u32)> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let mut cumulative = 0u64;
    weights
        .iter()
        .map(|&w| {
            let start = 10_000 * cumulative / total;
            cumulative += u64::from(w);
            let end = 10_000 * cumulative / total;
            let len = (end - start) * u64::from(coverage_bp) / 10_000;
            (start as u32, (start + len) as u32)
        })
        .collect()
}

/// The variant SPEC 2 serves for `bucket`, if any.
pub fn spec_variant(ranges: &[(u32, u32)], bucket: u32) -> Option<usize> {
    ranges.iter().position(|&(start, end)| start <= bucket && bucket < end)
}

/// Whether `observed` out of `n` users is a plausible count for a share `p`.
///
/// Shares are binomial, so the tolerance is five standard errors, √(n·p·(1−p)), of
/// the exact sample size: a correct allocation fails it with probability below 10⁻⁶,
/// while a fixed percentage-point tolerance lets a small arm (1:199 is 0.5%) pass
/// even if it is never served. A share of 0 or 1 must be met exactly, and an arm
/// expected to reach 20 users must be served at all (a starved arm is the failure
/// that matters most and gets its own message).
pub fn check_share(what: &str, observed: usize, n: usize, p: f64) -> Result<(), String> {
    let expected = n as f64 * p;
    if expected >= 20.0 && observed == 0 {
        return Err(format!("{what}: never served, expected {expected:.1} of {n}"));
    }
    let tolerance = 5.0 * (expected * (1.0 - p)).sqrt();
    if (observed as f64 - expected).abs() > tolerance {
        return Err(format!(
            "{what}: {observed} of {n}, expected {expected:.1} ± {tolerance:.1} (five binomial standard errors)"
        ));
    }
    Ok(())
}
