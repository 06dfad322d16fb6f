//! The experiment model of SPEC 1.3 as plain data: variants, metrics, the analysis settings and
//! the lifecycle of statuses with the admin actions that move between them.
//!
//! Produced only by [`decode_experiment`](super::decode_experiment), which reports every problem
//! with its path; [`CompiledExperiment`](super::CompiledExperiment) builds the form that places users.

use crate::model::{Condition, Meta, Percent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Running,
    Paused,
    Completed,
    Archived,
}

/// The lifecycle calls of the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleAction {
    Start,
    Pause,
    Complete,
    Archive,
}

impl ExperimentStatus {
    pub fn name(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Paused => "paused",
            ExperimentStatus::Completed => "completed",
            ExperimentStatus::Archived => "archived",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Running, Self::Paused, Self::Completed, Self::Archived]
            .into_iter()
            .find(|st| st.name() == s)
    }

    /// The status an action leads to: `draft → running ⇄ paused → completed → archived`, and
    /// completing straight from `running`. `None` when the action is illegal here (HTTP 409).
    pub fn after(self, action: LifecycleAction) -> Option<ExperimentStatus> {
        use ExperimentStatus::*;
        match (self, action) {
            (Draft | Paused, LifecycleAction::Start) => Some(Running),
            (Running, LifecycleAction::Pause) => Some(Paused),
            (Running | Paused, LifecycleAction::Complete) => Some(Completed),
            (Completed, LifecycleAction::Archive) => Some(Archived),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExperimentVariant {
    pub key: String,
    pub weight: u32,
    /// The flag value this variant serves when a flag delegates to the experiment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Conversion,
    Count,
    Sum,
    Mean,
    Ratio,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    Primary,
    Secondary,
    Guardrail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Sum,
    Count,
}

/// One side of a ratio metric: an event and how its occurrences aggregate per user.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricSource {
    pub event: String,
    pub agg: Aggregation,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub kind: MetricKind,
    /// The event of `conversion`, `count`, `sum` and `mean` metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numerator: Option<MetricSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denominator: Option<MetricSource>,
    pub role: MetricRole,
    pub direction: Direction,
    /// A condition over the event's properties; events that do not match are ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Condition>,
    /// Winsorises the per-user value at this upper bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisMethod {
    Frequentist,
    Sequential,
    Bayesian,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    Holm,
    Bh,
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnalysisConfig {
    pub method: AnalysisMethod,
    pub alpha: f64,
    pub correction: Correction,
    pub min_sample_per_variant: u64,
    pub auto_conclude: bool,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            method: AnalysisMethod::Frequentist,
            alpha: 0.05,
            correction: Correction::Holm,
            min_sample_per_variant: 100,
            auto_conclude: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Experiment {
    pub key: String,
    #[serde(flatten)]
    pub meta: Meta,
    pub status: ExperimentStatus,
    pub variants: Vec<ExperimentVariant>,
    pub traffic_allocation: Percent,
    pub targeting: Option<Condition>,
    pub bucket_by: String,
    pub salt: String,
    pub metrics: Vec<Metric>,
    pub analysis: AnalysisConfig,
    pub winner: Option<String>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
}

impl Experiment {
    pub fn variant_index(&self, key: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.key == key)
    }
}

/// What [`is_valid_event_name`] accepts, for error messages.
pub const EVENT_NAME_RULE: &str = "must match ^[A-Za-z0-9_.:-]{1,128}$";

/// Event names: `^[A-Za-z0-9_.:-]{1,128}$` (SPEC 1.4). Meant as the one definition, so that the
/// events a metric names and the events that are ingested obey the same rule.
pub fn is_valid_event_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
