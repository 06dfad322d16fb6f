//! Hourly and daily counters per event name, per experiment variant, and per flag variant
//! (evaluation counts): events, sum of values and exact unique users.
//!
//! Unique users are exact: the set of users seen in each window is kept (in memory while the
//! window is recent, in the state database always), and a user adds to `unique_users` only the
//! first time they appear in that window. Sets of old windows leave memory and are read back if
//! a late event touches them.

use crate::error::Error;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Prefix of the event name under which flag evaluation counts are kept (`$` cannot start a
/// sent event's name, so these never mix with real events).
pub const EVALUATION_PREFIX: &str = "$evaluation:";

/// Counter windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    pub const BOTH: [Window; 2] = [Window::Hour, Window::Day];

    /// `hour` or `day`, as in `?window=`.
    pub fn parse(name: &str) -> Option<Window> {
        match name {
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Window::Hour => 3600,
            Window::Day => 86_400,
        }
    }

    /// Start (Unix seconds, UTC) of the window holding `at` (Unix milliseconds).
    pub fn start_of(self, at_millis: i64) -> i64 {
        at_millis.div_euclid(1000).div_euclid(self.seconds()) * self.seconds()
    }
}

/// One counter's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub window: Window,
    /// Unix seconds.
    pub start: i64,
    pub event: String,
    /// Empty for the per-event counter.
    pub experiment: String,
    /// Empty for the per-event counter.
    pub variant: String,
}

/// One counter's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub count: u64,
    pub sum: f64,
    pub unique_users: u64,
}

/// One window of a counter query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterRow {
    pub start: DateTime<Utc>,
    pub event: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub experiment: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(flatten)]
    pub counter: Counter,
}

/// Counters touched since the last commit, and the recent windows' user sets.
#[derive(Default)]
pub(crate) struct Counters {
    values: HashMap<CounterKey, Counter>,
    users: HashMap<CounterKey, HashSet<String>>,
    dirty: HashSet<CounterKey>,
    new_users: Vec<(CounterKey, String)>,
    newest_start: i64,
}

impl Counters {
    /// Counts one event of `user` with `value` into `key`.
    pub fn add_event(&mut self, conn: &Connection, key: CounterKey, user: &str, value: f64) -> Result<(), Error> {
        self.load(conn, &key)?;
        let users = self.users.get_mut(&key).expect("loaded");
        let counter = self.values.get_mut(&key).expect("loaded");
        counter.count += 1;
        counter.sum += value;
        if !users.contains(user) {
            users.insert(user.to_owned());
            counter.unique_users += 1;
            self.new_users.push((key.clone(), user.to_owned()));
        }
        self.newest_start = self.newest_start.max(key.start);
        self.dirty.insert(key);
        Ok(())
    }

    /// Adds `n` to a counter without users (evaluation counts).
    pub fn add_count(&mut self, conn: &Connection, key: CounterKey, n: u64) -> Result<(), Error> {
        self.load(conn, &key)?;
        self.values.get_mut(&key).expect("loaded").count += n;
        self.dirty.insert(key);
        Ok(())
    }

    fn load(&mut self, conn: &Connection, key: &CounterKey) -> Result<(), Error> {
        if self.values.contains_key(key) && self.users.contains_key(key) {
            return Ok(());
        }
        let args = params![key.window.name(), key.start, key.event, key.experiment, key.variant];
        let counter = conn
            .prepare_cached(
                "SELECT count, sum, users FROM counters
                 WHERE window = ?1 AND start = ?2 AND event = ?3 AND experiment = ?4 AND variant = ?5",
            )?
            .query_row(args, |r| {
                Ok(Counter {
                    count: r.get::<_, i64>(0)? as u64,
                    sum: r.get(1)?,
                    unique_users: r.get::<_, i64>(2)? as u64,
                })
            })
            .optional()?
            .unwrap_or_default();
        let users: HashSet<String> = if counter.count == 0 {
            HashSet::new()
        } else {
            let mut stmt = conn.prepare_cached(
                "SELECT user_id FROM counter_users
                 WHERE window = ?1 AND start = ?2 AND event = ?3 AND experiment = ?4 AND variant = ?5",
            )?;
            let rows = stmt.query_map(args, |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        self.values.insert(key.clone(), counter);
        self.users.insert(key.clone(), users);
        Ok(())
    }

    /// Writes the touched counters and new window members, then lets go of old windows.
    pub fn commit(&mut self, conn: &Connection) -> Result<(), Error> {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO counters (window, start, event, experiment, variant, count, sum, users)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (window, start, event, experiment, variant)
             DO UPDATE SET count = excluded.count, sum = excluded.sum, users = excluded.users",
        )?;
        for key in self.dirty.drain() {
            let c = self.values[&key];
            upsert.execute(params![
                key.window.name(),
                key.start,
                key.event,
                key.experiment,
                key.variant,
                c.count as i64,
                c.sum,
                c.unique_users as i64
            ])?;
        }
        let mut member = conn.prepare_cached(
            "INSERT OR IGNORE INTO counter_users (window, start, event, experiment, variant, user_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (key, user) in self.new_users.drain(..) {
            member.execute(params![key.window.name(), key.start, key.event, key.experiment, key.variant, user])?;
        }
        // Windows more than two days older than the newest one rarely see events again.
        let horizon = self.newest_start - 2 * 86_400;
        self.values.retain(|k, _| k.start >= horizon);
        self.users.retain(|k, _| k.start >= horizon);
        Ok(())
    }
}

/// Reads committed counters: windows of `window` starting in `[from, to)`, for `event`, and
/// either the per-event counter (`experiment` = None; for `$evaluation:<flag>` one row per
/// flag variant) or every variant of `experiment`.
pub fn read_counters(
    conn: &Connection,
    event: &str,
    experiment: Option<&str>,
    window: Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<CounterRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT start, event, experiment, variant, count, sum, users FROM counters
         WHERE window = ?1 AND event = ?2 AND experiment = ?3 AND start >= ?4 AND start < ?5
         ORDER BY start, variant",
    )?;
    let rows = stmt.query_map(
        params![window.name(), event, experiment.unwrap_or(""), from.timestamp(), to.timestamp()],
        |r| {
            Ok(CounterRow {
                start: Utc.timestamp_opt(r.get(0)?, 0).single().unwrap_or_default(),
                event: r.get(1)?,
                experiment: r.get(2)?,
                variant: r.get(3)?,
                counter: Counter {
                    count: r.get::<_, i64>(4)? as u64,
                    sum: r.get(5)?,
                    unique_users: r.get::<_, i64>(6)? as u64,
                },
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
