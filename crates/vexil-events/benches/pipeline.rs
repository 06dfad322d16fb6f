//! Durable ingest (500-event batches from many concurrent appenders, with batch latency
//! percentiles) and processing throughput (dedupe → enrich → aggregate → counters → archive →
//! commit) of the embedded pipeline.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vexil_core::experiment::{decode_experiment, CompiledExperiment};
use vexil_core::FlagSet;
use vexil_events::archive::LocalArchive;
use vexil_events::pipeline::{production, Pipeline, PipelineOptions, StateCache};
use vexil_events::sqlite::SqliteBackend;
use vexil_events::{BodyFormat, Dlq, EventBus, FileLog, IngestOptions, Ingestor, LogOptions, Metrics};

const BATCH: usize = 500;
const APPENDERS: usize = 32;

/// A batch; with `ids`, sender-given event ids (unique per seed), else generated ones, so a
/// body sent again is appended again.
fn body(seed: usize, ids: bool) -> Vec<u8> {
    let events: Vec<_> = (0..BATCH)
        .map(|i| {
            let mut e = json!({"event": if i % 3 == 0 { "purchase" } else { "page_load" },
                   "user_id": format!("user_{}", (seed * 7 + i) % 10_000), "value": (i % 50) as f64,
                   "timestamp": "2026-01-01T10:00:00Z", "properties": {"currency": "EUR", "path": "/checkout"}});
            if ids {
                e["event_id"] = json!(format!("{seed}-{i}"));
            }
            e
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let log: Arc<dyn EventBus> = Arc::new(FileLog::open(dir.path().join("log"), LogOptions::default()).unwrap());
    let dlq = Arc::new(Dlq::open(&dir.path().join("dlq.sqlite"), metrics.clone()).unwrap());
    let ingestor = Arc::new(Ingestor::new(log, dlq, metrics, IngestOptions::default()));
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..64).map(|seed| body(seed, false)).collect());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements((BATCH * APPENDERS) as u64));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("durable_500_event_batches", APPENDERS), |b| {
        b.iter_custom(|iters| {
            let (ingestor, bodies, latencies) = (ingestor.clone(), bodies.clone(), latencies.clone());
            runtime.block_on(async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..APPENDERS)
                    .map(|a| {
                        let (ingestor, bodies, latencies) = (ingestor.clone(), bodies.clone(), latencies.clone());
                        tokio::spawn(async move {
                            for i in 0..iters as usize {
                                let t = Instant::now();
                                let r =
                                    ingestor.ingest(&bodies[(a + i) % bodies.len()], BodyFormat::Auto).await.unwrap();
                                assert!(r.rejected.is_empty());
                                latencies.lock().unwrap().push(t.elapsed());
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    let mut all = latencies.lock().unwrap().clone();
    // Empty when a filter (`cargo bench -- process`) skipped this group.
    if all.is_empty() {
        return;
    }
    all.sort();
    eprintln!(
        "ingest batch latency over {} batches: p50 {:?}, p99 {:?}",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
}

fn experiments() -> Vec<Arc<CompiledExperiment>> {
    let experiment = decode_experiment(&json!({"key": "exp", "variants": [{"key": "a"}, {"key": "b"}], "metrics": [
        {"key": "conv", "kind": "conversion", "event": "purchase"},
        {"key": "revenue", "kind": "sum", "event": "purchase"},
        {"key": "load", "kind": "mean", "event": "page_load"}]}))
    .unwrap();
    vec![Arc::new(CompiledExperiment::compile(experiment, &FlagSet::empty()).unwrap())]
}

/// The time the embedded pipeline takes to process the `EVENTS` events `bodies` gives (appended
/// before it starts), from start to caught up.
fn time_processing(runtime: &tokio::runtime::Runtime, bodies: impl Iterator<Item = Vec<u8>>) -> Duration {
    time_processing_after(runtime, std::iter::empty(), bodies, PipelineOptions::default())
}

/// [`time_processing`] of `bodies` by a pipeline with `options`, after `earlier` was processed
/// by one of its own (not timed): the timed one starts from its state.
fn time_processing_after(
    runtime: &tokio::runtime::Runtime,
    earlier: impl Iterator<Item = Vec<u8>>,
    mut bodies: impl Iterator<Item = Vec<u8>>,
    options: PipelineOptions,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let log = Arc::new(FileLog::open(dir.path().join("log"), LogOptions::default()).unwrap());
    let dlq = Arc::new(Dlq::open(&dir.path().join("dlq.sqlite"), metrics.clone()).unwrap());
    let bus: Arc<dyn EventBus> = log.clone();
    let ingestor = Ingestor::new(bus.clone(), dlq.clone(), metrics.clone(), IngestOptions::default());
    let ingest = |bodies: &mut dyn Iterator<Item = Vec<u8>>| {
        runtime.block_on(async {
            for body in bodies {
                ingestor.ingest(&body, BodyFormat::Auto).await.unwrap();
            }
        })
    };
    let archive = Arc::new(LocalArchive::open(dir.path().join("archive")).unwrap());
    let state = Arc::new(SqliteBackend::open(dir.path().join("state.sqlite")).unwrap());
    let start_pipeline = || {
        let (bus, state, dlq, archive) = (bus.clone(), state.clone(), dlq.clone(), archive.clone());
        Pipeline::start(bus, state, dlq, archive, production(experiments()), metrics.clone(), options.clone()).unwrap()
    };
    let mut earlier = earlier.peekable();
    if earlier.peek().is_some() {
        ingest(&mut earlier);
        let pipeline = start_pipeline();
        assert!(pipeline.wait_caught_up(Duration::from_secs(300)));
        pipeline.stop();
    }
    ingest(&mut bodies);
    let start = Instant::now();
    let pipeline = start_pipeline();
    assert!(pipeline.wait_caught_up(Duration::from_secs(300)));
    let elapsed = start.elapsed();
    pipeline.stop();
    elapsed
}

const EVENTS: usize = 100_000;

fn process(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("process");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    // 10,000 users exposed, then their events with sender-given ids.
    group.bench_function("events", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let exposures: Vec<_> = (0..10_000)
                        .map(|u| {
                            json!({"event_id": format!("x{u}"), "event": "exposure", "type": "exposure",
                            "user_id": format!("user_{u}"), "experiment_key": "exp",
                            "variant": if u % 2 == 0 { "a" } else { "b" }, "timestamp": "2026-01-01T09:00:00Z"})
                        })
                        .collect();
                    let exposures = exposures.chunks(5000).map(|chunk| serde_json::to_vec(chunk).unwrap());
                    let events = (0..(EVENTS - 10_000) / BATCH).map(|seed| body(seed, true));
                    time_processing(&runtime, exposures.chain(events))
                })
                .sum()
        })
    });
    // Users never seen before, each exposed and then purchasing once (the events of
    // scripts/bench/events-users.lua): every event makes state and joins unique users.
    group.bench_function("new_users", |b| {
        b.iter_custom(|iters| {
            (0..iters).map(|_| time_processing(&runtime, (0..EVENTS / BATCH).map(new_users_body))).sum()
        })
    });
    // Users processed before, drawn at random from many more than memory keeps (the returning
    // users of scripts/bench/scale-users.sh): every user is read from the store and rewritten.
    group.bench_function("returning_users", |b| {
        let options = PipelineOptions {
            state_cache: StateCache { users: RETURNING_USERS_KEPT, members: 10 * RETURNING_USERS_KEPT },
            ..PipelineOptions::default()
        };
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let known = (0..KNOWN_USERS * 2 / BATCH).map(new_users_body);
                    let mut draws = StdRng::seed_from_u64(7);
                    let returning = (0..EVENTS / BATCH).map(|_| users_body(&mut draws, KNOWN_USERS));
                    time_processing_after(&runtime, known, returning, options.clone())
                })
                .sum()
        })
    });
    group.finish();
}

/// Users `process/returning_users` has processed before it is timed, and how many of them the
/// pipeline keeps in memory.
const KNOWN_USERS: usize = 200_000;
const RETURNING_USERS_KEPT: usize = 10_000;

/// A batch of 250 users never seen before (the `batch`-th), each exposed to `exp` and then
/// purchasing once, with generated ids and the receive time as their time.
fn new_users_body(batch: usize) -> Vec<u8> {
    users_body_of((0..BATCH / 2).map(|i| (batch * BATCH / 2 + i, i % 100)))
}

/// The same of 250 users drawn uniformly from the first `known`.
fn users_body(draws: &mut StdRng, known: usize) -> Vec<u8> {
    users_body_of((0..BATCH / 2).map(|_| draws.gen_range(0..known)).map(|n| (n, n % 100)))
}

/// A batch of each `(user number, purchase value)`'s exposure (variant by the number's parity)
/// and purchase.
fn users_body_of(users: impl Iterator<Item = (usize, usize)>) -> Vec<u8> {
    let events: Vec<_> = users
        .flat_map(|(n, value)| {
            let user = format!("u{n}");
            let variant = if n % 2 == 0 { "a" } else { "b" };
            [
                json!({"event": "exposure", "type": "exposure", "user_id": user, "experiment_key": "exp",
                       "variant": variant}),
                json!({"event": "purchase", "user_id": user, "value": value}),
            ]
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

criterion_group!(benches, ingest, process);
criterion_main!(benches);
