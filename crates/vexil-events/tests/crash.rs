//! Crash safety: a child process (this test binary, re-executed) ingests batches while the
//! pipeline processes them, and is killed with SIGKILL several times mid-stream. After the
//! last restart every acknowledged event is in the aggregates and in the archive exactly once,
//! and the aggregates equal a recomputation from the archive (nothing is half-counted).
mod common;

use common::{assert_sums_match, brute_force, committed_sums, experiments, unique_ids, Env};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vexil_events::counters::Window;
use vexil_events::pipeline::StateCache;
use vexil_events::BodyFormat;

const CHILD_DIR: &str = "VEXIL_EVENTS_CRASH_CHILD_DIR";
const BATCHES: usize = 60;
const PER_BATCH: usize = 200;

fn batch(k: usize) -> Vec<u8> {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let events: Vec<_> = (0..PER_BATCH)
        .map(|i| {
            let user = format!("u{}", (k * PER_BATCH + i) % 150);
            let ts = (t0 + chrono::Duration::seconds((k * PER_BATCH + i) as i64)).to_rfc3339();
            if k == 0 && i < 150 {
                json!({"event_id": format!("x{i}"), "event": "exposure", "type": "exposure", "user_id": format!("u{i}"),
                       "experiment_key": "exp_a", "variant": if i % 2 == 0 { "control" } else { "treatment" }, "timestamp": t0.to_rfc3339()})
            } else {
                json!({"event_id": format!("b{k}-{i}"), "event": "purchase", "user_id": user, "value": (i % 17) as f64, "timestamp": ts})
            }
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

/// Fewer than the 150 users: each run reads users from the store, journals the ones it keeps
/// changing, and writes them out of the journal again, so the kills land in all of that.
fn small_cache() -> StateCache {
    StateCache { users: 20, members: 100 }
}

fn acked(dir: &Path) -> Vec<usize> {
    std::fs::read_to_string(dir.join("acked")).unwrap_or_default().lines().map(|l| l.parse().unwrap()).collect()
}

/// The child: resumes after the last acknowledged batch (re-sending the one that may have been
/// appended without an acknowledgement), and records each acknowledgement durably. Ignored, so
/// a plain run reports it as ignored rather than as a test that passed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the child process of sigkill_mid_stream_neither_loses_nor_double_counts, which runs it"]
async fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("run only by sigkill_mid_stream_neither_loses_nor_double_counts");
    let dir = Path::new(&dir);
    let env = Env::open_with_cache(dir, experiments(), small_cache());
    let next = acked(dir).last().map_or(0, |k| k + 1);
    for k in next..BATCHES {
        let response = env.ingestor.ingest(&batch(k), BodyFormat::Auto).await.unwrap();
        assert!(response.rejected.is_empty());
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("acked")).unwrap();
        writeln!(file, "{k}").unwrap();
        file.sync_all().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    env.settle();
}

#[test]
fn sigkill_mid_stream_neither_loses_nor_double_counts() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawn = || {
        Command::new(&exe)
            .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Each run is killed once it has acknowledged a few more batches, a few milliseconds into
    // the next one: progress, not wall-clock sleeps, decides when, so the kills land mid-stream
    // however fast or loaded the machine is.
    for (run, delay_ms) in [3u64, 7, 1, 11, 5].into_iter().enumerate() {
        let target = (run + 1) * BATCHES / 8;
        let mut child = spawn();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acked(dir.path()).len() < target && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // The kills landed mid-stream: work was left for the last run.
    assert!(acked(dir.path()).len() < BATCHES, "the child finished before it was killed");
    let status = spawn().wait().unwrap();
    assert!(status.success());
    assert_eq!(acked(dir.path()).len(), BATCHES);

    let env = Env::open_with_cache(dir.path(), experiments(), small_cache());
    env.settle();
    let archived = env.archive();
    assert_eq!(unique_ids(&archived).len(), archived.len(), "an event was archived twice");
    assert_eq!(archived.len(), BATCHES * PER_BATCH, "an acknowledged event is missing from the archive");
    let defs = experiments();
    assert_sums_match(&committed_sums(&env, &defs), &brute_force(&archived, &defs));
    let orders: u64 =
        committed_sums(&env, &defs).iter().filter(|((_, _, m), _)| m == "orders").map(|(_, s)| s.sum_x as u64).sum();
    assert_eq!(orders, (BATCHES * PER_BATCH - 150) as u64);

    // Hourly counters, whose unique-user sets each restart had to pick up from the store: the
    // events and distinct users of every hour, as the archive has them.
    let mut hours: BTreeMap<i64, (u64, HashSet<String>)> = BTreeMap::new();
    for e in archived.iter().filter(|e| e["event"] == "purchase") {
        let t = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap().timestamp();
        let hour = hours.entry(t - t.rem_euclid(3600)).or_default();
        hour.0 += 1;
        hour.1.insert(e["user_id"].as_str().unwrap().to_owned());
    }
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    let rows = env
        .pipeline
        .stats()
        .unwrap()
        .event_counters("purchase", Window::Hour, t0, t0 + chrono::Duration::days(1))
        .unwrap();
    let counted: BTreeMap<i64, (u64, u64)> =
        rows.iter().map(|r| (r.start.timestamp(), (r.counter.count, r.counter.unique_users))).collect();
    let expected: BTreeMap<i64, (u64, u64)> =
        hours.iter().map(|(start, (count, users))| (*start, (*count, users.len() as u64))).collect();
    assert_eq!(counted, expected);
}
