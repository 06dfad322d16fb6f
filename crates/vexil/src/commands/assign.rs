//! `vexil assign --experiment KEY --user ID [--context JSON]`: a user's sticky variant in an
//! experiment, through a running server (`--server`/`--key`) or directly on a data directory
//! (see [`super::target::Target`]). Directly, the assignment is stored exactly as the server
//! would store it (same TTL settings, insert-if-absent), but no exposure event is emitted:
//! the event pipeline belongs to the server.

use super::target::{block_on, print_json, Connection, Target};
use super::Outcome;
use serde_json::{json, Value};
use vexil_core::Context;
use vexil_server::service::assignment::{Assigner, AssignerOptions};
use vexil_server::service::snapshot::Snapshot;
use vexil_server::{PartialConfig, ServerConfig};
use vexil_store::Flush;

#[derive(clap::Args)]
pub struct Args {
    /// The experiment's key.
    #[arg(long)]
    experiment: String,
    /// The user id.
    #[arg(long)]
    user: String,
    /// Context attributes as a JSON object, e.g. '{"country": "US"}'.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub fn run(args: Args) -> Outcome {
    let context: Value = match &args.context {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("--context is not JSON: {e}"))?,
        None => json!({}),
    };
    if !context.is_object() {
        return Err("--context must be a JSON object".into());
    }
    block_on(async move {
        let answer = match args.target.connect().await? {
            connection @ Connection::Server { .. } => {
                let body = json!({"experiment_key": args.experiment, "user_id": args.user, "context": context});
                connection.call(reqwest::Method::POST, "/v1/assign", Some(&body)).await?
            }
            Connection::Store(store) => {
                let settings = ServerConfig::load(None, std::env::vars(), PartialConfig::default())?;
                let metrics = vexil_server::metrics::Metrics::new();
                let snapshot = Snapshot::load(store.as_ref(), &metrics).await.map_err(|e| e.to_string())?;
                let experiment = snapshot
                    .experiments
                    .get(&args.experiment)
                    .ok_or_else(|| format!("experiment \"{}\" does not exist", args.experiment))?;
                let ctx = Context::new(&args.user, context.as_object().expect("checked above"));
                vexil_core::validate_user_id(&args.user).map_err(|e| e.to_string())?;
                // One assignment, then the process ends: nothing to gain from not waiting.
                let options =
                    AssignerOptions { ttl: settings.assignment_ttl, cache_entries: 1, flush: Flush::OnCommit };
                // The writer's panics are logged; this process has no /metrics to count them in.
                let assigner =
                    Assigner::new(store.clone(), options, &vexil_server::service::supervise::Supervisor::new());
                let decision = assigner.assign(experiment, &ctx).await.map_err(|e| e.to_string())?;
                serde_json::to_value(decision.response(vexil_store::now())).map_err(|e| e.to_string())?
            }
        };
        print_json(&answer)
    })
}
