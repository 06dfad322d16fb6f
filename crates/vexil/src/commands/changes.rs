//! `vexil changes list|show|approve|reject`: the change requests of a protected environment
//! (SPEC 9) on a running server, in the environment named with `--env`.

use super::env::{reason_header, Server};
use super::target::{block_on, print_json};
use super::{print_line, Outcome};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the environment's change requests, newest first: id, status, author and what they change.
    List {
        /// Only the requests in this state.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Print the server's answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Print one change request, with the diff of each change, as JSON.
    Show {
        /// The change request's id.
        id: String,
        #[command(flatten)]
        server: Server,
    },
    /// Approve a change request and apply it (not by its author; refused if its target changed since).
    Approve {
        /// The change request's id.
        id: String,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Reject a change request: nothing of it applies.
    Reject {
        /// The change request's id.
        id: String,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: Server,
    },
}

/// The state of a change request.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Status {
    Pending,
    Approved,
    Rejected,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

pub fn run(args: Args) -> Outcome {
    block_on(async move {
        match args.command {
            Command::List { status, json, server } => {
                let connection = server.connect().await?;
                let filter = match status {
                    Some(Status::Pending) => "?status=pending",
                    Some(Status::Approved) => "?status=approved",
                    Some(Status::Rejected) => "?status=rejected",
                    None => "",
                };
                let path = format!("/v1/admin/change-requests{filter}");
                let answer = connection.call(reqwest::Method::GET, &path, None).await?;
                if json {
                    return print_json(&answer);
                }
                for request in answer["change_requests"].as_array().into_iter().flatten() {
                    let text = |field: &str| request[field].as_str().unwrap_or_default().to_owned();
                    let changes: Vec<String> =
                        request["changes"].as_array().into_iter().flatten().map(described).collect();
                    print_line(&format!(
                        "{}\t{}\tby {}\t{}",
                        text("id"),
                        text("status"),
                        text("author"),
                        changes.join(", ")
                    ));
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Show { id, server } => {
                let connection = server.connect().await?;
                print_json(
                    &connection.call(reqwest::Method::GET, &format!("/v1/admin/change-requests/{id}"), None).await?,
                )
            }
            Command::Approve { id, reason, server } => decide(&id, "approve", reason, &server).await,
            Command::Reject { id, reason, server } => decide(&id, "reject", reason, &server).await,
        }
    })
}

/// One change of a request as `update rollout plan new_checkout (ready → running)`: what it
/// does to which document, and the state or status it moves the document between, if any.
fn described(change: &serde_json::Value) -> String {
    let part = |f: &str| change[f].as_str().unwrap_or_default().to_owned();
    let entity = part("entity").replace('_', " ");
    let mut text = format!("{} {entity} {}", part("action"), part("key"));
    for field in ["state", "status"] {
        let (before, after) = (&change["before"][field], &change["after"][field]);
        if let (Some(before), Some(after)) = (before.as_str(), after.as_str()) {
            if before != after {
                text.push_str(&format!(" ({before} → {after})"));
            }
        }
    }
    text
}

/// Says that a write was held for approval in a protected environment, and how to approve it.
pub fn print_held(request: &serde_json::Value) {
    let (id, env) = (request["id"].as_str().unwrap_or_default(), request["environment"].as_str().unwrap_or_default());
    print_line(&format!(
        "{env} is protected: held for approval as change request {id} (vexil changes approve {id} --env {env})"
    ));
}

async fn decide(id: &str, verb: &str, reason: Option<String>, server: &Server) -> Outcome {
    let connection = server.connect().await?;
    let path = format!("/v1/admin/change-requests/{id}/{verb}");
    let answer = connection.call_with(reqwest::Method::POST, &path, None, &reason_header(reason)).await?;
    print_line(&format!(
        "change request {id} is {} in {}",
        answer["status"].as_str().unwrap_or_default(),
        answer["environment"].as_str().unwrap_or_default()
    ));
    Ok(ExitCode::SUCCESS)
}
