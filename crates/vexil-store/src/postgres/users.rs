//! [`UserStore`] on the `users` and `sessions` tables. Session tokens are generated and hashed
//! by [`crate::secret`], as key secrets are, so sessions and users move between backends intact.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::audit::append;
use super::PostgresStore;
use crate::change::{updated_user, user_audit_record};
use crate::secret::{environments_column, environments_from_column, new_session, secret_hash};
use crate::{ChangeMeta, EntityKind, Session, StoreError, Timestamp, User, UserStore, UserUpdate};

const SELECT_USER: &str = "SELECT username, role, environments, disabled, created_at FROM users";

/// A user from the columns of [`SELECT_USER`], starting at column `at`.
fn user_from(row: &Row, at: usize) -> Result<User, StoreError> {
    let broken = |e: &dyn std::fmt::Display| StoreError::Backend(format!("users: {e}"));
    Ok(User {
        username: row.get(at),
        role: row.get::<_, &str>(at + 1).parse().map_err(|e| broken(&e))?,
        environments: environments_from_column(row.get(at + 2)).map_err(|e| broken(&e))?,
        disabled: row.get(at + 3),
        created_at: row.get(at + 4),
    })
}

#[async_trait::async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &User, password_hash: &str, meta: &ChangeMeta) -> Result<User, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO users (username, password_hash, role, environments, disabled, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING",
                &[
                    &user.username,
                    &password_hash,
                    &user.role.as_str(),
                    &environments_column(&user.environments),
                    &user.disabled,
                    &user.created_at,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists { kind: EntityKind::User, key: user.username.clone() });
        }
        append(&tx, crate::now(), &user_audit_record(meta, None, user, false)).await?;
        tx.commit().await?;
        Ok(user.clone())
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&format!("{SELECT_USER} ORDER BY username")).await?;
        client.query(&statement, &[]).await?.iter().map(|row| user_from(row, 0)).collect()
    }

    async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT username, role, environments, disabled, created_at, password_hash
                 FROM users WHERE username = $1",
            )
            .await?;
        let row = client.query_opt(&statement, &[&username]).await?;
        row.map(|row| Ok((user_from(&row, 0)?, row.get(5)))).transpose()
    }

    async fn update_user(&self, username: &str, update: &UserUpdate, meta: &ChangeMeta) -> Result<User, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // FOR UPDATE: two nodes changing one user at once audit both changes in order.
        let current = tx
            .query_opt(&format!("{SELECT_USER} WHERE username = $1 FOR UPDATE"), &[&username])
            .await?
            .map(|row| user_from(&row, 0))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound { kind: EntityKind::User, key: username.to_owned() })?;
        let updated = updated_user(&current, update);
        tx.execute(
            "UPDATE users SET role = $2, environments = $3, disabled = $4,
                 password_hash = coalesce($5, password_hash)
             WHERE username = $1",
            &[
                &username,
                &updated.role.as_str(),
                &environments_column(&updated.environments),
                &updated.disabled,
                &update.password_hash,
            ],
        )
        .await?;
        if updated.disabled || update.password_hash.is_some() {
            tx.execute("DELETE FROM sessions WHERE username = $1", &[&username]).await?;
        }
        let record = user_audit_record(meta, Some(&current), &updated, update.password_hash.is_some());
        append(&tx, crate::now(), &record).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn create_session(&self, username: &str, expires_at: Timestamp) -> Result<(Session, String), StoreError> {
        let (session, token) = new_session(username, expires_at);
        let client = self.client().await?;
        // The user's foreign key refuses a session of an unknown username.
        let inserted = client
            .execute(
                "INSERT INTO sessions (token_sha256, username, csrf_token, created_at, last_seen_at, expires_at)
                 SELECT $1, username, $3, $4, $4, $5 FROM users WHERE username = $2",
                &[&&secret_hash(&token)[..], &username, &session.csrf_token, &session.created_at, &expires_at],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::NotFound { kind: EntityKind::User, key: username.to_owned() });
        }
        Ok((session, token))
    }

    async fn session(&self, token: &str) -> Result<Option<(Session, User)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT s.csrf_token, s.created_at, s.last_seen_at, s.expires_at,
                        u.username, u.role, u.environments, u.disabled, u.created_at
                 FROM sessions s JOIN users u ON u.username = s.username
                 WHERE s.token_sha256 = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&statement, &[&&secret_hash(token)[..]]).await? else {
            return Ok(None);
        };
        let user = user_from(&row, 4)?;
        let session = Session {
            username: user.username.clone(),
            csrf_token: row.get(0),
            created_at: row.get(1),
            last_seen_at: row.get(2),
            expires_at: row.get(3),
        };
        Ok(Some((session, user)))
    }

    async fn touch_session(&self, token: &str, at: Timestamp) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("UPDATE sessions SET last_seen_at = $2 WHERE token_sha256 = $1", &[&&secret_hash(token)[..], &at])
            .await?;
        Ok(())
    }

    async fn end_session(&self, token: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted =
            client.execute("DELETE FROM sessions WHERE token_sha256 = $1", &[&&secret_hash(token)[..]]).await?;
        Ok(deleted > 0)
    }

    async fn purge_sessions(&self, now: Timestamp, idle_before: Timestamp) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2", &[&now, &idle_before])
            .await?;
        Ok(deleted)
    }
}
