//! `vexil stop` and `vexil resume`: the emergency stop of SPEC 7 — every flag, the flags with a
//! tag, or listed flags evaluate as `DISABLED` until `resume` lifts every stop and restores the
//! previous state exactly. Through a server or on a data directory (see
//! [`super::target::Target`]); on a data directory the change is audited with actor `cli` and a
//! running server picks it up within a second, but sends no webhook notification.

use super::target::{block_on, print_json, Connection, Target, CLI_ACTOR};
use super::Outcome;
use serde_json::{json, Value};
use std::process::ExitCode;
use vexil_server::service::catalog::Catalog;
use vexil_server::service::safety::stops::{self, Scope, Stop, StopError};
use vexil_store::{ChangeMeta, Store, StoredDocument};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["all", "tag", "flags"])))]
pub struct Args {
    /// Stop every flag.
    #[arg(long)]
    all: bool,
    /// Stop the flags with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Stop these flags (comma-separated keys).
    #[arg(long, value_delimiter = ',')]
    flags: Vec<String>,
    /// Reason recorded in the audit log and the notification.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// Reason recorded in the audit log.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `vexil stop`: prints the stored stop with `stopped_flags`, the flags it covers. A stop that
/// covers no flag (a mistyped tag, an empty installation) stays stored, as it covers flags
/// created later, but during an incident an operator must not read it as "everything
/// stopped": it warns and exits with 1.
pub fn run(args: Args) -> Outcome {
    let scope = match (args.all, &args.tag) {
        (true, _) => Scope::All,
        (false, Some(_)) => Scope::Tag,
        (false, None) => Scope::Flags,
    };
    let stop = Stop { scope, tag: args.tag, flags: args.flags, reason: args.reason, stopped_at: None };
    block_on(async move {
        let value = match args.target.connect().await? {
            connection @ Connection::Server { .. } => {
                let body = serde_json::to_value(&stop).map_err(|e| e.to_string())?;
                connection.call(reqwest::Method::POST, "/v1/admin/emergency-stop", Some(&body)).await?
            }
            Connection::Store(store) => {
                let stored =
                    stops::stop(store.as_ref(), stop, &ChangeMeta::new(CLI_ACTOR)).await.map_err(|e| match e {
                        StopError::Invalid { field, message } => format!("{field}: {message}"),
                        StopError::Store(e) => e.to_string(),
                    })?;
                let mut body = stored.to_json();
                body["stopped_flags"] = json!(stopped_flags(store.as_ref()).await?);
                body
            }
        };
        print_json(&value)?;
        if value["stopped_flags"].as_array().is_some_and(Vec::is_empty) {
            eprintln!(
                "warning: the stop matches no flag, so nothing was stopped; it stays active for \
                 flags created later (check the tag or keys, or the --data-dir/--server)"
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `vexil resume`: lifts every active stop; prints them as `resumed`.
pub fn resume(args: ResumeArgs) -> Outcome {
    block_on(async move {
        let value = match args.target.connect().await? {
            connection @ Connection::Server { .. } => {
                let body = json!({"reason": args.reason});
                connection.call(reqwest::Method::POST, "/v1/admin/emergency-stop/resume", Some(&body)).await?
            }
            Connection::Store(store) => {
                let meta = ChangeMeta { actor: CLI_ACTOR.into(), reason: args.reason };
                let resumed = stops::resume(store.as_ref(), &meta).await.map_err(|e| e.to_string())?;
                let resumed: Vec<Value> = resumed.iter().map(StoredDocument::to_json).collect();
                json!({"resumed": resumed, "stopped_flags": stopped_flags(store.as_ref()).await?})
            }
        };
        print_json(&value)
    })
}

/// The stored flags that the active stops cover.
async fn stopped_flags(store: &dyn Store) -> Result<Vec<String>, String> {
    let active = stops::active(store).await.map_err(|e| e.to_string())?;
    let catalog = Catalog::load(store).await.map_err(|e| e.to_string())?;
    let flags = catalog.compile().map_err(|e| format!("the stored configuration does not compile:\n{e}"))?;
    Ok(stops::covered(&active, &flags))
}
