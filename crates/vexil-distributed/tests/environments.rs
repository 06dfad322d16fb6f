//! Two environments' events through the distributed mode's processing state (PostgreSQL,
//! `VEXIL_TEST_DATABASE_URL`): the same experiment key, the same users and the same event ids
//! in production and staging are kept apart by their qualified names in the shared tables, and
//! each environment reads back only its own aggregates and counters. (The bus only carries the
//! records, which hold their environment; the file log stands in for the broker here.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use vexil_core::experiment::{decode_experiment, CompiledExperiment};
use vexil_core::FlagSet;
use vexil_distributed::group::GroupOptions;
use vexil_distributed::processing::PostgresBackend;
use vexil_events::archive::LocalArchive;
use vexil_events::counters::Window;
use vexil_events::pipeline::{Pipeline, PipelineOptions};
use vexil_events::store::ProcessingBackend;
use vexil_events::{BodyFormat, Dlq, EventBus, FileLog, IngestOptions, Ingestor, LogOptions, Metrics};
use vexil_store::testkit::postgres::fresh_database;

fn experiment() -> Vec<Arc<CompiledExperiment>> {
    let flags = FlagSet::from_value(&json!({"flags": [], "segments": []})).unwrap();
    let document = json!({"key": "checkout", "variants": [{"key": "control"}, {"key": "treatment"}],
        "metrics": [{"key": "revenue", "kind": "sum", "event": "purchase"}]});
    vec![Arc::new(CompiledExperiment::compile(decode_experiment(&document).unwrap(), &flags).unwrap())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_environment_reads_its_own_aggregates_and_counters() {
    let Some(url) = fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(PostgresBackend::connect(&url, "events", 1, GroupOptions::default()).await.unwrap());
    let metrics = Arc::new(Metrics::default());
    let log = Arc::new(FileLog::open(dir.path().join("log"), LogOptions::default()).unwrap());
    let bus: Arc<dyn EventBus> = log.clone();
    let dlq = Arc::new(Dlq::open(&dir.path().join("dlq.sqlite"), metrics.clone()).unwrap());
    let archive = Arc::new(LocalArchive::open(dir.path().join("archive")).unwrap());
    let experiments = BTreeMap::from([(None, experiment()), (Some("staging".to_owned()), experiment())]);
    let options = PipelineOptions { idle_poll: Duration::from_millis(20), ..PipelineOptions::default() };
    let pipeline =
        Pipeline::start(bus.clone(), backend.clone(), dlq.clone(), archive, experiments, metrics.clone(), options)
            .unwrap();
    let ingestor = Ingestor::new(bus, dlq, metrics, IngestOptions::default());

    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let batch = |variant: &str, value: f64| {
        json!([
            {"event": "exposure", "type": "exposure", "user_id": "u1", "experiment_key": "checkout",
             "variant": variant, "timestamp": at, "event_id": "x1"},
            {"event": "purchase", "user_id": "u1", "value": value, "event_id": "p1"},
        ])
        .to_string()
    };
    let production = ingestor.ingest_in(None, batch("control", 10.0).as_bytes(), BodyFormat::Auto).await.unwrap();
    let staging =
        ingestor.ingest_in(Some("staging"), batch("treatment", 70.0).as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!((production.accepted, staging.accepted), (2, 2));
    tokio::task::block_in_place(|| assert!(pipeline.wait_caught_up(Duration::from_secs(60))));

    let read = tokio::task::spawn_blocking(move || {
        let stats = backend.stats().unwrap();
        let revenue = |experiment: &str| -> Vec<(String, u64, f64)> {
            let rows = stats.aggregates(experiment).unwrap();
            rows.into_iter().map(|r| (r.variant, r.sums.n, r.sums.sum_x)).collect()
        };
        let (from, to) =
            (chrono::Utc::now() - chrono::Duration::days(2), chrono::Utc::now() + chrono::Duration::days(1));
        let sum = |event: &str| -> f64 {
            stats.event_counters(event, Window::Day, from, to).unwrap().iter().map(|r| r.counter.sum).sum()
        };
        (revenue("checkout"), revenue("staging/checkout"), sum("purchase"), sum("staging/purchase"))
    })
    .await
    .unwrap();
    assert_eq!(read.0, vec![("control".to_owned(), 1, 10.0)], "production's aggregates");
    assert_eq!(read.1, vec![("treatment".to_owned(), 1, 70.0)], "staging's aggregates");
    assert_eq!((read.2, read.3), (10.0, 70.0), "each environment's counters");
    tokio::task::block_in_place(|| pipeline.stop());
    log.close();
}
