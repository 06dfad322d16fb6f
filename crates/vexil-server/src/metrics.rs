//! Prometheus metrics (`GET /metrics`): the one registry of the service, holding requests and
//! latency per route and status, evaluations per flag and reason, and the health of the
//! configuration snapshot defined here, and what the other parts register into it at start-up:
//! the event pipeline's counters ([`crate::service::events`]) and the safety rails' metrics
//! ([`crate::service::safety`]). `/metrics` renders it once.
//!
//! The per-request cost is kept to a few atomic additions: evaluation counters are resolved to
//! their handles on a flag's first evaluation with a reason (see [`FlagCounters`]), so counting
//! an evaluation is one relaxed `fetch_add`; values that are only interesting when scraped (snapshot age, hit ratio)
//! are computed at scrape time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use vexil_core::Reason;

/// The service's registry, with the metrics defined here.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    evaluations: IntCounterVec,
    pub snapshot_hits: IntCounter,
    pub snapshot_stale_reads: IntCounter,
    pub reloads_ok: IntCounter,
    pub reloads_failed: IntCounter,
    snapshot_hit_ratio: Gauge,
    snapshot_age: Gauge,
    snapshot_revision: IntGauge,
    snapshot_flags: IntGauge,
}

/// The evaluation counters of one flag, one per [`Reason`], indexed by `reason as usize`.
/// Each is created on its first use: eight series per flag created up front took about 5 KB
/// per flag, and filled `/metrics` with zeros for flags nobody evaluates.
#[derive(Clone)]
pub struct FlagCounters(Arc<LazyCounters>);

struct LazyCounters {
    evaluations: IntCounterVec,
    flag: Box<str>,
    by_reason: [OnceLock<IntCounter>; Reason::ALL.len()],
}

impl FlagCounters {
    pub fn count(&self, reason: Reason) {
        let counters = &self.0;
        counters.by_reason[reason as usize]
            .get_or_init(|| counters.evaluations.with_label_values(&[&counters.flag, reason.name()]))
            .inc();
    }
}

const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("vexil_http_requests_total", "HTTP requests answered, by method, route and status."),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("vexil_http_request_duration_seconds", "Time to answer HTTP requests (headers sent).")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let evaluations = IntCounterVec::new(
            Opts::new("vexil_evaluations_total", "Flag evaluations, by flag and reason."),
            &["flag", "reason"],
        )
        .expect("valid metric");
        let reads = |result: &str| {
            IntCounter::with_opts(
                Opts::new("vexil_config_snapshot_reads_total", "Evaluation reads of the configuration snapshot: hit when it was current, stale when a newer revision was being loaded.")
                    .const_label("result", result),
            )
            .expect("valid metric")
        };
        let reloads = |result: &str| {
            IntCounter::with_opts(
                Opts::new("vexil_config_reloads_total", "Rebuilds of the configuration snapshot from the store.")
                    .const_label("result", result),
            )
            .expect("valid metric")
        };
        let metrics = Metrics {
            http_requests,
            http_duration,
            evaluations,
            snapshot_hits: reads("hit"),
            snapshot_stale_reads: reads("stale"),
            reloads_ok: reloads("ok"),
            reloads_failed: reloads("error"),
            snapshot_hit_ratio: Gauge::new(
                "vexil_config_snapshot_hit_ratio",
                "Share of snapshot reads that saw the current revision.",
            )
            .expect("valid metric"),
            snapshot_age: Gauge::new("vexil_config_snapshot_age_seconds", "Seconds since the snapshot was built.")
                .expect("valid metric"),
            snapshot_revision: IntGauge::new("vexil_config_revision", "Store revision of the loaded snapshot.")
                .expect("valid metric"),
            snapshot_flags: IntGauge::new("vexil_config_flags", "Flags in the loaded snapshot.").expect("valid metric"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.http_requests.clone()),
            Box::new(metrics.http_duration.clone()),
            Box::new(metrics.evaluations.clone()),
            Box::new(metrics.snapshot_hits.clone()),
            Box::new(metrics.snapshot_stale_reads.clone()),
            Box::new(metrics.reloads_ok.clone()),
            Box::new(metrics.reloads_failed.clone()),
            Box::new(metrics.snapshot_hit_ratio.clone()),
            Box::new(metrics.snapshot_age.clone()),
            Box::new(metrics.snapshot_revision.clone()),
            Box::new(metrics.snapshot_flags.clone()),
        ];
        metrics.register(collectors);
        Arc::new(metrics)
    }

    /// Adds metrics kept by another part of the service (the event pipeline, the safety rails)
    /// to `/metrics`.
    pub fn register(&self, collectors: impl IntoIterator<Item = Box<dyn prometheus::core::Collector>>) {
        for collector in collectors {
            self.registry.register(collector).expect("metric names are unique");
        }
    }

    /// The counters of one flag, each resolved on its first use.
    pub fn flag_counters(&self, flag: &str) -> FlagCounters {
        FlagCounters(Arc::new(LazyCounters {
            evaluations: self.evaluations.clone(),
            flag: flag.into(),
            by_reason: Default::default(),
        }))
    }

    /// The Prometheus text exposition, after refreshing the values computed at scrape time.
    pub fn render(&self, snapshot_age_seconds: f64, revision: u64, flags: usize) -> String {
        let hits = self.snapshot_hits.get() as f64;
        let total = hits + self.snapshot_stale_reads.get() as f64;
        self.snapshot_hit_ratio.set(if total == 0.0 { 1.0 } else { hits / total });
        self.snapshot_age.set(snapshot_age_seconds);
        self.snapshot_revision.set(i64::try_from(revision).unwrap_or(i64::MAX));
        self.snapshot_flags.set(i64::try_from(flags).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding never fails");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Middleware: counts and times every request under its route pattern (not its raw path, so
/// the label set stays small).
pub async fn track_requests(
    State((metrics, routes)): State<(Arc<Metrics>, Arc<RouteLabels>)>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = routes.label(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let labels = [method.as_str(), route, status.as_str()];
    metrics.http_requests.with_label_values(&labels).inc();
    metrics.http_duration.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
    response
}

/// The route label of a request path: the route table's pattern it matches
/// (`/v1/flags/{key}/evaluate`), or `unmatched`.
///
/// The metrics layer runs outside the router (see `middleware::apply`), where axum's
/// `MatchedPath` is not known yet, so it matches paths itself with the router's own matcher.
pub struct RouteLabels(matchit::Router<&'static str>);

impl RouteLabels {
    pub fn new(paths: impl IntoIterator<Item = &'static str>) -> RouteLabels {
        // A path served by several methods is listed once per method; one entry is enough.
        let paths: std::collections::BTreeSet<&'static str> = paths.into_iter().collect();
        let mut router = matchit::Router::new();
        for path in paths {
            router.insert(path, path).expect("the router accepted the same paths with the same matcher");
        }
        RouteLabels(router)
    }

    pub fn label(&self, path: &str) -> &'static str {
        self.0.at(path).map_or("unmatched", |m| *m.value)
    }
}
