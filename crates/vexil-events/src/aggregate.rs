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
//! `cap` winsorises x (for `mean` and `ratio`, the numerator) at the cap; `filter` is a condition
//! over the event's properties (and `user_id`), evaluated with the core's condition semantics.

use crate::error::Error;
use crate::event::Event;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vexil_core::{Context, FlagSet};

/// The metric kinds of SPEC 1.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Conversion,
    Count,
    Sum,
    Mean,
    Ratio,
}

/// How a ratio component aggregates its events per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Sum,
    Count,
}

/// One side of a ratio metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub event: String,
    pub agg: Agg,
}

/// A metric as the aggregator needs it (the fields of SPEC 1.3 that affect aggregation; other
/// fields of the experiment document, like `role` or `direction`, are ignored here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricDef {
    pub key: String,
    pub kind: MetricKind,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub numerator: Option<Component>,
    #[serde(default)]
    pub denominator: Option<Component>,
    #[serde(default)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub cap: Option<f64>,
}

/// An experiment's key and metrics, as the aggregator needs them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDef {
    pub key: String,
    #[serde(default)]
    pub metrics: Vec<MetricDef>,
}

/// A metric ready to be applied to events.
pub(crate) struct CompiledMetric {
    pub key: String,
    kind: MetricKind,
    /// Event names feeding x and y, and how each aggregates.
    x: Component,
    y: Option<Component>,
    cap: Option<f64>,
    /// A one-flag set whose only rule is the filter: the flag serves `on` when it matches.
    filter: Option<FlagSet>,
}

impl CompiledMetric {
    pub fn compile(def: &MetricDef) -> Result<CompiledMetric, Error> {
        let invalid = |message: String| Error::InvalidFilter { metric: def.key.clone(), message };
        let event = |c: &Option<Component>, what: &str| {
            c.clone().ok_or_else(|| invalid(format!("a {:?} metric needs \"{what}\"", def.kind)))
        };
        let named = |agg| {
            def.event
                .clone()
                .map(|event| Component { event, agg })
                .ok_or_else(|| invalid(format!("a {:?} metric needs \"event\"", def.kind)))
        };
        let (x, y) = match def.kind {
            MetricKind::Conversion | MetricKind::Count => (named(Agg::Count)?, None),
            MetricKind::Sum => (named(Agg::Sum)?, None),
            MetricKind::Mean => (named(Agg::Sum)?, Some(named(Agg::Count)?)),
            MetricKind::Ratio => (event(&def.numerator, "numerator")?, Some(event(&def.denominator, "denominator")?)),
        };
        let filter = match &def.filter {
            None => None,
            Some(condition) => {
                vexil_core::decode::decode_condition(condition).map_err(|e| invalid(e.to_string()))?;
                let doc = json!({"flags": [{"key": "filter", "enabled": true,
                    "rules": [{"id": "filter", "when": condition, "serve": {"variant": "on"}}],
                    "default": {"variant": "off"}}]});
                Some(FlagSet::from_value(&doc).map_err(|e| invalid(e.to_string()))?)
            }
        };
        Ok(CompiledMetric { key: def.key.clone(), kind: def.kind, x, y, cap: def.cap, filter })
    }

    fn matches_filter(&self, event: &Event) -> bool {
        let Some(filter) = &self.filter else { return true };
        let ctx = Context::new(&event.user_id, &event.properties);
        filter.evaluate("filter", &ctx).is_ok_and(|e| e.variant == "on")
    }

    /// How `event` changes a user's raw (x, y); `None` when it does not concern this metric.
    pub fn delta(&self, event: &Event) -> Option<(f64, f64)> {
        let amount = |c: Option<&Component>| match c {
            Some(c) if c.event == event.event => Some(match c.agg {
                Agg::Sum => event.value.unwrap_or(0.0),
                Agg::Count => 1.0,
            }),
            _ => None,
        };
        let (dx, dy) = (amount(Some(&self.x)), amount(self.y.as_ref()));
        if dx.is_none() && dy.is_none() || !self.matches_filter(event) {
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

impl Sums {
    /// Reads n, Σx, Σx², Σy, Σy², Σxy from `row`, starting at column `first`.
    pub(crate) fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Sums> {
        Ok(Sums {
            n: row.get::<_, i64>(first)? as u64,
            sum_x: row.get(first + 1)?,
            sum_x2: row.get(first + 2)?,
            sum_y: row.get(first + 3)?,
            sum_y2: row.get(first + 4)?,
            sum_xy: row.get(first + 5)?,
        })
    }

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

/// Reads the committed aggregates of one experiment, ordered by variant and metric.
pub fn read_aggregates(conn: &rusqlite::Connection, experiment: &str) -> Result<Vec<AggregateRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy FROM aggregates
         WHERE experiment = ?1 ORDER BY variant, metric",
    )?;
    let rows = stmt.query_map([experiment], |r| {
        Ok(AggregateRow { experiment: r.get(0)?, variant: r.get(1)?, metric: r.get(2)?, sums: Sums::from_row(r, 3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
