//! The working copy of one log partition's processing state: what its processor holds in memory
//! between commits — its recent users' assignments and metric values, the aggregates, the recent
//! counters and the checkpoint — each part kept by the stage that changes it. Users and counters
//! are caches of bounded size in front of the store ([`StateCache`]).
//!
//! Every change made while processing a batch is written in one transaction together with the
//! dedupe ids, the archive's open buffers and the next offset to process: the batch's changes
//! are taken out as a [`PreparedCommit`], which the committer writes while the working copy goes
//! on with the next batch. After a crash or a
//! failed step the working copy is dropped and loaded again from the [`PartitionStore`], and the
//! log is read again from the checkpoint: the only recovery path there is, shared by crashes,
//! retries and a partition taken over by another node.

use super::stages::CommitReport;
use super::StateCache;
use crate::aggregate::{AggregateKey, Aggregates, Sums};
use crate::archive::OpenFile;
use crate::counters::{CounterChanges, Counters};
use crate::enrich::{UserState, Users};
use crate::error::Error;
use crate::store::{Changes, Durability, FirstDelivery, PartitionStore};
use std::collections::HashMap;

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

    /// Takes everything changed since the last prepared commit, with the new dedupe ids, the
    /// archive's open buffers and the checkpoint, as one commit of its own: the working copy
    /// goes on from it at once while it is written ([`super::committer`]). Until it lands the
    /// working copy's checkpoint stays the last landed one.
    pub fn prepare_commit(
        &mut self,
        next_offset: u64,
        open_files: Vec<OpenFile>,
        deliveries: Vec<FirstDelivery>,
        expire_deliveries_before: Option<i64>,
        report: CommitReport,
    ) -> PreparedCommit {
        let users = self.users.take_changed();
        let sums = self.aggregates.changed().into_iter().map(|(key, sums)| (key.clone(), *sums)).collect();
        self.aggregates.committed();
        let counters = self.counters.take_changes();
        PreparedCommit { next_offset, users, sums, counters, deliveries, expire_deliveries_before, open_files, report }
    }

    /// A prepared commit reached the store with `durability`: the working copy's checkpoint
    /// moves to it.
    pub fn landed(&mut self, commit: &PreparedCommit, durability: Durability) {
        self.next_offset = commit.next_offset;
        self.open_files = commit.open_files.clone();
        if durability == Durability::Synced {
            self.synced_replay_from = Some(self.replay_from());
        }
    }
}

/// One commit's worth of changes, owned, so that it can be written while the working copy goes
/// on. Until it is sent to the store it is also where the next batch's lookups find the users
/// and dedupe ids it changed (the store does not have them yet).
pub(crate) struct PreparedCommit {
    next_offset: u64,
    users: HashMap<String, UserState>,
    sums: Vec<(AggregateKey, Sums)>,
    counters: CounterChanges,
    deliveries: Vec<FirstDelivery>,
    expire_deliveries_before: Option<i64>,
    open_files: Vec<OpenFile>,
    /// What the processor reports once the commit has landed.
    pub(super) report: CommitReport,
}

impl PreparedCommit {
    /// The changes as the store writes them.
    pub(super) fn changes(&self) -> Changes<'_> {
        Changes {
            next_offset: self.next_offset,
            users: self.users.iter().map(|(user_id, state)| (user_id.as_str(), state)).collect(),
            sums: self.sums.iter().map(|(key, sums)| (key, sums)).collect(),
            counters: self.counters.counters(),
            counter_users: self.counters.members(),
            deliveries: &self.deliveries,
            expire_deliveries_before: self.expire_deliveries_before,
            open_files: &self.open_files,
        }
    }

    /// The checkpoint this commit moves to.
    pub(super) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The state this commit writes for `user_id`, if it writes one.
    pub(crate) fn user(&self, user_id: &str) -> Option<&UserState> {
        self.users.get(user_id)
    }

    /// The sender-given ids this commit records as first delivered.
    pub(crate) fn deliveries(&self) -> &[FirstDelivery] {
        &self.deliveries
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
        let mut commit = |copy: &mut WorkingCopy, next_offset| {
            let prepared = copy.prepare_commit(next_offset, Vec::new(), Vec::new(), None, CommitReport::default());
            let durability = store.commit(prepared.changes()).unwrap();
            copy.landed(&prepared, durability);
        };
        assert_eq!(copy.retain_from(), None, "nothing of this session is known to be on disk");

        let first_synced = Instant::now();
        commit(&mut copy, 10);
        assert_eq!(copy.retain_from(), Some(10), "a session's first commit is synced");
        commit(&mut copy, 20);
        if first_synced.elapsed() < Duration::from_secs(1) {
            assert_eq!(copy.replay_from(), 20);
            assert_eq!(copy.retain_from(), Some(10), "the commit after it, within a second, is not synced");
        }

        std::thread::sleep(Duration::from_secs(1));
        commit(&mut copy, 30);
        assert_eq!(copy.retain_from(), Some(30), "a second later a commit is synced again");
    }
}
