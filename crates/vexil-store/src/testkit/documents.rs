//! Checks of [`ConfigStore`](crate::ConfigStore): documents, versions, batches, revisions and
//! change notification.

use serde_json::{json, Value};

use super::{apply_one, body, create, meta, wait_for_revision, TestBackend};
use crate::{AuditQuery, EntityKind, StoreError, Write};

pub async fn documents_round_trip(backend: &dyn TestBackend) {
    let store = backend.open().await;
    assert_eq!(store.get(EntityKind::Flag, "checkout").await.unwrap(), None);

    let created = apply_one(&*store, create(EntityKind::Flag, "checkout", 1)).await;
    assert_eq!(created.kind, EntityKind::Flag);
    assert_eq!(created.key, "checkout");
    assert_eq!(created.version, 1);
    assert_eq!(created.body, body("checkout", 1));
    assert_eq!(created.created_at, created.updated_at);
    assert!(!created.id.is_empty());
    let got = store.get(EntityKind::Flag, "checkout").await.unwrap();
    assert_eq!(got.as_ref(), Some(&created), "get returns what apply returned");

    let updated = apply_one(
        &*store,
        Write::Update {
            kind: EntityKind::Flag,
            key: "checkout".into(),
            body: body("checkout", 2),
            expected_version: Some(1),
        },
    )
    .await;
    assert_eq!(updated.version, 2);
    assert_eq!(updated.id, created.id, "the id is stable");
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.body, body("checkout", 2));
    assert_eq!(store.get(EntityKind::Flag, "checkout").await.unwrap(), Some(updated));

    let deleted = store
        .apply(
            vec![Write::Delete { kind: EntityKind::Flag, key: "checkout".into(), expected_version: Some(2) }],
            &meta(),
        )
        .await
        .unwrap();
    assert_eq!(deleted, vec![None]);
    assert_eq!(store.get(EntityKind::Flag, "checkout").await.unwrap(), None);
    assert!(store.list(EntityKind::Flag).await.unwrap().is_empty());
}

pub async fn documents_list_by_kind_in_key_order(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let writes = vec![
        create(EntityKind::Flag, "zeta", 1),
        create(EntityKind::Flag, "alpha", 1),
        create(EntityKind::Segment, "beta", 1),
        create(EntityKind::Flag, "alpha_2", 1),
        // Same key, other kind: kinds are separate namespaces.
        create(EntityKind::Segment, "alpha", 1),
    ];
    store.apply(writes, &meta()).await.unwrap();
    let keys = |docs: Vec<crate::StoredDocument>| docs.into_iter().map(|d| d.key).collect::<Vec<_>>();
    assert_eq!(keys(store.list(EntityKind::Flag).await.unwrap()), ["alpha", "alpha_2", "zeta"]);
    assert_eq!(keys(store.list(EntityKind::Segment).await.unwrap()), ["alpha", "beta"]);
    assert!(store.list(EntityKind::Experiment).await.unwrap().is_empty());
    let flag = store.get(EntityKind::Flag, "alpha").await.unwrap().unwrap();
    let segment = store.get(EntityKind::Segment, "alpha").await.unwrap().unwrap();
    assert_ne!(flag.id, segment.id, "ids are unique across kinds");
}

pub async fn shown_documents_are_the_listed_documents_as_the_api_shows_them(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let writes = vec![
        create(EntityKind::Flag, "zeta", 1),
        create(EntityKind::Flag, "alpha", 2),
        Write::Create { kind: EntityKind::Flag, key: "empty".into(), body: json!({}) },
        Write::Create { kind: EntityKind::Flag, key: "list".into(), body: json!([1, "two"]) },
        create(EntityKind::Segment, "beta", 3),
    ];
    store.apply(writes, &meta()).await.unwrap();
    apply_one(
        store.as_ref(),
        Write::Update { kind: EntityKind::Flag, key: "zeta".into(), body: body("zeta", 4), expected_version: None },
    )
    .await;
    for kind in [EntityKind::Flag, EntityKind::Segment, EntityKind::Experiment] {
        let listed: Vec<(String, Value)> =
            store.list(kind).await.unwrap().into_iter().map(|d| (d.key.clone(), d.to_json())).collect();
        let shown: Vec<(String, Value)> = store
            .list_shown(kind)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.key, serde_json::from_str(d.json.get()).unwrap()))
            .collect();
        assert_eq!(shown, listed, "{kind}");
    }
    let zeta = store.list_shown(EntityKind::Flag).await.unwrap().pop().unwrap();
    let zeta: Value = serde_json::from_str(zeta.json.get()).unwrap();
    assert_eq!((zeta["version"].as_u64(), zeta["n"].as_u64()), (Some(2), Some(4)));
    for kind in [EntityKind::Flag, EntityKind::Segment, EntityKind::Experiment] {
        let listed: Vec<Value> = store.list(kind).await.unwrap().into_iter().map(|d| d.body).collect();
        let bodies: Vec<Value> = store
            .list_bodies(kind)
            .await
            .unwrap()
            .iter()
            .map(|body| serde_json::from_str(body.get()).unwrap())
            .collect();
        assert_eq!(bodies, listed, "{kind} bodies");
    }
}

pub async fn create_of_an_existing_document_fails(backend: &dyn TestBackend) {
    let store = backend.open().await;
    apply_one(&*store, create(EntityKind::Segment, "beta", 1)).await;
    let err = store.apply(vec![create(EntityKind::Segment, "beta", 2)], &meta()).await.unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists { kind: EntityKind::Segment, key: "beta".into() });
    let doc = store.get(EntityKind::Segment, "beta").await.unwrap().unwrap();
    assert_eq!((doc.version, doc.body), (1, body("beta", 1)), "unchanged");
}

pub async fn expected_version_guards_updates_and_deletes(backend: &dyn TestBackend) {
    let store = backend.open().await;
    apply_one(&*store, create(EntityKind::Experiment, "exp", 1)).await;
    let update = |expected_version, n| Write::Update {
        kind: EntityKind::Experiment,
        key: "exp".into(),
        body: body("exp", n),
        expected_version,
    };
    // Two editors read version 1; the second to write must be refused (If-Match).
    assert_eq!(apply_one(&*store, update(Some(1), 2)).await.version, 2);
    let err = store.apply(vec![update(Some(1), 3)], &meta()).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::VersionMismatch { kind: EntityKind::Experiment, key: "exp".into(), expected: 1, actual: 2 }
    );
    assert!(err.to_string().contains("version 2"), "{err}");

    // Without an expected version the write is unconditional.
    assert_eq!(apply_one(&*store, update(None, 4)).await.version, 3);

    let delete = |expected_version| Write::Delete { kind: EntityKind::Experiment, key: "exp".into(), expected_version };
    let err = store.apply(vec![delete(Some(2))], &meta()).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { expected: 2, actual: 3, .. }), "{err:?}");
    assert!(store.get(EntityKind::Experiment, "exp").await.unwrap().is_some());
    store.apply(vec![delete(Some(3))], &meta()).await.unwrap();
    assert!(store.get(EntityKind::Experiment, "exp").await.unwrap().is_none());
}

pub async fn missing_documents_are_not_found(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let not_found = StoreError::NotFound { kind: EntityKind::Flag, key: "ghost".into() };
    let update =
        Write::Update { kind: EntityKind::Flag, key: "ghost".into(), body: body("ghost", 1), expected_version: None };
    assert_eq!(store.apply(vec![update], &meta()).await.unwrap_err(), not_found);
    let delete = Write::Delete { kind: EntityKind::Flag, key: "ghost".into(), expected_version: Some(1) };
    assert_eq!(store.apply(vec![delete], &meta()).await.unwrap_err(), not_found);
    assert!(not_found.to_string().contains("\"ghost\""), "{not_found}");
}

pub async fn upsert_creates_then_replaces(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let upsert = |n| Write::Upsert { kind: EntityKind::Budget, key: "llm".into(), body: body("llm", n) };
    let first = apply_one(&*store, upsert(1)).await;
    assert_eq!(first.version, 1);
    let second = apply_one(&*store, upsert(2)).await;
    assert_eq!((second.version, &second.id), (2, &first.id));
    assert_eq!(second.body, body("llm", 2));
    let actions: Vec<String> =
        store.query(&AuditQuery::default()).await.unwrap().into_iter().map(|r| r.action).collect();
    assert_eq!(actions, ["update", "create"], "upserts audit what they did");
}

pub async fn recreated_document_gets_a_new_identity(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let first = apply_one(&*store, create(EntityKind::Flag, "phoenix", 1)).await;
    store
        .apply(vec![Write::Delete { kind: EntityKind::Flag, key: "phoenix".into(), expected_version: None }], &meta())
        .await
        .unwrap();
    let second = apply_one(&*store, create(EntityKind::Flag, "phoenix", 2)).await;
    assert_eq!(second.version, 1);
    assert_ne!(second.id, first.id);
}

pub async fn batch_writes_see_earlier_writes(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let docs = store
        .apply(
            vec![
                create(EntityKind::Segment, "beta", 1),
                Write::Update {
                    kind: EntityKind::Segment,
                    key: "beta".into(),
                    body: body("beta", 2),
                    expected_version: Some(1),
                },
                create(EntityKind::Flag, "uses_beta", 1),
                Write::Delete { kind: EntityKind::Flag, key: "uses_beta".into(), expected_version: Some(1) },
            ],
            &meta(),
        )
        .await
        .unwrap();
    let versions: Vec<Option<u64>> = docs.iter().map(|d| d.as_ref().map(|d| d.version)).collect();
    assert_eq!(versions, [Some(1), Some(2), Some(1), None]);
    let beta = store.get(EntityKind::Segment, "beta").await.unwrap().unwrap();
    assert_eq!((beta.version, beta.body), (2, body("beta", 2)));
    assert!(store.get(EntityKind::Flag, "uses_beta").await.unwrap().is_none());
    let records = store.query(&AuditQuery::default()).await.unwrap();
    assert_eq!(records.len(), 4, "one audit record per write");
}

pub async fn failed_batch_changes_nothing(backend: &dyn TestBackend) {
    let store = backend.open().await;
    apply_one(&*store, create(EntityKind::Flag, "existing", 1)).await;
    let revision = store.revision().await.unwrap();
    let audit_before = store.query(&AuditQuery::default()).await.unwrap();

    // An import whose last write conflicts: nothing of it may stay.
    let err = store
        .apply(
            vec![
                create(EntityKind::Flag, "new_a", 1),
                create(EntityKind::Segment, "new_b", 1),
                Write::Upsert { kind: EntityKind::Flag, key: "existing".into(), body: json!({"replaced": true}) },
                Write::Update {
                    kind: EntityKind::Flag,
                    key: "existing".into(),
                    body: body("existing", 9),
                    expected_version: Some(1),
                },
            ],
            &meta(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { expected: 1, actual: 2, .. }), "{err:?}");

    assert!(store.get(EntityKind::Flag, "new_a").await.unwrap().is_none());
    assert!(store.get(EntityKind::Segment, "new_b").await.unwrap().is_none());
    let existing = store.get(EntityKind::Flag, "existing").await.unwrap().unwrap();
    assert_eq!((existing.version, existing.body), (1, body("existing", 1)));
    assert_eq!(store.revision().await.unwrap(), revision, "no revision for a rolled-back batch");
    assert_eq!(
        store.query(&AuditQuery::default()).await.unwrap(),
        audit_before,
        "no audit record for a rolled-back batch"
    );
}

pub async fn revision_grows_with_each_change(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let r0 = store.revision().await.unwrap();
    apply_one(&*store, create(EntityKind::Flag, "a", 1)).await;
    let r1 = store.revision().await.unwrap();
    assert!(r1 > r0, "{r1} > {r0}");
    store.apply(vec![create(EntityKind::Flag, "b", 1), create(EntityKind::Flag, "c", 1)], &meta()).await.unwrap();
    let r2 = store.revision().await.unwrap();
    assert!(r2 > r1, "{r2} > {r1}");
    // Reads do not move it.
    store.list(EntityKind::Flag).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), r2);
}

pub async fn watch_sees_own_changes_at_once(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let mut rx = store.watch();
    rx.mark_unchanged();
    apply_one(&*store, create(EntityKind::Flag, "a", 1)).await;
    assert!(rx.has_changed().unwrap(), "the watch moved before apply returned");
    // Read before awaiting: a borrow held across an await blocks every publisher.
    let seen = *rx.borrow_and_update();
    assert_eq!(seen, store.revision().await.unwrap());
}

pub async fn watch_sees_changes_of_another_handle(backend: &dyn TestBackend) {
    let first = backend.open().await;
    let second = backend.open().await;
    let mut rx = first.watch();

    apply_one(&*second, create(EntityKind::Flag, "from_second", 1)).await;
    let target = second.revision().await.unwrap();
    wait_for_revision(&mut rx, target).await;
    assert_eq!(first.revision().await.unwrap(), target);
    assert!(first.get(EntityKind::Flag, "from_second").await.unwrap().is_some());

    // And the other way round, on the same handles.
    let mut rx = second.watch();
    apply_one(&*first, create(EntityKind::Flag, "from_first", 1)).await;
    wait_for_revision(&mut rx, first.revision().await.unwrap()).await;
}
