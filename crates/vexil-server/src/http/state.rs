//! What every handler shares: the store, the live snapshot, the key cache, metrics and the
//! shutdown signal. Axum clones the state for every request and middleware, so it is one
//! `Arc` (a single atomic increment) rather than a struct of them.

use crate::config::ServerConfig;
use crate::http::auth::KeyCache;
use crate::metrics::Metrics;
use crate::service::evaluation::Evaluator;
use crate::service::results::ResultsSources;
use crate::service::safety::scheduler::SafetyChecks;
use crate::service::snapshot::{Snapshot, Snapshots};
use std::ops::Deref;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vexil_store::Store;

#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
    pub snapshots: Arc<Snapshots>,
    pub keys: KeyCache,
    /// Per-key request rates.
    pub rate_limits: crate::http::rate_limit::RateLimits,
    pub metrics: Arc<Metrics>,
    /// Emergency stops, rollout plans and budgets: their metrics and notifier.
    pub safety: Arc<crate::service::safety::Safety>,
    /// Cancelled when shutdown begins: long-lived responses (SSE) end so draining can finish.
    pub shutdown: CancellationToken,
    /// The event pipeline: ingest, processing, DLQ, evaluation tracking.
    pub events: crate::service::events::Events,
    /// Sticky experiment assignment: cache, group-commit writer, TTL.
    pub assigner: crate::service::assignment::Assigner,
    /// Restarts background tasks that panic; `/ready` reports those that cannot stay up.
    pub supervisor: crate::service::supervise::Supervisor,
    /// The changes every `GET /v1/sdk/stream` sends, serialised once.
    pub sdk_streams: Arc<crate::http::sdk_stream::SdkStreams>,
}

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl Services {
    /// What experiment results read and write.
    pub fn results(&self) -> ResultsSources {
        ResultsSources {
            pipeline: self.events.pipeline.clone(),
            snapshots: self.snapshots.clone(),
            store: self.store.clone(),
        }
    }

    /// What the safety rails' periodic checks read and act on.
    pub fn safety_checks(&self) -> SafetyChecks {
        SafetyChecks {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            safety: self.safety.clone(),
            results: self.results(),
        }
    }

    /// The evaluation service over `snapshot` (one the caller read, so a request sees one
    /// configuration throughout).
    pub fn evaluator<'a>(&'a self, snapshot: &'a Snapshot) -> Evaluator<'a> {
        Evaluator { snapshot, assigner: &self.assigner, events: &self.events }
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
