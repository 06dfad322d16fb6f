//! The embedded processing state alone, without the stages around it: what one batch of
//! returning users costs the store when they are drawn uniformly from millions known. A batch is
//! what the processor asks of the store for 1,000 returning users: their rows
//! ([`PartitionStore::users`]), whether they are in this hour's and day's unique users of
//! `purchase` ([`PartitionStore::known_members`]), and one commit of their changed states.
//!
//! `KNOWN_USERS` (default 2,000,000) users are written first, in batches of 10,000, each
//! exposed to `checkout` with two metric values and a member of the hourly and daily purchase
//! counters: much as the HTTP scale benchmark leaves them (`scripts/bench/scale-users.sh`),
//! whose users are also members of the exposure and per-variant counters, so their rows are
//! somewhat longer.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::Rng;
use std::time::{Duration, Instant};
use vexil_events::counters::{CounterKey, Window};
use vexil_events::enrich::{Assignment, MetricValue, UserState};
use vexil_events::sqlite::SqliteBackend;
use vexil_events::store::{Changes, Lease, PartitionStore, ProcessingBackend};

const RETURNING_PER_BATCH: usize = 1_000;
const WRITTEN_PER_BATCH: usize = 10_000;
/// 2026-12-06 10:00 UTC, in seconds.
const NOW: i64 = 1_796_551_200;

fn user_id(n: usize) -> String {
    format!("u{n}")
}

fn state_of(n: usize) -> UserState {
    let value = (n % 100) as f64;
    UserState {
        assignments: vec![Assignment {
            experiment: "checkout".to_owned(),
            variant: if n.is_multiple_of(2) { "control" } else { "treatment" }.to_owned(),
            first_exposure: NOW * 1000,
            values: vec![
                MetricValue { metric: "purchase_rate".to_owned(), x: 1.0, y: 0.0 },
                MetricValue { metric: "revenue".to_owned(), x: value, y: 0.0 },
            ],
        }],
    }
}

fn purchase_counters() -> [CounterKey; 2] {
    [Window::Hour, Window::Day].map(|window| CounterKey {
        window,
        start: window.start_of(NOW * 1000),
        event: "purchase".to_owned(),
        experiment: String::new(),
        variant: String::new(),
    })
}

fn changes<'a>(
    next_offset: u64,
    users: Vec<(&'a str, &'a UserState)>,
    counter_users: Vec<(&'a CounterKey, &'a str)>,
) -> Changes<'a> {
    Changes {
        next_offset,
        users,
        sums: Vec::new(),
        counters: Vec::new(),
        counter_users,
        deliveries: &[],
        expire_deliveries_before: None,
        open_files: &[],
    }
}

/// A store holding `known` users, much as the scale benchmark's first half leaves them.
fn store_with(dir: &std::path::Path, known: usize) -> Box<dyn PartitionStore> {
    let backend = SqliteBackend::open(dir.join("state.sqlite")).unwrap();
    let mut store = backend.open(Lease { partition: 0, epoch: 0 }).unwrap();
    let counters = purchase_counters();
    let started = Instant::now();
    for (batch, first) in (0..known).step_by(WRITTEN_PER_BATCH).enumerate() {
        let ids: Vec<String> = (first..(first + WRITTEN_PER_BATCH).min(known)).map(user_id).collect();
        let states: Vec<UserState> = (first..first + ids.len()).map(state_of).collect();
        let users = ids.iter().map(String::as_str).zip(&states).collect();
        let members = ids.iter().flat_map(|id| counters.iter().map(move |key| (key, id.as_str()))).collect();
        store.commit(changes(batch as u64 + 1, users, members)).unwrap();
    }
    eprintln!("{known} users written in {:.1} s", started.elapsed().as_secs_f64());
    store
}

fn returning_users(c: &mut Criterion) {
    let known: usize = std::env::var("KNOWN_USERS").map_or(2_000_000, |v| v.parse().expect("KNOWN_USERS: a number"));
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_with(dir.path(), known);
    let counters = purchase_counters();
    let mut rng = rand::thread_rng();
    let mut next_offset = known as u64;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(RETURNING_PER_BATCH as u64));
    group.sample_size(20);
    group.bench_function(format!("returning_users_of_{known}"), |b| {
        b.iter_custom(|batches| {
            let mut spent = Duration::ZERO;
            for _ in 0..batches {
                let ids: Vec<String> = (0..RETURNING_PER_BATCH).map(|_| user_id(rng.gen_range(0..known))).collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let asked: Vec<(&CounterKey, &str)> =
                    ids.iter().flat_map(|id| counters.iter().map(move |key| (key, *id))).collect();
                let started = Instant::now();
                let mut found = store.users(&ids).unwrap();
                assert!(store.known_members(&asked).unwrap().iter().all(|known| *known));
                for state in found.values_mut() {
                    state.assignments[0].values[1].x += 1.0;
                }
                next_offset += 1;
                store
                    .commit(changes(next_offset, found.iter().map(|(id, s)| (id.as_str(), s)).collect(), Vec::new()))
                    .unwrap();
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, returning_users);
criterion_main!(benches);
