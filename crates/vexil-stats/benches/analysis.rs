//! Analysing a whole experiment: 10 metrics × 4 variants (control + 3 treatments),
//! mixing metric kinds and CUPED, followed by Holm correction across the 30 tests.
//! Target: ≤ 1 ms per experiment.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use vexil_stats::{analyze, apply_correction, AnalysisConfig, Correction, Covariate, Method, Moments, VariantStats};

fn metric(index: usize, variant: usize) -> VariantStats {
    let n = 10_000 + 37 * variant as u64;
    let nf = n as f64;
    let lift = 1.0 + 0.01 * variant as f64 + 0.002 * index as f64;
    match index % 4 {
        0 => VariantStats::Proportion { n, sum: (0.1 * lift * nf).round(), covariate: None },
        1 => VariantStats::Mean {
            n,
            sum: 25.0 * lift * nf,
            sum_squares: (25.0f64.powi(2) + 400.0) * nf,
            covariate: None,
        },
        2 => VariantStats::Mean {
            n,
            sum: 25.0 * lift * nf,
            sum_squares: (25.0f64.powi(2) + 400.0) * nf,
            covariate: Some(Covariate {
                sum: 24.0 * nf,
                sum_squares: (24.0f64.powi(2) + 380.0) * nf,
                sum_products: (25.0 * lift * 24.0 + 250.0) * nf,
            }),
        },
        _ => VariantStats::Ratio {
            n,
            numerator: Moments { sum: 30.0 * lift * nf, sum_squares: (900.0 + 500.0) * nf },
            denominator: Moments { sum: 1.5 * nf, sum_squares: (2.25 + 1.0) * nf },
            sum_products: (45.0 * lift + 12.0) * nf,
        },
    }
}

fn experiment(c: &mut Criterion) {
    let metrics: Vec<Vec<VariantStats>> = (0..10).map(|m| (0..4).map(|v| metric(m, v)).collect()).collect();
    for method in [Method::Frequentist, Method::Sequential, Method::Bayesian] {
        let config = AnalysisConfig { method, ..AnalysisConfig::default() };
        c.bench_function(&format!("experiment_10x4_{method:?}").to_lowercase(), |b| {
            b.iter(|| {
                let mut results: Vec<_> =
                    metrics.iter().map(|variants| analyze(black_box(variants), &config)).collect();
                apply_correction(&mut results, Correction::Holm);
                results
            })
        });
    }
}

criterion_group!(benches, experiment);
criterion_main!(benches);
