//! Where the embedded state keeps a user's unique-user memberships: the ids of the counters
//! (`counter_ids`) whose unique users they are in, a UTC day's to a row.
//!
//! The latest day a user has memberships of is kept in the user's own row (`users.members`,
//! `<day>:<id>,<id>,…`), which processing reads together with the user's state and rewrites
//! when the state changes: a returning user costs one read and one write instead of two each.
//! Older days are rows of `memberships` (user, day, ids), where a day goes when the user's
//! memberships reach a newer one, and where a late event's memberships of an older day go.
//!
//! A user in the [journal](super::journal) has their latest day in their latest journal row
//! instead, which takes the place of their row in `users` until they leave the journal.
//!
//! What the reads rely on: a user's `members` of day D hold every membership the user has of D,
//! and `memberships` has no row of the user for D. Rows written before `members` existed (its
//! value is then NULL, or of another day) are merged into it when it moves to their day.

use super::counter_ids::{ByAddress, CounterIds};
use super::journal::UserJournal;
use crate::counters::CounterKey;
use crate::error::Error;
use crate::store::Changes;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension};

/// Memberships are kept per user and day: the counters of the hours of a day and the day's own
/// are kept together, so an event's memberships (an hour's and its day's) are one read and one
/// write.
pub(super) const DAY: i64 = 86_400;

/// The counter ids of a `memberships` row (decimal, comma-separated).
fn parse_ids(ids: &str) -> rusqlite::Result<Vec<i64>> {
    ids.split(',')
        .map(|id| id.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e))))
        .collect()
}

/// The start (Unix seconds) of the day of `key`'s window.
pub(super) fn day_of(key: &CounterKey) -> i64 {
    key.start.div_euclid(DAY) * DAY
}

/// A user's memberships of their latest day, as `users.members` holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LatestDay {
    pub day: i64,
    pub ids: Vec<i64>,
}

impl LatestDay {
    fn parse(text: &str) -> rusqlite::Result<LatestDay> {
        let malformed = || {
            let cause = format!("malformed users.members value {text:?}");
            rusqlite::Error::FromSqlConversionFailure(0, Type::Text, cause.into())
        };
        let (day, ids) = text.split_once(':').ok_or_else(malformed)?;
        Ok(LatestDay { day: day.parse().map_err(|_| malformed())?, ids: parse_ids(ids)? })
    }

    /// The text of `users.members`.
    pub fn format(&self) -> String {
        use std::fmt::Write;
        // Written into one string: it is formatted for every user a commit writes.
        let mut text = String::with_capacity(12 + 8 * self.ids.len());
        // Writing to a `String` cannot fail.
        let _ = write!(text, "{}:", self.day);
        for (i, id) in self.ids.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{id}");
        }
        text
    }
}

/// What a user's row says of their latest day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Latest {
    /// The user has no row, and so no membership (every counted user has a row).
    NoUser,
    /// The row has no `members` (none yet, or written before they were kept there): every
    /// membership is in `memberships`.
    InTable,
    Day(LatestDay),
}

impl Latest {
    /// From `users.members` of an existing row.
    pub fn of_column(members: Option<&str>) -> rusqlite::Result<Latest> {
        members.map_or(Ok(Latest::InTable), |text| LatestDay::parse(text).map(Latest::Day))
    }

    /// What the user's row says once it is written: a user without one gets one.
    pub fn with_row(self) -> Latest {
        match self {
            Latest::NoUser => Latest::InTable,
            latest => latest,
        }
    }

    /// The value of `users.members` that says this.
    pub fn column(&self) -> Option<String> {
        match self {
            Latest::NoUser | Latest::InTable => None,
            Latest::Day(day) => Some(day.format()),
        }
    }
}

/// Users kept in memory at most; past it they are forgotten and read again as needed.
const USERS_KEPT: usize = 100_000;

/// The latest days of users the processor read or wrote lately, as committed: a batch's
/// lookups of memberships find them here after its users were read, without reading the rows
/// again.
#[derive(Default)]
pub(super) struct LatestDays {
    committed: HashMap<String, Latest>,
}

impl LatestDays {
    /// Notes what `user`'s committed row says.
    pub fn keep(&mut self, user: &str, latest: Latest) {
        if let Some(kept) = self.committed.get_mut(user) {
            *kept = latest;
            return;
        }
        if self.committed.len() >= USERS_KEPT {
            self.committed.clear();
        }
        self.committed.insert(user.to_owned(), latest);
    }

    /// The committed latest day of `user`: journaled, kept, or read from `conn`.
    pub fn of(&mut self, conn: &Connection, journal: &UserJournal, user: &str) -> Result<Latest, Error> {
        if let Some(latest) = journal.latest_of(user) {
            return Ok(latest.clone());
        }
        if let Some(latest) = self.committed.get(user) {
            return Ok(latest.clone());
        }
        let mut stmt = conn.prepare_cached("SELECT members FROM users WHERE user_id = ?1")?;
        // The column is parsed where SQLite holds it, as the batch's read of users does.
        let latest = stmt
            .query_row([user], |r| Latest::of_column(r.get_ref(0)?.as_str_or_null()?))
            .optional()?
            .unwrap_or(Latest::NoUser);
        self.keep(user, latest.clone());
        Ok(latest)
    }

    /// The ids of the counters `user` is in of `day`'s.
    pub fn held(&mut self, conn: &Connection, journal: &UserJournal, user: &str, day: i64) -> Result<Vec<i64>, Error> {
        if let Latest::Day(latest) = self.of(conn, journal, user)? {
            if latest.day == day {
                return Ok(latest.ids);
            }
        }
        let mut stmt = conn.prepare_cached("SELECT counter_ids FROM memberships WHERE user_id = ?1 AND day = ?2")?;
        let ids = stmt.query_row(params![user, day], |r| r.get::<_, String>(0)).optional()?;
        Ok(ids.as_deref().map_or(Ok(Vec::new()), parse_ids)?)
    }

    /// Adds `user`'s new memberships (`by_day`: ids by day, days ascending) in `tx`, except
    /// those of the day that becomes (or stays) the latest: the returned [`LatestDay`] holds
    /// them, for the caller to write into the user's row. `row_written`: the caller writes the
    /// user's row in `tx` (a user without a row before has nothing in `memberships`). `None`
    /// when the user has no row and gets none: everything is then written to `memberships`.
    pub fn add(
        &mut self,
        tx: &Connection,
        journal: &UserJournal,
        user: &str,
        row_written: bool,
        by_day: &[(i64, Vec<i64>)],
    ) -> Result<Option<LatestDay>, Error> {
        let (mut latest, table_may_hold) = match self.of(tx, journal, user)? {
            Latest::NoUser if !row_written => {
                for (day, ids) in by_day {
                    append_to_table(tx, user, *day, ids)?;
                }
                return Ok(None);
            }
            Latest::NoUser => (None, false),
            Latest::InTable => (None, true),
            Latest::Day(latest) => (Some(latest), true),
        };
        for (day, ids) in by_day {
            match &mut latest {
                Some(current) if current.day == *day => current.ids.extend(ids),
                Some(current) if current.day > *day => append_to_table(tx, user, *day, ids)?,
                _ => {
                    if let Some(older) = latest.take() {
                        append_to_table(tx, user, older.day, &older.ids)?;
                    }
                    let mut moved = if table_may_hold { take_from_table(tx, user, *day)? } else { Vec::new() };
                    moved.extend(ids);
                    latest = Some(LatestDay { day: *day, ids: moved });
                }
            }
        }
        Ok(latest)
    }

    /// What `user`'s row says after a commit wrote it without `members`: a row with none now
    /// exists if there was none.
    pub fn row_written(&mut self, user: &str) {
        if let Some(latest @ Latest::NoUser) = self.committed.get_mut(user) {
            *latest = Latest::InTable;
        }
    }
}

/// Adds the new memberships of `changes` (its users sorted by id) in `tx`: what goes to
/// `memberships` is written, and each user's latest day, if it changed, is returned for the
/// user's row, with whether `changes` writes that row anyway. Counter ids read or given go to
/// `ids_seen`.
pub(super) fn add_memberships<'c>(
    tx: &Connection,
    counter_ids: &CounterIds,
    latest_days: &mut LatestDays,
    journal: &UserJournal,
    changes: &Changes<'c>,
    ids_seen: &mut Vec<(CounterKey, i64)>,
) -> Result<HashMap<&'c str, (LatestDay, bool)>, Error> {
    let mut ids: ByAddress<i64> = HashMap::new();
    let mut members = Vec::with_capacity(changes.counter_users.len());
    for &(key, user) in &changes.counter_users {
        let id = match ids.entry(key) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(new) => *new.insert(counter_ids.find_or_give(tx, key, ids_seen)?),
        };
        members.push((user, day_of(key), id));
    }
    members.sort_unstable();
    let mut latest = HashMap::new();
    for of_user in members.chunk_by(|a, b| a.0 == b.0) {
        let user = of_user[0].0;
        let by_day: Vec<(i64, Vec<i64>)> = of_user
            .chunk_by(|a, b| a.1 == b.1)
            .map(|of_day| (of_day[0].1, of_day.iter().map(|(_, _, id)| *id).collect()))
            .collect();
        let row_written = changes.users.binary_search_by_key(&user, |(u, _)| u).is_ok();
        if let Some(day) = latest_days.add(tx, journal, user, row_written, &by_day)? {
            latest.insert(user, (day, row_written));
        }
    }
    Ok(latest)
}

/// Appends `ids` to `user`'s row of `day` in `memberships`.
fn append_to_table(tx: &Connection, user: &str, day: i64, ids: &[i64]) -> Result<(), Error> {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    tx.prepare_cached(
        "INSERT INTO memberships (user_id, day, counter_ids) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, day) DO UPDATE SET counter_ids = counter_ids || ',' || excluded.counter_ids",
    )?
    .execute(params![user, day, ids.join(",")])?;
    Ok(())
}

/// Removes `user`'s row of `day` from `memberships`, with the ids it held.
fn take_from_table(tx: &Connection, user: &str, day: i64) -> Result<Vec<i64>, Error> {
    let mut stmt =
        tx.prepare_cached("DELETE FROM memberships WHERE user_id = ?1 AND day = ?2 RETURNING counter_ids")?;
    let ids = stmt.query_row(params![user, day], |r| r.get::<_, String>(0)).optional()?;
    Ok(ids.as_deref().map_or(Ok(Vec::new()), parse_ids)?)
}

#[cfg(test)]
mod tests {
    use super::LatestDay;
    use crate::counters::{CounterKey, Window};
    use crate::enrich::UserState;
    use crate::sqlite::tests::{commit_members, commit_users, new_store, purchase};
    use crate::sqlite::{SqliteBackend, LEASE};
    use crate::store::{PartitionStore, ProcessingBackend};
    use rusqlite::Connection;
    use std::collections::HashSet;
    use std::path::Path;

    /// Commits `user`'s row (an empty state) with `members` as their new memberships.
    fn commit_user(store: &mut dyn PartitionStore, user: &str, members: &[&CounterKey]) {
        let members: Vec<(&CounterKey, &str)> = members.iter().map(|key| (*key, user)).collect();
        commit_users(store, &[(user, &UserState::default())], &members);
    }

    /// `users.members` of `user`, and the days of their rows in `memberships`.
    fn stored(path: &Path, user: &str) -> (Option<String>, Vec<i64>) {
        let conn = Connection::open(path).unwrap();
        let members = conn.query_row("SELECT members FROM users WHERE user_id = ?1", [user], |r| r.get(0)).unwrap();
        let mut days = conn.prepare("SELECT day FROM memberships WHERE user_id = ?1 ORDER BY day").unwrap();
        let days = days.query_map([user], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
        (members, days)
    }

    /// Of `asked` × users `u1`, `u2`, the memberships the store knows.
    fn known(store: &mut dyn PartitionStore, asked: &[&CounterKey]) -> HashSet<(CounterKey, String)> {
        let members: Vec<(&CounterKey, &str)> = asked.iter().flat_map(|key| [(*key, "u1"), (*key, "u2")]).collect();
        crate::sqlite::tests::known(store, &members)
    }

    fn expected(members: &[(&CounterKey, &str)]) -> HashSet<(CounterKey, String)> {
        members.iter().map(|(key, user)| ((*key).clone(), (*user).to_owned())).collect()
    }

    #[test]
    fn a_latest_day_reads_back_from_its_text() {
        let latest = LatestDay { day: 86_400, ids: vec![3, 17, 42] };
        assert_eq!(latest.format(), "86400:3,17,42");
        assert_eq!(LatestDay::parse(&latest.format()).unwrap(), latest);
        let before_the_epoch = LatestDay { day: -86_400, ids: vec![7] };
        assert_eq!(LatestDay::parse(&before_the_epoch.format()).unwrap(), before_the_epoch);
    }

    /// A user's latest day is in their row; when their memberships reach a newer day the older
    /// one moves to `memberships`, and a late event's memberships of an older day go there too.
    /// Every membership is found, by the store that wrote it and by a new one.
    #[test]
    fn the_latest_day_is_in_the_users_row_and_older_days_beside_it() {
        let (_dir, path, mut store) = new_store();
        let (hour, day) = (purchase(Window::Hour, 3600, "", ""), purchase(Window::Day, 0, "", ""));
        let (next_hour, next_day) = (purchase(Window::Hour, 90_000, "", ""), purchase(Window::Day, 86_400, "", ""));
        let late = purchase(Window::Hour, 7200, "", "");

        commit_user(&mut *store, "u1", &[&hour, &day]);
        commit_user(&mut *store, "u2", &[]);
        assert_eq!(stored(&path, "u1"), (Some("0:1,2".to_owned()), vec![]));
        assert_eq!(stored(&path, "u2"), (None, vec![]), "a user without memberships has none in the row");

        commit_members(&mut *store, &[(&next_hour, "u1"), (&next_day, "u1"), (&day, "u2")]);
        assert_eq!(stored(&path, "u1"), (Some("86400:3,4".to_owned()), vec![0]));
        assert_eq!(stored(&path, "u2"), (Some("0:2".to_owned()), vec![]));

        commit_members(&mut *store, &[(&late, "u1")]);
        assert_eq!(stored(&path, "u1"), (Some("86400:3,4".to_owned()), vec![0]), "a late event's day stays beside");

        let all = [&hour, &day, &next_hour, &next_day, &late];
        let members = expected(&[
            (&hour, "u1"),
            (&day, "u1"),
            (&next_hour, "u1"),
            (&next_day, "u1"),
            (&late, "u1"),
            (&day, "u2"),
        ]);
        assert_eq!(known(&mut *store, &all), members);
        let mut reopened = SqliteBackend::open(&path).unwrap().journaling(0).open(LEASE).unwrap();
        assert_eq!(known(&mut *reopened, &all), members);
        reopened.users(&["u1", "u2"]).unwrap();
        assert_eq!(known(&mut *reopened, &all), members, "answered from the rows the batch read");
    }

    /// A database of the layout before (`user_version` 2: every membership in `memberships`, no
    /// `members` column), as the previous version wrote it: its memberships are found after the
    /// upgrade, and a user's row of a day moves into their row with the next membership of it.
    #[test]
    fn memberships_of_the_layout_before_are_found_and_move_into_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE users (user_id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
                 CREATE TABLE counter_ids (
                     id INTEGER PRIMARY KEY, window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
                     experiment TEXT NOT NULL, variant TEXT NOT NULL,
                     UNIQUE (window, start, event, experiment, variant));
                 CREATE TABLE memberships (
                     user_id TEXT NOT NULL, day INTEGER NOT NULL, counter_ids TEXT NOT NULL,
                     PRIMARY KEY (user_id, day)) WITHOUT ROWID;
                 INSERT INTO users VALUES ('u1', '{\"assignments\":[]}'), ('u2', '{\"assignments\":[]}');
                 INSERT INTO counter_ids VALUES (1, 'hour', 3600, 'purchase', '', ''),
                                                (2, 'day', 0, 'purchase', '', ''),
                                                (3, 'day', 86400, 'purchase', '', '');
                 INSERT INTO memberships VALUES ('u1', 0, '1,2'), ('u2', 0, '2'), ('u2', 86400, '3');
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        let mut store = SqliteBackend::open(&path).unwrap().journaling(0).open(LEASE).unwrap();
        let (hour, day) = (purchase(Window::Hour, 3600, "", ""), purchase(Window::Day, 0, "", ""));
        let (next_day, other_hour) = (purchase(Window::Day, 86_400, "", ""), purchase(Window::Hour, 7200, "", ""));
        let all = [&hour, &day, &next_day, &other_hour];
        let before = expected(&[(&hour, "u1"), (&day, "u1"), (&day, "u2"), (&next_day, "u2")]);
        assert_eq!(known(&mut *store, &all), before);

        // u1's state and a membership of day 0 change, and u2 enters a counter of day 0: day 0
        // moves into each row; u2's newer day stays in `memberships` until they reach it.
        commit_user(&mut *store, "u1", &[&other_hour]);
        commit_members(&mut *store, &[(&other_hour, "u2")]);
        assert_eq!(stored(&path, "u1"), (Some("0:1,2,4".to_owned()), vec![]));
        assert_eq!(stored(&path, "u2"), (Some("0:2,4".to_owned()), vec![86_400]));
        let after: HashSet<_> =
            before.into_iter().chain(expected(&[(&other_hour, "u1"), (&other_hour, "u2")])).collect();
        assert_eq!(known(&mut *store, &all), after);
        let mut reopened = SqliteBackend::open(&path).unwrap().journaling(0).open(LEASE).unwrap();
        assert_eq!(known(&mut *reopened, &all), after);
    }
}
