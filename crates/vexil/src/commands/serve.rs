//! `vexil serve`: the service. Settings come from `vexil.toml` (or `--config`), then `VEXIL_*`
//! environment variables, then these flags; see docs/configuration.md.

use super::Outcome;
use std::path::PathBuf;
use std::process::ExitCode;
use vexil_server::{PartialConfig, ServerConfig};

/// The settings that have no command-line flag, named in `vexil serve --help`.
const FILE_AND_ENVIRONMENT_ONLY: &str = "\
More settings, only in the configuration file (key) or the environment (VEXIL_<KEY>):
  access:     admin_key, metrics_key, auth_cache_ttl_secs, cors_enabled, cors_allowed_origins,
              default_environment
  people:     session_lifetime_secs, session_idle_timeout_secs, session_cookie_secure,
              trust_forwarded_headers, login_max_failures, login_max_failures_per_address,
              login_failure_window_secs
  HTTP edge:  header_read_timeout_ms, body_timeout_ms, keep_alive_timeout_secs, max_connections,
              max_uri_bytes, max_header_bytes, rate_limit_per_key, rate_limit_burst
  streams:    sse_heartbeat_secs, shutdown_timeout_secs
  assignment: assignment_ttl_secs, assignment_cache_entries, assignment_fsync
  safety:     safety_check_interval_ms, webhook_url, webhook_secret
  events:     event_processing, event_max_lag_events, dlq_max_entries, dlq_max_bytes,
              dlq_max_payload_bytes, event_user_cache_entries, event_member_cache_entries
Each is described with its default in docs/configuration.md.";

#[derive(clap::Args)]
#[command(after_help = FILE_AND_ENVIRONMENT_ONLY)]
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
    runtime.block_on(vexil_server::run(config, return_freed_memory))?;
    Ok(ExitCode::SUCCESS)
}

/// Hands the pages the calling thread freed back to the system. mimalloc keeps freed pages for
/// the thread's next allocations, which a thread that goes idle may not make for a long time:
/// - the first load parses every stored document once, on the starting thread, and frees what
///   it parsed; handing that back keeps the resident size at ready near what the configuration
///   takes: about 25 MiB less at 10,000 flags (BENCHMARKS.md, "A write's cost at 10,000
///   flags");
/// - the event pipeline's readers and processors call it when they go idle after a burst of
///   records, which a distributed node reads and processes on two threads per partition
///   (BENCHMARKS.md, "Pipeline threads hand freed memory back when idle").
///
/// Returning freed pages on every free instead (mimalloc's purge delay 0) halved OFREP bulk
/// throughput.
fn return_freed_memory() {
    // SAFETY: mi_collect takes no pointers; it only walks mimalloc's own heaps and may be called
    // at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    /// `serve --help` names every setting that docs/configuration.md lists without a flag.
    #[test]
    fn help_names_every_setting_without_a_flag() {
        let table = include_str!("../../../../docs/configuration.md");
        let without_flag: Vec<&str> = table
            .lines()
            .filter_map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                (cells.len() > 4 && cells[1].starts_with('`') && cells[3] == "—").then(|| cells[1].trim_matches('`'))
            })
            .collect();
        assert!(without_flag.len() > 10, "the settings table was not found");
        let named =
            |setting: &str| super::FILE_AND_ENVIRONMENT_ONLY.split([' ', ',', '\n']).any(|word| word == setting);
        let missing: Vec<&&str> = without_flag.iter().filter(|s| !named(s)).collect();
        assert!(missing.is_empty(), "not named in `vexil serve --help`: {missing:?}");
    }
}
