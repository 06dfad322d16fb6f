//! `vexil flags …`: the everyday flag commands (`list`, `get`, `set`, `toggle`, `delete`),
//! flags files in and out of an installation (`export`, `import`), and promotion between
//! environments (`diff`, `promote`, in [`super::promote`]). Each acts through a running
//! server or directly on a data directory (see [`super::target::Target`]); every change is
//! validated against the whole configuration and audited with its reason in both modes.

use super::promote::Promotion;
use super::target::{block_on, form_encode, print_json, Connection, Target, CLI_ACTOR};
use super::Outcome;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vexil_core::{parse_text, Format};
use vexil_server::service::catalog::{self, import, Catalog, ImportError};
use vexil_store::{ChangeMeta, ConfigStore, EntityKind, StoredDocument};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the stored flags: key, on/off, version and tags (or the whole documents as JSON).
    List {
        /// Only the flags with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Print the stored documents as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print one stored flag as JSON.
    Get {
        /// The flag's key.
        #[arg(value_name = "KEY")]
        flag: String,
        #[command(flatten)]
        target: Target,
    },
    /// Create or replace one flag from a file holding the flag (JSON, or YAML by extension; - reads standard input).
    Set {
        /// The flag document's file.
        file: PathBuf,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// The kill switch: turn a flag on or off (its `enabled` field), with the reason audited.
    Toggle {
        /// The flag's key.
        #[arg(value_name = "KEY")]
        flag: String,
        /// Turn the flag on or off.
        #[arg(value_enum)]
        state: Switch,
        /// Why (required): recorded in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a flag (refused while another flag names it as a prerequisite).
    Delete {
        /// The flag's key.
        #[arg(value_name = "KEY")]
        flag: String,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Print the stored flags and segments as a flags file.
    Export {
        /// Output format.
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
    /// Show what promoting flags and segments from one environment to another would change (all of them by default).
    Diff {
        #[command(flatten)]
        between: Between,
        #[command(flatten)]
        target: Target,
    },
    /// Copy flags and segments from one environment to another, all or nothing, printing the changes.
    Promote {
        #[command(flatten)]
        between: Between,
        /// Promote every flag and segment of the source environment.
        #[arg(long, conflicts_with_all = ["flags", "segments"])]
        all: bool,
        /// Only print the changes; apply nothing.
        #[arg(long)]
        dry_run: bool,
        /// Reason recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// The environments and documents a diff or a promotion is about.
#[derive(clap::Args)]
pub struct Between {
    /// The environment to promote from.
    #[arg(long, value_name = "ENV")]
    from: String,
    /// The environment to promote to.
    #[arg(long, value_name = "ENV")]
    to: String,
    /// A flag to include (repeatable).
    #[arg(long = "flag", value_name = "KEY")]
    flags: Vec<String>,
    /// A segment to include (repeatable); promote the segments the flags use with them.
    #[arg(long = "segment", value_name = "KEY")]
    segments: Vec<String>,
}

/// A kill switch position.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
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
            Command::List { tag, json, target } => list(tag, json, &target.connect().await?).await,
            Command::Get { flag, target } => print_json(&stored_flag(&target.connect().await?, &flag).await?),
            Command::Set { file, reason, target } => set(&file, reason, &target.connect().await?).await,
            Command::Toggle { flag, state, reason, target } => {
                toggle(&flag, state == Switch::On, reason, &target.connect().await?).await
            }
            Command::Delete { flag, reason, target } => delete(&flag, reason, &target.connect().await?).await,
            Command::Export { format, target } => export(format, &target.connect().await?).await,
            Command::Diff { between: Between { from, to, flags, segments }, target } => {
                let all = flags.is_empty() && segments.is_empty();
                let promotion = Promotion { from: &from, to: &to, flags, segments, all, reason: None };
                super::promote::diff(promotion, &target.connect().await?).await
            }
            Command::Promote { between: Between { from, to, flags, segments }, all, dry_run, reason, target } => {
                let promotion = Promotion { from: &from, to: &to, flags, segments, all, reason };
                super::promote::promote(promotion, dry_run, &target.connect().await?).await
            }
            Command::Import { file, dry_run, reason, target } => {
                let document = read_document(&file)?;
                import_file(&document, dry_run, reason, &target.connect().await?).await
            }
        }
    })
}

/// Reads a JSON or YAML document from a file, or from standard input for `-`.
fn read_document(file: &Path) -> Result<Value, String> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read standard input: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    parse_text(&text, Format::from_file_name(&file.to_string_lossy())).map_err(|e| format!("{}: {e}", file.display()))
}

/// `?reason=…` for a change's audit record, or nothing.
fn reason_query(reason: Option<&str>) -> String {
    reason.map(|r| format!("?reason={}", form_encode(r))).unwrap_or_default()
}

async fn list(tag: Option<String>, as_json: bool, connection: &Connection) -> Outcome {
    let flags: Vec<Value> = match connection {
        Connection::Server { .. } => {
            let path =
                format!("/v1/admin/flags{}", tag.map(|t| format!("?tag={}", form_encode(&t))).unwrap_or_default());
            let mut answer = connection.call(reqwest::Method::GET, &path, None).await?;
            serde_json::from_value(answer["flags"].take()).map_err(|e| format!("unexpected answer: {e}"))?
        }
        Connection::Store(store) => store
            .list(EntityKind::Flag)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(StoredDocument::to_json)
            .filter(|flag| tag.as_ref().is_none_or(|t| has_tag(flag, t)))
            .collect(),
    };
    if as_json {
        return print_json(&json!({ "flags": flags }));
    }
    super::print_text(&flag_table(&flags));
    Ok(ExitCode::SUCCESS)
}

fn has_tag(flag: &Value, tag: &str) -> bool {
    flag["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == tag))
}

/// One line per flag under a header, columns aligned: KEY, STATE (on/off), VERSION, TAGS.
fn flag_table(flags: &[Value]) -> String {
    let rows: Vec<[String; 4]> = flags
        .iter()
        .map(|flag| {
            let tags: Vec<&str> = flag["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            [
                flag["key"].as_str().unwrap_or_default().to_string(),
                if flag["enabled"] == false { "off" } else { "on" }.to_string(),
                flag["version"].to_string(),
                tags.join(","),
            ]
        })
        .collect();
    let header = ["KEY", "STATE", "VERSION", "TAGS"].map(str::to_string);
    let width = |column: usize| rows.iter().chain([&header]).map(|r| r[column].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        })
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

/// The stored flag, with its version and timestamps.
async fn stored_flag(connection: &Connection, key: &str) -> Result<Value, String> {
    match connection {
        Connection::Server { .. } => {
            connection.call(reqwest::Method::GET, &format!("/v1/admin/flags/{}", form_encode(key)), None).await
        }
        Connection::Store(store) => store
            .get(EntityKind::Flag, key)
            .await
            .map_err(|e| e.to_string())?
            .map(|doc| doc.to_json())
            .ok_or_else(|| format!("no flag \"{key}\"")),
    }
}

/// `vexil flags set`: the file holds one flag, validated against the whole stored
/// configuration (its segments and prerequisites must exist).
async fn set(file: &Path, reason: Option<String>, connection: &Connection) -> Outcome {
    let flag = read_document(file)?;
    if !flag.is_object() || flag.get("flags").is_some() {
        return Err(format!(
            "{}: expected one flag (an object with \"key\"); for a flags file use `vexil flags import`",
            file.display()
        ));
    }
    print_json(&write_flag(flag, None, reason, connection).await?)
}

/// Creates or replaces one flag; with `expected_version`, only if that is still the stored
/// version. Returns the stored flag.
async fn write_flag(
    flag: Value,
    expected_version: Option<u64>,
    reason: Option<String>,
    connection: &Connection,
) -> Result<Value, String> {
    match connection {
        Connection::Server { .. } => {
            let key = flag["key"].as_str().ok_or("the flag has no \"key\"")?;
            let item = format!("/v1/admin/flags/{}", form_encode(key));
            let exists = expected_version.is_some() || stored_flag(connection, key).await.is_ok();
            let (method, path) = match exists {
                true => (reqwest::Method::PUT, format!("{item}{}", reason_query(reason.as_deref()))),
                false => (reqwest::Method::POST, format!("/v1/admin/flags{}", reason_query(reason.as_deref()))),
            };
            let condition: Vec<_> = expected_version.map(|v| ("If-Match", v.to_string())).into_iter().collect();
            connection.call_with(method, &path, Some(&flag), &condition).await
        }
        Connection::Store(store) => {
            let meta = ChangeMeta { actor: CLI_ACTOR.into(), reason };
            let stored = catalog::save(store.as_ref(), EntityKind::Flag, &flag, expected_version, &meta).await;
            stored.map(|stored| stored.into_json()).map_err(import_error_text)
        }
    }
}

/// `vexil flags toggle`: sets `enabled` on the stored flag, conditional on the version read, so
/// a concurrent edit is never overwritten (409 instead). A flag already in that state is left
/// alone.
async fn toggle(key: &str, on: bool, reason: String, connection: &Connection) -> Outcome {
    let mut flag = stored_flag(connection, key).await?;
    if flag["enabled"] != on {
        let version = flag["version"].as_u64();
        if let Some(fields) = flag.as_object_mut() {
            for server_managed in ["id", "version", "created_at", "updated_at"] {
                fields.remove(server_managed);
            }
        }
        flag["enabled"] = json!(on);
        flag = write_flag(flag, version, Some(reason), connection).await?;
    }
    print_json(&flag)
}

async fn delete(key: &str, reason: Option<String>, connection: &Connection) -> Outcome {
    match connection {
        Connection::Server { .. } => {
            let path = format!("/v1/admin/flags/{}{}", form_encode(key), reason_query(reason.as_deref()));
            connection.call(reqwest::Method::DELETE, &path, None).await?;
        }
        Connection::Store(store) => {
            let meta = ChangeMeta { actor: CLI_ACTOR.into(), reason };
            catalog::delete(store.as_ref(), EntityKind::Flag, key, None, &meta).await.map_err(|e| e.to_string())?;
        }
    }
    print_json(&json!({ "deleted": key }))
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
    print_json(&import_report(document, dry_run, reason, connection).await?)
}

/// Imports a flags file; the report names what was created, updated and left unchanged.
async fn import_report(
    document: &Value,
    dry_run: bool,
    reason: Option<String>,
    connection: &Connection,
) -> Result<Value, String> {
    match connection {
        Connection::Server { .. } => {
            let mut path = format!("/v1/admin/import?dry_run={dry_run}");
            if let Some(reason) = &reason {
                path.push_str(&format!("&reason={}", form_encode(reason)));
            }
            connection.call(reqwest::Method::POST, &path, Some(document)).await
        }
        Connection::Store(store) => {
            let meta = ChangeMeta { actor: CLI_ACTOR.into(), reason: reason.or_else(|| Some("import".into())) };
            let report = import(store.as_ref(), document, dry_run, &meta).await.map_err(import_error_text)?;
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
    }
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

/// An import or save that failed, with every validation problem on a line of its own.
fn import_error_text(error: ImportError) -> String {
    match error {
        ImportError::Invalid(problems) => {
            let listed = problems.iter().map(|p| format!("\n  {p}")).collect::<String>();
            format!("{}{listed}", ImportError::Invalid(problems))
        }
        store => store.to_string(),
    }
}
