//! The journal of the users the processor keeps changing: their rows appended to `user_journal`
//! at each commit instead of rewritten in `users`.
//!
//! A user whose state changes is rewritten in `users`, a table of millions of rows in key order:
//! one page read and one page written for each user, wherever the user's row lies. A user the
//! processor found in its memory (it did not ask the store for them) is likely to come back soon,
//! and writing them at every commit rewrites the same pages again and again. Such users are
//! appended to `user_journal` instead, in rowid order, where a commit's rows share the last page.
//! A journaled user goes on being journaled while they keep changing; once they are the longest
//! unchanged of more than `users_kept` journaled users, or their last row is `4 × users_kept`
//! rows old, their latest row is written to `users` and the journal's rows below the oldest
//! user still journaled are deleted.
//!
//! What the reads rely on: a user in the journal has their state and latest day of memberships
//! in their latest journal row, and their row in `users` (they all have one) is older. The
//! journal holds every journaled user's latest row in memory as well (at most `users_kept` of
//! them), read again from the table when a session starts or after a failed commit; every write
//! is in the commit's one transaction, so a crash leaves the table as committed.

use super::memberships::Latest;
use crate::error::Error;
use foldhash::fast::RandomState;
use hashbrown::HashSet;
use hashlink::LinkedHashMap;
use rusqlite::{params, Connection};

/// A journaled user's latest row.
pub(super) struct Journaled {
    seq: i64,
    /// The state's JSON text, as `users.state` holds it.
    state: String,
    latest: Latest,
}

pub(super) struct UserJournal {
    /// Oldest last row first.
    journaled: LinkedHashMap<String, Journaled, RandomState>,
    next_seq: i64,
    users_kept: usize,
    /// Users the store was asked for since the last commit: their rows were just read, so
    /// rewriting them costs no page read, and they are not known to come back.
    asked: HashSet<String, RandomState>,
    /// Whether `journaled` is what the table holds; not after a failed commit.
    loaded: bool,
}

impl UserJournal {
    /// Journals up to `users_kept` users (none: every change is written to `users`).
    pub fn new(users_kept: usize) -> UserJournal {
        UserJournal {
            journaled: LinkedHashMap::with_hasher(RandomState::default()),
            next_seq: 0,
            users_kept,
            asked: HashSet::default(),
            loaded: false,
        }
    }

    /// Reads the journaled users from the table unless they are known to be what it holds.
    pub fn ensure_loaded(&mut self, conn: &Connection) -> Result<(), Error> {
        if self.loaded {
            return Ok(());
        }
        self.journaled.clear();
        self.next_seq = 0;
        let mut stmt = conn.prepare("SELECT seq, user_id, state, members FROM user_journal ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let latest = Latest::of_column(row.get_ref(3)?.as_str_or_null().map_err(rusqlite::Error::from)?)?;
            // A later row of a user replaces the earlier one, at the back.
            self.journaled.insert(row.get(1)?, Journaled { seq, state: row.get(2)?, latest });
            self.next_seq = seq + 1;
        }
        self.loaded = true;
        Ok(())
    }

    /// Before a commit changes the journal: it is read again next time unless the commit
    /// succeeds ([`UserJournal::committed`]).
    pub fn reload_next_time(&mut self) {
        self.loaded = false;
    }

    /// The commit went through: the journal is what the table holds.
    pub fn committed(&mut self) {
        self.loaded = true;
    }

    /// `user`'s state (JSON) and latest day, if journaled.
    pub fn state_of(&self, user: &str) -> Option<(&str, &Latest)> {
        self.journaled.get(user).map(|j| (j.state.as_str(), &j.latest))
    }

    /// `user`'s latest day, if journaled.
    pub fn latest_of(&self, user: &str) -> Option<&Latest> {
        self.journaled.get(user).map(|j| &j.latest)
    }

    /// Notes that the store was asked for `user`.
    pub fn asked(&mut self, user: &str) {
        if self.users_kept > 0 {
            self.asked.get_or_insert_with(user, str::to_owned);
        }
    }

    /// Whether a change of `user` goes to the journal: a journaled user's always does (even one
    /// journaled by a run that kept more), and so does that of a user the processor had in memory.
    pub fn takes(&self, user: &str) -> bool {
        self.journaled.contains_key(user) || (self.users_kept > 0 && !self.asked.contains(user))
    }

    /// Appends `user`'s row with `state` (JSON) and `latest` in `tx`.
    pub fn append(&mut self, tx: &Connection, user: &str, state: String, latest: Latest) -> Result<(), Error> {
        let seq = self.next_seq;
        tx.prepare_cached("INSERT INTO user_journal (seq, user_id, state, members) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![seq, user, state, latest.column()])?;
        self.next_seq += 1;
        // An insert moves a journaled user to the back.
        self.journaled.insert(user.to_owned(), Journaled { seq, state, latest });
        Ok(())
    }

    /// Writes the users past the journal's bounds to `users`, in key order, and deletes the
    /// rows no journaled user needs; then forgets who was asked for.
    pub fn flush(&mut self, tx: &Connection) -> Result<(), Error> {
        self.asked.clear();
        let oldest_row_kept = self.next_seq - 4 * self.users_kept as i64;
        let mut leaving = Vec::new();
        while let Some((_, oldest)) = self.journaled.front() {
            if self.journaled.len() <= self.users_kept && oldest.seq >= oldest_row_kept {
                break;
            }
            leaving.extend(self.journaled.pop_front());
        }
        if leaving.is_empty() {
            return Ok(());
        }
        leaving.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let mut put_user = tx.prepare_cached(
            "INSERT INTO users (user_id, state, members) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, members = excluded.members",
        )?;
        for (user, row) in &leaving {
            put_user.execute(params![user, row.state, row.latest.column()])?;
        }
        let first_needed = self.journaled.front().map_or(self.next_seq, |(_, oldest)| oldest.seq);
        tx.prepare_cached("DELETE FROM user_journal WHERE seq < ?1")?.execute([first_needed])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::counters::Window;
    use crate::enrich::{Assignment, UserState};
    use crate::sqlite::tests::{commit_members, commit_users, known, new_store_journaling, purchase};
    use crate::sqlite::{SqliteBackend, LEASE};
    use crate::store::{PartitionStore, ProcessingBackend};
    use rusqlite::Connection;
    use std::collections::HashSet;
    use std::path::Path;

    /// A state told apart by its first exposure.
    fn state(at: i64) -> UserState {
        let assignment = Assignment { experiment: "e".into(), variant: "a".into(), first_exposure: at, values: vec![] };
        UserState { assignments: vec![assignment] }
    }

    fn commit(store: &mut dyn PartitionStore, users: &[(&str, &UserState)]) {
        commit_users(store, users, &[]);
    }

    fn journal_rows(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT user_id FROM user_journal ORDER BY seq").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn row_state(path: &Path, user: &str) -> UserState {
        let conn = Connection::open(path).unwrap();
        let text: String = conn.query_row("SELECT state FROM users WHERE user_id = ?1", [user], |r| r.get(0)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Users the store was asked for are written to `users`; users changed again without being
    /// asked for are journaled, found there by the store that wrote them and by a new one, and
    /// written to `users` when more than the journal keeps have changed since.
    #[test]
    fn users_changed_without_being_read_are_journaled_until_they_leave_it() {
        let (_dir, path, mut store, reopen) = new_store_journaling(2);
        assert!(store.users(&["u1", "u2", "u3"]).unwrap().is_empty());
        commit(&mut *store, &[("u1", &state(1)), ("u2", &state(1)), ("u3", &state(1))]);
        assert!(journal_rows(&path).is_empty(), "users just read are written in place");

        commit(&mut *store, &[("u1", &state(2))]);
        commit(&mut *store, &[("u1", &state(3)), ("u2", &state(3))]);
        assert_eq!(journal_rows(&path), ["u1", "u1", "u2"]);
        assert_eq!(row_state(&path, "u1"), state(1), "the row is older than the journal");
        let found = reopen().users(&["u1", "u2", "u3"]).unwrap();
        let read_back = (found["u1"].clone(), found["u2"].clone(), found["u3"].clone());
        assert_eq!(read_back, (state(3), state(3), state(1)), "read back from the table");

        // A third user journaled: the one unchanged longest (u1) leaves for its row.
        commit(&mut *store, &[("u3", &state(4))]);
        assert_eq!(row_state(&path, "u1"), state(3));
        assert_eq!(journal_rows(&path), ["u2", "u3"], "rows below the oldest journaled user's are gone");
        for mut store in [store, reopen()] {
            let found = store.users(&["u1", "u2", "u3"]).unwrap();
            assert_eq!((found["u1"].clone(), found["u2"].clone(), found["u3"].clone()), (state(3), state(3), state(4)));
        }
    }

    /// One user changing at every commit would hold the journal's other rows forever: a user
    /// whose last row is four times the journal's size old leaves it.
    #[test]
    fn a_user_unchanged_for_long_leaves_the_journal() {
        let (_dir, path, mut store, _) = new_store_journaling(2);
        commit(&mut *store, &[("cold", &state(0)), ("hot", &state(0))]);
        commit(&mut *store, &[("cold", &state(1))]);
        for at in 2..10 {
            commit(&mut *store, &[("hot", &state(at))]);
        }
        assert_eq!(row_state(&path, "cold"), state(1));
        assert!(journal_rows(&path).len() <= 8, "{:?}", journal_rows(&path));
        assert_eq!(store.users(&["cold", "hot"]).unwrap()["hot"], state(9));
    }

    /// A journaled user's memberships are in their journal row, also when only they change:
    /// found by the store and by a new one, and in their row in `users` once they leave.
    #[test]
    fn a_journaled_users_memberships_are_found_and_leave_with_them() {
        let (_dir, path, mut store, reopen) = new_store_journaling(1);
        let (hour, day, later_hour) = (
            purchase(Window::Hour, 3600, "", ""),
            purchase(Window::Day, 0, "", ""),
            purchase(Window::Hour, 7200, "", ""),
        );
        let asked = [(&hour, "u1"), (&day, "u1"), (&later_hour, "u1")];
        commit(&mut *store, &[("u1", &state(1))]);
        commit_users(&mut *store, &[("u1", &state(2))], &[(&hour, "u1"), (&day, "u1")]);
        commit_members(&mut *store, &[(&later_hour, "u1")]);
        assert_eq!(journal_rows(&path), ["u1", "u1", "u1"]);
        let all: HashSet<_> = asked.iter().map(|(key, user)| ((*key).clone(), (*user).to_owned())).collect();
        assert_eq!(known(&mut *store, &asked), all);
        assert_eq!(known(&mut *reopen(), &asked), all);
        assert_eq!(reopen().users(&["u1"]).unwrap()["u1"], state(2));

        commit(&mut *store, &[("u2", &state(1))]);
        let conn = Connection::open(&path).unwrap();
        let members: String =
            conn.query_row("SELECT members FROM users WHERE user_id = 'u1'", [], |r| r.get(0)).unwrap();
        assert_eq!(members, "0:1,2,3");
        assert_eq!(row_state(&path, "u1"), state(2));
        assert_eq!(known(&mut *reopen(), &asked), all);
    }

    /// A run that journals fewer users than the one before (here none) writes the ones the
    /// journal holds out, and a change of such a user in the meantime is not overwritten.
    #[test]
    fn a_smaller_journal_writes_out_what_a_larger_one_left() {
        let (_dir, path, mut store, _) = new_store_journaling(4);
        commit(&mut *store, &[("u1", &state(1)), ("u2", &state(1))]);
        commit(&mut *store, &[("u1", &state(2)), ("u2", &state(2))]);
        assert_eq!(journal_rows(&path), ["u1", "u2", "u1", "u2"]);
        drop(store);
        let mut store = SqliteBackend::open(&path).unwrap().journaling(0).open(LEASE).unwrap();
        assert_eq!(store.users(&["u1"]).unwrap()["u1"], state(2));
        commit(&mut *store, &[("u1", &state(3))]);
        assert!(journal_rows(&path).is_empty());
        assert_eq!((row_state(&path, "u1"), row_state(&path, "u2")), (state(3), state(2)));
    }
}
