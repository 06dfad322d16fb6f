//! What every handler shares: the store, the live snapshot, the key cache, metrics and the
//! shutdown signal. Cloning it clones a handful of `Arc`s.

use crate::auth::KeyCache;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::snapshot::Snapshots;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vexil_store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub snapshots: Arc<Snapshots>,
    pub keys: Arc<KeyCache>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins: long-lived responses (SSE) end so draining can finish.
    pub shutdown: CancellationToken,
}
