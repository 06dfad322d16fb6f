//! Environments (SPEC 9): one namespace of documents and audit records each, the default
//! environment on a fresh store, and keys that carry their environment.

use std::sync::Arc;

use serde_json::json;

use super::{apply_one, body, create, meta, TestBackend};
use crate::{
    Assignment, AuditQuery, ChangeMeta, EntityKind, KeyKind, Scoped, Store, StoreError, Write, DEFAULT_ENVIRONMENT,
    GLOBAL,
};

fn environment(backend: &Arc<dyn crate::Backend>, env: &str) -> Arc<dyn Store> {
    Arc::new(Scoped::new(backend.clone(), env))
}

pub async fn a_fresh_store_has_the_production_environment(backend: &impl TestBackend) {
    let store = backend.open_backend().await;
    let environments = store.list_in(GLOBAL, EntityKind::Environment).await.unwrap();
    let keys: Vec<_> = environments.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, [DEFAULT_ENVIRONMENT]);
    assert_eq!(environments[0].version, 1);
    assert_eq!(environments[0].body["key"], DEFAULT_ENVIRONMENT);
    assert_eq!(environments[0].body["protected"], false);
}

pub async fn environments_keep_documents_and_audit_apart(backend: &impl TestBackend) {
    let backend_handle = backend.open_backend().await;
    let (production, staging) =
        (environment(&backend_handle, DEFAULT_ENVIRONMENT), environment(&backend_handle, "staging"));
    let in_production = apply_one(production.as_ref(), create(EntityKind::Flag, "checkout", 1)).await;
    // The same key in another environment is another document, not a conflict.
    let in_staging = apply_one(staging.as_ref(), create(EntityKind::Flag, "checkout", 2)).await;
    assert_ne!(in_production.id, in_staging.id);
    assert_eq!(production.get(EntityKind::Flag, "checkout").await.unwrap().unwrap().body, body("checkout", 1));
    assert_eq!(staging.get(EntityKind::Flag, "checkout").await.unwrap().unwrap().body, body("checkout", 2));
    apply_one(staging.as_ref(), create(EntityKind::Segment, "beta", 3)).await;
    assert!(production.list(EntityKind::Segment).await.unwrap().is_empty());
    assert_eq!(staging.list_shown(EntityKind::Segment).await.unwrap().len(), 1);

    // An update or delete in one environment leaves the other's document as it was.
    let update = Write::Update {
        kind: EntityKind::Flag,
        key: "checkout".into(),
        body: body("checkout", 4),
        expected_version: Some(1),
    };
    apply_one(staging.as_ref(), update).await;
    staging
        .apply(vec![Write::Delete { kind: EntityKind::Flag, key: "checkout".into(), expected_version: None }], &meta())
        .await
        .unwrap();
    assert_eq!(production.get(EntityKind::Flag, "checkout").await.unwrap(), Some(in_production));

    // Each environment's audit shows its own changes, plus those of no environment (keys).
    backend_handle
        .create_key(KeyKind::Server, "svc", &crate::KeyGrant::in_environment("staging"), &meta())
        .await
        .unwrap();
    let actions = |records: Vec<crate::AuditRecord>| {
        records.into_iter().map(|r| (r.environment, r.action, r.entity, r.key)).collect::<Vec<_>>()
    };
    let staging_audit = actions(staging.query(&AuditQuery::default()).await.unwrap());
    let staging_env = Some("staging".to_string());
    assert_eq!(
        staging_audit,
        [
            (None, "create".into(), EntityKind::Key, staging_audit[0].3.clone()),
            (staging_env.clone(), "delete".into(), EntityKind::Flag, "checkout".into()),
            (staging_env.clone(), "update".into(), EntityKind::Flag, "checkout".into()),
            (staging_env.clone(), "create".into(), EntityKind::Segment, "beta".into()),
            (staging_env, "create".into(), EntityKind::Flag, "checkout".into()),
        ]
    );
    let production_audit = actions(production.query(&AuditQuery::default()).await.unwrap());
    assert_eq!(production_audit.len(), 2, "{production_audit:?}");
    assert_eq!(
        production_audit[1],
        (Some(DEFAULT_ENVIRONMENT.into()), "create".into(), EntityKind::Flag, "checkout".into())
    );

    // Actions recorded through an environment's store are that environment's.
    let stop = crate::NewAuditRecord {
        meta: ChangeMeta::new("key_admin"),
        environment: None,
        action: "emergency_stop".into(),
        entity: EntityKind::EmergencyStop,
        key: "all".into(),
        before: None,
        after: Some(json!({"scope": "all"})),
    };
    let recorded = staging.record(stop).await.unwrap();
    assert_eq!(recorded.environment.as_deref(), Some("staging"));
    let production_stops =
        production.query(&AuditQuery { entity: Some(EntityKind::EmergencyStop), ..AuditQuery::default() }).await;
    assert!(production_stops.unwrap().is_empty());
}

pub async fn deleting_an_environment_deletes_what_it_holds(backend: &impl TestBackend) {
    let backend_handle = backend.open_backend().await;
    let env_body = json!({"key": "qa", "name": "QA", "description": "", "protected": false, "tags": []});
    backend_handle
        .apply_in(
            GLOBAL,
            vec![Write::Create { kind: EntityKind::Environment, key: "qa".into(), body: env_body }],
            &meta(),
        )
        .await
        .unwrap();
    let (production, qa) = (environment(&backend_handle, DEFAULT_ENVIRONMENT), environment(&backend_handle, "qa"));
    apply_one(production.as_ref(), create(EntityKind::Experiment, "exp", 1)).await;
    let experiment = apply_one(qa.as_ref(), create(EntityKind::Experiment, "exp", 2)).await;
    apply_one(qa.as_ref(), create(EntityKind::Flag, "checkout", 3)).await;
    let production_experiment = production.get(EntityKind::Experiment, "exp").await.unwrap().unwrap();
    let now = crate::now();
    let assignment = |experiment_id: &str| Assignment {
        experiment_id: experiment_id.into(),
        unit: "user_1".into(),
        variant: "control".into(),
        assignment_id: format!("a-{experiment_id}"),
        assigned_at: now,
        expires_at: None,
    };
    qa.assign_if_absent(assignment(&experiment.id)).await.unwrap();
    production.assign_if_absent(assignment(&production_experiment.id)).await.unwrap();

    let delete = Write::Delete { kind: EntityKind::Environment, key: "qa".into(), expected_version: Some(1) };
    backend_handle.apply_in(GLOBAL, vec![delete], &meta()).await.unwrap();
    assert!(qa.list(EntityKind::Flag).await.unwrap().is_empty());
    assert!(qa.list(EntityKind::Experiment).await.unwrap().is_empty());
    assert_eq!(qa.get_assignment(&experiment.id, "user_1", now).await.unwrap(), None);
    // The other environment keeps everything.
    assert!(production.get(EntityKind::Experiment, "exp").await.unwrap().is_some());
    assert!(production.get_assignment(&production_experiment.id, "user_1", now).await.unwrap().is_some());
    let left: Vec<_> =
        backend_handle.list_in(GLOBAL, EntityKind::Environment).await.unwrap().into_iter().map(|d| d.key).collect();
    assert_eq!(left, [DEFAULT_ENVIRONMENT]);
    let err = backend_handle
        .apply_in(
            GLOBAL,
            vec![Write::Delete { kind: EntityKind::Environment, key: "qa".into(), expected_version: None }],
            &meta(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { kind: EntityKind::Environment, .. }), "{err:?}");
}

pub async fn keys_carry_their_environment(backend: &impl TestBackend) {
    let store = backend.open_backend().await;
    let (key, secret) =
        store.create_key(KeyKind::Client, "web", &crate::KeyGrant::in_environment("staging"), &meta()).await.unwrap();
    assert_eq!(key.environment.as_deref(), Some("staging"));
    let (admin, _) = store.create_key(KeyKind::Admin, "ops", &crate::KeyGrant::default(), &meta()).await.unwrap();
    assert_eq!(
        (admin.role, &admin.environments),
        (Some(crate::Role::Owner), &None),
        "admin keys are owners by default"
    );
    let grant = crate::KeyGrant {
        environment: Some("ignored for admin keys".into()),
        role: Some(crate::Role::Editor),
        environments: Some(vec!["staging".into()]),
    };
    let (_, editor_secret) = store.create_key(KeyKind::Admin, "staging editor", &grant, &meta()).await.unwrap();
    let other = backend.open_backend().await;
    let client = other.authenticate(&secret).await.unwrap().unwrap();
    assert_eq!((client.environment.as_deref(), client.role, client.environments), (Some("staging"), None, None));
    let editor = other.authenticate(&editor_secret).await.unwrap().unwrap();
    assert_eq!(
        (editor.environment, editor.role, editor.environments),
        (None, Some(crate::Role::Editor), Some(vec!["staging".to_string()]))
    );
    let listed = other.list_keys().await.unwrap();
    let environments: Vec<_> = listed.iter().map(|k| (k.id.clone(), k.environment.clone())).collect();
    assert_eq!(environments[..2], [(key.id, Some("staging".to_string())), (admin.id, None)]);
}

/// `changes_since`: the documents written or deleted in the environment after a revision,
/// nothing of other environments, and nothing from the current revision on. A deleted then
/// re-created document is a change, not a deletion.
pub async fn changes_since_lists_what_changed_in_the_environment(backend: &impl TestBackend) {
    let backend_handle = backend.open_backend().await;
    let (production, staging) =
        (environment(&backend_handle, DEFAULT_ENVIRONMENT), environment(&backend_handle, "staging"));
    for key in ["a", "b", "c", "d"] {
        apply_one(production.as_ref(), create(EntityKind::Flag, key, 1)).await;
    }
    let start = production.revision().await.unwrap();
    let nothing = production.changes_since(start).await.unwrap().expect("every backend lists changes since a revision");
    assert_eq!((nothing.revision, nothing.changed.len(), nothing.deleted.len()), (start, 0, 0));

    let update = Write::Update { kind: EntityKind::Flag, key: "a".into(), body: body("a", 2), expected_version: None };
    apply_one(production.as_ref(), update).await;
    let delete = |key: &str| Write::Delete { kind: EntityKind::Flag, key: key.into(), expected_version: None };
    production.apply(vec![delete("b"), delete("c")], &meta()).await.unwrap();
    apply_one(production.as_ref(), create(EntityKind::Flag, "c", 3)).await;
    apply_one(production.as_ref(), create(EntityKind::Segment, "s", 1)).await;
    apply_one(staging.as_ref(), create(EntityKind::Flag, "other", 1)).await;
    let end = production.revision().await.unwrap();

    let changes = production.changes_since(start).await.unwrap().unwrap();
    assert_eq!(changes.revision, end);
    let changed: Vec<_> = changes.changed.iter().map(|(kind, doc)| (*kind, doc.key.as_str())).collect();
    assert_eq!(changed, [(EntityKind::Flag, "a"), (EntityKind::Flag, "c"), (EntityKind::Segment, "s")]);
    let shown: serde_json::Value = serde_json::from_str(changes.changed[0].1.json.get()).unwrap();
    assert_eq!((shown["n"].clone(), shown["version"].clone()), (json!(2), json!(2)));
    assert_eq!(changes.deleted, [(EntityKind::Flag, "b".to_string())]);

    // Only what came after the given revision; another environment's change lists nothing here.
    let after_delete = production.changes_since(end - 3).await.unwrap().unwrap();
    let changed: Vec<_> = after_delete.changed.iter().map(|(_, doc)| doc.key.as_str()).collect();
    assert_eq!((changed, after_delete.deleted.len()), (vec!["c", "s"], 0));
    let in_staging = staging.changes_since(start).await.unwrap().unwrap();
    let changed: Vec<_> = in_staging.changed.iter().map(|(_, doc)| doc.key.as_str()).collect();
    assert_eq!(changed, ["other"]);
    assert!(production.changes_since(end).await.unwrap().unwrap().changed.is_empty());
}

/// A reader that follows `changes_since` from each answer's revision to the next while other
/// handles (other nodes) write at the same time ends with exactly what the store holds: no
/// change is committed with a revision the reader has already passed.
pub async fn following_changes_since_during_concurrent_writes_misses_nothing(backend: &impl TestBackend) {
    let reader = environment(&backend.open_backend().await, DEFAULT_ENVIRONMENT);
    let mut at = reader.revision().await.unwrap();
    let mut writers = Vec::new();
    for writer in 0..4 {
        let store = environment(&backend.open_backend().await, DEFAULT_ENVIRONMENT);
        writers.push(tokio::spawn(async move {
            for round in 0..6u64 {
                for k in 0..3 {
                    let key = format!("w{writer}_{k}");
                    let write = Write::Upsert { kind: EntityKind::Flag, key: key.clone(), body: body(&key, round) };
                    apply_one(store.as_ref(), write).await;
                }
                let gone = format!("w{writer}_{}", round % 3);
                let delete = Write::Delete { kind: EntityKind::Flag, key: gone, expected_version: None };
                store.apply(vec![delete], &meta()).await.unwrap();
            }
        }));
    }
    // What the reader holds: each flag's (version, n), as it learns them from changes alone.
    let mut held = std::collections::BTreeMap::new();
    let follow = |changes: crate::DocumentChanges, held: &mut std::collections::BTreeMap<String, (u64, u64)>| {
        for (_, doc) in changes.changed {
            let shown: serde_json::Value = serde_json::from_str(doc.json.get()).unwrap();
            held.insert(doc.key, (shown["version"].as_u64().unwrap(), shown["n"].as_u64().unwrap()));
        }
        for (_, key) in changes.deleted {
            held.remove(&key);
        }
        changes.revision
    };
    while !writers.iter().all(|w| w.is_finished()) {
        at = follow(reader.changes_since(at).await.unwrap().expect("changes since"), &mut held);
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    follow(reader.changes_since(at).await.unwrap().expect("changes since"), &mut held);
    let stored: std::collections::BTreeMap<String, (u64, u64)> = reader
        .list(EntityKind::Flag)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.key, (d.version, d.body["n"].as_u64().unwrap())))
        .collect();
    assert_eq!(stored.len(), 8, "four writers, each with two of its three flags left");
    assert_eq!(held, stored);
}
