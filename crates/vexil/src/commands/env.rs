//! `vexil env list|create|delete`: the environments of a running server (SPEC 9), through its
//! admin API (`--server`/`--key`).

use super::target::{block_on, print_json, Connection, Target};
use super::{print_line, Outcome};
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the environments: key, name, whether protected, and which one is the default.
    List {
        /// Print the server's answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Create an environment (empty, ready to serve).
    Create {
        /// The environment's key: ^[a-z][a-z0-9_-]{0,63}$.
        #[arg(value_name = "ENV")]
        new_environment: String,
        /// Its display name [default: the key].
        #[arg(long)]
        name: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Hold editors' configuration changes there for approval (change requests).
        #[arg(long)]
        protected: bool,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Delete an environment; refused while it holds anything, unless --force.
    Delete {
        /// The environment's key.
        #[arg(value_name = "ENV")]
        environment_key: String,
        /// Delete it with everything it holds (its documents; its keys are revoked).
        #[arg(long)]
        force: bool,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: Server,
    },
}

/// The server these commands act on.
#[derive(clap::Args)]
pub struct Server {
    #[command(flatten)]
    target: Target,
}

impl Server {
    /// The server's connection; a data directory is refused with the way to use a server.
    pub async fn connect(&self) -> Result<Connection, String> {
        if !self.target.is_server() {
            return Err(
                "this command acts through a running server: give --server and --key (or VEXIL_URL and VEXIL_KEY)"
                    .to_owned(),
            );
        }
        self.target.connect().await
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

pub fn run(args: Args) -> Outcome {
    block_on(async move {
        match args.command {
            Command::List { json, server } => {
                let connection = server.connect().await?;
                let answer = connection.call(reqwest::Method::GET, "/v1/admin/environments", None).await?;
                if json {
                    return print_json(&answer);
                }
                let default = answer["default"].as_str().unwrap_or_default();
                for env in answer["environments"].as_array().into_iter().flatten() {
                    let key = env["key"].as_str().unwrap_or_default();
                    let mut notes = Vec::new();
                    if key == default {
                        notes.push("default");
                    }
                    if env["protected"] == true {
                        notes.push("protected");
                    }
                    let name = env["name"].as_str().unwrap_or_default();
                    print_line(format!("{key}\t{name}\t{}", notes.join(", ")).trim_end());
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Create { new_environment: key, name, description, protected, reason, server } => {
                let connection = server.connect().await?;
                let mut body = json!({"key": key, "protected": protected});
                if let Some(name) = name {
                    body["name"] = json!(name);
                }
                if let Some(description) = description {
                    body["description"] = json!(description);
                }
                let headers = reason_header(reason);
                let created = connection
                    .call_with(reqwest::Method::POST, "/v1/admin/environments", Some(&body), &headers)
                    .await?;
                print_json(&created)
            }
            Command::Delete { environment_key: key, force, reason, server } => {
                let connection = server.connect().await?;
                let path = format!("/v1/admin/environments/{key}{}", if force { "?force=true" } else { "" });
                connection.call_with(reqwest::Method::DELETE, &path, None, &reason_header(reason)).await?;
                print_line(&format!("deleted environment {key}"));
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// `X-Vexil-Reason` for a reason given.
pub fn reason_header(reason: Option<String>) -> Vec<(&'static str, String)> {
    reason.map(|r| ("X-Vexil-Reason", r)).into_iter().collect()
}
