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
use crate::store::{Changes, FirstDelivery, PartitionStore};

pub(super) struct WorkingCopy {
    /// Every record of the partition below this offset is processed and committed.
    pub next_offset: u64,
    /// The archive's buffers open at the last commit.
    pub open_files: Vec<OpenFile>,
    pub users: Users,
    pub aggregates: Aggregates,
    pub counters: Counters,
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
        })
    }

    /// Where reading must start: the checkpoint, or earlier if an archive buffer began earlier.
    pub fn replay_from(&self) -> u64 {
        self.open_files.iter().map(|o| o.first_offset).min().unwrap_or(self.next_offset).min(self.next_offset)
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
        store.commit(changes)?;
        self.users.committed();
        self.aggregates.committed();
        self.counters.committed();
        self.next_offset = next_offset;
        self.open_files = open_files;
        Ok(())
    }
}
