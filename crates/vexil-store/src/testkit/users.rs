//! Checks of [`UserStore`](crate::UserStore).

use chrono::Duration;

use super::TestBackend;
use crate::{AuditQuery, ChangeMeta, EntityKind, Role, StoreError, User, UserUpdate};

fn user(username: &str, role: Role, environments: Option<Vec<String>>) -> User {
    User { username: username.into(), role, environments, disabled: false, created_at: crate::now() }
}

pub async fn users_are_created_listed_changed_and_audited(backend: &dyn TestBackend) {
    let store = backend.open_backend().await;
    let owner = ChangeMeta::new("key_owner");
    let bob = user("bob", Role::Viewer, Some(vec!["staging".into()]));
    let alice = user("alice", Role::Owner, None);
    assert_eq!(store.create_user(&bob, "$argon2id$bob", &owner).await.unwrap(), bob);
    assert_eq!(store.create_user(&alice, "$argon2id$alice", &owner).await.unwrap(), alice);
    let again = store.create_user(&user("alice", Role::Viewer, None), "$argon2id$other", &owner).await.unwrap_err();
    assert_eq!(again, StoreError::AlreadyExists { kind: EntityKind::User, key: "alice".into() });
    assert_eq!(store.list_users().await.unwrap(), vec![alice.clone(), bob.clone()], "ordered by username");

    // Another handle, as another node, reads them.
    let other = backend.open_backend().await;
    assert_eq!(other.user_credentials("alice").await.unwrap(), Some((alice.clone(), "$argon2id$alice".into())));
    assert_eq!(other.user_credentials("carol").await.unwrap(), None);

    let promote = UserUpdate { role: Some(Role::Editor), environments: Some(None), ..UserUpdate::default() };
    let promoted = other.update_user("bob", &promote, &ChangeMeta::new("user:alice")).await.unwrap();
    assert_eq!(promoted, User { role: Role::Editor, environments: None, ..bob.clone() });
    let password = UserUpdate { password_hash: Some("$argon2id$new".into()), ..UserUpdate::default() };
    assert_eq!(store.update_user("bob", &password, &owner).await.unwrap(), promoted, "only the password changed");
    assert_eq!(store.user_credentials("bob").await.unwrap(), Some((promoted.clone(), "$argon2id$new".into())));
    let unknown = store.update_user("carol", &promote, &owner).await.unwrap_err();
    assert_eq!(unknown, StoreError::NotFound { kind: EntityKind::User, key: "carol".into() });

    let records = store.query(&AuditQuery { entity: Some(EntityKind::User), ..AuditQuery::default() }).await.unwrap();
    let summary: Vec<(&str, &str, &str)> =
        records.iter().map(|r| (r.action.as_str(), r.key.as_str(), r.actor.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("update", "bob", "key_owner"),
            ("update", "bob", "user:alice"),
            ("create", "alice", "key_owner"),
            ("create", "bob", "key_owner")
        ]
    );
    assert_eq!(records[0].after.as_ref().unwrap()["password_changed"], true);
    assert_eq!(records[1].before.as_ref().unwrap()["role"], "viewer");
    assert_eq!(records[1].after.as_ref().unwrap()["role"], "editor");
    assert!(records[1].after.as_ref().unwrap().get("password_changed").is_none());
    for record in &records {
        let text = serde_json::to_string(&(&record.before, &record.after)).unwrap();
        assert!(!text.contains("argon2"), "a password hash in the audit log: {text}");
    }
    // People are not configuration.
    assert_eq!(store.revision().await.unwrap(), 0);
}

pub async fn sessions_last_until_they_expire_end_or_their_user_is_disabled(backend: &dyn TestBackend) {
    let store = backend.open_backend().await;
    let meta = ChangeMeta::new("key_owner");
    let alice = user("alice", Role::Editor, Some(vec!["production".into()]));
    store.create_user(&alice, "$argon2id$alice", &meta).await.unwrap();
    let later = crate::now() + Duration::hours(12);
    let (session, token) = store.create_session("alice", later).await.unwrap();
    let (second, second_token) = store.create_session("alice", later).await.unwrap();
    assert_ne!(token, second_token);
    assert_ne!(session.csrf_token, second.csrf_token);
    assert!(token.len() >= 40, "{token}");
    assert_eq!((session.username.as_str(), session.expires_at), ("alice", later));
    assert!(!backend.persisted_data_contains(&token).await, "a session token was persisted");

    let other = backend.open_backend().await;
    assert_eq!(other.session(&token).await.unwrap(), Some((session.clone(), alice.clone())));
    assert_eq!(other.session("not-a-token").await.unwrap(), None);
    let unknown = store.create_session("carol", later).await.unwrap_err();
    assert_eq!(unknown, StoreError::NotFound { kind: EntityKind::User, key: "carol".into() });

    // A change of role shows in the session's user at once.
    let viewer = UserUpdate { role: Some(Role::Viewer), ..UserUpdate::default() };
    store.update_user("alice", &viewer, &meta).await.unwrap();
    assert_eq!(other.session(&token).await.unwrap().unwrap().1.role, Role::Viewer);

    let seen = session.created_at + Duration::minutes(5);
    store.touch_session(&token, seen).await.unwrap();
    assert_eq!(other.session(&token).await.unwrap().unwrap().0.last_seen_at, seen);

    assert!(other.end_session(&second_token).await.unwrap());
    assert!(!other.end_session(&second_token).await.unwrap(), "ended already");
    assert_eq!(store.session(&second_token).await.unwrap(), None);

    // Purging: one session past its absolute expiry, one idle since before the cut-off.
    let (_, expired) = store.create_session("alice", crate::now() - Duration::seconds(1)).await.unwrap();
    let (_, idle) = store.create_session("alice", later).await.unwrap();
    store.touch_session(&idle, session.created_at - Duration::hours(2)).await.unwrap();
    let purged = store.purge_sessions(crate::now(), session.created_at - Duration::hours(1)).await.unwrap();
    assert_eq!(purged, 2);
    assert_eq!(store.session(&expired).await.unwrap(), None);
    assert_eq!(store.session(&idle).await.unwrap(), None);
    assert!(store.session(&token).await.unwrap().is_some(), "the live session stays");

    // A new password ends every session of the user; so does disabling them.
    let password = UserUpdate { password_hash: Some("$argon2id$new".into()), ..UserUpdate::default() };
    store.update_user("alice", &password, &meta).await.unwrap();
    assert_eq!(store.session(&token).await.unwrap(), None);
    let (_, token) = store.create_session("alice", later).await.unwrap();
    let disable = UserUpdate { disabled: Some(true), ..UserUpdate::default() };
    let disabled = other.update_user("alice", &disable, &meta).await.unwrap();
    assert!(disabled.disabled);
    assert_eq!(store.session(&token).await.unwrap(), None);
}
