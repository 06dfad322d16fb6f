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
                    let changes: Vec<String> = request["changes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            let part = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
                            format!("{} {} {}", part("action"), part("entity"), part("key"))
                        })
                        .collect();
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
