//! The consumer group and the PostgreSQL processing state against a real database
//! (`VEXIL_TEST_DATABASE_URL`, which `scripts/services/postgres.sh` and `scripts/test.sh`
//! start): nodes share the partitions fairly, a dead node's partitions are taken over when its
//! leases expire, its late commits are fenced, and reads sum every partition.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vexil_distributed::group::GroupOptions;
use vexil_distributed::processing::PostgresBackend;
use vexil_events::aggregate::{AggregateKey, Sums};
use vexil_events::counters::{CounterKey, Window};
use vexil_events::store::{Changes, Durability, Lease, ProcessingBackend};
use vexil_events::Error;
use vexil_store::testkit::postgres::fresh_database;

const PARTITIONS: u32 = 8;

fn options() -> GroupOptions {
    GroupOptions { heartbeat: Duration::from_millis(100), lease: Duration::from_millis(1500) }
}

/// A node as its pipeline's supervisor drives it: processing what the group offers, and
/// releasing each lease the group stops offering.
struct Node {
    backend: PostgresBackend,
    running: Mutex<Vec<Lease>>,
}

impl std::ops::Deref for Node {
    type Target = PostgresBackend;
    fn deref(&self) -> &PostgresBackend {
        &self.backend
    }
}

impl Node {
    /// The leases offered now; the ones no longer offered are released.
    fn observe(&self) -> Vec<Lease> {
        let now = self.backend.leases();
        let mut running = self.running.lock().unwrap();
        running.iter().filter(|l| !now.contains(l)).for_each(|l| self.backend.released(*l));
        *running = now.clone();
        now
    }
}

async fn node(url: &str) -> Node {
    node_with(url, options()).await
}

async fn node_with(url: &str, options: GroupOptions) -> Node {
    let backend = PostgresBackend::connect(url, "events", PARTITIONS, options).await.unwrap();
    Node { backend, running: Mutex::new(Vec::new()) }
}

fn held(node: &Node) -> BTreeSet<u32> {
    node.observe().iter().map(|l| l.partition).collect()
}

/// Polls until the nodes hold `shares` partitions each, disjoint and covering all of them. The
/// ceiling is generous so a loaded machine cannot fail a correct build.
async fn settle(nodes: &[&Node], shares: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sets: Vec<BTreeSet<u32>> = nodes.iter().map(|n| held(n)).collect();
        let mut sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let all: BTreeSet<u32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        if sizes == shares && all.len() == PARTITIONS as usize && total == PARTITIONS as usize {
            return;
        }
        assert!(Instant::now() < deadline, "never settled on {shares:?}: {sets:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a commit of `next_offset` with one aggregate row writes.
fn changes<'a>(next_offset: u64, key: &'a AggregateKey, sums: &'a Sums) -> Changes<'a> {
    Changes {
        next_offset,
        users: Vec::new(),
        sums: vec![(key, sums)],
        counters: Vec::new(),
        counter_users: Vec::new(),
        deliveries: &[],
        expire_deliveries_before: None,
        open_files: &[],
    }
}

fn key() -> AggregateKey {
    ("exp".to_owned(), "control".to_owned(), "m".to_owned())
}

/// A commit of `next_offset` with one aggregate row of `n` users; PostgreSQL's commits are on
/// disk when they return.
fn commit(node: &Node, lease: Lease, next_offset: u64, n: u64) -> Result<(), Error> {
    let sums = Sums { n, sum_x: n as f64, ..Sums::default() };
    let durability = node.open(lease)?.commit(changes(next_offset, &key(), &sums))?;
    assert_eq!(durability, Durability::Synced);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_shared_taken_over_and_fenced() {
    let Some(url) = fresh_database().await else { return };
    let a = node(&url).await;
    assert_eq!(held(&a).len(), PARTITIONS as usize, "a lone node takes every partition at once");
    let (b, c) = tokio::join!(node(&url), node(&url));
    settle(&[&a, &b, &c], &[3, 3, 2]).await;

    // C commits on one of its partitions, then dies without a word (no heartbeat, no release).
    let lease = c.observe()[0];
    assert!(c.holds(lease) && !c.holds(Lease { epoch: lease.epoch + 1, ..lease }));
    assert!(!a.holds(lease), "only the owner may write the partition's archive files");
    commit(&c, lease, 42, 2).unwrap();
    let late = c.open(lease).unwrap();
    drop(c);
    settle(&[&a, &b], &[4, 4]).await;

    // The new owner holds it under a higher epoch, starts from C's checkpoint, and C's late
    // commit changes nothing.
    let (owner, taken) = [&a, &b]
        .into_iter()
        .find_map(|n| n.observe().into_iter().find(|l| l.partition == lease.partition).map(|l| (n, l)))
        .unwrap();
    assert!(taken.epoch > lease.epoch);
    assert_eq!(owner.open(taken).unwrap().load().unwrap().next_offset, 42);
    let mut late = late;
    let fenced = late.commit(changes(99, &key(), &Sums { n: 1000, ..Sums::default() }));
    assert!(matches!(fenced, Err(Error::Fenced(p)) if p == lease.partition), "{fenced:?}");
    assert_eq!(owner.open(taken).unwrap().load().unwrap().next_offset, 42);

    // Reads sum the partitions, whichever node asks.
    let other = a.observe().into_iter().find(|l| l.partition != lease.partition).unwrap();
    commit(&a, other, 7, 3).unwrap();
    for reader in [&a, &b] {
        let rows = reader.stats().unwrap().aggregates("exp").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].sums.n, rows[0].sums.sum_x), (5, 5.0));
    }
    // So do the checkpoints that the backlog is measured from: every partition's, committed or not.
    let mut checkpoints = b.stats().unwrap().checkpoints().unwrap();
    checkpoints.sort_unstable();
    let expected: Vec<(u32, u64)> = (0..PARTITIONS)
        .map(|p| {
            (
                p,
                if p == lease.partition {
                    42
                } else if p == other.partition {
                    7
                } else {
                    0
                },
            )
        })
        .collect();
    assert_eq!(checkpoints, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_share_the_furthest_end_each_knows_of_every_partition() {
    let Some(url) = fresh_database().await else { return };
    // An ingest-only node shares its ends too, though it holds no partition.
    let a = node(&url).await;
    let b = PostgresBackend::connect_without_processing(&url, "events", PARTITIONS).await.unwrap();
    let ends = |known: &[(usize, u64)]| {
        let mut ends = vec![0; PARTITIONS as usize];
        known.iter().for_each(|&(p, end)| ends[p] = end);
        ends
    };
    assert_eq!(a.share_ends(&ends(&[(0, 5), (2, 3)])).unwrap(), ends(&[(0, 5), (2, 3)]));
    assert_eq!(b.share_ends(&ends(&[(0, 2), (1, 7)])).unwrap(), ends(&[(0, 5), (1, 7), (2, 3)]));
    // A node that knows less (it started later, or is behind) lowers nothing.
    assert_eq!(a.share_ends(&ends(&[])).unwrap(), ends(&[(0, 5), (1, 7), (2, 3)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_frees_its_partitions_at_once() {
    let Some(url) = fresh_database().await else { return };
    // Leases far longer than `settle` waits: the other node can only take the leaving node's
    // partitions in time if leaving freed them, not by their expiry.
    let long = GroupOptions { lease: Duration::from_secs(3600), ..options() };
    let a = node_with(&url, long.clone()).await;
    let b = node_with(&url, long).await;
    settle(&[&a, &b], &[4, 4]).await;
    let left = a.observe();
    a.leave();
    assert!(left.iter().all(|l| !a.holds(*l)), "a node that left holds nothing");
    settle(&[&b], &[8]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_another_topic_or_partition_count_is_refused() {
    let Some(url) = fresh_database().await else { return };
    let _first = node(&url).await;
    let other = PostgresBackend::connect(&url, "events", 4, options()).await.err().unwrap();
    assert!(other.contains("topic events with 8 partitions"), "{other}");
    let renamed = PostgresBackend::connect(&url, "other", 8, options()).await.err().unwrap();
    assert!(renamed.contains("every node must read the same topic"), "{renamed}");
}

/// A partition's unique-user memberships are found again, answered one flag per member asked
/// and in order, and are the partition's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_members_answer_each_member_asked_in_order() {
    let Some(url) = fresh_database().await else { return };
    let a = node(&url).await;
    let leases = a.observe();
    let purchase = |window, start| CounterKey {
        window,
        start,
        event: "purchase".into(),
        experiment: String::new(),
        variant: String::new(),
    };
    let (hour, day) = (purchase(Window::Hour, 3600), purchase(Window::Day, 0));
    let mut store = a.open(leases[0]).unwrap();
    let (key, sums) = (key(), Sums::default());
    let changes = Changes { counter_users: vec![(&hour, "u1"), (&day, "u2")], ..changes(1, &key, &sums) };
    store.commit(changes).unwrap();
    let asked = [(&day, "u1"), (&hour, "u1"), (&day, "u2"), (&hour, "u2"), (&hour, "u1")];
    assert_eq!(store.known_members(&asked).unwrap(), [false, true, true, false, true]);
    let mut other = a.open(leases[1]).unwrap();
    assert_eq!(other.known_members(&asked).unwrap(), [false; 5], "another partition's members are its own");
}
