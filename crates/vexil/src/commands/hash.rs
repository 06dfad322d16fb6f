//! `vexil hash SALT UNIT`: the exact hash and bucket of SPEC 2, for checking an SDK against us.

use super::Outcome;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The salt (a flag's or experiment's `salt`, by default its key).
    salt: String,
    /// The bucketing unit (by default the user id).
    unit: String,
}

pub fn run(args: Args) -> Outcome {
    let (h, bucket) = vexil_core::hash::hash_unit(&args.salt, &args.unit);
    super::print_line(
        &serde_json::json!({"input": format!("{}:{}", args.salt, args.unit), "h": h, "bucket": bucket}).to_string(),
    );
    Ok(ExitCode::SUCCESS)
}
