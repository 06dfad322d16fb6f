//! [`UserStore`] on the `users` and `sessions` tables. Session tokens are generated and hashed
//! by [`crate::secret`], as key secrets are.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::audit::append;
use super::codec::Time;
use super::SqliteStore;
use crate::change::{updated_user, user_audit_record};
use crate::secret::{environments_column, environments_from_column, new_session, secret_hash};
use crate::{ChangeMeta, EntityKind, Session, StoreError, Timestamp, User, UserStore, UserUpdate};

const SELECT_USER: &str = "SELECT username, role, environments, disabled, created_at FROM users";

/// A user from the columns of [`SELECT_USER`], starting at column `at`.
fn user_from(row: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    Ok(User {
        username: row.get(at)?,
        role: row.get(at + 1)?,
        environments: environments_from_column(row.get(at + 2)?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(at + 2, rusqlite::types::Type::Text, e.into()))?,
        disabled: row.get(at + 3)?,
        created_at: row.get::<_, Time>(at + 4)?.0,
    })
}

fn current_user(conn: &Connection, username: &str) -> Result<User, StoreError> {
    conn.query_row(&format!("{SELECT_USER} WHERE username = ?1"), [username], |row| user_from(row, 0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound { kind: EntityKind::User, key: username.to_owned() })
}

#[async_trait::async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &User, password_hash: &str, meta: &ChangeMeta) -> Result<User, StoreError> {
        let (user, password_hash, meta) = (user.clone(), password_hash.to_owned(), meta.clone());
        self.write(move |tx| {
            let inserted = tx.execute(
                "INSERT INTO users (username, password_hash, role, environments, disabled, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (username) DO NOTHING",
                params![
                    user.username,
                    password_hash,
                    user.role,
                    environments_column(&user.environments),
                    user.disabled,
                    Time(user.created_at),
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists { kind: EntityKind::User, key: user.username });
            }
            append(tx, crate::now(), &user_audit_record(&meta, None, &user, false))?;
            Ok(user)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|conn| {
            let users = conn
                .prepare_cached(&format!("{SELECT_USER} ORDER BY username"))?
                .query_map([], |row| user_from(row, 0))?
                .collect::<Result<_, _>>()?;
            Ok(users)
        })
        .await
    }

    async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let username = username.to_owned();
        self.read(move |conn| {
            let found = conn
                .prepare_cached(
                    "SELECT username, role, environments, disabled, created_at, password_hash
                     FROM users WHERE username = ?1",
                )?
                .query_row([&username], |row| Ok((user_from(row, 0)?, row.get(5)?)))
                .optional()?;
            Ok(found)
        })
        .await
    }

    async fn update_user(&self, username: &str, update: &UserUpdate, meta: &ChangeMeta) -> Result<User, StoreError> {
        let (username, update, meta) = (username.to_owned(), update.clone(), meta.clone());
        self.write(move |tx| {
            let current = current_user(tx, &username)?;
            let updated = updated_user(&current, &update);
            tx.execute(
                "UPDATE users SET role = ?2, environments = ?3, disabled = ?4,
                     password_hash = coalesce(?5, password_hash)
                 WHERE username = ?1",
                params![
                    username,
                    updated.role,
                    environments_column(&updated.environments),
                    updated.disabled,
                    update.password_hash,
                ],
            )?;
            if updated.disabled || update.password_hash.is_some() {
                tx.execute("DELETE FROM sessions WHERE username = ?1", [&username])?;
            }
            let record = user_audit_record(&meta, Some(&current), &updated, update.password_hash.is_some());
            append(tx, crate::now(), &record)?;
            Ok(updated)
        })
        .await
    }

    async fn create_session(&self, username: &str, expires_at: Timestamp) -> Result<(Session, String), StoreError> {
        let (session, token) = new_session(username, expires_at);
        let (stored, hash) = (session.clone(), secret_hash(&token));
        self.write(move |tx| {
            current_user(tx, &stored.username)?;
            tx.execute(
                "INSERT INTO sessions (token_sha256, username, csrf_token, created_at, last_seen_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![
                    &hash[..],
                    stored.username,
                    stored.csrf_token,
                    Time(stored.created_at),
                    Time(stored.expires_at)
                ],
            )?;
            Ok(())
        })
        .await?;
        Ok((session, token))
    }

    async fn session(&self, token: &str) -> Result<Option<(Session, User)>, StoreError> {
        let hash = secret_hash(token);
        self.read(move |conn| {
            let found = conn
                .prepare_cached(
                    "SELECT s.csrf_token, s.created_at, s.last_seen_at, s.expires_at,
                            u.username, u.role, u.environments, u.disabled, u.created_at
                     FROM sessions s JOIN users u ON u.username = s.username
                     WHERE s.token_sha256 = ?1",
                )?
                .query_row([&hash[..]], |row| {
                    let user = user_from(row, 4)?;
                    let session = Session {
                        username: user.username.clone(),
                        csrf_token: row.get(0)?,
                        created_at: row.get::<_, Time>(1)?.0,
                        last_seen_at: row.get::<_, Time>(2)?.0,
                        expires_at: row.get::<_, Time>(3)?.0,
                    };
                    Ok((session, user))
                })
                .optional()?;
            Ok(found)
        })
        .await
    }

    async fn touch_session(&self, token: &str, at: Timestamp) -> Result<(), StoreError> {
        let hash = secret_hash(token);
        self.write(move |tx| {
            tx.execute("UPDATE sessions SET last_seen_at = ?2 WHERE token_sha256 = ?1", params![&hash[..], Time(at)])?;
            Ok(())
        })
        .await
    }

    async fn end_session(&self, token: &str) -> Result<bool, StoreError> {
        let hash = secret_hash(token);
        self.write(move |tx| Ok(tx.execute("DELETE FROM sessions WHERE token_sha256 = ?1", [&hash[..]])? > 0)).await
    }

    async fn purge_sessions(&self, now: Timestamp, idle_before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let deleted = tx.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?2",
                params![Time(now), Time(idle_before)],
            )?;
            Ok(deleted as u64)
        })
        .await
    }
}
