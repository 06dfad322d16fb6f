//! Environments (SPEC 9) in the pipeline: one log, one processing state, one DLQ and one
//! archive serve every environment, and each environment's share of them is kept apart by
//! qualified names.
//!
//! A log record carries its environment (`"env"`, absent for `production`). The processor
//! keeps every piece of state an environment owns under a name that says whose it is:
//!
//! - an experiment key or an event name (`checkout`, `purchase`, `$evaluation:banner`) of
//!   another environment than `production` becomes `staging/checkout`: neither an experiment
//!   key (`^[a-z][a-z0-9_]*$`) nor an event name (`^[A-Za-z0-9_.:-]+$`, or `$evaluation:` and a
//!   flag key) can hold a `/`, so no name of one environment is a name of another. Aggregates
//!   are keyed by the qualified experiment, counters by the qualified event name, and a user's
//!   assignments by the qualified experiment (one user state holds a user's assignments in
//!   every environment, and an event is attributed only to its own environment's);
//! - a sender-given event id becomes `staging` + U+001F + the id, for dedupe (ids may hold any
//!   text but control characters, which ingest refuses);
//! - archive files go under `env=staging/` beside production's `events/`.
//!
//! `production`'s names are the names themselves, so the state written before environments
//! existed is production's, unchanged, with no migration.

use std::borrow::Cow;

/// The environment whose names are not qualified (everything written before environments).
pub const PRODUCTION: &str = "production";

/// Separates an environment from an experiment key or event name.
const SEPARATOR: char = '/';
/// Separates an environment from an event id.
const ID_SEPARATOR: char = '\u{1f}';

/// How a record stores environment `key`: `None` for production.
pub fn stored(key: &str) -> Option<&str> {
    (key != PRODUCTION).then_some(key)
}

/// The environment a stored `env` names.
pub fn name(env: Option<&str>) -> &str {
    env.unwrap_or(PRODUCTION)
}

/// Experiment key or event name `key` of environment `env` in the shared state.
pub fn qualify<'a>(env: Option<&str>, key: &'a str) -> Cow<'a, str> {
    match env {
        None => Cow::Borrowed(key),
        Some(env) => Cow::Owned(format!("{env}{SEPARATOR}{key}")),
    }
}

/// The environment and the name of a qualified experiment key or event name.
pub fn split(qualified: &str) -> (Option<&str>, &str) {
    match qualified.split_once(SEPARATOR) {
        Some((env, key)) => (Some(env), key),
        None => (None, qualified),
    }
}

/// Sender-given event id `id` of environment `env`, for dedupe.
pub fn qualify_id<'a>(env: Option<&str>, id: &'a str) -> Cow<'a, str> {
    match env {
        None => Cow::Borrowed(id),
        Some(env) => Cow::Owned(format!("{env}{ID_SEPARATOR}{id}")),
    }
}

/// The archive prefix of environment `env`'s files: production's files are under `events/`
/// as they always were, another environment's under `env=<key>/events/`.
pub fn archive_prefix(env: Option<&str>) -> Cow<'static, str> {
    match env {
        None => Cow::Borrowed(""),
        Some(env) => Cow::Owned(format!("env={env}/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names_are_unchanged_and_others_round_trip() {
        assert_eq!(qualify(None, "checkout"), "checkout");
        assert_eq!(qualify(Some("staging"), "checkout"), "staging/checkout");
        assert_eq!(split("staging/checkout"), (Some("staging"), "checkout"));
        assert_eq!(split("$evaluation:banner"), (None, "$evaluation:banner"));
        assert_eq!(split(&qualify(Some("qa"), "$evaluation:a.b")), (Some("qa"), "$evaluation:a.b"));
        assert_eq!(qualify_id(None, "e/1"), "e/1");
        assert_ne!(qualify_id(Some("staging"), "e1"), qualify_id(None, "staging/e1"));
        assert_eq!(stored(PRODUCTION), None);
        assert_eq!(name(stored("staging")), "staging");
    }
}
