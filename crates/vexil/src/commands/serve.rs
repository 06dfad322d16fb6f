//! `vexil serve`: the service. Settings come from `vexil.toml` (or `--config`), then `VEXIL_*`
//! environment variables, then these flags; see docs/configuration.md.

use super::Outcome;
use std::path::PathBuf;
use std::process::ExitCode;
use vexil_server::{PartialConfig, ServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); default ./vexil.toml when it exists.
    #[arg(long, env = "VEXIL_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Directory of the embedded database [default: ./vexil-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL database shared by the nodes of the distributed mode (postgres://…)
    /// [default: the embedded database in the data directory].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Kafka-protocol event bus of the distributed mode (kafka://host:port/topic)
    /// [default: the embedded log in the data directory].
    #[arg(long, value_name = "URL")]
    event_bus: Option<String>,
    /// S3-compatible archive of the distributed mode (s3://bucket/prefix; endpoint and
    /// credentials from the AWS_* environment) [default: the archive directory].
    #[arg(long, value_name = "URL")]
    archive_url: Option<String>,
    /// Directory of the event archive [default: <data-dir>/archive].
    #[arg(long, value_name = "DIR")]
    archive_dir: Option<PathBuf>,
    /// File format of the event archive: jsonl (gzip JSON lines) or parquet [default: jsonl].
    #[arg(long, value_name = "FORMAT")]
    archive_format: Option<String>,
    /// Worker threads [default: one per CPU].
    #[arg(long)]
    workers: Option<usize>,
    /// Largest accepted request body in bytes [default: 5242880].
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Log filter: error, warn, info, debug, trace or a tracing directive [default: info].
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: json or text [default: json].
    #[arg(long)]
    log_format: Option<String>,
}

pub fn run(args: Args) -> Outcome {
    let flags = PartialConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        event_bus: args.event_bus,
        archive_url: args.archive_url,
        archive_dir: args.archive_dir,
        archive_format: args.archive_format,
        workers: args.workers,
        max_body_bytes: args.max_body_bytes,
        log_level: args.log_level,
        log_format: args.log_format,
        ..PartialConfig::default()
    };
    let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config =
        ServerConfig::load(args.config.as_deref(), env, flags).map_err(|e| format!("invalid configuration: {e}"))?;
    vexil_server::logging::init(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(vexil_server::run(config))?;
    Ok(ExitCode::SUCCESS)
}
