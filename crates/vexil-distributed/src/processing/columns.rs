//! How the pipeline's values go into statements and come out of rows: counter keys and sums
//! as column arrays for `UNNEST`, and the readers of counter and aggregate columns.

use vexil_events::aggregate::{AggregateKey, Sums};
use vexil_events::counters::{Counter, CounterKey, Window};
use vexil_events::Error;

use super::db_error;

/// Columns of counter keys, as arrays for `UNNEST`.
#[derive(Default)]
pub(super) struct KeyColumns<'a> {
    pub(super) periods: Vec<&'static str>,
    pub(super) starts: Vec<i64>,
    pub(super) events: Vec<&'a str>,
    pub(super) experiments: Vec<&'a str>,
    pub(super) variants: Vec<&'a str>,
}

impl<'a> KeyColumns<'a> {
    pub(super) fn push(&mut self, key: &'a CounterKey) {
        self.periods.push(key.window.name());
        self.starts.push(key.start);
        self.events.push(&key.event);
        self.experiments.push(&key.experiment);
        self.variants.push(&key.variant);
    }
}

pub(super) fn counter_key(row: &tokio_postgres::Row) -> Result<CounterKey, Error> {
    let period: String = row.get(0);
    Ok(CounterKey {
        window: Window::parse(&period).ok_or_else(|| db_error(format!("unknown counter period {period:?}")))?,
        start: row.get(1),
        event: row.get(2),
        experiment: row.get(3),
        variant: row.get(4),
    })
}

pub(super) fn sums_at(row: &tokio_postgres::Row, first: usize) -> Sums {
    Sums {
        n: row.get::<_, i64>(first) as u64,
        sum_x: row.get(first + 1),
        sum_x2: row.get(first + 2),
        sum_y: row.get(first + 3),
        sum_y2: row.get(first + 4),
        sum_xy: row.get(first + 5),
    }
}

pub(super) fn counter_at(row: &tokio_postgres::Row, first: usize) -> Counter {
    Counter {
        count: row.get::<_, i64>(first) as u64,
        sum: row.get(first + 1),
        unique_users: row.get::<_, i64>(first + 2) as u64,
    }
}

/// Columns of aggregate rows, as arrays for `UNNEST`.
#[derive(Default)]
pub(super) struct SumColumns<'a> {
    pub(super) experiments: Vec<&'a str>,
    pub(super) variants: Vec<&'a str>,
    pub(super) metrics: Vec<&'a str>,
    pub(super) n: Vec<i64>,
    pub(super) sum_x: Vec<f64>,
    pub(super) sum_x2: Vec<f64>,
    pub(super) sum_y: Vec<f64>,
    pub(super) sum_y2: Vec<f64>,
    pub(super) sum_xy: Vec<f64>,
}

impl<'a> SumColumns<'a> {
    pub(super) fn push(&mut self, (experiment, variant, metric): &'a AggregateKey, s: &Sums) {
        self.experiments.push(experiment);
        self.variants.push(variant);
        self.metrics.push(metric);
        self.n.push(s.n as i64);
        self.sum_x.push(s.sum_x);
        self.sum_x2.push(s.sum_x2);
        self.sum_y.push(s.sum_y);
        self.sum_y2.push(s.sum_y2);
        self.sum_xy.push(s.sum_xy);
    }
}
