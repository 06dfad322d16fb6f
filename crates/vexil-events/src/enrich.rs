//! Enrichment: which experiments (and variants) an event belongs to.
//!
//! Exposure events (`type: exposure` with `experiment_key` and `variant`) establish a user's
//! assignment and the time of their first exposure. Any event is then attributed to each
//! experiment the user is assigned to whose first exposure is at or before the event's
//! timestamp; events before it belong to no variant of that experiment (SPEC 1.3).
//!
//! Assignments are sticky: a later exposure naming another variant does not move the user (it
//! is counted in `variant_conflicts_total`), and an exposure older than the known first one
//! moves the first exposure back.

use serde::{Deserialize, Serialize};

/// A user's raw per-metric sums within one experiment (see [`crate::aggregate`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub metric: String,
    pub x: f64,
    pub y: f64,
}

/// A user's assignment to one experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub experiment: String,
    pub variant: String,
    /// Unix milliseconds of the earliest exposure seen.
    pub first_exposure: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<MetricValue>,
}

/// What an exposure changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// The user entered the experiment.
    New,
    /// The user was already in it; the first exposure may have moved earlier.
    Known,
    /// The exposure named another variant than the user's; ignored.
    Conflict,
}

/// Everything the pipeline keeps per user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    pub assignments: Vec<Assignment>,
}

impl UserState {
    /// Records an exposure to `experiment` in `variant` at `at` (Unix ms).
    pub fn expose(&mut self, experiment: &str, variant: &str, at: i64) -> Exposure {
        match self.assignments.iter_mut().find(|a| a.experiment == experiment) {
            Some(a) if a.variant != variant => Exposure::Conflict,
            Some(a) => {
                a.first_exposure = a.first_exposure.min(at);
                Exposure::Known
            }
            None => {
                self.assignments.push(Assignment {
                    experiment: experiment.to_owned(),
                    variant: variant.to_owned(),
                    first_exposure: at,
                    values: Vec::new(),
                });
                Exposure::New
            }
        }
    }

    /// Indices of the assignments valid at `at` (Unix ms).
    pub fn active_at(&self, at: i64) -> impl Iterator<Item = usize> + '_ {
        self.assignments.iter().enumerate().filter(move |(_, a)| a.first_exposure <= at).map(|(i, _)| i)
    }
}
