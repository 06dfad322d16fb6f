//! The experiment results document of SPEC 6, minus what only the service knows (keys,
//! status, timestamps, per-day series): SRM, per-metric analyses corrected across the
//! experiment, and a recommendation with its reasons.
//!
//! The recommendation is deliberately conservative, in the order a careful analyst checks:
//! 1. a sample-ratio mismatch invalidates everything → `stop` (fix assignment first);
//! 2. too few users in some variant → `keep running`;
//! 3. a treatment that significantly harms a guardrail cannot ship;
//! 4. among the rest, a treatment whose primary metrics all move significantly the right
//!    way (none significantly the wrong way) → `ship` it (the largest primary lift wins);
//! 5. every treatment significantly worse on a primary metric, or blocked by a guardrail →
//!    `stop`;
//! 6. otherwise `keep running`, or `inconclusive` once the experiment has reached its end
//!    (the fixed-horizon methods cannot keep looking without inflating false positives).

use serde::Serialize;

use crate::analysis::{analyze, apply_correction, AnalysisConfig, Comparison, Direction, Method, MetricAnalysis};
use crate::correction::Correction;
use crate::srm::{srm, SrmCheck};
use crate::statistic::VariantStats;

/// What a metric is for in the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Secondary,
    Guardrail,
}

/// One variant as configured: its key and weight, and how many users it has.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantInput {
    pub key: String,
    pub weight: f64,
    pub users: u64,
}

/// One metric's sufficient statistics, per variant in the order of [`ExperimentInput::variants`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInput {
    pub key: String,
    /// The SPEC kind (`conversion`, `count`, `sum`, `mean`, `ratio`), echoed in the document.
    pub kind: String,
    pub role: Role,
    pub direction: Direction,
    pub stats: Vec<VariantStats>,
}

/// Everything needed to analyse one experiment. The first variant is the control.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentInput {
    pub variants: Vec<VariantInput>,
    pub metrics: Vec<MetricInput>,
    pub method: Method,
    pub alpha: f64,
    pub correction: Correction,
    pub min_sample_per_variant: u64,
    /// Whether the experiment has reached its planned end (`end_at` passed, or completed).
    pub ended: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantUsers {
    pub key: String,
    pub users: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricVariant {
    pub key: String,
    #[serde(flatten)]
    pub result: crate::analysis::VariantResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricReport {
    pub key: String,
    pub kind: String,
    pub role: Role,
    pub direction: Direction,
    pub variants: Vec<MetricVariant>,
}

/// The decision of SPEC 6: `ship` (with `variant`), `stop`, `keep running` or `inconclusive`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub decision: &'static str,
    pub variant: Option<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentReport {
    pub method: Method,
    pub srm: SrmCheck,
    pub variants: Vec<VariantUsers>,
    pub metrics: Vec<MetricReport>,
    pub recommendation: Recommendation,
}

/// Analyses every metric, corrects across the experiment, checks SRM and recommends.
pub fn report(input: &ExperimentInput) -> ExperimentReport {
    let mut analyses: Vec<MetricAnalysis> = input
        .metrics
        .iter()
        .map(|m| {
            let config = AnalysisConfig {
                method: input.method,
                alpha: input.alpha,
                direction: m.direction,
                ..Default::default()
            };
            analyze(&m.stats, &config)
        })
        .collect();
    apply_correction(&mut analyses, input.correction);

    let observed: Vec<u64> = input.variants.iter().map(|v| v.users).collect();
    let weights: Vec<f64> = input.variants.iter().map(|v| v.weight).collect();
    let srm = srm(&observed, &weights);
    let recommendation = recommend(input, &analyses, &srm);
    let metrics = input
        .metrics
        .iter()
        .zip(analyses)
        .map(|(m, analysis)| MetricReport {
            key: m.key.clone(),
            kind: m.kind.clone(),
            role: m.role,
            direction: m.direction,
            variants: input
                .variants
                .iter()
                .zip(analysis.variants)
                .map(|(v, result)| MetricVariant { key: v.key.clone(), result })
                .collect(),
        })
        .collect();
    ExperimentReport {
        method: input.method,
        srm,
        variants: input.variants.iter().map(|v| VariantUsers { key: v.key.clone(), users: v.users }).collect(),
        metrics,
        recommendation,
    }
}

/// How one comparison came out, in the metric's own direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Better,
    Worse,
    Unclear,
}

fn verdict(comparison: &Comparison, method: Method, alpha: f64, direction: Direction) -> Verdict {
    if !comparison.significant {
        return Verdict::Unclear;
    }
    let better = match (method, comparison.chance_to_win) {
        // Chance to win already accounts for the direction.
        (Method::Bayesian, Some(ctw)) => ctw > 1.0 - alpha,
        _ => {
            let Some(effect) = comparison.relative.map(|r| r.effect) else { return Verdict::Unclear };
            (effect > 0.0) == (direction == Direction::Increase)
        }
    };
    if better {
        Verdict::Better
    } else {
        Verdict::Worse
    }
}

fn recommend(input: &ExperimentInput, analyses: &[MetricAnalysis], srm: &SrmCheck) -> Recommendation {
    let decide = |decision, variant: Option<&str>, reasons: Vec<String>| Recommendation {
        decision,
        variant: variant.map(str::to_string),
        reasons,
    };
    if !srm.ok {
        return decide(
            "stop",
            None,
            vec![format!(
                "sample ratio mismatch (p = {:.2e}): users are not split as configured, so no metric can be trusted",
                srm.p_value
            )],
        );
    }
    let short: Vec<&VariantInput> = input.variants.iter().filter(|v| v.users < input.min_sample_per_variant).collect();
    if !short.is_empty() {
        let names: Vec<String> = short.iter().map(|v| format!("{} ({})", v.key, v.users)).collect();
        return decide(
            "keep running",
            None,
            vec![format!(
                "not enough users yet: {} below the minimum of {} per variant",
                names.join(", "),
                input.min_sample_per_variant
            )],
        );
    }
    // Primary metrics decide; with none marked primary, the first metric does.
    let primaries: Vec<usize> = match input.metrics.iter().any(|m| m.role == Role::Primary) {
        true => (0..input.metrics.len()).filter(|&i| input.metrics[i].role == Role::Primary).collect(),
        false => (0..input.metrics.len().min(1)).collect(),
    };
    let verdict_of = |metric: usize, variant: usize| {
        analyses[metric].variants[variant]
            .comparison
            .map_or(Verdict::Unclear, |c| verdict(&c, input.method, input.alpha, input.metrics[metric].direction))
    };
    let mut reasons = Vec::new();
    let mut winners: Vec<(usize, f64)> = Vec::new();
    let mut losers = 0;
    let treatments = 1..input.variants.len();
    for v in treatments.clone() {
        let key = &input.variants[v].key;
        let harmed: Vec<&str> = (0..input.metrics.len())
            .filter(|&m| input.metrics[m].role == Role::Guardrail && verdict_of(m, v) == Verdict::Worse)
            .map(|m| input.metrics[m].key.as_str())
            .collect();
        if !harmed.is_empty() {
            reasons.push(format!("{key} significantly harms guardrail {}", harmed.join(", ")));
            losers += 1;
            continue;
        }
        let verdicts: Vec<Verdict> = primaries.iter().map(|&m| verdict_of(m, v)).collect();
        if verdicts.contains(&Verdict::Worse) {
            reasons.push(format!("{key} is significantly worse on a primary metric"));
            losers += 1;
        } else if !verdicts.is_empty() && verdicts.iter().all(|v| *v == Verdict::Better) {
            let lift =
                analyses[primaries[0]].variants[v].comparison.and_then(|c| c.relative).map_or(0.0, |r| r.effect.abs());
            reasons.push(format!("{key} significantly improves every primary metric"));
            winners.push((v, lift));
        }
    }
    if let Some(&(best, _)) = winners.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        return decide("ship", Some(&input.variants[best].key), reasons);
    }
    if losers == treatments.len() && losers > 0 {
        return decide("stop", None, reasons);
    }
    if input.ended && input.method != Method::Sequential {
        reasons.push("the experiment has ended without a significant result on its primary metrics".into());
        return decide("inconclusive", None, reasons);
    }
    reasons.push("no significant difference on the primary metrics yet".into());
    decide("keep running", None, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversion(n: u64, conversions: f64) -> VariantStats {
        VariantStats::Proportion { n, sum: conversions, covariate: None }
    }

    fn experiment(metrics: Vec<MetricInput>, users: [u64; 2]) -> ExperimentInput {
        ExperimentInput {
            variants: vec![
                VariantInput { key: "control".into(), weight: 50.0, users: users[0] },
                VariantInput { key: "treatment".into(), weight: 50.0, users: users[1] },
            ],
            metrics,
            method: Method::Frequentist,
            alpha: 0.05,
            correction: Correction::Holm,
            min_sample_per_variant: 100,
            ended: false,
        }
    }

    fn metric(key: &str, role: Role, direction: Direction, stats: Vec<VariantStats>) -> MetricInput {
        MetricInput { key: key.into(), kind: "conversion".into(), role, direction, stats }
    }

    #[test]
    fn a_clear_primary_win_ships() {
        let input = experiment(
            vec![metric(
                "purchase",
                Role::Primary,
                Direction::Increase,
                vec![conversion(5000, 500.0), conversion(5000, 650.0)],
            )],
            [5000, 5000],
        );
        let r = report(&input);
        assert_eq!((r.recommendation.decision, r.recommendation.variant.as_deref()), ("ship", Some("treatment")));
        assert!(r.srm.ok);
    }

    #[test]
    fn a_harmed_guardrail_blocks_shipping() {
        let input = experiment(
            vec![
                metric(
                    "purchase",
                    Role::Primary,
                    Direction::Increase,
                    vec![conversion(5000, 500.0), conversion(5000, 650.0)],
                ),
                metric(
                    "errors",
                    Role::Guardrail,
                    Direction::Decrease,
                    vec![conversion(5000, 100.0), conversion(5000, 200.0)],
                ),
            ],
            [5000, 5000],
        );
        let r = report(&input);
        assert_eq!(r.recommendation.decision, "stop");
        assert!(r.recommendation.reasons[0].contains("guardrail errors"), "{:?}", r.recommendation.reasons);
    }

    #[test]
    fn direction_decrease_turns_a_drop_into_a_win() {
        let input = experiment(
            vec![metric(
                "latency_breach",
                Role::Primary,
                Direction::Decrease,
                vec![conversion(5000, 650.0), conversion(5000, 500.0)],
            )],
            [5000, 5000],
        );
        assert_eq!(report(&input).recommendation.decision, "ship");
    }

    #[test]
    fn small_samples_keep_running_and_srm_stops() {
        let tiny = experiment(
            vec![metric("p", Role::Primary, Direction::Increase, vec![conversion(50, 5.0), conversion(50, 30.0)])],
            [50, 50],
        );
        assert_eq!(report(&tiny).recommendation.decision, "keep running");
        let skewed = experiment(
            vec![metric(
                "p",
                Role::Primary,
                Direction::Increase,
                vec![conversion(6000, 600.0), conversion(4000, 400.0)],
            )],
            [6000, 4000],
        );
        let r = report(&skewed);
        assert!(!r.srm.ok);
        assert_eq!(r.recommendation.decision, "stop");
    }

    #[test]
    fn no_difference_keeps_running_then_is_inconclusive_at_the_end() {
        let mut input = experiment(
            vec![metric(
                "p",
                Role::Primary,
                Direction::Increase,
                vec![conversion(5000, 500.0), conversion(5000, 505.0)],
            )],
            [5000, 5000],
        );
        assert_eq!(report(&input).recommendation.decision, "keep running");
        input.ended = true;
        assert_eq!(report(&input).recommendation.decision, "inconclusive");
    }

    #[test]
    fn the_document_has_the_spec_field_names() {
        let input = experiment(
            vec![metric(
                "purchase_rate",
                Role::Primary,
                Direction::Increase,
                vec![conversion(1000, 100.0), conversion(1000, 130.0)],
            )],
            [1000, 1000],
        );
        let doc = serde_json::to_value(report(&input)).unwrap();
        let treatment = &doc["metrics"][0]["variants"][1];
        assert_eq!(treatment["key"], "treatment");
        assert_eq!(treatment["users"], 1000);
        assert!((treatment["absolute"]["effect"].as_f64().unwrap() - 0.03).abs() < 1e-12);
        assert!((treatment["relative"]["p_value"].as_f64().unwrap() - 0.06560).abs() < 1e-4);
        assert!(treatment["p_value_adjusted"].is_number());
        assert_eq!(doc["srm"]["observed"], serde_json::json!([1000, 1000]));
        assert_eq!(doc["recommendation"]["decision"], "keep running");
        assert_eq!(doc["metrics"][0]["role"], "primary");
    }
}
