//! `vexil flags export|import`: flags files in and out of a vexil installation, either through
//! a running server's admin API (`--server`/`--key`, or `VEXIL_URL`/`VEXIL_KEY`) or directly on
//! a data directory (`--data-dir`, safe while a server runs on it: it sees the change within a
//! second). Import is all or nothing in both modes. [`Target`] is shared with the other admin
//! commands (`vexil keys`, `vexil stop`, `vexil rollout`, …).

use super::Outcome;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vexil_core::{parse_text, Format};
use vexil_server::service::catalog::{import, Catalog, ImportError};
use vexil_store::{ChangeMeta, Store};

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
}

/// An open target.
pub enum Connection {
    Server { client: reqwest::Client, base: String, key: String },
    Store(Arc<dyn Store>),
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
                })
            }
            // Offline, the CLI acts on the default environment of a fresh store.
            None => Ok(Connection::Store(Arc::new(vexil_store::Scoped::new(
                vexil_server::server::open_store(&self.data_dir()).await?,
                vexil_store::DEFAULT_ENVIRONMENT,
            )))),
        }
    }

    /// The data directory acted on when no server is given.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("./vexil-data"))
    }
}

impl Connection {
    /// Calls the admin API; a non-success answer becomes the error, with its message and
    /// every validation problem.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let Connection::Server { client, base, key } = self else { unreachable!("only called for servers") };
        let mut request = client.request(method, format!("{base}{path}")).bearer_auth(key);
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

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the stored flags and segments as a flags file.
    Export {
        #[arg(long, value_enum, default_value = "yaml")]
        format: OutputFormat,
        #[command(flatten)]
        target: Target,
    },
    /// Create or replace every flag and segment of a file, all or nothing.
    Import {
        /// The flags file (JSON, or YAML with a .yaml/.yml extension).
        file: PathBuf,
        /// Validate and report what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

pub fn run(args: Args) -> Outcome {
    block_on(async move {
        match args.command {
            Command::Export { format, target } => export(format, &target.connect().await?).await,
            Command::Import { file, dry_run, reason, target } => {
                let text =
                    std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let document = parse_text(&text, Format::from_file_name(&file.to_string_lossy()))
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                import_file(&document, dry_run, reason, &target.connect().await?).await
            }
        }
    })
}

async fn export(format: OutputFormat, connection: &Connection) -> Outcome {
    let document = match connection {
        Connection::Server { .. } => connection.call(reqwest::Method::GET, "/v1/admin/export", None).await?,
        Connection::Store(store) => Catalog::load(store.as_ref()).await.map_err(|e| e.to_string())?.document(),
    };
    match format {
        OutputFormat::Json => print_json(&document),
        OutputFormat::Yaml => {
            super::print_text(&yaml_text(&document)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn import_file(document: &Value, dry_run: bool, reason: Option<String>, connection: &Connection) -> Outcome {
    let report = match connection {
        Connection::Server { .. } => {
            let mut path = format!("/v1/admin/import?dry_run={dry_run}");
            if let Some(reason) = &reason {
                path.push_str(&format!("&reason={}", form_encode(reason)));
            }
            connection.call(reqwest::Method::POST, &path, Some(document)).await?
        }
        Connection::Store(store) => {
            let meta = ChangeMeta { actor: CLI_ACTOR.into(), reason: reason.or_else(|| Some("import".into())) };
            match import(store.as_ref(), document, dry_run, &meta).await {
                Ok(report) => serde_json::to_value(report).map_err(|e| e.to_string())?,
                Err(e @ ImportError::Store(_)) => return Err(e.to_string()),
                Err(ImportError::Invalid(problems)) => {
                    let listed = problems.iter().map(|p| format!("\n  {p}")).collect::<String>();
                    return Err(format!("{}{listed}", ImportError::Invalid(problems)));
                }
            }
        }
    };
    print_json(&report)
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

/// `document` as YAML that YAML 1.1 readers read back the same: a flag's variants `on` and
/// `off` stay strings rather than becoming `True` and `False` (serde's YAML writer quotes only
/// what YAML 1.2 would misread).
pub fn yaml_text(document: &Value) -> Result<String, String> {
    fn node(value: &Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match value {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => n.as_i64().map_or_else(|| Yaml::Real(n.to_string()), Yaml::Integer),
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(items) => Yaml::Array(items.iter().map(node).collect()),
            Value::Object(members) => {
                Yaml::Hash(members.iter().map(|(k, v)| (Yaml::String(k.clone()), node(v))).collect())
            }
        }
    }
    let mut text = String::new();
    yaml_rust2::YamlEmitter::new(&mut text).dump(&node(document)).map_err(|e| format!("writing YAML failed: {e}"))?;
    text.push('\n');
    Ok(text)
}
