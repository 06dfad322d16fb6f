//! `vexil serve`: opens the store, creates the first admin key on a fresh store, loads the
//! configuration snapshot, follows the store's changes, and serves HTTP until SIGINT or
//! SIGTERM, then drains in-flight requests (up to `shutdown_timeout_secs`).

use crate::config::ServerConfig;
use crate::http::auth::{bootstrap_admin_key, KeyCache};
use crate::http::state::{AppState, Services};
use crate::metrics::Metrics;
use crate::service::environments::Environments;
use crate::service::safety::scheduler::SafetyChecks;
use std::io::Write;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vexil_store::postgres::PostgresStore;
use vexil_store::sqlite::SqliteStore;
use vexil_store::Backend;

/// The longest time between purges of expired assignments (shorter TTLs purge more often).
const ASSIGNMENT_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Opens the embedded store in `data_dir`.
pub async fn open_store(data_dir: &std::path::Path) -> Result<Arc<dyn Backend>, String> {
    let dir = data_dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
        .await
        .map_err(|e| format!("opening the store failed: {e}"))?
        .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
    Ok(Arc::new(store))
}

/// Opens the configured store: PostgreSQL when `database_url` is set (the distributed mode),
/// else the embedded one in `data_dir`.
pub async fn open_configured_store(config: &ServerConfig) -> Result<Arc<dyn Backend>, String> {
    match &config.database_url {
        Some(url) => match PostgresStore::connect(url).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(format!("cannot open the database: {e}")),
        },
        None => open_store(&config.data_dir).await,
    }
}

/// Connects the distributed mode's event engines that are configured: a Kafka-protocol broker
/// (`event_bus`) with the processing state and consumer group in the shared database, and an
/// S3-compatible archive (`archive_url`).
async fn event_engines(config: &ServerConfig) -> Result<crate::service::events::Engines, String> {
    use vexil_distributed::group::GroupOptions;
    use vexil_distributed::kafka::{KafkaBus, KafkaTarget};
    use vexil_distributed::processing::PostgresBackend;
    use vexil_distributed::s3::{S3Archive, S3Target};
    use vexil_events::EventBus;
    let mut engines = crate::service::events::Engines::default();
    if let (Some(url), Some(database_url)) = (&config.event_bus, &config.database_url) {
        let target = KafkaTarget::parse(url).map_err(|e| format!("event_bus: {e}"))?;
        // A topic created here has one copy; create it beforehand for replication.
        let bus = KafkaBus::connect(&target, 1).await.map_err(|e| format!("cannot reach the event bus {url}: {e}"))?;
        let (topic, partitions) = (&target.topic, bus.partitions());
        let unopened = |e| format!("cannot open the processing state in the database: {e}");
        let processing = if config.event_processing {
            let processing = PostgresBackend::connect(database_url, topic, partitions, GroupOptions::default())
                .await
                .map_err(unopened)?;
            tracing::info!(node = processing.node(), partitions, "joined the event consumer group");
            processing
        } else {
            let processing =
                PostgresBackend::connect_without_processing(database_url, topic, partitions).await.map_err(unopened)?;
            tracing::info!(node = processing.node(), partitions, "ingesting only: the other nodes process the events");
            processing
        };
        engines.bus = Some(Arc::new(bus));
        engines.processing = Some(Arc::new(processing));
    }
    if let Some(url) = &config.archive_url {
        let target = S3Target::parse(url).map_err(|e| format!("archive_url: {e}"))?;
        engines.archive = Some(Arc::new(S3Archive::connect(&target)?));
    }
    Ok(engines)
}

/// Builds the shared state over an open store: every environment's first snapshot is loaded
/// before serving. The event pipeline's threads call `release_freed_memory` when they go idle
/// (see [`run`]).
pub async fn state(
    config: ServerConfig,
    backend: Arc<dyn Backend>,
    release_freed_memory: fn(),
) -> Result<AppState, String> {
    let metrics = Metrics::new();
    let default = config.default_environment.clone();
    let (store, initial) = Environments::load_default(&backend, &default, &metrics).await?;
    // Every environment is loaded before the pipeline starts, so it starts with all their
    // experiments.
    let feed = Arc::new(crate::service::events::ExperimentFeed::default());
    let environments = Environments::new(backend, (&default, store, initial), metrics.clone(), feed.hook()).await?;
    let supervisor = crate::service::supervise::Supervisor::new();
    metrics.register([supervisor.collector()]);
    let engines = event_engines(&config).await?;
    let events =
        crate::service::events::Events::start(&metrics, &config, engines, &feed, &supervisor, release_freed_memory)?;
    let safety = Arc::new(crate::service::safety::Safety::new(&config, &metrics, events.pipeline.clone(), &supervisor));
    Ok(AppState::new(Services {
        events,
        assigner: crate::service::assignment::Assigner::new(
            // Assignments are kept by experiment id, unique across environments.
            environments.default().store.clone(),
            crate::service::assignment::AssignerOptions {
                ttl: config.assignment_ttl,
                cache_entries: config.assignment_cache_entries,
                flush: config.assignment_flush,
            },
            &supervisor,
        ),
        safety,
        keys: KeyCache::new(config.auth_cache_ttl),
        people: crate::service::people::People::new(environments.backend().clone(), config.sessions),
        rate_limits: crate::http::rate_limit::RateLimits::new(config.rate_limit_per_key, config.rate_limit_burst),
        environments: Arc::new(environments),
        metrics,
        supervisor,
        config,
        shutdown: CancellationToken::new(),
        sdk_streams: Default::default(),
    }))
}

/// Runs the service until a shutdown signal. `release_freed_memory` hands what the calling
/// thread freed back to the system (the binary's allocator; see `vexil serve`): it is called
/// once every environment's first snapshot is loaded, before the service listens, and by the
/// event pipeline's threads when they go idle after work.
pub async fn run(config: ServerConfig, release_freed_memory: fn()) -> Result<(), String> {
    let backend = open_configured_store(&config).await?;
    if let Some(secret) = bootstrap_admin_key(backend.as_ref(), config.admin_key.as_deref())
        .await
        .map_err(|e| format!("cannot create the first admin key: {e}"))?
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Created the first admin key; it is shown only this once:\n{secret}");
        let _ = out.flush();
    }
    let listen = config.listen;
    let shutdown_timeout = config.shutdown_timeout;
    let state = state(config, backend, release_freed_memory).await?;
    release_freed_memory();
    let purge_every =
        state.config.assignment_ttl.map_or(ASSIGNMENT_PURGE_INTERVAL, |ttl| ttl.min(ASSIGNMENT_PURGE_INTERVAL));
    let (supervisor, shutdown) = (&state.supervisor, state.shutdown.clone());
    supervisor.spawn("assignment_purge", shutdown.clone(), {
        let (store, shutdown) = (state.environments.default().store.clone(), shutdown.clone());
        move || crate::service::assignment::purge_expired(store.clone(), purge_every, shutdown.clone())
    });
    supervisor.spawn("snapshot_follower", shutdown.clone(), {
        let (environments, shutdown) = (state.environments.clone(), shutdown.clone());
        move || environments.clone().follow(shutdown.clone())
    });
    supervisor.spawn("safety_scheduler", shutdown.clone(), {
        // Every environment's plans and budgets, on its own signals; environments come and go.
        let (environments, interval) = (state.environments.clone(), state.config.safety_check_interval);
        let (safety, pipeline) = (state.safety.clone(), state.events.pipeline.clone());
        move || {
            let (environments, safety, pipeline) = (environments.clone(), safety.clone(), pipeline.clone());
            let checks = move || {
                let all = environments.all();
                all.iter().map(|environment| SafetyChecks::of(environment, &safety, &pipeline)).collect()
            };
            crate::service::safety::scheduler::run(checks, interval, shutdown.clone())
        }
    });
    let app = crate::http::middleware::apply(crate::http::routes::router(state.clone()), &state);

    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%address, version = env!("CARGO_PKG_VERSION"), "listening");

    let shutdown = state.shutdown.clone();
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        signalled.cancel();
    });
    tokio::select! {
        () = crate::http::edge::serve(listener, app, state.config.edge, shutdown.clone()) => {}
        () = async { shutdown.cancelled().await; tokio::time::sleep(shutdown_timeout).await } => {
            tracing::warn!(seconds = shutdown_timeout.as_secs(), "requests still running after the shutdown timeout were cut");
        }
    }
    state.events.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
