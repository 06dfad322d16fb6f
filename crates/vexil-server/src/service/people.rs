//! People (SPEC 9): user accounts for the web console, their passwords and their sessions.
//!
//! A person has a role and environments exactly as an admin key does; the HTTP layer turns a
//! live session into the same caller an admin key would be. Passwords are hashed with Argon2id
//! (the `argon2` crate's recommended parameters: 19 MiB, two passes) on the blocking pool, as
//! each hash takes tens of milliseconds of CPU. Sessions live in the store, so they survive a
//! restart and work on every node; each one ends at its absolute expiry, after its idle
//! timeout, when the person signs out, is disabled or gets a new password. Every lookup reads
//! the store, so a change of a person's role or scope applies to their next request.
//!
//! Sign-in failures are counted per username and per client address within a window
//! ([`LoginThrottle`]); past the limit, sign-in is refused without checking the password.

use crate::service::keys::{check_scope, GrantError};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use vexil_store::{Backend, ChangeMeta, Role, Session, StoreError, User, UserUpdate};

/// The longest password accepted: long enough for any passphrase, short enough that hashing
/// one costs what hashing any other does.
const MAX_PASSWORD_BYTES: usize = 1024;
/// The shortest password accepted (NIST SP 800-63B's minimum for chosen passwords).
const MIN_PASSWORD_CHARS: usize = 8;
/// A session's last use is written at most this often: every request reads the session, and a
/// write per request would cost more than the request.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// How long sessions last and how sign-in failures are throttled (from the server's
/// configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session ends this long after sign-in, however active.
    pub lifetime: Duration,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// Failed sign-ins of one username within `failure_window` before it is refused.
    pub max_failures_per_username: u32,
    /// Failed sign-ins from one client address within `failure_window` before it is refused.
    pub max_failures_per_address: u32,
    pub failure_window: Duration,
}

/// Why a user cannot be created or changed as asked, or a person cannot sign in.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// A field's value is wrong (or names an unknown environment).
    #[error("{0}")]
    Invalid(GrantError),
    /// Wrong username or password, or a disabled person: the same answer for each, so an
    /// attacker learns nothing about which usernames exist.
    #[error("wrong username or password")]
    InvalidCredentials,
    /// Too many failed sign-ins of this username or from this address lately.
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> PeopleError {
    PeopleError::Invalid(GrantError::invalid(field, message))
}

/// A user to create, as asked for (the body of `POST /v1/admin/users`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    /// The environments the person may act in; absent or `null`: every one.
    #[serde(default)]
    pub environments: Option<Vec<String>>,
}

/// A change to a user, as asked for (the body of `PUT /v1/admin/users/{username}`); an absent
/// field is left as it is.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: Option<Role>,
    /// `Some(None)` (`null`): every environment.
    #[serde(default, deserialize_with = "present")]
    pub environments: Option<Option<Vec<String>>>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

impl UserChange {
    fn is_empty(&self) -> bool {
        self.role.is_none() && self.environments.is_none() && self.disabled.is_none() && self.password.is_none()
    }
}

/// A field that is present, `null` included (`Some(None)`), as distinct from an absent one.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A live session and the person it belongs to, as a request sees them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: Session,
    pub user: User,
}

/// Usernames: 1 to 64 of lowercase letters, digits and `.`, `_`, `-`, `@` (an email address
/// fits), starting with a letter or digit. Lowercase only, so `Alice` and `alice` cannot be two
/// people.
pub fn check_username(username: &str) -> Result<(), PeopleError> {
    let mut chars = username.chars();
    let valid = (1..=64).contains(&username.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "username",
            "username must be 1 to 64 lowercase letters, digits, '.', '_', '-' or '@', starting with a letter or digit",
        ))
    }
}

fn check_password(password: &str) -> Result<(), PeopleError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(
            "password",
            format!("password must be {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes long"),
        ));
    }
    Ok(())
}

/// The Argon2id PHC string of `password` with a fresh random salt, computed off the async
/// workers.
pub async fn hash_password(password: &str) -> Result<String, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| StoreError::Backend(format!("hashing a password failed: {e}")))
    })
    .await
    .map_err(|e| StoreError::Backend(format!("hashing a password failed: {e}")))?
}

/// Whether `password` matches the stored PHC string (an unreadable one matches nothing).
async fn verify_password(password: &str, stored: String) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A hash no password is checked against successfully in practice, verified when the username
/// does not exist, so that an unknown username takes as long to refuse as a wrong password.
async fn decoy_hash() -> String {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DECOY.get() {
        return hash.clone();
    }
    let random = uuid::Uuid::new_v4().to_string();
    let hash = hash_password(&random).await.unwrap_or_default();
    DECOY.get_or_init(|| hash).clone()
}

/// Checks a new user and stores it with its password hashed. `exists` tells whether an
/// environment exists.
pub async fn create_user(
    backend: &dyn Backend,
    new: NewUser,
    exists: impl Fn(&str) -> bool,
    meta: &ChangeMeta,
) -> Result<User, PeopleError> {
    check_username(&new.username)?;
    check_password(&new.password)?;
    if let Some(list) = &new.environments {
        check_scope(list, exists).map_err(PeopleError::Invalid)?;
    }
    let user = User {
        username: new.username,
        role: new.role,
        environments: new.environments,
        disabled: false,
        created_at: vexil_store::now(),
    };
    let hash = hash_password(&new.password).await?;
    Ok(backend.create_user(&user, &hash, meta).await?)
}

/// Changes a user: role, environments, disabled, password. Disabling a person or giving them a
/// new password ends their sessions at once.
pub async fn update_user(
    backend: &dyn Backend,
    username: &str,
    change: UserChange,
    exists: impl Fn(&str) -> bool,
    meta: &ChangeMeta,
) -> Result<User, PeopleError> {
    if change.is_empty() {
        return Err(invalid("body", "nothing to change: give any of role, environments, disabled, password"));
    }
    if let Some(Some(list)) = &change.environments {
        check_scope(list, exists).map_err(PeopleError::Invalid)?;
    }
    let password_hash = match &change.password {
        Some(password) => {
            check_password(password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let update =
        UserUpdate { role: change.role, environments: change.environments, disabled: change.disabled, password_hash };
    Ok(backend.update_user(username, &update, meta).await?)
}

/// Sign-in, sessions and sign-out over a backend.
pub struct People {
    backend: Arc<dyn Backend>,
    policy: SessionPolicy,
    throttle: LoginThrottle,
}

impl People {
    pub fn new(backend: Arc<dyn Backend>, policy: SessionPolicy) -> People {
        People { backend, policy, throttle: LoginThrottle::new(policy) }
    }

    /// Signs a person in: a new session and its token when the password is right and the
    /// person not disabled. Failures count against the username and the client address.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(SignedIn, String), PeopleError> {
        if let Some(retry_after) = self.throttle.refusal(username, client) {
            let retry_after_secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            return Err(PeopleError::TooManyAttempts { retry_after_secs: retry_after_secs.max(1) });
        }
        let found = self.backend.user_credentials(username).await?;
        let stored = match &found {
            Some((_, hash)) => hash.clone(),
            None => decoy_hash().await,
        };
        let matches = verify_password(password, stored).await;
        let user = match found {
            Some((user, _)) if matches && !user.disabled => user,
            _ => {
                self.throttle.failed(username, client);
                return Err(PeopleError::InvalidCredentials);
            }
        };
        self.throttle.succeeded(username, client);
        let now = vexil_store::now();
        // Sign-in is where expired sessions are cleaned up: rare enough to cost nothing, and
        // often enough that the table holds little besides live sessions.
        self.backend.purge_sessions(now, now - self.policy.idle_timeout).await?;
        let (session, token) = self.backend.create_session(&user.username, now + self.policy.lifetime).await?;
        Ok((SignedIn { session, user }, token))
    }

    /// The live session of `token` and its person, if any. A session past its absolute or idle
    /// expiry, or of a disabled person, is ended and not returned.
    pub async fn session(&self, token: &str) -> Result<Option<SignedIn>, StoreError> {
        let Some((session, user)) = self.backend.session(token).await? else {
            return Ok(None);
        };
        let now = vexil_store::now();
        // A last use in the future (another node's clock ahead of this one's) counts as now.
        let idle = (now - session.last_seen_at).to_std().unwrap_or_default();
        if now >= session.expires_at || idle >= self.policy.idle_timeout || user.disabled {
            self.backend.end_session(token).await?;
            return Ok(None);
        }
        if idle >= TOUCH_INTERVAL {
            self.backend.touch_session(token, now).await?;
        }
        Ok(Some(SignedIn { session, user }))
    }

    /// Ends the session of `token`; whether it was live.
    pub async fn sign_out(&self, token: &str) -> Result<bool, StoreError> {
        self.backend.end_session(token).await
    }
}

/// Failed sign-ins per username and per client address, each within a window that starts at
/// its first failure. Hand-written rather than a rate limiter (`governor`, used for request
/// rates): what is counted here is failures only, and a success must clear its username's and
/// address's counts, which a token bucket cannot express. Kept in memory: in the distributed
/// mode each node counts its own, so a cluster of N nodes allows up to N times the limit.
pub struct LoginThrottle {
    policy: SessionPolicy,
    failures: Mutex<HashMap<Attempted, (u32, Instant)>>,
}

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Attempted {
    Username(String),
    Address(IpAddr),
}

/// Entries kept before expired ones are swept: a bound on memory under a flood of usernames.
const SWEEP_ABOVE: usize = 10_000;

impl LoginThrottle {
    fn new(policy: SessionPolicy) -> LoginThrottle {
        LoginThrottle { policy, failures: Mutex::new(HashMap::new()) }
    }

    /// What a sign-in of `username` from `client` counts against.
    fn counted(username: &str, client: Option<IpAddr>) -> impl Iterator<Item = Attempted> {
        [Some(Attempted::Username(username.to_owned())), client.map(Attempted::Address)].into_iter().flatten()
    }

    fn limit(&self, attempted: &Attempted) -> u32 {
        match attempted {
            Attempted::Username(_) => self.policy.max_failures_per_username,
            Attempted::Address(_) => self.policy.max_failures_per_address,
        }
    }

    /// How long until a sign-in of `username` from `client` is let through, if it is refused now.
    fn refusal(&self, username: &str, client: Option<IpAddr>) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        Self::counted(username, client)
            .filter_map(|attempted| {
                let (count, since) = failures.get(&attempted)?;
                let ends = *since + self.policy.failure_window;
                (*count >= self.limit(&attempted) && ends > now).then(|| ends - now)
            })
            .max()
    }

    fn failed(&self, username: &str, client: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, (_, since)| *since + self.policy.failure_window > now);
        }
        for attempted in Self::counted(username, client) {
            let entry = failures.entry(attempted).or_insert((0, now));
            if entry.1 + self.policy.failure_window <= now {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    fn succeeded(&self, username: &str, client: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for attempted in Self::counted(username, client) {
            failures.remove(&attempted);
        }
    }
}
