//! What every handler shares: the environments (each with its store and live snapshot), the
//! key cache, metrics and the shutdown signal. Axum clones the state for every request and middleware, so it is one
//! `Arc` (a single atomic increment) rather than a struct of them.

use crate::config::ServerConfig;
use crate::http::auth::KeyCache;
use crate::metrics::Metrics;
use crate::service::environments::{Environment, Environments};
use crate::service::evaluation::Evaluator;
use crate::service::events::EventsIn;
use crate::service::results::ResultsSources;
use crate::service::snapshot::Snapshot;
use std::ops::Deref;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    /// Every environment; a request's own is in its extensions (see `http::auth`).
    pub environments: Arc<Environments>,
    pub config: ServerConfig,
    pub keys: KeyCache,
    /// People's sign-in and sessions (SPEC 9).
    pub people: crate::service::people::People,
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
    /// The changes every `GET /v1/sdk/stream` of each environment sends, serialised once.
    pub sdk_streams: crate::http::sdk_stream::SdkStreamsByEnvironment,
}

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl Services {
    /// What experiment results of `environment` read and write: its events' aggregates, its
    /// configuration and its store.
    pub fn results(&self, environment: &Environment) -> ResultsSources {
        ResultsSources::of(environment, &self.events.pipeline)
    }

    /// The events of `environment`: where its evaluations are counted and its exposures go.
    pub fn events_of<'a>(&'a self, environment: &'a Environment) -> EventsIn<'a> {
        self.events.of(&environment.key)
    }

    /// The evaluation service over `snapshot` of `environment` (one the caller read, so a
    /// request sees one configuration throughout).
    pub fn evaluator<'a>(&'a self, environment: &'a Environment, snapshot: &'a Snapshot) -> Evaluator<'a> {
        Evaluator { snapshot, assigner: &self.assigner, events: self.events_of(environment) }
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
