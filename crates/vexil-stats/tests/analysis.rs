//! Behaviour of the experiment-level API: correction across metrics, significance,
//! serialisation to SPEC 6 field names, degenerate inputs, SRM flagging and the
//! consistency of the two power calculations.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vexil_stats::{
    analyze, apply_correction, minimum_detectable_effect, sample_size, srm, AnalysisConfig, Baseline, Correction,
    Covariate, Direction, Method, MetricAnalysis, Moments, VariantStats,
};

fn proportion(n: u64, conversions: f64) -> VariantStats {
    VariantStats::Proportion { n, sum: conversions, covariate: None }
}

fn three_arms() -> Vec<VariantStats> {
    vec![proportion(1000, 100.0), proportion(1000, 130.0), proportion(1000, 160.0)]
}

/// Agreement required with the reference figures (SPEC 6: 1e-6 relative).
fn close(actual: f64, expected: f64, what: &str) {
    assert!((actual - expected).abs() <= 1e-6 * expected.abs(), "{what}: {actual}, expected {expected}");
}

// Reference figures for the family {100 vs 130, 100 vs 160, 100 vs 104 conversions out
// of 1000}, relative effects, computed outside this crate with gbstats 0.8.0 and
// statsmodels 0.15.0 (the pins of golden/generate.py):
//
//   from gbstats.frequentist.tests import TwoSidedTTest, FrequentistConfig
//   from gbstats.models.statistics import ProportionStatistic as P
//   from statsmodels.stats.multitest import multipletests
//   def rel(c, t, alpha):
//       return TwoSidedTTest(P(n=1000, sum=c), P(n=1000, sum=t),
//           FrequentistConfig(alpha=alpha, difference_type="relative")).compute_result()
//   pairs = [(100, 130), (100, 160), (100, 104)]
//   raw = [rel(c, t, 0.05).p_value for c, t in pairs]
//   multipletests(raw, method="holm")[1]; multipletests(raw, method="fdr_bh")[1]
//   [rel(c, t, 0.05 / 3).ci for c, t in pairs]
const RAW_P: [f64; 3] = [0.06559733260262468, 0.0017069956275510556, 0.7720084102619587];
const HOLM_P: [f64; 3] = [0.13119466520524936, 0.005120986882653167, 0.7720084102619587];
const BH_P: [f64; 3] = [0.09839599890393702, 0.005120986882653167, 0.7720084102619587];
/// Relative intervals at the Bonferroni level alpha / 3 that Holm reports.
const HOLM_CI: [[f64; 2]; 3] = [
    [-0.09019158054518478, 0.6901915805451848],
    [0.14235560827492283, 1.057644391725077],
    [-0.2907241536438193, 0.37072415364381905],
];

#[test]
fn holm_adjusts_p_values_and_widens_intervals_to_bonferroni_level() {
    let config = AnalysisConfig::default();
    let mut metrics =
        vec![analyze(&three_arms(), &config), analyze(&[proportion(1000, 100.0), proportion(1000, 104.0)], &config)];
    let comparisons = |metrics: &[MetricAnalysis]| -> Vec<_> {
        metrics.iter().flat_map(|m| m.variants[1..].iter().map(|v| v.comparison.unwrap())).collect()
    };
    let before = comparisons(&metrics);
    for (i, c) in before.iter().enumerate() {
        close(c.relative.unwrap().p_value.unwrap(), RAW_P[i], &format!("raw p[{i}]"));
    }

    apply_correction(&mut metrics, Correction::Holm);
    let after = comparisons(&metrics);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        close(a.p_value_adjusted.unwrap(), HOLM_P[i], &format!("holm p[{i}]"));
        assert_eq!(a.significant, HOLM_P[i] < 0.05, "holm significance [{i}]");
        let (b, a) = (b.relative.unwrap(), a.relative.unwrap());
        assert_eq!(a.effect, b.effect);
        close(a.ci[0], HOLM_CI[i][0], &format!("holm ci[{i}].lower"));
        close(a.ci[1], HOLM_CI[i][1], &format!("holm ci[{i}].upper"));
    }
    // The strong 160/1000 arm stays significant; 130/1000 (raw p 0.066) and 104/1000 do not.
    assert!(after[1].significant);
    assert!(!after[0].significant && !after[2].significant);

    // BH leaves intervals alone; `none` restores the raw p-values.
    apply_correction(&mut metrics, Correction::BenjaminiHochberg);
    for (i, (b, a)) in before.iter().zip(comparisons(&metrics)).enumerate() {
        close(a.p_value_adjusted.unwrap(), BH_P[i], &format!("bh p[{i}]"));
        assert_eq!(a.relative.unwrap().ci, b.relative.unwrap().ci);
    }
    apply_correction(&mut metrics, Correction::None);
    for (b, a) in before.iter().zip(comparisons(&metrics)) {
        assert_eq!(a.p_value_adjusted, b.relative.unwrap().p_value);
    }
}

#[test]
fn bayesian_significance_uses_chance_to_win_and_respects_direction() {
    let data = [proportion(1000, 100.0), proportion(1000, 160.0)];
    for (direction, ctw_high) in [(Direction::Increase, true), (Direction::Decrease, false)] {
        let config = AnalysisConfig { method: Method::Bayesian, direction, ..AnalysisConfig::default() };
        let mut metrics = vec![analyze(&data, &config)];
        apply_correction(&mut metrics, Correction::Holm);
        let c = metrics[0].variants[1].comparison.unwrap();
        let ctw = c.chance_to_win.unwrap();
        assert_eq!(ctw > 0.5, ctw_high, "{direction:?}: {ctw}");
        assert!(c.significant);
        assert_eq!(c.p_value_adjusted, None);
        assert_eq!(c.relative.unwrap().p_value, None);
        let risk = c.risk.unwrap();
        // The losing decision carries the larger expected loss.
        assert_eq!(risk.control > risk.treatment, ctw_high);
    }
}

#[test]
fn serialises_with_spec_field_names() {
    let result = analyze(&[proportion(1000, 100.0), proportion(1000, 130.0)], &AnalysisConfig::default());
    let value = serde_json::to_value(&result.variants).unwrap();
    assert_eq!(value[0], json!({"users": 1000, "mean": 0.1, "variance": 0.09000000000000001}));
    let treatment = value[1].as_object().unwrap();
    let keys: Vec<&str> = treatment.keys().map(String::as_str).collect();
    for key in [
        "users",
        "mean",
        "variance",
        "absolute",
        "relative",
        "p_value_adjusted",
        "significant",
        "chance_to_win",
        "risk",
    ] {
        assert!(keys.contains(&key), "missing {key} in {keys:?}");
    }
    assert_eq!(treatment["chance_to_win"], json!(null));
    let relative = treatment["relative"].as_object().unwrap();
    let mut fields: Vec<&str> = relative.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["ci", "effect", "p_value"]);
}

fn arbitrary(rng: &mut StdRng) -> f64 {
    match rng.gen_range(0..8) {
        0 => 0.0,
        1 => f64::NAN,
        2 => f64::INFINITY,
        3 => -1.0,
        4 => 1e300,
        _ => rng.gen::<f64>() * 100.0,
    }
}

#[test]
fn degenerate_inputs_never_panic_and_yield_no_numbers_that_are_not_finite() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..3_000 {
        let variants: Vec<VariantStats> = (0..3)
            .map(|_| {
                let n = [0, 1, 2, 10][rng.gen_range(0..4)];
                match rng.gen_range(0..4) {
                    0 => proportion(n, arbitrary(&mut rng)),
                    1 => VariantStats::Mean {
                        n,
                        sum: arbitrary(&mut rng),
                        sum_squares: arbitrary(&mut rng),
                        covariate: None,
                    },
                    2 => VariantStats::Mean {
                        n,
                        sum: arbitrary(&mut rng),
                        sum_squares: arbitrary(&mut rng),
                        covariate: Some(Covariate {
                            sum: arbitrary(&mut rng),
                            sum_squares: arbitrary(&mut rng),
                            sum_products: arbitrary(&mut rng),
                        }),
                    },
                    _ => VariantStats::Ratio {
                        n,
                        numerator: Moments { sum: arbitrary(&mut rng), sum_squares: arbitrary(&mut rng) },
                        denominator: Moments { sum: arbitrary(&mut rng), sum_squares: arbitrary(&mut rng) },
                        sum_products: arbitrary(&mut rng),
                    },
                }
            })
            .collect();
        for method in [Method::Frequentist, Method::Sequential, Method::Bayesian] {
            let config = AnalysisConfig { method, ..AnalysisConfig::default() };
            let mut metrics = vec![analyze(&variants, &config)];
            apply_correction(&mut metrics, Correction::Holm);
            // serde_json writes NaN and infinities as `null` without complaint, so the
            // numbers are checked directly rather than through the JSON.
            let text = serde_json::to_string(&metrics[0].variants).unwrap();
            for v in &metrics[0].variants {
                let numbers = [v.mean, v.variance].into_iter().flatten().chain(v.comparison.iter().flat_map(|c| {
                    [c.absolute, c.relative]
                        .into_iter()
                        .flatten()
                        .flat_map(|e| [e.effect, e.ci[0], e.ci[1]].into_iter().chain(e.p_value))
                        .chain(c.chance_to_win)
                        .chain(c.risk.iter().flat_map(|r| [r.control, r.treatment]))
                        .chain(c.p_value_adjusted)
                }));
                for x in numbers {
                    assert!(x.is_finite(), "{x} in {text}");
                }
            }
        }
    }
}

#[test]
fn srm_flags_only_strong_mismatches() {
    let balanced = srm(&[1012, 988], &[50.0, 50.0]);
    assert!(balanced.ok && balanced.p_value > 0.4);
    assert_eq!(balanced.expected, vec![0.5, 0.5]);
    assert!(!srm(&[5300, 4700], &[50.0, 50.0]).ok);
    assert_eq!(srm(&[0, 0], &[50.0, 50.0]).p_value, 1.0);
    assert_eq!(srm(&[10, 10], &[0.0, 0.0]).p_value, 1.0);
}

#[test]
fn sample_size_and_mde_are_inverse() {
    for baseline in [Baseline::Proportion { rate: 0.1 }, Baseline::Mean { mean: 25.0, variance: 400.0 }] {
        let n = sample_size(&baseline, 0.05, 0.05, 0.8).unwrap();
        let mde = minimum_detectable_effect(&baseline, n.exact, 0.05, 0.8).unwrap();
        assert!((mde - 0.05).abs() < 1e-9, "{baseline:?}: {mde}");
        assert!(baseline.power(0.05, n.users_per_variant as f64, 0.05).unwrap() >= 0.8);
    }
    // With 3 users no lift of a 50% rate reaches 99% power; a 90% rate cannot grow 20%.
    assert_eq!(minimum_detectable_effect(&Baseline::Proportion { rate: 0.5 }, 3.0, 0.05, 0.99), None);
    assert_eq!(sample_size(&Baseline::Proportion { rate: 0.9 }, 0.2, 0.05, 0.8), None);
}
