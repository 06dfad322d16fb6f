//! Checks of [`AssignmentStore`](crate::AssignmentStore).

use chrono::{Duration, TimeZone, Utc};

use super::TestBackend;
use crate::{Assignment, Flush, Timestamp};

fn at(minute: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 21, 10, minute, 0).unwrap()
}

fn assignment(unit: &str, variant: &str, assigned_at: Timestamp, ttl: Option<Duration>) -> Assignment {
    Assignment {
        experiment_id: "exp_1".into(),
        unit: unit.into(),
        variant: variant.into(),
        assignment_id: format!("{unit}-{variant}-{}", assigned_at.timestamp()),
        assigned_at,
        expires_at: ttl.map(|ttl| assigned_at + ttl),
    }
}

pub async fn first_assignment_wins(backend: &dyn TestBackend) {
    let store = backend.open().await;
    assert_eq!(store.get_assignment("exp_1", "user_1", at(0)).await.unwrap(), None);

    let first = assignment("user_1", "control", at(0), None);
    assert_eq!(store.assign_if_absent(first.clone()).await.unwrap(), first);
    let second = assignment("user_1", "treatment", at(1), None);
    assert_eq!(store.assign_if_absent(second).await.unwrap(), first, "the existing one wins");
    assert_eq!(store.get_assignment("exp_1", "user_1", at(59)).await.unwrap(), Some(first.clone()));

    // Other units and other experiments are independent.
    let other_unit = assignment("user_2", "treatment", at(1), None);
    assert_eq!(store.assign_if_absent(other_unit.clone()).await.unwrap(), other_unit);
    let other_experiment = Assignment { experiment_id: "exp_2".into(), ..assignment("user_1", "b", at(1), None) };
    assert_eq!(store.assign_if_absent(other_experiment.clone()).await.unwrap(), other_experiment);
    assert_eq!(store.get_assignment("exp_1", "user_1", at(2)).await.unwrap(), Some(first));
}

pub async fn expired_assignment_is_replaced_and_purged(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let ttl = Some(Duration::minutes(10));
    let old = assignment("user_1", "control", at(0), ttl);
    store.assign_if_absent(old.clone()).await.unwrap();
    let never_expires = assignment("user_2", "control", at(0), None);
    store.assign_if_absent(never_expires.clone()).await.unwrap();
    let short = assignment("user_3", "control", at(0), Some(Duration::minutes(5)));
    store.assign_if_absent(short.clone()).await.unwrap();

    assert_eq!(store.get_assignment("exp_1", "user_1", at(9)).await.unwrap(), Some(old.clone()));
    assert_eq!(store.get_assignment("exp_1", "user_1", at(10)).await.unwrap(), None, "expired at its expiry");

    // Still active: a new assignment does not replace it.
    let early = assignment("user_1", "treatment", at(9), ttl);
    assert_eq!(store.assign_if_absent(early).await.unwrap(), old);
    // Expired: replaced.
    let late = assignment("user_1", "treatment", at(10), ttl);
    assert_eq!(store.assign_if_absent(late.clone()).await.unwrap(), late);
    assert_eq!(store.get_assignment("exp_1", "user_1", at(11)).await.unwrap(), Some(late.clone()));

    // At minute 7 only user_3's (expired at 5) goes; user_1's now runs to 20.
    assert_eq!(store.purge_expired_assignments(at(7)).await.unwrap(), 1);
    assert_eq!(store.get_assignment("exp_1", "user_3", at(0)).await.unwrap(), None, "purged");
    assert_eq!(store.purge_expired_assignments(at(7)).await.unwrap(), 0);
    assert_eq!(store.purge_expired_assignments(at(30)).await.unwrap(), 1);
    assert_eq!(store.get_assignment("exp_1", "user_1", at(0)).await.unwrap(), None, "purged");
    assert_eq!(
        store.get_assignment("exp_1", "user_2", at(59)).await.unwrap(),
        Some(never_expires),
        "no expiry, never purged"
    );
}

pub async fn assign_many_keeps_input_order(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let existing = assignment("user_2", "control", at(0), None);
    store.assign_if_absent(existing.clone()).await.unwrap();

    let batch = vec![
        assignment("user_1", "treatment", at(1), None),
        assignment("user_2", "treatment", at(1), None),
        assignment("user_3", "control", at(1), None),
        // A unit twice in one batch: its first entry is first.
        assignment("user_1", "control", at(1), None),
    ];
    let stored = store.assign_many_if_absent(batch.clone(), Flush::Background).await.unwrap();
    assert_eq!(stored, vec![batch[0].clone(), existing, batch[2].clone(), batch[0].clone()]);
    // Not waiting for the disk still commits before answering: another handle (another node)
    // reads the records at once.
    let other = backend.open().await;
    assert_eq!(other.get_assignment("exp_1", "user_3", at(2)).await.unwrap(), Some(batch[2].clone()));

    let flushed = vec![assignment("user_4", "control", at(2), None), assignment("user_3", "treatment", at(2), None)];
    let stored = other.assign_many_if_absent(flushed.clone(), Flush::OnCommit).await.unwrap();
    assert_eq!(stored, vec![flushed[0].clone(), batch[2].clone()]);
    assert!(store.assign_many_if_absent(Vec::new(), Flush::OnCommit).await.unwrap().is_empty());
}

pub async fn concurrent_first_assignments_agree(backend: &dyn TestBackend) {
    // Two handles, as two nodes would be, racing to make the first assignment of one unit.
    let handles = [backend.open().await, backend.open().await];
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = handles[i % 2].clone();
            let a = assignment("user_1", &format!("v{i}"), at(0), None);
            tokio::spawn(async move { store.assign_if_absent(a).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task").expect("assign"));
    }
    let winner = results[0].clone();
    assert!(results.iter().all(|r| *r == winner), "every caller sees the same record");
    for store in &handles {
        assert_eq!(store.get_assignment("exp_1", "user_1", at(1)).await.unwrap(), Some(winner.clone()));
    }
}
