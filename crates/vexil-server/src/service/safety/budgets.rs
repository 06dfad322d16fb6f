//! Cost budgets: the sum of an event's values for a flag or a tag, per UTC day or calendar
//! month, with thresholds (percentages of the limit) whose actions fire once per period.

use super::signals::{Signals, Totals};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use vexil_core::{Percent, ValidationError, ValidationErrors};

/// The actor of budget actions in the audit log.
pub const BUDGET_ACTOR: &str = "system:budget";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetAction {
    /// Notify only.
    Alert,
    /// Cap every split rollout of the flags in scope at `rollout` %.
    Throttle,
    /// Turn the flags in scope off.
    Disable,
    /// Put the flags in scope under an emergency stop.
    EmergencyStop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Percent of the limit at which the action fires.
    pub at: f64,
    pub action: BudgetAction,
    /// The cap of `throttle`, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<f64>,
}

/// A budget as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub key: String,
    #[serde(default)]
    pub description: String,
    /// The event whose values are summed.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub period: Period,
    pub limit: f64,
    pub thresholds: Vec<Threshold>,
}

/// What a budget has done in its current period (server-managed, stored beside the budget).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub period_start: Option<DateTime<Utc>>,
    /// Indexes of the thresholds that fired in this period.
    pub fired: Vec<usize>,
}

impl Budget {
    /// Checks the budget; `flag_exists` tells whether a flag key is stored.
    pub fn validate(&self, flag_exists: bool, signals: &dyn Signals) -> Result<(), ValidationErrors> {
        let mut problems = Vec::new();
        let key_ok = self.key.len() <= 128
            && self.key.starts_with(|c: char| c.is_ascii_lowercase())
            && self.key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !key_ok {
            problems.push(ValidationError::new("key", "must match ^[a-z][a-z0-9_]*$, at most 128 characters"));
        }
        match (&self.flag, &self.tag) {
            (Some(_), Some(_)) | (None, None) => {
                problems.push(ValidationError::new("flag", "name exactly one of flag and tag"))
            }
            (Some(flag), None) if !flag_exists => {
                problems.push(ValidationError::new("flag", format!("flag \"{flag}\" does not exist")))
            }
            _ => {}
        }
        match signals.seen(&self.event) {
            Ok(true) => {}
            Ok(false) => problems
                .push(ValidationError::new("event", format!("no event \"{}\" has been received yet", self.event))),
            Err(e) => problems.push(ValidationError::new("event", e)),
        }
        if !(self.limit.is_finite() && self.limit > 0.0) {
            problems.push(ValidationError::new("limit", "must be a positive number"));
        }
        if self.thresholds.is_empty() {
            problems.push(ValidationError::new("thresholds", "a budget needs at least one threshold"));
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            if !(t.at.is_finite() && t.at > 0.0) {
                problems.push(ValidationError::new(format!("thresholds[{i}].at"), "must be a positive percentage"));
            }
            match (t.action, t.rollout) {
                (BudgetAction::Throttle, Some(p)) if Percent::from_percent(p).is_some() => {}
                (BudgetAction::Throttle, _) => problems.push(ValidationError::new(
                    format!("thresholds[{i}].rollout"),
                    "throttle needs a rollout cap of 0–100 with at most two decimals",
                )),
                (_, Some(_)) => problems.push(ValidationError::new(
                    format!("thresholds[{i}].rollout"),
                    "only throttle takes a rollout cap",
                )),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(problems))
        }
    }

    /// Start of the period holding `now` (UTC day or calendar month).
    pub fn period_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let month = self.period == Period::Month;
        let day = if month { 1 } else { now.day() };
        Utc.with_ymd_and_hms(now.year(), now.month(), day, 0, 0, 0).single().expect("midnight UTC exists")
    }

    /// Spend in the period holding `now`.
    pub fn spend(&self, signals: &dyn Signals, now: DateTime<Utc>) -> Result<Totals, String> {
        // Saturating, so no instant makes the arithmetic overflow.
        let to = now.checked_add_signed(chrono::Duration::hours(1)).unwrap_or(DateTime::<Utc>::MAX_UTC);
        signals.totals(&self.event, None, self.period_start(now), to)
    }

    /// Whether a flag with `key` and `tags` is in the budget's scope.
    pub fn covers(&self, key: &str, tags: &[String]) -> bool {
        self.flag.as_deref() == Some(key) || self.tag.as_ref().is_some_and(|t| tags.contains(t))
    }
}
