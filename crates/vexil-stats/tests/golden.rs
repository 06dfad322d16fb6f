//! Golden vectors from the reference implementations (gbstats, scipy, statsmodels),
//! produced by `golden/generate.py`. Every figure must agree to 1e-6 relative.

use serde_json::Value;
use vexil_stats::{
    analyze, minimum_detectable_effect, sample_size, srm, AnalysisConfig, Baseline, Comparison, Correction, Effect,
    VariantStats,
};

const REL_TOL: f64 = 1e-6;
/// Floor for quantities that are zero in exact arithmetic (e.g. the risk of an arm
/// that is almost surely better), where relative error is meaningless.
const ABS_TOL: f64 = 1e-12;

fn vectors() -> Vec<Value> {
    let text = include_str!("../golden/vectors.json");
    let doc: Value = serde_json::from_str(text).expect("vectors.json parses");
    doc["cases"].as_array().expect("cases").clone()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn check(name: &str, what: &str, actual: f64, expected: f64, failures: &mut Vec<String>) {
    let ok = (actual - expected).abs() <= REL_TOL * expected.abs().max(ABS_TOL / REL_TOL);
    if !ok {
        failures.push(format!("{name}: {what} = {actual}, expected {expected}"));
    }
}

fn de<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).expect("input deserialises")
}

fn check_effect(
    name: &str,
    scale: &str,
    actual: Option<Effect>,
    comparison: &Comparison,
    expected: &Value,
    failures: &mut Vec<String>,
) {
    match (actual, expected.is_null()) {
        (None, true) => {}
        (Some(_), true) => failures.push(format!("{name}: {scale} should be undefined")),
        (None, false) => failures.push(format!("{name}: {scale} missing")),
        (Some(e), false) => {
            check(name, &format!("{scale}.effect"), e.effect, num(&expected["effect"]), failures);
            check(name, &format!("{scale}.ci[0]"), e.ci[0], num(&expected["ci"][0]), failures);
            check(name, &format!("{scale}.ci[1]"), e.ci[1], num(&expected["ci"][1]), failures);
            if let Some(p) = expected.get("p_value") {
                check(name, &format!("{scale}.p"), e.p_value.unwrap_or(f64::NAN), num(p), failures);
            }
            // Chance to win and risk are reported from the relative-scale posterior.
            if let (Some(ctw), "relative") = (expected.get("chance_to_win"), scale) {
                let risk = comparison.risk.expect("risk");
                check(name, "chance_to_win", comparison.chance_to_win.unwrap(), num(ctw), failures);
                check(name, "risk.control", risk.control, num(&expected["risk"]["control"]), failures);
                check(name, "risk.treatment", risk.treatment, num(&expected["risk"]["treatment"]), failures);
            }
        }
    }
}

fn two_arm(case: &Value, failures: &mut Vec<String>) {
    let name = case["name"].as_str().unwrap();
    let control: VariantStats = de(&case["control"]);
    let treatment: VariantStats = de(&case["treatment"]);
    let config = AnalysisConfig {
        method: de(&case["method"]),
        alpha: num(&case["alpha"]),
        direction: de(&case["direction"]),
        sequential_tuning: num(&case["sequential_tuning"]),
        prior: de(&case["prior"]),
    };
    let result = analyze(&[control, treatment], &config);
    let expected = &case["expected"];
    for (variant, key) in result.variants.iter().zip(["control", "treatment"]) {
        check(name, &format!("{key}.mean"), variant.mean.unwrap(), num(&expected[key]["mean"]), failures);
        // gbstats reports 0 where the sample variance is undefined (n < 2).
        let variance = variant.variance.unwrap_or(0.0);
        check(name, &format!("{key}.variance"), variance, num(&expected[key]["variance"]), failures);
    }
    let comparison = result.variants[1].comparison.expect("treatment compared");
    check_effect(name, "absolute", comparison.absolute, &comparison, &expected["absolute"], failures);
    check_effect(name, "relative", comparison.relative, &comparison, &expected["relative"], failures);
}

fn baseline(case: &Value) -> Baseline {
    de(&case["baseline"])
}

#[test]
fn golden_vectors_match_reference_implementations() {
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for case in vectors() {
        let name = case["name"].as_str().unwrap();
        let kind = case["kind"].as_str().unwrap();
        *counts.entry(kind.to_string()).or_default() += 1;
        match kind {
            "two_arm" => two_arm(&case, &mut failures),
            "srm" => {
                let observed: Vec<u64> = de(&case["observed"]);
                let weights: Vec<f64> = de(&case["weights"]);
                let p = srm(&observed, &weights).p_value;
                check(name, "p", p, num(&case["expected"]), &mut failures);
            }
            "correction" => {
                let method: Correction = de(&case["method"]);
                let p: Vec<f64> = de(&case["p_values"]);
                let expected: Vec<f64> = de(&case["expected"]);
                for (i, (a, e)) in method.adjust(&p).iter().zip(expected).enumerate() {
                    check(name, &format!("p[{i}]"), *a, e, &mut failures);
                }
            }
            "sample_size" => {
                let n = sample_size(&baseline(&case), num(&case["mde"]), num(&case["alpha"]), num(&case["power"]))
                    .map_or(f64::NAN, |s| s.exact);
                check(name, "n", n, num(&case["expected"]), &mut failures);
            }
            "mde" => {
                let mde = minimum_detectable_effect(
                    &baseline(&case),
                    num(&case["n"]),
                    num(&case["alpha"]),
                    num(&case["power"]),
                )
                .unwrap_or(f64::NAN);
                check(name, "mde", mde, num(&case["expected"]), &mut failures);
            }
            other => panic!("unknown case kind {other}"),
        }
    }
    for kind in ["two_arm", "srm", "correction", "sample_size", "mde"] {
        assert!(counts.get(kind).copied().unwrap_or(0) > 0, "no {kind} vectors");
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
