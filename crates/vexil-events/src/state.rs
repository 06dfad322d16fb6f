//! The processor's state: users' assignments and metric values, the aggregates, the counters,
//! and the checkpoint, in memory for speed and in one SQLite database for durability.
//!
//! Every change made while processing a batch is written in one transaction together with the
//! dedupe ids, the archive's open buffers and the next offset to process. After a crash or a
//! failed step the in-memory state is dropped and loaded again from that database, and the log
//! is read again from the checkpoint: the only recovery path there is, shared by crashes and
//! retries.

use crate::aggregate::{CompiledMetric, Sums};
use crate::archive::OpenFile;
use crate::counters::{CounterKey, Counters, Window, EVALUATION_PREFIX};
use crate::enrich::{Exposure, MetricValue, UserState};
use crate::error::Error;
use crate::event::{EvaluationCounts, EventType, StoredEvent};
use crate::metrics::Metrics;
use rusqlite::{params, Connection, Transaction};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use vexil_core::experiment::CompiledExperiment;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dedupe (event_id TEXT PRIMARY KEY, log_offset INTEGER NOT NULL, seen_at INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_seen_at ON dedupe (seen_at);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aggregates (
    experiment TEXT NOT NULL, variant TEXT NOT NULL, metric TEXT NOT NULL,
    n INTEGER NOT NULL, sum_x REAL NOT NULL, sum_x2 REAL NOT NULL,
    sum_y REAL NOT NULL, sum_y2 REAL NOT NULL, sum_xy REAL NOT NULL,
    PRIMARY KEY (experiment, variant, metric)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
    experiment TEXT NOT NULL, variant TEXT NOT NULL,
    count INTEGER NOT NULL, sum REAL NOT NULL, users INTEGER NOT NULL,
    PRIMARY KEY (window, event, experiment, start, variant)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS counters_key ON counters (window, start, event, experiment, variant);
CREATE TABLE IF NOT EXISTS counter_users (
    window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
    experiment TEXT NOT NULL, variant TEXT NOT NULL, user_id TEXT NOT NULL,
    PRIMARY KEY (window, start, event, experiment, variant, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive_open (
    partition TEXT PRIMARY KEY, first_offset INTEGER NOT NULL, first_received INTEGER NOT NULL) WITHOUT ROWID;
";

/// Opens the state database, creating its tables.
pub(crate) fn open_db(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

type AggregateKey = (String, String, String);

/// One experiment being aggregated: the core's compiled experiment (for metric filters) and its
/// metrics ready to apply.
struct Aggregated {
    experiment: Arc<CompiledExperiment>,
    metrics: Vec<CompiledMetric>,
}

/// The experiments being aggregated, by key.
pub(crate) struct Experiments(HashMap<String, Aggregated>);

impl Experiments {
    pub fn new(experiments: &[Arc<CompiledExperiment>]) -> Experiments {
        let by_key = experiments
            .iter()
            .map(|compiled| {
                let experiment = compiled.experiment();
                let metrics = experiment.metrics.iter().enumerate().map(|(i, m)| CompiledMetric::new(i, m)).collect();
                (experiment.key.clone(), Aggregated { experiment: compiled.clone(), metrics })
            })
            .collect();
        Experiments(by_key)
    }

    fn metrics(&self, experiment: &str) -> &[CompiledMetric] {
        self.0.get(experiment).map_or(&[], |a| &a.metrics)
    }
}

/// The in-memory state, and what changed since the last commit.
pub(crate) struct State {
    pub next_offset: u64,
    pub open_files: Vec<OpenFile>,
    users: HashMap<String, UserState>,
    sums: HashMap<AggregateKey, Sums>,
    counters: Counters,
    dirty_users: HashSet<String>,
    dirty_sums: HashSet<AggregateKey>,
}

impl State {
    /// Loads the committed state.
    pub fn load(conn: &Connection) -> Result<State, Error> {
        let next_offset: i64 = conn
            .query_row("SELECT next_offset FROM checkpoint WHERE id = 0", [], |r| r.get(0))
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(0) } else { Err(e) })?;
        let mut users = HashMap::new();
        let mut stmt = conn.prepare("SELECT user_id, state FROM users")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let state: String = row.get(1)?;
            users.insert(row.get(0)?, serde_json::from_str(&state)?);
        }
        let mut sums = HashMap::new();
        let mut stmt = conn
            .prepare("SELECT experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy FROM aggregates")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let key = (r.get(0)?, r.get(1)?, r.get(2)?);
            sums.insert(key, Sums::from_row(r, 3)?);
        }
        let mut stmt = conn.prepare("SELECT partition, first_offset, first_received FROM archive_open")?;
        let open_files = stmt
            .query_map([], |r| {
                Ok(OpenFile {
                    partition: r.get(0)?,
                    first_offset: r.get::<_, i64>(1)? as u64,
                    first_received: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(State {
            next_offset: next_offset as u64,
            open_files,
            users,
            sums,
            counters: Counters::default(),
            dirty_users: HashSet::new(),
            dirty_sums: HashSet::new(),
        })
    }

    /// Where reading must start: the checkpoint, or earlier if an archive buffer began earlier.
    pub fn replay_from(&self) -> u64 {
        self.open_files.iter().map(|o| o.first_offset).min().unwrap_or(self.next_offset).min(self.next_offset)
    }

    /// The experiments (and variants) `stored` belongs to at its timestamp, after applying it
    /// to assignments and aggregates (the enrich and aggregate stages).
    pub fn apply_event(
        &mut self,
        experiments: &Experiments,
        stored: &StoredEvent,
        metrics: &Metrics,
    ) -> Vec<(String, String)> {
        let event = &stored.event;
        let at = event.timestamp.timestamp_millis();
        let user = self.users.entry(event.user_id.clone()).or_default();
        let mut changed = false;
        if let (EventType::Exposure, Some(experiment), Some(variant)) =
            (event.kind, &event.experiment_key, &event.variant)
        {
            let before = user.assignments.iter().find(|a| &a.experiment == experiment).map(|a| a.first_exposure);
            match user.expose(experiment, variant, at) {
                Exposure::New => {
                    changed = true;
                    for metric in experiments.metrics(experiment) {
                        let key = (experiment.clone(), variant.clone(), metric.key.clone());
                        self.sums.entry(key.clone()).or_default().n += 1;
                        self.dirty_sums.insert(key);
                    }
                }
                Exposure::Known => changed = before.is_some_and(|first| at < first),
                Exposure::Conflict => Metrics::add(&metrics.variant_conflicts_total, 1),
            }
        }
        let mut attribution = Vec::new();
        let active: Vec<usize> = user.active_at(at).collect();
        for i in active {
            let assignment = &mut user.assignments[i];
            attribution.push((assignment.experiment.clone(), assignment.variant.clone()));
            let Some(aggregated) = experiments.0.get(&assignment.experiment) else { continue };
            for metric in &aggregated.metrics {
                let Some((dx, dy)) = metric.delta(&aggregated.experiment, event) else { continue };
                let value = match assignment.values.iter_mut().position(|v| v.metric == metric.key) {
                    Some(j) => &mut assignment.values[j],
                    None => {
                        assignment.values.push(MetricValue { metric: metric.key.clone(), x: 0.0, y: 0.0 });
                        assignment.values.last_mut().expect("just pushed")
                    }
                };
                let old = metric.contribution((value.x, value.y));
                value.x += dx;
                value.y += dy;
                let new = metric.contribution((value.x, value.y));
                let key = (assignment.experiment.clone(), assignment.variant.clone(), metric.key.clone());
                let sums = self.sums.entry(key.clone()).or_default();
                sums.apply(old, -1.0);
                sums.apply(new, 1.0);
                self.dirty_sums.insert(key);
                changed = true;
            }
        }
        if changed {
            self.dirty_users.insert(event.user_id.clone());
        }
        attribution
    }

    /// The experiments (and variants) `stored` belongs to, without changing anything (for
    /// records replayed into the archive only).
    pub fn attribution(&self, stored: &StoredEvent) -> Vec<(String, String)> {
        let at = stored.event.timestamp.timestamp_millis();
        let Some(user) = self.users.get(&stored.event.user_id) else { return Vec::new() };
        user.active_at(at)
            .map(|i| (user.assignments[i].experiment.clone(), user.assignments[i].variant.clone()))
            .collect()
    }

    /// Counts an event into its hourly and daily counters, overall and per variant.
    pub fn count_event(
        &mut self,
        conn: &Connection,
        stored: &StoredEvent,
        attribution: &[(String, String)],
    ) -> Result<(), Error> {
        let event = &stored.event;
        let at = event.timestamp.timestamp_millis();
        let value = event.value.unwrap_or(0.0);
        for window in Window::BOTH {
            let start = window.start_of(at);
            let key = |experiment: &str, variant: &str| CounterKey {
                window,
                start,
                event: event.event.clone(),
                experiment: experiment.to_owned(),
                variant: variant.to_owned(),
            };
            self.counters.add_event(conn, key("", ""), &event.user_id, value)?;
            for (experiment, variant) in attribution {
                self.counters.add_event(conn, key(experiment, variant), &event.user_id, value)?;
            }
        }
        Ok(())
    }

    /// Adds flushed evaluation counts to the `$evaluation:<flag>` counters.
    pub fn count_evaluations(&mut self, conn: &Connection, counts: &EvaluationCounts) -> Result<(), Error> {
        for (flag, variant, n) in &counts.counts {
            for window in Window::BOTH {
                let key = CounterKey {
                    window,
                    start: window.start_of(counts.hour * 1000),
                    event: format!("{EVALUATION_PREFIX}{flag}"),
                    experiment: String::new(),
                    variant: variant.clone(),
                };
                self.counters.add_count(conn, key, *n)?;
            }
        }
        Ok(())
    }

    /// Writes what changed, the archive's open buffers and the checkpoint; commits.
    pub fn commit(&mut self, tx: Transaction<'_>, next_offset: u64, open_files: Vec<OpenFile>) -> Result<(), Error> {
        {
            let mut put_user = tx.prepare_cached("INSERT OR REPLACE INTO users (user_id, state) VALUES (?1, ?2)")?;
            for user_id in self.dirty_users.drain() {
                put_user.execute(params![user_id, serde_json::to_string(&self.users[&user_id])?])?;
            }
            let mut put_sums = tx.prepare_cached(
                "INSERT OR REPLACE INTO aggregates (experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for key in self.dirty_sums.drain() {
                let s = self.sums[&key];
                put_sums.execute(params![
                    key.0, key.1, key.2, s.n as i64, s.sum_x, s.sum_x2, s.sum_y, s.sum_y2, s.sum_xy
                ])?;
            }
            self.counters.commit(&tx)?;
            tx.execute("DELETE FROM archive_open", [])?;
            let mut put_open = tx.prepare_cached(
                "INSERT INTO archive_open (partition, first_offset, first_received) VALUES (?1, ?2, ?3)",
            )?;
            for open in &open_files {
                put_open.execute(params![open.partition, open.first_offset as i64, open.first_received])?;
            }
            tx.execute(
                "INSERT INTO checkpoint (id, next_offset) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET next_offset = excluded.next_offset",
                [next_offset as i64],
            )?;
        }
        tx.commit()?;
        self.next_offset = next_offset;
        self.open_files = open_files;
        Ok(())
    }
}
