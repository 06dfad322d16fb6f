//! The consumer group of the distributed mode: which node processes which partition of the
//! topic, coordinated through PostgreSQL.
//!
//! Kafka has a consumer-group protocol of its own, but its offsets live in the broker, and
//! exactly-once aggregates need a partition's offset committed **in the same transaction** as
//! the aggregates it produced, which are in PostgreSQL. So the group lives there too:
//!
//! - **Members.** Every node upserts its row in `event_members` each heartbeat (1 s); a member
//!   is live while its last heartbeat is younger than the lease (6 s).
//! - **Leases.** `event_partitions` has a row per partition: its owner, an epoch and a lease
//!   expiry. An owner renews its leases each heartbeat. A node claims a partition that is free
//!   or whose lease expired, raising its epoch, in one `UPDATE … FOR UPDATE SKIP LOCKED`, so two
//!   nodes never claim the same one.
//! - **Fair share.** Each live node should hold `P / n` partitions, the first `P mod n` nodes
//!   (by name) one more ([`fair_share`]). A node above its share stops processing the partitions
//!   above it (its last commit, its open archive files closed) and frees them; a node below its
//!   share claims free or expired ones. A joining node therefore gets its share within a few
//!   heartbeats, and a killed node's partitions are taken over when its leases expire.
//! - **Fence.** Every commit of a partition first updates its row `WHERE owner = me AND epoch =
//!   mine`; when that matches nothing, another node took the partition over, the transaction is
//!   rolled back and the processor stops (see `state`). The row lock also orders a commit and a
//!   takeover: the new owner's load sees either all of a commit or none of it.
//!
//! Times are the database's (`now()`), so the nodes' clocks do not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use vexil_events::store::Lease;
use vexil_events::Error;

use crate::processing::db_error;

/// The share of a lease this node counts on after sending its renewal: the rest is margin for
/// the database's clock running faster than this node's, and for a write that started in time.
const VALID_SHARE: f64 = 2.0 / 3.0;

/// Timing of the group.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// How often a node renews its membership and leases and rebalances.
    pub heartbeat: Duration,
    /// How long a lease (and a membership) lasts without renewal: the longest a killed node's
    /// partitions wait before another node takes them over.
    pub lease: Duration,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions { heartbeat: Duration::from_secs(1), lease: Duration::from_secs(6) }
    }
}

/// How many of `partitions` the member at `index` of `members` live members (in name order)
/// should hold: the shares differ by at most one and add up to `partitions`.
pub fn fair_share(partitions: u32, members: usize, index: usize) -> u32 {
    let members = members.max(1) as u32;
    partitions / members + u32::from((index as u32) < partitions % members)
}

/// Which held partitions to give up to come down to `share`: the highest-numbered ones.
pub fn to_release(held: &BTreeSet<u32>, share: u32) -> Vec<u32> {
    held.iter().rev().take(held.len().saturating_sub(share as usize)).copied().collect()
}

/// What this node holds.
#[derive(Default)]
struct Held {
    /// Partitions whose lease this node holds (and renews), with its epoch.
    leases: BTreeMap<u32, u64>,
    /// Held partitions above the fair share: no longer offered to the pipeline, freed once
    /// their processor has stopped.
    releasing: BTreeSet<u32>,
    /// Held partitions the pipeline was offered (and so may be processing): only the pipeline
    /// frees those ([`Group::release`]); the others the group frees itself.
    offered: BTreeSet<u32>,
    /// Until when the leases surely hold, by this node's clock: the last renewal was sent
    /// before this minus the lease, less a margin for the database's clock running faster.
    valid_until: Option<Instant>,
}

/// One node's membership in the group.
pub struct Group {
    pool: Pool,
    node: String,
    partitions: u32,
    options: GroupOptions,
    held: Mutex<Held>,
    /// Held by a heartbeat and by a release, so one never acts on what the other half-did.
    turn: tokio::sync::Mutex<()>,
}

impl Group {
    /// A member named `node` of the group over `partitions` partitions, holding nothing yet
    /// (the first [`Group::tick`] registers it and claims its share). The tables must exist
    /// (see `processing::PostgresBackend::connect`).
    pub fn new(pool: Pool, node: String, partitions: u32, options: GroupOptions) -> Group {
        Group { pool, node, partitions, options, held: Mutex::new(Held::default()), turn: tokio::sync::Mutex::new(()) }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The partitions the pipeline should process now.
    pub fn leases(&self) -> Vec<Lease> {
        let mut held = self.held.lock().expect("group poisoned");
        let Held { leases, releasing, offered, .. } = &mut *held;
        let now: Vec<Lease> = leases
            .iter()
            .filter(|(p, _)| !releasing.contains(p))
            .map(|(&partition, &epoch)| Lease { partition, epoch })
            .collect();
        offered.extend(now.iter().map(|l| l.partition));
        now
    }

    /// Whether this node holds `lease` and its renewal surely has not expired yet (see
    /// `valid_until`): false once the database may let another node take it.
    pub fn holds(&self, lease: Lease) -> bool {
        let held = self.held.lock().expect("group poisoned");
        held.leases.get(&lease.partition) == Some(&lease.epoch) && held.valid_until.is_some_and(|t| Instant::now() < t)
    }

    /// Gives `lease` back: its processor has stopped. Frees the partition unless another node
    /// took it over meanwhile.
    pub async fn release(&self, lease: Lease) -> Result<(), Error> {
        let _turn = self.turn.lock().await;
        {
            let mut held = self.held.lock().expect("group poisoned");
            if held.leases.get(&lease.partition) == Some(&lease.epoch) {
                held.leases.remove(&lease.partition);
            }
            held.releasing.remove(&lease.partition);
            held.offered.remove(&lease.partition);
        }
        self.free(&self.pool.get().await.map_err(db_error)?, lease).await
    }

    /// Frees a partition in the database, unless another node took it over meanwhile.
    async fn free(&self, client: &deadpool_postgres::Client, lease: Lease) -> Result<(), Error> {
        client
            .execute(
                "UPDATE event_partitions SET owner = NULL, lease_until = '-infinity'
                 WHERE log_partition = $1 AND owner = $2 AND epoch = $3",
                &[&(lease.partition as i32), &self.node, &(lease.epoch as i64)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Leaves the group (at shutdown, after every processor stopped): frees what is still held
    /// and removes the membership, so the others rebalance at their next heartbeat.
    pub async fn leave(&self) -> Result<(), Error> {
        *self.held.lock().expect("group poisoned") = Held::default();
        let client = self.pool.get().await.map_err(db_error)?;
        client
            .execute(
                "UPDATE event_partitions SET owner = NULL, lease_until = '-infinity' WHERE owner = $1",
                &[&self.node],
            )
            .await
            .map_err(db_error)?;
        client.execute("DELETE FROM event_members WHERE node = $1", &[&self.node]).await.map_err(db_error)?;
        Ok(())
    }

    /// One heartbeat: renews the membership and the leases, notes leases lost to other nodes,
    /// and moves towards the fair share (releasing above it, claiming below it).
    pub async fn tick(&self) -> Result<(), Error> {
        let _turn = self.turn.lock().await;
        let sent = Instant::now();
        let lease = self.options.lease.as_secs_f64();
        let client = self.pool.get().await.map_err(db_error)?;
        client
            .execute(
                "INSERT INTO event_members (node, seen_at) VALUES ($1, now())
                 ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                &[&self.node],
            )
            .await
            .map_err(db_error)?;
        // Nodes that died without leaving: long past any lease, their rows only take room.
        client
            .execute("DELETE FROM event_members WHERE seen_at < now() - interval '1 hour'", &[])
            .await
            .map_err(db_error)?;
        let members: Vec<String> = client
            .query(
                "SELECT node FROM event_members WHERE seen_at > now() - make_interval(secs => $1) ORDER BY node",
                &[&lease],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let renewed: BTreeMap<u32, u64> = client
            .query(
                "UPDATE event_partitions SET lease_until = now() + make_interval(secs => $2)
                 WHERE owner = $1 RETURNING log_partition, epoch",
                &[&self.node, &lease],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64))
            .collect();
        let index = members.iter().position(|m| *m == self.node).unwrap_or(members.len());
        let share = fair_share(self.partitions, members.len().max(index + 1), index);
        let (wanted, idle) = {
            let mut held = self.held.lock().expect("group poisoned");
            // What the database says this node owns is what it holds: a lease missing there was
            // taken over (this node was too slow to renew it).
            held.leases = renewed;
            held.valid_until = Some(sent + self.options.lease.mul_f64(VALID_SHARE));
            let Held { leases, releasing, offered, .. } = &mut *held;
            releasing.retain(|p| leases.contains_key(p));
            offered.retain(|p| leases.contains_key(p));
            let kept: BTreeSet<u32> = leases.keys().filter(|p| !releasing.contains(p)).copied().collect();
            releasing.extend(to_release(&kept, share));
            // Partitions above the share that no processor ever started on: free them now.
            let idle: Vec<Lease> = releasing
                .iter()
                .filter(|p| !offered.contains(p))
                .map(|&partition| Lease { partition, epoch: leases[&partition] })
                .collect();
            for lease in &idle {
                leases.remove(&lease.partition);
                releasing.remove(&lease.partition);
            }
            (share.saturating_sub(leases.len() as u32), idle)
        };
        for lease in idle {
            self.free(&client, lease).await?;
        }
        if wanted == 0 {
            return Ok(());
        }
        let claimed = client
            .query(
                "UPDATE event_partitions SET owner = $1, epoch = epoch + 1,
                     lease_until = now() + make_interval(secs => $2)
                 WHERE log_partition IN (
                     SELECT log_partition FROM event_partitions
                     WHERE owner IS NULL OR lease_until < now()
                     ORDER BY log_partition LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING log_partition, epoch",
                &[&self.node, &lease, &i64::from(wanted)],
            )
            .await
            .map_err(db_error)?;
        let mut held = self.held.lock().expect("group poisoned");
        for row in claimed {
            held.leases.insert(row.get::<_, i32>(0) as u32, row.get::<_, i64>(1) as u64);
        }
        Ok(())
    }

    /// Heartbeats until the task is aborted. A failed heartbeat is retried at the next one;
    /// leases not renewed within the lease time pass to other nodes, and the fence stops this
    /// node's commits on them.
    pub async fn run(&self) {
        let mut tick = tokio::time::interval(self.options.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // The next heartbeat retries; the lease outlives several missed ones.
            let _ = self.tick().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fair_share, to_release};
    use std::collections::BTreeSet;

    #[test]
    fn shares_differ_by_at_most_one_and_cover_every_partition() {
        for partitions in [1, 2, 7, 8, 64] {
            for members in 1..=10 {
                let shares: Vec<u32> = (0..members).map(|i| fair_share(partitions, members, i)).collect();
                assert_eq!(shares.iter().sum::<u32>(), partitions, "{partitions} over {members}");
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1, "{shares:?}");
                assert!(shares.windows(2).all(|w| w[0] >= w[1]), "the first members take the extra ones");
            }
        }
        assert_eq!((0..3).map(|i| fair_share(8, 3, i)).collect::<Vec<_>>(), [3, 3, 2]);
        assert_eq!(fair_share(2, 3, 2), 0, "more members than partitions: the last ones idle");
        assert_eq!(fair_share(8, 0, 0), 8, "a node that does not see itself yet counts itself");
    }

    #[test]
    fn a_node_above_its_share_releases_its_highest_partitions() {
        let held: BTreeSet<u32> = [0, 1, 2, 3, 4, 5, 6, 7].into();
        assert_eq!(to_release(&held, 3), [7, 6, 5, 4, 3]);
        assert_eq!(to_release(&held, 8), Vec::<u32>::new());
        assert_eq!(to_release(&[2, 5].into(), 0), [5, 2]);
        assert!(to_release(&BTreeSet::new(), 2).is_empty());
    }
}
