//! `vexil users create|list|disable`: the people who sign in to the web console, through a
//! server (with an owner's admin key, such as the one `vexil serve` printed on its first start)
//! or directly on a data directory (see [`super::target::Target`]). A password comes from an
//! interactive prompt or, with `--password-stdin`, from standard input: never from an argument,
//! which would land in the shell's history and in the process list.

use super::keys::KeyRole;
use super::target::{block_on, environment_keys, print_json, Connection, Target, CLI_ACTOR};
use super::Outcome;
use serde_json::json;
use std::io::IsTerminal;
use vexil_server::service::people::{self, NewUser, UserChange};
use vexil_store::ChangeMeta;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a person who signs in to the web console, and print them (never the password).
    Create {
        /// The name the person signs in with (lowercase letters, digits, '.', '_', '-', '@').
        #[arg(long)]
        username: String,
        /// owner (everything, people included), editor (configuration), viewer (reads).
        #[arg(long, value_enum)]
        role: KeyRole,
        /// The environments the person may act in (comma-separated) [default: every one].
        #[arg(long, value_delimiter = ',', value_name = "ENV,...")]
        environments: Option<Vec<String>>,
        /// Read the password from the first line of standard input instead of asking for it.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List people (never their passwords).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Disable a person: they cannot sign in, and their sessions end at once.
    Disable {
        /// The person's username.
        username: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The new password: the first line of standard input, or typed twice at a prompt that does
/// not echo it.
fn read_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            "no terminal to ask for the password on: give --password-stdin and the password on standard input".into()
        );
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
    let again = rpassword::prompt_password("Password again: ").map_err(|e| format!("cannot read the password: {e}"))?;
    if first != again {
        return Err("the two passwords differ; nothing was created".into());
    }
    Ok(first)
}

pub fn run(args: Args) -> Outcome {
    let meta = ChangeMeta::new(CLI_ACTOR);
    let password = match &args.command {
        Command::Create { password_stdin, .. } => Some(read_password(*password_stdin)?),
        _ => None,
    };
    block_on(async move {
        let value = match args.command {
            Command::Create { username, role, environments, target, .. } => {
                let new =
                    NewUser { username, password: password.expect("read for create"), role: role.role(), environments };
                match target.connect().await? {
                    connection @ Connection::Server { .. } => {
                        let body = json!({"username": new.username, "password": new.password, "role": new.role,
                                          "environments": new.environments});
                        connection.call(reqwest::Method::POST, "/v1/admin/users", Some(&body)).await?
                    }
                    Connection::Store(store) => {
                        let backend = store.backend();
                        let known = environment_keys(&store).await?;
                        let exists = |e: &str| known.iter().any(|k| k == e);
                        json!(people::create_user(backend.as_ref(), new, exists, &meta)
                            .await
                            .map_err(|e| e.to_string())?)
                    }
                }
            }
            Command::List { target } => match target.connect().await? {
                connection @ Connection::Server { .. } => {
                    connection.call(reqwest::Method::GET, "/v1/admin/users", None).await?
                }
                Connection::Store(store) => {
                    json!({"users": store.backend().list_users().await.map_err(|e| e.to_string())?})
                }
            },
            Command::Disable { username, target } => match target.connect().await? {
                connection @ Connection::Server { .. } => {
                    let path = format!("/v1/admin/users/{}", super::target::form_encode(&username));
                    connection.call(reqwest::Method::PUT, &path, Some(&json!({"disabled": true}))).await?
                }
                Connection::Store(store) => {
                    let change = UserChange { disabled: Some(true), ..UserChange::default() };
                    let user = people::update_user(store.backend().as_ref(), &username, change, |_| true, &meta)
                        .await
                        .map_err(|e| e.to_string())?;
                    json!(user)
                }
            },
        };
        print_json(&value)
    })
}
