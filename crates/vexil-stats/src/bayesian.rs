//! Bayesian inference on the effect with a Gaussian prior, as gbstats'
//! `EffectBayesianABTest`: the estimated difference is treated as a normal likelihood
//! N(θ̂, σ̂²) for the true effect θ, combined with a N(μ₀, σ₀²) prior (or a flat one),
//! giving a normal posterior from which chance to win, the credible interval and the
//! expected loss of each decision follow in closed form.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

use crate::difference::{Difference, Scale};
use crate::statistic::finite;

/// Gaussian prior on the effect. The default is flat (improper), which makes the
/// posterior the likelihood itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    pub mean: f64,
    pub variance: f64,
    /// `false` means flat: `mean` and `variance` are then ignored.
    pub proper: bool,
    /// Scale the prior is stated on; it is rescaled by the control mean when the
    /// effect being analysed is on the other scale.
    pub scale: Scale,
}

impl Default for Prior {
    fn default() -> Self {
        Self { mean: 0.0, variance: 1.0, proper: false, scale: Scale::Relative }
    }
}

impl Prior {
    /// The prior restated on `scale`: an absolute prior N(μ₀, σ₀²) becomes
    /// N(μ₀/|μ_a|, σ₀²/μ_a²) on the relative scale and vice versa.
    fn on_scale(&self, scale: Scale, control_mean: f64) -> Self {
        let (mean, variance) = match (self.scale, scale) {
            (Scale::Absolute, Scale::Relative) => {
                (self.mean / control_mean.abs(), self.variance / (control_mean * control_mean))
            }
            (Scale::Relative, Scale::Absolute) => {
                (self.mean * control_mean.abs(), self.variance * control_mean * control_mean)
            }
            _ => (self.mean, self.variance),
        };
        Self { mean, variance, scale, ..*self }
    }
}

/// Expected loss of each decision, in units of the effect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Risk {
    /// Expected loss of keeping the control: E[max(θ, 0)] (for a "decrease" metric,
    /// E[max(−θ, 0)]).
    pub control: f64,
    /// Expected loss of shipping the treatment: E[max(−θ, 0)] (mirrored likewise).
    pub treatment: f64,
}

/// The normal posterior of the effect and what is derived from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Posterior {
    pub mean: f64,
    pub std_dev: f64,
    pub credible_interval: [f64; 2],
    /// P(treatment better than control), with "better" following `inverse`.
    pub chance_to_win: f64,
    pub risk: Risk,
}

/// Posterior precision 1/σ̂² + 1/σ₀², mean (θ̂/σ̂² + μ₀/σ₀²) / precision; with a flat
/// prior the posterior is N(θ̂, σ̂²). `inverse` marks metrics where lower is better.
pub fn posterior(
    d: &Difference,
    scale: Scale,
    control_mean: f64,
    prior: &Prior,
    alpha: f64,
    inverse: bool,
) -> Option<Posterior> {
    let prior = prior.on_scale(scale, control_mean);
    let (mean, precision) = if prior.proper {
        let precision = 1.0 / d.variance + 1.0 / prior.variance;
        ((d.estimate / d.variance + prior.mean / prior.variance) / precision, precision)
    } else {
        (d.estimate, 1.0 / d.variance)
    };
    let std_dev = finite((1.0 / precision).sqrt())?;
    let dist = Normal::new(finite(mean)?, std_dev).ok()?;
    let credible_interval = [dist.inverse_cdf(alpha / 2.0), dist.inverse_cdf(1.0 - alpha / 2.0)];
    let p_positive = dist.sf(0.0);
    let (upside, downside) = expected_parts(mean, std_dev);
    let (chance_to_win, risk) = if inverse {
        (1.0 - p_positive, Risk { control: downside, treatment: upside })
    } else {
        (p_positive, Risk { control: upside, treatment: downside })
    };
    Some(Posterior { mean, std_dev, credible_interval, chance_to_win, risk })
}

/// (E[max(θ, 0)], E[max(−θ, 0)]) for θ ~ N(μ, σ²), i.e. μΦ(μ/σ) + σφ(μ/σ) and
/// −μΦ(−μ/σ) + σφ(μ/σ); these equal gbstats' P(θ>0)·E[θ | θ>0] and
/// −P(θ<0)·E[θ | θ<0] computed through truncated normals.
fn expected_parts(mu: f64, sigma: f64) -> (f64, f64) {
    let std = Normal::new(0.0, 1.0).expect("standard normal");
    let z = mu / sigma;
    let density = sigma * std.pdf(z);
    (mu * std.cdf(z) + density, -mu * std.cdf(-z) + density)
}
