//! Upgrades of state databases written by older versions, once each, at open: `user_version`
//! names the layout a database is in.

use crate::enrich::UserState;
use crate::error::Error;
use rusqlite::Connection;

/// The layout [`super::SCHEMA`] creates, as `user_version`: 1 gave every counted user a row in `users`,
/// 2 numbered the counters and keeps a user's unique-user memberships of one day in one row, 3
/// keeps a user's latest day of them in the user's row (see [`super::memberships`]).
const LAYOUT_VERSION: i64 = 3;

/// Brings a database written by an older version to [`LAYOUT_VERSION`], once, in one
/// transaction that also sets `user_version` (a processing session reopens the database after
/// each failure, so an upgrade must not run again).
pub(super) fn upgrade(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < LAYOUT_VERSION {
        if table_exists(&tx, "counter_users")? {
            move_counter_users(&tx)?;
        }
        if table_exists(&tx, "counter_members")? {
            if version < 1 {
                give_counted_users_rows(&tx)?;
            }
            number_counters(&tx)?;
        }
        if !column_exists(&tx, "users", "members")? {
            // Existing rows read NULL: their memberships stay in `memberships`, where they are
            // found, and move into the row when the user's next membership is added.
            tx.execute_batch("ALTER TABLE users ADD COLUMN members TEXT")?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {LAYOUT_VERSION}"))?;
    }
    tx.commit()?;
    Ok(())
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool, Error> {
    let query = "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)";
    Ok(conn.query_row(query, [name], |r| r.get(0))?)
}

fn column_exists(conn: &Connection, table: &str, column: &str) -> Result<bool, Error> {
    let query = "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)";
    Ok(conn.query_row(query, [table, column], |r| r.get(0))?)
}

/// Moves the unique-user sets of a database written before they were keyed user first into
/// `counter_members`, the layout [`number_counters`] then upgrades.
fn move_counter_users(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS counter_members (
             user_id TEXT NOT NULL, window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
             experiment TEXT NOT NULL, variant TEXT NOT NULL,
             PRIMARY KEY (user_id, window, start, event, experiment, variant)) WITHOUT ROWID;
         INSERT OR IGNORE INTO counter_members (user_id, window, start, event, experiment, variant)
             SELECT user_id, window, start, event, experiment, variant FROM counter_users;
         DROP TABLE counter_users;",
    )?;
    Ok(())
}

/// Gives every user in a counter's unique users a row in `users`, in a database written before
/// every counted user had one (`user_version` 0; then only exposed users had rows).
///
/// Processing asks the store about a user's memberships only when the user has a row (see
/// [`crate::enrich::Users`]), so a member without one would be counted again. The rows added
/// hold the state of a user never exposed, which is what such a user has.
fn give_counted_users_rows(conn: &Connection) -> Result<(), Error> {
    conn.execute(
        "INSERT OR IGNORE INTO users (user_id, state) SELECT DISTINCT user_id, ?1 FROM counter_members",
        [serde_json::to_string(&UserState::default())?],
    )?;
    Ok(())
}

/// Moves `counter_members` (a row per membership, keyed by user and the counter's five columns,
/// as text) to `memberships` (a row per user and day, listing the ids of the day's counters the
/// user is in; see [`super::DAY`]). Ids are given in window order, as processing gives them.
fn number_counters(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(
        "INSERT OR IGNORE INTO counter_ids (window, start, event, experiment, variant)
             SELECT DISTINCT window, start, event, experiment, variant FROM counter_members
             ORDER BY start, window, event, experiment, variant;
         INSERT INTO memberships (user_id, day, counter_ids)
             SELECT m.user_id, (m.start / 86400 - (m.start % 86400 < 0)) * 86400 AS day, group_concat(c.id, ',')
             FROM counter_members m JOIN counter_ids c
                 ON c.window = m.window AND c.start = m.start AND c.event = m.event
                 AND c.experiment = m.experiment AND c.variant = m.variant
             GROUP BY m.user_id, day;
         DROP TABLE counter_members;",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{CounterKey, Window};
    use crate::sqlite::tests::{commit_members, known, purchase};
    use crate::sqlite::SqliteBackend;
    use crate::sqlite::LEASE;
    use crate::store::ProcessingBackend;
    use std::collections::HashSet;
    use std::path::PathBuf;

    /// A state database as an older version left it: `sql` run on a new file.
    fn written_before(sql: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        (dir, path)
    }

    #[test]
    fn unique_user_sets_of_an_older_database_are_moved_and_still_found() {
        let (_dir, path) = written_before(
            "CREATE TABLE counter_users (
                     window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
                     experiment TEXT NOT NULL, variant TEXT NOT NULL, user_id TEXT NOT NULL,
                     PRIMARY KEY (window, start, event, experiment, variant, user_id)) WITHOUT ROWID;
                 INSERT INTO counter_users VALUES ('day', 0, 'purchase', 'exp', 'control', 'u1'),
                                                  ('hour', 3600, 'purchase', '', '', 'u2');",
        );

        let backend = SqliteBackend::open(&path).unwrap();
        let mut store = backend.open(LEASE).unwrap();
        let day = CounterKey {
            window: Window::Day,
            start: 0,
            event: "purchase".into(),
            experiment: "exp".into(),
            variant: "control".into(),
        };
        let hour = CounterKey {
            window: Window::Hour,
            start: 3600,
            experiment: String::new(),
            variant: String::new(),
            ..day.clone()
        };
        let known = known(&mut *store, &[(&day, "u1"), (&day, "u2"), (&hour, "u2"), (&hour, "u1")]);
        assert_eq!(known, HashSet::from([(day, "u1".to_owned()), (hour, "u2".to_owned())]));
        let old: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('counter_users', 'counter_members')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the old tables are dropped once moved");
    }

    #[test]
    fn counted_users_of_an_older_database_get_rows_once() {
        let exposed = r#"{"assignments":[{"experiment":"exp","variant":"control","first_exposure":0}]}"#;
        // Written before every counted user had a row: only the exposed user u2 has one.
        let (_dir, path) = written_before(&format!(
            "CREATE TABLE users (user_id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
                 CREATE TABLE counter_members (
                     user_id TEXT NOT NULL, window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
                     experiment TEXT NOT NULL, variant TEXT NOT NULL,
                     PRIMARY KEY (user_id, window, start, event, experiment, variant)) WITHOUT ROWID;
                 INSERT INTO users VALUES ('u2', '{exposed}');
                 INSERT INTO counter_members VALUES ('u1', 'day', 0, 'purchase', '', ''),
                                                    ('u1', 'hour', 0, 'purchase', '', ''),
                                                    ('u2', 'day', 0, 'purchase', '', '');"
        ));

        let backend = SqliteBackend::open(&path).unwrap();
        let mut store = backend.open(LEASE).unwrap();
        let users = store.users(&["u1", "u2", "u3"]).unwrap();
        assert_eq!(users.len(), 2, "{users:?}");
        assert_eq!(users["u1"], UserState::default());
        assert_eq!(users["u2"], serde_json::from_str::<UserState>(exposed).unwrap());

        // The scan runs once, not at every open (a processing session reopens the database after
        // each failure): a member without a row added after the upgrade is not given one.
        let conn = Connection::open(&path).unwrap();
        conn.execute("INSERT INTO memberships VALUES ('u4', 0, '1')", []).unwrap();
        drop(conn);
        let mut store = SqliteBackend::open(&path).unwrap().open(LEASE).unwrap();
        assert!(store.users(&["u4"]).unwrap().is_empty());
    }

    /// A database in the layout before counter ids (`user_version` 1, memberships in
    /// `counter_members` keyed by text), as the previous version wrote it: its memberships are
    /// found after the upgrade, beside the ones committed after it, and counters created after
    /// it get ids after the old ones.
    #[test]
    fn memberships_of_a_database_without_counter_ids_are_numbered_and_still_found() {
        let (_dir, path) = written_before(
            "PRAGMA journal_mode = WAL;
                 CREATE TABLE users (user_id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
                 CREATE TABLE counters (
                     window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
                     experiment TEXT NOT NULL, variant TEXT NOT NULL,
                     count INTEGER NOT NULL, sum REAL NOT NULL, users INTEGER NOT NULL,
                     PRIMARY KEY (window, event, experiment, start, variant)) WITHOUT ROWID;
                 CREATE UNIQUE INDEX counters_key ON counters (window, start, event, experiment, variant);
                 CREATE TABLE counter_members (
                     user_id TEXT NOT NULL, window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
                     experiment TEXT NOT NULL, variant TEXT NOT NULL,
                     PRIMARY KEY (user_id, window, start, event, experiment, variant)) WITHOUT ROWID;
                 INSERT INTO users VALUES ('u1', '{\"assignments\":[]}'), ('u2', '{\"assignments\":[]}');
                 INSERT INTO counters VALUES ('hour', 7200, 'purchase', '', '', 2, 3.0, 2),
                                             ('hour', 3600, 'purchase', 'exp', 'control', 1, 1.0, 1),
                                             ('day', 0, 'purchase', '', '', 2, 3.0, 2),
                                             ('hour', -3600, 'purchase', '', '', 1, 1.0, 1);
                 INSERT INTO counter_members VALUES ('u1', 'hour', 7200, 'purchase', '', ''),
                                                    ('u2', 'hour', 7200, 'purchase', '', ''),
                                                    ('u1', 'hour', 3600, 'purchase', 'exp', 'control'),
                                                    ('u1', 'day', 0, 'purchase', '', ''),
                                                    ('u2', 'day', 0, 'purchase', '', ''),
                                                    ('u1', 'hour', -3600, 'purchase', '', '');
                 PRAGMA user_version = 1;",
        );

        let mut store = SqliteBackend::open(&path).unwrap().open(LEASE).unwrap();
        let (late, day) = (purchase(Window::Hour, 3600, "exp", "control"), purchase(Window::Day, 0, "", ""));
        let (hour, next_hour) = (purchase(Window::Hour, 7200, "", ""), purchase(Window::Hour, 10_800, "", ""));
        commit_members(&mut *store, &[(&next_hour, "u2"), (&late, "u2")]);
        // The hour before 1970 is of the day before: days are floored, in SQL as in Rust.
        let before_1970 = purchase(Window::Hour, -3600, "", "");
        let asked = [&late, &day, &hour, &next_hour, &before_1970];
        let members: Vec<(&CounterKey, &str)> =
            asked.iter().flat_map(|key| [(*key, "u1"), (*key, "u2"), (*key, "u3")]).collect();
        let expected = [(&late, "u1"), (&late, "u2"), (&day, "u1"), (&day, "u2"), (&hour, "u1"), (&hour, "u2")]
            .into_iter()
            .chain([(&next_hour, "u2"), (&before_1970, "u1")])
            .map(|(key, user)| (key.clone(), user.to_owned()))
            .collect::<HashSet<_>>();
        assert_eq!(known(&mut *store, &members), expected);

        // Reopened (ids read from the database, not remembered), the answer is the same.
        let mut store = SqliteBackend::open(&path).unwrap().open(LEASE).unwrap();
        assert_eq!(known(&mut *store, &members), expected);
        let conn = Connection::open(&path).unwrap();
        let (version, old): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT count(*) FROM sqlite_master WHERE name = 'counter_members')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, old), (LAYOUT_VERSION, 0));
        let newest: String = conn
            .query_row("SELECT window || ' ' || start FROM counter_ids ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(newest, "hour 10800", "a counter created after the upgrade is numbered after the old ones");
    }
}
