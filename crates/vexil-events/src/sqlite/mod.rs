//! The embedded mode's processing state: one SQLite database (`<data dir>/events/state.sqlite`)
//! for the file log's one partition, always leased to this process.

use crate::aggregate::AggregateKey;
use crate::archive::OpenFile;
use crate::counters::{Counter, CounterKey};
use crate::enrich::UserState;
use crate::error::Error;
use crate::pipeline::StateCache;
use crate::store::{Changes, Committed, Durability, Lease, PartitionStore, ProcessingBackend, Stats};
use hashbrown::hash_map::Entry;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dedupe (event_id TEXT PRIMARY KEY, log_offset INTEGER NOT NULL, seen_at INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_seen_at ON dedupe (seen_at);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, state TEXT NOT NULL, members TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_journal (seq INTEGER PRIMARY KEY, user_id TEXT NOT NULL, state TEXT NOT NULL, members TEXT);
CREATE TABLE IF NOT EXISTS aggregates (
    experiment TEXT NOT NULL, variant TEXT NOT NULL, metric TEXT NOT NULL,
    n INTEGER NOT NULL, sum_x REAL NOT NULL, sum_x2 REAL NOT NULL,
    sum_y REAL NOT NULL, sum_y2 REAL NOT NULL, sum_xy REAL NOT NULL,
    PRIMARY KEY (experiment, variant, metric)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
    experiment TEXT NOT NULL, variant TEXT NOT NULL,
    count INTEGER NOT NULL, sum REAL NOT NULL, users INTEGER NOT NULL,
    PRIMARY KEY (window, event, experiment, start, variant)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS counters_key ON counters (window, start, event, experiment, variant);
CREATE TABLE IF NOT EXISTS counter_ids (
    id INTEGER PRIMARY KEY, window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
    experiment TEXT NOT NULL, variant TEXT NOT NULL,
    UNIQUE (window, start, event, experiment, variant));
CREATE TABLE IF NOT EXISTS memberships (
    user_id TEXT NOT NULL, day INTEGER NOT NULL, counter_ids TEXT NOT NULL,
    PRIMARY KEY (user_id, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive_open (
    partition TEXT PRIMARY KEY, first_offset INTEGER NOT NULL, first_received INTEGER NOT NULL) WITHOUT ROWID;
";

/// The state database's file name in the events directory of a data directory.
pub const STATE_FILE: &str = "state.sqlite";

/// The only partition of the embedded mode, never taken over.
const LEASE: Lease = Lease { partition: 0, epoch: 0 };

/// The embedded processing state in one SQLite file.
pub struct SqliteBackend {
    path: PathBuf,
    journaled_users: usize,
}

impl SqliteBackend {
    /// Opens (creating) the state database at `path`; fails fast when it is unreadable. It
    /// journals as many users as the pipeline keeps in memory by default.
    pub fn open(path: impl Into<PathBuf>) -> Result<SqliteBackend, Error> {
        let path = path.into();
        open_db(&path)?;
        Ok(SqliteBackend { path, journaled_users: StateCache::default().users })
    }

    /// Journals up to `users` users ([`journal`]): as many as the pipeline keeps in memory.
    pub fn journaling(self, users: usize) -> SqliteBackend {
        SqliteBackend { journaled_users: users, ..self }
    }
}

mod checkpointer;
mod columns;
mod counter_ids;
mod journal;
mod memberships;
mod rebuild;
mod stats;
mod upgrade;

use checkpointer::Checkpointer;
use columns::{counter_at, sums_at};
use counter_ids::{ByAddress, CounterIds};
use journal::UserJournal;
use memberships::{add_memberships, day_of, Latest, LatestDay, LatestDays};
pub use rebuild::{rebuild, Rebuilt};
pub use stats::SqliteStats;

/// The page size of a state database made from now on.
///
/// A returning user drawn from millions rewrites one page of `users` wherever it lies, and the
/// page goes into the WAL and then back into the database file: with 20 M users known, that is
/// what the disk cannot keep up with. A 2 KiB page halves what the WAL takes for each user (the
/// kernel writes the database file back in its own 4 KiB pages either way): returning users were
/// processed about 10 % faster at 20 M users known, new users sent flat out about 10 % slower
/// (BENCHMARKS.md). At 1 KiB a user's row no longer fits in a page's cell and spills to overflow
/// pages: the database grew to nearly twice the size.
const PAGE_BYTES: i64 = 2048;

/// The page size of the database `conn` is open on.
fn page_bytes(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "page_size", |row| row.get(0))
}

fn open_db(path: &Path) -> Result<Connection, Error> {
    let mut conn = Connection::open(path)?;
    // Takes effect only in a database with nothing in it yet: one made by an older version keeps
    // its 4 KiB pages, which SQLite reads as well as ever.
    conn.pragma_update(None, "page_size", PAGE_BYTES)?;
    conn.execute_batch(SCHEMA)?;
    upgrade::upgrade(&mut conn)?;
    Ok(conn)
}

impl ProcessingBackend for SqliteBackend {
    fn leases(&self) -> Vec<Lease> {
        vec![LEASE]
    }

    fn open(&self, lease: Lease) -> Result<Box<dyn PartitionStore>, Error> {
        if lease != LEASE {
            return Err(Error::Log(crate::LogError::NoPartition(lease.partition)));
        }
        let conn = open_db(&self.path)?;
        checkpointer::bound_wal(&conn)?;
        // Negative: KiB rather than pages.
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        Ok(Box::new(SqlitePartitionStore {
            conn,
            counter_ids: CounterIds::default(),
            latest_days: LatestDays::default(),
            journal: UserJournal::new(self.journaled_users),
            last_synced: None,
            checkpointer: Checkpointer::start(&self.path)?,
        }))
    }

    fn released(&self, _lease: Lease) {}

    fn stats(&self) -> Result<Box<dyn Stats>, Error> {
        Ok(Box::new(SqliteStats::open(&self.path)?))
    }
}

/// SQLite's page cache on the processor's connection. A batch rewrites the rows of up to a
/// thousand users on pages all over the tables; the default 2 MiB could not hold them, so commits
/// wrote pages out mid-transaction and read pages again that the batch's lookups had just read.
/// 16 MiB holds them (64 MiB was no faster).
const PAGE_CACHE_KIB: i64 = 16 * 1024;

/// The checkpoint of the last commit: every record below it is processed. `None` before the
/// first commit.
fn committed_offset(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    let offset: Option<i64> =
        conn.query_row("SELECT next_offset FROM checkpoint WHERE id = 0", [], |r| r.get(0)).optional()?;
    Ok(offset.map(|offset| offset as u64))
}

/// How often a commit is synced to disk (the others are not; see [`SqlitePartitionStore::commit`]).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The processing state of the embedded mode's one partition: the processor's connection.
struct SqlitePartitionStore {
    conn: Connection,
    counter_ids: CounterIds,
    latest_days: LatestDays,
    journal: UserJournal,
    /// When the last synced commit was made; `None` before the first.
    last_synced: Option<Instant>,
    checkpointer: Checkpointer,
}

impl SqlitePartitionStore {
    /// Runs a batch's lookups in one read transaction. Outside a transaction each statement is
    /// one of its own, taking and releasing SQLite's file and WAL locks (several `fcntl` calls),
    /// which cost the processor about a third of its time when every user of a batch is looked up.
    fn reading<T>(
        &mut self,
        lookups: impl FnOnce(&Connection, &mut CounterIds, &mut LatestDays, &mut UserJournal) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tx = self.conn.transaction()?;
        self.journal.ensure_loaded(&tx)?;
        let found = lookups(&tx, &mut self.counter_ids, &mut self.latest_days, &mut self.journal)?;
        tx.commit()?;
        Ok(found)
    }
}

impl PartitionStore for SqlitePartitionStore {
    fn load(&mut self) -> Result<Committed, Error> {
        let conn = &self.conn;
        let next_offset = committed_offset(conn)?;
        let mut sums = HashMap::new();
        let mut stmt = conn
            .prepare("SELECT experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy FROM aggregates")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let key: AggregateKey = (r.get(0)?, r.get(1)?, r.get(2)?);
            sums.insert(key, sums_at(r, 3)?);
        }
        let mut stmt = conn.prepare("SELECT partition, first_offset, first_received FROM archive_open")?;
        let open_files = stmt
            .query_map([], |r| {
                Ok(OpenFile {
                    partition: r.get(0)?,
                    first_offset: r.get::<_, i64>(1)? as u64,
                    first_received: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Committed { next_offset: next_offset.unwrap_or(0), open_files, sums })
    }

    // SQLite runs in this process: a point lookup per id costs about what a batched query
    // would, without building one.
    fn first_deliveries(&mut self, ids: &[&str]) -> Result<HashMap<String, u64>, Error> {
        self.reading(|conn, _, _, _| {
            let mut stmt = conn.prepare_cached("SELECT log_offset FROM dedupe WHERE event_id = ?1")?;
            let mut found = HashMap::new();
            for id in ids {
                if let Some(offset) = stmt.query_row([id], |r| r.get::<_, i64>(0)).optional()? {
                    found.insert((*id).to_owned(), offset as u64);
                }
            }
            Ok(found)
        })
    }

    /// Each user's latest day of memberships comes with the state, kept for the batch's
    /// membership lookups.
    fn users(&mut self, user_ids: &[&str]) -> Result<HashMap<String, UserState>, Error> {
        self.reading(|conn, _, latest_days, journal| {
            let mut stmt = conn.prepare_cached("SELECT state, members FROM users WHERE user_id = ?1")?;
            let mut found = HashMap::new();
            for user_id in user_ids {
                journal.asked(user_id);
                if let Some((state, latest)) = journal.state_of(user_id) {
                    latest_days.keep(user_id, latest.clone());
                    found.insert((*user_id).to_owned(), serde_json::from_str(state)?);
                    continue;
                }
                // The columns are read where SQLite holds them, without a copy of their own.
                let mut rows = stmt.query([user_id])?;
                match rows.next()? {
                    Some(row) => {
                        let members = row.get_ref(1)?.as_str_or_null().map_err(rusqlite::Error::from)?;
                        latest_days.keep(user_id, Latest::of_column(members)?);
                        let state = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                        found.insert((*user_id).to_owned(), serde_json::from_str(state)?);
                    }
                    None => latest_days.keep(user_id, Latest::NoUser),
                }
            }
            Ok(found)
        })
    }

    fn counters(&mut self, keys: &[&CounterKey]) -> Result<Vec<(CounterKey, Counter)>, Error> {
        self.reading(|conn, _, _, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT count, sum, users FROM counters
                 WHERE window = ?1 AND start = ?2 AND event = ?3 AND experiment = ?4 AND variant = ?5",
            )?;
            let mut found = Vec::new();
            for key in keys {
                let args = params![key.window.name(), key.start, key.event, key.experiment, key.variant];
                if let Some(counter) = stmt.query_row(args, |r| counter_at(r, 0)).optional()? {
                    found.push(((*key).clone(), counter));
                }
            }
            Ok(found)
        })
    }

    /// At most one point read per user and day, none for a user's latest day when the batch
    /// has read the user.
    fn known_members(&mut self, members: &[(&CounterKey, &str)]) -> Result<Vec<bool>, Error> {
        self.reading(|conn, counter_ids, latest_days, journal| {
            let mut ids: ByAddress<Option<i64>> = ByAddress::default();
            let mut by_day: hashbrown::HashMap<(&str, i64), Vec<(i64, usize)>> = hashbrown::HashMap::default();
            for (asked, &(key, user)) in members.iter().enumerate() {
                let id = match ids.entry(key) {
                    Entry::Occupied(known) => *known.get(),
                    Entry::Vacant(new) => *new.insert(counter_ids.find(conn, key)?),
                };
                // A counter without an id has no members.
                if let Some(id) = id {
                    by_day.entry((user, day_of(key))).or_default().push((id, asked));
                }
            }
            let mut known = vec![false; members.len()];
            for ((user, day), asked) in by_day {
                let held = latest_days.held(conn, journal, user, day)?;
                for (id, asked) in asked {
                    known[asked] = held.contains(&id);
                }
            }
            Ok(known)
        })
    }

    /// The first commit of a session and then one a second are synced (`synchronous = FULL`: the
    /// WAL is fsync'd, and with it every commit before); the others are `NORMAL`, safe from a
    /// crash of the process but not from a power cut. An fsync per commit held the processor on
    /// the disk at every batch (7 % of its samples on the CPU alone, more waiting, when every
    /// batch's users were read from disk), and the log keeps records from the last synced
    /// checkpoint on ([`Durability`]), so a power cut costs a second of processing again, never
    /// an event.
    fn commit(&mut self, mut changes: Changes<'_>) -> Result<Durability, Error> {
        // Users and memberships are inserted in their tables' key order: consecutive inserts then
        // land on the same B-tree pages instead of on pages all over the tables.
        changes.users.sort_unstable_by_key(|(user_id, _)| *user_id);
        let Self { conn, counter_ids, latest_days, journal, last_synced, checkpointer } = self;
        let sync = last_synced.is_none_or(|at| at.elapsed() >= SYNC_EVERY);
        conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "NORMAL" })?;
        let tx = conn.transaction()?;
        journal.ensure_loaded(&tx)?;
        // The journal is changed as the transaction goes: if it fails, it is read again.
        journal.reload_next_time();
        let mut ids_seen = Vec::new();
        let latest;
        {
            latest = add_memberships(&tx, counter_ids, latest_days, journal, &changes, &mut ids_seen)?;
            // A user's row carries their latest day of memberships when it changed, and keeps it
            // when only the state did.
            let mut put_user = tx.prepare_cached(
                "INSERT INTO users (user_id, state, members) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, members = coalesce(excluded.members, members)",
            )?;
            for (user_id, state) in &changes.users {
                let state = serde_json::to_string(state)?;
                let new_day = latest.get(user_id).map(|(day, _)| day);
                if journal.takes(user_id) {
                    let latest = match new_day {
                        Some(day) => Latest::Day(day.clone()),
                        None => latest_days.of(&tx, journal, user_id)?.with_row(),
                    };
                    journal.append(&tx, user_id, state, latest)?;
                } else {
                    put_user.execute(params![user_id, state, new_day.map(LatestDay::format)])?;
                }
            }
            let mut put_members = tx.prepare_cached("UPDATE users SET members = ?2 WHERE user_id = ?1")?;
            for (user_id, (day, _)) in latest.iter().filter(|(_, (_, row_written))| !row_written) {
                match journal.state_of(user_id) {
                    Some((state, _)) => journal.append(&tx, user_id, state.to_owned(), Latest::Day(day.clone()))?,
                    None => _ = put_members.execute(params![user_id, day.format()])?,
                }
            }
            journal.flush(&tx)?;
            let mut put_sums = tx.prepare_cached(
                "INSERT OR REPLACE INTO aggregates (experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for ((experiment, variant, metric), s) in &changes.sums {
                put_sums.execute(params![
                    experiment, variant, metric, s.n as i64, s.sum_x, s.sum_x2, s.sum_y, s.sum_y2, s.sum_xy
                ])?;
            }
            let mut put_counter = tx.prepare_cached(
                "INSERT INTO counters (window, start, event, experiment, variant, count, sum, users)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (window, start, event, experiment, variant)
                 DO UPDATE SET count = excluded.count, sum = excluded.sum, users = excluded.users",
            )?;
            for (key, c) in &changes.counters {
                put_counter.execute(params![
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
            let mut put_delivery =
                tx.prepare_cached("INSERT OR IGNORE INTO dedupe (event_id, log_offset, seen_at) VALUES (?1, ?2, ?3)")?;
            for d in changes.deliveries {
                put_delivery.execute(params![d.event_id, d.offset as i64, d.received_at])?;
            }
            if let Some(before) = changes.expire_deliveries_before {
                tx.prepare_cached("DELETE FROM dedupe WHERE seen_at < ?1")?.execute([before])?;
            }
            tx.execute("DELETE FROM archive_open", [])?;
            let mut put_open = tx.prepare_cached(
                "INSERT INTO archive_open (partition, first_offset, first_received) VALUES (?1, ?2, ?3)",
            )?;
            for open in changes.open_files {
                put_open.execute(params![open.partition, open.first_offset as i64, open.first_received])?;
            }
            tx.execute(
                "INSERT INTO checkpoint (id, next_offset) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET next_offset = excluded.next_offset",
                [changes.next_offset as i64],
            )?;
        }
        tx.commit()?;
        journal.committed();
        counter_ids.keep(ids_seen);
        for (user_id, _) in &changes.users {
            latest_days.row_written(user_id);
        }
        for (user_id, (day, _)) in latest {
            latest_days.keep(user_id, Latest::Day(day));
        }
        checkpointer.committed();
        if !sync {
            return Ok(Durability::Deferred);
        }
        *last_synced = Some(Instant::now());
        Ok(Durability::Synced)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::counters::Window;

    pub(super) fn purchase(window: Window, start: i64, experiment: &str, variant: &str) -> CounterKey {
        CounterKey { window, start, event: "purchase".into(), experiment: experiment.into(), variant: variant.into() }
    }

    /// Of `members`, the ones the store knows.
    pub(super) fn known(
        store: &mut dyn PartitionStore,
        members: &[(&CounterKey, &str)],
    ) -> std::collections::HashSet<(CounterKey, String)> {
        let known = store.known_members(members).unwrap();
        assert_eq!(known.len(), members.len(), "one answer per member asked");
        let known = members.iter().zip(known).filter(|(_, known)| *known);
        known.map(|((key, user), _)| ((*key).clone(), (*user).to_owned())).collect()
    }

    /// Commits `members` as new unique-user memberships, and nothing else.
    pub(super) fn commit_members(store: &mut dyn PartitionStore, members: &[(&CounterKey, &str)]) {
        commit_users(store, &[], members);
    }

    /// Commits `users`' states and `members` as new unique-user memberships, and nothing else.
    pub(super) fn commit_users(
        store: &mut dyn PartitionStore,
        users: &[(&str, &UserState)],
        members: &[(&CounterKey, &str)],
    ) {
        let changes = Changes {
            next_offset: 0,
            users: users.to_vec(),
            sums: Vec::new(),
            counters: Vec::new(),
            counter_users: members.to_vec(),
            deliveries: &[],
            expire_deliveries_before: None,
            open_files: &[],
        };
        store.commit(changes).unwrap();
    }

    /// The store of a new state database, with the database's folder (deleted when dropped) and
    /// file. It journals no user: every change is in `users`, where tests of its layout read it.
    pub(super) fn new_store() -> (tempfile::TempDir, PathBuf, Box<dyn PartitionStore>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let store = SqliteBackend::open(&path).unwrap().journaling(0).open(LEASE).unwrap();
        (dir, path, store)
    }

    /// The same, journaling up to `users_kept` users, and a way to open another store on it.
    #[allow(clippy::type_complexity)]
    pub(super) fn new_store_journaling(
        users_kept: usize,
    ) -> (tempfile::TempDir, PathBuf, Box<dyn PartitionStore>, Box<dyn Fn() -> Box<dyn PartitionStore>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let backend = SqliteBackend::open(&path).unwrap().journaling(users_kept);
        let store = backend.open(LEASE).unwrap();
        let reopen = Box::new(move || backend.open(LEASE).unwrap());
        (dir, path, store, reopen)
    }

    #[test]
    fn the_checkpoint_is_read_beside_the_processor() {
        let (_dir, path, mut store) = new_store();
        let stats = SqliteStats::open(&path).unwrap();
        assert_eq!(stats.checkpoints().unwrap(), vec![], "nothing committed yet");
        let changes = Changes {
            next_offset: 42,
            users: Vec::new(),
            sums: Vec::new(),
            counters: Vec::new(),
            counter_users: Vec::new(),
            deliveries: &[],
            expire_deliveries_before: None,
            open_files: &[],
        };
        store.commit(changes).unwrap();
        assert_eq!(stats.checkpoints().unwrap(), vec![(0, 42)]);
    }

    /// A commit that fails rolls back the ids it gave: the next commit gives them again, and
    /// the store does not answer from an id that was never committed.
    #[test]
    fn counter_ids_of_a_failed_commit_are_not_kept() {
        let (_dir, _, mut store) = new_store();
        let (hour, day) = (purchase(Window::Hour, 3600, "", ""), purchase(Window::Day, 0, "", ""));
        // Two open archive buffers of one partition break `archive_open`'s key: the commit fails
        // after giving `hour` an id.
        let open = OpenFile { partition: "p".into(), first_offset: 0, first_received: 0 };
        let changes = Changes {
            next_offset: 0,
            users: Vec::new(),
            sums: Vec::new(),
            counters: Vec::new(),
            counter_users: vec![(&hour, "u1")],
            deliveries: &[],
            expire_deliveries_before: None,
            open_files: &[open.clone(), open],
        };
        assert!(store.commit(changes).is_err());
        commit_members(&mut *store, &[(&day, "u1")]);
        commit_members(&mut *store, &[(&hour, "u2")]);
        let known = known(&mut *store, &[(&hour, "u1"), (&hour, "u2"), (&day, "u1"), (&day, "u2")]);
        let expected =
            std::collections::HashSet::from([(hour.clone(), "u2".to_owned()), (day.clone(), "u1".to_owned())]);
        assert_eq!(known, expected);
    }

    /// A database as an older version made it, on SQLite's default 4 KiB pages.
    pub(super) fn older_database(path: &Path) {
        Connection::open(path).unwrap().execute_batch(SCHEMA).unwrap();
    }

    /// A user assigned to `variant` of `checkout` at `first_exposure`.
    pub(super) fn assigned(variant: &str, first_exposure: i64) -> UserState {
        let assignment = crate::enrich::Assignment {
            experiment: "checkout".into(),
            variant: variant.into(),
            first_exposure,
            values: vec![],
        };
        UserState { assignments: vec![assignment] }
    }

    /// The page size of the database at `path`.
    pub(super) fn page_bytes_of(path: &Path) -> i64 {
        page_bytes(&Connection::open(path).unwrap()).unwrap()
    }

    /// A new state database gets small pages. One that an older version made on SQLite's default
    /// pages keeps them and goes on storing and reading users.
    #[test]
    fn new_state_databases_have_small_pages_and_older_ones_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let older = dir.path().join("older.sqlite");
        older_database(&older);
        let state = assigned("treatment", 7);
        for (path, page_bytes) in [(dir.path().join("new.sqlite"), PAGE_BYTES), (older, 4096)] {
            let backend = SqliteBackend::open(&path).unwrap().journaling(0);
            commit_users(&mut *backend.open(LEASE).unwrap(), &[("u1", &state)], &[]);
            assert_eq!(page_bytes_of(&path), page_bytes, "{}", path.display());
            let read = backend.open(LEASE).unwrap().users(&["u1"]).unwrap();
            assert_eq!(read.get("u1"), Some(&state), "{}", path.display());
        }
    }
}
