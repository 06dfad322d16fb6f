//! What every handler shares: the environments (each with its store and live snapshot), the
//! key cache, metrics and the shutdown signal. Axum clones the state for every request and middleware, so it is one
//! `Arc` (a single atomic increment) rather than a struct of them.

use crate::config::ServerConfig;
use crate::http::auth::KeyCache;
use crate::metrics::Metrics;
use crate::service::environments::{Environment, Environments};
use crate::service::evaluation::Evaluator;
use crate::service::results::ResultsSources;
use crate::service::safety::scheduler::SafetyChecks;
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
    /// The environment whose configuration the event pipeline, experiment results and the
    /// safety rails' checks work on: events are not separated by environment yet
    /// (docs/environments.md), so those features serve the default environment only.
    pub fn events_environment(&self) -> &Arc<Environment> {
        self.environments.default()
    }

    /// What experiment results read and write.
    pub fn results(&self) -> ResultsSources {
        let environment = self.events_environment();
        ResultsSources {
            pipeline: self.events.pipeline.clone(),
            snapshots: environment.snapshots.clone(),
            store: environment.store.clone(),
        }
    }

    /// What the safety rails' periodic checks read and act on.
    pub fn safety_checks(&self) -> SafetyChecks {
        let environment = self.events_environment();
        SafetyChecks {
            store: environment.store.clone(),
            snapshots: environment.snapshots.clone(),
            safety: self.safety.clone(),
            results: self.results(),
        }
    }

    /// The events of `environment`, if they are recorded: only the default environment's
    /// are, until events are separated by environment.
    pub fn events_of(&self, environment: &Environment) -> Option<&crate::service::events::Events> {
        (environment.key == self.events_environment().key).then_some(&self.events)
    }

    /// The evaluation service over `snapshot` of `environment` (one the caller read, so a
    /// request sees one configuration throughout).
    pub fn evaluator<'a>(&'a self, environment: &Environment, snapshot: &'a Snapshot) -> Evaluator<'a> {
        Evaluator { snapshot, assigner: &self.assigner, events: self.events_of(environment) }
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
