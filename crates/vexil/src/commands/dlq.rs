//! `vexil dlq list|replay|purge`: the dead-letter queue of the event pipeline, through a running
//! server's admin API (`--server`/`--key`) or directly on a data directory. On a data directory,
//! list and purge are safe while a server runs; replay appends to the event log, so it needs the
//! log to itself and asks to go through the server when one holds it.

use super::target::{block_on, form_encode, print_json, Connection, Target};
use super::Outcome;
use std::path::Path;
use std::sync::Arc;
use vexil_events::{
    Dlq, DlqFilter, DlqStage, EventBus, FileLog, IngestOptions, Ingestor, LogError, LogOptions, Metrics,
};

/// Which entries a command applies to (the same selection as the admin API's query).
#[derive(clap::Args)]
pub struct Selection {
    /// Only entries with this error code (e.g. invalid_timestamp).
    #[arg(long)]
    code: Option<String>,
    /// Only entries from this stage.
    #[arg(long, value_parser = ["ingest", "processing"])]
    stage: Option<String>,
    /// Only entries created at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only these entry ids.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<i64>,
    /// At most this many entries, oldest first.
    #[arg(long)]
    limit: Option<usize>,
}

impl Selection {
    fn query(&self) -> String {
        let mut pairs = Vec::new();
        let text = [("code", &self.code), ("stage", &self.stage), ("since", &self.since)];
        pairs.extend(
            text.iter().filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", form_encode(v)))),
        );
        if !self.ids.is_empty() {
            pairs.push(format!("ids={}", self.ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")));
        }
        pairs.extend(self.limit.map(|l| format!("limit={l}")));
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }

    /// The selected entries of environment `env`.
    fn filter(&self, env: &str) -> Result<DlqFilter, String> {
        let since = self
            .since
            .as_deref()
            .map(|s| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.to_utc()))
            .transpose()
            .map_err(|e| format!("--since: {e}"))?;
        let stage =
            self.stage.as_deref().map(|s| if s == "processing" { DlqStage::Processing } else { DlqStage::Ingest });
        let ids = (!self.ids.is_empty()).then(|| self.ids.clone());
        let env = vexil_events::environment::stored(env).map(str::to_owned);
        Ok(DlqFilter { env, code: self.code.clone(), stage, since, after_id: None, ids, limit: self.limit })
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// List dead letters with their error and payload (at most 100 unless --limit).
    List {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        target: Target,
    },
    /// Validate the selected entries again; those that pass are ingested and leave the queue.
    Replay {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        target: Target,
    },
    /// Delete the selected entries (every entry without a selection).
    Purge {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The parts of the pipeline a data-directory command opens.
fn events_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("events")
}

fn open_dlq(data_dir: &Path) -> Result<(Arc<Dlq>, Arc<Metrics>), String> {
    let dir = events_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let metrics = Arc::new(Metrics::default());
    let dlq = Dlq::open(&dir.join("dlq.sqlite"), metrics.clone())
        .map_err(|e| format!("cannot open the dead-letter queue in {}: {e}", dir.display()))?;
    Ok((Arc::new(dlq), metrics))
}

pub fn run(args: Args) -> Outcome {
    block_on(async move {
        let (selection, target, method, path) = match &args.command {
            Command::List { selection, target } => (selection, target, reqwest::Method::GET, "/v1/admin/dlq"),
            Command::Replay { selection, target } => (selection, target, reqwest::Method::POST, "/v1/admin/dlq/replay"),
            Command::Purge { selection, target } => (selection, target, reqwest::Method::DELETE, "/v1/admin/dlq"),
        };
        let connection = target.connect().await?;
        if let Connection::Server { .. } = connection {
            let answer = connection.call(method, &format!("{path}{}", selection.query()), None).await?;
            return print_json(&answer);
        }
        let data_dir = target.data_dir();
        // Offline, as for every command: production unless --env names another.
        let filter = selection.filter(target.environment().unwrap_or(vexil_events::environment::PRODUCTION))?;
        let (dlq, metrics) = open_dlq(&data_dir)?;
        let failed = |e: vexil_events::Error| format!("the dead-letter queue failed: {e}");
        match args.command {
            Command::List { .. } => {
                let filter = DlqFilter { limit: Some(filter.limit.unwrap_or(100)), ..filter };
                let entries = dlq.list(&filter).map_err(failed)?;
                let total = dlq.count(filter.env.as_deref()).map_err(failed)?;
                print_json(&serde_json::json!({"entries": entries, "total": total}))
            }
            Command::Purge { .. } => print_json(&serde_json::json!({"purged": dlq.purge(&filter).map_err(failed)?})),
            Command::Replay { .. } => {
                let log = match FileLog::open(events_dir(&data_dir).join("log"), LogOptions::default()) {
                    Ok(log) => Arc::new(log),
                    Err(LogError::InUse(_)) => {
                        return Err(format!(
                            "a server is running on {}: replay through it with --server and --key",
                            data_dir.display()
                        ))
                    }
                    Err(e) => return Err(format!("cannot open the event log: {e}")),
                };
                let bus: Arc<dyn EventBus> = log.clone();
                let ingestor = Ingestor::new(bus, dlq, metrics, IngestOptions::default());
                let report = ingestor.replay_dlq(&filter).await.map_err(|e| e.to_string())?;
                log.close();
                print_json(&report)
            }
        }
    })
}
