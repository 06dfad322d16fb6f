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

use crate::event::Event;
use serde::{Deserialize, Serialize};
use vexil_core::experiment::{Aggregation, CompiledExperiment, Metric, MetricKind, MetricSource};

/// A metric ready to be applied to events.
pub(crate) struct CompiledMetric {
    pub key: String,
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
    pub fn new(index: usize, metric: &Metric) -> CompiledMetric {
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
    pub fn delta(&self, experiment: &CompiledExperiment, event: &Event) -> Option<(f64, f64)> {
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
    pub fn contribution(&self, raw: (f64, f64)) -> (f64, f64) {
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
