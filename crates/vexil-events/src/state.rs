//! The processor's state of one log partition: its users' assignments and metric values, the
//! aggregates, the counters and the checkpoint, in memory for speed and in a
//! [`PartitionStore`] for durability.
//!
//! Every change made while processing a batch is written in one transaction together with the
//! dedupe ids, the archive's open buffers and the next offset to process. After a crash or a
//! failed step the in-memory state is dropped and loaded again from the store, and the log is
//! read again from the checkpoint: the only recovery path there is, shared by crashes,
//! retries and a partition taken over by another node.

use crate::aggregate::{AggregateKey, CompiledMetric, Sums};
use crate::archive::OpenFile;
use crate::counters::{Contribution, CounterRef, Counters, Window, EVALUATION_PREFIX};
use crate::enrich::{Exposure, MetricValue, UserState};
use crate::error::Error;
use crate::event::{EvaluationCounts, EventType, StoredEvent};
use crate::metrics::Metrics;
use crate::store::{Changes, FirstDelivery, PartitionStore};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use vexil_core::experiment::CompiledExperiment;

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
    pub fn load(store: &mut dyn PartitionStore) -> Result<State, Error> {
        let committed = store.load()?;
        Ok(State {
            next_offset: committed.next_offset,
            open_files: committed.open_files,
            users: committed.users,
            sums: committed.sums,
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
        let exposure = event.kind == EventType::Exposure;
        // A user who was never exposed belongs to no experiment: nothing to keep for them.
        if !self.users.contains_key(&event.user_id) {
            if !exposure {
                return Vec::new();
            }
            self.users.insert(event.user_id.clone(), UserState::default());
        }
        let user = self.users.get_mut(&event.user_id).expect("present");
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

    /// Adds the counter contributions of a batch's events (see [`event_contributions`]).
    pub fn count(&mut self, store: &mut dyn PartitionStore, contributions: &[Contribution<'_>]) -> Result<(), Error> {
        self.counters.add(store, contributions)
    }

    /// Adds flushed evaluation counts to the `$evaluation:<flag>` counters.
    pub fn count_evaluations(
        &mut self,
        store: &mut dyn PartitionStore,
        counts: &EvaluationCounts,
    ) -> Result<(), Error> {
        let events: Vec<String> =
            counts.counts.iter().map(|(flag, _, _)| format!("{EVALUATION_PREFIX}{flag}")).collect();
        let mut contributions = Vec::with_capacity(events.len() * 2);
        for (event, (_, variant, n)) in events.iter().zip(&counts.counts) {
            for window in Window::BOTH {
                let start = window.start_of(counts.hour * 1000);
                let key = CounterRef { window, start, event, experiment: "", variant };
                contributions.push(Contribution { key, user: None, count: *n, value: 0.0 });
            }
        }
        self.counters.add(store, &contributions)
    }

    /// Writes what changed, the new dedupe ids, the archive's open buffers and the checkpoint
    /// in one transaction.
    pub fn commit(
        &mut self,
        store: &mut dyn PartitionStore,
        next_offset: u64,
        open_files: Vec<OpenFile>,
        deliveries: &[FirstDelivery],
        expire_deliveries_before: Option<i64>,
    ) -> Result<(), Error> {
        let changes = Changes {
            next_offset,
            users: self.dirty_users.iter().map(|u| (u.as_str(), &self.users[u])).collect(),
            sums: self.dirty_sums.iter().map(|k| (k, &self.sums[k])).collect(),
            counters: self.counters.changed(),
            counter_users: self.counters.new_members(),
            deliveries,
            expire_deliveries_before,
            open_files: &open_files,
        };
        store.commit(changes)?;
        self.dirty_users.clear();
        self.dirty_sums.clear();
        self.counters.committed();
        self.next_offset = next_offset;
        self.open_files = open_files;
        Ok(())
    }
}

/// The counter contributions of one event: its hourly and daily counters, overall and per
/// variant it is attributed to.
pub(crate) fn event_contributions<'a>(
    stored: &'a StoredEvent,
    attribution: &'a [(String, String)],
    out: &mut Vec<Contribution<'a>>,
) {
    let event = &stored.event;
    let at = event.timestamp.timestamp_millis();
    let value = event.value.unwrap_or(0.0);
    let user = Some(event.user_id.as_str());
    for window in Window::BOTH {
        let start = window.start_of(at);
        let key = |experiment, variant| CounterRef { window, start, event: &event.event, experiment, variant };
        out.push(Contribution { key: key("", ""), user, count: 1, value });
        for (experiment, variant) in attribution {
            out.push(Contribution { key: key(experiment, variant), user, count: 1, value });
        }
    }
}
