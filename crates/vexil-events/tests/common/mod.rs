//! Shared test setup: a whole pipeline in a temporary directory, and a brute-force
//! recomputation of the aggregates from the archive.
#![allow(dead_code)]

use flate2::read::GzDecoder;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vexil_core::experiment::{decode_experiment, Aggregation, CompiledExperiment, MetricKind, MetricSource};
use vexil_core::FlagSet;
use vexil_events::aggregate::Sums;
use vexil_events::archive::LocalArchive;
use vexil_events::pipeline::{production, Pipeline, PipelineOptions, StateCache};
use vexil_events::sqlite::SqliteBackend;
use vexil_events::{Dlq, EventBus, FileLog, IngestOptions, Ingestor, LogOptions, Metrics};

pub struct Env {
    pub dir: PathBuf,
    pub log: Arc<FileLog>,
    pub dlq: Arc<Dlq>,
    pub metrics: Arc<Metrics>,
    pub ingestor: Ingestor,
    pub pipeline: Pipeline,
}

impl Env {
    pub fn open(dir: &Path, experiments: Vec<Arc<CompiledExperiment>>) -> Env {
        Env::open_with_cache(dir, experiments, StateCache::default())
    }

    /// A pipeline whose caches of users and unique-user memberships hold `cache`'s sizes.
    pub fn open_with_cache(dir: &Path, experiments: Vec<Arc<CompiledExperiment>>, cache: StateCache) -> Env {
        let options =
            PipelineOptions { idle_poll: Duration::from_millis(20), state_cache: cache, ..PipelineOptions::default() };
        Env::open_with_options(dir, experiments, options)
    }

    /// A pipeline tuned by `options`, over whatever the log in `dir` already holds.
    pub fn open_with_options(dir: &Path, experiments: Vec<Arc<CompiledExperiment>>, options: PipelineOptions) -> Env {
        let metrics = Arc::new(Metrics::default());
        let log = Arc::new(FileLog::open(dir.join("log"), LogOptions::default()).unwrap());
        let dlq = Arc::new(Dlq::open(&dir.join("dlq.sqlite"), metrics.clone()).unwrap());
        let bus: Arc<dyn EventBus> = log.clone();
        let ingestor = Ingestor::new(bus.clone(), dlq.clone(), metrics.clone(), IngestOptions::default());
        let archive = Arc::new(LocalArchive::open(dir.join("archive")).unwrap());
        let state =
            Arc::new(SqliteBackend::open(dir.join("state.sqlite")).unwrap().journaling(options.state_cache.users));
        let pipeline =
            Pipeline::start(bus, state, dlq.clone(), archive, production(experiments), metrics.clone(), options)
                .unwrap();
        Env { dir: dir.to_owned(), log, dlq, metrics, ingestor, pipeline }
    }

    /// Waits until everything appended so far is processed, then closes open archive files.
    pub fn settle(&self) {
        assert!(self.pipeline.wait_caught_up(Duration::from_secs(120)), "{:?}", self.pipeline.last_error());
        assert!(self.pipeline.flush(Duration::from_secs(60)));
    }

    pub fn archive(&self) -> Vec<Value> {
        read_archive(&self.dir.join("archive"))
    }
}

pub fn read_archive(root: &Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for file in LocalArchive::open(root).unwrap().files().unwrap() {
        let mut text = String::new();
        GzDecoder::new(std::fs::File::open(&file).unwrap()).read_to_string(&mut text).unwrap();
        lines.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    lines
}

/// The segment the fixtures' metric filters reference: purchases paid in euros.
fn segments() -> Value {
    json!([{"key": "eur_buyers", "when": {"attr": "currency", "op": "eq", "value": "EUR"}}])
}

/// Compiles experiment documents the way the server does: decoded, then compiled against a flag
/// set whose segments their filters may use.
pub fn compile(documents: Value) -> Vec<Arc<CompiledExperiment>> {
    let flags = FlagSet::from_value(&json!({"flags": [], "segments": segments()})).unwrap();
    let documents = documents.as_array().unwrap().iter();
    documents.map(|d| Arc::new(CompiledExperiment::compile(decode_experiment(d).unwrap(), &flags).unwrap())).collect()
}

pub fn experiments() -> Vec<Arc<CompiledExperiment>> {
    let variants = json!([{"key": "control"}, {"key": "treatment"}]);
    compile(json!([
        {"key": "exp_a", "variants": variants, "metrics": [
            {"key": "converted", "kind": "conversion", "event": "purchase"},
            {"key": "orders", "kind": "count", "event": "purchase"},
            {"key": "orders_eur", "kind": "count", "event": "purchase",
             "filter": {"attr": "currency", "op": "eq", "value": "EUR"}},
            {"key": "orders_eur_segment", "kind": "count", "event": "purchase",
             "filter": {"segment": "eur_buyers"}},
            {"key": "revenue", "kind": "sum", "event": "purchase", "cap": 150.0},
            {"key": "load_time", "kind": "mean", "event": "page_load"},
            {"key": "revenue_per_view", "kind": "ratio",
             "numerator": {"event": "purchase", "agg": "sum"},
             "denominator": {"event": "page_load", "agg": "count"}}]},
        {"key": "exp_b", "variants": variants, "metrics": [
            {"key": "views", "kind": "count", "event": "page_load"},
            {"key": "spend", "kind": "sum", "event": "purchase"}]}
    ]))
}

/// The `eq` condition a fixture filter stands for, with a segment reference resolved.
fn filter_condition(filter: &Value) -> Value {
    match filter.get("segment").and_then(Value::as_str) {
        Some(key) => segments().as_array().unwrap().iter().find(|s| s["key"] == key).unwrap()["when"].clone(),
        None => filter.clone(),
    }
}

/// Recomputes every aggregate from archived events, straight from the definitions (filters read
/// from their JSON form, not through the core's evaluation).
pub fn brute_force(
    events: &[Value],
    experiments: &[Arc<CompiledExperiment>],
) -> HashMap<(String, String, String), Sums> {
    let ts =
        |e: &Value| chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap().timestamp_millis();
    // (user, experiment) -> (variant, first exposure)
    let mut exposures: HashMap<(String, String), (String, i64)> = HashMap::new();
    for e in events.iter().filter(|e| e["type"] == "exposure") {
        let key = (e["user_id"].as_str().unwrap().to_owned(), e["experiment_key"].as_str().unwrap().to_owned());
        let entry = exposures.entry(key).or_insert((e["variant"].as_str().unwrap().to_owned(), i64::MAX));
        entry.1 = entry.1.min(ts(e));
    }
    let mut out: HashMap<(String, String, String), Sums> = HashMap::new();
    for def in experiments.iter().map(|e| e.experiment()) {
        for metric in &def.metrics {
            let mut per_user: HashMap<&str, (f64, f64)> = HashMap::new();
            for ((user, exp), _) in exposures.iter().filter(|((_, x), _)| *x == def.key) {
                let _ = exp;
                per_user.insert(user, (0.0, 0.0));
            }
            for e in events {
                let user = e["user_id"].as_str().unwrap();
                let Some((_, first)) = exposures.get(&(user.to_owned(), def.key.clone())) else { continue };
                if ts(e) < *first {
                    continue;
                }
                if let Some(filter) = &metric.filter {
                    let filter = filter_condition(&serde_json::to_value(filter).unwrap());
                    assert_eq!(filter["op"], "eq", "the brute force knows only eq filters");
                    let want = &filter["value"];
                    if e["properties"][filter["attr"].as_str().unwrap()] != *want {
                        continue;
                    }
                }
                let name = e["event"].as_str().unwrap();
                let value = e["value"].as_f64().unwrap_or(0.0);
                let entry = per_user.get_mut(user).unwrap();
                use MetricKind::*;
                let agg = |c: &MetricSource| match c.agg {
                    Aggregation::Sum => value,
                    Aggregation::Count => 1.0,
                };
                match metric.kind {
                    Conversion | Count if metric.event.as_deref() == Some(name) => entry.0 += 1.0,
                    Sum if metric.event.as_deref() == Some(name) => entry.0 += value,
                    Mean if metric.event.as_deref() == Some(name) => {
                        entry.0 += value;
                        entry.1 += 1.0;
                    }
                    Ratio => {
                        let (num, den) = (metric.numerator.as_ref().unwrap(), metric.denominator.as_ref().unwrap());
                        if num.event == name {
                            entry.0 += agg(num);
                        }
                        if den.event == name {
                            entry.1 += agg(den);
                        }
                    }
                    _ => {}
                }
            }
            for (user, (x, y)) in per_user {
                let variant = &exposures[&(user.to_owned(), def.key.clone())].0;
                let x = match metric.kind {
                    MetricKind::Conversion => f64::from(x > 0.0),
                    _ => metric.cap.map_or(x, |c| x.min(c)),
                };
                let s = out.entry((def.key.clone(), variant.clone(), metric.key.clone())).or_default();
                s.n += 1;
                s.apply((x, y), 1.0);
            }
        }
    }
    out
}

pub fn assert_sums_match(
    actual: &HashMap<(String, String, String), Sums>,
    expected: &HashMap<(String, String, String), Sums>,
) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    assert_eq!(actual.len(), expected.len(), "aggregate keys differ");
    for (key, want) in expected {
        let got = actual.get(key).unwrap_or_else(|| panic!("missing aggregate {key:?}"));
        assert_eq!(got.n, want.n, "n of {key:?}");
        for (a, b) in [
            (got.sum_x, want.sum_x),
            (got.sum_x2, want.sum_x2),
            (got.sum_y, want.sum_y),
            (got.sum_y2, want.sum_y2),
            (got.sum_xy, want.sum_xy),
        ] {
            assert!(close(a, b), "{key:?}: {got:?} vs {want:?}");
        }
    }
}

pub fn committed_sums(env: &Env, experiments: &[Arc<CompiledExperiment>]) -> HashMap<(String, String, String), Sums> {
    let stats = env.pipeline.stats().unwrap();
    let mut out = HashMap::new();
    for experiment in experiments {
        for row in stats.aggregates(&experiment.experiment().key).unwrap() {
            out.insert((row.experiment, row.variant, row.metric), row.sums);
        }
    }
    out
}

pub fn unique_ids(events: &[Value]) -> HashSet<String> {
    events.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}
