//! Checks of [`AuditLog`](crate::AuditLog) and of the records document writes leave.

use serde_json::json;

use super::{apply_one, create, meta, TestBackend};
use crate::{AuditQuery, ChangeMeta, EntityKind, NewAuditRecord, StoredDocument, Write, MAX_AUDIT_LIMIT};

pub async fn writes_are_audited_with_before_and_after(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let v1 = apply_one(&*store, create(EntityKind::Flag, "checkout", 1)).await;
    let v2 = store
        .apply(
            vec![Write::Update {
                kind: EntityKind::Flag,
                key: "checkout".into(),
                body: json!({"key": "checkout", "enabled": false}),
                expected_version: Some(1),
            }],
            &ChangeMeta::new("key_ops").with_reason("incident 42"),
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    store
        .apply(
            vec![Write::Delete { kind: EntityKind::Flag, key: "checkout".into(), expected_version: None }],
            &ChangeMeta::new("cli"),
        )
        .await
        .unwrap();

    let records = store.query(&AuditQuery::default()).await.unwrap();
    let summary: Vec<(&str, &str, Option<&str>)> =
        records.iter().map(|r| (r.action.as_str(), r.actor.as_str(), r.reason.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("delete", "cli", None),
            ("update", "key_ops", Some("incident 42")),
            ("create", "key_tester", Some("conformance")),
        ],
        "newest first, with actor and reason"
    );
    assert!(records.iter().all(|r| r.entity == EntityKind::Flag && r.key == "checkout"));
    assert!(records[0].id > records[1].id && records[1].id > records[2].id);
    assert!(records[0].at >= records[2].at);

    // Before and after are the documents as the API shows them, server fields included.
    let shown = |doc: &StoredDocument| Some(doc.to_json());
    assert_eq!((&records[2].before, &records[2].after), (&None, &shown(&v1)));
    assert_eq!((&records[1].before, &records[1].after), (&shown(&v1), &shown(&v2)));
    assert_eq!((&records[0].before, &records[0].after), (&shown(&v2), &None));
}

pub async fn audit_query_filters_limits_and_pages(backend: &dyn TestBackend) {
    let store = backend.open().await;
    // More records than the largest page, in one transaction to stay fast.
    let writes = (0..=MAX_AUDIT_LIMIT)
        .map(|i| create(EntityKind::Segment, &format!("s{i:04}"), 1))
        .chain([create(EntityKind::Flag, "f1", 1), create(EntityKind::Flag, "f2", 1)])
        .collect();
    store.apply(writes, &meta()).await.unwrap();
    apply_one(&*store, Write::Upsert { kind: EntityKind::Flag, key: "f1".into(), body: json!({}) }).await;

    let query = |entity, key: Option<&str>, limit, before| AuditQuery {
        entity,
        key: key.map(str::to_owned),
        limit,
        before,
        ..AuditQuery::default()
    };
    let all = store.query(&query(None, None, None, None)).await.unwrap();
    assert_eq!(all.len(), 100, "the default limit");
    assert_eq!((all[0].key.as_str(), all[0].action.as_str()), ("f1", "update"));
    let capped = store.query(&query(None, None, Some(5000), None)).await.unwrap();
    assert_eq!(capped.len(), MAX_AUDIT_LIMIT as usize, "the maximum limit");
    assert!(capped.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    let flags = store.query(&query(Some(EntityKind::Flag), None, None, None)).await.unwrap();
    let keys: Vec<&str> = flags.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["f1", "f2", "f1"]);
    let f1 = store.query(&query(Some(EntityKind::Flag), Some("f1"), None, None)).await.unwrap();
    let actions: Vec<&str> = f1.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["update", "create"]);
    let by_key_only = store.query(&query(None, Some("f1"), None, None)).await.unwrap();
    assert_eq!(by_key_only, f1);

    // Paging: pass the last id of a page as `before`.
    let page1 = store.query(&query(Some(EntityKind::Segment), None, Some(2), None)).await.unwrap();
    let keys: Vec<&str> = page1.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["s1000", "s0999"]);
    let page2 = store.query(&query(Some(EntityKind::Segment), None, Some(2), Some(page1[1].id))).await.unwrap();
    let keys: Vec<&str> = page2.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["s0998", "s0997"]);
    let none = store.query(&query(Some(EntityKind::Experiment), None, None, None)).await.unwrap();
    assert!(none.is_empty());
}

pub async fn audit_records_other_actions(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let entry = NewAuditRecord {
        environment: None,
        meta: ChangeMeta::new("system:rollout").with_reason("guard error_rate broke"),
        action: "rollback".into(),
        entity: EntityKind::RolloutPlan,
        key: "new_checkout".into(),
        before: Some(json!({"percent": 25})),
        after: Some(json!({"percent": 0})),
    };
    let recorded = store.record(entry.clone()).await.unwrap();
    assert_eq!(recorded.actor, "system:rollout");
    assert_eq!(recorded.reason.as_deref(), Some("guard error_rate broke"));
    assert_eq!(
        (recorded.action.as_str(), recorded.entity, recorded.key.as_str()),
        ("rollback", EntityKind::RolloutPlan, "new_checkout")
    );
    assert_eq!(recorded.before, entry.before);
    assert_eq!(recorded.after, entry.after);

    // JSON null is a value, distinct from no value.
    let stop = store
        .record(NewAuditRecord {
            environment: None,
            meta: ChangeMeta::new("key_admin"),
            action: "stop".into(),
            entity: EntityKind::EmergencyStop,
            key: "all".into(),
            before: Some(json!(null)),
            after: None,
        })
        .await
        .unwrap();
    assert!(stop.id > recorded.id);

    let records = store.query(&AuditQuery::default()).await.unwrap();
    assert_eq!(records, vec![stop, recorded], "read back exactly, newest first");
    // Audit records are not configuration changes.
    assert_eq!(store.revision().await.unwrap(), 0);
}
