//! The working copy of one log partition's processing state: what its processor holds in memory
//! between commits — its recent users' assignments and metric values, the aggregates, the recent
//! counters and the checkpoint — each part kept by the stage that changes it. Users and counters
//! are caches of bounded size in front of the store ([`StateCache`]).
//!
//! Every change made while processing a batch is written in one transaction together with the
//! dedupe ids, the archive's open buffers and the next offset to process. After a crash or a
//! failed step the working copy is dropped and loaded again from the [`PartitionStore`], and the
//! log is read again from the checkpoint: the only recovery path there is, shared by crashes,
//! retries and a partition taken over by another node.

use super::StateCache;
use crate::aggregate::Aggregates;
use crate::archive::OpenFile;
use crate::counters::Counters;
use crate::enrich::Users;
use crate::error::Error;
use crate::store::{Changes, Durability, FirstDelivery, PartitionStore};

pub(super) struct WorkingCopy {
    /// Every record of the partition below this offset is processed and committed.
    pub next_offset: u64,
    /// The archive's buffers open at the last commit.
    pub open_files: Vec<OpenFile>,
    pub users: Users,
    pub aggregates: Aggregates,
    pub counters: Counters,
    /// [`WorkingCopy::replay_from`] as of the session's last synced commit: the log must keep
    /// every record from here on. `None` until the session's first synced commit.
    synced_replay_from: Option<u64>,
}

impl WorkingCopy {
    /// Loads the committed state; users and counters are read as batches need them, into
    /// caches of `cache`'s sizes.
    pub fn load(store: &mut dyn PartitionStore, cache: StateCache) -> Result<WorkingCopy, Error> {
        let committed = store.load()?;
        Ok(WorkingCopy {
            next_offset: committed.next_offset,
            open_files: committed.open_files,
            users: Users::new(cache.users),
            aggregates: Aggregates::new(committed.sums),
            counters: Counters::new(cache.members),
            synced_replay_from: None,
        })
    }

    /// Keeps at most `cache`'s sizes in memory from the next commit on: the partition's share
    /// of the node's caches changes as the node takes partitions over or hands them back.
    pub fn resize(&mut self, cache: StateCache) {
        self.users.set_capacity(cache.users);
        self.counters.set_member_capacity(cache.members);
    }

    /// The users and the unique-user memberships in memory.
    pub fn cached(&self) -> (usize, usize) {
        (self.users.held(), self.counters.members_held())
    }

    /// Where reading must start: the checkpoint, or earlier if an archive buffer began earlier.
    pub fn replay_from(&self) -> u64 {
        self.open_files.iter().map(|o| o.first_offset).min().unwrap_or(self.next_offset).min(self.next_offset)
    }

    /// Where the log may start to discard records: a power cut can take the state back to the
    /// last synced commit, and reading then starts from its checkpoint. `None` until a commit of
    /// this session is synced (the state loaded at start may not be on disk yet either).
    pub fn retain_from(&self) -> Option<u64> {
        self.synced_replay_from
    }

    /// Writes what changed, the new dedupe ids, the archive's open buffers and the checkpoint
    /// in one transaction.
    pub fn commit(
        &mut self,
        store: &mut dyn PartitionStore,
        next_offset: u64,
        open_files: Vec<OpenFile>,
        deliveries: &[FirstDelivery],
        expire_deliveries_before: Option<i64>,
    ) -> Result<(), Error> {
        let changes = Changes {
            next_offset,
            users: self.users.changed(),
            sums: self.aggregates.changed(),
            counters: self.counters.changed(),
            counter_users: self.counters.new_members(),
            deliveries,
            expire_deliveries_before,
            open_files: &open_files,
        };
        let durability = store.commit(changes)?;
        self.users.committed();
        self.aggregates.committed();
        self.counters.committed();
        self.next_offset = next_offset;
        self.open_files = open_files;
        if durability == Durability::Synced {
            self.synced_replay_from = Some(self.replay_from());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteBackend;
    use crate::store::{Lease, ProcessingBackend};
    use std::time::{Duration, Instant};

    /// The log may discard records only below the checkpoint of a synced commit: a commit that is
    /// not on disk yet could be lost to a power cut, and its records would be read again.
    #[test]
    fn the_log_is_kept_back_to_the_last_synced_commit() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path().join("state.sqlite")).unwrap();
        let mut store = backend.open(Lease { partition: 0, epoch: 0 }).unwrap();
        let mut copy = WorkingCopy::load(&mut *store, StateCache::default()).unwrap();
        assert_eq!(copy.retain_from(), None, "nothing of this session is known to be on disk");

        let first_synced = Instant::now();
        copy.commit(&mut *store, 10, Vec::new(), &[], None).unwrap();
        assert_eq!(copy.retain_from(), Some(10), "a session's first commit is synced");
        copy.commit(&mut *store, 20, Vec::new(), &[], None).unwrap();
        if first_synced.elapsed() < Duration::from_secs(1) {
            assert_eq!(copy.replay_from(), 20);
            assert_eq!(copy.retain_from(), Some(10), "the commit after it, within a second, is not synced");
        }

        std::thread::sleep(Duration::from_secs(1));
        copy.commit(&mut *store, 30, Vec::new(), &[], None).unwrap();
        assert_eq!(copy.retain_from(), Some(30), "a second later a commit is synced again");
    }
}
