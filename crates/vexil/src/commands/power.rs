//! `vexil power`: plan an experiment — users per variant for a minimum detectable effect, or
//! the effect detectable with a given number of users (SPEC 6, planning).

use super::Outcome;
use serde_json::json;
use std::process::ExitCode;
use vexil_stats::{minimum_detectable_effect, sample_size, Baseline};

#[derive(clap::Args)]
pub struct Args {
    /// Baseline conversion rate of a proportion metric, e.g. 0.1 for 10 %.
    #[arg(long, conflicts_with_all = ["mean", "variance"], required_unless_present = "mean")]
    rate: Option<f64>,
    /// Baseline per-user mean of a mean metric (give --variance too).
    #[arg(long, requires = "variance")]
    mean: Option<f64>,
    /// Baseline per-user variance of a mean metric.
    #[arg(long)]
    variance: Option<f64>,
    /// Relative minimum detectable effect, e.g. 0.05 for +5 %: prints the users needed.
    #[arg(long, required_unless_present = "users", conflicts_with = "users")]
    mde: Option<f64>,
    /// Users per variant: prints the minimum detectable effect instead.
    #[arg(long)]
    users: Option<u64>,
    /// Significance level of the two-sided test.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Probability of detecting the effect when it is there.
    #[arg(long, default_value_t = 0.8)]
    power: f64,
    /// Print JSON instead of a sentence.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Outcome {
    let baseline = match (args.rate, args.mean, args.variance) {
        (Some(rate), _, _) => Baseline::Proportion { rate },
        (None, Some(mean), Some(variance)) => Baseline::Mean { mean, variance },
        _ => return Err("give --rate, or --mean with --variance".into()),
    };
    let (alpha, power) = (args.alpha, args.power);
    let answer = match (args.mde, args.users) {
        (Some(mde), _) => sample_size(&baseline, mde, alpha, power).map(|n| {
            let text = format!(
                "{} users per variant detect a {:+.2} % relative effect with {:.0} % power at alpha {alpha}",
                n.users_per_variant,
                mde * 100.0,
                power * 100.0
            );
            (text, json!({"users_per_variant": n.users_per_variant, "mde": mde, "alpha": alpha, "power": power}))
        }),
        (None, Some(users)) => minimum_detectable_effect(&baseline, users as f64, alpha, power).map(|mde| {
            let text = format!(
                "with {users} users per variant the minimum detectable relative effect is {:.2} % ({:.0} % power, alpha {alpha})",
                mde * 100.0,
                power * 100.0
            );
            (text, json!({"users_per_variant": users, "mde": mde, "alpha": alpha, "power": power}))
        }),
        (None, None) => return Err("give --mde or --users".into()),
    };
    let Some((text, value)) = answer else {
        return Err("no answer for these inputs: check that rates are in (0, 1), variances positive, \
                    alpha and power in (0, 1), and the effect non-zero"
            .into());
    };
    super::print_line(&if args.json { value.to_string() } else { text });
    Ok(ExitCode::SUCCESS)
}
