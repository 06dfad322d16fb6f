//! Processing: enrichment window, exact aggregates against a brute-force recomputation,
//! counters, torn log tails, poison records, and crashes with SIGKILL.
mod common;

use common::{assert_sums_match, brute_force, committed_sums, experiments, unique_ids, Env};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vexil_events::counters::Window;
use vexil_events::pipeline::{PipelineOptions, StateCache};
use vexil_events::{BodyFormat, DlqFilter, EventBus, FileLog, LogOptions, Metrics};

fn at(base: chrono::DateTime<chrono::Utc>, minutes: i64) -> String {
    (base + chrono::Duration::minutes(minutes)).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_before_the_first_exposure_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let t0 = chrono::Utc::now() - chrono::Duration::days(1);
    let batch = json!([
        {"event": "purchase", "user_id": "u1", "value": 100, "timestamp": at(t0, 0)},
        {"event": "exposure", "type": "exposure", "user_id": "u1", "experiment_key": "exp_a", "variant": "treatment", "timestamp": at(t0, 10)},
        {"event": "purchase", "user_id": "u1", "value": 30, "timestamp": at(t0, 20), "properties": {"currency": "EUR"}},
        {"event": "exposure", "type": "exposure", "user_id": "u2", "experiment_key": "exp_a", "variant": "treatment", "timestamp": at(t0, 10)},
        {"event": "purchase", "user_id": "u3", "value": 7, "timestamp": at(t0, 30)},
    ]);
    env.ingestor.ingest(batch.to_string().as_bytes(), BodyFormat::Auto).await.unwrap();
    env.settle();
    let sums = committed_sums(&env, &experiments());
    let get = |m: &str| sums[&("exp_a".to_owned(), "treatment".to_owned(), m.to_owned())];
    // Two users entered (u2 with no events counts as 0); only the post-exposure purchase counts.
    assert_eq!((get("converted").n, get("converted").sum_x), (2, 1.0));
    assert_eq!((get("revenue").sum_x, get("revenue").sum_x2), (30.0, 900.0));
    assert_eq!(get("orders_eur").sum_x, 1.0);
    assert_eq!(get("orders_eur_segment").sum_x, 1.0);
    let archived = env.archive();
    assert_eq!(archived.len(), 5);
    let late = archived.iter().find(|e| e["value"] == 30.0).unwrap();
    assert_eq!(late["experiments"], json!({"exp_a": "treatment"}));
    assert!(archived.iter().find(|e| e["value"] == 100.0).unwrap().get("experiments").is_none());
    let stats = env.pipeline.stats().unwrap();
    let (from, to) = (t0 - chrono::Duration::days(1), t0 + chrono::Duration::days(1));
    let day: Vec<_> = stats.event_counters("purchase", Window::Day, from, to).unwrap();
    let total: u64 = day.iter().map(|r| r.counter.count).sum();
    assert_eq!(total, 3);
    let per_variant = stats.variant_counters("purchase", "exp_a", Window::Hour, from, to).unwrap();
    assert_eq!(per_variant.iter().map(|r| r.counter.count).sum::<u64>(), 1);
}

/// How often the pipeline of the test below handed its threads' freed memory back.
static RELEASES: AtomicUsize = AtomicUsize::new(0);

/// The reader and the processor hand their freed memory back when they go idle after records:
/// once each per burst, not at every idle poll, and never before they have done anything.
#[tokio::test(flavor = "multi_thread")]
async fn idle_pipeline_threads_hand_freed_memory_back_once_per_burst() {
    let dir = tempfile::tempdir().unwrap();
    let options = PipelineOptions {
        idle_poll: Duration::from_millis(20),
        release_freed_memory: || {
            RELEASES.fetch_add(1, Ordering::SeqCst);
        },
        ..PipelineOptions::default()
    };
    let env = Env::open_with_options(dir.path(), experiments(), options);
    // Ten idle polls and more.
    let idle = Duration::from_millis(300);
    std::thread::sleep(idle);
    assert_eq!(RELEASES.load(Ordering::SeqCst), 0, "threads that did nothing have nothing to hand back");
    for burst in 1..=2 {
        let purchase = json!([{"event": "purchase", "user_id": format!("u{burst}"), "value": 5}]);
        env.ingestor.ingest(purchase.to_string().as_bytes(), BodyFormat::Auto).await.unwrap();
        assert!(env.pipeline.wait_caught_up(Duration::from_secs(30)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while RELEASES.load(Ordering::SeqCst) < 2 * burst && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(idle);
        assert_eq!(RELEASES.load(Ordering::SeqCst), 2 * burst, "the reader and the processor, once each per burst");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregates_equal_a_brute_force_recomputation_from_the_archive() {
    aggregates_match_a_brute_force_recomputation(StateCache::default()).await;
}

/// The same with caches far smaller than the 1,200 users: users and unique-user memberships
/// leave memory after nearly every commit and are read back from the store.
#[tokio::test(flavor = "multi_thread")]
async fn aggregates_stay_exact_when_users_leave_memory() {
    aggregates_match_a_brute_force_recomputation(StateCache { users: 40, members: 100 }).await;
}

/// What a batch changed must be what the very next batch finds, in memory or in the store: here
/// every batch is two records, memory keeps one user, and the log is full before processing
/// starts, so batches follow each other as fast as they can. A user who left memory between two
/// batches keeps their assignment, and an id redelivered in the very next batch counts once.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_finds_what_the_batch_before_changed() {
    let dir = tempfile::tempdir().unwrap();
    // Yesterday, 10:00: all the events fall in one hour and one day.
    let t0 = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive().and_hms_opt(10, 0, 0).unwrap().and_utc();
    let records = [
        json!({"event": "exposure", "type": "exposure", "user_id": "u1", "experiment_key": "exp_a",
               "variant": "control", "event_id": "x1", "timestamp": at(t0, 0)}),
        json!({"event": "exposure", "type": "exposure", "user_id": "u2", "experiment_key": "exp_a",
               "variant": "treatment", "event_id": "x2", "timestamp": at(t0, 0)}),
        json!({"event": "purchase", "user_id": "u1", "value": 5, "event_id": "p1", "timestamp": at(t0, 1)}),
        json!({"event": "purchase", "user_id": "u2", "value": 7, "event_id": "p2", "timestamp": at(t0, 1)}),
        json!({"event": "purchase", "user_id": "u1", "value": 5, "event_id": "p1", "timestamp": at(t0, 1)}),
        json!({"event": "purchase", "user_id": "u2", "value": 3, "event_id": "p3", "timestamp": at(t0, 2)}),
    ];
    {
        let metrics = Arc::new(Metrics::default());
        let log: Arc<dyn EventBus> = Arc::new(FileLog::open(dir.path().join("log"), LogOptions::default()).unwrap());
        let dlq = Arc::new(vexil_events::Dlq::open(&dir.path().join("dlq.sqlite"), metrics.clone()).unwrap());
        for record in &records {
            // An ingestor of its own per record: the redelivery of p1 passes the door, as it
            // would through another ingest node, and meets the processor's dedupe.
            let ingestor = vexil_events::Ingestor::new(log.clone(), dlq.clone(), metrics.clone(), Default::default());
            let body = serde_json::to_vec(&json!([record])).unwrap();
            assert_eq!(ingestor.ingest(&body, BodyFormat::Auto).await.unwrap().accepted, 1);
        }
    }
    let options = vexil_events::pipeline::PipelineOptions {
        batch_records: 2,
        idle_poll: Duration::from_millis(20),
        state_cache: StateCache { users: 1, members: 1 },
        ..Default::default()
    };
    let env = Env::open_with_options(dir.path(), experiments(), options);
    env.settle();
    let sums = committed_sums(&env, &experiments());
    let orders = |variant: &str| sums[&("exp_a".to_owned(), variant.to_owned(), "orders".to_owned())];
    assert_eq!((orders("control").n, orders("control").sum_x), (1, 1.0), "u1's one purchase, once");
    assert_eq!((orders("treatment").n, orders("treatment").sum_x), (1, 2.0), "u2's two purchases");
    assert_eq!(Metrics::get(&env.metrics.processed_duplicates_total), 1);
    let archived = env.archive();
    assert_eq!(archived.len(), 5);
    assert_sums_match(&sums, &brute_force(&archived, &experiments()));
    let stats = env.pipeline.stats().unwrap();
    let (from, to) = (t0 - chrono::Duration::days(1), t0 + chrono::Duration::days(1));
    let day = stats.variant_counters("purchase", "exp_a", Window::Day, from, to).unwrap();
    let users: Vec<(String, u64, u64)> =
        day.iter().map(|r| (r.variant.clone(), r.counter.count, r.counter.unique_users)).collect();
    assert_eq!(users, [("control".to_owned(), 1, 1), ("treatment".to_owned(), 2, 1)]);
}

async fn aggregates_match_a_brute_force_recomputation(cache: StateCache) {
    let dir = tempfile::tempdir().unwrap();
    let defs = experiments();
    let env = Env::open_with_cache(dir.path(), defs.clone(), cache);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t0 = chrono::Utc::now() - chrono::Duration::days(2);
    let mut events: Vec<(i64, Value)> = Vec::new();
    for u in 0..1200 {
        let user = format!("user_{u}");
        for (exp, share) in [("exp_a", 0.9), ("exp_b", 0.5)] {
            if rng.gen_bool(share) {
                let variant = if rng.gen_bool(0.5) { "control" } else { "treatment" };
                let minute = rng.gen_range(0..600);
                events.push((
                    minute,
                    json!({"event": "exposure", "type": "exposure", "user_id": user,
                    "experiment_key": exp, "variant": variant, "timestamp": at(t0, minute),
                    "event_id": format!("x-{exp}-{u}")}),
                ));
            }
        }
    }
    for i in 0..100_000 {
        let minute = rng.gen_range(0..1200);
        let user = format!("user_{}", rng.gen_range(0..1200));
        let mut event = match rng.gen_range(0..3) {
            0 => json!({"event": "purchase", "value": rng.gen_range(1.0..200.0f64).round(),
                        "properties": {"currency": if rng.gen_bool(0.5) { "EUR" } else { "USD" }}}),
            1 => json!({"event": "page_load", "value": rng.gen_range(0.1..3.0f64)}),
            _ => json!({"event": "scroll"}),
        };
        event["user_id"] = json!(user);
        event["timestamp"] = json!(at(t0, minute));
        event["event_id"] = json!(format!("e{i}"));
        events.push((minute, event));
    }
    // Arrival follows event time, and about a fifth of the batches are delivered twice.
    events.sort_by_key(|(minute, _)| *minute);
    let all: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
    for chunk in all.chunks(5000) {
        let body = serde_json::to_vec(chunk).unwrap();
        let response = env.ingestor.ingest(&body, BodyFormat::Auto).await.unwrap();
        assert!(response.rejected.is_empty());
        if rng.gen_bool(0.2) {
            assert_eq!(env.ingestor.ingest(&body, BodyFormat::Auto).await.unwrap().duplicates, chunk.len());
        }
    }
    env.settle();
    let archived = env.archive();
    assert_eq!(archived.len(), all.len(), "every accepted event is archived exactly once");
    assert_eq!(unique_ids(&archived).len(), archived.len());
    assert_sums_match(&committed_sums(&env, &defs), &brute_force(&archived, &defs));

    // Counters: per hour and per day, events, value sums and exact unique users of `purchase`.
    let purchases: Vec<&Value> = archived.iter().filter(|e| e["event"] == "purchase").collect();
    let stats = env.pipeline.stats().unwrap();
    for (window, length) in [(Window::Hour, chrono::Duration::hours(1)), (Window::Day, chrono::Duration::days(1))] {
        let rows = stats
            .event_counters("purchase", window, t0 - chrono::Duration::days(1), t0 + chrono::Duration::days(2))
            .unwrap();
        assert_eq!(rows.iter().map(|r| r.counter.count).sum::<u64>(), purchases.len() as u64);
        for row in &rows {
            let users: std::collections::HashSet<&str> = purchases
                .iter()
                .filter(|e| {
                    let t = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
                    t >= row.start && t < row.start + length
                })
                .map(|e| e["user_id"].as_str().unwrap())
                .collect();
            assert_eq!(row.counter.unique_users, users.len() as u64, "unique users of the {window:?} at {}", row.start);
        }
    }
    assert_eq!(Metrics::get(&env.metrics.lag_events), 0);
}

/// A state database written before every counted user had a row (only exposed users had one):
/// a user already in a day's unique users, never exposed, buys again that day after the
/// upgrade and is still counted once.
#[tokio::test(flavor = "multi_thread")]
async fn unique_users_of_an_older_database_are_not_counted_again() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = chrono::Utc::now() - chrono::Duration::days(1);
    let day = Window::Day.start_of(t0.timestamp_millis());
    rusqlite::Connection::open(dir.path().join("state.sqlite"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE counters (
                 window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
                 experiment TEXT NOT NULL, variant TEXT NOT NULL,
                 count INTEGER NOT NULL, sum REAL NOT NULL, users INTEGER NOT NULL,
                 PRIMARY KEY (window, event, experiment, start, variant)) WITHOUT ROWID;
             CREATE TABLE counter_members (
                 user_id TEXT NOT NULL, window TEXT NOT NULL, start INTEGER NOT NULL, event TEXT NOT NULL,
                 experiment TEXT NOT NULL, variant TEXT NOT NULL,
                 PRIMARY KEY (user_id, window, start, event, experiment, variant)) WITHOUT ROWID;
             INSERT INTO counters VALUES ('day', {day}, 'purchase', '', '', 1, 5.0, 1);
             INSERT INTO counter_members VALUES ('u1', 'day', {day}, 'purchase', '', '');"
        ))
        .unwrap();
    let env = Env::open(dir.path(), experiments());
    let body = json!([{"event": "purchase", "user_id": "u1", "value": 7, "timestamp": t0.to_rfc3339()}]);
    env.ingestor.ingest(body.to_string().as_bytes(), BodyFormat::Auto).await.unwrap();
    env.settle();
    let stats = env.pipeline.stats().unwrap();
    let (from, to) = (t0 - chrono::Duration::days(1), t0 + chrono::Duration::seconds(1));
    let rows = stats.event_counters("purchase", Window::Day, from, to).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].counter.count, rows[0].counter.sum, rows[0].counter.unique_users), (2, 12.0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_log_tail_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    {
        let log = FileLog::open(&path, LogOptions::default()).unwrap();
        assert_eq!(log.append_payloads(vec![b"one".to_vec(), b"two".to_vec()]).await.unwrap(), 0..2);
        assert_eq!(log.append_payloads(vec![b"three".to_vec()]).await.unwrap(), 2..3);
    }
    let segment = path.join(format!("{:020}.log", 0));
    let full = std::fs::metadata(&segment).unwrap().len();
    // Half of the last record reached the disk, then garbage.
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(full - 2).unwrap();
    std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(b"\x07\x00").unwrap();
    let log = FileLog::open(&path, LogOptions::default()).unwrap();
    assert_eq!(log.recovery().end_offset, 2);
    assert_eq!(log.recovery().truncated_bytes, 8 + 5);
    assert_eq!(log.append_payloads(vec![b"four".to_vec()]).await.unwrap(), 2..3);
    let mut reader = log.reader(0, 0).unwrap();
    let read: Vec<Vec<u8>> = reader.poll(10, Duration::ZERO).unwrap().into_iter().map(|r| r.payload).collect();
    assert_eq!(read, [b"one".to_vec(), b"two".to_vec(), b"four".to_vec()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_roll_and_readers_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), LogOptions { segment_bytes: 100, ..LogOptions::default() }).unwrap();
    for i in 0..50u32 {
        log.append_payloads(vec![i.to_le_bytes().to_vec(); 3]).await.unwrap();
    }
    let segments = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(segments > 5, "{segments}");
    let records = log.reader(0, 70).unwrap().poll(1000, Duration::ZERO).unwrap();
    assert_eq!(records.len(), 80);
    assert_eq!(records[0].payload, 23u32.to_le_bytes());
    log.commit(0, 120).unwrap();
    let kept = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(kept < segments, "segments below the commit are removed: {kept} of {segments} left");
    assert_eq!(log.reader(0, 120).unwrap().poll(1000, Duration::ZERO).unwrap().len(), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_record_goes_to_the_dlq_after_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    env.log.append_payloads(vec![b"not a record".to_vec()]).await.unwrap();
    let body = json!([{"event": "purchase", "user_id": "u1"}]).to_string();
    env.ingestor.ingest(body.as_bytes(), BodyFormat::Auto).await.unwrap();
    env.settle();
    let dead = env.dlq.list(&DlqFilter::default()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].error.code.as_str(), dead[0].source_offset, dead[0].attempts),
        ("undecodable_record", Some(0), 5)
    );
    assert_eq!(dead[0].payload, "not a record");
    assert_eq!(Metrics::get(&env.metrics.retries_total), 4);
    assert_eq!(env.archive().len(), 1);
}

/// Two environments with the same experiment key, the same users and the same event ids: each
/// environment's aggregates, counters, dedupe, archive and DLQ hold only its own events, and
/// production's names are the unqualified ones written before environments.
#[tokio::test(flavor = "multi_thread")]
async fn environments_keep_their_events_apart() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    env.pipeline.set_experiments_of(Some("staging"), experiments());
    let t0 = chrono::Utc::now() - chrono::Duration::hours(3);
    let exposure = |variant: &str| {
        json!({"event": "exposure", "type": "exposure", "user_id": "u1", "experiment_key": "exp_a",
               "variant": variant, "timestamp": at(t0, 0), "event_id": "x1"})
    };
    let purchase = |value: f64| json!({"event": "purchase", "user_id": "u1", "value": value, "timestamp": at(t0, 5), "event_id": "p1"});
    let production = json!([exposure("control"), purchase(10.0), {"event": 5, "user_id": "u1"}]);
    let staging = json!([exposure("treatment"), purchase(70.0), purchase(70.0), {"event": "purchase"}]);
    env.ingestor.ingest_in(None, production.to_string().as_bytes(), BodyFormat::Auto).await.unwrap();
    let answer =
        env.ingestor.ingest_in(Some("staging"), staging.to_string().as_bytes(), BodyFormat::Auto).await.unwrap();
    // The same ids as production's are new in staging; only the repeat inside the batch is not.
    assert_eq!((answer.accepted, answer.duplicates), (2, 1));
    env.settle();
    let stats = env.pipeline.stats().unwrap();
    let revenue = |experiment: &str| {
        let rows = stats.aggregates(experiment).unwrap();
        rows.into_iter()
            .filter(|r| r.metric == "revenue")
            .map(|r| (r.variant, r.sums.n, r.sums.sum_x))
            .collect::<Vec<_>>()
    };
    assert_eq!(revenue("exp_a"), vec![("control".to_owned(), 1, 10.0)]);
    assert_eq!(revenue("staging/exp_a"), vec![("treatment".to_owned(), 1, 70.0)]);
    let (from, to) = (t0 - chrono::Duration::days(1), t0 + chrono::Duration::days(1));
    let sum = |event: &str| {
        stats.event_counters(event, Window::Day, from, to).unwrap().iter().map(|r| r.counter.sum).sum::<f64>()
    };
    assert_eq!((sum("purchase"), sum("staging/purchase")), (10.0, 70.0));
    let per_variant = stats.variant_counters("staging/purchase", "exp_a", Window::Day, from, to).unwrap();
    assert_eq!(per_variant.iter().map(|r| r.variant.as_str()).collect::<Vec<_>>(), ["treatment"]);
    // Production's archive is where it always was; staging's under env=staging/.
    let archived = common::read_archive(&dir.path().join("archive"));
    assert_eq!(
        archived.iter().filter(|e| e["event"] == "purchase").map(|e| e["value"].clone()).collect::<Vec<_>>(),
        [json!(10.0)]
    );
    let staged = common::read_archive(&dir.path().join("archive").join("env=staging"));
    let bought = staged.iter().find(|e| e["event"] == "purchase").unwrap();
    assert_eq!((bought["value"].clone(), bought["experiments"].clone()), (json!(70.0), json!({"exp_a": "treatment"})));
    // Each environment's DLQ has its own rejected event.
    let dead = |env_key: Option<&str>| {
        let filter = DlqFilter { env: env_key.map(str::to_owned), ..DlqFilter::default() };
        env.dlq.list(&filter).unwrap().into_iter().map(|e| e.error.code).collect::<Vec<_>>()
    };
    assert_eq!(
        (dead(None), dead(Some("staging"))),
        (vec!["invalid_event_name".to_owned()], vec!["invalid_user_id".to_owned()])
    );
    assert!(dead(Some("qa")).is_empty());
}
