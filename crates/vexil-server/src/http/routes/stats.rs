//! `GET /v1/stats/events`: hourly or daily counters of one event name (count, sum of `value`,
//! exact unique users), optionally per variant of an experiment, from what the pipeline has
//! committed; `GET /v1/stats/event-names`: the event names seen, to choose from.

use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, Env};
use crate::http::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use vexil_events::counters::{CounterRow, EventTotal, Window, EVALUATION_PREFIX};
use vexil_events::environment::{self, stored};
use vexil_events::event::is_valid_event_name;

/// Most windows one answer may span.
const MAX_WINDOWS: i64 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    event: Option<String>,
    window: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    experiment: Option<String>,
}

#[derive(Serialize)]
pub struct StatsAnswer {
    event: String,
    window: Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    experiment: Option<String>,
    /// Windows that saw events, oldest first.
    buckets: Vec<CounterRow>,
}

/// `?event=` (required; `$evaluation:<flag>` for evaluation counts), `window=hour|day` (default
/// hour), `from`/`to` (RFC 3339; default the last 24 hours, or 30 days for `day`), and
/// `experiment=` to split by variant. Windows starting in `[from, to)` are returned.
pub async fn events(
    State(state): State<AppState>,
    Env(env): Env,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<StatsAnswer>, ApiError> {
    let event =
        q.event.ok_or_else(|| ApiError::bad_request("invalid_query", "event is required").with_field("event"))?;
    let flag = event.strip_prefix(EVALUATION_PREFIX);
    if !(is_valid_event_name(&event) || flag.is_some_and(is_valid_event_name)) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "event must match ^[A-Za-z0-9_.:-]{1,128}$ or be $evaluation:<flag>",
        )
        .with_field("event"));
    }
    let window = match q.window.as_deref() {
        None => Window::Hour,
        Some(name) => Window::parse(name)
            .ok_or_else(|| ApiError::bad_request("invalid_query", "window must be hour or day").with_field("window"))?,
    };
    let span = match window {
        Window::Hour => Duration::hours(1),
        Window::Day => Duration::days(1),
    };
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - if window == Window::Hour { Duration::hours(24) } else { Duration::days(30) });
    if from >= to {
        return Err(ApiError::bad_request("invalid_query", "from must be before to").with_field("from"));
    }
    if (to - from).num_seconds() / span.num_seconds() > MAX_WINDOWS {
        return Err(ApiError::bad_request("invalid_query", format!("from..to spans more than {MAX_WINDOWS} windows"))
            .with_field("from"));
    }
    // The environment's counters, named as the pipeline keeps them; answered by their own names.
    let (name, experiment) = (environment::qualify(stored(&env.key), &event).into_owned(), q.experiment.clone());
    let mut buckets = tokio::task::spawn_blocking(move || {
        let stats = state.events.pipeline.stats()?;
        match &experiment {
            Some(key) => stats.variant_counters(&name, key, window, from, to),
            None => stats.event_counters(&name, window, from, to),
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("cannot read the counters: {e}")))?;
    for bucket in &mut buckets {
        bucket.event.clone_from(&event);
    }
    Ok(Json(StatsAnswer { event, window, from, to, experiment: q.experiment, buckets }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
pub struct NamesAnswer {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Ordered by name.
    events: Vec<EventTotal>,
}

/// `?from=&to=` (RFC 3339; default the last 30 days): the event names the environment was sent
/// in the UTC days starting in `[from, to)`, with their count and sum of `value`.
pub async fn event_names(
    State(state): State<AppState>,
    Env(env): Env,
    ApiQuery(q): ApiQuery<NamesQuery>,
) -> Result<Json<NamesAnswer>, ApiError> {
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(ApiError::bad_request("invalid_query", "from must be before to").with_field("from"));
    }
    let events = state.events_of(&env).event_names(from, to).await.map_err(ApiError::internal)?;
    Ok(Json(NamesAnswer { from, to, events }))
}
