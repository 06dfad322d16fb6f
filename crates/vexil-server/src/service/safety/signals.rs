//! Health and cost signals read from the event pipeline's counters, behind the [`Signals`]
//! trait so the scheduler can be tested with made-up numbers.
//!
//! The pipeline keeps hourly and daily counters per event name (count, sum of values) and the
//! evaluation counts of every flag × variant under `$evaluation:<flag>`. Events are attributed
//! to a flag by their name: a guard or budget names an event that the guarded code path emits
//! (`checkout_error`, `llm_cost_summaries`), and a rate divides its count by the evaluations
//! that served the flag's rolled-out variants. Counters are hourly, so a window is widened to
//! the whole hours it touches.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use vexil_events::counters::{Window, EVALUATION_PREFIX};
use vexil_events::environment;
use vexil_events::pipeline::Pipeline;
use vexil_events::sqlite::SqliteStats;
use vexil_events::store::Stats;

/// The count and the sum of values of an event over a time range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    pub count: u64,
    pub sum: f64,
}

/// Where the scheduler reads its signals.
pub trait Signals: Send + Sync {
    /// Totals of `event` over the hours starting in `[from, to)`; with `variants`, only those
    /// variants' rows (the `$evaluation:<flag>` counters have one row per variant).
    fn totals(
        &self,
        event: &str,
        variants: Option<&[String]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Totals, String>;

    /// Whether the pipeline has ever counted `event` (guards and budgets must name a real one).
    fn seen(&self, event: &str) -> Result<bool, String>;
}

/// The evaluation counter name of `flag`.
pub fn evaluations_of(flag: &str) -> String {
    format!("{EVALUATION_PREFIX}{flag}")
}

/// Opens a reader of the pipeline's committed counters; `None` when there is no state yet.
type OpenStats = Box<dyn Fn() -> Result<Option<Box<dyn Stats>>, String> + Send + Sync>;

/// The pipeline's committed counters of one environment.
pub struct PipelineSignals {
    open: OpenStats,
    /// The environment as the pipeline's state names it (`None`: production).
    env: Option<String>,
}

impl PipelineSignals {
    /// The counters of environment `env` in a running pipeline, wherever it keeps its state
    /// (summed over the partitions of every node in the distributed mode).
    pub fn of(pipeline: Arc<Pipeline>, env: &str) -> PipelineSignals {
        PipelineSignals {
            open: Box::new(move || pipeline.stats().map(Some).map_err(|e| e.to_string())),
            env: environment::stored(env).map(str::to_owned),
        }
    }

    /// The counters of environment `env` in an embedded data directory
    /// (`<data_dir>/events/state.sqlite`), for the CLI beside or without a server.
    pub fn embedded(data_dir: &std::path::Path, env: &str) -> PipelineSignals {
        let path = data_dir.join("events").join(vexil_events::sqlite::STATE_FILE);
        PipelineSignals {
            env: environment::stored(env).map(str::to_owned),
            open: Box::new(move || {
                // No state yet: the pipeline never ran here.
                if !path.exists() {
                    return Ok(None);
                }
                let stats: Box<dyn Stats> = Box::new(SqliteStats::open(&path).map_err(|e| e.to_string())?);
                Ok(Some(stats))
            }),
        }
    }

    fn stats(&self) -> Result<Option<Box<dyn Stats>>, String> {
        (self.open)()
    }
}

impl Signals for PipelineSignals {
    fn totals(
        &self,
        event: &str,
        variants: Option<&[String]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Totals, String> {
        let Some(stats) = self.stats()? else { return Ok(Totals::default()) };
        let from = from.duration_trunc(Duration::hours(1)).map_err(|e| e.to_string())?;
        let event = environment::qualify(self.env.as_deref(), event);
        let rows = stats.event_counters(&event, Window::Hour, from, to).map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter(|r| variants.is_none_or(|v| v.contains(&r.variant)))
            .fold(Totals::default(), |t, r| Totals { count: t.count + r.counter.count, sum: t.sum + r.counter.sum }))
    }

    fn seen(&self, event: &str) -> Result<bool, String> {
        let Some(stats) = self.stats()? else { return Ok(false) };
        let event = environment::qualify(self.env.as_deref(), event);
        let rows = stats
            .event_counters(&event, Window::Day, DateTime::<Utc>::UNIX_EPOCH, Utc::now() + Duration::days(2))
            .map_err(|e| e.to_string())?;
        Ok(!rows.is_empty())
    }
}

/// A non-negative duration written as seconds (`600`) or a humantime string (`"10m"`, `"1h 30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Seconds(pub u64);

impl Seconds {
    /// The longest hold or guard window a plan accepts: a year and a day. Longer ones are typos
    /// (`"999999999999d"`) that date arithmetic cannot even represent.
    pub const LONGEST: Seconds = Seconds(366 * 24 * 3600);

    /// The duration for date arithmetic, saturating: a plan stored before durations were
    /// bounded must not make the scheduler's arithmetic overflow.
    pub fn delta(self) -> Duration {
        i64::try_from(self.0).ok().and_then(Duration::try_seconds).unwrap_or(Duration::MAX)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(s) if s >= 0.0 && s.is_finite() => Ok(Seconds(s.round() as u64)),
                _ => Err(D::Error::custom("must be a non-negative number of seconds")),
            },
            serde_json::Value::String(s) => humantime::parse_duration(&s)
                .map(|d| Seconds(d.as_secs()))
                .map_err(|e| D::Error::custom(format!("{s:?} is not a duration such as \"10m\" ({e})"))),
            _ => Err(D::Error::custom("must be seconds or a duration string such as \"10m\"")),
        }
    }
}
