//! Guards of a rollout plan: a signal over a sliding window compared with a threshold, judged
//! only once the window holds a minimum sample.

use super::signals::{evaluations_of, Seconds, Signals};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Events in the window.
    Count,
    /// Events per evaluation that served one of the flag's rolled-out variants.
    Rate,
    /// Mean of the events' values.
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Comparison {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Lt => value < threshold,
            Comparison::Lte => value <= threshold,
            Comparison::Gt => value > threshold,
            Comparison::Gte => value >= threshold,
        }
    }
}

/// A guard as written: healthy while `signal(event) op threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    pub signal: Signal,
    pub event: String,
    /// Length of the sliding window (default one hour).
    #[serde(default = "one_hour")]
    pub window: Seconds,
    pub op: Comparison,
    pub threshold: f64,
    /// Below this sample (evaluations for `rate`, events otherwise) the guard gives no verdict.
    #[serde(default)]
    pub min_sample: u64,
}

fn one_hour() -> Seconds {
    Seconds(3600)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Broken,
    /// Fewer than `min_sample` observations: neither passes nor breaks.
    Insufficient,
}

/// One reading of a guard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub value: Option<f64>,
    pub sample: u64,
    pub verdict: Verdict,
}

impl Guard {
    /// Reads the guard for `flag`, whose rolled-out variants are `variants`.
    pub fn read(
        &self,
        signals: &dyn Signals,
        flag: &str,
        variants: &[String],
        now: DateTime<Utc>,
    ) -> Result<Reading, String> {
        let from = now.checked_sub_signed(self.window.delta()).unwrap_or(DateTime::<Utc>::MIN_UTC);
        // The hour holding `now`, whole; saturating, so no instant makes the arithmetic overflow.
        let to = now.checked_add_signed(chrono::Duration::hours(1)).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let events = signals.totals(&self.event, None, from, to)?;
        let (value, sample) = match self.signal {
            Signal::Count => (Some(events.count as f64), events.count),
            Signal::Mean => ((events.count > 0).then(|| events.sum / events.count as f64), events.count),
            Signal::Rate => {
                let exposures = signals.totals(&evaluations_of(flag), Some(variants), from, to)?.count;
                ((exposures > 0).then(|| events.count as f64 / exposures as f64), exposures)
            }
        };
        let verdict = match value {
            Some(v) if sample >= self.min_sample => {
                if self.op.holds(v, self.threshold) {
                    Verdict::Pass
                } else {
                    Verdict::Broken
                }
            }
            _ => Verdict::Insufficient,
        };
        Ok(Reading { value, sample, verdict })
    }

    /// A sentence naming the guard and its reading, for the audit log and notifications.
    pub fn describe(&self, reading: &Reading) -> String {
        let value = reading.value.map_or_else(|| "no value".to_string(), |v| format!("{v}"));
        format!(
            "{:?} of {} over {}s is {value} (sample {}), required {:?} {}",
            self.signal, self.event, self.window.0, reading.sample, self.op, self.threshold
        )
        .to_lowercase()
    }
}
