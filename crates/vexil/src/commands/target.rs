//! Where an admin command acts: a running server's admin API (`--server`/`--key`, or
//! `VEXIL_URL`/`VEXIL_KEY`) or a data directory directly (`--data-dir`, safe while a server runs
//! on it: the server sees the change within a second). Shared by every admin command.

use super::Outcome;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vexil_store::{Backend, EntityKind, Scoped, DEFAULT_ENVIRONMENT, GLOBAL};

/// Where an admin command acts: a server, or a data directory.
#[derive(clap::Args)]
pub struct Target {
    /// Base URL of a running server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "VEXIL_URL", conflicts_with = "data_dir")]
    server: Option<String>,
    /// Admin key for --server.
    #[arg(long, env = "VEXIL_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Data directory to act on directly when no server is given [default: ./vexil-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Environment to act in [default: the server's default environment; on a data directory, production].
    #[arg(long = "env", env = "VEXIL_ENV", value_name = "ENV")]
    environment: Option<String>,
}

/// An open target.
pub enum Connection {
    Server {
        client: reqwest::Client,
        base: String,
        key: String,
        environment: Option<String>,
    },
    /// One environment of the data directory's store (keys and environments are the backend's).
    Store(Arc<Scoped>),
}

/// The actor recorded in the audit log for changes made directly on a data directory.
pub const CLI_ACTOR: &str = "cli";

impl Target {
    /// Connects to the server, or opens the data directory, which must hold a store already:
    /// acting on a directory that does not (a typo, the wrong working directory) would create
    /// an empty store and report success on nothing.
    pub async fn connect(&self) -> Result<Connection, String> {
        if self.server.is_none() {
            let dir = self.data_dir();
            if !dir.join(vexil_store::sqlite::DB_FILE).is_file() {
                return Err(format!(
                    "{} is not a vexil data directory (it has no {}); give --data-dir, or --server \
                     with --key, or start `vexil serve` there first",
                    dir.display(),
                    vexil_store::sqlite::DB_FILE
                ));
            }
        }
        self.connect_or_create().await
    }

    /// As [`Target::connect`], but creates a store in a missing data directory (for `keys
    /// create`, the way to make the first admin key of a fresh store).
    pub async fn connect_or_create(&self) -> Result<Connection, String> {
        match &self.server {
            Some(base) => {
                let key = self.key.clone().ok_or("--server needs --key (or VEXIL_KEY) with an admin key")?;
                Ok(Connection::Server {
                    client: reqwest::Client::new(),
                    base: base.trim_end_matches('/').to_string(),
                    key,
                    environment: self.environment.clone(),
                })
            }
            // Offline there is no server setting to name the default environment: production,
            // the one every store has, unless --env names another.
            None => {
                let backend = vexil_server::server::open_store(&self.data_dir()).await?;
                let environment = self.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
                if !environment_exists(backend.as_ref(), environment).await? {
                    return Err(format!(
                        "environment \"{environment}\" does not exist in {}",
                        self.data_dir().display()
                    ));
                }
                Ok(Connection::Store(Arc::new(Scoped::new(backend, environment))))
            }
        }
    }

    /// Whether a server was given (--server or VEXIL_URL).
    pub fn is_server(&self) -> bool {
        self.server.is_some()
    }

    /// The environment named with --env (or VEXIL_ENV), if any.
    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    /// The data directory acted on when no server is given.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("./vexil-data"))
    }
}

/// Whether the store holds the environment `key`.
pub async fn environment_exists(backend: &dyn Backend, key: &str) -> Result<bool, String> {
    let found = backend.get_in(GLOBAL, EntityKind::Environment, key).await.map_err(|e| e.to_string())?;
    Ok(found.is_some())
}

impl Connection {
    /// Calls the admin API; a non-success answer becomes the error, with its message and
    /// every validation problem.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        self.call_with(method, path, body, &[]).await
    }

    /// [`Connection::call`] with extra request headers (`If-Match`, `X-Vexil-Reason`).
    pub async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, String> {
        let Connection::Server { client, base, key, environment } = self else {
            unreachable!("only called for servers")
        };
        let mut request = client.request(method, format!("{base}{path}")).bearer_auth(key);
        if let Some(environment) = environment {
            request = request.header("X-Vexil-Env", environment);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach {base}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let json: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() {
            return Ok(json);
        }
        let mut message =
            format!("the server answered {status}: {}", json["error"]["message"].as_str().unwrap_or("(no message)"));
        for problem in json["errors"].as_array().into_iter().flatten() {
            message.push_str(&format!(
                "\n  {}: {}",
                problem["path"].as_str().unwrap_or(""),
                problem["message"].as_str().unwrap_or("")
            ));
        }
        Err(message)
    }
}

/// Runs an async command body on a small runtime.
pub fn block_on<F: std::future::Future<Output = Outcome>>(future: F) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(future)
}

/// Prints a JSON value, pretty.
pub fn print_json(value: &impl serde::Serialize) -> Outcome {
    super::print_line(&serde_json::to_string_pretty(value).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value.
pub fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The keys of the store's environments, to check a new key's or person's scope offline.
pub async fn environment_keys(store: &Scoped) -> Result<Vec<String>, String> {
    let environments = store.backend().list_in(GLOBAL, EntityKind::Environment).await.map_err(|e| e.to_string())?;
    Ok(environments.into_iter().map(|e| e.key).collect())
}
