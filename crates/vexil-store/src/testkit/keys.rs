//! Checks of [`KeyStore`](crate::KeyStore).

use super::{meta, TestBackend};
use crate::{AuditQuery, ChangeMeta, EntityKind, KeyKind, StoreError};

pub async fn keys_create_list_authenticate_revoke(backend: &dyn TestBackend) {
    let store = backend.open().await;
    assert!(!store.has_keys().await.unwrap(), "a fresh store has no keys");

    let (admin, admin_secret) = store
        .create_key(KeyKind::Admin, "bootstrap", &crate::KeyGrant::default(), &ChangeMeta::new("system:bootstrap"))
        .await
        .unwrap();
    let (server, server_secret) = store
        .create_key(KeyKind::Server, "checkout-service", &crate::KeyGrant::default(), &ChangeMeta::new(&admin.id))
        .await
        .unwrap();
    assert!(store.has_keys().await.unwrap());
    assert!(admin_secret.starts_with("vx_adm_") && server_secret.starts_with("vx_srv_"));
    assert_ne!(admin.id, server.id);
    assert_eq!((server.kind, server.name.as_str()), (KeyKind::Server, "checkout-service"));
    assert_eq!(server.revoked_at, None);
    assert_eq!(store.list_keys().await.unwrap(), vec![admin.clone(), server.clone()]);

    assert_eq!(store.authenticate(&server_secret).await.unwrap(), Some(server.clone()));
    assert_eq!(store.authenticate(&admin_secret).await.unwrap(), Some(admin.clone()));
    assert_eq!(store.authenticate("vx_srv_wrong").await.unwrap(), None);
    assert_eq!(store.authenticate("").await.unwrap(), None);

    let revoked = store.revoke_key(&server.id, &ChangeMeta::new(&admin.id).with_reason("leaked")).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(store.authenticate(&server_secret).await.unwrap(), None, "revoked keys fail");
    assert_eq!(store.authenticate(&admin_secret).await.unwrap(), Some(admin.clone()));
    assert_eq!(store.list_keys().await.unwrap(), vec![admin.clone(), revoked.clone()]);
    let again = store.revoke_key(&server.id, &meta()).await.unwrap();
    assert_eq!(again, revoked, "revoking twice changes nothing");

    let err = store.revoke_key("no_such_key", &meta()).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound { kind: EntityKind::Key, key: "no_such_key".into() });

    let records = store.query(&AuditQuery { entity: Some(EntityKind::Key), ..AuditQuery::default() }).await.unwrap();
    let summary: Vec<(&str, &str, &str)> =
        records.iter().map(|r| (r.action.as_str(), r.key.as_str(), r.actor.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("revoke", server.id.as_str(), admin.id.as_str()),
            ("create", server.id.as_str(), admin.id.as_str()),
            ("create", admin.id.as_str(), "system:bootstrap"),
        ]
    );
    assert_eq!(records[0].reason.as_deref(), Some("leaked"));
    assert!(records[0].before.as_ref().unwrap()["revoked_at"].is_null());
    assert!(records[0].after.as_ref().unwrap()["revoked_at"].is_string());
    // Key changes are not configuration changes.
    assert_eq!(store.revision().await.unwrap(), 0);
}

pub async fn key_secrets_are_stored_only_hashed(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let name = "key-name-that-is-stored-in-clear";
    let (_, secret) = store.create_key(KeyKind::Client, name, &crate::KeyGrant::default(), &meta()).await.unwrap();
    let imported = "operator-chosen-secret-0123456789";
    store.import_key(KeyKind::Admin, "imported", &crate::KeyGrant::default(), imported, &meta()).await.unwrap();
    assert!(backend.persisted_data_contains(name).await, "the check must see what is persisted, or it proves nothing");
    assert!(!backend.persisted_data_contains(&secret).await, "a generated secret was persisted");
    assert!(!backend.persisted_data_contains(imported).await, "an imported secret was persisted");
    // Nor may the random part alone leak, say in an audit record.
    assert!(!backend.persisted_data_contains(&secret["vx_cli_".len()..]).await);
}

pub async fn imported_key_authenticates(backend: &dyn TestBackend) {
    let store = backend.open().await;
    let secret = "vx_adm_from-the-environment-variable";
    let key = store
        .import_key(
            KeyKind::Admin,
            "VEXIL_ADMIN_KEY",
            &crate::KeyGrant::default(),
            secret,
            &ChangeMeta::new("system:bootstrap"),
        )
        .await
        .unwrap();
    assert_eq!((key.kind, key.name.as_str()), (KeyKind::Admin, "VEXIL_ADMIN_KEY"));
    assert!(store.has_keys().await.unwrap());
    assert_eq!(store.authenticate(secret).await.unwrap(), Some(key.clone()));

    // A second handle, as the CLI would be, sees the key.
    let other = backend.open().await;
    assert_eq!(other.authenticate(secret).await.unwrap(), Some(key.clone()));

    let err =
        other.import_key(KeyKind::Server, "again", &crate::KeyGrant::default(), secret, &meta()).await.unwrap_err();
    assert!(matches!(&err, StoreError::AlreadyExists { kind: EntityKind::Key, .. }), "{err:?}");
    assert_eq!(store.list_keys().await.unwrap(), vec![key.clone()]);

    // The last active admin key cannot be revoked; with another one it can, and a store whose
    // keys were all revoked is still not fresh: no new bootstrap key on restart.
    let err = store.revoke_key(&key.id, &meta()).await.unwrap_err();
    assert!(matches!(&err, StoreError::LastAdminKey { id } if *id == key.id), "{err:?}");
    assert_eq!(store.authenticate(secret).await.unwrap(), Some(key.clone()), "still active");
    let (second, _) = store.create_key(KeyKind::Admin, "second", &crate::KeyGrant::default(), &meta()).await.unwrap();
    store.revoke_key(&key.id, &meta()).await.unwrap();
    assert!(matches!(store.revoke_key(&second.id, &meta()).await, Err(StoreError::LastAdminKey { .. })));
    assert!(store.has_keys().await.unwrap());
}
