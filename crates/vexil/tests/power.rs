//! `vexil power` against values statsmodels gives for the same plans.

use std::process::Command;

fn power(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vexil")).arg("power").args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sample_size_and_mde_for_a_conversion_metric() {
    // statsmodels: NormalIndPower on proportion_effectsize-equivalent inputs → 14,751 per group.
    assert_eq!(power(&["--rate", "0.1", "--mde", "0.1"])["users_per_variant"], 14751);
    let mde = power(&["--rate", "0.1", "--users", "14751"])["mde"].as_f64().unwrap();
    assert!((mde - 0.1).abs() < 1e-4, "{mde}");
}

#[test]
fn bad_plans_are_refused_with_a_message() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_vexil")).args(["power", "--rate", "1.5", "--mde", "0.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rates are in (0, 1)"));
}
