//! Public anchor: proportion metric, control 100/1000 vs treatment 130/1000, analysed
//! with the frequentist method (figures as published for gbstats' two-sided t-test).

use vexil_stats::{analyze, AnalysisConfig, VariantStats};

fn proportion(n: u64, conversions: f64) -> VariantStats {
    VariantStats::Proportion { n, sum: conversions, covariate: None }
}

fn close(actual: f64, expected: f64, digits: i32) {
    let tol = 0.5 * 10f64.powi(-digits);
    assert!((actual - expected).abs() <= tol, "{actual} is not {expected} to {digits} decimals");
}

#[test]
fn proportion_anchor_frequentist() {
    let result = analyze(&[proportion(1000, 100.0), proportion(1000, 130.0)], &AnalysisConfig::default());
    let comparison = result.variants[1].comparison.expect("treatment is compared");

    let absolute = comparison.absolute.expect("absolute effect");
    close(absolute.effect, 0.03, 12);
    close(absolute.ci[0], 0.002051, 6);
    close(absolute.ci[1], 0.057949, 6);
    close(absolute.p_value.unwrap(), 0.03541, 5);

    let relative = comparison.relative.expect("relative effect");
    close(relative.effect, 0.30, 12);
    close(relative.ci[0], -0.01938, 5);
    close(relative.ci[1], 0.61938, 5);
    close(relative.p_value.unwrap(), 0.06560, 5);
}

#[test]
fn control_has_mean_and_proportion_variance() {
    let result = analyze(&[proportion(1000, 100.0), proportion(1000, 130.0)], &AnalysisConfig::default());
    let control = &result.variants[0];
    assert_eq!(control.users, 1000);
    close(control.mean.unwrap(), 0.1, 12);
    close(control.variance.unwrap(), 0.09, 12);
    assert!(control.comparison.is_none());
}
