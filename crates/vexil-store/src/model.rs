//! The values that cross the storage traits. They are backend-neutral: every backend stores
//! and returns exactly these shapes, and they serialise the way the admin API shows them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// A point in time; stored and shown in UTC. Stores keep timestamps to the microsecond, the
/// finest precision every backend (PostgreSQL's `timestamptz` included) can hold, so a value
/// reads back exactly as it was written whichever backend holds it.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time at the precision stores keep.
pub fn now() -> Timestamp {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// The error of parsing a name that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    what: &'static str,
    name: String,
}

/// Defines an enum whose variants have one canonical snake_case name, used alike in JSON, in
/// the database and in messages, so the mapping is written exactly once.
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident as $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        $vis enum $name { $($variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, name: s.to_owned() }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownName;
            fn try_from(s: String) -> Result<Self, UnknownName> {
                s.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> Self {
                value.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// What a document or an audit record is about.
    pub enum EntityKind as "entity kind" {
        Flag = "flag",
        Segment = "segment",
        Experiment = "experiment",
        Key = "key",
        EmergencyStop = "emergency_stop",
        Budget = "budget",
        RolloutPlan = "rollout_plan",
        Environment = "environment",
        ChangeRequest = "change_request",
        User = "user",
    }
}

/// The environment a store starts with, and the one data written before environments existed
/// belongs to.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// The namespace of documents that belong to no environment: the environments themselves.
/// No environment can have this name, as environment keys start with a letter.
pub const GLOBAL: &str = "";

/// Whether `key` is a valid environment key (SPEC 9): `^[a-z][a-z0-9_-]{0,63}$`.
pub fn is_environment_key(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

named_enum! {
    /// What an API key may do (SPEC §4): `admin` everything, `server` evaluation plus SDK
    /// config, `client` evaluation, assignment and events only.
    pub enum KeyKind as "key kind" {
        Admin = "admin",
        Server = "server",
        Client = "client",
    }
}

named_enum! {
    /// What an admin key may do (SPEC 9): `viewer` every admin read, `editor` also writes
    /// configuration in its environments, `owner` everything, keys and environments included.
    pub enum Role as "role" {
        Owner = "owner",
        Editor = "editor",
        Viewer = "viewer",
    }
}

impl Role {
    /// Whether this role includes the rights of `needed`.
    pub fn includes(self, needed: Role) -> bool {
        let rank = |role: Role| match role {
            Role::Viewer => 0,
            Role::Editor => 1,
            Role::Owner => 2,
        };
        rank(self) >= rank(needed)
    }
}

/// What a new key is granted besides its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGrant {
    /// A server or client key's environment; `None`: the default one.
    pub environment: Option<String>,
    /// An admin key's role; `None` reads as [`Role::Owner`].
    pub role: Option<Role>,
    /// The environments an admin key may act in; `None`: every one.
    pub environments: Option<Vec<String>>,
}

impl KeyGrant {
    /// A server or client key acting in `environment`.
    pub fn in_environment(environment: &str) -> KeyGrant {
        KeyGrant { environment: Some(environment.to_owned()), ..KeyGrant::default() }
    }
}

/// A person who signs in to the web console (SPEC 9), as the API shows them. The password's
/// hash is stored beside it and never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    /// The environments the person may act in; `None`: every one.
    pub environments: Option<Vec<String>>,
    /// A disabled person cannot sign in, and their sessions are gone.
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub role: Option<Role>,
    /// `Some(None)`: every environment.
    pub environments: Option<Option<Vec<String>>>,
    pub disabled: Option<bool>,
    /// A new password's hash (PHC string).
    pub password_hash: Option<String>,
}

/// A signed-in person's session. Its token is stored only as a hash; the CSRF token a
/// cookie-authenticated write must echo is stored as it is, since it is worthless without the
/// session's cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub username: String,
    pub csrf_token: String,
    pub created_at: Timestamp,
    /// When a request last used it (kept to about a minute), for the idle expiry.
    pub last_seen_at: Timestamp,
    /// The absolute expiry: the session ends then, however active.
    pub expires_at: Timestamp,
}

/// A versioned configuration document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDocument {
    pub kind: EntityKind,
    pub key: String,
    /// Generated on creation, never changes; a document deleted and created again gets a new one.
    pub id: String,
    /// 1 on creation, +1 per change: the value of `If-Match`.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The entity's JSON without the server-managed fields above.
    pub body: Value,
}

impl StoredDocument {
    /// The document as the API shows it: the body with `id`, `version`, `created_at` and
    /// `updated_at` added. A body that is not an object is returned as it is.
    pub fn to_json(&self) -> Value {
        self.clone().into_json()
    }

    /// [`StoredDocument::to_json`] without copying the body.
    pub fn into_json(self) -> Value {
        let mut json = self.body;
        if let Value::Object(fields) = &mut json {
            fields.insert("id".into(), Value::from(self.id));
            fields.insert("version".into(), Value::from(self.version));
            fields.insert("created_at".into(), timestamp_json(&self.created_at));
            fields.insert("updated_at".into(), timestamp_json(&self.updated_at));
        }
        json
    }
}

/// A document as the API shows it ([`StoredDocument::to_json`]), kept as JSON text.
#[derive(Debug, Clone)]
pub struct ShownDocument {
    pub key: String,
    pub json: Box<RawValue>,
}

/// What changed in one environment's documents after a revision
/// ([`ConfigStore::changes_since`](crate::ConfigStore::changes_since)).
#[derive(Debug, Default)]
pub struct DocumentChanges {
    /// The store's revision these changes bring a reader to.
    pub revision: u64,
    /// Documents created or replaced since, as the API shows them, ordered by kind and key.
    pub changed: Vec<(EntityKind, ShownDocument)>,
    /// Documents deleted since (and not created again), ordered by kind and key.
    pub deleted: Vec<(EntityKind, String)>,
}

impl From<StoredDocument> for ShownDocument {
    fn from(doc: StoredDocument) -> ShownDocument {
        let key = doc.key.clone();
        let json = serde_json::value::to_raw_value(&doc.into_json()).expect("JSON values serialise");
        ShownDocument { key, json }
    }
}

impl ShownDocument {
    /// The stored body's text with the server-managed fields appended, without parsing the body
    /// into values. A body that is not an object is shown as it is, as `to_json` does.
    pub(crate) fn from_text(
        key: String,
        id: &str,
        version: u64,
        created_at: &Timestamp,
        updated_at: &Timestamp,
        body: &str,
    ) -> Result<ShownDocument, serde_json::Error> {
        let body = body.trim();
        let text = match body.strip_suffix('}') {
            Some(open) if body.starts_with('{') => {
                let fields = serde_json::to_string(&serde_json::json!({
                    "id": id,
                    "version": version,
                    "created_at": timestamp_json(created_at),
                    "updated_at": timestamp_json(updated_at),
                }))?;
                let separator = if open.trim_end() == "{" { "" } else { "," };
                format!("{open}{separator}{}", &fields[1..])
            }
            _ => body.to_owned(),
        };
        Ok(ShownDocument { key, json: RawValue::from_string(text)? })
    }
}

fn timestamp_json(t: &Timestamp) -> Value {
    Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Who makes a change, and why; carried into the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMeta {
    /// A key id, or a name for the server's own actors: `system:rollout`, `cli`, …
    pub actor: String,
    pub reason: Option<String>,
}

impl ChangeMeta {
    pub fn new(actor: impl Into<String>) -> Self {
        ChangeMeta { actor: actor.into(), reason: None }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// One write of a [`ConfigStore::apply`](crate::ConfigStore::apply) batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Fails with `AlreadyExists` if the document exists.
    Create { kind: EntityKind, key: String, body: Value },
    /// Fails with `NotFound` if the document does not exist, and with `VersionMismatch` if
    /// `expected_version` is given and is not the current version (`If-Match`).
    Update { kind: EntityKind, key: String, body: Value, expected_version: Option<u64> },
    /// Creates or replaces, whatever the current version (flag import).
    Upsert { kind: EntityKind, key: String, body: Value },
    /// Fails like `Update` does.
    Delete { kind: EntityKind, key: String, expected_version: Option<u64> },
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Grows with every record: later records have larger ids.
    pub id: u64,
    pub at: Timestamp,
    /// The environment the change was made in; `None` for changes that belong to none (keys,
    /// environments themselves).
    #[serde(default)]
    pub environment: Option<String>,
    pub actor: String,
    /// What happened: `create`, `update`, `delete` for documents and keys, `revoke` for keys,
    /// and whatever [`NewAuditRecord::action`] other actions name.
    pub action: String,
    pub entity: EntityKind,
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: Option<String>,
}

/// An audit record to append; the store assigns `id` and `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditRecord {
    /// Becomes the record's `actor` and `reason`.
    pub meta: ChangeMeta,
    /// See [`AuditRecord::environment`].
    pub environment: Option<String>,
    pub action: String,
    pub entity: EntityKind,
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// How many audit records a query returns when it names no limit.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
/// The most audit records one query returns; page with [`AuditQuery::before`].
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// A filter over the audit log. The default matches everything, newest 100 first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only the records of this environment and those of no environment (keys, environments).
    pub environment: Option<String>,
    pub entity: Option<EntityKind>,
    pub key: Option<String>,
    /// At most [`MAX_AUDIT_LIMIT`]; larger values are capped.
    pub limit: Option<u32>,
    /// Only records with a smaller id: pass the last id of a page to get the next one.
    pub before: Option<u64>,
}

impl AuditQuery {
    /// The number of records to return at most.
    pub fn effective_limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_AUDIT_LIMIT).min(MAX_AUDIT_LIMIT)
    }
}

/// An API key as listed; the secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub kind: KeyKind,
    pub name: String,
    /// The environment a server or client key acts in; `None`: the default environment (and
    /// always for admin keys, which name their environment per request).
    #[serde(default)]
    pub environment: Option<String>,
    /// An admin key's role (`owner` for admin keys created before roles); `None` for others.
    #[serde(default)]
    pub role: Option<Role>,
    /// The environments an admin key may act in; `None`: every one.
    #[serde(default)]
    pub environments: Option<Vec<String>>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Insert-if-absent of an assignment in SQL, up to its `VALUES`/`SELECT`, and the conflict
/// clause that follows: every SQL backend writes assignments with these two, so the rule is
/// stated once — an existing record is overwritten only if it had expired by the time of the
/// new one.
pub(crate) const ASSIGNMENT_INSERT: &str =
    "INSERT INTO assignments (experiment_id, unit, variant, assignment_id, assigned_at, expires_at)";
pub(crate) const ASSIGNMENT_CONFLICT: &str = "ON CONFLICT (experiment_id, unit) DO UPDATE SET
         variant = excluded.variant,
         assignment_id = excluded.assignment_id,
         assigned_at = excluded.assigned_at,
         expires_at = excluded.expires_at
     WHERE assignments.expires_at IS NOT NULL
       AND assignments.expires_at <= excluded.assigned_at";

/// The sticky variant of one unit (a user id, usually) in one experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub experiment_id: String,
    pub unit: String,
    pub variant: String,
    pub assignment_id: String,
    pub assigned_at: Timestamp,
    /// `None`: sticky for the life of the experiment.
    pub expires_at: Option<Timestamp>,
}

/// When a batch of first assignments reaches the disk, relative to its commit.
///
/// Either way the batch is committed before the call returns: every reader and every node sees
/// it, and it survives the process being killed. The difference is an OS crash or power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The commit waits for the disk (an fsync per batch): nothing acknowledged is ever lost.
    OnCommit,
    /// The commit is written but not waited for; the backend flushes it shortly after (the
    /// embedded store within its 250 ms upkeep tick, PostgreSQL's WAL writer within
    /// `3 × wal_writer_delay`), and any later flushed commit flushes it too. A power loss can
    /// lose that window's first assignments — the one durability a request then skips.
    Background,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_round_trip_through_json_and_strings() {
        for kind in EntityKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, Value::from(kind.as_str()));
            assert_eq!(serde_json::from_value::<EntityKind>(json).unwrap(), *kind);
            assert_eq!(kind.as_str().parse::<EntityKind>().unwrap(), *kind);
        }
        for kind in KeyKind::ALL {
            assert_eq!(kind.to_string().parse::<KeyKind>().unwrap(), *kind);
        }
        assert_eq!(EntityKind::EmergencyStop.as_str(), "emergency_stop", "names are snake_case");
        let err = "flags".parse::<EntityKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown entity kind \"flags\"");
        assert!(serde_json::from_str::<KeyKind>("\"root\"").is_err());
    }

    #[test]
    fn document_json_adds_server_managed_fields() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let doc = StoredDocument {
            kind: EntityKind::Flag,
            key: "new_checkout".into(),
            id: "abc".into(),
            version: 3,
            created_at: at,
            updated_at: at,
            body: serde_json::json!({"key": "new_checkout", "enabled": true}),
        };
        assert_eq!(
            doc.to_json(),
            serde_json::json!({
                "key": "new_checkout", "enabled": true, "id": "abc", "version": 3,
                "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:00:00Z",
            })
        );
    }

    #[test]
    fn environment_keys_follow_the_spec() {
        for good in ["production", "a", "dev-eu_1", &format!("a{}", "b".repeat(63))] {
            assert!(is_environment_key(good), "{good}");
        }
        for bad in ["", "Prod", "1st", "-dev", "dev.eu", "dév", &format!("a{}", "b".repeat(64))] {
            assert!(!is_environment_key(bad), "{bad}");
        }
    }

    #[test]
    fn audit_limit_defaults_and_caps() {
        assert_eq!(AuditQuery::default().effective_limit(), 100);
        let q = AuditQuery { limit: Some(5000), ..AuditQuery::default() };
        assert_eq!(q.effective_limit(), 1000);
    }
}
