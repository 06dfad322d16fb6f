//! Keeping the configuration in step with the server, in the background.
//!
//! At start the cache file (the last configuration this SDK received) or else the bootstrap
//! file is served, so an application that starts while the server is away answers from it.
//! Then, in a loop: fetch `GET /v1/sdk/flags` (with the `ETag` of what is held), follow
//! `GET /v1/sdk/stream` (`put` replaces everything, `patch`/`delete` change one document) for
//! as long as it stays open, and when it breaks or cannot be opened wait an exponential,
//! jittered delay and start again. The fetch before each attempt is the polling fallback: while
//! the stream cannot be opened the configuration is still refreshed at least every
//! `poll_interval`. Nothing here is on the evaluation path: a getter only ever loads the
//! snapshot this task installs.

use crate::client::{Shared, Status};
use crate::configuration::{parse_delete, parse_patch, Configuration, ConfigurationError, Source};
use crate::options::Options;
use backon::{BackoffBuilder, ExponentialBuilder};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why talking to the server failed this time.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {0}")]
    Status(StatusCode),
    #[error("the stream was idle for longer than the idle timeout")]
    Idle,
    #[error("the stream ended")]
    Ended,
    #[error(transparent)]
    Configuration(#[from] ConfigurationError),
}

/// Serves the cache file, or else the bootstrap file, until the server answers. A file that
/// is missing or does not compile is skipped with a warning: it must never stop the start.
pub(crate) fn load_local_files(shared: &Shared, options: &Options) {
    let candidates =
        [(options.cache_file.as_deref(), Source::Cache), (options.bootstrap_file.as_deref(), Source::Bootstrap)];
    for (path, source) in candidates {
        let Some(path) = path else { continue };
        match read_flags_file(path) {
            Ok(configuration) => {
                shared.install(configuration, Status::Fallback(source));
                return;
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot serve this flags file"),
        }
    }
}

fn read_flags_file(path: &Path) -> Result<Configuration, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let format = vexil_core::Format::from_file_name(&path.to_string_lossy());
    let document = vexil_core::parse_text(&text, format).map_err(|e| e.to_string())?;
    Configuration::from_document(&document).map_err(|e| e.to_string())
}

/// Follows the server until the client is dropped (which aborts this task).
pub(crate) async fn run(shared: Arc<Shared>, options: Options, http: reqwest::Client) {
    let sync = Sync { shared, options, http };
    let mut etag = None;
    let mut delays = sync.delays();
    loop {
        match sync.poll(etag.as_deref()).await {
            Ok(tag) => etag = tag.or(etag),
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the flags");
                sync.shared.lost_server();
            }
        }
        if !sync.options.streaming {
            tokio::time::sleep(sync.options.poll_interval).await;
            continue;
        }
        match sync.follow_stream().await {
            // A stream that delivered something worked: the next break starts a fresh backoff.
            (true, e) => {
                tracing::info!(error = %e, "the flags stream broke; reconnecting");
                delays = sync.delays();
            }
            (false, e) => tracing::warn!(error = %e, "cannot open the flags stream"),
        }
        // Not stale yet: the next fetch decides (polling may still keep the configuration current).
        // The cached tag may belong to a revision the stream moved past: fetch in full.
        etag = None;
        let delay = delays.next().unwrap_or(sync.options.max_retry_delay).min(sync.options.poll_interval);
        tokio::time::sleep(delay).await;
    }
}

struct Sync {
    shared: Arc<Shared>,
    options: Options,
    http: reqwest::Client,
}

impl Sync {
    fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.options.min_retry_delay)
            .with_max_delay(self.options.max_retry_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.options.base_url)).bearer_auth(&self.options.key)
    }

    /// Fetches the flags document unless `etag` is still current; answers the new tag.
    async fn poll(&self, etag: Option<&str>) -> Result<Option<String>, SyncError> {
        let mut request = self.get("/v1/sdk/flags").timeout(self.options.request_timeout);
        if let (Some(etag), Some(_)) = (etag, self.shared.current()) {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request.send().await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => {
                self.shared.status.send_replace(Status::Ready);
                Ok(None)
            }
            StatusCode::OK => {
                let tag = response.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
                let document: Value = response.json().await?;
                self.install_from_server(Configuration::from_document(&document)?);
                Ok(tag)
            }
            status => Err(SyncError::Status(status)),
        }
    }

    /// Reads the stream until it fails; answers whether any event arrived, and why it ended.
    async fn follow_stream(&self) -> (bool, SyncError) {
        let response = match self.get("/v1/sdk/stream").header(ACCEPT, "text/event-stream").send().await {
            Ok(response) if response.status() == StatusCode::OK => response,
            Ok(response) => return (false, SyncError::Status(response.status())),
            Err(e) => return (false, e.into()),
        };
        let timed = tokio_stream::StreamExt::timeout(response.bytes_stream(), self.options.stream_idle_timeout);
        let bytes = timed.map(|chunk| match chunk {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(SyncError::Http(e)),
            Err(_) => Err(SyncError::Idle),
        });
        let mut events = std::pin::pin!(bytes.eventsource());
        let mut received = false;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(eventsource_stream::EventStreamError::Transport(e)) => return (received, e),
                Err(e) => return (received, SyncError::Configuration(ConfigurationError::Malformed(e.to_string()))),
            };
            received = true;
            if let Err(e) = self.apply(&event.event, &event.data) {
                // A change that cannot be applied leaves a gap: reconnect for a fresh `put`.
                return (received, e);
            }
        }
        (received, SyncError::Ended)
    }

    fn apply(&self, name: &str, data: &str) -> Result<(), SyncError> {
        let next = match name {
            "put" => {
                let document: Value =
                    serde_json::from_str(data).map_err(|e| ConfigurationError::Malformed(e.to_string()))?;
                Configuration::from_document(&document)?
            }
            "patch" | "delete" => {
                let change = if name == "patch" { parse_patch(data)? } else { parse_delete(data)? };
                let current = self.shared.current().ok_or(SyncError::Ended)?;
                current.changed(change)?
            }
            other => {
                tracing::debug!(event = other, "ignoring an unknown stream event");
                return Ok(());
            }
        };
        self.install_from_server(next);
        Ok(())
    }

    fn install_from_server(&self, configuration: Configuration) {
        if let Some(path) = &self.options.cache_file {
            write_cache(path, &configuration.document());
        }
        self.shared.install(configuration, Status::Ready);
    }
}

/// Writes the cache atomically (a temporary file renamed over it), so a crash mid-write never
/// leaves a half file for the next start. A failure is logged: the cache is an optimisation.
fn write_cache(path: &Path, document: &Value) {
    let temporary = path.with_extension("tmp");
    let written = serde_json::to_vec(document)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temporary, bytes))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the flags cache");
    }
}
