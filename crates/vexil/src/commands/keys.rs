//! `vexil keys create|list|revoke`: API keys, through a server or directly on a data directory
//! (see [`super::target::Target`]). A created key's secret is printed once.

use super::target::{block_on, print_json, Connection, Target, CLI_ACTOR};
use super::Outcome;
use serde_json::json;
use vexil_store::{ChangeMeta, KeyKind};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Admin,
    Server,
    Client,
}

impl Kind {
    fn key_kind(self) -> KeyKind {
        match self {
            Kind::Admin => KeyKind::Admin,
            Kind::Server => KeyKind::Server,
            Kind::Client => KeyKind::Client,
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a key and print it with its secret (shown only this once).
    Create {
        /// admin: the admin API; server: evaluation and events from a backend; client: the
        /// browser-safe routes.
        #[arg(long, value_enum)]
        kind: Kind,
        /// A name to recognise the key by (the service or team using it).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key's id (from `vexil keys list`), not its secret.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

pub fn run(args: Args) -> Outcome {
    let meta = ChangeMeta::new(CLI_ACTOR);
    block_on(async move {
        let value = match args.command {
            Command::Create { kind, name, target } => match target.connect_or_create().await? {
                connection @ Connection::Server { .. } => {
                    let body = json!({"kind": kind.key_kind(), "name": name});
                    connection.call(reqwest::Method::POST, "/v1/admin/keys", Some(&body)).await?
                }
                Connection::Store(store) => {
                    let (key, secret) =
                        store.create_key(kind.key_kind(), &name, &meta).await.map_err(|e| e.to_string())?;
                    json!({"id": key.id, "kind": key.kind, "name": key.name, "created_at": key.created_at, "key": secret})
                }
            },
            Command::List { target } => match target.connect().await? {
                connection @ Connection::Server { .. } => {
                    connection.call(reqwest::Method::GET, "/v1/admin/keys", None).await?
                }
                Connection::Store(store) => json!({"keys": store.list_keys().await.map_err(|e| e.to_string())?}),
            },
            Command::Revoke { id, target } => match target.connect().await? {
                connection @ Connection::Server { .. } => {
                    connection.call(reqwest::Method::DELETE, &format!("/v1/admin/keys/{id}"), None).await?
                }
                Connection::Store(store) => json!(store.revoke_key(&id, &meta).await.map_err(|e| e.to_string())?),
            },
        };
        print_json(&value)
    })
}
