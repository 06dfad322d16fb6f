//! Exact, incremental experiment aggregates (SPEC 1.3 metric kinds, SPEC 5).
//!
//! Per experiment × variant × metric we keep the sufficient statistics over users — n, Σx, Σx²,
//! Σy, Σy², Σxy — which is everything the analysis needs. Each user's own values are kept too,
//! so when an event changes a user's value the old contribution is subtracted and the new one
//! added: the sums always equal a recomputation over users, without ever rescanning events.
//!
//! A user enters n (with x = y = 0) at their first exposure; events before it do not count.
//! The per-user value x and denominator y are, by kind:
//!
//! | kind         | x                                   | y                        |
//! |--------------|-------------------------------------|--------------------------|
//! | `conversion` | 1 if ≥ 1 matching event, else 0     | –                        |
//! | `count`      | matching events                     | –                        |
//! | `sum`        | Σ value of matching events          | –                        |
//! | `mean`       | Σ value                             | matching events          |
//! | `ratio`      | numerator agg (sum of value or count) | denominator agg        |
//!
//! `cap` winsorises x (for `mean` and `ratio`, the numerator) at the cap. The experiments are the
//! core's ([`CompiledExperiment`]): `filter` is evaluated by
//! [`CompiledExperiment::metric_accepts`], against the flag set the experiment was compiled
//! with, so a filter may reference segments.
//!
//! The stage is [`aggregate`], run on the user the [`enrich`](crate::enrich) stage found.

use crate::enrich::{Enriched, MetricValue};
use crate::environment;
use crate::event::Event;
use crate::pipeline::ExperimentsByEnv;
use foldhash::fast::RandomState;
use hashbrown::Equivalent;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use vexil_core::experiment::{Aggregation, CompiledExperiment, Metric, MetricKind, MetricSource};

/// One experiment being aggregated: the core's compiled experiment (for metric filters) and its
/// metrics ready to apply.
struct Aggregated {
    experiment: Arc<CompiledExperiment>,
    metrics: Vec<CompiledMetric>,
}

/// The experiments being aggregated, by qualified key (`staging/checkout`, see
/// [`crate::environment`]), as the users' assignments name them.
pub(crate) struct Experiments(HashMap<String, Aggregated>);

impl Experiments {
    /// Every environment's experiments.
    pub fn new(by_env: &ExperimentsByEnv) -> Experiments {
        let by_key = by_env
            .iter()
            .flat_map(|(env, experiments)| experiments.iter().map(move |compiled| (env.as_deref(), compiled)))
            .map(|(env, compiled)| {
                let experiment = compiled.experiment();
                let metrics = experiment.metrics.iter().enumerate().map(|(i, m)| CompiledMetric::new(i, m)).collect();
                let key = environment::qualify(env, &experiment.key).into_owned();
                (key, Aggregated { experiment: compiled.clone(), metrics })
            })
            .collect();
        Experiments(by_key)
    }

    fn metrics(&self, experiment: &str) -> &[CompiledMetric] {
        self.0.get(experiment).map_or(&[], |a| &a.metrics)
    }
}

/// The aggregates of one log partition in memory, and which of them changed since the last
/// commit. An event changes a few of them, found by borrowed key: no key is built for an
/// aggregate already in memory, and a changed one is noted once per commit.
pub(crate) struct Aggregates {
    sums: hashbrown::HashMap<AggregateKey, Aggregate, RandomState>,
    changed: Vec<AggregateKey>,
}

/// One aggregate's sums, and whether they changed since the last commit.
#[derive(Default)]
struct Aggregate {
    sums: Sums,
    changed: bool,
}

/// An [`AggregateKey`] borrowed: it hashes as the key does (a tuple hashes its fields in order).
#[derive(Hash)]
struct AggregateRef<'a>(&'a str, &'a str, &'a str);

impl Equivalent<AggregateKey> for AggregateRef<'_> {
    fn equivalent(&self, (experiment, variant, metric): &AggregateKey) -> bool {
        self.0 == experiment && self.1 == variant && self.2 == metric
    }
}

impl From<&AggregateRef<'_>> for AggregateKey {
    fn from(key: &AggregateRef<'_>) -> AggregateKey {
        (key.0.to_owned(), key.1.to_owned(), key.2.to_owned())
    }
}

impl Aggregates {
    /// The aggregates as last committed.
    pub fn new(sums: HashMap<AggregateKey, Sums>) -> Aggregates {
        let sums = sums.into_iter().map(|(key, sums)| (key, Aggregate { sums, changed: false })).collect();
        Aggregates { sums, changed: Vec::new() }
    }

    /// The sums of `experiment`, `variant` and `metric`, marked changed.
    fn change(&mut self, experiment: &str, variant: &str, metric: &str) -> &mut Sums {
        let key = AggregateRef(experiment, variant, metric);
        let aggregate = self.sums.entry_ref(&key).or_default();
        if !aggregate.changed {
            aggregate.changed = true;
            self.changed.push((&key).into());
        }
        &mut aggregate.sums
    }

    /// The aggregates changed since the last commit.
    pub fn changed(&self) -> Vec<(&AggregateKey, &Sums)> {
        self.changed.iter().filter_map(|key| self.sums.get(key).map(|a| (key, &a.sums))).collect()
    }

    /// After a commit: nothing is changed any more.
    pub fn committed(&mut self) {
        for key in self.changed.drain(..) {
            if let Some(aggregate) = self.sums.get_mut(&key) {
                aggregate.changed = false;
            }
        }
    }
}

/// The aggregate stage: applies `event` to its user's metric values in each experiment the user
/// is in at its time, and those values' changes to the sums. A user the event's exposure has
/// just entered into an experiment enters each metric's n first, with x = y = 0.
pub(crate) fn aggregate(
    aggregates: &mut Aggregates,
    experiments: &Experiments,
    user: &mut Enriched<'_>,
    event: &Event,
) {
    if let Some((experiment, variant)) = user.entered() {
        for metric in experiments.metrics(experiment) {
            aggregates.change(experiment, variant, &metric.key).n += 1;
        }
    }
    let mut changed = false;
    for assignment in user.active_mut() {
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
            let sums = aggregates.change(&assignment.experiment, &assignment.variant, &metric.key);
            sums.apply(old, -1.0);
            sums.apply(new, 1.0);
            changed = true;
        }
    }
    if changed {
        user.values_changed();
    }
}

/// A metric ready to be applied to events.
struct CompiledMetric {
    key: String,
    /// The metric's position in its experiment, which [`CompiledExperiment::metric_accepts`] takes.
    index: usize,
    kind: MetricKind,
    /// Event names feeding x and y, and how each aggregates. `decode_experiment` guarantees the
    /// events each kind needs; a metric built without them matches no event.
    x: Option<MetricSource>,
    y: Option<MetricSource>,
    cap: Option<f64>,
}

impl CompiledMetric {
    /// The `index`-th metric of an experiment.
    fn new(index: usize, metric: &Metric) -> CompiledMetric {
        let named = |agg| metric.event.clone().map(|event| MetricSource { event, agg });
        let (x, y) = match metric.kind {
            MetricKind::Conversion | MetricKind::Count => (named(Aggregation::Count), None),
            MetricKind::Sum => (named(Aggregation::Sum), None),
            MetricKind::Mean => (named(Aggregation::Sum), named(Aggregation::Count)),
            MetricKind::Ratio => (metric.numerator.clone(), metric.denominator.clone()),
        };
        CompiledMetric { key: metric.key.clone(), index, kind: metric.kind, x, y, cap: metric.cap }
    }

    /// How `event` changes a user's raw (x, y) in `experiment` (the experiment this metric
    /// belongs to); `None` when it does not concern this metric.
    fn delta(&self, experiment: &CompiledExperiment, event: &Event) -> Option<(f64, f64)> {
        let amount = |c: Option<&MetricSource>| match c {
            Some(c) if c.event == event.event => Some(match c.agg {
                Aggregation::Sum => event.value.unwrap_or(0.0),
                Aggregation::Count => 1.0,
            }),
            _ => None,
        };
        let (dx, dy) = (amount(self.x.as_ref()), amount(self.y.as_ref()));
        if dx.is_none() && dy.is_none() || !experiment.metric_accepts(self.index, &event.user_id, &event.properties) {
            return None;
        }
        Some((dx.unwrap_or(0.0), dy.unwrap_or(0.0)))
    }

    /// The user's contribution (x, y) to the sufficient statistics from their raw sums.
    fn contribution(&self, raw: (f64, f64)) -> (f64, f64) {
        let capped = |x: f64| self.cap.map_or(x, |cap| x.min(cap));
        match self.kind {
            MetricKind::Conversion => (if raw.0 > 0.0 { 1.0 } else { 0.0 }, 0.0),
            MetricKind::Count | MetricKind::Sum => (capped(raw.0), 0.0),
            MetricKind::Mean | MetricKind::Ratio => (capped(raw.0), raw.1),
        }
    }
}

/// Sufficient statistics of one metric in one variant of one experiment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sums {
    pub n: u64,
    pub sum_x: f64,
    pub sum_x2: f64,
    pub sum_y: f64,
    pub sum_y2: f64,
    pub sum_xy: f64,
}

/// What one set of [`Sums`] is of: (experiment, variant, metric).
pub type AggregateKey = (String, String, String);

impl Sums {
    /// Adds (sign = 1) or removes (sign = -1) one user's contribution, without touching n.
    pub fn apply(&mut self, (x, y): (f64, f64), sign: f64) {
        self.sum_x += sign * x;
        self.sum_x2 += sign * x * x;
        self.sum_y += sign * y;
        self.sum_y2 += sign * y * y;
        self.sum_xy += sign * x * y;
    }
}

/// One row of aggregates, as stored and as the analysis reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateRow {
    pub experiment: String,
    pub variant: String,
    pub metric: String,
    #[serde(flatten)]
    pub sums: Sums,
}
