//! `vexil eval`: evaluates flags from a file, exactly as the server would, and prints JSON.

use super::{load_flags, Outcome};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use vexil_core::{Context, EvaluationRecord};

#[derive(clap::Args)]
pub struct Args {
    /// The flags file (JSON, or YAML with a .yaml/.yml extension).
    #[arg(long)]
    flags: PathBuf,
    /// The flag to evaluate; every flag when omitted.
    #[arg(long)]
    flag: Option<String>,
    /// The user id.
    #[arg(long)]
    user: String,
    /// Context attributes as a JSON object, e.g. '{"country": "US"}'.
    #[arg(long)]
    context: Option<String>,
}

pub fn run(args: Args) -> Outcome {
    let attributes: Map<String, Value> = match &args.context {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("--context must be a JSON object".into()),
            Err(e) => return Err(format!("--context is not valid JSON: {e}")),
        },
    };
    let set = match load_flags(&args.flags)? {
        Ok(set) => set,
        Err(errors) => return Err(format!("{} is invalid:\n{errors}", args.flags.display())),
    };
    let ctx = Context::new(&args.user, &attributes);
    let now = chrono::Utc::now().timestamp_millis();
    let output = match &args.flag {
        Some(key) => set.evaluate(key, &ctx, now).map(|r| serde_json::to_string_pretty(&r.record(&args.user))),
        None => set.evaluate_all(&ctx, now).map(|all| {
            let flags: BTreeMap<&str, EvaluationRecord> =
                all.iter().map(|r| (r.flag.key.as_str(), r.record(&args.user))).collect();
            serde_json::to_string_pretty(&json!({ "flags": flags }))
        }),
    };
    match output {
        Ok(text) => {
            super::print_line(&text.map_err(|e| e.to_string())?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            super::print_line(&json!({"error": {"code": e.code(), "message": e.to_string()}}).to_string());
            Ok(ExitCode::FAILURE)
        }
    }
}
