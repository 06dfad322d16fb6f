//! `vexil keys create|list|revoke`: API keys, through a server or directly on a data directory
//! (see [`super::target::Target`]). A created key's secret is printed once.

use super::target::{block_on, environment_keys, print_json, Connection, Target, CLI_ACTOR};
use super::Outcome;
use serde_json::json;
use vexil_server::service::keys::check_new_key;
use vexil_store::{ChangeMeta, KeyGrant, KeyKind, Role};

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

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeyRole {
    Owner,
    Editor,
    Viewer,
}

impl KeyRole {
    pub fn role(self) -> Role {
        match self {
            KeyRole::Owner => Role::Owner,
            KeyRole::Editor => Role::Editor,
            KeyRole::Viewer => Role::Viewer,
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
        /// An admin key's role: owner (everything), editor (configuration), viewer (reads) [default: owner].
        #[arg(long, value_enum)]
        role: Option<KeyRole>,
        /// The environments an admin key may act in (comma-separated) [default: every one].
        #[arg(long, value_delimiter = ',', value_name = "ENV,...")]
        environments: Option<Vec<String>>,
        /// A server or client key acts in the environment of --env (the default one without it).
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
            Command::Create { kind, name, role, environments, target } => {
                let grant = KeyGrant {
                    environment: target.environment().map(str::to_owned),
                    role: role.map(KeyRole::role),
                    environments,
                };
                match target.connect_or_create().await? {
                    connection @ Connection::Server { .. } => {
                        let mut body = json!({"kind": kind.key_kind(), "name": name});
                        for (field, value) in [
                            ("environment", json!(grant.environment)),
                            ("role", json!(grant.role)),
                            ("environments", json!(grant.environments)),
                        ] {
                            if !value.is_null() {
                                body[field] = value;
                            }
                        }
                        connection.call(reqwest::Method::POST, "/v1/admin/keys", Some(&body)).await?
                    }
                    Connection::Store(store) => {
                        let backend = store.backend();
                        let known = environment_keys(&store).await?;
                        let name = check_new_key(kind.key_kind(), &name, &grant, |e| known.iter().any(|k| k == e))
                            .map_err(|e| e.to_string())?;
                        let (key, secret) = backend
                            .create_key(kind.key_kind(), name, &grant, &meta)
                            .await
                            .map_err(|e| e.to_string())?;
                        let mut shown = json!(key);
                        shown["key"] = json!(secret);
                        shown
                    }
                }
            }
            Command::List { target } => match target.connect().await? {
                connection @ Connection::Server { .. } => {
                    connection.call(reqwest::Method::GET, "/v1/admin/keys", None).await?
                }
                Connection::Store(store) => {
                    json!({"keys": store.backend().list_keys().await.map_err(|e| e.to_string())?})
                }
            },
            Command::Revoke { id, target } => match target.connect().await? {
                connection @ Connection::Server { .. } => {
                    connection.call(reqwest::Method::DELETE, &format!("/v1/admin/keys/{id}"), None).await?
                }
                Connection::Store(store) => {
                    json!(store.backend().revoke_key(&id, &meta).await.map_err(|e| e.to_string())?)
                }
            },
        };
        print_json(&value)
    })
}
