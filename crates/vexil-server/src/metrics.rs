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

use arc_swap::ArcSwap;
use axum::http::{Method, StatusCode};
use foldhash::fast::FixedState;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
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
    environment: Box<str>,
    flag: Box<str>,
    by_reason: [OnceLock<IntCounter>; Reason::ALL.len()],
}

impl FlagCounters {
    pub fn count(&self, reason: Reason) {
        let counters = &self.0;
        counters.by_reason[reason as usize]
            .get_or_init(|| {
                counters.evaluations.with_label_values(&[&counters.environment, &counters.flag, reason.name()])
            })
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
            Opts::new("vexil_evaluations_total", "Flag evaluations, by environment, flag and reason."),
            &["environment", "flag", "reason"],
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
            snapshot_revision: IntGauge::new(
                "vexil_config_revision",
                "Store revision the served configuration is known to be current at.",
            )
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
    pub fn flag_counters(&self, environment: &str, flag: &str) -> FlagCounters {
        FlagCounters(Arc::new(LazyCounters {
            evaluations: self.evaluations.clone(),
            environment: environment.into(),
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

/// The request counter and latency histogram of each (route, method, status), resolved from the
/// metric vectors once per combination: `with_label_values` hashes three strings and takes a
/// lock, which on the evaluation route cost more than the evaluation itself.
///
/// The edge layer runs outside the router (see `middleware::Edge`), where axum's `MatchedPath`
/// is not known yet, so the route label comes from the router's own matcher over the route
/// table's patterns (`/v1/flags/{key}/evaluate`, not the raw path, so the label set stays
/// small); paths no route serves are `unmatched`. Methods beyond the standard ones are `other`,
/// so a client cannot grow the label set either.
pub struct RequestMetrics {
    routes: matchit::Router<u16>,
    labels: Vec<&'static str>,
    requests: IntCounterVec,
    duration: HistogramVec,
    resolved: ArcSwap<HashMap<u64, (IntCounter, Histogram), FixedState>>,
    resolving: Mutex<()>,
}

/// A request's route, as [`RequestMetrics::route`] matched it.
#[derive(Debug, Clone, Copy)]
pub struct RouteId(u16);

const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

impl RequestMetrics {
    /// The request metrics of `metrics` for the routes at `paths` (a path served by several
    /// methods may be listed once per method).
    pub fn new(metrics: &Metrics, paths: impl IntoIterator<Item = &'static str>) -> RequestMetrics {
        let paths: std::collections::BTreeSet<&'static str> = paths.into_iter().collect();
        let mut routes = matchit::Router::new();
        let mut labels = Vec::with_capacity(paths.len() + 1);
        for path in paths {
            let id = u16::try_from(labels.len()).expect("fewer than 65,536 routes");
            routes.insert(path, id).expect("the router accepted the same paths with the same matcher");
            labels.push(path);
        }
        labels.push("unmatched");
        RequestMetrics {
            routes,
            labels,
            requests: metrics.http_requests.clone(),
            duration: metrics.http_duration.clone(),
            resolved: ArcSwap::default(),
            resolving: Mutex::new(()),
        }
    }

    /// The route serving `path`.
    pub fn route(&self, path: &str) -> RouteId {
        let unmatched = self.labels.len() - 1;
        RouteId(self.routes.at(path).map_or(unmatched as u16, |m| *m.value))
    }

    /// Counts one answered request and its time to answer.
    pub fn record(&self, route: RouteId, method: &Method, status: StatusCode, elapsed: Duration) {
        let method_index = STANDARD_METHODS.iter().position(|m| m == method).unwrap_or(STANDARD_METHODS.len());
        let key = (u64::from(route.0) << 32) | ((method_index as u64) << 16) | u64::from(status.as_u16());
        let seconds = elapsed.as_secs_f64();
        if let Some((count, time)) = self.resolved.load().get(&key) {
            count.inc();
            time.observe(seconds);
            return;
        }
        let _only_one_resolves = self.resolving.lock().expect("request metrics lock poisoned");
        let mut resolved = HashMap::clone(&self.resolved.load());
        let method_label = STANDARD_METHODS.get(method_index).map_or("other", Method::as_str);
        let labels = [method_label, self.labels[usize::from(route.0)], status.as_str()];
        let (count, time) = resolved
            .entry(key)
            .or_insert_with(|| (self.requests.with_label_values(&labels), self.duration.with_label_values(&labels)))
            .clone();
        self.resolved.store(Arc::new(resolved));
        count.inc();
        time.observe(seconds);
    }
}
